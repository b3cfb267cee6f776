"""Requests-per-minute and tokens-per-minute limits of one deployment, shared by replicas.

What a per-minute limit means: a provider counts an account's calls (and tokens) over a
rolling minute, and many enforce it over shorter slices too (OpenAI quantizes 600 rpm
into about 10 a second; Anthropic refills a bucket continuously). So the limiter keeps
every replica's calls, in any minute, within its share of the limit, and spreads them
evenly inside the minute rather than in bursts.

A provider's limits apply to the account, not to one process, and Turnout runs many
workers for a model in one consumer group. No replica can see the others' traffic, but
each knows how many of the model topic's partitions it owns, and partitions carry the
load: a replica owning k of n partitions takes k/n of each limit (``set_share``, called
on every rebalance). The shares of all replicas add up to the whole limit without any
coordination.

Each limit is a token bucket that refills smoothly at its share of the per-minute rate.
It starts empty and fills only from the replica's first call on: a new replica (a
restart, a scale-out) cannot know what the account spent in the minute before it, and
a bucket that started full let the benchmark's fresh worker make 694 calls in its first
minute under a limit of 600. So that the first call need not wait, it is let through at
once and leaves the bucket in debt by its size, which the refill pays back before
anything else is granted: a replica's first minute holds at most its share. Its
capacity (the burst a replica idle for a while may spend at once) is ``burst_s``
seconds of that share, 10 s by default rather than a whole minute:
providers that enforce a per-minute limit over shorter slices answer a minute's budget
spent in one burst with 429s. A minute that starts with such a burst holds up to
``(60 + burst_s) / 60`` of the share; lower ``burst_s`` where a provider is strict. A call
needs one request and its estimated tokens (prompt tokens + ``max_tokens``); ``settle``
corrects the token bucket with what the provider reports once the call is done. A call
larger than the whole bucket is let through when the bucket is full and leaves it in
debt, so it neither waits forever nor raises the long-run rate.

``try_acquire`` takes a call's budget at once when there is room and nobody waits
(the common case, without a task or a turn of the event loop); ``acquire`` waits for it
and is fair (first come, first served: a small request never overtakes a large one that
is waiting, so large ones cannot starve) and cancellation-safe (a waiter takes capacity
only at the instant it is granted, so a cancelled waiter takes nothing and the next in
line moves up). ``pause_for`` is a 429's Retry-After: it blocks every acquirer of the
deployment, queued or new. ``would_wait_s`` lets a request that cannot wait that long
move on at once; ``waiting`` reports the queue.

Pure logic with an injectable clock and sleep, so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from pydantic import Field

from turnout.schemas.section import Section

_TOLERANCE = 1e-9
"""Relative slack when comparing a bucket's level with its need: after sleeping the exact
computed wait, floating-point refill may fall short by a rounding error."""


class RateLimitConfig(Section):
    """A deployment's provider limits; unset means unlimited."""

    rpm: int | None = Field(default=None, ge=1, description="requests per minute the provider allows the account")
    tpm: int | None = Field(default=None, ge=1, description="tokens (input + output) per minute the provider allows the account")
    burst_s: float = Field(default=10.0, gt=0, le=60, description="bucket capacity, in seconds of this replica's share of each limit")


class _Bucket:
    """One smoothly refilling token bucket; ``per_minute=None`` never limits. It starts
    empty and refills only once something was taken; the first take is let through at
    once, into debt (see the module's docstring)."""

    def __init__(self, per_minute: int | None, burst_s: float, now: float) -> None:
        self.limited = per_minute is not None
        self._per_minute = per_minute or 0
        self._burst_s = burst_s
        self._at = now
        self.rate = self._per_minute / 60
        self.capacity = self.rate * burst_s
        self.level = 0.0
        self._first = True  # nothing taken yet: the first take may go into debt

    def set_share(self, share: float, now: float) -> None:
        """Change rate and capacity at once; what is in the bucket is kept up to the new
        capacity, so a larger share refills faster but grants no extra burst."""
        self._refill(now)
        self.rate = self._per_minute * share / 60
        self.capacity = self.rate * self._burst_s
        self.level = min(self.level, self.capacity)

    def wait_s(self, amount: float, now: float, ahead: float = 0.0) -> float:
        """Seconds until ``amount`` can be taken after ``ahead`` has been taken first."""
        if not self.limited or amount + ahead == 0:
            return 0.0
        if self.rate == 0:  # this replica owns no partition: nothing is granted
            return math.inf
        if self._first and ahead == 0:
            return 0.0
        self._refill(now)
        need = ahead + min(amount, self.capacity)
        deficit = need - self.level
        return 0.0 if deficit <= _TOLERANCE * max(1.0, need) else deficit / self.rate

    def adjust(self, amount: float, now: float) -> None:
        """Take (negative) or give back (positive) ``amount``; a debt is allowed."""
        if self.limited:
            self._refill(now)
            self.level = min(self.capacity, self.level + amount)
            self._first = self._first and amount >= 0

    def _refill(self, now: float) -> None:
        if self._first:  # nothing taken yet: stays empty
            self._at = now
            return
        self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
        self._at = now


