"""How every Turnout process connects to Kafka, and the dead-letter conventions.

The connection options live here, beside the topic names, because the router, the
workers, the sink and the client SDK must all agree on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from .settings import KafkaSettings

# Dead-letter headers, after Kafka Connect's ``__connect.errors.*`` convention.
DLQ_REASON = "turnout.error.reason"
DLQ_STAGE = "turnout.error.stage"
DLQ_TOPIC = "turnout.error.topic"
DLQ_PARTITION = "turnout.error.partition"
DLQ_OFFSET = "turnout.error.offset"


def client_options(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    """Options shared by aiokafka producers, consumers and admin clients."""
    return {"bootstrap_servers": kafka.bootstrap_servers, "client_id": f"{kafka.client_id}-{role}"}


def consumer_options(kafka: KafkaSettings, role: str, group_id: str | None) -> dict[str, Any]:
    """A consumer in ``group_id`` that commits explicitly, after its outputs are acknowledged."""
    options = {
        **client_options(kafka, role),
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
    }
    if group_id is not None:
        options |= {
            "group_id": group_id,
            "session_timeout_ms": kafka.session_timeout_ms,
            "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        }
    return options


def producer_options(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    # acks=all and no idempotence: Tansu does not implement InitProducerId, so Turnout
    # is at-least-once and every consumer deduplicates by request id.
    return {**client_options(kafka, role), "acks": "all", "linger_ms": 5, "compression_type": None if kafka.compression_type == "none" else kafka.compression_type}


async def start_producer(producer: AIOKafkaProducer, topics: Iterable[str]) -> None:
    """Start ``producer`` tracking the metadata of ``topics``, the ones it is known to send to.

    Why: an aiokafka client that tracks no topic asks the broker for every topic's metadata,
    until the first send to a topic it has not seen (a caller's reply topic created after
    the process started). From then on it asks only for the topics it tracks, that one
    alone, and each answer replaces what it knew: a batch still waiting for another topic
    (a dead-letter record sent in the same breath) has no leader any more and fails with
    ``NotLeaderForPartitionError``, and the router stopped on it. Tracking every known
    topic from the start keeps them in every metadata answer; new reply topics are added
    to the set as they come."""
    await producer.start()
    await producer.client.set_topics(sorted(set(topics)))


def dlq_headers(reason: str, stage: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason.encode()[:4000]),
        (DLQ_STAGE, stage.encode()),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]
