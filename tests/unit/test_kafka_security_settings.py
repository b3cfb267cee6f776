"""``[kafka.security]`` and the producer's idempotence: what each setting turns into for
aiokafka and faust, and the precise refusals of combinations that cannot connect."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import faust
import pytest
from factories import MINIMAL_TOML
from pydantic import ValidationError

from turnout.schemas import kafka as kafka_module
from turnout.schemas.kafka import client_options, idempotent_producers, producer_options
from turnout.schemas.kafka_security import KafkaSecurity
from turnout.schemas.settings import ConfigError, KafkaSettings, load_settings
from turnout.streams.app import faust_credentials



def refusal(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        KafkaSecurity(**fields)
    return str(info.value)


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert KafkaSecurity().aiokafka_options() == {"security_protocol": "PLAINTEXT"}
    assert client_options(KafkaSettings(), "router")["security_protocol"] == "PLAINTEXT"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_names_every_missing_credential(protocol: str) -> None:
    message = refusal(protocol=protocol, username="router")
    assert f"protocol {protocol} needs sasl_mechanism, password" in message


def test_credentials_without_sasl_are_refused_rather_than_ignored() -> None:
    assert "need protocol SASL_PLAINTEXT or SASL_SSL, not SSL" in refusal(protocol="SSL", username="router")
    assert "not PLAINTEXT" in refusal(password="secret")


def test_tls_files_without_tls_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert "need protocol SSL or SASL_SSL, not SASL_PLAINTEXT" in refusal(
        protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="u", password="p", ca_file=ca
    )


def test_a_missing_file_and_a_certificate_without_its_key_are_named(tmp_path: Path) -> None:
    assert f"ca_file: no file at {tmp_path / 'absent.pem'}" in refusal(protocol="SSL", ca_file=tmp_path / "absent.pem")
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    assert "cert_file and key_file go together" in refusal(protocol="SSL", cert_file=cert)


def test_sasl_options_carry_the_mechanism_and_the_password_in_clear_only_for_aiokafka() -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", username="router", password="s3cret-value")
    options = security.aiokafka_options()
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "router",
        "sasl_plain_password": "s3cret-value",
    }
    assert "s3cret-value" not in repr(security) and "s3cret-value" not in security.model_dump_json()


def test_tls_options_carry_a_verifying_context() -> None:
    options = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="PLAIN", username="u", password="p").aiokafka_options()
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert KafkaSecurity(protocol="SSL", check_hostname=False).ssl_context().check_hostname is False


def test_faust_gets_the_same_credentials() -> None:
    sasl = faust_credentials(KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="router", password="p"))
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.protocol.value, sasl.mechanism.value, sasl.username) == ("SASL_SSL", "SCRAM-SHA-512", "router")
    plain_sasl = faust_credentials(KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="u", password="p"))
    assert plain_sasl.protocol.value == "SASL_PLAINTEXT"
    assert isinstance(faust_credentials(KafkaSecurity(protocol="SSL")), faust.SSLCredentials)
    assert faust_credentials(KafkaSecurity()) is None


def test_security_comes_from_the_environment_and_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TURNOUT_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "turnout.toml"
    path.write_text(MINIMAL_TOML)
    monkeypatch.setenv("TURNOUT_KAFKA__SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TURNOUT_KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TURNOUT_KAFKA__SECURITY__USERNAME", "router")
    monkeypatch.setenv("TURNOUT_KAFKA__SECURITY__PASSWORD", "from-the-environment")
    security = load_settings(path).kafka.security
    assert security.protocol == "SASL_SSL" and security.password.get_secret_value() == "from-the-environment"

    monkeypatch.delenv("TURNOUT_KAFKA__SECURITY__PASSWORD")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "kafka.security" in str(info.value) and "password" in str(info.value)


# -- idempotence ----------------------------------------------------------------------------


def test_idempotence_on_and_off_are_taken_as_said_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    async def must_not_ask(*_: object) -> bool:
        raise AssertionError("asked the broker")

    monkeypatch.setattr(kafka_module, "_broker_grants_producer_id", must_not_ask)
    assert producer_options(KafkaSettings(idempotence="on"), "worker")["enable_idempotence"] is True
    assert producer_options(KafkaSettings(idempotence="off"), "worker")["enable_idempotence"] is False


def test_auto_asks_once_per_cluster_and_asks_again_when_nobody_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"grants:9092": True, "refuses:9092": False, "down:9092": None}
    asked: list[str] = []

    async def broker(kafka: KafkaSettings) -> bool | None:
        asked.append(kafka.bootstrap_servers)
        return answers[kafka.bootstrap_servers]

    monkeypatch.setattr(kafka_module, "_broker_grants_producer_id", broker)
    monkeypatch.setattr(kafka_module, "_GRANTED", {})
    for _ in range(2):
        assert idempotent_producers(KafkaSettings(bootstrap_servers="grants:9092")) is True
        assert idempotent_producers(KafkaSettings(bootstrap_servers="refuses:9092")) is False
        assert idempotent_producers(KafkaSettings(bootstrap_servers="down:9092")) is False
    assert asked == ["grants:9092", "refuses:9092", "down:9092", "down:9092"]


def test_an_unknown_idempotence_mode_is_refused() -> None:
    with pytest.raises(ValidationError, match="'auto', 'on' or 'off'"):
        KafkaSettings(idempotence="always")
