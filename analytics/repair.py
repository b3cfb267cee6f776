"""The tables the materialized views derive from the raw events, made to agree with
those events again after an insert that landed only in part.

Why this is needed: ClickHouse writes an insert's part into ``routing_events`` and the
parts its views derive from it (the per-minute and per-hour rollups, the latency states
fed from the per-minute rollup, the request sample and its sparse copy) one after the
other, not atomically. A sink killed between them, or an insert that failed after the
raw part was written, leaves raw rows that a rollup never counted; and the sink then
rightly skips those ids when it replays the batch, so nothing would ever add them. The
crash test saw it: 3,000 completions stored, 2,973 in the per-minute rollup.

So on every partition assignment (a previous owner may have died mid-insert; in one
sink of the group, the owner of the events topic's first partition, so that two do not
rebuild the same buckets at once) and after an insert that found some of its rows
already stored, the sink calls ``repair``: for
the time buckets of the raw rows inserted in the last ``window_s`` seconds (counted back
from the newest insert, so that a sink down for longer than the window still looks at
its own last inserts), every derived table is compared with its source, and a bucket
that disagrees is rebuilt:

- an aggregated table (``events`` counted per bucket) loses the bucket's rows and gets
  them again, computed from the source bucket's rows;
- a table of rows (a ``ReplacingMergeTree`` keyed by request, kind and attempt) gets the
  rows it lacks; a copy of a row it holds would be collapsed anyway.

The rows are computed by each view's own ``SELECT`` (read from ``system.tables``, run
over the source's rows of those buckets read ``FINAL``), so a repaired bucket is exactly
what the views would have written, whatever a later migration makes them write. Tables
are visited in the order the views feed each other (the latency states after the
per-minute rollup they come from, the sparse sample after the sample), and rounds repeat
until one finds nothing to mend, because another sink may insert into the same buckets
meanwhile: a race shows up as a mismatch in the next round, which mends it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

log = logging.getLogger("turnout.sink.repair")

RAW = "routing_events"


@dataclass(frozen=True)
class Derived:
    """What ``view`` writes into ``target`` from ``source``, and how to check it.

    ``block_s`` is the longest bucket of the target, in seconds: the buckets checked are
    those of the whole ``block_s``-aligned blocks that hold a recent raw row, so that an
    hour's bucket is compared with the whole hour of its source. An aggregated target
    names the columns of a ``bucket`` and counts ``events`` in each; a target of rows
    names the ``key`` of a row instead."""

    view: str
    target: str
    source: str
    source_time: str
    time: str
    block_s: int
    bucket: tuple[str, ...] = ()
    key: tuple[str, ...] = ()


# in the order the views feed each other: a table after its source
DERIVED = (
    Derived("routing_rollup_1m_mv", "routing_rollup_1m", RAW, "ts", "minute", 60, bucket=("minute",)),
    Derived("routing_latency_mv", "routing_latency", "routing_rollup_1m", "minute", "period", 21600, bucket=("period_s", "period")),
    Derived("routing_rollup_1h_mv", "routing_rollup_1h", RAW, "ts", "hour", 3600, bucket=("hour",)),
    Derived("request_sample_events_mv", "request_sample_events", RAW, "ts", "ts", 60, key=("request_id", "kind", "attempt")),
    Derived("request_sample_events_sparse_mv", "request_sample_events_sparse", "request_sample_events", "ts", "ts", 60,
            key=("request_id", "kind", "attempt")),
)


@dataclass
class RepairReport:
    """What ``repair`` found and mended: per target, the buckets rebuilt (aggregated
    tables) or the rows restored (tables of rows), over every round."""

    rounds: int = 0
    checked_minutes: int = 0
    rebuilt_buckets: dict[str, int] = field(default_factory=dict)
    restored_rows: dict[str, int] = field(default_factory=dict)

    @property
    def mended(self) -> bool:
        return bool(self.rebuilt_buckets or self.restored_rows)

    def __str__(self) -> str:
        if not self.mended:
            return f"{self.checked_minutes} minutes of recent events checked: every derived table agrees with them"
        parts = [f"{target}: {n} buckets rebuilt" for target, n in self.rebuilt_buckets.items()]
        parts += [f"{target}: {n} rows restored" for target, n in self.restored_rows.items()]
        return f"{self.checked_minutes} minutes of recent events checked in {self.rounds} rounds; " + "; ".join(parts)


def recent_minutes(client: Client, database: str, window_s: float) -> list[int]:
    """The minutes (Unix seconds) of the raw rows inserted in the ``window_s`` seconds up
    to the newest insert."""
    rows = client.query(
        f"SELECT DISTINCT toUInt32(toStartOfMinute(ts)) FROM {database}.{RAW} "
        f"WHERE inserted_at >= (SELECT max(inserted_at) FROM {database}.{RAW}) - toIntervalMillisecond({int(window_s * 1000)})"
    ).result_rows
    return sorted(row[0] for row in rows)


def blocks_of(minutes: list[int], block_s: int) -> list[int]:
    """The ``block_s``-aligned blocks (their starts, Unix seconds) that hold ``minutes``."""
    return sorted({minute // block_s * block_s for minute in minutes})


def in_blocks(column: str, blocks: list[int], block_s: int) -> str:
    """SQL: ``column`` (a time) lies in one of ``blocks``; the range first, so that the
    table's key prunes the parts outside it."""
    listed = ", ".join(map(str, blocks))
    return (
        f"{column} >= toDateTime({blocks[0]}, 'UTC') AND {column} < toDateTime({blocks[-1] + block_s}, 'UTC') "
        f"AND intDiv(toUInt32({column}), {block_s}) * {block_s} IN ({listed})"
    )


