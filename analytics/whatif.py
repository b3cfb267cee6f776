"""Policy what-if: what a candidate policy would have done with the requests that were
recorded with their text, against what actually happened to them.

The replay itself (routing a stored prompt under the candidate) belongs to the router
and is handed in as ``choose``; this module reads the store and estimates. Per request:

- the candidate keeps the primary the policy in force chose (or refuses what it
  refused): the request is counted as it actually went, cost, latency, fallbacks,
  failures and all, since the same choice would have taken the same path;
- the candidate moves it to another model: its cost is the tokens at that model's
  current fleet prices, with the input and output tokens of the answer the caller got
  (the best evidence of this request's size; a different model would word its answer
  differently, which no replay can know), or, for a request that got no answer, the
  model's mean answer length over the window, else the router's own expectation. Its
  latency is drawn from that model's observed latencies over the window (the caller's
  wait, from completion events, shadow copies included) at a point fixed by the
  request id, so the candidate's percentiles are those of the mix of models it would
  use, and a rerun gives the same figures; a model with no answers in the window is
  assumed to take its ``typical_latency_ms``. Whether it would have failed or fallen
  back is not known: it counts as served;
- the candidate refuses it: no cost, no latency, counted as a refusal.

Budgets are not replayed (the spend at the time is not stored), nor health: the
candidate is judged on its rules, on a healthy fleet.
"""

from __future__ import annotations

import bisect
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from clickhouse_connect.driver.client import Client

from turnout.schemas.fleet import ModelDeployment
from turnout.schemas.models import PromptText

from .questions import Window
from .report import Table
from .store import query_sql

Status = Literal["served", "failed", "refused", ""]


@dataclass(frozen=True)
class Outcome:
    """What actually happened to a request, from its routing events."""

    status: Status  # '' when no event is stored for it
    routed_to: str = ""  # the primary the policy in force chose
    cost_usd: float = 0.0  # every attempt paid for
    latency_ms: float = 0.0  # the caller's wait for the answer
    input_tokens: int = 0  # of the answer
    output_tokens: int = 0


@dataclass(frozen=True)
class StoredPrompt:
    prompt: PromptText
    actual: Outcome


@dataclass(frozen=True)
class Choice:
    """The candidate policy's decision for one request: a primary model, or a refusal."""

    model: str | None
    refusal: str = ""  # the refusal's code when ``model`` is None


@dataclass(frozen=True)
class ModelObservations:
    """A model's answers over the window: latency at each quantile level, mean length."""

    answers: int
    levels: Sequence[float]
    latency_ms: Sequence[float]
    mean_output_tokens: float

    def latency_at(self, point: float) -> float:
        """The latency at quantile ``point`` (0 to 1), interpolated between the observed
        levels and held flat beyond the outermost ones."""
        levels, values = self.levels, self.latency_ms
        if point <= levels[0]:
            return values[0]
        if point >= levels[-1]:
            return values[-1]
        i = bisect.bisect_right(levels, point)
        low, high = levels[i - 1], levels[i]
        return values[i - 1] + (values[i] - values[i - 1]) * (point - low) / (high - low)


@dataclass(frozen=True)
class Estimate:
    """The candidate's figures for one request, and where they came from."""

    request_id: str
    model: str | None  # None: refused
    changed: bool  # the candidate's primary differs from the actual one (a refusal counts as a choice)
    status: Status
    cost_usd: float
    latency_ms: float | None  # None: no answer to wait for (refused or failed)
    output_tokens_from: str = ""  # actual answer, model mean, router estimate; '' when unchanged or refused
    latency_from: str = ""  # observed, fleet typical; '' when unchanged or refused


# -- reading the store -------------------------------------------------------------------------
def stored_prompts(client: Client, database: str, window: Window, tenant: str | None = None) -> list[StoredPrompt]:
    """The prompts stored in ``window`` (of ``tenant``, or every tenant's), each with what
    happened to it (``queries/whatif_prompts.sql``)."""
    parameters = {**window.parameters(), "tenant": tenant or ""}
    result = client.query(query_sql("whatif_prompts", database), parameters=parameters)
    out = []
    for row in result.named_results():
        prompt = PromptText(
            request_id=row["request_id"], tenant=row["tenant"], ts=row["ts"], policy_version=row["policy_version"],
            messages=row["messages"], input=row["input"], model=row["model"], metadata=row["metadata"], signals=row["signals"],
        )
        actual = Outcome(
            status=row["outcome"], routed_to=row["routed_to"], cost_usd=row["cost_usd"],
            latency_ms=row["latency_ms"], input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
        )
        out.append(StoredPrompt(prompt, actual))
    return out


