"""Server-sent events (the ``text/event-stream`` format every streaming LLM API answers in).

Why a parser of our own rather than a package: the format is a dozen lines of the HTML
standard (https://html.spec.whatwg.org/multipage/server-sent-events.html, "Parsing an
event stream"), and the backends need it over the byte chunks of their own transport,
incrementally, with no reconnection logic (a model call that breaks is retried whole,
not resumed). What the standard says and this does: lines end with CRLF, LF or CR; a
blank line dispatches the event; ``data`` lines are joined with ``\\n``; a line starting
with ``:`` is a comment (keep-alive pings); ``field: value`` loses one leading space;
an event without data is not dispatched; ``id`` and ``retry`` are read past.

The providers use it alike: OpenAI sends ``data: {chunk}`` and ends with
``data: [DONE]``; Anthropic names each event (``event: content_block_delta``) and repeats
the name as the JSON's ``type``; Gemini sends ``data: {chunk}`` with CRLF line ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import NamedTuple

__all__ = ["SseDecoder", "SseEvent", "sse_events"]


class SseEvent(NamedTuple):
    event: str  # "message" unless the stream named it
    data: str


class SseDecoder:
    """Bytes in, events out: ``feed`` a chunk (cut anywhere, even inside a UTF-8
    character or between a CR and its LF) and get the events it completes."""

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._pending + chunk
        if b"\r" not in buffer and not self._data and not self._event:
            return self._feed_blocks(buffer)
        events: list[SseEvent] = []
        start = 0
        while True:
            end, skip = _line_end(buffer, start)
            if end < 0:
                break
            event = self._line(buffer[start:end].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = end + skip
        self._pending = buffer[start:]
        return events

    def _feed_blocks(self, buffer: bytes) -> list[SseEvent]:
        """The common case, LF line ends and no event half-read: whole events are the
        blocks between blank lines, and most are one ``data:`` line (OpenAI's, Gemini's
        chunks), taken without walking their lines. Half the CPU of a streamed answer
        went to the line walk before. The last block, still open, waits whole."""
        blocks = buffer.split(b"\n\n")
        self._pending = blocks.pop()
        events: list[SseEvent] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(SseEvent("message", block[6:].decode("utf-8", "replace")))
                continue
            for line in block.decode("utf-8", "replace").split("\n"):
                self._line(line)
            event = self._line("")
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SseEvent]:
        """The stream ended: a CR last in it was a whole line end after all."""
        return self.feed(b"\n") if self._pending.endswith(b"\r") else []

    def _line(self, line: str) -> SseEvent | None:
        if not line:  # a blank line dispatches what was gathered
            event, data = self._event or "message", self._data
            self._event, self._data = "", []
            return SseEvent(event, "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # id, retry and unknown fields: nothing a model call needs


def _line_end(buffer: bytes, start: int) -> tuple[int, int]:
    """Where the line starting at ``start`` ends and how long its terminator is; ``(-1, 0)``
    while it may not be complete (a CR last in the buffer may be followed by an LF)."""
    lf, cr = buffer.find(b"\n", start), buffer.find(b"\r", start)
    if cr < 0 or (0 <= lf < cr):
        return (lf, 1) if lf >= 0 else (-1, 0)
    if cr + 1 == len(buffer):
        return -1, 0
    return cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[SseEvent]:
    """The events of a byte stream, each as soon as its blank line arrives. A last event
    without its blank line is incomplete and is not yielded: the stream was cut."""
    decoder = SseDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
