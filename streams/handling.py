"""What the router does with one raw message, as a pure function returning what to send.

Kept apart from the faust wiring so the whole behaviour, including every way a message
can be bad, is unit-tested without a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from turnout.schemas.events import decision_event, error_response, rejected_event
from turnout.schemas.kafka import dlq_headers
from turnout.schemas.models import ErrorInfo, InferenceRequest
from turnout.schemas.reply_topics import unknown_reply_topic
from turnout.schemas.serde import AvroCodec, DecodeError
from turnout.schemas.settings import Settings

from .engine import Context
from .prompts import prompt_text
from .rules import Decision, context_from, decide

STAGE = "router"


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """Where a message was read, for the dead-letter headers."""

    topic: str
    partition: int
    offset: int


def route_message(
    key: bytes | None,
    value: bytes | None,
    source: Source,
    codec: AvroCodec,
    settings: Settings,
    ctx: Context | None = None,
    reply_topic_writable: Callable[[str], bool] | None = None,
) -> list[Outgoing]:
    """Route one message from the requests topic.

    Good requests go to their primary model's topic with a decision event. Bad ones go
    to the dead-letter topic with the reason, and the caller gets an error response
    when it can be addressed (by the request's reply topic, else by the message key on
    the shared responses topic). A request whose tenant opted in to prompt storage
    (``[prompts]``) also sends its redacted text to the prompts topic, refused or not.
    A request naming a reply topic that ``reply_topic_writable`` says no producer can
    write to (``schemas/reply_topics.py``) is refused and answered on the shared responses topic.
    Never raises for bad input.
    """
    topics = settings.topics
    ctx = ctx or context_from(settings)
    try:
        request = codec.decode(value or b"", InferenceRequest)
    except DecodeError as exc:
        request_id = key.decode("utf-8", "replace") if key else ""
        return _reject(request_id, "", None, ErrorInfo(code="invalid_request", message=str(exc)), key, value, source, codec, settings, ctx.policy.version)
    if request.reply_topic and reply_topic_writable is not None and not reply_topic_writable(request.reply_topic):
        error = unknown_reply_topic(request.reply_topic, topics.responses)
        return _reject(request.id, request.tenant, None, error, key, value, source, codec, settings, ctx.policy.version)
    decision = decide(request, ctx, settings.router.default_deadline_s)
    kept = _kept_prompt(request, decision, codec, settings, ctx.policy.version)
    if decision.slip is None:
        error = decision.selection.refusal
        return _reject(request.id, request.tenant, request.reply_topic, error, key, value, source, codec, settings, ctx.policy.version, decision.signals.task_type) + kept  # type: ignore[arg-type]
    key_out = request.id.encode()
    out = []
    for slip in (decision.slip, *decision.shadows):
        out.append(Outgoing(topics.model(slip.current.model), key_out, codec.encode(slip)))
        out.append(Outgoing(topics.events, key_out, codec.encode(decision_event(slip))))
    return out + kept


def _kept_prompt(request: InferenceRequest, decision: Decision, codec: AvroCodec, settings: Settings, policy_version: str) -> list[Outgoing]:
    """The request's redacted text for the prompts topic, when its tenant opted in;
    refused requests too, so that a what-if can tell what another policy would serve."""
    if not settings.prompts.stores(request.tenant):
        return []
    record = prompt_text(request, decision.signals, policy_version)
    return [Outgoing(settings.topics.prompts, request.id.encode(), codec.encode(record))]


def _reject(
    request_id: str,
    tenant: str,
    reply_topic: str | None,
    error: ErrorInfo,
    key: bytes | None,
    value: bytes | None,
    source: Source,
    codec: AvroCodec,
    settings: Settings,
    policy_version: str,
    task_type: str = "",
) -> list[Outgoing]:
    topics = settings.topics
    out = [
        Outgoing(
            topics.dlq,
            key,
            value or b"",
            dlq_headers(f"{error.code}: {error.message}", STAGE, source.topic, source.partition, source.offset),
        )
    ]
    if request_id:
        response = error_response(request_id, tenant or "unknown", error)
        out.append(Outgoing(reply_topic or topics.responses, request_id.encode(), codec.encode(response)))
        out.append(
            Outgoing(topics.events, request_id.encode(), codec.encode(rejected_event(request_id, tenant or "unknown", error, policy_version, task_type)))
        )
    return out
