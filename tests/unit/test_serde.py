"""schemas/serde.py, catalog.py and registry.py: framing, round trips, bad bytes, evolution."""

from __future__ import annotations

import copy
import io
import json
import struct
from datetime import datetime
from typing import Any

import httpx
import pytest
from factories import (
    MockRegistry,
    T0,
    avro_body,
    crc64_avro,
    full_event,
    full_request,
    full_response,
    full_routed,
    make_request,
    single_object,
)
from fastavro import parse_schema, schemaless_reader
from fastavro.read import SchemaResolutionError
from fastavro.schema import load_schema, to_parsing_canonical_form

from turnout.schemas.catalog import AVRO_DIR, SchemaCatalog, bundled_catalog, schema_fingerprint
from turnout.schemas.models import (
    AvroRecord,
    ErrorInfo,
    Feedback,
    InferenceRequest,
    InferenceResponse,
    RoutedRequest,
    RoutingEvent,
)
from turnout.schemas.registry import ConfluentRegistryClient, RegistryError
from turnout.schemas.serde import AvroCodec, DecodeError, codec_for
from turnout.schemas.settings import KafkaSettings

RECORDS = {
    "request-minimal": make_request(),
    "request-full": full_request(),
    "routed": full_routed(),
    "response-ok": full_response(),
    "response-error": InferenceResponse(
        id="r", tenant="t", status="error", error=ErrorInfo(code="no_route", message="none"), created_at=T0
    ),
    "request-embedding": InferenceRequest(id="e", tenant="t", input=["first text", "second ✓"], created_at=T0),
    "response-embedding": InferenceResponse(
        id="e", tenant="t", status="ok", embeddings=[[0.1, -0.2, 1e-9], [3.5, 0.0, -1.0]], created_at=T0
    ),
    "event": full_event(),
    "event-defaults": RoutingEvent(event_id="r:decision:0", request_id="r", tenant="t", kind="decision", ts=T0),
    "feedback": Feedback(
        feedback_id="fb-1", request_id="r", tenant="t", metric="rating", score=4.5, comment="ünïcödé ✓", source="app", ts=T0
    ),
    "feedback-defaults": Feedback(request_id="r", tenant="t", metric="thumbs", score=-1.0, ts=T0),
}


def catalog_with(*extra: dict[str, Any]) -> tuple[SchemaCatalog, list[dict[str, Any]]]:
    """A fresh catalog holding the bundled schemas plus ``extra`` (never the shared bundled one)."""
    catalog = SchemaCatalog()
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        catalog.add_bundled(path.name.removesuffix(".avsc"), load_schema(str(path), _write_hint=False))
    return catalog, [catalog.register(schema) for schema in extra]


# -- single-object framing ----------------------------------------------------------------
@pytest.mark.parametrize("record", RECORDS.values(), ids=RECORDS.keys())
def test_single_object_round_trip(record: AvroRecord) -> None:
    codec = AvroCodec()
    data = codec.encode(record)
    assert data[:2] == b"\xc3\x01"
    schema = bundled_catalog().by_name(record.avro_name)
    assert data[2:10] == crc64_avro(to_parsing_canonical_form(schema).encode())
    decoded = codec.decode(data, type(record))
    assert decoded == record
    assert type(decoded) is type(record)


def test_every_record_type_in_models_is_covered() -> None:
    covered = {type(r) for r in RECORDS.values()}
    assert covered == {InferenceRequest, RoutedRequest, InferenceResponse, RoutingEvent, Feedback}


def test_timestamps_come_back_as_aware_utc_datetimes() -> None:
    codec = AvroCodec()
    decoded = codec.decode(codec.encode(full_request()), InferenceRequest)
    assert isinstance(decoded.created_at, datetime)
    assert decoded.created_at.utcoffset().total_seconds() == 0
    assert decoded.deadline == full_request().deadline


