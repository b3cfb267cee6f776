"""Builders for the routing events every stage publishes on ``<prefix>.events``.

The router and the workers describe what they did in the same vocabulary, so the
ClickHouse rows line up: one ``decision`` or ``rejected`` row per request from the
router, one ``attempt`` row per backend call and one ``completion`` or ``failure`` row
per final answer from the workers. The workers' rows also name the region of the
deployment they are about, and carry the call's time to first token when it was
streamed. The router's rows leave ``region`` empty: a decision is taken before any
deployment is called, and the plan may end up served elsewhere than its first step.
"""

from __future__ import annotations

from .models import Attempt, ErrorInfo, InferenceResponse, RoutedRequest, RoutingEvent, RoutingMeta


def _slip_fields(slip: RoutedRequest, kind: str, attempt: int = 0) -> dict:
    """What every event about a routed request says: who, which route, which policy,
    what the router read from the content."""
    signals = slip.decision.signals
    return {
        "event_id": RoutingEvent.make_id(slip.request.id, kind, attempt, slip.shadow),
        "request_id": slip.request.id,
        "tenant": slip.request.tenant,
        "kind": kind,
        "route": slip.decision.route,
        "policy_version": slip.policy_version,
        "task_type": signals.task_type,
        "fallback_depth": slip.step,
        "escalated": slip.current.role == "escalation",
        "shadow": slip.shadow,
        "language": signals.language,
        "complexity": signals.complexity,
        "sensitive_kinds": signals.sensitive_kinds,
    }


def decision_event(slip: RoutedRequest) -> RoutingEvent:
    return RoutingEvent(
        **_slip_fields(slip, "decision"),
        ts=slip.routed_at,
        model=slip.current.model,
        status="routed",
        input_tokens=slip.decision.signals.input_tokens,
        detail=slip.decision.reason,
    )


def rejected_event(request_id: str, tenant: str, error: ErrorInfo, policy_version: str, task_type: str = "") -> RoutingEvent:
    return RoutingEvent(
        event_id=RoutingEvent.make_id(request_id, "rejected"),
        request_id=request_id,
        tenant=tenant,
        kind="rejected",
        policy_version=policy_version,
        task_type=task_type,
        status="error",
        error_kind=error.code,
        detail=error.message[:1000],
    )


def attempt_event(slip: RoutedRequest, attempt: Attempt, number: int, usage_in: int, usage_out: int, cost: float, region: str = "") -> RoutingEvent:
    """``number`` counts attempts across the whole plan, so each has its own row;
    ``region`` is the fleet region of the deployment called (the slip does not carry it)."""
    return RoutingEvent(
        **_slip_fields(slip, "attempt", number),
        ts=attempt.started_at,
        model=attempt.model,
        provider=attempt.provider,
        status=attempt.status,
        error_kind=attempt.error.code if attempt.error else "",
        input_tokens=usage_in,
        output_tokens=usage_out,
        cost_usd=cost,
        latency_ms=attempt.latency_ms,
        attempt=number,
        detail=attempt.error.message[:1000] if attempt.error else "",
        confidence=attempt.confidence,
        region=region,
        ttft_ms=attempt.ttft_ms,
    )


def final_event(slip: RoutedRequest, response: InferenceResponse, region: str = "") -> RoutingEvent:
    """``region``: that of the deployment that answered, or that gave up (the last one tried)."""
    kind = "completion" if response.status == "ok" else "failure"
    usage = response.usage
    return RoutingEvent(
        **_slip_fields(slip, kind),
        ts=response.created_at,
        model=response.model or "",
        provider=response.provider or "",
        status=response.status,
        error_kind=response.error.code if response.error else "",
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cost_usd=response.cost_usd,
        latency_ms=response.latency_ms,
        attempt=len(slip.attempts),
        detail=response.error.message[:1000] if response.error else "",
        cache_hit=response.cache_hit,
        validation=response.validation,
        confidence=response.confidence,
        region=region,
        ttft_ms=response.ttft_ms,
    )


def routing_meta(slip: RoutedRequest) -> RoutingMeta:
    """How a request was routed, for its response: the rule, the choice, the path taken."""
    return RoutingMeta(
        route=slip.decision.route,
        selected_model=slip.decision.model,
        task_type=slip.decision.signals.task_type,
        fallback_path=list(dict.fromkeys(a.model for a in slip.attempts)),
        policy_version=slip.policy_version,
    )


def error_response(request_id: str, tenant: str, error: ErrorInfo, slip: RoutedRequest | None = None) -> InferenceResponse:
    """The structured error a caller receives instead of an answer."""
    routing = routing_meta(slip) if slip is not None else RoutingMeta()
    return InferenceResponse(id=request_id, tenant=tenant, status="error", error=error, routing=routing)
