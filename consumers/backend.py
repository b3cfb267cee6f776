"""The OpenAI chat-completions wire format over httpx: one seam for every backend.

OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp's server, TGI and Turnout's simulator all
speak it. Errors are classified once, here, into retryable or not, so the worker's retry
policy never looks at HTTP details.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from turnout.schemas.models import ChatMessage, InferenceRequest


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float


class BackendError(Exception):
    """A failed call; ``code`` is stable, ``retryable`` says whether trying again may help."""

    def __init__(self, code: str, message: str, *, retryable: bool, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class ChatBackend(Protocol):
    provider: str

    async def complete(self, request: InferenceRequest) -> Completion: ...

    async def aclose(self) -> None: ...


class OpenAIChatBackend:
    """POST ``{base_url}/chat/completions``; the API key is sent, never logged."""

    def __init__(
        self,
        base_url: str,
        served_model: str,
        *,
        provider: str = "openai-compatible",
        api_key: SecretStr | None = None,
        timeout_s: float = 30.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self._served_model = served_model
        self._secret = api_key.get_secret_value() if api_key else None
        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def body(self, request: InferenceRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._served_model,
            "messages": [_openai_message(m) for m in request.messages],
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = json.loads(request.tools)
        if request.response_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": json.loads(request.response_schema), "strict": True},
            }
        return body

    async def complete(self, request: InferenceRequest) -> Completion:
        try:
            return await self._complete(request)
        except BackendError as exc:
            if self._secret and self._secret in exc.message:  # a backend that echoes the key back
                exc.message = exc.message.replace(self._secret, "***")
                exc.args = (exc.message,)
            raise

    async def _complete(self, request: InferenceRequest) -> Completion:
        started = time.perf_counter()
        try:
            response = await self._http.post("/chat/completions", json=self.body(request))
        except httpx.TimeoutException as exc:
            raise BackendError("timeout", f"backend timed out: {type(exc).__name__}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise BackendError("backend_unreachable", f"backend unreachable: {exc}", retryable=True) from exc
        except httpx.RequestError as exc:  # e.g. a body that does not decode with its Content-Encoding
            raise BackendError("malformed_response", f"backend response unreadable: {exc}", retryable=True) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 400:
            raise _http_error(response)
        return _parse_completion(response, latency_ms)


def _openai_message(message: ChatMessage) -> dict[str, Any]:
    """A turn in the OpenAI format; a turn with images becomes a list of content parts."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["content"] = [{"type": "text", "text": message.content}] + [
            {"type": "image_url", "image_url": {"url": url}} for url in message.images
        ]
    if message.name is not None:
        out["name"] = message.name
    return out


def _http_error(response: httpx.Response) -> BackendError:
    status = response.status_code
    detail = _error_message(response)
    if status == 429:
        return BackendError("rate_limited", f"429 from backend: {detail}", retryable=True, status=status, retry_after_s=_retry_after(response))
    if status >= 500:
        return BackendError("backend_error", f"{status} from backend: {detail}", retryable=True, status=status)
    return BackendError("backend_rejected", f"{status} from backend: {detail}", retryable=False, status=status)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:500]
    except Exception:
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    for header in ("retry-after-ms", "retry-after"):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return None  # an HTTP-date: let the backoff decide
        return seconds / 1000 if header == "retry-after-ms" else seconds
    return None


def _parse_completion(response: httpx.Response, latency_ms: float) -> Completion:
    """Read a chat completion defensively: a 200 from a proxy or a broken server may be anything."""
    try:
        payload = response.json()
        choice = payload["choices"][0]
        message, usage = choice["message"], payload.get("usage") or {}
        content = message.get("content") or ""
        if not isinstance(content, str) or not isinstance(usage, dict):
            raise TypeError(f"content is {type(content).__name__}, usage is {type(usage).__name__}")
        return Completion(
            content=content,
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=latency_ms,
        )
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise BackendError(
            "malformed_response", f"backend answered 200 with a body that is not a chat completion: {exc!r}", retryable=True
        ) from exc
