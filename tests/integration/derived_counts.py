"""The completions each table derived from ``routing_events`` counts, for tests that
check the materialized views (and their repair) against the raw events."""

from __future__ import annotations

DERIVED_COMPLETIONS = {
    "routing_rollup_1m": "SELECT sum(events) FROM {db}.routing_rollup_1m WHERE kind = 'completion'",
    "routing_rollup_1h": "SELECT sum(events) FROM {db}.routing_rollup_1h WHERE kind = 'completion'",
    "routing_latency": "SELECT sum(events) FROM {db}.routing_latency WHERE period_s = 60 AND dimension = 'all'",
    "request_sample_events": "SELECT count() FROM {db}.request_sample_events FINAL WHERE kind = 'completion'",
    "request_sample_events_sparse": "SELECT count() FROM {db}.request_sample_events_sparse FINAL WHERE kind = 'completion'",
}


def derived_completions(client, db: str) -> dict[str, int]:
    return {table: client.query(sql.format(db=db)).result_rows[0][0] for table, sql in DERIVED_COMPLETIONS.items()}


def expected_completions(client, db: str) -> dict[str, int]:
    """What each derived table should count, from the raw events (no shadow traffic):
    every completion, and in the sparse sample those of the requests hashed below 2^60."""
    stored, sparse = client.query(
        f"SELECT count(), countIf(cityHash64(request_id) < pow(2, 60)) FROM {db}.routing_events FINAL WHERE kind = 'completion'"
    ).result_rows[0]
    return {**dict.fromkeys(DERIVED_COMPLETIONS, stored), "request_sample_events_sparse": sparse}
