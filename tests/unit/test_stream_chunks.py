"""A streamed request's answer leaves the worker as it is written (issue 6): the chunk
batching policy, the text pieces each wire format hands over, serve() publishing chunks
per attempt (a call cut mid-stream is retried and its pending text dropped), and the
worker handing chunks to its producer before the final response."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from backend_fixtures import FakeRecord, Script, anthropic_message, make_config, make_request, make_slip, ok, running_simulator
from test_backend_streaming import anthropic_events, claude, event_stream, gemini, gemini_chunks, openai, openai_chunks
from test_serving import assert_publishable, responses
from test_simulator import instant, simulator_settings
from test_worker_dedup import settings  # noqa: F401  (the fixture)
from turnout.consumers.anthropic_backend import AnthropicMessagesBackend
from turnout.consumers.backend import BackendError, OpenAIChatBackend
from turnout.consumers.cache import ResponseCache
from turnout.consumers.chunks import ChunkBatcher
from turnout.consumers.serving import Deployment, serve, streams
from turnout.consumers.worker import ModelWorker
from turnout.producers.streaming import StreamText
from turnout.schemas.models import InferenceResponse, ResponseChunk
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import WorkerSettings
from turnout.schemas.topics import Topics
from turnout.schemas.worker_config import CacheConfig, StreamChunkConfig

TOPICS = Topics("tt")
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
ANSWER = "one two three four five six seven eight nine ten"


# -- the batching policy ------------------------------------------------------------------------
@dataclass
class Timer:
    delay_s: float
    callback: Any
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    """``call_later`` whose timers fire only when the test says so."""

    timers: list[Timer] = field(default_factory=list)

    def __call__(self, delay_s: float, callback: Any) -> Timer:
        self.timers.append(Timer(delay_s, callback))
        return self.timers[-1]

    def fire(self) -> None:
        for timer in [t for t in self.timers if not t.cancelled]:
            timer.cancelled = True
            timer.callback()


def batcher(chunks: list[ResponseChunk], loop: FakeLoop, *, max_deltas: int = 3, max_interval_ms: float = 40, attempt: int = 2) -> ChunkBatcher:
    config = StreamChunkConfig(max_deltas=max_deltas, max_interval_ms=max_interval_ms)
    return ChunkBatcher(make_request(stream=True), attempt, "a", config, chunks.append, schedule=loop)


def test_the_first_piece_goes_alone_at_once_then_pieces_gather_up_to_max_deltas():
    chunks: list[ResponseChunk] = []
    loop = FakeLoop()
    on_text = batcher(chunks, loop)
    on_text("one")
    assert [c.delta for c in chunks] == ["one"]  # the caller's first token is not held back
    on_text(" two")
    on_text(" three")
    assert len(chunks) == 1 and len(loop.timers) == 1 and loop.timers[0].delay_s == pytest.approx(0.04)
    on_text(" four")  # the third pending piece: max_deltas reached
    assert [c.delta for c in chunks] == ["one", " two three four"]
    assert loop.timers[0].cancelled  # nothing left to wait for
    assert [(c.request_id, c.tenant, c.attempt, c.seq, c.model) for c in chunks] == [("req-1", "acme", 2, 0, "a"), ("req-1", "acme", 2, 1, "a")]


def test_a_piece_waits_at_most_max_interval_ms():
    chunks: list[ResponseChunk] = []
    loop = FakeLoop()
    on_text = batcher(chunks, loop)
    on_text("one")
    on_text(" two")
    on_text(" three")
    assert len(loop.timers) == 1  # one timer per batch, not per piece
    loop.fire()
    assert [c.delta for c in chunks] == ["one", " two three"]
    on_text(" four")
    assert len(loop.timers) == 2  # the next batch has a timer of its own


async def test_on_the_event_loop_the_timer_publishes_a_waiting_piece_by_itself():
    chunks: list[ResponseChunk] = []
    on_text = ChunkBatcher(make_request(stream=True), 0, "a", StreamChunkConfig(max_interval_ms=1), chunks.append)
    on_text("one")
    on_text(" two")
    await asyncio.sleep(0.05)  # no more pieces come: the loop's timer (1 ms) has fired long before this wakes
    assert [c.delta for c in chunks] == ["one", " two"]


def test_flush_publishes_the_rest_and_discard_drops_it_for_good():
    chunks: list[ResponseChunk] = []
    loop = FakeLoop()
    answered = batcher(chunks, loop)
    for piece in ("a", "b", "c"):
        answered(piece)
    answered.flush()
    answered.flush()  # nothing pending: nothing more
    assert [c.delta for c in chunks] == ["a", "bc"]

    chunks.clear()
    failed = batcher(chunks, FakeLoop())
    failed("a")
    failed("b")
    failed.discard()
    assert [c.delta for c in chunks] == ["a"]  # "b" belonged to a failed call: never published


def test_max_deltas_one_publishes_every_piece():
    chunks: list[ResponseChunk] = []
    on_text = batcher(chunks, FakeLoop(), max_deltas=1)
    for piece in ("a", "b", "c"):
        on_text(piece)
    assert [(c.seq, c.delta) for c in chunks] == [(0, "a"), (1, "b"), (2, "c")]


@pytest.mark.parametrize("field_name, value", [("max_deltas", 0), ("max_deltas", 5000), ("max_interval_ms", 0), ("max_interval_ms", 60_000)])
def test_the_policy_is_validated_with_the_key_named(field_name, value):
    with pytest.raises(ValidationError, match=f"stream_chunks.{field_name}"):
        WorkerSettings.model_validate({"stream_chunks": {field_name: value}})


# -- the pieces each wire format hands over ---------------------------------------------------------
async def pieces_of(backend, request=None, on_text: list[str] | None = None) -> tuple[list[str], str]:
    pieces: list[str] = [] if on_text is None else on_text
    try:
        completion = await backend.complete(request or make_request(), on_text=pieces.append)
    finally:
        await backend.aclose()
    return pieces, completion.content


async def test_openai_pieces_join_into_the_answer_even_on_a_deployment_that_does_not_stream():
    script = event_stream(openai_chunks(ANSWER))
    pieces, content = await pieces_of(openai(script, stream=False))
    assert script.bodies[0]["stream"] is True  # the caller's wish wins over the deployment's default
    assert len(pieces) == 10 and "".join(pieces) == content == ANSWER


async def test_anthropic_text_deltas_are_pieces_and_a_tools_input_is_not():
    blocks = [{"type": "text", "text": ANSWER}, {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"city": "Paris"}}]
    pieces, content = await pieces_of(claude(event_stream(anthropic_events(anthropic_message(blocks, stop_reason="tool_use")))))
    assert len(pieces) > 1 and "".join(pieces) == content == ANSWER


async def test_gemini_parts_are_pieces():
    pieces, content = await pieces_of(gemini(event_stream(gemini_chunks(["one two", " three", " four"]))))
    assert pieces == ["one two", " three", " four"] and content == "one two three four"


async def test_a_server_that_ignores_stream_hands_over_no_piece():
    pieces, content = await pieces_of(openai(Script(ok(content="whole")), stream=False))
    assert (pieces, content) == ([], "whole")


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_the_simulators_streams_hand_over_their_text_piece_by_piece_and_a_cut_one_part_of_it(api):
    settings = simulator_settings(steady=instant(output_tokens=30), cut=instant(output_tokens=30, truncate_rate=1.0))
    async with running_simulator(settings) as (_, port):
        url = f"http://127.0.0.1:{port}/v1"

        def backend(model: str):
            if api == "anthropic":
                return AnthropicMessagesBackend(url, model, max_output_tokens=64, api_key=SecretStr("k"))
            return OpenAIChatBackend(url, model)

        pieces, content = await pieces_of(backend("steady"))
        assert len(pieces) > 10 and "".join(pieces) == content
        cut: list[str] = []
        with pytest.raises(BackendError, match="stream"):
            await pieces_of(backend("cut"), on_text=cut)
    assert cut and content.startswith("".join(cut).replace("[cut]", "[steady]"))  # the same words, until the cut


# -- serve(): chunks per attempt ----------------------------------------------------------------
def deployment(script: Script, model_id: str = "a", *, stream: bool = False) -> Deployment:
    """Not streaming by default: a streamed request streams all the same."""
    config = make_config(stream=stream)
    backend = OpenAIChatBackend(config.base_url or "", config.served_model, provider=config.provider, transport=script.transport(), stream=stream)
    return Deployment(model_id, config, backend, asyncio.Semaphore(config.concurrency))


SETTINGS = WorkerSettings(backoff_base_s=0.001, backoff_max_s=0.002, stream_chunks=StreamChunkConfig(max_deltas=4))


async def serve_streamed(slip, dep: Deployment) -> tuple[Any, list[ResponseChunk]]:
    chunks: list[ResponseChunk] = []
    try:
        outcome = await serve(slip, dep, TOPICS, SETTINGS, random.Random(1), chunks.append)
    finally:
        await dep.backend.aclose()
    return outcome, chunks


def shown_text(chunks: list[ResponseChunk], response: InferenceResponse) -> str:
    """What a reader following the stream ends up showing (``producers.streaming``)."""
    text = ""
    follower = StreamText()
    for delta in [follower.chunk(c) for c in chunks] + [follower.final(response)]:
        if delta is not None:
            text = delta.text if delta.restart else text + delta.text
    return text


async def test_a_streamed_request_publishes_chunks_that_add_up_to_the_response():
    outcome, chunks = await serve_streamed(make_slip(make_request(stream=True)), deployment(event_stream(openai_chunks(ANSWER))))
    assert_publishable(outcome)
    [response] = responses(outcome)
    assert [c.seq for c in chunks] == [0, 1, 2, 3] and {c.attempt for c in chunks} == {0}  # 1 + 4 + 4 + 1 pieces
    assert "".join(c.delta for c in chunks) == response.content == ANSWER
    for chunk in chunks:
        assert AvroCodec().decode(AvroCodec().encode(chunk), ResponseChunk) == chunk


async def test_an_unstreamed_request_publishes_no_chunk_even_from_a_streaming_deployment():
    outcome, chunks = await serve_streamed(make_slip(make_request()), deployment(event_stream(openai_chunks(ANSWER)), stream=True))
    assert chunks == [] and responses(outcome)[0].content == ANSWER


def test_one_rule_says_which_answers_stream_for_serve_and_the_worker_alike():
    assert streams(make_slip(make_request(stream=True)))
    assert not streams(make_slip(make_request()))
    assert not streams(make_slip(make_request(stream=True), shadow=True))
    assert not streams(make_slip(make_request(messages=[], input=["text to embed"])))


async def test_a_shadow_copy_is_never_streamed():
    slip = make_slip(make_request(stream=True), shadow=True)
    _, chunks = await serve_streamed(slip, deployment(event_stream(openai_chunks(ANSWER))))
    assert chunks == []


async def test_a_call_cut_mid_stream_is_retried_as_a_new_attempt_whose_text_replaces_it():
    cut = event_stream(openai_chunks("the first try was cut")[:-4])  # no [DONE]: stream_interrupted
    whole = event_stream(openai_chunks(ANSWER))
    script = Script(cut.replies[0], whole.replies[0])
    outcome, chunks = await serve_streamed(make_slip(make_request(stream=True)), deployment(script))
    [response] = responses(outcome)
    first = [c for c in chunks if c.attempt == 0]
    second = [c for c in chunks if c.attempt == 1]
    assert first and first[0].delta == "the"  # sent before the cut was known
    assert "".join(c.delta for c in first) != "the first try was cut"  # what was pending at the cut is dropped
    assert "".join(c.delta for c in second) == response.content == ANSWER
    assert shown_text(chunks, response) == ANSWER


async def test_a_fallback_continues_with_the_attempt_numbers_of_the_slip():
    failing = Script(event_stream(openai_chunks("never finished")[:-3]).replies[0])
    forwarded_outcome, first_chunks = await serve_streamed(make_slip(make_request(stream=True), plan=("a", "b")), deployment(failing))
    [forwarded] = [m.record for m in forwarded_outcome.messages if m.topic == TOPICS.model("b")]
    assert {c.attempt for c in first_chunks} == {0, 1, 2}  # max_retries = 2: three cut calls
    outcome, chunks = await serve_streamed(forwarded, deployment(event_stream(openai_chunks(ANSWER)), "b"))
    [response] = responses(outcome)
    assert {(c.attempt, c.model) for c in chunks} == {(3, "b")}
    assert shown_text(first_chunks + chunks, response) == ANSWER


def latest_attempt_text(chunks: list[ResponseChunk]) -> str:
    """What a reader of the raw chunks reads: the deltas of the highest attempt."""
    latest = max(c.attempt for c in chunks)
    return "".join(c.delta for c in chunks if c.attempt == latest)


async def test_an_answer_the_server_would_not_stream_comes_as_one_chunk_after_its_call():
    outcome, chunks = await serve_streamed(make_slip(make_request(stream=True)), deployment(Script(ok(content="whole answer"))))
    assert [(c.attempt, c.seq, c.delta) for c in chunks] == [(1, 0, "whole answer")]  # above the call's attempt 0
    assert responses(outcome)[0].content == "whole answer"


async def test_a_cache_hit_comes_as_one_chunk():
    dep = deployment(event_stream(openai_chunks(ANSWER)))
    dep.cache = ResponseCache(CacheConfig())
    request = make_request(stream=True, temperature=0)
    first: list[ResponseChunk] = []
    again: list[ResponseChunk] = []
    try:
        await serve(make_slip(request), dep, TOPICS, SETTINGS, random.Random(1), first.append)
        outcome = await serve(make_slip(request.model_copy(update={"id": "req-2"})), dep, TOPICS, SETTINGS, random.Random(1), again.append)
    finally:
        await dep.backend.aclose()
    assert latest_attempt_text(first) == ANSWER and responses(outcome)[0].cache_hit
    assert [(c.request_id, c.attempt, c.seq, c.delta) for c in again] == [("req-2", 0, 0, ANSWER)]


async def test_a_structured_answer_repaired_after_it_was_streamed_is_sent_again_repaired():
    fenced = '```json\n{"answer": "yes"}\n```'
    request = make_request(stream=True, response_schema=json.dumps(SCHEMA))
    outcome, chunks = await serve_streamed(make_slip(request), deployment(event_stream(openai_chunks(fenced))))
    [response] = responses(outcome)
    assert response.validation == "repaired" and json.loads(response.content) == {"answer": "yes"}
    assert "".join(c.delta for c in chunks if c.attempt == 0) == fenced  # as the model wrote it
    assert latest_attempt_text(chunks) == response.content and max(c.attempt for c in chunks) == 1


async def test_an_error_answer_adds_no_chunk():
    failing = Script(event_stream(openai_chunks("never finished")[:-3]).replies[0])
    outcome, chunks = await serve_streamed(make_slip(make_request(stream=True), plan=("a",)), deployment(failing))
    assert responses(outcome)[0].status == "error"
    assert sorted({c.attempt for c in chunks}) == [0, 1, 2]  # the three cut calls' first pieces, nothing after


# -- the worker: chunks to its producer, before the final response ---------------------------------
class RecordingProducer:
    """aiokafka's ``send``: enqueue (suspending once, as a full batch would), return the ack."""

    def __init__(self, refuse_seq: int | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.refuse_seq = refuse_seq
        self.codec = AvroCodec()

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any = None) -> asyncio.Future:
        await asyncio.sleep(0)
        record = self.codec.writer_schema(value)[0]["name"]
        if record == "turnout.ResponseChunk" and self.codec.decode(value, ResponseChunk).seq == self.refuse_seq:
            raise RuntimeError("buffer full")
        self.sent.append((topic, key, value))
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack


