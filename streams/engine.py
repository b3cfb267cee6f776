"""Selection: from a request's signals and the policy in force to a plan, with reasons.

``select`` is a pure function. It walks the fleet through the filters in order, records
for every candidate why it was kept or dropped, and either refuses the request (naming
the rule) or returns a plan: primary, fallbacks, an escalation step and shadow copies.

1. capability and context window   (hard: a model that cannot serve the request; an
   embedding model serves embedding requests only, and only it serves them)
2. tenant policy: allow/deny lists, residency regions, sensitive-data rules (hard)
3. health: open breakers, backlogs that would miss the deadline (soft)
4. the route's quality floor and the tenant's latency target (soft)
5. ranking by the route's objective; A/B weights, canary, shadow copies
6. the plan

Hard filters are never relaxed: a request no deployment may legally serve is refused.
A soft filter that would leave nobody is ignored, and the explanation says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from turnout.schemas.fleet import EMBEDDINGS, ModelDeployment
from turnout.schemas.models import ErrorInfo, InferenceRequest, PlanStep, Signals
from turnout.schemas.policy import Policy, Route, TenantPolicy, Weights

from .matching import first_matching_route


@dataclass(frozen=True)
class Health:
    """What the router knows of a deployment's state (from the health topic and lag)."""

    breaker_open: bool = False
    backlog: int = 0


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, on the hot path
class Candidate:
    model: str
    kept: bool
    stage: str  # where it was dropped, or "ranked"
    reason: str
    score: float | None = None


@dataclass(frozen=True)
class Selection:
    """The outcome of ``select``: a plan, or a refusal, and the reasons either way."""

    route: str
    candidates: list[Candidate]
    plan: list[PlanStep] = field(default_factory=list)
    shadows: list[str] = field(default_factory=list)
    refusal: ErrorInfo | None = None
    notes: list[str] = field(default_factory=list)

    def reason(self, signals: Signals) -> str:
        """One line for the slip and the decision event: the route, the choice, why."""
        if self.refusal is not None:
            return self.refusal.message
        primary = self.plan[0].model
        why = next((c.reason for c in self.candidates if c.model == primary), "")
        text = f"route {self.route}: {primary} ({why}); task_type={signals.task_type} input_tokens={signals.input_tokens}"
        return text + "".join(f"; {note}" for note in self.notes)


@dataclass(frozen=True)
class Context:
    fleet: Mapping[str, ModelDeployment]
    policy: Policy
    health: Mapping[str, Health] = field(default_factory=dict)
    spend_usd: Mapping[str, float] = field(default_factory=dict)  # tenant -> spend this month


def select(request: InferenceRequest, signals: Signals, ctx: Context, now: datetime | None = None) -> Selection:
    policy, tenant = ctx.policy, ctx.policy.tenant(request.tenant)
    tenant_key = f"tenants.{request.tenant}" if request.tenant in policy.tenants else "default_tenant"
    if request.model is not None:
        if request.model not in ctx.fleet:
            error = ErrorInfo(
                code="unknown_model",
                message=f"pinned model {request.model!r} is not in the fleet ({', '.join(sorted(ctx.fleet))})",
                details={"model": request.model},
            )
            return Selection("pinned", [], refusal=error)
        route_name, route, pool = "pinned", None, [request.model]
    else:
        index = first_matching_route(policy.routes, request, signals)
        if index is None:
            return Selection("", [], refusal=ErrorInfo(code="no_route", message="no routing rule matches and there is no catch-all"))
        route_name, route = policy.route_name(index), policy.routes[index]
        pool = list(route.candidates) if route.candidates else sorted(ctx.fleet)

    notes: list[str] = []
    over_budget = _over_budget(tenant, ctx.spend_usd.get(request.tenant, 0.0))
    if over_budget and tenant.over_budget == "refuse":
        error = ErrorInfo(
            code="budget_exceeded",
            message=f"tenant {request.tenant!r} spent its monthly budget of ${tenant.monthly_budget_usd:g} ({tenant_key}.over_budget = refuse)",
            details={"rule": f"{tenant_key}.monthly_budget_usd"},
        )
        return Selection(route_name, [], refusal=error)

    dropped: dict[str, Candidate] = {}
    alive = _hard_filter(pool, signals, ctx.fleet, tenant, tenant_key, dropped)
    if not alive:
        return Selection(route_name, list(dropped.values()), refusal=_refusal(request, dropped, tenant_key))
    legal = list(alive)  # shadows may use any legal deployment

    deadline = request.deadline
    now = now or datetime.now(timezone.utc)
    seconds_left = (deadline - now).total_seconds() if deadline else None
    alive = _soft(alive, dropped, notes, "health", lambda m: _health_problem(m, ctx, seconds_left))
    min_tier = route.min_quality_tier if route else 1
    alive = _soft(alive, dropped, notes, "quality", lambda m: _below(ctx.fleet[m].quality_tier, min_tier, "quality tier", "route's min_quality_tier"))
    if tenant.latency_target_ms is not None:
        target = tenant.latency_target_ms
        alive = _soft(alive, dropped, notes, "latency", lambda m: _above(ctx.fleet[m].typical_latency_ms, target, "typical latency", f"{tenant_key}.latency_target_ms"))

    objective = "cost" if over_budget else (route.objective if route else "cost")
    if over_budget:
        notes.append(f"tenant over its monthly budget: downgraded to the cheapest deployment ({tenant_key}.over_budget = downgrade)")
    scores = _scores(alive, objective, signals, ctx.fleet)
    ranked = sorted(alive, key=lambda m: (scores[m], m))
    primary, why = _primary(request.id, route, ranked, over_budget)
    plan = [PlanStep(model=primary, role="primary")]
    plan += [PlanStep(model=m, role="fallback") for m in _fallbacks(route, ranked, primary)]
    escalation = None if over_budget or tenant.max_escalations == 0 else _escalation(route, ranked, plan, ctx.fleet)
    if escalation is not None:
        plan.append(_escalation_step(escalation, route))  # type: ignore[arg-type]
    shadows = [m for m in (route.shadow if route else []) if m in legal and m != primary]

    candidates = list(dropped.values())
    for rank, model in enumerate(ranked):
        reason = why if model == primary else f"rank {rank + 1} by {_objective_name(objective)}"
        candidates.append(Candidate(model, True, "ranked", reason, round(scores[model], 6)))
    return Selection(route_name, candidates, plan, shadows, notes=notes)