def test_body_after_header_is_plain_avro_any_reader_can_read() -> None:
    record = full_request()
    data = AvroCodec().encode(record)
    schema = bundled_catalog().by_name(record.avro_name)
    datum = schemaless_reader(io.BytesIO(data[10:]), schema, schema)
    assert InferenceRequest.model_validate(datum) == record


def test_fingerprint_matches_the_avro_spec_algorithm() -> None:
    # the Avro spec's published fingerprint of the schema "int", little-endian
    assert crc64_avro(b'"int"') == bytes.fromhex("8f5c393f1ad57572")
    for name in bundled_catalog().names():
        schema = bundled_catalog().by_name(name)
        assert schema_fingerprint(schema) == crc64_avro(to_parsing_canonical_form(schema).encode()), name


def test_each_record_type_has_its_own_fingerprint() -> None:
    codec = AvroCodec()
    headers = {codec.encode(r)[:10] for r in (make_request(), full_routed(), full_response(), full_event())}
    assert len(headers) == 4


def test_catalog_lookups() -> None:
    catalog = bundled_catalog()
    assert "turnout.InferenceRequest" in catalog.names()
    schema = catalog.by_name("turnout.RoutedRequest")
    assert catalog.by_fingerprint(schema_fingerprint(schema)) is schema
    assert catalog.by_fingerprint(b"\x00" * 8) is None
    with pytest.raises(KeyError, match="turnout.Nope"):
        catalog.by_name("turnout.Nope")


