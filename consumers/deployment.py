"""A fleet deployment as a worker holds it, and the one way a backend call is made on it.

``Deployment`` binds a fleet entry to its backend client and its flow-control state
(concurrency, rate limits, circuit breaker, response cache, embedding batcher), shared
by every request this replica serves on it. ``guarded`` is a single backend call under
that state: a chat completion and a batch of embeddings take the same breaker permit,
the same share of the rate limits and the same concurrency slot, and their outcomes
teach the breaker and the rate limiter the same things. ``serving`` decides what to try
and what to do with the outcome; this module only makes the call safely.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from turnout.schemas.models import ErrorInfo
from turnout.schemas.settings import ModelDeployment

from .backend import BackendError, ChatBackend, EmbeddingResult
from .breaker import FAILURE_CODES, CircuitBreaker, Permit
from .cache import ResponseCache
from .embedding_batch import EmbeddingBatcher
from .ratelimit import RateLimiter
from .structured import StructuredChecker

__all__ = ["CachedAnswer", "Deployment", "Skipped", "guarded"]


@dataclass(frozen=True)
class CachedAnswer:
    content: str | None
    finish_reason: str | None
    validation: str
    embeddings: list[list[float]] = field(default_factory=list)


@dataclass
class Deployment:
    """A fleet entry bound to its backend client and its flow-control state."""

    model_id: str
    config: ModelDeployment
    backend: ChatBackend
    limit: asyncio.Semaphore  # calls in flight (the deployment's concurrency)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    breaker: CircuitBreaker | None = None
    cache: ResponseCache[CachedAnswer] | None = None
    checker: StructuredChecker = field(default_factory=StructuredChecker)
    embedding_batch_max: int = 64  # WorkerSettings.embedding_batch_max
    embedding_batch_wait_ms: float = 10.0  # WorkerSettings.embedding_batch_wait_ms
    batcher: EmbeddingBatcher = field(init=False)

    def __post_init__(self) -> None:
        if self.breaker is None:
            self.breaker = CircuitBreaker(self.model_id)
        self.batcher = EmbeddingBatcher(self._embed_batch, max_texts=self.embedding_batch_max, wait_s=self.embedding_batch_wait_ms / 1000)

    async def _embed_batch(self, texts: list[str], tokens: int, budget_s: float) -> EmbeddingResult:
        """One batch of texts in one guarded call. A provider that reports no usage
        (Gemini's batchEmbedContents) is billed the router's count of the texts."""

        async def call() -> EmbeddingResult:
            result = await self.backend.embed(texts)
            return result if result.input_tokens else dataclasses.replace(result, input_tokens=tokens)

        return await guarded(self, tokens, budget_s, call)


class Skipped(Exception):
    """The deployment cannot take the call in time (its breaker is open, or its rate
    limits would hold the request past what it can afford): no call was made."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class Metered(Protocol):
    """What the breaker and the rate limiter read from a call's result."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def latency_ms(self) -> float: ...


M = TypeVar("M", bound=Metered)


async def guarded(deployment: Deployment, tokens: int, budget_s: float, call: Callable[[], Awaitable[M]]) -> M:
    """Make ``call`` under the deployment's breaker permit, its rate limits (one request
    and ``tokens``, corrected by the reported usage afterwards) and its concurrency.

    Raises ``Skipped`` when the call cannot start within ``budget_s``, and the
    ``BackendError`` of a failed call after the breaker and the rate limiter have learnt
    from it: 5xx, timeouts and malformed bodies count against the breaker, rejections and
    429s do not (a 429's Retry-After pauses the whole deployment instead).
    """
    breaker = deployment.breaker
    assert breaker is not None
    permit = breaker.acquire()
    if permit is None:
        raise Skipped(_skip("circuit_open", f"{deployment.model_id}'s circuit breaker is open"))
    if not deployment.limiter.try_acquire(tokens):  # room now: no task, no timeout (the common case)
        await _wait_for_budget(deployment, tokens, budget_s, permit)
    started = time.perf_counter()
    try:
        async with deployment.limit:
            result = await call()
    except BackendError as exc:
        deployment.limiter.settle(tokens, 0)
        if exc.code in FAILURE_CODES:
            permit.record(False, time.perf_counter() - started)
        else:
            permit.release()  # a rejection or a 429 says nothing about the deployment's health
        if exc.code == "rate_limited" and exc.retry_after_s:
            deployment.limiter.pause_for(exc.retry_after_s)
        raise
    permit.record(True, result.latency_ms / 1000)
    deployment.limiter.settle(tokens, result.input_tokens + result.output_tokens)
    return result


async def _wait_for_budget(deployment: Deployment, tokens: int, budget_s: float, permit: Permit) -> None:
    """Wait in the rate limiter's queue for at most ``budget_s``; ``Skipped`` (and the
    permit back) when the wait would be, or turns out, longer."""
    if deployment.limiter.would_wait_s(tokens) > budget_s:
        permit.release()
        raise Skipped(_limited(deployment, budget_s))
    try:
        await asyncio.wait_for(deployment.limiter.acquire(tokens), timeout=budget_s)
    except TimeoutError:
        permit.release()
        raise Skipped(_limited(deployment, budget_s)) from None


def _skip(code: str, message: str) -> ErrorInfo:
    return ErrorInfo(code=code, message=message, retryable=True)


def _limited(deployment: Deployment, budget_s: float) -> ErrorInfo:
    paused = deployment.limiter.paused_s()
    why = f"paused for {paused:.1f}s more by a 429 Retry-After" if paused else "at its rate limit"
    return _skip("rate_limited", f"{deployment.model_id} is {why}; the request cannot wait past {budget_s:.1f}s")
