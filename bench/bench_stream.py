"""Requests per second through one router process, beside a bare aiokafka pass-through.

    python bench/bench_stream.py [--n 20000] [--seed 7] [--config FILE] [--profile DIR]

One run, one embedded broker (Tansu, memory storage, started here):

1. ``N`` requests from ``bench/prompts.py`` (timestamped now, so deadlines lie ahead)
   are encoded with Turnout's codec and published to ``<prefix>.requests`` once. Each
   phase below reads all of them, in its own consumer group, in its own process.
2. (a) Ceiling: the leanest consume-and-produce loop aiokafka allows (``getmany``,
   ``send`` without awaiting each record, one flush and one commit per batch; the
   producer options Turnout's clients use: acks=all, the configured compression, linger 5 ms), copying every
   request to ``<prefix>.bench-ceiling``.
3. (b) faust floor (skip with ``--no-faust``): a faust app shaped like the router
   (same transport, ``take_events`` batches of the configured size, ``producer.send``
   per record, one gather per batch) forwarding the bytes unchanged: what faust alone
   allows, with no routing.
4. (c) Turnout: ``python -m turnout router`` (one replica, the configuration's batch
   size and window): decode, decide, encode the slip and the decision event, produce,
   commit.

All three are timed the same way, by their outputs: every record carries the time its
producer appended it (CreateTime), so once a phase is over this process reads the output
topics (for Turnout, the model topics plus the DLQ) and the rate is
``(records - 1) / (last timestamp - first timestamp)``. Process start-up, imports and
the consumer-group join come before the first output and are excluded, and nothing
polls the broker hard while a process under test runs. A phase is over when its
outputs have stopped growing and hold all ``N`` request ids (each request yields a
record keyed by its id: a slip on a model topic or a DLQ record for the router).
Turnout's rate is scaled to requests if the policy makes shadow copies. The
percentage of the ceiling is the figure the issue targets (>= 30 %).

(d) Then, in this process, ``route_message`` (the router's whole per-message function)
and its stages run on a sample of the same messages, to show how much of the router's
time is routing and how much is the stream machinery around it. With ``--profile DIR``,
py-spy samples the router process while it routes (``DIR/router-pyspy.txt``, collapsed
stacks) and the time is broken down by stage and by function; figures from a profiled
run are marked ``"profiled": true``. The last line is ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts  # noqa: E402
from runinfo import revision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV_TOML = REPO / "turnout" / "defaults" / "dev.toml"
PREFIX = "bench"
CEILING_GROUP = "bench-ceiling"


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the ceiling: a bare aiokafka consume-and-produce loop (runs as its own process) ----------
async def ceiling_worker(bootstrap: str, source: str, target: str, n: int, fetch_max_wait_ms: int, compression: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        client_id="bench-ceiling",
        group_id=CEILING_GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    # The options Turnout's own aiokafka producers use (turnout.schemas.kafka.producer_options).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-ceiling", acks="all", linger_ms=5, compression_type=_codec(compression))
    await consumer.start()
    await producer.start()
    seen, first, batches = 0, 0.0, 0
    try:
        while seen < n:
            fetched = await consumer.getmany(timeout_ms=1_000)
            if not any(fetched.values()):
                continue
            first = first or time.perf_counter()
            pending = [await producer.send(target, record.value, key=record.key) for records in fetched.values() for record in records]
            await asyncio.gather(*pending)  # every output acknowledged ...
            await consumer.commit()  # ... before the inputs are committed: at-least-once, like the router
            seen += len(pending)
            batches += 1
        print(json.dumps({"internal_s": time.perf_counter() - first, "records": seen, "batches": batches}), flush=True)
    finally:
        await producer.stop()
        await consumer.stop()


def _codec(compression: str) -> str | None:
    """``kafka.compression_type`` as aiokafka takes it (``none`` is ``None``)."""
    return None if compression == "none" else compression


# -- faust's own floor: the router's agent shape with no routing (runs as its own process) -------
def faust_worker(bootstrap: str, source: str, target: str, batch_size: int, window_s: float, fetch_max_wait_ms: int, compression: str) -> None:
    """A faust app configured like the router (same transport, serializers, acks, compression,
    ``take_events`` batches, ``app.producer.send`` then one gather per batch) that forwards
    each request's bytes to ``target`` unchanged: what faust itself allows here."""
    import faust
    from faust.worker import Worker

    from turnout.streams.transport import RouterApp

    app = RouterApp(
        "bench-faust",
        fetch_max_wait_ms=fetch_max_wait_ms,
        broker=f"kafka://{bootstrap}",
        broker_client_id="bench-faust",
        key_serializer="raw",
        value_serializer="raw",
        topic_disable_leader=True,
        broker_session_timeout=10.0,  # as Turnout's default kafka.session_timeout_ms: Tansu holds a new group's first join about half of it
        broker_heartbeat_interval=3.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=_codec(compression),
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
    )
    topic = app.topic(source, key_type=bytes, value_type=bytes)

    @app.agent(topic, name="forward")
    async def forward(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_size, within=window_s):
            pending = [await app.producer.send(target, event.key, event.value, None, None, None) for event in events]
            await asyncio.gather(*pending)

    Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


