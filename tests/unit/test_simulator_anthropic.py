"""The simulator's Anthropic Messages format (``POST /v1/messages``), called by the
official anthropic client and, where the SDK would refuse to send the request, raw."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from anthropic.types import Message, TextBlock

from backend_fixtures import running_simulator
from test_simulator import anthropic_client, health, instant, simulator_settings

SETTINGS = simulator_settings(
    steady=instant(output_tokens=30),
    limited=instant(rate_limit_rate=1.0, retry_after_s=1.5),
    broken=instant(error_rate=1.0),
    overloaded=instant(burst_rate=1.0, burst_statuses=(503,)),
)
TURNS = [{"role": "user", "content": "what is a turnout?"}]
HEADERS = {"x-api-key": "x", "anthropic-version": "2023-06-01"}


async def test_message_parses_with_the_anthropic_client():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        message = await claude.messages.create(model="steady", max_tokens=100, system="be brief", messages=TURNS)
    assert isinstance(message, Message)
    assert (message.type, message.role, message.model) == ("message", "assistant", "steady")
    assert message.id.startswith("msg_")
    [block] = message.content
    assert isinstance(block, TextBlock) and "what is a turnout?" in block.text
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.output_tokens == 30 and message.usage.input_tokens > 0


async def test_max_tokens_below_the_answer_stops_with_max_tokens():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        short = await claude.messages.create(model="steady", max_tokens=5, messages=TURNS)
        exact = await claude.messages.create(model="steady", max_tokens=30, messages=TURNS)
    assert (short.stop_reason, short.usage.output_tokens) == ("max_tokens", 5)
    assert (exact.stop_reason, exact.usage.output_tokens) == ("end_turn", 30)


async def test_system_prompt_and_content_blocks_count_as_input():
    blocks = [{"role": "user", "content": [{"type": "text", "text": "word " * 400}]}]
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        plain = await claude.messages.create(model="steady", max_tokens=50, messages=TURNS)
        with_system = await claude.messages.create(model="steady", max_tokens=50, system="word " * 400, messages=TURNS)
        long = await claude.messages.create(model="steady", max_tokens=50, messages=blocks)
    assert with_system.usage.input_tokens >= plain.usage.input_tokens + 400
    assert long.usage.input_tokens >= 400


async def test_raw_json_has_exactly_the_fields_of_a_message():
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/messages", json={"model": "steady", "max_tokens": 10, "messages": TURNS}, headers=HEADERS)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    payload = response.json()
    Message.model_validate(payload)
    assert set(payload) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert set(payload) <= set(Message.model_fields)
    assert payload["usage"]["output_tokens"] == 10 and payload["stop_reason"] == "max_tokens"


async def test_429_is_a_rate_limit_error_with_retry_after():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(model="limited", max_tokens=50, messages=TURNS)
    error = caught.value
    assert error.status_code == 429
    assert (error.response.headers["retry-after"], error.response.headers["retry-after-ms"]) == ("1.5", "1500")
    assert error.body["type"] == "error" and error.body["error"]["type"] == "rate_limit_error"


async def test_500_is_an_api_error_and_an_overloaded_burst_is_529():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        with pytest.raises(anthropic.InternalServerError) as broken:
            await claude.messages.create(model="broken", max_tokens=50, messages=TURNS)
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await claude.messages.create(model="overloaded", max_tokens=50, messages=TURNS)
        report = await health(port)
    assert broken.value.status_code == 500 and broken.value.body["error"]["type"] == "api_error"
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
    assert report["calls_by_format"] == {"openai": 0, "anthropic": 2}
    assert (report["faults"]["server_error"], report["faults"]["burst"]) == (1, 1)


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind", "message"),
    [
        (HEADERS, {"model": "steady", "messages": TURNS}, 400, "invalid_request_error", "max_tokens: Field required"),
        (HEADERS, {"model": "steady", "max_tokens": 0, "messages": TURNS}, 400, "invalid_request_error", "max_tokens"),
        (HEADERS, {"model": "steady", "max_tokens": 10, "messages": []}, 400, "invalid_request_error", "messages"),
        (HEADERS, {"max_tokens": 10, "messages": TURNS}, 400, "invalid_request_error", "model"),
        (HEADERS, {"model": "steady", "max_tokens": 10, "messages": TURNS, "stream": "yes"}, 400, "invalid_request_error", "stream"),
        ({"anthropic-version": "2023-06-01"}, {"model": "steady", "max_tokens": 10, "messages": TURNS}, 401, "authentication_error", "x-api-key"),
        ({"x-api-key": "x"}, {"model": "steady", "max_tokens": 10, "messages": TURNS}, 400, "invalid_request_error", "anthropic-version"),
    ],
    ids=["no-max-tokens", "zero-max-tokens", "no-messages", "no-model", "stream-not-a-boolean", "no-api-key", "no-version"],
)
async def test_requests_the_real_api_refuses_are_refused_in_its_shape(headers, body, status, kind, message):
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/messages", json=body, headers=headers)
        report = await health(port)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == kind and message in payload["error"]["message"]
    assert report["invalid_requests"] == 1 and report["models"] == {}


async def test_a_body_that_is_not_json_is_refused():
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/messages", content=b"not json", headers={**HEADERS, "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


async def test_the_sdk_sees_a_refusal_as_bad_request():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await claude.messages.create(model="steady", max_tokens=10, messages=[])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
