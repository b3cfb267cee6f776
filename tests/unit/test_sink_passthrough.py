"""The sink's pass-through of Avro to ClickHouse, its pure parts: reading a datum's id and
checked fields without decoding it (``avro_fields``), the object container ClickHouse
reads (``avro_container``), and which messages may skip the model (``passthrough``).
ClickHouse's side is in tests/integration/test_sink.py."""

from __future__ import annotations

import io
import math
from typing import Any, ClassVar

import pytest
from factories import T0, MockRegistry, avro_body, single_object
from fastavro import block_reader, parse_schema, reader

from turnout.analytics.avro_container import AvroContainer, zigzag
from turnout.analytics.avro_fields import FieldsReader, UnsupportedSchema, read_long
from turnout.analytics.passthrough import AvroPassThrough, AvroRows, passthrough_blocker
from turnout.schemas.catalog import SchemaCatalog, bundled_catalog
from turnout.schemas.models import AvroRecord, Feedback, RoutingEvent
from turnout.schemas.serde import AvroCodec

CODEC = AvroCodec()

EVERY_TYPE = parse_schema(
    {
        "type": "record",
        "name": "test.EveryType",
        "fields": [
            {"name": "flag", "type": "boolean"},
            {"name": "small", "type": "int"},
            {"name": "big", "type": "long"},
            {"name": "ratio", "type": "float"},
            {"name": "score", "type": "double"},
            {"name": "blob", "type": "bytes"},
            {"name": "maybe", "type": ["null", "double"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "labels", "type": {"type": "map", "values": "long"}},
            {"name": "inner", "type": {"type": "record", "name": "test.Inner", "fields": [{"name": "x", "type": "string"}]}},
            {"name": "again", "type": ["null", "test.Inner"]},
            {"name": "colour", "type": {"type": "enum", "name": "test.Colour", "symbols": ["RED", "GREEN"]}},
            {"name": "hash", "type": {"type": "fixed", "name": "test.Hash", "size": 4}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "id", "type": "string"},
            {"name": "last", "type": "string"},
        ],
    }
)


def every_type_datum(**changes: Any) -> dict[str, Any]:
    datum = {
        "flag": True, "small": -3, "big": 2**40, "ratio": 0.5, "score": -1.25, "blob": b"\x00\xff",
        "maybe": 2.5, "tags": ["a", "bc"] * 70, "labels": {"k": -1, "l": 300}, "inner": {"x": "in ✓"},
        "again": {"x": "y"}, "colour": "GREEN", "hash": b"abcd", "at": T0, "id": "evt-✓", "last": "z",
    }
    return datum | changes


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 64, 300, -300, 2**31 - 1, -(2**31), 2**62, -(2**63)])
def test_a_long_reads_back_what_zigzag_wrote(value: int) -> None:
    assert read_long(zigzag(value) + b"rest", 0) == (value, len(zigzag(value)))


def test_fields_are_read_after_skipping_every_kind_of_value_before_them() -> None:
    body = avro_body(EVERY_TYPE, every_type_datum())
    assert FieldsReader(EVERY_TYPE, ["id", "maybe", "score", "flag", "small"]).read(body) == ["evt-✓", 2.5, -1.25, True, -3]
    none = avro_body(EVERY_TYPE, every_type_datum(maybe=None, again=None, tags=[], labels={}))
    assert FieldsReader(EVERY_TYPE, ["maybe", "id"]).read(none) == [None, "evt-✓"]


def test_the_reader_starts_where_the_framing_ends() -> None:
    framed = single_object(EVERY_TYPE, every_type_datum())
    assert FieldsReader(EVERY_TYPE, ["id"]).read(framed, 10) == ["evt-✓"]


@pytest.mark.parametrize("cut", [1, 5, 20, -3])
def test_a_datum_that_ends_before_the_field_is_refused(cut: int) -> None:
    body = avro_body(EVERY_TYPE, every_type_datum())
    truncated = body[:cut] if cut > 0 else body[: body.index("evt-✓".encode()) + 2]
    with pytest.raises((ValueError, IndexError)):
        FieldsReader(EVERY_TYPE, ["id"]).read(truncated)


def test_a_string_that_is_not_utf8_is_refused() -> None:
    schema = parse_schema({"type": "record", "name": "test.S", "fields": [{"name": "id", "type": "string"}]})
    with pytest.raises(UnicodeDecodeError):
        FieldsReader(schema, ["id"]).read(zigzag(2) + b"\xff\xfe")


def test_only_primitive_fields_can_be_read_and_only_existing_ones() -> None:
    with pytest.raises(UnsupportedSchema, match="array"):
        FieldsReader(EVERY_TYPE, ["tags"])
    with pytest.raises(UnsupportedSchema, match="no field nope"):
        FieldsReader(EVERY_TYPE, ["id", "nope"])


def test_a_container_holds_each_datum_in_a_block_of_its_own_and_any_avro_reader_reads_it() -> None:
    schema = CODEC.reader_schema(RoutingEvent)
    events = [RoutingEvent(event_id=f"e{i}", request_id="r", tenant="t", kind="attempt", ts=T0, sensitive_kinds=["email"] * i) for i in range(3)]
    container = AvroContainer(CODEC.reader_schema_json(RoutingEvent))
    for event in events:
        container.append(memoryview(CODEC.encode(event))[10:])  # the body without its single-object header
    assert len(container) == 3
    read = reader(io.BytesIO(container.getvalue()), schema)
    assert [RoutingEvent.model_validate(record) for record in read] == events
    assert [block.num_records for block in block_reader(io.BytesIO(container.getvalue()))] == [1, 1, 1]


