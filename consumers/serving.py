"""Serving one routing slip on one deployment: cache, breaker, rate limit, call, retry,
validate, then answer or move on.

``serve`` returns what to publish (a response and events, or the slip forwarded to the
next step of its plan); the worker loop does the Kafka I/O. It never raises for a
backend failure: every outcome becomes a message.

In order, for one slip:

1. an expired deadline is answered with ``deadline_exceeded``, never sent;
2. an identical earlier answer of this deployment is served from the response cache
   (unless the request opts out, samples, or is a shadow copy): no call, no cost;
3. each try needs a breaker permit (an open breaker moves the slip on at once) and its
   request and token budget from the rate limiter (a wait longer than the request can
   afford moves it on); transient errors are retried with jittered exponential
   backoff, and a 429's Retry-After pauses the whole deployment;
4. an answer cut off by ``max_tokens``, or one the model was unsure of (its token
   probabilities below the plan's ``min_confidence``; asked for only when the plan
   escalates on ``low_confidence``), escalates when the plan says so;
5. with a ``response_schema``: valid answers pass, near-JSON is repaired, otherwise
   one re-ask with the validation errors, then escalation, then a ``invalid_output``
   error that lists the errors.

An embedding slip (``input`` set) goes the same way with one difference in step 3: its
try joins the deployment's ``EmbeddingBatcher``, and the breaker permit, rate limits and
concurrency slot are taken once per batch call rather than per request. A failed batch
call is a failed try of every request in it; each retries or moves on along its own plan.
Its response carries the vectors and its share of the call's usage, priced at the
fleet's input price.

A chat request with ``stream`` set (not a shadow copy) is called streaming on any
deployment, and its text goes to ``emit`` in ``ResponseChunk``s as it is written, one
``ChunkBatcher`` per call (``chunks``): each chunk names its call's attempt, so a call
that fails mid-stream is replaced, for the reader, by the next one (a retry, a fallback,
a re-ask or an escalation alike). Once the answer is decided, one more chunk carries it
whole when the last call's chunks do not add up to it (``ChunkStream.settle``: a cache
hit, a server that could not stream, a repaired structured answer). The final response
is published as for any request.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Generic, TypeVar

from turnout.schemas.events import attempt_event, error_response, final_event, routing_meta
from turnout.schemas.models import (
    Attempt,
    AvroRecord,
    ErrorInfo,
    InferenceRequest,
    InferenceResponse,
    RoutedRequest,
    Usage,
    utcnow,
)
from turnout.schemas.settings import ModelDeployment, WorkerSettings
from turnout.schemas.topics import Topics

from .backend import BackendError, Completion, EmbeddingResult
from .cache import cache_key, cacheable, request_cacheable
from .chunks import ChunkBatcher, ChunkStream, Emit
from .deployment import CachedAnswer, Deployment, Metered, Skipped, guarded
from .flow import backoff_s
from .structured import InvalidSchema, reask_messages

__all__ = ["CachedAnswer", "DeadLetter", "Deployment", "Outcome", "Publish", "serve", "streams"]

MAX_RESPONSE_FLOATS = 200_000
"""Vector values one embedding response may carry: 800 KB of Avro floats, inside the
1 MB a Kafka message may hold by default (a larger one could not be published at all)."""

R = TypeVar("R", bound=Metered)
Try = Callable[[float, int], Awaitable[R]]
"""One try on the backend, given the seconds it may wait to start (``Skipped`` beyond)
and its attempt (its index among the slip's attempts, which a streamed answer's chunks carry)."""


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
class Call(Generic[R]):
    """What a run of tries on the backend ended with: a result, or why not."""

    slip: RoutedRequest
    result: R | None = None
    started_at: datetime | None = None
    skipped: ErrorInfo | None = None
    expired: bool = False


async def serve(
    slip: RoutedRequest, deployment: Deployment, topics: Topics, settings: WorkerSettings, rng: random.Random, emit: Emit | None = None
) -> Outcome:
    """``emit`` takes the chunks of a request that streams (``InferenceRequest.stream``)
    as they are written; without it, no request's answer is streamed to its caller."""
    chunks = _chunk_stream(slip, deployment, settings, emit)
    outcome = await _serve(slip, deployment, topics, settings, rng, chunks)
    response = next((m.record for m in outcome.messages if isinstance(m.record, InferenceResponse)), None)
    if chunks is not None and response is not None:
        chunks.settle(response)
    return outcome


