"""Apache Kafka on local ports, no Docker: one KRaft broker, or a cluster of three.

The embedded Tansu broker is what ``turnout dev`` and the tests use by default: it starts
in milliseconds. Production runs Apache Kafka, which differs where it matters for the
guarantees Turnout makes (idempotent producers, consumer-group rebalancing, replicated
partitions and leader elections, TLS and SASL), so the integration suite can run against
it too (``TURNOUT_TEST_KAFKA=apache``), and the crash tests stop a partition leader on
the three-broker cluster.

The broker's jars come from Maven Central through the installed Maven (``mvn
dependency:copy-dependencies`` on ``org.apache.kafka:kafka_2.13``) into a cache directory,
once; every node is a combined KRaft controller and broker (``process.roles =
broker,controller``), formatted with a shared cluster id, started as ``java kafka.Kafka``
and tied to its parent like every child of the dev stack.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from turnout.schemas.kafka import run_in_own_loop

from .embedded import die_with_parent, free_port, stop_process, wait_for_port

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.5"  # the log4j-core Kafka 4.4.0 depends on; its slf4j bridge must match
CACHE_ENV = "TURNOUT_APACHE_KAFKA_HOME"

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.turnout</groupId>
  <artifactId>apache-kafka-broker</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{SCALA_VERSION}</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

# The broker's own log: INFO from Kafka (elections, group rebalances), warnings from the rest.
_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


async def _broker_count(bootstrap_servers: str) -> int:
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    except KafkaError:
        return 0
    finally:
        await client.close()


class ApacheKafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not fetch the broker's jars."""


def cache_dir() -> Path:
    """Where the jars live: ``$TURNOUT_APACHE_KAFKA_HOME``, else the user's cache."""
    override = os.environ.get(CACHE_ENV)
    root = Path(override) if override else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "turnout"
    return root / f"apache-kafka-{KAFKA_VERSION}"


def unavailable() -> str | None:
    """Why Apache Kafka cannot run here, or None when it can."""
    if shutil.which("java") is None:
        return "java is not installed (Apache Kafka 4 needs Java 17 or newer; Debian: apt install openjdk-17-jre-headless)"
    if not (cache_dir() / "libs" / ".complete").exists() and shutil.which("mvn") is None:
        return f"Maven is not installed, and it fetches Apache Kafka's jars (Debian: apt install maven; or put the jars in {cache_dir() / 'libs'})"
    return None


