"""Prompt text storage and the policy what-if on the real stack: requests of an opted-in
tenant go through the Tansu broker, the router, the workers and the sink into chDB,
redacted; another tenant's are not stored; `turnout whatif` replays the stored ones
through candidate policies. The tests run in file order: the last ones stop the stack's
writers and read the store the sink filled."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import clickhouse_connect
import pytest
from click.testing import CliRunner
from stacks import stack_fixture

from turnout.analytics.retention import apply_prompt_ttl, prompt_ttl_days
from turnout.analytics.store import migrate, open_client
from turnout.cli import cli
from turnout.producers.client import TurnoutClient, new_request

ROUTES = """
[[routes]]
name = "code"
match = { task_type = "code-generation" }
model = "dear"
fallback = ["cheap"]

[[routes]]
name = "default"
model = "cheap"
"""

CONFIG = """
[kafka]
topic_prefix = "pwhat"
partitions = 2

[router]
policy_version = "recorded-1"

[prompts]
store = true
tenants = ["optin"]
ttl_days = 9

[fleet.cheap]
provider = "simulated"
served_model = "sim-cheap"
price_input_per_mtok = 0.10
price_output_per_mtok = 0.40
typical_latency_ms = 200

[fleet.dear]
provider = "simulated"
served_model = "sim-dear"
price_input_per_mtok = 10.0
price_output_per_mtok = 30.0
typical_latency_ms = 900

""" + ROUTES + """
[sink]
flush_interval_s = 0.2

[simulator]
seed = 5

[simulator.default]
latency_ms = 5
latency_jitter_ms = 1
"""

DENY_DEAR = """
version = "candidate-no-dear"

""" + ROUTES + """
[default_tenant]
deny_models = ["dear"]
"""

ALL_DEAR = """
version = "candidate-all-dear"

[[routes]]
model = "dear"
"""

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
CODE = [f"Write a Python function number {i} that parses ISO dates and returns a datetime." for i in range(4)]
CHAT = [f"Hello there, question {i}: why is the sky blue?" for i in range(4)]
PLANTED = f"Please send the receipt to {EMAIL}, my card is {CARD}. Thanks!"
TIMEOUT_S = 90
SENT: dict[str, list[str]] = {"optin": [], "other": []}

stack = stack_fixture(CONFIG, "prompts-whatif")


async def test_requests_are_answered_with_storage_on(stack):
    optin = [new_request(text, "optin") for text in (*CODE, *CHAT, PLANTED)]
    other = [new_request(text, "other") for text in (CHAT[0], PLANTED)]
    async with TurnoutClient(stack.settings.kafka) as client:
        ids = await client.publish([*optin, *other])
        responses = await client.gather(ids, TIMEOUT_S)
    assert all(r.status == "ok" for r in responses.values())
    assert {responses[r.id].model for r in optin[: len(CODE)]} == {"dear"}
    SENT["optin"] = [r.id for r in optin]
    SENT["other"] = [r.id for r in other]


def test_the_prompt_ttl_is_applied_once_and_deletes_what_is_older(tmp_path):
    """On a store of its own (chDB: one directory open per process at a time)."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    try:
        migrate(client, "ttl")
        assert prompt_ttl_days(client, "ttl") == 30  # the migration's default
        now = datetime.now(timezone.utc)
        signals = {"task_type": "qa", "task_confidence": 1.0, "task_method": "m", "input_tokens": 1, "token_method": "t", "turns": 1,
                   "language": "en", "language_confidence": 1.0, "expected_output_tokens": 1, "complexity": 0.1, "capabilities": [], "sensitive_kinds": []}
        rows = [[f"r{age}", "t", now - timedelta(days=age), "v", [], [], None, {}, signals] for age in (1, 10)]
        client.insert("ttl.prompts", rows, column_names=["request_id", "tenant", "ts", "policy_version", "messages", "input", "model", "metadata", "signals"])

        assert apply_prompt_ttl(client, "ttl", 7) is True
        assert apply_prompt_ttl(client, "ttl", 7) is False  # idempotent: nothing to alter the second time
        assert prompt_ttl_days(client, "ttl") == 7
        client.command("OPTIMIZE TABLE ttl.prompts FINAL")  # as a background merge would, in time
        assert [row[0] for row in client.query("SELECT request_id FROM ttl.prompts").result_rows] == ["r1"]
        with pytest.raises(ValueError, match="least is 1"):
            apply_prompt_ttl(client, "ttl", 0)
    finally:
        client.close()


