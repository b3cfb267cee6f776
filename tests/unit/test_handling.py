"""streams/handling.py: everything the router sends for one raw message, good or bad."""

from __future__ import annotations

import pytest
from factories import MockRegistry, deployment, full_request, make_request, make_settings

from turnout.schemas.kafka import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_STAGE, DLQ_TOPIC
from turnout.schemas.models import InferenceResponse, RoutedRequest, RoutingEvent
from turnout.schemas.serde import AvroCodec
from turnout.streams.handling import Outgoing, Source, route_message

PREFIX = "tt"
SOURCE = Source(topic=f"{PREFIX}.requests", partition=2, offset=1234)
CODE = "Write a Python function that parses ISO dates"


@pytest.fixture
def settings():
    return make_settings(kafka={"topic_prefix": PREFIX}, router={"policy_version": "pv-7"})


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec()


def headers(out: Outgoing) -> dict[str, bytes]:
    return dict(out.headers)


def by_topic(outs: list[Outgoing]) -> dict[str, Outgoing]:
    topics = [o.topic for o in outs]
    assert len(set(topics)) == len(topics), topics
    return {o.topic: o for o in outs}


def assert_dlq(out: Outgoing, key: bytes | None, value: bytes, reason_contains: str) -> None:
    assert out.topic == f"{PREFIX}.dlq"
    assert out.key == key
    assert out.value == value  # the original bytes, untouched, for replay
    h = headers(out)
    assert reason_contains in h[DLQ_REASON].decode()
    assert h[DLQ_STAGE] == b"router"
    assert h[DLQ_TOPIC] == SOURCE.topic.encode()
    assert h[DLQ_PARTITION] == b"2"
    assert h[DLQ_OFFSET] == b"1234"


# -- good requests ----------------------------------------------------------------------------
def test_good_request_goes_to_its_model_topic_with_a_decision_event(settings, codec) -> None:
    request = make_request(CODE, id="req-42")
    outs = route_message(b"req-42", codec.encode(request), SOURCE, codec, settings)
    assert [o.topic for o in outs] == [f"{PREFIX}.model.medium", f"{PREFIX}.events"]
    slip_out, event_out = outs

    assert slip_out.key == b"req-42"
    slip = codec.decode(slip_out.value, RoutedRequest)
    assert slip.request.id == "req-42"
    assert slip.request.messages == request.messages
    assert slip.request.deadline is not None  # filled in by the router
    assert slip.decision.route == "code"
    assert [s.model for s in slip.plan] == ["medium", "large"]
    assert slip.policy_version == "pv-7"
    assert slip_out.headers == []

    assert event_out.key == b"req-42"
    event = codec.decode(event_out.value, RoutingEvent)
    assert event.kind == "decision"
    assert event.event_id == "req-42:decision:0"
    assert (event.request_id, event.tenant) == ("req-42", "acme")
    assert (event.route, event.model, event.policy_version) == ("code", "medium", "pv-7")
    assert event.task_type == "code-generation"
    assert event.input_tokens == slip.decision.signals.input_tokens
    assert event.status == "routed"
    assert event.ts == slip.routed_at


def test_good_request_is_keyed_by_its_id_whatever_the_message_key(settings, codec) -> None:
    outs = route_message(None, codec.encode(make_request(id="abc")), SOURCE, codec, settings)
    assert [o.key for o in outs] == [b"abc", b"abc"]


def test_pinned_request_goes_to_the_pinned_model_topic(settings, codec) -> None:
    outs = route_message(b"k", codec.encode(make_request(CODE, model="small")), SOURCE, codec, settings)
    assert outs[0].topic == f"{PREFIX}.model.small"
    assert codec.decode(outs[0].value, RoutedRequest).decision.route == "pinned"


def test_full_request_survives_routing(codec) -> None:
    capable = {name: deployment(name, capabilities=["tools", "json_schema"]) for name in ("small", "medium", "large")}
    settings = make_settings(fleet=capable, kafka={"topic_prefix": PREFIX})
    request = full_request().model_copy(update={"model": None})
    outs = route_message(b"req-full", codec.encode(request), SOURCE, codec, settings)
    assert codec.decode(outs[0].value, RoutedRequest).request == request  # deadline was set, so nothing changes


def test_a_request_needing_capabilities_nobody_has_is_refused(settings, codec) -> None:
    outs = route_message(b"req-full", codec.encode(full_request().model_copy(update={"model": None})), SOURCE, codec, settings)
    assert [o.topic for o in outs] == [f"{PREFIX}.dlq", "acme.replies", f"{PREFIX}.events"]  # the request names its reply topic
    error = codec.decode(outs[1].value, InferenceResponse).error
    assert error.code == "no_capable_model" and "lacks json_schema, tools" in error.message


