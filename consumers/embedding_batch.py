"""Micro-batches of embedding requests: the texts of many requests in one backend call.

An embeddings endpoint takes many texts per call (OpenAI up to 2048), and a call costs
one request of the provider's rate limit and about one round trip whether it carries
one text or sixty. The worker serves records concurrently, each as its own task; the
deployment's ``EmbeddingBatcher`` lets the tasks that embed at about the same time
share one call.

- A batch opens with its first request and goes out when it holds ``max_texts`` texts
  or ``wait_s`` after it opened, whichever comes first. A request is never split: one
  that would overflow the open batch sends that batch first and opens the next, and one
  with more than ``max_texts`` texts goes alone.
- The texts are sent in the order the requests joined, and each request gets back its
  own vectors in the order of its own texts.
- A provider reports one token count per call. Each request is billed the share of it
  that its texts hold of the batch's characters (characters are the closest measure of
  tokens there is without the provider's tokenizer), rounded cumulatively so that the
  shares add up to exactly what the provider reported. Each request also reports the
  call's latency as its own.
- The call itself is the caller's ``send(texts, tokens, budget_s)``: in the worker it
  runs under the deployment's breaker, rate limits and concurrency as one call, with the
  batch's total token estimate and the tightest time budget of its members. Whatever it
  raises, every request of the batch receives, and then retries or moves on along its
  own plan.
- A request whose caller stopped waiting (its task was cancelled) before the batch
  went out is left out of it.
- A request that joins with its ``request_id`` is named in the call's
  ``X-Client-Request-Id`` header: ``send`` runs with ``backend.embedding_request_ids``
  set to the batch's ids in the order the requests joined, and ``HttpChatBackend.embed``
  sends them comma-separated, the first 20 at most (``backend.client_request_ids``). A
  context variable rather than an argument, so that ``send`` keeps its signature: the
  deployment's guarded call, which runs in the batch's own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .backend import BackendError, EmbeddingResult, embedding_request_ids

__all__ = ["EmbeddingBatcher", "Send", "split"]

Send = Callable[[list[str], int, float], Awaitable[EmbeddingResult]]
"""``send(texts, tokens, budget_s)``: one backend call for ``texts``, whose router token
estimate is ``tokens``, that may not wait longer than ``budget_s`` to start."""


@dataclass
class _Waiting:
    texts: list[str]
    tokens: int
    budget_s: float
    answer: asyncio.Future[EmbeddingResult]
    request_id: str | None = None


class EmbeddingBatcher:
    """Gathers concurrent ``embed`` calls into batches; one per deployment and process."""

    def __init__(self, send: Send, *, max_texts: int = 64, wait_s: float = 0.01) -> None:
        if max_texts < 1 or wait_s < 0:
            raise ValueError(f"max_texts must be at least 1 and wait_s at least 0 (got {max_texts}, {wait_s})")
        self.max_texts = max_texts
        self.wait_s = wait_s
        self._send = send
        self._open: list[_Waiting] = []
        self._open_texts = 0
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task[None]] = set()  # held, so a running call is never garbage-collected

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    async def embed(self, texts: list[str], *, tokens: int, budget_s: float, request_id: str | None = None) -> EmbeddingResult:
        """``texts``' vectors and their share of the usage, from the call their batch made,
        which names ``request_id`` among the requests it serves. Raises what that call raised."""
        loop = asyncio.get_running_loop()
        if self._open and self._open_texts + len(texts) > self.max_texts:
            self._flush()
        waiting = _Waiting(list(texts), tokens, budget_s, loop.create_future(), request_id)
        self._open.append(waiting)
        self._open_texts += len(texts)
        if self._open_texts >= self.max_texts:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._flush)
        return await waiting.answer

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [w for w in self._open if not w.answer.done()]  # done: its caller was cancelled
        self._open, self._open_texts = [], 0
        if batch:
            task = asyncio.create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[_Waiting]) -> None:
        texts = [text for waiting in batch for text in waiting.texts]
        embedding_request_ids.set(tuple(w.request_id for w in batch if w.request_id is not None))  # this task's own context
        try:
            result = await self._send(texts, sum(w.tokens for w in batch), min(w.budget_s for w in batch))
            shares = split(result, [w.texts for w in batch])
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.answer.cancel()
            raise
        except Exception as exc:  # the batch failed: so did each request in it
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        for waiting, share in zip(batch, shares):
            if not waiting.answer.done():
                waiting.answer.set_result(share)


def split(result: EmbeddingResult, groups: Sequence[Sequence[str]]) -> list[EmbeddingResult]:
    """One result per group of texts: its vectors, its share of the tokens by characters
    (by number of texts if there are no characters at all), the call's latency."""
    sizes = [len(group) for group in groups]
    if len(result.vectors) != sum(sizes):
        raise BackendError(
            "malformed_response", f"{sum(sizes)} texts sent, {len(result.vectors)} vectors came back", retryable=True
        )
    weights = [sum(len(text) for text in group) for group in groups]
    if not any(weights):
        weights = sizes
    total, seen, billed, start = sum(weights), 0, 0, 0
    shares = []
    for size, weight in zip(sizes, weights):
        seen += weight
        upto = round(result.input_tokens * seen / total) if total else 0
        shares.append(EmbeddingResult(result.vectors[start : start + size], upto - billed, result.latency_ms))
        billed, start = upto, start + size
    return shares