async def _serve(
    slip: RoutedRequest, deployment: Deployment, topics: Topics, settings: WorkerSettings, rng: random.Random, chunks: ChunkStream | None
) -> Outcome:
    outcome = Outcome()
    if _expired(slip):
        return _final(outcome, slip, deployment, topics, _deadline_error(slip))
    key = _cache_key(slip, deployment, settings)
    cached = deployment.cache.get(key) if key and deployment.cache is not None else None
    if cached is not None:
        return _final(outcome, slip, deployment, topics, _cached_response(slip, deployment, cached))
    embedding = slip.request.input is not None
    try_once = _embedding_try(slip, deployment) if embedding else _completion_try(slip, slip.request, deployment, chunks)
    call: Call = await _call(outcome, slip, try_once, deployment, topics, settings, rng)
    if call.expired:
        return _final(outcome, call.slip, deployment, topics, _deadline_error(call.slip))
    if call.result is None:
        return _move_on(outcome, call.slip, deployment, topics, call.skipped)
    if embedding:
        return _embedded(outcome, call, deployment, topics, settings, key)
    return await _answer(outcome, call, deployment, topics, settings, rng, key, chunks)


def _completion_try(slip: RoutedRequest, request: InferenceRequest, deployment: Deployment, chunks: ChunkStream | None) -> Try[Completion]:
    tokens, logprobs = _token_estimate(slip, request, deployment.config), slip.min_confidence is not None
    if chunks is None:
        return lambda budget_s, _: guarded(deployment, tokens, budget_s, lambda: deployment.backend.complete(request, logprobs=logprobs))
    return lambda budget_s, attempt: guarded(deployment, tokens, budget_s, lambda: _streamed(deployment, request, logprobs, chunks.call(attempt)))


def streams(slip: RoutedRequest) -> bool:
    """Whether ``slip``'s answer goes to its caller in chunks as it is written: asked for
    (``stream``), and neither a shadow copy (whose answer nobody reads) nor an embedding
    request (which has no text)."""
    return slip.request.stream and not slip.shadow and slip.request.input is None


def _chunk_stream(slip: RoutedRequest, deployment: Deployment, settings: WorkerSettings, emit: Emit | None) -> ChunkStream | None:
    if emit is None or not streams(slip):
        return None
    return ChunkStream(slip.request, len(slip.attempts), deployment.model_id, settings.stream_chunks, emit)


async def _streamed(deployment: Deployment, request: InferenceRequest, logprobs: bool, batcher: ChunkBatcher) -> Completion:
    """A call whose text goes out in chunks as it comes: the rest of it once the call
    answered, nothing more once it failed (the next attempt's chunks replace it)."""
    try:
        completion = await deployment.backend.complete(request, logprobs=logprobs, on_text=batcher)
    except BaseException:
        batcher.discard()
        raise
    batcher.flush()
    return completion


def _embedding_try(slip: RoutedRequest, deployment: Deployment) -> Try[EmbeddingResult]:
    """The request's texts join the deployment's next batch call (see ``embedding_batch``)."""
    texts, tokens = slip.request.input or [], max(1, slip.decision.signals.input_tokens)
    return lambda budget_s, _: deployment.batcher.embed(texts, tokens=tokens, budget_s=budget_s, request_id=slip.request.id)


