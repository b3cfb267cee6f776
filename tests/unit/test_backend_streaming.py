"""Streamed chat calls (``stream=True``) over httpx.MockTransport, in each provider's wire
format: the answer equals the unstreamed one, the time to first token is measured, and a
stream that fails after its 200 (cut off, an error event, bytes that are not the format's)
is classified like the same failure before it.

The event bodies are checked against the official SDKs' own types (openai's
``ChatCompletionChunk``, anthropic's ``RawMessageStreamEvent``, google-genai's
``GenerateContentResponse``), so these tests read the real wire formats."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
from google.genai import types as genai_types
from openai.types.chat import ChatCompletionChunk
from pydantic import SecretStr, TypeAdapter

from backend_fixtures import (
    BASE_URL,
    SECRET,
    Script,
    anthropic_message,
    completion_body,
    gemini_response,
    make_request,
    reply,
)
from turnout.consumers.anthropic_backend import AnthropicMessagesBackend
from turnout.consumers.backend import BackendError, Completion, HttpChatBackend, OpenAIChatBackend
from turnout.consumers.gemini_backend import GeminiBackend

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
_ANTHROPIC_EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)


# -- streams as the providers send them ---------------------------------------------------------
class _Events(httpx.AsyncByteStream):
    """A body that arrives in pieces, optionally pausing after the first one (as a model
    does between its first token and the rest), or breaking off with ``error``."""

    def __init__(self, pieces: list[bytes], pause_s: float = 0.0, error: Exception | None = None) -> None:
        self.pieces, self.pause_s, self.error = pieces, pause_s, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, piece in enumerate(self.pieces):
            yield piece
            if index == 0 and self.pause_s:
                await asyncio.sleep(self.pause_s)
        if self.error is not None:
            raise self.error


def event_stream(pieces: list[bytes], **options: Any) -> Script:
    """A script answering every call with these events (a fresh stream each time)."""
    return Script(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, stream=_Events(pieces, **options)))


def data(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n\n"


def openai_chunks(content: str, *, finish_reason: str = "stop", token_probability: float | None = None, usage: bool = True) -> list[bytes]:
    """``completion_body(content, ...)`` as OpenAI streams it, one chunk per word."""
    whole = completion_body(content, finish_reason=finish_reason, token_probability=token_probability)
    frame = {"id": whole["id"], "object": "chat.completion.chunk", "created": 1, "model": whole["model"]}
    logprobs = (whole["choices"][0].get("logprobs") or {}).get("content")
    words = content.split(" ")
    chunks = [{**frame, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        choice: dict[str, Any] = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        if logprobs is not None:
            choice["logprobs"] = {"content": [logprobs[i]], "refusal": None}
        chunks.append({**frame, "choices": [choice]})
    chunks.append({**frame, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    if usage:
        chunks.append({**frame, "choices": [], "usage": whole["usage"]})
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return [data(c) for c in chunks] + [data("[DONE]")]


def anthropic_events(message: dict[str, Any], *, stop: bool = True) -> list[bytes]:
    """``message`` (a Messages response) as Anthropic streams it."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            text = block["text"]
            events += [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text[i : i + 3]}} for i in range(0, len(text), 3)]
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
            raw = json.dumps(block["input"])
            events += [{"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": raw[i : i + 5]}} for i in range(0, len(raw), 5)]
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}})
    if stop:
        events.append({"type": "message_stop"})
    for event in events:
        if event["type"] != "ping":  # the SDK reads past pings without a type for them
            _ANTHROPIC_EVENT.validate_python(event)
    return [f"event: {e['type']}\n".encode() + data(e) for e in events]


