"""make_backend: the adapter a deployment's ``api`` names, with its key, timeout and pool;
and, through it, the error classification every wire format shares (one implementation
in ``HttpChatBackend``, checked here once for all three formats)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import types as genai_types
from pydantic import SecretStr

from backend_fixtures import (
    SECRET,
    Script,
    anthropic_error,
    anthropic_message,
    anthropic_request_checked,
    completion_body,
    complete_once,
    error_body,
    fail_once,
    gemini_request_checked,
    gemini_response,
    google_error,
    make_config,
    make_request,
    reply,
)
from turnout.consumers.anthropic_backend import AnthropicMessagesBackend
from turnout.consumers.backend import ChatBackend, OpenAIChatBackend
from turnout.consumers.backends import make_backend
from turnout.consumers.credentials import CredentialError
from turnout.consumers.gemini_backend import GeminiBackend

ENV = {"PROVIDER_KEY": SECRET}


@dataclass(frozen=True)
class Wire:
    """One wire format as a test needs it: a good answer, an error body, where the key goes."""

    api: str
    adapter: type
    base_url: str
    answer: dict[str, Any]
    error: Callable[[int, str], Any]
    key_header: str
    key_value: str
    malformed: dict[str, Any]  # 200 bodies that look like this format but are not a usable answer


WIRES = [
    Wire(
        api="openai",
        adapter=OpenAIChatBackend,
        base_url="https://api.openai.com/v1",
        answer=completion_body("Hello!"),
        error=lambda code, message: error_body(message),
        key_header="authorization",
        key_value=f"Bearer {SECRET}",
        malformed={"models-list": {"object": "list", "data": []}, "no-choices": {"choices": []}},
    ),
    Wire(
        api="anthropic",
        adapter=AnthropicMessagesBackend,
        base_url="https://api.anthropic.com/v1",
        answer=anthropic_message(),
        error=lambda code, message: anthropic_error("api_error" if code >= 500 else "invalid_request_error", message),
        key_header="x-api-key",
        key_value=SECRET,
        malformed={
            "content-string": {**anthropic_message(), "content": "Hello!"},
            "block-without-type": {**anthropic_message(), "content": [{"text": "no type"}]},
            "block-string": {**anthropic_message(), "content": ["Hello!"]},
            "text-list": {**anthropic_message(), "content": [{"type": "text", "text": ["Hello!"]}]},
            "string-count": {**anthropic_message(), "usage": {"input_tokens": "12", "output_tokens": 6}},
        },
    ),
    Wire(
        api="gemini",
        adapter=GeminiBackend,
        base_url="https://generativelanguage.googleapis.com/v1beta",
        answer=gemini_response(),
        error=lambda code, message: google_error(code, "UNAVAILABLE" if code >= 500 else "INVALID_ARGUMENT", message),
        key_header="x-goog-api-key",
        key_value=SECRET,
        malformed={
            "no-candidates": {"candidates": []},
            "candidates-object": {**gemini_response(), "candidates": {"content": {}}},
            "number-text": {**gemini_response(), "candidates": [{"content": {"parts": [{"text": 42}]}}]},
            "string-count": {**gemini_response(), "usageMetadata": {"promptTokenCount": "8"}},
        },
    ),
]
each_wire = pytest.mark.parametrize("wire", WIRES, ids=[w.api for w in WIRES])


def build(wire: Wire, script: Script | None = None, **config: Any) -> ChatBackend:
    deployment = make_config(api=wire.api, provider=f"{wire.api}-prod", base_url=wire.base_url, **{"api_key_env": "PROVIDER_KEY", **config})
    return make_backend("m", deployment, wire.base_url, environ=ENV, transport=script.transport() if script else None)


# -- the factory -------------------------------------------------------------------------
@each_wire
async def test_the_api_picks_the_adapter_and_the_key_goes_in_its_header(wire):
    script = Script(reply(wire.answer))
    backend = build(wire, script)
    assert type(backend) is wire.adapter
    assert backend.provider == f"{wire.api}-prod"  # the free-text provider name recorded in events
    completion = await complete_once(backend)
    assert completion.content == "Hello!"
    assert script.requests[0].headers[wire.key_header] == wire.key_value


@each_wire
async def test_no_key_means_no_credential_header(wire):
    script = Script(reply(wire.answer))
    await complete_once(build(wire, script, api_key_env=None))
    assert wire.key_header not in script.requests[0].headers


async def test_existing_configs_without_api_keep_the_openai_adapter():
    backend = make_backend("a", make_config(), "http://backend.test/v1")
    try:
        assert type(backend) is OpenAIChatBackend
    finally:
        await backend.aclose()


async def test_timeout_and_concurrency_reach_the_http_client():
    backend = build(WIRES[1], timeout_s=12.5, concurrency=3)
    try:
        assert backend._timeout == httpx.Timeout(12.5).as_dict()  # what each request carries to the transport
        assert backend._transport._max_connections == 3  # the aiohttp pool's size (AiohttpTransport)
    finally:
        await backend.aclose()


@each_wire
async def test_the_deployments_stream_setting_reaches_the_backend_and_is_off_by_default(wire):
    backends = [build(wire), build(wire, stream=True)]
    try:
        assert [b.stream for b in backends] == [False, True]
    finally:
        for backend in backends:
            await backend.aclose()


async def test_anthropic_gets_the_deployments_output_limit_as_default_max_tokens():
    script = Script(reply(anthropic_message()))
    await complete_once(build(WIRES[1], script, max_output_tokens=2048))
    assert script.bodies[0]["max_tokens"] == 2048


async def test_the_key_can_come_from_a_secrets_file(tmp_path: Path):
    secret_file = tmp_path / "gemini-key"
    secret_file.write_text(f"{SECRET}\n")
    script = Script(reply(gemini_response()))
    await complete_once(build(WIRES[2], script, api_key_env=None, api_key_file=str(secret_file)))
    assert script.requests[0].headers["x-goog-api-key"] == SECRET


async def test_the_key_can_be_inline_in_the_config():
    script = Script(reply(anthropic_message()))
    await complete_once(build(WIRES[1], script, api_key_env=None, api_key=SecretStr(SECRET)))
    assert script.requests[0].headers["x-api-key"] == SECRET


def test_an_unset_key_variable_fails_before_any_backend_exists():
    deployment = make_config(api="anthropic", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(CredentialError, match=r"fleet\.claude\.api_key_env names \$NOT_SET_ANYWHERE, which is not set"):
        make_backend("claude", deployment, "https://api.anthropic.com/v1", environ={})


# -- classification shared by every adapter ---------------------------------------------------
@each_wire
async def test_429_is_rate_limited_with_the_retry_after_header(wire):
    error = await fail_once(build(wire, Script(reply(wire.error(429, "slow down"), 429, {"retry-after": "3"}))))
    assert (error.code, error.retryable, error.status, error.retry_after_s) == ("rate_limited", True, 429, 3.0)


@each_wire
@pytest.mark.parametrize("code", [500, 502, 503, 529])
async def test_5xx_is_a_retryable_backend_error(wire, code):
    error = await fail_once(build(wire, Script(reply(wire.error(code, "upstream is sad"), code))))
    assert (error.code, error.retryable, error.status) == ("backend_error", True, code)
    assert "upstream is sad" in error.message


@each_wire
@pytest.mark.parametrize("code", [400, 401, 404])
async def test_4xx_is_rejected_for_good(wire, code):
    error = await fail_once(build(wire, Script(reply(wire.error(code, "no such thing"), code))))
    assert (error.code, error.retryable, error.status) == ("backend_rejected", False, code)


@each_wire
async def test_a_proxy_error_page_without_json_is_read_as_text(wire):
    error = await fail_once(build(wire, Script(httpx.Response(502, text="<html>Bad Gateway</html>"))))
    assert error.code == "backend_error" and "Bad Gateway" in error.message


@each_wire
@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")])
async def test_timeouts_are_retryable(wire, exc):
    error = await fail_once(build(wire, Script(exc)))
    assert (error.code, error.retryable, error.status) == ("timeout", True, None)


@each_wire
@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("peer closed")])
async def test_transport_errors_are_backend_unreachable(wire, exc):
    error = await fail_once(build(wire, Script(exc)))
    assert (error.code, error.retryable) == ("backend_unreachable", True)


ANY_FORMAT_BAD = {"text": "not json at all", "null": None, "array": [1, 2], "other-object": {"unexpected": True}}
MALFORMED = [(w, p) for w in WIRES for p in [*ANY_FORMAT_BAD.values(), *w.malformed.values()]]
MALFORMED_IDS = [f"{w.api}-{name}" for w in WIRES for name in [*ANY_FORMAT_BAD, *w.malformed]]


@pytest.mark.parametrize("wire, payload", MALFORMED, ids=MALFORMED_IDS)
async def test_a_200_that_is_not_an_answer_in_the_format_is_malformed(wire, payload):
    response = httpx.Response(200, text=payload) if isinstance(payload, str) else reply(payload)
    error = await fail_once(build(wire, Script(response)))
    assert (error.code, error.retryable) == ("malformed_response", True)


def echo_key(wire: Wire, code: int) -> Callable[[httpx.Request], httpx.Response]:
    """A server that quotes the credential header back in its error body, or in a 200 of the wrong shape."""

    def handler(request: httpx.Request) -> httpx.Response:
        quoted = request.headers[wire.key_header]
        return reply({"unexpected": quoted}) if code == 200 else reply(wire.error(code, f"bad credential {quoted}"), code)

    return handler


@each_wire
@pytest.mark.parametrize("code", [200, 400, 401, 429, 500, 529])
async def test_the_key_never_appears_in_an_error_even_when_echoed(wire, code):
    error = await fail_once(build(wire, Script(echo_key(wire, code))))
    for text in (str(error), repr(error), error.message, repr(error.args), str(error.__cause__)):
        assert SECRET not in text


@each_wire
async def test_an_invalid_request_is_refused_without_a_call(wire):
    script = Script(reply(wire.answer))
    error = await fail_once(build(wire, script), make_request(tools="{not json"))
    assert (error.code, error.retryable, script.calls) == ("invalid_request", False, 0)


@pytest.mark.parametrize(
    "drifted",
    [
        lambda: anthropic_message(stop_reason="finished"),
        lambda: anthropic_request_checked({"model": "m", "max_tokens": 5, "messages": [{"role": "model", "content": "hi"}]}),
        lambda: genai_types.GenerateContentResponse.model_validate({**gemini_response(), "finish_reason": "STOP"}),
        lambda: gemini_request_checked({"contents": [{"role": "model", "parts": [{"inlineData": {"mime": "image/png"}}]}]}),
    ],
    ids=["anthropic-response", "anthropic-request", "gemini-response", "gemini-request"],
)
def test_the_sdk_types_catch_a_drifted_fixture(drifted):
    """Checking fixtures with the SDKs is only worth something if they reject a wrong body."""
    with pytest.raises(ValueError):
        drifted()
