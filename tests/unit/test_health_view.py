"""The router's health view: backlogs summed over fresh replica reports, breakers open
only when every replica says so, stale reports forgotten."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from turnout.schemas.models import DeploymentHealth
from turnout.schemas.serde import AvroCodec
from turnout.streams.engine import Health
from turnout.streams.health import HealthView

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
codec = AvroCodec()


def report(view: HealthView, model: str, replica: str, age_s: float = 1, **fields) -> None:
    record = DeploymentHealth(model=model, replica=replica, updated_at=NOW - timedelta(seconds=age_s), **fields)
    view.apply(f"{model}/{replica}".encode(), codec.encode(record))


def test_backlogs_add_up_and_one_healthy_replica_keeps_the_breaker_closed():
    view = HealthView(codec)
    report(view, "small", "a", backlog=10)
    report(view, "small", "b", backlog=5, breaker="open")
    report(view, "large", "a", breaker="open")
    assert view.snapshot(NOW) == {"small": Health(breaker_open=False, backlog=15), "large": Health(breaker_open=True, backlog=0)}


def test_stale_reports_and_tombstones_are_forgotten():
    view = HealthView(codec, stale_after_s=30)
    report(view, "small", "a", age_s=31, breaker="open")
    report(view, "medium", "a", backlog=3)
    view.apply(b"medium/a", None)
    view.apply(b"junk", b"not avro")
    assert view.snapshot(NOW) == {}
