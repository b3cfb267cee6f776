"""Small pieces of flow control the worker composes: backoff, a shared pause, dedup."""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict


def backoff_s(retry: int, base_s: float, max_s: float, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor."""
    ceiling = min(max_s, base_s * (2**retry))
    delay = rng.uniform(0, ceiling)
    return max(delay, retry_after_s) if retry_after_s is not None else delay


class DeploymentPause:
    """A 429's Retry-After pauses every call to the deployment, not only the one request."""

    def __init__(self) -> None:
        self._until = 0.0

    def pause_for(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    def remaining_s(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def wait(self) -> None:
        remaining = self.remaining_s()
        if remaining > 0:
            await asyncio.sleep(remaining)


class AnsweredIds:
    """Bounded memory of request ids already answered, so redelivery is not paid twice."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._ids

    def add(self, request_id: str) -> None:
        if self._capacity == 0:
            return
        self._ids[request_id] = None
        self._ids.move_to_end(request_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
