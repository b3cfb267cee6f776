"""A streamed answer as OpenAI streams one: server-sent ``chat.completion.chunk``
events, then ``data: [DONE]``.

The status line and headers go out with the first piece of text, not before: whatever
fails before any text (the router's refusal, a spent budget, no answer in time) is still
a plain OpenAI error with its HTTP status. Once the stream has begun, a failure becomes
an ``error`` event, which the OpenAI SDKs raise as an ``APIError``.

A stream cannot take back text it sent. When the answer turns out to say something else
than what was sent (``TextDelta.restart``: a retried call wrote another text), the stream
ends with an error event, code ``stream_restarted``, rather than with a wrong answer;
the caller can ask again. Structured output is never sent in pieces for that reason
(the worker may repair or re-ask the whole document): it comes as one chunk.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from turnout.producers.openai_format import completion_chunk, finish_reason, usage_chunk
from turnout.producers.streaming import TextDelta
from turnout.schemas.models import InferenceResponse

from .errors import ApiError
from .wire import error_answer

Item = TextDelta | InferenceResponse


class _Events:
    """The HTTP response, started on the first event."""

    def __init__(self, request: web.Request, request_id: str, headers: dict[str, str]) -> None:
        self.request, self.request_id, self.headers = request, request_id, headers
        self.created = int(time.time())
        self.response: web.StreamResponse | None = None

    async def send(self, data: dict[str, Any] | str) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **self.headers})
            await self.response.prepare(self.request)
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        await self.response.write(f"data: {payload}\n\n".encode())

    async def text(self, delta: TextDelta) -> None:
        first = self.response is None
        content = {"role": "assistant", "content": delta.text} if first else {"content": delta.text}
        await self.send(completion_chunk(self.request_id, self.created, delta.model, content))

    async def fail(self, error: ApiError) -> web.StreamResponse:
        """End with ``error``: as an HTTP error before the stream began, as an event after."""
        if self.response is None:
            raise error
        await self.send(error.body())
        return await self.end()

    async def end(self) -> web.StreamResponse:
        assert self.response is not None
        await self.response.write_eof()
        return self.response


async def stream_answer(request: web.Request, items: AsyncIterator[Item], *, request_id: str, headers: dict[str, str], include_usage: bool) -> web.StreamResponse:
    """Write ``items`` (``TextDelta``s, then the final response) as OpenAI's event stream."""
    events = _Events(request, request_id, headers)
    try:
        async for item in items:
            if isinstance(item, TextDelta):
                if item.restart and events.response is not None:
                    return await events.fail(_restarted())
                await events.text(item)
                continue
            if item.status == "error":
                return await events.fail(error_answer(item))  # its headers are sent when the stream had not begun
            if events.response is None:  # an empty answer: the role chunk alone
                await events.text(TextDelta("", item.model or ""))
            await events.send(completion_chunk(request_id, events.created, item.model or "", {}, finish_reason(item.finish_reason)))
            if include_usage:
                await events.send(usage_chunk(item, events.created))
            await events.send("[DONE]")
            return await events.end()
    except ApiError as error:
        return await events.fail(error)
    return await events.fail(ApiError(502, "the answer ended without a final response", type="server_error"))


def _restarted() -> ApiError:
    return ApiError(
        502,
        "the answer changed after part of it was sent (a retried backend call wrote another text): ask again, or without stream",
        type="server_error",
        code="stream_restarted",
    )
