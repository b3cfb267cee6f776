"""Workers under faults: 30 % of the calls to one deployment fail (5xx, 429 with
Retry-After, timeouts), on the real broker with the simulator injecting them.

Every request still ends with exactly one response on the responses topic (served by
the faulty model, by its fallback, or a structured error), none is lost, and the faulty
deployment's circuit breaker opens and closes again as configured, as its health
reports on the compacted health topic show.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from stacks import read_topic, stack_fixture

from turnout.producers.client import TurnoutClient, new_request
from turnout.schemas.models import DeploymentHealth, InferenceResponse
from turnout.schemas.serde import codec_for

REQUESTS = 300
CLOSING_WAVES = 15  # each closes the breaker with odds of about 2 in 3: all failing is ~1e-7
WAVE = 12

CONFIG = """
[kafka]
topic_prefix = "ftest"
partitions = 3

[fleet.faulty]
provider = "simulated"
served_model = "sim-faulty"
concurrency = 16
timeout_s = 0.5          # the simulator's hangs last 3 s: a timeout, then a retry
max_retries = 1
price_input_per_mtok = 0.1
price_output_per_mtok = 0.2

[fleet.steady]
provider = "simulated"
served_model = "sim-steady"
concurrency = 16
price_input_per_mtok = 1.0
price_output_per_mtok = 2.0

[[routes]]
name = "default"
model = "faulty"
fallback = ["steady"]

[worker]
backoff_base_s = 0.01
backoff_max_s = 0.05
max_wait_s = 2
health_interval_s = 0.5
cache_enabled = false     # every request is a fresh call: the faults must be met

[worker.breaker]
window_s = 5
min_calls = 10
failure_rate = 0.2        # 30 % failing calls (429s excluded: 20 %) trips it
slow_call_rate = 1.0
open_s = 0.5
max_open_s = 1.0
probe_successes = 2
half_open_probes = 2       # both probes of a wave go out together

[simulator]
seed = 7

[simulator.default]
latency_ms = 5
latency_jitter_ms = 1

[simulator.profiles.sim-faulty]
latency_ms = 5
latency_jitter_ms = 1
error_rate = 0.1
rate_limit_rate = 0.1
retry_after_s = 0.05
timeout_rate = 0.1
hang_s = 3
"""


stack = stack_fixture(CONFIG, "faults")


async def test_every_request_gets_exactly_one_response_and_the_breaker_cycles(stack):
    settings = stack.settings
    codec = codec_for(settings.kafka)
    requests = [new_request(f"Tell me fact number {n} about trains.", "acme") for n in range(REQUESTS)]
    async with TurnoutClient(settings.kafka) as client:
        ids = await client.publish(requests)
        answers = await client.gather(ids, 240)
        assert len(answers) == REQUESTS  # none lost
        # A half-open breaker closes only on probes, and probes are calls: when the load
        # ends while it is half-open, it stays so. Keep a little traffic coming (each
        # probe still fails 20 % of the time) until it has closed again, a bounded number
        # of times.
        for wave in range(CLOSING_WAVES):
            if closed_after_open(await breaker_states(settings, codec)):
                break
            await asyncio.sleep(1.2)  # past max_open_s: the breaker is half-open, not open
            more = [new_request(f"Tell me fact {wave}.{n} about ships.", "acme") for n in range(WAVE)]
            ids += await client.publish(more)
            await client.gather([r.id for r in more], 60)

    records = await read_topic(settings, settings.topics.responses, expected=len(ids))
    responses = [codec.decode(r.value, InferenceResponse) for r in records]
    per_id = Counter(r.id for r in responses)
    assert set(per_id) == set(ids) and max(per_id.values()) == 1, "exactly one response per request"
    served_by = Counter(r.model if r.status == "ok" else f"error:{r.error.code}" for r in responses)
    assert served_by["faulty"] > 0 and served_by["steady"] > 0, served_by  # faults moved some along the plan
    assert sum(n for k, n in served_by.items() if k.startswith("error:")) == 0, served_by  # the fallback is healthy

    states = await breaker_states(settings, codec)
    assert "open" in states, f"the breaker never opened: {Counter(states)}"
    assert closed_after_open(states), f"the breaker never closed again after opening: {states[states.index('open'):]}"


async def breaker_states(settings, codec) -> list[str]:
    """The faulty deployment's breaker states, in the order its health reports were published."""
    reports = [codec.decode(r.value, DeploymentHealth) for r in await read_topic(settings, settings.topics.health) if r.value]
    return [r.breaker for r in reports if r.model == "faulty"]


def closed_after_open(states: list[str]) -> bool:
    return "open" in states and "closed" in states[states.index("open") :]
