"""Grafana provisioning for production, generated from the same SQL files as the CLI and
the dashboard (``analytics/queries/``), so that the three never disagree.

``turnout grafana export`` writes, under ``deploy/grafana/`` by default:

- ``provisioning/datasources/clickhouse.yaml``: the official ClickHouse data source
  (``grafana-clickhouse-datasource``) on the compose file's ClickHouse server, over HTTP,
  its password read from the environment (``$CLICKHOUSE_PASSWORD``), never written down;
- ``provisioning/dashboards/turnout.yaml``: a file provider for the dashboards folder;
- ``dashboards/turnout.json``: the Turnout dashboard.

A query file's server-side parameters become the plugin's macros: the window's bounds
``{since:…}``/``{until:…}`` are ``$__fromTime_ms``/``$__toTime_ms`` (DateTime64(3)
values, as the files compare them), the bucket ``{bucket_s:UInt32}`` is
``$__interval_s``, and the rollup the dashboard picks per range is the per-minute one
(Grafana's interval then chooses the bucket). ``{requests}`` is expanded as everywhere
else (``questions.sql``). A parameter without a macro is an error, not a silent blank.
The generated files are committed; a unit test regenerates them and fails when they
no longer match the SQL, and runs every panel's SQL on chDB with the macros replaced.
Savings against the most capable model need the fleet's prices, which the store does
not hold: the export writes the baseline deployments' prices into that panel's SQL
(``savings_select``), the same pricing as ``questions.savings_table``, so re-export
after changing the fleet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from collections.abc import Mapping

from turnout.schemas.fleet import ModelDeployment

from . import questions
from .store import without_comments

DATASOURCE_UID = "turnout-clickhouse"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}
TIMESERIES, TABLE = 0, 1  # the plugin's query formats
MACROS = {
    "since": "$__fromTime_ms",
    "until": "$__toTime_ms",
    "bucket_s": "$__interval_s",
    "rollup": "routing_rollup_1m",
    "rollup_time": "minute",
}
_PARAMETER = re.compile(r"\{(\w+):[^{}]*\}")


@dataclass(frozen=True)
class Panel:
    """One panel: ``query`` names a file; ``select`` (optional) reads its rows, as
    ``SELECT … FROM (<query>) AS q``, into the shape the visualization wants."""

    title: str
    query: str
    kind: str  # "timeseries" or "table"
    select: str | None = None
    unit: str = "none"


def traffic(figure: str, dimension: str) -> str:
    """A time series of one figure of ``dashboard_traffic.sql`` per route, model or tenant
    (long format: the plugin makes one series per ``key``)."""
    return f"SELECT bucket AS time, key, {figure} AS value FROM q WHERE is_total = 0 AND dimension = '{dimension}' ORDER BY time, key"


PANELS = (
    Panel("Spend per model", "dashboard_traffic", "timeseries", traffic("spend_usd", "model"), "currencyUSD"),
    Panel("Requests per route", "dashboard_traffic", "timeseries", traffic("requests", "route")),
    Panel("Latency p95 per route", "dashboard_traffic", "timeseries", traffic("latency_ms[2]", "route"), "ms"),
    Panel("Latency p99 per model", "dashboard_traffic", "timeseries", traffic("latency_ms[3]", "model"), "ms"),
    Panel("Request error rate per route", "dashboard_traffic", "timeseries", traffic("failed / nullIf(requests, 0)", "route"), "percentunit"),
    Panel("Backend call error rate per model", "dashboard_traffic", "timeseries", traffic("failed_attempts / nullIf(attempts, 0)", "model"), "percentunit"),
    Panel("Spend by day, tenant, route and model", "spend", "table"),
    Panel("Quality per route", "dashboard_quality", "table"),
    Panel("Latency and errors per route and model", "latency", "table"),
)


def savings_select(fleet: Mapping[str, ModelDeployment]) -> str:
    """Per tenant and route, ``dashboard_spend.sql``'s spend beside what the same tokens
    cost on the most capable model, priced as ``questions.savings_table`` prices them:
    embedding models' tokens at the embedding baseline, every other model's (including
    models no longer in the fleet) at the chat baseline, a kind without a baseline at its
    actual cost."""
    baselines = questions.baseline_models(fleet)
    embedding_models = sorted(model for model, deployment in fleet.items() if questions.embeds(deployment))

    def priced(embeds: bool) -> str:
        target = fleet.get(baselines.get(embeds, ""))
        if target is None:
            return "cost_usd"
        return f"(input_tokens * {target.price_input_per_mtok!r} + output_tokens * {target.price_output_per_mtok!r}) / 1e6"

    quoted = ", ".join("'" + model.replace("\\", "\\\\").replace("'", "\\'") + "'" for model in embedding_models)
    baseline = f"if(model IN ({quoted}), {priced(True)}, {priced(False)})" if embedding_models else priced(False)
    return (
        "SELECT tenant, route, round(sum(cost_usd), 6) AS cost_usd, "
        f"round(sum({baseline}), 6) AS baseline_usd, round(baseline_usd - cost_usd, 6) AS saved_usd, "
        "round(100 * saved_usd / nullIf(baseline_usd, 0), 1) AS saved_pct "
        "FROM q GROUP BY tenant, route ORDER BY tenant, route"
    )


def panels(fleet: Mapping[str, ModelDeployment]) -> tuple[Panel, ...]:
    """Every panel: the fixed ones and the savings table priced from ``fleet``."""
    return (*PANELS, Panel("Savings against the most capable model", "dashboard_spend", "table", savings_select(fleet), "currencyUSD"))


def grafana_sql(name: str, database: str) -> str:
    """The query file ``name`` with its parameters as the plugin's macros."""

    def macro(match: re.Match[str]) -> str:
        parameter = match.group(1)
        if parameter not in MACROS:
            raise KeyError(f"queries/{name}.sql takes {{{parameter}:…}}, which has no Grafana macro: add one to MACROS")
        return MACROS[parameter]

    text = questions.sql(name, database)
    return _PARAMETER.sub(macro, without_comments(text))