async def handle_streamed(settings, producer: RecordingProducer) -> tuple[Any, list[ResponseChunk]]:  # noqa: F811
    worker = ModelWorker(settings, "a")
    slip = make_slip(make_request(stream=True, reply_topic="tt.replies.mine"))
    dep = deployment(event_stream(openai_chunks(ANSWER)))
    try:
        outcome = await worker._handle(FakeRecord(worker.topic, 0, 1, b"req-1", worker.codec.encode(slip)), dep, producer)  # type: ignore[arg-type]
    finally:
        await dep.backend.aclose()
    assert {(topic, key) for topic, key, _ in producer.sent} == {("tt.replies.mine", b"req-1")}  # one partition: the response's
    return outcome, [worker.codec.decode(value, ResponseChunk) for _, _, value in producer.sent]


async def test_the_worker_hands_every_chunk_to_its_producer_in_order_before_it_returns_the_final_response(settings):  # noqa: F811
    outcome, chunks = await handle_streamed(settings, RecordingProducer())
    assert [c.seq for c in chunks] == [0, 1] and "".join(c.delta for c in chunks) == ANSWER  # "one", then the other nine pieces
    [response] = [m.record for m in outcome.messages if m.topic == "tt.replies.mine"]
    assert response.content == ANSWER and outcome.answered


async def test_a_chunk_the_producer_refuses_is_lost_but_the_answer_is_not(settings):  # noqa: F811
    outcome, chunks = await handle_streamed(settings, RecordingProducer(refuse_seq=0))
    assert [c.seq for c in chunks] == [1]
    [response] = [m.record for m in outcome.messages if m.topic == "tt.replies.mine"]
    assert response.content == ANSWER and outcome.answered
