"""Policy versions as records: folding the topic, refusing what does not fit the fleet."""

from __future__ import annotations

import pytest

from turnout.schemas.policy import ACTIVE_KEY, ActivePointer, Policy, PolicyLog, Route
from turnout.schemas.settings import ConfigError, load_policy, load_settings
from turnout.streams.policy_store import PolicyStore

DEV = "turnout/defaults/dev.toml"


def record(policy: Policy) -> tuple[bytes, bytes]:
    return policy.version.encode(), policy.model_dump_json().encode()


def pointer(version: str, *history: str) -> tuple[bytes, bytes]:
    return ACTIVE_KEY.encode(), ActivePointer(version=version, history=list(history)).model_dump_json().encode()


def test_the_log_follows_the_active_pointer():
    log = PolicyLog()
    v2 = Policy(version="v2", routes=[Route(model="large")])
    log.apply(*record(v2))
    assert log.active_policy() is None  # published but not active yet
    log.apply(*pointer("v2", "v1"))
    assert log.active_policy() == v2 and log.active.previous == "v1"
    log.apply(b"v3", None)  # a tombstone teaches nothing
    assert log.active_policy() == v2


def test_the_store_switches_only_to_versions_that_fit_its_fleet(caplog):
    settings = load_settings(DEV)
    store = PolicyStore(settings)
    assert store.policy.version == "dev-1"
    good = Policy(version="v2", routes=[Route(model="medium")])
    store.apply(*record(good))
    store.apply(*pointer("v2", "dev-1"))
    assert store.policy == good
    alien = Policy(version="v3", routes=[Route(model="gpt-9")])
    store.apply(*record(alien))
    store.apply(*pointer("v3", "dev-1", "v2"))
    assert store.policy == good  # the old version keeps serving
    assert "unknown model 'gpt-9'" in store.refused["v3"][0]
    assert "policy v3 refused" in caplog.text


def test_garbage_on_the_topic_is_logged_and_ignored(caplog):
    store = PolicyStore(load_settings(DEV))
    store.apply(b"v9", b"{not json")
    assert store.policy.version == "dev-1" and "unreadable record" in caplog.text


def test_load_policy_names_every_bad_key(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('version = "x"\n[[routes]]\nmodel = "huge"\nmatch = { task_type = "chit-chat" }\n[tenants.acme]\ndeny_models = ["nope"]\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(path, {"small", "large"})
    message = str(caught.value)
    assert "routes[0].model: unknown model 'huge' (fleet has: large, small)" in message
    assert "tenants.acme.deny_models[0]: unknown model 'nope'" in message
    assert "no catch-all route" in message


def test_load_policy_rejects_bad_toml_and_bad_types(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(broken, {"small"})
    typed = tmp_path / "typed.toml"
    typed.write_text('version = "x"\n[[routes]]\nmodel = "small"\nmax_fallbacks = -1\n')
    with pytest.raises(ConfigError, match=r"routes\[0\]\.max_fallbacks"):
        load_policy(typed, {"small"})
