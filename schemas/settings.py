"""Typed, validated configuration: a TOML file, overridden by ``TURNOUT_*`` variables.

Every process (router, worker, sink, simulator, CLI) reads the same ``Settings``:
``load_settings(path)`` reads the TOML file, then environment variables such as
``TURNOUT_KAFKA__BOOTSTRAP_SERVERS`` or ``TURNOUT_CLICKHOUSE__DSN`` (``__`` separates
nesting levels) win over it. A bad value fails at start-up with a ``ConfigError`` that
names the key, e.g. ``routes[1].fallback[0]: unknown model 'huge'``.
"""

from __future__ import annotations

import contextvars
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .fleet import ModelDeployment
from .gateway_config import GatewaySettings
from .kafka_security import KafkaSecurity
from .policy import Policy, Route, RouteMatch, TenantPolicy, TokenRange
from .section import Section
from .worker_config import BreakerConfig, CacheConfig, StreamChunkConfig, StructuredConfig
from .topics import Topics

__all__ = ["ModelDeployment", "Route", "RouteMatch", "TenantPolicy", "TokenRange", "Settings", "load_settings"]

ENV_PREFIX = "TURNOUT_"
CONFIG_ENV = "TURNOUT_CONFIG"
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SECRET_KEY = re.compile(r"key|secret|password|token|dsn|credential", re.IGNORECASE)


class ConfigError(ValueError):
    """Configuration that cannot run; the message lists every bad key."""


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "turnout"
    partitions: int = Field(default=3, ge=1, description="partitions of each topic Turnout creates")
    replication_factor: int = Field(default=1, ge=1)
    schema_registry_url: str | None = Field(
        default=None, description="Confluent Schema Registry; unset means Avro single-object encoding"
    )
    client_id: str = "turnout"
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, description="consumer-group session; a new group's first join waits about half of it on Tansu"
    )
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=30_000,
        description="longest a fetch waits for data; Tansu answers only when it expires, so it bounds consumer latency",
    )
    compression_type: Literal["gzip", "lz4", "zstd", "snappy", "none"] = Field(
        default="lz4",
        description="producer batch compression; lz4 spends far less CPU than gzip (the ceiling of bench-stream rose from 23k to 30k msg/s), at a lower ratio",
    )
    idempotence: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="idempotent producers, so a producer's own retries never write a record twice; auto asks the broker once per process and uses them where it grants a producer id (Apache Kafka does, Tansu does not)",
    )
    security: KafkaSecurity = Field(default_factory=KafkaSecurity, description="TLS and SASL for every Kafka client")

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third of session_timeout_ms ({self.session_timeout_ms})"
            )
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _legal_prefix(cls, value: str) -> str:
        Topics(value)
        return value


class ClickHouseSettings(Section):
    dsn: SecretStr = Field(
        default=SecretStr("chdb://.turnout/chdb"),
        description="chdb:///abs/dir or chdb://rel/dir for the embedded engine, http(s)://user:pass@host:8123 for a server",
    )
    database: str = "turnout"

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        dsn = value.get_secret_value()
        scheme = dsn.split("://", 1)[0] if "://" in dsn else None
        if scheme not in {"chdb", "http", "https", "clickhouse", "clickhouses"}:
            shown = f"scheme {scheme!r}" if scheme and scheme.isalpha() else "a DSN without a known scheme"
            # never echo the DSN itself: it may hold a password
            raise ValueError(f"{shown}: expected chdb://dir, http(s)://host:8123 or clickhouse(s)://host")
        return value


class RouterSettings(Section):
    policy_version: str = "v1"
    default_deadline_s: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=200, ge=1)
    batch_window_s: float = Field(default=0.05, gt=0)
    group_id: str = "turnout-router"


