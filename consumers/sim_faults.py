"""What goes wrong on one simulated call: the fault plan, decided up front.

Every random decision for a call is taken here, at the call's arrival, from the
simulator's one seeded ``random.Random``, so that a run with a ``seed`` repeats itself
exactly whichever wire format (OpenAI or Anthropic) the calls use. The decisions are
taken in this order, each drawing from the generator only when its fault is enabled
(a rate above zero), and the first that settles the answer ends the plan:

1. latency: the delay sampled from the profile's distribution (``fixed`` draws
   nothing, ``normal`` one Gaussian, ``lognormal`` one log-normal);
2. hang (``timeout_rate``): the call waits ``hang_s`` instead of its latency, then goes on;
3. burst (``burst_rate``, ``burst_length``): a call of a served model whose burst is
   still running fails with that burst's 5xx without drawing; otherwise a draw may start
   a burst (one more draw picks its status when ``burst_statuses`` has several);
4. status (``rate_limit_rate``, ``error_rate``): one draw answers 429, 500 or neither;
5. body (``truncate_rate``, ``malformed_rate``): one draw cuts the 200 body mid-JSON or
   replaces it with an HTML page;
6. confidence (``low_confidence_rate``): one draw makes the answer an unsure one, whose
   tokens come with low probabilities (seen by a client that asks for ``logprobs``);
7. output, only for structured-output requests (``schema_violation_rate``,
   ``near_json_rate``): one draw breaks the schema or answers near-JSON (one more draw
   picks the near-JSON style).

Which draws a call takes thus depends only on its profile's rates, on its own earlier
decisions and on whether its model is in a burst; when calls overlap, their order of
arrival decides which call meets which draws.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from turnout.schemas.settings import SimulatorProfile

from .sim_json import NEAR_JSON_STYLES

__all__ = ["CallPlan", "Fault", "FaultPlanner", "Failure", "sample_latency_s"]


class Fault(enum.StrEnum):
    """The kinds of fault the simulator injects; the names of its ``/health`` counters."""

    TIMEOUT = "timeout"
    BURST = "burst"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    SCHEMA_VIOLATION = "schema_violation"
    NEAR_JSON = "near_json"
    LOW_CONFIDENCE = "low_confidence"


class Failure(enum.StrEnum):
    """An error answer in format-neutral terms; each wire format gives it its status and body."""

    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502
    UNAVAILABLE = "unavailable"  # 503 (Anthropic: 529 overloaded_error)
    INVALID_REQUEST = "invalid_request"  # 400
    AUTHENTICATION = "authentication"  # 401


_STATUS_FAILURES = {Fault.RATE_LIMITED: Failure.RATE_LIMITED, Fault.SERVER_ERROR: Failure.SERVER_ERROR}
_BURST_FAILURES = {500: Failure.SERVER_ERROR, 502: Failure.BAD_GATEWAY, 503: Failure.UNAVAILABLE}


@dataclass(frozen=True)
class CallPlan:
    """The faults decided for one call. ``faults`` are injected whatever the request
    (hang, burst, status, body); ``failure`` set means an error answer; otherwise
    ``body_fault`` or ``output_fault`` (at most one) shapes the 200. An output fault is
    only a wish: it is injected, and counted, when the request's schema allows it.
    ``unsure`` answers carry low token probabilities (``Fault.LOW_CONFIDENCE``)."""

    latency_s: float
    delay_s: float
    faults: tuple[Fault, ...] = ()
    failure: Failure | None = None
    body_fault: Fault | None = None
    output_fault: Fault | None = None
    near_json_style: str | None = None
    burst_started: bool = False
    unsure: bool = False


def sample_latency_s(profile: SimulatorProfile, rng: random.Random) -> float:
    """One latency from the profile's distribution, in seconds (never negative)."""
    if profile.latency_distribution == "fixed":
        return profile.latency_ms / 1000
    if profile.latency_distribution == "lognormal":
        return rng.lognormvariate(math.log(profile.latency_ms), profile.latency_sigma) / 1000
    return max(0.0, rng.gauss(profile.latency_ms, profile.latency_jitter_ms)) / 1000


@dataclass
class _Burst:
    remaining: int = 0
    failure: Failure = Failure.SERVER_ERROR


@dataclass
class FaultPlanner:
    """Decides each call's faults; holds the one piece of state faults need across calls,
    the running burst of each served model (a burst is deployment-wide: every call to that
    model fails until it ends, whichever format the calls use)."""

    rng: random.Random
    _bursts: dict[str, _Burst] = field(default_factory=dict)

    def plan(self, served_model: str, profile: SimulatorProfile, *, structured: bool) -> CallPlan:
        rng = self.rng
        latency_s = sample_latency_s(profile, rng)
        hung = profile.timeout_rate > 0 and rng.random() < profile.timeout_rate
        timing = {"latency_s": latency_s, "delay_s": profile.hang_s if hung else latency_s}
        faults: tuple[Fault, ...] = (Fault.TIMEOUT,) if hung else ()

        burst = self._burst_failure(served_model, profile)
        if burst is not None:
            return CallPlan(**timing, faults=(*faults, Fault.BURST), failure=burst[0], burst_started=burst[1])
        status = _pick(rng, (Fault.RATE_LIMITED, profile.rate_limit_rate), (Fault.SERVER_ERROR, profile.error_rate))
        if status is not None:
            return CallPlan(**timing, faults=(*faults, status), failure=_STATUS_FAILURES[status])
        body = _pick(rng, (Fault.TRUNCATED, profile.truncate_rate), (Fault.MALFORMED, profile.malformed_rate))
        if body is not None:
            return CallPlan(**timing, faults=(*faults, body), body_fault=body)
        unsure = profile.low_confidence_rate > 0 and rng.random() < profile.low_confidence_rate
        faults += (Fault.LOW_CONFIDENCE,) if unsure else ()
        if not structured:
            return CallPlan(**timing, faults=faults, unsure=unsure)
        output = _pick(rng, (Fault.SCHEMA_VIOLATION, profile.schema_violation_rate), (Fault.NEAR_JSON, profile.near_json_rate))
        style = rng.choice(NEAR_JSON_STYLES) if output is Fault.NEAR_JSON else None
        return CallPlan(**timing, faults=faults, output_fault=output, near_json_style=style, unsure=unsure)

    def _burst_failure(self, served_model: str, profile: SimulatorProfile) -> tuple[Failure, bool] | None:
        """The failure of a running burst (one call of it used up), or of one this call
        starts (then True beside it)."""
        burst = self._bursts.setdefault(served_model, _Burst())
        if burst.remaining > 0:
            burst.remaining -= 1
            return burst.failure, False
        if profile.burst_rate <= 0 or self.rng.random() >= profile.burst_rate:
            return None
        statuses = profile.burst_statuses
        status = statuses[0] if len(statuses) == 1 else self.rng.choice(statuses)
        burst.remaining, burst.failure = profile.burst_length - 1, _BURST_FAILURES[status]
        return burst.failure, True

    def bursting(self, served_model: str) -> int:
        """Calls still to fail in ``served_model``'s running burst (0 when none runs)."""
        burst = self._bursts.get(served_model)
        return burst.remaining if burst else 0


def _pick(rng: random.Random, *choices: tuple[Fault, float]) -> Fault | None:
    """One draw among mutually exclusive faults with these rates (summing to at most 1)."""
    if not any(rate > 0 for _, rate in choices):
        return None
    roll, edge = rng.random(), 0.0
    for fault, rate in choices:
        edge += rate
        if roll < edge:
            return fault
    return None