# -- filters ---------------------------------------------------------------------------
def _hard_filter(pool: list[str], signals: Signals, fleet: Mapping[str, ModelDeployment], tenant: TenantPolicy, key: str, dropped: dict[str, Candidate]) -> list[str]:
    embedding = EMBEDDINGS in signals.capabilities
    # An embedding model reads each text on its own: the total over many texts says
    # nothing of its context window (a text too long for it is refused by the backend).
    needed = 0 if embedding else signals.input_tokens + signals.expected_output_tokens
    on_prem_kinds = sorted(k for k in signals.sensitive_kinds if tenant.sensitive.get(k) == "on_prem")  # type: ignore[call-overload]
    blocked = sorted(k for k in signals.sensitive_kinds if tenant.sensitive.get(k) == "block")  # type: ignore[call-overload]
    alive = []
    for model in pool:
        d = fleet[model]
        missing = sorted(set(signals.capabilities).difference(d.capabilities)) if signals.capabilities else ()
        if blocked:  # the request may go nowhere: say so whatever else is true of the model
            dropped[model] = Candidate(model, False, "policy", f"prompt holds {', '.join(blocked)} ({key}.sensitive.{blocked[0]} = block)")
        elif missing:
            dropped[model] = Candidate(model, False, "capability", f"lacks {', '.join(missing)}")
        elif not embedding and EMBEDDINGS in d.capabilities:
            dropped[model] = Candidate(model, False, "capability", "an embedding model: serves embedding requests only")
        elif needed > d.context_window:
            dropped[model] = Candidate(model, False, "capability", f"context window {d.context_window} < {needed} tokens needed")
        elif (forbidden := tenant.forbids(model, d.region, key)) is not None:
            dropped[model] = Candidate(model, False, "policy", forbidden)
        elif on_prem_kinds and not d.on_prem:
            dropped[model] = Candidate(model, False, "policy", f"prompt holds {', '.join(on_prem_kinds)}, allowed on-prem only ({key}.sensitive.{on_prem_kinds[0]} = on_prem)")
        else:
            alive.append(model)
    return alive


def _soft(alive: list[str], dropped: dict[str, Candidate], notes: list[str], stage: str, problem) -> list[str]:
    """Drop the models ``problem`` objects to, unless that would drop them all."""
    problems = {m: problem(m) for m in alive}
    kept = [m for m in alive if problems[m] is None]
    if not kept:
        notes.append(f"{stage} filter ignored: it would leave no deployment")
        return alive
    for model in alive:
        if problems[model] is not None:
            dropped[model] = Candidate(model, False, stage, problems[model])
    return kept


def _health_problem(model: str, ctx: Context, seconds_left: float | None) -> str | None:
    health = ctx.health.get(model)
    if health is None:
        return None
    if health.breaker_open:
        return "circuit breaker open"
    d = ctx.fleet[model]
    wait_s = health.backlog / d.concurrency * d.typical_latency_ms / 1000 + d.typical_latency_ms / 1000
    if seconds_left is not None and wait_s > seconds_left:
        return f"backlog of {health.backlog} would take ~{wait_s:.1f}s, deadline in {seconds_left:.1f}s"
    return None


def _below(value: float, floor: float, what: str, rule: str) -> str | None:
    return f"{what} {value:g} below the {rule} {floor:g}" if value < floor else None


def _above(value: float, ceiling: float, what: str, rule: str) -> str | None:
    return f"{what} {value:g} ms above {rule} {ceiling:g}" if value > ceiling else None


