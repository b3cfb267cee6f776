"""The questions analysts ask of the routing events: spend, savings, latency and errors
over time, quality per route. Each answer is a ``Table`` (like ``turnout report``'s),
from the SQL in ``queries/`` (one place for the CLI, the dashboard and Grafana).

Queries over requests embed ``queries/requests.sql`` where they say ``{requests}``, so
"a request", "an escalation" and "a fallback" are defined once (see that file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from clickhouse_connect.driver.client import Client

from turnout.schemas.fleet import EMBEDDINGS, ModelDeployment

from .report import Table
from .store import query_sql

REQUESTS_PLACEHOLDER = "{requests}"
QUESTIONS = ("spend", "savings", "latency", "quality")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w``: the spans the CLI takes, one unit each
    (no bare numbers: "24" could mean hours or days)."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h, 7d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


@dataclass(frozen=True)
class Window:
    """The half-open time range ``[since, until)`` a question is asked over, in UTC."""

    since: datetime
    until: datetime

    @classmethod
    def last(cls, span: timedelta, until: datetime | None = None) -> Window:
        end = (until or datetime.now(timezone.utc)).astimezone(timezone.utc)
        return cls(end - span, end)

    def parameters(self) -> dict:
        return {"since": self.since.astimezone(timezone.utc), "until": self.until.astimezone(timezone.utc)}


def sql(name: str, database: str) -> str:
    """``queries/<name>.sql`` with ``{requests}`` expanded to the per-request row set."""
    text = query_sql(name, database)
    if REQUESTS_PLACEHOLDER in text:
        text = text.replace(REQUESTS_PLACEHOLDER, query_sql("requests", database))
    return text


def run(client: Client, database: str, name: str, title: str, parameters: Mapping[str, object]) -> Table:
    result = client.query(sql(name, database), parameters=dict(parameters))
    return Table(title, list(result.column_names), [tuple(row) for row in result.result_rows])


def has_feedback(client: Client, database: str) -> bool:
    """Feedback arrives with its own migration; until it has run there is nothing to join."""
    return bool(client.command(f"EXISTS TABLE {database}.feedback"))


# -- the questions ---------------------------------------------------------------------------
def spend(client: Client, database: str, window: Window) -> Table:
    return run(client, database, "spend", "spend by day, tenant, route and model", window.parameters())


def latency(client: Client, database: str, window: Window, bucket: timedelta = timedelta(hours=1)) -> Table:
    parameters = {**window.parameters(), "bucket_s": max(1, int(bucket.total_seconds()))}
    return run(client, database, "latency", f"latency and errors per route and model, per {_span(bucket)}", parameters)


def quality(client: Client, database: str, window: Window) -> list[Table]:
    """Validation, escalation and fallback rates per route; feedback per route and metric
    once the feedback table exists."""
    tables = [run(client, database, "quality", "quality per route", window.parameters())]
    if has_feedback(client, database):
        tables.append(feedback(client, database, window))
    return tables


def feedback(client: Client, database: str, window: Window) -> Table:
    """Mean feedback score per route and metric (the feedback table must exist)."""
    return run(client, database, "feedback", "feedback per route and metric", window.parameters())


def savings(client: Client, database: str, window: Window, fleet: Mapping[str, ModelDeployment]) -> Table:
    """What the same tokens would have cost on the fleet's most capable model."""
    return savings_table(spend(client, database, window), fleet)


def baseline_models(fleet: Mapping[str, ModelDeployment]) -> dict[bool, str]:
    """The most capable deployment for chat and for embeddings (keyed by "is an embedding
    model"): the highest quality tier, the dearer one on a tie (the conservative baseline).
    Embedding tokens are priced at an embedding model: no chat model could have served them."""
    best: dict[bool, str] = {}
    for model_id, deployment in fleet.items():
        kind = embeds(deployment)
        current = fleet.get(best.get(kind, ""))
        if current is None or _capability(deployment) > _capability(current):
            best[kind] = model_id
    return best


def savings_table(spend_table: Table, fleet: Mapping[str, ModelDeployment]) -> Table:
    """Per tenant and route: actual cost, baseline cost (the same tokens at the most capable
    model's prices) and the difference. Pure: the prices come from the fleet settings,
    which the store does not know. Models no longer in the fleet are priced as chat."""
    baselines = baseline_models(fleet)
    totals: dict[tuple[str, str], list[float]] = {}
    for row in spend_table.as_dicts():
        deployment = fleet.get(row["model"])
        target = fleet.get(baselines.get(embeds(deployment) if deployment else False, ""))
        baseline = target.cost_usd(row["input_tokens"], row["output_tokens"]) if target else row["cost_usd"]
        sums = totals.setdefault((row["tenant"], row["route"]), [0.0, 0.0])
        sums[0] += row["cost_usd"]
        sums[1] += baseline
    rows = []
    for (tenant, route), (actual, baseline) in sorted(totals.items()):
        saved = baseline - actual
        rows.append((tenant, route, round(actual, 6), round(baseline, 6), round(saved, 6), round(100 * saved / baseline, 1) if baseline else None))
    names = ", ".join(f"{baselines[kind]}" for kind in sorted(baselines))
    columns = ["tenant", "route", "cost_usd", "baseline_usd", "saved_usd", "saved_pct"]
    return Table(f"savings against everything on the most capable model ({names})", columns, rows)


def embeds(deployment: ModelDeployment) -> bool:
    """An embedding model: its tokens are priced against the embedding baseline."""
    return EMBEDDINGS in deployment.capabilities


def _capability(deployment: ModelDeployment) -> tuple[int, float]:
    return deployment.quality_tier, deployment.price_input_per_mtok + deployment.price_output_per_mtok


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
