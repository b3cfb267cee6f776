"""Streamed answers end to end (issue 6), on the real broker with the simulator streaming
in the OpenAI wire format (the Anthropic format's pieces are checked against the
simulator in ``tests/unit/test_stream_chunks.py``: a simulated deployment speaks OpenAI
only here). A request with ``stream = true`` is answered by chunks on its reply topic
while the backend writes, then by its final response; a call cut mid-stream (the
simulator's truncated-body fault) is retried and falls back, and the text a reader
shows still ends equal to the answer; an unstreamed request on the same topic gets one
response and no chunk, and a streamed one awaited whole gets its response."""

from __future__ import annotations

import asyncio

from stacks import read_topic, simulator_health, stack_fixture

from turnout.producers.client import TurnoutClient, new_request
from turnout.producers.streaming import TextDelta, read_reply
from turnout.schemas.models import InferenceResponse, ResponseChunk
from turnout.schemas.serde import codec_for

CONFIG = """
[kafka]
topic_prefix = "stest"
partitions = 3

[fleet.plain]                 # OpenAI format, not streamed by default: a streamed request streams anyway
provider = "simulated"
served_model = "sim-plain"

[fleet.cut]                   # every streamed answer stops half-way
provider = "simulated"
served_model = "sim-cut"
max_retries = 1

[[routes]]
name = "cut-then-plain"
match = { metadata = { lane = "cut" } }
model = "cut"
fallback = ["plain"]

[[routes]]
name = "default"
model = "plain"

[worker]
backoff_base_s = 0.01
backoff_max_s = 0.05
cache_enabled = false

[worker.stream_chunks]
max_deltas = 4

[simulator]
seed = 5

[simulator.default]
latency_ms = 150
latency_jitter_ms = 1

[simulator.profiles.sim-cut]
latency_ms = 20
latency_jitter_ms = 1
truncate_rate = 1.0
"""

stack = stack_fixture(CONFIG, "streaming")


async def streamed(client: TurnoutClient, request) -> tuple[list[TextDelta], InferenceResponse]:
    items = [item async for item in client.stream(request, timeout_s=60)]
    *deltas, final = items
    assert isinstance(final, InferenceResponse) and all(isinstance(d, TextDelta) for d in deltas), items
    return deltas, final


def shown(deltas: list[TextDelta]) -> str:
    text = ""
    for delta in deltas:
        text = delta.text if delta.restart else text + delta.text
    return text


async def replies_of(settings, request_id: str) -> list[ResponseChunk | InferenceResponse]:
    """The records of ``request_id`` on the responses topic, in partition order."""
    codec = codec_for(settings.kafka)
    records = await read_topic(settings, settings.topics.responses)
    mine = sorted((r for r in records if r.key == request_id.encode()), key=lambda r: r.offset)
    assert len({r.partition for r in mine}) <= 1  # keyed by the request id: one partition, in order
    return [read_reply(codec, r.value) for r in mine]


async def test_a_streamed_request_gets_chunks_before_its_response_and_an_unstreamed_one_beside_it_none(stack):
    settings = stack.settings
    streamed_request = new_request("Tell me about steam engines.", "acme")
    plain_request = new_request("Tell me about electric trains.", "acme")
    awaited_request = new_request("Tell me about trams.", "acme", stream=True)  # streamed, but awaited whole
    async with TurnoutClient(settings.kafka) as client:
        (deltas, final), plain_final, awaited_final = await asyncio.gather(
            streamed(client, streamed_request), client.request(plain_request, timeout_s=60), client.request(awaited_request, timeout_s=60)
        )

    assert final.status == "ok" and final.model == "plain", final
    assert len(deltas) >= 2 and not any(d.restart for d in deltas)
    assert "".join(d.text for d in deltas) == final.content
    replies = await replies_of(settings, final.id)
    chunks = [r for r in replies if isinstance(r, ResponseChunk)]
    assert len(chunks) >= 2 and replies[-1] == final and len(replies) == len(chunks) + 1  # every chunk before the response
    assert "".join(c.delta for c in chunks) == final.content and {(c.attempt, c.model) for c in chunks} == {(0, "plain")}

    assert plain_final.status == "ok" and plain_final.content
    assert await replies_of(settings, plain_request.id) == [plain_final]  # one response, no chunk
    # a reader that wants only the response gets it, its chunks passed over
    awaited_replies = await replies_of(settings, awaited_request.id)
    assert awaited_final.status == "ok" and awaited_replies[-1] == awaited_final and len(awaited_replies) >= 3


async def test_a_stream_cut_mid_answer_is_retried_then_falls_back_and_the_text_shown_is_the_answer(stack):
    settings = stack.settings
    truncated_before = cut_streams(stack)
    request = new_request("Tell me about the Flying Scotsman.", "acme", metadata={"lane": "cut"})
    async with TurnoutClient(settings.kafka) as client:
        deltas, final = await streamed(client, request)

    assert final.status == "ok" and final.model == "plain" and final.routing.fallback_path == ["cut", "plain"], final
    assert shown(deltas) == final.content
    # the retry on "cut" repeated what was shown (no restart); the fallback's answer differs: one restart
    assert [d.model for d in deltas if d.restart] == ["plain"]
    chunks = [r for r in await replies_of(settings, request.id) if isinstance(r, ResponseChunk)]
    assert {(c.attempt, c.model) for c in chunks} == {(0, "cut"), (1, "cut"), (2, "plain")}
    assert "".join(c.delta for c in chunks if c.attempt == 2) == final.content
    assert cut_streams(stack) - truncated_before == 2


def cut_streams(stack) -> int:
    return simulator_health(stack)["models"].get("sim-cut", {}).get("faults", {}).get("truncated", 0)