class RateLimiter:
    """The rpm and tpm buckets of one deployment in this replica, plus its 429 pause.

    Starts with the whole limit (share 1/1); the worker calls ``set_share`` once it
    knows its partitions.
    """

    def __init__(
        self,
        config: RateLimitConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.config = config or RateLimitConfig()
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(self.config.rpm, self.config.burst_s, now)
        self._tokens = _Bucket(self.config.tpm, self.config.burst_s, now)
        self._share = 1.0
        self._paused_until = -math.inf
        self._queue: deque[asyncio.Future[None]] = deque()  # each waiter's turn, set when it reaches the head
        self._queued_tokens = 0
        self._kick: asyncio.Future[None] | None = None

    # -- configuration that changes at run time -----------------------------------------------
    @property
    def share(self) -> float:
        return self._share

    def set_share(self, owned_partitions: int, total_partitions: int) -> None:
        if total_partitions < 1 or not 0 <= owned_partitions <= total_partitions:
            raise ValueError(
                f"owned_partitions ({owned_partitions}) must be between 0 and total_partitions ({total_partitions}), which must be at least 1"
            )
        now = self._clock()
        self._share = owned_partitions / total_partitions
        for bucket in (self._requests, self._tokens):
            bucket.set_share(self._share, now)
        self._wake_head()

    def pause_for(self, seconds: float) -> None:
        """Block every acquirer for ``seconds`` (a 429's Retry-After); never shortens a pause."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._wake_head()

    def paused_s(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    # -- the calls -------------------------------------------------------------------------------
    def try_acquire(self, tokens: int) -> bool:
        """Take one request and ``tokens`` now if both limits allow it and nobody waits
        (never overtaking a waiter); ``False`` takes nothing. Synchronous, so a caller
        with room needs no task and no timeout to get it."""
        _check_count("tokens", tokens)
        if self._queue or self._wait_s(tokens) > 0:
            return False
        self._take(tokens)
        return True

    async def acquire(self, tokens: int) -> None:
        """Wait, in arrival order, until one request and ``tokens`` fit both limits, then take them."""
        if self.try_acquire(tokens):
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        self._queued_tokens += tokens
        try:
            if self._queue[0] is not turn:
                await turn
            while (wait := self._wait_s(tokens)) > 0:
                await self._nap(wait)
            self._take(tokens)  # no await between the last check and here: nothing can slip in
        finally:
            self._queue.remove(turn)
            self._queued_tokens -= tokens
            if self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the provider reported the call's real usage
        (``actual=0`` when the call was never made)."""
        _check_count("estimated", estimated)
        _check_count("actual", actual)
        self._tokens.adjust(estimated - actual, self._clock())
        self._wake_head()

    # -- saturation ------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Acquirers queued now."""
        return len(self._queue)

    def would_wait_s(self, tokens: int = 0) -> float:
        """About how long a new acquire of ``tokens`` would wait behind the queue (``inf``
        while this replica's share is 0)."""
        _check_count("tokens", tokens)
        now = self._clock()
        return max(
            self.paused_s(),
            self._requests.wait_s(1, now, ahead=len(self._queue)),
            self._tokens.wait_s(tokens, now, ahead=self._queued_tokens),
        )

    # -- internals -------------------------------------------------------------------------------
    def _wait_s(self, tokens: int) -> float:
        now = self._clock()
        return max(self._paused_until - now, self._requests.wait_s(1, now), self._tokens.wait_s(tokens, now))

    def _take(self, tokens: int) -> None:
        now = self._clock()
        self._requests.adjust(-1, now)
        self._tokens.adjust(-tokens, now)

    async def _nap(self, seconds: float) -> None:
        """The head of the queue sleeps until its wait is over, or until something that
        may shorten it happens (a new share, a refund, a pause): then it looks again."""
        kick = self._kick = asyncio.get_running_loop().create_future()
        waits: list[asyncio.Future[object]] = [kick]
        if math.isfinite(seconds):
            waits.append(asyncio.ensure_future(self._sleep(seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                future.cancel()
            self._kick = None

    def _wake_head(self) -> None:
        if self._kick is not None and not self._kick.done():
            self._kick.set_result(None)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, not {value!r}")
