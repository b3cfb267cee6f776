"""The cascade on the real broker: a cheap model answers first, and the answers it was
unsure of (by the token log-probabilities the simulator returns) escalate to the
capable model named in the plan; confident answers stay with the cheap one.

The simulator makes a third of the cheap model's answers unsure (mean token
probability 0.3 against 0.9, see ``consumers/sim_wire.py``), the route escalates below
0.5. The capable model's own answers are never judged: it is the last step.
"""

from __future__ import annotations

from collections import Counter

import pytest
from stacks import read_topic, simulator_health, stack_fixture

from turnout.producers.client import TurnoutClient, new_request
from turnout.schemas.models import RoutingEvent
from turnout.schemas.serde import codec_for

REQUESTS = 90

CONFIG = """
[kafka]
topic_prefix = "ctest"
partitions = 2

[fleet.cheap]
provider = "simulated"
served_model = "sim-cheap"
quality_tier = 1
price_input_per_mtok = 0.1
price_output_per_mtok = 0.2

[fleet.capable]
provider = "simulated"
served_model = "sim-capable"
quality_tier = 4
price_input_per_mtok = 3.0
price_output_per_mtok = 15.0

[[routes]]
name = "cascade"
model = "cheap"
escalate_to = "capable"
escalate_on = ["low_confidence", "truncated"]
min_confidence = 0.5

[worker]
cache_enabled = false

[simulator]
seed = 11

[simulator.profiles.sim-cheap]
latency_ms = 5
latency_jitter_ms = 1
low_confidence_rate = 0.33

[simulator.profiles.sim-capable]
latency_ms = 10
latency_jitter_ms = 1
low_confidence_rate = 1.0   # the last step: its doubts have nowhere to go
"""

stack = stack_fixture(CONFIG, "cascade")


async def test_unsure_answers_of_the_cheap_model_escalate_and_sure_ones_stay(stack):
    requests = [new_request(f"Explain point {n} of the timetable.", "acme") for n in range(REQUESTS)]
    async with TurnoutClient(stack.settings.kafka) as client:
        ids = await client.publish(requests)
        answers = await client.gather(ids, 120)

    assert all(a.status == "ok" for a in answers.values()), Counter(a.error.code for a in answers.values() if a.error)
    served = Counter(a.model for a in answers.values())
    assert set(served) == {"cheap", "capable"}, served
    doubted = simulator_health(stack)["models"]["sim-cheap"]["faults"]["low_confidence"]
    assert served["capable"] == doubted and 10 <= doubted <= 50, (served, doubted)  # every unsure answer, and only those
    for answer in answers.values():
        path = answer.routing.fallback_path
        if answer.model == "capable":
            assert path == ["cheap", "capable"], path  # the cheap model answered first, then the plan escalated
            assert answer.confidence is None  # the last step's answer is not judged: no logprobs asked for
        else:
            assert path == ["cheap"], path
            assert answer.confidence == pytest.approx(0.9)  # the simulator's sure answers

    # every cheap attempt is on the events topic with the confidence it was judged by
    codec = codec_for(stack.settings.kafka)
    events = [codec.decode(r.value, RoutingEvent) for r in await read_topic(stack.settings, stack.settings.topics.events)]
    judged = Counter(round(e.confidence, 6) for e in events if e.kind == "attempt" and e.model == "cheap")
    assert judged == {0.3: served["capable"], 0.9: served["cheap"]}, judged
