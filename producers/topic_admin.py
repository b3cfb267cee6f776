"""Creating topics and asking about them. ``create_missing`` is the one way topics are
made: ``turnout topics create`` makes an installation's with it, and the SDK the topics
it owns (a batch job's reply topic, a client's or a gateway's own reply topic) through
``ensure_topic``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from turnout.schemas.kafka import client_options
from turnout.schemas.settings import KafkaSettings


@contextlib.asynccontextmanager
async def admin_client(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**client_options(kafka, "admin"))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_missing(admin: AIOKafkaAdminClient, topics: Sequence[NewTopic]) -> list[str]:
    """Create those of ``topics`` that do not exist, in one request; the names that were
    missing (existing topics are left as they are)."""
    existing = set(await admin.list_topics())
    missing = [topic for topic in topics if topic.name not in existing]
    if missing:
        try:
            await admin.create_topics(list(missing))
        except TopicAlreadyExistsError:
            pass  # another process created them between our listing and our request
    return [topic.name for topic in missing]


async def ensure_topic(kafka: KafkaSettings, name: str, *, partitions: int | None = None, configs: dict[str, str] | None = None) -> list[int]:
    """Create ``name`` with ``partitions`` (default: the installation's), its replication
    and topic ``configs`` (e.g. ``retention.ms``) unless it exists; its partition numbers,
    so that a reader needs no second admin client to learn them."""
    count = partitions or kafka.partitions
    topic = NewTopic(name, num_partitions=count, replication_factor=kafka.replication_factor, topic_configs=configs or {})
    async with admin_client(kafka) as admin:
        if await create_missing(admin, [topic]):
            return list(range(count))
        return await _partitions(admin, name)


async def _partitions(admin: AIOKafkaAdminClient, name: str) -> list[int]:
    [described] = await admin.describe_topics([name])
    return sorted(p["partition"] for p in described["partitions"])
