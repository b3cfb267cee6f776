"""The Anthropic Messages wire format of the simulator (``POST /v1/messages``).

It checks what the real API checks first (an ``x-api-key``, an ``anthropic-version``,
a ``max_tokens``), answers a ``message`` with text or, for a forced tool, a ``tool_use``
block, ``stop_reason`` ``end_turn``/``max_tokens``/``tool_use`` and ``usage`` in input and
output tokens, and errors as ``{"type": "error", "error": {"type", "message"}}`` with
Anthropic's statuses (an overloaded deployment answers 529, not 503). With ``stream:
true`` the same message comes as Anthropic's named events: ``message_start``,
``content_block_start``, a ``ping``, one ``content_block_delta`` per token (``text_delta``,
or ``input_json_delta`` pieces of a tool's input), ``content_block_stop``,
``message_delta`` (stop reason, output tokens) and ``message_stop``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from .sim_faults import Failure
from .sim_wire import Answer, BadRequest, SimCall, StreamEvents, Structured, messages_of, pieces, prompt_tokens, request_body, sse, text_of

__all__ = ["AnthropicMessages"]

_ERRORS: dict[Failure, tuple[int, str, str]] = {
    Failure.RATE_LIMITED: (429, "rate_limit_error", "Number of requests has exceeded your rate limit."),
    Failure.SERVER_ERROR: (500, "api_error", "Internal server error"),
    Failure.BAD_GATEWAY: (502, "api_error", "Bad gateway"),
    Failure.UNAVAILABLE: (529, "overloaded_error", "Overloaded"),
    Failure.INVALID_REQUEST: (400, "invalid_request_error", "Invalid request"),
    Failure.AUTHENTICATION: (401, "authentication_error", "invalid x-api-key"),
}


class AnthropicMessages:
    name = "anthropic"
    batched = False

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> SimCall:
        if not headers.get("x-api-key") and not headers.get("authorization"):
            raise BadRequest("x-api-key header is required", failure=Failure.AUTHENTICATION)
        if not headers.get("anthropic-version"):
            raise BadRequest("anthropic-version: header is required")
        body, model = request_body(raw)
        limit = body.get("max_tokens")
        if limit is None:
            raise BadRequest("max_tokens: Field required", param="max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("max_tokens: Input should be a positive integer", param="max_tokens")
        messages = messages_of(body)
        system = text_of(body.get("system"))
        texts = [system, *(text_of(m.get("content")) for m in messages)]
        return SimCall(
            model=model,
            prompt_tokens=prompt_tokens(texts, len(messages)),
            last_text=texts[-1],
            max_tokens=limit,
            structured=_structured(body),
            stream=body.get("stream") is True,
        )

    def render(self, call: SimCall, answer: Answer) -> dict[str, Any]:
        # a tool's input travels as a parsed object: an answer that is not exact JSON
        # (near-JSON, cut short) or not an object can only go out as text
        if answer.tool is not None and answer.exact and isinstance(answer.document, dict):
            block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": answer.tool, "input": answer.document}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": answer.text}, "max_tokens" if answer.cut else "end_turn"
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": call.prompt_tokens, "output_tokens": answer.tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def render_stream(self, call: SimCall, answer: Answer) -> StreamEvents:
        """``render``'s message as Anthropic streams it: gathered, the events give it back."""
        whole = self.render(call, answer)
        block, usage = whole["content"][0], whole["usage"]
        start = {**whole, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces(json.dumps(block["input"], ensure_ascii=False))]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces(block["text"])]
        events = [_event("content_block_delta", index=0, delta=delta) for delta in deltas]
        head = [_event("message_start", message=start), _event("content_block_start", index=0, content_block=opening), _event("ping"), events[0]]
        tail = [
            *events[1:],
            _event("content_block_stop", index=0),
            _event("message_delta", delta={"stop_reason": whole["stop_reason"], "stop_sequence": None}, usage={"output_tokens": usage["output_tokens"]}),
            _event("message_stop"),
        ]
        return StreamEvents(head, tail)

    def error(self, failure: Failure, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
        status, kind, default = _ERRORS[failure]
        return status, {"type": "error", "error": {"type": kind, "message": message or default}}


def _event(kind: str, **fields: Any) -> bytes:
    """An Anthropic stream event: named, its JSON repeating the name as ``type``."""
    return sse({"type": kind, **fields}, event=kind)


def _structured(body: dict[str, Any]) -> Structured | None:
    """A forced tool (``tool_choice`` ``tool`` by name, or ``any``), else the structured
    outputs format (``output_config.format`` with a JSON schema)."""
    tools = {t["name"]: t.get("input_schema") for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)}
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        name = choice.get("name")
        if name not in tools:
            raise BadRequest(f"tool_choice.name: tool {name!r} is not in tools", param="tool_choice")
        return Structured.of(tools[name], "tools.input_schema", tool=name)
    if kind == "any" and tools:
        name = next(iter(tools))
        return Structured.of(tools[name], "tools.0.input_schema", tool=name, named=False)
    output = body.get("output_config") or {}
    spec = output.get("format") if isinstance(output, dict) else None
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        return Structured.of(spec.get("schema"), "output_config.format.schema")
    return None
