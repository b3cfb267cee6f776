"""Reading a streamed chat answer: server-sent events in, the answer and its time to
first token out.

A streamed call is worth its extra bytes for one number: how long the caller would have
waited for the first word (``ttft_ms``), which a whole-body call cannot see. The answer
itself must come out exactly as the same call unstreamed would give it, so each wire
format's ``StreamAssembler`` rebuilds the non-streamed body from its events and the
adapter's own ``read`` reads it: text, usage, finish reason, log-probabilities (hence
confidence) and a structured answer cannot drift between the two paths.

The pieces of text go out as they come too (``read_stream``'s ``on_text``): a caller who
asked for the answer streamed (``InferenceRequest.stream``) reads them on its reply topic
as ``turnout.ResponseChunk`` records (``chunks``) while the answer is written.

A stream can fail after its 200: an error event (``errors.stream_error`` classifies it
by its type), bytes that are not the format's JSON (``malformed_response``), or an end
before the format's last event (``stream_interrupted``: the connection dropped, a proxy
cut it, the server died mid-answer). All but a rejected request are retried like the
same failure before the 200 would be.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import httpx

from .errors import BackendError
from .sse import SseEvent, sse_events

__all__ = ["StreamAssembler", "StreamedBody", "TextSink", "event_json", "read_stream"]

TextSink = Callable[[str], None]
"""Takes the pieces of a streamed answer's text as they arrive; must neither block nor raise
(an error inside it would read as a malformed stream)."""

_scan_json = json.JSONDecoder().scan_once


def event_json(data: str) -> Any:
    """An event's JSON document. ``json.loads`` without its two whitespace scans and
    wrapper calls: a streamed answer is some fifty small documents, and ``json.loads``
    was a third of the time spent reading one. Surrounding whitespace is an error here,
    which no provider sends."""
    try:
        value, end = _scan_json(data, 0)
    except StopIteration:
        raise ValueError(f"an event's data is not JSON: {data[:80]!r}") from None
    if end != len(data):
        raise ValueError(f"an event's data has more than one JSON document: {data[:80]!r}")
    return value


class StreamAssembler(Protocol):
    """One wire format's events gathered into the body the same call unstreamed answers."""

    done: bool  # the format's last event arrived (a stream that ends before is cut)

    def feed(self, event: SseEvent) -> str | None:
        """Take one event; return the answer text it adds, ``""`` when it carried other
        answer content (a tool call's arguments), ``None`` when it carried none. The first
        event that is not ``None`` is the first token; the texts, joined, are the answer's
        text as the caller will read it (what a streamed request's chunks carry). Raises
        ``BackendError`` for an error event, ``ValueError``/``LookupError``/``TypeError``
        for one that is not the format's."""

    def payload(self) -> Any:
        """The non-streamed body these events amount to, for the adapter's ``read``."""


class StreamedBody(NamedTuple):
    """What ``read_stream`` returns: the rebuilt body, and the milliseconds from the
    request's sending to the first content token (to the end of the stream when the
    answer had no content: an empty answer's first token is its end)."""

    payload: Any
    ttft_ms: float


async def read_stream(
    response: httpx.Response, assembler: StreamAssembler, started: float, provider: str, on_text: TextSink | None = None
) -> StreamedBody:
    """Read ``response``'s events to the end into ``assembler``; ``started`` is the
    ``time.perf_counter()`` at which the request was sent. ``on_text`` is handed each
    piece of answer text as it arrives (a streamed request's chunks are made of them);
    a stream that fails afterwards has handed some over all the same."""
    ttft_ms: float | None = None
    try:
        async for event in sse_events(response.aiter_bytes()):
            piece = assembler.feed(event)
            if piece is None:
                continue
            if ttft_ms is None:
                ttft_ms = (time.perf_counter() - started) * 1000
            if piece and on_text is not None:
                on_text(piece)
    except httpx.TimeoutException as exc:
        raise BackendError("timeout", f"backend stream stalled: {type(exc).__name__}", retryable=True) from exc
    except httpx.RequestError as exc:  # reset, or closed before the chunked body's end
        raise BackendError("stream_interrupted", f"backend stream broke off: {exc}", retryable=True) from exc
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise BackendError("malformed_response", f"backend streamed an event that is not a {provider} chunk: {exc!r}", retryable=True) from exc
    if not assembler.done:
        raise BackendError("stream_interrupted", f"backend stream ended before the {provider} format's last event", retryable=True)
    return StreamedBody(assembler.payload(), ttft_ms if ttft_ms is not None else (time.perf_counter() - started) * 1000)
