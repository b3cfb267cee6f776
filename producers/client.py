"""The async SDK: publish requests and await their responses.

``TurnoutClient`` publishes to ``<prefix>.requests`` (through a ``RequestPublisher``) and
reads its reply topic: the shared ``<prefix>.responses`` by default, or a topic of its
own (``reply_topic=``), which every request it publishes then names, so the workers
answer there and the client reads only its own answers. A request that names a reply
topic of its own keeps it, and the client reads that topic too from then on. Responses
are matched to waiters by request id (``Correlator``)::

    async with TurnoutClient(settings.kafka) as client:
        answer = await client.request(new_request("Hello"), timeout_s=30)
        pending = await client.submit_many(requests, timeout_s=120)   # published and acknowledged
        answers = [await p for p in pending]                          # ResponseTimeout names the late ids
        async for item in client.stream(new_request("Hello")):        # TextDelta…, then the InferenceResponse
            ...

Ids are the caller's to choose: a deterministic one (``ids.derived_id``) makes a
re-publish of the same request idempotent. Services that consume a response topic in a
consumer group of their own use ``ResponseStream`` instead; plain scripts use
``SyncTurnoutClient``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer

from turnout.schemas.kafka import consumer_options
from turnout.schemas.models import ChatMessage, Feedback, InferenceRequest, InferenceResponse
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import KafkaSettings

from .correlation import Correlator, PendingResponse, ResponseTimeout
from .publisher import RequestPublisher, publish_feedback
from .topic_admin import ensure_topic
from .streaming import ReplyStreams, TextDelta, follow, read_reply

__all__ = ["ResponseTimeout", "TurnoutClient", "new_embedding_request", "new_request", "publish_feedback"]

log = logging.getLogger(__name__)


def new_request(prompt: str, tenant: str = "default", *, system: str | None = None, **fields: object) -> InferenceRequest:
    """A request for one user prompt; its id is ``fields["id"]`` or a fresh uuid4 hex."""
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [ChatMessage(role="user", content=prompt)]
    return InferenceRequest(id=fields.pop("id", None) or uuid.uuid4().hex, tenant=tenant, messages=messages, **fields)  # type: ignore[arg-type]


def new_embedding_request(texts: Iterable[str], tenant: str = "default", **fields: object) -> InferenceRequest:
    """A request to embed ``texts``; its response's ``embeddings`` hold one vector per text, in order."""
    return InferenceRequest(id=fields.pop("id", None) or uuid.uuid4().hex, tenant=tenant, input=list(texts), **fields)  # type: ignore[arg-type]


