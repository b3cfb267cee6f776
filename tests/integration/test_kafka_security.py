"""TLS and SASL on Apache Kafka: every Turnout client (the router's faust and aiokafka
clients, the workers, the sink, the admin and the SDK) talks to a broker that lets
only authenticated clients in, on mutual TLS, SASL PLAIN and SCRAM over TCP, and SCRAM
inside TLS; and the known secret values used appear nowhere afterwards: not in a
process's log, not in any record on any topic, not in any ClickHouse table.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from secured_kafka import USER, Pki, Secrets, make_pki, secured_cluster, security_env
from stacks import running_stack

from turnout import apache_kafka
from turnout.analytics.store import open_client
from turnout.apache_kafka import ApacheKafkaCluster
from turnout.producers.client import TurnoutClient, new_request
from turnout.schemas.kafka import client_options, partitions_of
from turnout.schemas.kafka_security import KafkaSecurity
from turnout.schemas.settings import KafkaSettings

pytestmark = [
    pytest.mark.skipif(apache_kafka.unavailable() is not None, reason=f"Apache Kafka cannot run here: {apache_kafka.unavailable()}"),
    pytest.mark.skipif(os.environ.get("TURNOUT_DEV_KAFKA", "tansu") != "tansu", reason="starts its own Apache Kafka: run once, in the default suite"),
]

CONFIG = Path(__file__).with_name("stack.toml")
BACKEND_KEY = "sk-test-backend-4f1c9a7e0d2b"  # what the workers send the (simulated) provider
REQUESTS = 12
TIMEOUT_S = 90


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApacheKafkaCluster, Pki, Secrets]]:
    root = tmp_path_factory.mktemp("secured-kafka")
    pki, known = make_pki(root / "pki"), Secrets.new()
    cluster = secured_cluster(root / "kafka", pki, known).start()
    try:
        yield cluster, pki, known
    finally:
        cluster.stop()


CASES = [("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN"), ("SSL", None)]


@pytest.mark.parametrize(("protocol", "mechanism"), CASES, ids=[f"{p}-{m or 'mutual-tls'}" for p, m in CASES])
def test_the_whole_stack_serves_requests_over_a_secured_listener_and_leaks_no_secret(secured, tmp_path, protocol, mechanism):
    cluster, pki, known = secured
    prefix = f"sec{CASES.index((protocol, mechanism))}"
    env = security_env(protocol, pki, known, mechanism) | {"TURNOUT_KAFKA__TOPIC_PREFIX": prefix, "TURNOUT_FLEET__SMALL__API_KEY": BACKEND_KEY}
    with running_stack(CONFIG, tmp_path, bootstrap_servers=cluster.bootstrap(protocol), extra_env=env) as stack:
        settings = stack.settings
        assert settings.kafka.security.protocol == protocol and settings.kafka.security.sasl_mechanism == mechanism

        async def ask() -> list:
            async with TurnoutClient(settings.kafka) as client:
                pending = await client.submit_many([new_request(f"Say hello, number {i}.", "acme") for i in range(REQUESTS)], timeout_s=TIMEOUT_S)
                return [await p for p in pending]

        responses = asyncio.run(ask())
        assert [r.status for r in responses] == ["ok"] * REQUESTS
        records = asyncio.run(every_record(settings.kafka, prefix))
        stack.stop_children(["sink"], timeout_s=60)  # drains the events topic into ClickHouse, then frees the store
        clickhouse = open_client(settings.clickhouse)
        try:
            db = settings.clickhouse.database
            ids = {r.id for r in responses}
            stored = clickhouse.query(f"SELECT DISTINCT request_id FROM {db}.routing_events WHERE kind = 'completion'").result_rows
            assert ids <= {row[0] for row in stored}, "the sink consumed the events over the secured listener"
            tables = [row[0] for row in clickhouse.query(f"SELECT name FROM system.tables WHERE database = '{db}' AND engine NOT LIKE '%View%'").result_rows]
            stored_text = "\n".join(clickhouse.raw_query(f"SELECT * FROM {db}.`{table}` FORMAT TSV").decode(errors="replace") for table in tables)
        finally:
            clickhouse.close()

    logs = "\n".join(log.read_text(errors="replace") for log in sorted(stack.logs.glob("*.log")))
    assert "worker small consuming" in logs, "the logs scanned are the processes' real logs"
    places = {"logs": logs, "topics": b"\n".join(records).decode(errors="replace"), "clickhouse": stored_text}
    for secret in (known.plain_password, known.scram_password, BACKEND_KEY, pki.client_key.read_text().splitlines()[1]):
        leaked = [place for place, text in places.items() if secret in text]
        assert not leaked, f"a secret ({secret[:6]}…) appears in {', '.join(leaked)}"


async def every_record(kafka: KafkaSettings, prefix: str) -> list[bytes]:
    """Keys, values and headers of every record on every topic of the installation, up to
    the ends they had when asked (health reports keep coming while the stack runs)."""
    consumer = AIOKafkaConsumer(**client_options(kafka, "leak-scan"), enable_auto_commit=False)
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith(f"{prefix}."))
        partitions = [tp for topic in topics for tp in await partitions_of(kafka, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[bytes] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    found += [r.key or b"", r.value or b"", *(value for _, value in r.headers)]
        assert found, f"no records on the {prefix}.* topics"
        return found
    finally:
        await consumer.stop()


def test_a_wrong_password_is_refused_with_an_error_that_does_not_echo_it(secured):
    cluster, pki, _known = secured
    wrong = "wrong-password-a41f"
    kafka = KafkaSettings(
        bootstrap_servers=cluster.bootstrap("SASL_SSL"),
        security=KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username=USER, password=wrong, ca_file=pki.ca),
    )

    async def connect() -> None:
        async with TurnoutClient(kafka):
            pass

    with pytest.raises(KafkaConnectionError) as refused:
        asyncio.run(connect())
    assert wrong not in str(refused.value) and wrong not in repr(kafka)


def test_a_client_without_credentials_is_refused_by_every_secured_listener(secured):
    cluster, _pki, _known = secured

    async def connect(listener: str) -> None:
        async with TurnoutClient(KafkaSettings(bootstrap_servers=cluster.bootstrap(listener))):
            pass

    for listener in ("SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        with pytest.raises(KafkaConnectionError):
            asyncio.run(connect(listener))


def test_the_cli_reads_its_credentials_from_the_environment_and_shows_none(secured, tmp_path):
    """``turnout config`` (what an operator runs to check a deployment) masks the password."""
    _cluster, pki, known = secured
    env = security_env("SASL_SSL", pki, known, "SCRAM-SHA-512")
    shown = subprocess.run([sys.executable, "-m", "turnout", "config"], capture_output=True, text=True, env={**_base_env(), **env}, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "SCRAM-SHA-512" in shown.stdout and known.scram_password not in shown.stdout + shown.stderr


def _base_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("TURNOUT_")} | {"TURNOUT_CONFIG": str(CONFIG)}
