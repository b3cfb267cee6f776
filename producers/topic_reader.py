"""Reading a whole topic from its beginning, without a consumer group.

``read_to_end`` stops at the end as of now: for jobs that need everything a topic holds
(which lines of a batch job are answered). ``follow`` goes on reading as records
arrive, until its caller stops or time runs out: for waiting on answers without
reading the topic again each time. The end is taken from the high watermark each fetch
reports rather than from ListOffsets, because Tansu answers ListOffsets(latest) with
the last batch's base offset + 1, not the high watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from turnout.schemas.kafka import client_options, partitions_of
from turnout.schemas.settings import KafkaSettings


FETCH_MS = 200


@contextlib.asynccontextmanager
async def _from_beginning(kafka: KafkaSettings, topic: str, partitions: list[int]) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    consumer = AIOKafkaConsumer(**client_options(kafka, "reader"), enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def partition_numbers(kafka: KafkaSettings, topic: str) -> list[int]:
    return [tp.partition for tp in await partitions_of(kafka, topic)]


async def read_to_end(
    kafka: KafkaSettings, topic: str, *, partitions: list[int] | None = None, timeout_s: float = 120.0
) -> AsyncIterator[list[ConsumerRecord]]:
    """Batches of ``topic``'s records up to its end; nothing when the topic does not exist.
    ``partitions``: its partition numbers, when the caller knows them already."""
    if partitions is None:
        partitions = await partition_numbers(kafka, topic)
    if not partitions:
        return
    async with _from_beginning(kafka, topic, partitions) as (consumer, tps):
        deadline = time.monotonic() + timeout_s
        while True:
            fetched = await consumer.getmany(timeout_ms=FETCH_MS, max_records=10_000)
            for records in fetched.values():
                yield records
            marks = [consumer.highwater(tp) for tp in tps]
            if not fetched and all(m is not None for m in marks) and all([await consumer.position(tp) >= m for tp, m in zip(tps, marks)]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g}s")


async def follow(kafka: KafkaSettings, topic: str, *, timeout_s: float) -> AsyncIterator[list[ConsumerRecord]]:
    """Batches of ``topic``'s records from its beginning and then as they arrive (an empty
    batch when nothing came for a moment, so the caller can look at the time), until the
    caller stops iterating or ``timeout_s`` has passed. A topic that does not exist yet
    is waited for."""
    deadline = time.monotonic() + timeout_s
    partitions = await partition_numbers(kafka, topic)
    while not partitions:
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(1.0)
        partitions = await partition_numbers(kafka, topic)
    async with _from_beginning(kafka, topic, partitions) as (consumer, _):
        while time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=FETCH_MS, max_records=10_000)
            yield [record for records in fetched.values() for record in records]
