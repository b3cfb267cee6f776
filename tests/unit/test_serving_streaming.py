"""serve() with a streaming backend: the time to first token and the deployment's region
reach the slip's attempts, the response and the routing events (issue 5)."""

from __future__ import annotations

import asyncio

from backend_fixtures import Script, events_of, make_config, make_request, make_slip, ok, status
from test_backend_streaming import event_stream, openai_chunks
from test_serving import assert_publishable, responses, run
from turnout.consumers.backend import OpenAIChatBackend
from turnout.consumers.cache import ResponseCache
from turnout.consumers.serving import Deployment
from turnout.schemas.worker_config import CacheConfig

REGION = "eu-west-1"


def deployment(script: Script, *, stream: bool = True, cache: ResponseCache | None = None) -> Deployment:
    config = make_config(region=REGION, stream=stream)
    backend = OpenAIChatBackend(config.base_url or "", config.served_model, provider=config.provider, transport=script.transport(), stream=stream)
    return Deployment("a", config, backend, asyncio.Semaphore(config.concurrency), cache=cache)


async def test_streamed_answer_carries_its_ttft_and_region_to_attempt_response_and_events():
    outcome = await run(make_slip(), deployment(event_stream(openai_chunks("bonjour tout le monde"))))
    assert_publishable(outcome)
    [response] = responses(outcome)
    [attempt] = events_of(outcome.messages, "attempt")
    [completion] = events_of(outcome.messages, "completion")
    assert response.content == "bonjour tout le monde"
    assert response.ttft_ms is not None and 0 < response.ttft_ms <= response.backend_latency_ms
    assert attempt.ttft_ms == completion.ttft_ms == response.ttft_ms
    assert attempt.ttft_ms <= attempt.latency_ms and completion.ttft_ms <= completion.latency_ms
    assert attempt.region == completion.region == REGION


async def test_failed_attempts_and_the_failure_name_the_region_and_no_ttft():
    slip = make_slip(plan=("a",))
    outcome = await run(slip, deployment(Script(status(503))))
    attempts = events_of(outcome.messages, "attempt")
    [failure] = events_of(outcome.messages, "failure")
    assert len(attempts) == 3  # max_retries = 2
    assert {(a.region, a.ttft_ms, a.status) for a in attempts} == {(REGION, None, "error")}
    assert (failure.region, failure.ttft_ms) == (REGION, None)


async def test_unstreamed_deployment_records_a_null_ttft():
    outcome = await run(make_slip(), deployment(Script(ok(content="plain")), stream=False))
    [response] = responses(outcome)
    events = events_of(outcome.messages, "attempt") + events_of(outcome.messages, "completion")
    assert response.ttft_ms is None
    assert [(e.ttft_ms, e.region) for e in events] == [(None, REGION), (None, REGION)]


async def test_a_cache_hit_has_no_ttft_but_the_region_of_the_deployment_that_answered():
    cache = ResponseCache(CacheConfig())
    request = make_request(temperature=0)
    first = deployment(event_stream(openai_chunks("cached words")), cache=cache)
    await run(make_slip(request), first)
    outcome = await run(make_slip(request), deployment(event_stream(openai_chunks("never asked")), cache=cache))
    [response] = responses(outcome)
    [completion] = events_of(outcome.messages, "completion")
    assert (response.cache_hit, response.content, response.ttft_ms) == (True, "cached words", None)
    assert (completion.ttft_ms, completion.region) == (None, REGION)
