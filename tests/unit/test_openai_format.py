"""producers/openai_format.py: the one OpenAI output format the gateway answers with and
batch job results are written in: chat.completion, its streamed chunks, usage, finish
reasons, and each Turnout error code's HTTP status and OpenAI error type."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from turnout.producers.openai_format import completion_body, completion_chunk, error_body, error_kind, finish_reason, usage, usage_chunk
from turnout.schemas.models import InferenceResponse, RoutingMeta, Usage


def answered(**fields: object) -> InferenceResponse:
    """An answered request with every part set (test_gateway_wire.py reads its routing)."""
    defaults = dict(
        id="abc",
        tenant="acme",
        status="ok",
        model="small",
        provider="simulated",
        content="hello",
        finish_reason="stop",
        usage=Usage(input_tokens=7, output_tokens=3),
        cost_usd=0.0000123,
        created_at=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc),
        routing=RoutingMeta(route="default", selected_model="small", task_type="chat", fallback_path=["flaky", "small"], policy_version="v3"),
    )
    return InferenceResponse(**{**defaults, **fields})


def test_an_answer_is_a_chat_completion() -> None:
    assert completion_body(answered()) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": int(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc).timestamp()),
        "model": "small",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello", "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        "system_fingerprint": None,
    }


def test_missing_parts_are_empty_strings_and_zero_tokens_never_null() -> None:
    body = completion_body(answered(model=None, content=None, usage=None, finish_reason=None))
    assert body["model"] == "" and body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == usage(answered(usage=None)) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_a_streamed_answer_is_chunks_and_a_usage_chunk() -> None:
    assert completion_chunk("abc", 1700000000, "small", {"content": "he"}) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "small",
        "choices": [{"index": 0, "delta": {"content": "he"}, "logprobs": None, "finish_reason": None}],
        "system_fingerprint": None,
    }
    assert completion_chunk("abc", 1, "small", {}, "stop")["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk(answered(), 1) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "small",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), ("tool_calls", "tool_calls"), ("abort", "stop"), (None, "stop")],
)
def test_finish_reasons_are_openais(given: str | None, expected: str) -> None:
    assert finish_reason(given) == expected


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("invalid_request", 400, "invalid_request_error"),
        ("no_capable_model", 400, "invalid_request_error"),
        ("unknown_model", 404, "invalid_request_error"),
        ("policy_refused", 403, "permission_error"),
        ("budget_exceeded", 429, "insufficient_quota"),
        ("rate_limited", 429, "rate_limit_error"),
        ("no_route", 503, "server_error"),
        ("deadline_exceeded", 504, "timeout_error"),
        ("timeout", 504, "timeout_error"),
        ("all_backends_failed", 502, "server_error"),
        ("invalid_output", 502, "server_error"),
        ("response_too_large", 502, "server_error"),
        ("something_new", 502, "server_error"),
        (None, 502, "server_error"),
    ],
)
def test_each_error_code_has_one_status_and_type(code: str | None, status: int, kind: str) -> None:
    assert (error_kind(code).status, error_kind(code).type) == (status, kind)


def test_an_error_body_is_openais() -> None:
    assert error_body("why", "invalid_request_error", "unknown_model", "model") == {
        "error": {"message": "why", "type": "invalid_request_error", "param": "model", "code": "unknown_model"}
    }
    assert error_kind("unknown_model").param == "model" and error_kind("no_route").param is None
