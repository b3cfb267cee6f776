"""Helpers shared by the backend, serving, simulator and worker-dedup unit tests.

Plain functions and small classes (no conftest): the test modules import them
directly. Everything here is loopback or in-memory (``httpx.MockTransport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from pydantic import SecretStr, TypeAdapter

from turnout.consumers.backend import BackendError, ChatBackend, Completion, OpenAIChatBackend
from turnout.consumers.serving import Deployment, Publish
from turnout.consumers.simulator import Simulator
from turnout.schemas.models import (
    ChatMessage,
    InferenceRequest,
    PlanStep,
    RoutedRequest,
    RoutingDecision,
    Signals,
)
from turnout.schemas.settings import ModelDeployment, SimulatorSettings, WorkerSettings
from turnout.schemas.topics import Topics

BASE_URL = "http://backend.test/v1"
PREFIX = "tt"
TOPICS = Topics(PREFIX)
SECRET = "sk-test-0123456789abcdef-SECRET"


# -- records ---------------------------------------------------------------------------
def make_request(**overrides: Any) -> InferenceRequest:
    fields: dict[str, Any] = {
        "id": "req-1",
        "tenant": "acme",
        "messages": [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hello there")],
    }
    fields.update(overrides)
    return InferenceRequest(**fields)


def make_slip(
    request: InferenceRequest | None = None,
    plan: tuple[str, ...] = ("a", "b"),
    step: int = 0,
    **overrides: Any,
) -> RoutedRequest:
    roles = ["primary"] + ["fallback"] * (len(plan) - 1)
    fields: dict[str, Any] = {
        "request": request or make_request(),
        "decision": RoutingDecision(
            route="default",
            model=plan[0],
            reason="catch-all",
            signals=Signals(task_type="chat", task_confidence=0.9, task_method="rules", input_tokens=7, token_method="chars", turns=1),
        ),
        "plan": [PlanStep(model=m, role=r) for m, r in zip(plan, roles)],
        "step": step,
        "policy_version": "v-test",
    }
    fields.update(overrides)
    return RoutedRequest(**fields)


# -- wire bodies -----------------------------------------------------------------------
def completion_body(
    content: str = "hi there",
    *,
    prompt_tokens: int = 11,
    completion_tokens: int = 3,
    finish_reason: str = "stop",
    model: str = "served-a",
    token_probability: float | None = None,
) -> dict[str, Any]:
    """An OpenAI chat completion; with ``token_probability``, its ``logprobs`` give every
    token (a word of ``content``) that probability."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
    if token_probability is not None:
        tokens = [{"token": w, "logprob": math.log(token_probability), "bytes": list(w.encode()), "top_logprobs": []} for w in content.split()]
        choice["logprobs"] = {"content": tokens, "refusal": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def error_body(message: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_message(
    content: list[dict[str, Any]] | None = None,
    *,
    stop_reason: str | None = "end_turn",
    input_tokens: int = 12,
    output_tokens: int = 6,
    cache_creation_input_tokens: int | None = 0,
    cache_read_input_tokens: int | None = 0,
) -> dict[str, Any]:
    """A Messages API response as Anthropic sends it, checked against the SDK's own type."""
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}] if content is None else content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
        },
    }
    anthropic.types.Message.model_validate(body)
    return body


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    anthropic.types.ErrorResponse.model_validate(body)
    return body


def gemini_response(
    parts: list[dict[str, Any]] | None = None,
    *,
    finish_reason: str | None = "STOP",
    prompt_tokens: int = 8,
    candidates_tokens: int | None = 2,
    thoughts_tokens: int | None = None,
    avg_logprobs: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A generateContent response as the Gemini API sends it (camelCase JSON), checked
    against the google-genai SDK's type, which forbids unknown fields."""
    candidate: dict[str, Any] = {"content": {"parts": [{"text": "Hello!"}] if parts is None else parts, "role": "model"}, "index": 0}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    if avg_logprobs is not None:
        candidate["avgLogprobs"] = avg_logprobs
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}
    if candidates_tokens is not None:
        usage["candidatesTokenCount"] = candidates_tokens
    if thoughts_tokens is not None:
        usage["thoughtsTokenCount"] = thoughts_tokens
    usage["totalTokenCount"] = prompt_tokens + (candidates_tokens or 0) + (thoughts_tokens or 0)
    body = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "mH1SaOqXLdmZz7IPnY6xsAI", **extra}
    genai_types.GenerateContentResponse.model_validate(body)
    return body


_ANTHROPIC_REQUEST = TypeAdapter(anthropic.types.message_create_params.MessageCreateParamsNonStreaming)


