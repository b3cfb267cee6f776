"""``turnout demo`` (``make demo``): the whole flow once, on the embedded stack.

Publishes the sample prompts, waits for every response, prints where each went and
why, then stops the stack (the sink drains the events into chDB) and prints the
report from ClickHouse. Succeeds only if every prompt got a successful response and
ClickHouse recorded one completion per response.
"""

from __future__ import annotations

import asyncio
import json
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from turnout.analytics.report import build_report
from turnout.analytics.store import open_client
from turnout.producers.client import ResponseTimeout, TurnoutClient, new_request
from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.settings import Settings

from .render import print_report, print_table
from .stack import DevStack

TENANT = "demo"


def load_prompts(path: Path | None) -> list[dict]:
    """Rows of ``{"prompt": …, "tag"?, "tenant"?, "model"?, "expect"?}`` (``expect``: the
    error code a refusal should carry), checked before anything starts."""
    text = path.read_text() if path else files("turnout.producers").joinpath("samples/demo_prompts.jsonl").read_text()
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"line {number}: expected an object with a string 'prompt'")
        rows.append({"tag": f"#{number}", **row})
    return rows


async def publish_and_collect(settings: Settings, rows: list[dict], timeout_s: float, console: Console) -> tuple[list[tuple[str, InferenceRequest]], dict[str, InferenceResponse]]:
    prompts = [(row["tag"], new_request(row["prompt"], row.get("tenant", TENANT), model=row.get("model"))) for row in rows]
    async with TurnoutClient(settings.kafka) as client:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("publishing", total=len(prompts))
            ids = []
            for _, request in prompts:
                ids += await client.publish([request])
                progress.advance(task)
        with console.status(f"waiting for {len(ids)} responses"):
            return prompts, await client.gather(ids, timeout_s)


def run_demo(config_path: Path, prompts_path: Path | None, timeout_s: float, workdir: Path, console: Console) -> bool:
    rows = load_prompts(prompts_path)
    stack = DevStack(config_path, workdir)
    responses: dict[str, InferenceResponse] = {}
    try:
        with console.status("starting the embedded stack (Tansu, chDB, simulator, router, workers, sink)"):
            settings = stack.start()
        console.print(f"broker [cyan]{settings.kafka.bootstrap_servers}[/], work dir {workdir}")
        if stack.local_model_note:
            console.print(stack.local_model_note)
        try:
            prompts, responses = asyncio.run(publish_and_collect(settings, rows, timeout_s, console))
            expected = {request.id: row.get("expect") for row, (_, request) in zip(rows, prompts)}
        except ResponseTimeout as exc:
            console.print(f"[red]{exc}[/]; logs in {stack.logs}")
            return False
    finally:
        with console.status("stopping the stack (the sink drains the events into ClickHouse)"):
            stack.stop()
    _print_decisions(console, prompts, responses)
    client = open_client(settings.clickhouse)
    tables = build_report(client, settings.clickhouse.database)
    print_report(console, tables)
    return _verdict(console, responses, expected, client, settings)


def _print_decisions(console: Console, prompts: list[tuple[str, InferenceRequest]], responses: dict[str, InferenceResponse]) -> None:
    rows = []
    for tag, request in prompts:
        r = responses[request.id]
        text = request.messages[-1].content.replace("\n", " ")
        rows.append(
            (
                tag,
                text[:38] + ("…" if len(text) > 38 else ""),
                r.routing.task_type,
                r.routing.route,
                r.model or "-",
                " → ".join(r.routing.fallback_path),
                r.status if r.status == "ok" else f"{r.status}: {r.error.code if r.error else ''}",
                f"{r.latency_ms:.0f}",
                f"{r.cost_usd:.6f}",
            )
        )
    print_table(console, "Routing decisions", ["tag", "prompt", "task", "route", "model", "path", "status", "ms", "cost $"], rows)


def _verdict(console: Console, responses: dict[str, InferenceResponse], expected: dict[str, str | None], client, settings: Settings) -> bool:
    """Every prompt answered as expected (served, or refused with the expected code), and
    ClickHouse holds one final outcome per served request and one rejection per refusal."""
    wrong = [r for r in responses.values() if (r.error.code if r.error else None) != expected.get(r.id)]
    refused = sum(1 for r in responses.values() if r.status == "error" and r.model is None)
    db = settings.clickhouse.database
    recorded = client.query(f"SELECT count() FROM {db}.routing_events FINAL WHERE kind IN ('completion', 'failure')").result_rows[0][0]
    rejected = client.query(f"SELECT count() FROM {db}.routing_events FINAL WHERE kind = 'rejected'").result_rows[0][0]
    console.print(
        f"responses: {len(responses)} (refused by policy as expected: {refused}), not as expected: {len(wrong)}, "
        f"final outcomes in ClickHouse: {recorded}, rejections: {rejected}"
    )
    if wrong or recorded + rejected != len(responses):
        console.print("[red]demo failed[/]")
        return False
    console.print("[green]every prompt got a response, and ClickHouse recorded each one[/]")
    return True
