"""consumers/aiohttp_transport.py: httpx over aiohttp, against real loopback servers.

Each failure a backend can cause (silence, a refused or dropped connection, a body cut
short, a full pool) must reach ``HttpChatBackend._post`` as the httpx error it
classifies, so that a worker retries, pauses or trips its breaker exactly as it did
with httpx's own transport. Timeouts are short and nothing asserts how long a call took.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import pytest
from aiohttp import web
from backend_fixtures import completion_body, make_request
from pydantic import SecretStr

from turnout.consumers.aiohttp_transport import AiohttpTransport, httpx_error
from turnout.consumers.backend import BackendError, OpenAIChatBackend

SECRET = "sk-transport-test-SECRET"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port answering every POST with ``handler``."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server that talks no HTTP of its own: for broken answers aiohttp's server never sends."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)


def backend(base_url: str, **options: object) -> OpenAIChatBackend:
    return OpenAIChatBackend(base_url, "served-m", api_key=SecretStr(SECRET), **options)  # type: ignore[arg-type]


async def failure(base_url: str, **options: object) -> BackendError:
    client = backend(base_url, **options)
    try:
        with pytest.raises(BackendError) as caught:
            await client.complete(make_request())
    finally:
        await client.aclose()
    return caught.value


# -- what goes out and comes back ------------------------------------------------------------------
async def test_a_backend_without_an_injected_transport_sends_through_aiohttp():
    seen: list[tuple[str, str, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["Authorization"], await request.json()))
        return web.json_response(completion_body(content="hi there"), headers={"x-request-id": "abc"})

    async with http_server(handler) as url:
        client = backend(url)
        try:
            assert isinstance(client._transport, AiohttpTransport)
            completion = await client.complete(make_request())
            second = await client.complete(make_request(id="req-2"))  # the pooled connection is reused
        finally:
            await client.aclose()
    assert (completion.content, second.content) == ("hi there", "hi there")
    path, auth, body = seen[0]
    assert (path, auth, body["model"]) == ("/v1/chat/completions", f"Bearer {SECRET}", "served-m")
    assert len(seen) == 2


async def test_status_headers_and_a_compressed_body_come_back_as_httpx_gives_them():
    async def handler(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode())
        return web.Response(status=429, body=body, headers={"Content-Encoding": "gzip", "Retry-After": "2", "Content-Type": "application/json"})

    async with http_server(handler) as url:
        error = await failure(url)
    assert (error.code, error.status, error.retry_after_s) == ("rate_limited", 429, 2.0)
    assert "slow down" in error.message  # decoded by httpx: the transport passes the bytes on as they came


async def test_the_transport_answers_httpx_directly():
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.query_string} {await request.text()}", reason="Fine")

    transport = AiohttpTransport(2)
    async with http_server(handler) as url, httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"{url}/x?a=1", content=b"payload")
        empty = await client.post(f"{url}/y")
    assert (response.status_code, response.text, response.reason_phrase) == (200, "POST a=1 payload", "Fine")
    assert empty.text == "POST  "
    assert response.http_version == "HTTP/1.1"


# -- failures: each is the httpx error the backend classifies ------------------------------------------
async def test_silence_past_the_read_timeout_is_a_timeout():
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    async with http_server(handler) as url:
        error = await failure(url, timeout_s=0.05)
    assert (error.code, error.retryable) == ("timeout", True)
    assert isinstance(error.__cause__, httpx.ReadTimeout)


async def test_waiting_past_the_pool_timeout_for_a_connection_is_a_timeout():
    arrived, never = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        arrived.set()
        await never.wait()
        return web.Response()

    async with http_server(handler) as url, httpx.AsyncClient(transport=AiohttpTransport(1), timeout=httpx.Timeout(5.0, pool=0.05)) as client:
        first = asyncio.ensure_future(client.post(url))  # holds the only connection
        await arrived.wait()
        with pytest.raises(httpx.TimeoutException) as caught:  # what _post classifies as "timeout"
            await client.post(url)
        first.cancel()
    assert isinstance(caught.value, httpx.ConnectTimeout)


async def test_a_refused_connection_is_unreachable():
    with socket.socket() as sock:  # a free loopback port, closed again: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await failure(f"http://127.0.0.1:{port}/v1", timeout_s=5)
    assert (error.code, error.retryable) == ("backend_unreachable", True)
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert SECRET not in error.message


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # hangs up without answering
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"choices": [',  # body cut short
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP at all
    ],
    ids=["hang-up", "cut-short", "not-http"],
)
async def test_a_broken_answer_is_unreachable(answer: bytes):
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(answer_then_close) as url:
        error = await failure(url)
    assert (error.code, error.retryable) == ("backend_unreachable", True)
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)


@pytest.mark.parametrize(
    ("aiohttp_error", "httpx_class"),
    [
        (aiohttp.ConnectionTimeoutError("pool"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("server"), httpx.ReadTimeout),
        (asyncio.TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("short"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.ClientError("other"), httpx.TransportError),
    ],
)
def test_each_aiohttp_error_becomes_the_httpx_error_of_the_same_event(aiohttp_error, httpx_class):
    request = httpx.Request("POST", "http://backend.test/v1/chat/completions")
    mapped = httpx_error(aiohttp_error, request)
    assert type(mapped) is httpx_class
    assert mapped.request is request
    assert httpx_error(ValueError("not a transport error"), request) is None


async def test_aclose_closes_the_session_and_a_later_request_opens_a_new_one():
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(completion_body())

    transport = AiohttpTransport(1)
    async with http_server(handler) as url:
        client = httpx.AsyncClient(transport=transport)
        await client.post(url + "/chat/completions", json={})
        session = transport._session
        await transport.aclose()
        assert session is not None and session.closed
        assert (await client.post(url + "/chat/completions", json={})).status_code == 200
        await client.aclose()
    assert transport._session is None


async def test_a_proxy_named_in_the_environment_is_used(monkeypatch):
    seen: list[tuple[str, str]] = []

    async def proxy(request: web.Request) -> web.Response:  # a forward proxy gets the absolute URL
        seen.append((request.host, request.path))
        return web.json_response(completion_body(content="via proxy"))

    async with http_server(proxy) as proxy_url:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url.removesuffix("/v1"))
        client = backend("http://backend.test/v1")
        try:
            completion = await client.complete(make_request())
        finally:
            await client.aclose()
    assert completion.content == "via proxy"
    assert seen == [("backend.test", "/v1/chat/completions")]


async def test_each_request_carries_the_backends_timeouts_to_the_transport():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=completion_body())

    client = backend("http://backend.test/v1", timeout_s=7.5, transport=httpx.MockTransport(handler))
    await client.complete(make_request())
    assert seen == [{"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}]


# -- event streams: handed on as they arrive ------------------------------------------------------------
async def test_an_event_stream_is_handed_on_before_the_server_has_finished():
    """The server sends its first event and then waits until the client has read it: a
    transport that read the body whole would never see the end (the wait_for fails)."""
    first_read = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await first_read.wait()
        await response.write(b"data: last\n\n")
        return response

    transport = AiohttpTransport(2)
    async with http_server(handler) as url:
        try:
            response = await transport.handle_async_request(httpx.Request("POST", f"{url}/stream"))
            chunks = []
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                first_read.set()
            await response.aclose()
        finally:
            await transport.aclose()
    assert b"".join(chunks) == b"data: first\n\ndata: last\n\n" and len(chunks) >= 2


async def test_an_event_stream_that_stalls_is_a_timeout_and_one_that_breaks_off_is_interrupted():
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[]}\n\n')
        await asyncio.Event().wait()
        return response

    async def breaks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"16\r\ndata: {\"choices\":[]}\n\n\r\n")  # one whole chunk, then the connection drops
        await writer.drain()
        writer.close()

    async with http_server(stalls) as url:
        stalled = await failure(url, timeout_s=0.05, stream=True)
    async with raw_server(breaks) as url:
        broken = await failure(url, stream=True)
    assert (stalled.code, stalled.retryable) == ("timeout", True)
    assert (broken.code, broken.retryable) == ("stream_interrupted", True)
