"""Which offsets a worker may commit while requests finish out of order.

A worker serves many requests of a partition at once and they finish in any order (a
fast answer overtakes a slow retry). Kafka commits one offset per partition meaning
"everything before this is done", so the committable offset is the lowest offset still
in flight, or one past the highest finished when nothing is in flight. Committing
anything further would lose the unfinished request in a crash; committing less only
replays finished ones, which the dedup memory then skips.
"""

from __future__ import annotations

from collections.abc import Hashable


class OffsetTracker:
    """Per-partition bookkeeping of started and finished offsets."""

    def __init__(self) -> None:
        self._in_flight: dict[Hashable, set[int]] = {}
        self._next: dict[Hashable, int] = {}  # one past the highest offset started
        self._committed: dict[Hashable, int] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        self._in_flight.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finish(self, partition: Hashable, offset: int) -> None:
        self._in_flight.get(partition, set()).discard(offset)

    def in_flight(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return len(self._in_flight.get(partition, ()))
        return sum(len(offsets) for offsets in self._in_flight.values())

    def committable(self) -> dict[Hashable, int]:
        """Offsets to commit now: only partitions whose committable offset moved."""
        out = {}
        for partition, upper in self._next.items():
            pending = self._in_flight.get(partition)
            offset = min(pending) if pending else upper
            if offset > self._committed.get(partition, -1):
                out[partition] = offset
        return out

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Record a successful commit of ``offsets``."""
        for partition, offset in offsets.items():
            self._committed[partition] = max(self._committed.get(partition, -1), offset)

    def forget(self, partitions: set[Hashable] | list[Hashable]) -> None:
        """Partitions revoked in a rebalance: their new owner replays what was unfinished."""
        for partition in partitions:
            self._in_flight.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)