def fetch_jars(timeout_s: float = 600.0) -> Path:
    """The directory of the broker's jars, fetched from Maven Central on first use."""
    libs = cache_dir() / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    reason = unavailable()
    if reason:
        raise ApacheKafkaUnavailable(reason)
    libs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="turnout-kafka-pom-") as tmp:
        (Path(tmp) / "pom.xml").write_text(_POM)
        command = ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ApacheKafkaUnavailable(f"Maven could not fetch org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION}:\n{tail}")
    done.write_text(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}\n")
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
    ``kafka-storage.sh random-uuid`` prints)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class KafkaNode:
    """One combined controller and broker: its ports, its files, its JVM."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    listener_ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ApacheKafkaCluster:
    """``with ApacheKafkaCluster(brokers=3) as kafka: kafka.bootstrap_servers``.

    Every node listens on PLAINTEXT (brokers talk to each other there) and, for TLS and
    SASL, on the ``listeners`` given as name to security protocol (``{"SASL_SSL":
    "SASL_SSL"}``), each on a port of its own; ``bootstrap(name)`` lists one listener's
    addresses. ``scram_users`` (name to password) are written into the metadata at
    format time for SCRAM-SHA-256 and -512; ``extra_properties`` adds or replaces
    broker properties on every node (keystores, JAAS configs). ``stop_node``/
    ``kill_node`` and ``start_node`` take one node down and bring it back with its data."""

    brokers: int = 1
    workdir: Path | None = None
    heap: str = "768m"
    listeners: Mapping[str, str] = field(default_factory=dict)
    scram_users: Mapping[str, str] = field(default_factory=dict)
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    nodes: list[KafkaNode] = field(default_factory=list)
    cluster_id: str = field(default_factory=new_cluster_id)
    _own_workdir: tempfile.TemporaryDirectory | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def bootstrap(self, listener: str) -> str:
        """The addresses of one of the extra ``listeners``, for clients that must use it."""
        return ",".join(f"127.0.0.1:{node.listener_ports[listener]}" for node in self.nodes)

    def start(self, timeout_s: float = 90.0) -> ApacheKafkaCluster:
        libs = fetch_jars()
        if self.workdir is None:
            self._own_workdir = tempfile.TemporaryDirectory(prefix="turnout-apache-kafka-")
            self.workdir = Path(self._own_workdir.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = [
            KafkaNode(node_id, free_port(), free_port(), self.workdir / f"node-{node_id}", {name: free_port() for name in self.listeners})
            for node_id in range(1, self.brokers + 1)
        ]
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.properties_path.write_text(self._properties(node))
            self._format(libs, node)
        for node in self.nodes:
            self.start_node(node.node_id, timeout_s=0)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            wait_for_port(node.port, max(1.0, deadline - time.monotonic()), node.process, f"Apache Kafka node {node.node_id}")
        self.wait_for_brokers(self.brokers, max(1.0, deadline - time.monotonic()))
        return self

    def wait_for_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until the cluster's metadata lists ``count`` brokers: before that, creating
        a topic replicated ``count`` times fails."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            seen = run_in_own_loop(_broker_count(self.bootstrap_servers))
            if seen >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"Apache Kafka lists {seen} of {count} brokers after {timeout_s:g}s (logs: {self.workdir})")

    def _properties(self, node: KafkaNode) -> str:
        replicas = min(3, self.brokers)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        advertised = [f"PLAINTEXT://127.0.0.1:{node.port}"] + [f"{name}://127.0.0.1:{port}" for name, port in node.listener_ports.items()]
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT", **self.listeners}
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join([*advertised, f"CONTROLLER://127.0.0.1:{node.controller_port}"]),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in protocols.items()),
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(max(1, replicas - 1)),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(max(1, replicas - 1)),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(max(1, replicas - 1)),
            # tests start consumer groups on a fresh cluster: no 3 s wait for more members
            "group.initial.rebalance.delay.ms": "0",
            **self.extra_properties,
        }
        return "".join(f"{key}={value}\n" for key, value in properties.items())

    def _format(self, libs: Path, node: KafkaNode) -> None:
        """``kafka-storage.sh format``: every node with the one cluster id."""
        scram = [
            argument
            for user, password in self.scram_users.items()
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for argument in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]
        command = self._java_command(libs, "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}", "-c", str(node.properties_path), *scram)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ApacheKafkaUnavailable(f"formatting node {node.node_id}'s storage failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}")

    def _java_command(self, libs: Path, main: str, *args: str) -> list[str]:
        assert self.workdir is not None
        return [
            "java",
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def node(self, node_id: int) -> KafkaNode:
        return next(node for node in self.nodes if node.node_id == node_id)

    def start_node(self, node_id: int, timeout_s: float = 60.0) -> KafkaNode:
        """Start (or restart, on its kept data) one node; wait for its port unless ``timeout_s`` is 0."""
        node = self.node(node_id)
        output = open(node.log_path, "ab")
        node.process = subprocess.Popen(
            self._java_command(fetch_jars(), "kafka.Kafka", str(node.properties_path)),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        output.close()
        if timeout_s:
            wait_for_port(node.port, timeout_s, node.process, f"Apache Kafka node {node_id}")
        return node

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """A clean shutdown: the node hands its partition leadership over first."""
        stop_process(self.node(node_id).process, timeout_s)

    def kill_node(self, node_id: int) -> None:
        """``kill -9``: no hand-over, the controller notices when its session lapses."""
        process = self.node(node_id).process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            stop_process(node.process, timeout_s)
        if self._own_workdir is not None:
            self._own_workdir.cleanup()
            self._own_workdir = None

    def __enter__(self) -> ApacheKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
