"""The events sink on the real broker and chDB: batches, retries through a ClickHouse
outage, commits offsets only after the insert, and never counts an event twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from turnout.admin import create_topics
from turnout.analytics.sink import EventsSink
from turnout.analytics.store import migrate, open_client
from turnout.embedded import EmbeddedBroker
from turnout.schemas.models import RoutingEvent
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import load_settings

CONFIG = Path(__file__).with_name("stack.toml")


class OutageClient:
    """The real chDB client, refusing its first ``failures`` inserts like a server that is down."""

    def __init__(self, client, failures: int) -> None:
        self._client = client
        self.failures = failures
        self.refused = 0

    def insert(self, *args, **kwargs):
        if self.refused < self.failures:
            self.refused += 1
            raise ConnectionError("ClickHouse is down")
        return self._client.insert(*args, **kwargs)


@pytest.fixture
def sink_env(tmp_path, monkeypatch):
    with EmbeddedBroker() as broker:
        monkeypatch.setenv("TURNOUT_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap_servers)
        monkeypatch.setenv("TURNOUT_CLICKHOUSE__DSN", f"chdb://{tmp_path / 'chdb'}")
        monkeypatch.setenv("TURNOUT_SINK__FLUSH_INTERVAL_S", "0.1")
        settings = load_settings(CONFIG)
        asyncio.run(create_topics(settings))
        client = open_client(settings.clickhouse)
        migrate(client, settings.clickhouse.database)
        yield settings, client


def events(n: int, start: int = 0) -> list[RoutingEvent]:
    return [
        RoutingEvent(event_id=RoutingEvent.make_id(f"r{i}", "completion"), request_id=f"r{i}", tenant="t", kind="completion", model="small", cost_usd=0.001)
        for i in range(start, start + n)
    ]


async def publish(settings, records: list[RoutingEvent]) -> None:
    codec = AvroCodec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for event in records:
            await producer.send(settings.topics.events, codec.encode(event), key=event.request_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def committed_total(settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=settings.sink.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topics.events, p) for p in range(settings.kafka.partitions)]
        total = 0
        for tp in partitions:
            total += (await consumer.committed(tp)) or 0
        return total
    finally:
        await consumer.stop()


async def run_until(sink: EventsSink, condition, limit_s: float = 60) -> None:
    task = asyncio.create_task(sink.run())
    try:
        for _ in range(int(limit_s / 0.05)):
            if condition():
                break
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    finally:
        sink.stop()
        await asyncio.wait_for(task, 30)


def count(client, settings) -> int:
    return client.query(f"SELECT count() FROM {settings.clickhouse.database}.routing_events FINAL").result_rows[0][0]


async def test_an_outage_delays_rows_but_loses_and_duplicates_none(sink_env):
    settings, client = sink_env
    await publish(settings, events(500))
    flaky = OutageClient(client, failures=2)
    sink = EventsSink(settings, flaky)  # type: ignore[arg-type]

    await run_until(sink, lambda: sink.inserted >= 500)

    assert flaky.refused == 2  # it did go through the outage
    assert sink.inserted == 500
    assert count(client, settings) == 500
    assert await committed_total(settings) == 500


async def test_offsets_are_not_committed_while_the_insert_fails(sink_env):
    settings, client = sink_env
    await publish(settings, events(50))
    down = OutageClient(client, failures=10**9)  # never comes back during this test
    sink = EventsSink(settings, down)  # type: ignore[arg-type]
    task = asyncio.create_task(sink.run())
    for _ in range(400):
        if down.refused >= 2:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert down.refused >= 2
    assert await committed_total(settings) == 0  # a restarted sink will read them all again
    assert count(client, settings) == 0


async def test_redelivered_events_are_counted_once(sink_env):
    settings, client = sink_env
    batch = events(100)
    await publish(settings, batch + batch[:40])  # the first 40 delivered twice
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 140)
    assert count(client, settings) == 100


async def test_an_attempts_confidence_is_stored_and_an_unjudged_one_stays_null(sink_env):
    settings, client = sink_env
    judged = RoutingEvent(event_id="e-judged", request_id="r1", tenant="t", kind="attempt", model="small", confidence=0.3)
    unjudged = RoutingEvent(event_id="e-plain", request_id="r2", tenant="t", kind="attempt", model="small")
    await publish(settings, [judged, unjudged])
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 2)
    rows = client.query(f"SELECT event_id, confidence FROM {settings.clickhouse.database}.routing_events FINAL ORDER BY event_id").result_rows
    assert [(event_id, None if c is None else round(c, 6)) for event_id, c in rows] == [("e-judged", 0.3), ("e-plain", None)]
