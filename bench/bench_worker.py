"""One model worker process against the simulated backend, beside direct calls.

    python bench/bench_worker.py [--n 20000] [--concurrency 64] [--rate 50] [--storm-s 60] [--what-if] [--stream default|on|off] [--profile DIR]

One run, one embedded broker (Tansu, memory storage) and one simulator process
(``python -m turnout simulator``), both started here, with a configuration written to
a temporary directory: fleet model ``bench`` served by the simulator at zero latency
(``latency_distribution = "fixed"``, ``latency_ms = 0``), fleet model ``storm`` with a
requests-per-minute limit (``rpm``) on a simulator profile that answers a share of its
calls 429 with a Retry-After, and the response cache off (every request must reach the
backend, as every direct call does). The requests are ``bench/prompts.py``'s mix, each
wrapped in a routing slip whose plan is one step on the benchmarked model, created now
and with a deadline a day ahead. Every process measured runs on its own.

1. Throughput.
   (a) direct: the worker's own HTTP path, built as the worker builds it
       (``OpenAIChatBackend``: httpx requests over ``consumers/aiohttp_transport.py``, one
       pool of ``--concurrency`` connections), sends the bodies the worker would send
       (``OpenAIChatBackend.body(request)``) to the simulator's ``/v1/chat/completions``,
       ``--concurrency`` calls at a time, and reads each JSON answer: calls/s
       (``direct_per_s``). The same calls through an ``httpx.AsyncClient`` with its own
       pool (the worker's client until 2026-11-29), aiohttp alone and httpx2 (when
       installed) are printed beside it: how much of the ceiling is the server, how
       much the client.
   (b) Turnout: ``N`` slips wait on ``<prefix>.model.bench``, then ONE
       ``python -m turnout worker --model bench`` serves them (decode, breaker, rate
       limit, the call, the response and its events, produce, commit), timed by its
       responses' CreateTime, first to last (start-up and the group join excluded):
       ``per_s``, against the target of 1,500 requests/s per worker process. With
       ``--what-if``, the same worker runs again on fresh slips with its HTTP transport
       swapped by ``bench/worker_probe.py`` for httpx's own pool (what it used before).

2. Added latency per request, at a paced rate (``--rate``, 50/s: far below both maxima,
   so that requests seldom wait behind one another): the direct client calls at that
   rate (open loop: each call starts on its schedule) and its median call latency is
   the peer. Then the worker runs under ``bench/worker_probe.py``, which adds clocks at
   the seams the worker module builds its parts from (aiokafka's ``getmany`` and
   ``send``, the codec's ``decode``, the backend's ``complete``; the worker's own code
   runs untouched), while slips are published at the same rate. For each request,
   ``worker_ms`` runs from the moment the consumer hands the slip to the worker to the
   moment its producer appends the response (the response's CreateTime), and

       overhead_ms_p50 = median(worker_ms) - median(direct call latency)

   is what a request costs in the worker beyond the HTTP call itself; the target is
   under 2 ms. Printed beside it: the medians of the parts (hand-over to decode, decode,
   decoded to the backend call, the call, its return to the response's append), each
   request's ``worker_ms`` minus its own HTTP post as the worker timed it
   (``backend_latency_ms``), and the Kafka legs the worker does not control: slip
   append to hand-over (bounded by ``kafka.fetch_max_wait_ms`` on Tansu, whose fetches
   wait that long when nothing is there) and slip append to response append.

3. 429 storm: a backlog of slips for ``storm`` (more than its ``rpm`` allows in the
   window) and ``python -m turnout worker --model storm``. The simulator answers a share
   of the calls (``--storm-429``) 429 with ``Retry-After: --retry-after`` seconds; the
   worker must keep to its configured limit whatever it is told. Over ``--storm-s``
   seconds from the worker's first call, the simulator's own ``/health`` counters give
   ``achieved_rpm`` (calls the backend received per minute: what the limit is about),
   the busiest 10 s, and the rate over the second half of the window (the slope of the
   call count: the steady rate, after any burst a limiter allows at the start); the responses topic gives
   the answers per minute. ``limit_rpm`` is the configured ``rpm``.

4. Where the time goes: a sample of the same slips served one at a time in this process
   (decode, the backend call, ``serve`` around it, encode, produce), and with
   ``--profile DIR`` py-spy samples of the throughput workers (``DIR/worker*-pyspy.txt``,
   collapsed stacks), broken down by stage; figures from a profiled run are marked
   ``"profiled": true``.

The last line is ``BENCH {json}`` with ``per_s``, ``direct_per_s``, ``overhead_ms_p50``,
``limit_rpm`` and ``achieved_rpm`` among others. Children die with this process (Ctrl-C
included); logs stay in the temporary directory printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts  # noqa: E402
from harness import (  # noqa: E402
    Record,
    Span,
    compression_codec,
    environ,
    measure_process,
    percentile,
    read_records,
    spawn,
    summarize_pyspy,
    tail,
    terminate,
    utcnow,
)
from runinfo import revision  # noqa: E402

PREFIX = "bench"
MODEL, STORM = "bench", "storm"
SERVED = {MODEL: "sim-bench", STORM: "sim-storm"}
TARGET_PER_S = 1_500
PEER = "turnout"  # the direct client: the worker's own HTTP path (see _client)
TARGET_OVERHEAD_MS = 2.0
WARM_S = 1.0  # paced phase: the first second of calls on each side is a warm-up, not measured
PROBE = Path(__file__).resolve().with_name("worker_probe.py")
BREAKDOWN_TOPIC = f"{PREFIX}.bench-breakdown"

CONFIG = """\
# bench-worker: written by bench/bench_worker.py for one run
[kafka]
topic_prefix = "{prefix}"
partitions = {partitions}

[fleet.{model}]
provider = "simulated"
served_model = "{served_model}"
concurrency = {concurrency}
{stream_line}

[fleet.{storm}]
provider = "simulated"
served_model = "{served_storm}"
concurrency = {concurrency}
rpm = {limit_rpm}

