"""Policy versions on the real broker: publish, every router follows; a bad version is
rejected before it is published; rollback restores the previous version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from turnout.cli import cli
from turnout.producers.client import TurnoutClient, new_request
from turnout.stack import DevStack

CONFIG = Path(__file__).with_name("stack.toml")

V2 = """
version = "itest-2"

[[routes]]
name = "everything-to-medium"
model = "medium"
max_fallbacks = 0
"""

BAD = """
version = "itest-3"

[[routes]]
name = "nowhere"
model = "huge"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DevStack(CONFIG, tmp_path_factory.mktemp("policy-stack"))
    stack.start()
    yield stack
    stack.stop()


async def turnout(stack, monkeypatch, *args: str):
    """The CLI as a user runs it (in a thread: it runs its own event loop)."""
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def routed_version(stack, expect: str, attempts: int = 40):
    """Ask until a response is decided under ``expect`` (routers switch within a poll)."""
    async with TurnoutClient(stack.settings.kafka) as client:
        for _ in range(attempts):
            response = await client.request(new_request("Hello there, how are you?", "acme"), timeout_s=60)
            if response.routing.policy_version == expect:
                return response
    raise AssertionError(f"no response decided under {expect} after {attempts} requests")


async def test_publish_then_reject_a_bad_version_then_roll_back(stack, tmp_path, monkeypatch):
    first = await routed_version(stack, "itest-1")
    assert first.model == "small"

    (tmp_path / "v2.toml").write_text(V2)
    published = await turnout(stack, monkeypatch, "policy", "publish", str(tmp_path / "v2.toml"))
    assert published.exit_code == 0, published.output
    second = await routed_version(stack, "itest-2")
    assert (second.model, second.routing.route) == ("medium", "everything-to-medium")

    (tmp_path / "bad.toml").write_text(BAD)
    refused = await turnout(stack, monkeypatch, "policy", "publish", str(tmp_path / "bad.toml"))
    assert refused.exit_code != 0
    assert "routes[0].model: unknown model 'huge'" in refused.output
    still = await routed_version(stack, "itest-2", attempts=1)  # the old version keeps serving
    assert still.model == "medium"

    shown = await turnout(stack, monkeypatch, "policy", "show")
    assert "in force: itest-2" in shown.output and "before it: itest-1" in shown.output

    rolled = await turnout(stack, monkeypatch, "policy", "rollback")
    assert rolled.exit_code == 0, rolled.output
    back = await routed_version(stack, "itest-1")
    assert back.model == "small"

    again = await turnout(stack, monkeypatch, "policy", "rollback")
    assert again.exit_code != 0 and "no earlier version" in again.output


async def test_a_tenant_over_its_budget_is_refused_once_its_spend_is_known(stack):
    async with TurnoutClient(stack.settings.kafka) as client:
        first = await client.request(new_request("What time is it in Paris?", "thrifty"), timeout_s=60)
        assert first.status == "ok" and first.cost_usd > 0
        for _ in range(60):  # the spend reaches every router through the table's changelog
            later = await client.request(new_request("And in Tokyo?", "thrifty"), timeout_s=60)
            if later.status == "error":
                break
            await asyncio.sleep(0.25)
        assert later.status == "error" and later.error.code == "budget_exceeded"
        assert "tenants.thrifty" in later.error.message or later.error.details.get("rule") == "tenants.thrifty.monthly_budget_usd"
        other = await client.request(new_request("And in Lima?", "acme"), timeout_s=60)
        assert other.status == "ok"  # only the tenant over budget is refused
