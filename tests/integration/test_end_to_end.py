"""One routed prompt end to end, and many: publish -> router -> worker -> response -> ClickHouse.

Everything here is real: the Tansu broker, the faust router, aiokafka workers calling the
simulated backend over HTTP, and the sink writing into chDB. The tests run in file
order; the last one stops the stack's writers and checks what ClickHouse recorded
against every response the earlier tests received.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from turnout.analytics.store import open_client
from turnout.producers.client import ResponseTimeout, TurnoutClient, new_request
from turnout.schemas.kafka import DLQ_REASON, DLQ_STAGE
from turnout.schemas.models import DeploymentHealth, InferenceResponse
from turnout.schemas.serde import AvroCodec

TIMEOUT_S = 90
SEEN: dict[str, InferenceResponse] = {}  # every response the tests received, for the ClickHouse check


async def ask(stack, *requests) -> dict[str, InferenceResponse]:
    async with TurnoutClient(stack.settings.kafka) as client:
        ids = await client.publish(requests)
        responses = await client.gather(ids, TIMEOUT_S)
    SEEN.update(responses)
    return responses


async def read_all(stack, topic: str, until_key: bytes) -> list:
    """Every record of ``topic`` from the start until one with ``until_key`` is seen."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.settings.kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        for _ in range(300):
            batch = await consumer.getmany(timeout_ms=200)
            records += [r for rs in batch.values() for r in rs]
            if any(r.key == until_key for r in records):
                return records
        raise AssertionError(f"no record keyed {until_key!r} on {topic} (saw {len(records)})")
    finally:
        await consumer.stop()


async def test_prompts_are_routed_by_their_content(stack):
    code = new_request("Write a Python function that parses ISO dates and returns a datetime.", "acme")
    chat = new_request("Hello! How are you today?", "acme")
    responses = await ask(stack, code, chat)

    assert responses[code.id].status == "ok"
    assert responses[code.id].model == "medium"
    assert responses[code.id].routing.route == "code"
    assert responses[code.id].routing.task_type == "code-generation"
    assert responses[chat.id].model == "small"
    assert responses[chat.id].routing.route == "default"
    for response in responses.values():
        assert response.content and response.usage and response.usage.output_tokens > 0
        assert response.cost_usd > 0
        assert response.routing.policy_version == "itest-1"


async def test_a_failing_primary_falls_back_along_the_plan(stack):
    request = new_request("What is the tallest mountain?", "acme", metadata={"lane": "flaky"})
    response = (await ask(stack, request))[request.id]

    assert response.status == "ok"
    assert response.routing.selected_model == "flaky"
    assert response.model == "small"
    assert response.routing.fallback_path == ["flaky", "small"]


SHADOWED: list[str] = []


async def test_a_shadow_copy_is_served_but_never_returned(stack):
    request = new_request("What is the longest river in Europe?", "acme", metadata={"lane": "shadow"})
    async with TurnoutClient(stack.settings.kafka) as client:
        ids = await client.publish([request])
        first = (await client.gather(ids, TIMEOUT_S))[request.id]
        with pytest.raises(ResponseTimeout):  # nothing else ever answers this id
            await client.gather([request.id], 3)
    SEEN[request.id] = first
    SHADOWED.append(request.id)
    assert (first.model, first.routing.route) == ("small", "with-shadow")


async def test_a_pinned_model_overrides_the_rules(stack):
    request = new_request("Write a Rust function that adds two numbers.", "acme", model="small")
    response = (await ask(stack, request))[request.id]
    assert (response.model, response.routing.route) == ("small", "pinned")


async def test_many_requests_all_get_exactly_one_answer(stack):
    requests = [new_request(f"Question number {i}: why is the sky blue?", f"tenant-{i % 3}") for i in range(60)]
    responses = await ask(stack, *requests)
    assert set(responses) == {r.id for r in requests}
    assert all(r.status == "ok" for r in responses.values())


async def test_a_reply_topic_receives_the_answer(stack):
    reply_topic = f"{stack.settings.topics.prefix}.replies.{uuid.uuid4().hex[:8]}"
    async with TurnoutClient(stack.settings.kafka, reply_topic=reply_topic) as client:
        request = new_request("Summarize: trains run on rails.", "acme")
        response = await client.request(request, TIMEOUT_S)
    SEEN[request.id] = response
    assert response.id == request.id and response.status == "ok"


