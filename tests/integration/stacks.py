"""Helpers for integration test modules that run a stack of their own: start it on a
configuration (a file, or TOML text written inline in the module) once per module,
show the tail of every process's log when it stops (pytest prints it when a test
failed), and read a topic back from its start."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from turnout.stack import DevStack


@contextlib.contextmanager
def running_stack(config: Path | str, workdir: Path, *, log_lines: int = 30, **options: object) -> Iterator[DevStack]:
    """The whole embedded stack on ``config``: a TOML file, or TOML text (written into
    ``workdir``); ``options`` go to ``DevStack`` (``bootstrap_servers``, ``extra_env``)."""
    if isinstance(config, str):
        path = workdir / "config.toml"
        path.write_text(config)
        config = path
    stack = DevStack(config, workdir, **options)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        for log in sorted(stack.logs.glob("*.log")):
            print(f"==== {log.name} (last {log_lines} lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-log_lines:]))


def stack_fixture(config: Path | str, name: str, *, log_lines: int = 30):
    """A module-scoped ``stack`` fixture: ``stack = stack_fixture(CONFIG, "faults")``."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
        with running_stack(config, tmp_path_factory.mktemp(name), log_lines=log_lines) as running:
            yield running

    return stack


async def read_topic(settings, topic: str, expected: int | None = None, rounds: int = 60) -> list:
    """Every record of ``topic`` (until ``expected`` are read, or the topic stops growing)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        quiet = 0
        for _ in range(rounds):
            batch = await consumer.getmany(timeout_ms=250)
            got = [r for rs in batch.values() for r in rs]
            records += got
            quiet = 0 if got else quiet + 1
            if (expected is not None and len(records) >= expected and quiet >= 2) or (expected is None and quiet >= 4 and records):
                break
        return records
    finally:
        await consumer.stop()


def simulator_health(stack: DevStack) -> dict:
    """The stack's simulator's ``/health`` counters: calls, faults per served model, embeddings."""
    root = stack.settings.simulator_url().removesuffix("/v1")
    return httpx.get(f"{root}/health", timeout=10).json()
