"""The Apache Kafka launcher's pure parts: where the jars go, what each node is told,
and the reasons it gives when it cannot run (the brokers themselves run in the
integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout import apache_kafka
from turnout.apache_kafka import ApacheKafkaCluster, KafkaNode, new_cluster_id


def properties(cluster: ApacheKafkaCluster, node: KafkaNode) -> dict[str, str]:
    return dict(line.split("=", 1) for line in cluster._properties(node).splitlines())


def three_nodes(**options: object) -> ApacheKafkaCluster:
    cluster = ApacheKafkaCluster(brokers=3, workdir=Path("/tmp/kafka"), **options)
    cluster.nodes = [KafkaNode(i, 9090 + i, 9190 + i, Path(f"/tmp/kafka/node-{i}"), {"SASL_SSL": 9290 + i}) for i in (1, 2, 3)]
    return cluster


def test_every_node_votes_and_data_is_replicated_three_times() -> None:
    cluster = three_nodes(listeners={"SASL_SSL": "SASL_SSL"})
    second = properties(cluster, cluster.nodes[1])
    assert second["node.id"] == "2" and second["process.roles"] == "broker,controller"
    assert second["controller.quorum.voters"] == "1@127.0.0.1:9191,2@127.0.0.1:9192,3@127.0.0.1:9193"
    assert second["default.replication.factor"] == second["offsets.topic.replication.factor"] == "3"
    assert second["min.insync.replicas"] == "2", "one broker may be down and writes with acks=all still succeed"
    assert second["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9292"
    assert second["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert cluster.bootstrap_servers == "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
    assert cluster.bootstrap("SASL_SSL") == "127.0.0.1:9291,127.0.0.1:9292,127.0.0.1:9293"


def test_a_single_node_replicates_once_and_extra_properties_win() -> None:
    cluster = ApacheKafkaCluster(brokers=1, extra_properties={"num.partitions": "6"})
    node = KafkaNode(1, 9092, 9093, Path("/tmp/kafka/node-1"))
    cluster.nodes = [node]
    single = properties(cluster, node)
    assert single["default.replication.factor"] == "1" and single["min.insync.replicas"] == "1"
    assert single["num.partitions"] == "6"


def test_cluster_ids_are_kraft_shaped() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 22 and "=" not in i for i in ids)


def test_the_jar_cache_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(apache_kafka.CACHE_ENV, str(tmp_path))
    assert apache_kafka.cache_dir() == tmp_path / f"apache-kafka-{apache_kafka.KAFKA_VERSION}"


def test_without_java_or_maven_the_reason_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(apache_kafka.CACHE_ENV, str(tmp_path))  # no jars fetched there
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda name: None)
    assert "java is not installed" in apache_kafka.unavailable()
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda name: "/usr/bin/java" if name == "java" else None)
    assert "Maven is not installed" in apache_kafka.unavailable()
    with pytest.raises(apache_kafka.ApacheKafkaUnavailable, match="apt install maven"):
        apache_kafka.fetch_jars()