def _over_budget(tenant: TenantPolicy, spent: float) -> bool:
    return tenant.monthly_budget_usd is not None and spent >= tenant.monthly_budget_usd


def _refusal(request: InferenceRequest, dropped: dict[str, Candidate], tenant_key: str) -> ErrorInfo:
    policy_drops = [c for c in dropped.values() if c.stage == "policy"]
    if not policy_drops:
        reasons = "; ".join(f"{c.model}: {c.reason}" for c in dropped.values())
        return ErrorInfo(code="no_capable_model", message=f"no deployment can serve this request ({reasons})")
    reasons = "; ".join(f"{c.model}: {c.reason}" for c in policy_drops)
    rule = policy_drops[0].reason.rsplit("(", 1)[-1].rstrip(")") if "(" in policy_drops[0].reason else policy_drops[0].reason
    return ErrorInfo(
        code="policy_refused",
        message=f"no deployment may serve this request under tenant {request.tenant!r}'s policy: {reasons}",
        details={"rule": rule, "tenant": request.tenant},
    )


# -- ranking and the plan ------------------------------------------------------------------
def _objective_name(objective: str | Weights) -> str:
    if isinstance(objective, Weights):
        return "weighted " + "+".join(f"{w:g}·{n}" for n, w in (("cost", objective.cost), ("latency", objective.latency), ("quality", objective.quality)) if w)
    return objective


def _metric(name: str, models: list[str], signals: Signals, fleet: Mapping[str, ModelDeployment]) -> dict[str, float]:
    if name == "cost":
        return {m: fleet[m].cost_usd(signals.input_tokens, signals.expected_output_tokens) for m in models}
    if name == "latency":
        return {m: fleet[m].typical_latency_ms for m in models}
    return {m: -float(fleet[m].quality_tier) for m in models}


def _scores(models: list[str], objective: str | Weights, signals: Signals, fleet: Mapping[str, ModelDeployment]) -> dict[str, float]:
    """Lower is better. Only the metrics the objective weighs are computed."""
    if isinstance(objective, str):
        return _metric(objective, models, signals, fleet)
    total = {m: 0.0 for m in models}
    for name, weight in (("cost", objective.cost), ("latency", objective.latency), ("quality", objective.quality)):
        if not weight:
            continue
        values = _metric(name, models, signals, fleet)
        low, high = min(values.values()), max(values.values())
        for m in models:
            total[m] += weight * ((values[m] - low) / (high - low) if high > low else 0.0)
    return total


def _unit_hash(request_id: str, salt: str) -> float:
    """A stable number in [0, 1) per request: the same request always lands the same way."""
    return zlib.crc32(f"{salt}:{request_id}".encode()) / 2**32


def _primary(request_id: str, route: Route | None, ranked: list[str], downgraded: bool) -> tuple[str, str]:
    if downgraded or route is None:
        return ranked[0], ("pinned by the caller" if route is None else "cheapest: tenant over budget")
    if route.canary is not None and route.canary.model in ranked and _unit_hash(request_id, "canary") * 100 < route.canary.percent:
        return route.canary.model, f"canary ({route.canary.percent:g}% of traffic)"
    arms = {m: w for m, w in route.ab.items() if m in ranked}
    if arms:
        point, total = _unit_hash(request_id, "ab") * sum(arms.values()), 0.0
        for model, weight in sorted(arms.items()):
            total += weight
            if point < total:
                return model, f"A/B arm (weight {weight:g} of {sum(arms.values()):g})"
    if route.model is not None and route.model in ranked:
        return route.model, "the route's model"
    return ranked[0], f"best by {_objective_name(route.objective)}"


def _fallbacks(route: Route | None, ranked: list[str], primary: str) -> list[str]:
    if route is None:
        return []
    if route.fallback:
        return [m for m in dict.fromkeys(route.fallback) if m in ranked and m != primary]
    return [m for m in ranked if m != primary][: route.max_fallbacks]


def _escalation(route: Route | None, ranked: list[str], plan: list[PlanStep], fleet: Mapping[str, ModelDeployment]) -> str | None:
    if route is None or route.escalate_to is None:
        return None
    primary = plan[0].model  # the target may also be a fallback: a cascade's capable model usually is
    if route.escalate_to != "auto":
        return route.escalate_to if route.escalate_to in ranked and route.escalate_to != primary else None
    floor = fleet[primary].quality_tier
    better = [m for m in ranked if fleet[m].quality_tier > floor]
    return max(better, key=lambda m: (fleet[m].quality_tier, -fleet[m].price_output_per_mtok, m)) if better else None


def _escalation_step(model: str, route: Route) -> PlanStep:
    """The cascade's last step, listening for the route's triggers; a ``low_confidence``
    trigger carries the route's threshold, because the worker that judges the answer
    reads the plan, not the policy."""
    low_confidence = "low_confidence" in route.escalate_on
    return PlanStep(model=model, role="escalation", when=list(route.escalate_on), min_confidence=route.min_confidence if low_confidence else None)
