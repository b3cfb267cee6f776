"""Per-tenant spend, from the cost on the routing events.

The router's events agent adds each attempt's cost to a faust table keyed by
``tenant|month|partition``: one events partition, one owner, so a key never has two
writers and faust's changelog (``<prefix>.spend``) restores it after a restart. Every
router reads that changelog whole (``SpendView``) and sums the partitions, so it knows
every tenant's spend whichever partitions it owns.

Redelivered events may be counted twice (at-least-once): budgets err on the side of
stopping early, never late.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from turnout.schemas.models import RoutingEvent


def month_of(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m")


def spend_key(tenant: str, month: str, partition: int) -> str:
    return f"{tenant}|{month}|{partition}"


def billable(event: RoutingEvent) -> bool:
    """Attempts carry what a call cost; completions repeat it, so only attempts count."""
    return event.kind == "attempt" and event.cost_usd > 0


class SpendView:
    """Totals per tenant for one month, folded from the table's changelog records."""

    def __init__(self) -> None:
        self._by_key: dict[str, float] = {}
        self.ready = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = json.loads(key) if key.startswith(b'"') else key.decode()
        if value is None:
            self._by_key.pop(name, None)
            return
        try:
            self._by_key[name] = float(json.loads(value))
        except (ValueError, TypeError):
            return  # not a number: not ours

    def totals(self, month: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self._by_key.items():
            tenant, _, rest = key.partition("|")
            if rest.split("|", 1)[0] == month:
                out[tenant] = out.get(tenant, 0.0) + value
        return out