async def _call(
    outcome: Outcome,
    slip: RoutedRequest,
    try_once: Try[R],
    deployment: Deployment,
    topics: Topics,
    settings: WorkerSettings,
    rng: random.Random,
) -> Call[R]:
    """Try on the deployment until it answers, the retries are spent, or waiting would
    outlast the request. Every try is an attempt on the slip and an event."""
    for retry in range(deployment.config.max_retries + 1):
        if _expired(slip):
            return Call(slip, expired=True)
        budget_s = min(settings.max_wait_s, _seconds_left(slip))
        started_at = utcnow()
        try:
            result = await try_once(budget_s, len(slip.attempts))
        except Skipped as skipped:
            return Call(slip, skipped=skipped.info)
        except BackendError as exc:
            slip = _record_attempt(outcome, slip, deployment, topics, _failed_attempt(deployment, started_at, _ms_since(started_at), exc))
            if not exc.retryable or retry == deployment.config.max_retries:
                break
            delay = backoff_s(retry, settings.backoff_base_s, settings.backoff_max_s, rng, exc.retry_after_s)
            if delay > settings.max_wait_s or delay >= _seconds_left(slip):
                break  # waiting here would outlast the request: move on along the plan instead
            await asyncio.sleep(delay)
            continue
        return Call(slip, result, started_at)
    return Call(slip)


def _embedded(outcome: Outcome, call: Call[EmbeddingResult], deployment: Deployment, topics: Topics, settings: WorkerSettings, key: str | None) -> Outcome:
    """An embedding request's answer: its vectors, its share of the batch call's usage."""
    result, slip = call.result, _record_success(outcome, call, deployment, topics)
    assert result is not None
    usage, cost = Usage(input_tokens=result.input_tokens, output_tokens=0), deployment.config.cost_usd(result.input_tokens, 0)
    floats = sum(len(vector) for vector in result.vectors)
    if floats > MAX_RESPONSE_FLOATS:
        error = ErrorInfo(
            code="response_too_large",
            message=f"{len(result.vectors)} vectors ({floats:,} floats) exceed the {MAX_RESPONSE_FLOATS:,} one response may carry "
            "within Kafka's default 1 MB message limit: send fewer texts per request",
            details={"vectors": str(len(result.vectors)), "floats": str(floats)},
        )
        return _final(outcome, slip, deployment, topics, _paid_error(slip, deployment, error, usage, cost))
    response = _ok_response(slip, deployment, usage, cost, result.latency_ms, embeddings=result.vectors)
    return _answered(outcome, slip, deployment, topics, settings, key, response)


async def _answer(
    outcome: Outcome,
    call: Call[Completion],
    deployment: Deployment,
    topics: Topics,
    settings: WorkerSettings,
    rng: random.Random,
    key: str | None,
    chunks: ChunkStream | None = None,
) -> Outcome:
    completion, slip = call.result, _record_success(outcome, call, deployment, topics)
    assert completion is not None
    if completion.finish_reason == "length":  # cut off: the plan may say to escalate (the cascade)
        forwarded = _escalate(outcome, slip, topics, "truncated")
        if forwarded is not None:
            return forwarded
    if _unsure(completion, slip):  # the cascade's other trigger: the model doubted its answer
        forwarded = _escalate(outcome, slip, topics, "low_confidence")
        if forwarded is not None:
            return forwarded
    content, validation, cost = completion.content, "", deployment.config.cost_usd(completion.input_tokens, completion.output_tokens)
    usage_in, usage_out = completion.input_tokens, completion.output_tokens
    schema = slip.request.response_schema
    if schema:
        try:
            result = deployment.checker.check(content, schema)
        except InvalidSchema as exc:
            error = ErrorInfo(code="invalid_request", message=f"response_schema is not usable: {exc}")
            return _final(outcome, slip, deployment, topics, error_response(slip.request.id, slip.request.tenant, error, slip))
        validation = "repaired" if result.repaired else "passed"
        if not result.ok:
            reask = slip.request.model_copy(update={"messages": reask_messages(slip.request.messages, content, result.errors)})
            second = await _call(outcome, slip, _completion_try(slip, reask, deployment, chunks), deployment, topics, settings, rng)
            slip = second.slip
            if second.result is not None:
                slip = _record_success(outcome, second, deployment, topics)
                usage_in, usage_out = usage_in + second.result.input_tokens, usage_out + second.result.output_tokens
                cost += deployment.config.cost_usd(second.result.input_tokens, second.result.output_tokens)
                result = deployment.checker.check(second.result.content, schema)
                completion, validation = second.result, "reasked"
            if not result.ok:
                forwarded = _escalate(outcome, slip, topics, "validation_failed")
                if forwarded is not None:
                    return forwarded
                return _final(outcome, slip, deployment, topics, _invalid_output(slip, deployment, result.errors, cost, usage_in, usage_out))
        content = result.content or content
    usage = Usage(input_tokens=usage_in, output_tokens=usage_out)
    response = _ok_response(
        slip,
        deployment,
        usage,
        cost,
        completion.latency_ms,
        content=content,
        finish_reason=completion.finish_reason,
        validation=validation,
        confidence=completion.confidence,
        ttft_ms=completion.ttft_ms,
    )
    return _answered(outcome, slip, deployment, topics, settings, key, response)


