"""serve(): one routing slip on one deployment — answer, retry, forward along the plan, or give up."""

from __future__ import annotations

import asyncio
import random
import time
import types

import httpx
import pytest

import turnout.consumers.serving as serving
from backend_fixtures import (
    TOPICS,
    Script,
    events_of,
    fast_worker_settings,
    future,
    make_deployment,
    make_request,
    make_slip,
    ok,
    on_topic,
    past,
    status,
)
from turnout.consumers.ratelimit import RateLimiter
from turnout.consumers.serving import Outcome, serve
from turnout.schemas.models import InferenceResponse, RoutedRequest
from turnout.schemas.serde import AvroCodec

SETTINGS = fast_worker_settings()
CODEC = AvroCodec()


async def run(slip, deployment, settings=SETTINGS) -> Outcome:
    try:
        return await serve(slip, deployment, TOPICS, settings, random.Random(1))
    finally:
        await deployment.backend.aclose()


def assert_publishable(outcome: Outcome) -> None:
    """The worker encodes every message with the Avro codec: each must round-trip."""
    for message in outcome.messages:
        assert CODEC.decode(CODEC.encode(message.record), type(message.record)) == message.record
        record = message.record
        request_id = record.request.id if isinstance(record, RoutedRequest) else getattr(record, "request_id", None) or record.id
        assert message.key == request_id  # keyed by request id: one partition per request


def responses(outcome: Outcome, topic: str = TOPICS.responses) -> list[InferenceResponse]:
    return [m.record for m in on_topic(outcome.messages, topic)]


# -- success -----------------------------------------------------------------------------
async def test_success_answers_with_response_attempt_and_completion_events():
    script = Script(ok(content="bonjour", prompt_tokens=1000, completion_tokens=500))
    deployment = make_deployment(script, "a", price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    outcome = await run(make_slip(), deployment)

    assert outcome.answered is True
    assert outcome.dead_letters == []
    assert script.calls == 1
    expected_cost = deployment.config.cost_usd(1000, 500)
    assert expected_cost == pytest.approx((1000 * 3.0 + 500 * 15.0) / 1e6)

    [response] = responses(outcome)
    assert response.status == "ok" and response.error is None
    assert (response.id, response.tenant) == ("req-1", "acme")
    assert (response.model, response.provider, response.content) == ("a", "test-provider", "bonjour")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 500)
    assert response.cost_usd == pytest.approx(expected_cost)
    assert response.routing.fallback_path == ["a"]
    assert response.routing.route == "default" and response.routing.policy_version == "v-test"

    [attempt] = events_of(outcome.messages, "attempt")
    assert (attempt.status, attempt.model, attempt.attempt, attempt.fallback_depth) == ("ok", "a", 0, 0)
    assert (attempt.input_tokens, attempt.output_tokens) == (1000, 500)
    assert attempt.cost_usd == pytest.approx(expected_cost)
    [completion] = events_of(outcome.messages, "completion")
    assert completion.status == "ok" and completion.cost_usd == pytest.approx(expected_cost)
    assert completion.attempt == 1
    assert events_of(outcome.messages, "failure") == []
    assert all(m.key == "req-1" for m in outcome.messages)
    assert not on_topic(outcome.messages, TOPICS.model("b"))
    assert_publishable(outcome)


async def test_success_goes_to_the_requests_reply_topic_when_set():
    slip = make_slip(make_request(reply_topic="svc.replies"))
    outcome = await run(slip, make_deployment(Script(ok())))
    assert [r.status for r in responses(outcome, "svc.replies")] == ["ok"]
    assert responses(outcome) == []  # nothing on the shared responses topic
    assert len(events_of(outcome.messages, "completion")) == 1  # events still go to the events topic


async def test_free_deployment_costs_nothing():
    outcome = await run(make_slip(), make_deployment(Script(ok()), price_input_per_mtok=0.0, price_output_per_mtok=0.0))
    assert responses(outcome)[0].cost_usd == 0.0


# -- retries ----------------------------------------------------------------------------------
async def test_500_then_200_retries_and_answers():
    script = Script(status(500, "flaky"), ok(content="second time"))
    outcome = await run(make_slip(), make_deployment(script))

    assert script.calls == 2
    assert outcome.answered
    attempts = events_of(outcome.messages, "attempt")
    assert [(e.status, e.error_kind, e.attempt) for e in attempts] == [("error", "backend_error", 0), ("ok", "", 1)]
    assert len({e.event_id for e in attempts}) == 2  # distinct rows downstream
    [response] = responses(outcome)
    assert response.content == "second time"
    assert response.routing.fallback_path == ["a"]
    assert events_of(outcome.messages, "completion")[0].attempt == 2
    assert_publishable(outcome)


