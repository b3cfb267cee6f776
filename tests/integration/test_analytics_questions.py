"""The analytics questions and regression detection on real chDB: synthetic routing
events (the sink's own rows) in a migrated store, a planted regression found with a
small p-value, an unchanged fleet found unchanged, and the CLI's exit codes."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from turnout.analytics import questions
from turnout.analytics.questions import Window, has_feedback
from turnout.analytics.regressions import ALL_MODELS, Criteria, compare_versions, compare_windows
from turnout.analytics.sink import COLUMNS, event_row
from turnout.analytics.store import migrate, open_client
from turnout.cli import cli
from turnout.schemas.models import RoutingEvent
from turnout.schemas.settings import load_settings

CONFIG = Path(__file__).with_name("stack.toml")
FEEDBACK_COLUMNS = ["feedback_id", "request_id", "tenant", "metric", "score", "comment", "source", "ts"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("analytics") / "chdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TURNOUT_CLICKHOUSE__DSN", f"chdb://{directory}")
        settings = load_settings(CONFIG)
    client = open_client(settings.clickhouse)
    yield client, directory, settings
    client.close()


def fresh_database(store, name: str) -> str:
    client = store[0]
    migrate(client, name)
    if not has_feedback(client, name):  # until the feedback migration lands
        client.command(
            f"CREATE TABLE {name}.feedback (feedback_id String, request_id String, tenant LowCardinality(String), metric LowCardinality(String), "
            "score Float64, comment String, source LowCardinality(String), ts DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY feedback_id"
        )
    return name


def request(rid: str, at: datetime, *, model: str, latency: float, failed: bool = False, cost: float = 0.001, route: str = "chat",
            policy: str = "v1", shadow: bool = False, tokens: tuple[int, int] = (100, 50), validation: str = "") -> list[RoutingEvent]:
    """One request as the workers record it: its paid attempt, then its final outcome."""
    common = {"request_id": rid, "tenant": "acme", "route": route, "policy_version": policy, "shadow": shadow}
    attempt = RoutingEvent(
        event_id=RoutingEvent.make_id(rid, "attempt", 0, shadow), kind="attempt", ts=at - timedelta(milliseconds=latency), model=model,
        status="error" if failed else "ok", input_tokens=tokens[0], output_tokens=tokens[1], cost_usd=cost, latency_ms=latency, **common,
    )
    kind = "failure" if failed else "completion"
    final = RoutingEvent(
        event_id=RoutingEvent.make_id(rid, kind, 0, shadow), kind=kind, ts=at, model="" if failed else model,
        status="error" if failed else "ok", error_kind="all_backends_failed" if failed else "", latency_ms=0 if failed else latency,
        validation=validation, **common,
    )
    return [attempt, final]


def insert(store, database: str, events: list[RoutingEvent]) -> None:
    store[0].insert(f"{database}.routing_events", [event_row(e) for e in events], column_names=COLUMNS)


def traffic(rng: random.Random, prefix: str, start: datetime, end: datetime, n: int, *, model: str, latency: float, error_rate: float, **extra) -> list[RoutingEvent]:
    """``n`` requests spread over [start, end): lognormal latencies around ``latency`` ms,
    exactly ``error_rate`` of them failed."""
    failures = round(n * error_rate)
    events = []
    for i in range(n):
        at = start + (end - start) * rng.random()
        events += request(f"{prefix}{i}", at, model=model, latency=rng.lognormvariate(math.log(latency), 0.3), failed=i < failures, **extra)
    return events


def windows_dataset(store, database: str, seed: int, planted: bool) -> None:
    """24 h of baseline then an hour of recent traffic on two models; ``planted``: the
    large model's latency doubles and its error rate goes from 2 % to 20 % in the last hour.
    A shadow copy of the small model answers slowly in the last hour: it must not count."""
    rng, now = random.Random(seed), datetime.now(timezone.utc)
    recent, before = (now - timedelta(minutes=55), now - timedelta(minutes=1)), (now - timedelta(hours=24, minutes=55), now - timedelta(hours=1, minutes=5))
    events = []
    for model in ("small", "large"):
        events += traffic(rng, f"b-{model}-", *before, 400, model=model, latency=100, error_rate=0.02)
        slower = planted and model == "large"
        events += traffic(rng, f"r-{model}-", *recent, 150, model=model, latency=200 if slower else 100, error_rate=0.2 if slower else 0.02)
    events += traffic(rng, "shadow-", *recent, 150, model="small", latency=5000, error_rate=0.5, shadow=True)
    insert(store, database, events)


def test_a_planted_regression_is_found_with_its_evidence(store):
    database = fresh_database(store, "planted")
    windows_dataset(store, database, seed=11, planted=True)
    comparison = compare_windows(store[0], database, timedelta(hours=1), timedelta(hours=24), None, Criteria())
    flagged = {(f.route, f.model, f.metric): f for f in comparison.regressions}
    assert set(flagged) == {
        ("chat", "large", "latency_p50_ms"), ("chat", "large", "error_rate"),
        ("chat", ALL_MODELS, "latency_p50_ms"), ("chat", ALL_MODELS, "error_rate"),  # the route as a whole feels it too
    }
    latency, errors = flagged[("chat", "large", "latency_p50_ms")], flagged[("chat", "large", "error_rate")]
    assert (latency.n_baseline, latency.n_candidate) == (392, 120)  # completed requests only
    assert latency.candidate_value / latency.baseline_value == pytest.approx(2, rel=0.15)
    assert latency.test == "Mann-Whitney U" and latency.p_value < 1e-10
    assert (errors.baseline_value, errors.candidate_value, errors.n_baseline, errors.n_candidate) == (0.02, 0.2, 400, 150)
    assert errors.p_value < 1e-6
    small = [f for f in comparison.findings if f.model == "small"]
    assert small and all(f.verdict == "unchanged" for f in small)  # the slow shadow copies answered nobody


def test_an_unchanged_fleet_finds_nothing(store):
    database = fresh_database(store, "unchanged")
    windows_dataset(store, database, seed=12, planted=False)
    comparison = compare_windows(store[0], database, timedelta(hours=1), timedelta(hours=24), None, Criteria())
    assert len(comparison.findings) == 9  # three scopes, three metrics: all tested
    assert comparison.regressions == [] and all(f.verdict == "unchanged" for f in comparison.findings)


def test_policy_versions_compared_on_cost_and_feedback(store):
    database = fresh_database(store, "policies")
    rng, now = random.Random(13), datetime.now(timezone.utc)
    span = (now - timedelta(hours=3), now - timedelta(minutes=1))
    events = traffic(rng, "v1-", *span, 200, model="small", latency=100, error_rate=0.01, policy="v1", cost=0.001)
    events += traffic(rng, "v2-", *span, 200, model="small", latency=100, error_rate=0.01, policy="v2", cost=0.0025)
    insert(store, database, events)
    scores = [[f"f{rid}", rid, "acme", "rating", (4.0 if rid.startswith("v1") else 2.5) + rng.random(), "", "test", now]
              for rid in {e.request_id for e in events}]
    store[0].insert(f"{database}.feedback", scores, column_names=FEEDBACK_COLUMNS)
    comparison = compare_versions(store[0], database, "policy_version", "v1", "v2", Window.last(timedelta(hours=6)), Criteria())
    flagged = {(f.model, f.metric): f for f in comparison.regressions}
    assert set(flagged) == {(m, metric) for m in (ALL_MODELS, "small") for metric in ("cost_per_request_usd", "feedback:rating")}
    cost = flagged[(ALL_MODELS, "cost_per_request_usd")]
    assert (cost.baseline_value, cost.candidate_value) == (pytest.approx(0.001), pytest.approx(0.0025)) and cost.test == "Welch t"


def test_the_questions_answer_from_the_same_requests(store):
    """Four requests whose paths are known: answered at once, escalated after an answer
    that failed validation, fallen back after an error, failed; plus a shadow copy."""
    database = fresh_database(store, "questions")
    at, events = datetime.now(timezone.utc) - timedelta(minutes=10), []

    def event(rid: str, kind: str, attempt: int = 0, **fields) -> RoutingEvent:
        return RoutingEvent(event_id=RoutingEvent.make_id(rid, kind, attempt), request_id=rid, tenant="acme", kind=kind, route="chat", attempt=attempt, ts=at, **fields)

    events += request("ok", at, model="small", latency=100, cost=0.001, tokens=(1_000_000, 0), validation="passed")
    events += [
        event("esc", "attempt", 0, model="small", status="ok", cost_usd=0.001, input_tokens=1_000_000),
        event("esc", "attempt", 1, model="medium", status="ok", cost_usd=0.01, fallback_depth=2),
        event("esc", "completion", model="medium", status="ok", latency_ms=300, ttft_ms=40.0, fallback_depth=2, validation="reasked"),
        event("fb", "attempt", 0, model="flaky", status="error"),
        event("fb", "attempt", 1, model="medium", status="ok", cost_usd=0.003, fallback_depth=1),
        event("fb", "completion", model="medium", status="ok", latency_ms=200, ttft_ms=60.0, fallback_depth=1, validation="failed"),
    ]
    events += request("bad", at, model="small", latency=50, failed=True, cost=0.0)
    events += request("ok", at, model="medium", latency=9000, cost=0.5, shadow=True)  # paid, answers nobody
    insert(store, database, events)
    store[0].insert(f"{database}.feedback", [["f1", "ok", "acme", "rating", 5.0, "", "t", at], ["f2", "esc", "acme", "rating", 3.0, "", "t", at]], column_names=FEEDBACK_COLUMNS)
    window = Window.last(timedelta(hours=1))

    quality, feedback = questions.quality(store[0], database, window)
    assert quality.as_dicts() == [{
        "route": "chat", "requests": 4, "error_rate": 0.25, "validated": 3, "pass_rate": round(2 / 3, 4), "first_try_pass_rate": round(1 / 3, 4),
        "escalation_rate": 0.25, "fallback_rate": 0.25,
    }]
    assert feedback.as_dicts() == [{"route": "chat", "metric": "rating", "scores": 2, "mean_score": 4.0}]

    latency = {row["model"]: row for row in questions.latency(store[0], database, window, timedelta(minutes=5)).as_dicts()}
    assert {m: (r["requests"], r["errors"], r["p50_ms"]) for m, r in latency.items()} == {"small": (2, 1, 100.0), "medium": (2, 0, 250.0)}
    assert (latency["medium"]["ttft_p50_ms"], latency["small"]["ttft_p50_ms"]) == (50.0, None)  # streamed answers only

    spend = {row["model"]: row for row in questions.spend(store[0], database, window).as_dicts()}
    assert spend["medium"]["cost_usd"] == pytest.approx(0.513) and spend["medium"]["shadow_cost_usd"] == pytest.approx(0.5)
    assert spend["flaky"]["calls"] == 1 and spend["small"]["calls"] == 3

    fleet = store[2].fleet  # medium is the dearest at the default tier: the baseline
    savings = questions.savings(store[0], database, window, fleet).as_dicts()
    tokens_in, tokens_out = 2_000_000 + 2 * 100, 2 * 50  # two 1M-token prompts; the failed request and the shadow copy
    assert len(savings) == 1 and savings[0]["baseline_usd"] == pytest.approx((tokens_in * 1.0 + tokens_out * 4.0) / 1e6)
    assert savings[0]["saved_usd"] == pytest.approx(savings[0]["baseline_usd"] - 0.515)


def run_cli(store, database: str, *args: str):
    env = {"TURNOUT_CLICKHOUSE__DSN": f"chdb://{store[1]}", "TURNOUT_CLICKHOUSE__DATABASE": database}
    return CliRunner().invoke(cli, [*args[:2], "--config", str(CONFIG), *args[2:]] if args[0] == "analytics" else [args[0], "--config", str(CONFIG), *args[1:]], env=env)


def test_cli_gates_a_rollout_on_regressions(store):
    """Exit 1 on the planted regression, 0 on the unchanged fleet; JSON says what was compared."""
    found = run_cli(store, "planted", "regressions", "--json")
    assert found.exit_code == 1, found.output
    report = json.loads(found.output)
    assert report["kind"] == "windows" and report["regressions"] == 4
    clean = run_cli(store, "unchanged", "regressions")
    assert clean.exit_code == 0, clean.output
    assert "no regression" in clean.output and "against baseline" in clean.output
    strict = run_cli(store, "unchanged", "regressions", "--policy", "v1", "v1")
    assert strict.exit_code == 2 and "itself" in strict.output


def test_cli_bounds_the_requests_tested_per_route_and_window(store):
    found = run_cli(store, "planted", "regressions", "--json", "--all", "--sample-size", "50")
    findings = json.loads(found.output)["findings"]
    assert findings and max(max(f["n_baseline"], f["n_candidate"]) for f in findings) == 50


def test_cli_compares_policy_versions(store):
    result = run_cli(store, "policies", "regressions", "--policy", "v1", "v2", "--since", "6h")
    assert result.exit_code == 1 and "cost_per_request_usd" in result.output and "feedback:rating" in result.output


@pytest.mark.parametrize("question", ["spend", "savings", "latency", "quality"])
def test_cli_answers_each_question(store, question):
    result = run_cli(store, "questions", "analytics", question, "--since", "2h", "--json")
    assert result.exit_code == 0, result.output
    tables = json.loads(result.output)
    assert tables and all(rows for rows in tables.values())


def test_cli_refuses_a_bare_number_of_hours(store):
    result = run_cli(store, "questions", "analytics", "spend", "--since", "24")
    assert result.exit_code == 2 and "not a duration" in result.output
