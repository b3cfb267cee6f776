"""The analytics sink: ``<prefix>.events`` and ``<prefix>.feedback`` into ClickHouse, in
batches, offsets after inserts, each row once.

Like Quix Streams' ``BatchingSink``: rows are buffered until the batch is full or the
flush interval passes, inserted in one call per table, and only then are the Kafka
offsets committed. An insert that fails is retried with backoff while consumption
waits, so a ClickHouse outage delays rows but never loses them. One loop serves every
topic: a ``Stream`` says what a topic's messages decode to, which table their rows go
to and which column identifies a row. A message that does not decode goes to the DLQ
with its reason and the next one is processed. Messages are read straight into the
insert's columns (``rows.py``): no pydantic model per event, the model's constraints
still enforced.

Each row once, even where ``FINAL`` does not look: the tables are ``ReplacingMergeTree``s
keyed by the row's deterministic id, which collapses a redelivered copy for queries
that read ``FINAL`` (or after a merge), but the materialized rollups are computed from
the inserted blocks and would count the copy for good. Copies come from at-least-once
delivery: a producer that resends after a lost acknowledgement, and this sink itself,
which replays whatever it inserted but had not committed when it crashed or lost its
partitions. So the sink drops a row whose id it has already inserted, or already holds
in the batch (``dedup.RecentIds``, at most ``sink.dedup_max_ids`` ids per table). The
memory is seeded from ClickHouse with the ids inserted in the last
``sink.dedup_window_s`` seconds whenever partitions are assigned (at start-up and after
a rebalance), because a replay is exactly the rows a previous owner inserted just before
it stopped. A copy older than the window is still collapsed by ``FINAL``, not in the
rollups. An insert retried after a failure first asks the table which of its ids are
there already: a timeout may hide an insert that landed. ClickHouse's own insert
deduplication does not help here: it matches whole identical blocks, and a replay is
batched differently.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from clickhouse_connect.driver.client import Client

from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options
from turnout.schemas.models import AvroRecord, Feedback, RoutingEvent
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .dedup import RecentIds
from .rows import Columns, RecordReader, model_datum
from .store import migrate, open_client

log = logging.getLogger("turnout.sink")
STAGE = "analytics-sink"
T = TypeVar("T")


@dataclass(frozen=True)
class Stream:
    """One topic into one table: its messages decode to ``record``, whose fields are the
    table's columns; ``id_column`` identifies a row (the deduplication key); a message
    that does not decode is dead-lettered with the reason ``invalid``."""

    topic: str
    record: type[AvroRecord]
    table: str
    id_column: str
    invalid: str

    @property
    def columns(self) -> list[str]:
        return list(self.record.model_fields)


def sink_streams(settings: Settings) -> list[Stream]:
    topics = settings.topics
    return [
        Stream(topics.events, RoutingEvent, "routing_events", "event_id", "invalid_event"),
        Stream(topics.feedback, Feedback, "feedback", "feedback_id", "invalid_feedback"),
    ]


def record_row(record: AvroRecord, columns: list[str]) -> list:
    """The row of ``record``: its fields in column order, timestamps in UTC."""
    datum = model_datum(record)
    return [datum[column] for column in columns]


COLUMNS = list(RoutingEvent.model_fields)  # routing_events' columns, in the record's order


def event_row(event: RoutingEvent) -> list:
    return record_row(event, COLUMNS)


class _Table:
    """A stream's pending rows (as insert columns), how its messages are read, and its
    memory of the ids inserted recently."""

    def __init__(self, stream: Stream, database: str, max_ids: int, codec: AvroCodec) -> None:
        self.stream = stream
        self.name = f"{database}.{stream.table}"
        self.columns = stream.columns
        self.reader = RecordReader(codec, stream.record)
        self.recent = RecentIds(max_ids)
        self.rows = Columns(self.columns)
        self.unsure = False  # an insert of ``rows`` failed: it may have landed before its answer was lost

    def take(self, datum: dict[str, Any]) -> bool:
        """Buffer ``datum`` (a decoded record) unless its id was inserted or buffered already."""
        if not self.recent.add(datum[self.stream.id_column]):
            return False
        self.rows.append(datum)
        return True

    def clear(self) -> None:
        self.rows = Columns(self.columns)


class _Reseed(ConsumerRebalanceListener):
    """Partitions assigned: the rows they replay may have been inserted by their previous
    owner (or by this process before it restarted), so reload the recent ids first."""

    def __init__(self) -> None:
        self.pending = False  # the first assignment sets it, like every later one

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.pending = True


class EventsSink:
    def __init__(
        self, settings: Settings, client: Client, *, codec: AvroCodec | None = None, streams: list[Stream] | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.codec = codec or codec_for(settings.kafka)
        database, max_ids = settings.clickhouse.database, settings.sink.dedup_max_ids
        self.tables = {s.topic: _Table(s, database, max_ids, self.codec) for s in streams or sink_streams(settings)}
        self.inserted = 0  # rows inserted, every table
        self.duplicates = 0  # rows dropped because their id was inserted already
        self.dead_lettered = 0
        self._stopping = asyncio.Event()
        self._reseed = _Reseed()

    def stop(self) -> None:
        """Finish: drain the topics up to their current end, flush, commit, return."""
        self._stopping.set()

    @property
    def _pending(self) -> int:
        return sum(len(table.rows) for table in self.tables.values())

    async def run(self) -> None:
        kafka, sink = self.settings.kafka, self.settings.sink
        consumer = AIOKafkaConsumer(**consumer_options(kafka, "sink", sink.group_id))
        consumer.subscribe(list(self.tables), listener=self._reseed)
        producer = AIOKafkaProducer(**producer_options(kafka, "sink"))
        await producer.start()
        await consumer.start()
        uncommitted = False  # records consumed since the last commit
        last_flush = time.monotonic()
        try:
            while True:
                stopping = self._stopping.is_set()
                batches = await consumer.getmany(timeout_ms=200, max_records=sink.batch_size)
                if self._reseed.pending:  # before any record of the new assignment is judged
                    self._reseed.pending = False
                    await self._load_recent_ids()
                for tp, batch in batches.items():
                    table = self.tables[tp.topic]
                    for record in batch:
                        uncommitted = True
                        datum = await self._datum(table, record, producer)
                        if datum is not None and not table.take(datum):
                            self.duplicates += 1
                due = time.monotonic() - last_flush >= sink.flush_interval_s
                pending = self._pending
                if pending and (pending >= sink.batch_size or due or stopping):
                    await self._flush()
                    last_flush = time.monotonic()
                if uncommitted and not self._pending:  # only what is in ClickHouse (or dead-lettered) is committed
                    await self._commit(consumer)
                    uncommitted = False
                if stopping and not batches and not self._pending and await self._caught_up(consumer):
                    break
        finally:
            await consumer.stop()
            await producer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.commit()

    async def _datum(self, table: _Table, record, producer: AIOKafkaProducer) -> dict[str, Any] | None:
        try:
            return table.reader.read(record.value or b"")
        except DecodeError as exc:
            headers = dlq_headers(f"{table.stream.invalid}: {exc}", STAGE, record.topic, record.partition, record.offset)
            await (await producer.send(self.settings.topics.dlq, value=record.value or b"", key=record.key, headers=headers))
            self.dead_lettered += 1
            return None

    async def _flush(self) -> None:
        for table in self.tables.values():
            if table.rows:
                self.inserted += await self._retrying(f"insert of {len(table.rows)} rows into {table.name}", self._insert, table)
                table.clear()

    def _insert(self, table: _Table) -> int:
        """Insert the table's pending rows; after a failed attempt, only those whose id is
        not in the table yet (a timeout may hide an insert that did land)."""
        rows = table.rows
        if table.unsure:
            ids = rows.column(table.stream.id_column)
            sql = f"SELECT {table.stream.id_column} FROM {table.name} WHERE {table.stream.id_column} IN {{ids:Array(String)}}"
            landed = {row[0] for row in self.client.query(sql, parameters={"ids": ids}).result_rows}
            self.duplicates += len(landed)
            rows = rows.keep(i not in landed for i in ids)
        table.unsure = True
        if len(rows):
            self.client.insert(table.name, rows.data, column_names=table.columns, column_oriented=True)
        table.unsure = False
        return len(rows)

    async def _load_recent_ids(self) -> None:
        window_s = self.settings.sink.dedup_window_s
        if window_s <= 0:
            return
        for table in self.tables.values():
            sql = (
                f"SELECT {table.stream.id_column} FROM {table.name} "
                f"WHERE inserted_at >= now64(3) - toIntervalMillisecond({int(window_s * 1000)}) "
                f"ORDER BY inserted_at DESC LIMIT {table.recent.max_ids}"
            )
            result = await self._retrying(f"loading the ids recently inserted into {table.name}", self.client.query, sql)
            table.recent.update(row[0] for row in reversed(result.result_rows))  # oldest first
            log.info("remembering %d ids recently inserted into %s", len(table.recent), table.name)

    @staticmethod
    async def _retrying(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call`` in a thread until it succeeds: the store is down or refusing, so keep
        what we hold, wait (backing off up to 30 s), try again."""
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(call, *args, **kwargs)
            except Exception as exc:
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
        assignment: set[TopicPartition] = consumer.assignment()
        if not assignment:
            return True
        ends = await consumer.end_offsets(list(assignment))
        for tp in assignment:
            if await consumer.position(tp) < ends[tp]:
                return False
        return True


def run_sink(settings: Settings) -> None:
    """Own the analytics store and fill it until SIGINT/SIGTERM, then drain and exit."""

    async def main() -> None:
        client = open_client(settings.clickhouse)
        applied = migrate(client, settings.clickhouse.database)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        sink = EventsSink(settings, client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sink.stop)
        await sink.run()
        log.info("sink stopped after inserting %d rows (%d duplicates dropped, %d dead-lettered)", sink.inserted, sink.duplicates, sink.dead_lettered)

    asyncio.run(main())
