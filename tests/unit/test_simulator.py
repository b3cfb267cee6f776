"""The simulated backend on a real loopback port, called by the official openai client.

The helpers at the top are shared by the other ``test_simulator_*`` files (faults, the
Anthropic format, structured output, settings)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion

from backend_fixtures import running_simulator
from turnout.schemas.settings import SimulatorProfile, SimulatorSettings

QUIET = {"latency_ms": 0, "latency_jitter_ms": 0}
SETTINGS = SimulatorSettings(
    seed=1234,
    default=SimulatorProfile(**QUIET, output_tokens=20),
    profiles={
        "steady": SimulatorProfile(**QUIET, output_tokens=30),
        "broken": SimulatorProfile(**QUIET, error_rate=1.0),
        "limited": SimulatorProfile(**QUIET, rate_limit_rate=1.0, retry_after_s=0.5),
        "coin": SimulatorProfile(**QUIET, error_rate=0.5),
    },
)
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is a turnout?"}]


def client(port: int, timeout: float = 10) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=timeout)


def anthropic_client(port: int, timeout: float = 10) -> anthropic.AsyncAnthropic:
    """The SDK appends /v1/messages itself: its base URL is the server's root."""
    return anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="x", max_retries=0, timeout=timeout)


def instant(**fields: Any) -> SimulatorProfile:
    """A profile that answers at once (no latency), with ``fields`` as its faults."""
    return SimulatorProfile(latency_distribution="fixed", latency_ms=0, **fields)


def simulator_settings(seed: int = 1234, **profiles: SimulatorProfile) -> SimulatorSettings:
    return SimulatorSettings(seed=seed, default=instant(), profiles=profiles)


async def health(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        return (await http.get("/health")).json()


async def test_chat_completion_parses_with_the_openai_client():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="steady", messages=MESSAGES)

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.model == "steady"
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content and "what is a turnout?" in choice.message.content
    usage = completion.usage
    assert usage.completion_tokens == 30  # the profile's output_tokens
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_unknown_model_uses_the_default_profile():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="anything-else", messages=MESSAGES)
    assert completion.usage.completion_tokens == 20
    assert completion.choices[0].finish_reason == "stop"


async def test_max_tokens_below_output_tokens_finishes_with_length():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        short = await api.chat.completions.create(model="steady", messages=MESSAGES, max_tokens=5)
        exact = await api.chat.completions.create(model="steady", messages=MESSAGES, max_tokens=30)
        roomy = await api.chat.completions.create(model="steady", messages=MESSAGES, max_tokens=500)
    assert (short.choices[0].finish_reason, short.usage.completion_tokens) == ("length", 5)
    assert (exact.choices[0].finish_reason, exact.usage.completion_tokens) == ("stop", 30)
    assert (roomy.choices[0].finish_reason, roomy.usage.completion_tokens) == ("stop", 30)


async def test_max_completion_tokens_is_honoured():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="steady", messages=MESSAGES, max_completion_tokens=5)
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].finish_reason == "length"


async def test_longer_prompts_count_more_prompt_tokens():
    long_messages = [{"role": "user", "content": "word " * 400}]
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        short = await api.chat.completions.create(model="steady", messages=MESSAGES)
        long = await api.chat.completions.create(model="steady", messages=long_messages)
    assert long.usage.prompt_tokens > short.usage.prompt_tokens
    assert long.usage.prompt_tokens >= 400  # ~4 characters per token


async def test_raw_json_validates_as_an_openai_chat_completion():
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/chat/completions", json={"model": "steady", "messages": MESSAGES, "max_tokens": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    completion = ChatCompletion.model_validate(payload)
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].finish_reason == "length"
    assert payload["usage"]["completion_tokens"] == 3
    # the wire JSON has exactly the fields OpenAI sends, nothing the client would drop as extra
    assert set(payload) <= set(ChatCompletion.model_fields)


