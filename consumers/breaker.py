"""A circuit breaker per deployment: stop calling a backend that is failing or crawling.

Retries and fallbacks handle one bad call; the breaker handles a bad backend. While a
deployment fails most of its calls, every request sent there spends its deadline on
timeouts before moving on along its plan, and the retries pile more load onto a backend
that is already down. The breaker watches outcomes over a sliding time window and, once
it has seen enough calls to judge, trips **open** when the share of failed calls or the
share of slow calls crosses its threshold. While open it admits nothing, so the worker
forwards slips to the next step at once (and the router, reading the state from the
health topic, stops choosing the deployment). After ``open_s`` it turns **half_open**
and lets a few probe calls through: ``probe_successes`` healthy probes close it again,
one failed probe reopens it for twice as long as last time, up to ``max_open_s``, so a
backend that stays down is probed less and less often. Closing resets the open time.

Which outcomes are failures is the caller's decision, because only the caller knows why
a call failed. The rule Turnout uses (``FAILURE_CODES``): 5xx answers, timeouts,
unreachable backends and malformed 200s are failures; 4xx rejections say the *request*
was bad and 429 is the provider's flow control (the rate limiter's pause handles it), so
those are not recorded at all: the caller releases the permit instead.

Pure logic: time comes from an injectable clock, and there is no timer. The time-based
open -> half_open move happens on the first ``acquire``/``allow``/``state``/``snapshot``
after ``open_s`` has passed; the worker's health heartbeat reads ``snapshot()`` often
enough for the health topic to learn of it promptly. Every transition calls
``on_change`` exactly once, after the new state is in place.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


from turnout.schemas.worker_config import BreakerConfig

BreakerState = Literal["closed", "open", "half_open"]

FAILURE_CODES: frozenset[str] = frozenset({"timeout", "backend_unreachable", "backend_error", "malformed_response", "stream_interrupted"})
"""``BackendError.code`` values that say the deployment is unhealthy (see the module doc)."""

_BUCKETS = 30
"""The window is kept as this many time buckets, so its memory does not grow with the
call rate; it slides in steps of ``window_s / _BUCKETS`` (1 s for a 30 s window)."""


@dataclass(frozen=True)
class Transition:
    """One change of state, handed to ``on_change`` (for the health topic and the logs)."""

    deployment: str
    old: BreakerState
    new: BreakerState
    at: float
    reason: str


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a health report says about the breaker. Times are in the breaker's clock
    (``time.monotonic`` by default): compare them with each other, not with wall time."""

    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    error_rate: float
    slow_rate: float
    opened_at: float | None
    open_for_s: float
    probes_in_flight: int


@dataclass
class _Bucket:
    start: float
    calls: int = 0
    failures: int = 0
    slow: int = 0


class _Window:
    """Call outcomes over the last ``span_s`` seconds, kept as a few time buckets."""

    def __init__(self, span_s: float) -> None:
        self._span_s = span_s
        self._bucket_s = span_s / _BUCKETS
        self._buckets: deque[_Bucket] = deque()
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self.expire(now)
        if not self._buckets or now - self._buckets[-1].start >= self._bucket_s:
            self._buckets.append(_Bucket(now))
        bucket = self._buckets[-1]
        bucket.calls += 1
        bucket.failures += failed
        bucket.slow += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def expire(self, now: float) -> None:
        while self._buckets and self._buckets[0].start <= now - self._span_s:
            old = self._buckets.popleft()
            self.calls -= old.calls
            self.failures -= old.failures
            self.slow -= old.slow

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = self.slow = 0

    def rate(self, count: int) -> float:
        return count / self.calls if self.calls else 0.0


