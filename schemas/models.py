"""Python mirrors of the Avro records in ``avro/``.

The ``.avsc`` files are the language-neutral source of truth; these pydantic models
give Python code typed, validated objects with the same field names, so that
``model.model_dump()`` is exactly the datum fastavro writes and a decoded datum
validates straight back into the model. ``tests/unit/test_models_mirror_avsc.py`` keeps
the two in step.
"""

from __future__ import annotations

import array
from datetime import datetime, timezone
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant", "tool"]


def utcnow() -> datetime:
    """Millisecond-precision UTC now: what an Avro ``timestamp-millis`` round-trips."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class AvroRecord(BaseModel):
    """A model that is also an Avro record named ``avro_name`` in ``avro/``."""

    model_config = ConfigDict(extra="forbid")
    avro_name: ClassVar[str]


class ChatMessage(AvroRecord):
    avro_name: ClassVar[str] = "turnout.ChatMessage"
    role: Role
    content: str
    name: str | None = None
    images: list[str] = Field(default_factory=list)


class ErrorInfo(AvroRecord):
    avro_name: ClassVar[str] = "turnout.ErrorInfo"
    code: str
    message: str
    retryable: bool = False
    details: dict[str, str] = Field(default_factory=dict)


class InferenceRequest(AvroRecord):
    avro_name: ClassVar[str] = "turnout.InferenceRequest"
    id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: str | None = None
    response_schema: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] = Field(default_factory=list)
    temperature: float | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    deadline: datetime | None = None
    reply_topic: str | None = None
    model: str | None = None
    cache: bool = True
    input: list[str] | None = None
    stream: bool = False

    @model_validator(mode="after")
    def _chat_or_embedding(self) -> InferenceRequest:
        """Exactly one kind of request: a conversation to answer, or texts to embed."""
        if self.input is None:
            if not self.messages:
                raise ValueError("a request needs messages (a chat request) or input (an embedding request); both are empty")
            return self
        if not self.input:
            raise ValueError("input: an embedding request needs at least one text")
        empty = [i for i, text in enumerate(self.input) if not text]
        if empty:
            raise ValueError(f"input[{empty[0]}] is empty: every text to embed needs at least one character")
        if self.messages:
            raise ValueError("set messages (a chat request) or input (an embedding request), not both")
        chat_only = [name for name in _CHAT_ONLY if getattr(self, name) not in (None, [])] + (["stream"] if self.stream else [])
        if chat_only:
            raise ValueError(f"an embedding request (input set) takes no {', '.join(chat_only)}: they apply to chat requests only")
        return self


_CHAT_ONLY = ("tools", "response_schema", "max_tokens", "stop", "temperature")


class Signals(AvroRecord):
    avro_name: ClassVar[str] = "turnout.Signals"
    task_type: str
    task_confidence: float
    task_method: str
    input_tokens: int
    token_method: str
    turns: int
    language: str = "und"
    language_confidence: float = 0.0
    expected_output_tokens: int = 0
    complexity: float = 0.0
    capabilities: list[str] = Field(default_factory=list)
    sensitive_kinds: list[str] = Field(default_factory=list)


class PlanStep(AvroRecord):
    avro_name: ClassVar[str] = "turnout.PlanStep"
    model: str
    role: Literal["primary", "fallback", "escalation"]
    when: list[str] = Field(default_factory=list)
    min_confidence: float | None = None


class Attempt(AvroRecord):
    avro_name: ClassVar[str] = "turnout.Attempt"
    model: str
    provider: str
    started_at: datetime
    latency_ms: float
    status: Literal["ok", "error"]
    error: ErrorInfo | None = None
    confidence: float | None = None
    ttft_ms: float | None = None


class RoutingDecision(AvroRecord):
    avro_name: ClassVar[str] = "turnout.RoutingDecision"
    route: str
    model: str
    reason: str
    signals: Signals


class RoutedRequest(AvroRecord):
    """The routing slip: a worker serves ``plan[step]`` and may move to ``step + 1``."""

    avro_name: ClassVar[str] = "turnout.RoutedRequest"
    request: InferenceRequest
    decision: RoutingDecision
    plan: list[PlanStep] = Field(min_length=1)
    step: int = 0
    attempts: list[Attempt] = Field(default_factory=list)
    policy_version: str
    routed_at: datetime = Field(default_factory=utcnow)
    shadow: bool = False

    @property
    def current(self) -> PlanStep:
        return self.plan[self.step]

    @property
    def next_step(self) -> PlanStep | None:
        """The next fallback: where the request goes when this step fails. Escalation
        steps are skipped; they are taken only on their triggers."""
        return next((s for s in self.plan[self.step + 1 :] if s.role == "fallback"), None)

    def step_index(self, step: PlanStep) -> int:
        return self.plan.index(step)

    @property
    def min_confidence(self) -> float | None:
        """The confidence below which the current step's answer is escalated, or ``None``
        when no escalation step listens for ``low_confidence`` (then the worker need not
        ask the backend for token log-probabilities at all)."""
        step = self.escalation_for("low_confidence")
        return step.min_confidence if step is not None else None

    def escalation_for(self, trigger: str) -> PlanStep | None:
        """The escalation step taken when ``trigger`` happens on the current step. The
        target may also be one of the fallbacks; an answer it gave itself (as a fallback)
        is not escalated to it again."""
        current = self.plan[self.step].model
        return next((s for s in self.plan[self.step + 1 :] if s.role == "escalation" and trigger in s.when and s.model != current), None)


class Usage(AvroRecord):
    avro_name: ClassVar[str] = "turnout.Usage"
    input_tokens: int
    output_tokens: int


class RoutingMeta(AvroRecord):
    avro_name: ClassVar[str] = "turnout.RoutingMeta"
    route: str | None = None
    selected_model: str | None = None
    task_type: str | None = None
    fallback_path: list[str] = Field(default_factory=list)
    policy_version: str | None = None
    validation: Literal["not_requested", "passed", "failed"] = "not_requested"


class InferenceResponse(AvroRecord):
    avro_name: ClassVar[str] = "turnout.InferenceResponse"
    id: str
    tenant: str
    status: Literal["ok", "error"]
    model: str | None = None
    provider: str | None = None
    content: str | None = None
    finish_reason: str | None = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    latency_ms: float = 0.0
    backend_latency_ms: float = 0.0
    routing: RoutingMeta = Field(default_factory=RoutingMeta)
    cache_hit: bool = False
    validation: Literal["", "passed", "repaired", "reasked", "failed"] = ""
    embeddings: list[list[float]] = Field(default_factory=list)
    confidence: float | None = None
    ttft_ms: float | None = None

    @field_validator("embeddings")
    @classmethod
    def _float32(cls, vectors: list[list[float]]) -> list[list[float]]:
        """Avro ``float`` is 32-bit: round each value now, so that the model holds exactly
        what a reader decodes (and a decoded response equals the one that was sent)."""
        return [array.array("f", vector).tolist() for vector in vectors]


class ResponseChunk(AvroRecord):
    """A piece of a streamed answer on the reply topic, before the final response (see
    ``avro/turnout.ResponseChunk.avsc`` for how a reader puts the pieces together)."""

    avro_name: ClassVar[str] = "turnout.ResponseChunk"
    request_id: str = Field(min_length=1)
    tenant: str
    attempt: int = Field(ge=0)
    seq: int = Field(ge=0)
    delta: str
    model: str
    created_at: datetime = Field(default_factory=utcnow)


EventKind = Literal["decision", "attempt", "completion", "failure", "rejected"]


class RoutingEvent(AvroRecord):
    avro_name: ClassVar[str] = "turnout.RoutingEvent"
    event_id: str
    request_id: str
    tenant: str
    kind: EventKind
    ts: datetime = Field(default_factory=utcnow)
    route: str = ""
    model: str = ""
    provider: str = ""
    policy_version: str = ""
    task_type: str = ""
    status: str = ""
    error_kind: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempt: int = 0
    fallback_depth: int = 0
    detail: str = ""
    shadow: bool = False
    language: str = ""
    complexity: float = 0.0
    sensitive_kinds: list[str] = Field(default_factory=list)
    cache_hit: bool = False
    validation: str = ""
    confidence: float | None = None
    escalated: bool = False
    region: str = ""
    ttft_ms: float | None = None

    @staticmethod
    def make_id(request_id: str, kind: str, attempt: int = 0, shadow: bool = False) -> str:
        """Deterministic id: a redelivered event replaces its first copy downstream,
        while a shadow copy's events stay apart from the primary's."""
        return f"{request_id}:{'shadow:' if shadow else ''}{kind}:{attempt}"


class Feedback(AvroRecord):
    """A quality score a service publishes about one request, on ``<prefix>.feedback``."""

    avro_name: ClassVar[str] = "turnout.Feedback"
    feedback_id: str = ""
    request_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    score: float = Field(allow_inf_nan=False)
    comment: str = ""
    source: str = ""
    ts: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _default_id(self) -> Feedback:
        """Without an explicit id, one judgement per request, metric and source: a client
        that sends the same judgement twice (a retry after a lost acknowledgement) is
        stored once, by the sink and by the table's key alike."""
        if not self.feedback_id:
            self.feedback_id = self.make_id(self.request_id, self.metric, self.source)
        return self

    @staticmethod
    def make_id(request_id: str, metric: str, source: str = "") -> str:
        return f"{request_id}:{metric}:{source}"


class PromptText(AvroRecord):
    """A routed request's redacted text and what a replay routes on, on ``<prefix>.prompts``
    (only for tenants that opted in); stored in ClickHouse for ``turnout whatif``."""

    avro_name: ClassVar[str] = "turnout.PromptText"
    request_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    ts: datetime
    policy_version: str
    messages: list[ChatMessage] = Field(default_factory=list)
    input: list[str] = Field(default_factory=list)
    model: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    signals: Signals


class DeploymentHealth(AvroRecord):
    """A worker replica's health report; the router sums backlogs per model."""

    avro_name: ClassVar[str] = "turnout.DeploymentHealth"
    model: str
    replica: str
    breaker: Literal["closed", "open", "half_open"] = "closed"
    backlog: int = 0
    updated_at: datetime = Field(default_factory=utcnow)
