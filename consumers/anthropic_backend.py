"""The Anthropic Messages API (``POST {base_url}/messages``) behind the ``ChatBackend`` seam.

Where it differs from OpenAI's format: the system prompt is a top-level field, user and
assistant turns must alternate, ``max_tokens`` is required, images are content blocks
with a base64 or URL source, and there is no JSON-schema response format, so a schema is
enforced with one forced tool (``respond``) whose input is the answer.

Streamed (``stream: true``), the answer comes as named events: ``message_start`` (the
message, its input usage), per content block ``content_block_start``, its
``content_block_delta``s (``text_delta``, or ``input_json_delta`` pieces of a tool's
input) and ``content_block_stop``, then ``message_delta`` (stop reason, output usage so
far) and ``message_stop``; ``ping``s between, and an ``error`` event when the call fails
after its 200 (``overloaded_error`` most often). ``AnthropicStream`` rebuilds the message.
"""

from __future__ import annotations

import json
from typing import Any

from typing_extensions import Unpack

from turnout.schemas.models import InferenceRequest

from .backend import (
    Answer,
    HttpChatBackend,
    HttpOptions,
    count,
    function_tools,
    image_source,
    response_schema,
    sampling,
    system_text,
    text,
    turns,
)
from .errors import stream_error
from .sse import SseEvent
from .streaming import event_json

ANTHROPIC_VERSION = "2023-06-01"
RESPOND_TOOL = "respond"  # the forced tool that carries a schema-shaped answer

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicMessagesBackend(HttpChatBackend):
    """``x-api-key`` and ``anthropic-version`` headers; ``max_output_tokens`` fills the
    required ``max_tokens`` when a request leaves it unset."""

    default_provider = "anthropic"
    fixed_headers = {"anthropic-version": ANTHROPIC_VERSION}

    def __init__(self, base_url: str, served_model: str, *, max_output_tokens: int, **options: Unpack[HttpOptions]) -> None:
        super().__init__(base_url, served_model, **options)
        self._max_output_tokens = max_output_tokens

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"x-api-key": secret}

    def endpoint(self) -> str:
        return "/messages"

    def body(self, request: InferenceRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._served_model,
            "messages": [
                {"role": role, "content": blocks}
                for role, blocks in turns(request.messages, assistant="assistant", image=_image, text_part=_text)
            ],
        }
        body.update(sampling(request, max_tokens="max_tokens", stop="stop_sequences", temperature="temperature"))
        body.setdefault("max_tokens", self._max_output_tokens)  # required by Anthropic
        system = system_text(request.messages)
        if system is not None:
            body["system"] = system
        tools = [_tool(t.name, t.description, t.parameters) for t in function_tools(request)]
        schema = response_schema(request)
        if schema is not None:  # the answer must fit the schema, so the caller's tools could never be called
            tools = [_tool(RESPOND_TOOL, "Give the answer in the required shape.", schema)]
            body["tool_choice"] = {"type": "tool", "name": RESPOND_TOOL}
        if tools:
            body["tools"] = tools
        return body

    def ask_stream(self, body: dict[str, Any]) -> None:
        body["stream"] = True

    def assembler(self) -> AnthropicStream:
        return AnthropicStream()

    def read(self, payload: Any, request: InferenceRequest) -> Answer:
        blocks, usage = payload["content"], payload.get("usage") or {}
        if not isinstance(blocks, list) or not isinstance(usage, dict):
            raise TypeError(f"content is {type(blocks).__name__}, usage is {type(usage).__name__}")
        stop_reason = payload.get("stop_reason")
        finish_reason = _FINISH.get(stop_reason, stop_reason) if stop_reason else "stop"
        answer = "".join(text(b.get("text")) for b in blocks if b["type"] == "text")
        if request.response_schema:
            respond = next((b for b in blocks if b["type"] == "tool_use" and b["name"] == RESPOND_TOOL), None)
            if respond is not None:
                answer = json.dumps(respond["input"], ensure_ascii=False)
                finish_reason = "stop" if finish_reason == "tool_calls" else finish_reason
        return Answer(
            content=answer,
            finish_reason=finish_reason,
            input_tokens=count(usage.get("input_tokens"))
            + count(usage.get("cache_creation_input_tokens"))
            + count(usage.get("cache_read_input_tokens")),
            output_tokens=count(usage.get("output_tokens")),
        )


class AnthropicStream:
    """A Messages stream's events into the ``message`` an unstreamed call answers: blocks
    by their ``index``, each block's text deltas joined (a tool's ``partial_json`` pieces
    parsed) once it stops, usage from ``message_start`` updated by ``message_delta`` (whose
    counts are cumulative). Thinking deltas are not answer content."""

    _CONTENT_DELTAS = {"text_delta": "text", "input_json_delta": "partial_json"}

    def __init__(self) -> None:
        self.done = False
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._pieces: dict[int, list[str]] = {}  # a block's deltas until it stops: joined once, not per delta

    def feed(self, event: SseEvent) -> str | None:
        data = event_json(event.data)
        kind = data.get("type", event.event)
        if kind == "error":
            error = data.get("error") or {}
            raise stream_error(str(error.get("type", "error")), str(error.get("message", "")))
        if kind == "message_start":
            self._message = {**data["message"], "content": []}
        elif kind == "content_block_start":
            self._blocks[data["index"]] = dict(data["content_block"])
        elif kind == "content_block_delta":
            return self._delta(data["index"], data["delta"])
        elif kind == "content_block_stop":
            self._close(self._blocks[data["index"]], "".join(self._pieces.pop(data["index"], ())))
        elif kind == "message_delta":
            self._message.update(data.get("delta") or {})
            self._message["usage"] = {**(self._message.get("usage") or {}), **(data.get("usage") or {})}
        elif kind == "message_stop":
            self.done = True
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> str | None:
        key = self._CONTENT_DELTAS.get(delta["type"])
        if key is None:  # thinking, signature, citations: not the answer
            return None
        piece = delta[key]
        self._pieces.setdefault(index, []).append(piece)
        if not piece:
            return None
        return piece if key == "text" else ""  # a tool's input is content, not text

    @staticmethod
    def _close(block: dict[str, Any], streamed: str) -> None:
        """A block complete: its text, or a tool's input parsed (an empty one is ``{}``)."""
        if block["type"] == "text":
            block["text"] = block.get("text", "") + streamed
        elif block["type"] == "tool_use" and streamed:
            block["input"] = json.loads(streamed)

    def payload(self) -> dict[str, Any]:
        return {**self._message, "content": [self._blocks[i] for i in sorted(self._blocks)]}


def _tool(name: str, description: str | None, input_schema: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": name, "input_schema": input_schema}
    if description:
        tool["description"] = description
    return tool


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "text": content}


def _image(url: str) -> dict[str, Any]:
    source = image_source(url)
    if isinstance(source, str):
        return {"type": "image", "source": {"type": "url", "url": source}}
    media_type, data = source
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