def gemini_chunks(texts: list[str], *, finish_reason: str | None = "STOP", avg_logprobs: float | None = None) -> list[bytes]:
    """A streamGenerateContent?alt=sse answer: one chunk per text, the last with the finish
    reason and the final usage (CRLF line ends, as Google sends them)."""
    chunks = []
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        chunk = gemini_response(
            [{"text": text}],
            finish_reason=finish_reason if last else None,
            candidates_tokens=2 * (i + 1),
            avg_logprobs=avg_logprobs if last else None,
        )
        genai_types.GenerateContentResponse.model_validate(chunk)
        chunks.append(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
    return chunks


# -- backends ----------------------------------------------------------------------------------------
def openai(script: Script, **options: Any) -> OpenAIChatBackend:
    return OpenAIChatBackend(BASE_URL, "served-a", transport=script.transport(), **{"stream": True, **options})


def claude(script: Script, **options: Any) -> AnthropicMessagesBackend:
    return AnthropicMessagesBackend(
        BASE_URL, "claude-x", max_output_tokens=100, api_key=SecretStr("k"), transport=script.transport(), **{"stream": True, **options}
    )


def gemini(script: Script, **options: Any) -> GeminiBackend:
    return GeminiBackend(BASE_URL, "gemini-2.5-flash", api_key=SecretStr("k"), transport=script.transport(), **{"stream": True, **options})


async def complete(backend: HttpChatBackend, request=None, **options: Any) -> Completion:
    try:
        return await backend.complete(request or make_request(), **options)
    finally:
        await backend.aclose()


async def failure(backend: HttpChatBackend, request=None) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await complete(backend, request)
    return caught.value


def answer_of(completion: Completion) -> tuple:
    """What a call answered, without its timings."""
    return (completion.content, completion.finish_reason, completion.input_tokens, completion.output_tokens, completion.confidence)


# -- OpenAI ------------------------------------------------------------------------------------------
async def test_openai_stream_asks_for_usage_and_goes_to_the_same_endpoint():
    script = event_stream(openai_chunks("hi there"))
    await complete(openai(script))
    assert script.requests[0].url.path == "/v1/chat/completions"
    assert script.bodies[0]["stream"] is True
    assert script.bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("finish_reason", ["stop", "length"])
async def test_openai_streamed_answer_equals_the_unstreamed_one(finish_reason):
    content = "a cascade sends the cheap model first"
    streamed = await complete(openai(event_stream(openai_chunks(content, finish_reason=finish_reason, token_probability=0.5))), logprobs=True)
    whole = await complete(openai(Script(reply(completion_body(content, finish_reason=finish_reason, token_probability=0.5))), stream=False), logprobs=True)
    assert answer_of(streamed) == answer_of(whole)
    assert streamed.confidence == pytest.approx(0.5)
    assert (streamed.input_tokens, streamed.output_tokens) == (11, 3)
    assert streamed.ttft_ms is not None and whole.ttft_ms is None


async def test_openai_ttft_is_taken_at_the_first_token_not_at_the_end():
    """The role chunk and the first word arrive together, then the stream pauses: the
    pause falls between the first token and the end. (A lower bound from a sleep, which
    never ends early: no assumption about how fast the machine is.)"""
    pieces = openai_chunks("one two three")
    first_token = [pieces[0] + pieces[1]] + pieces[2:]  # role and first word arrive together, then a pause
    completion = await complete(openai(event_stream(first_token, pause_s=0.05)))
    assert completion.ttft_ms is not None
    assert completion.ttft_ms < completion.latency_ms
    assert completion.latency_ms - completion.ttft_ms >= 40  # the pause came after the first token (sleep never ends early)


async def test_openai_stream_cut_before_done_is_a_retryable_interruption():
    pieces = openai_chunks("one two three")
    error = await failure(openai(event_stream(pieces[:3])))
    assert (error.code, error.retryable) == ("stream_interrupted", True)


async def test_openai_stream_broken_by_the_connection_is_a_retryable_interruption():
    pieces = openai_chunks("one two three")
    error = await failure(openai(event_stream(pieces[:3], error=httpx.RemoteProtocolError("peer closed connection"))))
    assert (error.code, error.retryable) == ("stream_interrupted", True)


async def test_openai_stream_that_stalls_is_a_timeout():
    error = await failure(openai(event_stream(openai_chunks("one")[:2], error=httpx.ReadTimeout("no bytes"))))
    assert (error.code, error.retryable) == ("timeout", True)


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [("server_error", "backend_error", True), ("invalid_request_error", "backend_rejected", False), ("rate_limit_exceeded", "rate_limited", True)],
)
async def test_openai_error_chunk_mid_stream_is_classified_by_its_type(kind, code, retryable):
    pieces = openai_chunks("one two three")[:3] + [data({"error": {"message": f"went wrong {SECRET}", "type": kind, "param": None, "code": None}})]
    script = event_stream(pieces)
    backend = OpenAIChatBackend(BASE_URL, "served-a", api_key=SecretStr(SECRET), transport=script.transport(), stream=True)
    error = await failure(backend)
    assert (error.code, error.retryable) == (code, retryable)
    assert "went wrong" in error.message and SECRET not in error.message  # the key never leaves in an error


async def test_openai_event_that_is_not_json_is_a_malformed_response():
    error = await failure(openai(event_stream([data("{not json")])))
    assert (error.code, error.retryable) == ("malformed_response", True)


async def test_a_server_that_ignores_stream_is_read_whole_without_a_ttft():
    completion = await complete(openai(Script(reply(completion_body("plain answer")))))
    assert (completion.content, completion.ttft_ms) == ("plain answer", None)


async def test_an_error_status_to_a_stream_request_is_classified_as_before():
    error = await failure(openai(Script(reply({"error": {"message": "slow down", "type": "requests"}}, 429, {"retry-after": "2"}))))
    assert (error.code, error.retry_after_s) == ("rate_limited", 2.0)


