"""serve() with the worker's guards: response cache, circuit breaker, rate limits, and
structured output (validate, repair, re-ask, escalate, fail with the errors)."""

from __future__ import annotations

import json
import random

from backend_fixtures import TOPICS, Script, events_of, fast_worker_settings, future, make_deployment, make_request, make_slip, ok, on_topic, status
from turnout.consumers.breaker import CircuitBreaker
from turnout.consumers.cache import ResponseCache
from turnout.consumers.ratelimit import RateLimitConfig, RateLimiter
from turnout.consumers.serving import Outcome, serve
from turnout.schemas.models import InferenceResponse, PlanStep
from turnout.schemas.worker_config import BreakerConfig

SETTINGS = fast_worker_settings()
SCHEMA = json.dumps({"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}}, "required": ["city", "people"]})


async def run(slip, deployment, settings=SETTINGS) -> Outcome:
    return await serve(slip, deployment, TOPICS, settings, random.Random(1))


def response_of(outcome: Outcome) -> InferenceResponse:
    [message] = on_topic(outcome.messages, TOPICS.responses)
    return message.record


# -- response cache ------------------------------------------------------------------------------
async def test_an_identical_request_is_served_from_the_cache_without_a_call_or_a_cost():
    script = Script(ok(content="Paris", prompt_tokens=100, completion_tokens=10))
    deployment = make_deployment(script)
    deployment.cache = ResponseCache()
    first = response_of(await run(make_slip(make_request(id="r1")), deployment))
    outcome = await run(make_slip(make_request(id="r2")), deployment)
    second = response_of(outcome)
    assert script.calls == 1
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.content == "Paris" and second.id == "r2" and second.cost_usd == 0.0
    [completion] = events_of(outcome.messages, "completion")
    assert completion.cache_hit and completion.cost_usd == 0.0
    assert events_of(outcome.messages, "attempt") == []  # nothing was tried


async def test_opting_out_another_tenant_or_a_shadow_copy_always_calls_the_backend():
    script = Script(ok(content="Paris"))
    deployment = make_deployment(script)
    deployment.cache = ResponseCache()
    await run(make_slip(make_request(id="r1")), deployment)
    await run(make_slip(make_request(id="r2", cache=False)), deployment)
    await run(make_slip(make_request(id="r3", tenant="globex")), deployment)
    await run(make_slip(make_request(id="r4"), shadow=True), deployment)
    assert script.calls == 4


async def test_a_truncated_answer_is_not_cached():
    script = Script(ok(content="Par", finish_reason="length"), ok(content="Paris"))
    deployment = make_deployment(script)
    deployment.cache = ResponseCache()
    await run(make_slip(make_request(id="r1"), plan=("a",)), deployment)
    await run(make_slip(make_request(id="r2"), plan=("a",)), deployment)
    assert script.calls == 2


# -- circuit breaker ----------------------------------------------------------------------------
async def test_an_open_breaker_moves_the_request_along_its_plan_without_a_call():
    script = Script(status(500))
    deployment = make_deployment(script, max_retries=0)
    deployment.breaker = CircuitBreaker("a", BreakerConfig(min_calls=2, failure_rate=0.5, open_s=60))
    for n in range(2):
        await run(make_slip(make_request(id=f"fail-{n}")), deployment)
    assert deployment.breaker.state == "open"
    outcome = await run(make_slip(make_request(id="next")), deployment)
    assert script.calls == 2  # the third request never reached the backend
    [forwarded] = on_topic(outcome.messages, "tt.model.b")
    assert forwarded.record.current.model == "b"


async def test_a_rejection_does_not_count_against_the_breaker():
    script = Script(status(400))
    deployment = make_deployment(script, max_retries=0)
    deployment.breaker = CircuitBreaker("a", BreakerConfig(min_calls=2, failure_rate=0.5))
    for n in range(4):
        await run(make_slip(make_request(id=f"bad-{n}")), deployment)
    assert deployment.breaker.state == "closed"


async def test_the_last_step_with_an_open_breaker_answers_with_the_reason():
    deployment = make_deployment(Script(ok()))
    deployment.breaker = CircuitBreaker("a", BreakerConfig(min_calls=1, open_s=60))
    with deployment.breaker.acquire() as permit:
        permit.record(False, 0.1)
    outcome = await run(make_slip(plan=("a",)), deployment)
    response = response_of(outcome)
    assert response.error.code == "all_backends_failed" and "circuit_open" in response.error.message


# -- rate limits --------------------------------------------------------------------------------
async def test_a_request_that_cannot_wait_for_the_rate_limit_moves_on():
    script = Script(ok())
    deployment = make_deployment(script)
    deployment.limiter = RateLimiter(RateLimitConfig(rpm=1, burst_s=1))
    await run(make_slip(make_request(id="first")), deployment)  # a new replica's first call goes at once, into debt
    outcome = await run(make_slip(make_request(id="second", deadline=future(5))), deployment)
    assert script.calls == 1
    assert on_topic(outcome.messages, "tt.model.b"), "one request a minute: the second cannot wait 60 s within its 5 s deadline"


async def test_a_request_with_room_in_the_rate_limit_takes_it_without_queueing():
    class NoQueue(RateLimiter):
        async def acquire(self, tokens: int) -> None:
            raise AssertionError("queued although the limiter had room")

    script = Script(ok())
    deployment = make_deployment(script)
    deployment.limiter = NoQueue(RateLimitConfig(rpm=600, tpm=1_000_000))
    outcome = await run(make_slip(make_request(id="first")), deployment)
    assert script.calls == 1 and response_of(outcome).status == "ok"


async def test_a_429_with_retry_after_pauses_the_whole_deployment():
    script = Script(status(429, headers={"Retry-After": "30"}), ok())
    deployment = make_deployment(script, max_retries=0)
    await run(make_slip(make_request(id="first")), deployment)
    assert deployment.limiter.paused_s() > 25
    outcome = await run(make_slip(make_request(id="other", deadline=future(10))), deployment)
    assert script.calls == 1 and on_topic(outcome.messages, "tt.model.b")


# -- structured output --------------------------------------------------------------------------
def schema_slip(plan=("a",), **request):
    slip = make_slip(make_request(response_schema=SCHEMA, **request), plan=plan)
    return slip


async def test_a_valid_answer_passes():
    outcome = await run(schema_slip(), make_deployment(Script(ok(content='{"city": "Lyon", "people": 3}'))))
    response = response_of(outcome)
    assert (response.status, response.validation, json.loads(response.content)) == ("ok", "passed", {"city": "Lyon", "people": 3})
    assert events_of(outcome.messages, "completion")[0].validation == "passed"


async def test_near_json_is_repaired_without_asking_again():
    script = Script(ok(content='```json\n{"city": "Lyon", "people": 3,}\n```'))
    response = response_of(await run(schema_slip(), make_deployment(script)))
    assert response.validation == "repaired" and json.loads(response.content) == {"city": "Lyon", "people": 3}
    assert script.calls == 1


async def test_an_invalid_answer_is_asked_again_with_the_errors():
    script = Script(ok(content='{"city": "Lyon"}', prompt_tokens=10, completion_tokens=5), ok(content='{"city": "Lyon", "people": 2}', prompt_tokens=30, completion_tokens=6))
    outcome = await run(schema_slip(), make_deployment(script, price_input_per_mtok=1e6, price_output_per_mtok=0))
    response = response_of(outcome)
    assert response.validation == "reasked" and json.loads(response.content)["people"] == 2
    assert script.calls == 2
    reask = script.bodies[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": '{"city": "Lyon"}'}
    assert "people" in reask[-1]["content"]  # the validation error is shown to the model
    assert response.usage.input_tokens == 40 and response.cost_usd == 40.0  # both calls are paid for
    assert len(events_of(outcome.messages, "attempt")) == 2


async def test_still_invalid_after_the_reask_escalates_when_the_plan_says_so():
    slip = make_slip(make_request(response_schema=SCHEMA), plan=("a",))
    slip = slip.model_copy(update={"plan": [*slip.plan, PlanStep(model="big", role="escalation", when=["validation_failed"])]})
    outcome = await run(slip, make_deployment(Script(ok(content='{"city": 1}'))))
    [forwarded] = on_topic(outcome.messages, "tt.model.big")
    assert forwarded.record.current.model == "big"
    assert on_topic(outcome.messages, TOPICS.responses) == []


async def test_still_invalid_without_an_escalation_fails_with_the_validation_errors():
    outcome = await run(schema_slip(), make_deployment(Script(ok(content='{"city": 1}'))))
    response = response_of(outcome)
    assert response.status == "error" and response.error.code == "invalid_output" and response.validation == "failed"
    assert "$.city" in response.error.details["validation_errors"]
    assert "people" in response.error.details["validation_errors"]
    [failure] = events_of(outcome.messages, "failure")
    assert failure.validation == "failed"


async def test_an_unusable_schema_is_the_callers_error_not_a_reask():
    script = Script(ok(content="{}"))
    outcome = await run(make_slip(make_request(response_schema='{"type": "nonsense"}'), plan=("a",)), make_deployment(script))
    response = response_of(outcome)
    assert response.error.code == "invalid_request" and "response_schema" in response.error.message
    assert script.calls == 1