class WorkerSettings(Section):
    batch_size: int = Field(default=100, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    health_interval_s: float = Field(default=2.0, gt=0, description="how often a replica reports on the health topic")
    backoff_base_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=10.0, gt=0)
    max_wait_s: float = Field(
        default=30.0, gt=0, description="longest a request waits on a Retry-After before moving on along its plan"
    )
    dedup_capacity: int = Field(default=100_000, ge=0, description="request ids remembered as answered")
    dedup_lookback_s: float = Field(
        default=900.0,
        ge=0,
        description="on getting partitions, how far back a replica reads the events topic for requests already answered (by any replica), so a request answered by a replica that crashed before committing is not paid twice; 0 turns it off",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="requests a replica holds at once before it pauses its partitions; unset means 4 x the deployment's concurrency "
        "(for an embedding model, concurrency x embedding_batch_max, so that every concurrent batch call can fill up)",
    )
    breaker: BreakerConfig = BreakerConfig()
    cache: CacheConfig = CacheConfig()
    cache_enabled: bool = Field(default=True, description="serve identical requests from the response cache (each request may opt out)")
    structured: StructuredConfig = StructuredConfig()
    stream_chunks: StreamChunkConfig = StreamChunkConfig()  # requests with stream = true: see StreamChunkConfig
    embedding_batch_max: int = Field(
        default=64,
        ge=1,
        le=2048,
        description="texts sent in one backend embeddings call at most: concurrent embedding requests are gathered until they reach it "
        "(OpenAI takes up to 2048 inputs per call); a request with more texts goes alone, never split",
    )
    embedding_batch_wait_ms: float = Field(
        default=10.0,
        ge=0,
        le=10_000,
        description="longest the first embedding request of a batch waits for others to join before the call goes out; 0 sends what "
        "arrived together (same event-loop turn) at once",
    )


class LocalModelSettings(Section):
    """The real local model (llama.cpp's server with SmolLM2-135M-Instruct) in ``turnout
    dev``/``demo``: when it is installed (``make install-local-model``), the stack starts
    it and points the fleet model ``serves`` at it; otherwise the simulator serves that
    model as configured."""

    serves: str | None = Field(default=None, description="the fleet model the local model serves when installed; unset: never started")
    parallel: int = Field(default=2, ge=1, le=64, description="requests llama-server decodes at once (its slots)")
    ctx_size: int = Field(default=8192, ge=512, description="context tokens, shared by the slots")


class SinkSettings(Section):
    batch_size: int = Field(
        default=50_000,
        ge=1,
        description="rows per insert at most (fewer when flush_interval_s passes first): every insert writes a part into "
        "routing_events and into each rollup its views feed, so ClickHouse's cost per row falls steeply with bigger inserts "
        "(bench/RESULTS.md); the sink holds up to two batches, about 150 bytes a row",
    )
    flush_interval_s: float = Field(default=1.0, gt=0, description="the most seconds rows are gathered before their batch is inserted")
    group_id: str = "turnout-analytics-sink"
    dedup_window_s: float = Field(
        default=900.0,
        ge=0,
        description="at start-up (and on every partition assignment) the sink loads the ids inserted in the dedup_window_s seconds up to "
        "the newest insert (so that a sink down for longer still knows what it inserted last) "
        "and drops records carrying one of them, so that a replay after a crash or a rebalance never reaches the rollups twice; 0 loads none",
    )
    dedup_max_ids: int = Field(
        default=500_000,
        ge=1,
        description="the most ids remembered per table (the oldest are forgotten first): the bound on the sink's memory for deduplication, "
        "about 100 bytes per id; keep it above the rows a dedup_window_s holds at peak",
    )
    repair_derived: bool = Field(
        default=True,
        description="on every partition assignment (in the sink owning the events topic's first partition), and after an insert found "
        "some of its rows stored already, compare the rollups, "
        "latency states and request sample with the raw events inserted in the last dedup_window_s seconds and rebuild the buckets "
        "that disagree: a sink killed mid-insert can leave raw rows that the materialized views never saw (analytics/repair.py)",
    )


class PromptSettings(Section):
    """Raw prompt text kept in ClickHouse (``prompts``) for ``turnout whatif`` and for
    analysts. Off by default: keeping what users wrote is a data-protection decision an
    operator takes on purpose, and may take for some tenants only (those whose contracts
    allow it). The router redacts every sensitive value it found before the text leaves
    it; the table forgets rows ``ttl_days`` after the request was created."""

    store: bool = Field(default=False, description="publish each routed request's redacted text on <prefix>.prompts for the sink to store")
    tenants: list[str] | None = Field(
        default=None, description="store the prompts of these tenants only (an opt-in list); every tenant's when unset"
    )
    ttl_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="days a stored prompt is kept after its request was created; the sink applies it to the table at start-up, "
        "so a change takes effect at the next start (rows already older are deleted then)",
    )

    @model_validator(mode="after")
    def _tenants_opt_in(self) -> PromptSettings:
        if self.tenants is not None and not self.store:
            raise ValueError("tenants names who opts in, but store is false so nothing is stored: set store = true, or drop tenants")
        if self.tenants is not None and not self.tenants:
            raise ValueError("tenants is empty, so no prompt would be stored: leave it out to store every tenant's, or set store = false")
        return self

    def stores(self, tenant: str) -> bool:
        """Whether a request of ``tenant`` has its (redacted) text stored."""
        return self.store and (self.tenants is None or tenant in self.tenants)


