"""analytics/rows.py: the columns the sink inserts, read straight from the Avro datum,
are exactly what the pydantic model's rows were; what the model refuses is still
refused, with the model's own reason; a model whose constraints the fast path does not
know goes through the model."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import ClassVar, Literal

import pytest
from factories import T0
from pydantic import Field

from turnout.analytics.rows import Columns, RecordReader, fast_checks
from turnout.analytics.sink import COLUMNS, event_row, record_row
from turnout.schemas.models import AvroRecord, Feedback, RoutingEvent
from turnout.schemas.serde import AvroCodec, DecodeError

CODEC = AvroCodec()


def every_field_event(i: int, confidence: float | None) -> RoutingEvent:
    return RoutingEvent(
        event_id=f"e{i}", request_id=f"r{i}", tenant="acme", kind="attempt",
        ts=datetime(2025, 3, 14, 17, 9, 26, 535000, tzinfo=timezone(timedelta(hours=2))) + timedelta(seconds=i),
        route="code", model="large", provider="sim", policy_version="v2", task_type="code", status="error", error_kind="timeout",
        input_tokens=1200 + i, output_tokens=300, cost_usd=0.0042, latency_ms=812.5, attempt=2, fallback_depth=1, detail="slow ✓",
        shadow=True, language="de", complexity=0.625, sensitive_kinds=["email", "iban"] if i % 2 else [], cache_hit=True,
        validation="repaired", confidence=confidence,
    )


def read_columns(records: list[AvroRecord], model: type[AvroRecord], columns: list[str]) -> Columns:
    reader, out = RecordReader(CODEC, model), Columns(columns)
    for record in records:
        out.append(reader.read(CODEC.encode(record)))
    return out


def test_event_columns_are_the_rows_event_row_built() -> None:
    events = [every_field_event(i, c) for i, c in enumerate([None, 0.25, 1.0, None])] + [RoutingEvent(event_id="e", request_id="r", tenant="t", kind="decision", ts=T0)]
    columns = read_columns(events, RoutingEvent, COLUMNS)
    assert columns.rows() == [event_row(e) for e in events]
    ts = columns.column("ts")
    assert all(t.tzinfo == timezone.utc for t in ts)
    assert ts[0] == datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=timezone.utc)
    assert columns.column("sensitive_kinds")[:2] == [[], ["email", "iban"]]
    assert columns.column("confidence")[:2] == [None, 0.25]


def test_feedback_goes_through_its_model_and_gets_its_default_id() -> None:
    assert fast_checks(Feedback) is None  # it has a validator of its own
    records = [Feedback(request_id="r1", tenant="t", metric="rating", score=4, ts=T0), Feedback(feedback_id="mine", request_id="r2", tenant="t", metric="m", score=1.5, comment="ok", source="app", ts=T0)]
    names = list(Feedback.model_fields)
    columns = read_columns(records, Feedback, names)
    assert columns.rows() == [record_row(f, names) for f in records]
    assert columns.column("feedback_id") == ["r1:rating:", "mine"]


def test_the_fast_path_knows_what_the_event_model_refuses() -> None:
    checks = fast_checks(RoutingEvent)
    assert checks is not None and set(checks) == {"kind"}  # Avro types the rest; the kind is a Literal


def encoded_with(model: type[AvroRecord], base: AvroRecord, **changes) -> bytes:
    """``base`` with fields changed past the model's validation, as a bad producer would write it."""
    return CODEC.encode(base.model_construct(**(base.model_dump() | changes)))


def test_an_event_kind_outside_the_vocabulary_is_refused_with_the_models_reason() -> None:
    data = encoded_with(RoutingEvent, every_field_event(1, None), kind="exploded")
    with pytest.raises(DecodeError) as fast:
        RecordReader(CODEC, RoutingEvent).read(data)
    with pytest.raises(DecodeError) as model:
        CODEC.decode(data, RoutingEvent)
    assert str(fast.value) == str(model.value)
    assert str(fast.value).startswith("turnout.RoutingEvent failed validation: kind:")


@pytest.mark.parametrize(("change", "where"), [({"request_id": ""}, "request_id"), ({"metric": ""}, "metric"), ({"score": math.nan}, "score"), ({"score": -math.inf}, "score")])
def test_feedback_the_model_refuses_is_refused(change: dict, where: str) -> None:
    data = encoded_with(Feedback, Feedback(request_id="r", tenant="t", metric="rating", score=4, ts=T0), **change)
    with pytest.raises(DecodeError, match=f"Feedback failed validation: {where}"):
        RecordReader(CODEC, Feedback).read(data)


def test_bytes_that_do_not_decode_are_refused() -> None:
    with pytest.raises(DecodeError, match="not Turnout Avro"):
        RecordReader(CODEC, RoutingEvent).read(b"not avro")


class Constrained(AvroRecord):
    avro_name: ClassVar[str] = "turnout.RoutingEvent"
    kind: Literal["a", "b"]
    tenant: str = Field(min_length=2)
    score: float = Field(allow_inf_nan=False)


class Bounded(AvroRecord):
    avro_name: ClassVar[str] = "turnout.RoutingEvent"
    tokens: int = Field(ge=0)  # a constraint the fast path does not check itself


def test_checks_are_derived_from_the_fields_constraints() -> None:
    checks = fast_checks(Constrained)
    assert checks is not None and set(checks) == {"kind", "tenant", "score"}

    def passes(name: str, value) -> bool:
        return all(check(value) for check in checks[name])

    assert passes("kind", "a") and not passes("kind", "c")
    assert passes("tenant", "ab") and not passes("tenant", "a")
    assert passes("score", 1.0) and not passes("score", math.nan) and not passes("score", math.inf)


def test_an_unknown_constraint_sends_every_record_through_the_model() -> None:
    assert fast_checks(Bounded) is None


def test_columns_keep_the_rows_a_mask_selects() -> None:
    columns = Columns(["id", "n"])
    for i in range(4):
        columns.append({"id": f"i{i}", "n": i, "ignored": True})
    kept = columns.keep([True, False, False, True])
    assert kept.rows() == [["i0", 0], ["i3", 3]]
    assert len(kept) == 2 and len(columns) == 4
