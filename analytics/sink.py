"""The analytics sink: ``<prefix>.events`` and ``<prefix>.feedback`` into ClickHouse, in
batches, offsets after inserts, each row once.

Like Quix Streams' ``BatchingSink``: rows are buffered until the batch is full or the
flush interval passes, inserted in one call per table, and only then are the Kafka
offsets committed. An insert that fails is retried with backoff while consumption
waits, so a ClickHouse outage delays rows but never loses them. One loop serves every
topic: a ``Stream`` says what a topic's messages decode to, which table their rows go
to and which column identifies a row. A message that does not decode goes to the DLQ
with its reason and the next one is processed.

Most messages are not decoded here at all (``passthrough.py``): their Avro bodies are
handed to ClickHouse as one ``FORMAT Avro`` insert, Python reading only each row's id
and the values the model constrains. The others (another writer schema, a stream whose
model must validate each record) are decoded straight into the insert's columns
(``rows.py``): no pydantic model per event, the model's constraints still enforced.
One batch is stored (inserted, then its offsets committed) while the next is consumed:
ClickHouse inserts without holding the GIL, so the two overlap on two cores, and the
next batch is stored only after the previous one, so commits stay in order and an
outage stops consumption after one batch.

Each row once, even where ``FINAL`` does not look: the tables are ``ReplacingMergeTree``s
keyed by the row's deterministic id, which collapses a redelivered copy for queries
that read ``FINAL`` (or after a merge), but the materialized rollups are computed from
the inserted blocks and would count the copy for good. Copies come from at-least-once
delivery: a producer that resends after a lost acknowledgement, and this sink itself,
which replays whatever it inserted but had not committed when it crashed or lost its
partitions. So the sink drops a row whose id it has already inserted, or already holds
in the batch (``dedup.RecentIds``, at most ``sink.dedup_max_ids`` ids per table). The
memory is seeded from ClickHouse with the ids inserted in the ``sink.dedup_window_s``
seconds up to the newest insert whenever partitions are assigned (at start-up and after
a rebalance), because a replay is exactly the rows a previous owner inserted just before
it stopped. A copy older than the window is still collapsed by ``FINAL``, not in the
rollups. An insert retried after a failure first asks the table which of its ids are
there already: a timeout may hide an insert that landed. ClickHouse's own insert
deduplication does not help here: it matches whole identical blocks, and a replay is
batched differently.

The other way round, a row in the raw table that the rollups never counted: the views'
parts are not written atomically with the raw part, so a sink killed between them
leaves such rows, and the replay skips them as inserted. After the same seeding (in the
one sink of the group that owns the events topic's first partition) and after a retried
insert found rows already there, the sink checks the derived tables against the recent
raw rows and rebuilds the buckets that disagree (``repair.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from clickhouse_connect.driver.client import Client

from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options
from turnout.schemas.models import AvroRecord, Feedback, PromptText, RoutingEvent
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .avro_fields import UnsupportedSchema
from .dedup import RecentIds
from .passthrough import AvroPassThrough, AvroRows
from .repair import Repairer, RepairReport
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
        Stream(topics.prompts, PromptText, "prompts", "request_id", "invalid_prompt"),
    ]


def record_row(record: AvroRecord, columns: list[str]) -> list:
    """The row of ``record``: its fields in column order, timestamps in UTC."""
    datum = model_datum(record)
    return [datum[column] for column in columns]


COLUMNS = list(RoutingEvent.model_fields)  # routing_events' columns, in the record's order


def event_row(event: RoutingEvent) -> list:
    return record_row(event, COLUMNS)


class _Pending:
    """One table's rows consumed since the last flush: those passed through as Avro, and
    those decoded here (a writer schema other than the reader's, a stream that must go
    through its model)."""

    def __init__(self, table: _Table) -> None:
        self.avro = AvroRows(table.passthrough.schema_json) if table.passthrough else None
        self.columns = Columns(table.columns)

    def __len__(self) -> int:
        return len(self.columns) + (len(self.avro) if self.avro else 0)


class _Table:
    """A stream's pending rows, how its messages are read, and its memory of the ids
    inserted recently."""

    def __init__(self, stream: Stream, database: str, max_ids: int, codec: AvroCodec) -> None:
        self.stream = stream
        self.name = f"{database}.{stream.table}"
        self.columns = stream.columns
        self.reader = RecordReader(codec, stream.record)
        self.recent = RecentIds(max_ids)
        try:
            self.passthrough: AvroPassThrough | None = AvroPassThrough(codec, stream.record, stream.id_column)
        except UnsupportedSchema as exc:
            log.info("%s: every message is decoded by the sink (%s)", self.name, exc)
            self.passthrough = None
        self.rows = _Pending(self)

    def take(self, message: Any) -> bool:
        """Buffer ``message`` unless its id was inserted or buffered already (``False``);
        ``DecodeError`` (the dead-letter reason) when it is not a valid record."""
        value = message.value or b""
        if self.passthrough is not None and (read := self.passthrough.read(value)) is not None:
            row_id, body_start = read
            avro = self.rows.avro
            assert avro is not None  # there is a pass-through, so rows pass through
            if not self.recent.add(row_id):
                avro.keep_copy(message, row_id)
                return False
            avro.append(message, body_start, row_id)
            return True
        return self.take_datum(self.reader.read(value))

    def take_datum(self, datum: dict[str, Any]) -> bool:
        """Buffer ``datum`` (a decoded record) unless its id was inserted or buffered already."""
        if not self.recent.add(datum[self.stream.id_column]):
            return False
        self.rows.columns.append(datum)
        return True

    def seal(self) -> _Pending:
        """The pending rows, handed over for their insert; the table starts afresh."""
        rows, self.rows = self.rows, _Pending(self)
        return rows


@dataclass
class _Batch:
    """What one flush stores: each table's rows, then the offsets that commit them (every
    record consumed into the batch, duplicates and dead letters included)."""

    rows: list[tuple[_Table, _Pending]]
    offsets: dict[TopicPartition, int]

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.rows)


IDS_PER_QUERY = 5_000  # a server takes query parameters in the URL, which it caps at 1 MiB (http_max_uri_size)


class _ColumnsInsert:
    """Decoded rows into their table, one attempt per call (``_retrying`` repeats it).
    After an attempt that failed (or ``unsure`` from the start: an insert of the same
    rows failed before), only the rows whose id is not in the table yet: a timeout may
    hide an insert that landed."""

    def __init__(self, client: Client, table: _Table, columns: Columns, unsure: bool = False) -> None:
        self.client, self.table, self.columns, self.unsure = client, table, columns, unsure
        self.landed = 0  # rows found in the table already
        self.inserted = 0

    def __call__(self) -> None:
        table, id_column = self.table, self.table.stream.id_column
        if self.unsure:
            ids = self.columns.column(id_column)
            sql = f"SELECT {id_column} FROM {table.name} WHERE {id_column} IN {{ids:Array(String)}}"
            landed: set[str] = set()
            for i in range(0, len(ids), IDS_PER_QUERY):
                landed.update(row[0] for row in self.client.query(sql, parameters={"ids": ids[i : i + IDS_PER_QUERY]}).result_rows)
            self.landed += len(landed)
            self.columns = self.columns.keep(i not in landed for i in ids)
        self.unsure = True
        if len(self.columns):
            self.client.insert(table.name, self.columns.data, column_names=table.columns, column_oriented=True)
        self.unsure = False
        self.inserted = len(self.columns)


class _Reseed(ConsumerRebalanceListener):
    """Partitions assigned: the rows they replay may have been inserted by their previous
    owner (or by this process before it restarted), so reload the recent ids first."""

    def __init__(self) -> None:
        self.pending = False  # the first assignment sets it, like every later one

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.pending = True


def checks_derived_tables(assignment: set[TopicPartition], events_topic: str) -> bool:
    """Whether this sink checks the derived tables after a rebalance: only the owner of
    the events topic's first partition, one member of the group, so that two sinks do
    not rebuild the same buckets at once (each deleting what the other just inserted)."""
    return TopicPartition(events_topic, 0) in assignment


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
        self.passed_through = 0  # rows inserted as Avro, decoded by ClickHouse (counted in ``inserted`` too)
        self.refused_blocks = 0  # Avro blocks ClickHouse refused, whose rows were then decoded here
        self._stopping = asyncio.Event()
        self._reseed = _Reseed()
        self._storing: asyncio.Task[None] | None = None  # the previous batch: its inserts, then its commit
        self._storing_rows = 0
        self._producer: AIOKafkaProducer | None = None
        self._repairer = Repairer(client, settings.clickhouse.database)
        self.last_repair: RepairReport | None = None  # the last check of the derived tables
        self.mended = 0  # checks that rebuilt something

    def stop(self) -> None:
        """Finish: drain the topics up to their current end, flush, commit, return."""
        self._stopping.set()

    @property
    def _pending(self) -> int:
        """Rows consumed and not inserted yet: those of the batch being stored, and the next."""
        storing = self._storing_rows if self._storing is not None and not self._storing.done() else 0
        return storing + sum(len(table.rows) for table in self.tables.values())

    async def run(self) -> None:
        kafka, sink = self.settings.kafka, self.settings.sink
        consumer = AIOKafkaConsumer(**consumer_options(kafka, "sink", sink.group_id))
        consumer.subscribe(list(self.tables), listener=self._reseed)
        producer = self._producer = AIOKafkaProducer(**producer_options(kafka, "sink"))
        await producer.start()
        await consumer.start()
        offsets: dict[TopicPartition, int] = {}  # the next offset of each partition consumed into the batch being built
        last_flush = time.monotonic()
        try:
            while True:
                stopping = self._stopping.is_set()
                room = sink.batch_size - sum(len(table.rows) for table in self.tables.values())  # no insert above batch_size
                batches = await consumer.getmany(timeout_ms=200, max_records=max(room, 1))
                if self._reseed.pending:  # before any record of the new assignment is judged
                    self._reseed.pending = False
                    await self._load_recent_ids()
                    if checks_derived_tables(consumer.assignment(), self.settings.topics.events):
                        await self._stored()  # its rows are in, so that the check below does not race this sink's own insert
                        await self._repair_derived()
                for tp, records in batches.items():
                    table = self.tables[tp.topic]
                    for record in records:
                        try:
                            if not table.take(record):
                                self.duplicates += 1
                        except DecodeError as exc:
                            await self._dead_letter(table, record, exc)
                    offsets[tp] = records[-1].offset + 1
                building = sum(len(table.rows) for table in self.tables.values())
                due = time.monotonic() - last_flush >= sink.flush_interval_s
                if offsets and (not building or building >= sink.batch_size or due or stopping):
                    await self._store_next(_Batch([(t, t.seal()) for t in self.tables.values() if t.rows], offsets), consumer)
                    offsets = {}
                    last_flush = time.monotonic()
                if stopping and not batches and not offsets:
                    await self._stored()
                    if await self._caught_up(consumer):
                        break
        finally:
            if self._storing is not None and not self._storing.done():
                self._storing.cancel()  # cancelled or failed: its offsets stay uncommitted, its rows will be read again
            await consumer.stop()
            await producer.stop()

    async def _store_next(self, batch: _Batch, consumer: AIOKafkaConsumer) -> None:
        """Start storing ``batch`` once the previous one is stored: one batch in flight,
        so that the Kafka consumption (Python) overlaps the insert (ClickHouse, which
        releases the GIL), commits stay in order, and a failing store holds up the next."""
        await self._stored()
        self._storing_rows = len(batch)
        self._storing = asyncio.create_task(self._store(batch, consumer))

    async def _stored(self) -> None:
        if self._storing is not None:
            await self._storing  # its exception, if any, stops the sink
            self._storing = None

    async def _store(self, batch: _Batch, consumer: AIOKafkaConsumer) -> None:
        for table, rows in batch.rows:
            if rows.avro:
                await self._insert_avro(table, rows.avro)
            if rows.columns:
                await self._insert_columns(table, rows.columns)
        await self._commit(consumer, batch.offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (only what is in ClickHouse or dead-lettered), for the
        partitions still assigned: a revoked one is its new owner's to commit."""
        assigned = consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if owned:
            await consumer.commit(owned)

    async def _insert_avro(self, table: _Table, rows: AvroRows) -> None:
        """The rows as one Avro block, decoded by ClickHouse. Refused (a body that does not
        decode, a value a column cannot hold, or the store is down): decode them here,
        dead-letter those that do not decode, insert the rest as columns (retrying)."""
        what = f"insert of {len(rows)} Avro rows into {table.name}"
        try:
            await asyncio.to_thread(self.client.raw_insert, table.name, table.columns, rows.container.getvalue(), fmt="Avro")
        except Exception as exc:
            log.warning("%s failed (%s); decoding them here", what, exc)
        else:
            self.inserted += len(rows)
            self.passed_through += len(rows)
            return
        self.refused_blocks += 1
        columns = Columns(table.columns)
        for message, row_id in zip(rows.messages, rows.ids):
            for candidate in [message, *rows.copies.get(row_id, [])]:  # a copy of a row stands in for it if need be
                try:
                    columns.append(table.reader.read(candidate.value or b""))
                except DecodeError as exc:
                    await self._dead_letter(table, candidate, exc)
                    continue
                if candidate is not message:
                    self.duplicates -= 1  # counted as one when it was dropped for its (undecodable) twin
                break
            else:
                table.recent.forget(row_id)  # not stored: a valid copy still to come must not count as a duplicate
        await self._insert_columns(table, columns, unsure=True)  # the refused insert may have landed before its answer was lost

    async def _insert_columns(self, table: _Table, columns: Columns, unsure: bool = False) -> None:
        insert = _ColumnsInsert(self.client, table, columns, unsure)
        await self._retrying(f"insert of {len(columns)} rows into {table.name}", insert)
        self.inserted += insert.inserted
        self.duplicates += insert.landed
        if insert.landed:  # an earlier attempt landed, perhaps in the raw table only
            await self._repair_derived()

    async def _dead_letter(self, table: _Table, record: Any, exc: DecodeError) -> None:
        assert self._producer is not None
        headers = dlq_headers(f"{table.stream.invalid}: {exc}", STAGE, record.topic, record.partition, record.offset)
        await (await self._producer.send(self.settings.topics.dlq, value=record.value or b"", key=record.key, headers=headers))
        self.dead_lettered += 1

    async def _load_recent_ids(self) -> None:
        window_s = self.settings.sink.dedup_window_s
        if window_s <= 0:
            return
        for table in self.tables.values():
            sql = (  # counted back from the newest insert: a sink down for longer than the window replays what it inserted last
                f"SELECT {table.stream.id_column} FROM {table.name} "
                f"WHERE inserted_at >= (SELECT max(inserted_at) FROM {table.name}) - toIntervalMillisecond({int(window_s * 1000)}) "
                f"ORDER BY inserted_at DESC LIMIT {table.recent.max_ids}"
            )
            result = await self._retrying(f"loading the ids recently inserted into {table.name}", self.client.query, sql)
            table.recent.update(row[0] for row in reversed(result.result_rows))  # oldest first
            log.info("remembering %d ids recently inserted into %s", len(table.recent), table.name)

    async def _repair_derived(self) -> None:
        """Rebuild what the materialized views missed of the recent raw rows: an insert
        that died between the raw part and the views' parts (``repair.py``)."""
        sink = self.settings.sink
        if not sink.repair_derived or sink.dedup_window_s <= 0:
            return
        try:
            report = await self._retrying(
                "checking the derived tables against the recent events", self._repairer.repair, sink.dedup_window_s,
                give_up_on=(LookupError, ValueError),  # a view missing or redefined: no retry will change that
            )
        except (LookupError, ValueError) as exc:
            log.error("the derived tables were not checked: %s", exc)
            return
        self.last_repair = report
        self.mended += report.mended
        (log.warning if report.mended else log.info)("%s", report)

    @staticmethod
    async def _retrying(
        what: str, call: Callable[..., T], *args: Any, give_up_on: tuple[type[Exception], ...] = (), **kwargs: Any
    ) -> T:
        """``call`` in a thread until it succeeds: the store is down or refusing, so keep
        what we hold, wait (backing off up to 30 s), try again; ``give_up_on`` errors are
        raised at once, being no outage."""
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(call, *args, **kwargs)
            except give_up_on:
                raise
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


GC_ALLOCATIONS = 50_000  # the sink process's generation-0 collection threshold (Python's default: 700)


def run_sink(settings: Settings) -> None:
    """Own the analytics store and fill it until SIGINT/SIGTERM, then drain and exit.

    The sink allocates a few objects per message (aiokafka's record, the body's view) and
    holds up to two batches of them; at Python's default threshold the cyclic collector
    ran every hundred-odd messages and walked the records held, about 40 % of the
    consuming thread's time (py-spy). Nothing on that path makes reference cycles, so
    this process, which runs nothing but the sink, collects far less often."""
    gc.set_threshold(GC_ALLOCATIONS, *gc.get_threshold()[1:])

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
