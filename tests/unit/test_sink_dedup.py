"""The sink's deduplication memory, the row it builds from a record, and the feedback
record's id: the pure parts of the analytics sink (the broker and chDB parts are in
tests/integration/test_sink.py)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from factories import T0, make_settings
from pydantic import ValidationError

from turnout.analytics.dedup import RecentIds
from turnout.analytics.rows import model_datum
from turnout.analytics.sink import _Table, record_row, sink_streams
from turnout.schemas.models import Feedback
from turnout.schemas.serde import AvroCodec
from turnout.schemas.settings import SinkSettings


def test_an_id_is_new_once() -> None:
    ids = RecentIds(10)
    assert ids.add("a") is True
    assert ids.add("a") is False
    assert "a" in ids and "b" not in ids
    assert len(ids) == 1


def test_the_bound_forgets_the_oldest_first() -> None:
    ids = RecentIds(3)
    for item in "abcd":
        ids.add(item)
    assert len(ids) == 3
    assert "a" not in ids
    assert all(item in ids for item in "bcd")
    assert ids.add("a") is True  # forgotten, so new again: the price of the bound
    assert "b" not in ids


def test_a_duplicate_does_not_refresh_or_grow_the_memory() -> None:
    ids = RecentIds(2)
    ids.add("a")
    ids.add("b")
    ids.add("a")  # a duplicate: not re-queued, so it still goes first
    ids.add("c")
    assert "a" not in ids and "b" in ids and "c" in ids


def test_update_takes_ids_oldest_first() -> None:
    ids = RecentIds(2)
    ids.update(["old", "mid", "new"])
    assert "old" not in ids and "mid" in ids and "new" in ids


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentIds(0)


def table(stream_index: int = 1, max_ids: int = 100) -> _Table:
    return _Table(sink_streams(make_settings())[stream_index], "db", max_ids, AvroCodec())


def test_a_table_drops_duplicates_inside_one_batch_and_across_batches() -> None:
    feedback = table()
    datums = [model_datum(Feedback(request_id=f"r{i % 3}", tenant="t", metric="rating", score=i, ts=T0)) for i in range(5)]
    kept = [feedback.take_datum(datum) for datum in datums]
    assert kept == [True, True, True, False, False]
    assert feedback.rows.columns.column("feedback_id") == ["r0:rating:", "r1:rating:", "r2:rating:"]
    sealed = feedback.seal()  # handed over for the insert
    assert len(sealed) == 3 and len(feedback.rows) == 0
    assert feedback.take_datum(datums[0]) is False  # a replay in a later batch


def test_streams_name_their_tables_and_id_columns() -> None:
    streams = {s.table: s for s in sink_streams(make_settings())}
    assert {"routing_events", "feedback"} <= set(streams)
    assert streams["feedback"].topic.endswith(".feedback")
    for stream in streams.values():
        assert stream.id_column in stream.columns
    assert table().name == "db.feedback"


def test_record_row_is_in_column_order_with_utc_timestamps() -> None:
    local = datetime(2025, 3, 14, 17, 9, 26, 535000, tzinfo=timezone(timedelta(hours=2)))
    feedback = Feedback(request_id="r", tenant="t", metric="thumbs", score=1, comment="ok", ts=local)
    row = record_row(feedback, ["ts", "score", "feedback_id"])
    assert row == [T0, 1.0, "r:thumbs:"]
    assert row[0].tzinfo == timezone.utc


def test_feedback_id_defaults_to_request_metric_and_source() -> None:
    assert Feedback(request_id="r", tenant="t", metric="rating", score=4, source="app").feedback_id == "r:rating:app"
    assert Feedback(feedback_id="mine", request_id="r", tenant="t", metric="rating", score=4).feedback_id == "mine"


@pytest.mark.parametrize(
    ("change", "where"),
    [({"request_id": ""}, "request_id"), ({"metric": ""}, "metric"), ({"score": math.nan}, "score"), ({"score": math.inf}, "score")],
)
def test_feedback_refuses_what_no_query_could_use(change: dict, where: str) -> None:
    fields = {"request_id": "r", "tenant": "t", "metric": "rating", "score": 4.0} | change
    with pytest.raises(ValidationError, match=where):
        Feedback(**fields)


@pytest.mark.parametrize("change", [{"dedup_window_s": -1}, {"dedup_max_ids": 0}])
def test_dedup_settings_are_validated(change: dict) -> None:
    with pytest.raises(ValidationError):
        SinkSettings(**change)


def test_dedup_settings_are_described() -> None:
    for name in ("dedup_window_s", "dedup_max_ids"):
        assert SinkSettings.model_fields[name].description


def test_a_forgotten_id_is_new_again_and_the_bound_still_holds() -> None:
    ids = RecentIds(2)
    ids.add("bad")
    ids.forget("bad")
    assert "bad" not in ids
    assert ids.add("bad") is True  # a valid copy of a record whose first message did not decode
    ids.update(["b", "c", "d"])
    assert len(ids) <= 2 and "d" in ids