[[routes]]
model = "{model}"

[worker]
batch_size = {batch_size}
cache_enabled = false          # every request reaches the backend, as every direct call does

[simulator]
seed = 7

[simulator.profiles.{served_model}]
latency_distribution = "fixed"
latency_ms = 0

[simulator.profiles.{served_storm}]
latency_distribution = "fixed"
latency_ms = 0
rate_limit_rate = {storm_429}
retry_after_s = {retry_after}
"""


def write_config(path: Path, args: argparse.Namespace) -> Path:
    path.write_text(
        CONFIG.format(
            prefix=PREFIX,
            partitions=args.partitions,
            model=MODEL,
            storm=STORM,
            served_model=SERVED[MODEL],
            served_storm=SERVED[STORM],
            concurrency=args.concurrency,
            limit_rpm=args.limit_rpm,
            batch_size=args.batch_size,
            storm_429=args.storm_429,
            retry_after=args.retry_after,
            stream_line="" if args.stream == "default" else f"stream = {'true' if args.stream == 'on' else 'false'}",
        )
    )
    return path


# -- the requests and their slips ------------------------------------------------------------
def fresh_requests(n: int, seed: int, id_prefix: str | None = None) -> list[Any]:
    """``n`` requests of the mix, created now, due in a day; renamed ``<id_prefix>-<i>`` if asked."""
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Avro keeps milliseconds
    due = now + timedelta(days=1)
    out = []
    for i, request in enumerate(prompts.generate(n, seed, now=now)):
        update: dict[str, Any] = {"created_at": now, "deadline": due}
        if id_prefix:
            update["id"] = f"{id_prefix}-{i:07d}"
        out.append(request.model_copy(update=update))
    return out


def slip_for(request: Any, model: str) -> Any:
    """A routing slip with a plan of one step on ``model``, as the router would write it."""
    from turnout.schemas.models import PlanStep, RoutedRequest, RoutingDecision, Signals

    chars = sum(len(m.content) for m in request.messages)
    signals = Signals(
        task_type=request.metadata.get("bench_kind", "chat"),
        task_confidence=1.0,
        task_method="bench",
        input_tokens=max(1, chars // 4),
        token_method="chars",
        turns=sum(1 for m in request.messages if m.role == "user"),
        expected_output_tokens=64,
    )
    decision = RoutingDecision(route="bench", model=model, reason="bench: one-step plan", signals=signals)
    return RoutedRequest(request=request, decision=decision, plan=[PlanStep(model=model, role="primary")], policy_version="bench")


def encode_slips(codec: Any, requests: list[Any], model: str) -> list[tuple[bytes, bytes]]:
    return [(r.id.encode(), codec.encode(slip_for(r, model))) for r in requests]


def bench_producer(bootstrap: str, compression: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-publish", acks="all", linger_ms=linger_ms, compression_type=compression_codec(compression)
    )


async def publish(bootstrap: str, compression: str, topic: str, items: list[tuple[bytes, bytes]]) -> float:
    """All at once, as fast as the producer goes; seconds taken."""
    producer = bench_producer(bootstrap, compression, linger_ms=5)
    await producer.start()
    try:
        t = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in items])
        return time.perf_counter() - t
    finally:
        await producer.stop()


async def publish_paced(producer: AIOKafkaProducer, topic: str, items: list[tuple[bytes, bytes]], rate: float) -> dict[bytes, int]:
    """One record every ``1 / rate`` seconds (open loop); the CreateTime of each, by key."""
    loop = asyncio.get_running_loop()
    pending = []
    start = loop.time()
    for i, (key, value) in enumerate(items):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append((key, await producer.send(topic, value, key=key)))
    return {key: (await future).timestamp for key, future in pending}


# -- (child) direct calls to the simulator, no Turnout ----------------------------------------
async def direct_bodies(n: int, seed: int, served_model: str) -> list[dict[str, Any]]:
    """The bodies the worker sends for the same requests (ids and times do not reach the body)."""
    from turnout.consumers.backend import OpenAIChatBackend

    backend = OpenAIChatBackend("http://127.0.0.1:9/v1", served_model)
    try:
        return [backend.body(r) for r in prompts.generate(n, seed)]
    finally:
        await backend.aclose()


def _client(kind: str, base_url: str, concurrency: int) -> tuple[Any, Any, Any]:
    """``(call, close)`` for one client library; ``call(body)`` posts and reads the JSON answer."""
    if kind == "turnout":
        from turnout.consumers.backend import OpenAIChatBackend

        backend = OpenAIChatBackend(base_url, "unused", max_connections=concurrency)

        async def call_turnout(body: dict[str, Any]) -> int:
            response = await backend._send("/chat/completions", body)  # the HTTP leg of backend.complete, without building the body
            response.json()
            return response.status_code

        return backend, call_turnout, backend.aclose
    if kind in ("httpx", "httpx2"):
        lib = httpx if kind == "httpx" else __import__("httpx2")
        # as HttpChatBackend built its client until 2026-11-29: one pool of `concurrency` connections
        client = lib.AsyncClient(
            base_url=base_url, timeout=30.0, limits=lib.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        )

        async def call(body: dict[str, Any]) -> int:
            response = await client.post("/chat/completions", json=body)
            response.json()
            return response.status_code

        return client, call, client.aclose
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def call_aiohttp(body: dict[str, Any]) -> int:
        async with session.post(base_url + "/chat/completions", json=body) as response:
            await response.json()
            return response.status

    return session, call_aiohttp, session.close


async def direct_calls(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop (``rate`` 0: ``concurrency`` callers pull from the ``n`` bodies, after
    ``warm`` of them were sent once to open the connections) or open loop at ``rate``
    calls/s (``warm + n`` bodies, each call starting on its schedule, the first ``warm``
    not measured): the requests the Turnout side gets in the same phase. Every call is
    timed from before ``post`` to its JSON read."""
    paced = bool(spec["rate"])
    bodies = await direct_bodies(spec["n"] + (spec["warm"] if paced else 0), spec["seed"], spec["served_model"])
    _, call, close = _client(spec["client"], spec["url"], spec["concurrency"])
    latencies: list[float] = []
    failures = 0

    async def timed(body: dict[str, Any], keep: bool) -> None:
        nonlocal failures
        t = time.perf_counter()
        status = await call(body)
        if keep:
            latencies.append((time.perf_counter() - t) * 1000)
            failures += status != 200

    try:
        warm, measured = bodies[: spec["warm"]], (bodies[spec["warm"] :] if paced else bodies)
        rate = spec["rate"]
        loop = asyncio.get_running_loop()
        if rate:
            tasks, start = [], loop.time()
            for i, body in enumerate(bodies):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed(body, i >= len(warm))))
            await asyncio.gather(*tasks)
            elapsed = len(measured) / rate
        else:
            for chunk in range(0, len(warm), spec["concurrency"]):
                await asyncio.gather(*[timed(b, False) for b in warm[chunk : chunk + spec["concurrency"]]])
            queue = iter(measured)

            async def caller() -> None:
                for body in queue:
                    await timed(body, True)

            t = time.perf_counter()
            await asyncio.gather(*[caller() for _ in range(spec["concurrency"])])
            elapsed = time.perf_counter() - t
    finally:
        await close()
    return {
        "client": spec["client"],
        "calls": len(latencies),
        "failures": failures,
        "per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


async def run_direct(spec: dict[str, Any], workdir: Path, timeout_s: float) -> dict[str, Any]:
    """``direct_calls(spec)`` in a process of its own; its result."""
    log = workdir / f"direct-{spec['client']}-{'paced' if spec['rate'] else 'max'}.log"
    process = spawn([sys.executable, __file__, "--direct", json.dumps(spec)], {}, log)
    try:
        code = await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)
    finally:
        await terminate(process, 5)
    if code != 0:
        raise RuntimeError(f"direct calls ({spec['client']}) failed with exit code {code}:\n{tail(log)}")
    return json.loads(log.read_text().strip().splitlines()[-1])


