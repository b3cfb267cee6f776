"""The simulator's streamed answers (``stream: true``), read by the official openai and
anthropic SDKs, whose stream parsers are the reference for each wire format, and by
Turnout's own backends over the real aiohttp transport: the gathered stream equals the
unstreamed answer, the first token comes before the end, faults become broken streams."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from backend_fixtures import make_request, running_simulator
from test_simulator import anthropic_client, client, health, instant, simulator_settings
from turnout.consumers.anthropic_backend import AnthropicMessagesBackend
from turnout.consumers.backend import BackendError, OpenAIChatBackend
from turnout.schemas.models import ChatMessage
from turnout.schemas.settings import SimulatorProfile

SLOW = SimulatorProfile(latency_distribution="fixed", latency_ms=200, first_token_share=0.25, output_tokens=30)
SETTINGS = simulator_settings(
    steady=instant(output_tokens=30),
    unsure=instant(output_tokens=12, low_confidence_rate=1.0),
    slow=SLOW,
    cut=instant(truncate_rate=1.0),
    html=instant(malformed_rate=1.0),
    broken=instant(error_rate=1.0),
)
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is a turnout?"}]
SCHEMA = {
    "type": "object",
    "properties": {"track": {"type": "string"}, "switches": {"type": "integer"}},
    "required": ["track", "switches"],
    "additionalProperties": False,
}


# -- OpenAI, through the openai SDK ----------------------------------------------------------------
@pytest.mark.parametrize("model", ["steady", "unsure"])
async def test_openai_sdk_gathers_the_stream_into_the_unstreamed_completion(model):
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        whole = await api.chat.completions.create(model=model, messages=MESSAGES, logprobs=True)
        async with api.chat.completions.stream(model=model, messages=MESSAGES, logprobs=True, stream_options={"include_usage": True}) as stream:
            kinds = [event.type async for event in stream]
            streamed = await stream.get_final_completion()
    assert kinds.count("content.delta") > 1  # token by token, not one piece
    [a], [b] = whole.choices, streamed.choices
    assert b.message.content == a.message.content
    assert b.finish_reason == a.finish_reason == "stop"
    assert streamed.usage.model_dump() == whole.usage.model_dump()
    assert [t.model_dump() for t in b.logprobs.content] == [t.model_dump() for t in a.logprobs.content]


async def test_openai_sdk_stream_without_include_usage_has_no_usage_chunk():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        chunks = [chunk async for chunk in await api.chat.completions.create(model="steady", messages=MESSAGES, stream=True)]
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_openai_sdk_streams_a_forced_tool_call_whose_arguments_fit_the_schema():
    tools = [{"type": "function", "function": {"name": "route", "parameters": SCHEMA, "strict": True}}]  # the SDK's stream helper parses strict tools only
    choice = {"type": "function", "function": {"name": "route"}}
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        whole = await api.chat.completions.create(model="steady", messages=MESSAGES, tools=tools, tool_choice=choice)
        async with api.chat.completions.stream(model="steady", messages=MESSAGES, tools=tools, tool_choice=choice) as stream:
            streamed = await stream.get_final_completion()
    [call] = streamed.choices[0].message.tool_calls
    assert call.function.name == "route"
    assert json.loads(call.function.arguments) == json.loads(whole.choices[0].message.tool_calls[0].function.arguments)
    assert streamed.choices[0].finish_reason == whole.choices[0].finish_reason


async def test_openai_sdk_reads_a_structured_answer_streamed_with_a_response_format():
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "strict": True}}
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        async with api.chat.completions.stream(model="steady", messages=MESSAGES, response_format=response_format) as stream:
            streamed = await stream.get_final_completion()
    assert set(json.loads(streamed.choices[0].message.content)) == {"track", "switches"}


# -- Anthropic, through the anthropic SDK ------------------------------------------------------------
async def test_anthropic_sdk_gathers_the_stream_into_the_unstreamed_message():
    turns = [{"role": "user", "content": "what is a turnout?"}]
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        whole = await claude.messages.create(model="steady", max_tokens=100, system="be brief", messages=turns)
        async with claude.messages.stream(model="steady", max_tokens=100, system="be brief", messages=turns) as stream:
            kinds = [event.type async for event in stream]
            streamed = await stream.get_final_message()
    assert kinds.count("text") > 1
    assert [b.model_dump() for b in streamed.content] == [b.model_dump() for b in whole.content]
    assert (streamed.stop_reason, streamed.usage.model_dump()) == (whole.stop_reason, whole.usage.model_dump())


async def test_anthropic_sdk_streams_a_forced_tool_input_whole():
    tools = [{"name": "respond", "input_schema": SCHEMA}]
    turns = [{"role": "user", "content": "route it"}]
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        whole = await claude.messages.create(model="steady", max_tokens=200, messages=turns, tools=tools, tool_choice={"type": "tool", "name": "respond"})
        async with claude.messages.stream(model="steady", max_tokens=200, messages=turns, tools=tools, tool_choice={"type": "tool", "name": "respond"}) as stream:
            streamed = await stream.get_final_message()
    [block] = streamed.content
    assert (block.type, block.name, block.input) == ("tool_use", "respond", whole.content[0].input)
    assert streamed.stop_reason == "tool_use"


# -- Turnout's backends, over the aiohttp transport -------------------------------------------------
def openai_backend(port: int, *, stream: bool = True) -> OpenAIChatBackend:
    return OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "slow", stream=stream)


async def test_backend_streamed_call_equals_the_unstreamed_one_and_its_first_token_comes_first():
    request = make_request(messages=[ChatMessage(role="user", content="what is a turnout?")])
    async with running_simulator(SETTINGS) as (_, port):
        streaming, whole = openai_backend(port), openai_backend(port, stream=False)
        try:
            streamed = await streaming.complete(request, logprobs=True)
            unstreamed = await whole.complete(request, logprobs=True)
        finally:
            await streaming.aclose()
            await whole.aclose()
    assert (streamed.content, streamed.finish_reason, streamed.input_tokens, streamed.output_tokens, streamed.confidence) == (
        unstreamed.content, unstreamed.finish_reason, unstreamed.input_tokens, unstreamed.output_tokens, unstreamed.confidence,
    )
    assert unstreamed.ttft_ms is None
    # the simulator holds the rest of the answer back for 75 % of its 200 ms (a sleep: never shorter)
    assert streamed.ttft_ms is not None and streamed.latency_ms - streamed.ttft_ms >= 140


async def test_anthropic_backend_streams_from_the_simulator():
    async with running_simulator(SETTINGS) as (_, port):
        backend = AnthropicMessagesBackend(f"http://127.0.0.1:{port}/v1", "slow", max_output_tokens=64, api_key=SecretStr("k"), stream=True)
        try:
            completion = await backend.complete(make_request(response_schema=json.dumps(SCHEMA)))
        finally:
            await backend.aclose()
    assert set(json.loads(completion.content)) == {"track", "switches"}
    assert completion.ttft_ms is not None and completion.ttft_ms < completion.latency_ms


@pytest.mark.parametrize(("model", "code"), [("cut", "stream_interrupted"), ("html", "malformed_response"), ("broken", "backend_error")])
async def test_simulated_faults_reach_a_streaming_backend_as_retryable_errors(model, code):
    async with running_simulator(SETTINGS) as (_, port):
        backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", model, stream=True)
        try:
            with pytest.raises(BackendError) as caught:
                await backend.complete(make_request())
        finally:
            await backend.aclose()
        report = await health(port)
    assert (caught.value.code, caught.value.retryable) == (code, True)
    assert report["calls"] == 1


def test_first_token_share_is_a_probability():
    with pytest.raises(ValueError, match="first_token_share"):
        SimulatorProfile(first_token_share=1.5)