def values_in(columns: tuple[str, ...], values: set[tuple[int, ...]]) -> str:
    """SQL: ``columns`` (as Unix seconds or integers) take one of ``values``."""
    exprs = [f"toUInt64({column})" for column in columns]
    if len(exprs) == 1:
        return f"{exprs[0]} IN ({', '.join(str(value[0]) for value in sorted(values))})"
    listed = ", ".join("(" + ", ".join(map(str, value)) + ")" for value in sorted(values))
    return f"({', '.join(exprs)}) IN ({listed})"


def over_source(view_select: str, database: str, derived: Derived, blocks: list[int]) -> str:
    """The view's ``SELECT`` run over its source's rows in ``blocks`` only, read
    ``FINAL`` (a redelivered raw row not yet merged away counts once)."""
    table = re.compile(rf"FROM {re.escape(database)}\.{re.escape(derived.source)}\b")  # not a longer name it begins
    if len(table.findall(view_select)) != 1:
        raise ValueError(f"{derived.view} does not read {database}.{derived.source} once: {view_select}")
    rows = f"FROM (SELECT * FROM {database}.{derived.source} FINAL WHERE {in_blocks(derived.source_time, blocks, derived.block_s)}) AS {derived.source}"
    return table.sub(lambda _: rows, view_select)