def panel_sql(panel: Panel, database: str) -> str:
    inner = grafana_sql(panel.query, database)
    return inner if panel.select is None else panel.select.replace("FROM q", f"FROM (\n{inner}\n) AS q")


def dashboard(database: str, fleet: Mapping[str, ModelDeployment]) -> dict:
    """The dashboard model: time series two abreast, tables full width below."""
    models, x, y = [], 0, 0
    for number, panel in enumerate(panels(fleet), start=1):
        width, height = (12, 8) if panel.kind == "timeseries" else (24, 9)
        if x + width > 24:
            x, y = 0, y + height
        models.append(
            {
                "id": number,
                "type": panel.kind,
                "title": panel.title,
                "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": width, "h": height},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": DATASOURCE,
                        "editorType": "sql",
                        "queryType": "table" if panel.kind == "table" else "timeseries",
                        "format": TABLE if panel.kind == "table" else TIMESERIES,
                        "rawSql": panel_sql(panel, database),
                    }
                ],
            }
        )
        x += width
        if x >= 24:
            x, y = 0, y + height
    return {
        "uid": "turnout",
        "title": "Turnout routing",
        "tags": ["turnout"],
        "timezone": "utc",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "panels": models,
    }


def datasource_yaml(database: str) -> str:
    return f"""# Generated by `turnout grafana export` from analytics/queries: do not edit by hand.
apiVersion: 1
datasources:
  - name: ClickHouse (Turnout)
    uid: {DATASOURCE_UID}
    type: grafana-clickhouse-datasource
    isDefault: true
    jsonData:
      host: clickhouse
      port: 8123
      protocol: http
      username: default
      defaultDatabase: {database}
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
"""


DASHBOARDS_YAML = """# Generated by `turnout grafana export`: do not edit by hand.
apiVersion: 1
providers:
  - name: turnout
    folder: Turnout
    type: file
    disableDeletion: true
    allowUiUpdates: false
    options:
      path: /var/lib/grafana/dashboards
"""


def files(database: str, fleet: Mapping[str, ModelDeployment]) -> dict[str, str]:
    """Every provisioning file, by path under the export directory."""
    return {
        "provisioning/datasources/clickhouse.yaml": datasource_yaml(database),
        "provisioning/dashboards/turnout.yaml": DASHBOARDS_YAML,
        "dashboards/turnout.json": json.dumps(dashboard(database, fleet), indent=2) + "\n",
    }


def export(directory: Path, database: str, fleet: Mapping[str, ModelDeployment]) -> list[Path]:
    written = []
    for relative, text in files(database, fleet).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