async def test_a_refusal_to_a_reply_topic_newer_than_the_router_is_dead_lettered_too(stack):
    """The router's first send to a topic created after it started once made its
    producer forget the other topics' leaders, so the refusal's dead-letter copy, sent in
    the same breath, never landed and the router stopped on NotLeaderForPartition
    (``schemas/kafka.start_producer``). Both copies land, and the router serves on."""
    reply_topic = f"{stack.settings.topics.prefix}.replies.{uuid.uuid4().hex[:8]}"
    async with TurnoutClient(stack.settings.kafka, reply_topic=reply_topic) as client:
        refused = await client.request(new_request("Hi!", "acme", model="no-such-model"), TIMEOUT_S)
        dead = await read_all(stack, stack.settings.topics.dlq, refused.id.encode())
        served = await client.request(new_request("Thanks, bye!", "acme"), TIMEOUT_S)
    SEEN[served.id] = served
    assert refused.status == "error" and served.status == "ok"
    assert any(record.key == refused.id.encode() for record in dead)


async def test_malformed_message_goes_to_the_dlq_and_the_next_is_served(stack):
    bad_key = f"broken-{uuid.uuid4().hex[:8]}"
    good = new_request("Hi there, thanks for the help!", "acme")
    async with TurnoutClient(stack.settings.kafka) as client:
        await client.submit_raw(b"\x00\x01 this is not avro", bad_key.encode(), TIMEOUT_S)  # awaited before it is published
        await client.publish([good])
        answers = await client.gather([bad_key, good.id], TIMEOUT_S)

    assert answers[good.id].status == "ok"  # the pipeline went on
    SEEN[good.id] = answers[good.id]
    error = answers[bad_key]  # the caller is told, by the key it used
    assert error.status == "error" and error.error is not None
    assert error.error.code == "invalid_request"

    dead = [r for r in await read_all(stack, stack.settings.topics.dlq, bad_key.encode()) if r.key == bad_key.encode()]
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert dead[0].value == b"\x00\x01 this is not avro"  # kept as it came, nothing lost
    assert headers[DLQ_STAGE] == b"router"
    assert b"invalid_request" in headers[DLQ_REASON]


async def test_a_request_for_an_unknown_model_is_refused_not_sent(stack):
    request = new_request("Hello", "acme", model="gpt-imaginary")
    response = (await ask(stack, request))[request.id]
    assert response.status == "error" and response.error.code == "unknown_model"
    assert response.model is None  # no backend served it

    dead = [r for r in await read_all(stack, stack.settings.topics.dlq, request.id.encode()) if r.key == request.id.encode()]
    assert AvroCodec().decode(dead[0].value, type(request)).id == request.id
    SEEN.pop(request.id)  # refused before routing: there is no completion to count