# -- the phases -------------------------------------------------------------------------------
@dataclass
class Stack:
    bootstrap: str
    settings: Any
    env: dict[str, str]
    simulator_url: str
    workdir: Path


async def throughput(stack: Stack, args: argparse.Namespace, codec: Any) -> dict[str, Any]:
    from turnout.schemas.models import InferenceResponse

    kafka, topics = stack.settings.kafka, stack.settings.topics
    base = {"url": stack.simulator_url, "seed": args.seed, "served_model": SERVED[MODEL], "concurrency": args.concurrency, "rate": 0, "warm": 200}
    print(f"\n(a) direct: the worker's HTTP path (httpx requests, aiohttp transport), {args.concurrency} calls at a time, its own process, the same bodies the worker sends")
    direct = await run_direct({**base, "client": PEER, "n": args.n}, stack.workdir, args.timeout)
    print(f"  {direct['per_s']:,.0f} calls/s; per call p50 {direct['p50_ms']:.2f} ms, p99 {direct['p99_ms']:.2f} ms ({direct['calls']} calls, {direct['failures']} not 200)")
    references = []
    if not args.no_references:
        n_ref = min(args.n, 5_000)
        for client in reference_clients():
            ref = await run_direct({**base, "client": client, "n": n_ref}, stack.workdir, args.timeout)
            references.append(ref)
            print(f"  reference, {client} client, {n_ref} calls: {ref['per_s']:,.0f} calls/s; p50 {ref['p50_ms']:.2f} ms, p99 {ref['p99_ms']:.2f} ms")

    print(f"\n(b) Turnout: python -m turnout worker --model {MODEL}, its own process, {args.n} slips waiting on {topics.model(MODEL)}")
    profile_path = args.profile / "worker-pyspy.txt" if args.profile else None
    await measure_process(
        "worker", [sys.executable, "-m", "turnout", "worker", "--model", MODEL], stack.env, stack.bootstrap, [topics.responses],
        kafka.partitions, args.n, stack.workdir, args.timeout, profile_path,
    )  # fmt: skip
    records = await read_records(stack.bootstrap, [topics.responses], kafka.partitions, values=True)
    statuses: dict[str, int] = {}
    for record in records:
        status = codec.decode(record.value, InferenceResponse).status
        statuses[status] = statuses.get(status, 0) + 1
    span = Span.of(records)
    per_s = span.rate
    print(
        f"  {per_s:,.0f} requests/s: {len(records)} responses ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))}), "
        f"first to last response {span.seconds:.2f}s"
    )
    if statuses.get("ok", 0) != args.n:
        print(f"  WARNING: {args.n - statuses.get('ok', 0)} requests were not answered ok; see {stack.workdir / 'worker.log'}")
    return {"direct": direct, "references": references, "per_s": per_s, "responses": len(records), "statuses": statuses}


def aiohttp_version() -> str:
    import aiohttp

    return aiohttp.__version__


def reference_clients() -> list[str]:
    """The clients measured beside the worker's: httpx with its own pool, aiohttp alone, and httpx2 when installed."""
    return ["httpx", "aiohttp"] + (["httpx2"] if importlib.util.find_spec("httpx2") else [])


WHAT_IF_CLIENTS = ("httpx",)
"""The worker's HTTP transports ``--what-if`` tries (``worker_probe.py``): httpx's own pool."""