class Permit:
    """The right to make one call. Report its outcome with ``record`` or, when the outcome
    says nothing about the backend's health (4xx, 429, cancellation), ``release`` it;
    used as a context manager it is released on exit if neither happened."""

    __slots__ = ("_breaker", "_epoch", "_done")

    def __init__(self, breaker: CircuitBreaker, epoch: int) -> None:
        self._breaker = breaker
        self._epoch = epoch
        self._done = False

    def record(self, success: bool, latency_s: float) -> None:
        if not self._done:
            self._done = True
            self._breaker._settle(self._epoch, (success, latency_s))

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._settle(self._epoch, None)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class CircuitBreaker:
    """One deployment's breaker; see the module doc for the rules.

    A call's outcome counts only in the state it was admitted in: a call admitted while
    closed that fails after the breaker has opened describes the backend before the
    break, so it is ignored (each transition starts a new epoch).
    """

    def __init__(
        self,
        deployment: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Transition], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._window = _Window(self.config.window_s)
        self._state: BreakerState = "closed"
        self._epoch = 0
        self._opened_at: float | None = None
        self._open_for_s = self.config.open_s
        self._probes_in_flight = 0
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        self._tick()
        return self._state

    def allow(self) -> bool:
        """Whether ``acquire`` would admit a call now (it takes nothing)."""
        self._tick()
        return self._admits()

    def acquire(self) -> Permit | None:
        """A permit for one call, or ``None`` when the breaker refuses it."""
        self._tick()
        if not self._admits():
            return None
        if self._state == "half_open":
            self._probes_in_flight += 1
        return Permit(self, self._epoch)

    def snapshot(self) -> BreakerSnapshot:
        now = self._tick()
        self._window.expire(now)
        w = self._window
        return BreakerSnapshot(
            state=self._state,
            calls=w.calls,
            failures=w.failures,
            slow_calls=w.slow,
            error_rate=w.rate(w.failures),
            slow_rate=w.rate(w.slow),
            opened_at=self._opened_at,
            open_for_s=self._open_for_s,
            probes_in_flight=self._probes_in_flight,
        )

    # -- internals ---------------------------------------------------------------------------
    def _admits(self) -> bool:
        if self._state == "half_open":
            return self._probes_in_flight < self.config.half_open_probes
        return self._state == "closed"

    def _tick(self) -> float:
        now = self._clock()
        if self._state == "open" and self._opened_at is not None and now - self._opened_at >= self._open_for_s:
            self._move("half_open", now, f"open for {self._open_for_s:g}s: probing")
        return now

    def _settle(self, epoch: int, outcome: tuple[bool, float] | None) -> None:
        now = self._tick()
        if epoch != self._epoch:
            return  # admitted before the last transition: stale news
        if self._state == "half_open":
            self._probes_in_flight -= 1
            if outcome is not None:
                self._judge_probe(now, *outcome)
        elif self._state == "closed" and outcome is not None:
            self._judge_call(now, *outcome)

    def _is_slow(self, latency_s: float) -> bool:
        return latency_s >= self.config.slow_call_s

    def _judge_call(self, now: float, success: bool, latency_s: float) -> None:
        cfg, w = self.config, self._window
        w.add(now, failed=not success, slow=self._is_slow(latency_s))
        if w.calls < cfg.min_calls:
            return
        if w.rate(w.failures) >= cfg.failure_rate:
            self._open(now, self.config.open_s, f"{w.failures} of {w.calls} calls failed in {cfg.window_s:g}s")
        elif cfg.slow_call_rate is not None and w.rate(w.slow) >= cfg.slow_call_rate:
            self._open(now, self.config.open_s, f"{w.slow} of {w.calls} calls took {cfg.slow_call_s:g}s or more in {cfg.window_s:g}s")

    def _judge_probe(self, now: float, success: bool, latency_s: float) -> None:
        """A probe is healthy only if it succeeded fast: a breaker tripped by slowness must
        not close on one slow success only to trip again ``min_calls`` later."""
        slow = self.config.slow_call_rate is not None and self._is_slow(latency_s)
        if not success or slow:
            doubled = min(self._open_for_s * 2, self.config.max_open_s)
            self._open(now, doubled, "probe " + ("failed" if not success else f"took {latency_s:g}s"))
            return
        self._probe_successes += 1
        if self._probe_successes >= self.config.probe_successes:
            self._open_for_s = self.config.open_s
            self._opened_at = None
            self._move("closed", now, f"{self._probe_successes} probes succeeded")

    def _open(self, now: float, open_for_s: float, reason: str) -> None:
        self._opened_at = now
        self._open_for_s = open_for_s
        self._move("open", now, f"{reason}; open for {open_for_s:g}s")

    def _move(self, new: BreakerState, now: float, reason: str) -> None:
        old, self._state = self._state, new
        self._epoch += 1
        self._window.clear()
        self._probes_in_flight = self._probe_successes = 0
        if self._on_change is not None:
            self._on_change(Transition(self.deployment, old, new, now, reason))
