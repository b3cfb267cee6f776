"""Avro serialization with fastavro, framed so that any Kafka client can read it.

Two framings, told apart by their first byte, so a reader accepts both:

- Confluent wire format (``0x00`` + 4-byte big-endian schema id + Avro binary), used when a
  schema registry is configured: byte-compatible with Confluent's serializers, kcat -s
  avro, ksqlDB and Kafka Connect. Subjects follow the RecordNameStrategy
  (``turnout.InferenceRequest``), since each topic carries one record type.
- Avro single-object encoding (``0xC3 0x01`` + 8-byte CRC-64-AVRO fingerprint + Avro
  binary), the Avro specification's own registry-free framing, used in embedded mode.
  The fingerprint names the writer schema, which the reader finds in its catalog.

Decoding always resolves the writer schema against the reader's own (Avro schema
resolution), so old readers read new writers and new readers read old writers within
the evolution rules in ``schemas/EVOLUTION.md``.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from pydantic import ValidationError

from .catalog import SchemaCatalog, bundled_catalog, schema_fingerprint
from .models import AvroRecord
from .registry import ConfluentRegistryClient, SchemaRegistry
from .settings import KafkaSettings

T = TypeVar("T", bound=AvroRecord)

CONFLUENT_MAGIC = b"\x00"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


class DecodeError(ValueError):
    """A message that cannot become a Turnout record; ``str()`` is the DLQ reason."""


class AvroCodec:
    """Encode models to framed Avro bytes and back."""

    def __init__(self, registry: SchemaRegistry | None = None, catalog: SchemaCatalog | None = None) -> None:
        self._registry = registry
        self._catalog = catalog or bundled_catalog()
        self._writer_ids: dict[str, int] = {}
        self._registry_schemas: dict[int, dict[str, Any]] = {}
        self._fingerprints: dict[str, bytes] = {}

    # -- writing ---------------------------------------------------------------------
    def encode(self, record: AvroRecord) -> bytes:
        schema = self._catalog.by_name(record.avro_name)
        buffer = io.BytesIO()
        buffer.write(self._header(record.avro_name, schema))
        schemaless_writer(buffer, schema, record.model_dump())
        return buffer.getvalue()

    def _header(self, name: str, schema: dict[str, Any]) -> bytes:
        if self._registry is None:
            if name not in self._fingerprints:
                self._fingerprints[name] = schema_fingerprint(schema)
            return SINGLE_OBJECT_MAGIC + self._fingerprints[name]
        if name not in self._writer_ids:
            self._writer_ids[name] = self._registry.register(name, self._catalog.registry_json(name))
        return CONFLUENT_MAGIC + struct.pack(">I", self._writer_ids[name])

    # -- reading ---------------------------------------------------------------------
    def decode(self, data: bytes, model: type[T]) -> T:
        """Decode ``data`` into ``model``; raise ``DecodeError`` saying what is wrong."""
        return validate(model, self.decode_datum(data, self.reader_schema(model)))

    def decode_as(self, data: bytes, models_by_name: Mapping[str, type[T]]) -> T:
        """Decode ``data`` into the model its writer schema names (``models_by_name`` maps
        Avro full names to models), for a topic that carries several record types: the
        framing is resolved once. ``DecodeError`` when the writer wrote none of them."""
        writer_schema, offset = self._framing(data)
        name = writer_schema.get("name", "")
        model = models_by_name.get(name)
        if model is None:
            raise DecodeError(f"a {name or 'nameless record'} is not one of the records read here ({' or '.join(models_by_name)})")
        return validate(model, self._body(data, offset, writer_schema, self.reader_schema(model)))

    def reader_schema(self, model: type[AvroRecord]) -> dict[str, Any]:
        """The parsed schema ``model`` is read with: for callers that take the decoded
        datum as it is (``decode_datum``) rather than a validated model."""
        return self._catalog.by_name(model.avro_name)

    def reader_schema_json(self, model: type[AvroRecord]) -> str:
        """``reader_schema(model)`` as JSON text, with its logical types: for a reader
        that is not fastavro (ClickHouse's ``FORMAT Avro``, fed by the analytics sink)."""
        return self._catalog.registry_json(model.avro_name)

    def decode_datum(self, data: bytes, reader_schema: dict[str, Any]) -> dict[str, Any]:
        writer_schema, offset = self._framing(data)
        return self._body(data, offset, writer_schema, reader_schema)

    def _framing(self, data: bytes) -> tuple[dict[str, Any], int]:
        if not data:
            raise DecodeError("empty message: expected Avro with a Confluent or single-object header")
        return self.writer_schema(data)

    @staticmethod
    def _body(data: bytes, offset: int, writer_schema: dict[str, Any], reader_schema: dict[str, Any]) -> dict[str, Any]:
        try:
            return schemaless_reader(io.BytesIO(data[offset:]), writer_schema, reader_schema)
        except Exception as exc:  # fastavro raises several types for corrupt or incompatible bodies
            raise DecodeError(f"Avro body does not decode with its writer schema: {type(exc).__name__}: {exc}") from exc

    def writer_schema(self, data: bytes) -> tuple[dict[str, Any], int]:
        """The parsed schema ``data`` was written with, named by its framing, and the
        offset where its Avro body starts; ``DecodeError`` when the framing does not
        resolve. Also for readers that hand the body on undecoded (the analytics sink)."""
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated single-object header: fewer than 10 bytes")
            schema = self._catalog.by_fingerprint(data[2:10])
            if schema is None:
                raise DecodeError(
                    f"unknown writer schema fingerprint {data[2:10].hex()}: the writer runs a schema this reader "
                    "does not know; configure a schema registry for mixed-version deployments"
                )
            return schema, 10
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError("truncated Confluent header: fewer than 5 bytes")
            (schema_id,) = struct.unpack(">I", data[1:5])
            return self._registry_schema(schema_id), 5
        raise DecodeError(
            f"not Turnout Avro: first bytes {data[:4].hex()} are neither the Confluent magic byte 0x00 "
            "nor the Avro single-object marker 0xc301"
        )

    def _registry_schema(self, schema_id: int) -> dict[str, Any]:
        if self._registry is None:
            raise DecodeError(f"Confluent-framed message (schema id {schema_id}) but no schema registry is configured")
        if schema_id not in self._registry_schemas:
            try:
                text = self._registry.schema(schema_id)
            except Exception as exc:
                raise DecodeError(f"schema id {schema_id} not found in the registry: {exc}") from exc
            self._registry_schemas[schema_id] = parse_schema(json.loads(text))
        return self._registry_schemas[schema_id]


def validate(model: type[T], datum: dict[str, Any]) -> T:
    """``datum`` as a ``model``, or ``DecodeError`` with the model's own reasons: the one
    wording of a record that decodes but is not valid, whoever validates it."""
    try:
        return model.model_validate(datum)
    except ValidationError as exc:
        raise DecodeError(f"{model.avro_name} failed validation: {_summarize(exc)}") from exc


def _summarize(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


def codec_for(kafka: KafkaSettings) -> AvroCodec:
    """The codec a process uses: Confluent framing with a registry, single-object without."""
    url = kafka.schema_registry_url
    return AvroCodec(ConfluentRegistryClient(url) if url else None)
