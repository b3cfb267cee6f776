"""The latency ``turnout gateway`` adds to a request, beside publishing it directly with
the SDK's ``TurnoutClient``, at a stated request rate.

    python bench/bench_gateway.py [--rate 20] [--seconds 20] [--latency-ms 5]

One run, one embedded stack (``turnout dev``'s: Tansu, the simulator, a router, a worker,
the sink) on a fleet of one simulated model with a fixed latency, the response cache
off (every request is served), and one ``turnout gateway`` process:

1. Warm-up: a few requests one at a time on each path, so that the worker's first
   answers on each reply topic are behind us.
2. Paced, open loop: requests start every ``1 / (2 x rate)`` seconds, alternately
   (a) published with ``TurnoutClient`` (its own reply topic, as the gateway has) and
   (b) posted to the gateway's ``/v1/chat/completions`` (aiohttp client, keep-alive),
   so both paths meet the same load at the same time; ``rate`` requests/s each.
   Latency is timed in this process from the start of the call to its answer.
3. ``added_ms_p50`` / ``added_ms_p99``: the gateway's percentile minus the direct
   path's. What it holds: HTTP and JSON on both sides, the key lookup, the translation,
   and one more process (the gateway's own Kafka client) on the two shared cores.

The last line is ``BENCH {json}`` with ``added_ms_p50``, ``added_ms_p99``, ``rate_per_s``.
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

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_stack, one_model_config, percentile  # noqa: E402
from runinfo import revision  # noqa: E402

from turnout.gateway.keys import key_hash, new_key  # noqa: E402
from turnout.gateway_process import running_gateway  # noqa: E402
from turnout.producers.client import TurnoutClient, new_request  # noqa: E402
from turnout.stack import DevStack  # noqa: E402

KEY = new_key()
TENANT = "bench"


def config(latency_ms: float) -> str:
    keys = f"""
[[gateway.keys]]
hash = "{key_hash(KEY)}"
tenant = "{TENANT}"
name = "bench"
"""
    return one_model_config("gwbench", latency_ms, extra=keys)


class Paths:
    """The two ways to ask: the SDK straight onto the topics, and the gateway over HTTP."""

    def __init__(self, client: TurnoutClient, http: aiohttp.ClientSession, base_url: str) -> None:
        self.client, self.http, self.base_url = client, http, base_url

    async def direct(self, prompt: str) -> float:
        started = time.perf_counter()
        response = await self.client.request(new_request(prompt, tenant=TENANT), timeout_s=60)
        if response.status != "ok":
            raise RuntimeError(f"direct: {response.error}")
        return (time.perf_counter() - started) * 1000

    async def gateway(self, prompt: str) -> float:
        started = time.perf_counter()
        body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        async with self.http.post(f"{self.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as answer:
            payload = await answer.json()
            if answer.status != 200:
                raise RuntimeError(f"gateway: {answer.status} {payload}")
        return (time.perf_counter() - started) * 1000


async def paced(paths: Paths, rate: float, seconds: float) -> tuple[list[float], list[float], int]:
    """Alternate the two paths, open loop, ``rate`` requests/s each."""
    interval = 1 / (2 * rate)
    tasks: list[tuple[str, asyncio.Task[float]]] = []
    start = time.perf_counter()
    for n in range(int(2 * rate * seconds)):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        which = "direct" if n % 2 == 0 else "gateway"
        call = paths.direct if which == "direct" else paths.gateway
        tasks.append((which, asyncio.create_task(call(f"bench question {n}: what does the gateway add?"))))
    await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
    direct = [t.result() for w, t in tasks if w == "direct" and t.exception() is None]
    gateway = [t.result() for w, t in tasks if w == "gateway" and t.exception() is None]
    errors = [t.exception() for _, t in tasks if t.exception() is not None]
    for error in errors[:3]:
        print(f"error: {error}")
    return direct, gateway, len(errors)


async def measure(stack: DevStack, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    assert stack.settings is not None
    reply_topic = f"{stack.settings.kafka.topic_prefix}.bench.direct"
    async with TurnoutClient(stack.settings.kafka, reply_topic=reply_topic, reply_partitions=1) as client, aiohttp.ClientSession() as http:
        paths = Paths(client, http, base_url)
        for n in range(args.warmup):
            await paths.direct(f"warm-up {n}")
            await paths.gateway(f"warm-up {n}")
        load = os.getloadavg()[0]
        direct, gateway, errors = await paced(paths, args.rate, args.seconds)
    p50 = {name: percentile(values, 50) for name, values in (("direct", direct), ("gateway", gateway))}
    p99 = {name: percentile(values, 99) for name, values in (("direct", direct), ("gateway", gateway))}
    print()
    print(f"{'':<44} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
    print(f"{'(a) TurnoutClient, straight onto the topics':<44} {p50['direct']:>8.2f} {p99['direct']:>8.2f} {len(direct):>9}")
    print(f"{'(b) the gateway, HTTP + OpenAI JSON':<44} {p50['gateway']:>8.2f} {p99['gateway']:>8.2f} {len(gateway):>9}")
    print(f"added by the gateway: p50 {p50['gateway'] - p50['direct']:.2f} ms, p99 {p99['gateway'] - p99['direct']:.2f} ms; "
          f"{args.rate:g} requests/s on each path, {errors} error(s); load average {load:.1f} at the start")
    return {
        "name": "gateway",
        "added_ms_p50": round(p50["gateway"] - p50["direct"], 2),
        "added_ms_p99": round(p99["gateway"] - p99["direct"], 2),
        "rate_per_s": args.rate,
        "direct_ms_p50": round(p50["direct"], 2),
        "direct_ms_p99": round(p99["direct"], 2),
        "gateway_ms_p50": round(p50["gateway"], 2),
        "gateway_ms_p99": round(p99["gateway"], 2),
        "requests": len(direct) + len(gateway),
        "errors": errors,
        "backend_latency_ms": args.latency_ms,
        "load": round(load, 1),
        "rev": revision(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack("bench-gateway", config(args.latency_ms)) as stack:
        with running_gateway({**stack.env, "TURNOUT_GATEWAY__INSTANCE_ID": "bench"}, stack.logs / "gateway.log") as base_url:
            return asyncio.run(measure(stack, base_url, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s on each path")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the paced phase")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="the simulated model's fixed latency")
    parser.add_argument("--warmup", type=int, default=5, help="requests one at a time on each path before the paced phase")
    args = parser.parse_args()
    print("BENCH " + json.dumps(run(args)))


if __name__ == "__main__":
    main()
