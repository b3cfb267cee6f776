"""Every failure the gateway answers, as OpenAI answers it: an HTTP status and
``{"error": {"message", "type", "param", "code"}}``.

The statuses are the ones the OpenAI SDKs turn into their exception classes, so a caller
catches what it already knows: 400 ``BadRequestError``, 401 ``AuthenticationError``, 403
``PermissionDeniedError`` (the tenant's policy forbids every deployment that could serve
the request), 404 ``NotFoundError`` (a model not in the fleet), 429 ``RateLimitError``
(rate limits, and a spent budget as OpenAI's own ``insufficient_quota``), 502/503
``InternalServerError`` (the backends failed; no route), 504 (no answer in time). The
``code`` is Turnout's stable error code where there is one.

The SDKs retry 429 and 5xx on their own; an error that retrying cannot cure (a spent
budget) carries ``x-should-retry: false``, which they obey.
"""

from __future__ import annotations

from turnout.schemas.models import ErrorInfo


class ApiError(Exception):
    """A failed call: raise it anywhere in a handler; the app answers it in OpenAI's format."""

    def __init__(self, status: int, message: str, *, type: str, code: str | None = None, param: str | None = None, retry: bool | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry = retry  # None: let the client decide by the status
        self.extra_headers: dict[str, str] = {}  # e.g. the routing headers of a refused request

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {} if self.retry is None else {"x-should-retry": "true" if self.retry else "false"}


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def unknown_model(model: str, known: list[str]) -> ApiError:
    return ApiError(
        404,
        f"The model '{model}' does not exist: use 'auto' (the router chooses) or one of {', '.join(known)}",
        type="invalid_request_error",
        param="model",
        code="model_not_found",
    )


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, message, type="invalid_request_error", code="invalid_api_key")


def timed_out(timeout_s: float) -> ApiError:
    return ApiError(504, f"no answer within the gateway's request_timeout_s ({timeout_s:g}s)", type="timeout_error", code="timeout")


# Turnout's error codes (ErrorInfo.code) -> status, OpenAI error type, whether a retry may help.
_TURNOUT_CODES: dict[str, tuple[int, str, bool | None]] = {
    "invalid_request": (400, "invalid_request_error", False),
    "no_capable_model": (400, "invalid_request_error", False),
    "unknown_model": (404, "invalid_request_error", False),
    "policy_refused": (403, "permission_error", False),
    "budget_exceeded": (429, "insufficient_quota", False),
    "rate_limited": (429, "rate_limit_error", None),
    "no_route": (503, "server_error", False),
    "deadline_exceeded": (504, "timeout_error", None),
    "timeout": (504, "timeout_error", None),
}
_BACKEND_FAILURE = (502, "server_error", None)  # every other code: the backends failed to answer


def from_turnout(error: ErrorInfo | None) -> ApiError:
    """The HTTP answer for an error response of the router or a worker."""
    if error is None:
        return ApiError(502, "the router answered with an error but said nothing about it", type="server_error")
    status, kind, retry = _TURNOUT_CODES.get(error.code, _BACKEND_FAILURE)
    param = "model" if error.code == "unknown_model" else None
    return ApiError(status, error.message, type=kind, code=error.code, param=param, retry=retry)
