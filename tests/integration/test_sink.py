"""The analytics sink on the real broker and chDB: batches, retries through a ClickHouse
outage, commits offsets only after the insert, stores feedback beside the events, sends
what does not decode to the DLQ, and never counts a row twice: not in a plain count(),
not in the rollups the materialized view computes from inserted blocks, not after a
restart that replays what was inserted but not committed. Events go to ClickHouse as
Avro (``passthrough.py``): the rows it decodes are those the column insert writes, a
body it refuses sends its batch through the model, and an event of another writer
schema is decoded here beside them."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from derived_counts import derived_completions, expected_completions
from fastavro import schemaless_writer

from turnout.admin import create_topics
from turnout.analytics import sink as sink_module
from turnout.analytics.sink import COLUMNS, EventsSink, event_row
from turnout.analytics.store import migrate, open_client
from turnout.embedded import EmbeddedBroker
from turnout.producers.client import TurnoutClient, publish_feedback
from turnout.schemas.catalog import SchemaCatalog, bundled_catalog, schema_fingerprint
from turnout.schemas.kafka import DLQ_REASON, DLQ_TOPIC
from turnout.schemas.models import Feedback, RoutingEvent
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
        self._refuse()
        return self._client.insert(*args, **kwargs)

    def raw_insert(self, *args, **kwargs):
        self._refuse()
        return self._client.raw_insert(*args, **kwargs)

    def _refuse(self) -> None:
        if self.refused < self.failures:
            self.refused += 1
            raise ConnectionError("ClickHouse is down")

    def __getattr__(self, name):  # queries go through: only inserts are refused
        return getattr(self._client, name)


class LostAnswerClient(OutageClient):
    """Its first insert lands, then fails as if the answer had timed out on the way back."""

    def insert(self, *args, **kwargs):
        self._client.insert(*args, **kwargs)
        self._lose_answer()

    def raw_insert(self, *args, **kwargs):
        self._client.raw_insert(*args, **kwargs)
        self._lose_answer()

    def _lose_answer(self) -> None:
        if self.refused < self.failures:
            self.refused += 1
            raise TimeoutError("read timed out")


class NeverCommits(EventsSink):
    """A sink that dies between its insert and its commit, every time."""

    async def _commit(self, consumer, offsets) -> None:
        pass


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
        try:
            yield settings, client
        finally:
            client.close()  # chDB serves one directory per process: free it even when the test failed


def events(n: int, start: int = 0) -> list[RoutingEvent]:
    return [
        RoutingEvent(event_id=RoutingEvent.make_id(f"r{i}", "completion"), request_id=f"r{i}", tenant="t", kind="completion", model="small", cost_usd=0.001)
        for i in range(start, start + n)
    ]


async def publish(settings, records: list[RoutingEvent | Feedback | bytes], topic: str | None = None, key: bytes = b"k") -> None:
    """Records (or raw bytes, keyed ``key``) in order, on the events topic unless ``topic`` says otherwise."""
    codec = AvroCodec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for record in records:
            value = record if isinstance(record, bytes) else codec.encode(record)
            await producer.send(topic or settings.topics.events, value, key=key if isinstance(record, bytes) else record.request_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def committed_total(settings, topic: str | None = None) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=settings.sink.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic or settings.topics.events, p) for p in range(settings.kafka.partitions)]
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


def plain_counts(client, settings, table: str = "routing_events") -> int:
    """What the rows say without FINAL: what a materialized view saw inserted."""
    return client.query(f"SELECT count() FROM {settings.clickhouse.database}.{table}").result_rows[0][0]


def rollup_events(client, settings) -> int:
    return client.query(f"SELECT sum(events) FROM {settings.clickhouse.database}.routing_rollup_1m").result_rows[0][0]


def feedback(request_id: str, score: float = 4.0, **fields) -> Feedback:
    return Feedback(request_id=request_id, tenant="t", metric="rating", score=score, **fields)


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
    await run_until(sink, lambda: sink.inserted + sink.duplicates >= 140)
    assert sink.duplicates == 40
    assert count(client, settings) == 100
    assert plain_counts(client, settings) == 100  # never inserted, so never seen by the rollups
    assert rollup_events(client, settings) == 100


async def test_a_replay_after_a_crash_before_the_commit_is_not_inserted_again(sink_env):
    settings, client = sink_env
    await publish(settings, events(60))
    await publish(settings, [feedback(f"r{i}") for i in range(20)], settings.topics.feedback)
    crashed = NeverCommits(settings, client)
    await run_until(crashed, lambda: crashed.inserted >= 80)
    assert crashed.inserted == 80
    assert await committed_total(settings) == 0  # everything will be delivered again

    restarted = EventsSink(settings, client)  # a new process: only ClickHouse remembers
    await run_until(restarted, lambda: restarted.duplicates >= 80)

    assert restarted.inserted == 0
    assert restarted.duplicates == 80
    assert plain_counts(client, settings) == 60
    assert rollup_events(client, settings) == 60
    assert plain_counts(client, settings, "feedback") == 20
    assert await committed_total(settings) == 60
    assert await committed_total(settings, settings.topics.feedback) == 20


async def test_an_insert_that_landed_but_timed_out_is_not_inserted_again(sink_env, monkeypatch):
    settings, client = sink_env
    monkeypatch.setattr(sink_module, "IDS_PER_QUERY", 7)  # the landed ids are looked up in several queries
    await publish(settings, events(30))
    lost = LostAnswerClient(client, failures=1)
    sink = EventsSink(settings, lost)  # type: ignore[arg-type]
    await run_until(sink, lambda: lost.refused >= 1 and not sink._pending and sink.inserted + sink.duplicates >= 30)
    assert lost.refused == 1
    assert plain_counts(client, settings) == 30
    assert rollup_events(client, settings) == 30


class ViewsLostMidInsert(NeverCommits):
    """A sink killed after its insert wrote the raw part, before the parts of ``views``:
    while it inserts, those views are detached, as if their parts never reached disk."""

    def __init__(self, settings, client, views: list[str]) -> None:
        super().__init__(settings, client)
        self.views = [f"{settings.clickhouse.database}.{view}" for view in views]

    async def _store(self, batch, consumer) -> None:
        for view in self.views:
            self.client.command(f"DETACH TABLE {view}")
        try:
            await super()._store(batch, consumer)
        finally:
            for view in self.views:
                self.client.command(f"ATTACH TABLE {view}")


async def test_raw_rows_the_views_never_saw_are_rebuilt_by_the_restarted_sink(sink_env):
    settings, client = sink_env
    db = settings.clickhouse.database
    await publish(settings, events(40))
    first = EventsSink(settings, client)
    await run_until(first, lambda: first.inserted >= 40)  # stored and committed, views and all
    await publish(settings, events(60, start=40))
    crashed = ViewsLostMidInsert(settings, client, ["routing_rollup_1m_mv", "request_sample_events_mv"])
    await run_until(crashed, lambda: crashed.inserted >= 60)
    assert count(client, settings) == 100  # the raw part landed...
    short = derived_completions(client, db)
    assert short["routing_rollup_1m"] == short["routing_latency"] == short["request_sample_events"] == 40  # ...those views' parts did not
    assert short["routing_rollup_1h"] == 100  # this one's did

    restarted = EventsSink(settings, client)  # replays the 60, skips them as inserted, and checks the views
    await run_until(restarted, lambda: restarted.duplicates >= 60)

    assert restarted.inserted == 0 and await committed_total(settings) == 100
    assert derived_completions(client, db) == expected_completions(client, db)
    assert expected_completions(client, db)["routing_rollup_1m"] == 100
    assert restarted.mended == 1 and restarted.last_repair is not None
    rebuilt = restarted.last_repair.rebuilt_buckets.keys()
    # the latency states come with the rollup's rebuilt minutes; their hour needs a rebuild
    # of its own only when the crashed batch shares a minute with the first 40
    assert "routing_rollup_1m" in rebuilt and rebuilt <= {"routing_rollup_1m", "routing_latency"}
    assert restarted.last_repair.restored_rows["request_sample_events"] == 60


class LostViewsAndAnswer(LostAnswerClient):
    """Its first insert reaches the raw table only, then fails as if timed out."""

    def __init__(self, client, database: str) -> None:
        super().__init__(client, failures=1)
        self.view = f"{database}.routing_rollup_1m_mv"

    def raw_insert(self, *args, **kwargs):
        if self.refused:
            return self._client.raw_insert(*args, **kwargs)
        self._client.command(f"DETACH TABLE {self.view}")
        try:
            self._client.raw_insert(*args, **kwargs)
        finally:
            self._client.command(f"ATTACH TABLE {self.view}")
        self._lose_answer()


async def test_an_insert_that_landed_without_its_views_is_mended_when_retried(sink_env):
    settings, client = sink_env
    await publish(settings, events(30))
    lost = LostViewsAndAnswer(client, settings.clickhouse.database)
    sink = EventsSink(settings, lost)  # type: ignore[arg-type]
    await run_until(sink, lambda: lost.refused >= 1 and not sink._pending and sink.inserted + sink.duplicates >= 30)
    assert sink.duplicates == 30  # the retry found every row stored
    counted = derived_completions(client, settings.clickhouse.database)
    assert counted["routing_rollup_1m"] == counted["routing_latency"] == 30
    assert sink.mended == 1 and sink.last_repair.rebuilt_buckets == {"routing_rollup_1m": 1}  # the latency states came with it


async def test_feedback_lands_in_clickhouse_once(sink_env):
    settings, client = sink_env
    async with TurnoutClient(settings.kafka) as turnout:
        sent = await turnout.send_feedback("r1", tenant="acme", metric="thumbs", score=1, comment="great ✓", source="app")
    await publish_feedback(settings.kafka, [feedback("r2", 2.5), feedback("r3", 5, feedback_id="fb-3")])
    await publish_feedback(settings.kafka, [feedback("r2", 2.5)])  # the same judgement again: a client's retry
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted + sink.duplicates >= 4)

    rows = client.query(
        f"SELECT feedback_id, request_id, tenant, metric, score, comment, source, ts FROM {settings.clickhouse.database}.feedback ORDER BY request_id"
    ).result_rows
    assert [row[:7] for row in rows] == [
        ("r1:thumbs:app", "r1", "acme", "thumbs", 1.0, "great ✓", "app"),
        ("r2:rating:", "r2", "t", "rating", 2.5, "", ""),
        ("fb-3", "r3", "t", "rating", 5.0, "", ""),
    ]
    assert rows[0][7] == sent.ts.replace(tzinfo=None)  # DateTime64(3, 'UTC') comes back naive, in UTC
    assert sink.duplicates == 1
    assert await committed_total(settings, settings.topics.feedback) == 4


async def test_bad_feedback_goes_to_the_dlq_and_the_next_is_stored(sink_env):
    settings, client = sink_env
    wrong_record = AvroCodec().encode(events(1)[0])  # valid Avro, but an event, on the feedback topic
    await publish(settings, [b"not avro", wrong_record, feedback("r-good")], settings.topics.feedback)
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 1 and sink.dead_lettered >= 2)

    assert client.query(f"SELECT request_id FROM {settings.clickhouse.database}.feedback").result_rows == [("r-good",)]
    dead = await read_topic(settings, settings.topics.dlq, 2)
    reasons = sorted(dict(record.headers)[DLQ_REASON].decode() for record in dead)
    assert reasons[0].startswith("invalid_feedback: Avro body does not decode")
    assert reasons[1].startswith("invalid_feedback: not Turnout Avro")
    assert {dict(record.headers)[DLQ_TOPIC].decode() for record in dead} == {settings.topics.feedback}
    assert sorted(record.value for record in dead) == sorted([b"not avro", wrong_record])
    assert await committed_total(settings, settings.topics.feedback) == 3


async def read_topic(settings, topic: str, n: int, limit_s: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records: list = []
        for _ in range(int(limit_s / 0.2)):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if len(records) >= n:
                break
        return records
    finally:
        await consumer.stop()


async def test_an_attempts_confidence_is_stored_and_an_unjudged_one_stays_null(sink_env):
    settings, client = sink_env
    judged = RoutingEvent(event_id="e-judged", request_id="r1", tenant="t", kind="attempt", model="small", confidence=0.3)
    unjudged = RoutingEvent(event_id="e-plain", request_id="r2", tenant="t", kind="attempt", model="small")
    await publish(settings, [judged, unjudged])
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 2)
    rows = client.query(f"SELECT event_id, confidence FROM {settings.clickhouse.database}.routing_events FINAL ORDER BY event_id").result_rows
    assert [(event_id, None if c is None else round(c, 6)) for event_id, c in rows] == [("e-judged", 0.3), ("e-plain", None)]


async def test_the_feedback_command_publishes_what_the_sink_stores(sink_env):
    from click.testing import CliRunner

    from turnout.cli import cli

    settings, client = sink_env
    args = ["feedback", "req-9", "--config", str(CONFIG), "--tenant", "acme", "--metric", "accuracy", "--score", "0.75", "--comment", "close"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)  # the command runs its own event loop
    assert result.exit_code == 0, result.output
    assert "req-9:accuracy:" in result.output
    refused = await asyncio.to_thread(CliRunner().invoke, cli, ["feedback", "", "--config", str(CONFIG), "--tenant", "t", "--metric", "m", "--score", "1"])
    assert refused.exit_code == 1 and "request_id" in refused.output

    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 1)
    rows = client.query(f"SELECT feedback_id, tenant, metric, score, comment FROM {settings.clickhouse.database}.feedback").result_rows
    assert rows == [("req-9:accuracy:", "acme", "accuracy", 0.75, "close")]


def every_field_event(i: int) -> RoutingEvent:
    return RoutingEvent(
        event_id=f"every-{i}", request_id=f"r{i}", tenant="acme", kind="attempt",
        ts=datetime(2025, 3, 14, 17, 9, 26, 535000, tzinfo=timezone(timedelta(hours=2))) + timedelta(seconds=i),
        route="code", model="large", provider="sim", policy_version="v2", task_type="code", status="error", error_kind="timeout",
        input_tokens=1200 + i, output_tokens=300, cost_usd=0.0042, latency_ms=812.5, attempt=2, fallback_depth=1, detail="slow ✓",
        shadow=bool(i % 2), language="de", complexity=0.625, sensitive_kinds=["email", "iban"] if i % 2 else [], cache_hit=True,
        validation="repaired", confidence=None if i % 2 else 0.25, escalated=True,
    )


async def test_rows_clickhouse_decodes_are_the_rows_the_column_insert_writes(sink_env):
    settings, client = sink_env
    database = settings.clickhouse.database
    sent = [every_field_event(i) for i in range(4)] + events(3)
    await publish(settings, sent)
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= len(sent))
    assert sink.passed_through == len(sent) and sink.refused_blocks == 0  # every row went as Avro

    client.command(f"CREATE TABLE {database}.by_columns AS {database}.routing_events")
    client.insert(f"{database}.by_columns", [event_row(e) for e in sent], column_names=COLUMNS)
    select = "SELECT * EXCEPT inserted_at FROM {db}.{table} ORDER BY event_id"
    passed = client.query(select.format(db=database, table="routing_events")).result_rows
    assert passed == client.query(select.format(db=database, table="by_columns")).result_rows
    assert len(passed) == len(sent)


def truncated(event: RoutingEvent) -> bytes:
    """``event``'s message with its last byte cut: the id and kind still read, the datum does not."""
    return AvroCodec().encode(event)[:-1]


