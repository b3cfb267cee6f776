"""The router's view of the policy in force, kept current from ``<prefix>.policies``.

Every router instance reads the whole (single-partition, compacted) topic, so all of
them apply the same version. A version that does not fit this router's fleet (a model
it does not know) is refused with a log line and the previous version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from turnout.schemas.kafka import consumer_options
from turnout.schemas.policy import Policy, PolicyLog
from turnout.schemas.settings import Settings

log = logging.getLogger("turnout.router.policy")


class PolicyStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy: Policy = settings.policy
        self.log = PolicyLog()
        self.ready = asyncio.Event()
        self.refused: dict[str, list[str]] = {}  # version -> why it was not applied

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record in; switch versions when the active pointer moves to a valid one."""
        try:
            self.log.apply(key, value)
        except ValueError as exc:
            log.error("unreadable record %r on the policies topic: %s", key, exc)
            return
        candidate = self.log.active_policy()
        if candidate is None or candidate.version == self.policy.version:
            return
        problems = candidate.problems(set(self.settings.fleet))
        if problems:
            self.refused[candidate.version] = problems
            log.error("policy %s refused, %s keeps serving: %s", candidate.version, self.policy.version, "; ".join(problems))
            return
        log.info("policy %s now in force (was %s)", candidate.version, self.policy.version)
        self.policy = candidate

    async def run(self) -> None:
        topic = self.settings.topics.policies
        consumer = AIOKafkaConsumer(**consumer_options(self.settings.kafka, "router-policies", None))
        await consumer.start()
        try:
            await consumer.topics()  # load metadata, so the topic's partitions are known
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.ready.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                    self.ready.set()  # caught up: the version in force is known
        finally:
            await consumer.stop()