def test_registry_json_is_self_contained_and_complete() -> None:
    catalog = bundled_catalog()
    text = catalog.registry_json("turnout.InferenceRequest")
    schema = json.loads(text)
    reparsed = parse_schema(schema)  # no named type left to resolve elsewhere
    assert schema_fingerprint(reparsed) == schema_fingerprint(catalog.by_name("turnout.InferenceRequest"))
    assert "turnout.ChatMessage" in text
    assert "__fastavro" not in text
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["created_at"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["stop"]["default"] == []
    assert "doc" in fields["id"]
    with pytest.raises(KeyError, match="turnout.Nope"):
        catalog.registry_json("turnout.Nope")


def test_codec_for_without_registry_uses_single_object_framing() -> None:
    codec = codec_for(KafkaSettings())
    assert codec.encode(make_request())[:2] == b"\xc3\x01"


def test_codec_for_with_registry_url_builds_a_registry_client() -> None:
    codec = codec_for(KafkaSettings(schema_registry_url="http://registry.test:8081"))
    assert isinstance(codec._registry, ConfluentRegistryClient)


# -- Confluent framing ---------------------------------------------------------------------
@pytest.mark.parametrize("record", RECORDS.values(), ids=RECORDS.keys())
def test_confluent_round_trip(record: AvroRecord) -> None:
    registry = MockRegistry(first_id=300)
    writer = AvroCodec(registry.client())
    data = writer.encode(record)
    posts = registry.requests("POST")
    assert len(posts) == 1
    assert posts[0].url.path == f"/subjects/{record.avro_name}/versions"  # RecordNameStrategy
    body = json.loads(posts[0].content)
    assert body["schemaType"] == "AVRO"
    assert json.loads(body["schema"])["name"] == record.avro_name
    schema_id = registry.subjects[record.avro_name][0]
    assert data[:5] == b"\x00" + struct.pack(">I", schema_id)
    assert data[1:5] == schema_id.to_bytes(4, "big")

    reader = AvroCodec(registry.client())  # a separate process: knows the schema only by id
    assert reader.decode(data, type(record)) == record
    assert [r.url.path for r in registry.requests("GET")] == [f"/schemas/ids/{schema_id}"]


def test_confluent_ids_are_big_endian_four_bytes() -> None:
    registry = MockRegistry(first_id=0x01020304)
    data = AvroCodec(registry.client()).encode(make_request())
    assert data[:5] == bytes([0x00, 0x01, 0x02, 0x03, 0x04])


def test_registry_is_asked_once_per_record_type() -> None:
    registry = MockRegistry()
    writer = AvroCodec(registry.client())
    batch = [writer.encode(make_request(id=f"r{i}")) for i in range(5)] + [writer.encode(full_event())]
    assert [r.url.path for r in registry.requests("POST")] == [
        "/subjects/turnout.InferenceRequest/versions",
        "/subjects/turnout.RoutingEvent/versions",
    ]
    reader = AvroCodec(registry.client())
    for data in batch[:5]:
        reader.decode(data, InferenceRequest)
    assert len(registry.requests("GET")) == 1


def test_registry_client_sends_schema_registry_content_type() -> None:
    registry = MockRegistry()
    registry.client().register("turnout.X", '"string"')
    assert registry.calls[0].headers["accept"] == "application/vnd.schemaregistry.v1+json"


def test_confluent_framed_data_without_registry() -> None:
    data = AvroCodec(MockRegistry(first_id=42).client()).encode(make_request())
    with pytest.raises(DecodeError, match=r"Confluent-framed message \(schema id 42\) but no schema registry is configured"):
        AvroCodec().decode(data, InferenceRequest)


def test_single_object_data_is_read_by_a_codec_with_a_registry() -> None:
    """Readers accept both framings, so turning a registry on does not strand old messages."""
    registry = MockRegistry()
    data = AvroCodec().encode(full_request())
    assert AvroCodec(registry.client()).decode(data, InferenceRequest) == full_request()
    assert registry.calls == []


def test_unknown_schema_id_in_the_registry() -> None:
    registry = MockRegistry()
    data = b"\x00" + struct.pack(">I", 999) + b"\x00"
    with pytest.raises(DecodeError, match="schema id 999 not found in the registry") as info:
        AvroCodec(registry.client()).decode(data, InferenceRequest)
    assert "404" in str(info.value)


def test_registry_failure_on_register_raises_registry_error() -> None:
    registry = MockRegistry()
    registry.fail_with = 500
    with pytest.raises(RegistryError, match="answered 500"):
        AvroCodec(registry.client()).encode(make_request())


def test_unreachable_registry_raises_registry_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = ConfluentRegistryClient("http://registry.test:8081", transport=httpx.MockTransport(refuse))
    with pytest.raises(RegistryError, match="unreachable"):
        client.schema(1)


def test_registered_schema_keeps_defaults_and_logical_types() -> None:
    """The parsing canonical form would drop these; Confluent readers and the registry's
    compatibility checks need them."""
    registry = MockRegistry()
    AvroCodec(registry.client()).encode(make_request())
    registered = json.loads(next(iter(registry.schemas.values())))
    fields = {f["name"]: f for f in registered["fields"]}
    assert fields["created_at"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["stop"]["default"] == []
    assert fields["model"]["default"] is None


def test_confluent_datum_has_the_same_types_as_single_object() -> None:
    """Timestamps come back as datetimes whichever framing carried them."""
    registry = MockRegistry()
    record = full_request()
    reader_schema = bundled_catalog().by_name(record.avro_name)
    confluent = AvroCodec(registry.client())
    via_registry = confluent.decode_datum(confluent.encode(record), reader_schema)
    embedded = AvroCodec()
    via_fingerprint = embedded.decode_datum(embedded.encode(record), reader_schema)
    assert via_registry == via_fingerprint


# -- bad bytes -------------------------------------------------------------------------------
def good_bytes() -> bytes:
    return AvroCodec().encode(full_request())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty message"),
        (b"hello world", "not Turnout Avro: first bytes 68656c6c"),
        (b'{"id": "x"}', "neither the Confluent magic byte 0x00 nor the Avro single-object marker 0xc301"),
        (b"\xc3", "not Turnout Avro"),
        (b"\xc3\x01", "truncated single-object header: fewer than 10 bytes"),
        (b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07", "truncated single-object header"),
        (b"\x00", "truncated Confluent header: fewer than 5 bytes"),
        (b"\x00\x00\x00\x01", "truncated Confluent header"),
        (b"\xc3\x01" + b"\xab" * 8 + b"\x02", "unknown writer schema fingerprint abababababababab"),
    ],
)
def test_decode_errors_say_what_is_wrong(data: bytes, expected: str) -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data, InferenceRequest)
    assert expected in str(info.value)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


