"""Read a whole compacted topic, from the beginning and then as it grows, in every
router instance (no consumer group): how routers share the policy in force and the
spend of every tenant, whichever partitions they own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from turnout.schemas.kafka import consumer_options, partitions_of
from turnout.schemas.settings import Settings


async def follow(settings: Settings, topic: str, role: str, apply: Callable[[bytes | None, bytes | None], None], ready: asyncio.Event) -> None:
    """Feed every record of ``topic`` to ``apply``; set ``ready`` once caught up with the
    end it had at start. Runs until cancelled."""
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka, role, None))
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        while not partitions:  # the topic may be created by another process a moment later
            partitions = await partitions_of(settings.kafka, topic)
            if not partitions:
                await asyncio.sleep(0.5)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    apply(record.key, record.value)
            if not ready.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                ready.set()
    finally:
        await consumer.stop()
