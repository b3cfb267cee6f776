"""Topic administration: create every topic an installation needs, idempotently."""

from __future__ import annotations

import asyncio

from aiokafka.admin import NewTopic
from aiokafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError

from turnout.producers.topic_admin import admin_client, create_missing
from turnout.schemas.settings import Settings


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Per-topic broker settings: compaction where the latest value per key is the state
    (policies, spend), and for the redacted prompt text a retention no longer than the
    store keeps it (``prompts.ttl_days``), so the broker does not outlive the table's TTL."""
    if name in settings.topics.compacted():
        return {"cleanup.policy": "compact"}
    if name == settings.topics.prompts:
        return {"retention.ms": str(settings.prompts.ttl_days * 86_400_000)}
    return {}


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created (existing ones are left alone)."""
    kafka = settings.kafka
    single = settings.topics.single_partition()
    topics = [
        NewTopic(
            name,
            num_partitions=1 if name in single else kafka.partitions,
            replication_factor=kafka.replication_factor,
            topic_configs=topic_configs(settings, name),
        )
        for name in settings.required_topics()
    ]
    async with admin_client(kafka) as admin:
        return await create_missing(admin, topics)


async def wait_for_groups(settings: Settings, group_ids: list[str], timeout_s: float, min_members: int = 1) -> None:
    """Wait until every consumer group is Stable with at least one member: the stack's
    consumers have their partitions and what is published now is served at once."""
    async with admin_client(settings.kafka) as admin:
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = set(group_ids)
        while pending:
            for group in sorted(pending):  # one per request: Tansu 0.6 garbles a multi-group answer
                try:
                    responses = await admin.describe_consumer_groups([group])
                except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
                    continue  # Apache Kafka creates __consumer_offsets on the first group's request
                for response in responses:
                    for _error, group_id, state, _ptype, _protocol, members, *_ in response.groups:
                        if state == "Stable" and len(members) >= min_members:
                            pending.discard(group_id)
            if pending and asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"consumer groups not ready after {timeout_s:g}s: {', '.join(sorted(pending))}")
            await asyncio.sleep(0.2)
