"""Fuzzing the requests topic on the real stack: hypothesis draws batches of bad
messages (random bytes, truncated Avro, an unknown schema fingerprint, invalid UTF-8
inside a valid frame, records the model refuses, impossible pins and policies) mixed with
well-formed requests (huge prompts and unknown tenants among them), publishes them
together, and checks that the router never stops, that every bad message reaches the
dead-letter topic with a reason and its caller an error, and that every well-formed
message around them is answered.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.producers.client import TurnoutClient, new_request
from turnout.producers.correlation import ResponseTimeout
from turnout.schemas.kafka import DLQ_REASON, DLQ_STAGE
from turnout.schemas.models import InferenceRequest
from turnout.schemas.serde import SINGLE_OBJECT_MAGIC, AvroCodec

TIMEOUT_S = 60
CODEC = AvroCodec()
MARK = "FUZZMARK"  # a prompt's bytes that the invalid-UTF-8 case overwrites in place
KINDS = ("random", "truncated", "unknown_fingerprint", "invalid_utf8", "refused_by_model", "unknown_model", "empty")
TRIED: dict[str, int] = {}


def encoded(request: InferenceRequest) -> bytes:
    return CODEC.encode(request)


def valid(prompt: str = f"Say hello {MARK}.", **fields: object) -> InferenceRequest:
    return new_request(prompt, fields.pop("tenant", "acme"), **fields)


@st.composite
def bad_message(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(kind, key, bytes) of a message the router must refuse. The key is the request id
    inside when there is one (as a pipeline keys its requests), so whether the router
    can read that id or answers by the key, the caller's answer is addressed to it."""
    kind = draw(st.sampled_from(KINDS))
    request = valid(draw(st.text(min_size=1, max_size=200)) + f" {MARK}")
    whole, key = encoded(request), request.id
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=2048).filter(lambda b: not b.startswith(SINGLE_OBJECT_MAGIC)))
    elif kind == "truncated":
        data = whole[: draw(st.integers(min_value=1, max_value=len(whole) - 1))]
    elif kind == "unknown_fingerprint":
        data = SINGLE_OBJECT_MAGIC + draw(st.binary(min_size=8, max_size=8)) + whole[10:]
    elif kind == "invalid_utf8":
        data = whole.replace(MARK.encode(), draw(st.sampled_from([b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", b"\xc3\x28\xa0\xa1\xe2\x28\xa1\x80"])), 1)
    elif kind == "refused_by_model":  # a well-framed record that breaks the model's rules
        data = encoded(request.model_copy(update=draw(st.sampled_from([{"messages": []}, {"max_tokens": 0}, {"tenant": ""}, {"input": [""], "messages": []}]))))
    elif kind == "unknown_model":  # an impossible pin: no fleet model serves it
        data = encoded(request.model_copy(update={"model": draw(st.sampled_from(["gpt-imaginary", "small ", "MEDIUM", "x" * 300]))}))
    else:
        data = b""
    return kind, key, data


@st.composite
def good_message(draw: st.DrawFn) -> InferenceRequest:
    kind = draw(st.sampled_from(["plain", "unknown_tenant", "huge"]))
    if kind == "unknown_tenant":  # the default tenant's policy applies
        return valid(tenant=f"tenant-{draw(st.integers(0, 10**6))}")
    if kind == "huge":
        return valid("Summarize this. " + "All work and no play. " * draw(st.integers(2_000, 20_000)))
    return valid(draw(st.text(min_size=1, max_size=300).filter(str.strip)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bad=st.lists(bad_message(), min_size=1, max_size=12), good=st.lists(good_message(), min_size=1, max_size=3))
def test_bad_messages_are_dead_lettered_and_the_rest_is_served(stack, bad, good):
    keyed = [(key, kind, data) for kind, key, data in bad]
    try:
        answers = asyncio.run(publish_and_gather(stack, keyed, good))
    except ResponseTimeout as exc:
        kinds = {key: kind for key, kind, _ in keyed} | {r.id: f"good ({len(r.messages[0].content)} chars)" for r in good}
        raise AssertionError(f"unanswered: {[kinds.get(i, i) for i in exc.missing]}") from None

    for request in good:
        answer = answers[request.id]
        assert answer.status == "ok" or answer.error.code in {"no_capable_model", "policy_refused"}, f"{request.id}: {answer}"
    for key, kind, _data in keyed:
        answer = answers[key]
        assert answer.status == "error" and answer.error.code in {"invalid_request", "unknown_model"}, f"{kind}: {answer}"

    dead = asyncio.run(dead_letters(stack, {key for key, _, _ in keyed}))
    for key, kind, data in keyed:
        record = dead[key]
        headers = dict(record.headers)
        assert headers[DLQ_STAGE] == b"router" and headers[DLQ_REASON], f"{kind} dead-lettered without a reason"
        assert record.value == data, f"{kind}: the dead letter keeps the message as it came"
        TRIED[kind] = TRIED.get(kind, 0) + 1
    assert not stack.dead_children(), "the pipeline stopped"


async def publish_and_gather(stack, keyed: list[tuple[str, str, bytes]], good: list[InferenceRequest]) -> dict:
    async with TurnoutClient(stack.settings.kafka) as client:
        for key, _kind, data in keyed:
            await client.submit_raw(data, key.encode(), TIMEOUT_S)
        await client.submit_many(good, TIMEOUT_S)
        return await client.gather([key for key, _, _ in keyed] + [r.id for r in good], TIMEOUT_S)


async def dead_letters(stack, keys: set[str]) -> dict:
    """The dead-letter records of ``keys`` (all of them, or the test fails on a timeout)."""
    consumer = AIOKafkaConsumer(stack.settings.topics.dlq, bootstrap_servers=stack.settings.kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    found: dict = {}
    try:
        for _ in range(300):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found |= {r.key.decode(): r for r in records if r.key and r.key.decode() in keys}
            if len(found) == len(keys):
                return found
        raise AssertionError(f"{len(keys) - len(found)} bad messages never reached {stack.settings.topics.dlq}")
    finally:
        await consumer.stop()


def test_the_fuzzing_tried_every_kind_of_bad_message(stack):
    """Runs after the fuzz test: report what was tried (``pytest -s`` prints it)."""
    if not TRIED:
        pytest.skip("the fuzz test did not run")
    print(f"\nFUZZ bad messages tried: {sum(TRIED.values())} ({', '.join(f'{k} {v}' for k, v in sorted(TRIED.items()))})")
    assert set(TRIED) == set(KINDS) and sum(TRIED.values()) >= 50