# -- timing from outside: the outputs' own timestamps -----------------------------------------
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


async def output_span(bootstrap: str, topics: list[str], partitions: int, timeout_s: float = 60.0) -> Span:
    """Read every record of ``topics`` (no group) and return their count and time span.

    Every record carries the time its producer appended it, so the span runs from the
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
        records, first, last, keys = 0, None, None, set()
        deadline = time.perf_counter() + timeout_s
        while True:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in fetched.values():
                for record in batch:
                    records += 1
                    keys.add(record.key)
                    first = record.timestamp if first is None else min(first, record.timestamp)
                    last = record.timestamp if last is None else max(last, record.timestamp)
            marks = [consumer.highwater(tp) for tp in tps]
            if all(m is not None for m in marks) and all([await consumer.position(tp) >= m for tp, m in zip(tps, marks)]):
                if not fetched:
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"could not read the outputs of {topics} within {timeout_s:g}s")
        return Span(records, first or 0, last or 0, len(keys))
    finally:
        await consumer.stop()


async def wait_for(condition: Callable[[], Any], process: subprocess.Popen | None, timeout_s: float, interval_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not await condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process under test exited with code {process.returncode}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout_s:g}s")
        await asyncio.sleep(interval_s)


# -- profiling --------------------------------------------------------------------------------
def start_pyspy(pid: int, out: Path) -> subprocess.Popen | None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("  (py-spy not installed: no profile)")
        return None
    return subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def stop_pyspy(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# What the collapsed stacks are grouped into: a sample goes to the group of the innermost
# frame that matches one of these needles (so gzip inside a send is gzip, a regex inside
# the decision is the decision); samples that match none are "other".
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gzip (compress outputs, decompress inputs)", ("gzip_encode (", "gzip_decode (", "GzipFile.", "_GzipReader.")),
    ("Avro encode of slip + event (model_dump, fastavro)", ("AvroCodec.encode (",)),
    ("Avro decode + pydantic validation of the request", ("AvroCodec.decode (",)),
    ("routing decision (decide / plan_route)", ("decide (", "plan_route (")),
    ("building the decision event", ("decision_event (",)),
    ("producer send path (faust + aiokafka)", ("Producer.send (", "_send (", "aiokafka/producer/", "faust/transport/producer.py")),
    ("consumer fetch + faust stream plumbing", ("faust/streams.py", "faust/transport/consumer.py", "faust/transport/drivers/aiokafka.py", "aiokafka/consumer/", "faust/agents/")),
    ("Kafka protocol + sockets", ("aiokafka/conn.py", "aiokafka/protocol/", "aiokafka/record/", "selector_events.py", "aiokafka/client.py")),
    ("event loop waiting (epoll)", ("EpollSelector.select (",)),
    ("other event-loop work (mode, asyncio, timers)", ("_run_once (",)),
)


_LINE = re.compile(r":\d+\)$")


def _group(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for name, needles in PROFILE_GROUPS:
            if any(needle in frame for needle in needles):
                return name
    return "other (threads, truncated stacks)"


def summarize_pyspy(path: Path, top: int = 20) -> list[str]:
    if not path.exists() or path.stat().st_size == 0:
        return ["(no samples)"]
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    total = sum(stacks.values())
    groups: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        functions = [_LINE.sub(")", f) for f in frames]  # one entry per function, not per line
        selfs[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
        groups[_group(frames)] += count
    boring = ("asyncio/", "click/", "runpy", "mode/worker.py", "turnout/cli.py", "turnout/__main__.py", "run_router (")
    lines = [f"py-spy: {total} samples of the router process while it routed (200 Hz, all threads); {path}"]
    lines.append("  by stage (innermost matching frame):")
    lines += [f"    {100 * c / total:5.1f} %  {name}" for name, c in groups.most_common()]
    lines.append(f"  heaviest functions, inclusive (top {top}, without the asyncio/click/runpy frames every stack has):")
    lines += [f"    {100 * c / total:5.1f} %  {frame[:150]}" for frame, c in [(f, c) for f, c in inclusive.most_common() if not any(b in f for b in boring)][:top]]
    lines.append(f"  heaviest functions, self time (top {top}):")
    lines += [f"    {100 * c / total:5.1f} %  {frame[:150]}" for frame, c in selfs.most_common(top)]
    return lines


# -- in-process breakdown ---------------------------------------------------------------------
def breakdown(values: list[tuple[bytes, bytes]], settings: Any, sample: int) -> tuple[float, list[str]]:
    """route_message/s in this process, and the mean cost of its stages, on ``sample`` messages."""
    from turnout.schemas.events import decision_event
    from turnout.schemas.models import InferenceRequest
    from turnout.schemas.serde import codec_for
    from turnout.streams.handling import Source, route_message
    from turnout.streams.rules import context_from, decide

    codec = codec_for(settings.kafka)
    ctx = context_from(settings)  # the router builds one per batch, as here
    deadline_s = settings.router.default_deadline_s
    chosen = values[:sample]
    for key, value in chosen[:200]:  # warm-up
        route_message(key, value, Source("requests", 0, 0), codec, settings, ctx)
    t = time.perf_counter()
    outputs = 0
    for i, (key, value) in enumerate(chosen):
        outputs += len(route_message(key, value, Source("requests", 0, i), codec, settings, ctx))
    whole = (time.perf_counter() - t) / len(chosen)

    stages: Counter[str] = Counter()
    clock = time.perf_counter
    for key, value in chosen:
        t0 = clock()
        request = codec.decode(value, InferenceRequest)
        t1 = clock()
        slip = decide(request, ctx, deadline_s).slip
        t2 = clock()
        if slip is not None:
            codec.encode(slip)
            t3 = clock()
            codec.encode(decision_event(slip))
            t4 = clock()
            stages["encode slip"] += t3 - t2
            stages["build + encode decision event"] += t4 - t3
        stages["decode request (Avro + pydantic)"] += t1 - t0
        stages["decide (signals + selection)"] += t2 - t1
    lines = [f"in-process route_message on {len(chosen)} of the same messages: {1 / whole:,.0f} msg/s ({whole * 1e6:.0f} µs each, {outputs / len(chosen):.2f} outputs each)"]
    lines += [f"    {v / len(chosen) * 1e6:7.0f} µs  {k}" for k, v in stages.items()]
    return 1 / whole, lines


# -- the run ----------------------------------------------------------------------------------
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
    """Start ``command``, wait until its outputs stop growing and hold all ``n`` request
    ids (every request yields a record keyed by its id: a slip on a model topic or a DLQ
    record for the router, a copy for the pass-throughs), stop it, return the span."""
    log_path = workdir / f"{name}.log"
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
    )
    started = time.perf_counter()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-probe", enable_auto_commit=False)
    await probe.start()
    tps = [TopicPartition(t, p) for t in out_topics for p in range(partitions)]

    async def mark() -> int:  # wrong on Tansu (see output_span), but it moves whenever a batch lands
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
        print(f"  {name} log (last 30 lines):\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        stop_pyspy(pyspy)
        await probe.stop()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
    return await output_span(bootstrap, out_topics, partitions)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from turnout.admin import create_topics
    from turnout.embedded import EmbeddedBroker
    from turnout.schemas.serde import codec_for
    from turnout.schemas.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-stream-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    bootstrap = broker.bootstrap_servers
    env = {"TURNOUT_CONFIG": str(args.config.resolve()), "TURNOUT_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "TURNOUT_KAFKA__TOPIC_PREFIX": PREFIX}
    ceiling: subprocess.Popen | None = None
    try:
        with environ(env):
            settings = load_settings(args.config)
        kafka, topics, router = settings.kafka, settings.topics, settings.router
        ceiling_topic, faust_topic = f"{PREFIX}.bench-ceiling", f"{PREFIX}.bench-faust"
        await create_topics(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
        await admin.start()
        await admin.create_topics([NewTopic(t, num_partitions=kafka.partitions, replication_factor=1) for t in (ceiling_topic, faust_topic)])
        await admin.close()

        print(f"bench-stream: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, Tansu on {bootstrap}, config {args.config}")
        print(f"  router: batch_size {router.batch_size}, batch_window_s {router.batch_window_s}, {kafka.partitions} partitions, fetch_max_wait_ms {kafka.fetch_max_wait_ms}")
        requests = prompts.generate(args.n, args.seed, now=_utcnow())
        print(prompts.describe(requests))
        codec = codec_for(kafka)
        t = time.perf_counter()
        values = [(r.id.encode(), codec.encode(r)) for r in requests]
        encode_s = time.perf_counter() - t
        size = sum(len(v) for _, v in values)
        print(f"  encoded {len(values)} requests in {encode_s:.2f}s ({len(values) / encode_s:,.0f}/s), {size / 1e6:.1f} MB of Avro, {size / len(values):,.0f} B mean")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-publish", acks="all", linger_ms=5, compression_type=_codec(kafka.compression_type))
        await producer.start()
        t = time.perf_counter()
        await asyncio.gather(*[await producer.send(topics.requests, value, key=key) for key, value in values])
        publish_s = time.perf_counter() - t
        await producer.stop()
        print(f"  published to {topics.requests} once, in {publish_s:.2f}s ({len(values) / publish_s:,.0f}/s); each phase below reads all of it in its own group")

        # (a) the ceiling
        print("\n(a) ceiling: bare aiokafka consume -> produce -> commit (getmany, send without awaiting each, flush, commit), its own process")
        ceiling = subprocess.Popen(
            [sys.executable, __file__, "--ceiling-worker", bootstrap, topics.requests, ceiling_topic, str(args.n), str(kafka.fetch_max_wait_ms), kafka.compression_type],
            stdout=subprocess.PIPE,
            stderr=open(workdir / "ceiling.log", "ab"),
            stdin=subprocess.DEVNULL,
        )
        out, _ = await asyncio.to_thread(ceiling.communicate, timeout=args.timeout)
        if ceiling.returncode != 0:
            raise RuntimeError(f"the ceiling worker failed (exit {ceiling.returncode}); see {workdir / 'ceiling.log'}")
        internal = json.loads(out.decode().strip().splitlines()[-1])
        ceiling_span = await output_span(bootstrap, [ceiling_topic], kafka.partitions)
        if ceiling_span.records != args.n:
            raise RuntimeError(f"the ceiling wrote {ceiling_span.records} records, expected {args.n}")
        print(
            f"  {ceiling_span.rate:,.0f} msg/s: {ceiling_span.records} records, first to last output {ceiling_span.seconds:.2f}s; "
            f"its own clock (first fetch to last commit): {internal['records'] / internal['internal_s']:,.0f} msg/s in {internal['batches']} batches"
        )

        # (b) faust alone, shaped like the router
        faust_span = None
        if not args.no_faust:
            print(f"\n(b) faust floor: the router's agent shape (take_events({router.batch_size}), producer.send, gather) forwarding bytes, no routing")
            faust_span = await measure_process(
                "faust",
                [sys.executable, __file__, "--faust-worker", bootstrap, topics.requests, faust_topic, str(router.batch_size), str(router.batch_window_s), str(kafka.fetch_max_wait_ms), kafka.compression_type],
                {},
                bootstrap,
                [faust_topic],
                kafka.partitions,
                args.n,
                workdir,
                args.timeout,
            )
            print(f"  {faust_span.rate:,.0f} msg/s: {faust_span.records} records, first to last output {faust_span.seconds:.2f}s")

        # (c) Turnout's router
        print("\n(c) Turnout: python -m turnout router (decode, decide, encode slip + event, produce, commit), its own process")
        out_topics = [topics.model(m) for m in sorted(settings.fleet)] + [topics.dlq]
        profile_path = args.profile / "router-pyspy.txt" if args.profile else None
        router_span = await measure_process(
            "router", [sys.executable, "-m", "turnout", "router"], env, bootstrap, out_topics, kafka.partitions, args.n, workdir, args.timeout, profile_path
        )
        dlq_span = await output_span(bootstrap, [topics.dlq], kafka.partitions)
        per_request = router_span.records / args.n  # > 1 only if the policy makes shadow copies
        router_rate = router_span.rate / per_request
        print(
            f"  {router_rate:,.0f} requests/s: {router_span.records} records on the model topics and the DLQ "
            f"({dlq_span.records} on the DLQ), first to last output {router_span.seconds:.2f}s"
        )

        # (d) the same work in this process, without Kafka or faust
        print("\n(d) where the router's time goes")
        inproc_rate, lines = breakdown(values, settings, min(args.sample, len(values)))
        print("  " + "\n  ".join(lines))
        if profile_path is not None:
            print("  " + "\n  ".join(summarize_pyspy(profile_path)))

        ratio = router_rate / ceiling_span.rate
        print()
        print(f"{'':<44} {'msg/s':>8} {'of ceiling':>11}")
        print(f"{'(a) bare aiokafka pass-through (ceiling)':<44} {ceiling_span.rate:>8,.0f} {100:>10.0f}%")
        if faust_span is not None:
            print(f"{'(b) faust pass-through, router-shaped':<44} {faust_span.rate:>8,.0f} {100 * faust_span.rate / ceiling_span.rate:>10.0f}%")
        print(f"{'(c) Turnout router':<44} {router_rate:>8,.0f} {100 * ratio:>10.0f}%")
        print(f"{'(d) route_message alone, in-process':<44} {inproc_rate:>8,.0f} {100 * inproc_rate / ceiling_span.rate:>10.0f}%")
        print(f"Turnout router at {100 * ratio:.0f} % of the ceiling (target ≥ 30 %: {'met' if ratio >= 0.30 else 'NOT met'}); logs in {workdir}")
        bench = {
            "name": "stream",
            "per_s": round(router_rate),
            "ceiling_per_s": round(ceiling_span.rate),
            "ratio": round(ratio, 3),
            "n": args.n,
            "faust_passthrough_per_s": round(faust_span.rate) if faust_span else None,
            "route_message_inprocess_per_s": round(inproc_rate),
            "batch_size": router.batch_size,
            "partitions": kafka.partitions,
            "rev": revision(),
        }
        if args.profile:
            bench["profiled"] = True
        return bench
    finally:
        if ceiling is not None and ceiling.poll() is None:
            ceiling.kill()
            ceiling.wait()
        broker.stop()


def _utcnow() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--ceiling-worker":
        bootstrap, source, target, n, wait_ms, compression = sys.argv[2:8]
        asyncio.run(ceiling_worker(bootstrap, source, target, int(n), int(wait_ms), compression))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--faust-worker":
        bootstrap, source, target, batch, window, wait_ms, compression = sys.argv[2:9]
        faust_worker(bootstrap, source, target, int(batch), float(window), int(wait_ms), compression)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests published and routed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=DEV_TOML, help="Turnout configuration (fleet, rules, router batch size)")
    parser.add_argument("--sample", type=int, default=2_000, help="messages for the in-process breakdown")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds per phase")
    parser.add_argument("--no-faust", action="store_true", help="skip the faust pass-through reference")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the router while it routes; write the profile here")
    args = parser.parse_args()
    bench = asyncio.run(run(args))
    print("BENCH " + json.dumps(bench))


if __name__ == "__main__":
    main()
