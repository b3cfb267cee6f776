"""resolve_api_key and the fleet's key options: env, file, inline; precise errors that
name the config key and never the secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from backend_fixtures import SECRET, SETTINGS_TOML, make_config, write_settings
from turnout.consumers.credentials import CredentialError, resolve_api_key
from turnout.schemas.settings import ConfigError, load_settings


def resolve(environ: dict[str, str] | None = None, **config) -> SecretStr | None:
    return resolve_api_key("claude", make_config(**config), environ if environ is not None else {})


def refused(environ: dict[str, str] | None = None, **config) -> str:
    with pytest.raises(CredentialError) as caught:
        resolve(environ, **config)
    message = str(caught.value)
    assert SECRET not in message and SECRET not in repr(caught.value.__cause__) and SECRET not in repr(caught.value.__context__)
    return message


def test_no_source_means_no_key():
    assert resolve() is None


def test_inline_key():
    key = resolve(api_key=SecretStr(SECRET))
    assert isinstance(key, SecretStr) and key.get_secret_value() == SECRET


def test_env_key_is_stripped():
    assert resolve({"ANTHROPIC_API_KEY": f"  {SECRET}\n"}, api_key_env="ANTHROPIC_API_KEY").get_secret_value() == SECRET


def test_env_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("TURNOUT_TEST_KEY", SECRET)
    assert resolve_api_key("m", make_config(api_key_env="TURNOUT_TEST_KEY")).get_secret_value() == SECRET


def test_unset_env_names_the_config_key_and_the_variable():
    assert refused({}, api_key_env="ANTHROPIC_API_KEY") == "fleet.claude.api_key_env names $ANTHROPIC_API_KEY, which is not set"


def test_empty_env_is_refused():
    assert refused({"ANTHROPIC_API_KEY": " \n"}, api_key_env="ANTHROPIC_API_KEY") == "fleet.claude.api_key_env ($ANTHROPIC_API_KEY) is empty"


def test_file_key_is_stripped(tmp_path: Path):
    secret = tmp_path / "key"
    secret.write_text(f"{SECRET}\n")
    assert resolve(api_key_file=str(secret)).get_secret_value() == SECRET


def test_file_path_may_start_with_home(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".key").write_text(SECRET)
    assert resolve(api_key_file="~/.key").get_secret_value() == SECRET


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope"
    assert refused(api_key_file=str(missing)) == f"fleet.claude.api_key_file: {missing} does not exist"


def test_empty_file(tmp_path: Path):
    empty = tmp_path / "key"
    empty.write_text("\n\n")
    assert refused(api_key_file=str(empty)) == f"fleet.claude.api_key_file ({empty}) is empty"


def test_a_directory_is_not_a_key_file(tmp_path: Path):
    assert refused(api_key_file=str(tmp_path)) == f"fleet.claude.api_key_file: {tmp_path} is a directory, not a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path):
    locked = tmp_path / "key"
    locked.write_text(SECRET)
    locked.chmod(0)
    assert refused(api_key_file=str(locked)).startswith(f"fleet.claude.api_key_file: {locked} is not readable by this user")


def test_a_file_that_is_not_text_does_not_quote_its_bytes(tmp_path: Path):
    binary = tmp_path / "key"
    binary.write_bytes(SECRET.encode() + b"\xff\xfe")
    assert refused(api_key_file=str(binary)) == f"fleet.claude.api_key_file: {binary} is not UTF-8 text"


@pytest.mark.parametrize("content", [f"{SECRET}\nsecond-line", f"sk {SECRET}", f"{SECRET}\x00"])
def test_a_key_with_inner_whitespace_or_control_characters_is_refused(tmp_path: Path, content):
    bad = tmp_path / "key"
    bad.write_text(content)
    assert "whitespace or control characters" in refused(api_key_file=str(bad))


def test_empty_inline_key_is_refused():
    assert refused(api_key=SecretStr("  ")) == "fleet.claude.api_key is empty"


# -- the fleet options -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sources, found",
    [
        ({"api_key": SECRET, "api_key_env": "K"}, "api_key and api_key_env"),
        ({"api_key_env": "K", "api_key_file": "/run/secrets/k"}, "api_key_env and api_key_file"),
        ({"api_key": SECRET, "api_key_env": "K", "api_key_file": "/k"}, "api_key and api_key_env and api_key_file"),
    ],
)
def test_at_most_one_key_source(sources, found):
    with pytest.raises(ValidationError) as caught:
        make_config(**sources)
    assert f"set at most one of api_key, api_key_env, api_key_file (found {found})" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_api_defaults_to_openai_and_accepts_the_other_formats():
    assert make_config().api == "openai"
    assert {make_config(api=api).api for api in ("anthropic", "gemini")} == {"anthropic", "gemini"}
    with pytest.raises(ValidationError, match="'openai', 'anthropic' or 'gemini'"):
        make_config(api="cohere")


def test_the_simulator_only_speaks_openai():
    with pytest.raises(ValidationError, match="provider 'simulated' speaks the openai api, not 'gemini'"):
        make_config(provider="simulated", base_url=None, api="gemini")


def test_a_config_file_with_two_key_sources_names_the_deployment(tmp_path: Path):
    text = SETTINGS_TOML.replace('served_model = "served-b"', f'served_model = "served-b"\napi_key = "{SECRET}"\napi_key_file = "/run/secrets/b"')
    with pytest.raises(ConfigError) as caught:
        load_settings(write_settings(tmp_path, text))
    assert "fleet.b: set at most one of api_key, api_key_env, api_key_file (found api_key and api_key_file)" in str(caught.value)
    assert SECRET not in str(caught.value)
