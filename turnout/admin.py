"""Topic administration: create every topic an installation needs, idempotently."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from turnout.schemas.kafka import client_options
from turnout.schemas.settings import Settings


def required_topics(settings: Settings) -> list[str]:
    topics = settings.topics
    return topics.shared() + [topics.model(model_id) for model_id in sorted(settings.fleet)]


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created (existing ones are left alone)."""
    kafka = settings.kafka
    compacted = settings.topics.compacted()
    admin = AIOKafkaAdminClient(**client_options(kafka, "admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in required_topics(settings) if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name,
                    num_partitions=kafka.partitions,
                    replication_factor=kafka.replication_factor,
                    topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
                )
                for name in missing
            ]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created them between our listing and our request
        return missing
    finally:
        await admin.close()