async def what_if(stack: Stack, args: argparse.Namespace, codec: Any) -> dict[str, float]:
    """The throughput phase again with the worker's HTTP client swapped (``worker_probe.py``):
    the same slips under new ids, each client's responses on a reply topic of its own."""
    kafka, topics = stack.settings.kafka, stack.settings.topics
    out: dict[str, float] = {}
    for client in WHAT_IF_CLIENTS:
        reply = f"{PREFIX}.whatif-{client}"
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="bench-admin")
        await admin.start()
        await admin.create_topics([NewTopic(reply, num_partitions=kafka.partitions, replication_factor=1)])
        await admin.close()
        requests = [r.model_copy(update={"reply_topic": reply}) for r in fresh_requests(args.n, args.seed, id_prefix=f"whatif-{client}")]
        await publish(stack.bootstrap, kafka.compression_type, topics.model(MODEL), encode_slips(codec, requests, MODEL))
        print(f"\n(b') what-if: the same worker with its HTTP client swapped ({client}, bench/worker_probe.py), {args.n} slips")
        spec = json.dumps({"model": MODEL, "client": client})
        profile_path = args.profile / f"worker-{client}-pyspy.txt" if args.profile else None
        span = await measure_process(
            f"worker-{client}", [sys.executable, str(PROBE), spec], stack.env, stack.bootstrap, [reply], kafka.partitions, args.n, stack.workdir,
            args.timeout, profile_path,
        )  # fmt: skip
        out[client] = span.rate
        print(f"  {span.rate:,.0f} requests/s: {span.records} responses, first to last response {span.seconds:.2f}s")
    return out


async def paced(stack: Stack, args: argparse.Namespace, codec: Any) -> dict[str, Any]:
    """The direct client at ``--rate``, then the probed worker at the same rate (and, with
    ``--what-if``, the probed worker with each other client)."""
    warm, count = int(args.rate * WARM_S), int(args.rate * args.paced_s)
    print(f"\n(c) added latency at {args.rate:g} requests/s (open loop, {args.paced_s:g}s measured after a {WARM_S:g}s warm-up on each side)")
    direct = await run_direct(
        {"url": stack.simulator_url, "seed": args.seed + 1, "served_model": SERVED[MODEL], "concurrency": args.concurrency,
         "rate": args.rate, "warm": warm, "n": count, "client": PEER},
        stack.workdir,
        args.timeout,
    )  # fmt: skip
    print(f"  direct (the worker's HTTP path): per call p50 {direct['p50_ms']:.3f} ms, p99 {direct['p99_ms']:.3f} ms ({direct['calls']} calls)")
    result = await paced_worker(stack, args, codec, direct, PEER)
    if args.what_if:
        result["what_if"] = {client: await paced_worker(stack, args, codec, direct, client) for client in WHAT_IF_CLIENTS}
    return result


async def paced_worker(stack: Stack, args: argparse.Namespace, codec: Any, direct: dict[str, Any], client: str) -> dict[str, Any]:
    """Slips published at ``--rate`` to the worker under ``worker_probe.py``, which stamps
    each request's hand-over, backend call and response append."""
    from turnout.admin import wait_for_groups
    from turnout.consumers.worker import group_id
    from turnout.schemas.models import InferenceResponse

    kafka, topics = stack.settings.kafka, stack.settings.topics
    warm, count = int(args.rate * WARM_S), int(args.rate * args.paced_s)
    tag = "" if client == PEER else f"{client}-"  # ids of their own: every run's answers share the responses topic
    requests = fresh_requests(warm + count, args.seed + 1)
    requests = [r.model_copy(update={"id": f"{tag}{'warm' if i < warm else 'paced'}-{i:07d}"}) for i, r in enumerate(requests)]
    items = encode_slips(codec, requests, MODEL)
    stamps = stack.workdir / f"probe-{client}-stamps"
    spec = {"model": MODEL, "client": client, "stamps": str(stamps), "expect": {f"{tag}warm-": warm, f"{tag}paced-": count}}
    log = stack.workdir / f"probe-{client}.log"
    process = spawn([sys.executable, str(PROBE), json.dumps(spec)], stack.env, log, cwd=stack.workdir)
    producer = bench_producer(stack.bootstrap, kafka.compression_type, linger_ms=0)
    await producer.start()
    try:
        await wait_for_groups(stack.settings, [group_id(MODEL)], args.timeout)
        await publish_paced(producer, topics.model(MODEL), items[:warm], args.rate)
        await _wait_file(Path(f"{stamps}.{tag}warm-"), process, args.timeout, "the probed worker's warm-up")
        created = await publish_paced(producer, topics.model(MODEL), items[warm:], args.rate)
        await _wait_file(Path(f"{stamps}.{tag}paced-"), process, args.timeout, "the probed worker's paced requests")
    except Exception:
        print("  probed worker log (last 30 lines):\n" + tail(log))
        raise
    finally:
        await producer.stop()
        await terminate(process)
    probe = json.loads(Path(f"{stamps}.{tag}paced-").read_text())
    prefix = f"{tag}paced-".encode()
    answers = {r.key: r for r in await read_records(stack.bootstrap, [topics.responses], kafka.partitions, values=True) if r.key and r.key.startswith(prefix)}
    return _latencies(created, probe, answers, codec, InferenceResponse, direct, client)


async def _wait_file(path: Path, process: Any, timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{what}: the worker exited with code {process.returncode}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout_s:g}s")
        await asyncio.sleep(0.05)


