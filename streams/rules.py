"""The routing decision, end to end: a request in, a routing slip (or a refusal) out.

``decide`` computes the signals in one pass, lets ``engine.select`` choose under the
policy in force, and builds the slips: the primary's and one per shadow copy. It is a
pure function of the request and the ``Context``; the faust app only calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from turnout.schemas.models import ErrorInfo, InferenceRequest, PlanStep, RoutedRequest, RoutingDecision, Signals, utcnow
from turnout.schemas.settings import Settings

from .engine import Context, Selection, select
from .matching import first_matching_route, matches
from .signals import compute_signals

__all__ = ["Decision", "Refusal", "decide", "first_matching_route", "matches", "plan_route"]


@dataclass(frozen=True)
class Refusal:
    """A request that no deployment may serve; the caller gets ``error``."""

    error: ErrorInfo
    signals: Signals | None = None


@dataclass(frozen=True)
class Decision:
    signals: Signals
    selection: Selection
    slip: RoutedRequest | None = None
    shadows: list[RoutedRequest] = field(default_factory=list)

    @property
    def refusal(self) -> Refusal | None:
        return Refusal(self.selection.refusal, self.signals) if self.selection.refusal else None


def decide(request: InferenceRequest, ctx: Context, default_deadline_s: float, now: datetime | None = None) -> Decision:
    signals = compute_signals(request, ctx.fleet)
    now = now or utcnow()
    if request.deadline is None:
        request = request.model_copy(update={"deadline": now + timedelta(seconds=default_deadline_s)})
    selection = select(request, signals, ctx, now)
    if selection.refusal is not None:
        return Decision(signals, selection)
    decision = RoutingDecision(route=selection.route, model=selection.plan[0].model, reason=selection.reason(signals), signals=signals)
    slip = RoutedRequest(request=request, decision=decision, plan=selection.plan, policy_version=ctx.policy.version, routed_at=now)
    shadows = [
        slip.model_copy(update={"plan": [PlanStep(model=model, role="primary")], "shadow": True}) for model in selection.shadows
    ]
    return Decision(signals, selection, slip, shadows)


def context_from(settings: Settings) -> Context:
    """The context of a router that knows only its configuration (no health, no spend)."""
    return Context(fleet=settings.fleet, policy=settings.policy)


def plan_route(request: InferenceRequest, settings: Settings) -> RoutedRequest | Refusal:
    """``decide`` on the configured policy, for callers that want the primary slip only."""
    decision = decide(request, context_from(settings), settings.router.default_deadline_s)
    return decision.refusal or decision.slip  # type: ignore[return-value]
