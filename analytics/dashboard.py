"""``turnout dashboard``: the analysts' web page, served by the process that owns the
analytics store (embedded chDB admits one process per directory, so the page cannot
read the store from anywhere else), working offline: the page, its script and the
vendored chart library (uPlot, MIT, ``static/uPlot.LICENSE``) come from this package,
never from a CDN.

The page is static; it asks JSON endpoints for its data, one per panel so a slow panel
does not hold up the others:

- ``/api/traffic``: spend, requests, errors and latency percentiles per time bucket and
  in total, for everything and per route, model and tenant (``queries/dashboard_traffic.sql``:
  the rollups' counts and the latency table's quantile states, so it stays fast as the
  raw events grow);
- ``/api/savings``, ``/api/quality``: the answers of ``questions.py`` (the same SQL as
  ``turnout analytics savings`` and ``quality``);
- ``/api/regressions``: ``regressions.compare_windows``, the last quarter of the window
  against the three quarters before it (``turnout regressions`` with those spans), on
  bounded random samples of each route's requests (``sampling.py``).

Each endpoint takes ``range`` (one of ``RANGES``) and optionally ``until`` (ISO 8601;
default now), so a page URL names the same window whenever it is opened.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web
from clickhouse_connect.driver.client import Client

from turnout.schemas.fleet import ModelDeployment

from . import questions, regressions
from .store import query_sql

STATIC_DIR = Path(__file__).with_name("static")
# each range's bucket: a few dozen points per chart, days as buckets for a month's spend
RANGES = {"1h": 60, "6h": 300, "24h": 3600, "7d": 6 * 3600, "30d": 86400}
DEFAULT_RANGE = "24h"
DIMENSIONS = ("all", "route", "model", "tenant")
COUNTS = ("requests", "failed", "attempts", "failed_attempts", "spend_usd", "tokens_in", "tokens_out")
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")


@dataclass(frozen=True)
class DashboardWindow:
    """The window a panel shows: ``range`` ending at ``until``, rounded up to a whole
    bucket so that every bucket, the last one too, covers the same span."""

    name: str
    bucket_s: int
    window: questions.Window

    @classmethod
    def parse(cls, query: Mapping[str, str], now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> DashboardWindow:
        name = query.get("range", DEFAULT_RANGE)
        if name not in RANGES:
            raise ValueError(f"range must be one of {', '.join(RANGES)}, not {name!r}")
        until = _parse_time(query["until"]) if query.get("until") else now()
        bucket_s = RANGES[name]
        seconds = math.ceil(until.timestamp() / bucket_s) * bucket_s
        end = datetime.fromtimestamp(seconds, timezone.utc)
        return cls(name, bucket_s, questions.Window(end - questions.parse_duration(name), end))

    def buckets(self) -> list[int]:
        """Every bucket's start, in epoch seconds (the charts' x axis, gaps included)."""
        start, end = int(self.window.since.timestamp()), int(self.window.until.timestamp())
        return list(range(start, end, self.bucket_s))

    def as_dict(self) -> dict:
        return {"range": self.name, "bucket_s": self.bucket_s, "since": self.window.since.isoformat(), "until": self.window.until.isoformat()}


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"until must be an ISO 8601 time such as 2026-03-02T12:00Z, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- the panels' data (pure functions of the store's answers) -----------------------------------
def traffic(client: Client, database: str, shown: DashboardWindow) -> dict:
    """Totals and time series per dimension and key, from ``dashboard_traffic.sql``:
    counts from the hourly rollups when the buckets are whole hours (a month is 720 rows
    per key instead of 43,200), else from the per-minute ones; latency percentiles from
    ``routing_latency`` (the SQL picks the coarsest period that tiles a bucket)."""
    parameters = {**_rollup(shown), "bucket_s": shown.bucket_s}
    result = client.query(query_sql("dashboard_traffic", database), parameters=parameters)
    return traffic_payload(result.named_results(), shown)


def _rollup(shown: DashboardWindow) -> dict:
    """The window's parameters and the rollup that covers it exactly: the hourly one when
    its buckets (and so its bounds) are whole hours, else the per-minute one."""
    table, column = ("routing_rollup_1h", "hour") if shown.bucket_s % 3600 == 0 else ("routing_rollup_1m", "minute")
    return {**shown.window.parameters(), "rollup": table, "rollup_time": column}


def traffic_payload(rows, shown: DashboardWindow) -> dict:
    """Rows of ``dashboard_traffic.sql`` as ``totals[dimension][key]`` (figures over the
    window) and ``series[dimension][key][figure]`` (one value per bucket, aligned with
    ``buckets``; no traffic is 0 for counts and null for rates and percentiles, so a
    chart shows a gap rather than a fake zero latency)."""
    buckets = shown.buckets()
    position = {start: i for i, start in enumerate(buckets)}
    totals: dict[str, dict[str, dict]] = {dimension: {} for dimension in DIMENSIONS}
    series: dict[str, dict[str, dict[str, list]]] = {dimension: {} for dimension in DIMENSIONS}
    for row in rows:
        figures = _figures(row)
        if row["is_total"]:
            totals[row["dimension"]][row["key"]] = figures
            continue
        index = position.get(int(row["bucket"].replace(tzinfo=timezone.utc).timestamp()))
        if index is None:  # outside the aligned window: cannot happen with the SQL's filter
            continue
        lines = series[row["dimension"]].setdefault(row["key"], {name: [0 if name in COUNTS else None] * len(buckets) for name in figures})
        for name, value in figures.items():
            lines[name][index] = value
    return {"window": shown.as_dict(), "buckets": buckets, "totals": totals, "series": series}


def _figures(row: Mapping) -> dict:
    figures = {name: row[name] for name in COUNTS}
    figures["spend_usd"] = round(figures["spend_usd"], 9)
    figures["error_rate"] = _ratio(row["failed"], row["requests"])
    figures["attempt_error_rate"] = _ratio(row["failed_attempts"], row["attempts"])
    completed = row["requests"] - row["failed"]
    latencies = row["latency_ms"] or [math.nan] * len(PERCENTILES)  # []: no completed request to measure
    for name, value in zip(PERCENTILES, latencies):
        figures[name] = round(value, 1) if completed and math.isfinite(value) else None
    return figures


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def savings(client: Client, database: str, shown: DashboardWindow, fleet: Mapping[str, ModelDeployment]) -> dict:
    """``questions.savings_table`` per tenant and route, and summed over the window, on the
    spend the rollups hold (``dashboard_spend.sql``: the raw events take seconds at
    millions of them)."""
    spend = questions.run(client, database, "dashboard_spend", "spend per tenant, route and model", _rollup(shown))
    table = questions.savings_table(spend, fleet)
    rows = table.as_dicts()
    actual = sum(row["cost_usd"] for row in rows)
    baseline = sum(row["baseline_usd"] for row in rows)
    total = {"cost_usd": actual, "baseline_usd": baseline, "saved_usd": baseline - actual, "saved_pct": _ratio(100 * (baseline - actual), baseline)}
    return {"window": shown.as_dict(), "title": table.title, "rows": rows, "total": total}


def quality(client: Client, database: str, shown: DashboardWindow) -> dict:
    """Rates per route from the rollups (``dashboard_quality.sql``: the per-request
    reading of ``questions.quality`` scans the raw events, seconds at millions of them),
    and feedback scores once there are any."""
    routes = questions.run(client, database, "dashboard_quality", "quality per route", _rollup(shown))
    feedback = questions.feedback(client, database, shown.window) if questions.has_feedback(client, database) else None
    return {"window": shown.as_dict(), "routes": routes.as_dicts(), "feedback": feedback.as_dicts() if feedback else []}


VERDICT_ORDER = {"regression": 0, "improvement": 1, "unchanged": 2, "too few samples": 3}


def regression_findings(client: Client, database: str, shown: DashboardWindow, criteria: regressions.Criteria) -> dict:
    """The last quarter of the window judged against the three quarters before it;
    regressions first, then improvements, then the rest."""
    span = shown.window.until - shown.window.since
    comparison = regressions.compare_windows(client, database, span / 4, span - span / 4, shown.window.until, criteria)
    found = comparison.as_dict()
    found["findings"].sort(key=lambda f: (VERDICT_ORDER.get(f["verdict"], 9), f["route"], f["model"], f["metric"]))
    return {"window": shown.as_dict(), **found}


# -- the server ---------------------------------------------------------------------------------
def create_app(client: Client, database: str, fleet: Mapping[str, ModelDeployment], criteria: regressions.Criteria | None = None) -> web.Application:
    """The page, its assets and the JSON endpoints. Queries run one at a time on a
    single worker thread: the event loop stays free while ClickHouse works, and the
    client (one chDB session) is never used from two threads at once."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-store")
    panels: dict[str, Callable[[DashboardWindow], dict]] = {
        "traffic": lambda shown: traffic(client, database, shown),
        "savings": lambda shown: savings(client, database, shown, fleet),
        "quality": lambda shown: quality(client, database, shown),
        "regressions": lambda shown: regression_findings(client, database, shown, criteria or regressions.Criteria()),
    }

    async def panel(request: web.Request) -> web.Response:
        try:
            shown = DashboardWindow.parse(request.query)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        try:
            answer = await asyncio.get_running_loop().run_in_executor(executor, panels[request.match_info["panel"]], shown)
        except Exception as exc:  # the page shows it in the panel; the server keeps serving
            return _json({"error": f"{type(exc).__name__}: {exc}"}, status=500)
        return _json(answer)

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def close_executor(_: web.Application) -> None:
        executor.shutdown(wait=True)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get(r"/api/{panel:(" + "|".join(panels) + ")}", panel)
    app.router.add_static("/static/", STATIC_DIR)
    app.on_cleanup.append(close_executor)
    return app


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(_finite(payload), default=str), status=status, content_type="application/json")


def _finite(value: object) -> object:
    """JSON has no NaN or infinity (a relative change from zero is infinite): null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (port 0: a free one); return the runner and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


def run_dashboard(client: Client, database: str, fleet: Mapping[str, ModelDeployment], host: str, port: int, announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Migrations run first, as at every start-up that owns the
    store: the page reads the rollups, which a store older than migration 005 lacks."""
    from .store import migrate

    migrate(client, database)

    async def main() -> None:
        runner, bound = await start(create_app(client, database, fleet), host, port)
        announce(f"dashboard on http://{host}:{bound}/ (Ctrl-C stops it)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
