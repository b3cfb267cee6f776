"""``BackendError``, the one failure a worker sees from a backend call, and the reading
of the error events a stream may carry after its 200.

Apart from ``backend`` so that the streaming helpers (``streaming``) and the adapters
can both raise it without importing each other; ``backend`` re-exports it.
"""

from __future__ import annotations


class BackendError(Exception):
    """A failed call; ``code`` is stable, ``retryable`` says whether trying again may help."""

    def __init__(self, code: str, message: str, *, retryable: bool, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


_REJECTED_KINDS = frozenset(
    {
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error", "request_too_large",
        "INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND",
    }
)
_RATE_LIMIT_KINDS = frozenset({"rate_limit_error", "rate_limit_exceeded", "requests", "tokens", "RESOURCE_EXHAUSTED"})


def stream_error(kind: str, message: str) -> BackendError:
    """An error event inside a stream that had begun with a 200 (Anthropic's ``event:
    error``, an ``error`` object in an OpenAI or Gemini chunk), classified by its type as
    the same error would be by its HTTP status: a rejected request is not retried, a rate
    limit and an overloaded or failing server are."""
    detail = f"error event in the stream: {kind}: {message}"[:500]
    if kind in _REJECTED_KINDS:
        return BackendError("backend_rejected", detail, retryable=False)
    if kind in _RATE_LIMIT_KINDS:
        return BackendError("rate_limited", detail, retryable=True)
    return BackendError("backend_error", detail, retryable=True)
