"""The topics the SDK makes for itself (a batch job's reply topic) and what it asks
about them. Installation-wide topics are ``turnout topics create``'s job."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from turnout.schemas.kafka import client_options
from turnout.schemas.settings import KafkaSettings


async def ensure_topic(kafka: KafkaSettings, name: str, *, partitions: int | None = None, configs: dict[str, str] | None = None) -> bool:
    """Create ``name`` with ``partitions`` (default: the installation's), its replication
    and topic ``configs`` (e.g. ``retention.ms``) unless it exists; ``True`` when this call
    created it."""
    admin = AIOKafkaAdminClient(**client_options(kafka, "admin"))
    await admin.start()
    try:
        if name in set(await admin.list_topics()):
            return False
        try:
            topic = NewTopic(name, num_partitions=partitions or kafka.partitions, replication_factor=kafka.replication_factor, topic_configs=configs or {})
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            return False  # another process created it between our listing and our request
        return True
    finally:
        await admin.close()


async def partitions_of(kafka: KafkaSettings, name: str) -> list[int]:
    """The partition numbers of ``name``; empty when the topic does not exist (it is not
    created by asking)."""
    admin = AIOKafkaAdminClient(**client_options(kafka, "admin"))
    await admin.start()
    try:
        if name not in set(await admin.list_topics()):
            return []
        [described] = await admin.describe_topics([name])
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()