def _latencies(
    created: dict[bytes, int], probe: dict[str, list[float]], answers: dict[bytes, Record], codec: Any, response_type: Any, direct: dict[str, Any], client: str
) -> dict[str, Any]:
    worker_ms, own_ms, hop_ms, e2e_ms, backend_ms = [], [], [], [], []
    before_ms, call_ms, after_ms = [], [], []  # hand-over to backend.complete, the call, its return to the response's append
    start_ms, decode_ms, pre_ms = [], [], []  # hand-over to the task's decode, the decode, decoded to backend.complete
    batches: dict[float, int] = {}  # one hand-over (a getmany) -> requests in it
    for stamp in probe.values():
        batches[stamp[0]] = batches.get(stamp[0], 0) + 1
    alone_ms = []  # requests handed over on their own: no other request of the batch to wait behind
    not_ok = 0
    for key, slip_ms in created.items():
        stamp, answer = probe.get(key.decode()), answers.get(key)
        if stamp is None or answer is None:
            continue
        fetched_perf, fetched_wall, decode_in, decode_out, entered, returned, sent_perf = stamp
        response = codec.decode(answer.value, response_type)
        not_ok += response.status != "ok"
        worker = (sent_perf - fetched_perf) * 1000
        worker_ms.append(worker)
        if entered == entered and decode_in == decode_in:  # not NaN: the request was decoded and reached the backend
            start_ms.append((decode_in - fetched_perf) * 1000)
            decode_ms.append((decode_out - decode_in) * 1000)
            pre_ms.append((entered - decode_out) * 1000)
            before_ms.append((entered - fetched_perf) * 1000)
            call_ms.append((returned - entered) * 1000)
            after_ms.append((sent_perf - returned) * 1000)
        if batches[fetched_perf] == 1:
            alone_ms.append(worker)
        own_ms.append(worker - response.backend_latency_ms)
        backend_ms.append(response.backend_latency_ms)
        hop_ms.append(fetched_wall * 1000 - slip_ms)
        e2e_ms.append(answer.timestamp - slip_ms)
    if not worker_ms:
        raise RuntimeError("no paced request was both stamped by the probe and answered")
    result = {
        "requests": len(worker_ms),
        "not_ok": not_ok,
        "direct_p50_ms": direct["p50_ms"],
        "direct_p99_ms": direct["p99_ms"],
        "worker_p50_ms": percentile(worker_ms, 50),
        "worker_p99_ms": percentile(worker_ms, 99),
        "own_p50_ms": percentile(own_ms, 50),
        "backend_p50_ms": percentile(backend_ms, 50),
        "hop_p50_ms": percentile(hop_ms, 50),
        "e2e_p50_ms": percentile(e2e_ms, 50),
        "e2e_p99_ms": percentile(e2e_ms, 99),
        "before_p50_ms": percentile(before_ms, 50),
        "start_p50_ms": percentile(start_ms, 50),
        "decode_p50_ms": percentile(decode_ms, 50),
        "pre_p50_ms": percentile(pre_ms, 50),
        "call_p50_ms": percentile(call_ms, 50),
        "after_p50_ms": percentile(after_ms, 50),
        "batch_p50": percentile(list(batches.values()), 50),
        "batch_max": max(batches.values()),
        "alone": len(alone_ms),
        "alone_p50_ms": percentile(alone_ms, 50),
    }
    result["overhead_p50_ms"] = result["worker_p50_ms"] - direct["p50_ms"]
    print(
        f"  Turnout ({client}), {len(worker_ms)} requests: hand-over to response append p50 {result['worker_p50_ms']:.3f} ms,"
        f" p99 {result['worker_p99_ms']:.3f} ms ({not_ok} not ok)\n"
        f"    its parts (medians of each): hand-over to backend.complete {result['before_p50_ms']:.3f} ms (until its task decodes"
        f" {result['start_p50_ms']:.3f}, decode {result['decode_p50_ms']:.3f}, decoded to the call {result['pre_p50_ms']:.3f}),"
        f" the call (body, HTTP, JSON answer) {result['call_p50_ms']:.3f} ms, its return to the response's append {result['after_p50_ms']:.3f} ms\n"
        f"    added per request at the median: {result['worker_p50_ms']:.3f} - {direct['p50_ms']:.3f} = {result['overhead_p50_ms']:.3f} ms;"
        f" each request's worker time minus its own HTTP post as the worker timed it: p50 {result['own_p50_ms']:.3f} ms\n"
        f"    handed over in batches of {result['batch_p50']:g} at the median (at most {result['batch_max']}); the {result['alone']} requests"
        f" handed over alone: p50 {result['alone_p50_ms']:.3f} ms\n"
        f"    Kafka, outside the worker: slip append to hand-over p50 {result['hop_p50_ms']:.1f} ms; slip append to response append"
        f" p50 {result['e2e_p50_ms']:.0f} ms, p99 {result['e2e_p99_ms']:.0f} ms (CreateTime, ms resolution)"
    )
    return result


async def storm(stack: Stack, args: argparse.Namespace, codec: Any) -> dict[str, Any]:
    from turnout.schemas.models import InferenceResponse

    kafka, topics = stack.settings.kafka, stack.settings.topics
    backlog = int(args.limit_rpm / 60 * args.storm_s * 1.5) + args.limit_rpm // 6
    print(
        f"\n(d) 429 storm: {STORM} limited to rpm = {args.limit_rpm}; the simulator answers {100 * args.storm_429:.0f} % of its calls 429 "
        f"with Retry-After {args.retry_after:g}s; {backlog} slips waiting; {args.storm_s:g}s from the worker's first call"
    )
    items = encode_slips(codec, fresh_requests(backlog, args.seed + 2, id_prefix="storm"), STORM)
    await publish(stack.bootstrap, kafka.compression_type, topics.model(STORM), items)
    log = stack.workdir / "worker-storm.log"
    process = spawn([sys.executable, "-m", "turnout", "worker", "--model", STORM], stack.env, log, cwd=stack.workdir)
    samples: list[tuple[float, float, int, int]] = []  # (perf, wall, calls, 429s) as the simulator counts them
    try:
        async with httpx.AsyncClient(base_url=stack.simulator_url.removesuffix("/v1"), timeout=5.0) as client:

            async def sample() -> tuple[int, int]:
                model = (await client.get("/health")).json()["models"].get(SERVED[STORM], {})
                calls, rate_limited = model.get("calls", 0), model.get("faults", {}).get("rate_limited", 0)
                samples.append((time.perf_counter(), time.time(), calls, rate_limited))
                return calls, rate_limited

            deadline = time.perf_counter() + args.timeout
            while (await sample())[0] == 0:
                if process.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"the storm worker made no call (exit code {process.poll()}):\n{tail(log)}")
                await asyncio.sleep(0.05)
            start_perf = (samples[-2][0] + samples[-1][0]) / 2 if len(samples) > 1 else samples[-1][0]
            start_wall = (samples[-2][1] + samples[-1][1]) / 2 if len(samples) > 1 else samples[-1][1]
            while time.perf_counter() < start_perf + args.storm_s:
                await asyncio.sleep(0.1)
                await sample()
            if process.poll() is not None:
                raise RuntimeError(f"the storm worker exited with code {process.returncode}:\n{tail(log)}")
    finally:
        await terminate(process, 5)  # the window is over: what still waits on the limiter need not drain
    end_perf, end_wall, calls, rate_limited = samples[-1]
    window = end_perf - start_perf
    achieved = calls * 60 / window
    peak = _peak_rpm(samples, 10.0)
    steady = _slope_rpm([s for s in samples if s[0] >= start_perf + window / 2])
    answers = [r for r in await read_records(stack.bootstrap, [topics.responses], kafka.partitions, values=True) if r.key and r.key.startswith(b"storm-")]
    in_window = [r for r in answers if start_wall * 1000 <= r.timestamp <= end_wall * 1000]
    ok = sum(1 for r in in_window if codec.decode(r.value, InferenceResponse).status == "ok")
    result = {
        "limit_rpm": args.limit_rpm,
        "achieved_rpm": achieved,
        "peak_10s_rpm": peak,
        "second_half_rpm": steady,
        "ok_rpm": ok * 60 / window,
        "answers_not_ok": len(in_window) - ok,
        "calls": calls,
        "rate_limited": rate_limited,
        "window_s": window,
        "backlog": backlog,
    }
    print(
        f"  the backend received {calls} calls in {window:.1f}s: {achieved:,.0f} calls/min (limit {args.limit_rpm}); busiest 10 s: {peak:,.0f} calls/min;"
        f" second half of the window (slope): {steady:,.0f} calls/min\n"
        f"  {rate_limited} of them answered 429; answers on the responses topic in the window: {ok} ok ({result['ok_rpm']:,.0f}/min), {len(in_window) - ok} errors"
    )
    return result


