"""Spend per tenant, folded from the spend table's changelog records."""

from __future__ import annotations

from datetime import datetime, timezone

from turnout.schemas.models import RoutingEvent
from turnout.streams.spend import SpendView, billable, month_of, spend_key


def test_totals_sum_the_partitions_of_one_month():
    view = SpendView()
    view.apply(b'"acme|2026-11|0"', b"1.5")
    view.apply(b'"acme|2026-11|2"', b"2.0")
    view.apply(b'"acme|2026-10|0"', b"100")
    view.apply(b'"beta|2026-11|1"', b"0.25")
    view.apply(b'"acme|2026-11|0"', b"1.75")  # a later value for a key replaces the earlier one
    assert view.totals("2026-11") == {"acme": 3.75, "beta": 0.25}
    assert view.totals("2026-10") == {"acme": 100.0}


def test_tombstones_and_garbage_are_handled():
    view = SpendView()
    view.apply(b'"acme|2026-11|0"', b"1")
    view.apply(b'"acme|2026-11|0"', None)
    view.apply(b'"beta|2026-11|0"', b"not a number")
    view.apply(None, b"3")
    assert view.totals("2026-11") == {}


def test_only_paid_attempts_are_billable():
    attempt = RoutingEvent(event_id="e", request_id="r", tenant="t", kind="attempt", cost_usd=0.1)
    assert billable(attempt)
    assert not billable(attempt.model_copy(update={"cost_usd": 0.0}))
    assert not billable(attempt.model_copy(update={"kind": "completion"}))  # it repeats the attempt's cost


def test_keys_and_months():
    assert spend_key("acme", "2026-11", 2) == "acme|2026-11|2"
    assert month_of(datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)) == "2026-12"
