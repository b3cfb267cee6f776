"""The analytics store on real chDB: numbered migrations applied once, an upgrade that
re-keys the raw events by time without losing or doubling any, and per-minute rollups
that agree with the raw events they summarize."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from turnout.analytics.sink import COLUMNS, event_row
from turnout.analytics.store import migrate, migrations
from turnout.schemas.models import RoutingEvent

DB = "store_test"
T0 = datetime(2026, 11, 29, 9, 58, tzinfo=timezone.utc)


@pytest.fixture
def client(tmp_path):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    yield client
    client.close()  # chDB holds one store per process: the next test opens its own


def generated_events(n: int, seed: int = 3) -> list[RoutingEvent]:
    """Completions and attempts over a few minutes, routes, models, statuses."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        kind = rng.choice(["attempt", "completion", "failure"])
        events.append(
            RoutingEvent(
                event_id=f"e{i}",
                request_id=f"r{i}",
                tenant=rng.choice(["acme", "globex"]),
                kind=kind,
                route=rng.choice(["code", "default"]),
                model=rng.choice(["small", "large"]),
                status="error" if kind == "failure" else "ok",
                input_tokens=rng.randint(1, 2000),
                output_tokens=rng.randint(1, 500),
                cost_usd=rng.random() / 100,
                latency_ms=rng.lognormvariate(4, 0.5),
                ts=T0 + timedelta(seconds=rng.uniform(0, 300)),  # crosses the 10:00 hour
                escalated=kind != "attempt" and rng.random() < 0.2,
                fallback_depth=rng.choice([0, 0, 1]),
            )
        )
    return events