async def test_a_batch_with_a_body_clickhouse_refuses_stores_the_others_once_and_dead_letters_it(sink_env):
    settings, client = sink_env
    good = events(20)
    bad_kind = events(1, start=100)[0].model_construct(**(events(1, start=100)[0].model_dump() | {"kind": "exploded"}))
    corrupt = events(1, start=200)[0]
    # the cut message's valid copy comes after it in the same batch (the same key, so the same partition), and 5 good events twice
    await publish(settings, good[:10] + [truncated(corrupt), AvroCodec().encode(bad_kind)] + good[10:] + [corrupt] + good[:5], key=corrupt.request_id.encode())
    sink = EventsSink(settings, client)
    await run_until(sink, lambda: sink.inserted >= 21 and sink.dead_lettered >= 2 and sink.duplicates >= 5)

    assert sink.refused_blocks == 1  # ClickHouse refused the block with the cut body; its rows were decoded here
    assert (sink.inserted, sink.duplicates, sink.dead_lettered) == (21, 5, 2)
    assert plain_counts(client, settings) == 21  # each good row once: not in the refused block and again
    assert rollup_events(client, settings) == 21
    assert client.query(f"SELECT count() FROM {settings.clickhouse.database}.routing_events WHERE event_id = '{corrupt.event_id}'").result_rows == [(1,)]
    dead = await read_topic(settings, settings.topics.dlq, 2)
    reasons = {record.value: dict(record.headers)[DLQ_REASON].decode() for record in dead}
    assert reasons[truncated(corrupt)].startswith("invalid_event: Avro body does not decode")
    assert reasons[AvroCodec().encode(bad_kind)].startswith("invalid_event: turnout.RoutingEvent failed validation: kind:")
    assert await committed_total(settings) == 28


