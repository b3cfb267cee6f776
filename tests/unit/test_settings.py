"""schemas/settings.py: the TOML file, the TURNOUT_* overrides and the errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import DEV_TOML, make_settings
from pydantic import ValidationError

from turnout.schemas.settings import (
    CONFIG_ENV,
    ConfigError,
    KafkaSettings,
    ModelDeployment,
    Settings,
    TokenRange,
    load_settings,
)

MINIMAL = """
[fleet.small]
provider = "simulated"
served_model = "sim-small"

[fleet.big]
provider = "openai"
base_url = "https://api.example.test/v1"
served_model = "gpt-x"
api_key = "sk-live-TOPSECRET-123"

[[routes]]
name = "code"
match = { task_type = "code-generation" }
model = "big"
fallback = ["small"]

[[routes]]
model = "small"
"""


@pytest.fixture(autouse=True)
def _no_ambient_turnout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("TURNOUT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "turnout.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(path: Path, **overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, **overrides)
    return str(info.value)


# -- the bundled dev configuration -------------------------------------------------------
def test_bundled_dev_toml_loads() -> None:
    settings = load_settings(DEV_TOML)
    assert isinstance(settings, Settings)
    assert list(settings.fleet) == ["small", "medium", "large", "private"]
    assert settings.fleet["private"].on_prem and settings.default_tenant.sensitive["secret"] == "block"
    assert [settings.route_name(i) for i in range(len(settings.routes))] == ["long-code", "code", "long-summaries", "default"]
    assert settings.router.policy_version == "dev-1"
    assert settings.router.default_deadline_s == 120
    assert settings.kafka.partitions == 3
    assert settings.routes[0].match.input_tokens.min == 1000
    assert settings.routes[1].match.task_type == ["code-generation", "code-review"]
    assert settings.routes[-1].match is None
    assert settings.fleet["large"].concurrency == 8
    assert settings.simulator.seed == 7
    assert settings.simulator.profile("sim-large").error_rate == 0.05
    assert settings.simulator.profile("not-configured") == settings.simulator.default
    assert settings.topics.model("small") == "turnout.model.small"
    # simulated deployments have no URL of their own: they reach the simulator
    assert settings.backend_url("small") == "http://127.0.0.1:8900/v1"


def test_dev_toml_is_found_through_the_config_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(DEV_TOML))
    assert load_settings().router.policy_version == "dev-1"


def test_explicit_path_wins_over_the_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(DEV_TOML))
    settings = load_settings(write(tmp_path, MINIMAL))
    assert sorted(settings.fleet) == ["big", "small"]


def test_no_path_and_no_variable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=CONFIG_ENV):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings(DEV_TOML)
    with pytest.raises(ValidationError):
        settings.kafka.topic_prefix = "other"  # type: ignore[misc]


def test_route_name_defaults_to_its_index(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.route_name(0) == "code"
    assert settings.route_name(1) == "route-1"


def test_backend_url_strips_trailing_slash() -> None:
    settings = make_settings(
        fleet={"real": {"provider": "vllm", "base_url": "http://gpu.test:8000/v1/", "served_model": "m"}},
        routes=[{"model": "real"}],
        simulator={"url": "http://sim.test:9/v1/"},
    )
    assert settings.backend_url("real") == "http://gpu.test:8000/v1"
    assert settings.simulator_url() == "http://sim.test:9/v1"


# -- errors that name the key ----------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = config_error(missing)
    assert str(missing) in message
    assert "does not exist" in message


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert "does not exist" in config_error(tmp_path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[fleet.small\nprovider = 'simulated'\n")
    message = config_error(path)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 1" in message  # tomllib's position survives


def test_unknown_model_in_a_route_fallback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('fallback = ["small"]', 'fallback = ["huge"]'))
    message = config_error(path)
    assert "routes[0].fallback[0]" in message
    assert "unknown model 'huge'" in message
    assert "fleet has: big, small" in message
    assert str(path) in message


def test_unknown_primary_model_and_later_fallback_index(tmp_path: Path) -> None:
    text = MINIMAL.replace('model = "big"\nfallback = ["small"]', 'model = "tiny"\nfallback = ["small", "giant"]')
    message = config_error(write(tmp_path, text))
    assert "routes[0].model: unknown model 'tiny'" in message
    assert "routes[0].fallback[1]: unknown model 'giant'" in message
    assert "fallback[0]" not in message  # 'small' exists


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = MINIMAL.replace('fallback = ["small"]', 'fallback = ["huge"]').replace(
        '[[routes]]\nmodel = "small"', '[[routes]]\nmatch = { tenant = "x" }\nmodel = "nano"'
    )
    message = config_error(write(tmp_path, text))
    assert "routes[0].fallback[0]: unknown model 'huge'" in message
    assert "routes[1].model: unknown model 'nano'" in message
    assert "no catch-all route" in message


def test_no_catch_all_route(tmp_path: Path) -> None:
    text = MINIMAL.replace('[[routes]]\nmodel = "small"', '[[routes]]\nmatch = { tenant = "acme" }\nmodel = "small"')
    message = config_error(write(tmp_path, text))
    assert "routes: no catch-all route" in message


def test_negative_concurrency_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('served_model = "sim-small"', 'served_model = "sim-small"\nconcurrency = -1'))
    message = config_error(path)
    assert "fleet.small.concurrency" in message
    assert "greater than or equal to 1" in message
    assert "(got -1)" in message


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + '\n[kafka]\npartitions = "many"\n'))
    assert "kafka.partitions" in message
    assert "'many'" in message


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + "\n[kafka]\nbootstrap_server = 'x:1'\n"))
    assert "kafka.bootstrap_server" in message
    assert "Extra inputs are not permitted" in message


def test_missing_served_model(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL.replace('served_model = "sim-small"\n', "")))
    assert "fleet.small.served_model: Field required" in message


def test_base_url_required_unless_simulated(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL.replace('base_url = "https://api.example.test/v1"\n', "")))
    assert "fleet.big: base_url is required for provider 'openai'" in message


def test_model_ids_must_be_topic_safe(tmp_path: Path) -> None:
    text = MINIMAL.replace("[fleet.small]", "[fleet.Small]").replace('"small"', '"Small"')
    message = config_error(write(tmp_path, text))
    assert "fleet.Small: model ids are lower-case" in message


def test_missing_fleet_and_routes(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "[kafka]\npartitions = 1\n"))
    assert "fleet: Field required" in message
    assert "routes: Field required" in message


def test_empty_fleet(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "fleet = {}\n[[routes]]\nmodel = 'x'\n"))
    assert "fleet: at least one model deployment is required" in message
    assert "routes[0].model: unknown model 'x'" in message


def test_illegal_topic_prefix(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + '\n[kafka]\ntopic_prefix = "my prefix"\n'))
    assert "kafka.topic_prefix" in message
    assert "may only hold letters" in message


def test_unknown_clickhouse_scheme(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + '\n[clickhouse]\ndsn = "mysql://db.test/x"\n'))
    assert "clickhouse.dsn: scheme 'mysql': expected chdb://dir, http(s)://host:8123 or clickhouse(s)://host" in message


def test_inverted_token_range_in_a_route(tmp_path: Path) -> None:
    text = MINIMAL.replace('match = { task_type = "code-generation" }', "match = { input_tokens = { min = 500, max = 10 } }")
    message = config_error(write(tmp_path, text))
    assert "routes[0].match.input_tokens: min (500) is greater than max (10)" in message


# -- heartbeat vs session ----------------------------------------------------------------
def test_heartbeat_must_be_at_most_a_third_of_the_session(tmp_path: Path) -> None:
    text = MINIMAL + "\n[kafka]\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 2001\n"
    message = config_error(write(tmp_path, text))
    assert "kafka: heartbeat_interval_ms (2001) must be at most a third of session_timeout_ms (6000)" in message


def test_heartbeat_of_exactly_a_third_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL + "\n[kafka]\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 2000\n"
    settings = load_settings(write(tmp_path, text))
    assert (settings.kafka.session_timeout_ms, settings.kafka.heartbeat_interval_ms) == (6000, 2000)


def test_kafka_section_alone_checks_heartbeat() -> None:
    with pytest.raises(ValidationError, match="at most a third"):
        KafkaSettings(session_timeout_ms=3000, heartbeat_interval_ms=1500)
    assert KafkaSettings(session_timeout_ms=3000, heartbeat_interval_ms=1000).heartbeat_interval_ms == 1000


# -- environment overrides ----------------------------------------------------------------
def test_environment_beats_the_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL + '\n[kafka]\nbootstrap_servers = "file.test:9092"\npartitions = 6\n')
    assert load_settings(path).kafka.bootstrap_servers == "file.test:9092"
    monkeypatch.setenv("TURNOUT_KAFKA__BOOTSTRAP_SERVERS", "env.test:19092")
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "env.test:19092"
    assert settings.kafka.partitions == 6  # the rest of the section still comes from the file


def test_environment_variable_names_are_case_insensitive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("turnout_kafka__bootstrap_servers", "lower.test:1")
    assert load_settings(write(tmp_path, MINIMAL)).kafka.bootstrap_servers == "lower.test:1"


def test_environment_overrides_a_nested_fleet_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_FLEET__SMALL__CONCURRENCY", "3")
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.fleet["small"].concurrency == 3
    assert settings.fleet["small"].served_model == "sim-small"  # deep-merged, not replaced
    assert settings.fleet["big"].served_model == "gpt-x"


def test_bad_environment_value_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_FLEET__SMALL__CONCURRENCY", "-1")
    assert "fleet.small.concurrency" in config_error(write(tmp_path, MINIMAL))


def test_keyword_overrides_beat_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_KAFKA__BOOTSTRAP_SERVERS", "env.test:1")
    settings = load_settings(write(tmp_path, MINIMAL), kafka={"bootstrap_servers": "kw.test:2"})
    assert settings.kafka.bootstrap_servers == "kw.test:2"


# -- secrets ----------------------------------------------------------------------------------
def test_secrets_are_masked_when_dumped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_CLICKHOUSE__DSN", "https://analyst:ch-PASSWORD-456@ch.test:8443")
    settings = load_settings(write(tmp_path, MINIMAL))
    # the values are there for code that needs them ...
    assert settings.fleet["big"].api_key.get_secret_value() == "sk-live-TOPSECRET-123"
    assert settings.clickhouse.dsn.get_secret_value() == "https://analyst:ch-PASSWORD-456@ch.test:8443"
    # ... and nowhere in what gets printed or logged
    dumped = settings.model_dump_json()
    for rendered in (dumped, repr(settings), str(settings)):
        assert "TOPSECRET" not in rendered
        assert "ch-PASSWORD" not in rendered
    parsed = json.loads(dumped)
    assert parsed["fleet"]["big"]["api_key"] == "**********"
    assert parsed["clickhouse"]["dsn"] == "**********"
    assert parsed["fleet"]["small"]["api_key"] is None


def test_bad_dsn_scheme_error_does_not_echo_credentials(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + '\n[clickhouse]\ndsn = "mysql://root:DSN-SECRET-789@db.test/x"\n'))
    assert "clickhouse.dsn" in message
    assert "DSN-SECRET-789" not in message


def test_dsn_without_scheme_error_does_not_echo_password(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL + '\n[clickhouse]\ndsn = "analyst:DSN-SECRET-789@ch.test:8123"\n'))
    assert "clickhouse.dsn" in message
    assert "DSN-SECRET-789" not in message


def test_misspelled_secret_key_error_does_not_echo_the_secret(tmp_path: Path) -> None:
    text = MINIMAL.replace('api_key = "sk-live-TOPSECRET-123"', 'api_kye = "sk-live-TOPSECRET-123"')
    message = config_error(write(tmp_path, text))
    assert "fleet.big.api_kye" in message
    assert "TOPSECRET" not in message


# -- ModelDeployment and TokenRange -------------------------------------------------------------
def test_cost_usd_prices_per_million_tokens() -> None:
    deployment = ModelDeployment(provider="simulated", served_model="m", price_input_per_mtok=1.0, price_output_per_mtok=4.0)
    assert deployment.cost_usd(1_000_000, 500_000) == pytest.approx(3.0)
    assert deployment.cost_usd(1_000, 250) == pytest.approx(0.001 + 0.001)
    assert deployment.cost_usd(0, 0) == 0.0
    free = ModelDeployment(provider="simulated", served_model="m")
    assert free.cost_usd(10_000, 10_000) == 0.0


def test_cost_usd_of_the_dev_fleet() -> None:
    fleet = load_settings(DEV_TOML).fleet
    assert fleet["small"].cost_usd(2_000, 1_000) == pytest.approx((2_000 * 0.15 + 1_000 * 0.60) / 1e6)
    assert fleet["large"].cost_usd(2_000, 1_000) > fleet["medium"].cost_usd(2_000, 1_000) > fleet["small"].cost_usd(2_000, 1_000)


def test_negative_price_is_rejected() -> None:
    with pytest.raises(ValidationError, match="price_input_per_mtok"):
        ModelDeployment(provider="simulated", served_model="m", price_input_per_mtok=-0.1)


@pytest.mark.parametrize(
    ("low", "high", "inside", "outside"),
    [
        (10, 20, [10, 15, 20], [9, 21]),
        (None, 20, [0, 20], [21]),
        (10, None, [10, 10**9], [9]),
        (None, None, [0, 10**9], []),
        (7, 7, [7], [6, 8]),
    ],
)
def test_token_range_contains_inclusive(low, high, inside, outside) -> None:
    token_range = TokenRange(min=low, max=high)
    assert all(token_range.contains(v) for v in inside)
    assert not any(token_range.contains(v) for v in outside)


def test_token_range_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match=r"min \(21\) is greater than max \(20\)"):
        TokenRange(min=21, max=20)


def test_token_range_bounds_are_not_negative() -> None:
    with pytest.raises(ValidationError):
        TokenRange(min=-1)


def test_kafka_compression_reaches_every_producer_and_none_means_uncompressed() -> None:
    from turnout.schemas.kafka import producer_options
    from turnout.schemas.settings import KafkaSettings

    assert producer_options(KafkaSettings(), "router")["compression_type"] == "lz4"
    assert producer_options(KafkaSettings(compression_type="zstd"), "worker")["compression_type"] == "zstd"
    assert producer_options(KafkaSettings(compression_type="none"), "sink")["compression_type"] is None


def test_an_unknown_compression_is_refused_with_the_choices() -> None:
    from pydantic import ValidationError

    from turnout.schemas.settings import KafkaSettings

    with pytest.raises(ValidationError, match="lz4"):
        KafkaSettings(compression_type="brotli")
