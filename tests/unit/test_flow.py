"""consumers/flow.py: backoff with full jitter and answered-id memory.

No wall clock: randomness comes from a seeded ``random.Random`` and the pause is tested
with a fake clock and a recording sleep.
"""

from __future__ import annotations

import random

import pytest

from turnout.consumers import flow
from turnout.consumers.flow import AnsweredIds, backoff_s

SAMPLES = 500


# -- backoff ---------------------------------------------------------------------------------
@pytest.mark.parametrize("retry", range(8))
def test_backoff_stays_within_zero_and_the_exponential_ceiling(retry: int) -> None:
    rng = random.Random(retry)
    base, cap = 0.2, 5.0
    ceiling = min(cap, base * 2**retry)
    delays = [backoff_s(retry, base, cap, rng) for _ in range(SAMPLES)]
    assert all(0 <= d <= ceiling for d in delays)
    # full jitter: the delays spread over the whole interval, not a fixed value
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling


def test_backoff_ceiling_doubles_until_the_cap() -> None:
    rng = random.Random(7)
    observed = [max(backoff_s(r, 0.1, 1.0, rng) for _ in range(SAMPLES)) for r in range(6)]
    # ceilings 0.1, 0.2, 0.4, 0.8, 1.0, 1.0
    assert observed[0] <= 0.1 < observed[1] <= 0.2 < observed[2] <= 0.4 < observed[3] <= 0.8 < observed[4] <= 1.0
    assert observed[5] <= 1.0


def test_backoff_never_exceeds_the_cap_for_large_retry_counts() -> None:
    rng = random.Random(3)
    assert all(backoff_s(60, 0.2, 10.0, rng) <= 10.0 for _ in range(SAMPLES))


def test_backoff_is_reproducible_with_the_same_seed() -> None:
    a, b = random.Random(99), random.Random(99)
    assert [backoff_s(r % 5, 0.2, 10.0, a) for r in range(50)] == [backoff_s(r % 5, 0.2, 10.0, b) for r in range(50)]


def test_backoff_draws_from_the_given_generator() -> None:
    rng = random.Random(5)
    expected = random.Random(5).uniform(0, 0.8)
    assert backoff_s(2, 0.2, 10.0, rng) == expected


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(11)
    delays = [backoff_s(3, 0.2, 10.0, rng, retry_after_s=1.0) for _ in range(SAMPLES)]
    assert all(1.0 <= d <= 1.6 for d in delays)  # ceiling 0.2 * 8 = 1.6
    assert any(d > 1.0 for d in delays)  # jitter above the floor is kept
    assert any(d == 1.0 for d in delays)  # jitter below the floor is raised to it


def test_retry_after_beyond_the_cap_is_honoured() -> None:
    """The server knows best: a Retry-After longer than backoff_max_s is still waited for."""
    rng = random.Random(2)
    assert all(backoff_s(r, 0.2, 1.0, rng, retry_after_s=30.0) == 30.0 for r in range(10))


def test_zero_retry_after_is_a_floor_of_zero_not_absent() -> None:
    rng_a, rng_b = random.Random(4), random.Random(4)
    assert backoff_s(1, 0.2, 10.0, rng_a, retry_after_s=0.0) == backoff_s(1, 0.2, 10.0, rng_b)


# -- AnsweredIds ---------------------------------------------------------------------------------
def test_remembers_answered_ids() -> None:
    answered = AnsweredIds(10)
    assert "a" not in answered
    answered.add("a")
    answered.add("b")
    assert "a" in answered and "b" in answered
    assert "c" not in answered


def test_evicts_the_oldest_beyond_capacity() -> None:
    answered = AnsweredIds(3)
    for request_id in ["a", "b", "c", "d"]:
        answered.add(request_id)
    assert "a" not in answered
    assert all(r in answered for r in ["b", "c", "d"])
    answered.add("e")
    assert "b" not in answered
    assert all(r in answered for r in ["c", "d", "e"])


def test_adding_again_refreshes_an_id() -> None:
    answered = AnsweredIds(3)
    for request_id in ["a", "b", "c"]:
        answered.add(request_id)
    answered.add("a")  # now the newest
    answered.add("d")
    assert "a" in answered
    assert "b" not in answered
    assert "c" in answered and "d" in answered


def test_adding_the_same_id_twice_takes_one_slot() -> None:
    answered = AnsweredIds(2)
    answered.add("a")
    answered.add("a")
    answered.add("b")
    assert "a" in answered and "b" in answered


def test_capacity_one_keeps_only_the_last() -> None:
    answered = AnsweredIds(1)
    answered.add("a")
    answered.add("b")
    assert "a" not in answered and "b" in answered


def test_capacity_zero_remembers_nothing() -> None:
    answered = AnsweredIds(0)
    for request_id in ["a", "b", "a"]:
        answered.add(request_id)
        assert request_id not in answered


def test_memory_stays_bounded() -> None:
    answered = AnsweredIds(100)
    for i in range(10_000):
        answered.add(f"req-{i}")
    assert len(answered._ids) == 100
    assert "req-9999" in answered and "req-9900" in answered and "req-9899" not in answered
