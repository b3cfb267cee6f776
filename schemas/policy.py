"""Routing policy: rules that shape each route, and what each tenant allows.

A policy is versioned as a whole (``version``); every routed request and event records
the version that decided it. The types are shared because the router applies them,
``turnout policy`` validates and publishes them, and analysts compare versions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .section import Section

SensitiveKind = Literal["email", "phone", "payment_card", "iban", "national_id", "secret"]
SENSITIVE_KINDS: tuple[str, ...] = ("email", "phone", "payment_card", "iban", "national_id", "secret")
SensitiveRule = Literal["allow", "on_prem", "block"]
Objective = Literal["cost", "latency", "quality"]
EscalationTrigger = Literal["validation_failed", "truncated", "low_confidence"]


class TokenRange(Section):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TokenRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def contains(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class RouteMatch(Section):
    """All given conditions must hold; an absent condition matches anything."""

    task_type: str | list[str] | None = None
    input_tokens: TokenRange | None = None
    tenant: str | list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class Weights(Section):
    """A weighted mix of objectives; each is normalised across the candidates first."""

    cost: float = Field(default=0.0, ge=0)
    latency: float = Field(default=0.0, ge=0)
    quality: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if self.cost + self.latency + self.quality <= 0:
            raise ValueError("at least one of cost, latency, quality needs a positive weight")
        return self


class Canary(Section):
    model: str
    percent: float = Field(gt=0, le=100)


class Route(Section):
    """Where a class of requests goes.

    ``model`` is the preferred primary; without it the surviving candidates are ranked
    by ``objective``. ``fallback`` lists the next steps in order; without it the next
    best ranked candidates follow (``max_fallbacks`` of them).
    """

    name: str | None = Field(default=None, description="defaults to route-<index>")
    match: RouteMatch | None = Field(default=None, description="absent: the catch-all")
    model: str | None = None
    fallback: list[str] = Field(default_factory=list)
    candidates: list[str] | None = Field(default=None, description="the models this route may use; all when absent")
    objective: Objective | Weights = "cost"
    min_quality_tier: int = Field(default=1, ge=1, le=5)
    max_fallbacks: int = Field(default=2, ge=0, le=10)
    ab: dict[str, float] = Field(default_factory=dict, description="primary chosen among these models by weight")
    canary: Canary | None = None
    shadow: list[str] = Field(default_factory=list, description="models that also serve a copy, never returned")
    escalate_to: str | None = Field(default=None, description="model for the cascade step, or 'auto' for the best tier")
    escalate_on: list[EscalationTrigger] = Field(default_factory=lambda: ["validation_failed", "truncated"])
    min_confidence: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="with low_confidence in escalate_on: escalate an answer whose mean token probability (from the backend's logprobs) is below this",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Route:
        if any(weight <= 0 for weight in self.ab.values()):
            raise ValueError("ab weights must be positive")
        return self

    def referenced_models(self) -> list[tuple[str, str]]:
        """(where, model id) for every model this route names, for validation."""
        refs = [("model", self.model)] if self.model else []
        refs += [(f"fallback[{i}]", m) for i, m in enumerate(self.fallback)]
        refs += [(f"candidates[{i}]", m) for i, m in enumerate(self.candidates or [])]
        refs += [(f"ab.{m}", m) for m in self.ab]
        refs += [("canary.model", self.canary.model)] if self.canary else []
        refs += [(f"shadow[{i}]", m) for i, m in enumerate(self.shadow)]
        refs += [("escalate_to", self.escalate_to)] if self.escalate_to not in (None, "auto") else []
        return refs  # type: ignore[return-value]


class TenantPolicy(Section):
    """What one tenant allows. Hard rules (models, regions, sensitive data) are never
    relaxed: a request no deployment may legally serve is refused."""

    allow_models: list[str] | None = Field(default=None, description="only these models; all when absent")
    deny_models: list[str] = Field(default_factory=list)
    regions: list[str] | None = Field(default=None, description="data residency: allowed deployment regions")
    sensitive: dict[SensitiveKind, SensitiveRule] = Field(
        default_factory=dict, description="per kind found in the prompt: allow, on_prem (only on-prem deployments) or block"
    )
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    over_budget: Literal["downgrade", "refuse"] = "downgrade"
    latency_target_ms: float | None = Field(default=None, gt=0)
    max_escalations: int = Field(default=1, ge=0, le=5)

    def forbids(self, model_id: str, region: str, key: str = "tenant") -> str | None:
        """Why ``model_id`` (deployed in ``region``) may never serve this tenant, by its
        ``allow_models``, ``deny_models`` and ``regions`` (``key``: where they are
        configured, for the reason); ``None`` when they allow it. What depends on the
        request (sensitive data) is the router's to judge."""
        if self.allow_models is not None and model_id not in self.allow_models:
            return f"not in {key}.allow_models"
        if model_id in self.deny_models:
            return f"in {key}.deny_models"
        if self.regions is not None and region not in self.regions:
            return f"region {region} not in {key}.regions {self.regions}"
        return None

    def referenced_models(self) -> list[tuple[str, str]]:
        refs = [(f"allow_models[{i}]", m) for i, m in enumerate(self.allow_models or [])]
        return refs + [(f"deny_models[{i}]", m) for i, m in enumerate(self.deny_models)]


