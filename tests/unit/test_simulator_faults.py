"""The simulator's fault injection: each fault at rate 1 through the official clients,
each at an intermediate seeded rate over hundreds of calls, bursts, hangs, and the
latency distributions read from the delays the simulator sampled (never from a clock)."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections import Counter

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from backend_fixtures import running_simulator
from test_simulator import MESSAGES, anthropic_client, client, health, instant, simulator_settings
from turnout.consumers.sim_faults import Failure, Fault, FaultPlanner, sample_latency_s
from turnout.schemas.settings import SimulatorProfile

CALLS = 400
ANTHROPIC_HEADERS = {"x-api-key": "x", "anthropic-version": "2023-06-01"}


def outcome(response: httpx.Response) -> str:
    """What a client sees: an error status, an HTML page, a cut body, or a good answer."""
    if response.status_code != 200:
        return str(response.status_code)
    if not response.headers["content-type"].startswith("application/json"):
        return "malformed"
    try:
        response.json()
    except ValueError:
        return "truncated"
    return "ok"


async def outcomes(port: int, model: str, calls: int = CALLS) -> list[str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        return [outcome(await http.post("/chat/completions", json={"model": model, "messages": MESSAGES})) for _ in range(calls)]


def within(count: int, calls: int, rate: float) -> bool:
    """``count`` is a plausible binomial draw at ``rate`` (four standard deviations)."""
    return abs(count - calls * rate) <= 4 * math.sqrt(calls * rate * (1 - rate)) + 1


async def both_clients_raise(port: int, model: str, errors: tuple[type[Exception], type[Exception]], timeout: float = 5) -> None:
    """One call to ``model`` in each format with the official clients, each raising its error."""
    async with client(port, timeout=timeout) as api:
        with pytest.raises(errors[0]):
            await api.chat.completions.create(model=model, messages=MESSAGES)
    async with anthropic_client(port, timeout=timeout) as claude:
        with pytest.raises(errors[1]):
            await claude.messages.create(model=model, max_tokens=50, messages=MESSAGES[1:])


# -- each fault at rate 1, through the official clients ---------------------------------------
async def test_truncated_body_is_a_parse_failure_not_a_hang():
    settings = simulator_settings(cut=instant(truncate_rate=1.0))
    async with running_simulator(settings) as (_, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", timeout=5) as http:
            raw = await http.post("/chat/completions", json={"model": "cut", "messages": MESSAGES})
        await both_clients_raise(port, "cut", (json.JSONDecodeError, json.JSONDecodeError))
        report = await health(port)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    assert int(raw.headers["content-length"]) == len(raw.content)  # what was sent is all there is
    assert raw.content.startswith(b'{"id": "chatcmpl-')
    with pytest.raises(ValueError):
        json.loads(raw.content)
    assert report["faults"]["truncated"] == 3


async def test_malformed_body_is_an_html_page_with_status_200():
    settings = simulator_settings(proxy=instant(malformed_rate=1.0))
    async with running_simulator(settings) as (_, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
            raw = await http.post("/chat/completions", json={"model": "proxy", "messages": MESSAGES})
        async with client(port) as api:
            parsed = await api.chat.completions.create(model="proxy", messages=MESSAGES)
        report = await health(port)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
    assert raw.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        raw.json()
    # the SDK hands back a non-JSON body as text: no ChatCompletion can come out of it
    assert not isinstance(parsed, ChatCompletion) and "<html>" in parsed
    assert report["faults"]["malformed"] == 2


async def test_hanging_call_outlasts_the_client_timeout_in_both_formats():
    settings = simulator_settings(stuck=instant(timeout_rate=1.0, hang_s=60))
    async with running_simulator(settings) as (_, port):
        await both_clients_raise(port, "stuck", (openai.APITimeoutError, anthropic.APITimeoutError), timeout=0.3)
        report = await health(port)
    # the test ends at once: shutting the simulator down wakes the calls still hanging
    assert report["faults"]["timeout"] == 2
    assert report["models"]["stuck"]["latency_ms"]["max"] == 0  # the latency sampled, not the hang


async def test_a_hang_shorter_than_the_timeout_still_answers():
    settings = simulator_settings(slow=instant(timeout_rate=1.0, hang_s=0.05))
    async with running_simulator(settings) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="slow", messages=MESSAGES)
        report = await health(port)
    assert isinstance(completion, ChatCompletion) and completion.choices[0].finish_reason == "stop"
    assert report["faults"]["timeout"] == 1


# -- intermediate rates, seeded --------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"rate_limit_rate": 0.2}, {"429": ("rate_limited", 0.2)}),
        ({"error_rate": 0.15}, {"500": ("server_error", 0.15)}),
        ({"truncate_rate": 0.2}, {"truncated": ("truncated", 0.2)}),
        ({"malformed_rate": 0.1}, {"malformed": ("malformed", 0.1)}),
        (
            {"rate_limit_rate": 0.1, "error_rate": 0.1, "truncate_rate": 0.1, "malformed_rate": 0.1},
            # body faults are drawn only for calls the status draw let through (0.8 of them)
            {"429": ("rate_limited", 0.1), "500": ("server_error", 0.1), "truncated": ("truncated", 0.08), "malformed": ("malformed", 0.08)},
        ),
    ],
    ids=["429", "500", "truncated", "malformed", "mixed"],
)
async def test_intermediate_rates_over_many_calls(fields, expected):
    async with running_simulator(simulator_settings(seed=99, flaky=instant(**fields))) as (_, port):
        seen = Counter(await outcomes(port, "flaky"))
        report = await health(port)
    for observed, (kind, rate) in expected.items():
        assert within(seen[observed], CALLS, rate), (observed, seen)
        assert report["faults"][kind] == seen[observed]  # the counters say what the client saw
    assert seen["ok"] == CALLS - sum(seen[observed] for observed in expected)
    assert sum(report["faults"].values()) == CALLS - seen["ok"]


async def test_the_same_seed_repeats_the_faults_whichever_format_is_called():
    """The decisions are shared: OpenAI and Anthropic calls meet the same fault sequence."""
    settings = simulator_settings(seed=5, mixed=instant(rate_limit_rate=0.2, error_rate=0.2, burst_rate=0.05, burst_statuses=(503,)))
    anthropic_status = {"200": "200", "429": "429", "500": "500", "529": "503"}

    async def sequence(path: str, extra: dict) -> list[str]:
        async with running_simulator(settings) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
            body = {"model": "mixed", "messages": MESSAGES[1:], **extra}
            return [str((await http.post(path, json=body, headers=ANTHROPIC_HEADERS)).status_code) for _ in range(120)]

    chat = await sequence("/chat/completions", {})
    messages = await sequence("/messages", {"max_tokens": 50})
    assert chat == [anthropic_status[status] for status in messages]
    assert {"200", "429", "500", "503"} <= set(chat)


# -- bursts ------------------------------------------------------------------------------------
async def test_burst_at_rate_one_fails_every_call_with_its_status():
    settings = simulator_settings(down=instant(burst_rate=1.0, burst_length=3, burst_statuses=(502,)))
    async with running_simulator(settings) as (_, port):
        seen = await outcomes(port, "down", calls=7)
        report = await health(port)
    assert seen == ["502"] * 7
    assert report["bursts_started"] == 3  # calls 1, 4 and 7 start one
    assert report["faults"]["burst"] == 7


async def test_bursts_fail_consecutive_calls_in_runs_of_their_length():
    settings = simulator_settings(seed=3, bursty=instant(burst_rate=0.05, burst_length=4))
    async with running_simulator(settings) as (_, port):
        seen = await outcomes(port, "bursty")
        report = await health(port)
    runs, current = [], 0
    for status in seen:
        if status == "ok":
            runs, current = runs + [current] * (current > 0), 0
        else:
            current += 1
    assert runs and all(length % 4 == 0 for length in runs), runs  # back-to-back bursts merge into a multiple
    assert set(seen) - {"ok"} <= {"500", "502", "503"} and len(set(seen) - {"ok"}) >= 2
    failures = CALLS - seen.count("ok")
    assert report["faults"]["burst"] == failures and report["faults"]["server_error"] == 0
    assert report["bursts_started"] * 4 >= failures > (report["bursts_started"] - 1) * 4
    # a burst starts on about 1 in 20 of the calls not already in one
    assert within(report["bursts_started"], CALLS - failures + report["bursts_started"], 0.05)


async def test_a_burst_is_deployment_wide_across_formats_and_spares_other_models():
    settings = simulator_settings(down=instant(burst_rate=1.0, burst_length=3, burst_statuses=(503,)), up=instant())
    async with running_simulator(settings) as (_, port):
        async with client(port) as api, anthropic_client(port) as claude:
            with pytest.raises(openai.InternalServerError) as first:
                await api.chat.completions.create(model="down", messages=MESSAGES)
            healthy = await api.chat.completions.create(model="up", messages=MESSAGES)
            for _ in range(2):  # the rest of the burst the OpenAI call started
                with pytest.raises(anthropic.OverloadedError) as overloaded:
                    await claude.messages.create(model="down", max_tokens=50, messages=MESSAGES[1:])
            after_one_burst = await health(port)
            with pytest.raises(anthropic.OverloadedError):
                await claude.messages.create(model="down", max_tokens=50, messages=MESSAGES[1:])
        report = await health(port)
    assert first.value.status_code == 503 and overloaded.value.status_code == 529
    assert overloaded.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert healthy.choices[0].finish_reason == "stop"
    assert after_one_burst["bursts_started"] == 1 and report["bursts_started"] == 2
    assert report["models"]["up"]["faults"]["burst"] == 0 and report["models"]["down"]["faults"]["burst"] == 4


# -- timeouts at a rate, and the order of the draws (the planner alone) ------------------------
def test_timeout_rate_hangs_that_share_of_calls():
    planner = FaultPlanner(random.Random(8))
    profile = instant(timeout_rate=0.1, hang_s=45)
    plans = [planner.plan("m", profile, structured=False) for _ in range(2000)]
    hung = [p for p in plans if Fault.TIMEOUT in p.faults]
    assert within(len(hung), 2000, 0.1)
    assert {p.delay_s for p in hung} == {45} and {p.delay_s for p in plans if p not in hung} == {0}


def test_disabled_faults_draw_nothing_and_enabled_ones_draw_once():
    """The documented order: a fault draws only when enabled, so a fault-free fixed-latency
    profile leaves the generator untouched and each enabled decision takes one draw."""
    planner, reference = FaultPlanner(random.Random(11)), random.Random(11)
    planner.plan("m", instant(), structured=True)
    assert planner.rng.getstate() == reference.getstate()
    planner.plan("m", SimulatorProfile(latency_ms=40, latency_jitter_ms=10, error_rate=0.5), structured=False)
    reference.gauss(40, 10)
    reference.random()
    assert planner.rng.getstate() == reference.getstate()


def test_first_fault_that_settles_the_answer_ends_the_plan():
    planner = FaultPlanner(random.Random(1))
    every = instant(rate_limit_rate=1.0, truncate_rate=1.0, schema_violation_rate=1.0)
    plan = planner.plan("m", every, structured=True)
    assert (plan.failure, plan.faults, plan.body_fault, plan.output_fault) == (Failure.RATE_LIMITED, (Fault.RATE_LIMITED,), None, None)
    plan = planner.plan("m", instant(truncate_rate=1.0, schema_violation_rate=1.0), structured=True)
    assert (plan.failure, plan.body_fault, plan.output_fault) == (None, Fault.TRUNCATED, None)
    plan = planner.plan("m", instant(schema_violation_rate=1.0), structured=False)
    assert plan.output_fault is None  # no schema, no schema fault


# -- latency distributions ---------------------------------------------------------------------
def samples_ms(profile: SimulatorProfile, n: int = 5000) -> list[float]:
    rng = random.Random(21)
    return sorted(sample_latency_s(profile, rng) * 1000 for _ in range(n))


def tail_ratio(ordered: list[float]) -> float:
    return ordered[int(0.99 * len(ordered))] / statistics.median(ordered)


def test_lognormal_latency_has_its_median_and_a_long_tail():
    ordered = samples_ms(SimulatorProfile(latency_distribution="lognormal", latency_ms=50, latency_sigma=1.0))
    assert statistics.median(ordered) == pytest.approx(50, rel=0.06)
    assert tail_ratio(ordered) == pytest.approx(math.exp(2.326), rel=0.2)  # p99 = median * e^(2.33 sigma)
    assert min(ordered) > 0


def test_normal_latency_is_tight_and_fixed_latency_does_not_vary():
    normal = samples_ms(SimulatorProfile(latency_ms=50, latency_jitter_ms=5))
    assert statistics.mean(normal) == pytest.approx(50, rel=0.02) and statistics.stdev(normal) == pytest.approx(5, rel=0.1)
    assert tail_ratio(normal) < 1.3
    assert set(samples_ms(SimulatorProfile(latency_distribution="fixed", latency_ms=50), 50)) == {50}
    assert min(samples_ms(SimulatorProfile(latency_ms=1, latency_jitter_ms=5))) == 0  # never negative


async def test_health_reports_the_sampled_lognormal_tail():
    settings = simulator_settings(seed=4, tail=SimulatorProfile(latency_distribution="lognormal", latency_ms=0.2, latency_sigma=1.2))
    async with running_simulator(settings) as (simulator, port):
        await outcomes(port, "tail", calls=300)
        summary = (await health(port))["models"]["tail"]["latency_ms"]
    sampled = simulator.stats.latencies_ms("tail")
    assert summary["count"] == len(sampled) == 300
    assert summary["p50"] == pytest.approx(0.2, rel=0.25)
    assert summary["p99"] / summary["p50"] > 6 and summary["max"] == pytest.approx(max(sampled), abs=1e-3)


async def test_unsure_answers_carry_low_token_probabilities_in_openai_logprobs():
    settings = simulator_settings(seed=5, doubtful=instant(low_confidence_rate=0.25))
    async with running_simulator(settings) as (_, port), client(port) as api:
        completions = [await api.chat.completions.create(model="doubtful", messages=MESSAGES, logprobs=True) for _ in range(200)]
        plain = await api.chat.completions.create(model="doubtful", messages=MESSAGES)
        report = await health(port)
    means = []
    for completion in completions:
        tokens = completion.choices[0].logprobs.content  # parsed by the SDK's own types
        assert "".join(t.token for t in tokens) == completion.choices[0].message.content
        means.append(math.exp(statistics.fmean(t.logprob for t in tokens)))
    unsure = sum(mean < 0.5 for mean in means)
    assert {round(mean, 6) for mean in means} == {0.3, 0.9}
    assert within(unsure, 200, 0.25) and report["faults"]["low_confidence"] >= unsure  # the plain call may be unsure too
    assert plain.choices[0].logprobs is None  # only sent when asked for


def test_the_confidence_draw_comes_after_the_body_and_before_the_output_draws():
    planner = FaultPlanner(random.Random(3))
    profile = instant(low_confidence_rate=1.0, schema_violation_rate=1.0)
    plan = planner.plan("m", profile, structured=True)
    assert plan.unsure and Fault.LOW_CONFIDENCE in plan.faults and plan.output_fault is Fault.SCHEMA_VIOLATION
    failing = planner.plan("m", instant(low_confidence_rate=1.0, error_rate=1.0), structured=False)
    assert not failing.unsure and failing.failure is Failure.SERVER_ERROR  # an error answer has no tokens to doubt
