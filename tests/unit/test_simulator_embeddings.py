"""The simulator's ``POST /v1/embeddings``, called by the official openai client: the
OpenAI wire format, deterministic unit vectors, the fault profile, and ``/health``
counting the inputs of each call (what proves a client batched)."""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse

from backend_fixtures import running_simulator
from test_simulator import client, health, instant, simulator_settings
from turnout.consumers.backend import OpenAIChatBackend

SETTINGS = simulator_settings(broken=instant(error_rate=1.0), wide=instant(embedding_dim=64), cut=instant(truncate_rate=1.0))


async def test_embeddings_parse_with_the_openai_client_one_unit_vector_per_input_in_order():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        batch = await api.embeddings.create(model="emb", input=["alpha", "beta", "gamma"])  # the SDK asks for base64
        floats = await api.embeddings.create(model="emb", input=["beta"], encoding_format="float")

    assert isinstance(batch, CreateEmbeddingResponse) and batch.object == "list" and batch.model == "emb"
    assert [d.index for d in batch.data] == [0, 1, 2]
    for item in batch.data:
        assert len(item.embedding) == 16  # the profile's embedding_dim
        assert math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-5)
    assert batch.data[0].embedding != batch.data[1].embedding
    # the same text, the same vector (base64 float32 and plain floats agree to float32 precision)
    assert floats.data[0].embedding == pytest.approx(batch.data[1].embedding, rel=1e-6)
    assert batch.usage.prompt_tokens == batch.usage.total_tokens > 0


async def test_raw_json_validates_and_a_single_string_input_is_one_text():
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/embeddings", json={"model": "wide", "input": "just one"})
        sized = await http.post("/embeddings", json={"model": "wide", "input": ["x"], "dimensions": 8})
    payload = response.json()
    parsed = CreateEmbeddingResponse.model_validate(payload)
    assert set(payload) <= set(CreateEmbeddingResponse.model_fields)
    assert len(parsed.data) == 1 and len(parsed.data[0].embedding) == 64
    assert len(sized.json()["data"][0]["embedding"]) == 8, "a call's dimensions win over the profile's"


async def test_vectors_are_the_same_in_every_simulator():
    async def one_vector(seed: int) -> list[float]:
        async with running_simulator(simulator_settings(seed=seed)) as (_, port), client(port) as api:
            return (await api.embeddings.create(model="emb", input=["stable"], encoding_format="float")).data[0].embedding

    assert await one_vector(1) == await one_vector(99)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "emb", "input": []}, "input"),
        ({"model": "emb", "input": ["ok", ""]}, "input"),
        ({"model": "emb", "input": [1, 2]}, "input"),
        ({"model": "emb", "input": ["x"], "dimensions": 0}, "dimensions"),
        ({"model": "emb", "input": ["x"], "encoding_format": "int8"}, "encoding_format"),
        ({"input": ["x"]}, "model"),
    ],
)
async def test_invalid_requests_are_refused_with_a_400_naming_the_parameter(body, param):
    async with running_simulator(SETTINGS) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
        response = await http.post("/embeddings", json=body)
        report = await health(port)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert report["embeddings"]["calls"] == 0 and report["invalid_requests"] == 1


async def test_the_fault_profile_applies():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        with pytest.raises(openai.InternalServerError):
            await api.embeddings.create(model="broken", input=["x"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
            response = await http.post("/embeddings", json={"model": "cut", "input": ["x"]})
        report = await health(port)
    with pytest.raises(ValueError):
        response.json()  # cut mid-JSON
    assert report["faults"]["server_error"] == 1 and report["faults"]["truncated"] == 1


async def test_health_counts_calls_and_inputs_per_call():
    async with running_simulator(SETTINGS) as (_, port):
        backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "emb")
        try:
            for texts in (["a"], ["a", "b", "c"], ["a", "b", "c"]):
                assert len((await backend.embed(texts)).vectors) == len(texts)
        finally:
            await backend.aclose()
        report = await health(port)
    assert report["embeddings"] == {"calls": 3, "inputs": 7, "max_inputs_per_call": 3, "inputs_per_call": {"1": 1, "3": 2}}
    assert report["calls_by_format"]["openai"] == 3