def _slope_rpm(samples: list[tuple[float, float, int, int]]) -> float:
    """Calls per minute as the least-squares slope of the call count over time: the calls
    come in bursts (a Retry-After pauses them all, then the refilled bucket lets them
    go), so a difference of two samples depends on where the bursts fall; the slope
    does not."""
    if len(samples) < 2:
        return float("nan")
    ts, cs = [s[0] for s in samples], [s[2] for s in samples]
    mean_t, mean_c = sum(ts) / len(ts), sum(cs) / len(cs)
    var = sum((t - mean_t) ** 2 for t in ts)
    return sum((t - mean_t) * (c - mean_c) for t, c in zip(ts, cs)) / var * 60 if var else float("nan")


def _peak_rpm(samples: list[tuple[float, float, int, int]], width_s: float) -> float:
    """The most calls in any ``width_s`` between two samples, per minute."""
    best, j = 0.0, 0
    for i in range(len(samples)):
        while j < i and samples[i][0] - samples[j + 1][0] >= width_s:
            j += 1
        span = samples[i][0] - samples[j][0]
        if span >= width_s:
            best = max(best, (samples[i][2] - samples[j][2]) * 60 / span)
    return best


# -- where the time goes -----------------------------------------------------------------------
PROFILE_GROUPS = (
    ("Avro decode + pydantic validation of the slip", ("AvroCodec.decode (",)),
    ("Avro encode of the response and events", ("AvroCodec.encode (",)),
    (
        "HTTP client: httpx models, aiohttp transport (pool, parser); httpx's pool in the what-if",
        ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "httpx2/", "httpcore2/", "aiohttp/", "yarl/", "multidict/", "consumers/aiohttp_transport.py"),
    ),
    ("backend adapter: body, JSON answer", ("consumers/backend.py",)),
    ("aiokafka producer (send, batches, lz4)", ("aiokafka/producer/",)),
    ("aiokafka consumer (fetch, records, commit)", ("aiokafka/consumer/",)),
    ("Kafka protocol + connections", ("aiokafka/",)),
    ("serve: limiter, breaker, response + events (pydantic)", ("consumers/serving.py", "consumers/deployment.py", "schemas/events.py")),
    ("worker loop: tasks, offsets, dedup, backpressure", ("consumers/worker.py", "consumers/offsets.py", "consumers/flow.py")),
    ("event loop waiting (epoll)", ("EpollSelector.select (",)),
    ("other event-loop work (asyncio)", ("asyncio/",)),
)
"""By priority: a sample goes to the first group any of its frames matches, so an httpx
call inside ``serve`` counts as httpx and a ``getpeername`` inside httpcore's pool too."""


async def breakdown(stack: Stack, items: list[tuple[bytes, bytes]], codec: Any) -> list[str]:
    """Slips served one at a time in this process, timed stage by stage (mean µs)."""
    from turnout.consumers.serving import serve
    from turnout.consumers.worker import build_deployment
    from turnout.schemas.models import RoutedRequest

    settings = stack.settings
    deployment = build_deployment(settings, MODEL)
    backend = deployment.backend
    call_s = 0.0
    complete = backend.complete

    async def timed_complete(request: Any, **options: Any) -> Any:
        nonlocal call_s
        t = time.perf_counter()
        try:
            return await complete(request, **options)
        finally:
            call_s += time.perf_counter() - t

    backend.complete = timed_complete  # type: ignore[method-assign]
    producer = bench_producer(stack.bootstrap, settings.kafka.compression_type, linger_ms=5)
    await producer.start()
    stages = dict.fromkeys(("decode slip (Avro + pydantic)", "backend.complete (body, HTTP post, JSON answer)", "serve() around the call", "encode response + events", "producer.send x3 (append)"), 0.0)
    rng = random.Random(1)
    clock = time.perf_counter
    try:
        for key, value in items[:100]:  # warm-up: connections, caches
            await serve(codec.decode(value, RoutedRequest), deployment, settings.topics, settings.worker, rng)
        call_s, pending = 0.0, []
        for key, value in items:
            t0 = clock()
            slip = codec.decode(value, RoutedRequest)
            t1 = clock()
            before = call_s
            outcome = await serve(slip, deployment, settings.topics, settings.worker, rng)
            t2 = clock()
            encoded = [(m.topic, codec.encode(m.record), m.key.encode()) for m in outcome.messages]
            t3 = clock()
            for topic, data, k in encoded:
                pending.append(await producer.send(BREAKDOWN_TOPIC, data, key=k))  # not the real topics: nothing reads these
            t4 = clock()
            stages["decode slip (Avro + pydantic)"] += t1 - t0
            stages["backend.complete (body, HTTP post, JSON answer)"] += call_s - before
            stages["serve() around the call"] += (t2 - t1) - (call_s - before)
            stages["encode response + events"] += t3 - t2
            stages["producer.send x3 (append)"] += t4 - t3
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await backend.aclose()
    n = len(items)
    total = sum(stages.values())
    lines = [f"one request at a time in this process, {n} slips of the mix: {total / n * 1e6:,.0f} µs each ({n / total:,.0f}/s)"]
    lines += [f"  {v / n * 1e6:7.0f} µs  {k}" for k, v in stages.items()]
    return lines


