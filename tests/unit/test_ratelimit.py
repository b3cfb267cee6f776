"""consumers/ratelimit.py: shared rpm/tpm buckets, fair waiting, the 429 pause.

Everything runs in virtual time: the limiter gets a fake clock and a fake sleep whose
sleepers wake only when a test moves the clock, so waits of minutes take no time and
nothing depends on the wall clock.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from turnout.consumers.ratelimit import RateLimitConfig, RateLimiter

MINUTE = 60.0


@dataclass
class _Sleeper:
    deadline: float
    future: asyncio.Future[None]


@dataclass
class VirtualTime:
    now: float = 0.0
    sleepers: list[_Sleeper] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append(_Sleeper(self.now + seconds, future))
        await future

    def _due(self, until: float) -> _Sleeper | None:
        self.sleepers = [s for s in self.sleepers if not s.future.done()]
        due = [s for s in self.sleepers if s.deadline <= until]
        return min(due, key=lambda s: s.deadline) if due else None

    async def advance(self, seconds: float) -> None:
        """Move the clock, waking each sleeper at its own deadline, in order."""
        target = self.now + seconds
        while (sleeper := self._due(target)) is not None:
            self.now = max(self.now, sleeper.deadline)
            sleeper.future.set_result(None)
            await settle()
        self.now = target
        await settle()

    async def run(self, tasks: list[asyncio.Task[None]]) -> None:
        """Advance from one sleeper's deadline to the next until every task is done."""
        while True:
            await settle()
            if all(t.done() for t in tasks):
                return
            sleeper = self._due(math.inf)
            assert sleeper is not None, "every task waits and nobody sleeps: deadlock"
            await self.advance(sleeper.deadline - self.now)


