"""Which requests were already answered, read back from the events topic.

A worker commits a request's offset after its response is acknowledged, so a replica
killed between the two leaves answered requests uncommitted: whoever gets the partition
next is handed them again. Its in-memory ``AnsweredIds`` is empty (a new process) or
never saw them (another replica), so without this it would call the backend again and
publish a second response.

Every answer is published together with a final routing event (``completion`` or
``failure``) keyed by the request id, and the router keys a request's slip by the same
id: with the same partition count, the default partitioner puts a request's slip on
partition *p* of its model topic and its events on partition *p* of the events topic.
So on getting partitions, a replica reads those partitions of the events topic back
``worker.dedup_lookback_s`` seconds and remembers every request with a final event,
whichever model or replica answered it (a slip forwarded by a fallback or an escalation
is answered by another model's worker). When the partition counts differ, it reads every
partition of the events topic.

A response and its final event are separate records, and a replica can die between
the two. The worker therefore publishes the final event only once the response is
acknowledged (a final event implies the response exists: a request may be answered
twice, never lost), and for the requests answered on the shared responses topic (those
that name no reply topic) it reads that topic's co-partitioned partitions too: there the
response itself is the mark, with no window between the two.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from turnout.schemas.kafka import consumer_options, partitions_of
from turnout.schemas.models import InferenceResponse, RoutingEvent
from turnout.schemas.serde import AvroCodec, DecodeError
from turnout.schemas.settings import Settings

FINAL_KINDS = frozenset({"completion", "failure"})


def dedup_key(request_id: str, shadow: bool) -> str:
    """The id a worker deduplicates on: a shadow copy is a job of its own."""
    return f"{request_id}:shadow" if shadow else request_id


@dataclass
class Answered:
    """What the topics say was answered: final events (any request, shadow copies too) and
    responses on the shared responses topic (the requests that name no reply topic)."""

    finished: set[str] = field(default_factory=set)  # dedup keys with a final event
    responded: set[str] = field(default_factory=set)  # request ids with a response on the shared topic
    # responses whose final event is missing (the replica died between the two): the
    # worker that skips the request records the event from it, so analytics count it
    unrecorded: dict[str, InferenceResponse] = field(default_factory=dict)


async def answered_since(settings: Settings, codec: AvroCodec, model_partitions: Iterable[int], model_partition_count: int, lookback_s: float) -> Answered:
    """The requests answered in the last ``lookback_s`` seconds on the partitions of the
    events and shared responses topics that share ``model_partitions``' requests."""
    since_ms = int((time.time() - lookback_s) * 1000)
    answered = Answered()
    refused: set[str] = set()  # the router answered these itself: no worker records them
    wanted = set(model_partitions)
    topics = settings.topics
    partitions = await partitions_of(settings.kafka, topics.events, topics.responses)  # one metadata request for both
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka, "worker-seed", None))
    await consumer.start()
    try:
        async for record in _records_since(consumer, _of(partitions, topics.events), wanted, model_partition_count, since_ms):
            try:
                event = codec.decode(record.value or b"", RoutingEvent)
            except DecodeError:
                continue  # the sink dead-letters it; it answers nothing here
            if event.kind in FINAL_KINDS:
                answered.finished.add(dedup_key(event.request_id, event.shadow))
            elif event.kind == "rejected":
                refused.add(event.request_id)
        async for record in _records_since(consumer, _of(partitions, topics.responses), wanted, model_partition_count, since_ms):
            if not record.key:
                continue
            request_id = record.key.decode("utf-8", "replace")
            answered.responded.add(request_id)
            if request_id not in answered.finished and request_id not in refused:
                try:
                    answered.unrecorded[request_id] = codec.decode(record.value or b"", InferenceResponse)
                except DecodeError:
                    pass
    finally:
        await consumer.stop()
    return answered


def _of(partitions: list[TopicPartition], topic: str) -> list[TopicPartition]:
    return [tp for tp in partitions if tp.topic == topic]


async def _records_since(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], wanted: set[int], model_partition_count: int, since_ms: int
) -> AsyncIterator[ConsumerRecord]:
    """The records since ``since_ms`` of a topic's ``partitions`` numbered ``wanted`` (of
    every partition when the topic is not partitioned like the model topic), read by
    ``consumer``, which is assigned those partitions for the purpose."""
    if len(partitions) == model_partition_count:
        partitions = [tp for tp in partitions if tp.partition in wanted]
    if not partitions:
        return
    consumer.assign(partitions)
    starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        found = starts.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])
    while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            for record in batch:
                if record.timestamp >= since_ms:
                    yield record
