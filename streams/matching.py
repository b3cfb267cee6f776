"""Route matching: the first rule whose conditions all hold wins."""

from __future__ import annotations

from turnout.schemas.models import InferenceRequest, Signals
from turnout.schemas.policy import Route, RouteMatch


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
