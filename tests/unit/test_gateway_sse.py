"""gateway/sse.py: a streamed answer as OpenAI's event stream, read back with the
official ``openai`` client from a real aiohttp server. Errors before any text keep their
HTTP status; after it they are error events; text that would have to be taken back ends
the stream with an error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from turnout.gateway.errors import ApiError, timed_out
from turnout.gateway.sse import Item, stream_answer
from turnout.producers.streaming import TextDelta
from turnout.schemas.models import ErrorInfo, InferenceResponse, Usage


def ok(content: str) -> InferenceResponse:
    return InferenceResponse(id="r1", tenant="acme", status="ok", model="small", content=content, finish_reason="stop", usage=Usage(input_tokens=4, output_tokens=2))


def refused(code: str) -> InferenceResponse:
    return InferenceResponse(id="r1", tenant="acme", status="error", error=ErrorInfo(code=code, message=f"{code}: no"))


async def stream_of(script: list[Item | Exception]) -> tuple[list, Mapping[str, str]]:
    """Serve ``script`` as one streamed call; return the chunks the openai client read."""

    async def items() -> AsyncIterator[Item]:
        for step in script:
            if isinstance(step, Exception):
                raise step
            yield step

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await stream_answer(request, items(), request_id="r1", headers={"x-turnout-request-id": "r1"}, include_usage=True)
        except ApiError as error:
            return web.json_response(error.body(), status=error.status, headers=error.extra_headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    async with TestServer(app) as server:
        async with openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="k", max_retries=0) as client:
            stream = await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], stream=True)
            return [chunk async for chunk in stream], stream.response.headers


def text_of(chunks: list) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


async def test_deltas_then_the_final_response_make_the_stream() -> None:
    chunks, headers = await stream_of([TextDelta("Hel", "small"), TextDelta("lo", "small"), ok("Hello")])

    assert text_of(chunks) == "Hello"
    assert headers["x-turnout-request-id"] == "r1"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 6


async def test_an_empty_answer_still_has_a_role_chunk() -> None:
    chunks, _ = await stream_of([ok("")])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text_of(chunks) == ""


async def test_an_error_before_any_text_keeps_its_http_status() -> None:
    with pytest.raises(openai.PermissionDeniedError) as refusal:
        await stream_of([refused("policy_refused")])
    assert refusal.value.response.headers["x-turnout-tenant"] == "acme"
    with pytest.raises(openai.InternalServerError) as caught:
        await stream_of([timed_out(2.0)])
    assert caught.value.status_code == 504


async def test_an_error_after_text_is_an_error_event() -> None:
    with pytest.raises(openai.APIError, match="all_backends_failed: no"):
        await stream_of([TextDelta("Hel", "small"), refused("all_backends_failed")])
    with pytest.raises(openai.APIError, match="no answer within"):
        await stream_of([TextDelta("Hel", "small"), timed_out(2.0)])


async def test_text_that_would_have_to_be_taken_back_ends_the_stream() -> None:
    with pytest.raises(openai.APIError, match="the answer changed after part of it was sent"):
        await stream_of([TextDelta("Hello", "small"), TextDelta("Goodbye", "medium", restart=True), ok("Goodbye")])


async def test_a_restart_before_anything_was_sent_is_just_the_text() -> None:
    chunks, _ = await stream_of([TextDelta("Goodbye", "medium", restart=True), ok("Goodbye")])
    assert text_of(chunks) == "Goodbye"
    assert chunks[0].model == "medium"
