"""Regression detection: compare a candidate group of requests with a baseline group
(a recent window against the window before it, policy version A against B, model A
against B), per route and per route and model, on latency, error rate, cost per request
and quality, and say which differences are real.

A difference is a *regression* only when all of these hold, so a gate built on it does
not trip on noise: both groups have at least ``min_samples`` observations, the test's
p-value is below ``alpha``, the relative change is at least ``min_effect``, and it goes
the bad way for that metric. Many scopes and metrics are tested at once, which is why
``alpha`` defaults to 0.01 and the effect floor exists: together they keep the expected
false alarms of a healthy fleet near zero.

The statistics are pure functions (scipy's, wrapped for the edge cases our data has:
constant samples, zero counts); SQL only fetches the samples (``queries/regression_samples.sql``).
Those are bounded random samples of each route's requests, ``Criteria.sample_size`` per
route and window (``sampling.py``, which says what that costs in power): a month of
requests is not grouped to answer one question.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client
from scipy import stats

from . import sampling
from .questions import Window

ALL_MODELS = "*"


# -- the statistics -------------------------------------------------------------------------
@dataclass(frozen=True)
class TestResult:
    test: str
    p_value: float


def mann_whitney(baseline: Sequence[float], candidate: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U: latencies and scores are skewed and heavy-tailed, so a
    rank test, not a test of means. Identical constant samples differ in nothing (p = 1)."""
    if len(set(baseline)) == 1 and set(baseline) == set(candidate):
        return TestResult("Mann-Whitney U", 1.0)
    return TestResult("Mann-Whitney U", float(stats.mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue))


def welch(baseline: Sequence[float], candidate: Sequence[float]) -> TestResult:
    """Welch's t-test on the means: cost per request is what the bill sums, so its mean is
    the figure that matters, and the groups' variances need not be equal. Two constant
    samples: p = 1 when equal, 0 when not (no variance leaves no doubt)."""
    if min(baseline) == max(baseline) and min(candidate) == max(candidate):  # no variance (exact, and fast)
        return TestResult("Welch t", 1.0 if statistics.fmean(baseline) == statistics.fmean(candidate) else 0.0)
    return TestResult("Welch t", float(stats.ttest_ind(candidate, baseline, equal_var=False).pvalue))


def two_proportions(k_baseline: int, n_baseline: int, k_candidate: int, n_candidate: int) -> TestResult:
    """Two-sided test of equal proportions (error rate, validation pass rate): the pooled
    two-proportion z-test when every expected cell count is at least 5, Fisher's exact test
    otherwise (rare errors are the usual case, where the normal approximation fails)."""
    total, hits = n_baseline + n_candidate, k_baseline + k_candidate
    expected = [n * hits / total for n in (n_baseline, n_candidate)] + [n * (total - hits) / total for n in (n_baseline, n_candidate)]
    if min(expected) < 5:
        table = [[k_candidate, n_candidate - k_candidate], [k_baseline, n_baseline - k_baseline]]
        return TestResult("Fisher exact", float(stats.fisher_exact(table).pvalue))
    pooled = hits / total
    z = (k_candidate / n_candidate - k_baseline / n_baseline) / math.sqrt(pooled * (1 - pooled) * (1 / n_baseline + 1 / n_candidate))
    return TestResult("two-proportion z", float(2 * stats.norm.sf(abs(z))))


def relative_change(baseline: float, candidate: float) -> float:
    """(candidate - baseline) / |baseline|; from zero, any change is infinitely large."""
    if baseline == 0:
        return 0.0 if candidate == 0 else math.copysign(math.inf, candidate)
    return (candidate - baseline) / abs(baseline)


# -- samples --------------------------------------------------------------------------------
@dataclass
class Sample:
    """What one group of requests measured within one scope: counts, and the values of
    its requests (latencies of the completed ones, costs of all), feedback per metric."""

    requests: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    validated: int = 0
    passed: int = 0
    feedback: dict[str, list[float]] = field(default_factory=dict)

    def absorb(self, group: Mapping) -> None:
        """Add a row of ``regression_samples.sql``: the requests of one route, model and
        policy version (a scope's sample is the union of its rows' samples)."""
        self.requests += int(group["requests"])
        self.failures += int(group["failures"])
        self.latencies.extend(map(float, group["latencies"]))
        self.costs.extend(map(float, group["costs"]))
        self.validated += int(group["validated"])
        self.passed += int(group["passed"])
        for metric, score in group["feedback"]:
            self.feedback.setdefault(metric, []).append(float(score))


