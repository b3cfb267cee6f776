"""The simulator's profile settings: the old defaults unchanged, every shipped
configuration still valid, and a precise error for each incoherent profile."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from factories import REPO
from turnout.schemas.settings import ConfigError, SimulatorProfile, SimulatorSettings, load_settings

CONFIG = """
[fleet.small]
provider = "simulated"
served_model = "sim-small"

[[routes]]
model = "small"

[simulator.profiles.sim-small]
{profile}
"""


@pytest.fixture(autouse=True)
def _no_ambient_turnout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("TURNOUT_")]:
        monkeypatch.delenv(name)


def test_the_original_fields_keep_their_defaults_and_new_faults_are_off():
    profile = SimulatorProfile()
    assert (profile.latency_ms, profile.latency_jitter_ms, profile.error_rate, profile.rate_limit_rate) == (40.0, 10.0, 0.0, 0.0)
    assert (profile.retry_after_s, profile.output_tokens, profile.latency_distribution) == (0.2, 48, "normal")
    faults = ("timeout_rate", "burst_rate", "truncate_rate", "malformed_rate", "schema_violation_rate", "near_json_rate")
    assert all(getattr(profile, name) == 0 for name in faults)


@pytest.mark.parametrize("path", ["turnout/defaults/dev.toml", "deploy/turnout.toml", "tests/integration/stack.toml"])
def test_every_shipped_simulator_section_still_loads(path):
    section = tomllib.loads((REPO / path).read_text())["simulator"]
    settings = SimulatorSettings.model_validate(section)
    assert all(profile.latency_distribution == "normal" for profile in [settings.default, *settings.profiles.values()])


def test_a_profile_with_every_fault_loads_from_toml(tmp_path: Path):
    profile = """
latency_distribution = "lognormal"
latency_ms = 80
latency_sigma = 1.2
timeout_rate = 0.01
hang_s = 45
burst_rate = 0.02
burst_length = 8
burst_statuses = [502, 503]
truncate_rate = 0.01
malformed_rate = 0.01
schema_violation_rate = 0.05
near_json_rate = 0.05
"""
    path = tmp_path / "turnout.toml"
    path.write_text(CONFIG.format(profile=profile))
    loaded = load_settings(path).simulator.profile("sim-small")
    assert (loaded.latency_distribution, loaded.latency_sigma, loaded.burst_statuses, loaded.hang_s) == ("lognormal", 1.2, (502, 503), 45)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("rate_limit_rate = 0.6\nerror_rate = 0.5", "simulator.profiles.sim-small: rate_limit_rate (0.6) + error_rate (0.5) must be at most 1"),
        ("truncate_rate = 0.7\nmalformed_rate = 0.7", "truncate_rate (0.7) + malformed_rate (0.7) must be at most 1"),
        ("schema_violation_rate = 1\nnear_json_rate = 0.1", "schema_violation_rate (1) + near_json_rate (0.1) must be at most 1"),
        ('latency_distribution = "lognormal"\nlatency_ms = 0', "latency_ms must be above 0 with latency_distribution = 'lognormal'"),
        ("latency_sigma = 1.0", "latency_sigma applies only to latency_distribution = 'lognormal' (it is 'normal')"),
        ('latency_distribution = "fixed"\nlatency_jitter_ms = 5', "latency_jitter_ms applies only to latency_distribution = 'normal' (it is 'fixed')"),
        ('latency_distribution = "gamma"', "simulator.profiles.sim-small.latency_distribution: Input should be 'fixed', 'normal' or 'lognormal'"),
        ("timeout_rate = 1.5", "simulator.profiles.sim-small.timeout_rate: Input should be less than or equal to 1"),
        ("hang_s = 0", "simulator.profiles.sim-small.hang_s: Input should be greater than 0"),
        ("burst_length = 0", "simulator.profiles.sim-small.burst_length: Input should be greater than or equal to 1"),
        ("burst_statuses = [404]", "simulator.profiles.sim-small.burst_statuses[0]: Input should be 500, 502 or 503"),
        ("burst_statuses = []", "simulator.profiles.sim-small.burst_statuses: Tuple should have at least 1 item"),
        ("latency_sigma = 4", "simulator.profiles.sim-small.latency_sigma: Input should be less than or equal to 3"),
        ("near_json = 0.1", "simulator.profiles.sim-small.near_json: Extra inputs are not permitted"),
    ],
    ids=[
        "429-and-500",
        "body-faults",
        "output-faults",
        "lognormal-zero-median",
        "sigma-without-lognormal",
        "jitter-without-normal",
        "unknown-distribution",
        "rate-above-one",
        "zero-hang",
        "zero-burst",
        "burst-status",
        "no-burst-status",
        "huge-sigma",
        "misspelt-key",
    ],
)
def test_an_incoherent_profile_is_a_config_error_naming_the_key(tmp_path: Path, profile, message):
    path = tmp_path / "turnout.toml"
    path.write_text(CONFIG.format(profile=profile))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in str(caught.value)


def test_every_problem_of_a_profile_is_listed_at_once():
    with pytest.raises(ValidationError) as caught:
        SimulatorProfile(rate_limit_rate=0.9, error_rate=0.9, truncate_rate=0.9, malformed_rate=0.9, latency_sigma=2)
    text = str(caught.value)
    assert "rate_limit_rate (0.9) + error_rate" in text and "truncate_rate (0.9) + malformed_rate" in text and "latency_sigma applies" in text


def test_sigma_and_jitter_are_accepted_with_their_own_distribution():
    assert SimulatorProfile(latency_distribution="lognormal", latency_sigma=2).latency_sigma == 2
    assert SimulatorProfile(latency_distribution="fixed", latency_jitter_ms=0).latency_jitter_ms == 0
