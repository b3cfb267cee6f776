"""ModelWorker._handle: undecodable records go to the DLQ; answered request ids are not served twice."""

from __future__ import annotations

import asyncio
import os
from unittest import mock

import pytest

from backend_fixtures import FakeRecord, Script, make_backend, make_request, make_slip, ok, status, write_settings
from turnout.consumers.answered_seed import Answered
from turnout.consumers.serving import Deployment
from turnout.consumers.worker import ModelWorker
from turnout.schemas.kafka import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_STAGE, DLQ_TOPIC
from turnout.schemas.models import InferenceResponse, RoutedRequest
from turnout.schemas.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    for name in [n for n in os.environ if n.upper().startswith("TURNOUT_")]:
        monkeypatch.delenv(name)  # the TOML below is the whole configuration
    return load_settings(write_settings(tmp_path))


def deployment_for(settings: Settings, script: Script, model_id: str = "a") -> Deployment:
    config = settings.fleet[model_id]
    backend = make_backend(script, served_model=config.served_model, provider=config.provider)
    return Deployment(model_id, config, backend, asyncio.Semaphore(config.concurrency))


def record_of(worker: ModelWorker, slip: RoutedRequest, offset: int = 0) -> FakeRecord:
    return FakeRecord(worker.topic, 2, offset, slip.request.id.encode(), worker.codec.encode(slip))


def test_settings_file_is_what_the_worker_sees(settings):
    assert settings.topics.dlq == "tt.dlq"
    assert settings.fleet["a"].served_model == "served-a"
    assert ModelWorker(settings, "a").topic == "tt.model.a"


def test_unknown_model_is_refused(settings):
    with pytest.raises(ValueError, match="not in the fleet"):
        ModelWorker(settings, "nope")


@pytest.mark.parametrize(
    "value",
    [b"definitely not avro", b"", None, b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00garbage", b"\x00\x00\x00\x00\x01abc"],
    ids=["text", "empty", "tombstone", "unknown-fingerprint", "confluent-without-registry"],
)
async def test_undecodable_value_goes_to_the_dlq_with_the_reason(settings, value):
    script = Script(ok())
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    record = FakeRecord("tt.model.a", 1, 42, b"some-key", value)
    try:
        outcome = await worker._handle(record, deployment)
    finally:
        await deployment.backend.aclose()

    assert script.calls == 0
    assert outcome.messages == [] and outcome.answered is False
    [dead] = outcome.dead_letters
    assert dead.topic == "tt.dlq"
    assert dead.key == b"some-key"
    assert dead.value == (value or b"")  # passed on as it came
    headers = dict(dead.headers)
    assert headers[DLQ_REASON].startswith(b"invalid_request: ")
    assert len(headers[DLQ_REASON]) > len(b"invalid_request: ")
    assert headers[DLQ_STAGE] == b"worker"
    assert (headers[DLQ_TOPIC], headers[DLQ_PARTITION], headers[DLQ_OFFSET]) == (b"tt.model.a", b"1", b"42")
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in dead.headers)  # what aiokafka accepts


async def test_a_different_record_type_on_the_model_topic_goes_to_the_dlq(settings):
    script = Script(ok())
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    wrong = worker.codec.encode(InferenceResponse(id="x", tenant="t", status="ok"))
    try:
        outcome = await worker._handle(FakeRecord("tt.model.a", 0, 7, None, wrong), deployment)
    finally:
        await deployment.backend.aclose()
    assert script.calls == 0
    [dead] = outcome.dead_letters
    assert dead.key is None and dead.value == wrong
    assert dict(dead.headers)[DLQ_REASON].startswith(b"invalid_request: ")


async def test_already_answered_request_is_skipped_without_calling_the_backend(settings):
    script = Script(ok())
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    slip = make_slip(make_request(id="seen-before"))
    worker.answered.add("seen-before")
    try:
        outcome = await worker._handle(record_of(worker, slip), deployment)
    finally:
        await deployment.backend.aclose()
    assert script.calls == 0
    assert outcome.messages == [] and outcome.dead_letters == [] and outcome.answered is False


async def test_redelivery_after_an_answer_is_not_served_or_billed_twice(settings):
    script = Script(ok(content="once"))
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    slip = make_slip(make_request(id="r-redelivered"))
    try:
        first = await worker._handle(record_of(worker, slip, offset=5), deployment)
        again = await worker._handle(record_of(worker, slip, offset=5), deployment)
    finally:
        await deployment.backend.aclose()
    assert script.calls == 1
    assert first.answered and "r-redelivered" in worker.answered
    assert [m.record.content for m in first.messages if m.topic == "tt.responses"] == ["once"]
    assert again.messages == [] and again.answered is False


