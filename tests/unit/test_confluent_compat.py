"""Turnout's Confluent framing is byte-compatible with confluent-kafka's own Avro serdes.

Offline: confluent-kafka's ``MockSchemaRegistryClient`` is the registry, shared through a
small adapter by Turnout's ``AvroCodec`` and confluent's ``AvroSerializer`` /
``AvroDeserializer``. Whatever one side writes, the other reads, and both write the same
bytes for the same record: ``0x00`` + 4-byte big-endian schema id + Avro binary.

Turnout registers each schema under its record's full name (the RecordNameStrategy),
so confluent's serializer is configured with ``record_subject_name_strategy`` to land on
the same subject and the same schema id.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from typing import Any

import pytest

pytest.importorskip("confluent_kafka")
pytest.importorskip("confluent_kafka.schema_registry.avro", reason="confluent-kafka's Avro serializer needs the [avro] extra")

from confluent_kafka.schema_registry import Schema, record_subject_name_strategy  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

try:  # confluent-kafka >= 2.11 (sync and async clients side by side)
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient  # noqa: E402
except ImportError:  # pragma: no cover - confluent-kafka 2.10
    try:
        from confluent_kafka.schema_registry.mock_schema_registry_client import MockSchemaRegistryClient  # noqa: E402
    except ImportError:
        pytest.skip("this confluent-kafka ships no MockSchemaRegistryClient (added in 2.10)", allow_module_level=True)

from turnout.schemas.catalog import bundled_catalog  # noqa: E402
from turnout.schemas.models import (  # noqa: E402
    ChatMessage,
    ErrorInfo,
    InferenceRequest,
    InferenceResponse,
    RoutingMeta,
    Usage,
)
from turnout.schemas.registry import SchemaRegistry  # noqa: E402
from turnout.schemas.serde import CONFLUENT_MAGIC, AvroCodec  # noqa: E402

REQUESTS_TOPIC = "turnout.requests"
RESPONSES_TOPIC = "turnout.responses"
CREATED = datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=timezone.utc)
CREATED_MS = 1741964966535


class MockRegistryAdapter:
    """Turnout's ``SchemaRegistry`` protocol on top of confluent-kafka's mock client."""

    def __init__(self, client: MockSchemaRegistryClient) -> None:
        self.client = client

    def register(self, subject: str, schema: str) -> int:
        return self.client.register_schema(subject, Schema(schema, schema_type="AVRO"))

    def schema(self, schema_id: int) -> str:
        return self.client.get_schema(schema_id).schema_str


@pytest.fixture
def registry() -> MockSchemaRegistryClient:
    return MockSchemaRegistryClient({"url": "mock://turnout-tests"})


@pytest.fixture
def codec(registry: MockSchemaRegistryClient) -> AvroCodec:
    adapter: SchemaRegistry = MockRegistryAdapter(registry)
    return AvroCodec(registry=adapter)


def registered_schema(name: str) -> str:
    """The schema text Turnout registers for a record (what confluent's side is given)."""
    return bundled_catalog().registry_json(name)


def confluent_serializer(registry: MockSchemaRegistryClient, name: str) -> AvroSerializer:
    return AvroSerializer(registry, registered_schema(name), conf={"subject.name.strategy": record_subject_name_strategy})


def header(data: bytes) -> tuple[bytes, int]:
    return data[:1], struct.unpack(">I", data[1:5])[0]


def request_datum() -> dict[str, Any]:
    """An InferenceRequest as a pipeline using confluent-kafka would write it."""
    return {
        "id": "req-0001",
        "tenant": "acme",
        "messages": [
            {"role": "system", "content": "Answer briefly.", "name": None},
            {"role": "user", "content": "Summarise: Kafka moves bytes; Turnout routes prompts. ünïcödé ✓", "name": "ana"},
        ],
        "tools": None,
        "response_schema": '{"type": "object"}',
        "max_tokens": 256,
        "stop": ["\n\n"],
        "temperature": 0.2,
        "metadata": {"pipeline": "nightly", "tag": "summarization"},
        # timestamp-millis accepts epoch milliseconds as well as datetimes
        "created_at": CREATED_MS,
        "deadline": CREATED_MS + 60_000,
        "reply_topic": "acme.responses",
        "model": None,
    }


def response_record() -> InferenceResponse:
    return InferenceResponse(
        id="req-0001",
        tenant="acme",
        status="ok",
        model="medium",
        provider="simulated",
        content="Turnout routes prompts over Kafka.",
        finish_reason="stop",
        usage=Usage(input_tokens=41, output_tokens=7),
        cost_usd=0.000069,
        created_at=CREATED,
        latency_ms=182.5,
        backend_latency_ms=61.25,
        routing=RoutingMeta(
            route="long-summaries",
            selected_model="medium",
            task_type="summarization",
            fallback_path=["medium"],
            policy_version="prod-1",
            validation="passed",
        ),
    )


def test_confluent_writes_a_request_turnout_reads_it(registry: MockSchemaRegistryClient, codec: AvroCodec) -> None:
    data = confluent_serializer(registry, "turnout.InferenceRequest")(
        request_datum(), SerializationContext(REQUESTS_TOPIC, MessageField.VALUE)
    )
    magic, schema_id = header(data)
    assert magic == CONFLUENT_MAGIC == b"\x00"
    assert schema_id == registry.get_latest_version("turnout.InferenceRequest").schema_id
    assert registry.get_subjects() == ["turnout.InferenceRequest"]

    request = codec.decode(data, InferenceRequest)

    assert request.id == "req-0001" and request.tenant == "acme"
    assert request.messages == [
        ChatMessage(role="system", content="Answer briefly."),
        ChatMessage(role="user", content="Summarise: Kafka moves bytes; Turnout routes prompts. ünïcödé ✓", name="ana"),
    ]
    assert request.response_schema == '{"type": "object"}' and request.tools is None
    assert (request.max_tokens, request.stop, request.temperature) == (256, ["\n\n"], 0.2)
    assert request.metadata == {"pipeline": "nightly", "tag": "summarization"}
    assert request.created_at == CREATED
    assert request.deadline == datetime(2025, 3, 14, 15, 10, 26, 535000, tzinfo=timezone.utc)
    assert request.reply_topic == "acme.responses" and request.model is None


def test_turnout_writes_a_response_confluent_reads_it(registry: MockSchemaRegistryClient, codec: AvroCodec) -> None:
    response = response_record()
    data = codec.encode(response)
    magic, schema_id = header(data)
    assert magic == b"\x00"
    assert registry.get_subjects() == ["turnout.InferenceResponse"], "Turnout uses the RecordNameStrategy"
    assert schema_id == registry.get_latest_version("turnout.InferenceResponse").schema_id

    datum = AvroDeserializer(registry)(data, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))

    assert datum == response.model_dump()  # timestamps come back as datetimes: the logicalType is registered