def test_the_store_holds_the_opted_in_prompts_redacted_and_nothing_else(stack):
    stack.stop_children([c.name for c in stack.children if c.name.startswith(("router", "worker"))])
    stack.stop_children(["sink"], timeout_s=60)  # the sink drains its topics before it exits
    assert stack.child("sink").process.returncode == 0

    client = open_client(stack.settings.clickhouse)
    try:
        db = stack.settings.clickhouse.database
        stored = client.query(f"SELECT request_id, tenant, messages FROM {db}.prompts FINAL").result_rows
        assert sorted(row[0] for row in stored) == sorted(SENT["optin"])  # the other tenant never opted in
        contents = {row[0]: row[2][0]["content"] for row in stored}
        planted = contents[SENT["optin"][-1]]
        assert planted == "Please send the receipt to [REDACTED:email], my card is [REDACTED:payment_card]. Thanks!"
        assert contents[SENT["optin"][0]] == CODE[0]  # a clean prompt is kept as written

        everything = b""
        for (table,) in client.query(f"SELECT name FROM system.tables WHERE database = '{db}' AND engine NOT LIKE '%View%'").result_rows:
            everything += client.raw_query(f"SELECT * FROM {db}.{table} FORMAT TSV")
        assert len(everything) > 1000  # the events and the prompts are there to search
        for needle in (EMAIL, CARD, CARD.replace(" ", ""), "4111 1111"):
            assert needle.encode() not in everything, f"{needle!r} is stored in ClickHouse"
        assert prompt_ttl_days(client, db) == 9  # prompts.ttl_days, applied when the sink started
    finally:
        client.close()  # chDB serves one directory per process: free it for the CLI below


async def turnout_whatif(stack, monkeypatch, tmp_path, policy: str, *flags: str):
    """``turnout whatif --policy <policy> --since 1h`` as a user runs it (in a thread: the
    CLI runs its own event loop), on the store of the stack."""
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "candidate.toml"
    path.write_text(policy)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["whatif", "--policy", str(path), "--since", "1h", *flags])
    assert result.exit_code == 0, result.output
    return result.output


async def whatif(stack, monkeypatch, tmp_path, policy: str) -> dict:
    return json.loads(await turnout_whatif(stack, monkeypatch, tmp_path, policy, "--tenant", "optin", "--json"))


async def test_whatif_denying_the_dear_model_estimates_a_lower_cost(stack, monkeypatch, tmp_path):
    figures = await whatif(stack, monkeypatch, tmp_path, DENY_DEAR)

    actual, candidate = figures["actual"], figures["candidate"]
    assert figures["actual_policies"] == ["recorded-1"] and figures["candidate_policy"] == "candidate-no-dear"
    assert actual["requests"] == candidate["requests"] == len(SENT["optin"])
    assert figures["left_out_without_outcome"] == 0
    assert figures["changed_model"] == len(CODE)  # the code requests move from dear to cheap; the rest stay
    assert candidate["refused"] == actual["refused"] == 0
    assert candidate["cost_usd"] < actual["cost_usd"] / 5
    assert figures["estimated_output_tokens_from"] == {"actual answer": len(CODE)}
    assert figures["estimated_latency_from"] == {"observed": len(CODE)}  # cheap answered in the window
    assert {row["model"]: row["candidate_requests"] for row in figures["by_model"]} == {"cheap": len(SENT["optin"]), "dear": 0}


async def test_whatif_sending_everything_to_the_dear_model_estimates_a_higher_cost(stack, monkeypatch, tmp_path):
    figures = await whatif(stack, monkeypatch, tmp_path, ALL_DEAR)
    assert figures["changed_model"] == len(CHAT) + 1  # the chat requests and the planted one
    assert figures["candidate"]["cost_usd"] > figures["actual"]["cost_usd"]
    assert figures["candidate"]["p50_ms"] is not None and figures["actual"]["p95_ms"] is not None


async def test_whatif_prints_a_comparison_table(stack, monkeypatch, tmp_path):
    output = await turnout_whatif(stack, monkeypatch, tmp_path, DENY_DEAR)
    assert "what-if: candidate-no-dear vs recorded-1" in output
    assert "changed model" in output and "p95_ms" in output
