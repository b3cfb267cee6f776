"""Helpers shared by the settings, serde, models, routing, handling, flow and layout unit tests.

Plain functions and small classes (no conftest): test modules import them directly
(``from factories import ...``). Nothing here touches the network: the schema registry
is an ``httpx.MockTransport``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from fastavro import schemaless_writer

import turnout
from turnout.schemas.catalog import schema_fingerprint
from turnout.schemas.models import (
    Attempt,
    ChatMessage,
    ErrorInfo,
    InferenceRequest,
    InferenceResponse,
    PlanStep,
    RoutedRequest,
    RoutingDecision,
    RoutingEvent,
    RoutingMeta,
    Signals,
    Usage,
)
from turnout.schemas.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEV_TOML = Path(turnout.__file__).with_name("defaults") / "dev.toml"
AVRO_DIR = REPO / "schemas" / "avro"
ARCHITECTURE_FOLDERS = ("schemas", "streams", "consumers", "producers", "analytics", "gateway")

# The least a configuration file needs: one simulated model, one route to it.
MINIMAL_TOML = """
[fleet.small]
provider = "simulated"
served_model = "sim-small"

[[routes]]
model = "small"
"""

# A fixed, millisecond-precise instant: what Avro timestamp-millis round-trips exactly.
T0 = datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=timezone.utc)


# -- environment -----------------------------------------------------------------------
@contextlib.contextmanager
def clean_turnout_env() -> Iterator[None]:
    """No ambient ``TURNOUT_*`` variable may leak into a Settings built by a test."""
    kept = {k: v for k, v in os.environ.items() if not k.upper().startswith("TURNOUT_")}
    with mock.patch.dict(os.environ, kept, clear=True):
        yield


# -- settings --------------------------------------------------------------------------
def deployment(served_model: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"provider": "simulated", "served_model": served_model or "sim", **kw}


DEFAULT_FLEET = {"small": deployment("sim-small"), "medium": deployment("sim-medium"), "large": deployment("sim-large")}
DEFAULT_ROUTES = [
    {"name": "code", "match": {"task_type": ["code-generation", "code-review"]}, "model": "medium", "fallback": ["large"]},
    {"name": "default", "model": "small", "fallback": ["medium"]},
]


def make_settings(
    routes: list[dict[str, Any]] | None = None, fleet: dict[str, dict[str, Any]] | None = None, **sections: Any
) -> Settings:
    """Settings from plain dicts, built with no TOML file and no ``TURNOUT_*`` variables."""
    with clean_turnout_env():
        return Settings(
            fleet=DEFAULT_FLEET if fleet is None else fleet,
            routes=DEFAULT_ROUTES if routes is None else routes,
            **sections,
        )


# -- records ---------------------------------------------------------------------------
def user(content: str) -> ChatMessage:
    return ChatMessage(role="user", content=content)


def system(content: str) -> ChatMessage:
    return ChatMessage(role="system", content=content)


def make_request(content: str | None = "What is the capital of France?", **kw: Any) -> InferenceRequest:
    fields: dict[str, Any] = {"id": "req-1", "tenant": "acme", "created_at": T0}
    if content is not None:
        fields["messages"] = [user(content)]
    fields.update(kw)
    return InferenceRequest(**fields)


def full_request() -> InferenceRequest:
    """Every optional field set, so a round trip exercises every branch of every union."""
    return InferenceRequest(
        id="req-full",
        tenant="acme",
        messages=[
            ChatMessage(role="system", content="You are terse."),
            ChatMessage(role="user", content="Summarize: ünïcödé ✓", name="alice"),
            ChatMessage(role="assistant", content="ok"),
            ChatMessage(role="tool", content="{}", name="lookup"),
        ],
        tools='[{"type": "function", "function": {"name": "lookup"}}]',
        response_schema='{"type": "object"}',
        max_tokens=256,
        stop=["\n\n", "END"],
        temperature=0.25,
        metadata={"team": "search", "priority": "high"},
        created_at=T0,
        deadline=T0 + timedelta(seconds=90),
        reply_topic="acme.replies",
        model="medium",
    )


def signals() -> Signals:
    return Signals(
        task_type="summarization",
        task_confidence=0.75,
        task_method="keywords-v1",
        input_tokens=123,
        token_method="estimate:chars/4",
        turns=2,
    )


def full_routed() -> RoutedRequest:
    return RoutedRequest(
        request=full_request(),
        decision=RoutingDecision(route="long-summaries", model="medium", reason="rule matched", signals=signals()),
        plan=[PlanStep(model="medium", role="primary"), PlanStep(model="small", role="fallback"), PlanStep(model="large", role="escalation")],
        step=1,
        attempts=[
            Attempt(
                model="medium",
                provider="simulated",
                started_at=T0 + timedelta(milliseconds=5),
                latency_ms=12.5,
                status="error",
                error=ErrorInfo(code="rate_limited", message="429", retryable=True, details={"retry_after": "0.1"}),
            ),
            Attempt(model="small", provider="simulated", started_at=T0 + timedelta(milliseconds=40), latency_ms=3.0, status="ok", ttft_ms=1.25),
        ],
        policy_version="dev-1",
        routed_at=T0 + timedelta(milliseconds=1),
    )


def full_response() -> InferenceResponse:
    return InferenceResponse(
        id="req-full",
        tenant="acme",
        status="ok",
        model="small",
        provider="simulated",
        content="Short answer.",
        finish_reason="stop",
        error=ErrorInfo(code="validation_failed", message="first try", details={"k": "v"}),
        usage=Usage(input_tokens=120, output_tokens=8),
        cost_usd=0.0000228,
        created_at=T0 + timedelta(seconds=1),
        latency_ms=1000.0,
        backend_latency_ms=3.0,
        ttft_ms=1.25,
        routing=RoutingMeta(
            route="long-summaries",
            selected_model="medium",
            task_type="summarization",
            fallback_path=["medium", "small"],
            policy_version="dev-1",
            validation="passed",
        ),
    )


def full_event() -> RoutingEvent:
    return RoutingEvent(
        event_id=RoutingEvent.make_id("req-full", "attempt", 2),
        request_id="req-full",
        tenant="acme",
        kind="attempt",
        ts=T0,
        route="long-summaries",
        model="small",
        provider="simulated",
        policy_version="dev-1",
        task_type="summarization",
        status="ok",
        error_kind="",
        input_tokens=120,
        output_tokens=8,
        cost_usd=0.5,
        latency_ms=3.0,
        attempt=2,
        fallback_depth=1,
        detail="fine",
        region="eu-west-1",
        ttft_ms=1.25,
    )


# -- Avro framing ----------------------------------------------------------------------
_CRC64_EMPTY = 0xC15D213AA4D7A795
_CRC64_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_CRC64_EMPTY & -(_fp & 1))
    _CRC64_TABLE.append(_fp)


def crc64_avro(data: bytes) -> bytes:
    """The Avro specification's 64-bit Rabin fingerprint, little-endian as the
    single-object encoding carries it; written from the spec, not taken from fastavro."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def avro_body(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()


