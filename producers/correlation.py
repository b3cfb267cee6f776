"""Matching responses to the requests that wait for them, by request id.

A reply topic carries the answers of many requests (and, at least once, sometimes the
same answer twice); the reader hands each decoded response to ``Correlator.resolve`` and
every waiter registered for that id gets it. Waiting has a deadline: a ``ResponseTimeout``
names the ids that got nothing, so the caller can tell which requests to look for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable
from typing import Any

from turnout.schemas.models import InferenceResponse


class ResponseTimeout(TimeoutError):
    """No response within ``timeout_s`` for ``missing`` (the ids, in the order asked)."""

    def __init__(self, missing: list[str], timeout_s: float) -> None:
        shown = ", ".join(missing[:5]) + (f" … and {len(missing) - 5} more" if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} request(s) got no response within {timeout_s:g}s: {shown}")
        self.missing = missing
        self.timeout_s = timeout_s


class Correlator:
    """One future per awaited request id; the first response for an id resolves it."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[InferenceResponse]] = {}

    def expect(self, request_id: str) -> asyncio.Future[InferenceResponse]:
        """The future for ``request_id``, created now if nobody waits for it yet. Register
        *before* publishing, so that a response arriving at once is not missed."""
        future = self._waiting.get(request_id)
        if future is None:
            future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        return future

    def resolve(self, response: InferenceResponse) -> bool:
        """Hand ``response`` to its waiter; ``False`` when nobody waits (another client's
        request, or a redelivered duplicate of one already answered)."""
        future = self._waiting.get(response.id)
        if future is None or future.done():
            return False
        future.set_result(response)
        return True

    def forget(self, request_ids: Iterable[str]) -> None:
        for request_id in request_ids:
            self._waiting.pop(request_id, None)

    async def gather(self, request_ids: list[str], timeout_s: float) -> dict[str, InferenceResponse]:
        """The responses to ``request_ids``; ``ResponseTimeout`` naming the missing ones.
        On a timeout the ids stay registered: a later ``gather`` may still get them."""
        futures = {rid: self.expect(rid) for rid in request_ids}
        if futures:
            await asyncio.wait(futures.values(), timeout=timeout_s)
        missing = [rid for rid, future in futures.items() if not future.done()]
        if missing:
            raise ResponseTimeout(missing, timeout_s)
        self.forget(request_ids)
        return {rid: future.result() for rid, future in futures.items()}

    def pending(self, request_id: str, timeout_s: float) -> PendingResponse:
        return PendingResponse(self, request_id, timeout_s)


class PendingResponse:
    """``await pending`` gives the response to one published request, or raises
    ``ResponseTimeout`` naming it once ``timeout_s`` (counted from the await) has passed."""

    def __init__(self, correlator: Correlator, request_id: str, timeout_s: float) -> None:
        self.correlator = correlator
        self.request_id = request_id
        self.timeout_s = timeout_s
        correlator.expect(request_id)

    def __await__(self) -> Generator[Any, None, InferenceResponse]:
        responses = yield from self.correlator.gather([self.request_id], self.timeout_s).__await__()
        return responses[self.request_id]

    def __repr__(self) -> str:
        return f"PendingResponse({self.request_id!r}, timeout_s={self.timeout_s:g})"
