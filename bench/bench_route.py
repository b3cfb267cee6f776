"""Routing decisions alone: Turnout's decision function beside LiteLLM's Router, same prompts.

    python bench/bench_route.py [--n 5000] [--seed 7] [--config path/to/turnout.toml]

Both sides choose a deployment among the same fleet (the Turnout configuration's fleet,
by default the bundled dev.toml: small / medium / large with their prices) for the same
requests from ``bench/prompts.py``. Each side is warmed up on requests of another seed,
then every call is timed with ``perf_counter_ns``; decisions/s is the number of calls
over the wall time of the whole timed loop (so work a call leaves behind, such as the
tasks LiteLLM schedules, is paid for in the rate, not hidden). The last line is
``BENCH {json}``.

What is compared, and why that pair gives the ratio
---------------------------------------------------
Turnout's side is ``decide(request)`` from ``turnout_decide()``: ``streams.rules.decide``
on the configured policy, which computes every signal from the content (tokens,
language, task type, sensitive kinds, capabilities), selects under the policy and
returns the routing slip (primary, fallbacks, escalation, shadows).

LiteLLM's Router decides only when asked for a deployment: ``async_get_available_deployment``
is the call its ``acompletion`` makes to pick where a request goes, without the
provider call. Of its strategies, only the complexity router
(``auto_router/complexity_router``, rule-based, no API calls) reads the request's
content to choose between cheap and capable deployments, which is what Turnout's rules
do; ``simple-shuffle`` (the default) and ``cost-based-routing`` pick within a model group
without looking at the request. So the ratio is taken against the complexity router's
``async_get_available_deployment``; the content-blind strategies and full
``acompletion(..., mock_response=...)`` calls (selection plus LiteLLM's request
handling, logging and response building, no network) are printed beside it so the
reader sees the whole range. Requests that pin a fleet model ask LiteLLM for that
model's group directly, as a LiteLLM user would.

The issue names LiteLLM's Router with ``mock_response``, which is the ``acompletion``
call: the ratios against those rows (default strategy and complexity router) are
printed under the table and in ``BENCH`` as ``ratio_vs_acompletion_mock``; ``ratio``
stays the strictest reading, against selection alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts  # noqa: E402  (bench/ is not a package: the scripts run from anywhere)
from runinfo import revision  # noqa: E402

DEV_TOML = Path(__file__).resolve().parents[1] / "turnout" / "defaults" / "dev.toml"


# -- Turnout -------------------------------------------------------------------------------
def turnout_decide(config: Path = DEV_TOML) -> tuple[Callable[[Any], Any], Callable[[Any], str]]:
    """The engine under test: ``decide(request) -> RoutedRequest | Refusal`` and a
    function naming the model a decision chose. Swap the routing engine here."""
    from turnout.schemas.settings import load_settings
    from turnout.streams.rules import context_from, decide as route
    from turnout.streams.signals import warm_up

    settings = load_settings(config)
    ctx = context_from(settings)  # the router builds one per batch, not per request
    deadline_s = settings.router.default_deadline_s
    warm_up()

    def decide(request: Any) -> Any:
        return route(request, ctx, deadline_s)

    def chosen(outcome: Any) -> str:
        return "refused" if outcome.slip is None else outcome.slip.plan[0].model

    return decide, chosen


def fleet_of(config: Path) -> dict[str, Any]:
    from turnout.schemas.settings import load_settings

    return dict(load_settings(config).fleet)


# -- LiteLLM -------------------------------------------------------------------------------
def import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled price map: no download at import
    try:
        import litellm
    except ImportError:
        sys.exit("LiteLLM is not installed: run `make bench-route` or `pip install -e '.[bench]'`")
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def litellm_router(fleet: dict[str, Any], strategy: str) -> Any:
    """A LiteLLM Router over Turnout's fleet.

    - one group per fleet model (``small``, ``medium``, ``large``): pinned requests and
      the complexity router's tiers resolve to these;
    - ``fleet``: one group holding every deployment, where ``strategy`` picks;
    - ``auto``: LiteLLM's complexity router, its tiers mapped by price (SIMPLE to the
      cheapest model, MEDIUM to the middle one, COMPLEX and REASONING to the dearest).

    The deployments point at a closed local port: selection never calls them, and
    completions use ``mock_response``.
    """
    from litellm import Router

    def deployment(group: str, model_id: str, d: Any) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{d.served_model}",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": "sk-bench-not-a-key",
                "input_cost_per_token": d.price_input_per_mtok / 1e6,
                "output_cost_per_token": d.price_output_per_mtok / 1e6,
            },
            "model_info": {"id": f"{group}/{model_id}"},
        }

    by_price = sorted(fleet, key=lambda m: (fleet[m].price_input_per_mtok, fleet[m].price_output_per_mtok, m))
    cheap, middle, dear = by_price[0], by_price[len(by_price) // 2], by_price[-1]
    tiers = {"SIMPLE": cheap, "MEDIUM": middle, "COMPLEX": dear, "REASONING": dear}
    model_list = [deployment(m, m, d) for m, d in fleet.items()]
    model_list += [deployment("fleet", m, d) for m, d in fleet.items()]
    model_list.append(
        {"model_name": "auto", "litellm_params": {"model": "auto_router/complexity_router", "complexity_router_config": {"tiers": tiers}}}
    )
    return Router(model_list=model_list, routing_strategy=strategy)


# -- measuring -----------------------------------------------------------------------------
@dataclass
class Result:
    label: str
    call: str
    samples_ns: list[int]
    wall_s: float
    chosen: Counter[str] = field(default_factory=Counter)

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples_ns)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1e3

    @property
    def per_s(self) -> float:
        return len(self.samples_ns) / self.wall_s


def time_sync(label: str, call: str, fn: Callable[[Any], Any], name: Callable[[Any], str], items: list[Any], warm: list[Any]) -> Result:
    for item in warm:
        fn(item)
    gc.collect()
    samples, chosen = [], Counter()
    clock = time.perf_counter_ns
    start = clock()
    for item in items:
        t = clock()
        outcome = fn(item)
        samples.append(clock() - t)
        chosen[name(outcome)] += 1
    return Result(label, call, samples, (clock() - start) / 1e9, chosen)


async def time_async(
    label: str, call: str, fn: Callable[[Any], Awaitable[Any]], name: Callable[[Any], str], items: list[Any], warm: list[Any]
) -> Result:
    for item in warm:
        await fn(item)
        await asyncio.sleep(0)
    gc.collect()
    samples, chosen = [], Counter()
    clock = time.perf_counter_ns
    start = clock()
    for item in items:
        t = clock()
        outcome = await fn(item)
        samples.append(clock() - t)
        chosen[name(outcome)] += 1
        await asyncio.sleep(0)  # let the tasks a call scheduled run: their cost counts in the rate
    return Result(label, call, samples, (clock() - start) / 1e9, chosen)


def litellm_inputs(requests: list[Any]) -> list[tuple[str | None, list[dict[str, str]]]]:
    """What a LiteLLM user passes: the pinned model if any, and the OpenAI messages."""
    return [(r.model, prompts.openai_messages(r)) for r in requests]


async def measure_litellm(fleet: dict[str, Any], requests: list[Any], warm: list[Any], n_completion: int) -> list[Result]:
    items, warm_items = litellm_inputs(requests), litellm_inputs(warm)
    results = []

    def picked(deployment: Any) -> str:
        return deployment["model_info"]["id"].split("/")[-1]

    def answered(response: Any) -> str:
        return str(response._hidden_params.get("model_id", "?")).split("/")[-1]

    for strategy, group in (("simple-shuffle", "fleet"), ("cost-based-routing", "fleet"), ("simple-shuffle", "auto")):
        router = litellm_router(fleet, strategy)
        label = "complexity-router" if group == "auto" else strategy

        async def select(item: tuple[str | None, list[dict[str, str]]], router: Any = router, group: str = group) -> Any:
            pinned, messages = item
            return await router.async_get_available_deployment(model=pinned or group, messages=messages, request_kwargs={})

        results.append(await time_async(f"litellm {label}", "async_get_available_deployment", select, picked, items, warm_items))

        if strategy == "simple-shuffle" and group == "fleet":

            def select_sync(item: tuple[str | None, list[dict[str, str]]], router: Any = router) -> Any:
                pinned, messages = item
                return router.get_available_deployment(model=pinned or "fleet", messages=messages, request_kwargs={})

            results.append(time_sync(f"litellm {label}", "get_available_deployment (sync)", select_sync, picked, items, warm_items))

        if strategy == "simple-shuffle":

            async def complete(item: tuple[str | None, list[dict[str, str]]], router: Any = router, group: str = group) -> Any:
                pinned, messages = item
                return await router.acompletion(model=pinned or group, messages=messages, mock_response="ok")

            n = min(n_completion, len(items))
            results.append(
                await time_async(f"litellm {label}", "acompletion(mock_response)", complete, answered, items[:n], warm_items[: max(50, n // 10)])
            )
    return results


# -- report ---------------------------------------------------------------------------------
def table(results: list[Result], reference: Result) -> str:
    head = f"{'engine':<28} {'call':<34} {'n':>6} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>9} {'decisions/s':>12} {'Turnout ×':>10}  chosen"
    lines = [head, "-" * len(head)]
    for r in results:
        chosen = " ".join(f"{k}={v}" for k, v in sorted(r.chosen.items()))
        speedup = reference.per_s / r.per_s
        lines.append(
            f"{r.label:<28} {r.call:<34} {len(r.samples_ns):>6} {r.pct(0.50):>9.1f} {r.pct(0.99):>9.1f} "
            f"{max(r.samples_ns) / 1e3:>9.0f} {r.per_s:>12,.0f} {speedup:>10.2f}  {chosen}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5_000, help="requests timed per engine")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up calls per engine (on another seed)")
    parser.add_argument("--n-completion", type=int, default=1_000, help="requests timed for LiteLLM's full acompletion")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=DEV_TOML, help="Turnout configuration (its fleet and rules)")
    args = parser.parse_args()

    requests = prompts.generate(args.n, args.seed)
    warm = prompts.generate(args.warmup, args.seed + 1)
    print(f"bench-route: Turnout {revision()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, config {args.config}")
    print(prompts.describe(requests))

    decide, chosen = turnout_decide(args.config)
    ours = time_sync("turnout plan_route", "decide(request)", decide, chosen, requests, warm)

    import_litellm()
    version = importlib.metadata.version("litellm")
    peers = asyncio.run(measure_litellm(fleet_of(args.config), requests, warm, args.n_completion))
    peer = next(r for r in peers if r.label == "litellm complexity-router" and r.call == "async_get_available_deployment")

    print()
    print(f"LiteLLM {version}; 'Turnout ×' is Turnout's decisions/s over that row's")
    print(table([ours, *peers], ours))
    print()
    ratio = ours.per_s / peer.per_s
    print(
        f"Turnout {ours.per_s:,.0f} decisions/s (p50 {ours.pct(0.5):.0f} µs, p99 {ours.pct(0.99):.0f} µs) vs "
        f"LiteLLM {version} complexity-router selection {peer.per_s:,.0f}/s: {ratio:.2f}× "
        f"(targets: p99 < 1000 µs {'met' if ours.pct(0.99) < 1000 else 'NOT met'}, ≥ 20× {'met' if ratio >= 20 else 'NOT met'})"
    )
    # The same target read literally: LiteLLM's Router answering with mock_response
    # (selection plus its request handling, no network), default strategy and content-aware.
    mocked = {r.label.removeprefix("litellm "): ours.per_s / r.per_s for r in peers if r.call.startswith("acompletion")}
    print("  as acompletion(mock_response): " + ", ".join(f"{label} {x:.1f}×" for label, x in mocked.items()))
    bench = {
        "name": "route",
        "p50_us": round(ours.pct(0.5), 1),
        "p99_us": round(ours.pct(0.99), 1),
        "per_s": round(ours.per_s),
        "peer_per_s": round(peer.per_s),
        "ratio": round(ratio, 2),
        "peer": f"litellm {version} complexity-router async_get_available_deployment",
        "n": len(requests),
        "rev": revision(),
        "peers_per_s": {f"{r.label} {r.call}": round(r.per_s) for r in peers},
        "ratio_vs_acompletion_mock": {label: round(x, 2) for label, x in mocked.items()},
    }
    print("BENCH " + json.dumps(bench, ensure_ascii=False))


if __name__ == "__main__":
    main()
