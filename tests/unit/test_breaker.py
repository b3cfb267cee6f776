"""consumers/breaker.py: trip on error rate and slow calls, probe, close, reopen longer.

Time is a fake clock the tests move by hand; nothing sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from factories import REPO
from pydantic import ValidationError

from turnout.consumers.breaker import FAILURE_CODES, BreakerConfig, CircuitBreaker, Transition


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transitions() -> list[Transition]:
    return []


@pytest.fixture
def make(clock: Clock, transitions: list[Transition]) -> Callable[..., CircuitBreaker]:
    def build(**overrides: Any) -> CircuitBreaker:
        return CircuitBreaker("m1", BreakerConfig(**overrides), clock=clock, on_change=transitions.append)

    return build


def call(breaker: CircuitBreaker, success: bool, latency_s: float = 0.1) -> None:
    permit = breaker.acquire()
    assert permit is not None, f"breaker refused a call in state {breaker.state}"
    permit.record(success, latency_s)


def calls(breaker: CircuitBreaker, ok: int = 0, failed: int = 0, latency_s: float = 0.1) -> None:
    for _ in range(ok):
        call(breaker, True, latency_s)
    for _ in range(failed):
        call(breaker, False, latency_s)


def moves(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.old, t.new) for t in transitions]


def trip(breaker: CircuitBreaker) -> None:
    calls(breaker, failed=breaker.config.min_calls)
    assert breaker.state == "open"


# -- closed -> open ------------------------------------------------------------------------------
def test_a_new_breaker_is_closed_and_admits(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.acquire() is not None


def test_does_not_trip_before_the_minimum_number_of_calls(make: Callable[..., CircuitBreaker], transitions: list[Transition]) -> None:
    breaker = make(min_calls=20)
    calls(breaker, failed=19)
    assert breaker.state == "closed"
    call(breaker, False)
    assert breaker.state == "open"
    assert moves(transitions) == [("closed", "open")]
    assert "20 of 20 calls failed" in transitions[0].reason


def test_trips_when_the_error_rate_reaches_the_threshold(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(min_calls=20, failure_rate=0.5)
    calls(breaker, ok=10, failed=10)
    assert breaker.state == "open"


def test_stays_closed_below_the_error_rate(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(min_calls=20, failure_rate=0.5)
    calls(breaker, ok=11, failed=9)
    calls(breaker, ok=2, failed=0)
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.failures) == ("closed", 22, 9)
    assert snapshot.error_rate == pytest.approx(9 / 22)


@pytest.mark.parametrize(("later_s", "state", "calls_in_window"), [(28, "open", 0), (30, "closed", 1)])
def test_only_calls_inside_the_window_count(
    make: Callable[..., CircuitBreaker], clock: Clock, later_s: float, state: str, calls_in_window: int
) -> None:
    breaker = make(window_s=30, min_calls=20)
    calls(breaker, failed=19)
    clock.now += later_s
    call(breaker, False)
    assert (breaker.state, breaker.snapshot().calls) == (state, calls_in_window)  # opening empties the window


def test_an_open_breaker_refuses_calls(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make()
    trip(breaker)
    assert not breaker.allow()
    assert breaker.acquire() is None


# -- slow calls ------------------------------------------------------------------------------------
def test_trips_when_the_share_of_slow_calls_reaches_the_threshold(make: Callable[..., CircuitBreaker], transitions: list[Transition]) -> None:
    breaker = make(min_calls=20, slow_call_s=5.0, slow_call_rate=0.8)
    calls(breaker, ok=4, latency_s=0.5)
    calls(breaker, ok=15, latency_s=5.0)
    assert breaker.state == "closed"
    call(breaker, True, 5.0)  # 16 of 20 slow, all successful
    assert breaker.state == "open"
    assert "took 5s or more" in transitions[-1].reason


def test_calls_faster_than_the_threshold_are_not_slow(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(min_calls=20, slow_call_s=5.0, slow_call_rate=0.8)
    calls(breaker, ok=40, latency_s=4.99)
    assert breaker.state == "closed"
    assert breaker.snapshot().slow_calls == 0


def test_slow_call_tripping_can_be_disabled(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(min_calls=20, slow_call_s=1.0, slow_call_rate=None)
    calls(breaker, ok=50, latency_s=60.0)
    assert breaker.state == "closed"


# -- open -> half_open -> closed / open ----------------------------------------------------------
def test_turns_half_open_after_open_s(make: Callable[..., CircuitBreaker], clock: Clock, transitions: list[Transition]) -> None:
    breaker = make(open_s=10)
    trip(breaker)
    clock.now += 9.999
    assert breaker.state == "open"
    clock.now += 0.001
    assert breaker.state == "half_open"
    assert moves(transitions) == [("closed", "open"), ("open", "half_open")]


def test_half_open_admits_at_most_the_configured_probes(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(open_s=10, half_open_probes=2, probe_successes=5)
    trip(breaker)
    clock.now += 10
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None
    assert breaker.acquire() is None
    assert not breaker.allow()
    assert breaker.snapshot().probes_in_flight == 2
    first.record(True, 0.1)
    assert breaker.state == "half_open"
    assert breaker.acquire() is not None


def test_enough_probe_successes_close_the_breaker(make: Callable[..., CircuitBreaker], clock: Clock, transitions: list[Transition]) -> None:
    breaker = make(open_s=10, probe_successes=2)
    trip(breaker)
    clock.now += 10
    call(breaker, True)
    assert breaker.state == "half_open"
    call(breaker, True)
    assert breaker.state == "closed"
    assert moves(transitions)[-1] == ("half_open", "closed")
    snapshot = breaker.snapshot()
    assert (snapshot.calls, snapshot.opened_at, snapshot.open_for_s) == (0, None, 10)


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(open_s=10, max_open_s=25)
    trip(breaker)
    observed = []
    for expected_open_s in (20, 25, 25):
        clock.now += breaker.snapshot().open_for_s
        call(breaker, False)
        snapshot = breaker.snapshot()
        assert (snapshot.state, snapshot.opened_at) == ("open", clock.now)
        observed.append(snapshot.open_for_s)
        clock.now += expected_open_s - 0.01
        assert breaker.state == "open"
        clock.now += 0.01
        assert breaker.state == "half_open"
        clock.now -= breaker.snapshot().open_for_s  # rewind: the loop adds the open time again
    assert observed == [20, 25, 25]


def test_closing_resets_the_open_time(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(open_s=10, probe_successes=1)
    trip(breaker)
    clock.now += 10
    call(breaker, False)  # reopened for 20 s
    clock.now += 20
    call(breaker, True)
    assert (breaker.state, breaker.snapshot().open_for_s) == ("closed", 10)
    trip(breaker)
    assert breaker.snapshot().open_for_s == 10


def test_a_slow_probe_counts_as_a_failure(make: Callable[..., CircuitBreaker], clock: Clock, transitions: list[Transition]) -> None:
    breaker = make(open_s=10, slow_call_s=5.0, probe_successes=1)
    trip(breaker)
    clock.now += 10
    call(breaker, True, latency_s=6.0)
    assert breaker.state == "open"
    assert "probe took 6s" in transitions[-1].reason


def test_a_slow_probe_is_fine_when_slow_call_tripping_is_disabled(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(open_s=10, slow_call_s=5.0, slow_call_rate=None, probe_successes=1)
    trip(breaker)
    clock.now += 10
    call(breaker, True, latency_s=6.0)
    assert breaker.state == "closed"


# -- permits -----------------------------------------------------------------------------------------
def test_a_released_permit_counts_for_nothing(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(min_calls=1, open_s=10, probe_successes=1)
    for _ in range(5):
        permit = breaker.acquire()
        assert permit is not None
        permit.release()  # e.g. a 4xx rejection or a 429
    assert breaker.snapshot().calls == 0
    call(breaker, False)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is not None and breaker.acquire() is None
    probe.release()
    assert breaker.state == "half_open"
    assert breaker.acquire() is not None  # the slot is free again


def test_a_permit_used_as_a_context_manager_is_released_on_error(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(open_s=10)
    trip(breaker)
    clock.now += 10
    with pytest.raises(RuntimeError):
        with breaker.acquire() as permit:  # type: ignore[union-attr]
            raise RuntimeError("cancelled")
    assert breaker.snapshot().probes_in_flight == 0
    permit.record(False, 1.0)  # too late: already released
    assert breaker.state == "half_open"


def test_a_permit_records_only_once(make: Callable[..., CircuitBreaker]) -> None:
    breaker = make(min_calls=2)
    permit = breaker.acquire()
    assert permit is not None
    for _ in range(5):
        permit.record(False, 0.1)
    assert breaker.snapshot().calls == 1
    assert breaker.state == "closed"


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(min_calls=5, open_s=10, half_open_probes=1, probe_successes=1)
    slow_call = breaker.acquire()  # admitted while closed, answers much later
    assert slow_call is not None
    trip(breaker)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is not None
    slow_call.record(False, 30.0)
    assert breaker.state == "half_open"  # the stale failure did not reopen it
    assert breaker.snapshot().probes_in_flight == 1  # nor free the probe's slot
    probe.record(True, 0.1)
    assert breaker.state == "closed"


# -- notification and health -----------------------------------------------------------------------
def test_each_transition_is_notified_exactly_once(make: Callable[..., CircuitBreaker], clock: Clock, transitions: list[Transition]) -> None:
    breaker = make(min_calls=3, open_s=10, probe_successes=1)
    calls(breaker, failed=3)
    for _ in range(3):
        assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    for _ in range(3):
        breaker.snapshot()
        assert breaker.state == "half_open"
    call(breaker, True)
    for _ in range(3):
        assert breaker.state == "closed"
    assert moves(transitions) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [t.at for t in transitions] == [1000.0, 1010.0, 1010.0]
    assert {t.deployment for t in transitions} == {"m1"}


def test_the_callback_sees_the_new_state(clock: Clock) -> None:
    seen: list[str] = []
    breaker = CircuitBreaker("m1", BreakerConfig(min_calls=1), clock=clock, on_change=lambda t: seen.append(breaker.snapshot().state))
    call(breaker, False)
    assert seen == ["open"]


def test_snapshot_reports_rates_and_when_it_opened(make: Callable[..., CircuitBreaker], clock: Clock) -> None:
    breaker = make(min_calls=10, failure_rate=0.5, slow_call_s=2.0)
    calls(breaker, ok=3, latency_s=3.0)
    calls(breaker, ok=3, failed=2)
    snapshot = breaker.snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls, snapshot.opened_at) == (8, 2, 3, None)
    assert (snapshot.error_rate, snapshot.slow_rate) == (pytest.approx(0.25), pytest.approx(0.375))
    clock.now += 1
    calls(breaker, failed=3)
    assert breaker.state == "closed"  # 5 of 11
    call(breaker, False)  # 6 of 12
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.opened_at, snapshot.calls) == ("open", clock.now, 0)


# -- configuration ----------------------------------------------------------------------------------
def test_the_open_time_cap_must_not_be_below_the_open_time() -> None:
    with pytest.raises(ValidationError, match=re.escape("max_open_s (5.0) must be at least open_s (10.0)")):
        BreakerConfig(open_s=10, max_open_s=5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("failure_rate", 0), ("failure_rate", 1.5), ("min_calls", 0), ("window_s", 0), ("half_open_probes", 0), ("slow_call_rate", 2)],
)
def test_out_of_range_settings_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        BreakerConfig(**{field: value})


def test_the_config_is_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        BreakerConfig(window=30)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BreakerConfig().open_s = 1  # type: ignore[misc]


def test_failure_codes_are_codes_the_backends_raise() -> None:
    """The worker classifies ``BackendError.code``: every failure code must be one they use,
    and flow control and rejections must not count."""
    adapters = [*(REPO / "consumers").glob("*backend*.py"), REPO / "consumers" / "streaming.py"]
    sources = "".join(p.read_text() for p in adapters)
    for code in FAILURE_CODES:
        assert f'"{code}"' in sources, code
    assert not FAILURE_CODES & {"rate_limited", "backend_rejected", "invalid_request"}
