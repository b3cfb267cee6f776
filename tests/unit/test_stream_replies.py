"""Reading a streamed answer (issue 6): the ``stream`` flag's schema evolution, reply
records told apart by their writer schema, and ``StreamText``/``follow`` turning chunks
from several attempts and the final response into text that ends equal to the answer."""

from __future__ import annotations

import asyncio
import random

import pytest
from factories import T0, MockRegistry, full_event, full_routed, make_request, single_object
from test_embedding_requests import without_field
from test_serde import catalog_with
from test_stream_chunks import shown_text

from turnout.producers.correlation import ResponseTimeout
from turnout.producers.streaming import ReplyStreams, StreamText, TextDelta, follow, read_reply
from turnout.schemas.catalog import bundled_catalog
from turnout.schemas.models import ErrorInfo, InferenceRequest, InferenceResponse, ResponseChunk, RoutedRequest
from turnout.schemas.serde import AvroCodec, DecodeError

CODEC = AvroCodec()


def chunk(delta: str, attempt: int = 0, seq: int = 0, model: str = "small") -> ResponseChunk:
    return ResponseChunk(request_id="req-1", tenant="acme", attempt=attempt, seq=seq, delta=delta, model=model, created_at=T0)


def answer(content: str | None, status: str = "ok") -> InferenceResponse:
    error = ErrorInfo(code="all_backends_failed", message="x") if status == "error" else None
    return InferenceResponse(id="req-1", tenant="acme", status=status, content=content, model="small", error=error, created_at=T0)


def attempt_chunks(attempt: int, *deltas: str) -> list[ResponseChunk]:
    return [chunk(d, attempt, seq) for seq, d in enumerate(deltas)]


def deltas(chunks: list[ResponseChunk], response: InferenceResponse) -> list[TextDelta]:
    follower = StreamText()
    return [d for d in [follower.chunk(c) for c in chunks] + [follower.final(response)] if d is not None]


# -- the schemas ------------------------------------------------------------------------------
def test_the_stream_flag_is_off_unless_asked_and_only_for_chat_requests():
    assert make_request().stream is False
    assert CODEC.decode(CODEC.encode(make_request(stream=True)), InferenceRequest).stream is True
    with pytest.raises(ValueError, match="takes no stream"):
        InferenceRequest(id="e", tenant="t", input=["text"], stream=True)


def test_a_request_written_before_the_stream_flag_reads_unstreamed_alone_and_on_a_slip():
    old_request = without_field("turnout.InferenceRequest", "stream")
    old_routed = without_field("turnout.RoutedRequest", "request")
    old_routed["fields"].insert(0, {"name": "request", "type": old_request})
    catalog, (request_v1, routed_v1) = catalog_with(old_request, old_routed)
    codec = AvroCodec(catalog=catalog)
    request = make_request()
    datum = {k: v for k, v in request.model_dump().items() if k != "stream"}
    assert codec.decode(single_object(request_v1, datum), InferenceRequest) == request
    slip_datum = full_routed().model_copy(update={"request": request}).model_dump()
    slip_datum["request"] = datum
    assert codec.decode(single_object(routed_v1, slip_datum), RoutedRequest).request.stream is False


def test_a_reader_from_before_the_stream_flag_reads_a_streamed_request_without_it():
    old_request = without_field("turnout.InferenceRequest", "stream")
    catalog, _ = catalog_with()
    catalog.add_bundled("turnout.InferenceRequest", old_request)  # the old reader's own schema
    catalog.register(bundled_catalog().registry_json("turnout.InferenceRequest"))  # and the new writer's, as a registry gives it
    datum = AvroCodec(catalog=catalog).decode_datum(CODEC.encode(make_request(stream=True)), catalog.by_name("turnout.InferenceRequest"))
    assert "stream" not in datum and datum["id"] == "req-1"


# -- telling reply records apart --------------------------------------------------------------
def test_reply_records_are_read_as_what_their_writer_wrote():
    assert read_reply(CODEC, CODEC.encode(chunk("hi"))) == chunk("hi")
    assert read_reply(CODEC, CODEC.encode(answer("hi"))) == answer("hi")
    with pytest.raises(DecodeError, match="turnout.RoutingEvent is not one of the records read here"):
        read_reply(CODEC, CODEC.encode(full_event()))
    with pytest.raises(DecodeError, match="not Turnout Avro"):
        read_reply(CODEC, b"plain text")


def test_reply_records_are_told_apart_in_the_confluent_wire_format_too():
    registry = MockRegistry()
    writer, reader = AvroCodec(registry.client()), AvroCodec(registry.client())
    assert [read_reply(reader, writer.encode(record)) for record in (chunk("hi"), answer("hi"))] == [chunk("hi"), answer("hi")]


def test_a_reader_that_expects_only_responses_skips_a_chunk_rather_than_misreading_it():
    """What every reader written before chunks does (``codec.decode(..., InferenceResponse)``
    in a try): the chunk fails to decode, it is not taken for an answer."""
    with pytest.raises(DecodeError):
        CODEC.decode(CODEC.encode(chunk("hi")), InferenceResponse)


