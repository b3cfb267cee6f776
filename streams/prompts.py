"""Prompt text kept for replay: what the router publishes about a request whose tenant
opted in, and how a stored prompt is routed again under another policy.

Redaction happens here, in the router, before the text is encoded: the prompts topic,
the sink and ClickHouse only ever see ``[REDACTED:<kind>]`` where the router found a
sensitive value. The messages (and an embedding request's texts) are scanned only when
the router's signals found a sensitive kind in them, for exactly those kinds: a clean
prompt, the common case, costs no second scan. Metadata values, which the signals do
not read, are scanned for every kind (they are short).

A replay routes on the signals recorded at routing time, not on signals read again
from the stored text: redaction removes what a fresh read would find (a prompt with an
email reads as one without), and a candidate policy's sensitive-data rules must meet
the request as the router met it.
"""

from __future__ import annotations

from datetime import datetime

from turnout.schemas.models import ChatMessage, InferenceRequest, PromptText, Signals

from .engine import Context, Selection, select
from .sensitive import redact

__all__ = ["prompt_text", "replay", "request_of"]


def prompt_text(request: InferenceRequest, signals: Signals, policy_version: str) -> PromptText:
    """The redacted record of ``request`` as the router read it (``signals``)."""
    kinds = signals.sensitive_kinds
    return PromptText(
        request_id=request.id,
        tenant=request.tenant,
        ts=request.created_at,
        policy_version=policy_version,
        messages=[_redacted_message(m, kinds) for m in request.messages],
        input=[_redacted(text, kinds) for text in request.input or []],
        model=request.model,
        metadata={key: redact(value) for key, value in request.metadata.items()},
        signals=signals,
    )


def _redacted(text: str, kinds: list[str]) -> str:
    return redact(text, kinds) if kinds else text


def _redacted_message(message: ChatMessage, kinds: list[str]) -> ChatMessage:
    return ChatMessage(role=message.role, content=_redacted(message.content, kinds), name=message.name)


def request_of(prompt: PromptText) -> InferenceRequest:
    """The request as a policy sees it: tenant, pinned model, metadata, the (redacted)
    text, and the id that A/B arms and canaries hash."""
    return InferenceRequest(
        id=prompt.request_id,
        tenant=prompt.tenant,
        messages=prompt.messages,
        input=prompt.input or None,
        model=prompt.model,
        metadata=prompt.metadata,
        created_at=prompt.ts,
    )


def replay(prompt: PromptText, ctx: Context, now: datetime | None = None) -> Selection:
    """Route a stored prompt under ``ctx`` (a candidate policy and the current fleet) on
    its recorded signals; the plan's primary is where it would have gone. Without a
    deadline or health in ``ctx``, no soft filter on backlog applies."""
    return select(request_of(prompt), prompt.signals, ctx, now or prompt.ts)
