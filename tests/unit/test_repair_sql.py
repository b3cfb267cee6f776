"""The SQL the derived-table repair builds (``analytics/repair.py``): which blocks of
time a set of minutes falls in, the filters on them, and a view's query narrowed to its
source's rows in those blocks. Run against chDB in tests/integration/test_repair.py."""

from __future__ import annotations

import pytest

from turnout.analytics.repair import DERIVED, RAW, Derived, RepairReport, blocks_of, in_blocks, over_source, values_in

H = 1_764_396_000  # 2025-11-29 06:00 UTC: a whole hour, and six


def test_minutes_fall_in_the_blocks_that_start_at_their_aligned_boundaries():
    minutes = [H + 60, H + 120, H + 3600 + 59 * 60, H + 7 * 3600]
    assert blocks_of(minutes, 60) == sorted(set(minutes))
    assert blocks_of(minutes, 3600) == [H, H + 3600, H + 7 * 3600]
    assert all(block % 21600 == 0 for block in blocks_of(minutes, 21600))
    assert blocks_of([], 60) == []


def test_the_block_filter_bounds_the_range_then_names_each_block():
    sql = in_blocks("ts", [H, H + 7200], 3600)
    assert sql.startswith(f"ts >= toDateTime({H}, 'UTC') AND ts < toDateTime({H + 10800}, 'UTC')")  # the range prunes parts
    assert sql.endswith(f"intDiv(toUInt32(ts), 3600) * 3600 IN ({H}, {H + 7200})")  # the hour between is not in it


def test_bucket_values_are_listed_as_integers_one_column_or_several():
    assert values_in(("minute",), {(H + 60,), (H,)}) == f"toUInt64(minute) IN ({H}, {H + 60})"
    assert values_in(("period_s", "period"), {(3600, H), (60, H)}) == f"(toUInt64(period_s), toUInt64(period)) IN ((60, {H}), (3600, {H}))"


VIEW = "SELECT toStartOfMinute(ts) AS minute, count() AS events FROM db.routing_events GROUP BY minute"
ROLLUP = Derived("v", "routing_rollup_1m", RAW, "ts", "minute", 60, bucket=("minute",))


def test_a_views_query_is_run_over_its_sources_rows_in_the_blocks_read_final():
    sql = over_source(VIEW, "db", ROLLUP, [H])
    assert "FROM db.routing_events GROUP" not in sql
    assert f"FROM (SELECT * FROM db.routing_events FINAL WHERE {in_blocks('ts', [H], 60)}) AS routing_events GROUP BY minute" in sql
    assert sql.startswith("SELECT toStartOfMinute(ts) AS minute, count() AS events ")


def test_a_source_is_not_mistaken_for_a_longer_name_it_begins():
    sample = Derived("v", "request_sample_events_sparse", "request_sample_events", "ts", "ts", 60, key=("request_id",))
    sql = over_source("SELECT * FROM db.request_sample_events WHERE sample_key < 16", "db", sample, [H])
    assert sql.startswith("SELECT * FROM (SELECT * FROM db.request_sample_events FINAL WHERE")
    with pytest.raises(ValueError, match="does not read db.request_sample_events once"):
        over_source("SELECT * FROM db.request_sample_events_sparse", "db", sample, [H])


@pytest.mark.parametrize("view", ["SELECT 1 FROM db.other", VIEW + " UNION ALL " + VIEW])
def test_a_view_that_does_not_read_its_source_exactly_once_is_refused(view):
    with pytest.raises(ValueError, match="does not read db.routing_events once"):
        over_source(view, "db", ROLLUP, [H])


def test_every_derived_table_comes_after_its_source_and_names_a_bucket_or_a_key():
    seen = {RAW}
    for derived in DERIVED:
        assert derived.source in seen, f"{derived.target} is checked before its source {derived.source}"
        assert bool(derived.bucket) != bool(derived.key)
        assert derived.block_s in (60, 3600, 21600)
        seen.add(derived.target)


def test_the_report_says_what_was_mended():
    quiet = RepairReport(rounds=1, checked_minutes=4)
    assert not quiet.mended and "every derived table agrees" in str(quiet)
    mended = RepairReport(rounds=2, checked_minutes=4, rebuilt_buckets={"routing_rollup_1m": 1}, restored_rows={"request_sample_events": 5})
    assert mended.mended
    assert str(mended) == ("4 minutes of recent events checked in 2 rounds; routing_rollup_1m: 1 buckets rebuilt; "
                           "request_sample_events: 5 rows restored")


def test_after_a_rebalance_one_sink_of_the_group_checks_the_derived_tables():
    from aiokafka import TopicPartition

    from turnout.analytics.sink import checks_derived_tables

    first, second = TopicPartition("t.events", 0), TopicPartition("t.events", 1)
    feedback = TopicPartition("t.feedback", 0)
    assert checks_derived_tables({first, second, feedback}, "t.events")  # a sink alone owns them all
    assert not checks_derived_tables({second, feedback}, "t.events")  # another member owns partition 0
    assert not checks_derived_tables(set(), "t.events")
