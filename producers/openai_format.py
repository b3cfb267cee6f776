"""Turnout's answers in OpenAI's output format: one place for the gateway and batch jobs.

``completion_body`` is an answered request as OpenAI's ``chat.completion`` (``model`` the
fleet model that answered, never ``auto``; ``content`` a string, ``""`` when there is
none), ``completion_chunk`` and ``usage_chunk`` the pieces of a streamed one, ``usage``
OpenAI's token counts. ``error_kind`` gives each Turnout error code (``ErrorInfo.code``)
the HTTP status the OpenAI SDKs turn into their exception classes, with OpenAI's error
``type``; ``error_body`` is OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

The statuses: 400 ``BadRequestError``, 403 ``PermissionDeniedError`` (the tenant's policy
forbids every deployment that could serve the request), 404 ``NotFoundError``, 429
``RateLimitError`` (a spent budget as OpenAI's own ``insufficient_quota``), 503 (no route
matches), 504 (a deadline passed), and 502 for every other code: the backends failed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from turnout.schemas.models import InferenceResponse

__all__ = ["ErrorKind", "completion_body", "completion_chunk", "error_body", "error_kind", "finish_reason", "usage", "usage_chunk"]

_FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})  # the backends already speak OpenAI's names


class ErrorKind(NamedTuple):
    """How an error code is answered: its status, OpenAI's error type, whether a retry may
    help (``None``: let the client decide by the status) and the parameter it is about."""

    status: int
    type: str
    retry: bool | None = None
    param: str | None = None


_ERRORS: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(400, "invalid_request_error", False),
    "no_capable_model": ErrorKind(400, "invalid_request_error", False),
    "unknown_model": ErrorKind(404, "invalid_request_error", False, "model"),
    "unknown_reply_topic": ErrorKind(400, "invalid_request_error", False, "reply_topic"),
    "policy_refused": ErrorKind(403, "permission_error", False),
    "budget_exceeded": ErrorKind(429, "insufficient_quota", False),
    "rate_limited": ErrorKind(429, "rate_limit_error"),
    "no_route": ErrorKind(503, "server_error", False),
    "deadline_exceeded": ErrorKind(504, "timeout_error"),
    "timeout": ErrorKind(504, "timeout_error"),
}
BACKEND_FAILURE = ErrorKind(502, "server_error")  # every other code: the backends failed to answer


def error_kind(code: str | None) -> ErrorKind:
    return _ERRORS.get(code or "", BACKEND_FAILURE)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def usage(response: InferenceResponse) -> dict[str, int]:
    prompt, answer = (response.usage.input_tokens, response.usage.output_tokens) if response.usage else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}


def finish_reason(reason: str | None) -> str:
    """One of OpenAI's finish reasons (``stop`` for none, or for one it does not name)."""
    return reason if reason is not None and reason in _FINISH_REASONS else "stop"


def completion_body(response: InferenceResponse) -> dict[str, Any]:
    """An answered chat request as OpenAI's ``chat.completion``."""
    return {
        "id": f"chatcmpl-{response.id}",
        "object": "chat.completion",
        "created": int(response.created_at.timestamp()),
        "model": response.model or "",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.content or "", "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(response.finish_reason),
            }
        ],
        "usage": usage(response),
        "system_fingerprint": None,
    }


def completion_chunk(request_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One server-sent ``chat.completion.chunk`` of a streamed answer."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "system_fingerprint": None,
    }


def usage_chunk(response: InferenceResponse, created: int) -> dict[str, Any]:
    """The last chunk when the caller asked for ``stream_options.include_usage``: no choices, the usage."""
    return {"id": f"chatcmpl-{response.id}", "object": "chat.completion.chunk", "created": created, "model": response.model or "", "choices": [], "usage": usage(response)}
