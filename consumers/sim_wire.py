"""The simulator's format-neutral vocabulary: a parsed call, the answer to it, the wire
format contract, and the composition of an answer from a profile and a fault plan.

The OpenAI and Anthropic formats (``sim_openai``, ``sim_anthropic``) only translate
between their JSON and these types, so that latency, faults, token accounting and
structured output are written once and behave the same in both.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.schemas.settings import SimulatorProfile

from .sim_faults import CallPlan, Failure, Fault
from .sim_json import instance, near_json, violate

__all__ = [
    "Answer", "BadRequest", "EmbeddingCall", "SimCall", "StreamEvents", "Structured", "WireFormat",
    "compose_answer", "messages_of", "pieces", "prompt_tokens", "request_body", "sse", "text_of", "unit_vector",
]

CHARS_PER_TOKEN = 4
_WORDS = "the router moves each prompt onto the track that serves it best under the policies in force".split()


@dataclass(frozen=True)
class Structured:
    """A request for structured output: the JSON schema the answer must satisfy, a valid
    document for it, and the tool it goes to when the request forced one (None for a
    response format)."""

    schema: dict[str, Any]
    document: Any
    tool: str | None = None
    named: bool = True  # the tool was forced by name (OpenAI then finishes with "stop")

    @classmethod
    def of(cls, schema: Any, param: str, tool: str | None = None, named: bool = True) -> Structured:
        """Read ``schema`` now, so that one the simulator cannot read is refused with a
        400 naming ``param``, as the real APIs refuse an invalid schema."""
        if not isinstance(schema, dict):
            raise BadRequest(f"{param}: the JSON schema must be an object", param=param)
        try:
            return cls(schema, instance(schema), tool, named)
        except (TypeError, ValueError, AttributeError, LookupError, ArithmeticError) as exc:
            raise BadRequest(f"{param}: invalid JSON schema ({exc})", param=param) from None


@dataclass(frozen=True)
class SimCall:
    """One parsed request, in the terms every format shares."""

    model: str
    prompt_tokens: int
    last_text: str
    max_tokens: int | None
    structured: Structured | None = None
    embedding: EmbeddingCall | None = None
    logprobs: bool = False
    stream: bool = False  # answer as server-sent events
    stream_usage: bool = False  # OpenAI's stream_options.include_usage (Anthropic streams always carry usage)


@dataclass(frozen=True)
class EmbeddingCall:
    """What an embeddings call asks for: its texts, a vector length (the profile's when
    None) and whether the vectors go back as base64 float32 (the OpenAI SDKs' default)."""

    texts: tuple[str, ...]
    dimensions: int | None = None
    base64: bool = False


@dataclass(frozen=True)
class Answer:
    """What the model says. ``text`` is what a text channel carries; ``document`` is the
    parsed value when ``text`` is exact JSON (``exact``), which a tool-use block needs;
    ``vectors`` answer an embeddings call, one per input."""

    text: str
    tokens: int
    cut: bool
    document: Any = None
    exact: bool = False
    tool: str | None = None
    fault: Fault | None = None
    vectors: tuple[list[float], ...] = ()
    confidence: float = 0.0


@dataclass(frozen=True)
class StreamEvents:
    """A streamed answer's encoded events: ``head`` up to and including the first
    content token, ``tail`` the rest. The simulator sends the head after the profile's
    share of the latency (``first_token_share``) and the tail at its end, so a client
    measures a time to first token shorter than the call."""

    head: list[bytes]
    tail: list[bytes]


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: ``data`` as compact JSON (a string as it is), named when
    the format names its events (Anthropic's), as the real APIs send them."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + b"data: " + payload.encode() + b"\n\n"


def pieces(text: str) -> list[str]:
    """``text`` in the pieces a stream delivers: about a token (``CHARS_PER_TOKEN``
    characters) each, as ``token_logprobs`` cuts them; one empty piece for no text."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)] or [""]


class BadRequest(Exception):
    """A request the real API would refuse: answered 400 (or 401) in the format's shape."""

    def __init__(self, message: str, *, param: str | None = None, failure: Failure = Failure.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.message, self.param, self.failure = message, param, failure


class WireFormat(Protocol):
    """One provider's wire format: parsing its requests, rendering answers and errors."""

    name: str
    batched: bool  # a call may serve several requests: its X-Client-Request-Id is a comma-separated list

    def parse(self, raw: bytes, headers: Mapping[str, str]) -> SimCall:
        """The call in the request body ``raw``; raise ``BadRequest``."""

    def render(self, call: SimCall, answer: Answer) -> dict[str, Any]:
        """The 200 body."""

    def render_stream(self, call: SimCall, answer: Answer) -> StreamEvents:
        """The same answer as the format's server-sent events."""

    def error(self, failure: Failure, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
        """The status and body of an error answer."""


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of blocks
    (OpenAI content parts and Anthropic content blocks alike)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def prompt_tokens(texts: list[str], turns: int) -> int:
    """About four characters per token, plus a few per turn for the chat template."""
    return max(1, round(sum(len(t) for t in texts) / CHARS_PER_TOKEN)) + 4 * turns


def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``messages`` array, checked the way both APIs check it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages must be a non-empty array of objects", param="messages")
    return messages


def request_body(raw: bytes) -> tuple[dict[str, Any], str]:
    """The decoded body and its ``model``, checked the way both APIs check them."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", param="model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("stream: Input should be a valid boolean", param="stream")
    return body, model


def compose_answer(call: SimCall, profile: SimulatorProfile, plan: CallPlan) -> Answer:
    """The answer for ``call``: prose of the profile's length, or for structured output a
    document valid against the schema, broken when the plan asks for an output fault;
    then cut to ``max_tokens`` (``cut``) like a provider cuts a long answer. An
    embeddings call gets one deterministic unit vector per input."""
    if call.embedding is not None:
        dimensions = call.embedding.dimensions or profile.embedding_dim
        return Answer(text="", tokens=0, cut=False, vectors=tuple(unit_vector(text, dimensions) for text in call.embedding.texts))
    if call.structured is None:
        tokens = min(profile.output_tokens, call.max_tokens) if call.max_tokens else profile.output_tokens
        return Answer(text=_prose(call, tokens), tokens=tokens, cut=tokens < profile.output_tokens, confidence=_confidence(plan))
    schema, document, fault = call.structured.schema, call.structured.document, None
    if plan.output_fault is Fault.SCHEMA_VIOLATION and (broken := violate(schema, document)) is not None:
        document, fault = broken, Fault.SCHEMA_VIOLATION
    text, exact = json.dumps(document, ensure_ascii=False), True
    if plan.output_fault is Fault.NEAR_JSON and plan.near_json_style and (near := near_json(document, plan.near_json_style)):
        text, exact, fault = near, False, Fault.NEAR_JSON
    tokens = max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
    cut = bool(call.max_tokens and call.max_tokens < tokens)
    if cut:
        text, tokens, exact = text[: call.max_tokens * CHARS_PER_TOKEN], call.max_tokens, False
    return Answer(text=text, tokens=tokens, cut=cut, document=document, exact=exact, tool=call.structured.tool, fault=fault, confidence=_confidence(plan))


SURE, UNSURE = 0.9, 0.3
"""The mean token probability of an ordinary answer and of an unsure one (``unsure`` in
the call's plan): far enough apart that a threshold between them tells them apart."""


def _confidence(plan: CallPlan) -> float:
    return UNSURE if plan.unsure else SURE


def token_logprobs(answer: Answer) -> list[tuple[str, float]]:
    """The answer's tokens (about ``CHARS_PER_TOKEN`` characters each, as its usage counts
    them) with their log-probabilities: all ``log(confidence)``, so that whatever way a
    client averages them it reads the answer's confidence back."""
    logprob = math.log(answer.confidence)
    return [(piece, logprob) for piece in pieces(answer.text)]


def _prose(call: SimCall, tokens: int) -> str:
    last = call.last_text[:60].replace("\n", " ")
    words = [_WORDS[i % len(_WORDS)] for i in range(max(0, tokens - 12))]
    return f"[{call.model}] answer to: {last} — {' '.join(words)}"


def unit_vector(text: str, dimensions: int) -> list[float]:
    """A vector of length 1 seeded by the text's SHA-256: the same text always embeds the
    same way, in every process, and different texts point in unrelated directions."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