# -- the run ----------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, Any]:
    from turnout.admin import create_topics
    from turnout.embedded import EmbeddedBroker, free_port, wait_for_port
    from turnout.schemas.serde import codec_for
    from turnout.schemas.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-worker-"))
    config = write_config(workdir / "bench-worker.toml", args)
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    port = free_port()
    env = {
        "TURNOUT_CONFIG": str(config),
        "TURNOUT_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TURNOUT_SIMULATOR__PORT": str(port),
        "TURNOUT_SIMULATOR__URL": f"http://127.0.0.1:{port}/v1",
    }
    simulator = None
    try:
        with environ(env):
            settings = load_settings(config)
        simulator = spawn([sys.executable, "-m", "turnout", "simulator", "--port", str(port)], env, workdir / "simulator.log", cwd=workdir)
        await asyncio.to_thread(wait_for_port, port, 30, simulator, "the simulator")
        await create_topics(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, client_id="bench-admin")
        await admin.start()
        await admin.create_topics([NewTopic(BREAKDOWN_TOPIC, num_partitions=settings.kafka.partitions, replication_factor=1)])
        await admin.close()
        stack = Stack(broker.bootstrap_servers, settings, env, f"http://127.0.0.1:{port}/v1", workdir)
        kafka, worker = settings.kafka, settings.worker
        deployment = settings.fleet[MODEL]
        print(
            f"bench-worker: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
            f"Tansu on {broker.bootstrap_servers}, simulator on :{port}, httpx {httpx.__version__}, aiohttp {aiohttp_version()}"
        )
        print(
            f"  worker: concurrency {deployment.concurrency}, batch_size {worker.batch_size}, max_in_flight {worker.max_in_flight or 4 * deployment.concurrency}, "
            f"{kafka.partitions} partitions, fetch_max_wait_ms {kafka.fetch_max_wait_ms}, {kafka.compression_type}, response cache off; config {config}"
        )
        codec = codec_for(kafka)
        requests = fresh_requests(args.n, args.seed)
        print(prompts.describe(requests))
        t = time.perf_counter()
        items = encode_slips(codec, requests, MODEL)
        size = sum(len(v) for _, v in items)
        print(f"  {len(items)} slips encoded in {time.perf_counter() - t:.2f}s, {size / len(items):,.0f} B mean")
        seconds = await publish(stack.bootstrap, kafka.compression_type, settings.topics.model(MODEL), items)
        print(f"  published to {settings.topics.model(MODEL)} in {seconds:.2f}s")

        high = await throughput(stack, args, codec) if "throughput" in args.phases else None
        if high is not None and args.what_if:
            high["what_if"] = await what_if(stack, args, codec)
        latency = await paced(stack, args, codec) if "latency" in args.phases else None
        storm_result = await storm(stack, args, codec) if "storm" in args.phases and args.storm_s > 0 else None

        print("\n(e) where a request's time goes")
        try:
            lines = await breakdown(stack, items[: args.sample], codec)
        except Exception as exc:  # the serving API moved on: the measured figures above still stand
            lines = [f"(in-process breakdown unavailable: {type(exc).__name__}: {exc})"]
        if args.profile:
            for path in sorted(args.profile.glob("worker*-pyspy.txt")):
                client = path.name.removeprefix("worker").removesuffix("-pyspy.txt").strip("-") or PEER
                lines += summarize_pyspy(path, PROFILE_GROUPS, f"the worker ({client}) while it served at full speed", innermost=False, top=12)
        print("  " + "\n  ".join(lines))
        if high is None or latency is None:
            return {"name": "worker", "partial": args.phases, "high": high, "latency": latency, "storm": storm_result}
        return report(args, high, latency, storm_result)
    finally:
        await terminate(simulator, 10)
        broker.stop()
        print(f"logs in {workdir}")


def stream_setting(args: argparse.Namespace) -> bool:
    """Whether the benchmarked worker streams its calls: ``--stream``, or the fleet's default."""
    from turnout.schemas.fleet import ModelDeployment

    return args.stream == "on" or (args.stream == "default" and ModelDeployment.model_fields["stream"].default)


