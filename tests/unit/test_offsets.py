"""consumers/offsets.py: commits never pass an unfinished request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from turnout.consumers.offsets import OffsetTracker


def test_out_of_order_finishes_commit_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start("p0", offset)
    assert tracker.committable() == {"p0": 10}  # nothing finished: the lowest in flight
    tracker.committed({"p0": 10})
    tracker.finish("p0", 12)
    assert tracker.committable() == {}  # 10 still runs: 12's finish moves nothing
    tracker.finish("p0", 10)
    assert tracker.committable() == {"p0": 11}
    tracker.committed({"p0": 11})
    tracker.finish("p0", 11)
    assert tracker.committable() == {"p0": 13}  # all done: one past the highest


def test_partitions_are_independent_and_counted() -> None:
    tracker = OffsetTracker()
    tracker.start("p0", 5)
    tracker.start("p1", 7)
    tracker.finish("p1", 7)
    assert tracker.committable() == {"p0": 5, "p1": 8}
    assert tracker.in_flight() == 1 and tracker.in_flight("p0") == 1 and tracker.in_flight("p1") == 0


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.start("p0", 1)
    tracker.forget({"p0"})
    assert tracker.committable() == {} and tracker.in_flight() == 0


@given(st.lists(st.booleans(), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_the_committed_offset_never_passes_an_unfinished_request(finished: list[bool], rng) -> None:
    tracker = OffsetTracker()
    for offset in range(len(finished)):
        tracker.start("p", offset)
    order = [o for o, done in enumerate(finished) if done]
    rng.shuffle(order)
    for offset in order:
        tracker.finish("p", offset)
        commit = tracker.committable().get("p")
        if commit is not None:
            tracker.committed({"p": commit})
            unfinished = [o for o, done in enumerate(finished) if not done or o not in order[: order.index(offset) + 1]]
            assert all(o >= commit for o in unfinished)
