"""Scale-out: throughput against the number of worker and router replicas in the same
consumer groups, and a replica of each leaving in the middle of a load.

    python bench/bench_scale.py [--requests 2000] [--latency-ms 40] [--concurrency 8]

One stack as ``turnout dev`` starts it (the embedded broker unless
``TURNOUT_DEV_KAFKA=apache``), a fleet of one simulated model answering after a fixed
latency with the response cache off, its topics in 6 partitions. Each worker replica
calls the backend at most ``--concurrency`` at a time, so one replica serves at most
``concurrency / latency`` requests/s (200/s at the defaults): the ceiling a single
deployment's replica has in production, where a provider's latency, not the CPU, bounds
it. Replicas are added one by one, each phase waiting until the consumer groups hold
them all, then ``--requests`` are published at once and timed to the last response:

1. one router, one worker; 2. two workers; 3. three workers; 4. two routers, three
   workers; 5. the same, with one worker and one router stopped (SIGTERM) a third of the
   way through: their partitions move, and every request is still answered once.

``throughput_per_s`` per phase, and ``scaling``: phase 3 over phase 1 (3.0 is linear).
The last line is ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_stack, one_model_config  # noqa: E402
from runinfo import revision  # noqa: E402

from turnout.admin import wait_for_groups  # noqa: E402
from turnout.consumers.worker import group_id as worker_group_id  # noqa: E402
from turnout.producers.client import TurnoutClient, new_request  # noqa: E402
from turnout.stack import DevStack  # noqa: E402
from turnout.streams.app import requests_group  # noqa: E402


def config(latency_ms: float, concurrency: int) -> str:
    return one_model_config("scalebench", latency_ms, concurrency=concurrency, partitions=6)


async def burst(stack: DevStack, n: int, label: str, during=None) -> tuple[float, int]:
    """Publish ``n`` requests at once; requests/s from the first publish to the last
    response, and how many were answered. ``during`` runs once a third is answered."""
    requests = [new_request(f"{label} {i}: say hello.", "bench") for i in range(n)]
    async with TurnoutClient(stack.settings.kafka) as client:
        start = time.perf_counter()
        pending = await client.submit_many(requests, timeout_s=300)
        answered = 0
        for future in asyncio.as_completed([asyncio.ensure_future(p) for p in pending]):
            response = await future
            answered += response.status == "ok"
            if during is not None and answered == n // 3:
                await asyncio.to_thread(during)
        return n / (time.perf_counter() - start), answered


def wait_for_members(stack: DevStack, routers: int, workers: int) -> None:
    settings = stack.settings
    asyncio.run(wait_for_groups(settings, [requests_group(settings)], 90, min_members=routers))
    asyncio.run(wait_for_groups(settings, [worker_group_id("small")], 90, min_members=workers))


def run(args: argparse.Namespace) -> dict[str, Any]:
    per_replica = args.concurrency / (args.latency_ms / 1000)
    phases: list[dict[str, Any]] = []
    ceiling = f"one replica's ceiling {per_replica:.0f} requests/s ({args.concurrency} at a time, {args.latency_ms:g} ms)"
    with bench_stack("bench-scale", config(args.latency_ms, args.concurrency), ceiling) as stack:
        print(f"\n{'phase':<44} {'requests/s':>11} {'answered':>9} {'ceiling':>8}")

        def measure(label: str, routers: int, workers: int, during=None) -> None:
            wait_for_members(stack, routers, workers)
            rate, answered = asyncio.run(burst(stack, args.requests, label, during))
            ceiling = per_replica * workers
            phases.append({"phase": label, "routers": routers, "workers": workers, "throughput_per_s": round(rate, 1), "answered": answered, "ceiling_per_s": round(ceiling)})
            print(f"{label:<44} {rate:>11.1f} {answered:>5}/{args.requests:<4} {ceiling:>8.0f}")

        measure("1 router, 1 worker", 1, 1)
        stack.spawn("worker-small-2", ["worker", "--model", "small"])
        measure("1 router, 2 workers", 1, 2)
        stack.spawn("worker-small-3", ["worker", "--model", "small"])
        measure("1 router, 3 workers", 1, 3)
        stack.spawn("router-2", ["router"])
        measure("2 routers, 3 workers", 2, 3)
        measure("2 routers, 3 workers; 1 of each leaves", 2, 3, during=lambda: stack.stop_children(["worker-small-3", "router-2"]))
    scaling = phases[2]["throughput_per_s"] / phases[0]["throughput_per_s"]
    print(f"\nthree workers against one: {scaling:.2f}x (3.00 is linear); every phase answered {min(p['answered'] for p in phases)}/{args.requests} or more")
    return {"name": "scale", "scaling": round(scaling, 2), "phases": phases, "requests": args.requests, "latency_ms": args.latency_ms,
            "concurrency": args.concurrency, "kafka": stack.kafka, "load": round(os.getloadavg()[0], 1), "rev": revision()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase, published at once")
    parser.add_argument("--latency-ms", type=float, default=40.0, help="the simulated model's fixed latency")
    parser.add_argument("--concurrency", type=int, default=8, help="backend calls at a time per worker replica")
    args = parser.parse_args()
    print("BENCH " + json.dumps(run(args)))


if __name__ == "__main__":
    main()