def single_object(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """``datum`` written with ``schema`` and framed as an Avro single object."""
    return b"\xc3\x01" + schema_fingerprint(schema) + avro_body(schema, datum)


# -- a Confluent Schema Registry in memory ----------------------------------------------
class MockRegistry:
    """The two REST endpoints ``ConfluentRegistryClient`` calls, over ``httpx.MockTransport``."""

    URL = "http://registry.test:8081"

    def __init__(self, first_id: int = 1) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.calls: list[httpx.Request] = []
        self.fail_with: int | None = None
        self._next = first_id
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"error_code": self.fail_with * 100, "message": "boom"})
        path = request.url.path
        if request.method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
            text = json.loads(request.content)["schema"]
            for existing_id, existing in self.schemas.items():  # a registry reuses the id of an identical schema
                if existing == text:
                    schema_id = existing_id
                    break
            else:
                schema_id, self._next = self._next, self._next + 1
                self.schemas[schema_id] = text
            self.subjects.setdefault(m[1], []).append(schema_id)
            return httpx.Response(200, json={"id": schema_id})
        if request.method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)):
            if int(m[1]) in self.schemas:
                return httpx.Response(200, json={"schema": self.schemas[int(m[1])]})
            return httpx.Response(404, json={"error_code": 40403, "message": "Schema not found"})
        return httpx.Response(404, json={"error_code": 404, "message": f"no route {request.method} {path}"})

    def requests(self, method: str) -> list[httpx.Request]:
        return [r for r in self.calls if r.method == method]

    def client(self):
        from turnout.schemas.registry import ConfluentRegistryClient

        return ConfluentRegistryClient(self.URL, transport=self.transport)