def anthropic_request_checked(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a Messages request body with the SDK's ``MessageCreateParams``. Its lists are
    ``Iterable`` and validated lazily, so the result is walked to have every item checked."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, Iterator)):
            return [walk(v) for v in value]
        return value

    walk(_ANTHROPIC_REQUEST.validate_python(body))
    return body


def gemini_request_checked(body: dict[str, Any]) -> dict[str, Any]:
    """Every piece of a generateContent body through the SDK type that describes it (each forbids unknown fields)."""
    assert set(body) <= {"contents", "systemInstruction", "generationConfig", "tools"}
    for content in [*body["contents"], *([body["systemInstruction"]] if "systemInstruction" in body else [])]:
        genai_types.Content.model_validate(content)
    if "generationConfig" in body:
        genai_types.GenerationConfig.model_validate(body["generationConfig"])
    for tool in body.get("tools", []):
        genai_types.Tool.model_validate(tool)
    return body


def google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Google API error body; the SDK's ``APIError`` reads the same fields back."""
    body = {"error": {"code": code, "message": message, "status": status, **({"details": details} if details else {})}}
    parsed = genai_errors.APIError(code, body)
    assert (parsed.status, parsed.message) == (status, message)
    return body


def reply(body: Any, code: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, json=body, headers=headers)


def ok(**kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=completion_body(**kwargs))


def status(code: int, message: str = "nope", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, json=error_body(message), headers=headers)


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler that plays ``replies`` in order (the last one repeats).

    A reply is a response, an exception to raise (``httpx.ReadTimeout`` …) or a callable
    of the request. ``yields=True`` makes each call suspend once, as network I/O does. Every request is recorded, with its JSON body, in ``requests``/``bodies``.
    """

    def __init__(self, *replies: Reply, yields: bool = False) -> None:
        if not replies:
            raise ValueError("a script needs at least one reply")
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.call_times: list[float] = []
        self.yields = yields

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.call_times.append(time.monotonic())
        try:
            self.bodies.append(json.loads(request.content))
        except ValueError:
            self.bodies.append({})
        reply = self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]
        if isinstance(reply, Exception):
            if isinstance(reply, httpx.RequestError):
                reply = type(reply)(str(reply), request=request)
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        # a fresh copy each time: a Response's stream can only be read once
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    def transport(self) -> httpx.MockTransport:
        if not self.yields:
            return httpx.MockTransport(self)

        async def handler(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0)  # suspend like real network I/O, so concurrent calls interleave
            return self(request)

        return httpx.MockTransport(handler)


def make_backend(script: Script, *, served_model: str = "served-a", api_key: str | None = None, base_url: str = BASE_URL, provider: str = "test-provider") -> OpenAIChatBackend:
    return OpenAIChatBackend(
        base_url,
        served_model,
        provider=provider,
        api_key=SecretStr(api_key) if api_key is not None else None,
        transport=script.transport(),
    )


async def complete_once(backend: ChatBackend, request: InferenceRequest | None = None) -> Completion:
    """One call on a fresh backend, closed afterwards."""
    try:
        return await backend.complete(request or make_request())
    finally:
        await backend.aclose()


async def fail_once(backend: ChatBackend, request: InferenceRequest | None = None) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await complete_once(backend, request)
    return caught.value


def make_config(**overrides: Any) -> ModelDeployment:
    fields: dict[str, Any] = {
        "provider": "test-provider",
        "base_url": BASE_URL,
        "served_model": "served-a",
        "max_retries": 2,
        "price_input_per_mtok": 3.0,
        "price_output_per_mtok": 15.0,
    }
    fields.update(overrides)
    return ModelDeployment(**fields)


def make_deployment(script: Script, model_id: str = "a", **config: Any) -> Deployment:
    cfg = make_config(**config)
    backend = make_backend(script, served_model=cfg.served_model, provider=cfg.provider)
    return Deployment(model_id, cfg, backend, asyncio.Semaphore(cfg.concurrency))


def fast_worker_settings(**overrides: Any) -> WorkerSettings:
    return WorkerSettings(**{"backoff_base_s": 0.001, "backoff_max_s": 0.01, **overrides})


def on_topic(messages: list[Publish], topic: str) -> list[Publish]:
    return [m for m in messages if m.topic == topic]


def events_of(messages: list[Publish], kind: str, topics: Topics = TOPICS) -> list[Any]:
    return [m.record for m in on_topic(messages, topics.events) if m.record.kind == kind]


def past(seconds: float = 60.0) -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=seconds)


def future(seconds: float = 60.0) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


# -- settings file ---------------------------------------------------------------------
SETTINGS_TOML = f"""
[kafka]
topic_prefix = "{PREFIX}"

[fleet.a]
provider = "simulated"
served_model = "served-a"
max_retries = 1
price_input_per_mtok = 3.0
price_output_per_mtok = 15.0

[fleet.b]
base_url = "http://127.0.0.1:9/v1"
served_model = "served-b"

[[routes]]
model = "a"
fallback = ["b"]

[worker]
backoff_base_s = 0.001
backoff_max_s = 0.01
dedup_capacity = 100
"""


def write_settings(tmp_path: Path, text: str = SETTINGS_TOML) -> Path:
    path = tmp_path / "turnout.toml"
    path.write_text(text)
    return path


# -- a record as aiokafka hands it over --------------------------------------------------
@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# -- the simulator on a real loopback port -------------------------------------------------
@contextlib.asynccontextmanager
async def running_simulator(settings: SimulatorSettings) -> AsyncIterator[tuple[Simulator, int]]:
    simulator = Simulator(settings)
    runner = web.AppRunner(simulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield simulator, port
    finally:
        await runner.cleanup()