def test_decode_as_reads_the_model_the_writer_schema_names_resolving_the_framing_once(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = AvroCodec()
    models = {InferenceRequest.avro_name: InferenceRequest, InferenceResponse.avro_name: InferenceResponse}
    calls: list[bytes] = []
    resolve = codec.writer_schema
    monkeypatch.setattr(codec, "writer_schema", lambda data: calls.append(data) or resolve(data))
    response = RECORDS["response-ok"]
    assert codec.decode_as(codec.encode(response), models) == response
    assert len(calls) == 1
    assert codec.decode_as(codec.encode(RECORDS["request-full"]), models) == RECORDS["request-full"]
    with pytest.raises(DecodeError, match="a turnout.Feedback is not one of the records read here"):
        codec.decode_as(codec.encode(RECORDS["feedback"]), models)
    with pytest.raises(DecodeError, match="empty message"):
        codec.decode_as(b"", models)


@pytest.mark.parametrize("cut", [11, 20, -1])
def test_truncated_body(cut: int) -> None:
    data = good_bytes()[:cut]
    with pytest.raises(DecodeError, match="Avro body does not decode with its writer schema: EOFError"):
        AvroCodec().decode(data, InferenceRequest)


def test_corrupted_body() -> None:
    data = bytearray(good_bytes())
    data[10] = 0x7F  # the id's length prefix becomes -64 (zigzag): no string has that length
    with pytest.raises(DecodeError, match="Avro body does not decode with its writer schema"):
        AvroCodec().decode(bytes(data), InferenceRequest)


def test_wrong_record_type_is_a_decode_error() -> None:
    data = AvroCodec().encode(full_event())
    with pytest.raises(DecodeError, match="Avro body does not decode with its writer schema: SchemaResolutionError"):
        AvroCodec().decode(data, InferenceRequest)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"id": ""}, "id"),
        ({"messages": []}, "<root>: Value error, a request needs messages"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_pydantic_validation_failure_is_a_decode_error(change: dict[str, Any], where: str) -> None:
    schema = bundled_catalog().by_name("turnout.InferenceRequest")
    datum = {**make_request().model_dump(), **change}
    data = single_object(schema, datum)  # valid Avro, invalid request
    with pytest.raises(DecodeError, match=f"turnout.InferenceRequest failed validation: {where}") as info:
        AvroCodec().decode(data, InferenceRequest)
    assert info.value.__cause__ is not None


def test_literal_violation_is_a_decode_error() -> None:
    schema = bundled_catalog().by_name("turnout.RoutedRequest")
    datum = full_routed().model_dump()
    datum["plan"][0]["role"] = "sidekick"
    with pytest.raises(DecodeError, match=r"turnout.RoutedRequest failed validation: plan\.0\.role"):
        AvroCodec().decode(single_object(schema, datum), RoutedRequest)


# -- schema evolution --------------------------------------------------------------------------
def v1_schema() -> dict[str, Any]:
    return bundled_catalog().by_name("turnout.InferenceRequest")


def v2_schema() -> dict[str, Any]:
    """v1 plus a field with a default: the one kind of change the evolution rules allow freely."""
    schema = copy.deepcopy(v1_schema())
    schema.pop("__fastavro_parsed", None)
    schema.pop("__named_schemas", None)
    schema["fields"].append({"name": "priority", "type": "int", "default": 0})
    return schema


def test_v2_has_its_own_fingerprint() -> None:
    catalog, (v2,) = catalog_with(v2_schema())
    assert schema_fingerprint(v2) != schema_fingerprint(v1_schema())
    assert catalog.by_fingerprint(schema_fingerprint(v2)) is v2
    # register adds a writer; it does not replace the bundled reader of that name
    assert schema_fingerprint(catalog.by_name("turnout.InferenceRequest")) == schema_fingerprint(v1_schema())


def test_old_reader_reads_new_writer() -> None:
    catalog, (v2,) = catalog_with(v2_schema())
    datum = {**full_request().model_dump(), "priority": 7}
    data = single_object(v2, datum)
    assert data[2:10] == schema_fingerprint(v2)

    old_reader = AvroCodec(catalog=catalog)
    assert old_reader.decode(data, InferenceRequest) == full_request()  # the new field is ignored
    assert "priority" not in old_reader.decode_datum(data, v1_schema())


def test_reader_without_the_new_writer_schema_says_so() -> None:
    _, (v2,) = catalog_with(v2_schema())
    data = single_object(v2, {**make_request().model_dump(), "priority": 1})
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        AvroCodec().decode(data, InferenceRequest)  # bundled catalog only


def test_new_reader_reads_old_writer_with_the_default() -> None:
    catalog, (v2,) = catalog_with(v2_schema())
    data = AvroCodec().encode(full_request())  # v1 writer
    datum = AvroCodec(catalog=catalog).decode_datum(data, v2)
    assert datum["priority"] == 0
    assert InferenceRequest.model_validate({k: v for k, v in datum.items() if k != "priority"}) == full_request()


def test_new_writer_and_reader_keep_the_new_field() -> None:
    catalog, (v2,) = catalog_with(v2_schema())
    data = single_object(v2, {**make_request().model_dump(), "priority": 9})
    assert AvroCodec(catalog=catalog).decode_datum(data, v2)["priority"] == 9


def test_adding_a_field_without_default_breaks_old_data() -> None:
    schema = v2_schema()
    del schema["fields"][-1]["default"]
    catalog, (bad_v2,) = catalog_with(schema)
    data = AvroCodec().encode(make_request())  # v1 writer
    with pytest.raises(SchemaResolutionError):
        schemaless_reader(io.BytesIO(data[10:]), v1_schema(), bad_v2)
    with pytest.raises(DecodeError, match="SchemaResolutionError"):
        AvroCodec(catalog=catalog).decode_datum(data, bad_v2)


def test_removing_a_field_without_default_breaks_old_readers() -> None:
    """A new writer that drops 'tenant' (no default): an old reader has nothing to fill it with."""
    schema = copy.deepcopy(v1_schema())
    schema.pop("__fastavro_parsed", None)
    schema.pop("__named_schemas", None)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "tenant"]
    catalog, (v3,) = catalog_with(schema)
    datum = {k: v for k, v in make_request().model_dump().items() if k != "tenant"}
    body = avro_body(v3, datum)
    with pytest.raises(SchemaResolutionError):
        schemaless_reader(io.BytesIO(body), v3, v1_schema())
    with pytest.raises(DecodeError, match="SchemaResolutionError"):
        AvroCodec(catalog=catalog).decode(b"\xc3\x01" + schema_fingerprint(v3) + body, InferenceRequest)


def test_removing_a_field_with_default_is_harmless() -> None:
    """The mirror image: dropping 'reply_topic' (default null) leaves old readers with the default."""
    schema = copy.deepcopy(v1_schema())
    schema.pop("__fastavro_parsed", None)
    schema.pop("__named_schemas", None)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "reply_topic"]
    catalog, (v3,) = catalog_with(schema)
    datum = {k: v for k, v in full_request().model_dump().items() if k != "reply_topic"}
    decoded = AvroCodec(catalog=catalog).decode(single_object(v3, datum), InferenceRequest)
    assert decoded.reply_topic is None
    assert decoded.model_copy(update={"reply_topic": full_request().reply_topic}) == full_request()


def test_catalog_register_accepts_json_text() -> None:
    catalog = SchemaCatalog()
    parsed = catalog.register(json.dumps({"type": "record", "name": "x.Y", "fields": [{"name": "a", "type": "int"}]}))
    assert catalog.by_fingerprint(schema_fingerprint(parsed)) is parsed
    assert catalog.names() == []  # registered writers are not bundled readers
