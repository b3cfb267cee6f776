"""The OpenAI chat-completions wire format of the simulator (``POST /v1/chat/completions``).

Faithful where clients look: a ``chat.completion`` with ``usage``, ``finish_reason``
``"length"`` when ``max_completion_tokens`` (or the older ``max_tokens``) cuts the answer,
structured output through ``response_format`` (``json_schema`` or ``json_object``) or a
forced function tool, and errors as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from .sim_faults import Failure
from .sim_wire import Answer, BadRequest, SimCall, Structured, messages_of, prompt_tokens, request_body, text_of

__all__ = ["OpenAIChat"]

# status, type, code and the message a real deployment sends, per failure
_ERRORS: dict[Failure, tuple[int, str, str, str]] = {
    Failure.RATE_LIMITED: (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    Failure.SERVER_ERROR: (500, "server_error", "internal_error", "The server had an error while processing your request."),
    Failure.BAD_GATEWAY: (502, "server_error", "bad_gateway", "Bad gateway."),
    Failure.UNAVAILABLE: (503, "server_error", "service_unavailable", "The engine is currently overloaded, please try again later."),
    Failure.INVALID_REQUEST: (400, "invalid_request_error", "invalid_request", "Invalid request."),
    Failure.AUTHENTICATION: (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


class OpenAIChat:
    name = "openai"

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> SimCall:
        body, model = request_body(raw)
        messages = messages_of(body)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))  # the current name first
        return SimCall(
            model=model,
            prompt_tokens=prompt_tokens([text_of(m.get("content")) for m in messages], len(messages)),
            last_text=text_of(messages[-1].get("content")),
            max_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None,
            structured=_structured(body),
        )

    def render(self, call: SimCall, answer: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
        finish = "stop"
        if answer.tool is not None:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            message["content"] = None
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": {"name": answer.tool, "arguments": answer.text}}]
            # OpenAI finishes a call forced by name with "stop", one forced by "required" with "tool_calls"
            finish = "stop" if call.structured and call.structured.named else "tool_calls"
        usage = {"prompt_tokens": call.prompt_tokens, "completion_tokens": answer.tokens, "total_tokens": call.prompt_tokens + answer.tokens}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": "turnout-simulator",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "length" if answer.cut else finish}],
            "usage": usage,
        }

    def error(self, failure: Failure, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
        status, kind, code, default = _ERRORS[failure]
        return status, {"error": {"message": message or default, "type": kind, "param": param, "code": code}}


def _structured(body: dict[str, Any]) -> Structured | None:
    """The schema the answer must satisfy: ``response_format`` first, then a forced tool."""
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict):
                raise BadRequest("response_format.json_schema must be an object with the JSON schema in 'schema'", param="response_format")
            return Structured.of(spec.get("schema", _ANY_OBJECT), "response_format.json_schema.schema")
        if kind == "json_object":
            return Structured.of(_ANY_OBJECT, "response_format")
        if kind != "text":
            raise BadRequest(f"response_format.type must be 'text', 'json_object' or 'json_schema', not {kind!r}", param="response_format")
    return _forced_tool(body.get("tools"), body.get("tool_choice"))


def _forced_tool(tools: Any, choice: Any) -> Structured | None:
    functions = {
        t["function"]["name"]: t["function"].get("parameters", _ANY_OBJECT)
        for t in tools or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
    }
    if choice == "required" and functions:
        name = next(iter(functions))
        return Structured.of(functions[name], "tools[0].function.parameters", tool=name, named=False)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in functions:
            raise BadRequest(f"tool_choice names function {name!r}, which is not in tools", param="tool_choice")
        return Structured.of(functions[name], "tools.function.parameters", tool=name)
    return None
