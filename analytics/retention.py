"""How long stored prompt text is kept: ``prompts.ttl_days`` applied to the table.

A migration cannot read settings, so ``007_prompts.sql`` creates the table with the
default TTL and this module brings it to the configured value whenever the sink starts
(and on ``turnout migrate``). It asks the table for its TTL first and alters it only
when it differs: altering rewrites the TTL of every existing part (ClickHouse's
``materialize_ttl_after_modify``), which is what a shorter TTL needs (rows already too
old are deleted then) and what an unchanged one must not pay at every start.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

PROMPTS_TABLE = "prompts"
_TTL_DAYS = re.compile(r"\bTTL toDateTime\(ts\) \+ toIntervalDay\((\d+)\)")


def prompt_ttl_days(client: Client, database: str) -> int | None:
    """The days the prompts table keeps a row, or ``None`` when it has no TTL in the
    form this module writes (or no table: the migrations have not run)."""
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {table:String}",
        parameters={"db": database, "table": PROMPTS_TABLE},
    ).result_rows
    match = _TTL_DAYS.search(rows[0][0]) if rows else None
    return int(match.group(1)) if match else None


def apply_prompt_ttl(client: Client, database: str, days: int) -> bool:
    """Make the prompts table keep rows ``days`` days after their request was created;
    return whether it had to change. Idempotent: safe at every start-up."""
    if days < 1:
        raise ValueError(f"a prompt TTL of {days} days would delete every prompt as it lands; the least is 1")
    if prompt_ttl_days(client, database) == days:
        return False
    client.command(f"ALTER TABLE {database}.{PROMPTS_TABLE} MODIFY TTL toDateTime(ts) + toIntervalDay({int(days)})")
    return True
