"""Analytics: the events sink's throughput into ClickHouse, and dashboard queries at scale.

    python bench/bench_analytics.py [--events 200000] [--rows 10000000] [--phases sink,queries]

(a) **ceiling**: a bare clickhouse-connect insert of the same rows the sink writes (the
    same events, already built), in batches of the sink's ``batch_size``, into a
    migrated chDB store, in a process of its own: rows/s, once row-oriented and once
    column-oriented (as the sink inserts), each into a fresh table; the ceiling is the
    faster of the two.
(b) **sink**: the events, Avro-encoded as workers write them, are published to the
    events topic of an embedded Tansu broker; then ``python -m turnout sink`` (its own
    process, its own chDB store) consumes, decodes, deduplicates, inserts and commits.
    Once its group has committed every offset it is stopped, and its store is read: each
    insert stamps its rows with ``inserted_at``, so the rate is taken between the first
    and the last insert (the rows of the first batch, which was consumed before the
    clock could start, are left out), start-up and the group join excluded.
(c) **queries**: a fresh store filled with ``--rows`` synthetic events spread over
    ``--days`` days (seven by default; with seven, the 30d range reads a week: ``--days 30``
    gives it a month) (generated inside ClickHouse, which also feeds the rollups, the latency
    table and the request samples through their materialized views, merged as background
    merges would have); then each panel of the dashboard (traffic, savings, quality,
    regressions: the functions its endpoints call) for each of its ranges (1h to 30d),
    and every query file the CLI runs (over the last day), are run ``--repeats`` times;
    the median and the slowest run of each are printed, and the slowest dashboard panel
    is named.

chDB lets one process open one store, so each phase that opens a store runs in its own
process. The last line is ``BENCH {json}`` with ``events_per_s``,
``ceiling_events_per_s`` and ``slowest_query_ms`` (and ``slowest_query``). Targets of
the issue: at least 100,000 events/s through the sink; every dashboard query under
200 ms at 10 million events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import environ, spawn, tail, terminate  # noqa: E402
from runinfo import revision  # noqa: E402

DEV_TOML = Path(__file__).resolve().parents[1] / "turnout" / "defaults" / "dev.toml"
PREFIX = "benchan"
DATABASE = "turnout"
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"]
ROUTES = ["default", "code", "long-code", "long-summaries", "cascade"]
MODELS = ["small", "medium", "large", "private"]


# -- the events ----------------------------------------------------------------------------
def generate_events(n: int, seed: int) -> list[Any]:
    """What a busy fleet writes: for each request a decision, one or two attempts and a
    completion or failure, with token counts, costs and latencies of realistic shapes."""
    from turnout.schemas.models import RoutingEvent

    rng = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    events: list[Any] = []
    request = 0
    while len(events) < n:
        request += 1
        rid = f"req-{seed}-{request}"
        tenant, route, model = rng.choice(TENANTS), rng.choice(ROUTES), rng.choice(MODELS)
        ts = start + timedelta(seconds=rng.uniform(0, 1800))
        common = {"request_id": rid, "tenant": tenant, "route": route, "policy_version": "v1", "task_type": "question", "language": "en"}
        events.append(RoutingEvent(event_id=RoutingEvent.make_id(rid, "decision"), kind="decision", model=model, ts=ts, **common))
        tokens_in, tokens_out = rng.randint(20, 4000), rng.randint(10, 800)
        latency = rng.lognormvariate(5, 0.6)
        failed = rng.random() < 0.03
        events.append(
            RoutingEvent(
                event_id=RoutingEvent.make_id(rid, "attempt", 0), kind="attempt", model=model, provider="simulated", ts=ts,
                status="error" if failed else "ok", error_kind="backend_error" if failed else "", input_tokens=tokens_in,
                output_tokens=0 if failed else tokens_out, cost_usd=0.0 if failed else tokens_in * 1e-7 + tokens_out * 4e-7,
                latency_ms=latency, attempt=0, **common,
            )
        )
        final = "failure" if failed and rng.random() < 0.3 else "completion"
        events.append(
            RoutingEvent(
                event_id=RoutingEvent.make_id(rid, final), kind=final, model=model, provider="simulated", ts=ts + timedelta(milliseconds=latency),
                status="error" if final == "failure" else "ok", input_tokens=tokens_in, output_tokens=tokens_out,
                cost_usd=tokens_in * 1e-7 + tokens_out * 4e-7, latency_ms=latency + rng.uniform(2, 20), attempt=1,
                validation=rng.choice(["", "", "passed", "repaired", "failed"]), **common,
            )
        )
    return events[:n]


def open_store(directory: Path) -> Any:
    from turnout.analytics.store import migrate
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{directory}")
    migrate(client, DATABASE)
    return client


# -- (a) ceiling ---------------------------------------------------------------------------
def ceiling_child(directory: str, n: int, seed: int, batch_size: int) -> None:
    """The bare insert, in its own process: the same rows, the sink's batch size, as rows
    and as columns (each into an emptied table, so that neither inserts into a bigger one)."""
    from turnout.analytics.sink import COLUMNS, event_row

    client = open_store(Path(directory))
    rows = [event_row(e) for e in generate_events(n, seed)]
    columns = [list(column) for column in zip(*rows)]
    table = f"{DATABASE}.routing_events"
    seconds = {}
    for layout, batch in (("rows", lambda i: rows[i : i + batch_size]), ("columns", lambda i: [c[i : i + batch_size] for c in columns])):
        client.command(f"TRUNCATE TABLE {table}")
        t = time.perf_counter()
        for i in range(0, len(rows), batch_size):
            client.insert(table, batch(i), column_names=COLUMNS, column_oriented=layout == "columns")
        seconds[layout] = time.perf_counter() - t
    print(json.dumps({"rows": len(rows), "seconds": seconds}))


def run_ceiling(workdir: Path, n: int, seed: int, batch_size: int, timeout_s: float) -> dict[str, float]:
    """Rows/s of the bare insert per layout (``rows``, ``columns``)."""
    out = subprocess.run(
        [sys.executable, __file__, "--ceiling-child", str(workdir / "ceiling-chdb"), str(n), str(seed), str(batch_size)],
        capture_output=True, text=True, timeout=timeout_s, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {layout: result["rows"] / seconds for layout, seconds in result["seconds"].items()}


# -- (b) the sink ----------------------------------------------------------------------------
async def publish(bootstrap: str, topic: str, events: list[Any], compression: str | None) -> float:
    from aiokafka import AIOKafkaProducer
    from turnout.schemas.serde import AvroCodec

    codec = AvroCodec()
    values = [(e.request_id.encode(), codec.encode(e)) for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type=compression, max_batch_size=1 << 20)
    await producer.start()
    t = time.perf_counter()
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in values])
    finally:
        await producer.stop()
    return time.perf_counter() - t


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([(await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)])
    finally:
        await consumer.stop()


async def run_sink(settings: Any, env: dict[str, str], workdir: Path, n: int, timeout_s: float) -> tuple[float, dict[str, Any]]:
    kafka, topics = settings.kafka, settings.topics
    sink = spawn([sys.executable, "-m", "turnout", "sink"], env, workdir / "sink.log")
    try:
        deadline = time.monotonic() + timeout_s
        while await committed(kafka.bootstrap_servers, settings.sink.group_id, topics.events, kafka.partitions) < n:
            if sink.poll() is not None:
                raise RuntimeError(f"the sink exited ({sink.returncode}):\n{tail(workdir / 'sink.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink did not commit {n} events in {timeout_s:.0f}s:\n{tail(workdir / 'sink.log')}")
            await asyncio.sleep(0.5)
    finally:
        await terminate(sink)
    client = open_store(workdir / "sink-chdb")  # the sink has exited: its store is free
    blocks = client.query(f"SELECT inserted_at, count() FROM {DATABASE}.routing_events GROUP BY inserted_at ORDER BY inserted_at").result_rows
    stored = sum(rows for _, rows in blocks)
    if stored != n:
        raise RuntimeError(f"the sink stored {stored} events, {n} were published")
    first, last = blocks[0][0], blocks[-1][0]
    seconds = (last - first).total_seconds()
    rate = (stored - blocks[0][1]) / seconds if seconds > 0 else float("nan")
    return rate, {"inserts": len(blocks), "seconds": seconds, "stored": stored}


# -- (c) queries at scale ------------------------------------------------------------------
FILL_SQL = """
INSERT INTO {db}.routing_events
    (event_id, request_id, tenant, kind, ts, route, model, provider, policy_version, task_type, status, error_kind,
     input_tokens, output_tokens, cost_usd, latency_ms, attempt, fallback_depth, validation, cache_hit, shadow, inserted_at)
