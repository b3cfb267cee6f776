"""AnthropicMessagesBackend over httpx.MockTransport: what it sends, how it reads Anthropic's
answers and errors. Response fixtures are validated with the ``anthropic`` SDK's own types
(in ``backend_fixtures``), request bodies with its ``MessageCreateParams``, so neither can
drift from the real API. What all adapters share (status classification, timeouts, malformed
200s, key scrubbing) is tested once for all of them in test_backend_factory."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from backend_fixtures import SECRET, Script, anthropic_error, anthropic_message, anthropic_request_checked, complete_once, fail_once, make_request, reply
from turnout.consumers.anthropic_backend import ANTHROPIC_VERSION, RESPOND_TOOL, AnthropicMessagesBackend
from turnout.schemas.models import ChatMessage

URL = "https://api.anthropic.com/v1"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "now"}},
]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}


def claude(script: Script, *, api_key: str | None = SECRET, max_output_tokens: int = 1024) -> AnthropicMessagesBackend:
    return AnthropicMessagesBackend(
        URL,
        "claude-sonnet-4-5",
        max_output_tokens=max_output_tokens,
        api_key=SecretStr(api_key) if api_key else None,
        transport=script.transport(),
    )


async def sent(request=None, **backend_kwargs: Any) -> tuple[httpx.Request, dict[str, Any]]:
    script = Script(reply(anthropic_message()))
    await complete_once(claude(script, **backend_kwargs), request)
    return script.requests[0], anthropic_request_checked(script.bodies[0])


# -- the request ---------------------------------------------------------------------------
async def test_posts_to_messages_with_key_version_and_json_headers():
    request, _ = await sent()
    assert (request.method, str(request.url)) == ("POST", f"{URL}/messages")
    assert request.headers["x-api-key"] == SECRET
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert SECRET not in str(request.url)


async def test_system_turns_lift_to_top_level_and_same_role_turns_merge():
    request = make_request(
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content="first", name="ann"),
            ChatMessage(role="user", content="second"),
            ChatMessage(role="system", content="answer in French"),
            ChatMessage(role="assistant", content="ok"),
            ChatMessage(role="assistant", content=""),  # empty text is rejected by the API: left out
            ChatMessage(role="tool", content='{"temp": 21}', name="get_weather"),
            ChatMessage(role="user", content="and so?"),
        ],
        max_tokens=64,
        stop=["\n\nHuman:", "END"],
        temperature=0.0,
        model="caller-hint",
    )
    _, body = await sent(request)
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "be brief\n\nanswer in French",
        "stop_sequences": ["\n\nHuman:", "END"],
        "temperature": 0.0,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": 'Result of tool get_weather:\n{"temp": 21}'},
                    {"type": "text", "text": "and so?"},
                ],
            },
        ],
    }


async def test_max_tokens_defaults_to_the_deployments_output_limit_and_unset_options_stay_out():
    _, body = await sent(make_request(messages=[ChatMessage(role="user", content="hi")]), max_output_tokens=777)
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": 777, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


async def test_images_become_base64_and_url_blocks_before_the_text():
    message = ChatMessage(role="user", content="what is this?", images=[f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg"])
    _, body = await sent(make_request(messages=[message]))
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "what is this?"},
    ]


@pytest.mark.parametrize("url", ["data:image/png,rawbytes", "data:;base64,AAAA", "file:///etc/passwd", "s3://bucket/cat.png"])
async def test_images_it_cannot_express_are_refused_before_any_call(url):
    script = Script(reply(anthropic_message()))
    error = await fail_once(claude(script), make_request(messages=[ChatMessage(role="user", content="?", images=[url])]))
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert script.calls == 0


async def test_openai_function_tools_become_anthropic_tools():
    _, body = await sent(make_request(tools=json.dumps(TOOLS)))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body  # the model decides


async def test_response_schema_is_one_forced_respond_tool():
    _, body = await sent(make_request(tools=json.dumps(TOOLS), response_schema=json.dumps(SCHEMA)))
    assert [tool["name"] for tool in body["tools"]] == [RESPOND_TOOL]
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}


@pytest.mark.parametrize(
    "field, value",
    [("tools", "not json"), ("tools", '{"type": "function"}'), ("tools", '[{"type": "web_search"}]'), ("response_schema", "[1]")],
)
async def test_unusable_tools_or_schema_are_refused_not_crashed_on(field, value):
    script = Script(reply(anthropic_message()))
    error = await fail_once(claude(script), make_request(**{field: value}))
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert field in error.message and script.calls == 0


# -- reading the answer ---------------------------------------------------------------------
async def test_text_blocks_are_joined_and_usage_counts_cached_input():
    body = anthropic_message(
        [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}],
        input_tokens=10,
        output_tokens=4,
        cache_creation_input_tokens=100,
        cache_read_input_tokens=1000,
    )
    completion = await complete_once(claude(Script(reply(body))))
    assert completion.content == "Hello, world"
    assert completion.finish_reason == "stop"
    assert (completion.input_tokens, completion.output_tokens) == (1110, 4)


async def test_null_cache_counts_are_zero():
    body = anthropic_message(input_tokens=9, output_tokens=2, cache_creation_input_tokens=None, cache_read_input_tokens=None)
    completion = await complete_once(claude(Script(reply(body))))
    assert (completion.input_tokens, completion.output_tokens) == (9, 2)


@pytest.mark.parametrize(
    "stop_reason, finish_reason",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
async def test_stop_reason_maps_to_openai_finish_reason(stop_reason, finish_reason):
    completion = await complete_once(claude(Script(reply(anthropic_message(stop_reason=stop_reason)))))
    assert completion.finish_reason == finish_reason


async def test_a_tool_call_answer_keeps_the_text_and_says_tool_calls():
    blocks = [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    completion = await complete_once(claude(Script(reply(anthropic_message(blocks, stop_reason="tool_use")))), make_request(tools=json.dumps(TOOLS)))
    assert (completion.content, completion.finish_reason) == ("Let me check.", "tool_calls")


async def test_the_forced_respond_tool_input_is_the_json_answer():
    answer = {"answer": "Paris — la Ville Lumière"}
    blocks = [{"type": "tool_use", "id": "toolu_01", "name": RESPOND_TOOL, "input": answer}]
    completion = await complete_once(
        claude(Script(reply(anthropic_message(blocks, stop_reason="tool_use")))), make_request(response_schema=json.dumps(SCHEMA))
    )
    assert json.loads(completion.content) == answer
    assert completion.finish_reason == "stop"


async def test_a_respond_answer_cut_off_by_max_tokens_says_length():
    blocks = [{"type": "tool_use", "id": "toolu_01", "name": RESPOND_TOOL, "input": {}}]
    completion = await complete_once(
        claude(Script(reply(anthropic_message(blocks, stop_reason="max_tokens")))), make_request(response_schema=json.dumps(SCHEMA))
    )
    assert completion.finish_reason == "length"


# -- Anthropic's errors ---------------------------------------------------------------------
async def test_429_rate_limit_error_waits_as_told():
    body = anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
    error = await fail_once(claude(Script(reply(body, 429, {"retry-after": "13"}))))
    assert (error.code, error.retryable, error.status, error.retry_after_s) == ("rate_limited", True, 429, 13.0)
    assert "rate_limit_error: Number of request tokens" in error.message


async def test_529_overloaded_is_a_retryable_backend_error():
    error = await fail_once(claude(Script(reply(anthropic_error("overloaded_error", "Overloaded"), 529))))
    assert (error.code, error.retryable, error.status) == ("backend_error", True, 529)
    assert "overloaded_error: Overloaded" in error.message


async def test_500_api_error_is_retryable():
    error = await fail_once(claude(Script(reply(anthropic_error("api_error", "Internal server error"), 500))))
    assert (error.code, error.retryable) == ("backend_error", True)


@pytest.mark.parametrize(
    "code, kind",
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"), (402, "billing_error")],
)
async def test_other_4xx_are_rejected_for_good(code, kind):
    error = await fail_once(claude(Script(reply(anthropic_error(kind, "prompt is too long: 210000 tokens > 200000 maximum"), code))))
    assert (error.code, error.retryable, error.status) == ("backend_rejected", False, code)
    assert f"{kind}: prompt is too long" in error.message


async def test_an_echoed_key_is_scrubbed_from_the_error():
    echo = lambda request: reply(anthropic_error("authentication_error", f"invalid x-api-key {request.headers['x-api-key']}"), 401)  # noqa: E731
    error = await fail_once(claude(Script(echo)))
    assert SECRET not in str(error) and "invalid x-api-key ***" in error.message