async def test_every_worker_replica_reports_its_health(stack):
    consumer = AIOKafkaConsumer(stack.settings.topics.health, bootstrap_servers=stack.settings.kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[str, DeploymentHealth] = {}
    try:
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    if record.value is not None:
                        seen[record.key.decode()] = AvroCodec().decode(record.value, DeploymentHealth)
            if {r.model for r in seen.values()} >= set(stack.settings.fleet):
                break
    finally:
        await consumer.stop()
    assert {r.model for r in seen.values()} == set(stack.settings.fleet)
    assert all(key == f"{r.model}/{r.replica}" and r.backlog >= 0 and r.breaker == "closed" for key, r in seen.items())


async def test_every_outcome_lands_in_clickhouse_once(stack):
    assert len(SEEN) > 60, "earlier tests should have produced responses"
    stack.stop_children([c.name for c in stack.children if c.name.startswith(("router", "worker"))])
    stack.stop_children(["sink"], timeout_s=60)  # the sink drains the events topic before it exits
    assert stack.child("sink").process.returncode == 0

    client = open_client(stack.settings.clickhouse)
    try:
        db = stack.settings.clickhouse.database
        ids = list(SEEN)
        rows = client.query(
            f"SELECT request_id, kind, model, cost_usd FROM {db}.routing_events FINAL "
            "WHERE kind IN ('completion', 'failure') AND shadow = 0 AND request_id IN {ids:Array(String)}",
            parameters={"ids": ids},
        ).result_rows
        assert sorted(r[0] for r in rows) == sorted(ids)  # one final outcome per answered request, no duplicates
        for request_id, kind, model, cost in rows:
            assert kind == "completion"
            assert model == SEEN[request_id].model
            assert cost == pytest.approx(SEEN[request_id].cost_usd)

        decisions = client.query(
            f"SELECT count() FROM {db}.routing_events FINAL WHERE kind = 'decision' AND shadow = 0 AND request_id IN {{ids:Array(String)}}",
            parameters={"ids": ids},
        ).result_rows[0][0]
        assert decisions == len(ids)
        fallback_attempts = client.query(
            f"SELECT count() FROM {db}.routing_events FINAL WHERE kind = 'attempt' AND model = 'flaky' AND status = 'error'"
        ).result_rows[0][0]
        assert fallback_attempts == 2  # max_retries = 1: two failed calls before moving to the fallback
        shadow_rows = client.query(
            f"SELECT model, kind FROM {db}.routing_events FINAL WHERE shadow = 1 AND request_id IN {{ids:Array(String)}} ORDER BY kind",
            parameters={"ids": SHADOWED},
        ).result_rows
        assert shadow_rows == [("medium", "attempt"), ("medium", "completion"), ("medium", "decision")]  # served and recorded
    finally:
        client.close()  # chDB serves one directory per process: free it for the tests after this one


def test_calls_carry_their_region_and_streamed_ones_their_time_to_first_token(stack):
    """Issue 5: attempt and final events name the deployment's region; a streamed call's
    ttft_ms is measured and within its latency, an unstreamed one's is NULL."""
    client = open_client(stack.settings.clickhouse)
    try:
        db = stack.settings.clickhouse.database
        rows = client.query(
            f"SELECT kind, model, status, region, ttft_ms, latency_ms, cache_hit FROM {db}.routing_events FINAL "
            "WHERE shadow = 0 AND request_id IN {ids:Array(String)}",
            parameters={"ids": list(SEEN)},
        ).named_results()
        rows = list(rows)
    finally:
        client.close()
    served = [r for r in rows if r["kind"] in ("attempt", "completion") and r["status"] == "ok" and not r["cache_hit"]]
    streamed = [r for r in served if r["model"] == "small"]
    unstreamed = [r for r in served if r["model"] == "medium"]
    assert {"attempt", "completion"} <= {r["kind"] for r in streamed} and unstreamed
    for row in streamed:
        assert row["region"] == "eu-west-1"
        assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"], row
    assert all(r["ttft_ms"] is None and r["region"] == "local" for r in unstreamed)
    failed = [r for r in rows if r["kind"] == "attempt" and r["status"] == "error"]
    assert failed and all(r["ttft_ms"] is None and r["region"] == "local" for r in failed)  # flaky: no token ever came
    assert {r["region"] for r in rows if r["kind"] == "decision"} == {""}  # the router calls no deployment


def test_turnout_report_prints_per_model_and_per_route_figures(stack, monkeypatch):
    """After the previous test stopped the sink, the CLI reads the same store."""
    import json

    from click.testing import CliRunner

    from turnout.cli import cli

    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["report", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_model = {row["model"]: row for row in report["by model"]}
    answered = [r for r in SEEN.values() if r.status == "ok"]
    assert sum(row["requests"] for row in by_model.values()) == len(answered)
    assert by_model["flaky"]["failed_attempts"] == 2 and by_model["flaky"]["requests"] == 0
    answered_medium = [r for r in answered if r.model == "medium"]
    assert by_model["medium"]["requests"] == len(answered_medium)  # the shadow copy answered nobody...
    assert by_model["medium"]["cost_usd"] > sum(r.cost_usd for r in answered_medium)  # ...but it was paid for
    routes = {row["route"]: row for row in report["by route"]}
    assert routes["always-failing-primary"]["fell_back"] == 1
    assert {"code", "default", "pinned"} <= set(routes)
    rejections = {row["error_kind"]: row["rejected"] for row in report["rejections"]}
    assert rejections == {"invalid_request": 1, "unknown_model": 2}  # the garbage message and the two unknown models