def test_a_message_of_the_reader_schema_passes_with_its_id_and_body_offset() -> None:
    passthrough = AvroPassThrough(CODEC, RoutingEvent, "event_id")
    event = RoutingEvent(event_id="e-1", request_id="r", tenant="t", kind="completion", ts=T0)
    assert passthrough.read(CODEC.encode(event)) == ("e-1", 10)


def test_a_value_the_model_refuses_and_bytes_that_do_not_read_go_to_the_model() -> None:
    passthrough = AvroPassThrough(CODEC, RoutingEvent, "event_id")
    event = RoutingEvent(event_id="e-1", request_id="r", tenant="t", kind="completion", ts=T0)
    bad_kind = CODEC.encode(event.model_construct(**(event.model_dump() | {"kind": "exploded"})))
    good = CODEC.encode(event)
    assert passthrough.read(bad_kind) is None
    assert passthrough.read(good[:12]) is None  # truncated inside the id
    assert passthrough.read(b"not avro") is None
    assert passthrough.read(b"") is None


def test_a_message_written_with_another_schema_goes_to_the_model() -> None:
    ts = {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    older = {"type": "record", "name": "turnout.RoutingEvent", "fields": [{"name": n, "type": "string"} for n in ("event_id", "request_id", "tenant", "kind")] + [ts]}
    catalog = SchemaCatalog()
    for name in bundled_catalog().names():
        catalog.add_bundled(name, bundled_catalog().by_name(name))
    parsed = catalog.register(older)
    codec = AvroCodec(catalog=catalog)
    passthrough = AvroPassThrough(codec, RoutingEvent, "event_id")
    message = single_object(parsed, {"event_id": "e", "request_id": "r", "tenant": "t", "kind": "decision", "ts": T0})
    assert passthrough.read(message) is None
    assert codec.decode(message, RoutingEvent).event_id == "e"  # which still reads it, with the reader's defaults


def test_confluent_framing_passes_when_its_schema_id_names_the_reader_schema() -> None:
    registry = MockRegistry(first_id=7)
    codec = AvroCodec(registry.client())
    passthrough = AvroPassThrough(codec, RoutingEvent, "event_id")
    message = codec.encode(RoutingEvent(event_id="e-c", request_id="r", tenant="t", kind="decision", ts=T0))
    assert message[:1] == b"\x00"
    assert passthrough.read(message) == ("e-c", 5)


class Nested(AvroRecord):
    avro_name: ClassVar[str] = "test.EveryType"


def test_streams_that_only_their_model_can_check_never_pass_through() -> None:
    assert passthrough_blocker(RoutingEvent, CODEC.reader_schema(RoutingEvent), "event_id") is None
    assert "validators" in (passthrough_blocker(Feedback, CODEC.reader_schema(Feedback), "feedback_id") or "")
    blocker = passthrough_blocker(Nested, EVERY_TYPE, "id")
    assert blocker is not None and blocker.startswith("field labels: map")
    with pytest.raises(UnsupportedSchema, match="validators"):
        AvroPassThrough(CODEC, Feedback, "feedback_id")


def test_pending_rows_keep_each_id_and_message_beside_the_container() -> None:
    class Message:
        def __init__(self, value: bytes) -> None:
            self.value = value

    rows = AvroRows(CODEC.reader_schema_json(RoutingEvent))
    event = RoutingEvent(event_id="e", request_id="r", tenant="t", kind="decision", ts=T0, complexity=math.pi)
    message = Message(CODEC.encode(event))
    rows.append(message, 10, "e")
    assert len(rows) == 1 and rows.ids == ["e"] and rows.messages == [message]
    assert [RoutingEvent.model_validate(r) for r in reader(io.BytesIO(rows.container.getvalue()), CODEC.reader_schema(RoutingEvent))] == [event]


@pytest.mark.parametrize(
    ("field_type", "blocker"),
    [
        ("string", None),
        ({"type": "long", "logicalType": "timestamp-millis"}, None),
        (["null", "double"], None),
        ({"type": "array", "items": "string"}, None),
        (["string", "long"], "union of several types"),
        (["null", {"type": "array", "items": "string"}], "array type"),
        ({"type": "array", "items": {"type": "record", "name": "test.R", "fields": []}}, "record type inside an array"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 4}, "logical type decimal"),
        ({"type": "enum", "name": "test.E", "symbols": ["A"]}, "enum type"),
    ],
)
def test_only_fields_clickhouse_reads_as_the_column_path_inserts_them_pass_through(field_type: Any, blocker: str | None) -> None:
    schema = parse_schema({"type": "record", "name": "test.One", "fields": [{"name": "id", "type": "string"}, {"name": "f", "type": field_type}]})
    assert passthrough_blocker(Nested, schema, "id") == (None if blocker is None else f"field f: {blocker}")


def test_a_recursive_type_before_the_wanted_field_is_refused_not_looped_over() -> None:
    node = {"type": "record", "name": "test.Node", "fields": [{"name": "next", "type": ["null", "test.Node"]}]}
    schema = parse_schema({"type": "record", "name": "test.List", "fields": [{"name": "head", "type": node}, {"name": "id", "type": "string"}]})
    with pytest.raises(UnsupportedSchema, match="recursive"):
        FieldsReader(schema, ["id"])
