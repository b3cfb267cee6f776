"""What the simulator did, for ``/health``: calls per wire format, faults injected per
kind (overall and per served model), the latencies it sampled, and how many inputs
each embeddings call carried (a batching client makes fewer calls than requests).

Tests and benchmarks assert on these counters instead of on wall-clock time: a fault
test checks that the simulator injected what the client saw, a latency test reads the
delays the distribution produced rather than timing the calls.

``CallLog`` is the other record, for ``GET /calls``: which Turnout request each call was
made for (its ``X-Client-Request-Id``), when it arrived and for which served model, so a
crash test can tell whether a request was called again after it had been answered.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .sim_faults import CallPlan, Fault

__all__ = ["CallLog", "SimStats"]

LATENCY_WINDOW = 10_000  # latencies kept per served model for the percentiles
CALL_LOG_SIZE = 200_000  # calls kept by ``CallLog``; beyond, the oldest are dropped


@dataclass
class _ModelStats:
    """One served model's share: its calls, its faults, its latencies."""

    calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def snapshot(self) -> dict[str, Any]:
        return {"calls": self.calls, "faults": _all_kinds(self.faults), "latency_ms": latency_summary(list(self.latencies_ms))}


@dataclass
class SimStats:
    """The counters behind ``/health``; ``snapshot()`` is its body."""

    calls: int = 0
    invalid_requests: int = 0
    by_format: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    bursts_started: int = 0
    models: dict[str, _ModelStats] = field(default_factory=dict)
    inputs_per_embedding_call: Counter[int] = field(default_factory=Counter)  # inputs -> calls that carried that many

    def call(self, wire: str) -> None:
        self.calls += 1
        self.by_format[wire] += 1

    def embedded(self, inputs: int) -> None:
        """A valid embeddings call carrying ``inputs`` texts."""
        self.inputs_per_embedding_call[inputs] += 1

    def invalid(self) -> None:
        self.invalid_requests += 1

    def planned(self, served_model: str, plan: CallPlan) -> None:
        """A call's plan: its sampled latency, its faults, a burst it started."""
        model = self.models.setdefault(served_model, _ModelStats())
        model.calls += 1
        model.latencies_ms.append(plan.latency_s * 1000)
        self.bursts_started += plan.burst_started
        for kind in plan.faults:
            self.fault(served_model, kind)

    def fault(self, served_model: str, kind: Fault) -> None:
        self.faults[kind.value] += 1
        self.models.setdefault(served_model, _ModelStats()).faults[kind.value] += 1

    def latencies_ms(self, served_model: str) -> list[float]:
        """The latencies sampled for ``served_model`` (the last ``LATENCY_WINDOW``), in call order."""
        model = self.models.get(served_model)
        return list(model.latencies_ms) if model else []

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "calls": self.calls,
            "calls_by_format": {"openai": self.by_format["openai"], "anthropic": self.by_format["anthropic"]},
            "invalid_requests": self.invalid_requests,
            "faults": _all_kinds(self.faults),
            "bursts_started": self.bursts_started,
            "models": {name: stats.snapshot() for name, stats in sorted(self.models.items())},
            "embeddings": self._embeddings(),
        }

    def _embeddings(self) -> dict[str, Any]:
        sizes = self.inputs_per_embedding_call
        return {
            "calls": sum(sizes.values()),
            "inputs": sum(size * calls for size, calls in sizes.items()),
            "max_inputs_per_call": max(sizes, default=0),
            "inputs_per_call": {str(size): sizes[size] for size in sorted(sizes)},
        }


@dataclass
class CallLog:
    """The calls that named their Turnout request (``X-Client-Request-Id``), in arrival
    order: ``(request_id, served model, arrival time)``, the time as ``time.time()`` (wall
    clock seconds, comparable with other processes' clocks on the machine). The log keeps
    the last ``size`` entries (``CALL_LOG_SIZE``): the oldest are dropped, and counted in
    ``dropped``, so a reader can tell a log that no longer holds the whole run. A call
    without the header is not logged (``/health`` counts every call)."""

    size: int = CALL_LOG_SIZE
    dropped: int = 0
    entries: deque[tuple[str, str | None, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.entries = deque(maxlen=self.size)

    def record(self, request_ids: list[str], served_model: str | None, at: float) -> None:
        """One call, serving ``request_ids`` (one entry each: an embeddings batch names
        several); ``served_model`` is ``None`` for a call whose body could not be read."""
        for request_id in request_ids:
            if len(self.entries) == self.size:
                self.dropped += 1
            self.entries.append((request_id, served_model, at))

    def snapshot(self) -> dict[str, Any]:
        """The body of ``GET /calls``."""
        return {
            "calls": [{"request_id": request_id, "model": model, "at": at} for request_id, model, at in self.entries],
            "dropped": self.dropped,
        }


def _all_kinds(counts: Counter[str]) -> dict[str, int]:
    """Every fault kind, zeros included, so that a reader never meets a missing key."""
    return {kind.value: counts[kind.value] for kind in Fault}


def latency_summary(samples: list[float]) -> dict[str, float]:
    """count, p50, p90, p99 and max of ``samples`` (nearest-rank percentiles), in ms."""
    if not samples:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return {"count": len(ordered), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": round(ordered[-1], 3)}