def test_confluent_framed_request_is_routed_and_answered_in_confluent_framing(settings) -> None:
    registry = MockRegistry()
    codec = AvroCodec(registry.client())
    outs = route_message(b"r", codec.encode(make_request(id="r")), SOURCE, codec, settings)
    assert all(o.value[:1] == b"\x00" for o in outs)
    assert codec.decode(outs[0].value, RoutedRequest).request.id == "r"


# -- undecodable messages ---------------------------------------------------------------------------
def test_garbage_with_a_key_is_dead_lettered_and_answered(settings, codec) -> None:
    value = b"this is not avro"
    outs = route_message(b"req-9", value, SOURCE, codec, settings)
    assert [o.topic for o in outs] == [f"{PREFIX}.dlq", f"{PREFIX}.responses", f"{PREFIX}.events"]
    dlq, response_out, event_out = outs
    assert_dlq(dlq, b"req-9", value, "invalid_request: not Turnout Avro: first bytes 74686973")

    assert response_out.key == b"req-9"
    response = codec.decode(response_out.value, InferenceResponse)
    assert (response.id, response.tenant, response.status) == ("req-9", "unknown", "error")
    assert response.error.code == "invalid_request"
    assert "not Turnout Avro" in response.error.message
    assert response.content is None

    assert event_out.key == b"req-9"
    event = codec.decode(event_out.value, RoutingEvent)
    assert (event.kind, event.request_id, event.event_id) == ("rejected", "req-9", "req-9:rejected:0")
    assert event.error_kind == "invalid_request"
    assert event.status == "error"
    assert event.policy_version == "pv-7"
    assert "not Turnout Avro" in event.detail


def test_garbage_without_a_key_only_goes_to_the_dlq(settings, codec) -> None:
    outs = route_message(None, b"\x01\x02\x03", SOURCE, codec, settings)
    assert len(outs) == 1
    assert_dlq(outs[0], None, b"\x01\x02\x03", "not Turnout Avro")


def test_empty_key_counts_as_no_key(settings, codec) -> None:
    outs = route_message(b"", b"\x01", SOURCE, codec, settings)
    assert [o.topic for o in outs] == [f"{PREFIX}.dlq"]


@pytest.mark.parametrize("value", [None, b""])
def test_tombstone_or_empty_value(settings, codec, value) -> None:
    outs = route_message(b"req-t", value, SOURCE, codec, settings)
    assert_dlq(outs[0], b"req-t", b"", "invalid_request: empty message")
    assert [o.topic for o in outs[1:]] == [f"{PREFIX}.responses", f"{PREFIX}.events"]


def test_non_utf8_key_still_gets_an_answer(settings, codec) -> None:
    outs = route_message(b"\xff\xfeid", b"junk", SOURCE, codec, settings)
    response = codec.decode(by_topic(outs)[f"{PREFIX}.responses"].value, InferenceResponse)
    assert response.id == "\ufffd\ufffdid"


def test_truncated_avro_is_dead_lettered(settings, codec) -> None:
    value = codec.encode(make_request(id="req-cut"))[:15]
    outs = route_message(b"req-cut", value, SOURCE, codec, settings)
    assert_dlq(outs[0], b"req-cut", value, "Avro body does not decode")


def test_another_record_type_on_the_requests_topic_is_dead_lettered(settings, codec) -> None:
    value = codec.encode(InferenceResponse(id="x", tenant="t", status="ok"))
    outs = route_message(b"x", value, SOURCE, codec, settings)
    assert_dlq(outs[0], b"x", value, "invalid_request: Avro body does not decode")
    assert len(headers(outs[0])[DLQ_REASON]) <= 4000


def test_valid_avro_failing_validation_is_dead_lettered(settings, codec) -> None:
    from factories import single_object

    from turnout.schemas.catalog import bundled_catalog

    datum = {**make_request().model_dump(), "messages": []}
    value = single_object(bundled_catalog().by_name("turnout.InferenceRequest"), datum)
    outs = route_message(b"req-1", value, SOURCE, codec, settings)
    assert_dlq(outs[0], b"req-1", value, "turnout.InferenceRequest failed validation: <root>: Value error, a request needs messages (a chat request) or input")