def insert(client, events: list[RoutingEvent]) -> None:
    """As a sink of the store's own release would: only the columns the table has yet."""
    present = {row[0] for row in client.query(f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'routing_events'").result_rows}
    keep = [i for i, column in enumerate(COLUMNS) if column in present]
    rows = [[row[i] for i in keep] for row in (event_row(e) for e in events)]
    client.insert(f"{DB}.routing_events", rows, column_names=[COLUMNS[i] for i in keep])


def scalar(client, sql: str):
    return client.query(sql).result_rows[0][0]


def test_migrations_apply_once_in_order_and_are_recorded(client):
    names = [m.name for m in migrations()]
    assert migrate(client, DB) == names
    assert migrate(client, DB) == []  # at every start-up: nothing left to do
    recorded = client.query(f"SELECT number, name FROM {DB}.turnout_migrations FINAL ORDER BY number").result_rows
    assert recorded == [(m.number, m.name) for m in migrations()]


def test_the_upgrade_rekeys_by_time_and_keeps_every_event_once(client):
    migrate(client, DB, upto=4)  # a store as the release before rollups left it
    events = generated_events(500)
    insert(client, events)
    insert(client, events[:50])  # a redelivered batch, not yet merged away
    applied = migrate(client, DB)
    assert applied[0] == "005_time_ordered_key_and_rollups"
    key = scalar(client, f"SELECT sorting_key FROM system.tables WHERE database = '{DB}' AND name = 'routing_events'")
    assert key.startswith("toStartOfHour(ts)")
    assert scalar(client, f"SELECT count() FROM {DB}.routing_events") == 500  # copied deduplicated, none lost
    assert scalar(client, f"SELECT round(sum(cost_usd), 9) FROM {DB}.routing_events") == round(sum(e.cost_usd for e in events), 9)
    tables = {row[0] for row in client.query(f"SHOW TABLES FROM {DB}").result_rows}
    assert "routing_events_by_time" not in tables  # the old table is gone


@pytest.mark.parametrize("table, bucket", [("routing_rollup_1m", "toStartOfMinute"), ("routing_rollup_1h", "toStartOfHour")])
def test_rollups_agree_with_the_raw_events_per_bucket_route_and_model(client, table, bucket):
    migrate(client, DB, upto=4)
    before = generated_events(400, seed=5)
    insert(client, before)
    migrate(client, DB)  # backfills the rollups from what is stored
    after = [e.model_copy(update={"event_id": f"n{e.event_id}"}) for e in generated_events(400, seed=6)]
    insert(client, after)  # reaches the rollups through the materialized views

    raw = client.query(
        f"SELECT {bucket}(ts) AS bucket, route, model, kind, count(), countIf(status = 'error'), countIf(escalated = 1), "
        f"countIf(fallback_depth > 0 AND escalated = 0), sum(input_tokens), round(sum(cost_usd), 9) "
        f"FROM {DB}.routing_events FINAL GROUP BY bucket, route, model, kind ORDER BY bucket, route, model, kind"
    ).result_rows
    column = "minute" if table.endswith("1m") else "hour"
    rolled = client.query(
        f"SELECT {column} AS bucket, route, model, kind, sum(events), sum(errors), sum(escalations), sum(fell_back), sum(input_tokens), round(sum(cost_usd), 9) "
        f"FROM {DB}.{table} GROUP BY bucket, route, model, kind ORDER BY bucket, route, model, kind"
    ).result_rows
    assert rolled == raw and sum(row[4] for row in raw) == 800 and all(sum(row[i] for row in raw) > 0 for i in (5, 6, 7))


def test_rollup_latency_quantiles_track_the_exact_ones(client):
    migrate(client, DB)
    events = generated_events(2000, seed=9)
    insert(client, events)
    exact = client.query(f"SELECT model, quantilesExact(0.5, 0.95, 0.99)(latency_ms) FROM {DB}.routing_events GROUP BY model ORDER BY model").result_rows
    digest = client.query(
        f"SELECT model, quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) FROM {DB}.routing_rollup_1m GROUP BY model ORDER BY model"
    ).result_rows
    for (model, want), (same, got) in zip(exact, digest, strict=True):
        assert model == same
        for w, g in zip(want, got, strict=True):
            assert g == pytest.approx(w, rel=0.05), (model, want, got)  # a t-digest is within a few percent


def test_the_009_upgrade_fills_the_latency_breakdowns_and_the_request_sample(client):
    """A store as release 008 left it, with events: migration 009 backfills the latency
    tables and the request sample from what is stored, and later inserts reach them
    through the views (the latency tables through the rollups' own inserts)."""
    migrate(client, DB, upto=8)
    before = generated_events(600, seed=11)
    shadow = [e.model_copy(update={"event_id": f"s{e.event_id}", "shadow": True}) for e in before[:30]]
    decisions = [e.model_copy(update={"event_id": f"d{e.event_id}", "kind": "decision"}) for e in before[:30]]
    insert(client, before + shadow + decisions)
    assert migrate(client, DB) == ["009_latency_breakdowns_and_request_sample", "010_latency_counts"]
    assert migrate(client, DB) == []
    after = [e.model_copy(update={"event_id": f"n{e.event_id}", "request_id": f"n{e.request_id}"}) for e in generated_events(600, seed=12)]
    insert(client, after)
    events = before + after  # shadows and decisions are no request's measure

    sampled = client.query(f"SELECT request_id, kind, attempt, sample_key = cityHash64(request_id) FROM {DB}.request_sample_events FINAL").result_rows
    assert sorted(sampled) == sorted((e.request_id, e.kind, e.attempt, True) for e in events)
    sparse = client.query(f"SELECT request_id, kind, attempt FROM {DB}.request_sample_events_sparse FINAL").result_rows
    below = scalar(client, f"SELECT groupArray((request_id, kind, attempt)) FROM {DB}.request_sample_events FINAL WHERE sample_key < pow(2, 60)")
    assert 0 < len(sparse) < len(sampled) / 8 and sorted(sparse) == sorted(map(tuple, below))  # one request in 16: those of the smallest keys

    completions = [e for e in events if e.kind == "completion"]
    for period_s in (60, 3600, 21600):
        keys = client.query(f"SELECT DISTINCT dimension, key FROM {DB}.routing_latency WHERE period_s = {period_s}").result_rows
        assert sorted(keys) == sorted({("all", "")} | {(d, getattr(e, d)) for e in completions for d in ("route", "model", "tenant")})
        for dimension, key in keys:
            latencies = sorted(e.latency_ms for e in completions if dimension == "all" or getattr(e, dimension) == key)
            got = scalar(client, f"SELECT quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) FROM {DB}.routing_latency "
                                 f"WHERE period_s = {period_s} AND dimension = '{dimension}' AND key = '{key}'")
            exact = [latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.95)]
            assert got[:2] == pytest.approx(exact, rel=0.05), (period_s, dimension, key)
        periods = client.query(f"SELECT DISTINCT toUnixTimestamp(period) FROM {DB}.routing_latency WHERE period_s = {period_s}").result_rows
        assert all(seconds % period_s == 0 for (seconds,) in periods)  # whole buckets of their length
    assert {row[0] for row in client.query(f"SELECT DISTINCT toUnixTimestamp(period) FROM {DB}.routing_latency WHERE period_s = 3600").result_rows} == {
        int(T0.replace(minute=0).timestamp()), int(T0.replace(minute=0).timestamp()) + 3600}  # the events cross 10:00


def test_the_010_upgrade_counts_the_completions_of_every_latency_state(client):
    """A store as release 009 left it: migration 010 gives every latency state the count of
    completions it holds (rebuilt from the per-minute rollup), and later inserts count too."""
    migrate(client, DB, upto=9)
    before = generated_events(500, seed=13)
    insert(client, before)
    assert migrate(client, DB) == ["010_latency_counts"]
    after = [e.model_copy(update={"event_id": f"n{e.event_id}"}) for e in generated_events(500, seed=14)]
    insert(client, after)

    completions = [e for e in before + after if e.kind == "completion"]
    for period_s in (60, 3600, 21600):
        counts = dict(client.query(f"SELECT dimension || ':' || key, sum(events) FROM {DB}.routing_latency "
                                   f"WHERE period_s = {period_s} GROUP BY ALL").result_rows)
        expected = {"all:": len(completions)}
        for dimension in ("route", "model", "tenant"):
            for e in completions:
                expected[f"{dimension}:{getattr(e, dimension)}"] = expected.get(f"{dimension}:{getattr(e, dimension)}", 0) + 1
        assert counts == expected, period_s