def observed_models(client: Client, database: str, window: Window) -> dict[str, ModelObservations]:
    """Each model's answers over ``window`` (``queries/whatif_models.sql``)."""
    result = client.query(query_sql("whatif_models", database), parameters=window.parameters())
    observed = {}
    for row in result.named_results():
        levels, latency = list(row["levels"]), list(row["latency_ms"])
        if len(levels) != len(latency):
            raise ValueError(f"whatif_models.sql: {len(levels)} levels but {len(latency)} quantiles; keep its two level lists equal")
        observed[row["model"]] = ModelObservations(row["answers"], levels, latency, float(row["mean_output_tokens"]))
    return observed


# -- estimating --------------------------------------------------------------------------------
def unit_point(request_id: str) -> float:
    """A stable number in [0, 1) per request: where in a model's latency distribution its
    estimated wait falls, the same at every run."""
    return zlib.crc32(f"whatif:{request_id}".encode()) / 2**32


def estimate(
    stored: StoredPrompt, choice: Choice, fleet: Mapping[str, ModelDeployment], observed: Mapping[str, ModelObservations]
) -> Estimate:
    """The candidate's cost and latency for one request with a recorded outcome (see the
    module doc for the rules)."""
    prompt, actual = stored.prompt, stored.actual
    actual_choice = actual.routed_to if actual.status != "refused" else None
    if choice.model == actual_choice:
        latency = actual.latency_ms if actual.status == "served" else None
        return Estimate(prompt.request_id, choice.model, False, actual.status, actual.cost_usd, latency)
    if choice.model is None:
        return Estimate(prompt.request_id, None, True, "refused", 0.0, None)
    deployment, seen = fleet[choice.model], observed.get(choice.model)
    if actual.status == "served":
        input_tokens, output_tokens, output_from = actual.input_tokens, actual.output_tokens, "actual answer"
    elif seen is not None:
        input_tokens, output_tokens, output_from = prompt.signals.input_tokens, round(seen.mean_output_tokens), "model mean"
    else:
        input_tokens, output_tokens, output_from = prompt.signals.input_tokens, prompt.signals.expected_output_tokens, "router estimate"
    if seen is not None:
        latency, latency_from = seen.latency_at(unit_point(prompt.request_id)), "observed"
    else:
        latency, latency_from = deployment.typical_latency_ms, "fleet typical"
    cost = deployment.cost_usd(input_tokens, output_tokens)
    return Estimate(prompt.request_id, choice.model, True, "served", cost, latency, output_from, latency_from)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of ``values``, linearly interpolated between the two
    nearest ranks (numpy's default); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Side:
    """One column of the comparison: requests by status, cost, the latencies waited."""

    statuses: dict[str, int] = field(default_factory=lambda: {"served": 0, "failed": 0, "refused": 0})
    cost_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)
    requests_by_model: Counter[str] = field(default_factory=Counter)
    cost_by_model: Counter[str] = field(default_factory=Counter)

    def add(self, status: str, model: str | None, cost: float, latency: float | None) -> None:
        self.statuses[status] += 1
        self.cost_usd += cost
        if latency is not None:
            self.latencies.append(latency)
        if model is not None:
            self.requests_by_model[model] += 1
            self.cost_by_model[model] += cost

    def figures(self) -> dict[str, float | int | None]:
        p50, p95 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.95)
        return {
            "requests": sum(self.statuses.values()),
            **self.statuses,
            "cost_usd": round(self.cost_usd, 6),
            "p50_ms": None if p50 is None else round(p50, 1),
            "p95_ms": None if p95 is None else round(p95, 1),
        }


