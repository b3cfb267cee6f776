"""The dashboard's window arithmetic and the shaping of its traffic rows, without a store:
the charts rely on every bucket being present and aligned, and on "no traffic" reading as
a gap (null) for rates and percentiles but as zero for counts."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from turnout.analytics.dashboard import DashboardWindow, _finite, traffic_payload

NOW = datetime(2026, 3, 2, 11, 47, 30, tzinfo=timezone.utc)


def test_the_window_ends_on_a_whole_bucket_and_has_every_bucket():
    shown = DashboardWindow.parse({"range": "6h"}, now=lambda: NOW)
    assert shown.window.until == datetime(2026, 3, 2, 11, 50, tzinfo=timezone.utc)  # rounded up to 5 minutes
    assert shown.window.since == datetime(2026, 3, 2, 5, 50, tzinfo=timezone.utc)
    buckets = shown.buckets()
    assert len(buckets) == 72 and buckets[0] == int(shown.window.since.timestamp())
    assert all(b - a == 300 for a, b in zip(buckets, buckets[1:]))


def test_until_names_the_window_and_bad_input_is_refused():
    shown = DashboardWindow.parse({"range": "24h", "until": "2026-03-02T12:00Z"})
    assert shown.window.until == datetime(2026, 3, 2, 12, tzinfo=timezone.utc) and shown.bucket_s == 3600
    with pytest.raises(ValueError, match="range must be one of"):
        DashboardWindow.parse({"range": "5h"})
    with pytest.raises(ValueError, match="ISO 8601"):
        DashboardWindow.parse({"range": "1h", "until": "yesterday"})


def row(bucket, dimension="all", key="", is_total=0, requests=0, failed=0, latency=(math.nan,) * 3, spend=0.0):
    return {
        "bucket": bucket, "is_total": is_total, "dimension": dimension, "key": key, "requests": requests, "failed": failed,
        "attempts": requests, "failed_attempts": failed, "spend_usd": spend, "tokens_in": 0, "tokens_out": 0, "latency_ms": list(latency),
    }


def test_traffic_rows_become_aligned_series_with_gaps_and_totals():
    shown = DashboardWindow.parse({"range": "1h", "until": "2026-03-02T12:00Z"})
    minute = datetime(2026, 3, 2, 11, 30)  # naive UTC, as clickhouse-connect returns DateTime('UTC')
    payload = traffic_payload(
        [
            row(minute, "route", "code", requests=4, failed=1, latency=(100.0, 200.0, 300.0), spend=0.5),
            row(datetime(1970, 1, 1), "route", "code", is_total=1, requests=4, failed=1, latency=(100.0, 200.0, 300.0), spend=0.5),
            row(minute, "route", "chat", requests=2, failed=2),  # every request failed: no latency at all
        ],
        shown,
    )
    index = payload["buckets"].index(int(minute.replace(tzinfo=timezone.utc).timestamp()))
    code = payload["series"]["route"]["code"]
    assert len(code["requests"]) == 60 and code["requests"][index] == 4 and sum(code["requests"]) == 4  # counts: 0 elsewhere
    assert code["p95_ms"][index] == 200.0 and code["p95_ms"].count(None) == 59  # percentiles: gaps elsewhere
    assert code["error_rate"][index] == 0.25
    assert payload["series"]["route"]["chat"]["p50_ms"][index] is None  # failed requests have no latency
    assert payload["totals"]["route"]["code"]["spend_usd"] == 0.5


def test_json_gets_null_for_what_it_cannot_encode():
    assert _finite({"change": math.inf, "p": [math.nan, 0.5]}) == {"change": None, "p": [None, 0.5]}
