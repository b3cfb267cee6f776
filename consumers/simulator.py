"""A simulated model backend for demos, load tests and fault tests.

It speaks two wire formats, OpenAI chat completions (``POST /v1/chat/completions``,
``GET /v1/models``) with embeddings (``POST /v1/embeddings``: one deterministic unit
vector per input, the same text always giving the same vector) and Anthropic Messages
(``POST /v1/messages``), with one profile
per served model (``SimulatorSettings``) deciding latency and faults the same way for
both: hangs past the client's timeout, 429s with ``Retry-After``, independent 500s,
deployment-wide bursts of 5xx, bodies cut mid-JSON or replaced by an HTML page, and for
structured-output requests answers that validate against the request's schema, break
it, or come as near-JSON. A chat call with ``stream: true`` gets the same answer as the
format's server-sent events: its first token after ``first_token_share`` of the call's
latency and the rest at its end; a truncated body becomes a stream that stops half-way
without the format's last event, a malformed one an HTML page. Routing, retries,
fallback, validation and cost accounting thus meet the shapes and failures a real
provider sends. ``GET /health`` counts what it did.

``GET /calls`` lists the calls that named their Turnout request in an
``X-Client-Request-Id`` header, oldest first: ``{"calls": [{"request_id", "model",
"at"}, ...], "dropped": n}``, ``at`` the arrival time (``time.time()``, seconds) and
``model`` the served model (``null`` for a body that could not be read). It keeps the
last 200,000 entries, the oldest dropped (counted in ``dropped``; ``sim_stats.CallLog``).
An embeddings call's header may name several requests, comma-separated: each gets an
entry. A crash test reads it to prove that a request answered once was not called again.

This module wires HTTP to the parts: ``sim_faults`` decides, ``sim_wire`` composes
the answer, ``sim_openai``/``sim_anthropic`` translate it, ``sim_stats`` counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

from aiohttp import web

from turnout.schemas.settings import SimulatorProfile, SimulatorSettings

from .backend import CLIENT_REQUEST_ID  # the Turnout request(s) a call serves, as the backends send it
from .sim_anthropic import AnthropicMessages
from .sim_faults import CallPlan, Failure, Fault, FaultPlanner
from .sim_openai import OpenAIChat, OpenAIEmbeddings
from .sim_stats import CallLog, SimStats
from .sim_wire import BadRequest, SimCall, WireFormat, compose_answer

__all__ = ["CLIENT_REQUEST_ID", "Simulator", "run_simulator"]


# what a proxy in front of a deployment answers when it has no JSON to give
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.planner = FaultPlanner(self.rng)
        self.stats = SimStats()
        self.call_log = CallLog()
        self._closing = asyncio.Event()

    @property
    def calls(self) -> int:
        """Calls received, in every format, valid or not."""
        return self.stats.calls

    def app(self) -> web.Application:
        app = web.Application()
        for path, wire in (("/v1/chat/completions", OpenAIChat()), ("/v1/embeddings", OpenAIEmbeddings()), ("/v1/messages", AnthropicMessages())):
            app.router.add_post(path, self._endpoint(wire))
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/calls", self.calls_made)
        app.on_startup.append(self._opened)
        app.on_shutdown.append(self._closed)
        return app

    async def _opened(self, _: web.Application) -> None:
        self._closing.clear()

    async def _closed(self, _: web.Application) -> None:
        """Wake the calls still waiting (a hang may be a minute long) so that shutdown is prompt."""
        self._closing.set()

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def calls_made(self, _: web.Request) -> web.Response:
        """``{"calls": [{"request_id", "model", "at"}, ...], "dropped": n}``, oldest first
        (see ``CallLog``)."""
        return web.json_response(self.call_log.snapshot())

    async def models(self, _: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "turnout-simulator"} for name in sorted(self.settings.profiles)]
        return web.json_response({"object": "list", "data": data})

    def _endpoint(self, wire: WireFormat) -> Any:
        async def handle(request: web.Request) -> web.Response:
            return await self.serve(wire, request)

        return handle

    async def serve(self, wire: WireFormat, request: web.Request) -> web.Response:
        """One call in ``wire``'s format: log, parse, plan the faults, wait, answer."""
        arrived = time.time()
        self.stats.call(wire.name)
        try:
            call = wire.parse(await request.read(), request.headers)
        except BadRequest as exc:
            self.stats.invalid()
            self._log(wire, request, None, arrived)
            return _send(*wire.error(exc.failure, exc.message, exc.param))
        self._log(wire, request, call.model, arrived)
        if call.embedding is not None:
            self.stats.embedded(len(call.embedding.texts))
        profile = self.settings.profile(call.model)
        plan = self.planner.plan(call.model, profile, structured=call.structured is not None)
        self.stats.planned(call.model, plan)
        if call.stream and plan.failure is None and plan.body_fault is not Fault.MALFORMED:
            return await self._stream(wire, call, profile, plan, request)
        await self._wait(plan.delay_s)
        if plan.failure is not None:
            return _failure(wire, plan.failure, call.model, profile)
        answer = compose_answer(call, profile, plan)
        if answer.fault is not None:
            self.stats.fault(call.model, answer.fault)
        return _send(200, wire.render(call, answer), body_fault=plan.body_fault)

    def _log(self, wire: WireFormat, request: web.Request, served_model: str | None, arrived: float) -> None:
        """The call in ``call_log`` when it names its request(s); a batched format's header
        is a comma-separated list, as are several headers of the name."""
        values: list[str] = request.headers.getall(CLIENT_REQUEST_ID, [])
        if values and wire.batched:
            values = [part.strip() for value in values for part in value.split(",") if part.strip()]
        if values:
            self.call_log.record(values, served_model, arrived)

    async def _stream(self, wire: WireFormat, call: SimCall, profile: SimulatorProfile, plan: CallPlan, request: web.Request) -> web.StreamResponse:
        """The answer as events: the head (to the first token) after ``first_token_share``
        of the delay, the tail after the rest. A hung call is silent for all of its delay
        first, as a hung server sends nothing at all. A truncated stream ends half-way."""
        answer = compose_answer(call, profile, plan)
        if answer.fault is not None:
            self.stats.fault(call.model, answer.fault)
        events = wire.render_stream(call, answer)
        first_s = plan.delay_s if Fault.TIMEOUT in plan.faults else plan.delay_s * profile.first_token_share
        await self._wait(first_s)
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # a client that gave up (its timeout) mid-stream
            await response.write(b"".join(events.head))
            await self._wait(plan.delay_s - first_s)
            tail = events.tail[: len(events.tail) // 2] if plan.body_fault is Fault.TRUNCATED else events.tail
            await response.write(b"".join(tail))
            await response.write_eof()
        return response

    async def _wait(self, delay_s: float) -> None:
        if delay_s > 0 and not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay_s)


