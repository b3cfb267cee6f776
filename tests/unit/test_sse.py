"""consumers/sse.py: the server-sent events decoder, fed the way a network feeds it."""

from __future__ import annotations

import pytest

from turnout.consumers.sse import SseDecoder, SseEvent, sse_events

ANTHROPIC = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b"event: ping\ndata: {}\n\n"
    b': keep-alive comment\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"h\xc3\xa9"}}\n\n'
)
EXPECTED = [
    SseEvent("message_start", '{"type":"message_start"}'),
    SseEvent("ping", "{}"),
    SseEvent("content_block_delta", '{"type":"content_block_delta","delta":{"text":"hé"}}'),
]


def decode(*chunks: bytes) -> list[SseEvent]:
    decoder = SseDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


def test_named_events_comments_and_utf8():
    assert decode(ANTHROPIC) == EXPECTED


def test_any_split_of_the_bytes_gives_the_same_events():
    """A chunk may end anywhere: inside a field name, a UTF-8 character or a CR LF pair."""
    for cut in range(1, len(ANTHROPIC)):
        assert decode(ANTHROPIC[:cut], ANTHROPIC[cut:]) == EXPECTED, cut
    assert decode(*(ANTHROPIC[i : i + 1] for i in range(len(ANTHROPIC)))) == EXPECTED


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_line_ending_of_the_standard(newline):
    """Gemini ends its lines with CRLF; the standard allows a lone CR too."""
    stream = newline.join([b'data: {"a":1}', b"", b"data: [DONE]", b"", b""])
    events = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert events == [SseEvent("message", '{"a":1}'), SseEvent("message", "[DONE]")]


def test_data_lines_join_with_newlines_and_one_leading_space_goes():
    assert decode(b"data:first\ndata:  second\nid: 7\nretry: 10\n\n") == [SseEvent("message", "first\n second")]


def test_an_event_without_data_is_not_dispatched_and_the_name_does_not_leak():
    assert decode(b"event: lonely\n\ndata: x\n\n") == [SseEvent("message", "x")]


async def test_an_event_without_its_blank_line_is_not_yielded():
    """The stream was cut before the event ended: it is not an event."""

    async def chunks():
        yield b"data: one\n\n"
        yield b"data: half"

    assert [e async for e in sse_events(chunks())] == [SseEvent("message", "one")]
