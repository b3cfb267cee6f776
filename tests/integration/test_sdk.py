"""The Python SDK on the real stack: awaitable responses with caller-chosen ids, a
client's own reply topic, the synchronous facade from plain code, and a service
reading a response topic in its own consumer group (commits after each response is
handled)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from stacks import read_topic

from turnout.producers.client import TurnoutClient, new_request
from turnout.producers.ids import derived_id
from turnout.producers.publisher import RequestPublisher
from turnout.producers.response_stream import ResponseStream
from turnout.producers.sync_client import SyncTurnoutClient
from turnout.schemas.models import InferenceResponse

TIMEOUT_S = 90


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_submit_many_gives_one_awaitable_response_per_request(stack):
    order = unique("order")
    requests = [new_request(f"Order line {i}: say hello.", "acme", id=derived_id(order, i)) for i in range(5)]
    async with TurnoutClient(stack.settings.kafka) as client:
        pending = await client.submit_many(requests, timeout_s=TIMEOUT_S)
        responses = [await p for p in pending]
    assert [r.id for r in responses] == [derived_id(order, i) for i in range(5)], "each awaitable resolves to its own request's answer"
    assert all(r.status == "ok" and r.content for r in responses)


async def test_replies_come_on_the_clients_topic_or_on_the_requests_own(stack):
    prefix = stack.settings.topics.prefix
    client_topic, request_topic = f"{prefix}.replies.{uuid.uuid4().hex[:8]}", f"{prefix}.replies.{uuid.uuid4().hex[:8]}"
    async with TurnoutClient(stack.settings.kafka, reply_topic=client_topic) as client:
        own = await client.submit(new_request("Summarize: trains run on rails.", "acme"), TIMEOUT_S)
        elsewhere = await client.submit(new_request("Hi there!", "acme", reply_topic=request_topic), TIMEOUT_S)
        answers = [await own, await elsewhere]
    assert all(a.status == "ok" for a in answers)
    on_client_topic = await read_topic(stack.settings, client_topic, expected=1)
    on_request_topic = await read_topic(stack.settings, request_topic, expected=1)
    assert [r.key.decode() for r in on_client_topic] == [answers[0].id], "the client's requests name its topic"
    assert [r.key.decode() for r in on_request_topic] == [answers[1].id], "a request's own reply topic is kept"


def test_the_sync_client_works_from_plain_code_and_from_several_threads(stack):
    with SyncTurnoutClient(stack.settings.kafka) as client:
        one = client.request(new_request("What is 2 + 2?", "acme"), TIMEOUT_S)
        assert one.status == "ok" and one.content

        results: dict[int, InferenceResponse] = {}

        def ask(i: int) -> None:
            results[i] = client.request(new_request(f"Thread {i}: hello!", "acme", id=f"thread-{i}-{uuid.uuid4().hex[:6]}"), TIMEOUT_S)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [0, 1, 2, 3] and all(r.id.startswith(f"thread-{i}-") for i, r in results.items())

        futures = client.submit_many([new_request("Say yes.", "acme") for _ in range(3)], TIMEOUT_S)
        assert all(f.result().status == "ok" for f in futures)


async def next_response(stream: ResponseStream) -> InferenceResponse:
    return await asyncio.wait_for(anext(stream), TIMEOUT_S)


async def test_a_response_stream_commits_only_what_the_service_handled(stack):
    """A service reads 2 answers, fails on the 3rd; the group's next reader starts at the
    3rd: nothing handled is read again, nothing unhandled is lost."""
    kafka = stack.settings.kafka
    topic = f"{stack.settings.topics.prefix}.replies.{uuid.uuid4().hex[:8]}"
    group = unique("billing")
    requests = [new_request(f"Invoice {i}: thank the customer.", "acme", reply_topic=topic) for i in range(6)]
    async with RequestPublisher(kafka) as publisher:
        await publisher.publish(requests)

    handled: list[str] = []
    with pytest.raises(RuntimeError, match="service failed"):
        async with ResponseStream(kafka, group, topic=topic) as stream:
            while True:
                response = await next_response(stream)
                if len(handled) == 2:
                    failed_on = response.id
                    raise RuntimeError("service failed")
                handled.append(response.id)

    async with ResponseStream(kafka, group, topic=topic) as stream:
        rest = [await next_response(stream) for _ in range(4)]
        await stream.commit()
    assert failed_on in {r.id for r in rest}, "the response whose handling failed is read again"
    assert sorted(handled + [r.id for r in rest]) == sorted(r.id for r in requests), "every answer exactly once"

    async with ResponseStream(kafka, group, topic=topic) as stream:  # everything committed: nothing left
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 5)
