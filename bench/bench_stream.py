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
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts  # noqa: E402
from harness import BORING_FRAMES, compression_codec, environ, measure_process, output_span, summarize_pyspy, utcnow  # noqa: E402
from runinfo import revision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV_TOML = REPO / "turnout" / "defaults" / "dev.toml"
PREFIX = "bench"
CEILING_GROUP = "bench-ceiling"


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-ceiling", acks="all", linger_ms=5, compression_type=compression_codec(compression))
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
        producer_compression_type=compression_codec(compression),
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
        requests = prompts.generate(args.n, args.seed, now=utcnow())
        print(prompts.describe(requests))
        codec = codec_for(kafka)
        t = time.perf_counter()
        values = [(r.id.encode(), codec.encode(r)) for r in requests]
        encode_s = time.perf_counter() - t
        size = sum(len(v) for _, v in values)
        print(f"  encoded {len(values)} requests in {encode_s:.2f}s ({len(values) / encode_s:,.0f}/s), {size / 1e6:.1f} MB of Avro, {size / len(values):,.0f} B mean")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-publish", acks="all", linger_ms=5, compression_type=compression_codec(kafka.compression_type))
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
            print("  " + "\n  ".join(summarize_pyspy(profile_path, PROFILE_GROUPS, "the router process while it routed", BORING_FRAMES + ("run_router (",))))

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
