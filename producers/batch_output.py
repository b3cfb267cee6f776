"""A batch job's results, one JSON line per input line, in the input's order.

A line submitted in OpenAI's format is answered in the OpenAI Batch API's output format::

    {"id": "batch_req_<request id>", "custom_id": "request-1",
     "response": {"status_code": 200, "request_id": "<request id>", "body": {<chat.completion>}},
     "error": null}

An answer that failed (a Turnout error response) has the error's HTTP status and an
OpenAI error body (``{"error": {"message", "type", "param", "code"}}``), as the gateway
answers the same error (``openai_format``); a line that never became a request, or has
no answer yet, has ``"response": null`` and ``"error": {"code", "message"}`` (codes
``invalid_line`` and ``no_response``). The completion body is the gateway's
``chat.completion`` with Turnout's routing as an extra ``turnout`` object (route,
models, fallback path, cost).

A line in Turnout's format is answered with the whole response record::

    {"line": 3, "custom_id": "line-3", "id": "<request id>", "response": {<InferenceResponse>}, "error": null}

with ``error`` set (``{"code", "message"}``) whenever the line has no successful answer.
"""

from __future__ import annotations

from typing import Any

from turnout.schemas.models import InferenceResponse

from .batch_lines import BatchLine
from .openai_format import completion_body, error_body, error_kind, usage

INVALID_LINE = "invalid_line"
NO_RESPONSE = "no_response"


def result_line(line: BatchLine, response: InferenceResponse | None) -> dict[str, Any]:
    return openai_line(line, response) if line.format == "openai" else turnout_line(line, response)


def line_error(line: BatchLine, response: InferenceResponse | None) -> dict[str, str] | None:
    """``{"code", "message"}`` when the line has no successful answer, else ``None``."""
    if line.error is not None:
        return {"code": INVALID_LINE, "message": f"line {line.line}: {line.error}"}
    if response is None:
        return {"code": NO_RESPONSE, "message": f"line {line.line}: no response yet for request {line.request_id}"}
    if response.status == "error":
        error = response.error
        return {"code": error.code if error else "error", "message": error.message if error else "failed without a reason"}
    return None


def turnout_line(line: BatchLine, response: InferenceResponse | None) -> dict[str, Any]:
    return {
        "line": line.line,
        "custom_id": line.custom_id,
        "id": line.request_id,
        "response": response.model_dump(mode="json") if response is not None else None,
        "error": line_error(line, response),
    }


def openai_line(line: BatchLine, response: InferenceResponse | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"batch_req_{line.request_id}", "custom_id": line.custom_id, "response": None, "error": None}
    if response is None or line.error is not None:
        out["error"] = line_error(line, response)
        return out
    if response.status == "error":
        error = line_error(line, response) or {}
        kind = error_kind(error.get("code"))
        status, body = kind.status, error_body(error.get("message", ""), kind.type, error.get("code"), kind.param)
    else:
        status, body = 200, (embedding_body(response) if response.embeddings else chat_body(response))
    out["response"] = {"status_code": status, "request_id": line.request_id, "body": body}
    return out


def chat_body(response: InferenceResponse) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object for an answered chat request, with its routing."""
    return {**completion_body(response), "turnout": _routing(response)}


def embedding_body(response: InferenceResponse) -> dict[str, Any]:
    """An OpenAI embeddings ``list`` object for an answered embedding request."""
    prompt = usage(response)["prompt_tokens"]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(response.embeddings)],
        "model": response.model or "",
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        "turnout": _routing(response),
    }


def _routing(response: InferenceResponse) -> dict[str, Any]:
    routing = response.routing
    return {
        "route": routing.route,
        "selected_model": routing.selected_model,
        "fallback_path": routing.fallback_path,
        "provider": response.provider,
        "cost_usd": response.cost_usd,
        "latency_ms": response.latency_ms,
        "cache_hit": response.cache_hit,
    }