async def settle() -> None:
    """Let every runnable task run until it blocks again."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


def new_limiter(vt: VirtualTime, **config: float | None) -> RateLimiter:
    """A limiter as a new replica builds it: empty buckets."""
    return RateLimiter(RateLimitConfig(**config), clock=vt.clock, sleep=vt.sleep)  # type: ignore[arg-type]


def limiter(vt: VirtualTime, **config: float | None) -> RateLimiter:
    """A limiter that served a call and then stood idle long enough to fill its buckets
    (ten minutes before t = 0): most tests start from a full bucket."""
    vt.now = -10 * MINUTE
    rl = new_limiter(vt, **config)
    assert rl.try_acquire(1)
    vt.now = 0.0
    return rl


class Grants:
    """Start acquirers as tasks and record when (virtual time) each one is granted."""

    def __init__(self, vt: VirtualTime, limiter: RateLimiter) -> None:
        self.vt, self.limiter = vt, limiter
        self.at: dict[str, float] = {}
        self.order: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, name: str, tokens: int = 0) -> asyncio.Task[None]:
        async def acquire() -> None:
            await self.limiter.acquire(tokens)
            self.at[name] = self.vt.now
            self.order.append(name)

        self.tasks[name] = asyncio.ensure_future(acquire())
        await settle()
        return self.tasks[name]

    @property
    def granted(self) -> set[str]:
        return set(self.order)


# -- unlimited -------------------------------------------------------------------------------------
async def test_no_limit_configured_never_waits(vt: VirtualTime) -> None:
    rl = limiter(vt)
    for _ in range(10_000):
        await rl.acquire(1_000_000)
    assert vt.sleepers == []
    assert rl.would_wait_s(10**9) == 0
    rl.set_share(1, 5)
    await rl.acquire(10**9)
    assert vt.sleepers == []


async def test_an_available_grant_does_not_yield_to_the_event_loop(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, tpm=60_000)
    coroutine = rl.acquire(100)
    with pytest.raises(StopIteration):
        coroutine.send(None)  # finished on the first step: no await was needed


# -- try_acquire: the synchronous fast path ---------------------------------------------------------
async def test_try_acquire_takes_the_budget_when_there_is_room(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, tpm=6_000, burst_s=10)  # full: 10 requests, 1000 tokens
    assert rl.try_acquire(400)
    assert rl.try_acquire(600)
    assert not rl.try_acquire(1)  # the tokens are spent: nothing taken
    assert rl.would_wait_s(1) == pytest.approx(0.01)  # 1 token at 100/s: the failed try took nothing
    await vt.advance(0.01)
    assert rl.try_acquire(1)


async def test_try_acquire_never_overtakes_a_waiter(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    await grants.start("waiter", 500)
    await vt.advance(5.0)  # room for the waiter, which is granted first
    assert grants.granted == {"waiter"}
    await grants.start("second", 500)
    await vt.advance(1.0)  # 100 tokens back: the second waits for 400 more
    assert not rl.try_acquire(1)  # someone waits: the fast path stands back even for 1 token
    await vt.run(list(grants.tasks.values()))
    assert grants.order == ["waiter", "second"]


async def test_try_acquire_respects_a_pause_and_a_zero_share(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=600)
    rl.pause_for(2.0)
    assert not rl.try_acquire(0)
    await vt.advance(2.0)
    assert rl.try_acquire(0)
    rl.set_share(0, 3)
    assert not rl.try_acquire(0)
    assert new_limiter(vt).try_acquire(10**9)  # unlimited


# -- a new replica: empty buckets, the first call at once ------------------------------------------
async def test_a_new_replica_makes_its_first_call_at_once_and_has_no_burst(vt: VirtualTime) -> None:
    rl = new_limiter(vt, rpm=600, burst_s=10)  # 10/s; a full bucket would hold 100
    await vt.advance(30.0)  # standing idle before its first call earns nothing
    assert rl.try_acquire(0)  # the first call goes at once, into debt by one request
    assert not rl.try_acquire(0)
    assert rl.would_wait_s() == pytest.approx(0.2)  # the debt, then its own request, at 10/s
    await vt.advance(0.2)
    assert rl.try_acquire(0)


async def test_a_first_call_larger_than_the_bucket_goes_at_once_and_is_paid_back(vt: VirtualTime) -> None:
    rl = new_limiter(vt, tpm=6_000, burst_s=10)  # 100 tokens/s, 1000 at most
    assert rl.try_acquire(3_000)
    grants = Grants(vt, rl)
    await grants.start("next", 100)
    await vt.run(list(grants.tasks.values()))
    assert grants.at["next"] == pytest.approx(31.0)  # 3000 of debt + its own 100


@pytest.mark.parametrize("burst_s", [1.0, 10.0, 60.0])
async def test_the_first_minute_of_a_new_replica_holds_no_more_than_its_share(vt: VirtualTime, burst_s: float) -> None:
    """A backlog waits when the replica starts (the benchmark's 429 storm): its first
    minute, counted from its first call, holds at most its share of rpm and of tpm."""
    rl = new_limiter(vt, rpm=600, tpm=60_000, burst_s=burst_s)
    rl.set_share(2, 3)  # 400 requests and 40,000 tokens a minute
    grants: list[tuple[float, int]] = []

    async def client(tokens: int) -> None:
        await rl.acquire(tokens)
        grants.append((vt.now, tokens))

    tasks = [asyncio.ensure_future(client(50 + 40 * (i % 5))) for i in range(600)]
    await settle()
    await vt.advance(2 * MINUTE)
    for task in tasks:
        task.cancel()
    first_minute = [n for at, n in grants if at < MINUTE]
    assert grants[0][0] == 0.0
    assert len(first_minute) <= 400
    assert sum(first_minute) <= 40_000
    assert sum(first_minute) >= 39_000  # and the limiter does not starve it either (tokens bind here)


async def test_a_new_replica_under_rpm_alone_makes_its_share_in_its_first_minute(vt: VirtualTime) -> None:
    rl = new_limiter(vt, rpm=600, burst_s=10)
    grants = Grants(vt, rl)
    for i in range(700):
        await grants.start(f"r{i}")
    await vt.advance(MINUTE - 1e-6)
    assert len(grants.granted) == 599  # the first at once, its debt paid at 0.1 s, then 10 a second from 0.2 s
    for task in grants.tasks.values():
        task.cancel()


# -- rpm and tpm -----------------------------------------------------------------------------------
async def test_requests_per_minute_are_enforced(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=10)  # 1 request/s, 10 at once
    grants = Grants(vt, rl)
    for i in range(12):
        await grants.start(f"r{i}")
    assert len(grants.granted) == 10
    await vt.advance(0.999)
    assert len(grants.granted) == 10
    await vt.advance(0.001)
    assert len(grants.granted) == 11
    await vt.advance(1.0)
    assert len(grants.granted) == 12
    assert grants.at["r11"] == pytest.approx(2.0)


async def test_tokens_per_minute_are_enforced(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)  # 100 tokens/s, 1000 at once
    grants = Grants(vt, rl)
    await grants.start("big", 1_000)
    await grants.start("next", 500)
    assert grants.granted == {"big"}
    await vt.run(list(grants.tasks.values()))
    assert grants.at["next"] == pytest.approx(5.0)


async def test_both_limits_must_allow(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, tpm=6_000, burst_s=10)  # 1 req/s (cap 10), 100 tok/s (cap 1000)
    grants = Grants(vt, rl)
    await grants.start("a", 1_000)
    await grants.start("b", 50)  # tokens: 0.5 s; requests: plenty
    for i in range(8):
        await grants.start(f"c{i}", 0)
    await grants.start("d", 0)  # 10 requests taken by then: requests wait 1 s
    await vt.run(list(grants.tasks.values()))
    assert grants.at["b"] == pytest.approx(0.5)
    assert grants.at["d"] == pytest.approx(1.0)


async def test_a_call_larger_than_the_bucket_goes_when_it_is_full_and_leaves_a_debt(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)  # 100 tok/s, capacity 1000
    await rl.acquire(3_000)  # the bucket was full: granted, 2000 in debt
    grants = Grants(vt, rl)
    await grants.start("after", 100)
    await vt.run(list(grants.tasks.values()))
    assert grants.at["after"] == pytest.approx(21.0)  # 2000 of debt + 100 at 100 tok/s


async def test_the_bucket_never_holds_more_than_its_capacity(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=10)
    await vt.advance(3600)  # an idle hour does not save up an hour of requests
    grants = Grants(vt, rl)
    for i in range(11):
        await grants.start(f"r{i}")
    assert len(grants.granted) == 10


# -- fairness and cancellation ---------------------------------------------------------------------
async def test_waiters_are_served_in_arrival_order(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    await grants.start("large", 800)  # needs 8 s
    await vt.advance(0.5)
    await grants.start("small", 10)  # would fit at 0.6 s on its own; must not overtake
    await vt.run(list(grants.tasks.values()))
    assert grants.order == ["large", "small"]
    assert grants.at["large"] == pytest.approx(8.0)
    assert grants.at["small"] == pytest.approx(8.1)


async def test_a_newcomer_queues_behind_waiters_even_when_capacity_is_free(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    await grants.start("waiting", 500)
    await grants.start("no_tokens", 0)  # the rpm bucket has room, but it arrived later
    assert grants.granted == set()
    assert rl.waiting == 2
    await vt.run(list(grants.tasks.values()))
    assert grants.order == ["waiting", "no_tokens"]


async def test_a_cancelled_head_takes_nothing_and_the_next_moves_up(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    head = await grants.start("head", 900)
    await grants.start("next", 200)
    await vt.advance(1.0)
    head.cancel()
    await vt.run([grants.tasks["next"]])
    assert grants.order == ["next"]
    assert grants.at["next"] == pytest.approx(2.0)  # as if "head" had never been there
    assert rl.waiting == 0
    assert rl.would_wait_s(800) == pytest.approx(8.0)  # nothing leaked to the cancelled one


async def test_a_cancelled_waiter_in_the_middle_leaves_the_order_intact(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=1)  # 1 request/s, 1 at once
    await rl.acquire(0)
    grants = Grants(vt, rl)
    for name in ("a", "b", "c", "d"):
        await grants.start(name)
    grants.tasks["b"].cancel()
    await settle()
    assert rl.waiting == 3
    await vt.run([grants.tasks[n] for n in ("a", "c", "d")])
    assert grants.order == ["a", "c", "d"]
    assert [grants.at[n] for n in grants.order] == pytest.approx([1.0, 2.0, 3.0])


async def test_cancelling_every_waiter_leaves_the_limiter_usable(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=1)
    await rl.acquire(0)
    grants = Grants(vt, rl)
    tasks = [await grants.start(f"w{i}") for i in range(3)]
    for task in tasks:
        task.cancel()
    await settle()
    assert rl.waiting == 0
    await vt.advance(1.0)
    await rl.acquire(0)  # the refilled request was not lost to the cancelled waiters


# -- the 429 pause ---------------------------------------------------------------------------------
async def test_a_pause_blocks_every_acquirer(vt: VirtualTime) -> None:
    rl = limiter(vt)  # even with no limits configured
    rl.pause_for(5.0)
    assert rl.paused_s() == 5.0
    grants = Grants(vt, rl)
    for name in ("a", "b", "c"):
        await grants.start(name, 10)
    assert rl.would_wait_s() == 5.0
    await vt.advance(4.9)
    assert grants.granted == set()
    await vt.advance(0.1)
    assert grants.order == ["a", "b", "c"]
    assert rl.paused_s() == 0


async def test_a_pause_is_never_shortened(vt: VirtualTime) -> None:
    rl = limiter(vt)
    rl.pause_for(5.0)
    rl.pause_for(1.0)
    assert rl.paused_s() == 5.0


async def test_a_pause_that_arrives_while_waiting_extends_the_wait(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=1)
    await rl.acquire(0)
    grants = Grants(vt, rl)
    await grants.start("a")  # would go at 1 s
    await vt.advance(0.5)
    rl.pause_for(3.0)  # another call got a 429 with Retry-After: 3
    await vt.run(list(grants.tasks.values()))
    assert grants.at["a"] == pytest.approx(3.5)


# -- settle ----------------------------------------------------------------------------------------
async def test_settle_returns_overestimated_tokens(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)  # estimate: prompt + max_tokens
    assert rl.would_wait_s(800) == pytest.approx(8.0)
    rl.settle(estimated=1_000, actual=200)
    assert rl.would_wait_s(800) == 0


async def test_settle_charges_underestimated_tokens(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(100)
    rl.settle(estimated=100, actual=600)
    assert rl.would_wait_s(1_000) == pytest.approx(6.0)


async def test_a_refund_wakes_the_waiter_at_once(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    await grants.start("waiting", 600)  # would wait 6 s
    await vt.advance(1.0)
    rl.settle(estimated=1_000, actual=500)
    await settle()
    assert grants.at == {"waiting": 1.0}


async def test_a_refund_never_fills_the_bucket_beyond_capacity(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    rl.settle(estimated=5_000, actual=0)
    await rl.acquire(1_000)
    assert rl.would_wait_s(1) > 0


# -- the share of a replica ------------------------------------------------------------------------
async def test_a_share_scales_rate_and_capacity(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=600, burst_s=10)  # whole limit: 10/s, 100 at once
    rl.set_share(1, 4)  # 2.5/s, 25 at once
    assert rl.share == 0.25
    grants = Grants(vt, rl)
    for i in range(26):
        await grants.start(f"r{i}")
    assert len(grants.granted) == 25
    await vt.run(list(grants.tasks.values()))
    assert grants.at["r25"] == pytest.approx(0.4)


async def test_a_larger_share_refills_faster_but_grants_no_burst(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=600, burst_s=10)
    rl.set_share(1, 4)
    for _ in range(25):
        await rl.acquire(0)
    rl.set_share(2, 4)  # capacity 50, but the bucket stays empty
    assert rl.would_wait_s() == pytest.approx(0.2)  # refills at 5/s
    await vt.advance(100)
    grants = Grants(vt, rl)
    for i in range(51):
        await grants.start(f"r{i}")
    assert len(grants.granted) == 50


async def test_a_smaller_share_takes_effect_at_once(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=60_000, burst_s=10)  # 1000 tok/s, 10000 at once
    rl.set_share(1, 10)  # 100 tok/s, capacity 1000: the full bucket is cut down
    grants = Grants(vt, rl)
    await grants.start("a", 1_000)
    await grants.start("b", 1_000)
    await vt.run(list(grants.tasks.values()))
    assert (grants.at["a"], grants.at["b"]) == (0.0, pytest.approx(10.0))


async def test_a_replica_without_partitions_grants_nothing_until_it_gets_some(vt: VirtualTime) -> None:
    rl = limiter(vt, rpm=60, burst_s=10)
    rl.set_share(0, 3)
    assert rl.would_wait_s() == math.inf
    grants = Grants(vt, rl)
    await grants.start("a")
    await vt.advance(600)
    assert grants.granted == set()
    rl.set_share(3, 3)
    await vt.run(list(grants.tasks.values()))
    assert grants.at["a"] == pytest.approx(601.0)


@pytest.mark.parametrize(("owned", "total"), [(-1, 3), (4, 3), (0, 0)])
async def test_an_impossible_share_is_refused(vt: VirtualTime, owned: int, total: int) -> None:
    with pytest.raises(ValueError, match=rf"owned_partitions \({owned}\) must be between 0 and total_partitions \({total}\)"):
        limiter(vt).set_share(owned, total)


# -- saturation and input checks -------------------------------------------------------------------
async def test_waiting_and_would_wait_report_the_queue(vt: VirtualTime) -> None:
    rl = limiter(vt, tpm=6_000, burst_s=10)
    await rl.acquire(1_000)
    grants = Grants(vt, rl)
    for i in range(3):
        await grants.start(f"w{i}", 500)
    assert rl.waiting == 3
    assert rl.would_wait_s(500) == pytest.approx(20.0)  # 1500 queued ahead + 500 at 100 tok/s
    await vt.run(list(grants.tasks.values()))
    assert rl.waiting == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
async def test_token_counts_must_be_whole_numbers(vt: VirtualTime, bad: object) -> None:
    rl = limiter(vt, tpm=6_000)
    with pytest.raises(ValueError, match="tokens must be a whole number"):
        await rl.acquire(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actual must be a whole number"):
        rl.settle(10, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("rpm", 0), ("tpm", -5), ("burst_s", 0), ("burst_s", 61)])
def test_out_of_range_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        RateLimitConfig(**{field: value})


# -- property: no minute ever gets more than the share -----------------------------------------------
def _most_in_any_window(grants: list[tuple[float, int]], window_s: float) -> int:
    return max(sum(n for t, n in grants if start <= t <= start + window_s) for start, _ in grants)


@settings(max_examples=60, deadline=None)
@given(
    rpm=st.integers(1, 600),
    tpm=st.integers(100, 100_000),
    burst_s=st.sampled_from([1.0, 10.0, 60.0]),
    owned=st.integers(1, 6),
    total_extra=st.integers(0, 6),
    calls=st.lists(st.tuples(st.floats(0, 30), st.floats(0, 1)), min_size=1, max_size=40),
)
def test_no_minute_grants_more_than_the_share_plus_the_burst(
    rpm: int, tpm: int, burst_s: float, owned: int, total_extra: int, calls: list[tuple[float, float]]
) -> None:
    """Over any sequence of acquires (arrival gap, tokens as a fraction of the bucket), the
    requests and tokens granted in any 60 s never exceed the replica's share of the limit
    plus one bucket (a call larger than the bucket may add its own excess)."""
    total = owned + total_extra
    share = owned / total
    capacity_r, capacity_t = rpm * share * burst_s / MINUTE, tpm * share * burst_s / MINUTE
    asks = [(gap, max(1, round(fraction * capacity_t * 1.5))) for gap, fraction in calls]

    async def scenario() -> list[tuple[float, int]]:
        vt = VirtualTime()
        rl = RateLimiter(RateLimitConfig(rpm=rpm, tpm=tpm, burst_s=burst_s), clock=vt.clock, sleep=vt.sleep)
        rl.set_share(owned, total)
        granted: list[tuple[float, int]] = []

        async def client(arrival: float, tokens: int) -> None:
            await vt.sleep(arrival)
            await rl.acquire(tokens)
            granted.append((vt.now, tokens))

        arrivals = [sum(gap for gap, _ in asks[: i + 1]) for i in range(len(asks))]
        tasks = [asyncio.ensure_future(client(at, tokens)) for at, (_, tokens) in zip(arrivals, asks)]
        await vt.run(tasks)
        return granted

    granted = asyncio.run(scenario())
    assert len(granted) == len(asks)
    largest = max(n for _, n in asks)
    slack = 1e-6
    assert _most_in_any_window(granted, MINUTE) <= max(capacity_t, largest) + tpm * share + slack
    requests = [(t, 1) for t, _ in granted]
    assert _most_in_any_window(requests, MINUTE) <= max(capacity_r, 1) + rpm * share + slack