# -- the pieces ------------------------------------------------------------------------------
def _ok_response(slip: RoutedRequest, deployment: Deployment, usage: Usage, cost: float, backend_latency_ms: float, **answer: object) -> InferenceResponse:
    """A successful response to ``slip`` from this deployment; ``answer`` holds what it says."""
    return InferenceResponse(
        id=slip.request.id,
        tenant=slip.request.tenant,
        status="ok",
        model=deployment.model_id,
        provider=deployment.backend.provider,
        usage=usage,
        cost_usd=cost,
        latency_ms=_ms_since(slip.request.created_at),
        backend_latency_ms=backend_latency_ms,
        routing=routing_meta(slip),
        **answer,  # type: ignore[arg-type]
    )


def _answered(
    outcome: Outcome, slip: RoutedRequest, deployment: Deployment, topics: Topics, settings: WorkerSettings, key: str | None, response: InferenceResponse
) -> Outcome:
    """Publish a fresh answer, and keep it for identical requests when it may be reused."""
    if key and deployment.cache is not None and cacheable(slip, response, settings.cache):
        deployment.cache.put(key, CachedAnswer(response.content, response.finish_reason, response.validation, response.embeddings))
    return _final(outcome, slip, deployment, topics, response)


def _cache_key(slip: RoutedRequest, deployment: Deployment, settings: WorkerSettings) -> str | None:
    if deployment.cache is None or slip.shadow or not request_cacheable(slip.request, settings.cache):
        return None
    return cache_key(slip.request, deployment.model_id)


def _cached_response(slip: RoutedRequest, deployment: Deployment, cached: CachedAnswer) -> InferenceResponse:
    """An earlier answer served again: nothing was paid, so usage and cost are zero."""
    return _ok_response(
        slip,
        deployment,
        Usage(input_tokens=0, output_tokens=0),
        0.0,
        0.0,
        content=cached.content,
        finish_reason=cached.finish_reason,
        validation=cached.validation,
        embeddings=cached.embeddings,
        cache_hit=True,
    )


def _token_estimate(slip: RoutedRequest, request: InferenceRequest, config: ModelDeployment) -> int:
    """Tokens a call may use, for the tokens-per-minute budget before the provider says:
    the router's count of the prompt plus the most the answer may take."""
    signals = slip.decision.signals
    prompt = signals.input_tokens + (sum(len(m.content) for m in request.messages[len(slip.request.messages) :]) // 4)
    return max(1, prompt + (request.max_tokens or min(config.max_output_tokens, max(signals.expected_output_tokens, 1))))


def _record_attempt(outcome: Outcome, slip: RoutedRequest, deployment: Deployment, topics: Topics, attempt: Attempt, usage: tuple[int, int, float] = (0, 0, 0.0)) -> RoutedRequest:
    event = attempt_event(slip, attempt, len(slip.attempts), *usage, region=deployment.config.region)
    outcome.messages.append(Publish(topics.events, slip.request.id, event))
    return slip.model_copy(update={"attempts": [*slip.attempts, attempt]})


def _record_success(outcome: Outcome, call: Call, deployment: Deployment, topics: Topics) -> RoutedRequest:
    result, started_at = call.result, call.started_at
    assert result is not None and started_at is not None
    cost = deployment.config.cost_usd(result.input_tokens, result.output_tokens)
    confidence = getattr(result, "confidence", None)  # a completion's, when logprobs were asked for
    ttft_ms = getattr(result, "ttft_ms", None)  # a streamed completion's
    attempt = Attempt(
        model=deployment.model_id,
        provider=deployment.backend.provider,
        started_at=started_at,
        latency_ms=result.latency_ms,
        status="ok",
        confidence=confidence,
        ttft_ms=ttft_ms,
    )
    return _record_attempt(outcome, call.slip, deployment, topics, attempt, (result.input_tokens, result.output_tokens, cost))


def _failed_attempt(deployment: Deployment, started_at: datetime, latency_ms: float, exc: BackendError) -> Attempt:
    return Attempt(
        model=deployment.model_id,
        provider=deployment.backend.provider,
        started_at=started_at,
        latency_ms=latency_ms,
        status="error",
        error=ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable, details=_status(exc)),
    )


