"""streams/app.py: pipelined batches commit in order, only after their outputs are acknowledged."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from turnout.streams.app import _commit_when_sent

P0, P1 = TopicPartition("t.requests", 0), TopicPartition("t.requests", 1)


class RecordingConsumer:
    """Just what ``_commit_when_sent`` uses of an AIOKafkaConsumer: assignment and commit."""

    def __init__(self, owned: set[TopicPartition], fail: bool = False) -> None:
        self.owned = owned
        self.fail = fail
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise CommitFailedError("rebalanced")
        self.commits.append(offsets)


async def test_a_later_batch_never_commits_before_an_earlier_one() -> None:
    consumer = RecordingConsumer({P0})
    first_send, second_send = asyncio.get_running_loop().create_future(), asyncio.get_running_loop().create_future()
    first = asyncio.create_task(_commit_when_sent(consumer, [first_send], {P0: 10}, None))
    second = asyncio.create_task(_commit_when_sent(consumer, [second_send], {P0: 20}, first))
    second_send.set_result(None)  # the later batch is acknowledged first ...
    await asyncio.sleep(0.01)
    assert consumer.commits == []  # ... but waits for the earlier one
    first_send.set_result(None)
    await second
    assert consumer.commits == [{P0: 10}, {P0: 20}]


async def test_a_failed_send_commits_nothing_and_stops_the_chain() -> None:
    consumer = RecordingConsumer({P0})
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("broker said no"))
    first = asyncio.create_task(_commit_when_sent(consumer, [failed], {P0: 10}, None))
    ok = asyncio.get_running_loop().create_future()
    ok.set_result(None)
    second = asyncio.create_task(_commit_when_sent(consumer, [ok], {P0: 20}, first))
    with pytest.raises(RuntimeError):
        await second
    assert consumer.commits == []  # the batch is replayed after the restart


async def test_partitions_lost_in_a_rebalance_are_left_to_their_new_owner() -> None:
    consumer = RecordingConsumer({P1})
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    await _commit_when_sent(consumer, [done], {P0: 10, P1: 7}, None)
    assert consumer.commits == [{P1: 7}]
    lost = RecordingConsumer(set())
    await _commit_when_sent(lost, [done], {P0: 10}, None)
    assert lost.commits == []


async def test_a_commit_raced_by_a_rebalance_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    consumer = RecordingConsumer({P0}, fail=True)
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    await _commit_when_sent(consumer, [done], {P0: 10}, None)
    assert "rebalance" in caplog.text
