"""streams/rules.py: rule matching and the routing slip ``plan_route`` builds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from factories import DEV_TOML, T0, clean_turnout_env, make_request, make_settings

from turnout.schemas.models import RoutedRequest, Signals
from turnout.schemas.settings import Route, RouteMatch, load_settings
from turnout.streams.rules import Refusal, first_matching_route, matches, plan_route
from turnout.streams.signals import compute_signals

CODE = "Write a Python function that parses ISO dates"
PLAIN = "What is the capital of France?"


def sig(task_type: str = "question-answering", input_tokens: int = 50) -> Signals:
    return Signals(
        task_type=task_type, task_confidence=1.0, task_method="test", input_tokens=input_tokens, token_method="test", turns=1
    )


def rm(**kw: Any) -> RouteMatch:
    return RouteMatch(**kw)


def routed(outcome: RoutedRequest | Refusal) -> RoutedRequest:
    assert isinstance(outcome, RoutedRequest), outcome
    return outcome


# -- matches ------------------------------------------------------------------------------------
def test_absent_match_is_the_catch_all() -> None:
    assert matches(None, make_request(), sig())


def test_empty_match_matches_everything() -> None:
    assert matches(rm(), make_request(), sig("anything", 10**6))


@pytest.mark.parametrize(
    ("task_type", "signal", "expected"),
    [
        ("summarization", "summarization", True),
        ("summarization", "translation", False),
        (["code-generation", "code-review"], "code-review", True),
        (["code-generation", "code-review"], "summarization", False),
        ([], "summarization", False),
    ],
)
def test_task_type_string_or_list(task_type, signal: str, expected: bool) -> None:
    assert matches(rm(task_type=task_type), make_request(), sig(signal)) is expected


@pytest.mark.parametrize(
    ("bounds", "tokens", "expected"),
    [
        ({"min": 100}, 99, False),
        ({"min": 100}, 100, True),
        ({"max": 100}, 100, True),
        ({"max": 100}, 101, False),
        ({"min": 10, "max": 20}, 15, True),
        ({"min": 10, "max": 20}, 9, False),
        ({"min": 10, "max": 20}, 21, False),
    ],
)
def test_input_token_bounds_are_inclusive(bounds: dict, tokens: int, expected: bool) -> None:
    assert matches(rm(input_tokens=bounds), make_request(), sig(input_tokens=tokens)) is expected


@pytest.mark.parametrize(
    ("tenant", "request_tenant", "expected"),
    [
        ("acme", "acme", True),
        ("acme", "globex", False),
        (["acme", "initech"], "initech", True),
        (["acme", "initech"], "globex", False),
        ("acme", "ACME", False),
    ],
)
def test_tenant_string_or_list(tenant, request_tenant: str, expected: bool) -> None:
    assert matches(rm(tenant=tenant), make_request(tenant=request_tenant), sig()) is expected


def test_metadata_every_pair_must_match() -> None:
    match = rm(metadata={"team": "search", "tier": "gold"})
    assert matches(match, make_request(metadata={"team": "search", "tier": "gold", "extra": "x"}), sig())
    assert not matches(match, make_request(metadata={"team": "search", "tier": "silver"}), sig())
    assert not matches(match, make_request(metadata={"team": "search"}), sig())
    assert not matches(match, make_request(), sig())


def test_all_conditions_must_hold() -> None:
    match = rm(task_type="summarization", tenant="acme", input_tokens={"min": 10}, metadata={"tier": "gold"})
    good = make_request(tenant="acme", metadata={"tier": "gold"})
    assert matches(match, good, sig("summarization", 10))
    assert not matches(match, good, sig("translation", 10))
    assert not matches(match, good, sig("summarization", 9))
    assert not matches(match, good.model_copy(update={"tenant": "globex"}), sig("summarization", 10))
    assert not matches(match, good.model_copy(update={"metadata": {}}), sig("summarization", 10))


def test_first_matching_route_takes_the_first_in_order() -> None:
    routes = [
        Route(name="a", match=rm(tenant="globex"), model="x"),
        Route(name="b", match=rm(task_type="summarization"), model="x"),
        Route(name="c", match=rm(task_type=["summarization", "translation"]), model="x"),
        Route(name="d", model="x"),
    ]
    assert first_matching_route(routes, make_request(), sig("summarization")) == 1
    assert first_matching_route(routes, make_request(), sig("translation")) == 2
    assert first_matching_route(routes, make_request(tenant="globex"), sig("translation")) == 0
    assert first_matching_route(routes, make_request(), sig("other")) == 3
    assert first_matching_route(routes[:3], make_request(), sig("other")) is None
    assert first_matching_route([], make_request(), sig()) is None


# -- plan_route ---------------------------------------------------------------------------------
def test_rule_match_builds_primary_then_fallbacks() -> None:
    settings = make_settings()
    request = make_request(CODE)
    slip = routed(plan_route(request, settings))
    assert slip.decision.route == "code"
    assert slip.decision.model == "medium"
    assert [(s.model, s.role) for s in slip.plan] == [("medium", "primary"), ("large", "fallback")]
    assert slip.step == 0 and slip.current.model == "medium" and slip.next_step.model == "large"
    assert slip.attempts == []
    assert slip.decision.signals == compute_signals(request)
    assert slip.decision.reason.startswith("route code: medium (the route's model); task_type=code-generation input_tokens=")
    assert str(slip.decision.signals.input_tokens) in slip.decision.reason


def test_catch_all_serves_what_no_rule_matches() -> None:
    slip = routed(plan_route(make_request(PLAIN), make_settings()))
    assert slip.decision.route == "default"
    assert [s.model for s in slip.plan] == ["small", "medium"]


def test_unnamed_route_is_named_by_index() -> None:
    settings = make_settings(routes=[{"match": {"tenant": "globex"}, "model": "large"}, {"model": "small"}])
    assert routed(plan_route(make_request(PLAIN), settings)).decision.route == "route-1"
    assert routed(plan_route(make_request(PLAIN, tenant="globex"), settings)).decision.route == "route-0"


def test_route_by_tenant_and_metadata() -> None:
    settings = make_settings(
        routes=[
            {"name": "vip", "match": {"tenant": ["bigco"], "metadata": {"tier": "gold"}}, "model": "large"},
            {"name": "rest", "model": "small"},
        ]
    )
    assert routed(plan_route(make_request(PLAIN, tenant="bigco", metadata={"tier": "gold"}), settings)).decision.model == "large"
    assert routed(plan_route(make_request(PLAIN, tenant="bigco"), settings)).decision.model == "small"


def test_route_by_input_tokens() -> None:
    settings = make_settings(
        routes=[{"name": "long", "match": {"input_tokens": {"min": 1000}}, "model": "large"}, {"model": "small"}]
    )
    assert routed(plan_route(make_request("word " * 1100), settings)).decision.route == "long"
    assert routed(plan_route(make_request("word " * 900), settings)).decision.route == "route-1"


def test_first_match_wins_over_later_more_specific_rules() -> None:
    settings = make_settings(
        routes=[
            {"name": "broad", "match": {"task_type": ["code-generation", "summarization"]}, "model": "small"},
            {"name": "specific", "match": {"task_type": "code-generation"}, "model": "large"},
            {"name": "rest", "model": "medium"},
        ]
    )
    assert routed(plan_route(make_request(CODE), settings)).decision.route == "broad"


def test_plan_drops_the_primary_from_its_fallbacks() -> None:
    settings = make_settings(routes=[{"model": "small", "fallback": ["small", "medium", "large"]}])
    slip = routed(plan_route(make_request(PLAIN), settings))
    assert [s.model for s in slip.plan] == ["small", "medium", "large"]
    assert [s.role for s in slip.plan] == ["primary", "fallback", "fallback"]


def test_route_without_fallbacks_has_a_single_step() -> None:
    settings = make_settings(routes=[{"model": "large", "max_fallbacks": 0}])
    slip = routed(plan_route(make_request(PLAIN), settings))
    assert [(s.model, s.role) for s in slip.plan] == [("large", "primary")]
    assert slip.next_step is None


def test_route_without_listed_fallbacks_falls_back_to_the_next_ranked() -> None:
    slip = routed(plan_route(make_request(PLAIN), make_settings(routes=[{"model": "large"}])))
    assert slip.plan[0].model == "large"
    assert [s.role for s in slip.plan[1:]] == ["fallback"] * (len(slip.plan) - 1)
    assert "large" not in [s.model for s in slip.plan[1:]] and len(slip.plan) >= 2


def test_plan_has_no_duplicate_steps() -> None:
    settings = make_settings(routes=[{"model": "small", "fallback": ["medium", "medium", "large", "medium"]}])
    slip = routed(plan_route(make_request(PLAIN), settings))
    assert [s.model for s in slip.plan] == ["small", "medium", "large"]


def test_pinned_model_bypasses_the_rules() -> None:
    request = make_request(CODE, model="large")  # the code rule would choose medium
    slip = routed(plan_route(request, make_settings()))
    assert slip.decision.route == "pinned"
    assert slip.decision.model == "large"
    assert [(s.model, s.role) for s in slip.plan] == [("large", "primary")]
    assert slip.decision.reason.startswith("route pinned: large (pinned by the caller)")
    assert slip.decision.signals.task_type == "code-generation"  # still computed for analytics


def test_unknown_pinned_model_is_refused() -> None:
    outcome = plan_route(make_request(PLAIN, model="huge"), make_settings())
    assert isinstance(outcome, Refusal)
    assert outcome.error.code == "unknown_model"
    assert outcome.error.details == {"model": "huge"}
    assert "'huge'" in outcome.error.message
    assert "large, medium, small" in outcome.error.message
    assert outcome.error.retryable is False
    assert outcome.signals is not None and outcome.signals.task_type == "question-answering"


def test_no_route_refusal_when_routes_lack_a_catch_all() -> None:
    # Settings refuses such a configuration; plan_route still answers callers that build one by hand
    settings = make_settings().model_copy(update={"routes": [Route(match=RouteMatch(tenant="nobody"), model="small")]})
    outcome = plan_route(make_request(PLAIN), settings)
    assert isinstance(outcome, Refusal)
    assert outcome.error.code == "no_route"


def test_default_deadline_is_filled_in() -> None:
    settings = make_settings(router={"default_deadline_s": 42})
    request = make_request(PLAIN)
    assert request.deadline is None
    slip = routed(plan_route(request, settings))
    assert slip.request.deadline == slip.routed_at + timedelta(seconds=42)
    assert request.deadline is None  # the caller's object is not mutated
    assert slip.request.model_copy(update={"deadline": None}) == request


def test_callers_deadline_is_kept() -> None:
    deadline = T0 + timedelta(minutes=5)
    slip = routed(plan_route(make_request(PLAIN, deadline=deadline), make_settings(router={"default_deadline_s": 1})))
    assert slip.request.deadline == deadline


def test_policy_version_is_recorded() -> None:
    settings = make_settings(router={"policy_version": "2025-03-canary"})
    assert routed(plan_route(make_request(PLAIN), settings)).policy_version == "2025-03-canary"
    assert routed(plan_route(make_request(PLAIN, model="small"), settings)).policy_version == "2025-03-canary"


def test_routed_at_is_millisecond_precise() -> None:
    slip = routed(plan_route(make_request(PLAIN), make_settings()))
    assert slip.routed_at.microsecond % 1000 == 0
    assert slip.routed_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("content", "route", "plan"),
    [
        ("Write a Python function that sorts a list", "code", ["medium", "large"]),
        ("Write a Python function for this spec:\n" + "spec line. " * 400, "long-code", ["large", "medium"]),
        ("Summarize this article:\n" + "The council met on Monday and voted to expand the bus network. " * 40, "long-summaries", ["medium", "small"]),
        ("Summarize: the cat sat.", "default", ["small", "private", "large"]),
        ("Please review this code and refactor it", "code", ["medium", "large"]),
        ("What is the capital of France?", "default", ["small", "private", "large"]),
    ],
)
def test_dev_toml_routes(content: str, route: str, plan: list[str]) -> None:
    with clean_turnout_env():
        settings = load_settings(DEV_TOML)
    slip = routed(plan_route(make_request(content), settings))
    assert slip.decision.route == route
    assert [s.model for s in slip.plan] == plan
    assert slip.policy_version == "dev-1"
