"""The pure parts of the analytics questions: durations, the savings baseline, the SQL
each question runs (one definition of a request, shared by every query that needs it)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from turnout.analytics.questions import Window, baseline_models, parse_duration, savings_table, sql
from turnout.analytics.report import Table
from turnout.analytics.store import QUERIES_DIR
from turnout.schemas.fleet import ModelDeployment


def deployment(tier: int, price_in: float, price_out: float, **extra) -> ModelDeployment:
    return ModelDeployment(provider="simulated", served_model="m", quality_tier=tier, price_input_per_mtok=price_in, price_output_per_mtok=price_out, **extra)


FLEET = {
    "small": deployment(1, 0.1, 0.4),
    "large": deployment(4, 3.0, 15.0),
    "large-cheap": deployment(4, 1.0, 5.0),
    "embed": deployment(2, 0.02, 0.0, capabilities=["embeddings"]),
    "embed-big": deployment(3, 0.13, 0.0, capabilities=["embeddings"]),
}


@pytest.mark.parametrize(("text", "span"), [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)), ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("1.5h", timedelta(minutes=90))])
def test_parse_duration(text, span):
    assert parse_duration(text) == span


@pytest.mark.parametrize("text", ["24", "1y", "-1h", "0h", "h", ""])
def test_parse_duration_refuses_ambiguous_or_empty_spans(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_window_last_ends_where_asked():
    end = Window.last(timedelta(hours=2)).until
    window = Window.last(timedelta(hours=1), end)
    assert window.until == end and window.until - window.since == timedelta(hours=1)


def test_baseline_is_the_highest_tier_dearer_on_a_tie_embeddings_apart():
    assert baseline_models(FLEET) == {False: "large", True: "embed-big"}


def spend(*rows) -> Table:
    columns = ["day", "tenant", "route", "model", "calls", "input_tokens", "output_tokens", "cost_usd", "shadow_cost_usd"]
    return Table("spend", columns, [tuple(r) for r in rows])


def test_savings_price_the_same_tokens_on_the_baseline():
    table = savings_table(
        spend(
            ("d1", "acme", "chat", "small", 10, 1_000_000, 1_000_000, 0.5, 0.0),  # baseline 3 + 15
            ("d2", "acme", "chat", "large", 1, 1_000_000, 0, 3.0, 0.0),  # baseline 3: nothing saved
            ("d1", "acme", "search", "embed", 5, 2_000_000, 0, 0.04, 0.0),  # priced at embed-big: 0.26
        ),
        FLEET,
    )
    rows = {(r["tenant"], r["route"]): r for r in table.as_dicts()}
    assert rows[("acme", "chat")]["cost_usd"] == 3.5 and rows[("acme", "chat")]["baseline_usd"] == 21.0
    assert rows[("acme", "chat")]["saved_usd"] == 17.5 and rows[("acme", "chat")]["saved_pct"] == 83.3
    assert rows[("acme", "search")]["baseline_usd"] == pytest.approx(0.26) and rows[("acme", "search")]["saved_usd"] == pytest.approx(0.22)
    assert "large" in table.title and "embed-big" in table.title


def test_savings_of_a_model_gone_from_the_fleet_use_the_chat_baseline():
    table = savings_table(spend(("d1", "t", "chat", "retired", 1, 1_000_000, 0, 1.0, 0.0)), FLEET)
    assert table.as_dicts()[0]["baseline_usd"] == 3.0


def test_no_spend_no_savings_rows():
    assert savings_table(spend(), FLEET).rows == []


@pytest.mark.parametrize("name", sorted(p.stem for p in QUERIES_DIR.glob("*.sql")))
def test_every_query_is_complete_sql(name):
    """No placeholder left for the client to fill: only ClickHouse's own {name:Type}
    parameters, which the server binds (comments aside)."""
    code = "\n".join(line for line in sql(name, "turnout").splitlines() if not line.lstrip().startswith("--"))
    assert re.findall(r"\{[^}:]*\}", code) == []


def test_requests_are_defined_once():
    """The per-request queries embed requests.sql rather than restating it. (feedback.sql
    only looks up a route for the requests that have feedback, by their final event, so
    that the dashboard need not group every request of its window; its figures are
    checked against hand-built requests in tests/integration/test_analytics_questions.py.
    regression_samples.sql applies requests.sql's expressions to a sample of the events
    keyed by request hash: tests/integration/test_questions_sample.py checks that a window
    read whole gives requests.sql's figures exactly.)"""
    for name in ("latency", "quality"):
        assert "{requests}" in (QUERIES_DIR / f"{name}.sql").read_text()
        assert "escalated" in sql(name, "turnout")
