"""The router: one faust-streaming app that wires topics to the pure routing functions.

- ``route_requests`` (the hot path) reads ``<prefix>.requests`` in batches with a plain
  aiokafka consumer inside the app, routes each message with ``route_message``, sends
  every output of the batch, and commits the batch once all of them are acknowledged
  (pipelined: the next batch is routed meanwhile). faust's
  per-event machinery costs ~130 µs a message on these machines (a faust pass-through
  reached 40 % of a bare aiokafka one, bench/RESULTS.md), more than routing itself,
  so the hot path does not go through it.
- ``tally-spend`` (a faust agent with a table) adds each attempt's cost to the spend of
  its tenant; the table's changelog is ``<prefix>.spend``.
- Tasks follow the compacted policies, health and spend topics whole, so every router
  instance decides with the same policy version, health and spend.

At-least-once: outputs are acknowledged before their input's offset is committed, and
request-id deduplication downstream makes a replay harmless.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import tempfile

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError

from turnout.schemas.kafka import consumer_options, dlq_headers, producer_options, start_producer, writable_topics
from turnout.schemas.kafka_security import KafkaSecurity
from turnout.schemas.models import RoutingEvent, utcnow
from turnout.schemas.reply_topics import ReplyTopics
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import Settings

from .engine import Context
from .follow import follow
from .handling import Outgoing, Source, route_message
from .health import HealthView
from .policy_store import PolicyStore
from .signals import warm_up
from .spend import SpendView, billable, month_of, spend_key
from .transport import RouterApp

log = logging.getLogger("turnout.router")


def requests_group(settings: Settings) -> str:
    """The consumer group of the hot path (the faust app's own group reads the events)."""
    return f"{settings.router.group_id}-requests"


class RouterState:
    """What the router knows beyond its configuration, kept current by the app's tasks."""

    def __init__(self, settings: Settings, codec: AvroCodec) -> None:
        self.settings = settings
        self.policies = PolicyStore(settings)
        self.health = HealthView(codec)
        self.spend = SpendView()

    def context(self) -> Context:
        now = utcnow()
        return Context(
            fleet=self.settings.fleet,
            policy=self.policies.policy,
            health=self.health.snapshot(now),
            spend_usd=self.spend.totals(month_of(now)),
        )


def faust_credentials(security: KafkaSecurity) -> faust.types.auth.CredentialsT | None:
    """``[kafka.security]`` as faust takes it, for its own consumer, producer and topic admin."""
    if security.uses_sasl:
        assert security.password is not None
        return faust.SASLCredentials(
            username=security.username,
            password=security.password.get_secret_value(),
            ssl_context=security.ssl_context(),
            mechanism=security.sasl_mechanism,
        )
    if security.uses_tls:
        return faust.SSLCredentials(security.ssl_context())
    return None


def create_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    app = RouterApp(
        settings.router.group_id,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_client_id=f"{kafka.client_id}-router",
        broker_credentials=faust_credentials(kafka.security),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_disable_leader=True,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=None if kafka.compression_type == "none" else kafka.compression_type,
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="turnout-router-"),
    )
    codec = codec_for(kafka)
    state = RouterState(settings, codec)
    topics = settings.topics
    spend = app.Table(
        "spend",
        default=float,
        partitions=kafka.partitions,
        changelog_topic=app.topic(
            topics.spend, key_type=str, value_type=float, key_serializer="json", value_serializer="json", partitions=kafka.partitions, compacting=True
        ),
    )

    @app.task
    async def follow_policies() -> None:
        await state.policies.run()

    @app.task
    async def follow_health() -> None:
        await follow(settings, topics.health, "router-health", state.health.apply, state.health.ready)

    @app.task
    async def follow_spend() -> None:
        await follow(settings, topics.spend, "router-spend", state.spend.apply, state.spend.ready)

    @app.task
    async def route_requests() -> None:
        await RequestLoop(settings, codec, state).run()

    @app.agent(app.topic(topics.events, key_type=bytes, value_type=bytes), name="tally-spend")
    async def tally_spend(stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            for event in events:
                try:
                    routing_event = codec.decode(event.value or b"", RoutingEvent)
                except DecodeError:
                    continue  # the sink dead-letters what it cannot read
                if billable(routing_event):
                    key = spend_key(routing_event.tenant, month_of(routing_event.ts), event.message.partition)
                    stream._set_current_event(event)  # faust writes the changelog to this event's partition
                    spend[key] += routing_event.cost_usd

    return app


class RequestLoop:
    """Consume a batch, route it, hand its outputs to the producer, and commit its
    offsets once every output is acknowledged; repeat.

    Batches are pipelined: while the broker acknowledges batch N, batch N+1 is already
    being routed, so the router's one core never waits on a round trip. Commits stay in
    batch order (a commit waits for the one before it), so a crash replays from the
    oldest unacknowledged batch and nothing is skipped. At most
    :data:`MAX_BATCHES_IN_FLIGHT` batches await acknowledgement, bounding memory; a
    failed send ends the loop before its batch is committed (the app restarts and
    replays it).
    """

    MAX_BATCHES_IN_FLIGHT = 3

    def __init__(self, settings: Settings, codec: AvroCodec, state: RouterState) -> None:
        self.settings = settings
        self.codec = codec
        self.state = state

    async def run(self) -> None:
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            self.settings.topics.requests,
            **consumer_options(kafka, "router", requests_group(self.settings)),
            max_poll_records=self.settings.router.batch_size,
        )
        producer = AIOKafkaProducer(**producer_options(kafka, "router"))
        await asyncio.to_thread(warm_up)  # load the classifier, tokenizer and language model before the first request
        await start_producer(producer, self.settings.required_topics())
        await self.state.policies.ready.wait()  # never route on a stale version after a restart
        await consumer.start()
        reply_topics = ReplyTopics(lambda names: writable_topics(producer.client, names), known=self.settings.required_topics())
        in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        try:
            while True:
                while in_flight and in_flight[0].done():
                    in_flight.popleft().result()  # re-raises a failed send or commit
                if len(in_flight) >= self.MAX_BATCHES_IN_FLIGHT:
                    await in_flight.popleft()
                    continue
                batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.router.batch_size)
                if not batches:
                    continue
                ctx = self.state.context()
                sends, unsure = [], []
                for records in batches.values():
                    for record in records:
                        asked = reply_topics.asked_unsure
                        outs = self._route(record, ctx, reply_topics)
                        if reply_topics.asked_unsure > asked:
                            unsure.append(record)  # names a reply topic not seen yet: routed once the broker has said
                        else:
                            sends += await _send(producer, outs)
                if unsure:
                    await reply_topics.settle()  # one metadata request for the batch
                    for record in unsure:
                        sends += await _send(producer, self._route(record, ctx, reply_topics))
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                previous = in_flight[-1] if in_flight else None
                in_flight.append(asyncio.create_task(_commit_when_sent(consumer, sends, offsets, previous)))
        finally:
            for task in in_flight:
                task.cancel()
            await consumer.stop()
            await producer.stop()

    def _route(self, record, ctx: Context, reply_topics: ReplyTopics | None = None) -> list[Outgoing]:
        source = Source(record.topic, record.partition, record.offset)
        try:
            return route_message(record.key, record.value, source, self.codec, self.settings, ctx, reply_topics)
        except Exception:  # a bug must not stop the pipeline: log it and dead-letter the message
            log.exception("routing failed for %s[%s]@%s", record.topic, record.partition, record.offset)
            reason = "internal_error: the router failed on this message; see its logs"
            headers = dlq_headers(reason, "router", record.topic, record.partition, record.offset)
            return [Outgoing(self.settings.topics.dlq, record.key, record.value or b"", headers)]


async def _send(producer: AIOKafkaProducer, outs: list[Outgoing]) -> list[asyncio.Future]:
    """Hand ``outs`` to the producer; their acknowledgements, to await before committing."""
    return [await producer.send(out.topic, out.value, key=out.key, headers=out.headers or None) for out in outs]


async def _commit_when_sent(consumer: AIOKafkaConsumer, sends: list, offsets: dict, previous: asyncio.Task[None] | None) -> None:
    """Commit a batch's offsets once its outputs are acknowledged and the batch before it
    is committed (commits must not overtake each other)."""
    await asyncio.gather(*sends)
    if previous is not None:
        await previous
    owned = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not offsets:
        return  # every partition moved to another router during a rebalance: it replays them
    try:
        await consumer.commit(offsets)
    except CommitFailedError as exc:  # a rebalance raced the commit; the new owner replays (duplicates are deduplicated downstream)
        log.warning("commit of a routed batch failed during a rebalance: %s", exc)


def run_router(settings: Settings, loglevel: str = "info") -> None:
    """Run the router until SIGINT/SIGTERM (faust's worker handles both)."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