SELECT
    concat('ev-', toString(number))                                   AS event_id,
    concat('rq-', toString(intDiv(number, 3)))                        AS request_id,
    ['acme','globex','initech','umbrella','hooli','stark','wayne'][1 + number % 7] AS tenant,
    ['decision','attempt','completion','attempt','completion','failure'][1 + (cityHash64(number) % 6)] AS kind,
    now64(3) - toIntervalMillisecond(cityHash64(number, 1) % {span_ms}) AS ts,
    ['default','code','long-code','long-summaries','cascade'][1 + number % 5] AS route,
    ['small','medium','large','private'][1 + cityHash64(number, 2) % 4] AS model,
    'simulated'                                                        AS provider,
    ['v1','v2'][1 + (number % 10 = 0)]                                 AS policy_version,
    'question'                                                         AS task_type,
    if(cityHash64(number, 3) % 100 < 3, 'error', 'ok')                 AS status,
    if(cityHash64(number, 3) % 100 < 3, 'backend_error', '')           AS error_kind,
    toUInt32(20 + cityHash64(number, 4) % 4000)                        AS input_tokens,
    toUInt32(10 + cityHash64(number, 5) % 800)                         AS output_tokens,
    (cityHash64(number, 6) % 10000) / 1e6                              AS cost_usd,
    exp(5 + 0.6 * randNormal(0, 1))                                    AS latency_ms,
    toUInt16(number % 2)                                               AS attempt,
    toUInt8(cityHash64(number, 7) % 20 = 0)                            AS fallback_depth,
    ['','','passed','repaired','failed'][1 + cityHash64(number, 8) % 5] AS validation,
    toUInt8(cityHash64(number, 9) % 10 = 0)                            AS cache_hit,
    toUInt8(0)                                                         AS shadow,
    ts                                                                 AS inserted_at  -- stored as it happened
