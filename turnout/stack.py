"""The embedded stack behind ``turnout dev`` and ``turnout demo``.

One real broker and one process per role, started with the same ``turnout`` commands
production uses (see docker-compose.yml): the simulator, the router, a worker per fleet
model and the analytics sink. Nothing shares memory, so what works here works with
more replicas. Each child writes its log to ``<workdir>/logs/<name>.log`` and dies
with its parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from turnout.schemas.settings import Settings, load_settings

from turnout.consumers.worker import group_id as worker_group_id
from turnout.streams.app import requests_group

from . import local_model
from .admin import create_topics, wait_for_groups
from .apache_kafka import ApacheKafkaCluster
from .embedded import EmbeddedBroker, die_with_parent, free_port, wait_for_port

KAFKA_KINDS = ("tansu", "apache", "apache-cluster")
KAFKA_ENV = "TURNOUT_DEV_KAFKA"


def start_broker(kind: str, logs: Path) -> EmbeddedBroker | ApacheKafkaCluster:
    """The stack's broker: ``tansu`` (embedded, in memory, the default), ``apache`` (one
    Apache Kafka KRaft node) or ``apache-cluster`` (three, every topic replicated three
    times). Apache Kafka's jars are fetched with Maven on first use."""
    if kind == "tansu":
        return EmbeddedBroker(log_path=logs / "broker.log").start()
    if kind in ("apache", "apache-cluster"):
        return ApacheKafkaCluster(brokers=3 if kind == "apache-cluster" else 1, workdir=logs.parent / "kafka").start()
    raise ValueError(f"unknown Kafka {kind!r}: choose one of {', '.join(KAFKA_KINDS)}")


@contextmanager
def _environ(overrides: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    args: list[str] = field(default_factory=list)  # the ``turnout`` command it runs

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class DevStack:
    """Start with ``start()``, stop with ``stop()``; ``settings`` points at this stack."""

    config_path: Path
    workdir: Path
    clickhouse_dsn: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    kafka: str = field(default_factory=lambda: os.environ.get(KAFKA_ENV, "tansu"))
    bootstrap_servers: str | None = None  # a broker started elsewhere: then ``kafka`` is not started
    broker: EmbeddedBroker | ApacheKafkaCluster | None = None
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    settings: Settings | None = None
    llama_server: local_model.LocalModelServer | None = None
    local_model_note: str = ""

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def start(self) -> Settings:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.bootstrap_servers is None:
            self.broker = start_broker(self.kafka, self.logs)
        simulator_port = free_port()
        replicated = {"TURNOUT_KAFKA__REPLICATION_FACTOR": "3"} if self.broker and self.kafka == "apache-cluster" else {}
        self.env = {
            "TURNOUT_CONFIG": str(self.config_path.resolve()),
            "TURNOUT_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers or self.broker.bootstrap_servers,
            **replicated,
            "TURNOUT_SIMULATOR__PORT": str(simulator_port),
            "TURNOUT_SIMULATOR__URL": f"http://127.0.0.1:{simulator_port}/v1",
            "TURNOUT_CLICKHOUSE__DSN": self.clickhouse_dsn or f"chdb://{(self.workdir / 'chdb').resolve()}",
            **self.extra_env,
        }
        with _environ(self.env):  # this process (the CLI, the demo, a test) sees the children's settings
            self.settings = load_settings(self.config_path)
        self._start_local_model()
        asyncio.run(create_topics(self.settings))
        self.spawn("simulator", ["simulator"])
        wait_for_port(simulator_port, 20, self.children[-1].process, "the simulator")
        self.spawn("sink", ["sink"])
        self.spawn("router", ["router"])
        for model_id in sorted(self.settings.fleet):
            self.spawn(f"worker-{model_id}", ["worker", "--model", model_id])
        self._wait_until_consuming()
        return self.settings

    def _start_local_model(self) -> None:
        """Start llama-server for ``local_model.serves`` when it is installed, and point
        that fleet model at it; otherwise the simulator keeps serving it."""
        assert self.settings is not None
        served = self.settings.local_model.serves
        if served is None:
            return
        reason = local_model.unavailable()
        if reason:
            self.local_model_note = f"{served} is simulated: {reason}"
            return
        config = self.settings.local_model
        self.llama_server = local_model.LocalModelServer(parallel=config.parallel, ctx_size=config.ctx_size, log_path=self.logs / "llama-server.log").start()
        prefix = f"TURNOUT_FLEET__{served.upper()}__"
        self.env.update({prefix + "BASE_URL": self.llama_server.url, prefix + "PROVIDER": "llama.cpp", prefix + "SERVED_MODEL": local_model.SERVED_MODEL})
        with _environ(self.env):
            self.settings = load_settings(self.config_path)
        self.local_model_note = f"{served} is served by a real local model: {local_model.SERVED_MODEL} on llama.cpp at {self.llama_server.url}"

    def _wait_until_consuming(self, timeout_s: float = 90.0) -> None:
        assert self.settings is not None
        groups = [self.settings.router.group_id, requests_group(self.settings), self.settings.sink.group_id]
        groups += [worker_group_id(model_id) for model_id in self.settings.fleet]
        try:
            asyncio.run(wait_for_groups(self.settings, groups, timeout_s))
        except TimeoutError as exc:
            dead = ", ".join(f"{c.name} (exit {c.process.returncode}, log {c.log_path})" for c in self.dead_children())
            raise RuntimeError(f"{exc}; dead processes: {dead or 'none'}") from None

    def kill(self, name: str) -> None:
        """``kill -9`` one child: no shutdown, no last commit, no drain."""
        child = self.child(name)
        child.process.send_signal(signal.SIGKILL)
        child.process.wait()

    def restart(self, name: str) -> Child:
        """Start a stopped or killed child again, with the same command and log."""
        old = self.child(name)
        if old.alive():
            raise RuntimeError(f"{name} is still running: stop or kill it first")
        self.children.remove(old)
        return self.spawn(name, old.args)

    def spawn(self, name: str, args: list[str]) -> Child:
        """Start ``turnout <args>`` as a child named ``name`` (another replica, say)."""
        log_path = self.logs / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", *args],
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=open(log_path, "ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        child = Child(name, process, log_path, args)
        self.children.append(child)
        return child

    def dead_children(self) -> list[Child]:
        return [child for child in self.children if not child.alive()]

    def child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def stop_children(self, names: list[str], timeout_s: float = 30.0) -> None:
        """SIGTERM the named children together, then wait for each (killing stragglers)."""
        chosen = [c for c in self.children if c.name in names and c.alive()]
        for child in chosen:
            child.process.send_signal(signal.SIGTERM)
        for child in chosen:
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def stop(self) -> None:
        """Stop what writes events first, then the sink (which drains them), then the rest."""
        self.stop_children([c.name for c in self.children if c.name.startswith(("router", "worker"))])
        self.stop_children(["sink"], timeout_s=60.0)
        self.stop_children(["simulator"])
        if self.llama_server is not None:
            self.llama_server.stop()
        if self.broker:
            self.broker.stop()

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
