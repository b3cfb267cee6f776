"""The dashboard's fast readings against the slow exact ones, on real chDB: the sampled
requests behind regression tests (``regression_samples.sql`` on the events keyed by
``cityHash64(request_id)``) agree with ``requests.sql`` when a window is read whole and
are exactly the smallest hashes when it is not; the rollup counts that set the sampling
rates are the window's requests; the traffic panel's percentiles over a week and a month
(from the latency tables of migration 009) track the exact quantiles of the raw events."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from turnout.analytics import dashboard, sampling
from turnout.analytics.questions import Window, sql
from turnout.analytics.sink import COLUMNS, event_row
from turnout.analytics.store import migrate
from turnout.schemas.models import RoutingEvent

DB = "sample_test"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
PASSING = ("passed", "repaired", "reasked")


@pytest.fixture
def client(tmp_path):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    migrate(client, DB)
    yield client
    client.close()  # chDB holds one store per process: the next test opens its own


def insert(client, events: list[RoutingEvent]) -> None:
    client.insert(f"{DB}.routing_events", [event_row(e) for e in events], column_names=COLUMNS)


def request_events(rng: random.Random, rid: str, done: datetime, route: str, cost: float) -> list[RoutingEvent]:
    """One request along one of the paths workers take: answered at once, fallen back
    after a failed call, escalated after an answer that failed validation, or failed
    (the failure names no model: it was served by its last attempt's); sometimes with a
    shadow copy (paid, answering nobody)."""
    common = {"request_id": rid, "tenant": rng.choice(["acme", "globex"]), "route": route, "policy_version": rng.choice(["v1", "v2"])}
    path = rng.choice(["ok", "ok", "fallback", "escalation", "failed"])
    first, second = rng.sample(["small", "medium", "large"], 2)
    latency = rng.lognormvariate(5, 0.5)

    def attempt(number: int, model: str, ok: bool, price: float, shadow: bool = False) -> RoutingEvent:
        return RoutingEvent(
            event_id=RoutingEvent.make_id(rid, "attempt", number, shadow), kind="attempt", model=model, status="ok" if ok else "error",
            cost_usd=price, attempt=number, shadow=shadow, ts=done - timedelta(seconds=2 - number), latency_ms=latency, **common,
        )

    events = [attempt(0, first, path != "fallback" and path != "failed", cost)]
    if path in ("fallback", "escalation"):
        events.append(attempt(1, second, True, 1.0))  # a dollar: sums stay distinct from every first attempt's price
    if path == "failed":
        events.append(RoutingEvent(event_id=RoutingEvent.make_id(rid, "failure"), kind="failure", status="error", ts=done, **common))
    else:
        model = second if path in ("fallback", "escalation") else first
        validation = rng.choice(["", "passed", "repaired", "reasked", "failed"])
        events.append(RoutingEvent(
            event_id=RoutingEvent.make_id(rid, "completion"), kind="completion", model=model, status="ok", latency_ms=latency,
            validation=validation, ts=done, **common,
        ))
    if rng.random() < 0.1:
        events.append(attempt(0, "private", True, 5.0, shadow=True))
    return events


def traffic(seed: int, n: int, start: datetime, end: datetime, routes=("chat", "code")) -> list[RoutingEvent]:
    """``n`` requests over [start, end); request i costs i + 1 micro-dollars on its first
    attempt (plus a dollar for a second), so a sampled request is known by its cost."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        done = start + (end - start) * rng.random()
        events += request_events(rng, f"q{seed}-{i}", done, rng.choice(routes), (i + 1) / 1e6)
    return events


def exact_groups(client, window: Window) -> dict[tuple, dict]:
    """requests.sql, the definition of a request, grouped as regression_samples.sql is."""
    rows = client.query(sql("requests", DB), parameters=window.parameters()).named_results()
    groups: dict[tuple, dict] = defaultdict(lambda: {"requests": 0, "failures": 0, "latencies": [], "costs": [], "validated": 0, "passed": 0})
    for row in rows:
        group = groups[(row["route"], row["served_by"], row["policy_version"])]
        group["requests"] += 1
        group["failures"] += row["failed"]
        group["costs"].append(round(row["cost_usd"], 9))
        if not row["failed"]:
            group["latencies"].append(round(row["latency_ms"], 6))
        group["validated"] += row["validation"] != ""
        group["passed"] += row["validation"] in PASSING
    return {key: {**group, "latencies": sorted(group["latencies"]), "costs": sorted(group["costs"])} for key, group in groups.items()}


def sampled(client, window: Window, per_route: int) -> dict[tuple, dict]:
    found = {}
    for row in sampling.sampled_groups(client, DB, {"w": window}, per_route)["w"]:
        found[(row["route"], row["model"], row["policy_version"])] = {
            "requests": row["requests"], "failures": row["failures"], "latencies": sorted(round(v, 6) for v in row["latencies"]),
            "costs": sorted(round(v, 9) for v in row["costs"]), "validated": row["validated"], "passed": row["passed"],
        }
    return found


def test_a_window_read_whole_is_requests_sql_exactly(client):
    """Fallbacks, escalations, failures served by their last attempt, shadow copies left
    out, a redelivered attempt not yet merged away: every group's figures as requests.sql
    computes them from the raw events with FINAL."""
    events = traffic(1, 400, NOW - timedelta(hours=3), NOW)
    insert(client, events)
    insert(client, [e for e in events if e.kind == "attempt"][:40])  # redelivered, the sink's dedup bypassed
    window = Window(NOW - timedelta(hours=2), NOW)  # requests of the hour before: left out, their attempts read
    exact = exact_groups(client, window)
    assert sum(g["requests"] for g in exact.values()) > 200 and sum(g["failures"] for g in exact.values()) > 20
    assert sampled(client, window, per_route=10_000) == exact


@pytest.mark.parametrize("per_route", [200, 15])  # 15: under 1/16 of a route, read from the sparse table
def test_a_bounded_sample_is_the_requests_with_the_smallest_hashes(client, per_route):
    events = traffic(2, 1500, NOW - timedelta(hours=6), NOW, routes=("chat", "code", "quiet"))
    events = [e for e in events if e.route != "quiet"] + [e for e in events if e.route == "quiet"][:60]  # a route with few requests
    insert(client, events)
    window = Window(NOW - timedelta(hours=5, minutes=17), NOW - timedelta(minutes=3))  # not aligned to anything
    parameters = sampling.sample_parameters(sampling.cutoffs(sampling.count_requests(client, DB, {"w": window})["w"], per_route), per_route)
    assert (parameters["sparse_routes"], parameters["dense_routes"]) == ((["chat", "code"], ["quiet"]) if per_route == 15 else ([], ["chat", "code", "quiet"]))
    rows = sampling.sampled_groups(client, DB, {"w": window}, per_route)["w"]
    by_route: dict[str, set[float]] = defaultdict(set)
    for row in rows:
        by_route[row["route"]].update(round(cost, 9) for cost in row["costs"])
    smallest = client.query(
        f"""SELECT route, groupArray(per_request) FROM (
                SELECT request_id, any(route) AS route, round(sumIf(cost_usd, kind = 'attempt' AND shadow = 0), 9) AS per_request,
                       cityHash64(request_id) AS hash
                FROM {DB}.routing_events FINAL GROUP BY request_id
                HAVING countIf(kind IN ('completion', 'failure') AND ts >= {{since:DateTime64(3, 'UTC')}} AND ts < {{until:DateTime64(3, 'UTC')}}) > 0
                ORDER BY hash LIMIT {per_route} BY route
            ) GROUP BY route""",
        parameters=window.parameters(),
    ).result_rows
    assert {route: set(costs) for route, costs in smallest} == dict(by_route)
    assert [len(by_route[route]) for route in ("chat", "code")] == [per_route, per_route]  # bounded
    quiet = sum(row["requests"] for row in rows if row["route"] == "quiet")
    assert quiet == len(by_route["quiet"]) and (quiet < per_route if per_route == 200 else quiet == per_route)  # whole when it fits


def test_rollup_counts_are_the_windows_requests(client):
    """Both windows in one statement, each counted as requests.sql would (exactly, for
    windows that start on a whole minute)."""
    insert(client, traffic(3, 800, NOW - timedelta(hours=30), NOW))
    windows = {"long": Window(NOW - timedelta(hours=26), NOW - timedelta(minutes=5)), "short": Window(NOW - timedelta(minutes=40), NOW - timedelta(minutes=10))}
    counted = sampling.count_requests(client, DB, windows)
    for name, window in windows.items():
        exact = defaultdict(int)
        for row in client.query(sql("requests", DB), parameters=window.parameters()).named_results():
            exact[row["route"]] += 1
        assert counted[name] == dict(exact), name


def test_each_window_of_one_statement_is_sampled_as_if_alone(client):
    insert(client, traffic(8, 1200, NOW - timedelta(hours=6), NOW))
    windows = {"before": Window(NOW - timedelta(hours=6), NOW - timedelta(hours=1)), "after": Window(NOW - timedelta(hours=1), NOW)}
    together = sampling.sampled_groups(client, DB, windows, per_route=100)
    for name, window in windows.items():
        assert together[name] == sampling.sampled_groups(client, DB, {name: window}, per_route=100)[name]
    assert together["before"] != together["after"]


@pytest.mark.parametrize("range_name", ["7d", "30d"])
def test_long_range_percentiles_track_the_exact_quantiles(client, range_name):
    until = NOW
    events = traffic(5, 3000, until - timedelta(days=6, hours=20), until - timedelta(minutes=1))
    insert(client, events)
    shown = dashboard.DashboardWindow.parse({"range": range_name, "until": until.isoformat()})
    payload = dashboard.traffic(client, DB, shown)
    completions = [e for e in events if e.kind == "completion" and not e.shadow]
    for dimension, key_of in (("all", lambda e: ""), ("route", lambda e: e.route), ("model", lambda e: e.model), ("tenant", lambda e: e.tenant)):
        by_key = defaultdict(list)
        for event in completions:
            by_key[key_of(event)].append(event.latency_ms)
        for key, latencies in by_key.items():
            latencies.sort()
            figures = payload["totals"][dimension][key]
            for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95)):
                exact = latencies[min(len(latencies) - 1, int(q * len(latencies)))]
                assert figures[name] == pytest.approx(exact, rel=0.05), (dimension, key, name)
    assert payload["totals"]["all"][""]["requests"] == len({e.request_id for e in events if e.kind in ("completion", "failure")})


def test_a_route_without_completed_requests_has_counts_but_no_percentiles(client):
    events = []
    for i in range(20):
        done, common = NOW - timedelta(hours=2) + timedelta(minutes=5 * i), {"request_id": f"f{i}", "tenant": "acme", "route": "broken"}
        events.append(RoutingEvent(event_id=RoutingEvent.make_id(f"f{i}", "attempt"), kind="attempt", model="small", status="error", ts=done, **common))
        events.append(RoutingEvent(event_id=RoutingEvent.make_id(f"f{i}", "failure"), kind="failure", status="error", ts=done, **common))
    insert(client, events + traffic(7, 50, NOW - timedelta(hours=3), NOW - timedelta(minutes=1)))
    payload = dashboard.traffic(client, DB, dashboard.DashboardWindow.parse({"range": "7d", "until": NOW.isoformat()}))
    broken = payload["totals"]["route"]["broken"]
    assert broken["requests"] == broken["failed"] == 20 and (broken["p50_ms"], broken["p99_ms"]) == (None, None)
    assert payload["totals"]["route"]["chat"]["p50_ms"] is not None
