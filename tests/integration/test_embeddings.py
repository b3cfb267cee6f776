"""Embedding requests end to end, on the real broker: router -> embedding model's topic ->
worker batching concurrent requests into few backend calls -> one response per request.

The simulator's ``/health`` counts its embeddings calls and their inputs: fewer calls
than requests proves the worker batched, and the same number of inputs as texts proves
nothing was sent twice or lost. A chat request on the same stack still goes to the chat
model, never to the embedding model.
"""

from __future__ import annotations

from collections import Counter

import pytest
from stacks import read_topic, simulator_health, stack_fixture

from turnout.producers.client import TurnoutClient, new_embedding_request, new_request
from turnout.schemas.models import InferenceResponse, RoutingEvent
from turnout.schemas.serde import codec_for

REQUESTS = 50
INPUT_PRICE = 0.02

CONFIG = f"""
[kafka]
topic_prefix = "etest"
partitions = 3

[fleet.embed]
provider = "simulated"
served_model = "sim-embed"
capabilities = ["embeddings"]
price_input_per_mtok = {INPUT_PRICE}

[fleet.chat]
provider = "simulated"
served_model = "sim-chat"
price_input_per_mtok = 0.15
price_output_per_mtok = 0.60

[[routes]]
name = "embeddings"
match = {{ task_type = "embedding" }}
model = "embed"

[[routes]]
name = "default"
model = "chat"

[worker]
embedding_batch_max = 64
embedding_batch_wait_ms = 20
cache_enabled = false     # every request is a fresh call: the calls counted are the batching's

[simulator.profiles.sim-embed]
latency_ms = 20
embedding_dim = 12
"""


stack = stack_fixture(CONFIG, "embeddings")


async def test_embedding_requests_are_batched_and_each_gets_exactly_one_response(stack):
    settings = stack.settings
    requests = [new_embedding_request([f"text {n}.{i} about railway switches" for i in range(1 + n % 3)], "acme") for n in range(REQUESTS)]
    async with TurnoutClient(settings.kafka) as client:
        ids = await client.publish(requests)
        answers = await client.gather(ids, 120)

    for request in requests:
        answer = answers[request.id]
        assert answer.status == "ok", answer.error
        assert (answer.model, answer.routing.route, answer.routing.task_type) == ("embed", "embeddings", "embedding")
        assert len(answer.embeddings) == len(request.input) and all(len(v) == 12 for v in answer.embeddings)
        assert answer.usage.input_tokens > 0 and answer.cost_usd == pytest.approx(answer.usage.input_tokens * INPUT_PRICE / 1e6)

    codec = codec_for(settings.kafka)
    records = await read_topic(settings, settings.topics.responses, expected=REQUESTS)
    per_id = Counter(codec.decode(r.value, InferenceResponse).id for r in records)
    assert set(per_id) == set(ids) and max(per_id.values()) == 1, "exactly one response per request"

    report = simulator_health(stack)["embeddings"]
    print("simulator embeddings:", report)
    texts = sum(len(r.input) for r in requests)
    assert report["inputs"] == texts, report
    assert report["calls"] < REQUESTS, f"batched: {report['calls']} calls for {REQUESTS} requests ({report['inputs_per_call']})"
    assert report["max_inputs_per_call"] > 1

    events = [codec.decode(r.value, RoutingEvent) for r in await read_topic(settings, settings.topics.events)]
    completions = {e.request_id: e for e in events if e.kind == "completion"}
    attempts = Counter(e.request_id for e in events if e.kind == "attempt")
    assert set(ids) <= set(completions) and all(attempts[i] == 1 for i in ids), "each request has its own attempt and completion"
    assert sum(completions[i].cost_usd for i in ids) == pytest.approx(sum(answers[i].cost_usd for i in ids))


async def test_a_chat_request_on_the_same_stack_goes_to_the_chat_model(stack):
    async with TurnoutClient(stack.settings.kafka) as client:
        answer = await client.request(new_request("Hello! How are you today?", "acme"), 60)
    assert answer.status == "ok" and answer.model == "chat" and answer.content and answer.embeddings == []
