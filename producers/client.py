"""The publishing SDK: put requests on ``<prefix>.requests`` and await their responses,
and put quality scores about the answers on ``<prefix>.feedback``.

``TurnoutClient`` keys each request by its id (so one request's redeliveries stay on one
partition and in order) and correlates responses by id on the reply topic it reads.
Feedback is keyed by the id of the request it judges; ``publish_feedback`` sends it
without a client (no reply topic to read), for jobs and the ``turnout feedback`` command.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from turnout.schemas.kafka import consumer_options, producer_options
from turnout.schemas.models import ChatMessage, Feedback, InferenceRequest, InferenceResponse
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import KafkaSettings
from turnout.schemas.topics import Topics


class ResponseTimeout(TimeoutError):
    def __init__(self, missing: list[str], timeout_s: float) -> None:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} request(s) got no response within {timeout_s:g}s: {shown}")
        self.missing = missing


def new_request(prompt: str, tenant: str = "default", *, system: str | None = None, **fields: object) -> InferenceRequest:
    """A request with a fresh time-sortable-enough id (uuid4 hex) for one user prompt."""
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [ChatMessage(role="user", content=prompt)]
    return InferenceRequest(id=fields.pop("id", None) or uuid.uuid4().hex, tenant=tenant, messages=messages, **fields)  # type: ignore[arg-type]


def new_embedding_request(texts: Iterable[str], tenant: str = "default", **fields: object) -> InferenceRequest:
    """A request to embed ``texts``; its response's ``embeddings`` hold one vector per text, in order."""
    return InferenceRequest(id=fields.pop("id", None) or uuid.uuid4().hex, tenant=tenant, input=list(texts), **fields)  # type: ignore[arg-type]


async def publish_feedback(kafka: KafkaSettings, feedback: Sequence[Feedback], *, codec: AvroCodec | None = None) -> None:
    """Publish ``feedback`` and wait for the broker's acknowledgement of each."""
    producer = AIOKafkaProducer(**producer_options(kafka, "feedback"))
    await producer.start()
    try:
        await _send_feedback(producer, codec or codec_for(kafka), Topics(kafka.topic_prefix).feedback, feedback)
    finally:
        await producer.stop()


async def _send_feedback(producer: AIOKafkaProducer, codec: AvroCodec, topic: str, feedback: Sequence[Feedback]) -> None:
    pending = [await producer.send(topic, value=codec.encode(item), key=item.request_id.encode()) for item in feedback]
    await asyncio.gather(*pending)


class TurnoutClient:
    """Async client: ``async with TurnoutClient(kafka) as client: await client.request(r)``."""

    def __init__(self, kafka: KafkaSettings, *, reply_topic: str | None = None, codec: AvroCodec | None = None) -> None:
        self.kafka = kafka
        self.topics = Topics(kafka.topic_prefix)
        self.reply_topic = reply_topic or self.topics.responses
        self.codec = codec or codec_for(kafka)
        self._producer = AIOKafkaProducer(**producer_options(kafka, "client"))
        # No group: every client sees every response on its reply topic, from the end.
        self._consumer = AIOKafkaConsumer(self.reply_topic, **{**consumer_options(kafka, "client", None), "auto_offset_reset": "latest"})
        self._waiting: dict[str, asyncio.Future[InferenceResponse]] = {}
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> TurnoutClient:
        await self._producer.start()
        await self._consumer.start()
        await self._consumer.seek_to_end()
        for tp in self._consumer.assignment():  # resolve the end now, before anything is published
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_responses())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader:
            self._reader.cancel()
        await self._consumer.stop()
        await self._producer.stop()

    async def publish(self, requests: Iterable[InferenceRequest]) -> list[str]:
        """Publish and wait for the broker's acknowledgement of each; return the ids.

        Each id is registered for correlation before it is sent, so a response that
        arrives at once is not missed: collect them with ``gather``.
        """
        pending, ids = [], []
        for request in requests:
            if request.reply_topic is None and self.reply_topic != self.topics.responses:
                request = request.model_copy(update={"reply_topic": self.reply_topic})
            self._expect(request.id)
            pending.append(await self._producer.send(self.topics.requests, value=self.codec.encode(request), key=request.id.encode()))
            ids.append(request.id)
        await asyncio.gather(*pending)
        return ids

    async def send_feedback(
        self, request_id: str, *, tenant: str, metric: str, score: float, comment: str = "", source: str = "", feedback_id: str = ""
    ) -> Feedback:
        """Publish a quality score about an answered request and return the record sent.

        Without ``feedback_id``, it is derived from the request, the metric and the source:
        sending the same judgement again is stored once; a second opinion needs another
        source (or its own id)."""
        feedback = Feedback(
            feedback_id=feedback_id, request_id=request_id, tenant=tenant, metric=metric, score=score, comment=comment, source=source
        )
        await _send_feedback(self._producer, self.codec, self.topics.feedback, [feedback])
        return feedback

    async def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Publish bytes as they are (for tests and tools that bring their own encoding)."""
        await self._producer.send_and_wait(self.topics.requests, value=value, key=key)

    def _expect(self, request_id: str) -> asyncio.Future[InferenceResponse]:
        future = self._waiting.get(request_id)
        if future is None:
            future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        return future

    async def gather(self, request_ids: list[str], timeout_s: float) -> dict[str, InferenceResponse]:
        """Wait for the responses to published ids; raise ``ResponseTimeout`` naming the missing."""
        futures = {rid: self._expect(rid) for rid in request_ids}
        done, _ = await asyncio.wait(futures.values(), timeout=timeout_s) if futures else (set(), set())
        missing = [rid for rid, fut in futures.items() if fut not in done]
        if missing:
            raise ResponseTimeout(missing, timeout_s)
        for rid in request_ids:
            self._waiting.pop(rid, None)
        return {rid: fut.result() for rid, fut in futures.items()}

    async def request(self, request: InferenceRequest, timeout_s: float = 60.0) -> InferenceResponse:
        await self.publish([request])
        return (await self.gather([request.id], timeout_s))[request.id]

    async def _read_responses(self) -> None:
        async for record in self._consumer:
            try:
                response = self.codec.decode(record.value or b"", InferenceResponse)
            except DecodeError:
                continue  # not ours to judge: the reply topic may carry other writers
            future = self._waiting.get(response.id)
            if future is not None and not future.done():
                future.set_result(response)  # the first answer wins; a redelivered duplicate is ignored