async def test_error_rate_one_raises_internal_server_error():
    async with running_simulator(SETTINGS) as (simulator, port), client(port) as api:
        with pytest.raises(openai.InternalServerError) as caught:
            await api.chat.completions.create(model="broken", messages=MESSAGES)
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"  # the client unwraps the "error" object
    assert simulator.calls == 1


async def test_rate_limit_rate_one_raises_rate_limit_error_with_retry_after():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        with pytest.raises(openai.RateLimitError) as caught:
            await api.chat.completions.create(model="limited", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert float(error.response.headers["retry-after"]) == pytest.approx(0.5)
    assert error.response.headers["retry-after-ms"] == "500"  # both, as OpenAI sends them
    assert error.body["code"] == "rate_limit_exceeded"
    assert error.body["type"] == "requests" and "limited" in error.body["message"]


async def test_same_seed_gives_the_same_fault_sequence():
    async def statuses() -> list[int]:
        async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
            return [(await http.post("/chat/completions", json={"model": "coin", "messages": MESSAGES})).status_code for _ in range(24)]

    first, second = await statuses(), await statuses()
    assert first == second
    assert set(first) == {200, 500}  # a 0.5 error rate over 24 calls shows both


async def test_models_endpoint_parses_as_the_openai_models_list():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        page = await api.models.list()
    assert all(isinstance(m, Model) for m in page.data)
    assert [m.id for m in page.data] == ["broken", "coin", "limited", "steady"]
    assert {m.object for m in page.data} == {"model"}


async def test_health_counts_calls_per_format_and_per_model():
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await http.post("/v1/chat/completions", json={"model": "steady", "messages": MESSAGES})
        await http.post("/v1/chat/completions", json={"model": "broken", "messages": MESSAGES})
        await http.post("/v1/chat/completions", json={"model": "steady"})  # refused: no messages
        report = (await http.get("/health")).json()
    assert (report["status"], report["calls"], report["invalid_requests"]) == ("ok", 3, 1)
    assert report["calls_by_format"] == {"openai": 3, "anthropic": 0}
    assert report["faults"]["server_error"] == 1 and sum(report["faults"].values()) == 1
    assert report["models"]["steady"]["calls"] == 1
    assert report["models"]["broken"]["faults"]["server_error"] == 1
    assert report["models"]["steady"]["latency_ms"]["count"] == 1


async def test_a_stream_flag_that_is_not_a_boolean_is_refused_with_400():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.chat.completions.create(model="steady", messages=MESSAGES, extra_body={"stream": "yes"})
    assert caught.value.body["param"] == "stream"


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (502, "bad_gateway"), (503, "service_unavailable")])
async def test_each_burst_status_is_an_openai_server_error(status, code):
    settings = simulator_settings(burst=instant(burst_rate=1.0, burst_statuses=(status,)))
    async with running_simulator(settings) as (_, port), client(port) as api:
        with pytest.raises(openai.InternalServerError) as caught:
            await api.chat.completions.create(model="burst", messages=MESSAGES)
    assert caught.value.status_code == status
    assert caught.value.body == {"message": caught.value.body["message"], "type": "server_error", "param": None, "code": code}


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b"[1, 2, 3]",
        b'{"messages": [{"role": "user", "content": "hi"}]}',  # no model
        b'{"model": "steady"}',  # no messages
        b'{"model": "steady", "messages": []}',
    ],
    ids=["not-json", "array", "no-model", "no-messages", "empty-messages"],
)
async def test_malformed_body_gets_400_invalid_request(content):
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_openai_client_sees_400_as_bad_request():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        with pytest.raises(openai.BadRequestError):
            await api.chat.completions.create(model="steady", messages=[])


@pytest.mark.parametrize("messages", ['"hello"', "[1, 2]", '["hi"]'], ids=["string", "numbers", "strings"])
async def test_messages_that_are_not_objects_get_400(messages):
    content = f'{{"model": "steady", "messages": {messages}}}'.encode()
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