@dataclass
class WhatIf:
    """The comparison of a candidate policy against what actually happened."""

    candidate: str
    actual_versions: list[str]
    actual: Side
    estimated: Side
    changed: int
    newly_refused: int
    no_longer_refused: int
    without_outcome: int
    output_tokens_from: dict[str, int]
    latency_from: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "candidate_policy": self.candidate,
            "actual_policies": self.actual_versions,
            "actual": self.actual.figures(),
            "candidate": self.estimated.figures(),
            "changed_model": self.changed,
            "newly_refused": self.newly_refused,
            "no_longer_refused": self.no_longer_refused,
            "left_out_without_outcome": self.without_outcome,
            "estimated_output_tokens_from": self.output_tokens_from,
            "estimated_latency_from": self.latency_from,
            "by_model": self.model_table().as_dicts(),
        }

    def summary_table(self) -> Table:
        actual, candidate = self.actual.figures(), self.estimated.figures()
        rows = [(name, actual[name], candidate[name], _change(actual[name], candidate[name])) for name in actual]
        rows.append(("changed model", "", self.changed, ""))
        title = f"what-if: {self.candidate} vs {', '.join(self.actual_versions) or 'nothing recorded'}"
        return Table(title, ["metric", "actual", "candidate", "change"], rows)

    def model_table(self) -> Table:
        actual, candidate = self.actual, self.estimated
        rows = [
            (model, actual.requests_by_model[model], candidate.requests_by_model[model], round(actual.cost_by_model[model], 6), round(candidate.cost_by_model[model], 6))
            for model in sorted(set(actual.requests_by_model) | set(candidate.requests_by_model))
        ]
        return Table("per model (actual: where routed; candidate: where it would route)", ["model", "actual_requests", "candidate_requests", "actual_cost_usd", "candidate_cost_usd"], rows)

    def notes(self) -> list[str]:
        notes = []
        if self.without_outcome:
            notes.append(f"{self.without_outcome} stored prompt(s) left out: no routing event recorded for them yet")
        if self.output_tokens_from:
            notes.append("output tokens of moved requests from: " + ", ".join(f"{k} {v}" for k, v in sorted(self.output_tokens_from.items())))
        if self.latency_from:
            notes.append("latency of moved requests from: " + ", ".join(f"{k} {v}" for k, v in sorted(self.latency_from.items())))
        notes.append(f"{self.newly_refused} request(s) newly refused, {self.no_longer_refused} no longer refused")
        return notes


def compare(
    stored: Iterable[StoredPrompt],
    choose: Callable[[PromptText], Choice],
    candidate: str,
    fleet: Mapping[str, ModelDeployment],
    observed: Mapping[str, ModelObservations],
) -> WhatIf:
    """Replay every stored prompt with ``choose`` (the candidate's decision) and total the
    actual and the estimated figures."""
    actual, estimated = Side(), Side()
    changed = newly_refused = no_longer_refused = without_outcome = 0
    versions: set[str] = set()
    output_from: Counter[str] = Counter()
    latency_from: Counter[str] = Counter()
    for item in stored:
        outcome = item.actual
        if not outcome.status:
            without_outcome += 1
            continue
        versions.add(item.prompt.policy_version)
        actual.add(outcome.status, outcome.routed_to or None, outcome.cost_usd, outcome.latency_ms if outcome.status == "served" else None)
        result = estimate(item, choose(item.prompt), fleet, observed)
        estimated.add(result.status, result.model, result.cost_usd, result.latency_ms)
        changed += result.changed
        newly_refused += result.status == "refused" and outcome.status != "refused"
        no_longer_refused += outcome.status == "refused" and result.status != "refused"
        if result.output_tokens_from:
            output_from[result.output_tokens_from] += 1
        if result.latency_from:
            latency_from[result.latency_from] += 1
    return WhatIf(candidate, sorted(versions), actual, estimated, changed, newly_refused, no_longer_refused, without_outcome, dict(output_from), dict(latency_from))


def _change(actual: float | int | None, candidate: float | int | None) -> str:
    if actual is None or candidate is None:
        return ""
    if isinstance(actual, float) or isinstance(candidate, float):
        return f"{(candidate - actual) / actual:+.1%}" if actual else ""
    return f"{candidate - actual:+d}"
