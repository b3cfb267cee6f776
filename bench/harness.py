"""What the benchmarks that run a Turnout process on the embedded broker share.

A process under test is started on its own (``measure_process``), nothing in the
benchmark's own process polls the broker hard while it works, and it is timed from
outside by its outputs: every Kafka record carries the time its producer appended it
(CreateTime), so once a phase is over the output topics are read back
(``read_records``, ``output_span``) and the rate is taken from the first output to the
last. Start-up, imports and the consumer-group join come before the first output and
are left out the same way for every process measured.

Also here: py-spy sampling of a child and the summary of its collapsed stacks by stage
(``start_pyspy``, ``stop_pyspy``, ``summarize_pyspy``), and small helpers (percentiles,
environment overrides, the compression name aiokafka takes).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple
from unittest.mock import patch

from aiokafka import AIOKafkaConsumer, TopicPartition

from turnout.embedded import die_with_parent


def environ(values: dict[str, str]) -> Any:
    """``with environ({...}):`` sets the variables for the block and restores them after."""
    return patch.dict(os.environ, values)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def compression_codec(compression: str) -> str | None:
    """``kafka.compression_type`` as aiokafka takes it (``none`` is ``None``)."""
    return None if compression == "none" else compression


def one_model_config(prefix: str, latency_ms: float, *, concurrency: int = 64, partitions: int = 3, extra: str = "") -> str:
    """The stack benchmarks' configuration: one simulated model, ``small``, answering after a
    fixed ``latency_ms`` with 16 output tokens, every request routed to it, the response
    cache off so each is served; ``extra`` TOML is appended (gateway keys, say)."""
    return f"""
[kafka]
topic_prefix = "{prefix}"
partitions = {partitions}

[fleet.small]
provider = "simulated"
served_model = "sim-small"
concurrency = {concurrency}

[[routes]]
model = "small"

[worker]
cache_enabled = false

[simulator.default]
latency_distribution = "fixed"
latency_ms = {latency_ms}
output_tokens = 16
{extra}"""


@contextlib.contextmanager
def bench_stack(name: str, config_toml: str, detail: str = "") -> Iterator[Any]:
    """The whole dev stack (``turnout.stack.DevStack``) on ``config_toml``, in a fresh work
    directory, for a benchmark that drives it; prints the run's header line first (what
    was measured, on what, where the logs are)."""
    from runinfo import revision

    from turnout.stack import DevStack

    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    (workdir / "config.toml").write_text(config_toml)
    with DevStack(workdir / "config.toml", workdir) as stack:
        print(f"{name}: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Kafka {stack.kafka}"
              + (f"; {detail}" if detail else "") + f"; logs in {stack.logs}")
        yield stack


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- timing from outside: the outputs' own timestamps -----------------------------------------
class Record(NamedTuple):
    topic: str
    key: bytes | None
    timestamp: int  # CreateTime, ms since the epoch
    value: bytes | None


@dataclass
class Span:
    """Output records and the producer timestamps (CreateTime, ms) of the first and last."""

    records: int
    first_ms: int
    last_ms: int
    keys: int = 0  # distinct record keys (request ids)

    @property
    def seconds(self) -> float:
        return (self.last_ms - self.first_ms) / 1000

    @property
    def rate(self) -> float:
        return (self.records - 1) / self.seconds if self.last_ms > self.first_ms else float("nan")

    @classmethod
    def of(cls, records: Sequence[Record]) -> Span:
        stamps = [r.timestamp for r in records]
        return cls(len(records), min(stamps, default=0), max(stamps, default=0), len({r.key for r in records}))


async def read_records(bootstrap: str, topics: list[str], partitions: int, timeout_s: float = 60.0, values: bool = False) -> list[Record]:
    """Every record of ``topics`` (no group), with its key and CreateTime (and its value
    when ``values``).

    Every record carries the time its producer appended it, so a span runs from the
    first output to the last whatever the reader's own speed, and start-up before the
    first output is left out. (Tansu 0.6 answers ListOffsets(latest) with the last
    batch's base offset + 1, not the high watermark, so end offsets cannot count
    records there; a fetch's high watermark is right.)
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-span", enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Record] = []
        deadline = time.perf_counter() + timeout_s
        while True:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in fetched.values():
                out.extend(Record(r.topic, r.key, r.timestamp, r.value if values else None) for r in batch)
            marks = [consumer.highwater(tp) for tp in tps]
            if all(m is not None for m in marks) and all([await consumer.position(tp) >= m for tp, m in zip(tps, marks)]):
                if not fetched:
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"could not read the outputs of {topics} within {timeout_s:g}s")
        return out
    finally:
        await consumer.stop()


async def output_span(bootstrap: str, topics: list[str], partitions: int, timeout_s: float = 60.0) -> Span:
    """Read every record of ``topics`` (no group) and return their count and time span."""
    return Span.of(await read_records(bootstrap, topics, partitions, timeout_s))


async def wait_for(condition: Callable[[], Any], process: subprocess.Popen | None, timeout_s: float, interval_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not await condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process under test exited with code {process.returncode}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout_s:g}s")
        await asyncio.sleep(interval_s)


