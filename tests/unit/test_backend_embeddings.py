"""``embed`` on the backends over httpx.MockTransport: one call for many texts, vectors in
the texts' order, usage, and errors classified exactly like a chat call's.

Response fixtures are validated with the official SDKs' own types (``openai.types.
CreateEmbeddingResponse``, google-genai's ``EmbedContentResponse``), so they are the
shapes the real APIs send."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from google.genai import types as genai
from openai.types import CreateEmbeddingResponse
from pydantic import SecretStr

from backend_fixtures import SECRET, Script, make_backend, reply, status
from test_backend_anthropic import claude
from test_backend_gemini import gemini
from turnout.consumers.backend import BackendError, ChatBackend, EmbeddingResult

TEXTS = ["The router moves each prompt.", "onto the track", "that serves it best"]


def openai_embeddings(vectors: list[list[float]], *, prompt_tokens: int = 9, order: list[int] | None = None) -> dict[str, Any]:
    """A ``/v1/embeddings`` answer as OpenAI sends it; ``order`` shuffles the data items."""
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    if order is not None:
        data = [data[i] for i in order]
    body = {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
    CreateEmbeddingResponse.model_validate(body)
    return body


def gemini_embeddings(vectors: list[list[float]], **extra: Any) -> dict[str, Any]:
    body = {"embeddings": [{"values": v} for v in vectors], **extra}
    genai.EmbedContentResponse.model_validate(body)
    return body


VECTORS = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]


async def embed_once(backend: ChatBackend, texts: list[str] = TEXTS) -> EmbeddingResult:
    try:
        return await backend.embed(texts)
    finally:
        await backend.aclose()


async def embed_failure(backend: ChatBackend, texts: list[str] = TEXTS) -> BackendError:
    with pytest.raises(BackendError) as caught:
        await embed_once(backend, texts)
    return caught.value


# -- OpenAI --------------------------------------------------------------------------------
async def test_openai_posts_every_text_in_one_call_to_embeddings():
    script = Script(reply(openai_embeddings(VECTORS)))
    result = await embed_once(make_backend(script, served_model="text-embedding-3-small", api_key=SECRET))
    assert script.calls == 1
    sent = script.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/v1/embeddings")
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert script.bodies[0] == {"model": "text-embedding-3-small", "input": TEXTS}
    assert result.vectors == VECTORS and result.input_tokens == 9 and result.output_tokens == 0
    assert result.latency_ms >= 0


async def test_openai_vectors_follow_the_index_not_the_order_they_arrive_in():
    script = Script(reply(openai_embeddings(VECTORS, order=[2, 0, 1])))
    assert (await embed_once(make_backend(script))).vectors == VECTORS


async def test_openai_without_usage_reports_zero_tokens():
    body = openai_embeddings(VECTORS)
    del body["usage"]
    assert (await embed_once(make_backend(Script(reply(body))))).input_tokens == 0


@pytest.mark.parametrize(
    "body",
    [
        {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}], "model": "m"},  # 1 vector for 3 texts
        {"object": "list", "data": [{"index": i, "embedding": [0.1]} for i in (0, 1, 1)], "model": "m"},  # an index twice
        {"object": "list", "data": [{"index": i, "embedding": "AAAA"} for i in range(3)], "model": "m"},  # base64, not asked for
        {"object": "list", "data": {"index": 0}, "model": "m"},
        {"error": "nope"},
    ],
)
async def test_openai_a_200_that_is_not_an_embedding_list_is_a_retryable_malformed_response(body):
    error = await embed_failure(make_backend(Script(reply(body))))
    assert (error.code, error.retryable) == ("malformed_response", True)
    assert "not a openai-compatible embedding list" in error.message


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (status(429, "slow down", headers={"retry-after": "2"}), "rate_limited", True),
        (status(503, "overloaded"), "backend_error", True),
        (status(400, "input too long"), "backend_rejected", False),
        (httpx.ReadTimeout("slow"), "timeout", True),
        (httpx.ConnectError("refused"), "backend_unreachable", True),
    ],
)
async def test_openai_errors_are_classified_like_chat_calls(response, code, retryable):
    error = await embed_failure(make_backend(Script(response)))
    assert (error.code, error.retryable) == (code, retryable)
    if code == "rate_limited":
        assert error.retry_after_s == 2


async def test_openai_a_key_echoed_in_an_error_is_scrubbed():
    error = await embed_failure(make_backend(Script(status(401, f"Incorrect API key provided: {SECRET}")), api_key=SECRET))
    assert SECRET not in error.message and "***" in error.message


# -- Gemini --------------------------------------------------------------------------------
async def test_gemini_posts_batch_embed_contents_one_request_per_text():
    script = Script(reply(gemini_embeddings(VECTORS)))
    result = await embed_once(gemini(script, served_model="gemini-embedding-001"))
    sent = script.requests[0]
    assert sent.url.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == SECRET and SECRET not in str(sent.url)
    requests = script.bodies[0]["requests"]
    assert [r["model"] for r in requests] == ["models/gemini-embedding-001"] * 3
    assert [genai.Content.model_validate(r["content"]).parts[0].text for r in requests] == TEXTS
    assert result.vectors == VECTORS
    assert result.input_tokens == 0, "batchEmbedContents reports no usage: the worker falls back to the router's count"


async def test_gemini_reads_usage_metadata_when_present():
    body = gemini_embeddings(VECTORS, usageMetadata={"promptTokenCount": 11})
    assert (await embed_once(gemini(Script(reply(body))))).input_tokens == 11


async def test_gemini_a_vector_short_is_a_malformed_response():
    error = await embed_failure(gemini(Script(reply(gemini_embeddings(VECTORS[:2])))))
    assert (error.code, error.retryable) == ("malformed_response", True)


# -- Anthropic -----------------------------------------------------------------------------
async def test_anthropic_has_no_embeddings_and_says_so_without_calling():
    script = Script(reply({}))
    error = await embed_failure(claude(script))
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert error.message == "embeddings are not supported by the anthropic API"
    assert script.calls == 0


def test_an_anthropic_deployment_cannot_declare_embeddings():
    from turnout.schemas.fleet import ModelDeployment

    with pytest.raises(ValueError, match="the anthropic api has no embeddings endpoint"):
        ModelDeployment(api="anthropic", base_url="https://api.anthropic.com/v1", served_model="claude", capabilities={"embeddings"}, api_key=SecretStr("k"))
