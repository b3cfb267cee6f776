"""Putting records on Turnout's input topics: requests and feedback, acknowledged.

A publisher has no reply topic and reads nothing: for jobs that only publish (batch
submission, the ``turnout feedback`` command, benchmarks) and as the sending half of
``TurnoutClient``. Each request is keyed by its id, so one request's redeliveries stay
on one partition and in order; feedback is keyed by the id of the request it judges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from aiokafka import AIOKafkaProducer

from turnout.schemas.kafka import producer_options
from turnout.schemas.models import Feedback, InferenceRequest
from turnout.schemas.serde import AvroCodec, codec_for
from turnout.schemas.settings import KafkaSettings
from turnout.schemas.topics import Topics

# Sends per acknowledgement window; at most two windows are in flight: enough to keep
# the producer's batches full, few enough that a progress callback moves smoothly.
WINDOW = 2000


class RequestPublisher:
    """``async with RequestPublisher(kafka) as p: await p.publish(requests)``."""

    def __init__(self, kafka: KafkaSettings, *, codec: AvroCodec | None = None, role: str = "client") -> None:
        self.kafka = kafka
        self.topics = Topics(kafka.topic_prefix)
        self.codec = codec or codec_for(kafka)
        self.producer = AIOKafkaProducer(**producer_options(kafka, role))

    async def __aenter__(self) -> RequestPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, requests: Iterable[InferenceRequest], *, on_acked: Callable[[int], None] | None = None) -> list[str]:
        """Publish ``requests`` and wait until the broker has acknowledged every one;
        return their ids in order. ``on_acked(n)`` is told each time ``n`` more are
        acknowledged (a progress bar's ``update``)."""
        ids: list[str] = []
        window: list[asyncio.Future] = []
        previous: list[asyncio.Future] = []
        for request in requests:
            window.append(await self.producer.send(self.topics.requests, value=self.codec.encode(request), key=request.id.encode()))
            ids.append(request.id)
            if len(window) >= WINDOW:
                # Wait for the window before this one: the producer keeps sending meanwhile.
                await _acknowledged(previous, on_acked)
                previous, window = window, []
        await _acknowledged(previous, on_acked)
        await _acknowledged(window, on_acked)
        return ids

    async def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Publish bytes as they are (for tests and tools that bring their own encoding)."""
        await self.producer.send_and_wait(self.topics.requests, value=value, key=key)

    async def send_feedback(self, feedback: Sequence[Feedback]) -> None:
        pending = [await self.producer.send(self.topics.feedback, value=self.codec.encode(item), key=item.request_id.encode()) for item in feedback]
        await asyncio.gather(*pending)


async def _acknowledged(window: list[asyncio.Future], on_acked: Callable[[int], None] | None) -> None:
    if window:
        await asyncio.gather(*window)
        if on_acked is not None:
            on_acked(len(window))


async def publish_feedback(kafka: KafkaSettings, feedback: Sequence[Feedback], *, codec: AvroCodec | None = None) -> None:
    """Publish ``feedback`` and wait for the broker's acknowledgement of each."""
    async with RequestPublisher(kafka, codec=codec, role="feedback") as publisher:
        await publisher.send_feedback(feedback)
