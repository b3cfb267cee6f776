"""Prompt text storage is off unless configured: on the integration stack (stack.toml has
no [prompts] section), requests are answered and recorded as events, and not one
prompt reaches the prompts topic or ClickHouse. Storage turned on is in
test_prompts_whatif.py."""

from __future__ import annotations

from stacks import read_topic

from turnout.analytics.store import open_client
from turnout.producers.client import TurnoutClient, new_request


async def test_no_prompt_is_published_or_stored_by_default(stack):
    assert not stack.settings.prompts.store
    requests = [new_request("Hello! How are you today?", "acme"), new_request("Mail me at jane.doe@example.com please.", "acme")]
    async with TurnoutClient(stack.settings.kafka) as client:
        responses = await client.gather(await client.publish(requests), 90)
    assert all(r.status == "ok" for r in responses.values())

    stack.stop_children([c.name for c in stack.children if c.name.startswith(("router", "worker"))])
    stack.stop_children(["sink"], timeout_s=60)  # the sink drains its topics before it exits
    assert await read_topic(stack.settings, stack.settings.topics.prompts, rounds=8) == []
    client = open_client(stack.settings.clickhouse)
    try:
        db = stack.settings.clickhouse.database
        ids = [r.id for r in requests]
        recorded = client.query(f"SELECT count() FROM {db}.routing_events WHERE request_id IN {{ids:Array(String)}}", parameters={"ids": ids})
        assert recorded.result_rows[0][0] > 0  # the requests were recorded: the sink ran and drained
        assert client.query(f"SELECT count() FROM {db}.prompts").result_rows[0][0] == 0
    finally:
        client.close()  # chDB serves one directory per process
