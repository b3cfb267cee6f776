"""Serving one routing slip on one deployment: call, retry, then answer or move on.

``serve`` returns what to publish (a response and events, or the slip forwarded to the
next step of its plan); the worker loop does the Kafka I/O. It never raises for a
backend failure: every outcome becomes a message.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from turnout.schemas.events import attempt_event, error_response, final_event, routing_meta
from turnout.schemas.models import (
    Attempt,
    AvroRecord,
    ErrorInfo,
    InferenceResponse,
    RoutedRequest,
    Usage,
    utcnow,
)
from turnout.schemas.settings import ModelDeployment, WorkerSettings
from turnout.schemas.topics import Topics

from .backend import BackendError, ChatBackend, Completion
from .flow import DeploymentPause, backoff_s


@dataclass
class Publish:
    topic: str
    key: str
    record: AvroRecord


@dataclass
class DeadLetter:
    """A message that cannot be served, passed on as it came, with the reason in headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Outcome:
    messages: list[Publish] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    answered: bool = False


@dataclass
class Deployment:
    """A fleet entry bound to its backend client and its shared flow-control state."""

    model_id: str
    config: ModelDeployment
    backend: ChatBackend
    limit: asyncio.Semaphore
    pause: DeploymentPause = field(default_factory=DeploymentPause)


async def serve(slip: RoutedRequest, deployment: Deployment, topics: Topics, settings: WorkerSettings, rng: random.Random) -> Outcome:
    request = slip.request
    outcome = Outcome()
    skipped: ErrorInfo | None = None
    for retry in range(deployment.config.max_retries + 1):
        if _expired(slip):
            return _final(outcome, slip, topics, _deadline_error(slip))
        paused = deployment.pause.remaining_s()
        if paused > settings.max_wait_s or paused >= _seconds_left(slip):
            skipped = ErrorInfo(
                code="rate_limited",
                message=f"{deployment.model_id} is paused for {paused:.1f}s more by a 429 Retry-After",
                retryable=True,
            )
            break
        started_at = utcnow()
        try:
            await deployment.pause.wait()
            async with deployment.limit:
                completion = await deployment.backend.complete(request)
        except BackendError as exc:
            attempt = Attempt(
                model=deployment.model_id,
                provider=deployment.backend.provider,
                started_at=started_at,
                latency_ms=_ms_since(started_at),
                status="error",
                error=ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable, details=_status(exc)),
            )
            outcome.messages.append(Publish(topics.events, request.id, attempt_event(slip, attempt, len(slip.attempts), 0, 0, 0.0)))
            slip = slip.model_copy(update={"attempts": [*slip.attempts, attempt]})
            if exc.code == "rate_limited" and exc.retry_after_s:
                deployment.pause.pause_for(exc.retry_after_s)
            if not exc.retryable or retry == deployment.config.max_retries:
                break
            delay = backoff_s(retry, settings.backoff_base_s, settings.backoff_max_s, rng, exc.retry_after_s)
            if delay > settings.max_wait_s or delay >= _seconds_left(slip):
                break  # waiting here would outlast the request: move on along the plan instead
            await asyncio.sleep(delay)
            continue
        return _answer(outcome, slip, deployment, completion, started_at, topics)
    return _move_on(outcome, slip, topics, skipped)


def _answer(
    outcome: Outcome, slip: RoutedRequest, deployment: Deployment, completion: Completion, started_at: datetime, topics: Topics
) -> Outcome:
    cost = deployment.config.cost_usd(completion.input_tokens, completion.output_tokens)
    attempt = Attempt(model=deployment.model_id, provider=deployment.backend.provider, started_at=started_at, latency_ms=completion.latency_ms, status="ok")
    outcome.messages.append(
        Publish(topics.events, slip.request.id, attempt_event(slip, attempt, len(slip.attempts), completion.input_tokens, completion.output_tokens, cost))
    )
    slip = slip.model_copy(update={"attempts": [*slip.attempts, attempt]})
    if completion.finish_reason == "length":  # cut off: the plan may say to escalate (the cascade)
        escalation = slip.escalation_for("truncated")
        if escalation is not None:
            forwarded = slip.model_copy(update={"step": slip.step_index(escalation)})
            outcome.messages.append(Publish(topics.model(escalation.model), slip.request.id, forwarded))
            return outcome
    response = InferenceResponse(
        id=slip.request.id,
        tenant=slip.request.tenant,
        status="ok",
        model=deployment.model_id,
        provider=deployment.backend.provider,
        content=completion.content,
        finish_reason=completion.finish_reason,
        usage=Usage(input_tokens=completion.input_tokens, output_tokens=completion.output_tokens),
        cost_usd=cost,
        latency_ms=_ms_since(slip.request.created_at),
        backend_latency_ms=completion.latency_ms,
        routing=routing_meta(slip),
    )
    return _final(outcome, slip, topics, response)


def _move_on(outcome: Outcome, slip: RoutedRequest, topics: Topics, skipped: ErrorInfo | None) -> Outcome:
    """Retries are spent (or the deployment is paused past what the request can wait):
    forward the slip to the next step of its plan, or give up."""
    next_step = slip.next_step
    if next_step is not None:
        forwarded = slip.model_copy(update={"step": slip.step_index(next_step)})
        outcome.messages.append(Publish(topics.model(next_step.model), slip.request.id, forwarded))
        return outcome
    last = skipped or (slip.attempts[-1].error if slip.attempts else None)
    error = ErrorInfo(
        code="all_backends_failed",
        message=f"every step of the plan failed ({', '.join(s.model for s in slip.plan)}); last error: "
        + (f"{last.code}: {last.message}" if last else "none"),
        retryable=True,
    )
    return _final(outcome, slip, topics, error_response(slip.request.id, slip.request.tenant, error, slip))


def _final(outcome: Outcome, slip: RoutedRequest, topics: Topics, response: InferenceResponse) -> Outcome:
    if not slip.shadow:  # a shadow copy is served and recorded, never returned
        outcome.messages.append(Publish(slip.request.reply_topic or topics.responses, slip.request.id, response))
    outcome.messages.append(Publish(topics.events, slip.request.id, final_event(slip, response)))
    outcome.answered = True
    return outcome


def _deadline_error(slip: RoutedRequest) -> InferenceResponse:
    error = ErrorInfo(
        code="deadline_exceeded",
        message=f"the request's deadline {slip.request.deadline.isoformat() if slip.request.deadline else ''} passed before it could be served",
    )
    return error_response(slip.request.id, slip.request.tenant, error, slip)


def _expired(slip: RoutedRequest) -> bool:
    return _seconds_left(slip) <= 0


def _seconds_left(slip: RoutedRequest) -> float:
    deadline = slip.request.deadline
    return float("inf") if deadline is None else (deadline - datetime.now(timezone.utc)).total_seconds()


def _ms_since(moment: datetime) -> float:
    return max(0.0, (datetime.now(timezone.utc) - moment).total_seconds() * 1000)


def _status(exc: BackendError) -> dict[str, str]:
    return {"http_status": str(exc.status)} if exc.status is not None else {}
