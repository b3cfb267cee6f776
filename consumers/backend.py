"""The seam between a worker and a model backend: one contract, three wire formats.

``ChatBackend`` is what a worker calls. ``HttpChatBackend`` is the plumbing every wire
format shares (a pooled httpx client, the error classification, key scrubbing, defensive
reading of 200s), so the worker's retry policy never looks at HTTP details and each
adapter only says where to POST, what to send and how to read the answer. Requests go
as httpx requests to an httpx transport: aiohttp's connection pool
(``aiohttp_transport``: httpx's own pool cost most of a worker's CPU) unless a test
injects another.
``OpenAIChatBackend`` is the OpenAI chat-completions format (OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp's server, TGI, Turnout's simulator); ``anthropic_backend`` and
``gemini_backend`` hold the other two. The request-translation helpers at the bottom
are shared by the adapters whose formats differ from OpenAI's in the same ways.

With ``stream`` (the deployment's ``stream`` setting) a chat call asks for its answer
as server-sent events and records its time to first token (``Completion.ttft_ms``); the
format's ``StreamAssembler`` rebuilds the unstreamed body from the events, so the answer
reads exactly as unstreamed (``streaming``). A call given ``on_text`` (a request whose
caller wants the answer as it is written) streams whatever the deployment says and
hands each piece of text over as it arrives. Embeddings are never streamed.

``embed`` sends many texts in one call to a format's batch embeddings endpoint
(OpenAI's ``/embeddings``, Gemini's ``:batchEmbedContents``) through the same plumbing,
so its errors are classified, retried and scrubbed exactly like a chat call's; a format
without one (Anthropic) refuses with a non-retryable ``invalid_request``.

Every call names the Turnout request(s) it serves in an ``X-Client-Request-Id`` header
(``client_request_id``; ``client_request_ids`` for an embeddings batch): OpenAI documents
the header for a client's own request id, and the other providers ignore a header they
do not know. A provider's logs, and Turnout's simulator (``GET /calls``), can thus tell
which request each call was made for, and whether one was called again after it was
answered.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, TypedDict, TypeVar

import httpx
from pydantic import SecretStr

from turnout.schemas.models import ChatMessage, InferenceRequest

from .aiohttp_transport import EVENT_STREAM, AiohttpTransport
from .confidence import from_openai_choice
from .errors import BackendError, stream_error
from .sse import SseEvent
from .streaming import StreamAssembler, TextSink, event_json, read_stream

R = TypeVar("R")

_DEFAULT_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",  # what httpx decodes without optional packages
    "Content-Type": "application/json",
    "User-Agent": f"turnout python-httpx/{httpx.__version__}",
}

CLIENT_REQUEST_ID = "X-Client-Request-Id"
"""The header that names the Turnout request(s) a call serves (see ``client_request_id``)."""
MAX_CLIENT_REQUEST_ID = 512  # characters: the longest id OpenAI documents for the header
MAX_BATCH_REQUEST_IDS = 20  # ids named at most by one embeddings call
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")

embedding_request_ids: ContextVar[tuple[str, ...]] = ContextVar("turnout_embedding_request_ids", default=())
"""The ids of the requests an embeddings call serves, for ``embed`` callers that do not
pass them: ``EmbeddingBatcher`` sets it in the task that makes a batch's call, whose
``send`` (the deployment's guarded call) takes only the texts."""


def client_request_id(request_id: str) -> str | None:
    """The ``X-Client-Request-Id`` value for a chat call serving ``request_id``: the id
    as it is, or ``None`` (no header) when it cannot travel as it is: not visible ASCII
    (spaces inside allowed), or longer than ``MAX_CLIENT_REQUEST_ID``. Such an id is left
    out rather than altered: an altered id matches no request and would only mislead.
    Turnout's own ids (hex UUIDs) always travel."""
    return request_id if len(request_id) <= MAX_CLIENT_REQUEST_ID and _VISIBLE_ASCII.fullmatch(request_id) else None


def client_request_ids(request_ids: Sequence[str]) -> str | None:
    """The ``X-Client-Request-Id`` value for an embeddings call, which may carry the texts
    of several requests (``embedding_batch``): their ids in batch order joined by commas
    (HTTP's list separator), at most ``MAX_BATCH_REQUEST_IDS`` of them and no more than
    fit in ``MAX_CLIENT_REQUEST_ID`` characters, so a reader of a big batch's header sees
    its first requests only. An id that cannot travel (``client_request_id``) or holds a
    comma is left out; ``None`` (no header) when none is left."""
    named: list[str] = []
    size = -1  # the joined length so far: no comma before the first id
    for request_id in request_ids:
        if len(named) == MAX_BATCH_REQUEST_IDS:
            break
        if "," in request_id or client_request_id(request_id) is None:
            continue
        if size + 1 + len(request_id) > MAX_CLIENT_REQUEST_ID:
            break
        named.append(request_id)
        size += 1 + len(request_id)
    return ",".join(named) or None


@dataclass(frozen=True)
class Completion:
    """One answer. ``confidence`` (the geometric mean of its token probabilities, see
    ``confidence``) is set only when the call asked for log-probabilities and the
    provider returned them."""

    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    confidence: float | None = None
    ttft_ms: float | None = None  # streamed calls only: see ``streaming``


@dataclass(frozen=True)
class EmbeddingResult:
    """One vector per text, in the order of the texts; ``input_tokens`` as the provider
    reported them (0 when it reports none)."""

    vectors: list[list[float]]
    input_tokens: int
    latency_ms: float

    @property
    def output_tokens(self) -> int:
        """An embedding has no generated tokens; here so usage reads alike for both kinds of call."""
        return 0


class Embeddings(NamedTuple):
    """What an adapter reads out of a 200 embeddings body; the base class adds the latency."""

    vectors: list[list[float]]
    input_tokens: int


class ChatBackend(Protocol):
    provider: str

    async def complete(self, request: InferenceRequest, *, logprobs: bool = False, on_text: TextSink | None = None) -> Completion: ...

    async def embed(self, texts: list[str]) -> EmbeddingResult: ...

    async def aclose(self) -> None: ...


class Answer(NamedTuple):
    """What an adapter reads out of a 200 body; the base class adds the latency."""

    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    confidence: float | None = None


class HttpOptions(TypedDict, total=False):
    """The connection options every HTTP adapter takes, for subclasses to pass through."""

    provider: str | None
    api_key: SecretStr | None
    timeout_s: float
    max_connections: int
    transport: httpx.AsyncBaseTransport | None
    stream: bool


class HttpChatBackend:
    """POST a JSON body, classify what comes back. The API key is sent, never logged.

    Subclasses set ``default_provider`` (the wire format's name) and ``fixed_headers``, and
    implement ``auth_headers``, ``endpoint``, ``body``, ``read``, ``ask_stream`` and
    ``assembler`` (``stream_endpoint`` too when streaming goes elsewhere); a format with a batch
    embeddings endpoint also implements ``embedding_endpoint``, ``embedding_body`` and
    ``read_embeddings``. ``body`` raises ``invalid_request`` for what the format cannot
    express; ``read`` may raise ``ValueError``/``LookupError``/``TypeError`` on a body of the
    wrong shape, which becomes a retryable ``malformed_response``.
    """

    default_provider = "http"
    fixed_headers: ClassVar[dict[str, str]] = {}  # sent on every call, e.g. an API version

    def __init__(
        self,
        base_url: str,
        served_model: str,
        *,
        provider: str | None = None,
        api_key: SecretStr | None = None,
        timeout_s: float = 30.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        stream: bool = False,
    ) -> None:
        self.provider = provider or self.default_provider
        self.stream = stream
        self._served_model = served_model
        self._secret = api_key.get_secret_value() if api_key else None
        self._transport = transport or AiohttpTransport(max_connections)
        self._base_url = base_url.rstrip("/")
        self._headers = httpx.Headers(
            {**_DEFAULT_HEADERS, **self.fixed_headers, **(self.auth_headers(self._secret) if self._secret else {})}
        )
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        self._urls: dict[str, httpx.URL] = {}

    # -- what each wire format says -------------------------------------------------------
    def auth_headers(self, secret: str) -> dict[str, str]:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def body(self, request: InferenceRequest) -> dict[str, Any]:
        raise NotImplementedError

    def read(self, payload: Any, request: InferenceRequest) -> Answer:
        raise NotImplementedError

    def ask_logprobs(self, body: dict[str, Any]) -> None:
        """Make ``body`` ask for the answer's token log-probabilities; a format that has
        none (Anthropic's) leaves it alone, and its answers carry no confidence."""

    def ask_stream(self, body: dict[str, Any]) -> None:
        """Make ``body`` ask for its answer as server-sent events, usage included."""
        raise NotImplementedError

    def stream_endpoint(self) -> str:
        """Where a streamed call goes: the same place unless the format says otherwise."""
        return self.endpoint()

    def assembler(self) -> StreamAssembler:
        """A fresh gatherer of one streamed answer's events (see ``streaming``)."""
        raise NotImplementedError

    def embedding_endpoint(self) -> str:
        """Where a batch of texts is embedded; a format without such an endpoint refuses."""
        raise invalid_request(f"embeddings are not supported by the {self.default_provider} API")

    def embedding_body(self, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def read_embeddings(self, payload: Any, texts: list[str]) -> Embeddings:
        raise NotImplementedError

    def retry_after(self, response: httpx.Response) -> float | None:
        """How long a 429 asks us to wait; the standard headers unless a format says more."""
        return retry_after_header(response)

    # -- shared ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self._transport.aclose()

    async def complete(self, request: InferenceRequest, *, logprobs: bool = False, on_text: TextSink | None = None) -> Completion:
        """One chat call. ``logprobs`` asks the provider for the tokens' log-probabilities
        (a cascade that escalates on ``low_confidence`` needs them; nobody else pays the
        larger answer), where the format has them. ``on_text`` (a caller who wants the
        answer as it is written) streams the call whatever the deployment's ``stream``
        says, and is handed each piece of text as it arrives; a server that answers one
        JSON body anyway hands over nothing (the caller has the whole answer at the end).
        The call names ``request.id`` in its ``X-Client-Request-Id`` header."""
        body = self.body(request)
        if logprobs:
            self.ask_logprobs(body)
        client_id = client_request_id(request.id)
        if self.stream or on_text is not None:
            self.ask_stream(body)
            answer, ttft_ms, latency_ms = await self._scrubbed(self._streamed(body, request, on_text, client_id))
        else:
            read = lambda payload: self.read(payload, request)  # noqa: E731
            answer, latency_ms = await self._exchange(self.endpoint(), body, read, "completion", client_id)
            ttft_ms = None
        content, finish_reason, input_tokens, output_tokens, confidence = answer
        return Completion(content, finish_reason, input_tokens, output_tokens, latency_ms, confidence, ttft_ms)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        """All of ``texts`` in one call; the vectors come back in their order. The call's
        ``X-Client-Request-Id`` names the requests whose texts these are
        (``embedding_request_ids``, set by the batcher), as ``client_request_ids`` says:
        comma-separated, the first ones only for a big batch; none, no header."""
        path, body = self.embedding_endpoint(), self.embedding_body(texts)
        client_id = client_request_ids(embedding_request_ids.get())
        read = lambda payload: self.read_embeddings(payload, texts)  # noqa: E731
        embeddings, latency_ms = await self._exchange(path, body, read, "embedding list", client_id)
        return EmbeddingResult(*embeddings, latency_ms=latency_ms)

    async def _exchange(
        self, path: str, body: dict[str, Any], read: Callable[[Any], R], what: str, client_id: str | None = None
    ) -> tuple[R, float]:
        """POST ``body``, classify the outcome and read a 200 with ``read``; the key is
        scrubbed from any error a backend echoes it in."""
        return await self._scrubbed(self._post(path, body, read, what, client_id))

    async def _scrubbed(self, call: Awaitable[R]) -> R:
        """``call``'s result; a ``BackendError`` it raises loses any copy of the key."""
        try:
            return await call
        except BackendError as exc:
            if self._secret and self._secret in exc.message:  # a backend that echoes the key back
                exc.message = exc.message.replace(self._secret, "***")
                exc.args = (exc.message,)
            raise

    async def _post(
        self, path: str, body: dict[str, Any], read: Callable[[Any], R], what: str, client_id: str | None = None
    ) -> tuple[R, float]:
        started = time.perf_counter()
        try:
            response = await self._send(path, body, client_id)
        except httpx.RequestError as exc:
            raise request_failure(exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return self._read_json(response, read, what), latency_ms

    def _read_json(self, response: httpx.Response, read: Callable[[Any], R], what: str) -> R:
        """A whole answer read: an error status classified, a 200's JSON read with ``read``."""
        if response.status_code >= 400:
            raise self._http_error(response)
        return self._read_body(lambda: read(response.json()), what)

    def _read_body(self, reading: Callable[[], R], what: str) -> R:
        """``reading()``; a body of the wrong shape is a retryable ``malformed_response``."""
        try:
            return reading()
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            raise BackendError(
                "malformed_response",
                f"backend answered 200 with a body that is not a {self.default_provider} {what}: {exc!r}",
                retryable=True,
            ) from exc

    async def _streamed(
        self, body: dict[str, Any], request: InferenceRequest, on_text: TextSink | None = None, client_id: str | None = None
    ) -> tuple[Answer, float | None, float]:
        """A streamed chat call: ``(answer, ttft_ms, latency_ms)``, the latency to the stream's end.
        An error status, or a server that answers one JSON body despite ``stream`` (then
        no time to first token is known), is read whole like an unstreamed answer."""
        started = time.perf_counter()
        try:
            response = await self._open(self.stream_endpoint(), body, client_id)
        except httpx.RequestError as exc:
            raise request_failure(exc) from exc
        try:
            if response.status_code >= 400 or response.headers.get("content-type", "").partition(";")[0].strip() != EVENT_STREAM:
                try:
                    await response.aread()
                except httpx.RequestError as exc:
                    raise request_failure(exc) from exc
                answer = self._read_json(response, lambda payload: self.read(payload, request), "completion")
                return answer, None, (time.perf_counter() - started) * 1000
            streamed = await read_stream(response, self.assembler(), started, self.default_provider, on_text)
            latency_ms = (time.perf_counter() - started) * 1000
        finally:
            await response.aclose()
        answer = self._read_body(lambda: self.read(streamed.payload, request), "completion stream")
        return answer, streamed.ttft_ms, latency_ms

    async def _open(self, path: str, body: dict[str, Any], client_id: str | None = None) -> httpx.Response:
        """POST ``body`` as JSON to ``path`` straight to the transport; the answer's body is
        still to be read (and the response closed) by the caller. ``client_id`` (see
        ``client_request_id``) goes out as ``X-Client-Request-Id``: set on the request's
        own headers, which ``httpx.Request`` copies from the backend's shared ones anyway,
        so the shared set is neither changed nor copied again."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base_url + path)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        request = httpx.Request("POST", url, headers=self._headers, content=content, extensions={"timeout": self._timeout})
        if client_id is not None:
            request.headers[CLIENT_REQUEST_ID] = client_id
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    async def _send(self, path: str, body: dict[str, Any], client_id: str | None = None) -> httpx.Response:
        """POST ``body`` as JSON to ``path`` straight to the transport, and read the answer.

        Not through an ``httpx.AsyncClient``: redirects, cookies, auth flows, event hooks
        and merging every path into the base URL again are nothing a model API needs, and
        cost nearly half of a call's CPU (``complete`` on a loopback server: 218 against 121 µs). The
        request carries what the client would add: the timeouts, the default headers and
        the JSON body as httpx encodes it.
        """
        response = await self._open(path, body, client_id)
        try:
            await response.aread()  # decodes its Content-Encoding: an undecodable body raises httpx.DecodingError here
        finally:
            await response.aclose()
        return response

    def _http_error(self, response: httpx.Response) -> BackendError:
        """429 waits and retries, 5xx (Anthropic's 529 overloaded included) retries, other 4xx never will."""
        status = response.status_code
        detail = error_message(response)
        if status == 429:
            return BackendError(
                "rate_limited", f"429 from backend: {detail}", retryable=True, status=status, retry_after_s=self.retry_after(response)
            )
        if status >= 500:
            return BackendError("backend_error", f"{status} from backend: {detail}", retryable=True, status=status)
        return BackendError("backend_rejected", f"{status} from backend: {detail}", retryable=False, status=status)


class OpenAIChatBackend(HttpChatBackend):
    """POST ``{base_url}/chat/completions`` with ``Authorization: Bearer``."""

    default_provider = "openai-compatible"

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def endpoint(self) -> str:
        return "/chat/completions"

    def body(self, request: InferenceRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._served_model,
            "messages": [_openai_message(m) for m in request.messages],
        }
        body.update(sampling(request, max_tokens="max_tokens", stop="stop", temperature="temperature"))
        if request.tools:
            body["tools"] = json_field(request.tools, "tools")
        schema = response_schema(request)
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}
        return body

    def ask_logprobs(self, body: dict[str, Any]) -> None:
        body["logprobs"] = True

    def ask_stream(self, body: dict[str, Any]) -> None:
        """``include_usage``: the last chunk before ``[DONE]`` carries the usage (without
        it a streamed answer has none, and could not be billed)."""
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}

    def assembler(self) -> OpenAIStream:
        return OpenAIStream()

    def read(self, payload: Any, request: InferenceRequest) -> Answer:
        choice = payload["choices"][0]
        message, usage = choice["message"], payload.get("usage") or {}
        return Answer(
            content=text(message.get("content")),
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=count(usage.get("prompt_tokens")),
            output_tokens=count(usage.get("completion_tokens")),
            confidence=from_openai_choice(choice),
        )

    def embedding_endpoint(self) -> str:
        return "/embeddings"

    def embedding_body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self._served_model, "input": texts}

    def read_embeddings(self, payload: Any, texts: list[str]) -> Embeddings:
        """``data[i].embedding`` put in the order of ``data[i].index`` (the texts' order)."""
        data, usage = payload["data"], payload.get("usage") or {}
        if not isinstance(data, list):
            raise TypeError(f"data is {type(data).__name__}")
        by_index = {item["index"]: item["embedding"] for item in data}
        return Embeddings(in_order(by_index, len(texts)), count(usage.get("prompt_tokens")))


class OpenAIStream:
    """``chat.completion.chunk`` events into the ``chat.completion`` they amount to: the
    first choice's ``delta.content`` pieces joined, its ``logprobs.content`` tokens
    concatenated, its ``finish_reason``, and the ``usage`` of the last chunk; ``data:
    [DONE]`` ends it. A tool call's argument deltas are content for the time to first
    token, and left out of the text, as an unstreamed answer leaves them."""

    def __init__(self) -> None:
        self.done = False
        self._pieces: list[str] = []
        self._tokens: list[Any] | None = None  # logprobs.content, when the chunks carry it
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, event: SseEvent) -> str | None:
        if event.data == "[DONE]":
            self.done = True
            return None
        chunk = event_json(event.data)
        error = chunk.get("error")
        if error:  # OpenAI and vLLM report a failure after the 200 as a chunk with an error object
            raise stream_error(str(error.get("type") or error.get("code") or "error"), str(error.get("message", "")))
        self._usage = chunk.get("usage") or self._usage
        content: str | None = None
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            piece = text(delta.get("content"))
            if piece:
                self._pieces.append(piece)
                content = (content or "") + piece
            elif delta.get("tool_calls") and content is None:
                content = ""
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                self._tokens = self._tokens if self._tokens is not None else []
                self._tokens.extend(logprobs["content"])
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return content

    def payload(self) -> dict[str, Any]:
        choice = {
            "message": {"role": "assistant", "content": "".join(self._pieces) if self._pieces else None},
            "finish_reason": self._finish_reason,
            "logprobs": {"content": self._tokens} if self._tokens is not None else None,
        }
        return {"object": "chat.completion", "choices": [choice], "usage": self._usage}


