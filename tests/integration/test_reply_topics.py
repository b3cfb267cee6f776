"""A request naming a reply topic nobody created, on an Apache Kafka broker that creates
no topic on first use (``auto.create.topics.enable = false``, as production clusters
usually run): the router refuses it up front, dead-lettered with its reason and answered
on the shared responses topic, instead of a worker paying for its call and then failing
to publish the answer, again on every replay. Requests around it are served, and a reply
topic its client created just before publishing is accepted. A slip naming such a topic
that reaches a worker anyway (written straight onto a model topic, or its topic deleted
after routing) is refused there the same way, without a backend call."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from stacks import read_topic, running_stack

from turnout import apache_kafka
from turnout.apache_kafka import ApacheKafkaCluster
from turnout.producers.client import TurnoutClient, new_request
from turnout.schemas.kafka import DLQ_REASON, DLQ_STAGE
from turnout.schemas.models import InferenceResponse
from turnout.schemas.serde import codec_for
from turnout.streams.handling import Source, route_message

CONFIG = Path(__file__).with_name("stack.toml")
TYPO = "acme.no-such-topic"

pytestmark = [
    pytest.mark.skipif(apache_kafka.unavailable() is not None, reason=f"Apache Kafka cannot run here: {apache_kafka.unavailable()}"),
    pytest.mark.skipif(os.environ.get("TURNOUT_DEV_KAFKA", "tansu") != "tansu", reason="starts its own Apache Kafka: run once, in the default suite"),
]


def test_a_reply_topic_nobody_created_is_refused_by_the_router_and_the_pipeline_goes_on(tmp_path):
    with ApacheKafkaCluster(workdir=tmp_path / "kafka", extra_properties={"auto.create.topics.enable": "false"}) as kafka:
        with running_stack(CONFIG, tmp_path / "stack", bootstrap_servers=kafka.bootstrap_servers) as stack:
            asyncio.run(scenario(stack.settings))
            asyncio.run(straight_to_a_worker(stack.settings))


async def scenario(settings) -> None:
    codec = codec_for(settings.kafka)
    async with TurnoutClient(settings.kafka) as client:  # listens on the shared responses topic
        typo = new_request("What is the capital of France?", tenant="acme", reply_topic=TYPO)
        refused = await (await client.submit_raw(codec.encode(typo), typo.id.encode(), timeout_s=90))
        served = await (await client.submit(new_request("And of Italy?", tenant="acme"), timeout_s=90))
    assert refused.status == "error" and refused.error.code == "unknown_reply_topic", refused
    assert TYPO in refused.error.message and "create it before publishing" in refused.error.message
    assert served.status == "ok", served

    async with TurnoutClient(settings.kafka, reply_topic="acme.replies") as own:  # creates its topic, then publishes
        answered = await (await own.submit(new_request("And of Spain?", tenant="acme"), timeout_s=90))
    assert answered.status == "ok", answered

    dead = [r for r in await read_topic(settings, settings.topics.dlq) if r.key == typo.id.encode()]
    assert len(dead) == 1 and dict(dead[0].headers)[DLQ_STAGE] == b"router"
    assert dict(dead[0].headers)[DLQ_REASON].decode().startswith(f"unknown_reply_topic: reply topic '{TYPO}' does not exist")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        assert TYPO not in await admin.list_topics()  # nobody wrote to it, so nothing waited on it
    finally:
        await admin.close()


async def straight_to_a_worker(settings) -> None:
    codec = codec_for(settings.kafka)
    typo = new_request("What is the capital of Peru?", tenant="acme", reply_topic=TYPO)
    slip = route_message(typo.id.encode(), codec.encode(typo), Source("tool", 0, 0), codec, settings)[0]  # routed, unchecked
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(slip.topic, slip.value, key=slip.key)
    finally:
        await producer.stop()
    async with TurnoutClient(settings.kafka) as client:
        served = await (await client.submit(new_request("And of Chile?", tenant="acme"), timeout_s=90))  # the worker goes on
    assert served.status == "ok", served
    [refused] = [codec.decode(r.value, InferenceResponse) for r in await read_topic(settings, settings.topics.responses) if r.key == slip.key]
    assert refused.error.code == "unknown_reply_topic", refused

    dead = [r for r in await read_topic(settings, settings.topics.dlq) if r.key == typo.id.encode()]
    assert len(dead) == 1 and dict(dead[0].headers)[DLQ_STAGE] == b"worker"
    calls = httpx.get(settings.simulator_url().removesuffix("/v1") + "/calls", timeout=30).json()["calls"]
    assert typo.id not in {call["request_id"] for call in calls}  # refused before any call was paid for
