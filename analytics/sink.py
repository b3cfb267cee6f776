"""The events sink: ``<prefix>.events`` into ClickHouse, in batches, offsets after inserts.

Like Quix Streams' ``BatchingSink``: rows are buffered until the batch is full or the
flush interval passes, inserted in one call, and only then are the Kafka offsets
committed. An insert that fails is retried with backoff while consumption waits, so a
ClickHouse outage delays rows but never loses them; a crash before the commit replays
the batch, and the ReplacingMergeTree key makes the replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import timezone

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client

from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options
from turnout.schemas.models import RoutingEvent
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .store import migrate, open_client

log = logging.getLogger("turnout.sink")
COLUMNS = list(RoutingEvent.model_fields)
STAGE = "analytics-sink"


def event_row(event: RoutingEvent) -> list:
    row = event.model_dump()
    row["ts"] = event.ts.astimezone(timezone.utc)
    return [row[column] for column in COLUMNS]


class EventsSink:
    def __init__(self, settings: Settings, client: Client, *, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.client = client
        self.codec = codec or codec_for(settings.kafka)
        self.table = f"{settings.clickhouse.database}.routing_events"
        self.inserted = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish: drain the topic up to its current end, flush, commit, return."""
        self._stopping.set()

    async def run(self) -> None:
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(self.settings.topics.events, **consumer_options(kafka, "sink", self.settings.sink.group_id))
        producer = AIOKafkaProducer(**producer_options(kafka, "sink"))
        await producer.start()
        await consumer.start()
        rows: list[list] = []
        uncommitted = False  # records consumed since the last commit
        last_flush = time.monotonic()
        try:
            while True:
                stopping = self._stopping.is_set()
                batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.sink.batch_size)
                for batch in batches.values():
                    for record in batch:
                        uncommitted = True
                        row = await self._row(record, producer)
                        if row is not None:
                            rows.append(row)
                due = time.monotonic() - last_flush >= self.settings.sink.flush_interval_s
                if rows and (len(rows) >= self.settings.sink.batch_size or due or stopping):
                    await self._insert_with_retry(rows)
                    rows = []
                    last_flush = time.monotonic()
                if uncommitted and not rows:  # only what is in ClickHouse (or dead-lettered) is committed
                    await consumer.commit()
                    uncommitted = False
                if stopping and not batches and not rows and await self._caught_up(consumer):
                    break
        finally:
            await consumer.stop()
            await producer.stop()

    async def _row(self, record, producer: AIOKafkaProducer) -> list | None:
        try:
            return event_row(self.codec.decode(record.value or b"", RoutingEvent))
        except DecodeError as exc:
            headers = dlq_headers(f"invalid_event: {exc}", STAGE, record.topic, record.partition, record.offset)
            await (await producer.send(self.settings.topics.dlq, value=record.value or b"", key=record.key, headers=headers))
            return None

    async def _insert_with_retry(self, rows: list[list]) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.client.insert, self.table, rows, column_names=COLUMNS)
                self.inserted += len(rows)
                return
            except Exception as exc:  # the store is down or refusing: keep the rows, wait, try again
                log.warning("insert of %d events failed (%s); retrying in %.1fs", len(rows), exc, delay)
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
        log.info("sink stopped after inserting %d events", sink.inserted)

    asyncio.run(main())