# -- refused requests ---------------------------------------------------------------------------------
def test_refused_request_is_answered_on_its_reply_topic(settings, codec) -> None:
    request = make_request(CODE, id="req-pin", tenant="globex", model="huge", reply_topic="globex.replies")
    value = codec.encode(request)
    outs = route_message(b"some-key", value, SOURCE, codec, settings)
    assert [o.topic for o in outs] == [f"{PREFIX}.dlq", "globex.replies", f"{PREFIX}.events"]
    dlq, response_out, event_out = outs
    assert_dlq(dlq, b"some-key", value, "unknown_model: pinned model 'huge' is not in the fleet")

    assert response_out.key == b"req-pin"
    response = codec.decode(response_out.value, InferenceResponse)
    assert (response.id, response.tenant, response.status) == ("req-pin", "globex", "error")
    assert response.error.code == "unknown_model"
    assert response.error.details == {"model": "huge"}

    event = codec.decode(event_out.value, RoutingEvent)
    assert (event.kind, event.tenant, event.error_kind) == ("rejected", "globex", "unknown_model")
    assert event.task_type == "code-generation"  # signals were computed before the refusal
    assert event_out.key == b"req-pin"


def test_refused_request_without_reply_topic_is_answered_on_the_shared_topic(settings, codec) -> None:
    outs = route_message(None, codec.encode(make_request(id="req-p2", model="huge")), SOURCE, codec, settings)
    response_out = by_topic(outs)[f"{PREFIX}.responses"]
    assert response_out.key == b"req-p2"
    assert codec.decode(response_out.value, InferenceResponse).error.code == "unknown_model"
    assert by_topic(outs)[f"{PREFIX}.dlq"].key is None


def test_a_request_naming_a_reply_topic_nobody_can_write_to_is_answered_on_the_shared_topic(settings, codec) -> None:
    request = make_request(CODE, id="req-rt", tenant="globex", reply_topic="globex.typo")
    value = codec.encode(request)
    asked: list[str] = []
    outs = route_message(b"req-rt", value, SOURCE, codec, settings, reply_topic_writable=lambda topic: asked.append(topic) or False)
    assert asked == ["globex.typo"]
    assert [o.topic for o in outs] == [f"{PREFIX}.dlq", f"{PREFIX}.responses", f"{PREFIX}.events"]  # never the missing topic, no model topic
    assert_dlq(outs[0], b"req-rt", value, "unknown_reply_topic: reply topic 'globex.typo' does not exist")
    response = codec.decode(outs[1].value, InferenceResponse)
    assert (response.id, response.tenant, response.error.code) == ("req-rt", "globex", "unknown_reply_topic")
    assert response.error.details == {"reply_topic": "globex.typo"} and "create it before publishing" in response.error.message
    assert codec.decode(outs[2].value, RoutingEvent).error_kind == "unknown_reply_topic"


def test_a_writable_reply_topic_is_routed_and_no_reply_topic_is_not_asked_about(settings, codec) -> None:
    asked: list[str] = []

    def writable(topic: str) -> bool:
        asked.append(topic)
        return True

    outs = route_message(b"a", codec.encode(make_request(CODE, id="a", reply_topic="globex.replies")), SOURCE, codec, settings, reply_topic_writable=writable)
    assert [o.topic for o in outs] == [f"{PREFIX}.model.medium", f"{PREFIX}.events"]
    route_message(b"b", codec.encode(make_request(CODE, id="b")), SOURCE, codec, settings, reply_topic_writable=writable)
    assert asked == ["globex.replies"]


def test_no_model_topic_is_written_for_bad_input(settings, codec) -> None:
    for key, value in [(b"a", b"junk"), (None, b"junk"), (b"b", codec.encode(make_request(model="huge")))]:
        outs = route_message(key, value, SOURCE, codec, settings)
        assert not any(o.topic.startswith(f"{PREFIX}.model.") for o in outs)


def test_route_message_never_raises_for_random_bytes(settings, codec) -> None:
    import random

    rng = random.Random(1234)
    good = codec.encode(make_request())
    for _ in range(300):
        choice = rng.random()
        if choice < 0.4:  # flip bytes in the body of a good message
            value = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                value[rng.randrange(10, len(value))] = rng.randrange(256)
            value = bytes(value)
        elif choice < 0.7:  # cut it short
            value = good[: rng.randrange(len(good))]
        else:
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        outs = route_message(b"k", value, SOURCE, codec, settings)
        assert outs, value
        first = outs[0].topic
        assert first == f"{PREFIX}.dlq" or first.startswith(f"{PREFIX}.model."), first
        assert all(isinstance(o.value, bytes) for o in outs)
