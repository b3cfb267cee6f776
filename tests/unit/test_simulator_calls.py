"""``GET /calls``: the simulator lists each call that names its Turnout request
(``X-Client-Request-Id``) with the served model and its arrival time, bounded; the
backends' own calls, over the real aiohttp transport, arrive named."""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import SecretStr

from backend_fixtures import make_request, running_simulator
from test_simulator import MESSAGES, health, instant, simulator_settings
from turnout.consumers.anthropic_backend import AnthropicMessagesBackend
from turnout.consumers.backend import OpenAIChatBackend, embedding_request_ids
from turnout.consumers.sim_stats import CALL_LOG_SIZE, CallLog

SETTINGS = simulator_settings(steady=instant(), broken=instant(error_rate=1.0))
NAMED = "X-Client-Request-Id"


async def calls(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await http.get("/calls")
    assert response.status_code == 200
    return response.json()


async def post(port: int, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        return await http.post(path, json=body, headers=headers)


async def test_a_named_call_is_listed_with_its_model_and_arrival_time():
    async with running_simulator(SETTINGS) as (_, port):
        before = time.time()
        response = await post(port, "/chat/completions", {"model": "steady", "messages": MESSAGES}, **{NAMED: "req-7"})
        after = time.time()
        listed = await calls(port)
    assert response.status_code == 200
    assert listed["dropped"] == 0
    [call] = listed["calls"]
    assert (call["request_id"], call["model"]) == ("req-7", "steady")
    assert before <= call["at"] <= after


async def test_calls_are_listed_in_arrival_order_failed_ones_too_and_unnamed_ones_not():
    async with running_simulator(SETTINGS) as (_, port):
        await post(port, "/chat/completions", {"model": "steady", "messages": MESSAGES}, **{NAMED: "a"})
        await post(port, "/chat/completions", {"model": "steady", "messages": MESSAGES})  # names no request
        failed = await post(port, "/chat/completions", {"model": "broken", "messages": MESSAGES}, **{NAMED: "b"})
        await post(port, "/chat/completions", {"model": "steady", "messages": MESSAGES}, **{NAMED: "a"})  # a repeat
        listed = (await calls(port))["calls"]
        report = await health(port)
    assert failed.status_code == 500
    assert [(c["request_id"], c["model"]) for c in listed] == [("a", "steady"), ("b", "broken"), ("a", "steady")]
    assert [c["at"] for c in listed] == sorted(c["at"] for c in listed)
    assert report["calls"] == 4  # /health counts every call, as before


async def test_a_call_whose_body_cannot_be_read_is_listed_without_a_model():
    async with running_simulator(SETTINGS) as (_, port):
        response = await post(port, "/chat/completions", {"messages": MESSAGES}, **{NAMED: "no-model"})
        listed = (await calls(port))["calls"]
    assert response.status_code == 400
    assert [(c["request_id"], c["model"]) for c in listed] == [("no-model", None)]


async def test_an_embeddings_call_lists_each_request_its_header_names():
    async with running_simulator(SETTINGS) as (_, port):
        await post(port, "/embeddings", {"model": "emb", "input": ["x", "y", "z"]}, **{NAMED: "r1, r2,r3"})
        listed = (await calls(port))["calls"]
    assert [(c["request_id"], c["model"]) for c in listed] == [("r1", "emb"), ("r2", "emb"), ("r3", "emb")]
    assert len({c["at"] for c in listed}) == 1  # one call: one arrival


async def test_a_chat_call_takes_its_header_whole():
    async with running_simulator(SETTINGS) as (_, port):
        await post(port, "/chat/completions", {"model": "steady", "messages": MESSAGES}, **{NAMED: "a,b"})
        listed = (await calls(port))["calls"]
    assert [c["request_id"] for c in listed] == ["a,b"]


async def test_the_backends_calls_arrive_named_over_the_real_transport():
    """Unstreamed, streamed and embeddings calls from Turnout's own backends (aiohttp's
    transport, not a mock), in both formats the simulator speaks."""
    async with running_simulator(SETTINGS) as (_, port):
        url = f"http://127.0.0.1:{port}/v1"
        openai_backend = OpenAIChatBackend(url, "steady")
        streaming = OpenAIChatBackend(url, "steady", stream=True)
        claude = AnthropicMessagesBackend(url, "steady", max_output_tokens=50, api_key=SecretStr("k"), stream=True)
        try:
            await openai_backend.complete(make_request(id="chat-1"))
            completion = await streaming.complete(make_request(id="chat-2"))
            await claude.complete(make_request(id="chat-3"))
            embedding_request_ids.set(("emb-1", "emb-2"))  # as the batcher names its batch's requests
            await openai_backend.embed(["x", "y"])
        finally:
            for backend in (openai_backend, streaming, claude):
                await backend.aclose()
        listed = (await calls(port))["calls"]
    assert completion.ttft_ms is not None  # it was streamed
    assert [c["request_id"] for c in listed] == ["chat-1", "chat-2", "chat-3", "emb-1", "emb-2"]
    assert {c["model"] for c in listed} == {"steady"}


def test_the_log_keeps_the_newest_entries_and_counts_the_dropped_ones():
    log = CallLog(size=3)
    for i in range(4):
        log.record([f"r{i}"], "m", float(i))
    log.record(["b1", "b2"], "m", 9.0)
    snapshot = log.snapshot()
    assert [c["request_id"] for c in snapshot["calls"]] == ["r3", "b1", "b2"]
    assert snapshot["dropped"] == 3
    assert snapshot["calls"][0] == {"request_id": "r3", "model": "m", "at": 3.0}
    assert CallLog().size == CALL_LOG_SIZE == 200_000