def _openai_message(message: ChatMessage) -> dict[str, Any]:
    """A turn in the OpenAI format; a turn with images becomes a list of content parts."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["content"] = [{"type": "text", "text": message.content}] + [
            {"type": "image_url", "image_url": {"url": url}} for url in message.images
        ]
    if message.name is not None:
        out["name"] = message.name
    return out


# -- reading responses ---------------------------------------------------------------------
def request_failure(exc: httpx.RequestError) -> BackendError:
    """A call that got no readable answer, by what went wrong: all worth another try."""
    if isinstance(exc, httpx.TimeoutException):
        return BackendError("timeout", f"backend timed out: {type(exc).__name__}", retryable=True)
    if isinstance(exc, httpx.TransportError):
        return BackendError("backend_unreachable", f"backend unreachable: {exc}", retryable=True)
    # e.g. a body that does not decode with its Content-Encoding
    return BackendError("malformed_response", f"backend response unreadable: {exc}", retryable=True)


def error_object(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of an error body: OpenAI, Anthropic and Google all send one."""
    try:
        payload = response.json()
        if isinstance(payload, list):  # some Google front ends wrap the error in a list
            payload = payload[0]
        error = payload["error"]
    except Exception:
        return None
    return error if isinstance(error, dict) else None


def error_message(response: httpx.Response) -> str:
    """The error's ``message``, after its ``type`` (OpenAI, Anthropic) or ``status`` (Google):
    ``overloaded_error`` or ``RESOURCE_EXHAUSTED`` says more than a status code."""
    error = error_object(response)
    if error is None or "message" not in error:
        return response.text[:200]
    message = str(error["message"])
    kind = error.get("type") or error.get("status")
    return (f"{kind}: {message}" if isinstance(kind, str) else message)[:500]


