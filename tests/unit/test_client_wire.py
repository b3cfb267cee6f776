"""``python -m turnout.producers.wire``: the bytes a shell client such as kcat publishes
and reads are Turnout's own framing."""

from __future__ import annotations

import io
import json
import sys

import pytest

from turnout.producers import wire
from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.serde import SINGLE_OBJECT_MAGIC, AvroCodec


class Stdio:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def run(monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: bytes) -> tuple[int, bytes]:
    out = Stdio(b"")
    monkeypatch.setattr(sys, "stdin", Stdio(stdin))
    monkeypatch.setattr(sys, "stdout", out)
    code = wire.main(args)
    return code, out.buffer.getvalue()


def test_encode_writes_a_single_object_framed_request(monkeypatch: pytest.MonkeyPatch) -> None:
    text = json.dumps({"id": "r1", "tenant": "acme", "messages": [{"role": "user", "content": "Hello from the shell"}]})
    code, data = run(monkeypatch, ["encode"], text.encode())
    assert code == 0 and data[:2] == SINGLE_OBJECT_MAGIC
    request = AvroCodec().decode(data, InferenceRequest)
    assert (request.id, request.tenant, request.messages[0].content) == ("r1", "acme", "Hello from the shell")


def test_decode_prints_a_response_as_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    response = InferenceResponse(id="r1", tenant="acme", status="ok", content="Hi!")
    monkeypatch.setattr(sys, "stdin", Stdio(AvroCodec().encode(response)))
    assert wire.main(["decode"]) == 0
    assert InferenceResponse.model_validate_json(capsys.readouterr().out) == response


def test_decode_says_what_is_wrong_with_bytes_that_are_not_turnout_avro(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", Stdio(b"hello"))
    assert wire.main(["decode"]) == 1
    assert "cannot decode as InferenceResponse: not Turnout Avro" in capsys.readouterr().err
