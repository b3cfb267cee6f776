"""For services that consume answers: iterate a response topic in a consumer group.

A billing job, a results loader or anything else that reads every answer on a topic
(``<prefix>.responses``, a batch job's topic, a team's reply topic) joins a consumer
group of its own, so its replicas share the partitions and a restart resumes where the
group left off::

    async with ResponseStream(settings.kafka, group_id="billing") as stream:
        async for response in stream:      # decoded InferenceResponse, in partition order
            await handle(response)         # committed once you ask for the next one

The iteration does not end by itself (a service's main loop): leave it with ``break``
or by cancelling the task.

**When offsets are committed.** A response counts as handled when the loop asks for the
next one (the body ran to its end without raising). Handled offsets are committed
before each new fetch from the broker, when partitions are taken away in a rebalance,
and when the stream is closed. A body that raises, or a ``break``, leaves that response
unhandled: the group reads it again after a restart (at-least-once; deduplicate by
``response.id`` where a repeat matters). ``await stream.commit()`` commits at once,
the current response included.

Records that are not Turnout responses (another writer on the topic) are skipped,
counted in ``skipped`` and logged, and commit as handled; so are the chunks of streamed
answers (``ResponseChunk``), whose final response follows them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from turnout.schemas.kafka import consumer_options
from turnout.schemas.models import InferenceResponse
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import KafkaSettings
from turnout.schemas.topics import Topics

from .streaming import read_reply

log = logging.getLogger(__name__)


class ResponseStream:
    def __init__(
        self,
        kafka: KafkaSettings,
        group_id: str,
        *,
        topic: str | None = None,
        codec: AvroCodec | None = None,
        from_beginning: bool = True,
        max_records: int = 500,
    ) -> None:
        """Read ``topic`` (default ``<prefix>.responses``) in ``group_id``. A new group
        starts at the topic's beginning (``from_beginning``) or at its end."""
        if not group_id:
            raise ValueError("ResponseStream needs a group_id: the consumer group that owns this reader's offsets")
        self.topic = topic or Topics(kafka.topic_prefix).responses
        self.codec = codec or codec_for(kafka)
        self.max_records = max_records
        self.skipped = 0
        options = consumer_options(kafka, "responses", group_id) | {"auto_offset_reset": "earliest" if from_beginning else "latest"}
        self._consumer = AIOKafkaConsumer(**options)
        self._buffer: deque[tuple[ConsumerRecord, InferenceResponse | None]] = deque()
        self._current: ConsumerRecord | None = None
        self._handled: dict[TopicPartition, int] = {}  # next offset to read, per partition, not yet committed

    async def __aenter__(self) -> ResponseStream:
        self._consumer.subscribe([self.topic], listener=_CommitOnRevoke(self))
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._commit_handled()
        finally:
            await self._consumer.stop()

    def __aiter__(self) -> AsyncIterator[InferenceResponse]:
        return self

    async def __anext__(self) -> InferenceResponse:
        self._mark_current_handled()
        while True:
            while self._buffer:
                record, response = self._buffer.popleft()
                self._current = record
                if response is not None:
                    return response
                self._mark_current_handled()
            await self._commit_handled()
            await self._fetch()

    async def commit(self) -> None:
        """Commit every response handed out so far, the current one included."""
        self._mark_current_handled()
        await self._commit_handled()

    async def _fetch(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=1000, max_records=self.max_records)
        for records in batches.values():
            for record in records:
                self._buffer.append((record, self._decoded(record)))

    def _decoded(self, record: ConsumerRecord) -> InferenceResponse | None:
        try:
            reply = read_reply(self.codec, record.value or b"")
        except DecodeError as exc:
            self.skipped += 1
            log.warning("%s[%d]@%d is not a Turnout response, skipped: %s", record.topic, record.partition, record.offset, exc)
            return None
        return reply if isinstance(reply, InferenceResponse) else None  # a streamed answer's chunk: its response follows

    def _mark_current_handled(self) -> None:
        if self._current is not None:
            self._handled[TopicPartition(self._current.topic, self._current.partition)] = self._current.offset + 1
            self._current = None

    async def _commit_handled(self, partitions: set[TopicPartition] | None = None) -> None:
        owned = self._consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self._handled.items() if tp in owned and (partitions is None or tp in partitions)}
        if offsets:
            await self._consumer.commit(offsets)
        for tp in offsets:
            self._handled.pop(tp, None)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what was handled on partitions about to go to another member, and drop
        what was fetched from them but not handed out: the new owner reads it."""
        await self._commit_handled(revoked)
        self._buffer = deque(item for item in self._buffer if TopicPartition(item[0].topic, item[0].partition) not in revoked)
        for tp in revoked:
            self._handled.pop(tp, None)


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.stream._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass
