"""Every failure the gateway answers, as OpenAI answers it: an HTTP status and
``{"error": {"message", "type", "param", "code"}}``.

The statuses are the ones the OpenAI SDKs turn into their exception classes, so a caller
catches what it already knows: 400 ``BadRequestError``, 401 ``AuthenticationError``, 404
``NotFoundError`` (a model not in the fleet), 504 (no answer in time); an error response
of the router or a worker gets the status its code has in ``producers.openai_format``
(the table batch job results use too). The ``code`` is Turnout's stable error code where
there is one.

The SDKs retry 429 and 5xx on their own; an error that retrying cannot cure (a spent
budget) carries ``x-should-retry: false``, which they obey.
"""

from __future__ import annotations

from turnout.producers.openai_format import error_body, error_kind
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
        return error_body(self.message, self.type, self.code, self.param)

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
    return from_turnout(ErrorInfo(code="timeout", message=f"no answer within the gateway's request_timeout_s ({timeout_s:g}s)"))


def from_turnout(error: ErrorInfo | None) -> ApiError:
    """The HTTP answer for an error response of the router or a worker."""
    if error is None:
        return ApiError(502, "the router answered with an error but said nothing about it", type="server_error")
    kind = error_kind(error.code)
    return ApiError(kind.status, error.message, type=kind.type, code=error.code, param=kind.param, retry=kind.retry)