async def test_openai_tool_call_deltas_count_as_the_first_token_and_leave_the_text_empty():
    frame = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
    chunks = [
        {**frame, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish_reason": None}]},
        {**frame, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":1}'}}]}, "finish_reason": None}]},
        {**frame, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**frame, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}},
    ]
    completion = await complete(openai(event_stream([data(c) for c in chunks] + [data("[DONE]")])))
    assert answer_of(completion) == ("", "tool_calls", 4, 5, None)


# -- Anthropic ------------------------------------------------------------------------------------
async def test_anthropic_streamed_answer_equals_the_unstreamed_one():
    message = anthropic_message([{"type": "text", "text": "Hello there, streaming world!"}], input_tokens=12, output_tokens=6, cache_read_input_tokens=3)
    script = event_stream(anthropic_events(message))
    streamed = await complete(claude(script))
    whole = await complete(claude(Script(reply(message)), stream=False))
    assert script.bodies[0]["stream"] is True and script.requests[0].url.path == "/v1/messages"
    assert answer_of(streamed) == answer_of(whole) == ("Hello there, streaming world!", "stop", 15, 6, None)
    assert streamed.ttft_ms is not None and streamed.ttft_ms <= streamed.latency_ms


async def test_anthropic_structured_answer_streamed_as_tool_input_equals_the_unstreamed_one():
    message = anthropic_message(
        [{"type": "tool_use", "id": "toolu_1", "name": "respond", "input": {"answer": "forty-two", "sure": True}}], stop_reason="tool_use"
    )
    request = make_request(response_schema=json.dumps(SCHEMA))
    streamed = await complete(claude(event_stream(anthropic_events(message))), request)
    whole = await complete(claude(Script(reply(message)), stream=False), request)
    assert answer_of(streamed) == answer_of(whole)
    assert json.loads(streamed.content) == {"answer": "forty-two", "sure": True} and streamed.finish_reason == "stop"


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [("overloaded_error", "backend_error", True), ("api_error", "backend_error", True), ("invalid_request_error", "backend_rejected", False)],
)
async def test_anthropic_error_event_is_classified_by_its_type(kind, code, retryable):
    events = anthropic_events(anthropic_message())[:3]
    error_event = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    anthropic.types.ErrorResponse.model_validate(error_event)
    error = await failure(claude(event_stream([*events, b"event: error\n" + data(error_event)])))
    assert (error.code, error.retryable) == (code, retryable)
    assert kind in error.message


async def test_anthropic_stream_without_message_stop_was_cut():
    error = await failure(claude(event_stream(anthropic_events(anthropic_message(), stop=False))))
    assert (error.code, error.retryable) == ("stream_interrupted", True)


async def test_anthropic_thinking_deltas_are_not_the_first_token():
    message = anthropic_message([{"type": "text", "text": "Yes."}])
    events = anthropic_events(message)
    thinking = [
        b"event: content_block_start\n" + data({"type": "content_block_start", "index": 1, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        b"event: content_block_delta\n" + data({"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        b"event: content_block_stop\n" + data({"type": "content_block_stop", "index": 1}),
    ]
    # the thinking block first (after message_start and ping), then a pause, then the text
    pieces = [b"".join(events[:2] + thinking), *events[2:]]
    completion = await complete(claude(event_stream(pieces, pause_s=0.05)))
    assert completion.content == "Yes."
    assert completion.ttft_ms is not None and completion.ttft_ms >= 40  # the text came after the pause


# -- Gemini ------------------------------------------------------------------------------------------
async def test_gemini_streams_from_its_own_endpoint_with_alt_sse():
    script = event_stream(gemini_chunks(["Hello", " world"]))
    await complete(gemini(script))
    url = script.requests[0].url
    assert url.path == "/v1/models/gemini-2.5-flash:streamGenerateContent"
    assert url.params["alt"] == "sse"
    assert "stream" not in script.bodies[0]


async def test_gemini_streamed_answer_equals_the_unstreamed_one():
    streamed = await complete(gemini(event_stream(gemini_chunks(["Hello", ", streamed", " world"], avg_logprobs=math.log(0.8)))))
    whole = await complete(gemini(Script(reply(gemini_response([{"text": "Hello, streamed world"}], candidates_tokens=6, avg_logprobs=math.log(0.8)))), stream=False))
    assert answer_of(streamed) == answer_of(whole)
    assert (streamed.content, streamed.input_tokens, streamed.output_tokens) == ("Hello, streamed world", 8, 6)
    assert streamed.confidence == pytest.approx(0.8)


async def test_gemini_blocked_prompt_ends_the_stream_as_a_content_filter():
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    completion = await complete(gemini(event_stream([data(blocked)])))
    assert (completion.content, completion.finish_reason, completion.input_tokens) == ("", "content_filter", 8)


async def test_gemini_stream_without_a_finish_reason_was_cut():
    error = await failure(gemini(event_stream(gemini_chunks(["Hello", " wor"], finish_reason=None))))
    assert (error.code, error.retryable) == ("stream_interrupted", True)


async def test_gemini_error_chunk_is_classified_by_its_status():
    error_chunk = data({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    error = await failure(gemini(event_stream([gemini_chunks(["Hel"], finish_reason=None)[0], error_chunk])))
    assert (error.code, error.retryable) == ("backend_error", True)


# -- never streamed ------------------------------------------------------------------------------------
async def test_embeddings_never_stream():
    script = Script(reply({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}], "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
    backend = openai(script)
    try:
        result = await backend.embed(["a text"])
    finally:
        await backend.aclose()
    assert result.vectors == [[0.5, 0.5]]
    assert "stream" not in script.bodies[0] and "stream_options" not in script.bodies[0]
