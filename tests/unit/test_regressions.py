"""The statistics behind ``turnout regressions`` against published or hand-computed
values, and the decision rules that keep a rollout gate from tripping on noise."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from turnout.analytics.regressions import (
    ALL_MODELS,
    METRICS,
    Criteria,
    Sample,
    compare,
    group_rows,
    judge,
    mann_whitney,
    relative_change,
    two_proportions,
    welch,
)
from turnout.analytics.sampling import KEY_SPACE, SPARSE_KEYS, WHOLE, cutoffs, sample_parameters

LATENCY, ERRORS, COST, PASS_RATE = METRICS


# -- the tests themselves ---------------------------------------------------------------------
def test_mann_whitney_exact_p_of_fully_separated_samples():
    # no overlap between two groups of 5: 2 of the C(10, 5) = 252 orderings are as extreme
    assert mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p_value == pytest.approx(2 / 252)
    assert mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).p_value == pytest.approx(2 / 252)


def test_mann_whitney_of_identical_constant_samples_is_no_evidence():
    assert mann_whitney([3.0] * 40, [3.0] * 50).p_value == 1.0


def test_fisher_exact_on_the_lady_tasting_tea():
    # Fisher's own example: 3 of 4 cups right against 1 of 4; two-sided p = 34/70
    result = two_proportions(3, 4, 1, 4)
    assert result.test == "Fisher exact"
    assert result.p_value == pytest.approx(34 / 70)


def test_two_proportion_z_test_matches_the_formula():
    # 10/100 against 20/100: pooled 0.15, z = 0.1 / sqrt(0.15 * 0.85 * 0.02) = 1.980
    z = 0.1 / math.sqrt(0.15 * 0.85 * (1 / 100 + 1 / 100))
    result = two_proportions(10, 100, 20, 100)
    assert result.test == "two-proportion z"
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert result.p_value == pytest.approx(0.0477, abs=1e-4)


def test_rare_events_use_the_exact_test():
    """0 errors in 200 against 3 in 200: the normal approximation would be wrong."""
    assert two_proportions(0, 200, 3, 200).test == "Fisher exact"
    assert two_proportions(0, 200, 0, 200).p_value == 1.0


def test_welch_matches_the_hand_computed_statistic():
    a, b = [1, 2, 3, 4, 5], [2, 4, 6, 8, 10]  # variances 2.5 and 10: unequal on purpose
    t = (6 - 3) / math.sqrt(2.5 / 5 + 10 / 5)
    df = (2.5 / 5 + 10 / 5) ** 2 / ((2.5 / 5) ** 2 / 4 + (10 / 5) ** 2 / 4)
    assert welch(a, b).p_value == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
    assert welch(a, b).p_value == pytest.approx(0.1075, abs=1e-3)


def test_welch_of_constant_samples():
    assert welch([0.002] * 30, [0.002] * 30).p_value == 1.0
    assert welch([0.002] * 30, [0.004] * 30).p_value == 0.0


@pytest.mark.parametrize(("baseline", "candidate", "change"), [(100, 150, 0.5), (0.2, 0.1, -0.5), (0, 0, 0.0), (0, 0.05, math.inf)])
def test_relative_change(baseline, candidate, change):
    assert relative_change(baseline, candidate) == change


# -- the decision -----------------------------------------------------------------------------
def latency_sample(values) -> Sample:
    values = list(values)
    return Sample(requests=len(values), latencies=values, costs=[0.001] * len(values))


def outcome_sample(requests: int, failures: int, validated: int = 0, passed: int = 0) -> Sample:
    return Sample(requests=requests, failures=failures, latencies=[100.0] * (requests - failures), costs=[0.001] * requests, validated=validated, passed=passed)


def noisy(rng: random.Random, n: int, mean: float) -> list[float]:
    return [rng.lognormvariate(math.log(mean), 0.3) for _ in range(n)]


SCOPE, LABELS = ("chat", ALL_MODELS), ("baseline", "recent")


def test_doubled_latency_is_a_regression_with_its_evidence():
    rng = random.Random(1)
    finding = judge(LATENCY, SCOPE, LABELS, latency_sample(noisy(rng, 200, 100)), latency_sample(noisy(rng, 100, 200)), Criteria())
    assert finding.verdict == "regression"
    assert (finding.n_baseline, finding.n_candidate) == (200, 100)
    assert finding.baseline_value == pytest.approx(100, rel=0.15) and finding.candidate_value == pytest.approx(200, rel=0.15)
    assert finding.test == "Mann-Whitney U" and finding.p_value < 1e-10


def test_halved_latency_is_an_improvement_not_a_regression():
    rng = random.Random(2)
    finding = judge(LATENCY, SCOPE, LABELS, latency_sample(noisy(rng, 200, 200)), latency_sample(noisy(rng, 200, 100)), Criteria())
    assert finding.verdict == "improvement"


def test_same_distribution_is_unchanged():
    rng = random.Random(3)
    finding = judge(LATENCY, SCOPE, LABELS, latency_sample(noisy(rng, 300, 100)), latency_sample(noisy(rng, 300, 100)), Criteria())
    assert finding.verdict == "unchanged" and finding.p_value > 0.01


def test_too_few_samples_are_not_tested():
    """Three slow requests are an anecdote, however slow."""
    finding = judge(LATENCY, SCOPE, LABELS, latency_sample([100.0] * 100), latency_sample([900.0] * 3), Criteria(min_samples=30))
    assert finding.verdict == "too few samples" and finding.p_value is None and finding.test == ""
    assert finding.candidate_value == 900.0


def test_a_significant_but_tiny_change_is_not_flagged():
    """With enough requests a 3 % shift is certain, and still not worth stopping a rollout."""
    base, cand = latency_sample([100.0 + i % 7 for i in range(5000)]), latency_sample([103.0 + i % 7 for i in range(5000)])
    finding = judge(LATENCY, SCOPE, LABELS, base, cand, Criteria(min_effect=0.10))
    assert finding.p_value < 1e-10 and finding.verdict == "unchanged"
    assert judge(LATENCY, SCOPE, LABELS, base, cand, Criteria(min_effect=0.02)).verdict == "regression"


def test_alpha_is_the_threshold():
    base, cand = outcome_sample(100, 10), outcome_sample(100, 20)  # p = 0.048
    assert judge(ERRORS, SCOPE, LABELS, base, cand, Criteria(alpha=0.01)).verdict == "unchanged"
    assert judge(ERRORS, SCOPE, LABELS, base, cand, Criteria(alpha=0.05)).verdict == "regression"


def test_error_rate_from_2_to_20_percent():
    finding = judge(ERRORS, SCOPE, LABELS, outcome_sample(500, 10), outcome_sample(100, 20), Criteria())
    assert finding.verdict == "regression"
    assert (finding.baseline_value, finding.candidate_value) == (0.02, 0.2)
    assert finding.p_value < 1e-6


def test_falling_pass_rate_is_a_regression_rising_one_an_improvement():
    """Validation pass rate is better when higher: the direction flips."""
    good, bad = outcome_sample(100, 0, validated=100, passed=90), outcome_sample(100, 0, validated=100, passed=50)
    assert judge(PASS_RATE, SCOPE, LABELS, good, bad, Criteria()).verdict == "regression"
    assert judge(PASS_RATE, SCOPE, LABELS, bad, good, Criteria()).verdict == "improvement"


def test_requests_without_structured_output_leave_pass_rate_untested():
    assert judge(PASS_RATE, SCOPE, LABELS, outcome_sample(100, 0), outcome_sample(100, 0), Criteria()) is None


def test_a_sample_absorbs_the_rows_of_its_scope():
    """A route's sample is the union of its models' rows: counts add up, values concatenate,
    feedback lands per metric."""
    sample = Sample()
    sample.absorb({"requests": 3, "failures": 1, "latencies": [100.0, 250.0], "costs": [0.01, 0.02, 0.0], "validated": 2, "passed": 1,
                   "feedback": [("rating", 4.0), ("rating", 5.0)]})
    sample.absorb({"requests": 1, "failures": 0, "latencies": [80.0], "costs": [0.03], "validated": 0, "passed": 0, "feedback": [("accuracy", 1.0)]})
    assert (sample.requests, sample.failures, sample.validated, sample.passed) == (4, 1, 2, 1)
    assert (sample.latencies, sample.costs) == ([100.0, 250.0, 80.0], [0.01, 0.02, 0.0, 0.03])
    assert sample.feedback == {"rating": [4.0, 5.0], "accuracy": [1.0]}


def test_criteria_refuse_nonsense():
    with pytest.raises(ValueError):
        Criteria(alpha=1.5)
    with pytest.raises(ValueError):
        Criteria(min_samples=1)
    with pytest.raises(ValueError, match="sample_size"):
        Criteria(sample_size=0)


def test_the_sample_never_falls_below_what_a_test_needs():
    """Raising --min-samples above the sample size must not leave every metric untested
    (a rollout gate that can never trip)."""
    assert Criteria().per_route == 2000
    assert Criteria(min_samples=5000).per_route == 5000


# -- grouping and comparing ---------------------------------------------------------------------
def row(route: str, model: str, group: str, latency: float, failed: int = 0, feedback=()) -> dict:
    """A row of regression_samples.sql holding one request."""
    return {"route": route, "model": model, "group": group, "requests": 1, "failures": failed, "latencies": [] if failed else [latency],
            "costs": [0.001], "validated": 0, "passed": 0, "feedback": list(feedback)}


def test_rows_are_grouped_per_route_and_per_route_and_model():
    rows = [row("chat", "small", "a", 1), row("chat", "large", "a", 2), row("chat", "small", "b", 3), row("code", "small", "ignored", 4)]
    groups = group_rows(rows, lambda r: r["group"] if r["group"] != "ignored" else None)
    assert set(groups) == {("chat", ALL_MODELS), ("chat", "small"), ("chat", "large")}
    assert groups[("chat", ALL_MODELS)]["a"].latencies == [1, 2]
    assert groups[("chat", "small")]["b"].latencies == [3]
    assert set(group_rows(rows, lambda r: r["group"], per_model=False)) == {("chat", ALL_MODELS), ("code", ALL_MODELS)}


def test_compare_flags_only_the_model_that_regressed():
    rng = random.Random(4)
    rows = [row("chat", model, "baseline", v) for model in ("small", "large") for v in noisy(rng, 200, 100)]
    rows += [row("chat", "small", "recent", v) for v in noisy(rng, 100, 100)]
    rows += [row("chat", "large", "recent", v) for v in noisy(rng, 100, 220)]
    findings = compare(group_rows(rows, lambda r: r["group"]), "baseline", "recent", Criteria())
    flagged = {(f.model, f.metric) for f in findings if f.verdict == "regression"}
    assert ("large", "latency_p50_ms") in flagged
    assert ("small", "latency_p50_ms") not in flagged
    assert {f.metric for f in findings} == {"latency_p50_ms", "error_rate", "cost_per_request_usd"}  # no structured output, no feedback


def test_a_scope_seen_in_one_group_only_is_not_compared():
    groups = group_rows([row("chat", "small", "baseline", 1), row("new", "small", "recent", 1)], lambda r: r["group"])
    assert compare(groups, "baseline", "recent", Criteria(min_samples=2)) == []


def test_feedback_scores_are_compared_per_metric():
    rows = [row("chat", "small", "a", 100, feedback=[("rating", 4.0 + (i % 3) / 2)]) for i in range(60)]
    rows += [row("chat", "small", "b", 100, feedback=[("rating", 2.0 + (i % 3) / 2)]) for i in range(60)]
    rows += [row("chat", "small", "a", 100, feedback=[("only_in_a", 1.0)])]
    groups = group_rows(rows, lambda r: r["group"])
    findings = {(f.model, f.metric): f for f in compare(groups, "a", "b", Criteria())}
    rating = findings[("small", "feedback:rating")]
    assert rating.verdict == "regression" and (rating.n_baseline, rating.n_candidate) == (60, 60)
    assert rating.baseline_value == pytest.approx(4.5) and rating.candidate_value == pytest.approx(2.5)
    assert ("small", "feedback:only_in_a") not in findings


# -- sampling ------------------------------------------------------------------------------------
def test_a_busy_route_is_sampled_a_quiet_one_read_whole():
    found = cutoffs({"busy": 100_000, "quiet": 1_000, "empty": 0}, per_route=2000)
    assert found["quiet"] == found["empty"] == WHOLE  # 1.25 * 2000 > 1000: every request
    assert found["busy"] / KEY_SPACE == pytest.approx(1.25 * 2000 / 100_000)  # ~2,500 sampled, 2,000 kept


def test_sample_parameters_restate_the_cutoffs_for_the_primary_keys():
    """A route whose sample needs only keys below 2^60 is read from the sparse table (one
    request in 16, keyed by day), the others from the hourly one."""
    parameters = sample_parameters({"long": 10, "short": SPARSE_KEYS + 5, "busy": 20, "quiet": WHOLE}, per_route=5)
    assert (parameters["routes"], parameters["cutoffs"]) == (["busy", "long", "quiet", "short"], [20, 10, WHOLE, SPARSE_KEYS + 5])
    assert (parameters["sparse_routes"], parameters["sparse_cutoff"]) == (["busy", "long"], 20)
    assert (parameters["dense_routes"], parameters["whole_routes"], parameters["dense_cutoff"]) == (["quiet", "short"], ["quiet"], SPARSE_KEYS + 5)
    assert parameters["per_route"] == 5
    only_whole = sample_parameters({"quiet": WHOLE}, per_route=5)
    assert (only_whole["sparse_routes"], only_whole["sparse_cutoff"], only_whole["dense_cutoff"]) == ([], 0, 0)  # nothing sampled in part


def test_a_sample_bound_must_be_positive():
    with pytest.raises(ValueError, match="per_route"):
        cutoffs({"r": 10}, per_route=0)