# -- StreamText ---------------------------------------------------------------------------------
def test_chunks_of_one_attempt_are_shown_as_they_come_and_the_final_response_adds_nothing():
    assert deltas(attempt_chunks(0, "Hel", "lo ", "world"), answer("Hello world")) == [
        TextDelta("Hel", "small"),
        TextDelta("lo ", "small"),
        TextDelta("world", "small"),
    ]


def test_an_answer_never_streamed_comes_whole_from_the_final_response():
    """A cache hit, or a server that answered one JSON body despite stream = true."""
    assert deltas([], answer("cached words")) == [TextDelta("cached words", "small")]


def test_a_new_attempt_that_says_something_else_restarts_the_text():
    chunks = attempt_chunks(0, "The sky", " is gr") + attempt_chunks(2, "Blue", " skies")
    assert deltas(chunks, answer("Blue skies")) == [
        TextDelta("The sky", "small"),
        TextDelta(" is gr", "small"),
        TextDelta("Blue", "small", restart=True),
        TextDelta(" skies", "small"),
    ]


def test_a_new_attempt_that_repeats_what_was_shown_continues_it_without_a_restart():
    chunks = attempt_chunks(0, "one", " two") + attempt_chunks(1, "one", " two three", " four")
    assert deltas(chunks, answer("one two three four")) == [TextDelta("one", "small"), TextDelta(" two", "small"), TextDelta(" three", "small"), TextDelta(" four", "small")]


def test_late_chunks_of_an_abandoned_attempt_and_duplicates_are_ignored():
    chunks = [chunk("B", 1, 0), chunk("A-late", 0, 3), chunk("c", 1, 1), chunk("c", 1, 1)]
    assert "".join(d.text for d in deltas(chunks, answer("Bc"))) == "Bc"


def test_a_missing_chunk_holds_the_attempt_until_the_final_response_fills_it_in():
    chunks = [chunk("one", 0, 0), chunk(" three", 0, 2), chunk(" four", 0, 3)]  # seq 1 lost
    assert deltas(chunks, answer("one two three four")) == [TextDelta("one", "small"), TextDelta(" two three four", "small")]


def test_an_attempt_begun_again_after_a_worker_restart_starts_from_seq_zero():
    chunks = attempt_chunks(0, "Yes", ", it") + attempt_chunks(0, "No", ".")
    assert deltas(chunks, answer("No."))[-2:] == [TextDelta("No", "small", restart=True), TextDelta(".", "small")]


def test_an_error_response_is_not_reconciled():
    assert deltas(attempt_chunks(0, "partial"), answer(None, status="error")) == [TextDelta("partial", "small")]


@pytest.mark.parametrize("seed", range(200))
def test_whatever_the_attempts_the_text_shown_ends_equal_to_the_answer(seed):
    rng = random.Random(seed)
    words = ["alpha", " beta", " gamma", " delta", " eps"]
    chunks: list[ResponseChunk] = []
    for attempt in sorted(rng.sample(range(6), rng.randint(1, 4))):
        text = rng.sample(words, rng.randint(1, len(words))) if rng.random() < 0.5 else words[: rng.randint(1, len(words))]
        cut = rng.randint(0, len(text))
        chunks += attempt_chunks(attempt, *text[:cut])
        if rng.random() < 0.2 and chunks:
            chunks.insert(rng.randrange(len(chunks)), rng.choice(chunks))  # a duplicate, or a replay
    if chunks and rng.random() < 0.2:
        del chunks[rng.randrange(len(chunks))]  # a chunk lost
    final = "".join(words[: rng.randint(1, len(words))])
    assert shown_text(chunks, answer(final)) == final


# -- following a reply topic ---------------------------------------------------------------------
async def test_follow_yields_the_deltas_then_the_final_response_last():
    streams = ReplyStreams()
    with streams.open("req-1") as replies:
        for reply in [*attempt_chunks(0, "a", "b"), chunk("other", 0, 0).model_copy(update={"request_id": "req-2"}), answer("abc")]:
            streams.deliver(reply)
        items = [item async for item in follow("req-1", replies, timeout_s=5)]
    assert items == [TextDelta("a", "small"), TextDelta("b", "small"), TextDelta("c", "small"), answer("abc")]
    streams.deliver(chunk("late"))  # nobody follows req-1 any more: dropped, no error


async def test_follow_without_a_final_response_times_out_naming_the_request():
    streams = ReplyStreams()
    with streams.open("req-1") as replies, pytest.raises(ResponseTimeout, match="req-1"):
        streams.deliver(chunk("a"))
        async for _ in follow("req-1", replies, timeout_s=0.01):
            await asyncio.sleep(0)


def test_an_answer_shorter_than_what_was_shown_restarts_it():
    """A retry that repeated the shown text and ended sooner: waiting is no longer possible."""
    chunks = attempt_chunks(0, "alpha", " beta") + attempt_chunks(1, "alpha")
    assert deltas(chunks, answer("alpha"))[-1] == TextDelta("alpha", "small", restart=True)
