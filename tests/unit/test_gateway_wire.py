"""gateway/wire.py and gateway/errors.py: OpenAI's request JSON into an InferenceRequest,
the response back into a chat.completion and x-turnout-* headers, and every error with
the status the OpenAI SDK maps to the right exception class."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from turnout.gateway.errors import ApiError, from_turnout
from turnout.gateway.wire import completion, completion_chunk, finish_reason, parse_chat, routing_headers, to_request, usage_chunk
from turnout.schemas.models import ErrorInfo, InferenceResponse, RoutingMeta, Usage

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


def answered(**fields: object) -> InferenceResponse:
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
    assert completion(answered()) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": int(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc).timestamp()),
        "model": "small",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello", "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        "system_fingerprint": None,
    }


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


@pytest.mark.parametrize(("given", "expected"), [("stop", "stop"), ("length", "length"), ("max_tokens", "length"), ("end_turn", "stop"), ("SAFETY", "content_filter"), (None, "stop")])
def test_finish_reasons_are_openais(given: str | None, expected: str) -> None:
    assert finish_reason(given) == expected


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