FROM numbers({start}, {count})
"""

def fill_sql(start: int, count: int, span_ms: int) -> str:
    """Insert events ``start`` to ``start + count`` of the synthetic stream, their times
    spread over the ``span_ms`` milliseconds up to now."""
    return FILL_SQL.replace("{db}", DATABASE).replace("{span_ms}", str(span_ms)).replace("{start}", str(start)).replace("{count}", str(count))


PARAMETER = re.compile(r"\{(\w+):([^}]+)\}")
# what the materialized views fill from the raw events (migrations 005 and 009)
DERIVED_TABLES = ("routing_rollup_1m", "routing_rollup_1h", "routing_latency", "request_sample_events", "request_sample_events_sparse")
# query files that are parts of a panel rather than questions of their own: requests.sql
# (embedded by the others), the regressions panel's counts and samples
PANEL_PARTS = ("requests", "request_counts", "regression_samples")


def parameter_value(name: str, kind: str, now: datetime) -> Any:
    """A representative value for a query parameter: time windows cover the last day
    (against the day before for baselines), names pick the busiest tenant/route/model."""
    lowered = name.lower()
    if "date" in kind.lower() or "time" in kind.lower():
        if "baseline" in lowered and ("start" in lowered or "since" in lowered or "from" in lowered):
            return now - timedelta(days=2)
        if "baseline" in lowered:
            return now - timedelta(days=1)
        if any(word in lowered for word in ("start", "since", "from", "begin")):
            return now - timedelta(days=1)
        return now
    if "int" in kind.lower():
        return 60 if "bucket" in lowered or "step" in lowered or "seconds" in lowered else 10
    if "float" in kind.lower():
        return 0.01
    defaults = {"tenant": "acme", "route": "default", "model": "large", "policy": "v1", "version": "v1", "metric": "rating"}
    return next((value for key, value in defaults.items() if key in lowered), "")


def timed(repeats: int, call: Any) -> dict[str, Any]:
    runs, result = [], None
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            result = call()
            runs.append((time.perf_counter() - t) * 1000)
    except Exception as exc:  # a query this bench cannot run is reported, not hidden
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return {"median_ms": statistics.median(runs), "max_ms": max(runs), "rows": len(getattr(result, "result_rows", result) or [])}


def queries_child(directory: str, rows: int, repeats: int, days: int) -> None:
    """Fill a fresh store with ``rows`` events, then time what the dashboard asks for
    each of its ranges (its own functions, as its endpoints call them) and every query
    file the CLI runs, over the last day."""
    from turnout.analytics import dashboard, regressions
    from turnout.analytics.questions import sql as query_sql  # expands {requests} as the CLI and dashboard do
    from turnout.analytics.store import QUERIES_DIR
    from turnout.schemas.settings import load_settings

    client = open_store(Path(directory))
    t = time.perf_counter()
    chunk = 2_000_000
    for start in range(0, rows, chunk):
        client.command(fill_sql(start, min(chunk, rows - start), span_ms=days * 86_400_000))
    fill_s = time.perf_counter() - t
    for table in DERIVED_TABLES:
        client.command(f"OPTIMIZE TABLE {DATABASE}.{table} FINAL")  # as background merges would have, given time
    stored = client.query(f"SELECT count() FROM {DATABASE}.routing_events").result_rows[0][0]
    rollup_rows = {t: client.query(f"SELECT count() FROM {DATABASE}.{t}").result_rows[0][0] for t in DERIVED_TABLES}

    fleet, criteria = load_settings(DEV_TOML).fleet, regressions.Criteria()
    panels = {
        "traffic": lambda shown: dashboard.traffic(client, DATABASE, shown)["buckets"],
        "savings": lambda shown: dashboard.savings(client, DATABASE, shown, fleet)["rows"],
        "quality": lambda shown: dashboard.quality(client, DATABASE, shown)["routes"],
        "regressions": lambda shown: dashboard.regression_findings(client, DATABASE, shown, criteria)["findings"],
    }
    dashboard_timings: dict[str, dict[str, Any]] = {}
    for name in dashboard.RANGES:
        shown = dashboard.DashboardWindow.parse({"range": name})
        for panel, call in panels.items():
            dashboard_timings[f"{panel} {name}"] = timed(repeats, lambda: call(shown))

    now = datetime.now(timezone.utc)
    cli_timings: dict[str, dict[str, Any]] = {}
    for path in sorted(QUERIES_DIR.glob("*.sql")):
        if path.stem in PANEL_PARTS or path.stem.startswith("dashboard_"):
            continue  # building blocks and the dashboard's own queries, timed above per panel and range
        sql = query_sql(path.stem, DATABASE)
        parameters = {name: parameter_value(name, kind, now) for name, kind in PARAMETER.findall(sql)}
        cli_timings[path.stem] = timed(repeats, lambda: client.query(sql, parameters=parameters))
    print(json.dumps({"stored": stored, "rollup_rows": rollup_rows, "fill_s": fill_s, "dashboard": dashboard_timings, "cli": cli_timings}))


def print_timings(title: str, timings: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The table of one group of queries; returns the slowest run of each that ran."""
    print(f"  {title:<34} {'median ms':>10} {'max ms':>9} {'rows':>7}")
    ran = {}
    for name, timing in timings.items():
        if "error" in timing:
            print(f"  {name:<34} not run: {timing['error']}")
            continue
        ran[name] = timing["max_ms"]
        print(f"  {name:<34} {timing['median_ms']:>10.1f} {timing['max_ms']:>9.1f} {timing['rows']:>7}")
    return ran


