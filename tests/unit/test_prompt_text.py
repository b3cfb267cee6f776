"""Prompt text storage on the router side: opt-in settings, redaction before the record
leaves the router (streams/handling.py, streams/prompts.py), and replaying a stored
prompt under another policy on the signals the router recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import MINIMAL_TOML, T0, make_request, make_settings, user

from turnout.schemas.models import PromptText, Signals
from turnout.schemas.policy import Policy
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import ConfigError, load_settings
from turnout.streams.engine import Context
from turnout.streams.handling import Source, route_message
from turnout.streams.prompts import prompt_text, replay, request_of

PREFIX = "tp"
SOURCE = Source(topic=f"{PREFIX}.requests", partition=0, offset=7)
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
SECRET_PROMPT = f"Please email {EMAIL} the receipt for card {CARD}, thanks."


def settings(**prompts):
    return make_settings(kafka={"topic_prefix": PREFIX}, router={"policy_version": "pv-3"}, prompts=prompts)


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec()


def routed(request, config, codec) -> list:
    return route_message(request.id.encode(), codec.encode(request), SOURCE, codec, config)


def stored(outs, codec) -> list[PromptText]:
    return [codec.decode(out.value, PromptText) for out in outs if out.topic == f"{PREFIX}.prompts"]


# -- what the router publishes ------------------------------------------------------------
def test_nothing_is_published_on_the_prompts_topic_by_default(codec) -> None:
    outs = routed(make_request(SECRET_PROMPT), settings(), codec)
    assert outs and not stored(outs, codec)


def test_an_opted_in_request_is_published_redacted_before_it_leaves_the_router(codec) -> None:
    request = make_request(SECRET_PROMPT, metadata={"customer": EMAIL, "lane": "x"})
    outs = routed(request, settings(store=True), codec)

    [prompt] = stored(outs, codec)
    raw = next(out.value for out in outs if out.topic == f"{PREFIX}.prompts")
    assert EMAIL.encode() not in raw and b"4111" not in raw  # not in the bytes on the wire either
    assert prompt.messages[0].content == "Please email [REDACTED:email] the receipt for card [REDACTED:payment_card], thanks."
    assert prompt.metadata == {"customer": "[REDACTED:email]", "lane": "x"}
    assert (prompt.request_id, prompt.tenant, prompt.ts, prompt.policy_version) == (request.id, "acme", T0, "pv-3")
    assert prompt.signals.sensitive_kinds == ["email", "payment_card"]  # read from the text before redaction


def test_a_clean_prompt_is_stored_as_written(codec) -> None:
    request = make_request("What is the capital of France?", model="small")
    [prompt] = stored(routed(request, settings(store=True), codec), codec)
    assert prompt.messages == request.messages
    assert prompt.model == "small" and prompt.input == []


def test_images_are_not_stored(codec) -> None:
    request = make_request(None, messages=[user("Describe it").model_copy(update={"images": ["data:image/png;base64,AAAA"]})])
    prompt = prompt_text(request, Signals(task_type="qa", task_confidence=1, task_method="m", input_tokens=3, token_method="t", turns=1), "v")
    assert prompt.messages[0].images == [] and prompt.messages[0].content == "Describe it"


def test_an_embedding_request_keeps_its_texts_redacted(codec) -> None:
    request = make_request(None, input=["plain text", f"mail {EMAIL}"])
    config = make_settings(
        kafka={"topic_prefix": PREFIX},
        fleet={"small": {"provider": "simulated", "served_model": "s"}, "embed": {"provider": "simulated", "served_model": "e", "capabilities": ["embeddings"]}},
        routes=[{"model": "small"}],
        prompts={"store": True},
    )
    [prompt] = stored(routed(request, config, codec), codec)
    assert prompt.input == ["plain text", "mail [REDACTED:email]"] and prompt.messages == []


def test_only_the_tenants_that_opted_in_are_stored(codec) -> None:
    config = settings(store=True, tenants=["acme"])
    assert stored(routed(make_request(SECRET_PROMPT, id="a"), config, codec), codec)
    assert not stored(routed(make_request(SECRET_PROMPT, id="b", tenant="other"), config, codec), codec)


def test_a_refused_request_is_stored_too(codec) -> None:
    request = make_request("Parse this", response_schema='{"type": "object"}')  # nobody has json_schema in this fleet
    outs = routed(request, settings(store=True), codec)
    assert any(out.topic == f"{PREFIX}.dlq" for out in outs)
    [prompt] = stored(outs, codec)
    assert prompt.signals.capabilities == ["json_schema"]


# -- settings ------------------------------------------------------------------------------


def load(tmp_path: Path, prompts: str):
    path = tmp_path / "t.toml"
    path.write_text(MINIMAL_TOML + "\n[prompts]\n" + prompts)
    return load_settings(path)


def test_prompt_settings_default_to_off(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert not config.prompts.store and config.prompts.ttl_days == 30
    assert not config.prompts.stores("acme")


def test_prompt_settings_opt_in_per_tenant(tmp_path: Path) -> None:
    config = load(tmp_path, 'store = true\ntenants = ["acme"]\nttl_days = 7')
    assert config.prompts.stores("acme") and not config.prompts.stores("globex")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttl_days = 0", "prompts.ttl_days: Input should be greater than or equal to 1"),
        ("store = true\nttl_days = 5000", "prompts.ttl_days: Input should be less than or equal to 3650"),
        ('tenants = ["acme"]', "prompts: tenants names who opts in, but store is false so nothing is stored"),
        ("store = true\ntenants = []", "prompts: tenants is empty, so no prompt would be stored"),
        ("store = 'sometimes'", "prompts.store: Input should be a valid boolean"),
        ("keep = true", "prompts.keep: Extra inputs are not permitted"),
    ],
)
def test_bad_prompt_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert message in str(info.value)


# -- replay ---------------------------------------------------------------------------------
def recorded(sensitive_kinds: list[str], **fields) -> PromptText:
    signals = Signals(
        task_type="question-answering", task_confidence=0.9, task_method="m", input_tokens=40, token_method="t", turns=1,
        expected_output_tokens=300, sensitive_kinds=sensitive_kinds,
    )
    return PromptText(request_id="r1", tenant="acme", ts=T0, policy_version="v1", messages=[user("mail [REDACTED:email]")], signals=signals, **fields)


def ctx(**policy) -> Context:
    config = make_settings()
    return Context(fleet=config.fleet, policy=Policy.model_validate({"version": "candidate", **policy}))


def test_replay_routes_on_the_recorded_signals_not_the_redacted_text() -> None:
    blocking = ctx(routes=[{"model": "small"}], default_tenant={"sensitive": {"email": "block"}})
    assert replay(recorded(["email"]), blocking).refusal is not None  # the text holds no email any more; the signals do
    assert replay(recorded([]), blocking).plan[0].model == "small"


def test_replay_keeps_what_routes_match_on() -> None:
    candidate = ctx(routes=[{"match": {"metadata": {"lane": "gold"}}, "model": "large"}, {"model": "small"}], tenants={"acme": {"deny_models": ["medium"]}})
    assert replay(recorded([], metadata={"lane": "gold"}), candidate).plan[0].model == "large"
    assert replay(recorded([]), candidate).plan[0].model == "small"
    assert replay(recorded([], model="medium"), candidate).refusal.code == "policy_refused"  # pinned, and denied to acme


def test_request_of_a_stored_prompt_is_the_request_as_a_policy_sees_it() -> None:
    prompt = recorded([], model="large", metadata={"k": "v"}, input=[])
    request = request_of(prompt)
    assert (request.id, request.tenant, request.model, request.metadata, request.created_at) == ("r1", "acme", "large", {"k": "v"}, T0)
    assert request.messages == prompt.messages and request.input is None