class SimulatorProfile(Section):
    """How one served model of the simulator behaves: its latency and the faults it
    injects, so that retries, fallback, timeouts and output validation meet what real
    providers do. Every rate is a probability per call; the order in which the faults
    are decided is documented in ``consumers/sim_faults.py``."""

    latency_distribution: Literal["fixed", "normal", "lognormal"] = Field(
        default="normal",
        description="fixed: always latency_ms; normal: mean latency_ms, standard deviation latency_jitter_ms; lognormal: median latency_ms, log-space spread latency_sigma (a long tail)",
    )
    latency_ms: float = Field(default=40.0, ge=0, description="the fixed latency, the normal mean or the lognormal median")
    latency_jitter_ms: float = Field(default=10.0, ge=0, description="standard deviation of the normal distribution")
    latency_sigma: float = Field(
        default=0.5, gt=0, le=3, description="sigma of the lognormal distribution: p99 is median * exp(2.33 * sigma)"
    )
    first_token_share: float = Field(
        default=0.3, ge=0, le=1, description="share of a streamed call's latency that passes before its first token (its time to first token); the rest comes after"
    )
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls that hang for hang_s before answering")
    hang_s: float = Field(default=60.0, gt=0, description="how long a hanging call waits; longer than the client's timeout")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls answered 500")
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls answered 429")
    retry_after_s: float = Field(default=0.2, ge=0, description="sent with a 429 as retry-after (seconds) and retry-after-ms")
    burst_rate: float = Field(default=0.0, ge=0, le=1, description="probability that a call starts a burst of 5xx")
    burst_length: int = Field(default=5, ge=1, description="consecutive calls to this served model failing in a burst, the first included")
    burst_statuses: tuple[Literal[500, 502, 503], ...] = Field(
        default=(500, 502, 503), min_length=1, description="a burst fails with one of these, drawn when it starts (503 is 529 overloaded on Anthropic)"
    )
    truncate_rate: float = Field(default=0.0, ge=0, le=1, description="share of 200s whose body is cut mid-JSON")
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="share of 200s whose body is an HTML error page, not JSON")
    schema_violation_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of structured-output answers that break the schema (a required property missing or a wrong type)"
    )
    near_json_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of structured-output answers in almost-JSON a repair library fixes (fences, trailing comma, single quotes, prose)"
    )
    low_confidence_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of answers the model is unsure of: with logprobs asked for, their tokens average a probability of 0.3 instead of 0.9",
    )
    output_tokens: int = Field(default=48, ge=1, description="tokens of a plain-text answer, fewer when max_tokens cuts it")
    embedding_dim: int = Field(
        default=16, ge=1, le=8192, description="length of the vectors /v1/embeddings answers with, unless the call asks for its own 'dimensions'"
    )

    @model_validator(mode="after")
    def _coherent(self) -> SimulatorProfile:
        problems = [
            f"{' + '.join(f'{name} ({getattr(self, name):g})' for name in names)} must be at most 1: one draw decides between them"
            for names in (("rate_limit_rate", "error_rate"), ("truncate_rate", "malformed_rate"), ("schema_violation_rate", "near_json_rate"))
            if sum(getattr(self, name) for name in names) > 1
        ]
        explicit = self.model_fields_set
        if self.latency_distribution == "lognormal" and self.latency_ms <= 0:
            problems.append("latency_ms must be above 0 with latency_distribution = 'lognormal' (it is the median)")
        if "latency_sigma" in explicit and self.latency_distribution != "lognormal":
            problems.append(f"latency_sigma applies only to latency_distribution = 'lognormal' (it is {self.latency_distribution!r})")
        if "latency_jitter_ms" in explicit and self.latency_jitter_ms > 0 and self.latency_distribution != "normal":
            problems.append(f"latency_jitter_ms applies only to latency_distribution = 'normal' (it is {self.latency_distribution!r})")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class SimulatorSettings(Section):
    url: str | None = Field(default=None, description="where workers reach the simulator, ending in /v1")
    host: str = "127.0.0.1"
    port: int = Field(default=8900, ge=0, le=65535)
    seed: int | None = Field(default=None, description="seeds every fault decision, so that a run repeats itself")
    default: SimulatorProfile = Field(default=SimulatorProfile(), description="for served models without a profile")
    profiles: dict[str, SimulatorProfile] = Field(default_factory=dict, description="by served_model")

    def profile(self, served_model: str) -> SimulatorProfile:
        return self.profiles.get(served_model, self.default)