def report(args: argparse.Namespace, high: dict[str, Any], latency: dict[str, Any], storm_result: dict[str, Any] | None) -> dict[str, Any]:
    direct, per_s, overhead = high["direct"], high["per_s"], latency["overhead_p50_ms"]
    per_s_met, overhead_met = per_s >= TARGET_PER_S, overhead < TARGET_OVERHEAD_MS

    def row(label: str, turnout: str, peer: str = "", target: str = "", verdict: bool | None = None) -> None:
        mark = "" if verdict is None else ("met" if verdict else "NOT met")
        print(f"{label:<52} {turnout:>10} {peer:>13} {target:>10}  {mark}")

    print()
    row("", "Turnout", "direct", "target")
    row(f"requests/s, one process, concurrency {args.concurrency}", f"{per_s:,.0f}", f"{direct['per_s']:,.0f}", ">= 1,500", per_s_met)
    for client, rate in high.get("what_if", {}).items():
        row(f"  what-if: worker with {client}", f"{rate:,.0f}")
    for ref in high["references"]:
        row(f"  reference: direct calls with {ref['client']}", "", f"{ref['per_s']:,.0f}")
    row(f"per request at {args.rate:g}/s, p50 ms", f"{latency['worker_p50_ms']:.3f}", f"{latency['direct_p50_ms']:.3f}")
    row("added per request, p50 ms", f"{overhead:.3f}", "", "< 2", overhead_met)
    for client, other in latency.get("what_if", {}).items():
        row(f"  what-if: worker with {client}, added p50 ms", f"{other['overhead_p50_ms']:.3f}")
    if storm_result:
        within = storm_result["achieved_rpm"] <= storm_result["limit_rpm"]
        row(f"429 storm: calls/min received, first {storm_result['window_s']:.0f} s", f"{storm_result['achieved_rpm']:,.0f}", "", f"<= {storm_result['limit_rpm']}", within)
        row("429 storm: calls/min, busiest 10 s", f"{storm_result['peak_10s_rpm']:,.0f}")
        row("429 storm: calls/min, second half of the window", f"{storm_result['second_half_rpm']:,.0f}")
        row("429 storm: answers ok/min", f"{storm_result['ok_rpm']:,.0f}")
    print(f"worker calls {'streamed (stream = true: server-sent events, time to first token measured)' if stream_setting(args) else 'unstreamed (stream = false)'}")
    print(
        f"worker at {per_s / direct['per_s']:.0%} of direct calls on its HTTP path (target >= {TARGET_PER_S:,}/s: {'met' if per_s_met else 'NOT met'}); "
        f"{overhead:.2f} ms added per request at the median (target < 2 ms: {'met' if overhead_met else 'NOT met'})"
    )
    bench: dict[str, Any] = {
        "name": "worker",
        "per_s": round(per_s),
        "direct_per_s": round(direct["per_s"]),
        "ratio": round(per_s / direct["per_s"], 3),
        "overhead_ms_p50": round(overhead, 3),
        "worker_ms_p50": round(latency["worker_p50_ms"], 3),
        "direct_ms_p50": round(latency["direct_p50_ms"], 3),
        "own_ms_p50": round(latency["own_p50_ms"], 3),
        "alone_ms_p50": round(latency["alone_p50_ms"], 3),
        "before_call_ms_p50": round(latency["before_p50_ms"], 3),
        "task_start_ms_p50": round(latency["start_p50_ms"], 3),
        "decode_ms_p50": round(latency["decode_p50_ms"], 3),
        "decoded_to_call_ms_p50": round(latency["pre_p50_ms"], 3),
        "call_ms_p50": round(latency["call_p50_ms"], 3),
        "after_call_ms_p50": round(latency["after_p50_ms"], 3),
        "e2e_ms_p50": round(latency["e2e_p50_ms"], 1),
        "paced_per_s": args.rate,
        "limit_rpm": storm_result["limit_rpm"] if storm_result else None,
        "achieved_rpm": round(storm_result["achieved_rpm"]) if storm_result else None,
        "peak_10s_rpm": round(storm_result["peak_10s_rpm"]) if storm_result else None,
        "second_half_rpm": round(storm_result["second_half_rpm"]) if storm_result else None,
        "ok_rpm": round(storm_result["ok_rpm"]) if storm_result else None,
        "storm_429_rate": args.storm_429,
        "n": args.n,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "direct_call_p50_ms_at_max": round(direct["p50_ms"], 3),
        **{f"direct_{ref['client']}_per_s": round(ref["per_s"]) for ref in high["references"]},
        **{f"whatif_{client.replace('-', '_')}_per_s": round(rate) for client, rate in high.get("what_if", {}).items()},
        **{f"whatif_{client.replace('-', '_')}_overhead_ms_p50": round(other["overhead_p50_ms"], 3) for client, other in latency.get("what_if", {}).items()},
        "stream": stream_setting(args),
        "rev": revision(),
    }
    if args.profile:
        bench["profiled"] = True
    return bench


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--direct":
        print(json.dumps(asyncio.run(direct_calls(json.loads(sys.argv[2])))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests for the throughput phase")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=64, help="the deployment's concurrency (calls in flight), and the direct client's")
    parser.add_argument("--batch-size", type=int, default=100, help="worker.batch_size (records per poll)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s of the paced latency phase")
    parser.add_argument("--paced-s", type=float, default=15.0, help="seconds of the paced latency phase (after a 1 s warm-up)")
    parser.add_argument("--storm-s", type=float, default=60.0, help="seconds of the 429 storm window (0 skips it)")
    parser.add_argument("--limit-rpm", type=int, default=600, help="the storm deployment's rpm")
    parser.add_argument("--storm-429", type=float, default=0.5, help="share of the storm deployment's calls answered 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of those 429s, seconds")
    parser.add_argument("--sample", type=int, default=1_000, help="slips for the in-process breakdown")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds per phase")
    parser.add_argument("--no-references", action="store_true", help="skip the httpx/aiohttp/httpx2 reference clients")
    parser.add_argument("--what-if", action="store_true", help="also run the throughput and latency phases with the worker's HTTP transport swapped for httpx's own pool")
    parser.add_argument("--phases", default="throughput,latency,storm", help="comma-separated subset of throughput,latency,storm (for a partial run: no report)")
    parser.add_argument(
        "--stream",
        choices=("default", "on", "off"),
        default="default",
        help="the benchmarked deployment's stream setting: the fleet default, or on/off (the direct calls are never streamed)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the throughput worker; write the profile here")
    args = parser.parse_args()
    try:
        bench = asyncio.run(run(args))
    except KeyboardInterrupt:  # the children were stopped on the way out (and die with this process anyway)
        sys.exit("bench-worker: interrupted")
    print("BENCH " + json.dumps(bench))


if __name__ == "__main__":
    main()
