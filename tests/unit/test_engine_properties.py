"""Properties of selection over generated fleets, tenants and requests (hypothesis):
sensitive data never lands where its tenant's policy forbids, and every plan step can
serve the request."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.schemas.fleet import CAPABILITIES, ModelDeployment
from turnout.schemas.models import ChatMessage, InferenceRequest, Signals
from turnout.schemas.policy import SENSITIVE_KINDS, Policy, Route, TenantPolicy, Weights
from turnout.streams.engine import Context, Health, select

REGIONS = ["eu-west-1", "us-east-1", "eu-onprem", "local"]
NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)

deployments = st.builds(
    ModelDeployment,
    provider=st.just("simulated"),
    served_model=st.just("m"),
    region=st.sampled_from(REGIONS),
    on_prem=st.booleans(),
    capabilities=st.frozensets(st.sampled_from(CAPABILITIES)),
    context_window=st.integers(1_000, 200_000),
    quality_tier=st.integers(1, 5),
    typical_latency_ms=st.floats(50, 5_000),
    price_input_per_mtok=st.floats(0, 20),
    price_output_per_mtok=st.floats(0, 60),
)
fleets = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f"]), deployments, min_size=1, max_size=6)
tenant_policies = st.builds(
    TenantPolicy,
    regions=st.none() | st.lists(st.sampled_from(REGIONS), min_size=1, unique=True),
    sensitive=st.dictionaries(st.sampled_from(SENSITIVE_KINDS), st.sampled_from(["allow", "on_prem", "block"])),
    deny_models=st.lists(st.sampled_from(["a", "b", "c"]), unique=True),
    latency_target_ms=st.none() | st.floats(100, 3_000),
    max_escalations=st.integers(0, 2),
)
objectives = st.sampled_from(["cost", "latency", "quality"]) | st.builds(Weights, cost=st.floats(0.1, 1), latency=st.floats(0, 1), quality=st.floats(0, 1))
signal_sets = st.builds(
    Signals,
    task_type=st.just("question-answering"),
    task_confidence=st.just(0.5),
    task_method=st.just("t"),
    input_tokens=st.integers(1, 150_000),
    token_method=st.just("t"),
    turns=st.just(1),
    expected_output_tokens=st.integers(0, 4_000),
    capabilities=st.lists(st.sampled_from(CAPABILITIES), unique=True),
    sensitive_kinds=st.lists(st.sampled_from(SENSITIVE_KINDS), unique=True),
)


@st.composite
def scenarios(draw):
    fleet = draw(fleets)
    names = sorted(fleet)
    route = Route(
        name="r",
        objective=draw(objectives),
        model=draw(st.none() | st.sampled_from(names)),
        shadow=draw(st.lists(st.sampled_from(names), unique=True, max_size=2)),
        escalate_to=draw(st.none() | st.just("auto") | st.sampled_from(names)),
        ab=draw(st.dictionaries(st.sampled_from(names), st.floats(0.1, 5), max_size=2)),
    )
    tenant = draw(tenant_policies)
    health = draw(st.dictionaries(st.sampled_from(names), st.builds(Health, breaker_open=st.booleans(), backlog=st.integers(0, 10_000))))
    ctx = Context(fleet=fleet, policy=Policy(version="p", routes=[route], tenants={"t": tenant}), health=health)
    pinned = draw(st.none() | st.sampled_from(names))
    request = InferenceRequest(id=draw(st.text(min_size=1, max_size=8)), tenant="t", messages=[ChatMessage(role="user", content="x")], created_at=NOW, model=pinned)
    return ctx, tenant, request, draw(signal_sets)


def served_models(selection) -> list[str]:
    return [step.model for step in selection.plan] + list(selection.shadows)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_sensitive_data_never_goes_where_the_tenant_forbids(scenario):
    ctx, tenant, request, signals = scenario
    selection = select(request, signals, ctx, now=NOW)
    rules = {tenant.sensitive.get(kind, "allow") for kind in signals.sensitive_kinds}
    if "block" in rules:
        assert selection.plan == [] and selection.shadows == [] and selection.refusal.code == "policy_refused"
    for model in served_models(selection):
        deployment = ctx.fleet[model]
        if "on_prem" in rules:
            assert deployment.on_prem, f"{model} is not on-prem but the prompt holds on-prem-only data"
        if tenant.regions is not None:
            assert deployment.region in tenant.regions
        assert model not in tenant.deny_models


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_step_of_every_plan_can_serve_the_request(scenario):
    ctx, _, request, signals = scenario
    selection = select(request, signals, ctx, now=NOW)
    assert (selection.refusal is None) == bool(selection.plan)
    embedding = "embeddings" in signals.capabilities
    for model in served_models(selection):
        deployment = ctx.fleet[model]
        assert set(signals.capabilities) <= set(deployment.capabilities)
        assert ("embeddings" in deployment.capabilities) == embedding, "embedding models serve embedding requests only"
        if not embedding:  # an embedding model's window is per text, which the router does not see
            assert signals.input_tokens + signals.expected_output_tokens <= deployment.context_window
    chain = [step.model for step in selection.plan if step.role != "escalation"]
    assert len(chain) == len(set(chain)), "no model twice in the primary and fallback chain"
    escalations = [step.model for step in selection.plan if step.role == "escalation"]
    assert len(escalations) <= 1 and not set(escalations) & set(chain[:1]), "at most one escalation, never to the primary itself"
    assert sorted(c.model for c in selection.candidates) == sorted({request.model} if request.model else set(ctx.fleet))


# -- end to end through the real signal extraction -----------------------------------------
SENSITIVE_VALUES = {
    "email": st.from_regex(r"[a-z]{3,8}\.[a-z]{3,8}@(example|corp|mail)\.(com|org|fr)", fullmatch=True),
    "payment_card": st.sampled_from(["4111 1111 1111 1111", "5500-0000-0000-0004", "3782 822463 10005"]),
    "iban": st.sampled_from(["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"]),
    "secret": st.sampled_from(["sk-proj-4f9aQ2mZ7LxR8tB1nV6cK3wE0yH5uJ2s", "AKIAIOSFODNN7EXAMPLE", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"]),
}
FILLER = st.text(alphabet=st.sampled_from("abcdefghij klmnop,.?"), max_size=200)


@st.composite
def prompts_with_sensitive_data(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(SENSITIVE_VALUES)), min_size=1, max_size=3, unique=True))
    parts = [draw(FILLER)]
    for kind in kinds:
        parts += [draw(SENSITIVE_VALUES[kind]), draw(FILLER)]
    return kinds, " ".join(parts)


@lru_cache(maxsize=1)
def dev_context():
    """The bundled configuration, read once for every generated example."""
    from turnout.schemas.settings import load_settings
    from turnout.streams.rules import context_from

    dev = load_settings("turnout/defaults/dev.toml")
    return dev, context_from(dev)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompts_with_sensitive_data(), st.sampled_from(["default", "acme-eu"]))
def test_real_prompts_with_sensitive_data_never_reach_a_forbidden_deployment(sample, tenant):
    from turnout.streams.rules import decide

    kinds, text = sample
    dev, ctx = dev_context()
    request = InferenceRequest(id="p", tenant=tenant, messages=[ChatMessage(role="user", content=text)], created_at=NOW)
    decision = decide(request, ctx, 60, now=NOW)
    assert set(kinds) <= set(decision.signals.sensitive_kinds), "every planted kind is found"
    policy = ctx.policy.tenant(tenant)
    rules = {policy.sensitive.get(kind, "allow") for kind in decision.signals.sensitive_kinds}
    if "block" in rules:
        assert decision.slip is None and decision.selection.refusal.code == "policy_refused"
        return
    for model in served_models(decision.selection):
        deployment = dev.fleet[model]
        assert "on_prem" not in rules or deployment.on_prem
        assert policy.regions is None or deployment.region in policy.regions
