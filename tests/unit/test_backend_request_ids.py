"""Every backend call names the Turnout request it serves in ``X-Client-Request-Id``:
unstreamed and streamed chat calls in each wire format, and embeddings calls, whose
batches name each of their requests (comma-separated, bounded). Over
httpx.MockTransport, as the other backend tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backend_fixtures import Script, anthropic_message, completion_body, gemini_response, make_backend, make_request, ok, reply
from test_backend_anthropic import claude
from test_backend_embeddings import VECTORS, gemini_embeddings, openai_embeddings
from test_backend_gemini import gemini
from test_backend_streaming import anthropic_events, event_stream, gemini_chunks, openai_chunks
from test_backend_streaming import claude as streaming_claude
from test_backend_streaming import gemini as streaming_gemini
from test_backend_streaming import openai as streaming_openai
from turnout.consumers.backend import (
    CLIENT_REQUEST_ID,
    MAX_BATCH_REQUEST_IDS,
    MAX_CLIENT_REQUEST_ID,
    BackendError,
    EmbeddingResult,
    HttpChatBackend,
    client_request_id,
    client_request_ids,
    embedding_request_ids,
)
from turnout.consumers.embedding_batch import EmbeddingBatcher

REQUEST_ID = "0f8e5a3c9b2d4e6f8a1b3c5d7e9f0a2b"


def header(script: Script, call: int = 0) -> str | None:
    return script.requests[call].headers.get(CLIENT_REQUEST_ID)


async def complete(backend: HttpChatBackend, request_id: str = REQUEST_ID, **options: Any) -> None:
    try:
        await backend.complete(make_request(id=request_id), **options)
    finally:
        await backend.aclose()


async def embed(backend: HttpChatBackend, texts: list[str], request_ids: tuple[str, ...] | None = None) -> EmbeddingResult:
    """``backend.embed`` as the batcher calls it: in a task of its own that names the
    batch's requests (``embedding_request_ids``; unless given, those of the caller's context)."""

    async def in_batch_task() -> EmbeddingResult:
        if request_ids is not None:
            embedding_request_ids.set(request_ids)
        try:
            return await backend.embed(texts)
        finally:
            await backend.aclose()

    return await asyncio.create_task(in_batch_task())


# -- chat calls ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, body",
    [
        (make_backend, completion_body()),
        (claude, anthropic_message()),
        (gemini, gemini_response()),
    ],
    ids=["openai", "anthropic", "gemini"],
)
async def test_an_unstreamed_call_names_its_request(make, body):
    script = Script(reply(body))
    await complete(make(script))
    assert header(script) == REQUEST_ID


@pytest.mark.parametrize(
    "make, events",
    [
        (streaming_openai, openai_chunks("hi there")),
        (streaming_claude, anthropic_events(anthropic_message())),
        (streaming_gemini, gemini_chunks(["Hello", " world"])),
    ],
    ids=["openai", "anthropic", "gemini"],
)
async def test_a_streamed_call_names_its_request(make, events):
    script = event_stream(events)
    await complete(make(script))
    assert header(script) == REQUEST_ID


async def test_a_call_streamed_for_its_reader_names_its_request():
    script = event_stream(openai_chunks("hi there"))
    pieces: list[str] = []
    await complete(streaming_openai(script, stream=False), on_text=pieces.append)
    assert script.bodies[0]["stream"] is True and pieces
    assert header(script) == REQUEST_ID


async def test_each_call_names_its_own_request_and_the_shared_headers_stay_as_they_were():
    script = Script(ok())
    backend = make_backend(script)
    try:
        for request_id in ("first", "second"):
            await backend.complete(make_request(id=request_id))
    finally:
        await backend.aclose()
    assert [header(script, i) for i in range(2)] == ["first", "second"]
    assert [len(r.headers.get_list(CLIENT_REQUEST_ID)) for r in script.requests] == [1, 1]
    assert CLIENT_REQUEST_ID not in backend._headers


async def test_a_failed_call_names_its_request_as_the_call_after_it_does():
    script = Script(reply({"error": {"message": "boom"}}, 500), ok())
    backend = make_backend(script)
    try:
        with pytest.raises(BackendError):
            await backend.complete(make_request(id=REQUEST_ID))
        await backend.complete(make_request(id=REQUEST_ID))
    finally:
        await backend.aclose()
    assert [header(script, i) for i in range(2)] == [REQUEST_ID, REQUEST_ID]


@pytest.mark.parametrize(
    "request_id",
    ["caf\u00e9", "a\r\nX-Injected: 1", "tab\there", " padded", "x" * (MAX_CLIENT_REQUEST_ID + 1)],
    ids=["non-ascii", "crlf", "control", "leading-space", "too-long"],
)
async def test_an_id_that_cannot_travel_as_it_is_is_left_out_not_altered(request_id):
    script = Script(ok())
    await complete(make_backend(script), request_id)
    assert header(script) is None
    assert "x-injected" not in script.requests[0].headers


@pytest.mark.parametrize("request_id", ["req-1", "a b", "x" * MAX_CLIENT_REQUEST_ID, "a,b", "tenant/42:retry=1"])
def test_a_visible_ascii_id_travels_as_it_is(request_id):
    assert client_request_id(request_id) == request_id


# -- embeddings -----------------------------------------------------------------------------------
async def test_an_embeddings_call_names_the_requests_it_was_given():
    script = Script(reply(openai_embeddings(VECTORS)))
    await embed(make_backend(script), ["a", "b", "c"], request_ids=("r1", "r2"))
    assert header(script) == "r1,r2"


async def test_an_embeddings_call_names_the_requests_of_its_batch_from_the_context():
    script = Script(reply(gemini_embeddings(VECTORS)))

    async def in_batch_task() -> None:
        embedding_request_ids.set(("r1", "r2", "r3"))
        await embed(gemini(script, served_model="gemini-embedding-001"), ["a", "b", "c"])

    await asyncio.create_task(in_batch_task())
    assert header(script) == "r1,r2,r3"
    assert embedding_request_ids.get() == ()  # the task's setting stayed in the task


async def test_an_embeddings_call_for_no_named_request_sends_no_header():
    script = Script(reply(openai_embeddings(VECTORS)))
    await embed(make_backend(script), ["a", "b", "c"])
    assert header(script) is None


async def test_a_batch_sends_its_requests_ids_through_the_batcher():
    """The batcher's call (here straight to the backend, as the deployment's guarded call
    does) names every request that joined, in the order they joined."""
    script = Script(reply(openai_embeddings([[0.1], [0.2], [0.3]])))
    backend = make_backend(script)

    async def send(texts: list[str], tokens: int, budget_s: float) -> EmbeddingResult:
        return await backend.embed(texts)

    batcher = EmbeddingBatcher(send, max_texts=3, wait_s=3600)
    try:
        await asyncio.gather(
            batcher.embed(["a"], tokens=1, budget_s=30, request_id="r1"),
            batcher.embed(["b"], tokens=1, budget_s=30),  # a caller that names no request
            batcher.embed(["c"], tokens=1, budget_s=30, request_id="r3"),
        )
    finally:
        await backend.aclose()
    assert script.calls == 1
    assert header(script) == "r1,r3"


def test_a_batch_names_at_most_its_first_twenty_requests():
    ids = [f"r{i}" for i in range(MAX_BATCH_REQUEST_IDS + 5)]
    assert client_request_ids(ids) == ",".join(ids[:MAX_BATCH_REQUEST_IDS])


def test_a_batch_header_stays_within_the_length_limit():
    ids = [f"{i:02d}" + "x" * 98 for i in range(10)]  # 100 characters each: five fit with their commas
    value = client_request_ids(ids)
    assert value == ",".join(ids[:5]) and len(value) <= MAX_CLIENT_REQUEST_ID


def test_a_batch_leaves_out_ids_that_hold_a_comma_or_cannot_travel():
    assert client_request_ids(["a,b", "ok", "caf\u00e9", "", "fine"]) == "ok,fine"
    assert client_request_ids(["a,b", "caf\u00e9"]) is None
    assert client_request_ids([]) is None