def retry_after_header(response: httpx.Response) -> float | None:
    for header in ("retry-after-ms", "retry-after"):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return None  # an HTTP-date: let the backoff decide
        return seconds / 1000 if header == "retry-after-ms" else seconds
    return None


def in_order(by_index: dict[Any, Any], expected: int) -> list[list[float]]:
    """The vectors of ``by_index`` in index order, exactly one per text, each a list of numbers."""
    if sorted(by_index) != list(range(expected)):
        raise ValueError(f"{expected} texts sent, vectors came back for indexes {sorted(by_index)[:10]}")
    vectors = [by_index[i] for i in range(expected)]
    for vector in vectors:
        if not isinstance(vector, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise TypeError("an embedding is not a list of numbers")
    return vectors


def count(value: Any) -> int:
    """A token count: absent means 0; anything but a whole number means the body is wrong."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"token count is {type(value).__name__}")
    return value


def text(value: Any) -> str:
    """A text field: absent (a tool-call answer) means empty; anything but a string is wrong."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"content is {type(value).__name__}")
    return value


# -- translating requests ------------------------------------------------------------------
def invalid_request(message: str) -> BackendError:
    """A request this adapter cannot send: no backend will take it, so never retry it."""
    return BackendError("invalid_request", message, retryable=False)


def json_field(value: str, field: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise invalid_request(f"request.{field} is not valid JSON: {exc}") from None


def sampling(request: InferenceRequest, *, max_tokens: str, stop: str, temperature: str) -> dict[str, Any]:
    """The request's sampling options under a format's own key names; unset ones are left
    out (a temperature of 0 is set, an empty stop list is not)."""
    values = {max_tokens: request.max_tokens, stop: request.stop or None, temperature: request.temperature}
    return {key: value for key, value in values.items() if value is not None}


def response_schema(request: InferenceRequest) -> dict[str, Any] | None:
    if not request.response_schema:
        return None
    schema = json_field(request.response_schema, "response_schema")
    if not isinstance(schema, dict):
        raise invalid_request(f"request.response_schema must be a JSON object, not {type(schema).__name__}")
    return schema


class FunctionTool(NamedTuple):
    name: str
    description: str | None
    parameters: dict[str, Any]


def function_tools(request: InferenceRequest) -> list[FunctionTool]:
    """The request's OpenAI-style tools (``[{"type": "function", "function": {...}}]``),
    read once into the parts every other wire format needs."""
    if not request.tools:
        return []
    tools = json_field(request.tools, "tools")
    if not isinstance(tools, list):
        raise invalid_request("request.tools must be a JSON array of function tools")
    out = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid_request(f"request.tools[{index}] is not a function tool with a name")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        out.append(FunctionTool(function["name"], function.get("description"), parameters))
    return out


_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*);base64,(?P<data>.*)", re.DOTALL)


def image_source(url: str) -> tuple[str, str] | str:
    """``(media_type, base64 data)`` for a ``data:`` URL, the URL itself for http(s)."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise invalid_request("an image data: URL must be base64 with a media type (data:image/png;base64,...)")
        return match["mime"], match["data"]
    if url.startswith(("https://", "http://")):
        return url
    raise invalid_request(f"an image must be a data: or http(s) URL, not {url.split(':', 1)[0][:20]!r}")


def system_text(messages: Iterable[ChatMessage]) -> str | None:
    """Every system turn, in order, as one instruction: the formats that keep the system
    prompt apart from the conversation take a single one."""
    parts = [m.content for m in messages if m.role == "system" and m.content]
    return "\n\n".join(parts) if parts else None


def turn_text(message: ChatMessage) -> str:
    """The text a non-system turn carries. ``ChatMessage`` has no tool-call ids, so a tool
    result cannot be paired with its call; it travels as labelled user text instead."""
    if message.role != "tool":
        return message.content
    label = f"Result of tool {message.name}" if message.name else "Tool result"
    return f"{label}:\n{message.content}"


def turns(
    messages: Iterable[ChatMessage],
    *,
    assistant: str,
    image: Callable[[str], dict[str, Any]],
    text_part: Callable[[str], dict[str, Any]],
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The conversation without its system turns, as ``(role, parts)`` in a format's own
    vocabulary. Consecutive turns of one role are merged and empty ones dropped, since
    Anthropic and Gemini want user and assistant turns to alternate (OpenAI takes any
    sequence) and reject empty text. Images come before the text, as both advise."""
    merged: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = assistant if message.role == "assistant" else "user"
        parts = [image(url) for url in message.images]
        content = turn_text(message)
        if content:
            parts.append(text_part(content))
        if not parts:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(parts)
        else:
            merged.append((role, parts))
    return merged
