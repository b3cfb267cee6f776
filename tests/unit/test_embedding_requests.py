"""Embedding requests in the contract and the router: the request's shape, its signals,
the capability that sends it to embedding models only, routes, settings, cache keys and
schema evolution."""

from __future__ import annotations

import copy

import pytest
from factories import T0, make_request, make_settings, single_object
from pydantic import ValidationError
from test_serde import catalog_with

from turnout.consumers.cache import cache_key
from turnout.consumers.worker import default_max_in_flight
from turnout.schemas.catalog import bundled_catalog
from turnout.schemas.fleet import CAPABILITIES
from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import WorkerSettings
from turnout.streams.rules import context_from, decide, plan_route
from turnout.streams.signals import compute_signals, required_capabilities
from turnout.streams.tokens import count_tokens


def embedding(*texts: str, **fields) -> InferenceRequest:
    return InferenceRequest(id=fields.pop("id", "e1"), tenant="acme", input=list(texts), created_at=T0, **fields)


# -- the request ---------------------------------------------------------------------------
def test_an_embedding_request_needs_no_messages():
    request = embedding("a", "b")
    assert request.messages == [] and request.input == ["a", "b"] and make_request().input is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "a request needs messages (a chat request) or input (an embedding request); both are empty"),
        ({"input": []}, "input: an embedding request needs at least one text"),
        ({"input": ["ok", ""]}, "input[1] is empty: every text to embed needs at least one character"),
        ({"input": ["x"], "messages": [{"role": "user", "content": "hi"}]}, "set messages (a chat request) or input (an embedding request), not both"),
        ({"input": ["x"], "max_tokens": 5, "temperature": 0.0}, "an embedding request (input set) takes no max_tokens, temperature: they apply to chat requests only"),
    ],
)
def test_malformed_requests_are_refused_with_a_precise_message(fields, message):
    with pytest.raises(ValidationError) as caught:
        InferenceRequest(id="r", tenant="t", **fields)
    assert message in str(caught.value)


# -- signals -------------------------------------------------------------------------------
def test_signals_are_read_over_the_texts():
    texts = ["The router moves each prompt onto the track that serves it best.", "Write to marie.dupont@example.fr today."]
    signals = compute_signals(embedding(*texts))
    assert (signals.task_type, signals.task_confidence, signals.task_method) == ("embedding", 1.0, "input-field")
    assert signals.input_tokens == sum(count_tokens(t, "o200k_base")[0] for t in texts), "the texts' tokens, no chat overhead"
    assert signals.token_method == "exact:o200k_base"
    assert (signals.turns, signals.expected_output_tokens, signals.complexity) == (0, 0, 0.0)
    assert signals.capabilities == ["embeddings"] == required_capabilities(embedding("x"))
    assert signals.language == "en"
    assert signals.sensitive_kinds == ["email"], "tenant policies see what is sent for embedding"


def test_chat_requests_never_need_embeddings():
    assert "embeddings" not in required_capabilities(make_request())
    assert "embeddings" in CAPABILITIES


# -- selection -----------------------------------------------------------------------------
FLEET = {
    "embed": {"provider": "simulated", "served_model": "sim-embed", "capabilities": ["embeddings"], "price_input_per_mtok": 0.0},
    "embed-big": {"provider": "simulated", "served_model": "sim-embed-big", "capabilities": ["embeddings"], "price_input_per_mtok": 0.1, "context_window": 512},
    "chat": {"provider": "simulated", "served_model": "sim-chat", "price_input_per_mtok": 1.0},
}
ROUTES = [
    {"name": "embeddings", "match": {"task_type": "embedding"}, "model": "embed-big", "fallback": ["embed"]},
    {"name": "default", "objective": "cost"},
]


def test_an_embedding_route_matches_on_the_task_type_and_plans_embedding_models_only():
    settings = make_settings(ROUTES, FLEET)
    slip = plan_route(embedding("x" * 4000), settings)  # far more tokens than embed-big's window: per text, not checked
    assert slip.decision.route == "embeddings"
    assert [(s.model, s.role) for s in slip.plan] == [("embed-big", "primary"), ("embed", "fallback")]


def test_a_catch_all_sends_embedding_requests_to_embedding_models_and_chat_never_to_them():
    settings = make_settings([{"name": "default", "objective": "cost"}], FLEET)
    ctx = context_from(settings)
    chat = decide(make_request("Hello there"), ctx, 60)
    assert [s.model for s in chat.slip.plan] == ["chat"], "the free embedding model is no chat candidate"
    dropped = {c.model: c.reason for c in chat.selection.candidates if not c.kept}
    assert dropped == {"embed": "an embedding model: serves embedding requests only", "embed-big": "an embedding model: serves embedding requests only"}
    embedded = decide(embedding("some text"), ctx, 60)
    assert [s.model for s in embedded.slip.plan] == ["embed", "embed-big"]


def test_an_embedding_request_with_no_embedding_model_is_refused_naming_why():
    settings = make_settings([{"name": "default"}], {"chat": FLEET["chat"]})
    refusal = plan_route(embedding("x"), settings)
    assert refusal.error.code == "no_capable_model"
    assert "chat: lacks embeddings" in refusal.error.message


# -- the worker's settings and state -------------------------------------------------------
def test_worker_settings_for_batching():
    worker = WorkerSettings()
    assert (worker.embedding_batch_max, worker.embedding_batch_wait_ms) == (64, 10.0)
    with pytest.raises(ValidationError, match="embedding_batch_max"):
        WorkerSettings(embedding_batch_max=0)
    settings = make_settings(ROUTES, FLEET, worker={"embedding_batch_max": 32})
    assert default_max_in_flight(settings, "embed") == 8 * 32, "room to fill every concurrent batch call"
    assert default_max_in_flight(settings, "chat") == 4 * 8


def test_the_cache_key_holds_the_texts_exactly():
    assert cache_key(embedding("a", "b"), "embed") == cache_key(embedding("a", "b", id="other"), "embed")
    assert cache_key(embedding("a", "b"), "embed") != cache_key(embedding("b", "a"), "embed")
    assert cache_key(embedding("a "), "embed") != cache_key(embedding("a"), "embed"), "a vector depends on every character"


# -- schema evolution ----------------------------------------------------------------------
def without_field(record: str, field: str) -> dict:
    schema = copy.deepcopy(bundled_catalog().by_name(record))
    schema.pop("__fastavro_parsed", None)
    schema.pop("__named_schemas", None)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != field]
    return schema


def test_messages_written_before_the_new_fields_read_with_their_defaults():
    catalog, (old_request, old_response) = catalog_with(
        without_field("turnout.InferenceRequest", "input"), without_field("turnout.InferenceResponse", "embeddings")
    )
    codec = AvroCodec(catalog=catalog)
    chat = make_request()
    old_datum = {k: v for k, v in chat.model_dump().items() if k != "input"}
    assert codec.decode(single_object(old_request, old_datum), InferenceRequest) == chat
    response = InferenceResponse(id="r", tenant="t", status="ok", content="hi", created_at=T0)
    old_datum = {k: v for k, v in response.model_dump().items() if k != "embeddings"}
    decoded = codec.decode(single_object(old_response, old_datum), InferenceResponse)
    assert decoded == response and decoded.embeddings == []
