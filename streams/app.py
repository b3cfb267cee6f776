"""The router as a faust-streaming app: requests topic in, model topics out.

The agent only moves bytes between topics and ``route_message``; routing itself lives
in pure functions. Messages are taken in batches (faust costs a few hundred µs per
event, so the hot path batches) and every send of a batch is awaited before the next
batch is taken, so faust commits an offset only after its outputs are on the broker:
at-least-once, made harmless downstream by request-id deduplication.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile

import faust

from turnout.schemas.kafka import dlq_headers
from turnout.schemas.models import RoutingEvent, utcnow
from turnout.schemas.serde import DecodeError, codec_for
from turnout.schemas.settings import Settings

from .handling import Outgoing, Source, route_message
from .engine import Context
from .follow import follow
from .health import HealthView
from .spend import SpendView, billable, month_of, spend_key
from .policy_store import PolicyStore
from .transport import RouterApp

log = logging.getLogger("turnout.router")


def create_app(settings: Settings) -> faust.App:
    app = RouterApp(
        settings.router.group_id,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        broker_client_id=f"{settings.kafka.client_id}-router",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_disable_leader=True,
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type="gzip",
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="turnout-router-"),
    )
    codec = codec_for(settings.kafka)
    policies = PolicyStore(settings)
    spend_view = SpendView()
    spend = app.Table(
        "spend",
        default=float,
        partitions=settings.kafka.partitions,
        changelog_topic=app.topic(
            settings.topics.spend,
            key_type=str,
            value_type=float,
            key_serializer="json",
            value_serializer="json",
            partitions=settings.kafka.partitions,
            compacting=True,
        ),
    )

    @app.task
    async def follow_policies() -> None:
        await policies.run()

    health_view = HealthView(codec)

    @app.task
    async def follow_health() -> None:
        await follow(settings, settings.topics.health, "router-health", health_view.apply, health_view.ready)

    @app.task
    async def follow_spend() -> None:
        await follow(settings, settings.topics.spend, "router-spend", spend_view.apply, spend_view.ready)

    @app.agent(app.topic(settings.topics.events, key_type=bytes, value_type=bytes), name="tally-spend")
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

    requests = app.topic(settings.topics.requests, key_type=bytes, value_type=bytes)

    @app.agent(requests, name="route")
    async def route(stream: faust.StreamT) -> None:
        await policies.ready.wait()  # never route on a stale version after a restart
        async for events in stream.take_events(settings.router.batch_size, within=settings.router.batch_window_s):
            now = utcnow()
            ctx = Context(
                fleet=settings.fleet, policy=policies.policy, health=health_view.snapshot(now), spend_usd=spend_view.totals(month_of(now))
            )
            pending = []
            for event in events:
                message = event.message
                try:
                    outgoing = route_message(
                        event.key, event.value, Source(message.topic, message.partition, message.offset), codec, settings, ctx
                    )
                except Exception:  # a bug must not stop the pipeline: log it and dead-letter the message
                    log.exception("routing failed for %s[%s]@%s", message.topic, message.partition, message.offset)
                    outgoing = [_internal_error(event.key, event.value, message, settings)]
                pending.extend([await _send(app, out) for out in outgoing])
            await asyncio.gather(*pending)

    return app


async def _send(app: faust.App, out: Outgoing) -> asyncio.Future:
    return await app.producer.send(out.topic, out.key, out.value, None, None, out.headers)


def _internal_error(key: bytes | None, value: bytes | None, message: object, settings: Settings) -> Outgoing:
    headers = dlq_headers(
        "internal_error: the router failed on this message; see its logs",
        "router",
        message.topic,  # type: ignore[attr-defined]
        message.partition,  # type: ignore[attr-defined]
        message.offset,  # type: ignore[attr-defined]
    )
    return Outgoing(settings.topics.dlq, key, value or b"", headers)


def run_router(settings: Settings, loglevel: str = "info") -> None:
    """Run the router until SIGINT/SIGTERM (faust's worker handles both)."""
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
