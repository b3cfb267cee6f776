"""ModelWorker's flow control: the rate-limit share follows the partitions a replica
owns, a replica fetches no more than it has room for and pauses its partitions only
when it stays saturated, revoked partitions finish and commit."""

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
        self.polls: list[tuple[int, int | None, bool]] = []  # (timeout_ms, max_records, anything paused)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions)) if topic == self.topic else set()

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.polls.append((timeout_ms, max_records, bool(self.paused)))
        return {}

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


def saturated_worker(settings: Settings, poll_timeout_ms: int = 200) -> tuple[ModelWorker, FakeConsumer, TopicPartition]:
    """A replica that holds 4 requests of the 4 it may: room for a fetch is 2 (half)."""
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"poll_timeout_ms": poll_timeout_ms})})
    worker = ModelWorker(settings, "a")
    worker.max_in_flight, worker._chunk = 4, 2
    consumer = FakeConsumer(worker.topic, 2, partitions(worker, 0, 1))
    tp = TopicPartition(worker.topic, 0)
    for offset in range(4):
        worker.offsets.start(tp, offset)
    return worker, consumer, tp


async def test_a_replica_fetches_no_more_than_its_room(settings):
    worker, consumer, tp = saturated_worker(settings)
    for offset in range(3):
        worker.offsets.finish(tp, offset)
    await worker._poll(consumer)
    assert consumer.polls == [(200, 3, False)]  # 3 free of 4, fewer than batch_size


async def test_a_saturated_replica_waits_for_room_without_pausing(settings):
    worker, consumer, tp = saturated_worker(settings, poll_timeout_ms=60_000)
    polling = asyncio.ensure_future(worker._poll(consumer))
    await asyncio.sleep(0)
    worker.offsets.finish(tp, 0)
    worker._wake_poll(polling)  # a request finished: room for 1, less than a fetch's worth
    await asyncio.sleep(0)
    assert not polling.done() and consumer.polls == []
    worker.offsets.finish(tp, 1)
    worker._wake_poll(polling)
    await polling
    assert consumer.polls == [(60_000, 2, False)]
    assert consumer.paused == set(), "saturated for a moment only: the prefetched records stay where they are"


async def test_a_replica_saturated_for_a_poll_interval_pauses_and_resumes_once_it_has_room(settings):
    worker, consumer, tp = saturated_worker(settings, poll_timeout_ms=1)
    assert await worker._poll(consumer) == {}
    assert consumer.paused == consumer.owned
    assert consumer.polls == [(0, None, True)], "paused, it still polls: a consumer that stops polling is put out of its group"
    worker.offsets.finish(tp, 0)
    await worker._poll(consumer)
    assert consumer.paused == consumer.owned, "room for 1 is not a fetch's worth: stay paused"
    worker.offsets.finish(tp, 1)
    await worker._poll(consumer)
    assert consumer.paused == set()
    assert consumer.polls[-1] == (1, 2, False)


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