async def test_always_500_spends_retries_then_forwards_the_slip_to_the_next_step():
    script = Script(status(500, "down"))
    original = make_slip()
    outcome = await run(original, make_deployment(script, max_retries=2))

    assert script.calls == 3
    assert outcome.answered is False
    assert responses(outcome) == []
    assert events_of(outcome.messages, "completion") == [] and events_of(outcome.messages, "failure") == []
    attempts = events_of(outcome.messages, "attempt")
    assert [e.attempt for e in attempts] == [0, 1, 2]
    assert {(e.status, e.error_kind) for e in attempts} == {("error", "backend_error")}

    [forward] = on_topic(outcome.messages, "tt.model.b")
    assert forward.key == "req-1"
    slip = forward.record
    assert isinstance(slip, RoutedRequest)
    assert slip.step == 1 and slip.current.model == "b"
    assert [(a.model, a.status) for a in slip.attempts] == [("a", "error")] * 3
    assert all(a.error.code == "backend_error" and a.error.details == {"http_status": "500"} for a in slip.attempts)
    assert slip.request == original.request  # the request itself travels unchanged
    assert_publishable(outcome)


async def test_max_retries_zero_means_one_attempt():
    script = Script(status(503))
    outcome = await run(make_slip(), make_deployment(script, max_retries=0))
    assert script.calls == 1
    assert len(on_topic(outcome.messages, "tt.model.b")) == 1


async def test_400_is_not_retried_and_moves_on():
    script = Script(status(400, "bad request"), ok())
    outcome = await run(make_slip(), make_deployment(script, max_retries=2))

    assert script.calls == 1
    assert not outcome.answered
    [attempt] = events_of(outcome.messages, "attempt")
    assert attempt.error_kind == "backend_rejected"
    [forward] = on_topic(outcome.messages, "tt.model.b")
    assert forward.record.step == 1
    assert forward.record.attempts[0].error.retryable is False


async def test_timeout_is_retried():
    script = Script(httpx.ReadTimeout("slow"), ok())
    outcome = await run(make_slip(), make_deployment(script))
    assert script.calls == 2 and outcome.answered
    assert [e.error_kind for e in events_of(outcome.messages, "attempt")] == ["timeout", ""]


# -- the end of the plan ------------------------------------------------------------------------
async def test_last_step_failing_answers_all_backends_failed_with_a_failure_event():
    first = await run(make_slip(), make_deployment(Script(status(500, "a is down")), "a", max_retries=1))
    [forward] = on_topic(first.messages, "tt.model.b")

    script_b = Script(status(503, "b is down too"))
    outcome = await run(forward.record, make_deployment(script_b, "b", served_model="served-b", max_retries=1))

    assert script_b.calls == 2
    assert script_b.bodies[0]["model"] == "served-b"
    assert outcome.answered is True  # a final answer, even if an error: not served again on redelivery
    assert not any(m.topic.startswith("tt.model.") for m in outcome.messages)
    [response] = responses(outcome)
    assert response.status == "error"
    assert response.error.code == "all_backends_failed"
    assert "503" in response.error.message and "b is down too" in response.error.message
    assert response.routing.fallback_path == ["a", "b"]
    # attempt numbers continue across the plan, so every attempt has its own event row
    assert [e.attempt for e in events_of(outcome.messages, "attempt")] == [2, 3]
    assert {e.fallback_depth for e in events_of(outcome.messages, "attempt")} == {1}
    [failure] = events_of(outcome.messages, "failure")
    assert failure.status == "error" and failure.error_kind == "all_backends_failed"
    assert failure.attempt == 4
    assert events_of(outcome.messages, "completion") == []
    assert_publishable(outcome)


async def test_single_step_plan_that_fails_gives_up_directly():
    outcome = await run(make_slip(plan=("a",)), make_deployment(Script(status(400, "no")), max_retries=3))
    [response] = responses(outcome)
    assert response.error.code == "all_backends_failed"
    assert "backend_rejected" in response.error.message


async def test_fallback_step_succeeding_records_the_whole_path():
    failed = await run(make_slip(), make_deployment(Script(status(500)), "a", max_retries=0))
    slip = on_topic(failed.messages, "tt.model.b")[0].record
    outcome = await run(slip, make_deployment(Script(ok(content="from b")), "b"))
    [response] = responses(outcome)
    assert (response.status, response.model, response.content) == ("ok", "b", "from b")
    assert response.routing.fallback_path == ["a", "b"]
    assert response.routing.selected_model == "a"
    [completion] = events_of(outcome.messages, "completion")
    assert completion.fallback_depth == 1


