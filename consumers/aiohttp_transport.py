"""httpx's API over aiohttp's connection pool: the transport the backend adapters use.

The adapters speak httpx (requests, responses, ``MockTransport`` in tests, the error
classes ``HttpChatBackend._post`` classifies). httpx's own pool (httpcore 1.0) scans
every connection of the pool, with a ``getpeername`` and a ``poll`` per connection, for
every request and every release (encode/httpcore#1035, #928): with the 64 connections a
deployment keeps, that cost most of a worker's CPU and held it under 500 requests/s on
a backend that answers at once. aiohttp's pool hands out an idle connection in constant
time and parses HTTP/1.1 in C, so the bytes go through aiohttp while everything above
the transport stays httpx.

Why not the ``httpx-aiohttp`` package: its exception map turns every
``aiohttp.ClientConnectionError`` (a refused connection, a server that hangs up) into
``httpx.ConnectTimeout``, so a backend that is down would be reported as a timeout.
Here each aiohttp error becomes the httpx error httpcore raises for the same event
(``_ERRORS``), so the classification in ``_post`` (timeout, unreachable, unreadable)
holds whichever transport is used.

Timeouts: httpx's per-request ``timeout`` extension maps onto aiohttp's: ``connect``
bounds opening the socket (``sock_connect``), ``pool`` waiting for a connection of the
pool (aiohttp's ``connect``, which covers the wait and the opening), ``read`` the silence
between two reads (``sock_read``, as in httpcore). aiohttp has no write timeout; a body
is written into the socket's buffer at once. The answer is read whole here and decoded
(``Content-Encoding``) by httpx, as with its own transport; except an answer of type
``text/event-stream`` (a streamed model call), which is handed on chunk by chunk as it
arrives, its read timeout bounding the silence between two chunks.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import aiohttp
import httpx
from aiohttp.helpers import BasicAuth, get_env_proxy_for_url
from yarl import URL

EVENT_STREAM = "text/event-stream"
"""The content type whose body is handed on as it arrives; every other body is read whole."""

_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # most specific first: the first match wins
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # no socket, or no pooled connection, in time
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),  # silence longer than the read timeout
    (TimeoutError, httpx.ReadTimeout),  # any other aiohttp timeout (ServerTimeoutError is one)
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, unresolvable, TLS handshake failed
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # httpcore: "Server disconnected without sending a response"
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short ("peer closed connection without ... complete")
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not HTTP/1.1 the parser can read
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),  # connection reset while talking
    (aiohttp.ClientError, httpx.TransportError),
)


def httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx error for an aiohttp (or asyncio timeout) error, ``None`` for anything else."""
    for aiohttp_error, httpx_class in _ERRORS:
        if isinstance(exc, aiohttp_error):
            return httpx_class(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, request=request)
    return None


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise what the block raises as its httpx error (``httpx_error``), or as it is."""
    try:
        yield
    except Exception as exc:
        mapped = httpx_error(exc, request)
        if mapped is None:
            raise
        raise mapped from exc


class _Body(httpx.AsyncByteStream):
    """An answer already read whole: httpx decodes its ``Content-Encoding`` from here."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content


class _StreamedBody(httpx.AsyncByteStream):
    """An event stream, handed on chunk by chunk as it arrives (a model streams its answer
    for seconds: its first token is what the caller wants soon). ``aclose`` gives the
    connection back to the pool, or closes it when the stream was left unfinished."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._answer.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._answer.release()


class _Target(NamedTuple):
    """Where a URL is sent: the URL as aiohttp takes it, and the proxy the environment names for it."""

    url: URL
    proxy: URL | None
    proxy_auth: BasicAuth | None


def _target(url: str) -> _Target:
    parsed = URL(url, encoded=True)  # httpx has quoted it already
    try:
        proxy, auth = get_env_proxy_for_url(parsed)
    except LookupError:
        return _Target(parsed, None, None)
    return _Target(parsed, proxy, auth)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one aiohttp session of ``max_connections`` connections.

    The session is opened on the first request (aiohttp binds it to the running event
    loop) and closed by ``aclose``. TLS is verified with httpx's own context (certifi, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), so both transports trust the same authorities.
    Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) as with httpx,
    looked up once per URL (a backend posts to one or two): aiohttp's own ``trust_env``
    would also read ``~/.netrc`` on every request. Redirects are not followed and bodies
    not decompressed, as httpx expects of a transport.
    """

    MAX_TARGETS = 1024  # distinct URLs remembered; beyond, the memory starts again

    def __init__(self, max_connections: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}
        self._targets: dict[str, _Target] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl or httpx.create_ssl_context())
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)
        return self._session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        """httpx's timeouts as aiohttp's (see the module's docstring), one object per distinct set."""
        given = request.extensions.get("timeout", {})
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1], connect=key[2])
        return timeout

    def _target(self, url: httpx.URL) -> _Target:
        text = str(url)
        target = self._targets.get(text)
        if target is None:
            if len(self._targets) >= self.MAX_TARGETS:
                self._targets.clear()
            target = self._targets[text] = _target(text)
        return target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        with _as_httpx_errors(request):
            target = self._target(request.url)
            answer = await session.request(
                request.method,
                target.url,
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=self._timeout(request),
                proxy=target.proxy,
                proxy_auth=target.proxy_auth,
            )
            if answer.content_type == EVENT_STREAM:
                stream: httpx.AsyncByteStream = _StreamedBody(answer, request)
            else:
                try:
                    stream = _Body(await answer.read())
                finally:
                    answer.release()
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()}
        return httpx.Response(answer.status, headers=list(answer.raw_headers), stream=stream, request=request, extensions=extensions)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