async def test_other_requests_are_still_served(settings):
    script = Script(ok())
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    worker.answered.add("r-1")
    try:
        outcome = await worker._handle(record_of(worker, make_slip(make_request(id="r-2"))), deployment)
    finally:
        await deployment.backend.aclose()
    assert script.calls == 1 and outcome.answered
    assert "r-2" in worker.answered


async def test_a_forwarded_request_is_not_remembered_as_answered(settings):
    # the slip moved on to "b": a redelivery here must not be mistaken for an answer
    script = Script(status(500))
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    slip = make_slip(make_request(id="r-forwarded"))
    try:
        outcome = await worker._handle(record_of(worker, slip), deployment)
    finally:
        await deployment.backend.aclose()
    assert script.calls == settings.fleet["a"].max_retries + 1
    assert not outcome.answered
    assert [m.topic for m in outcome.messages if m.topic.startswith("tt.model.")] == ["tt.model.b"]
    assert "r-forwarded" not in worker.answered


async def test_a_bad_record_does_not_stop_the_good_ones_in_its_batch(settings):
    script = Script(ok(), yields=True)
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    records = [
        record_of(worker, make_slip(make_request(id="good-1")), offset=0),
        FakeRecord(worker.topic, 0, 1, None, b"junk"),
        record_of(worker, make_slip(make_request(id="good-2")), offset=2),
    ]
    try:
        outcomes = await asyncio.gather(*(worker._handle(r, deployment) for r in records))
    finally:
        await deployment.backend.aclose()
    assert [o.answered for o in outcomes] == [True, False, True]
    assert [len(o.dead_letters) for o in outcomes] == [0, 1, 0]
    assert script.calls == 2


async def test_duplicate_in_the_same_batch_is_served_once(settings):
    script = Script(ok(), yields=True)
    worker = ModelWorker(settings, "a")
    deployment = deployment_for(settings, script)
    slip = make_slip(make_request(id="dup"))
    try:
        outcomes = await asyncio.gather(
            worker._handle(record_of(worker, slip, offset=10), deployment),
            worker._handle(record_of(worker, slip, offset=11), deployment),
        )
    finally:
        await deployment.backend.aclose()
    assert script.calls == 1
    assert sum(o.answered for o in outcomes) == 1


# -- requests answered by another replica, read back from the topics (answered_seed) ---------


async def read_back(worker: ModelWorker, *, finished: set[str] = frozenset(), responded: set[str] = frozenset(), unrecorded: dict | None = None) -> None:
    """The worker's own ``remember_answered`` for the partition ``record_of`` uses, on what
    ``answered_seed.answered_since`` would have read back from the topics."""
    seeded = Answered(finished=set(finished), responded=set(responded), unrecorded=dict(unrecorded or {}))

    async def answered_since(*_args: object) -> Answered:
        return seeded

    with mock.patch("turnout.consumers.worker.answered_since", answered_since):
        await worker.remember_answered({2}, 3)


async def serve_once(settings: Settings, worker: ModelWorker, slip: RoutedRequest) -> tuple[int, object]:
    script = Script(ok())
    deployment = deployment_for(settings, script)
    try:
        outcome = await worker._handle(record_of(worker, slip), deployment)
    finally:
        await deployment.backend.aclose()
    return script.calls, outcome


async def test_a_response_on_the_shared_topic_means_answered_and_a_final_event_alone_does_not(settings):
    """On the shared responses topic the response itself is the mark: a final event without
    it (never written in that order, but read back) does not stop the request being served."""
    worker = ModelWorker(settings, "a")
    shared = make_slip(make_request(id="on-shared"))
    await read_back(worker, responded={"on-shared"})
    assert (await serve_once(settings, worker, shared))[0] == 0

    only_event = make_slip(make_request(id="event-only"))
    await read_back(worker, finished={"event-only"})
    assert (await serve_once(settings, worker, only_event))[0] == 1


async def test_a_request_with_its_own_reply_topic_is_answered_when_its_final_event_is_there(settings):
    worker = ModelWorker(settings, "a")
    own = make_slip(make_request(id="own-topic", reply_topic="tt.replies.x"))
    await read_back(worker, responded={"own-topic"})  # a response of that id on the shared topic says nothing here
    assert (await serve_once(settings, worker, own))[0] == 1
    again = make_slip(make_request(id="own-topic-2", reply_topic="tt.replies.x"))
    await read_back(worker, finished={"own-topic-2"})
    assert (await serve_once(settings, worker, again))[0] == 0


