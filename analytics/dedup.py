"""The sink's memory of the row ids it inserted recently, bounded by a count.

Why the sink deduplicates at all, when the tables are ``ReplacingMergeTree``s keyed by
those ids: the replacing engine collapses a redelivered row only when parts merge (or
at query time with ``FINAL``), while a materialized view computes its rollup from each
*inserted block*. A replayed event would be summed into the per-minute rollups a second
time and stay there. So a row whose id the sink has already inserted must not be
inserted again; see ``sink.py`` for where the ids come from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds:
    """A set of at most ``max_ids`` ids; adding one more forgets the oldest.

    The bound is a count, not an age, so that memory is fixed whatever the traffic: the
    sink keeps ``max_ids`` strings per table (about 100 bytes each), and how far back
    that reaches depends on the rate. A set and a queue of the same strings, rather than
    one ordered dict: forgetting from the front of a plain dict slows down as deleted
    slots pile up ahead of the first live one.
    """

    def __init__(self, max_ids: int) -> None:
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids}")
        self.max_ids = max_ids
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """Remember ``item``; ``False`` when it was already remembered (a duplicate)."""
        if item in self._ids:
            return False
        self._ids.add(item)
        self._order.append(item)
        if len(self._order) > self.max_ids:
            self._ids.discard(self._order.popleft())
        return True

    def forget(self, item: str) -> None:
        """Stop remembering ``item``: it was taken, but its row will not be inserted (its
        message turned out not to decode), so a valid copy must not count as a duplicate.
        Its place in the queue stays until its turn to be forgotten comes: the bound holds."""
        self._ids.discard(item)

    def update(self, items: Iterable[str]) -> None:
        """Remember ``items``, oldest first (so that the bound forgets the oldest)."""
        for item in items:
            self.add(item)
