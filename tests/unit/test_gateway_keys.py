"""gateway/keys.py and the [gateway] settings: keys made, hashed, looked up and refused;
the configuration `turnout gateway key create` prints is accepted as it is; bad entries
fail with a message that names the key."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import MINIMAL_TOML

from turnout.cli import cli
from turnout.gateway.keys import KEY_PREFIX, Caller, KeyRing, bearer_token, config_snippet, key_hash, new_key
from turnout.schemas.gateway_config import ApiKeyEntry, GatewaySettings
from turnout.schemas.settings import ConfigError, load_settings
from turnout.schemas.topics import Topics



def test_a_new_key_is_long_random_and_recognisable() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) == len(KEY_PREFIX) + 43  # 32 bytes, URL-safe base64 without padding


def test_the_stored_form_is_the_sha256_digest() -> None:
    assert key_hash("tnt-abc") == "sha256:" + hashlib.sha256(b"tnt-abc").hexdigest()


def test_the_ring_names_the_tenant_of_a_listed_key_and_nobody_else() -> None:
    acme, beta = new_key(), new_key()
    ring = KeyRing([ApiKeyEntry(hash=key_hash(acme), tenant="acme", name="ci"), ApiKeyEntry(hash=key_hash(beta), tenant="beta")])

    assert ring.caller(acme) == Caller("acme", "ci")
    assert ring.caller(beta) == Caller("beta", "")
    assert ring.caller(new_key()) is None
    assert ring.caller(acme[:-1]) is None
    assert ring.caller(key_hash(acme)) is None  # the stored digest is not a key
    assert ring.caller("\udcff") is None  # a header that is no UTF-8 matches nothing


def test_an_empty_ring_refuses_everyone() -> None:
    assert KeyRing([]).caller(new_key()) is None


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer tnt-1", "tnt-1"), ("bearer   tnt-1 ", "tnt-1"), ("Basic dXNlcg==", None), ("Bearer", None), ("", None), (None, None), ("tnt-1", None)],
)
def test_only_a_bearer_header_carries_a_key(header: str | None, key: str | None) -> None:
    assert bearer_token(header) == key


def test_the_printed_snippet_configures_the_key(tmp_path: Path) -> None:
    key = new_key()
    config = tmp_path / "turnout.toml"
    config.write_text(MINIMAL_TOML + "\n" + config_snippet(key, 'acme "eu"', "ci"))

    settings = load_settings(config)

    assert KeyRing(settings.gateway.keys).caller(key) == Caller('acme "eu"', "ci")


def test_key_create_prints_the_key_once_and_the_lines_to_add() -> None:
    result = CliRunner().invoke(cli, ["gateway", "key", "create", "--tenant", "acme", "--name", "ci"])

    assert result.exit_code == 0, result.output
    key = next(word for word in result.output.split() if word.startswith(KEY_PREFIX))
    assert result.output.count(key) == 1
    snippet = result.output[result.output.index("[[gateway.keys]]") :]
    assert tomllib.loads(snippet)["gateway"]["keys"] == [{"hash": key_hash(key), "tenant": "acme", "name": "ci"}]


def test_key_create_needs_a_tenant() -> None:
    result = CliRunner().invoke(cli, ["gateway", "key", "create", "--tenant", " "])
    assert result.exit_code != 0
    assert "tenant may not be empty" in result.output


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('hash = "tnt-plainkey"', "expected 'sha256:<64 hex digits>'"),
        ('hash = "sha256:abc"', "64 lower-case hex digits"),
        ('hash = "md5:0123"', "not the key itself or another scheme"),
    ],
)
def test_a_bad_hash_is_named_in_the_error(tmp_path: Path, entry: str, message: str) -> None:
    config = tmp_path / "turnout.toml"
    config.write_text(MINIMAL_TOML + f'\n[[gateway.keys]]\n{entry}\ntenant = "acme"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(config)

    assert "gateway.keys[0].hash" in str(caught.value)
    assert message in str(caught.value)


def test_one_key_cannot_belong_to_two_tenants() -> None:
    digest = key_hash(new_key())
    with pytest.raises(ValueError, match=r"keys\[1\] has the same hash as keys\[0\]"):
        GatewaySettings(keys=[ApiKeyEntry(hash=digest, tenant="acme"), ApiKeyEntry(hash=digest, tenant="beta")])


def test_an_entry_needs_a_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        ApiKeyEntry(hash=key_hash("k"), tenant="")


def test_the_reply_topic_is_per_instance_and_stable() -> None:
    topics = Topics("prod")
    assert GatewaySettings(instance_id="gw-1").reply_topic(topics, "host-a") == "prod.gateway.gw-1"
    assert GatewaySettings().reply_topic(topics, "pod/7:a") == "prod.gateway.pod-7-a"  # the host name, made topic-safe
    with pytest.raises(ValueError, match="instance_id becomes part of a topic name"):
        GatewaySettings(instance_id="a b")
