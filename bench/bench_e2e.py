"""The whole flow under a steady load: the latency Turnout adds over calling the backend
directly, and the highest request rate it holds without its lag growing.

    python bench/bench_e2e.py [--latency-ms 50] [--rate 20] [--seconds 15] [--steps 50,100,200,400,800] [--step-seconds 8]

One run, one stack as ``turnout dev`` starts it (the embedded broker unless
``TURNOUT_DEV_KAFKA=apache``, the simulator, a router, a worker, the sink), on a fleet of
one simulated model answering after a fixed latency, with the response cache off so
every request is served by the backend:

1. Added latency, at ``--rate`` requests/s, open loop, alternating (a) a chat completion
   posted straight to the simulator (aiohttp, keep-alive: the backend alone) and (b) a
   request published with ``TurnoutClient`` and awaited on its reply topic (publish,
   router, worker, backend, response). ``added_ms_p50`` / ``added_ms_p99`` are (b)'s
   percentiles minus (a)'s.
2. Highest rate held: each rate of ``--steps`` for ``--step-seconds``, open loop through
   Turnout only. A rate is held when every request is answered and the requests of the
   step's last fifth wait no longer than those of its first fifth (median within 1.5x
   plus 20 ms): a queue that grows shows up as latency that climbs through the step.
   ``max_rate_per_s`` is the highest rate held before the first that is not.

The last line is ``BENCH {json}`` with ``added_ms_p50``, ``added_ms_p99``, ``max_rate_per_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_stack, one_model_config, percentile  # noqa: E402
from runinfo import revision  # noqa: E402

from turnout.producers.client import TurnoutClient, new_request  # noqa: E402
from turnout.stack import DevStack  # noqa: E402

TENANT = "bench"


def config(latency_ms: float) -> str:
    return one_model_config("e2ebench", latency_ms, concurrency=256)


class Paths:
    """The backend alone, and the whole flow in front of it."""

    def __init__(self, client: TurnoutClient, http: aiohttp.ClientSession, simulator_url: str) -> None:
        self.client, self.http, self.simulator_url = client, http, simulator_url

    async def backend(self, prompt: str) -> float:
        started = time.perf_counter()
        body = {"model": "sim-small", "messages": [{"role": "user", "content": prompt}]}
        async with self.http.post(f"{self.simulator_url}/chat/completions", json=body) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"backend: {answer.status}")
        return (time.perf_counter() - started) * 1000

    async def turnout(self, prompt: str) -> float:
        started = time.perf_counter()
        response = await self.client.request(new_request(prompt, tenant=TENANT), timeout_s=60)
        if response.status != "ok":
            raise RuntimeError(f"turnout: {response.error}")
        return (time.perf_counter() - started) * 1000


async def open_loop(calls: list[Callable[[str], Awaitable[float]]], rate: float, seconds: float, label: str) -> list[list[float | None]]:
    """Start a call every ``1 / rate`` s, cycling through ``calls``; per call kind, the
    latencies in start order (None for a call that failed)."""
    tasks: list[list[asyncio.Task[float]]] = [[] for _ in calls]
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = n % len(calls)
        tasks[kind].append(asyncio.create_task(calls[kind](f"{label} {n}: say hello.")))
    await asyncio.gather(*(t for per_kind in tasks for t in per_kind), return_exceptions=True)
    return [[t.result() if t.exception() is None else None for t in per_kind] for per_kind in tasks]


def held(latencies: list[float | None]) -> tuple[bool, float, float]:
    """Whether a step was held: everything answered, and no climb from its first fifth to its last."""
    fifth = max(1, len(latencies) // 5)
    first = [v for v in latencies[:fifth] if v is not None]
    last = [v for v in latencies[-fifth:] if v is not None]
    first_p50, last_p50 = percentile(first, 50), percentile(last, 50)
    return None not in latencies and last_p50 <= 1.5 * first_p50 + 20, first_p50, last_p50


async def measure(stack: DevStack, args: argparse.Namespace) -> dict[str, Any]:
    assert stack.settings is not None
    reply_topic = f"{stack.settings.kafka.topic_prefix}.bench.replies"
    connector = aiohttp.TCPConnector(limit=0)
    async with TurnoutClient(stack.settings.kafka, reply_topic=reply_topic) as client, aiohttp.ClientSession(connector=connector) as http:
        paths = Paths(client, http, stack.settings.simulator_url())
        for n in range(args.warmup):
            await paths.backend(f"warm-up {n}")
            await paths.turnout(f"warm-up {n}")
        load = os.getloadavg()[0]
        backend, turnout = await open_loop([paths.backend, paths.turnout], 2 * args.rate, args.seconds, "added")
        ok_backend = [v for v in backend if v is not None]
        ok_turnout = [v for v in turnout if v is not None]
        print()
        print(f"{'':<46} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
        print(f"{'(a) the backend alone (simulator, HTTP)':<46} {percentile(ok_backend, 50):>8.2f} {percentile(ok_backend, 99):>8.2f} {len(ok_backend):>9}")
        print(f"{'(b) through Turnout (publish ... response)':<46} {percentile(ok_turnout, 50):>8.2f} {percentile(ok_turnout, 99):>8.2f} {len(ok_turnout):>9}")
        added_p50 = percentile(ok_turnout, 50) - percentile(ok_backend, 50)
        added_p99 = percentile(ok_turnout, 99) - percentile(ok_backend, 99)
        print(f"added by Turnout: p50 {added_p50:.2f} ms, p99 {added_p99:.2f} ms at {args.rate:g} requests/s each; load average {load:.1f} at the start")

        print(f"\n{'rate/s':>7} {'answered':>9} {'p50 ms':>8} {'p99 ms':>8} {'first 1/5 p50':>14} {'last 1/5 p50':>13}  held")
        max_rate = 0.0
        steps = []
        for rate in args.steps:
            (latencies,) = await open_loop([paths.turnout], rate, args.step_seconds, f"step {rate:g}")
            ok = [v for v in latencies if v is not None]
            kept, first, last = held(latencies)
            steps.append({"rate_per_s": rate, "answered": len(ok), "sent": len(latencies), "p50_ms": round(percentile(ok, 50), 1), "p99_ms": round(percentile(ok, 99), 1), "held": kept})
            print(f"{rate:>7g} {len(ok):>5}/{len(latencies):<4} {percentile(ok, 50):>8.1f} {percentile(ok, 99):>8.1f} {first:>14.1f} {last:>13.1f}  {'yes' if kept else 'no'}")
            if not kept:
                break
            max_rate = rate
            await asyncio.sleep(2)  # let the stack settle between steps
    print(f"highest rate held without growing lag: {max_rate:g} requests/s (backend latency {args.latency_ms:g} ms)")
    return {
        "name": "e2e",
        "added_ms_p50": round(added_p50, 2),
        "added_ms_p99": round(added_p99, 2),
        "max_rate_per_s": max_rate,
        "rate_per_s": args.rate,
        "backend_ms_p50": round(percentile(ok_backend, 50), 2),
        "turnout_ms_p50": round(percentile(ok_turnout, 50), 2),
        "backend_latency_ms": args.latency_ms,
        "steps": steps,
        "kafka": stack.kafka,
        "load": round(load, 1),
        "rev": revision(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack("bench-e2e", config(args.latency_ms)) as stack:
        return asyncio.run(measure(stack, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the simulated model's fixed latency")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s on each path while the added latency is measured")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the added-latency phase")
    parser.add_argument("--steps", type=lambda text: [float(r) for r in text.split(",")], default=[50, 100, 200, 400, 800, 1600], help="rates tried, in order")
    parser.add_argument("--step-seconds", type=float, default=8.0, help="length of each rate step")
    parser.add_argument("--warmup", type=int, default=5, help="requests one at a time on each path before measuring")
    args = parser.parse_args()
    print("BENCH " + json.dumps(run(args)))


if __name__ == "__main__":
    main()
