"""Small pieces of flow control the worker composes: backoff and dedup (the 429 pause
lives in the rate limiter, ``ratelimit.py``)."""

from __future__ import annotations

import random
from collections import OrderedDict


def backoff_s(retry: int, base_s: float, max_s: float, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor."""
    ceiling = min(max_s, base_s * (2**retry))
    delay = rng.uniform(0, ceiling)
    return max(delay, retry_after_s) if retry_after_s is not None else delay


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
