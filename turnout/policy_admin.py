"""``turnout policy``: validate, publish and roll back policy versions on ``<prefix>.policies``.

Publishing writes the version's document, then moves the active pointer to it; every
router instance follows the pointer. Rolling back moves the pointer to the version in
force before. Nothing is published unless the version validates against the fleet.
"""

from __future__ import annotations

import getpass
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from turnout.schemas.kafka import consumer_options, partitions_of, producer_options
from turnout.schemas.policy import ACTIVE_KEY, ActivePointer, Policy, PolicyLog
from turnout.schemas.settings import Settings

HISTORY_LIMIT = 100


class PolicyError(RuntimeError):
    pass


async def read_log(settings: Settings) -> PolicyLog:
    """Everything on the policies topic, read from the beginning to its current end."""
    topic = settings.topics.policies
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka, "policy-admin", None))
    await consumer.start()
    log = PolicyLog()
    try:
        partitions = await partitions_of(settings.kafka, topic)
        if not partitions:
            raise PolicyError(f"topic {topic} does not exist: run `turnout topics create` first")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    log.apply(record.key, record.value)
    finally:
        await consumer.stop()
    return log


def current_version(settings: Settings, log: PolicyLog) -> Policy:
    return log.active_policy() or settings.policy


async def publish(settings: Settings, policy: Policy) -> ActivePointer:
    log = await read_log(settings)
    existing = log.versions.get(policy.version)
    if existing is not None and existing != policy:
        raise PolicyError(f"version {policy.version!r} was already published with other content: give this one a new version")
    in_force = current_version(settings, log)
    if in_force.version == policy.version:
        raise PolicyError(f"version {policy.version!r} is already in force")
    history = (log.active.history + [in_force.version]) if log.active else [in_force.version]
    records = [] if existing else [(policy.version, policy)]
    if in_force.version not in log.versions:  # keep the configured version, so it can be rolled back to
        records.insert(0, (in_force.version, in_force))
    pointer = ActivePointer(version=policy.version, history=history[-HISTORY_LIMIT:], published_at=_now(), by=_who())
    await _write(settings, [(name, doc.model_dump_json().encode()) for name, doc in records] + [(ACTIVE_KEY, pointer.model_dump_json().encode())])
    return pointer


async def rollback(settings: Settings) -> ActivePointer:
    log = await read_log(settings)
    if log.active is None or not log.active.history:
        raise PolicyError("no earlier version to roll back to")
    *older, previous = log.active.history
    if previous not in log.versions:
        raise PolicyError(f"version {previous!r} is not on the policies topic any more")
    pointer = ActivePointer(version=previous, history=older, published_at=_now(), by=_who())
    await _write(settings, [(ACTIVE_KEY, pointer.model_dump_json().encode())])
    return pointer


async def _write(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(**producer_options(settings.kafka, "policy-admin"))
    await producer.start()
    try:
        for key, value in records:  # in order, one partition: a version lands before its pointer
            await producer.send_and_wait(settings.topics.policies, value=value, key=key.encode(), partition=0)
    finally:
        await producer.stop()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