@dataclass(frozen=True)
class Criteria:
    alpha: float = 0.01
    min_samples: int = 30
    min_effect: float = 0.10  # relative: 0.10 is a 10 % change
    sample_size: int = 2000  # requests per route and window read for the tests (sampling.py)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, not {self.alpha}")
        if self.min_samples < 2 or self.min_effect < 0:
            raise ValueError("min_samples must be at least 2 and min_effect not negative")
        if self.sample_size < 1:
            raise ValueError(f"sample_size must be at least 1, not {self.sample_size}")

    @property
    def per_route(self) -> int:
        """The sample bound per route and window: ``sample_size``, but never fewer than
        ``min_samples`` (asking for more evidence must not leave every test untested)."""
        return max(self.sample_size, self.min_samples)


@dataclass(frozen=True)
class Finding:
    metric: str
    route: str
    model: str  # ALL_MODELS for the route as a whole
    baseline: str
    candidate: str
    n_baseline: int
    n_candidate: int
    baseline_value: float
    candidate_value: float
    relative_change: float
    test: str  # "" when not tested
    p_value: float | None  # None: too few samples to test
    verdict: str  # regression, improvement, unchanged, too few samples

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Metric:
    """How one metric is read from a sample, summarised, tested, and which way is bad."""

    name: str
    higher_is_worse: bool
    # (baseline value, candidate value, sizes, the test to run), None with nothing to measure
    measure: Callable[[Sample, Sample], tuple[float, float, int, int, Callable[[], TestResult]] | None]


def _values(values_of: Callable[[Sample], Sequence[float]], summary: Callable[[Sequence[float]], float], test: Callable[..., TestResult]):
    def measure(base: Sample, cand: Sample):
        a, b = values_of(base), values_of(cand)
        if not a or not b:
            return None
        return summary(a), summary(b), len(a), len(b), lambda: test(a, b)

    return measure


def _rate(hits: Callable[[Sample], int], of: Callable[[Sample], int]):
    def measure(base: Sample, cand: Sample):
        (ka, na), (kb, nb) = (hits(base), of(base)), (hits(cand), of(cand))
        if not na or not nb:
            return None
        return ka / na, kb / nb, na, nb, lambda: two_proportions(ka, na, kb, nb)

    return measure


METRICS = (
    Metric("latency_p50_ms", True, _values(lambda s: s.latencies, statistics.median, mann_whitney)),
    Metric("error_rate", True, _rate(lambda s: s.failures, lambda s: s.requests)),
    Metric("cost_per_request_usd", True, _values(lambda s: s.costs, statistics.fmean, welch)),
    Metric("validation_pass_rate", False, _rate(lambda s: s.passed, lambda s: s.validated)),
)


def _feedback_metric(name: str) -> Metric:
    return Metric(f"feedback:{name}", False, _values(lambda s: s.feedback.get(name, []), statistics.fmean, mann_whitney))


def judge(metric: Metric, scope: tuple[str, str], labels: tuple[str, str], base: Sample, cand: Sample, criteria: Criteria) -> Finding | None:
    """One metric in one scope; ``None`` when either group has nothing to measure."""
    measured = metric.measure(base, cand)
    if measured is None:
        return None
    base_value, cand_value, n_base, n_cand, run_test = measured
    change = relative_change(base_value, cand_value)
    if min(n_base, n_cand) < criteria.min_samples:  # not tested at all: a p-value from a handful means nothing
        return Finding(metric.name, *scope, *labels, n_base, n_cand, base_value, cand_value, change, "", None, "too few samples")
    result = run_test()
    if result.p_value < criteria.alpha and abs(change) >= criteria.min_effect:
        verdict = "regression" if (change > 0) == metric.higher_is_worse else "improvement"
    else:
        verdict = "unchanged"
    return Finding(metric.name, *scope, *labels, n_base, n_cand, base_value, cand_value, change, result.test, result.p_value, verdict)


