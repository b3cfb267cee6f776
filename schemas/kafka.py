"""How every Turnout process connects to Kafka, and the dead-letter conventions.

The connection options live here, beside the topic names, because the router, the
workers, the sink and the client SDK must all agree on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, LeaderNotAvailableError, for_code
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.transaction import InitProducerIdRequest

from .settings import KafkaSettings

# Dead-letter headers, after Kafka Connect's ``__connect.errors.*`` convention.
DLQ_REASON = "turnout.error.reason"
DLQ_STAGE = "turnout.error.stage"
DLQ_TOPIC = "turnout.error.topic"
DLQ_PARTITION = "turnout.error.partition"
DLQ_OFFSET = "turnout.error.offset"


def client_options(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    """Options shared by aiokafka producers, consumers and admin clients: where the
    brokers are, who is asking, and TLS and SASL when ``[kafka.security]`` asks for them."""
    return {"bootstrap_servers": kafka.bootstrap_servers, "client_id": f"{kafka.client_id}-{role}", **kafka.security.aiokafka_options()}


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
    """acks=all, and idempotent where the broker allows it (``kafka.idempotence``): a
    producer's retry after a lost acknowledgement then never writes a record twice.
    Turnout stays at-least-once across process crashes either way, and every consumer
    deduplicates by request id."""
    return {
        **client_options(kafka, role),
        "acks": "all",
        "enable_idempotence": idempotent_producers(kafka),
        "linger_ms": 5,
        "compression_type": None if kafka.compression_type == "none" else kafka.compression_type,
    }


_GRANTED: dict[str, bool] = {}
T = TypeVar("T")


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own in a thread and wait for it: callable from
    sync code and from inside a running loop alike (a producer built in a coroutine)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def idempotent_producers(kafka: KafkaSettings) -> bool:
    """``kafka.idempotence``, with ``auto`` settled by asking the brokers once per process
    and bootstrap list. Tansu lists InitProducerId among its APIs but answers it with an
    error, so only a granted producer id counts; a broker that cannot be reached yet
    counts as not granting one, and is asked again by the next producer."""
    if kafka.idempotence != "auto":
        return kafka.idempotence == "on"
    if kafka.bootstrap_servers not in _GRANTED:
        granted = run_in_own_loop(_broker_grants_producer_id(kafka))
        if granted is None:
            return False
        _GRANTED[kafka.bootstrap_servers] = granted
    return _GRANTED[kafka.bootstrap_servers]


async def _broker_grants_producer_id(kafka: KafkaSettings, patience_s: float = 20.0) -> bool | None:
    """True or False as a broker answers InitProducerId; None when none could be asked.
    A retriable refusal (a fresh cluster still loading its transaction coordinator) is
    asked again for up to ``patience_s``."""
    client = AIOKafkaClient(**client_options(kafka, "probe"), request_timeout_ms=5_000)
    deadline = asyncio.get_running_loop().time() + patience_s
    try:
        await client.bootstrap()
        brokers = client.cluster.brokers()
        if not brokers:
            return None
        node = next(iter(brokers)).nodeId
        while True:
            response = await client.send(node, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000))
            if response.error_code == 0:
                return True
            if not for_code(response.error_code).retriable or asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
    except (KafkaError, OSError, asyncio.TimeoutError):
        return None
    finally:
        await client.close()


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


async def partitions_of(kafka: KafkaSettings, *topics: str) -> list[TopicPartition]:
    """The partitions of ``topics`` (none of a topic that does not exist: asking does not
    create it), in one metadata request, for a consumer that assigns itself whole topics.

    Why not the consumer's own ``partitions_for_topic``: aiokafka bootstraps with a
    metadata request for no topic, which Apache Kafka answers with no topic at all (Tansu
    answers with every topic), so a consumer that subscribes to nothing knows no
    partitions; ``consumer.topics()`` fetches them but keeps only the names."""
    client = AIOKafkaClient(**client_options(kafka, "metadata"))
    await client.bootstrap()
    try:
        metadata = await client.fetch_all_metadata()
        return [TopicPartition(topic, partition) for topic in topics for partition in sorted(metadata.partitions_for_topic(topic) or ())]
    finally:
        await client.close()


async def writable_topics(client: AIOKafkaClient, topics: Iterable[str], settle_s: float = 1.0) -> set[str]:
    """Those of ``topics`` a producer can write to: they exist, or the broker creates them
    on first use. Metadata requests naming them: a broker with
    ``auto.create.topics.enable`` creates a topic it is asked about by name (Apache Kafka
    4 still answers "unknown topic" to that first request, then lists it a moment later:
    so a topic is asked about again for up to ``settle_s``); one without it answers
    "unknown topic" every time.

    Why not wait as the producer does: ``send`` to a topic that will never exist waits
    ``request_timeout_ms`` (40 s) for its metadata, then fails, and a router or worker
    replaying that message fails again, forever."""
    missing, found = set(topics), set()
    deadline = asyncio.get_running_loop().time() + settle_s
    delay = 0.05
    while missing:
        response = await client.send(client.get_random_node(), MetadataRequest(sorted(missing), allow_auto_topic_creation=True))
        answered = {entry[1] for entry in response.topics if entry[0] in (0, LeaderNotAvailableError.errno)}  # (error code, topic, ...)
        found |= answered
        missing -= answered
        if not missing or asyncio.get_running_loop().time() + delay > deadline:
            break
        await asyncio.sleep(delay)
        delay *= 2
    return found


def dlq_headers(reason: str, stage: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason.encode()[:4000]),
        (DLQ_STAGE, stage.encode()),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]
