"""The worker's typed configuration: breakers, the response cache, structured output.

Kept with the other settings (``schemas/``) so that ``WorkerSettings`` can nest them and
a configuration error names the key; the logic that reads them lives in ``consumers/``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .section import Section


class BreakerConfig(Section):
    """When a deployment's breaker trips and how it recovers."""

    window_s: float = Field(default=30.0, gt=0, description="sliding window over which call outcomes are counted")
    min_calls: int = Field(default=20, ge=1, description="calls the window must hold before the breaker judges the rates")
    failure_rate: float = Field(default=0.5, gt=0, le=1, description="share of failed calls in the window that trips the breaker")
    slow_call_s: float = Field(
        default=20.0, gt=0, description="a call at least this long counts as slow; set it per deployment above its typical latency"
    )
    slow_call_rate: float | None = Field(
        default=0.8, gt=0, le=1, description="share of slow calls in the window that trips the breaker; unset disables slow-call tripping"
    )
    open_s: float = Field(default=10.0, gt=0, description="how long the breaker stays open after it first trips")
    max_open_s: float = Field(default=300.0, gt=0, description="cap of the open time, which doubles on every failed probe")
    half_open_probes: int = Field(default=1, ge=1, description="probe calls admitted at once while half-open")
    probe_successes: int = Field(default=2, ge=1, description="healthy probes that close the breaker again")

    @model_validator(mode="after")
    def _cap_above_base(self) -> BreakerConfig:
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s ({self.max_open_s}) must be at least open_s ({self.open_s})")
        return self


class CacheConfig(Section):
    """The worker's response cache."""

    max_entries: int = Field(default=10_000, ge=1, description="entries kept; the least recently used is evicted beyond it")
    ttl_s: float = Field(default=3600.0, gt=0, description="seconds an answer is served after it was stored")
    cache_sampled: bool = Field(default=False, description="also cache answers to requests with temperature > 0")


class StructuredConfig(Section):
    """How answers to requests with a ``response_schema`` are checked."""

    repair: bool = Field(default=True, description="repair near-JSON (fences, trailing commas, quotes, cut-off brackets) before judging")
    check_formats: bool = Field(
        default=False, description="enforce 'format' (date-time, email, …); off by default, as JSON Schema makes it an annotation"
    )
    max_errors: int = Field(default=10, ge=1, description="validation errors reported (and shown in a re-ask) at most")
    max_error_chars: int = Field(default=200, ge=40, description="length of one reported error at most")
    validator_cache_size: int = Field(default=256, ge=1, description="compiled validators kept, one per distinct schema")


class StreamChunkConfig(Section):
    """How a streamed answer's text deltas are gathered into ``turnout.ResponseChunk``
    records: a provider sends one event per token, and one Kafka record per token would
    multiply a streamed request's messages by the answer's length. The first delta of a
    call goes alone at once (the caller's time to first token is not delayed by batching);
    the others wait until ``max_deltas`` are pending or ``max_interval_ms`` has passed since
    the oldest of them."""

    max_interval_ms: float = Field(
        default=50.0, gt=0, le=5_000, description="longest a pending delta waits before its chunk is published (what a reader sees as stutter)"
    )
    max_deltas: int = Field(
        default=16, ge=1, le=4_096, description="provider deltas (about one token each) gathered into one chunk at most; 1 publishes every delta"
    )