# -- rate limits ------------------------------------------------------------------------------
class RecordingLimiter(RateLimiter):
    """The deployment's real limiter, remembering the pauses it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.paused_for: list[float] = []
        self.until_after_pause: list[float] = []

    def pause_for(self, seconds: float) -> None:
        super().pause_for(seconds)
        self.paused_for.append(seconds)
        self.until_after_pause.append(time.monotonic() + self.paused_s())


async def test_429_with_retry_after_pauses_the_deployment_and_retries():
    script = Script(status(429, "slow down", {"Retry-After": "0.02"}), ok(content="after the pause"))
    deployment = make_deployment(script, max_retries=2)
    deployment.limiter = RecordingLimiter()
    outcome = await run(make_slip(), deployment)

    assert deployment.limiter.paused_for == [pytest.approx(0.02)]
    # the retry was not sent before the deployment's pause ended
    assert script.call_times[1] >= deployment.limiter.until_after_pause[0]
    assert script.calls == 2 and outcome.answered
    assert responses(outcome)[0].content == "after the pause"
    assert [e.error_kind for e in events_of(outcome.messages, "attempt")] == ["rate_limited", ""]


async def test_429_pause_is_shared_by_the_next_request_on_the_deployment():
    script = Script(status(429, headers={"retry-after-ms": "20"}), ok(), ok())
    deployment = make_deployment(script, max_retries=0)
    deployment.limiter = RecordingLimiter()
    first = await serve(make_slip(make_request(id="r1")), deployment, TOPICS, SETTINGS, random.Random(1))
    assert not first.answered and deployment.limiter.paused_for == [pytest.approx(0.02)]
    second = await run(make_slip(make_request(id="r2")), deployment)
    assert second.answered
    assert script.call_times[1] >= deployment.limiter.until_after_pause[0]


async def test_429_without_retry_after_does_not_pause():
    script = Script(status(429), ok())
    deployment = make_deployment(script)
    deployment.limiter = RecordingLimiter()
    outcome = await run(make_slip(), deployment)
    assert deployment.limiter.paused_for == []
    assert outcome.answered and script.calls == 2


async def test_retry_after_beyond_the_deadline_does_not_sleep_past_it(monkeypatch):
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)  # record what serve() would wait, without waiting

    fake_asyncio = types.SimpleNamespace(sleep=recording_sleep, wait_for=asyncio.wait_for)
    monkeypatch.setattr(serving, "asyncio", fake_asyncio)  # the retry backoff
    script = Script(status(429, headers={"Retry-After": "3600"}), ok())
    deployment = make_deployment(script, max_retries=2)
    outcome = await run(make_slip(make_request(deadline=future(30))), deployment)
    assert sum(slept) <= 30
    assert on_topic(outcome.messages, "tt.model.b"), "a wait longer than the request can afford moves it along the plan"
    assert script.calls == 1


# -- deadlines ---------------------------------------------------------------------------------
async def test_deadline_in_the_past_answers_deadline_exceeded_without_calling_the_backend():
    script = Script(ok())
    outcome = await run(make_slip(make_request(deadline=past())), make_deployment(script))

    assert script.calls == 0
    assert outcome.answered
    [response] = responses(outcome)
    assert response.status == "error" and response.error.code == "deadline_exceeded"
    assert events_of(outcome.messages, "attempt") == []
    [failure] = events_of(outcome.messages, "failure")
    assert failure.error_kind == "deadline_exceeded"
    assert not on_topic(outcome.messages, "tt.model.b")
    assert_publishable(outcome)


async def test_future_deadline_is_served():
    script = Script(ok())
    outcome = await run(make_slip(make_request(deadline=future())), make_deployment(script))
    assert script.calls == 1 and responses(outcome)[0].status == "ok"


async def test_a_malformed_200_never_raises_out_of_serve():
    script = Script(httpx.Response(200, json={"choices": [{"message": None, "finish_reason": "stop"}]}))
    outcome = await run(make_slip(), make_deployment(script, max_retries=0))
    assert not outcome.answered
    assert events_of(outcome.messages, "attempt")[0].error_kind == "malformed_response"



# -- escalation (the cascade) -------------------------------------------------------------------
def cascade_slip(**overrides):
    from turnout.schemas.models import PlanStep

    slip = make_slip(plan=("a", "b"))
    plan = [*slip.plan, PlanStep(model="c", role="escalation", when=["truncated"])]
    return slip.model_copy(update={"plan": plan, **overrides})


async def test_a_cut_off_answer_escalates_along_the_plan_instead_of_answering():
    script = Script(ok(content="half an answer", finish_reason="length"))
    outcome = await run(cascade_slip(), make_deployment(script))
    assert not outcome.answered and responses(outcome) == []
    [forwarded] = on_topic(outcome.messages, "tt.model.c")
    assert forwarded.record.step == 2 and forwarded.record.current.role == "escalation"
    assert [a.status for a in forwarded.record.attempts] == ["ok"]  # the cut-off call is on the slip, and was paid for
    assert events_of(outcome.messages, "attempt")[0].cost_usd > 0


async def test_a_complete_answer_does_not_escalate_and_failures_skip_the_escalation_step():
    done = await run(cascade_slip(), make_deployment(Script(ok(content="all of it"))))
    assert done.answered and responses(done)[0].content == "all of it"
    failing = await run(cascade_slip(), make_deployment(Script(status(400)), max_retries=0))
    assert on_topic(failing.messages, "tt.model.b") and not on_topic(failing.messages, "tt.model.c")  # fallback, not escalation


async def test_the_escalation_step_answers_when_cut_off_again():
    slip = cascade_slip(step=2)
    outcome = await run(slip, make_deployment(Script(ok(content="still long", finish_reason="length")), model_id="c"))
    assert outcome.answered and responses(outcome)[0].finish_reason == "length"


def doubtful_cascade_slip(min_confidence: float = 0.5, **overrides):
    from turnout.schemas.models import PlanStep

    slip = make_slip(plan=("a", "b"))
    plan = [*slip.plan, PlanStep(model="c", role="escalation", when=["low_confidence"], min_confidence=min_confidence)]
    return slip.model_copy(update={"plan": plan, **overrides})


async def test_an_unsure_answer_escalates_and_the_call_asked_for_logprobs():
    script = Script(ok(content="maybe it is Lyon", token_probability=0.3))
    outcome = await run(doubtful_cascade_slip(), make_deployment(script))
    assert script.bodies[0]["logprobs"] is True
    assert not outcome.answered and responses(outcome) == []
    [forwarded] = on_topic(outcome.messages, "tt.model.c")
    assert forwarded.record.current.role == "escalation" and [a.status for a in forwarded.record.attempts] == ["ok"]
    assert forwarded.record.attempts[0].confidence == pytest.approx(0.3)  # why it escalated, on the slip
    assert events_of(outcome.messages, "attempt")[0].confidence == pytest.approx(0.3)  # and for the analysts
    assert_publishable(outcome)


@pytest.mark.parametrize("probability", [0.5, 0.9])
async def test_an_answer_at_or_above_the_threshold_is_returned(probability):
    outcome = await run(doubtful_cascade_slip(0.5), make_deployment(Script(ok(content="Paris", token_probability=probability))))
    assert outcome.answered and responses(outcome)[0].content == "Paris"
    assert not events_of(outcome.messages, "completion")[0].escalated
    assert responses(outcome)[0].confidence == pytest.approx(probability)


async def test_an_answer_without_logprobs_is_not_judged():
    outcome = await run(doubtful_cascade_slip(0.99), make_deployment(Script(ok(content="Paris"))))
    assert outcome.answered


async def test_logprobs_are_asked_for_only_when_the_plan_escalates_on_low_confidence():
    script = Script(ok(content="Paris", token_probability=0.01))
    outcome = await run(cascade_slip(), make_deployment(script))  # escalates on truncated only
    assert "logprobs" not in script.bodies[0] and outcome.answered


async def test_a_fallback_that_is_also_the_escalation_target_answers_itself():
    from turnout.schemas.models import PlanStep

    slip = make_slip(plan=("a", "c"))
    slip = slip.model_copy(update={"plan": [*slip.plan, PlanStep(model="c", role="escalation", when=["low_confidence"], min_confidence=0.5)], "step": 1})
    outcome = await run(slip, make_deployment(Script(ok(content="hmm", token_probability=0.1)), model_id="c"))
    assert outcome.answered and not on_topic(outcome.messages, "tt.model.c")


async def test_the_escalation_step_answers_however_unsure():
    outcome = await run(doubtful_cascade_slip(step=2), make_deployment(Script(ok(content="hmm", token_probability=0.1)), model_id="c"))
    assert outcome.answered and responses(outcome)[0].content == "hmm"
    [completion] = events_of(outcome.messages, "completion")
    assert completion.escalated and completion.fallback_depth == 2  # the analysts' escalation count reads this


async def test_a_shadow_copy_is_recorded_but_never_answers_the_caller():
    outcome = await run(make_slip(plan=("a",), shadow=True), make_deployment(Script(ok(content="shadow answer"))))
    assert outcome.answered and responses(outcome) == []
    [completion] = events_of(outcome.messages, "completion")
    assert completion.shadow and completion.event_id == "req-1:shadow:completion:0"  # apart from the primary's rows
