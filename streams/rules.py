"""Rule matching and plan building: a request's signals in, a routing slip out.

``plan_route`` is the whole routing decision as a pure function, so it is tested
without a broker and can be benchmarked alone. The faust app only calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from turnout.schemas.models import (
    ErrorInfo,
    InferenceRequest,
    PlanStep,
    RoutedRequest,
    RoutingDecision,
    Signals,
    utcnow,
)
from turnout.schemas.settings import Route, RouteMatch, Settings

from .signals import compute_signals


@dataclass(frozen=True)
class Refusal:
    """A request that no deployment may serve; the caller gets ``error``."""

    error: ErrorInfo
    signals: Signals | None = None


def _as_set(value: str | list[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def matches(match: RouteMatch | None, request: InferenceRequest, signals: Signals) -> bool:
    if match is None:
        return True
    tasks, tenants = _as_set(match.task_type), _as_set(match.tenant)
    if tasks is not None and signals.task_type not in tasks:
        return False
    if tenants is not None and request.tenant not in tenants:
        return False
    if match.input_tokens is not None and not match.input_tokens.contains(signals.input_tokens):
        return False
    return all(request.metadata.get(key) == value for key, value in match.metadata.items())


def first_matching_route(routes: list[Route], request: InferenceRequest, signals: Signals) -> int | None:
    return next((i for i, route in enumerate(routes) if matches(route.match, request, signals)), None)


def plan_route(request: InferenceRequest, settings: Settings) -> RoutedRequest | Refusal:
    """Decide where ``request`` goes: a pinned model if it names a fleet model, else the
    first rule whose conditions hold; the rule's fallbacks follow in order."""
    signals = compute_signals(request)
    if request.model is not None:
        if request.model not in settings.fleet:
            return Refusal(
                ErrorInfo(
                    code="unknown_model",
                    message=f"pinned model {request.model!r} is not in the fleet ({', '.join(sorted(settings.fleet))})",
                    details={"model": request.model},
                ),
                signals,
            )
        return _slip(request, settings, signals, "pinned", [request.model], f"caller pinned {request.model}")
    index = first_matching_route(settings.routes, request, signals)
    if index is None:  # settings validation guarantees a catch-all; kept for safety of callers with custom routes
        return Refusal(ErrorInfo(code="no_route", message="no routing rule matches and there is no catch-all"), signals)
    route = settings.routes[index]
    reason = f"rule {settings.route_name(index)} matched task_type={signals.task_type} input_tokens={signals.input_tokens}"
    models = list(dict.fromkeys([route.model, *route.fallback]))  # a model listed twice is one step
    return _slip(request, settings, signals, settings.route_name(index), models, reason)


def _slip(
    request: InferenceRequest, settings: Settings, signals: Signals, route: str, models: list[str], reason: str
) -> RoutedRequest:
    now = utcnow()
    if request.deadline is None:
        request = request.model_copy(update={"deadline": now + timedelta(seconds=settings.router.default_deadline_s)})
    plan = [PlanStep(model=m, role="primary" if i == 0 else "fallback") for i, m in enumerate(models)]
    return RoutedRequest(
        request=request,
        decision=RoutingDecision(route=route, model=models[0], reason=reason, signals=signals),
        plan=plan,
        policy_version=settings.router.policy_version,
        routed_at=now,
    )
