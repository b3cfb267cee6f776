"""gateway/wire.py and gateway/errors.py: OpenAI's request JSON into an InferenceRequest,
the response's routing into x-turnout-* headers, and every error with the status the
OpenAI SDK maps to the right exception class (the body formats themselves:
test_openai_format.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from test_openai_format import answered

from turnout.gateway.errors import ApiError, from_turnout, timed_out
from turnout.gateway.wire import error_answer, parse_chat, routing_headers, to_request
from turnout.schemas.models import ErrorInfo

FLEET = ["medium", "small"]


def body(**fields: object) -> bytes:
    return json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def refused(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_chat(raw, FLEET)
    return caught.value


def test_auto_lets_the_router_choose_and_a_fleet_model_pins() -> None:
    assert parse_chat(body(), FLEET).model is None
    assert parse_chat(body(model="medium"), FLEET).model == "medium"


def test_an_unknown_model_is_404_listing_the_choices() -> None:
    error = refused(body(model="gpt-4o"))
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert "auto, medium, small" in error.message


def test_messages_are_translated_with_developer_as_system_and_parts_joined() -> None:
    call = parse_chat(
        body(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}, {"type": "text", "text": "this?"}]},
                {"role": "assistant", "content": "a cat", "refusal": None},
                {"role": "user", "content": "sure?", "name": "bob"},
            ]
        ),
        FLEET,
    )
    assert [(m.role, m.content, m.images, m.name) for m in call.messages] == [
        ("system", "be brief", [], None),
        ("user", "what is\nthis?", ["data:image/png;base64,AA"], None),
        ("assistant", "a cat", [], None),
        ("user", "sure?", [], "bob"),
    ]


def test_parameters_are_mapped() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = parse_chat(
        body(temperature=0.3, max_completion_tokens=20, stop="END", metadata={"lane": "x"}, user="u1", seed=7, response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}),
        FLEET,
    )
    assert (call.temperature, call.max_tokens, call.stop) == (0.3, 20, ["END"])
    assert call.metadata == {"lane": "x", "user": "u1"}
    assert json.loads(call.response_schema) == schema
    assert parse_chat(body(max_tokens=9), FLEET).max_tokens == 9
    assert json.loads(parse_chat(body(response_format={"type": "json_object"}), FLEET).response_schema) == {"type": "object"}
    assert parse_chat(body(response_format={"type": "text"}), FLEET).response_schema is None


def test_the_request_gets_a_fresh_id_the_callers_tenant_and_a_deadline() -> None:
    call = parse_chat(body(metadata={"tenant": "someone-else"}), FLEET)
    before = datetime.now(timezone.utc)
    first, second = (to_request(call, "acme", 30, "t.gateway.a") for _ in range(2))

    assert first.id != second.id and len(first.id) == 32
    assert first.tenant == "acme"  # metadata["tenant"] is only metadata
    assert first.reply_topic == "t.gateway.a"
    assert before + timedelta(seconds=29) < first.deadline < before + timedelta(seconds=31)


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        (b"{oops", None, "not valid JSON"),
        (b"[1]", None, "must be a JSON object"),
        (json.dumps({"model": "auto"}).encode(), "messages", "Missing required parameter"),
        (body(messages=[]), "messages", "Invalid value"),
        (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "Invalid value"),
        (body(temperature=3), "temperature", "less than or equal to 2"),
        (body(frobnicate=1), "frobnicate", "Unrecognized request argument"),
        (body(tools=[{"type": "function", "function": {"name": "f"}}]), "tools", "tool calls"),
        (body(n=2), "n", "one choice per request"),
        (body(logprobs=True), "logprobs", "not supported"),
        (body(top_p=0.5), "top_p", "not supported"),
        (body(messages=[{"role": "tool", "content": "42", "tool_call_id": "c1"}]), "messages[0]", "tool and function calls"),
        (body(max_tokens=5, max_completion_tokens=6), "max_completion_tokens", "disagree"),
        (body(stream_options={"include_usage": True}), "stream_options", "only allowed when 'stream' is true"),
        (body(response_format={"type": "json_schema"}), "response_format.json_schema", "needs a 'json_schema'"),
        (body(metadata={f"k{i}": "v" for i in range(17)}), "metadata", "at most 16"),
        (body(messages=[{"role": "assistant", "content": None}]), "messages[0].content", "missing"),
    ],
)
def test_a_bad_request_is_400_naming_the_parameter(raw: bytes, param: str | None, words: str) -> None:
    error = refused(raw)
    assert error.status == 400
    assert error.body()["error"]["type"] == "invalid_request_error"
    assert error.param == param
    assert words in error.message


def test_neutral_values_of_unsupported_parameters_are_accepted() -> None:
    call = parse_chat(body(n=1, top_p=1, presence_penalty=0, tools=[], logprobs=False, parallel_tool_calls=True, store=False), FLEET)
    assert call.model is None


def test_stream_and_its_usage_option_are_read() -> None:
    streamed = parse_chat(body(stream=True, stream_options={"include_usage": True}), FLEET)
    assert (streamed.stream, streamed.include_usage) == (True, True)
    plain = parse_chat(body(), FLEET)
    assert (plain.stream, plain.include_usage) == (False, False)


def test_routing_metadata_travels_in_headers() -> None:
    headers = routing_headers(answered(cache_hit=True, validation="passed"))
    assert headers == {
        "x-turnout-request-id": "abc",
        "x-turnout-tenant": "acme",
        "x-turnout-route": "default",
        "x-turnout-model": "small",
        "x-turnout-provider": "simulated",
        "x-turnout-policy-version": "v3",
        "x-turnout-task-type": "chat",
        "x-turnout-fallback-depth": "1",
        "x-turnout-fallback-path": "flaky,small",
        "x-turnout-cost-usd": "0.00001230",
        "x-turnout-cache-hit": "true",
        "x-turnout-validation": "passed",
        "x-turnout-latency-ms": "0.0",
    }


@pytest.mark.parametrize(
    ("code", "status", "kind", "retry"),
    [
        ("invalid_request", 400, "invalid_request_error", "false"),
        ("no_capable_model", 400, "invalid_request_error", "false"),
        ("unknown_model", 404, "invalid_request_error", "false"),
        ("policy_refused", 403, "permission_error", "false"),
        ("budget_exceeded", 429, "insufficient_quota", "false"),
        ("rate_limited", 429, "rate_limit_error", None),
        ("no_route", 503, "server_error", "false"),
        ("deadline_exceeded", 504, "timeout_error", None),
        ("all_backends_failed", 502, "server_error", None),
        ("invalid_output", 502, "server_error", None),
    ],
)
def test_turnout_errors_get_openais_status(code: str, status: int, kind: str, retry: str | None) -> None:
    error = from_turnout(ErrorInfo(code=code, message="why"))
    assert (error.status, error.type, error.code, error.message) == (status, kind, code, "why")
    assert error.headers().get("x-should-retry") == retry
    assert error.body() == {"error": {"message": "why", "type": kind, "param": "model" if code == "unknown_model" else None, "code": code}}


def test_an_error_without_a_code_or_with_an_unlisted_one_is_a_backend_failure() -> None:
    assert (from_turnout(None).status, from_turnout(None).type) == (502, "server_error")
    error = from_turnout(ErrorInfo(code="response_too_large", message="too big"))
    assert (error.status, error.type, error.retry) == (502, "server_error", None)


def test_a_gateway_timeout_is_504_with_code_timeout() -> None:
    error = timed_out(2.5)
    assert (error.status, error.type, error.code) == (504, "timeout_error", "timeout")
    assert "2.5s" in error.message


def test_an_error_response_is_answered_with_its_routing_headers() -> None:
    response = answered(status="error", content=None, error=ErrorInfo(code="policy_refused", message="no model may serve acme"))
    error = error_answer(response)
    assert (error.status, error.code, error.message) == (403, "policy_refused", "no model may serve acme")
    assert error.extra_headers == routing_headers(response)
    assert error.extra_headers["x-turnout-policy-version"] == "v3"