_CONFIG_PATH: contextvars.ContextVar[Path | None] = contextvars.ContextVar("turnout_config_path", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    fleet: dict[str, ModelDeployment]
    routes: list[Route] = Field(min_length=1, description="the initial policy's routes")
    tenants: dict[str, TenantPolicy] = Field(default_factory=dict, description="the initial policy's tenants")
    default_tenant: TenantPolicy = TenantPolicy()
    router: RouterSettings = RouterSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    local_model: LocalModelSettings = LocalModelSettings()
    prompts: PromptSettings = PromptSettings()
    gateway: GatewaySettings = GatewaySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_PATH.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        if not self.fleet:
            problems.append("fleet: at least one model deployment is required")
        for model_id in self.fleet:
            if not _MODEL_ID.match(model_id):
                problems.append(f"fleet.{model_id}: model ids are lower-case letters, digits, '-' and '_'")
        problems += self.policy.problems(set(self.fleet))
        served = self.local_model.serves
        if served is not None and served not in self.fleet:
            problems.append(f"local_model.serves: {served!r} is not a fleet model ({', '.join(sorted(self.fleet))})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka.topic_prefix)

    def required_topics(self) -> list[str]:
        """Every topic an installation needs: the shared ones and one per fleet model."""
        return self.topics.shared() + [self.topics.model(model_id) for model_id in sorted(self.fleet)]

    @property
    def policy(self) -> Policy:
        """The policy this configuration starts with (a published version may replace it).
        Built from validated parts, so it is constructed without validating again."""
        return Policy.model_construct(
            version=self.router.policy_version, routes=self.routes, tenants=self.tenants, default_tenant=self.default_tenant
        )

    def route_name(self, index: int) -> str:
        return self.policy.route_name(index)

    def simulator_url(self) -> str:
        if self.simulator.url:
            return self.simulator.url.rstrip("/")
        return f"http://{self.simulator.host}:{self.simulator.port}/v1"

    def backend_url(self, model_id: str) -> str:
        deployment = self.fleet[model_id]
        return (deployment.base_url or self.simulator_url()).rstrip("/")


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (or ``$TURNOUT_CONFIG``) plus the environment; raise ``ConfigError``."""
    chosen_name = path or os.environ.get(CONFIG_ENV)
    if not chosen_name:
        raise ConfigError(f"no configuration: pass --config FILE or set ${CONFIG_ENV}")
    chosen = Path(chosen_name)
    if not chosen.is_file():
        raise ConfigError(f"config file {chosen} does not exist (set --config or ${CONFIG_ENV})")
    try:
        with chosen.open("rb") as handle:
            tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    token = _CONFIG_PATH.set(chosen)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"{chosen}: invalid configuration\n{format_validation_error(exc)}") from None
    finally:
        _CONFIG_PATH.reset(token)


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = _dotted(error["loc"])
        quiet = error["type"] in {"missing", "value_error", "extra_forbidden"} or _SECRET_KEY.search(key)
        got = "" if quiet else f" (got {error.get('input')!r})"  # the value of a mistyped or secret key may be a secret
        message = error["msg"].removeprefix("Value error, ")
        for part in message.split("\n"):
            lines.append(f"  {key + ': ' if key else ''}{part}{got}")
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_policy(path: str | Path, fleet: set[str]) -> Policy:
    """Read a policy document (``version``, ``[[routes]]``, ``[tenants.*]``,
    ``[default_tenant]``) and check it against ``fleet``; raise ``ConfigError`` naming
    every bad key, so that a bad version never takes effect."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text())
    except FileNotFoundError:
        raise ConfigError(f"policy file {source} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid policy\n{format_validation_error(exc)}") from None
    problems = policy.problems(fleet)
    if problems:
        raise ConfigError(f"{source}: invalid policy\n" + "\n".join(f"  {p}" for p in problems))
    return policy
