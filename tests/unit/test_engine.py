"""The selection engine: filters with reasons, refusals that name the rule, ranking, the plan."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from turnout.schemas.fleet import ModelDeployment
from turnout.schemas.models import ChatMessage, InferenceRequest, Signals
from turnout.schemas.policy import Canary, Policy, Route, RouteMatch, TenantPolicy, Weights
from turnout.streams.engine import Context, Health, select

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def deployment(**overrides) -> ModelDeployment:
    base = dict(provider="simulated", served_model="m", context_window=32_000, typical_latency_ms=500, quality_tier=2)
    return ModelDeployment(**{**base, **overrides})


FLEET = {
    "tiny": deployment(price_input_per_mtok=0.1, price_output_per_mtok=0.2, quality_tier=1, typical_latency_ms=200, context_window=4_000),
    "cheap": deployment(price_input_per_mtok=0.2, price_output_per_mtok=0.8, quality_tier=2, typical_latency_ms=300, capabilities={"tools", "json_schema"}),
    "onprem": deployment(price_input_per_mtok=1.0, price_output_per_mtok=1.0, quality_tier=3, typical_latency_ms=900, on_prem=True, region="eu-onprem", capabilities={"json_schema"}),
    "eu": deployment(price_input_per_mtok=2.0, price_output_per_mtok=8.0, quality_tier=4, typical_latency_ms=700, region="eu-west-1", capabilities={"tools", "json_schema", "vision"}),
    "frontier": deployment(price_input_per_mtok=5.0, price_output_per_mtok=15.0, quality_tier=5, typical_latency_ms=1500, region="us-east-1", capabilities={"tools", "json_schema", "vision"}, context_window=200_000),
}
CATCH_ALL = Route(name="default", objective="cost")


def request(tenant: str = "acme", rid: str = "r1", **fields) -> InferenceRequest:
    return InferenceRequest(id=rid, tenant=tenant, messages=[ChatMessage(role="user", content="hi")], created_at=NOW, **fields)


def signals(**overrides) -> Signals:
    base = dict(task_type="question-answering", task_confidence=0.9, task_method="t", input_tokens=100, token_method="t", turns=1, expected_output_tokens=100)
    return Signals(**{**base, **overrides})


def ctx(routes=(CATCH_ALL,), tenants=None, **kwargs) -> Context:
    return Context(fleet=FLEET, policy=Policy(version="p1", routes=list(routes), tenants=tenants or {}), **kwargs)


def models(selection) -> list[tuple[str, str]]:
    return [(s.model, s.role) for s in selection.plan]


def dropped(selection) -> dict[str, tuple[str, str]]:
    return {c.model: (c.stage, c.reason) for c in selection.candidates if not c.kept}


# -- capability and context ---------------------------------------------------------------
def test_cost_objective_picks_the_cheapest_and_ranks_the_rest_as_fallbacks():
    selection = select(request(), signals(), ctx())
    assert models(selection) == [("tiny", "primary"), ("cheap", "fallback"), ("onprem", "fallback")]
    assert selection.refusal is None


def test_required_capabilities_drop_models_that_lack_them():
    selection = select(request(), signals(capabilities=["vision", "tools"]), ctx())
    assert {m for m, _ in models(selection)} <= {"eu", "frontier"}
    assert dropped(selection)["cheap"] == ("capability", "lacks vision")
    assert dropped(selection)["onprem"] == ("capability", "lacks tools, vision")


def test_context_window_counts_input_and_expected_output():
    selection = select(request(), signals(input_tokens=3_950, expected_output_tokens=100), ctx())
    assert dropped(selection)["tiny"] == ("capability", "context window 4000 < 4050 tokens needed")
    assert "tiny" not in {m for m, _ in models(selection)}


def test_nobody_capable_is_refused_as_no_capable_model():
    selection = select(request(), signals(input_tokens=250_000), ctx())
    assert selection.plan == [] and selection.refusal.code == "no_capable_model"
    assert "frontier: context window 200000" in selection.refusal.message


# -- tenant policy -------------------------------------------------------------------------
def test_secrets_blocked_by_policy_refuse_the_request_naming_the_rule():
    tenants = {"acme": TenantPolicy(sensitive={"secret": "block"})}
    selection = select(request(), signals(sensitive_kinds=["secret"]), ctx(tenants=tenants))
    assert selection.plan == []
    assert selection.refusal.code == "policy_refused"
    assert selection.refusal.details["rule"] == "tenants.acme.sensitive.secret = block"
    assert all(stage == "policy" for stage, _ in dropped(selection).values())


def test_pii_only_on_prem_keeps_only_on_prem_deployments():
    tenants = {"acme": TenantPolicy(sensitive={"email": "on_prem", "phone": "on_prem"})}
    selection = select(request(), signals(sensitive_kinds=["email"]), ctx(tenants=tenants))
    assert models(selection) == [("onprem", "primary")]
    assert "allowed on-prem only (tenants.acme.sensitive.email = on_prem)" in dropped(selection)["frontier"][1]


def test_a_prompt_without_the_kind_is_not_restricted():
    tenants = {"acme": TenantPolicy(sensitive={"email": "on_prem"})}
    assert models(select(request(), signals(), ctx(tenants=tenants)))[0] == ("tiny", "primary")


def test_residency_and_allow_and_deny_lists():
    tenants = {"acme": TenantPolicy(regions=["eu-west-1", "eu-onprem"], deny_models=["onprem"])}
    selection = select(request(), signals(), ctx(tenants=tenants))
    assert models(selection) == [("eu", "primary")]
    assert dropped(selection)["onprem"] == ("policy", "in tenants.acme.deny_models")
    assert dropped(selection)["frontier"][1].startswith("region us-east-1 not in tenants.acme.regions")
    only = {"acme": TenantPolicy(allow_models=["frontier"])}
    assert models(select(request(), signals(), ctx(tenants=only))) == [("frontier", "primary")]


def test_unknown_tenants_get_the_default_policy():
    policy = Policy(version="p", routes=[CATCH_ALL], default_tenant=TenantPolicy(allow_models=["eu"]))
    selection = select(request(tenant="stranger"), signals(), Context(fleet=FLEET, policy=policy))
    assert models(selection) == [("eu", "primary")]
    assert dropped(selection)["tiny"] == ("policy", "not in default_tenant.allow_models")


def test_pinned_model_still_obeys_policy():
    tenants = {"acme": TenantPolicy(regions=["eu-west-1"])}
    selection = select(request(model="frontier"), signals(), ctx(tenants=tenants))
    assert selection.refusal.code == "policy_refused" and selection.route == "pinned"


def test_unknown_pinned_model_is_refused():
    assert select(request(model="gpt-9"), signals(), ctx()).refusal.code == "unknown_model"


# -- health, quality, latency (soft) ---------------------------------------------------------
def test_open_breakers_are_avoided():
    selection = select(request(), signals(), ctx(health={"tiny": Health(breaker_open=True)}))
    assert models(selection)[0] == ("cheap", "primary")
    assert dropped(selection)["tiny"] == ("health", "circuit breaker open")


def test_a_backlog_that_would_miss_the_deadline_is_avoided():
    slow = {"tiny": Health(backlog=1_000)}  # 1000 / 8 * 0.2 s = 25 s of queue
    soon = request(deadline=NOW + timedelta(seconds=10))
    selection = select(soon, signals(), ctx(health=slow), now=NOW)
    assert dropped(selection)["tiny"][0] == "health"
    late = request(deadline=NOW + timedelta(seconds=600))
    assert models(select(late, signals(), ctx(health=slow), now=NOW))[0] == ("tiny", "primary")


def test_a_soft_filter_that_would_leave_nobody_is_ignored_and_said():
    everything_open = {m: Health(breaker_open=True) for m in FLEET}
    selection = select(request(), signals(), ctx(health=everything_open))
    assert selection.plan and "health filter ignored" in selection.reason(signals())


def test_route_quality_floor_and_tenant_latency_target():
    route = Route(name="hard", min_quality_tier=4)
    selection = select(request(), signals(), ctx(routes=[route]))
    assert models(selection)[0] == ("eu", "primary")
    tenants = {"acme": TenantPolicy(latency_target_ms=400)}
    assert [m for m, _ in models(select(request(), signals(), ctx(tenants=tenants)))] == ["tiny", "cheap"]


# -- objectives ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("objective", "expected"),
    [("cost", "tiny"), ("latency", "tiny"), ("quality", "frontier"), (Weights(quality=1, cost=0.1), "frontier"), (Weights(cost=1, quality=0.1), "tiny")],
)
def test_objectives_rank_the_candidates(objective, expected):
    route = Route(name="r", objective=objective)
    assert models(select(request(), signals(), ctx(routes=[route])))[0] == (expected, "primary")


def test_the_route_model_is_preferred_then_its_fallbacks_in_order():
    route = Route(name="r", model="eu", fallback=["frontier", "cheap"])
    assert models(select(request(), signals(), ctx(routes=[route]))) == [("eu", "primary"), ("frontier", "fallback"), ("cheap", "fallback")]


def test_rules_match_in_order_and_candidates_limit_the_pool():
    routes = [Route(name="code", match=RouteMatch(task_type="code-generation"), candidates=["eu", "frontier"]), CATCH_ALL]
    selection = select(request(), signals(task_type="code-generation"), ctx(routes=routes))
    assert selection.route == "code" and {m for m, _ in models(selection)} == {"eu", "frontier"}
    assert select(request(), signals(), ctx(routes=routes)).route == "default"


# -- A/B, canary, shadow, escalation ---------------------------------------------------------
def test_ab_weights_split_traffic_stably_by_request_id():
    route = Route(name="ab", ab={"cheap": 3, "eu": 1})
    picks = Counter(models(select(request(rid=f"r{i}"), signals(), ctx(routes=[route])))[0][0] for i in range(4_000))
    assert set(picks) == {"cheap", "eu"}
    assert 0.70 < picks["cheap"] / 4_000 < 0.80
    again = models(select(request(rid="r7"), signals(), ctx(routes=[route])))
    assert again == models(select(request(rid="r7"), signals(), ctx(routes=[route])))


def test_canary_takes_its_percentage():
    route = Route(name="c", model="cheap", canary=Canary(model="eu", percent=10))
    picks = Counter(models(select(request(rid=f"q{i}"), signals(), ctx(routes=[route])))[0][0] for i in range(4_000))
    assert 0.07 < picks["eu"] / 4_000 < 0.13 and picks["cheap"] + picks["eu"] == 4_000


def test_shadow_copies_obey_policy_and_never_duplicate_the_primary():
    route = Route(name="s", model="cheap", shadow=["frontier", "cheap", "onprem"])
    assert select(request(), signals(), ctx(routes=[route])).shadows == ["frontier", "onprem"]
    tenants = {"acme": TenantPolicy(regions=["local", "eu-onprem"])}
    assert select(request(), signals(), ctx(routes=[route], tenants=tenants)).shadows == ["onprem"]


def test_auto_escalation_targets_a_better_tier_and_respects_the_cap():
    route = Route(name="cascade", model="tiny", fallback=["cheap"], escalate_to="auto", escalate_on=["truncated", "low_confidence"])
    selection = select(request(), signals(), ctx(routes=[route]))
    assert models(selection) == [("tiny", "primary"), ("cheap", "fallback"), ("frontier", "escalation")]
    assert selection.plan[-1].when == ["truncated", "low_confidence"]
    capped = {"acme": TenantPolicy(max_escalations=0)}
    assert models(select(request(), signals(), ctx(routes=[route], tenants=capped)))[-1][1] == "fallback"


def test_the_escalation_target_may_also_be_a_fallback_but_never_the_primary():
    route = Route(name="c", model="tiny", fallback=["frontier"], escalate_to="frontier")
    assert models(select(request(), signals(), ctx(routes=[route]))) == [("tiny", "primary"), ("frontier", "fallback"), ("frontier", "escalation")]
    itself = Route(name="c", model="frontier", escalate_to="frontier")
    assert all(role != "escalation" for _, role in models(select(request(), signals(), ctx(routes=[itself]))))


def test_a_low_confidence_escalation_carries_the_routes_threshold_to_the_worker():
    listening = Route(name="c", model="tiny", escalate_to="frontier", escalate_on=["low_confidence"], min_confidence=0.7)
    step = select(request(), signals(), ctx(routes=[listening])).plan[-1]
    assert (step.role, step.min_confidence) == ("escalation", 0.7)
    deaf = Route(name="c", model="tiny", escalate_to="frontier", escalate_on=["truncated"], min_confidence=0.7)
    assert select(request(), signals(), ctx(routes=[deaf])).plan[-1].min_confidence is None  # no logprobs asked for


@pytest.mark.parametrize("threshold", [0, 1, -0.1, 1.5])
def test_a_confidence_threshold_outside_the_open_unit_interval_is_refused(threshold):
    with pytest.raises(ValidationError, match="min_confidence"):
        Route(name="c", model="tiny", min_confidence=threshold)


# -- budgets ---------------------------------------------------------------------------------
def test_over_budget_downgrades_to_the_cheapest_without_escalation():
    route = Route(name="r", model="frontier", escalate_to="auto")
    tenants = {"acme": TenantPolicy(monthly_budget_usd=100)}
    within = select(request(), signals(), ctx(routes=[route], tenants=tenants, spend_usd={"acme": 99.0}))
    assert models(within)[0] == ("frontier", "primary")
    over = select(request(), signals(), ctx(routes=[route], tenants=tenants, spend_usd={"acme": 100.0}))
    assert models(over)[0] == ("tiny", "primary") and all(role != "escalation" for _, role in models(over))
    assert "over its monthly budget" in over.reason(signals())


def test_over_budget_refuses_when_the_policy_says_so():
    tenants = {"acme": TenantPolicy(monthly_budget_usd=10, over_budget="refuse")}
    selection = select(request(), signals(), ctx(tenants=tenants, spend_usd={"acme": 12.5}))
    assert selection.refusal.code == "budget_exceeded"
    assert selection.refusal.details["rule"] == "tenants.acme.monthly_budget_usd"


def test_every_candidate_is_accounted_for():
    tenants = {"acme": TenantPolicy(regions=["local"])}
    selection = select(request(), signals(capabilities=["tools"]), ctx(tenants=tenants))
    assert sorted(c.model for c in selection.candidates) == sorted(FLEET)
    assert all(c.reason for c in selection.candidates)