class Policy(Section):
    """The unit that is versioned, validated, published and rolled back."""

    version: str = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    tenants: dict[str, TenantPolicy] = Field(default_factory=dict)
    default_tenant: TenantPolicy = TenantPolicy()

    def tenant(self, name: str) -> TenantPolicy:
        return self.tenants.get(name, self.default_tenant)

    def route_name(self, index: int) -> str:
        return self.routes[index].name or f"route-{index}"

    def problems(self, fleet: set[str]) -> list[str]:
        """Every reference to a model outside ``fleet``, and a missing catch-all."""
        found = []
        known = ", ".join(sorted(fleet))
        for i, route in enumerate(self.routes):
            for where, ref in route.referenced_models():
                if ref not in fleet:
                    found.append(f"routes[{i}].{where}: unknown model {ref!r} (fleet has: {known})")
        for name, tenant in [*self.tenants.items(), ("<default>", self.default_tenant)]:
            for where, ref in tenant.referenced_models():
                if ref not in fleet:
                    key = "default_tenant" if name == "<default>" else f"tenants.{name}"
                    found.append(f"{key}.{where}: unknown model {ref!r} (fleet has: {known})")
        if not any(route.match is None for route in self.routes):
            found.append("routes: no catch-all route (a [[routes]] entry without 'match') to serve what no rule matches")
        return found


# -- versions on the policies topic ------------------------------------------------------
# <prefix>.policies is compacted. Each version is kept under its own key (the version
# string) as JSON; the key "__active__" names the version in force and the one it
# replaced, so a rollback walks back one step at a time.
ACTIVE_KEY = "__active__"


class ActivePointer(Section):
    version: str
    history: list[str] = Field(default_factory=list, description="versions in force before, oldest first")
    published_at: str = ""
    by: str = ""

    @property
    def previous(self) -> str | None:
        return self.history[-1] if self.history else None


class PolicyLog:
    """The state of the policies topic, folded from its records (pure; no I/O)."""

    def __init__(self) -> None:
        self.versions: dict[str, Policy] = {}
        self.active: ActivePointer | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return  # a tombstone or a keyless record: nothing to learn
        name = key.decode()
        if name == ACTIVE_KEY:
            self.active = ActivePointer.model_validate_json(value)
        else:
            self.versions[name] = Policy.model_validate_json(value)

    def active_policy(self) -> Policy | None:
        if self.active is None:
            return None
        return self.versions.get(self.active.version)