def _failure(wire: WireFormat, failure: Failure, model: str, profile: SimulatorProfile) -> web.Response:
    if failure is not Failure.RATE_LIMITED:
        return _send(*wire.error(failure, ""))
    retry = f"{profile.retry_after_s:g}"
    status, body = wire.error(failure, f"Rate limit reached for {model}; retry after {retry}s")
    # both, as OpenAI sends them: seconds (fractional when the profile's are, which the
    # SDKs accept) and milliseconds, which the SDKs read first
    headers = {"retry-after": retry, "retry-after-ms": f"{round(profile.retry_after_s * 1000)}"}
    return _send(status, body, headers=headers)


def _send(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None, body_fault: Fault | None = None) -> web.Response:
    """A JSON response, or its faulty variants: cut in half (the Content-Length is that of
    the bytes actually sent, so the client reads a short JSON document rather than waiting
    for bytes that never come) or replaced by an HTML page."""
    if body_fault is Fault.MALFORMED:
        return web.Response(status=status, body=_HTML_PAGE, content_type="text/html", headers=headers)
    data = json.dumps(payload, ensure_ascii=False).encode()
    if body_fault is Fault.TRUNCATED:
        data = data[: len(data) // 2]
    return web.Response(status=status, body=data, content_type="application/json", headers=headers)


def run_simulator(settings: SimulatorSettings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    web.run_app(Simulator(settings).app(), host=host or settings.host, port=port if port is not None else settings.port, print=None, access_log=None)
