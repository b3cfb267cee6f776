"""ModelWorker's flow control: the rate-limit share follows the partitions a replica
owns, a saturated replica pauses its partitions, revoked partitions finish and commit."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka.structs import TopicPartition

from backend_fixtures import Script, make_backend, ok, write_settings
from turnout.consumers.ratelimit import RateLimitConfig, RateLimiter
from turnout.consumers.serving import Deployment
from turnout.consumers.worker import ModelWorker, _Rebalance
from turnout.schemas.settings import Settings, load_settings


class FakeConsumer:
    """What the worker's flow control uses of an AIOKafkaConsumer."""

    def __init__(self, topic: str, partitions: int, owned: set[TopicPartition]) -> None:
        self.topic, self.partitions, self.owned = topic, partitions, owned
        self.paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions)) if topic == self.topic else set()

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    for name in [n for n in os.environ if n.upper().startswith("TURNOUT_")]:
        monkeypatch.delenv(name)
    return load_settings(write_settings(tmp_path))


def deployment(settings: Settings, rpm: int | None = 600) -> Deployment:
    config = settings.fleet["a"]
    return Deployment("a", config, make_backend(Script(ok())), asyncio.Semaphore(4), limiter=RateLimiter(RateLimitConfig(rpm=rpm)))


def partitions(worker: ModelWorker, *numbers: int) -> set[TopicPartition]:
    return {TopicPartition(worker.topic, n) for n in numbers}


async def test_a_replica_takes_the_share_of_the_limit_its_partitions_carry(settings):
    worker, dep = ModelWorker(settings, "a"), deployment(settings)
    consumer = FakeConsumer(worker.topic, 3, partitions(worker, 0))
    listener = _Rebalance(worker, consumer, dep)
    await listener.on_partitions_assigned(partitions(worker, 0))
    assert dep.limiter.share == pytest.approx(1 / 3)
    await listener.on_partitions_assigned(partitions(worker, 0, 1, 2))  # the other replica left
    assert dep.limiter.share == 1.0
    await listener.on_partitions_assigned(set())
    assert dep.limiter.share == 0.0 and dep.limiter.would_wait_s(1) == float("inf")


async def test_a_saturated_replica_pauses_its_partitions_and_resumes_below_half(settings):
    worker, dep = ModelWorker(settings, "a"), deployment(settings)
    worker.max_in_flight = 4
    owned = partitions(worker, 0, 1)
    consumer = FakeConsumer(worker.topic, 2, owned)
    for offset in range(4):
        worker.offsets.start(TopicPartition(worker.topic, 0), offset)
    worker._apply_backpressure(consumer, dep)
    assert consumer.paused == owned
    worker.offsets.finish(TopicPartition(worker.topic, 0), 0)
    worker._apply_backpressure(consumer, dep)
    assert consumer.paused == owned, "3 in flight is still above half: stay paused"
    worker.offsets.finish(TopicPartition(worker.topic, 0), 1)
    worker._apply_backpressure(consumer, dep)
    assert consumer.paused == set()


async def test_revoked_partitions_finish_their_requests_and_commit_before_they_move(settings):
    worker, dep = ModelWorker(settings, "a"), deployment(settings)
    tp = TopicPartition(worker.topic, 1)
    consumer = FakeConsumer(worker.topic, 2, {tp})
    release = asyncio.Event()

    async def slow_request() -> None:
        await release.wait()
        worker.offsets.finish(tp, 7)

    worker.offsets.start(tp, 7)
    task = asyncio.create_task(slow_request())
    worker._tasks_of[tp] = {task}
    revoking = asyncio.create_task(_Rebalance(worker, consumer, dep).on_partitions_revoked({tp}))
    await asyncio.sleep(0.01)
    assert not revoking.done(), "the revocation waits for the request in flight"
    release.set()
    await revoking
    assert consumer.commits == [{tp: 8}]
    assert worker.offsets.in_flight() == 0
