"""The Gemini API (``POST {base_url}/models/{model}:generateContent``) behind the ``ChatBackend`` seam.

Where it differs from OpenAI's format: the system prompt is ``systemInstruction``, the
assistant is role ``model``, turns are lists of parts (``inlineData`` for a base64 image,
``fileData`` for a URL), options live in ``generationConfig`` and a response schema is
``responseJsonSchema`` with a JSON MIME type. The key travels in the ``x-goog-api-key``
header, never in the URL, so it cannot reach an access log or an exception message.

Embeddings go to ``:batchEmbedContents``, one ``requests[]`` entry per text, in one call;
the answer's ``embeddings[i].values`` follow the order of the requests. The Gemini API
reports no usage there (``usageMetadata`` is read when present), so the worker bills
such a call at the router's token count.

Streamed, a call goes to ``:streamGenerateContent?alt=sse``: each event is a
``GenerateContentResponse`` holding the next parts of the candidate; the last one has its
``finishReason`` and the final ``usageMetadata`` (there is no end-of-stream event, so a
stream without a finish reason was cut). ``GeminiStream`` rebuilds the whole response.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import httpx

from turnout.schemas.models import InferenceRequest

from .backend import (
    Answer,
    Embeddings,
    HttpChatBackend,
    count,
    error_object,
    in_order,
    function_tools,
    image_source,
    response_schema,
    retry_after_header,
    sampling,
    system_text,
    text,
    turns,
)
from .confidence import from_gemini_candidate
from .errors import stream_error
from .sse import SseEvent
from .streaming import event_json

# Reasons Google stops a candidate for what it says rather than how long it is.
_FILTERED = frozenset(
    {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
        "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK",
    }
)
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")


class GeminiBackend(HttpChatBackend):
    """``served_model`` is the Gemini model name, with or without its ``models/`` prefix."""

    default_provider = "gemini"

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"x-goog-api-key": secret}

    def endpoint(self) -> str:
        return f"/{self._model_path}:generateContent"

    def stream_endpoint(self) -> str:
        return f"/{self._model_path}:streamGenerateContent?alt=sse"

    def ask_stream(self, body: dict[str, Any]) -> None:
        """Nothing in the body: streaming is the endpoint (``stream_endpoint``)."""

    def assembler(self) -> GeminiStream:
        return GeminiStream()

    @property
    def _model_path(self) -> str:
        return f"models/{self._served_model.removeprefix('models/')}"

    def embedding_endpoint(self) -> str:
        return f"/{self._model_path}:batchEmbedContents"

    def embedding_body(self, texts: list[str]) -> dict[str, Any]:
        return {"requests": [{"model": self._model_path, "content": {"parts": [_text(t)]}} for t in texts]}

    def read_embeddings(self, payload: Any, texts: list[str]) -> Embeddings:
        embeddings = payload["embeddings"]
        if not isinstance(embeddings, list):
            raise TypeError(f"embeddings is {type(embeddings).__name__}")
        usage = payload.get("usageMetadata") or {}
        return Embeddings(in_order({i: e["values"] for i, e in enumerate(embeddings)}, len(texts)), count(usage.get("promptTokenCount")))

    def body(self, request: InferenceRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "contents": [
                {"role": role, "parts": parts}
                for role, parts in turns(request.messages, assistant="model", image=_image, text_part=_text)
            ]
        }
        system = system_text(request.messages)
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = sampling(request, max_tokens="maxOutputTokens", stop="stopSequences", temperature="temperature")
        schema = response_schema(request)
        if schema is not None:  # full JSON Schema; the older responseSchema takes only an OpenAPI subset
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = schema
        if config:
            body["generationConfig"] = config
        tools = function_tools(request)
        if tools:
            body["tools"] = [{"functionDeclarations": [_declaration(t.name, t.description, t.parameters) for t in tools]}]
        return body

    def read(self, payload: Any, request: InferenceRequest) -> Answer:
        usage = payload.get("usageMetadata") or {}
        if not isinstance(usage, dict):
            raise TypeError(f"usageMetadata is {type(usage).__name__}")
        input_tokens = count(usage.get("promptTokenCount")) + count(usage.get("toolUsePromptTokenCount"))
        output_tokens = count(usage.get("candidatesTokenCount")) + count(usage.get("thoughtsTokenCount"))  # thinking is billed as output
        candidates = payload.get("candidates") or []
        if not candidates:
            if not (payload.get("promptFeedback") or {}).get("blockReason"):
                raise LookupError("no candidates and no promptFeedback.blockReason")
            return Answer("", "content_filter", input_tokens, output_tokens)  # the prompt itself was blocked
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        answer = "".join(text(p.get("text")) for p in parts if not p.get("thought"))
        finish_reason = _finish_reason(candidate.get("finishReason") or "STOP", parts)
        return Answer(answer, finish_reason, input_tokens, output_tokens, from_gemini_candidate(candidate))

    def ask_logprobs(self, body: dict[str, Any]) -> None:
        """``responseLogprobs``: the candidate then carries ``avgLogprobs``."""
        body.setdefault("generationConfig", {})["responseLogprobs"] = True

    def retry_after(self, response: httpx.Response) -> float | None:
        """Google puts the wait in the error body (``RetryInfo.retryDelay``, e.g. ``"17s"``), not in a header."""
        header = retry_after_header(response)
        if header is not None:
            return header
        details = (error_object(response) or {}).get("details")
        if not isinstance(details, list):
            return None
        delay = next((d.get("retryDelay") for d in details if isinstance(d, dict) and d.get("@type") == _RETRY_INFO), None)
        match = _DELAY.fullmatch(str(delay))
        return float(match[1]) if match else None


class GeminiStream:
    """``GenerateContentResponse`` chunks into one: the first candidate's parts in order
    (``read`` joins their text), the last ``finishReason``, ``usageMetadata`` and
    ``avgLogprobs`` seen (the final chunk's hold the whole answer's), and a
    ``promptFeedback``, whose ``blockReason`` ends a stream that has no candidates."""

    def __init__(self) -> None:
        self.done = False
        self._parts: list[dict[str, Any]] = []
        self._candidate: dict[str, Any] | None = None
        self._response: dict[str, Any] = {}

    def feed(self, event: SseEvent) -> str | None:
        chunk = event_json(event.data)
        error = chunk.get("error")
        if error:
            raise stream_error(str(error.get("status") or error.get("code") or "error"), str(error.get("message", "")))
        for key in ("usageMetadata", "promptFeedback", "modelVersion"):
            if key in chunk:
                self._response[key] = chunk[key]
        if (chunk.get("promptFeedback") or {}).get("blockReason"):
            self.done = True
        candidates = chunk.get("candidates") or []
        if not candidates:
            return None
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        self._parts.extend(parts)
        self._candidate = {**(self._candidate or {}), **{k: v for k, v in candidate.items() if k != "content"}}
        if candidate.get("finishReason"):
            self.done = True
        texts = [p["text"] for p in parts if p.get("text") and not p.get("thought")]
        if texts:
            return "".join(texts)
        return "" if any("functionCall" in p for p in parts) else None

    def payload(self) -> dict[str, Any]:
        candidates = [] if self._candidate is None else [{**self._candidate, "content": {"role": "model", "parts": self._parts}}]
        return {**self._response, "candidates": candidates}


def _finish_reason(reason: str, parts: list[dict[str, Any]]) -> str:
    """OpenAI's names: Gemini says STOP after a function call too, where OpenAI says tool_calls."""
    if reason == "STOP":
        return "tool_calls" if any("functionCall" in p for p in parts) else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    return "content_filter" if reason in _FILTERED else str(reason).lower()


def _text(content: str) -> dict[str, Any]:
    return {"text": content}


def _image(url: str) -> dict[str, Any]:
    source = image_source(url)
    if isinstance(source, str):
        file_data = {"fileUri": source}
        guessed, _ = mimetypes.guess_type(httpx.URL(source).path)
        if guessed:
            file_data["mimeType"] = guessed
        return {"fileData": file_data}
    mime_type, data = source
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _declaration(name: str, description: str | None, parameters: dict[str, Any]) -> dict[str, Any]:
    """``parametersJsonSchema`` takes the OpenAI tool's JSON Schema as it is (``parameters`` wants an OpenAPI subset)."""
    declaration: dict[str, Any] = {"name": name, "parametersJsonSchema": parameters}
    if description:
        declaration["description"] = description
    return declaration
