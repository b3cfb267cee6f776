"""serve() on embedding slips: concurrent requests share one batched backend call, each
gets its own response and events, and a failed batch call moves each along its own plan."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from backend_fixtures import TOPICS, Script, events_of, fast_worker_settings, make_deployment, make_slip, on_topic, status
from test_serving import assert_publishable, responses
from turnout.consumers.breaker import CircuitBreaker
from turnout.consumers.ratelimit import RateLimiter
from turnout.consumers.serving import Deployment, Outcome, serve
from turnout.schemas.models import InferenceRequest
from turnout.schemas.worker_config import BreakerConfig

SETTINGS = fast_worker_settings()
INPUT_PRICE = 0.02  # USD per million input tokens


def embeddings_reply(request: httpx.Request, tokens_per_text: int = 10) -> httpx.Response:
    """An OpenAI embeddings answer whose vector for a text is [len(text), its index in the call]."""
    texts = json.loads(request.content)["input"]
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), float(i)]} for i, t in enumerate(texts)]
    tokens = tokens_per_text * len(texts)
    return httpx.Response(200, json={"object": "list", "data": data, "model": "emb", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def embedding_slip(request_id: str, texts: list[str], plan: tuple[str, ...] = ("a", "b"), **fields) -> object:
    return make_slip(InferenceRequest(id=request_id, tenant="acme", input=texts, **fields), plan=plan)


def deployment_for(script: Script, **config) -> Deployment:
    return make_deployment(script, "a", capabilities={"embeddings"}, price_input_per_mtok=INPUT_PRICE, price_output_per_mtok=99.0, **config)


async def serve_all(slips, deployment: Deployment, settings=SETTINGS, close: bool = True) -> list[Outcome]:
    """Serve ``slips`` concurrently, as the worker does."""
    try:
        return await asyncio.gather(*[serve(slip, deployment, TOPICS, settings, random.Random(1)) for slip in slips])
    finally:
        if close:
            await deployment.backend.aclose()


async def test_an_embedding_request_is_answered_with_its_vectors_usage_and_events():
    script = Script(embeddings_reply)
    [outcome] = await serve_all([embedding_slip("e1", ["hello", "turnout"])], deployment_for(script))

    assert script.calls == 1 and script.bodies[0]["input"] == ["hello", "turnout"]
    [response] = responses(outcome)
    assert response.status == "ok" and response.content is None and response.finish_reason is None
    assert response.embeddings == [[5.0, 0.0], [7.0, 1.0]]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 0)
    assert response.cost_usd == pytest.approx(20 * INPUT_PRICE / 1e6), "priced at the input price only"
    [attempt] = events_of(outcome.messages, "attempt")
    assert (attempt.status, attempt.input_tokens, attempt.cost_usd) == ("ok", 20, pytest.approx(response.cost_usd))
    [completion] = events_of(outcome.messages, "completion")
    assert completion.input_tokens == 20 and completion.cost_usd == pytest.approx(response.cost_usd)
    assert_publishable(outcome)


async def test_concurrent_requests_share_one_call_and_each_gets_its_own_vectors():
    script = Script(embeddings_reply, yields=True)
    slips = [embedding_slip(f"e{n}", ["x" * (n + 1)] * (1 + n % 3)) for n in range(10)]
    outcomes = await serve_all(slips, deployment_for(script))

    assert script.calls == 1, "one backend call for the ten requests"
    sent = script.bodies[0]["input"]
    assert sent == [text for slip in slips for text in slip.request.input], "texts sent in the order the requests joined"
    position = 0
    for slip, outcome in zip(slips, outcomes):
        [response] = responses(outcome)
        assert response.id == slip.request.id
        texts = slip.request.input
        assert response.embeddings == [[float(len(t)), float(position + i)] for i, t in enumerate(texts)]
        position += len(texts)
        assert len(events_of(outcome.messages, "attempt")) == 1 and len(events_of(outcome.messages, "completion")) == 1
    total = sum(responses(o)[0].usage.input_tokens for o in outcomes)
    assert total == 10 * len(sent), "the call's usage is shared out exactly"


async def test_a_batch_takes_one_request_of_the_rate_limit():
    class Counting(RateLimiter):
        def __init__(self) -> None:
            super().__init__()
            self.acquired: list[int] = []

        def _take(self, tokens: int) -> None:  # every grant, by try_acquire or acquire, takes here
            self.acquired.append(tokens)
            super()._take(tokens)

    script = Script(embeddings_reply, yields=True)
    deployment = deployment_for(script)
    deployment.limiter = Counting()
    slips = [embedding_slip(f"e{n}", ["abc"]) for n in range(5)]
    await serve_all(slips, deployment)
    assert deployment.limiter.acquired == [5 * slips[0].decision.signals.input_tokens], "one acquire, with the batch's total estimate"


async def test_a_failed_batch_call_is_a_failed_try_of_each_request_which_then_retries():
    script = Script(status(503, "overloaded"), embeddings_reply, yields=True)
    slips = [embedding_slip(f"e{n}", [f"text {n}"]) for n in range(3)]
    outcomes = await serve_all(slips, deployment_for(script, max_retries=1))

    for outcome in outcomes:
        assert [e.status for e in events_of(outcome.messages, "attempt")] == ["error", "ok"]
        assert responses(outcome)[0].status == "ok"
    assert script.calls == 2, "the three retries joined one batch again"


async def test_a_batch_call_that_keeps_failing_moves_each_request_along_its_own_plan():
    script = Script(status(400, "input too long"))
    slips = [embedding_slip("e1", ["one"], plan=("a", "b")), embedding_slip("e2", ["two"], plan=("a", "c"))]
    first, second = await serve_all(slips, deployment_for(script))

    assert script.calls == 1
    [forwarded] = on_topic(first.messages, "tt.model.b")
    assert forwarded.record.step == 1 and forwarded.record.attempts[0].error.code == "backend_rejected"
    assert on_topic(second.messages, "tt.model.c"), "each request follows its own plan"
    assert not first.answered and not second.answered


async def test_an_open_breaker_moves_embedding_requests_on_without_a_call():
    script = Script(embeddings_reply)
    deployment = deployment_for(script)
    deployment.breaker = CircuitBreaker("a", BreakerConfig(min_calls=1, failure_rate=0.5, open_s=60))
    deployment.breaker.acquire().record(False, 0.1)  # type: ignore[union-attr]
    [outcome] = await serve_all([embedding_slip("e1", ["one"])], deployment)
    assert script.calls == 0 and on_topic(outcome.messages, "tt.model.b")


async def test_an_identical_embedding_request_is_served_from_the_cache_and_other_texts_are_not():
    from turnout.consumers.cache import ResponseCache

    script = Script(embeddings_reply)
    deployment = deployment_for(script)
    deployment.cache = ResponseCache()
    first = embedding_slip("e1", ["same text"])
    again = embedding_slip("e2", ["same text"])
    other = embedding_slip("e3", ["other text"])
    [served], [cached], [fresh] = [await serve_all([slip], deployment, close=slip is other) for slip in (first, again, other)]

    assert script.calls == 2
    hit = responses(cached)[0]
    assert hit.cache_hit and hit.embeddings == responses(served)[0].embeddings and hit.cost_usd == 0
    assert not responses(fresh)[0].cache_hit


async def test_a_provider_without_usage_is_billed_the_routers_count():
    def no_usage(request: httpx.Request) -> httpx.Response:
        body = json.loads(embeddings_reply(request).content)
        del body["usage"]
        return httpx.Response(200, json=body)

    slip = embedding_slip("e1", ["abc"])
    [outcome] = await serve_all([slip], deployment_for(Script(no_usage)))
    assert responses(outcome)[0].usage.input_tokens == slip.decision.signals.input_tokens


async def test_vectors_too_many_for_one_kafka_message_are_an_error_not_a_stuck_worker(monkeypatch):
    import turnout.consumers.serving as serving

    monkeypatch.setattr(serving, "MAX_RESPONSE_FLOATS", 3)  # the reply carries 2 vectors of 2 values
    [outcome] = await serve_all([embedding_slip("e1", ["one", "two"])], deployment_for(Script(embeddings_reply)))
    [response] = responses(outcome)
    assert response.status == "error" and response.error.code == "response_too_large"
    assert "send fewer texts per request" in response.error.message
    assert response.usage.input_tokens == 20 and response.cost_usd > 0, "the call was made and paid for"
    assert events_of(outcome.messages, "failure") and outcome.answered
