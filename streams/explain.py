"""Explanations: every signal, every candidate with why it was kept or dropped, the plan.

``explain`` turns a ``Decision`` into plain data: the same dict is printed as tables by
``turnout route explain``, as JSON with ``--json``, and as one JSON line per request
for a JSONL file.
"""

from __future__ import annotations

import json
from typing import Any

from turnout.schemas.models import ChatMessage, InferenceRequest, PlanStep

from .rules import Decision


def explain(request: InferenceRequest, decision: Decision, policy_version: str) -> dict[str, Any]:
    selection = decision.selection
    out: dict[str, Any] = {
        "request_id": request.id,
        "tenant": request.tenant,
        "policy_version": policy_version,
        "signals": decision.signals.model_dump(),
        "route": selection.route,
        "candidates": [
            {"model": c.model, "kept": c.kept, "stage": c.stage, "reason": c.reason, "score": c.score} for c in selection.candidates
        ],
        "notes": list(selection.notes),
    }
    if selection.refusal is not None:
        out["refused"] = selection.refusal.model_dump()
        out["plan"] = []
    else:
        out["plan"] = [_step(s) for s in selection.plan]
        out["shadows"] = list(selection.shadows)
        out["reason"] = selection.reason(decision.signals)
    return out


def request_from_line(line: str, number: int, default_tenant: str) -> InferenceRequest:
    """A JSONL line: ``{"prompt": …, "tenant"?: …, "model"?: …}`` or a full request."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ValueError(f"line {number}: expected a JSON object")
    if "messages" in row:
        return InferenceRequest.model_validate({"id": f"line-{number}", "tenant": default_tenant, **row})
    if not isinstance(row.get("prompt"), str):
        raise ValueError(f"line {number}: expected a string 'prompt' or a 'messages' list")
    messages = ([ChatMessage(role="system", content=row["system"])] if row.get("system") else []) + [ChatMessage(role="user", content=row["prompt"])]
    fields = {k: row[k] for k in ("model", "metadata", "response_schema", "max_tokens") if k in row}
    if isinstance(fields.get("response_schema"), dict):
        fields["response_schema"] = json.dumps(fields["response_schema"])
    return InferenceRequest(id=str(row.get("id", f"line-{number}")), tenant=str(row.get("tenant", default_tenant)), messages=messages, **fields)


def _step(step: PlanStep) -> dict:
    out = {"model": step.model, "role": step.role, "when": list(step.when)}
    if step.min_confidence is not None:
        out["min_confidence"] = step.min_confidence
    return out