def spawn(command: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A child that logs to ``log_path`` and receives SIGTERM if this process dies."""
    return subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        preexec_fn=die_with_parent,
    )


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


async def terminate(process: subprocess.Popen | None, timeout_s: float = 30.0) -> None:
    """SIGTERM a child (a Turnout process drains and commits on it) and wait; SIGKILL it if it outstays ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def measure_process(
    name: str,
    command: list[str],
    env: dict[str, str],
    bootstrap: str,
    out_topics: list[str],
    partitions: int,
    n: int,
    workdir: Path,
    timeout_s: float,
    profile_path: Path | None = None,
) -> Span:
    """Start ``command``, wait until its outputs stop growing and hold ``n`` distinct keys
    (every request yields a record keyed by its id: a slip on a model topic or a DLQ
    record for the router, a response for a worker, a copy for the pass-throughs), stop
    it, return the span of ``out_topics``."""
    log_path = workdir / f"{name}.log"
    process = spawn(command, env, log_path, cwd=workdir)
    started = time.perf_counter()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-probe", enable_auto_commit=False)
    await probe.start()
    tps = [TopicPartition(t, p) for t in out_topics for p in range(partitions)]

    async def mark() -> int:  # wrong on Tansu (see read_records), but it moves whenever a batch lands
        return sum((await probe.end_offsets(tps)).values())

    async def started_output() -> bool:
        return await mark() > 0

    quiet = {"mark": -1, "since": time.perf_counter()}

    async def all_out() -> bool:
        current, now = await mark(), time.perf_counter()
        if current != quiet["mark"]:
            quiet.update(mark=current, since=now)
            return False
        if now - quiet["since"] < 1.0:
            return False
        span = await output_span(bootstrap, out_topics, partitions)
        quiet["since"] = time.perf_counter()  # not complete: wait for another quiet second
        return span.keys >= n

    pyspy = None
    try:
        await wait_for(started_output, process, timeout_s, 0.02, f"{name} start-up")
        print(f"  first output {time.perf_counter() - started:.1f}s after the process started (start-up: excluded)")
        if profile_path is not None:
            profile_path.parent.mkdir(parents=True, exist_ok=True)
            pyspy = start_pyspy(process.pid, profile_path)
        await wait_for(all_out, process, timeout_s, 0.1, name)
    except Exception:
        print(f"  {name} log (last 30 lines):\n" + tail(log_path))
        raise
    finally:
        stop_pyspy(pyspy)
        await probe.stop()
        await terminate(process)
    return await output_span(bootstrap, out_topics, partitions)


# -- profiling --------------------------------------------------------------------------------
def start_pyspy(pid: int, out: Path, rate: int = 200) -> subprocess.Popen | None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("  (py-spy not installed: no profile)")
        return None
    return subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


def stop_pyspy(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


ProfileGroups = Sequence[tuple[str, tuple[str, ...]]]
"""What collapsed stacks are grouped into: ``(name, needles)``, a frame matching a group
when it contains one of its needles (see ``summarize_pyspy`` for which group a sample
goes to); samples that match none are "other"."""

BORING_FRAMES: tuple[str, ...] = ("asyncio/", "click/", "runpy", "mode/worker.py", "turnout/cli.py", "turnout/__main__.py")
"""Frames every stack of a Turnout process has, left out of the "heaviest functions"."""

_LINE = re.compile(r":\d+\)$")


def _group(frames: list[str], groups: ProfileGroups, innermost: bool) -> str:
    if innermost:  # the group of the innermost frame that matches one
        for frame in reversed(frames):
            for name, needles in groups:
                if any(needle in frame for needle in needles):
                    return name
    else:  # the first group, in the order given, that any frame matches
        for name, needles in groups:
            if any(needle in frame for frame in frames for needle in needles):
                return name
    return "other (threads, truncated stacks)"


def summarize_pyspy(
    path: Path, groups: ProfileGroups, what: str, boring: tuple[str, ...] = BORING_FRAMES, top: int = 20, rate: int = 200, innermost: bool = True
) -> list[str]:
    """Lines that break a py-spy raw profile down by ``groups`` (by the innermost matching
    frame, or with ``innermost=False`` by the first group in order that any frame
    matches) and by function."""
    if not path.exists() or path.stat().st_size == 0:
        return ["(no samples)"]
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    total = sum(stacks.values())
    by_group: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        functions = [_LINE.sub(")", f) for f in frames]  # one entry per function, not per line
        selfs[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
        by_group[_group(frames, groups, innermost)] += count
    lines = [f"py-spy: {total} samples of {what} ({rate} Hz, all threads); {path}"]
    lines.append(f"  by stage ({'innermost matching frame' if innermost else 'first matching group, in order'}):")
    lines += [f"    {100 * c / total:5.1f} %  {name}" for name, c in by_group.most_common()]
    lines.append(f"  heaviest functions, inclusive (top {top}, without the frames every stack has):")
    lines += [f"    {100 * c / total:5.1f} %  {frame[:150]}" for frame, c in [(f, c) for f, c in inclusive.most_common() if not any(b in f for b in boring)][:top]]
    lines.append(f"  heaviest functions, self time (top {top}):")
    lines += [f"    {100 * c / total:5.1f} %  {frame[:150]}" for frame, c in selfs.most_common(top)]
    return lines
