"""A streamed request's answer, published as it is written: text pieces in,
``turnout.ResponseChunk`` records out.

A caller that sets ``InferenceRequest.stream`` reads the answer on its reply topic while
the backend writes it. Providers send one event per token, and one Kafka record per
token would make a streamed request cost as many messages as its answer has tokens, so
``ChunkBatcher`` gathers one backend call's pieces (``StreamChunkConfig``): the first
piece goes alone at once (the caller's time to first token is the backend's, not the
batching's), the others once ``max_deltas`` are pending or the oldest of them has
waited ``max_interval_ms``.

Chunks carry the attempt that wrote them (the call's index among the slip's attempts)
and their ``seq`` within it. A call that fails after some chunks went out is retried,
or the slip moves to a fallback, and the next call's chunks come with a higher attempt:
a reader starts the text afresh on a higher attempt (or on ``seq`` 0, which a worker
that restarted the same attempt after a crash sends again). What a failed call had
still pending is dropped, never published. Once the answer is decided, ``ChunkStream``
adds one chunk of a still higher attempt holding the whole text whenever the last call's
chunks do not add up to it, so that the latest attempt's chunks always spell an ``ok``
answer. The final ``InferenceResponse`` stays the whole answer (usage, cost, routing);
``producers.streaming`` is the reader's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from turnout.schemas.models import InferenceRequest, InferenceResponse, ResponseChunk
from turnout.schemas.worker_config import StreamChunkConfig

__all__ = ["ChunkBatcher", "ChunkStream", "Emit", "Scheduler"]

Emit = Callable[[ResponseChunk], None]
"""Takes a chunk to publish; must not block (the worker queues it for its producer)."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Scheduler = Callable[[float, Callable[[], None]], Cancellable]
"""``call_later(delay_s, callback)``: the event loop's by default, a fake clock's in tests."""


class ChunkBatcher:
    """One backend call's text pieces gathered into chunks for ``emit``. It is the call's
    ``on_text``; the caller ends it with ``flush`` when the call answered (the rest goes
    out) or ``discard`` when it failed (the rest is dropped, and no timer fires later)."""

    def __init__(
        self,
        request: InferenceRequest,
        attempt: int,
        model: str,
        config: StreamChunkConfig,
        emit: Emit,
        schedule: Scheduler | None = None,
    ) -> None:
        self._request_id, self._tenant, self._attempt, self._model = request.id, request.tenant, attempt, model
        self._max_deltas, self._max_wait_s = config.max_deltas, config.max_interval_ms / 1000
        self._emit = emit
        self._schedule = schedule or asyncio.get_running_loop().call_later
        self._pending: list[str] = []
        self._sent: list[str] = []
        self._timer: Cancellable | None = None
        self.seq = 0  # the next chunk's; also how many were emitted

    @property
    def text(self) -> str:
        """What the chunks emitted so far add up to."""
        return "".join(self._sent)

    def __call__(self, piece: str) -> None:
        self._pending.append(piece)
        if self.seq == 0 or len(self._pending) >= self._max_deltas:
            self.flush()
        elif self._timer is None:
            self._timer = self._schedule(self._max_wait_s, self.flush)

    def flush(self) -> None:
        """Emit what is pending as one chunk (nothing when nothing is)."""
        self._cancel_timer()
        if not self._pending:
            return
        delta = "".join(self._pending)
        self._pending.clear()
        self._sent.append(delta)
        chunk = ResponseChunk(
            request_id=self._request_id, tenant=self._tenant, attempt=self._attempt, seq=self.seq, delta=delta, model=self._model
        )
        self.seq += 1
        self._emit(chunk)

    def discard(self) -> None:
        """The call failed: what is pending belongs to an answer nobody will read."""
        self._cancel_timer()
        self._pending.clear()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ChunkStream:
    """One streamed request's chunks on this worker: a ``ChunkBatcher`` per backend call
    (``call``), and ``settle`` once the answer is decided, so that the chunks alone tell
    a reader the answer: when the last call's chunks do not add up to an ``ok``
    response's content (a cache hit, which made no call; a server that answered one JSON
    body despite ``stream``; a structured answer repaired after it was streamed), one
    more chunk follows, of an attempt above every call's, holding the whole content."""

    def __init__(self, request: InferenceRequest, first_attempt: int, model: str, config: StreamChunkConfig, emit: Emit) -> None:
        self._request, self._model, self._config, self._emit = request, model, config, emit
        self._next_attempt = first_attempt  # above every call made so far: the slip's attempts count
        self._last: ChunkBatcher | None = None

    def call(self, attempt: int) -> ChunkBatcher:
        self._last = ChunkBatcher(self._request, attempt, self._model, self._config, self._emit)
        self._next_attempt = attempt + 1
        return self._last

    def settle(self, response: InferenceResponse) -> None:
        if response.status != "ok" or response.content is None:
            return  # an error: the reader reports it after whatever it showed
        if self._last is not None and self._last.text == response.content:
            return
        request_id, tenant = self._request.id, self._request.tenant
        model = response.model or self._model
        self._emit(ResponseChunk(request_id=request_id, tenant=tenant, attempt=self._next_attempt, seq=0, delta=response.content, model=model))
