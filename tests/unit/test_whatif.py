"""analytics/whatif.py: the estimation rules of a policy what-if, with hand-built
requests, outcomes and observations (the store is read in tests/integration/test_prompts_whatif.py)."""

from __future__ import annotations

import pytest
from factories import T0, user

from turnout.analytics.whatif import Choice, ModelObservations, Outcome, StoredPrompt, compare, estimate, percentile, unit_point
from turnout.schemas.fleet import ModelDeployment
from turnout.schemas.models import PromptText, Signals

FLEET = {
    "small": ModelDeployment(provider="simulated", served_model="s", price_input_per_mtok=1.0, price_output_per_mtok=2.0, typical_latency_ms=300),
    "large": ModelDeployment(provider="simulated", served_model="l", price_input_per_mtok=10.0, price_output_per_mtok=30.0, typical_latency_ms=2000),
}
FLAT_LARGE = ModelObservations(answers=50, levels=[0.01, 0.5, 0.99], latency_ms=[900.0, 1000.0, 1100.0], mean_output_tokens=400.0)


def stored(request_id: str, outcome: Outcome, input_tokens: int = 100, expected_output_tokens: int = 250, version: str = "v1") -> StoredPrompt:
    signals = Signals(task_type="qa", task_confidence=1, task_method="m", input_tokens=input_tokens, token_method="t", turns=1, expected_output_tokens=expected_output_tokens)
    prompt = PromptText(request_id=request_id, tenant="acme", ts=T0, policy_version=version, messages=[user("hi")], signals=signals)
    return StoredPrompt(prompt, outcome)


SERVED_SMALL = Outcome("served", routed_to="small", cost_usd=0.0005, latency_ms=250.0, input_tokens=120, output_tokens=200)


def test_an_unchanged_choice_counts_what_actually_happened() -> None:
    result = estimate(stored("r", SERVED_SMALL), Choice("small"), FLEET, {})
    assert (result.changed, result.status, result.cost_usd, result.latency_ms) == (False, "served", 0.0005, 250.0)
    assert result.output_tokens_from == result.latency_from == ""


def test_a_moved_request_costs_its_actual_tokens_at_the_new_models_prices() -> None:
    result = estimate(stored("r", SERVED_SMALL), Choice("large"), FLEET, {"large": FLAT_LARGE})
    assert result.changed and result.status == "served"
    assert result.cost_usd == pytest.approx((120 * 10.0 + 200 * 30.0) / 1e6)
    assert result.output_tokens_from == "actual answer"
    assert 900.0 <= result.latency_ms <= 1100.0 and result.latency_from == "observed"


def test_a_moved_request_without_an_answer_uses_the_models_mean_length_then_the_routers_guess() -> None:
    failed = Outcome("failed", routed_to="small", cost_usd=0.0001)
    observed = estimate(stored("r", failed, input_tokens=100), Choice("large"), FLEET, {"large": FLAT_LARGE})
    assert observed.cost_usd == pytest.approx((100 * 10.0 + 400 * 30.0) / 1e6) and observed.output_tokens_from == "model mean"
    unseen = estimate(stored("r", failed, input_tokens=100, expected_output_tokens=250), Choice("large"), FLEET, {})
    assert unseen.cost_usd == pytest.approx((100 * 10.0 + 250 * 30.0) / 1e6) and unseen.output_tokens_from == "router estimate"
    assert (unseen.latency_ms, unseen.latency_from) == (2000, "fleet typical")


def test_a_refusal_costs_nothing_and_waits_for_nothing() -> None:
    result = estimate(stored("r", SERVED_SMALL), Choice(None, "policy_refused"), FLEET, {})
    assert (result.changed, result.status, result.cost_usd, result.latency_ms) == (True, "refused", 0.0, None)
    still = estimate(stored("r", Outcome("refused")), Choice(None, "policy_refused"), FLEET, {})
    assert (still.changed, still.status) == (False, "refused")


def test_latency_is_interpolated_between_observed_levels_and_held_flat_beyond() -> None:
    seen = ModelObservations(10, [0.1, 0.5, 0.9], [100.0, 200.0, 600.0], 10.0)
    assert seen.latency_at(0.0) == 100.0 and seen.latency_at(0.99) == 600.0
    assert seen.latency_at(0.3) == pytest.approx(150.0)
    assert seen.latency_at(0.7) == pytest.approx(400.0)


def test_the_point_in_a_distribution_is_stable_per_request_and_spread_across_requests() -> None:
    assert unit_point("req-1") == unit_point("req-1")
    points = [unit_point(f"req-{i}") for i in range(1000)]
    assert all(0 <= p < 1 for p in points)
    assert 0.4 < sum(points) / len(points) < 0.6
    assert sum(p < 0.1 for p in points) > 50  # the tail is reached too


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0, 20.0, 30.0, 40.0], 0.95) == pytest.approx(38.0)


def test_compare_totals_both_sides_and_counts_what_changed() -> None:
    requests = [
        stored("a", SERVED_SMALL),
        stored("b", Outcome("served", routed_to="large", cost_usd=0.01, latency_ms=1500.0, input_tokens=100, output_tokens=300)),
        stored("c", Outcome("refused"), version="v2"),
        stored("d", Outcome("")),  # no event yet
    ]
    decisions = {"a": Choice("small"), "b": Choice("small"), "c": Choice("small"), "d": Choice("small")}
    result = compare(requests, lambda p: decisions[p.request_id], "cheap", FLEET, {})
    figures = result.as_dict()

    assert figures["actual"]["requests"] == figures["candidate"]["requests"] == 3
    assert (figures["actual"]["served"], figures["actual"]["refused"]) == (2, 1)
    assert (figures["candidate"]["served"], figures["candidate"]["refused"]) == (3, 0)
    assert figures["actual"]["cost_usd"] == pytest.approx(0.0105)
    expected_b = (100 * 1.0 + 300 * 2.0) / 1e6
    expected_c = (100 * 1.0 + 250 * 2.0) / 1e6  # never answered: the router's guess at the answer's length
    assert figures["candidate"]["cost_usd"] == pytest.approx(round(0.0005 + expected_b + expected_c, 6))
    assert figures["candidate"]["cost_usd"] < figures["actual"]["cost_usd"]
    assert (figures["changed_model"], figures["no_longer_refused"], figures["newly_refused"]) == (2, 1, 0)
    assert figures["left_out_without_outcome"] == 1
    assert figures["actual_policies"] == ["v1", "v2"]
    assert figures["estimated_latency_from"] == {"fleet typical": 2}
    assert figures["actual"]["p50_ms"] == pytest.approx(875.0)  # 250 and 1500: the refused waited for nothing
    assert {row["model"]: row["candidate_requests"] for row in figures["by_model"]} == {"small": 3, "large": 0}


def test_the_summary_table_reads_actual_against_candidate() -> None:
    result = compare([stored("a", SERVED_SMALL)], lambda p: Choice("large"), "dear", FLEET, {"large": FLAT_LARGE})
    rows = {row[0]: row for row in result.summary_table().rows}
    assert rows["cost_usd"][1] < rows["cost_usd"][2] and rows["cost_usd"][3].startswith("+")
    assert rows["changed model"][2] == 1
    assert result.summary_table().title == "what-if: dear vs v1"
