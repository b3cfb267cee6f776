"""consumers/cache.py: the exact-match response cache, its key, and what may be stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest.mock import Mock

import pytest
from factories import T0, full_request, full_response, full_routed
from pydantic import ValidationError

from turnout.consumers.cache import CacheConfig, ResponseCache, cache_key, cacheable, normalize, request_cacheable
from turnout.schemas.models import ChatMessage, InferenceRequest, RoutedRequest

DEPLOYMENT = "medium"


@pytest.fixture
def clock() -> Mock:
    """A clock the test moves by hand: ``clock.now += 60``."""
    fake = Mock(side_effect=lambda: fake.now)
    fake.now = 500.0
    return fake


def with_(request: InferenceRequest, **update: Any) -> InferenceRequest:
    return request.model_copy(update=update)


def with_message(index: int, **update: Any) -> Callable[[InferenceRequest], InferenceRequest]:
    def change(request: InferenceRequest) -> InferenceRequest:
        messages = list(request.messages)
        messages[index] = messages[index].model_copy(update=update)
        return with_(request, messages=messages)

    return change


def key(request: InferenceRequest, deployment: str = DEPLOYMENT) -> str:
    return cache_key(request, deployment)


# -- the key -----------------------------------------------------------------------------------------
def test_the_key_is_a_sha256_hex_digest_and_deterministic() -> None:
    first = key(full_request())
    assert len(first) == 64 and int(first, 16) >= 0
    assert key(full_request()) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda r: with_(r, id="another-id"),
        lambda r: with_(r, created_at=T0 + timedelta(hours=3)),
        lambda r: with_(r, deadline=None),
        lambda r: with_(r, reply_topic="elsewhere"),
        lambda r: with_(r, metadata={"team": "other"}),
        lambda r: with_(r, model="large"),
        lambda r: with_(r, cache=False),
    ],
    ids=["id", "created_at", "deadline", "reply_topic", "metadata", "model-hint", "cache-flag"],
)
def test_fields_that_cannot_change_the_answer_are_not_keyed(change: Callable[[InferenceRequest], InferenceRequest]) -> None:
    assert key(change(full_request())) == key(full_request())


@pytest.mark.parametrize(
    "change",
    [
        lambda r: with_(r, tenant="globex"),
        with_message(1, content="Summarize: something else"),
        with_message(1, role="assistant"),
        with_message(1, name="bob"),
        with_message(1, images=["https://example.com/a.png"]),
        lambda r: with_(r, messages=[*r.messages, ChatMessage(role="user", content="and?")]),
        lambda r: with_(r, messages=list(reversed(r.messages))),
        lambda r: with_(r, max_tokens=257),
        lambda r: with_(r, max_tokens=None),
        lambda r: with_(r, temperature=0.0),
        lambda r: with_(r, temperature=None),
        lambda r: with_(r, stop=["\n\n", "END", "STOP"]),
        lambda r: with_(r, stop=[]),
        lambda r: with_(r, tools=None),
        lambda r: with_(r, tools='[{"type": "function", "function": {"name": "search"}}]'),
        lambda r: with_(r, response_schema=None),
        lambda r: with_(r, response_schema='{"type": "array"}'),
    ],
    ids=[
        "tenant", "content", "role", "name", "images", "extra-turn", "turn-order", "max_tokens", "max_tokens-unset",
        "temperature", "temperature-unset", "stop-added", "stop-removed", "tools-removed", "tools-changed",
        "schema-removed", "schema-changed",
    ],
)  # fmt: skip
def test_any_change_of_a_keyed_field_changes_the_key(change: Callable[[InferenceRequest], InferenceRequest]) -> None:
    assert key(change(full_request())) != key(full_request())


def test_any_text_can_be_keyed() -> None:
    odd = with_message(1, content="\ud800 lone surrogate, NUL \x00, emoji 🚂")(full_request())
    assert key(odd) != key(full_request())


def test_the_deployment_is_keyed() -> None:
    assert key(full_request(), "medium") != key(full_request(), "large")


def test_tenants_never_share_an_answer(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(clock=clock)
    acme = full_request()
    cache.put(key(acme), "acme's answer")
    assert cache.get(key(with_(acme, tenant="globex"))) is None
    assert cache.get(key(with_(acme, id="acme-again"))) == "acme's answer"


# -- normalization -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        with_message(1, content="Summarize: ünïcödé ✓  \n\t\n"),
        lambda r: with_(r, stop=["END", "\n\n", "END"]),
        lambda r: with_(r, tools='[ {"type":"function",\n  "function": {"name":"lookup"}} ]'),
        lambda r: with_(r, response_schema='{ "type" :\n "object" }'),
    ],
    ids=["trailing-whitespace", "stop-order-and-duplicates", "tools-json-spacing", "schema-json-spacing"],
)
def test_what_means_the_same_shares_a_key(change: Callable[[InferenceRequest], InferenceRequest]) -> None:
    assert key(change(full_request())) == key(full_request())


@pytest.mark.parametrize(
    "change",
    [
        with_message(1, content="  Summarize: ünïcödé ✓"),
        with_message(1, content="Summarize:  ünïcödé ✓"),
        with_message(1, content="summarize: ünïcödé ✓"),
        with_message(1, content="Summarize:\r\nünïcödé ✓"),
        with_message(1, content="Summarize: u\u0308nïcödé ✓"),  # the same text in Unicode NFD
        lambda r: with_(r, response_schema='{"type": "object", "properties": {"b": {}, "a": {}}}'),
    ],
    ids=["leading-whitespace", "inner-whitespace", "case", "line-endings", "unicode-form", "json-key-order"],
)
def test_what_may_change_the_answer_is_not_normalized(change: Callable[[InferenceRequest], InferenceRequest]) -> None:
    base = with_(full_request(), response_schema='{"type": "object", "properties": {"a": {}, "b": {}}}')
    assert key(change(base)) != key(base)


def test_empty_json_fields_are_the_same_as_none() -> None:
    request = full_request()
    assert key(with_(request, tools="", response_schema="")) == key(with_(request, tools=None, response_schema=None))


def test_temperature_zero_is_one_value() -> None:
    assert normalize(with_(full_request(), temperature=0))["temperature"] == normalize(with_(full_request(), temperature=0.0))["temperature"]


def test_json_that_does_not_parse_is_keyed_as_it_is() -> None:
    assert normalize(with_(full_request(), tools="[not json"))["tools"] == "[not json"


# -- the store -----------------------------------------------------------------------------------------
def test_hits_and_misses_are_counted(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(clock=clock)
    assert cache.get("k") is None
    cache.put("k", "answer")
    assert cache.get("k") == "answer"
    assert cache.get("k") == "answer"
    assert cache.get("other") is None
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.evictions, stats.expirations, stats.size) == (2, 2, 0, 0, 1)


def test_an_entry_expires_ttl_after_it_was_stored(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(CacheConfig(ttl_s=60), clock=clock)
    cache.put("k", "answer")
    clock.now += 59.9
    assert cache.get("k") == "answer"  # a hit does not extend the entry's life
    clock.now += 0.1
    assert cache.get("k") is None
    assert (cache.stats.expirations, cache.stats.misses, len(cache)) == (1, 1, 0)


def test_storing_again_renews_an_entry(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(CacheConfig(ttl_s=60), clock=clock)
    cache.put("k", "old")
    clock.now += 50
    cache.put("k", "new")
    clock.now += 50
    assert cache.get("k") == "new"
    assert len(cache) == 1


def test_the_least_recently_used_entry_is_evicted(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(CacheConfig(max_entries=2), clock=clock)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # b is now the least recently used
    cache.put("c", "C")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    assert (cache.stats.evictions, len(cache)) == (1, 2)


def test_expired_entries_go_before_live_ones_are_evicted(clock: Mock) -> None:
    cache: ResponseCache[str] = ResponseCache(CacheConfig(max_entries=2, ttl_s=10), clock=clock)
    cache.put("old", "O")
    clock.now += 5
    cache.put("live", "L")
    clock.now += 6  # "old" has expired, "live" has not
    cache.put("new", "N")
    assert (cache.get("live"), cache.get("new")) == ("L", "N")
    assert (cache.stats.evictions, cache.stats.expirations) == (0, 1)


def test_the_size_is_bounded(clock: Mock) -> None:
    cache: ResponseCache[int] = ResponseCache(CacheConfig(max_entries=100), clock=clock)
    for i in range(1_000):
        cache.put(f"k{i}", i)
    assert len(cache) == 100
    assert cache.stats.evictions == 900
    assert cache.get("k999") == 999 and cache.get("k899") is None


# -- what may be cached ------------------------------------------------------------------------------------
def deterministic_slip(**request_update: Any) -> RoutedRequest:
    """``full_routed`` (sampled at 0.25) made deterministic, then changed by ``request_update``."""
    slip = full_routed()
    return slip.model_copy(update={"request": with_(slip.request, **{"temperature": 0.0, **request_update})})


def test_a_complete_answer_to_a_deterministic_request_is_cacheable() -> None:
    assert cacheable(deterministic_slip(), full_response())
    assert cacheable(deterministic_slip(temperature=None), full_response())


@pytest.mark.parametrize(
    "update",
    [
        {"finish_reason": "length"},
        {"finish_reason": "tool_calls"},
        {"finish_reason": None},
        {"status": "error", "content": None},
        {"content": None},
        {"cache_hit": True},
        {"validation": "failed"},
    ],
    ids=["truncated", "tool-call", "no-finish-reason", "error", "no-content", "already-a-hit", "failed-validation"],
)
def test_anything_but_a_complete_successful_answer_is_not_cacheable(update: dict[str, Any]) -> None:
    assert not cacheable(deterministic_slip(), full_response().model_copy(update=update))


def test_a_shadow_copy_is_never_cached() -> None:
    assert not cacheable(deterministic_slip().model_copy(update={"shadow": True}), full_response())


def test_a_request_may_opt_out_of_the_cache() -> None:
    assert not request_cacheable(with_(full_request(), temperature=0.0, cache=False))
    assert not cacheable(deterministic_slip(cache=False), full_response())


def test_sampled_requests_are_cached_only_when_configured() -> None:
    sampled = with_(full_request(), temperature=0.7)
    assert not request_cacheable(sampled)
    assert request_cacheable(sampled, CacheConfig(cache_sampled=True))
    slip = deterministic_slip(temperature=0.7)
    assert not cacheable(slip, full_response())
    assert cacheable(slip, full_response(), CacheConfig(cache_sampled=True))


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [("max_entries", 0), ("ttl_s", 0), ("ttl_s", -1)])
def test_out_of_range_settings_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        CacheConfig(**{field: value})
