"""The Grafana provisioning generated from analytics/queries: committed as generated,
every parameter turned into a macro, and every panel's SQL valid on real ClickHouse
(chDB) once Grafana has replaced the macros."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from turnout.analytics import grafana
from turnout.analytics.sink import COLUMNS, event_row
from turnout.analytics.store import migrate
from turnout.schemas.models import RoutingEvent
from turnout.schemas.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = load_settings(DEPLOY / "turnout.toml")
DATABASE, FLEET = SETTINGS.clickhouse.database, SETTINGS.fleet
PANELS = grafana.panels(FLEET)
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def test_the_committed_files_are_what_the_sql_generates():
    for relative, text in grafana.files(DATABASE, FLEET).items():
        committed = DEPLOY / "grafana" / relative
        assert committed.is_file(), f"{committed} is missing: run `turnout grafana export -c deploy/turnout.toml`"
        assert committed.read_text() == text, f"{committed} is stale: run `turnout grafana export -c deploy/turnout.toml`"


def test_the_provisioning_names_one_datasource_and_never_a_password():
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/clickhouse.yaml").read_text())["datasources"][0]
    assert datasource["uid"] == grafana.DATASOURCE_UID and datasource["jsonData"]["defaultDatabase"] == DATABASE
    assert datasource["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"  # from the environment at start-up
    dashboard = json.loads((DEPLOY / "grafana/dashboards/turnout.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {grafana.DATASOURCE_UID}
    for panel in dashboard["panels"]:
        sql = panel["targets"][0]["rawSql"]
        assert "{since" not in sql and "{until" not in sql and "{db}" not in sql and "{requests}" not in sql, panel["title"]


def test_a_parameter_without_a_macro_is_refused(monkeypatch):
    monkeypatch.setattr(grafana, "MACROS", {k: v for k, v in grafana.MACROS.items() if k != "bucket_s"})
    with pytest.raises(KeyError, match="bucket_s"):
        grafana.grafana_sql("dashboard_traffic", DATABASE)


@pytest.fixture
def store(tmp_path):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    migrate(client, DATABASE)
    events = []
    for i in range(60):
        ts = NOW - timedelta(minutes=i)
        common = {"request_id": f"r{i}", "tenant": "acme", "route": "default", "model": "small", "ts": ts}
        events += [
            RoutingEvent(event_id=f"a{i}", kind="attempt", status="ok", cost_usd=0.001, latency_ms=100.0 + i, input_tokens=10, output_tokens=5, **common),
            RoutingEvent(event_id=f"c{i}", kind="completion", status="ok", latency_ms=110.0 + i, validation="passed", **common),
        ]
    client.insert(f"{DATABASE}.routing_events", [event_row(e) for e in events], column_names=COLUMNS)
    yield client
    client.close()


@pytest.mark.parametrize("panel", PANELS, ids=[p.title for p in PANELS])
def test_every_panel_runs_on_clickhouse_as_grafana_sends_it(store, panel):
    rows = store.query(as_grafana_sends_it(panel)).result_rows
    assert rows, f"{panel.title}: no rows over an hour of traffic"
    if panel.kind == "timeseries":
        assert all(isinstance(row[0], datetime) for row in rows)  # Grafana's time column first
        assert {row[1] for row in rows} <= {"default", "small"}  # one series per route or model


def as_grafana_sends_it(panel: grafana.Panel) -> str:
    """The panel's SQL with the plugin's macros replaced as it replaces them (its
    documented expansions), over the last six hours."""
    since_ms, until_ms = int((NOW - timedelta(hours=6)).timestamp() * 1000), int((NOW + timedelta(minutes=1)).timestamp() * 1000)
    sql = (
        grafana.panel_sql(panel, DATABASE)
        .replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({since_ms})")
        .replace("$__toTime_ms", f"fromUnixTimestamp64Milli({until_ms})")
        .replace("$__interval_s", "300")
    )
    assert "$__" not in sql
    return sql


def test_the_savings_panel_prices_the_baseline_as_the_cli_does(store):
    """The export writes the baseline prices into SQL; the CLI and web dashboard price in
    Python (``questions.savings_table``): on the same spend both must agree."""
    from turnout.analytics import questions

    (panel,) = [p for p in PANELS if p.query == "dashboard_spend"]
    grafana_rows = store.query(as_grafana_sends_it(panel)).result_rows
    spend = store.query(as_grafana_sends_it(grafana.Panel("spend", "dashboard_spend", "table")))
    expected = questions.savings_table(questions.Table("spend", list(spend.column_names), spend.result_rows), FLEET)
    assert len(grafana_rows) == len(expected.rows) == 1
    for got, want in zip(grafana_rows, expected.rows):
        assert got[:2] == want[:2]
        assert got[2:5] == pytest.approx(want[2:5], rel=1e-6)
    baseline = FLEET[questions.baseline_models(FLEET)[False]]
    assert grafana_rows[0][3] == pytest.approx(60 * baseline.cost_usd(10, 5))  # the fixture's 60 calls of 10 + 5 tokens
