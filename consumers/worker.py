"""A model worker: consume ``<prefix>.model.<id>`` continuously, serve, publish, commit.

Requests are served concurrently as they arrive (up to the deployment's concurrency in
the backend, up to ``max_in_flight`` held in the replica): a replica fetches no more
records than it has room for, and one that stays saturated pauses its partitions
instead of buffering without bound (``_poll``). Requests finish out of order, so a
partition's offset is committed only up to its oldest request still in flight
(``OffsetTracker``), and only after everything that request produced is acknowledged
by the broker: a crash replays unfinished requests, and replayed ones already answered
are skipped (``AnsweredIds``, which a replica also fills from the events topic when it
gets partitions, ``answered_seed``, so a request answered by a replica that crashed
before committing is not paid twice).

Replicas of a model share the consumer group ``turnout-worker-<id>``: Kafka spreads the
partitions, and each replica takes the share of the provider's rate limits that matches
the share of partitions it owns, updated on every rebalance. Each replica publishes its
circuit breaker's state and its backlog on the compacted health topic, at once when
the breaker changes state, so routers stop planning onto an open breaker.

A request that asks for its answer streamed has its chunks published on its reply topic
while it is served (``_ChunkPublisher``, keyed by its id like its response), all handed
to the producer before its final response is: on one partition, the response comes last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
from collections import deque

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from turnout.schemas.fleet import EMBEDDINGS
from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options, start_producer, writable_topics
from turnout.schemas.events import final_event
from turnout.schemas.models import DeploymentHealth, InferenceResponse, ResponseChunk, RoutedRequest, RoutingEvent
from turnout.schemas.reply_topics import ReplyTopics, unknown_reply_topic
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .answered_seed import FINAL_KINDS, answered_since, dedup_key
from .backends import make_backend
from .breaker import CircuitBreaker, Transition
from .cache import ResponseCache
from .flow import AnsweredIds
from .offsets import OffsetTracker
from .ratelimit import RateLimitConfig, RateLimiter
from .serving import DeadLetter, Deployment, Outcome, Publish, refuse_on_shared_topic, serve, streams
from .structured import StructuredChecker

log = logging.getLogger("turnout.worker")
STAGE = "worker"


def group_id(model_id: str) -> str:
    return f"turnout-worker-{model_id}"


def build_deployment(settings: Settings, model_id: str) -> Deployment:
    config = settings.fleet[model_id]
    worker = settings.worker
    return Deployment(
        model_id,
        config,
        make_backend(model_id, config, settings.backend_url(model_id)),
        asyncio.Semaphore(config.concurrency),
        limiter=RateLimiter(RateLimitConfig(rpm=config.rpm, tpm=config.tpm)),
        breaker=CircuitBreaker(model_id, worker.breaker),
        cache=ResponseCache(worker.cache) if worker.cache_enabled else None,
        checker=StructuredChecker(worker.structured),
        embedding_batch_max=worker.embedding_batch_max,
        embedding_batch_wait_ms=worker.embedding_batch_wait_ms,
    )


def default_max_in_flight(settings: Settings, model_id: str) -> int:
    """4 x the deployment's concurrency; for an embedding model, enough one-text requests
    to fill every concurrent batch call (concurrency x ``embedding_batch_max``)."""
    config = settings.fleet[model_id]
    if EMBEDDINGS in config.capabilities:
        return config.concurrency * settings.worker.embedding_batch_max
    return 4 * config.concurrency


class ModelWorker:
    def __init__(self, settings: Settings, model_id: str, *, codec: AvroCodec | None = None) -> None:
        if model_id not in settings.fleet:
            raise ValueError(f"model {model_id!r} is not in the fleet ({', '.join(sorted(settings.fleet))})")
        self.settings = settings
        self.model_id = model_id
        self.topic = settings.topics.model(model_id)
        self.codec = codec or codec_for(settings.kafka)
        self.answered = AnsweredIds(settings.worker.dedup_capacity)  # by this replica
        self.finished_before = AnsweredIds(settings.worker.dedup_capacity)  # a final event, read back on getting partitions
        self.responded_before = AnsweredIds(settings.worker.dedup_capacity)  # a response on the shared topic, read back likewise
        self.rng = random.Random()
        self.replica = f"{socket.gethostname()}-{os.getpid()}"
        self.max_in_flight = settings.worker.max_in_flight or default_max_in_flight(settings, model_id)
        self.offsets = OffsetTracker()
        self._in_flight: set[str] = set()
        self._reading_back: dict[int, asyncio.Event] = {}  # partition -> its answered requests being read back
        self._unrecorded: dict[str, InferenceResponse] = {}  # answered without a final event (see answered_seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tasks_of: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._health_now = asyncio.Event()
        self._paused = False
        self._chunk = min(settings.worker.batch_size, max(1, self.max_in_flight // 2))  # room worth a fetch
        self._room_waiter: asyncio.Future[None] | None = None
        self.reply_topics: ReplyTopics | None = None  # set once the producer can ask the broker

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        kafka = self.settings.kafka
        deployment = build_deployment(self.settings, self.model_id)
        assert deployment.breaker is not None
        deployment.breaker = CircuitBreaker(self.model_id, deployment.breaker.config, on_change=self._breaker_changed)
        consumer = AIOKafkaConsumer(**consumer_options(kafka, f"worker-{self.model_id}", group_id(self.model_id)))
        consumer.subscribe([self.topic], listener=_Rebalance(self, consumer, deployment))
        producer = AIOKafkaProducer(**producer_options(kafka, f"worker-{self.model_id}"))
        await start_producer(producer, self.settings.required_topics())
        self.reply_topics = ReplyTopics(lambda names: writable_topics(producer.client, names), known=self.settings.required_topics())
        await consumer.start()
        log.info("worker %s consuming %s (at most %d requests in flight)", self.model_id, self.topic, self.max_in_flight)
        reporter = asyncio.create_task(self._report_health(consumer, producer, deployment))
        try:
            while not self._stopping.is_set() and self._failure is None:
                batches = await self._poll(consumer)
                for records in batches.values():
                    for record in records:
                        self._start(record, deployment, producer)
                await self.commit(consumer)
            if self._tasks:
                await asyncio.wait(self._tasks)  # drain: finish what was started, then commit it
            await self.commit(consumer)
            if self._failure is not None:
                raise self._failure
        finally:
            reporter.cancel()
            for task in self._tasks:
                task.cancel()
            await producer.send_and_wait(self.settings.topics.health, value=None, key=self._health_key())  # gone: forget me
            await consumer.stop()
            await producer.stop()
            await deployment.backend.aclose()

    # -- the requests ----------------------------------------------------------------------------
    def _start(self, record: ConsumerRecord, deployment: Deployment, producer: AIOKafkaProducer) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self.offsets.start(tp, record.offset)
        task = asyncio.create_task(self._serve_and_publish(record, tp, deployment, producer))
        self._tasks.add(task)
        self._tasks_of.setdefault(tp, set()).add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._tasks_of[tp].discard)
        task.add_done_callback(self._wake_poll)

    async def remember_answered(self, partitions: set[int], partition_count: int) -> None:
        """Before serving newly assigned partitions, remember the requests already answered
        on them (``answered_seed``): a replica that crashed after answering and before
        committing hands them over again, and they must not be paid twice."""
        lookback_s = self.settings.worker.dedup_lookback_s
        if not partitions or lookback_s <= 0:
            return
        # aiokafka fetches for new partitions while this runs: their requests wait for it (``_handle``)
        reading = asyncio.Event()
        for partition in partitions:
            self._reading_back[partition] = reading
        try:
            seeded = await answered_since(self.settings, self.codec, partitions, partition_count, lookback_s)
        except KafkaError as exc:  # serving goes on; a redelivered answered request may be called again
            log.warning("could not read back the answered requests of partitions %s: %s", sorted(partitions), exc)
            return
        finally:
            reading.set()
            for partition in partitions:
                if self._reading_back.get(partition) is reading:
                    del self._reading_back[partition]
        for key in seeded.finished:
            self.finished_before.add(key)
        for request_id in seeded.responded:
            self.responded_before.add(request_id)
        self._unrecorded.update(seeded.unrecorded)
        while len(self._unrecorded) > self.settings.worker.dedup_capacity:  # bounded like the ids: oldest out
            del self._unrecorded[next(iter(self._unrecorded))]
        log.info(
            "worker %s remembers %d requests finished and %d responses in the last %gs on partitions %s",
            self.model_id, len(seeded.finished), len(seeded.responded), lookback_s, sorted(partitions),
        )

    def already_answered(self, slip: RoutedRequest) -> bool:
        """Whether ``slip``'s request was answered, by this replica or (read back from the
        topics) by another. A request answered on the shared responses topic counts as
        answered only when its response is there (its final event may outlive a lost
        response's replica only the other way round: see ``answered_seed``)."""
        key = dedup_key(slip.request.id, slip.shadow)
        if key in self.answered:
            return True
        on_shared_topic = not slip.shadow and slip.request.reply_topic in (None, self.settings.topics.responses)
        return slip.request.id in self.responded_before if on_shared_topic else key in self.finished_before

    async def finish_partitions(self, partitions: set[TopicPartition], timeout_s: float) -> None:
        """Let the requests of ``partitions`` finish (bounded), so that their new owner
        does not call the backend again for requests this replica is answering."""
        pending = set().union(*(self._tasks_of.pop(tp, set()) for tp in partitions)) if partitions else set()
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def _serve_and_publish(self, record: ConsumerRecord, tp: TopicPartition, deployment: Deployment, producer: AIOKafkaProducer) -> None:
        try:
            outcome = await self._handle(record, deployment, producer)
            first, then = _final_events_last(outcome)
            await asyncio.gather(*[await send for send in self._sends(producer, first)])
            if then.messages:  # a final event marks the request answered: only once its response is stored
                await asyncio.gather(*[await send for send in self._sends(producer, then)])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a send the broker refused: stop before committing past it
            log.exception("publishing the outcome of %s[%s]@%s failed", record.topic, record.partition, record.offset)
            self._failure = self._failure or exc
            return
        self.offsets.finish(tp, record.offset)

    def _sends(self, producer: AIOKafkaProducer, outcome: Outcome) -> list:
        sends = [producer.send(m.topic, value=self.codec.encode(m.record), key=m.key.encode()) for m in outcome.messages]
        sends += [producer.send(d.topic, value=d.value, key=d.key, headers=d.headers) for d in outcome.dead_letters]
        return sends

    async def _handle(self, record: ConsumerRecord, deployment: Deployment, producer: AIOKafkaProducer | None = None) -> Outcome:
        """What serving ``record`` publishes; a streamed request's chunks go out through
        ``producer`` meanwhile (without one, its answer comes whole, as if not streamed)."""
        try:
            slip = self.codec.decode(record.value or b"", RoutedRequest)
        except DecodeError as exc:
            headers = dlq_headers(f"invalid_request: {exc}", STAGE, record.topic, record.partition, record.offset)
            return Outcome(dead_letters=[DeadLetter(self.settings.topics.dlq, record.key, record.value or b"", headers)])
        request_id = dedup_key(slip.request.id, slip.shadow)
        reading = self._reading_back.get(record.partition)
        if reading is not None:
            await reading.wait()
        if self.already_answered(slip) or request_id in self._in_flight:
            log.info("skipping %s: already answered or being served by this replica", request_id)
            return self._record_unrecorded(slip)
        reply_topic = slip.request.reply_topic
        if reply_topic and not slip.shadow and self.reply_topics is not None and not await self.reply_topics.check(reply_topic):
            self.answered.add(request_id)
            return self._refused_for_reply_topic(slip, record, deployment)
        self._in_flight.add(request_id)
        chunks = None
        if producer is not None and streams(slip):
            chunks = _ChunkPublisher(producer, self.codec, slip.request.reply_topic or self.settings.topics.responses)
        try:
            outcome = await serve(slip, deployment, self.settings.topics, self.settings.worker, self.rng, chunks.emit if chunks else None)
            if chunks is not None:
                await chunks.handed_over()  # the final response is published after every chunk
        finally:
            self._in_flight.discard(request_id)
        if outcome.answered:
            self.answered.add(request_id)
        return outcome

    def _refused_for_reply_topic(self, slip: RoutedRequest, record: ConsumerRecord, deployment: Deployment) -> Outcome:
        """A request whose reply topic cannot be written to (deleted after routing, or a
        slip a tool wrote): answered on the shared responses topic without a call, and
        dead-lettered, rather than served and then stuck on a send that never succeeds."""
        topics = self.settings.topics
        error = unknown_reply_topic(slip.request.reply_topic or "", topics.responses)
        log.warning("refusing %s: %s", slip.request.id, error.message)
        outcome = refuse_on_shared_topic(slip, deployment, topics, error)
        headers = dlq_headers(f"{error.code}: {error.message}", STAGE, record.topic, record.partition, record.offset)
        outcome.dead_letters.append(DeadLetter(topics.dlq, record.key, record.value or b"", headers))
        return outcome

    def _record_unrecorded(self, slip: RoutedRequest) -> Outcome:
        """The final event of a request answered by a replica that died before recording
        it (read back with its response), so that analytics count every answer once."""
        response = None if slip.shadow else self._unrecorded.pop(slip.request.id, None)
        if response is None:
            return Outcome()
        event = final_event(slip, response, self.settings.fleet[self.model_id].region)
        return Outcome(messages=[Publish(self.settings.topics.events, slip.request.id, event)])

    # -- flow control -----------------------------------------------------------------------------
    def room(self) -> int:
        """Requests this replica may still take before it holds ``max_in_flight`` (those
        queued for the rate limit or the concurrency slots are held too)."""
        return self.max_in_flight - self.offsets.in_flight()

    async def _poll(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The next records to serve: no more than the replica has room for.

        With room for a fetch's worth (``_chunk``), it takes up to that room. Saturated,
        it waits up to a poll interval for requests to finish, leaving the records that
        aiokafka prefetched where they are. Only a replica still saturated then pauses its
        partitions and polls them (nothing comes back), so that it stays in its group (a
        consumer that stops polling for ``max_poll_interval_ms`` is put out) and the
        rebalance listener keeps new partitions paused too. Pausing at once, as the worker
        did, threw the prefetched records away (aiokafka drops a paused partition's
        buffer) and each resume fetched them again, a fetch that Tansu holds for
        ``fetch_max_wait_ms``: four times a second at full speed in the benchmark.
        """
        worker = self.settings.worker
        if self.room() < self._chunk and not await self._room_freed(worker.poll_timeout_ms / 1000):
            if not self._paused:
                consumer.pause(*consumer.assignment())
                self._paused = True
                log.info("worker %s saturated (%d in flight): partitions paused", self.model_id, self.offsets.in_flight())
            return await consumer.getmany(timeout_ms=0)
        if self._paused:
            consumer.resume(*consumer.assignment())
            self._paused = False
        return await consumer.getmany(timeout_ms=worker.poll_timeout_ms, max_records=min(worker.batch_size, self.room()))

    async def _room_freed(self, timeout_s: float) -> bool:
        """Wait until there is room for a fetch's worth again; ``False`` after ``timeout_s``.
        One future per wait, resolved by the request that frees the room (``_wake_poll``)."""
        self._room_waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._room_waiter, timeout_s)
        except TimeoutError:
            return False
        finally:
            self._room_waiter = None
        return True

    def _wake_poll(self, _: asyncio.Task[None]) -> None:
        waiter = self._room_waiter
        if waiter is not None and not waiter.done() and self.room() >= self._chunk:
            waiter.set_result(None)

    async def commit(self, consumer: AIOKafkaConsumer) -> None:
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self.offsets.committable().items() if tp in owned}
        if not offsets:
            return
        await consumer.commit(offsets)
        self.offsets.committed(offsets)

    # -- health -----------------------------------------------------------------------------------
    def _health_key(self) -> bytes:
        return f"{self.model_id}/{self.replica}".encode()

    def _breaker_changed(self, transition: Transition) -> None:
        log.warning("breaker of %s: %s -> %s (%s)", transition.deployment, transition.old, transition.new, transition.reason)
        self._health_now.set()

    async def _report_health(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, deployment: Deployment) -> None:
        """Tell the routers this replica's breaker state and how much waits on its
        partitions: every ``health_interval_s``, and at once when the breaker moves."""
        assert deployment.breaker is not None
        while True:
            backlog = self.offsets.in_flight()
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    backlog += max(0, highwater - await consumer.position(tp))
            state = deployment.breaker.snapshot().state  # also moves open -> half_open when its time is up
            report = DeploymentHealth(model=self.model_id, replica=self.replica, breaker=state, backlog=backlog)
            try:
                await producer.send(self.settings.topics.health, value=self.codec.encode(report), key=self._health_key())
            except Exception as exc:  # reporting must never stop serving
                log.warning("health report failed: %s", exc)
            self._health_now.clear()
            try:
                await asyncio.wait_for(self._health_now.wait(), timeout=self.settings.worker.health_interval_s)
            except TimeoutError:
                pass


class _ChunkPublisher:
    """A streamed request's chunks to its reply topic, keyed by its id, in the order they
    were written, without making the backend call wait: ``emit`` queues, one task hands
    the queue to the producer. A chunk the broker refuses is logged and lost (the final
    response, published after them all, is the whole answer), never a reason to stop."""

    def __init__(self, producer: AIOKafkaProducer, codec: AvroCodec, topic: str) -> None:
        self._producer, self._codec, self._topic = producer, codec, topic
        self._queue: deque[ResponseChunk] = deque()
        self._pump: asyncio.Task[None] | None = None

    def emit(self, chunk: ResponseChunk) -> None:
        self._queue.append(chunk)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._hand_over())

    async def handed_over(self) -> None:
        """Every chunk emitted so far is in the producer's queue: what is sent next lands after them."""
        while self._pump is not None and not self._pump.done():
            await self._pump

    async def _hand_over(self) -> None:
        while self._queue:
            chunk = self._queue.popleft()
            try:
                ack = await self._producer.send(self._topic, value=self._codec.encode(chunk), key=chunk.request_id.encode())
            except Exception as exc:
                log.warning("chunk %d of %s not published: %s", chunk.seq, chunk.request_id, exc)
                continue
            ack.add_done_callback(_log_refused)


def _log_refused(ack: asyncio.Future) -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("a streamed chunk was refused by the broker: %s", ack.exception())


def _final_events_last(outcome: Outcome) -> tuple[Outcome, Outcome]:
    """``outcome`` split in two: everything but the final routing event, then that event.
    A replica reads final events back as "answered" (``answered_seed``), so one must never
    be stored while the response it stands for might not be."""
    final, rest = [], []
    for message in outcome.messages:
        is_final = isinstance(message.record, RoutingEvent) and message.record.kind in FINAL_KINDS
        (final if is_final else rest).append(message)
    if not final:
        return outcome, Outcome()
    return Outcome(messages=rest, dead_letters=outcome.dead_letters, answered=outcome.answered), Outcome(messages=final)


class _Rebalance(ConsumerRebalanceListener):
    """Keeps the rate-limit share equal to the share of partitions owned; before
    partitions move to another replica, lets their requests finish (for at most half a
    session timeout) and commits them."""

    def __init__(self, worker: ModelWorker, consumer: AIOKafkaConsumer, deployment: Deployment) -> None:
        self.worker = worker
        self.consumer = consumer
        self.deployment = deployment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.finish_partitions(revoked, timeout_s=self.worker.settings.kafka.session_timeout_ms / 2000)
        try:
            await self.worker.commit(self.consumer)
        except Exception as exc:  # the new owner replays what was not committed
            log.warning("commit before a rebalance failed: %s", exc)
        self.worker.offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        total = len(self.consumer.partitions_for_topic(self.worker.topic) or ()) or len(assigned) or 1
        self.deployment.limiter.set_share(len(assigned), total)
        await self.worker.remember_answered({tp.partition for tp in assigned}, total)
        if self.worker._paused and assigned:
            self.consumer.pause(*assigned)  # a saturated replica stays paused on its new partitions too
        log.info("worker %s owns %d of %d partitions: %.0f%% of the rate limits", self.worker.model_id, len(assigned), total, 100 * len(assigned) / total)


def run_worker(settings: Settings, model_id: str) -> None:
    """Run one worker replica until SIGINT/SIGTERM."""

    async def main() -> None:
        worker = ModelWorker(settings, model_id)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