def _unsure(completion: Completion, slip: RoutedRequest) -> bool:
    """Below the plan's confidence threshold. An answer without a confidence (a provider
    without log-probabilities) is not judged: doubting every such answer would escalate
    all of them, which is the expensive model with extra steps."""
    threshold = slip.min_confidence
    return threshold is not None and completion.confidence is not None and completion.confidence < threshold


def _escalate(outcome: Outcome, slip: RoutedRequest, topics: Topics, trigger: str) -> Outcome | None:
    escalation = slip.escalation_for(trigger)
    if escalation is None:
        return None
    forwarded = slip.model_copy(update={"step": slip.step_index(escalation)})
    outcome.messages.append(Publish(topics.model(escalation.model), slip.request.id, forwarded))
    return outcome


def _invalid_output(slip: RoutedRequest, deployment: Deployment, errors: tuple[str, ...], cost: float, usage_in: int, usage_out: int) -> InferenceResponse:
    error = ErrorInfo(
        code="invalid_output",
        message=f"{deployment.model_id}'s answer does not satisfy the response_schema, even after a repair and a re-ask: " + "; ".join(errors),
        details={"validation_errors": "\n".join(errors)},
    )
    return _paid_error(slip, deployment, error, Usage(input_tokens=usage_in, output_tokens=usage_out), cost).model_copy(update={"validation": "failed"})


def _paid_error(slip: RoutedRequest, deployment: Deployment, error: ErrorInfo, usage: Usage, cost: float) -> InferenceResponse:
    """An error after the backend answered: the caller is told what the calls cost."""
    response = error_response(slip.request.id, slip.request.tenant, error, slip)
    return response.model_copy(update={"model": deployment.model_id, "cost_usd": cost, "usage": usage})


def _move_on(outcome: Outcome, slip: RoutedRequest, deployment: Deployment, topics: Topics, skipped: ErrorInfo | None) -> Outcome:
    """Retries are spent (or the deployment cannot take the request in time): forward the
    slip to the next step of its plan, or give up."""
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
    return _final(outcome, slip, deployment, topics, error_response(slip.request.id, slip.request.tenant, error, slip))


def refuse_on_shared_topic(slip: RoutedRequest, deployment: Deployment, topics: Topics, error: ErrorInfo) -> Outcome:
    """``slip`` answered with ``error`` without a call, on the shared responses topic: its
    own reply topic cannot be written to (``schemas/reply_topics.py``)."""
    shared = slip.model_copy(update={"request": slip.request.model_copy(update={"reply_topic": None})})
    return _final(Outcome(), shared, deployment, topics, error_response(slip.request.id, slip.request.tenant, error, slip))


def _final(outcome: Outcome, slip: RoutedRequest, deployment: Deployment, topics: Topics, response: InferenceResponse) -> Outcome:
    if not slip.shadow:  # a shadow copy is served and recorded, never returned
        outcome.messages.append(Publish(slip.request.reply_topic or topics.responses, slip.request.id, response))
    outcome.messages.append(Publish(topics.events, slip.request.id, final_event(slip, response, deployment.config.region)))
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
