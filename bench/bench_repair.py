"""The sink's repair of the derived tables (``analytics/repair.py``) on a large store.

    python bench/bench_repair.py [--rows 10000000] [--days 7] [--lost 50000]

A fresh chDB store is filled with ``--rows`` synthetic events spread over ``--days``
days, each stored as it happened (``inserted_at`` = its time), the derived tables
merged as background merges would have. Then, in one process:

(a) **check**: what every partition assignment of the sink now pays when nothing needs
    mending: the derived tables compared with the raw rows inserted in the last
    ``sink.dedup_window_s`` (15 min); beside it, the read the sink already made on each
    assignment (the ids of that window, ``_load_recent_ids``).
(b) **mend**: an insert of ``--lost`` events (the sink's batch size) into the last
    minute lands in the raw table while the views that feed the rollups and the request
    sample are detached: a sink killed between the parts. The repair finds and rebuilds
    what they missed; the totals are then checked against the raw events.
(c) **peer**: the same consistency restored the blunt way: every derived table emptied
    and refilled from all the raw events by the views' own queries.

The last line is ``BENCH {json}`` with ``check_ms``, ``load_ids_ms``, ``mend_ms`` and
``full_rebuild_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analytics import DATABASE, DERIVED_TABLES, fill_sql, open_store  # noqa: E402
from runinfo import revision  # noqa: E402

WINDOW_S = 900.0  # sink.dedup_window_s's default
RAW_FED_VIEWS = ("routing_rollup_1m_mv", "routing_rollup_1h_mv", "request_sample_events_mv")
TOTALS = {  # what each derived table counts, beside the same from the raw events
    "routing_rollup_1m": ("SELECT sum(events) FROM {db}.routing_rollup_1m", "SELECT count() FROM {db}.routing_events FINAL"),
    "routing_rollup_1h": ("SELECT sum(events) FROM {db}.routing_rollup_1h", "SELECT count() FROM {db}.routing_events FINAL"),
    "routing_latency": (
        "SELECT sum(events) FROM {db}.routing_latency WHERE period_s = 3600 AND dimension = 'all'",
        "SELECT count() FROM {db}.routing_events FINAL WHERE kind = 'completion' AND shadow = 0",
    ),
    "request_sample_events": (
        "SELECT count() FROM {db}.request_sample_events FINAL",
        "SELECT count() FROM {db}.routing_events FINAL WHERE shadow = 0 AND kind IN ('attempt', 'completion', 'failure')",
    ),
}


def timed_ms(call: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    result = call()
    return (time.perf_counter() - t) * 1000, result


def disagreements(client: Any) -> dict[str, tuple[int, int]]:
    """The derived tables whose totals differ from the raw events': (derived, raw)."""
    found = {}
    for table, (derived_sql, raw_sql) in TOTALS.items():
        derived = client.query(derived_sql.format(db=DATABASE)).result_rows[0][0]
        raw = client.query(raw_sql.format(db=DATABASE)).result_rows[0][0]
        if derived != raw:
            found[table] = (derived, raw)
    return found