async def test_an_event_written_with_an_older_schema_is_decoded_here_beside_those_passed_through(sink_env):
    settings, client = sink_env
    catalog = SchemaCatalog()
    for name in bundled_catalog().names():
        catalog.add_bundled(name, bundled_catalog().by_name(name))
    older = catalog.register(
        {
            "type": "record", "name": "turnout.RoutingEvent",
            "fields": [{"name": n, "type": "string"} for n in ("event_id", "request_id", "tenant", "kind")]
            + [{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
        }
    )
    old = b"\xc3\x01" + schema_fingerprint(older) + avro_datum(older, {"event_id": "old-1", "request_id": "r-old", "tenant": "t", "kind": "decision", "ts": datetime.now(timezone.utc)})
    await publish(settings, events(5) + [old])
    sink = EventsSink(settings, client, codec=AvroCodec(catalog=catalog))
    await run_until(sink, lambda: sink.inserted >= 6)

    assert sink.passed_through == 5 and sink.dead_lettered == 0
    rows = client.query(f"SELECT event_id, model, confidence FROM {settings.clickhouse.database}.routing_events WHERE event_id = 'old-1'").result_rows
    assert rows == [("old-1", "", None)]  # the reader schema's defaults for the fields the writer did not have


def avro_datum(schema, datum) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()