def compare(groups: Mapping[tuple[str, str], Mapping[str, Sample]], baseline: str, candidate: str, criteria: Criteria) -> list[Finding]:
    """Every metric in every scope where both groups have requests, ordered by scope."""
    findings = []
    for scope in sorted(groups):
        samples = groups[scope]
        if baseline not in samples or candidate not in samples:
            continue
        base, cand = samples[baseline], samples[candidate]
        feedback = sorted(set(base.feedback) & set(cand.feedback))
        for metric in (*METRICS, *map(_feedback_metric, feedback)):
            finding = judge(metric, scope, (baseline, candidate), base, cand, criteria)
            if finding is not None:
                findings.append(finding)
    return findings


def group_rows(rows: Iterable[Mapping], label: Callable[[Mapping], str | None], per_model: bool = True) -> dict[tuple[str, str], dict[str, Sample]]:
    """Samples per scope (route with all models, and route with each model) and group
    label, from rows of ``regression_samples.sql``; a row whose label is ``None``
    belongs to neither group."""
    groups: dict[tuple[str, str], dict[str, Sample]] = {}
    for row in rows:
        group = label(row)
        if group is None:
            continue
        for scope in _scopes(row, per_model):
            groups.setdefault(scope, {}).setdefault(group, Sample()).absorb(row)
    return groups


def _scopes(row: Mapping, per_model: bool) -> list[tuple[str, str]]:
    return [(row["route"], ALL_MODELS), (row["route"], row["model"])] if per_model else [(row["route"], ALL_MODELS)]


# -- what is compared -------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Two groups of requests, how each is selected, and the findings."""

    kind: str  # windows, policy or model
    baseline: str
    candidate: str
    description: str
    findings: list[Finding]

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "description": self.description,
            "regressions": len(self.regressions),
            "findings": [f.as_dict() for f in self.findings],
        }


def _labelled(client: Client, database: str, windows: Mapping[str, Window], label_of: Callable[[Mapping, str], str | None], per_model: bool, criteria: Criteria):
    groups: dict[tuple[str, str], dict[str, Sample]] = {}
    for name, rows in sampling.sampled_groups(client, database, windows, criteria.per_route).items():
        def label(row: Mapping, name: str = name) -> str | None:
            return label_of(row, name)

        for scope, samples in group_rows(rows, label, per_model).items():
            groups.setdefault(scope, {}).update(samples)
    return groups


def compare_windows(client: Client, database: str, recent: timedelta, baseline: timedelta, until: datetime | None, criteria: Criteria) -> Comparison:
    """The last ``recent`` against the ``baseline`` span just before it."""
    now = Window.last(recent, until)
    before = Window.last(baseline, now.since)
    groups = _labelled(client, database, {"baseline": before, "recent": now}, lambda row, name: name, True, criteria)
    description = f"recent [{_iso(now.since)}, {_iso(now.until)}) against baseline [{_iso(before.since)}, {_iso(before.until)})"
    return Comparison("windows", "baseline", "recent", description, compare(groups, "baseline", "recent", criteria))


def compare_versions(client: Client, database: str, column: str, a: str, b: str, window: Window, criteria: Criteria) -> Comparison:
    """Requests routed by policy version ``a`` against ``b`` (column ``policy_version``),
    or served by model ``a`` against ``b`` (column ``model``), over the same window, per
    route (and per route and model for policy versions). The window's sample is drawn
    per route, not per version: a version serving a small share of a busy route (a
    canary) gets that share of the sample, so raise ``Criteria.sample_size`` to judge one."""
    if a == b:
        raise ValueError(f"compare two different {column} values, not {a!r} with itself")
    per_model = column != "model"
    groups = _labelled(client, database, {"window": window}, lambda row, _: row[column] if row[column] in (a, b) else None, per_model, criteria)
    kind = "model" if column == "model" else "policy"
    description = f"{kind} {b} against {kind} {a}, requests finished in [{_iso(window.since)}, {_iso(window.until)})"
    return Comparison(kind, a, b, description, compare(groups, a, b, criteria))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
