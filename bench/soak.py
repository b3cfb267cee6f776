"""Soak: a steady load for at least ten minutes with faults injected, reporting each
process's memory and each consumer group's lag over time; it fails when either keeps
growing.

    python bench/soak.py [--minutes 10] [--rate 40] [--kill-every-s 120]

One stack as ``turnout dev`` starts it (the embedded broker unless
``TURNOUT_DEV_KAFKA=apache``) plus a second worker replica, on a fleet of one simulated
model whose latencies have a long tail and which fails 2 % of calls with a 5xx and 1 %
with a 429 (retries, fallbacks of attempts and the breaker all run). Every
``--kill-every-s`` one worker replica is killed with ``kill -9`` and restarted a second
later, alternately. Requests are published at ``--rate`` per second and their responses
awaited; every 30 s the resident memory of every process (``/proc/<pid>/status``) and
the lag of every consumer group (end offsets minus committed ones) are sampled.

Verdict: memory of each process that was never restarted grows less than 20 % (plus
20 MB) from the end of the first third to the end (warm-up, caches and pools fill in the
first third), the lag at the end is no higher than the highest lag seen in the first
two thirds plus a second of load, and every request is answered. ``BENCH {json}`` holds
``memory_growth`` per process, ``lag_max`` and ``lag_end`` per group, ``requests``,
``answered`` and ``kills``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_stack  # noqa: E402
from runinfo import revision  # noqa: E402

from turnout.admin import wait_for_groups  # noqa: E402
from turnout.consumers.worker import group_id as worker_group_id  # noqa: E402
from turnout.producers.client import TurnoutClient, new_request  # noqa: E402
from turnout.schemas.kafka import client_options, partitions_of  # noqa: E402
from turnout.stack import DevStack  # noqa: E402
from turnout.streams.app import requests_group  # noqa: E402

SAMPLE_EVERY_S = 30
WORKERS = ("worker-small", "worker-small-2")

CONFIG = """
[kafka]
topic_prefix = "soak"
partitions = 3

[fleet.small]
provider = "simulated"
served_model = "sim-small"
concurrency = 32
max_retries = 2

[[routes]]
model = "small"

[worker]
cache_enabled = false
backoff_base_s = 0.01
backoff_max_s = 0.1

