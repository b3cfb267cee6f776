"""Derived tables mended on real chDB (``analytics/repair.py``): a bucket that lost the
rows of an insert, or counts one twice, is rebuilt to exactly what the views would have
written, and the tables of rows get back the rows they lack; nothing that agrees is
touched."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_store import DB, generated_events, insert

from turnout.analytics.repair import DERIVED, Repairer, over_source, repair
from turnout.analytics.sink import COLUMNS, event_row
from turnout.analytics.store import migrate
from turnout.cli import cli

CONFIG = Path(__file__).with_name("stack.toml")


@pytest.fixture
def client(tmp_path):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    migrate(client, DB)
    yield client
    client.close()


def derived_state(client) -> dict[str, list]:
    """Every derived table as a query reads it: merged per key, the latency quantiles
    included, the tables of rows read FINAL."""

    def q(sql: str) -> list:
        return client.query(sql.format(db=DB)).result_rows

    rollup = ("SELECT {bucket}, tenant, route, model, kind, shadow, sum(events), sum(errors), sum(fell_back), sum(escalations), "
              "sum(input_tokens), round(sum(cost_usd), 9), quantilesTDigestMerge(0.5, 0.99)(latency) FROM {db}.{table} GROUP BY ALL ORDER BY ALL")
    return {
        "routing_rollup_1m": q(rollup.format(bucket="minute", table="routing_rollup_1m", db="{db}")),
        "routing_rollup_1h": q(rollup.format(bucket="hour", table="routing_rollup_1h", db="{db}")),
        "routing_latency": q("SELECT period_s, period, dimension, key, sum(events), quantilesTDigestMerge(0.5, 0.99)(latency) "
                             "FROM {db}.routing_latency GROUP BY ALL ORDER BY ALL"),
        "request_sample_events": q("SELECT request_id, kind, attempt, sample_key, ts FROM {db}.request_sample_events FINAL ORDER BY ALL"),
        "request_sample_events_sparse": q("SELECT request_id, kind, attempt FROM {db}.request_sample_events_sparse FINAL ORDER BY ALL"),
    }


def test_a_store_that_agrees_is_left_alone(client):
    events = generated_events(1500, seed=21)
    insert(client, events)
    before = derived_state(client)
    report = repair(client, DB, window_s=900)
    assert report.checked_minutes == len({e.ts.replace(second=0, microsecond=0) for e in events})
    assert not report.mended and report.rounds == 1
    assert derived_state(client) == before


def test_buckets_short_of_an_insert_or_counting_one_twice_are_rebuilt_exactly(client):
    insert(client, generated_events(1500, seed=22))
    truth = derived_state(client)
    db = DB
    # an insert that reached the raw table but not the per-minute rollup (nor, through
    # it, the latency states) of one minute, nor the request sample of a few requests
    client.command(f"DELETE FROM {db}.routing_rollup_1m WHERE minute = (SELECT min(minute) FROM {db}.routing_rollup_1m) AND kind = 'completion'")
    client.command(f"DELETE FROM {db}.routing_latency WHERE period_s = 60 AND period = (SELECT max(period) FROM {db}.routing_latency WHERE period_s = 60)")
    client.command(f"DELETE FROM {db}.request_sample_events WHERE request_id IN ('r1', 'r2', 'r3', 'r5', 'r8')")
    client.command(f"DELETE FROM {db}.request_sample_events_sparse WHERE sample_key = (SELECT min(sample_key) FROM {db}.request_sample_events_sparse)")
    # and an hour counting one insert's rows twice
    client.command(f"INSERT INTO {db}.routing_rollup_1h SELECT * FROM {db}.routing_rollup_1h ORDER BY hour LIMIT 3")
    damaged = derived_state(client)
    assert [table for table in truth if damaged[table] == truth[table]] == []

    report = repair(client, DB, window_s=900)

    assert derived_state(client) == truth
    assert report.rebuilt_buckets["routing_rollup_1m"] == 1 and report.rebuilt_buckets["routing_rollup_1h"] == 1
    assert report.rebuilt_buckets["routing_latency"] >= 3  # the minute's latency states, and its hour's and six hours' (fed anew)
    sampled_kinds = client.query(f"SELECT count() FROM {db}.routing_events FINAL WHERE request_id IN ('r1', 'r2', 'r3', 'r5', 'r8') "
                                 "AND kind IN ('attempt', 'completion', 'failure') AND shadow = 0").result_rows[0][0]
    assert report.restored_rows["request_sample_events"] == sampled_kinds
    assert report.restored_rows["request_sample_events_sparse"] >= 1
    assert report.rounds == 2  # the second round found everything in agreement
    assert not repair(client, DB, window_s=900).mended


def test_only_the_minutes_of_recent_inserts_are_checked(client):
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    old = generated_events(600, seed=23)
    client.insert(f"{DB}.routing_events", [[*event_row(e), two_hours_ago] for e in old], column_names=[*COLUMNS, "inserted_at"])
    client.command(f"DELETE FROM {DB}.routing_rollup_1m WHERE minute = (SELECT min(minute) FROM {DB}.routing_rollup_1m)")
    later = [e.model_copy(update={"event_id": f"n{e.event_id}", "ts": e.ts + timedelta(days=1)}) for e in generated_events(10, seed=24)]
    insert(client, later)  # inserted now, a day later in event time

    report = repair(client, DB, window_s=900)  # 15 minutes back from the newest insert: the later events' minutes
    assert report.checked_minutes == len({e.ts.replace(second=0, microsecond=0) for e in later}) and not report.mended
    wider = repair(client, DB, window_s=3 * 3600)  # reaches the old insert and its gap
    assert wider.rebuilt_buckets == {"routing_rollup_1m": 1, "routing_latency": 3}


def test_every_view_is_known_and_reads_its_source_once(client):
    repairer = Repairer(client, DB)
    views = {row[0] for row in client.query(f"SELECT name FROM system.tables WHERE database = '{DB}' AND engine = 'MaterializedView'").result_rows}
    assert views == {d.view for d in DERIVED}, "a new materialized view must be listed in repair.DERIVED"
    for derived in DERIVED:
        over_source(repairer.view_select(derived), DB, derived, [0])  # raises unless the view reads its source exactly once


def test_the_repair_command_reaches_as_far_back_as_asked(client, tmp_path):
    insert(client, generated_events(300, seed=25))
    client.command(f"DELETE FROM {DB}.routing_rollup_1h WHERE 1")
    env = {"TURNOUT_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'chdb'}", "TURNOUT_CLICKHOUSE__DATABASE": DB}
    mended = CliRunner().invoke(cli, ["repair", "--config", str(CONFIG), "--since", "1h"], env=env)
    assert mended.exit_code == 0, mended.output
    assert "routing_rollup_1h: 2 buckets rebuilt" in mended.output  # the events cross 10:00
    assert client.query(f"SELECT sum(events) FROM {DB}.routing_rollup_1h").result_rows[0][0] == 300
    again = CliRunner().invoke(cli, ["repair", "--config", str(CONFIG), "--since", "1h"], env=env)
    assert "every derived table agrees" in again.output
    missing = CliRunner().invoke(cli, ["repair", "--config", str(CONFIG)], env={**env, "TURNOUT_CLICKHOUSE__DATABASE": "nothing_here"})
    assert missing.exit_code == 1 and "turnout migrate" in missing.output