class Repairer:
    """One store's derived tables, checked and mended (see the module's docstring)."""

    def __init__(self, client: Client, database: str) -> None:
        self.client, self.database = client, database
        self._selects: dict[str, str] = {}

    def view_select(self, derived: Derived) -> str:
        """The ``SELECT`` of ``derived.view``, as ClickHouse stores it; ``LookupError``
        naming every view of ``DERIVED`` the store lacks (not migrated)."""
        if not self._selects:
            self._selects = dict(self.client.query(
                "SELECT name, as_select FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'",
                parameters={"db": self.database},
            ).result_rows)
        missing = [d.view for d in DERIVED if d.view not in self._selects]
        if missing:
            self._selects = {}  # ask again next time: a migration may have run meanwhile
            raise LookupError(f"{self.database} has no view {', '.join(missing)}: run `turnout migrate` first")
        return self._selects[derived.view]

    def repair(self, window_s: float, max_rounds: int = 3) -> RepairReport:
        report = RepairReport()
        self.view_select(DERIVED[0])  # the store is migrated, or say so before reading anything
        minutes = recent_minutes(self.client, self.database, window_s)
        report.checked_minutes = len(minutes)
        if not minutes:
            return report
        while report.rounds < max_rounds:
            report.rounds += 1
            mended = 0
            for derived in DERIVED:
                blocks = blocks_of(minutes, derived.block_s)
                if derived.bucket:
                    n = self.rebuild_disagreeing_buckets(derived, blocks)
                    tally = report.rebuilt_buckets
                else:
                    n = self.restore_missing_rows(derived, blocks)
                    tally = report.restored_rows
                if n:
                    tally[derived.target] = tally.get(derived.target, 0) + n
                    mended += n
            if not mended:
                break
        else:
            log.warning("derived tables still disagree with the raw events after %d rounds (another sink inserting into the same minutes?); "
                        "the next partition assignment checks again", max_rounds)
        return report

    def disagreeing_buckets(self, derived: Derived, blocks: list[int]) -> set[tuple[int, ...]]:
        """The buckets whose ``events`` differ between the target and what the view makes
        of the source (a bucket missing on one side counts zero there)."""
        bucket = ", ".join(f"toUInt64({column})" for column in derived.bucket)
        expected = self._counts(f"SELECT {bucket}, sum(events) FROM ({self._derived_rows(derived, blocks)}) GROUP BY {bucket}")
        actual = self._counts(
            f"SELECT {bucket}, sum(events) FROM {self.database}.{derived.target} "
            f"WHERE {in_blocks(derived.time, blocks, derived.block_s)} GROUP BY {bucket}"
        )
        return {key for key in expected.keys() | actual.keys() if expected.get(key, 0) != actual.get(key, 0)}

    def rebuild_disagreeing_buckets(self, derived: Derived, blocks: list[int]) -> int:
        buckets = self.disagreeing_buckets(derived, blocks)
        if not buckets:
            return 0
        log.warning("%s disagrees with %s in %d buckets: rebuilding them", derived.target, derived.source, len(buckets))
        chosen = values_in(derived.bucket, buckets)
        target = f"{self.database}.{derived.target}"
        self.client.command(f"DELETE FROM {target} WHERE {in_blocks(derived.time, blocks, derived.block_s)} AND {chosen}")
        self._insert(derived, blocks, chosen)
        return len(buckets)

    def restore_missing_rows(self, derived: Derived, blocks: list[int]) -> int:
        key = ", ".join(derived.key)
        held = f"SELECT {key} FROM {self.database}.{derived.target} WHERE {in_blocks(derived.time, blocks, derived.block_s)}"
        missing = f"({key}) NOT IN ({held})"
        count = self.client.query(f"SELECT count() FROM ({self._derived_rows(derived, blocks)}) WHERE {missing}").result_rows[0][0]
        if count:
            log.warning("%s lacks %d rows of %s: restoring them", derived.target, count, derived.source)
            self._insert(derived, blocks, missing)
        return count

    def _derived_rows(self, derived: Derived, blocks: list[int]) -> str:
        return over_source(self.view_select(derived), self.database, derived, blocks)

    def _insert(self, derived: Derived, blocks: list[int], where: str) -> None:
        self.insert_rows(derived.target, self._derived_rows(derived, blocks), where)

    def insert_rows(self, target: str, rows: str, where: str = "1") -> None:
        """Insert into ``target`` the rows of the query ``rows`` that match ``where``, by
        column name (as a view writes them), not by position."""
        columns = ", ".join(self.client.query(f"SELECT * FROM ({rows}) LIMIT 0").column_names)
        self.client.command(f"INSERT INTO {self.database}.{target} ({columns}) SELECT {columns} FROM ({rows}) WHERE {where}")

    def _counts(self, sql: str) -> dict[tuple[int, ...], int]:
        return {tuple(row[:-1]): row[-1] for row in self.client.query(sql).result_rows}


def repair(client: Client, database: str, window_s: float) -> RepairReport:
    """Check the derived tables against the raw rows inserted in the last ``window_s``
    seconds (up to the newest insert) and mend the buckets that disagree."""
    return Repairer(client, database).repair(window_s)