[simulator.default]
latency_distribution = "lognormal"
latency_ms = 20
latency_sigma = 1.0
error_rate = 0.02
rate_limit_rate = 0.01
retry_after_s = 0.1
output_tokens = 16
"""


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def group_lags(stack: DevStack, topics: dict[str, str]) -> dict[str, int]:
    """Messages not yet committed per group (``topics``: group -> the topic it consumes):
    end offsets minus committed offsets. Asked through a consumer of the group that never
    joins it (``committed``); Tansu garbles the admin client's offset listing."""
    kafka = stack.settings.kafka
    lags = {}
    for group, topic in topics.items():
        consumer = AIOKafkaConsumer(**client_options(kafka, "soak"), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await partitions_of(kafka, topic)
            ends = await consumer.end_offsets(partitions)
            committed = {tp: await consumer.committed(tp) for tp in partitions}
            lags[group] = sum(max(0, ends[tp] - (committed[tp] or 0)) for tp in partitions)
        finally:
            await consumer.stop()
    return lags


async def load(stack: DevStack, args: argparse.Namespace, samples: list[dict[str, Any]], groups: dict[str, str]) -> tuple[int, int, int]:
    """Publish at ``args.rate`` for ``args.minutes``, killing a worker every ``kill_every_s``
    and sampling every ``SAMPLE_EVERY_S``; returns (sent, answered, kills)."""
    duration = args.minutes * 60
    pending: list[asyncio.Future] = []
    kills = 0
    async with TurnoutClient(stack.settings.kafka) as client:
        start = time.monotonic()
        next_sample, next_kill, sent = start, start + args.kill_every_s, 0
        while (now := time.monotonic()) < start + duration:
            due = int((now - start) * args.rate) - sent
            if due > 0:
                requests = [new_request(f"soak {sent + i}: say hello.", "soak") for i in range(due)]
                pending += [asyncio.ensure_future(p) for p in await client.submit_many(requests, timeout_s=300)]
                sent += due
            if now >= next_kill:
                victim = WORKERS[kills % len(WORKERS)]
                stack.kill(victim)
                await asyncio.sleep(1.0)
                stack.restart(victim)
                kills += 1
                next_kill += args.kill_every_s
            if now >= next_sample:
                sample = {"t_s": round(now - start), "sent": sent, "answered": sum(f.done() for f in pending),
                          "rss_mb": {c.name: rss_mb(c.process.pid) for c in stack.children if c.alive()}, "lag": await group_lags(stack, groups)}
                samples.append(sample)
                print(f"{sample['t_s']:>5}s sent {sent:>6} answered {sample['answered']:>6}  lag {sample['lag']}  "
                      + " ".join(f"{n} {m:.0f}MB" for n, m in sample["rss_mb"].items() if m))
                next_sample += SAMPLE_EVERY_S
            await asyncio.sleep(0.05)
        done, _ = await asyncio.wait(pending, timeout=120)
        answered = sum(1 for f in done if f.exception() is None and f.result() is not None)
    return sent, answered, kills


def verdict(samples: list[dict[str, Any]], restarted: set[str], rate: float) -> tuple[dict[str, float], dict[str, dict[str, int]], list[str]]:
    third = samples[len(samples) // 3]
    last = samples[-1]
    growth, problems = {}, []
    for name, end in last["rss_mb"].items():
        begin = third["rss_mb"].get(name)
        if name in restarted or begin is None or end is None:
            continue
        growth[name] = round((end - begin) / begin * 100, 1)
        if end > begin * 1.2 + 20:
            problems.append(f"{name} grew from {begin:.0f} MB to {end:.0f} MB")
    lags = {}
    for group in last["lag"]:
        early = max(s["lag"].get(group, 0) for s in samples[: max(1, 2 * len(samples) // 3)])
        lags[group] = {"lag_max": max(s["lag"].get(group, 0) for s in samples), "lag_end": last["lag"][group]}
        if last["lag"][group] > early + rate:
            problems.append(f"{group}'s lag ended at {last['lag'][group]}, above the {early} it reached before")
    return growth, lags, problems


def run(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    load_shape = f"{args.minutes:g} min at {args.rate:g} requests/s, a worker killed every {args.kill_every_s:g} s"
    with bench_stack("soak", CONFIG, load_shape) as stack:
        stack.spawn("worker-small-2", ["worker", "--model", "small"])
        asyncio.run(wait_for_groups(stack.settings, [worker_group_id("small")], 90, min_members=2))
        topics = stack.settings.topics
        groups = {requests_group(stack.settings): topics.requests, worker_group_id("small"): topics.model("small"), stack.settings.sink.group_id: topics.events}
        sent, answered, kills = asyncio.run(load(stack, args, samples, groups))
    growth, lags, problems = verdict(samples, set(WORKERS), args.rate)
    if answered < sent:
        problems.append(f"{sent - answered} of {sent} requests got no answer")
    print(f"\nmemory growth from the end of the first third to the end: {growth}")
    print(f"lag per group: {lags}")
    print("verdict: " + ("no unbounded growth, every request answered" if not problems else "; ".join(problems)))
    return {"name": "soak", "minutes": args.minutes, "rate_per_s": args.rate, "requests": sent, "answered": answered, "kills": kills,
            "memory_growth_pct": growth, "lag": lags, "ok": not problems, "kafka": stack.kafka, "rev": revision()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (at least 10 for the issue's soak)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s")
    parser.add_argument("--kill-every-s", type=float, default=120.0, help="seconds between worker kills")
    args = parser.parse_args()
    result = run(args)
    print("BENCH " + json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
