"""OpenAIChatBackend over httpx.MockTransport: the wire body, auth, error classification."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from openai.types.chat import ChatCompletion
from pydantic import SecretStr

from backend_fixtures import SECRET, Script, completion_body, make_backend, make_request, ok, status
from turnout.consumers.backend import BackendError, Completion, OpenAIChatBackend
from turnout.schemas.models import ChatMessage

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}


async def call(script: Script, request=None, **backend_kwargs) -> Completion:
    backend = make_backend(script, **backend_kwargs)
    try:
        return await backend.complete(request or make_request())
    finally:
        await backend.aclose()


async def failure(script: Script, **backend_kwargs) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await call(script, **backend_kwargs)
    return caught.value


# -- the request body ------------------------------------------------------------------
async def test_body_carries_served_model_messages_and_every_option():
    script = Script(ok())
    request = make_request(
        messages=[ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi", name="ann")],
        max_tokens=64,
        stop=["\n\n", "END"],
        temperature=0.25,
        tools=json.dumps(TOOLS),
        response_schema=json.dumps(SCHEMA),
        model="caller-asked-for-this",
    )
    await call(script, request, served_model="llama-3-8b-instruct")

    assert script.calls == 1
    sent = script.requests[0]
    assert sent.method == "POST"
    assert sent.url.path == "/v1/chat/completions"
    body = script.bodies[0]
    assert body["model"] == "llama-3-8b-instruct"  # the deployment's served model, not the request's hint
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi", "name": "ann"}]
    assert body["max_tokens"] == 64
    assert body["stop"] == ["\n\n", "END"]
    assert body["temperature"] == 0.25
    assert body["tools"] == TOOLS  # parsed JSON, not a JSON string
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
    }


async def test_body_leaves_out_unset_options():
    script = Script(ok())
    await call(script, make_request(messages=[ChatMessage(role="user", content="hi")]))
    body = script.bodies[0]
    assert set(body) == {"model", "messages"}
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # no "name": null


async def test_zero_temperature_is_sent():
    script = Script(ok())
    await call(script, make_request(temperature=0.0))
    assert script.bodies[0]["temperature"] == 0.0


async def test_trailing_slash_in_base_url_does_not_double_the_slash():
    script = Script(ok())
    await call(script, base_url="http://backend.test/v1/")
    assert script.requests[0].url.path == "/v1/chat/completions"


# -- authentication ----------------------------------------------------------------------
async def test_authorization_header_when_api_key_given():
    script = Script(ok())
    await call(script, api_key=SECRET)
    assert script.requests[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_no_authorization_header_without_api_key():
    script = Script(ok())
    await call(script)
    assert "authorization" not in script.requests[0].headers


@pytest.mark.parametrize(
    "reply",
    [
        status(429, "slow down", {"Retry-After": "1"}),
        status(500, "boom"),
        status(401, "Incorrect API key provided"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.Response(200, json={"not": "a completion"}),
    ],
    ids=["429", "500", "401", "timeout", "connect", "malformed"],
)
async def test_api_key_never_appears_in_errors(reply):
    error = await failure(Script(reply), api_key=SECRET)
    for text in (str(error), repr(error), error.message, str(error.__cause__), repr(error.__cause__)):
        assert SECRET not in text


async def test_api_key_echoed_by_backend_is_not_copied_into_the_error():
    echo = lambda request: httpx.Response(401, json={"error": {"message": f"bad token {request.headers['authorization']}"}})  # noqa: E731
    error = await failure(Script(echo), api_key=SECRET)
    assert SECRET not in error.message


# -- error classification ------------------------------------------------------------------
async def test_429_is_rate_limited_retryable_with_retry_after_seconds():
    error = await failure(Script(status(429, "Rate limit reached", {"Retry-After": "7"})))
    assert (error.code, error.retryable, error.status) == ("rate_limited", True, 429)
    assert error.retry_after_s == 7.0
    assert "Rate limit reached" in error.message


async def test_429_reads_fractional_retry_after():
    error = await failure(Script(status(429, headers={"Retry-After": "0.25"})))
    assert error.retry_after_s == pytest.approx(0.25)


async def test_429_reads_retry_after_ms():
    error = await failure(Script(status(429, headers={"retry-after-ms": "1500"})))
    assert error.code == "rate_limited"
    assert error.retry_after_s == pytest.approx(1.5)


async def test_429_prefers_retry_after_ms_over_retry_after():
    error = await failure(Script(status(429, headers={"retry-after-ms": "250", "Retry-After": "1"})))
    assert error.retry_after_s == pytest.approx(0.25)


async def test_429_with_http_date_retry_after_leaves_the_delay_to_backoff():
    error = await failure(Script(status(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})))
    assert error.code == "rate_limited" and error.retryable
    assert error.retry_after_s is None


async def test_429_without_retry_after():
    error = await failure(Script(status(429)))
    assert error.code == "rate_limited" and error.retryable
    assert error.retry_after_s is None


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_is_retryable_backend_error(code):
    error = await failure(Script(status(code, "upstream is sad")))
    assert (error.code, error.retryable, error.status) == ("backend_error", True, code)
    assert "upstream is sad" in error.message
    assert error.retry_after_s is None


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_4xx_is_backend_rejected_not_retryable(code):
    error = await failure(Script(status(code, "context length exceeded")))
    assert (error.code, error.retryable, error.status) == ("backend_rejected", False, code)
    assert "context length exceeded" in error.message


async def test_error_without_json_body_uses_the_text():
    error = await failure(Script(httpx.Response(503, text="<html>Service Unavailable</html>")))
    assert error.code == "backend_error"
    assert "Service Unavailable" in error.message


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")])
async def test_timeouts_are_retryable_timeout(exc):
    error = await failure(Script(exc))
    assert (error.code, error.retryable, error.status) == ("timeout", True, None)
    assert isinstance(error.__cause__, httpx.TimeoutException)


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset")])
async def test_transport_errors_are_backend_unreachable(exc):
    error = await failure(Script(exc))
    assert (error.code, error.retryable) == ("backend_unreachable", True)


async def test_real_refused_loopback_connection_is_backend_unreachable():
    with socket.socket() as sock:  # find a free loopback port, then close it: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "m", api_key=SecretStr(SECRET), timeout_s=5)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.complete(make_request())
    finally:
        await backend.aclose()
    assert caught.value.code == "backend_unreachable"
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="this is not json"),
        httpx.Response(200, json={"object": "list", "data": []}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"finish_reason": "stop"}]}),
        httpx.Response(200, json=[1, 2, 3]),
        httpx.Response(200, json=None),
        httpx.Response(200, json={**completion_body(), "usage": {"prompt_tokens": "many", "completion_tokens": 1}}),
    ],
    ids=["text", "models-list", "no-choices", "no-message", "array", "null", "bad-usage"],
)
async def test_200_that_is_not_a_chat_completion_is_malformed_response(reply):
    error = await failure(Script(reply))
    assert error.code == "malformed_response"
    assert error.retryable is True


@pytest.mark.parametrize(
    "payload",
    [
        {"choices": [{"message": None, "finish_reason": "stop"}]},
        {**completion_body(), "usage": [1, 2]},
        {"choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}, "finish_reason": "stop"}]},
    ],
    ids=["null-message", "usage-array", "content-array"],
)
async def test_200_with_wrong_field_types_is_malformed_response(payload):
    error = await failure(Script(httpx.Response(200, json=payload)))
    assert error.code == "malformed_response"


async def test_undecodable_content_encoding_is_a_backend_error():
    garbled = lambda request: httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")  # noqa: E731
    with pytest.raises(BackendError) as caught:
        await call(Script(garbled))
    assert caught.value.retryable


# -- a good answer -------------------------------------------------------------------------------
async def test_usage_content_and_finish_reason_read_into_completion():
    script = Script(ok(content="the answer", prompt_tokens=123, completion_tokens=45, finish_reason="length"))
    completion = await call(script)
    assert completion.content == "the answer"
    assert completion.finish_reason == "length"
    assert (completion.input_tokens, completion.output_tokens) == (123, 45)
    assert completion.latency_ms >= 0


async def test_logprobs_are_asked_for_on_request_and_read_as_the_answers_confidence():
    script = Script(ok(content="Paris is the capital", token_probability=0.8))
    backend = make_backend(script)
    try:
        completion = await backend.complete(make_request(), logprobs=True)
        await backend.complete(make_request())
    finally:
        await backend.aclose()
    assert script.bodies[0]["logprobs"] is True and "logprobs" not in script.bodies[1]
    assert completion.confidence == pytest.approx(0.8)
    ChatCompletion.model_validate(completion_body(content="Paris is the capital", token_probability=0.8))  # the fixture is the real format


async def test_an_answer_without_logprobs_has_no_confidence():
    assert (await call(Script(ok(content="Paris")))).confidence is None


async def test_missing_usage_counts_zero_and_missing_finish_reason_means_stop():
    payload = {"choices": [{"message": {"role": "assistant", "content": None}}]}  # tool-call answers have null content
    completion = await call(Script(httpx.Response(200, json=payload)))
    assert completion == Completion(content="", finish_reason="stop", input_tokens=0, output_tokens=0, latency_ms=completion.latency_ms)


async def test_only_the_first_choice_is_used():
    payload = completion_body(content="first")
    payload["choices"].append({"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"})
    completion = await call(Script(httpx.Response(200, json=payload)))
    assert completion.content == "first"