class TurnoutClient:
    """Async client: ``async with TurnoutClient(kafka) as client: await client.request(r)``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        reply_topic: str | None = None,
        codec: AvroCodec | None = None,
        reply_partitions: int | None = None,
        reply_configs: dict[str, str] | None = None,
    ) -> None:
        """``reply_topic`` is created unless it exists, with ``reply_partitions`` (default:
        the installation's) and the topic ``reply_configs`` (e.g. ``retention.ms``)."""
        self.kafka = kafka
        self.codec = codec or codec_for(kafka)
        self.publisher = RequestPublisher(kafka, codec=self.codec)
        self.topics = self.publisher.topics
        self.reply_topic = reply_topic or self.topics.responses
        self._reply_partitions, self._reply_configs = reply_partitions, reply_configs
        self._correlator = Correlator()
        self._streams = ReplyStreams()
        self._readers: dict[str, tuple[AIOKafkaConsumer, asyncio.Task]] = {}  # reply topic -> its reader

    async def __aenter__(self) -> TurnoutClient:
        await self.publisher.__aenter__()
        await self._read(self.reply_topic)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for consumer, task in self._readers.values():
            task.cancel()
            await consumer.stop()
        await self.publisher.__aexit__(*exc)

    async def _read(self, topic: str) -> None:
        """Start reading ``topic`` from its end, unless this client already does; returns
        once the end is resolved, so that anything published after is seen. No group:
        every client sees every response on the topics it reads."""
        if topic in self._readers:
            return
        if topic != self.topics.responses:  # partitions known now, none assigned late
            own = topic == self.reply_topic  # a request's own reply topic gets the installation's defaults
            await ensure_topic(self.kafka, topic, partitions=self._reply_partitions if own else None, configs=self._reply_configs if own else None)
        consumer = AIOKafkaConsumer(topic, **{**consumer_options(self.kafka, "client", None), "auto_offset_reset": "latest"})
        await consumer.start()
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        self._readers[topic] = (consumer, asyncio.create_task(self._read_responses(consumer)))

    def _addressed(self, request: InferenceRequest) -> InferenceRequest:
        """``request`` with its reply topic: its own when it names one (a per-request reply
        topic, which this client then reads too), else this client's."""
        if request.reply_topic is not None or self.reply_topic == self.topics.responses:
            return request
        return request.model_copy(update={"reply_topic": self.reply_topic})

    async def publish(self, requests: Iterable[InferenceRequest]) -> list[str]:
        """Publish and wait for the broker's acknowledgement of each; return the ids.

        Each id is registered for correlation before it is sent, so a response that
        arrives at once is not missed: collect them with ``gather``.
        """
        return await self._publish(requests, expect=True)

    async def _publish(self, requests: Iterable[InferenceRequest], *, expect: bool) -> list[str]:
        """Publish ``requests`` addressed to their reply topics, read from now on; with
        ``expect``, their ids are registered for correlation first (``stream`` follows
        its request's replies itself and registers nothing)."""
        addressed = [self._addressed(request) for request in requests]
        for topic in dict.fromkeys(request.reply_topic or self.topics.responses for request in addressed):
            await self._read(topic)
        if expect:
            for request in addressed:
                self._correlator.expect(request.id)
        return await self.publisher.publish(addressed)

    async def submit(self, request: InferenceRequest, timeout_s: float = 60.0) -> PendingResponse:
        """Publish one request; ``await`` the result for its response."""
        return (await self.submit_many([request], timeout_s))[0]

    async def submit_many(self, requests: Iterable[InferenceRequest], timeout_s: float = 60.0) -> list[PendingResponse]:
        """Publish ``requests``; one awaitable response per request, in order."""
        ids = await self.publish(requests)
        return [self._correlator.pending(rid, timeout_s) for rid in ids]

    async def gather(self, request_ids: list[str], timeout_s: float) -> dict[str, InferenceResponse]:
        """Wait for the responses to published ids; raise ``ResponseTimeout`` naming the missing."""
        return await self._correlator.gather(request_ids, timeout_s)

    async def request(self, request: InferenceRequest, timeout_s: float = 60.0) -> InferenceResponse:
        return await (await self.submit(request, timeout_s))

    async def stream(self, request: InferenceRequest, timeout_s: float = 60.0) -> AsyncIterator[TextDelta | InferenceResponse]:
        """Publish ``request`` streamed (``stream = true``) and yield its answer as it is
        written: ``TextDelta``s, then the final ``InferenceResponse``, always last (see
        ``producers.streaming`` for what a ``restart`` means and what is guaranteed).
        ``ResponseTimeout`` when the response has not come within ``timeout_s``. A loop
        that may stop early should run in ``contextlib.aclosing(client.stream(...))``, so
        that the client stops following the request at once."""
        request = request.model_copy(update={"stream": True})
        with self._streams.open(request.id) as replies:
            await self._publish([request], expect=False)
            async for item in follow(request.id, replies, timeout_s):
                yield item

    def forget(self, request_ids: Iterable[str]) -> None:
        """Stop waiting for ``request_ids`` (their caller gave up: a timeout, a closed HTTP
        call): nothing is kept for them, and a response that comes later is dropped."""
        self._correlator.forget(request_ids)

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
        await self.publisher.send_feedback([feedback])
        return feedback

    async def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Publish bytes as they are (for tests and tools that bring their own encoding)."""
        await self.publisher.publish_raw(value, key)

    async def submit_raw(self, value: bytes, key: bytes, timeout_s: float = 60.0) -> PendingResponse:
        """Publish bytes as they are, keyed by a request id; ``await`` the result for the
        response to that id. The router answers a message it cannot decode by its key, so
        this also tells a tool what became of bytes that were not a request. Only a
        response on the shared responses topic (or this client's) reaches it."""
        pending = self._correlator.pending(key.decode(), timeout_s)  # registered before publishing
        await self.publisher.publish_raw(value, key)
        return pending

    async def _read_responses(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            try:
                reply = read_reply(self.codec, record.value or b"")  # a response, or a chunk of a streamed one
            except DecodeError as exc:
                log.debug("skipping a record on %s that is not a response: %s", record.topic, exc)
                continue  # not ours to judge: the reply topic may carry other writers
            self._streams.deliver(reply)
            if isinstance(reply, InferenceResponse):
                self._correlator.resolve(reply)  # the first answer wins; a redelivered duplicate is ignored