async def test_a_shadow_copy_is_judged_by_its_own_final_event(settings):
    worker = ModelWorker(settings, "a")
    shadow = make_slip(make_request(id="shadowed"), shadow=True)
    await read_back(worker, finished={"shadowed"}, responded={"shadowed"})  # the real request's marks
    assert (await serve_once(settings, worker, shadow))[0] == 1
    await read_back(worker, finished={"shadowed:shadow"})
    worker.answered = type(worker.answered)(10)  # forget that this replica just served it
    assert (await serve_once(settings, worker, shadow))[0] == 0


async def test_a_response_whose_final_event_was_lost_gets_it_recorded_instead_of_a_second_call(settings):
    worker = ModelWorker(settings, "a")
    slip = make_slip(make_request(id="lost-event"))
    response = InferenceResponse(id="lost-event", tenant="acme", status="ok", model="a", content="hi", cost_usd=0.01)
    await read_back(worker, responded={"lost-event"}, unrecorded={"lost-event": response})
    calls, outcome = await serve_once(settings, worker, slip)
    assert calls == 0
    [published] = outcome.messages
    assert published.topic == settings.topics.events and published.record.kind == "completion"
    assert (published.record.request_id, published.record.cost_usd) == ("lost-event", 0.01)
    calls, outcome = await serve_once(settings, worker, slip)  # recorded once only
    assert calls == 0 and outcome.messages == []


def test_final_events_are_split_off_to_be_sent_after_the_response():
    from turnout.consumers.serving import Outcome, Publish
    from turnout.consumers.worker import _final_events_last
    from turnout.schemas.models import RoutingEvent

    response = Publish("tt.responses", "r", InferenceResponse(id="r", tenant="t", status="ok"))
    attempt = Publish("tt.events", "r", RoutingEvent(event_id="e1", request_id="r", tenant="t", kind="attempt"))
    final = Publish("tt.events", "r", RoutingEvent(event_id="e2", request_id="r", tenant="t", kind="completion"))
    first, then = _final_events_last(Outcome(messages=[final, response, attempt], answered=True))
    assert first.messages == [response, attempt] and first.answered
    assert then.messages == [final]
    untouched = Outcome(messages=[response])
    assert _final_events_last(untouched) == (untouched, Outcome())


async def test_a_request_whose_reply_topic_cannot_be_written_is_answered_on_the_shared_topic_without_a_call(settings):
    from turnout.schemas.models import RoutingEvent
    from turnout.schemas.reply_topics import ReplyTopics

    async def nothing_writable(topics: set[str]) -> set[str]:
        return set()

    script = Script(ok(content="never sent"))
    worker = ModelWorker(settings, "a")
    worker.reply_topics = ReplyTopics(nothing_writable, known=settings.required_topics())
    deployment = deployment_for(settings, script)
    gone = make_slip(make_request(id="r-gone", reply_topic="acme.deleted"))
    fine = make_slip(make_request(id="r-fine", reply_topic="tt.responses"))
    try:
        refused = await worker._handle(record_of(worker, gone, offset=3), deployment)
        served = await worker._handle(record_of(worker, fine, offset=4), deployment)
        again = await worker._handle(record_of(worker, gone, offset=3), deployment)  # a replay
    finally:
        await deployment.backend.aclose()

    assert script.calls == 1  # only the request with a writable reply topic was served
    assert [m.topic for m in refused.messages] == ["tt.responses", "tt.events"] and refused.answered
    response = refused.messages[0].record
    assert isinstance(response, InferenceResponse) and (response.id, response.status) == ("r-gone", "error")
    assert response.error.code == "unknown_reply_topic" and response.error.details == {"reply_topic": "acme.deleted"}
    assert isinstance(refused.messages[1].record, RoutingEvent) and refused.messages[1].record.error_kind == "unknown_reply_topic"
    [dead] = refused.dead_letters
    headers = dict(dead.headers)
    assert headers[DLQ_REASON].startswith(b"unknown_reply_topic: reply topic 'acme.deleted' does not exist")
    assert (headers[DLQ_STAGE], headers[DLQ_OFFSET]) == (b"worker", b"3")
    assert served.answered and [m.record.id for m in served.messages if m.topic == "tt.responses"] == ["r-fine"]
    assert again.messages == [] and again.dead_letters == []  # answered once
