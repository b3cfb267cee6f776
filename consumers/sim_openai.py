"""The OpenAI wire format of the simulator: chat completions (``POST /v1/chat/completions``)
and embeddings (``POST /v1/embeddings``).

Faithful where clients look: a ``chat.completion`` with ``usage``, ``finish_reason``
``"length"`` when ``max_completion_tokens`` (or the older ``max_tokens``) cuts the answer,
structured output through ``response_format`` (``json_schema`` or ``json_object``) or a
forced function tool, token ``logprobs`` when asked for, and errors as ``{"error": {"message", "type", "param", "code"}}``;
with ``stream: true``, the same answer as ``chat.completion.chunk`` events (a role chunk,
one chunk per token with its logprobs, a finish chunk, with ``stream_options.include_usage``
a last chunk with no choices and the usage, then ``data: [DONE]``);
an embeddings ``list`` with one ``embedding`` per input in input order, as floats or as
base64 float32 (``encoding_format``, which the official SDK sets to base64), and usage.
"""

from __future__ import annotations

import array
import base64
import json
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .sim_faults import Failure
from .sim_wire import (
    Answer,
    BadRequest,
    EmbeddingCall,
    SimCall,
    StreamEvents,
    Structured,
    messages_of,
    pieces,
    prompt_tokens,
    request_body,
    sse,
    text_of,
    token_logprobs,
)

__all__ = ["OpenAIChat", "OpenAIEmbeddings"]

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
_SLOT = "\x00"  # where a chunk's choice goes in its encoded frame: a NUL, which no id or model name holds
_SLOT_JSON = json.dumps(_SLOT)


class OpenAIChat:
    name = "openai"
    batched = False

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> SimCall:
        body, model = request_body(raw)
        messages = messages_of(body)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))  # the current name first
        options = body.get("stream_options")
        return SimCall(
            model=model,
            prompt_tokens=prompt_tokens([text_of(m.get("content")) for m in messages], len(messages)),
            last_text=text_of(messages[-1].get("content")),
            max_tokens=limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None,
            structured=_structured(body),
            logprobs=body.get("logprobs") is True,
            stream=body.get("stream") is True,
            stream_usage=isinstance(options, dict) and options.get("include_usage") is True,
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
            "choices": [{"index": 0, "message": message, "logprobs": _logprobs(answer) if call.logprobs else None, "finish_reason": "length" if answer.cut else finish}],
            "usage": usage,
        }

    def render_stream(self, call: SimCall, answer: Answer) -> StreamEvents:
        """``render``'s answer as OpenAI streams it: the same id, text, logprobs, finish
        reason and usage, so that a client gathering the chunks gets ``render``'s body."""
        whole = self.render(call, answer)
        choice, message = whole["choices"][0], whole["choices"][0]["message"]
        frame = {key: whole[key] for key in ("id", "created", "model", "system_fingerprint")} | {"object": "chat.completion.chunk"}
        usage = {"usage": None} if call.stream_usage else {}
        # every chunk is the same frame around its choice: encoded once, the choice spliced
        # in (json.dumps of the whole chunk per token was most of a streamed call's CPU)
        before, after = json.dumps({**frame, "choices": [_SLOT], **usage}, ensure_ascii=False, separators=(",", ":")).split(_SLOT_JSON)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None) -> bytes:
            choice = json.dumps({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}, ensure_ascii=False, separators=(",", ":"))
            return sse(before + choice + after)

        opening = {"role": "assistant", "content": "", "refusal": None}
        if message.get("tool_calls"):
            call_ = message["tool_calls"][0]
            opening = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call_, "function": {"name": call_["function"]["name"], "arguments": ""}}]}
            tokens = [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces(answer.text)]
        else:
            tokens = [
                chunk({"content": piece}, logprobs={"content": [_token(piece, logprob)], "refusal": None} if call.logprobs else None)
                for piece, logprob in token_logprobs(answer)
            ]
        tail = tokens[1:] + [chunk({}, choice["finish_reason"])]
        if call.stream_usage:
            tail.append(sse({**frame, "choices": [], "usage": whole["usage"]}))
        return StreamEvents(head=[chunk(opening), tokens[0]], tail=[*tail, sse("[DONE]")])

    def error(self, failure: Failure, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
        status, kind, code, default = _ERRORS[failure]
        return status, {"error": {"message": message or default, "type": kind, "param": param, "code": code}}


class OpenAIEmbeddings(OpenAIChat):
    """``POST /v1/embeddings``: ``input`` is one text or an array of them; errors as for
    chat. A batching client names every request of a call in its ``X-Client-Request-Id``."""

    batched = True

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> SimCall:
        body, model = request_body(raw)
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise BadRequest("input must be a non-empty string or a non-empty array of non-empty strings", param="input")
        dimensions = body.get("dimensions")
        if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
            raise BadRequest("dimensions must be a positive integer", param="dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise BadRequest(f"encoding_format must be 'float' or 'base64', not {encoding!r}", param="encoding_format")
        return SimCall(
            model=model,
            prompt_tokens=prompt_tokens(texts, 0),
            last_text=texts[-1],
            max_tokens=None,
            embedding=EmbeddingCall(tuple(texts), dimensions, encoding == "base64"),
        )

    def render(self, call: SimCall, answer: Answer) -> dict[str, Any]:
        wanted_base64 = call.embedding is not None and call.embedding.base64
        data = [
            {"object": "embedding", "index": index, "embedding": _base64_float32(vector) if wanted_base64 else vector}
            for index, vector in enumerate(answer.vectors)
        ]
        usage = {"prompt_tokens": call.prompt_tokens, "total_tokens": call.prompt_tokens}
        return {"object": "list", "data": data, "model": call.model, "usage": usage}


def _logprobs(answer: Answer) -> dict[str, Any]:
    """``choices[].logprobs`` as OpenAI sends it when the call sets ``logprobs: true``
    (no ``top_logprobs`` asked: each token's alternatives are an empty list)."""
    return {"content": [_token(token, logprob) for token, logprob in token_logprobs(answer)], "refusal": None}


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


def _base64_float32(vector: list[float]) -> str:
    """The vector as OpenAI sends it with ``encoding_format=base64``: little-endian float32."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


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
