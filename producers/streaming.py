"""Reading an answer as it is written: ``async for item in client.stream(request)``.

A request with ``stream = true`` is answered on its reply topic by ``turnout.ResponseChunk``
records (pieces of text, as the backend writes them) and then, as always, by its
``InferenceResponse``, which is the whole answer: text, usage, cost, routing. A streamed
call can fail half-way and be retried, or move to a fallback model, so the chunks of
one request may come from several calls (``chunk.attempt``), and the final answer may
differ from what was streamed (a repaired structured answer, an escalation, a cached
answer that was never streamed). ``TurnoutClient.stream`` hides all of that::

    async for item in client.stream(new_request("Tell me about trains"), timeout_s=60):
        if isinstance(item, TextDelta):
            if item.restart:
                screen.clear()              # what was shown is void: the answer starts again
            screen.write(item.text)
        else:
            response = item                 # the final InferenceResponse, always last

**The guarantee.** Shown text is the concatenation of the deltas since the last
``restart``. When the final response is ``ok`` with content, the shown text equals
``response.content`` once the final response is yielded: the iterator yields whatever
reconciles the two just before it. An ``error`` response is yielded as it is, after
whatever was shown (the caller reports the error: OpenAI-compatible streams do the same).

**Restarts are rare.** A new call's text is compared with what was shown: while it
repeats what was shown, nothing is yielded; once it goes further, only the new part is;
a ``restart`` comes only when it says something else. A stream cut and retried on a
model that answers the same way (temperature 0, the simulator) thus reads as one
uninterrupted stream.

The reply topic carries two record types, so readers dispatch on the writer schema's
name (``read_reply``, through ``AvroCodec.decode_as``) rather than decoding every record
as a response.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from turnout.schemas.models import InferenceResponse, ResponseChunk
from turnout.schemas.serde import AvroCodec

from .correlation import ResponseTimeout

__all__ = ["Reply", "ReplyStreams", "StreamText", "TextDelta", "follow", "read_reply"]

Reply = InferenceResponse | ResponseChunk
_REPLY_RECORDS: dict[str, type[Reply]] = {InferenceResponse.avro_name: InferenceResponse, ResponseChunk.avro_name: ResponseChunk}


@dataclass(frozen=True)
class TextDelta:
    """Text to show after what was shown, or, with ``restart``, instead of all of it.
    ``model`` is the fleet model that wrote it."""

    text: str
    model: str
    restart: bool = False


def read_reply(codec: AvroCodec, data: bytes) -> Reply:
    """A record of a reply topic as what its writer wrote: a chunk or a response.
    ``DecodeError`` for anything else (another writer's record), never a chunk misread
    as a response."""
    return codec.decode_as(data, _REPLY_RECORDS)


def reply_id(reply: Reply) -> str:
    return reply.request_id if isinstance(reply, ResponseChunk) else reply.id


class StreamText:
    """One request's chunks (in the order of its reply partition) and its final response
    in, the ``TextDelta``s that keep the shown text right out."""

    def __init__(self) -> None:
        self.shown = ""
        self._attempt = -1
        self._next_seq = 0
        self._text = ""  # the current attempt's text so far
        self._gap = False  # a chunk of the current attempt went missing: wait for the final response

    def chunk(self, chunk: ResponseChunk) -> TextDelta | None:
        if chunk.attempt < self._attempt:
            return None  # a late chunk of a call that was given up
        if chunk.attempt > self._attempt or chunk.seq == 0:  # a new call, or the same one begun again
            self._attempt, self._next_seq, self._text, self._gap = chunk.attempt, 0, "", False
        if chunk.seq != self._next_seq or self._gap:
            self._gap = self._gap or chunk.seq > self._next_seq  # below: a duplicate, harmless
            return None
        self._next_seq += 1
        self._text += chunk.delta
        return self._show(self._text, chunk.model)

    def final(self, response: InferenceResponse) -> TextDelta | None:
        """What reconciles the shown text with an ``ok`` answer (``None`` when it already is)."""
        if response.status != "ok" or response.content is None:
            return None
        return self._show(response.content, response.model or "", final=True)

    def _show(self, text: str, model: str, *, final: bool = False) -> TextDelta | None:
        shown = self.shown
        if text.startswith(shown):
            if len(text) == len(shown):
                return None
            self.shown = text
            return TextDelta(text[len(shown) :], model)
        if shown.startswith(text) and not final:
            return None  # a new call still repeating what was shown (the answer itself must be all of it)
        self.shown = text
        return TextDelta(text, model, restart=True)


async def follow(request_id: str, replies: asyncio.Queue[Reply], timeout_s: float) -> AsyncIterator[TextDelta | InferenceResponse]:
    """The ``TextDelta``s of the replies put on ``replies``, then the final response;
    ``ResponseTimeout`` when it has not come ``timeout_s`` after the start. The wait is
    per reply (never around a ``yield``, which would time out the caller's own work)."""
    text, loop = StreamText(), asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:  # a reply already there is taken even at the deadline
            reply = replies.get_nowait() if not replies.empty() else await asyncio.wait_for(replies.get(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise ResponseTimeout([request_id], timeout_s) from None
        delta = text.final(reply) if isinstance(reply, InferenceResponse) else text.chunk(reply)
        if delta is not None:
            yield delta
        if isinstance(reply, InferenceResponse):
            yield reply
            return


class ReplyStreams:
    """The streamed requests a reply-topic reader follows: ``deliver`` every reply read,
    and each followed request's queue gets its own, in order."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Reply]] = {}

    @contextlib.contextmanager
    def open(self, request_id: str) -> Iterator[asyncio.Queue[Reply]]:
        """Follow ``request_id`` (open it *before* publishing the request) until the block ends."""
        queue = self._queues[request_id] = asyncio.Queue()
        try:
            yield queue
        finally:
            self._queues.pop(request_id, None)

    def deliver(self, reply: Reply) -> None:
        queue = self._queues.get(reply_id(reply))
        if queue is not None:
            queue.put_nowait(reply)