def full_rebuild(client: Any) -> None:
    """Every derived table emptied and refilled from all the raw events, by the views' own
    queries, in the order they feed each other (the latency states and the sparse sample
    come through their views)."""
    from turnout.analytics.repair import DERIVED, RAW, Repairer

    repairer = Repairer(client, DATABASE)
    for table in DERIVED_TABLES:
        client.command(f"TRUNCATE TABLE {DATABASE}.{table}")
    for derived in DERIVED:
        if derived.source != RAW:
            continue  # filled through its view as its source is
        repairer.insert_rows(derived.target, repairer.view_select(derived).replace(f"FROM {DATABASE}.{RAW}", f"FROM {DATABASE}.{RAW} FINAL"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="events in the store")
    parser.add_argument("--days", type=int, default=7, help="days they are spread over")
    parser.add_argument("--lost", type=int, default=50_000, help="events of the insert whose views' parts are lost (sink.batch_size)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the check")
    args = parser.parse_args()

    from turnout.analytics.repair import Repairer

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-repair-"))
    print(f"bench-repair: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; work dir {workdir}")
    client = open_store(workdir / "chdb")
    fill_ms = 0.0
    for start in range(0, args.rows, 2_000_000):
        ms, _ = timed_ms(lambda: client.command(fill_sql(start, min(2_000_000, args.rows - start), span_ms=args.days * 86_400_000)))
        fill_ms += ms
    for table in DERIVED_TABLES:
        client.command(f"OPTIMIZE TABLE {DATABASE}.{table} FINAL")
    recent = client.query(
        f"SELECT count() FROM {DATABASE}.routing_events WHERE inserted_at >= (SELECT max(inserted_at) FROM {DATABASE}.routing_events) - INTERVAL 15 MINUTE"
    ).result_rows[0][0]
    print(f"  filled {args.rows:,} events over {args.days} days in {fill_ms / 1000:.1f}s; {recent:,} of them inserted in the last 15 minutes")
    if disagreements(client):
        raise RuntimeError(f"the filled store disagrees with itself: {disagreements(client)}")

    repairer = Repairer(client, DATABASE)
    checks = [timed_ms(lambda: repairer.repair(WINDOW_S)) for _ in range(args.repeats)]
    if any(report.mended for _, report in checks):
        raise RuntimeError("the check mended a store that agreed")
    load_ids_sql = (
        f"SELECT event_id FROM {DATABASE}.routing_events WHERE inserted_at >= (SELECT max(inserted_at) FROM {DATABASE}.routing_events) "
        f"- toIntervalMillisecond({int(WINDOW_S * 1000)}) ORDER BY inserted_at DESC LIMIT 500000"
    )
    loads = [timed_ms(lambda: client.query(load_ids_sql))[0] for _ in range(args.repeats)]
    check_ms, load_ms = statistics.median(ms for ms, _ in checks), statistics.median(loads)
    print(f"\n(a) check, nothing to mend ({checks[0][1].checked_minutes} minutes of recent inserts): median {check_ms:.0f} ms, "
          f"max {max(ms for ms, _ in checks):.0f} ms over {args.repeats} runs")
    print(f"    beside the read each assignment already made (the window's ids): median {load_ms:.0f} ms")

    for view in RAW_FED_VIEWS:
        client.command(f"DETACH TABLE {DATABASE}.{view}")
    client.command(fill_sql(args.rows, args.lost, span_ms=60_000))  # the last minute: the batch a killed sink was inserting
    for view in RAW_FED_VIEWS:
        client.command(f"ATTACH TABLE {DATABASE}.{view}")
    short = disagreements(client)
    mend_ms, report = timed_ms(lambda: repairer.repair(WINDOW_S))
    left = disagreements(client)
    print(f"\n(b) mend: {args.lost:,} raw events no view saw; short before: "
          + ", ".join(f"{table} {derived:,} of {raw:,}" for table, (derived, raw) in short.items()))
    print(f"    repaired in {mend_ms:.0f} ms: {report}")
    print(f"    after: {'every derived table agrees with the raw events' if not left else f'STILL DISAGREES: {left}'}")
    if left or not short:
        raise RuntimeError(f"the mend did not restore agreement (before {short}, after {left})")

    rebuild_ms, _ = timed_ms(lambda: full_rebuild(client))
    rebuilt_left = disagreements(client)
    print(f"\n(c) peer: every derived table rebuilt from all {args.rows + args.lost:,} raw events: {rebuild_ms:.0f} ms "
          f"({'agrees' if not rebuilt_left else f'disagrees: {rebuilt_left}'})")
    print(f"    the targeted mend took {100 * mend_ms / rebuild_ms:.1f} % of the full rebuild")
    print("BENCH " + json.dumps({
        "name": "repair", "rev": revision(), "rows": args.rows, "days": args.days, "lost": args.lost,
        "check_ms": round(check_ms, 1), "load_ids_ms": round(load_ms, 1), "mend_ms": round(mend_ms, 1), "full_rebuild_ms": round(rebuild_ms, 1),
    }))


if __name__ == "__main__":
    main()
