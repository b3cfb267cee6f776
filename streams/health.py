"""The router's view of deployment health, from the worker reports on ``<prefix>.health``.

Each worker replica reports its breaker state and the backlog on its partitions every
few seconds (compacted, keyed ``<model>/<replica>``). A model's backlog is the sum over
its fresh reports; its breaker counts as open when every fresh report says open (one
healthy replica still serves). Reports older than ``stale_after_s`` are ignored: a
replica that stopped reporting has stopped serving, and its partitions moved.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from turnout.schemas.models import DeploymentHealth
from turnout.schemas.serde import AvroCodec, DecodeError

from .engine import Health


class HealthView:
    def __init__(self, codec: AvroCodec, stale_after_s: float = 30.0) -> None:
        self._codec = codec
        self._stale_after = timedelta(seconds=stale_after_s)
        self._reports: dict[str, DeploymentHealth] = {}
        self.ready = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self._reports.pop(key.decode(), None)
            return
        try:
            self._reports[key.decode()] = self._codec.decode(value, DeploymentHealth)
        except DecodeError:
            return

    def snapshot(self, now: datetime | None = None) -> dict[str, Health]:
        now = now or datetime.now(timezone.utc)
        fresh: dict[str, list[DeploymentHealth]] = {}
        for report in self._reports.values():
            if now - report.updated_at <= self._stale_after:
                fresh.setdefault(report.model, []).append(report)
        return {
            model: Health(breaker_open=all(r.breaker == "open" for r in reports), backlog=sum(r.backlog for r in reports))
            for model, reports in fresh.items()
        }