def test_both_sides_write_identical_bytes(registry: MockSchemaRegistryClient, codec: AvroCodec) -> None:
    ctx = SerializationContext(REQUESTS_TOPIC, MessageField.VALUE)
    from_confluent = confluent_serializer(registry, "turnout.InferenceRequest")(request_datum(), ctx)
    from_turnout = codec.encode(codec.decode(from_confluent, InferenceRequest))
    assert from_turnout == from_confluent, "same subject, same schema id, same Avro body"

    response_bytes = codec.encode(response_record())
    datum = AvroDeserializer(registry)(response_bytes, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))
    again = confluent_serializer(registry, "turnout.InferenceResponse")(datum, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))
    assert again == response_bytes
    assert sorted(registry.get_subjects()) == ["turnout.InferenceRequest", "turnout.InferenceResponse"]
    assert [registry.get_latest_version(s).version for s in sorted(registry.get_subjects())] == [1, 1], "no duplicate registrations"


def test_error_response_round_trips(registry: MockSchemaRegistryClient, codec: AvroCodec) -> None:
    failed = InferenceResponse(
        id="req-0002",
        tenant="acme",
        status="error",
        error=ErrorInfo(code="deadline_exceeded", message="no answer by the deadline", retryable=False, details={"attempts": "3"}),
        created_at=CREATED,
    )
    data = codec.encode(failed)
    datum = AvroDeserializer(registry)(data, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))
    assert datum["error"] == {"code": "deadline_exceeded", "message": "no answer by the deadline", "retryable": False, "details": {"attempts": "3"}}
    assert datum["usage"] is None and datum["content"] is None
    again = confluent_serializer(registry, "turnout.InferenceResponse")(datum, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))
    assert codec.decode(again, InferenceResponse) == failed


def test_registered_schema_keeps_logical_types_and_defaults(registry: MockSchemaRegistryClient, codec: AvroCodec) -> None:
    data = codec.encode(response_record())
    text = registry.get_schema(header(data)[1]).schema_str
    assert '"timestamp-millis"' in text and '"default"' in text
    datum = AvroDeserializer(registry)(data, SerializationContext(RESPONSES_TOPIC, MessageField.VALUE))
    assert datum["created_at"] == CREATED
