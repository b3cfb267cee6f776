"""producers/topic_admin.py: topics are made by one helper (``create_missing``, one
request for what is missing), which ``turnout topics create`` and the SDK share; a
client creates its own reply topic once, with its partitions and configs; a streamed
call registers no response waiter it would never use. Against a fake admin client and
a fake consumer: the broker's side is tests/integration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from factories import make_settings

from turnout import admin as shell_admin
from turnout.producers import client as client_module
from turnout.producers import topic_admin
from turnout.producers.client import TurnoutClient, new_request
from turnout.producers.streaming import TextDelta
from turnout.schemas.models import InferenceResponse, ResponseChunk


class FakeAdmin:
    """The broker's topics (name -> partition count), and every request made of it."""

    def __init__(self, topics: dict[str, int]) -> None:
        self.topics = dict(topics)
        self.created: list[list[tuple[str, int, dict[str, str]]]] = []
        self.described: list[str] = []
        self.closed = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def list_topics(self) -> list[str]:
        return list(self.topics)

    async def create_topics(self, new: list[NewTopic]) -> None:
        self.created.append([(t.name, t.num_partitions, dict(t.topic_configs)) for t in new])
        self.topics.update({t.name: t.num_partitions for t in new})

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.described.extend(names)
        return [{"topic": name, "partitions": [{"partition": p} for p in range(self.topics[name])]} for name in names]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeAdmin:
    fake = FakeAdmin({"t.requests": 3, "t.old-job": 2})
    monkeypatch.setattr(topic_admin, "AIOKafkaAdminClient", lambda **_: fake)
    return fake


async def test_only_the_missing_topics_are_created_in_one_request(broker: FakeAdmin) -> None:
    async with topic_admin.admin_client(make_settings().kafka) as admin:
        made = await topic_admin.create_missing(admin, [NewTopic("t.requests", 3, 1), NewTopic("t.a", 2, 1), NewTopic("t.b", 1, 1, topic_configs={"x": "y"})])
    assert made == ["t.a", "t.b"]
    assert broker.created == [[("t.a", 2, {}), ("t.b", 1, {"x": "y"})]]
    assert broker.closed


async def test_ensure_topic_gives_the_partitions_of_a_new_topic_and_of_an_existing_one(broker: FakeAdmin) -> None:
    kafka = make_settings(kafka={"partitions": 4}).kafka
    assert await topic_admin.ensure_topic(kafka, "t.new-job") == [0, 1, 2, 3]
    assert await topic_admin.ensure_topic(kafka, "t.reply", partitions=1, configs={"retention.ms": "1000"}) == [0]
    assert broker.created == [[("t.new-job", 4, {})], [("t.reply", 1, {"retention.ms": "1000"})]]
    assert broker.described == [], "a topic just created is not described"
    assert await topic_admin.ensure_topic(kafka, "t.old-job") == [0, 1]
    assert broker.described == ["t.old-job"] and len(broker.created) == 2


async def test_topics_create_makes_the_installations_missing_topics_through_the_same_helper(broker: FakeAdmin) -> None:
    settings = make_settings(kafka={"topic_prefix": "t"})
    created = await shell_admin.create_topics(settings)
    assert "t.requests" not in created and set(created) == set(settings.required_topics()) - {"t.requests"}
    [request] = broker.created
    policies = next(t for t in request if t[0] == settings.topics.policies)
    assert policies[1:] == (1, {"cleanup.policy": "compact"})
    assert await shell_admin.create_topics(settings) == [] and len(broker.created) == 1


# -- the client's reply topics ------------------------------------------------------------------
class FakeConsumer:
    def __init__(self, *topics: str, **_: object) -> None:
        self.topics = topics

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def seek_to_end(self) -> None:
        pass

    def assignment(self) -> set:
        return set()

    def __aiter__(self) -> FakeConsumer:
        return self

    async def __anext__(self) -> None:
        await asyncio.Event().wait()  # nothing is ever read: replies are delivered by the test


@pytest.fixture
async def offline_client(monkeypatch: pytest.MonkeyPatch) -> tuple[TurnoutClient, list[tuple[str, dict]]]:
    ensured: list[tuple[str, dict]] = []

    async def ensure_topic(_kafka: object, name: str, **spec: object) -> list[int]:
        ensured.append((name, spec))
        return [0]

    monkeypatch.setattr(client_module, "ensure_topic", ensure_topic)
    monkeypatch.setattr(client_module, "AIOKafkaConsumer", FakeConsumer)
    client = TurnoutClient(make_settings(kafka={"topic_prefix": "t"}).kafka, reply_topic="t.gateway.gw-1", reply_partitions=1, reply_configs={"retention.ms": "60000"})
    return client, ensured


async def stop(client: TurnoutClient) -> None:
    tasks = [task for _, task in client._readers.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_clients_own_reply_topic_is_created_once_with_its_partitions_and_configs(offline_client) -> None:
    client, ensured = offline_client
    await client._read("t.gateway.gw-1")
    await client._read("t.gateway.gw-1")
    await client._read("t.replies.other")  # a request's own reply topic: the installation's defaults
    await client._read("t.responses")  # the shared one is `turnout topics create`'s
    await stop(client)
    assert ensured == [("t.gateway.gw-1", {"partitions": 1, "configs": {"retention.ms": "60000"}}), ("t.replies.other", {"partitions": None, "configs": None})]


async def test_a_streamed_call_registers_no_response_waiter(offline_client, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = offline_client
    waiting_at_publish: list[int] = []

    async def publish(requests: list) -> list[str]:
        waiting_at_publish.append(len(client._correlator._waiting))
        [request] = requests
        for reply in (
            ResponseChunk(request_id=request.id, tenant="acme", attempt=0, seq=0, delta="Hel", model="small"),
            InferenceResponse(id=request.id, tenant="acme", status="ok", content="Hello", model="small"),
        ):
            client._streams.deliver(reply)
        return [request.id]

    monkeypatch.setattr(client.publisher, "publish", publish)
    items = [item async for item in client.stream(new_request("hi", id="s-1"), timeout_s=5)]
    await stop(client)
    assert items[:2] == [TextDelta("Hel", "small"), TextDelta("lo", "small")] and items[-1].content == "Hello"
    assert waiting_at_publish == [0] and client._correlator._waiting == {}

    await client.publish([new_request("hi", id="p-1")])  # what request/submit use: the waiter is registered first
    assert waiting_at_publish == [0, 1] and set(client._correlator._waiting) == {"p-1"}
