"""Helpers shared by the backend, serving, simulator and worker-dedup unit tests.

Plain functions and small classes (no conftest): the test modules import them
directly. Everything here is loopback or in-memory (``httpx.MockTransport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from pydantic import SecretStr

from turnout.consumers.backend import OpenAIChatBackend
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
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def error_body(message: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


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
