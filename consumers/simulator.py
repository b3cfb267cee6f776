"""A simulated OpenAI-compatible backend for demos, load tests and fault tests.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models`` in the OpenAI wire format,
with a latency, an error rate and a 429 rate (with ``Retry-After``) chosen per served
model by ``SimulatorSettings``, and honest token usage, so that routing, retries, fallback
and cost accounting meet the same shapes a real provider sends.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from aiohttp import web

from turnout.schemas.settings import SimulatorProfile, SimulatorSettings

CHARS_PER_TOKEN = 4
_WORDS = "the router moves each prompt onto the track that serves it best under the policies in force".split()


def _error(status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return max(1, round(chars / CHARS_PER_TOKEN)) + 4 * len(messages)


def _answer(model: str, messages: list[dict[str, Any]], tokens: int) -> str:
    last = str(messages[-1].get("content") or "")[:60].replace("\n", " ")
    words = [_WORDS[i % len(_WORDS)] for i in range(max(0, tokens - 12))]
    return f"[{model}] answer to: {last} — {' '.join(words)}"


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "calls": self.calls})

    async def models(self, _: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "turnout-simulator"} for name in sorted(self.settings.profiles)]
        return web.json_response({"object": "list", "data": data})

    async def chat_completions(self, request: web.Request) -> web.Response:
        self.calls += 1
        try:
            body = await request.json()
            model, messages = str(body["model"]), body["messages"]
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                raise ValueError("messages must be a non-empty array of objects")
        except Exception as exc:
            return _error(400, f"invalid request body: {exc}", "invalid_request_error", "invalid_request")
        profile = self.settings.profile(model)
        await asyncio.sleep(self._latency_s(profile))
        roll = self.rng.random()
        if roll < profile.rate_limit_rate:
            retry = f"{profile.retry_after_s:g}"
            return _error(429, f"Rate limit reached for {model}; retry after {retry}s", "requests", "rate_limit_exceeded", {"Retry-After": retry})
        if roll < profile.rate_limit_rate + profile.error_rate:
            return _error(500, "The server had an error while processing your request.", "server_error", "internal_error")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))  # the current name first
        return web.json_response(self._completion(model, messages, profile, limit))

    def _latency_s(self, profile: SimulatorProfile) -> float:
        return max(0.0, self.rng.gauss(profile.latency_ms, profile.latency_jitter_ms)) / 1000

    def _completion(self, model: str, messages: list[dict[str, Any]], profile: SimulatorProfile, max_tokens: int | None) -> dict[str, Any]:
        limit = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        completion_tokens = min(profile.output_tokens, limit) if limit else profile.output_tokens
        prompt_tokens = _prompt_tokens(messages)
        content = _answer(model, messages, completion_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "turnout-simulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length" if limit and limit < profile.output_tokens else "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }


def run_simulator(settings: SimulatorSettings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    web.run_app(Simulator(settings).app(), host=host or settings.host, port=port if port is not None else settings.port, print=None, access_log=None)