# -- the run -----------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, Any]:
    from turnout.admin import create_topics
    from turnout.embedded import EmbeddedBroker
    from turnout.schemas.settings import load_settings

    from harness import compression_codec

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-analytics-"))
    bench: dict[str, Any] = {"name": "analytics", "rev": revision()}
    print(f"bench-analytics: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; work dir {workdir}")
    if "sink" in args.phases:
        broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
        try:
            env = {
                "TURNOUT_CONFIG": str(args.config.resolve()),
                "TURNOUT_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "TURNOUT_KAFKA__TOPIC_PREFIX": PREFIX,
                "TURNOUT_CLICKHOUSE__DSN": f"chdb://{workdir / 'sink-chdb'}",
            }
            with environ(env):
                settings = load_settings(args.config)
            await create_topics(settings)
            batch_size = settings.sink.batch_size
            print(f"  sink: batch_size {batch_size}, flush_interval_s {settings.sink.flush_interval_s}, {settings.kafka.partitions} partitions")

            print(f"\n(a) ceiling: bare clickhouse-connect insert of the same {args.events:,} rows, batches of {batch_size}, its own process")
            ceilings = await asyncio.to_thread(run_ceiling, workdir, args.events, args.seed, batch_size, args.timeout)
            ceiling = max(ceilings.values())
            print("  " + ", ".join(f"{rate:,.0f} rows/s as {layout}" for layout, rate in ceilings.items()) + f"; ceiling {ceiling:,.0f} rows/s")

            events = generate_events(args.events, args.seed)
            publish_s = await publish(broker.bootstrap_servers, settings.topics.events, events, compression_codec(settings.kafka.compression_type))
            print(f"\n(b) sink: {len(events):,} events published to {settings.topics.events} in {publish_s:.1f}s; python -m turnout sink, its own process")
            rate, detail = await run_sink(settings, env, workdir, len(events), args.timeout)
            print(f"  {rate:,.0f} events/s: {detail['stored']:,} stored in {detail['inserts']} inserts over {detail['seconds']:.2f}s (first insert to last)")
            print(f"  sink at {100 * rate / ceiling:.0f} % of the bare insert; target >= 100,000 events/s: {'met' if rate >= 100_000 else 'NOT met'}")
            bench.update(
                events_per_s=round(rate), ceiling_events_per_s=round(ceiling), ceiling_rows_per_s=round(ceilings["rows"]),
                ceiling_columns_per_s=round(ceilings["columns"]), sink_events=args.events,
            )
        finally:
            broker.stop()
    if "queries" in args.phases:
        print(f"\n(c) dashboard queries over {args.rows:,} events spread over {args.days} days (fill, then each query {args.repeats} times), its own process")
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, __file__, "--queries-child", str(workdir / "queries-chdb"), str(args.rows), str(args.repeats), str(args.days)],
            capture_output=True, text=True, timeout=args.timeout * 4, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the query phase failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rollups = ", ".join(f"{rows:,} in {table}" for table, rows in result["rollup_rows"].items())
        print(f"  filled {result['stored']:,} events in {result['fill_s']:.1f}s; rollup rows: {rollups}")
        dashboard_ran = print_timings("dashboard panel, range", result["dashboard"])
        print()
        cli_ran = print_timings("CLI query file, last day", result["cli"])
        if dashboard_ran:
            slowest = max(dashboard_ran, key=dashboard_ran.get)
            print(f"  slowest dashboard panel: {slowest} at {dashboard_ran[slowest]:.0f} ms (target: every dashboard query under 200 ms: {'met' if dashboard_ran[slowest] < 200 else 'NOT met'})")
            bench.update(slowest_query_ms=round(dashboard_ran[slowest], 1), slowest_query=slowest, query_rows=result["stored"], query_days=args.days)
        if cli_ran:
            slowest_cli = max(cli_ran, key=cli_ran.get)
            print(f"  slowest CLI query: {slowest_cli} at {cli_ran[slowest_cli]:.0f} ms")
            bench.update(slowest_cli_query_ms=round(cli_ran[slowest_cli], 1), slowest_cli_query=slowest_cli)
        bench["queries_not_run"] = sorted(name for group in ("dashboard", "cli") for name, timing in result[group].items() if "error" in timing)
    return bench


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--ceiling-child":
        ceiling_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--queries-child":
        queries_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events through the sink (and the bare insert)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="events in the store the queries run on")
    parser.add_argument("--days", type=int, default=7, help="days the store's events are spread over (30: the 30d range reads a month)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=DEV_TOML)
    parser.add_argument("--phases", type=lambda s: set(s.split(",")), default={"sink", "queries"}, help="sink,queries")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    bench = asyncio.run(run(args))
    print("BENCH " + json.dumps(bench))


if __name__ == "__main__":
    main()
