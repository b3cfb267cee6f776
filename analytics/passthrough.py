"""The sink's fast path: messages handed to ClickHouse as the Avro they already are.

Why: decoding each message with fastavro (about 12 µs) and handing the values to
clickhouse-connect, which serializes them again while holding the GIL (about 7 µs a
row), held the sink near 50 k events/s. ClickHouse reads Avro natively (``INSERT ...
FORMAT Avro``) at a fraction of that cost, in C++ and without the GIL, so the sink's
Python thread goes on consuming while the previous batch is being inserted. The bodies
are passed as they came, stripped of their Confluent or single-object framing, in an
Avro container (``avro_container.py``).

What Python still reads of each message (``avro_fields.py``: those fields alone, not
the datum): the row's id, for the deduplication, and every value the model constrains
beyond Avro's types (``rows.fast_checks``: an event's ``kind``), so that a record the
model would refuse is still dead-lettered with the model's own reason. A message takes
the other path (decoded here by ``rows.RecordReader``, inserted as columns) when:

- its writer schema is not the stream's reader schema: ClickHouse maps an Avro datum's
  fields by name and knows nothing of Avro's schema resolution (defaults, promotions),
  which fastavro applies; the fingerprint (single-object) or schema id (Confluent) in
  the framing tells, looked up once per distinct header;
- a checked value fails, or the bytes do not read as far as the id and checked fields:
  the model words the reason, as for any other record.

A stream never takes it when its model has validators or constraints not known here
(``fast_checks`` is ``None``: ``Feedback`` fills in its default id), or when its record
has a field that ClickHouse would map differently from the column path: anything but
primitives, timestamps, arrays of those and unions with null (a nested record, a map, an
enum, a fixed, a decimal). ``passthrough_blocker`` says which.

ClickHouse refuses the whole block when one body does not decode (corrupt, or a value
its column cannot hold); the sink then decodes that batch here, dead-letters what does
not decode and inserts the rest as columns. Two differences are left: a string that is
not UTF-8 in a field Python does not read is stored as its bytes, where fastavro would
have refused the record; and a corrupt message whose id was stored already is dropped as
a duplicate rather than dead-lettered (its id is read before the rest is).
"""

from __future__ import annotations

from typing import Any

from turnout.schemas.catalog import schema_fingerprint
from turnout.schemas.models import AvroRecord
from turnout.schemas.serde import SINGLE_OBJECT_MAGIC, AvroCodec, DecodeError

from .avro_container import AvroContainer
from .avro_fields import PRIMITIVES, FieldsReader, UnsupportedSchema
from .rows import Check, fast_checks

_LOGICAL = {None, "timestamp-millis", "timestamp-micros"}  # mapped to DateTime64 as the column path inserts datetimes
_UNKNOWN = object()


def _primitive_blocker(schema: Any) -> str | None:
    """Why ``schema`` is not a primitive (or a timestamp) as the column path inserts it, or ``None``."""
    if isinstance(schema, str):
        return None if schema in PRIMITIVES else f"named type {schema}"
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
        logical = schema.get("logicalType")
        return None if logical in _LOGICAL else f"logical type {logical}"
    return f"{schema.get('type') if isinstance(schema, dict) else 'nested union'} type"


def _field_type_blocker(schema: Any) -> str | None:
    """Why ClickHouse might read a field of type ``schema`` otherwise than the column path
    inserts it, or ``None``: a primitive, a primitive or null (``Nullable(T)``) or an
    array of primitives are read alike."""
    if isinstance(schema, list):
        if len([branch for branch in schema if branch != "null"]) > 1:
            return "union of several types"
        return next(filter(None, map(_primitive_blocker, schema)), None)
    if isinstance(schema, dict) and schema.get("type") == "array":
        blocker = _primitive_blocker(schema["items"])
        return f"{blocker} inside an array" if blocker else None
    return _primitive_blocker(schema)


def passthrough_blocker(model: type[AvroRecord], schema: dict[str, Any], id_column: str) -> str | None:
    """Why ``model``'s messages cannot be handed to ClickHouse undecoded, or ``None``."""
    checks = fast_checks(model)
    if checks is None:
        return "the model has validators or constraints only it can check"
    for field in schema["fields"]:
        blocker = _field_type_blocker(field["type"])
        if blocker:
            return f"field {field['name']}: {blocker}"
    try:
        FieldsReader(schema, [id_column, *checks])
    except UnsupportedSchema as exc:
        return str(exc)
    return None


class AvroPassThrough:
    """Tells, for one stream's messages, which ClickHouse can take undecoded, reading
    their id (and checked values) on the way; keeps its pending rows as an Avro container."""

    def __init__(self, codec: AvroCodec, model: type[AvroRecord], id_column: str) -> None:
        self.codec = codec
        schema = codec.reader_schema(model)
        blocker = passthrough_blocker(model, schema, id_column)
        if blocker:
            raise UnsupportedSchema(f"{model.avro_name} cannot be passed through: {blocker}")
        checks = fast_checks(model) or {}
        self.schema_json = codec.reader_schema_json(model)
        self._fingerprint = schema_fingerprint(schema)
        self._fields = FieldsReader(schema, [id_column, *checks])
        self._checks: list[tuple[int, Check]] = [(1 + i, check) for i, field_checks in enumerate(checks.values()) for check in field_checks]
        self._body_starts: dict[bytes, int | None] = {}  # framing header -> where the body starts (None: another writer schema)

    def read(self, value: bytes) -> tuple[str, int] | None:
        """The row id of ``value`` and the offset of its Avro body, when ClickHouse can
        take the body as it is; ``None`` when the message must be decoded here."""
        header = value[:10] if value[:2] == SINGLE_OBJECT_MAGIC else value[:5]
        start = self._body_starts.get(header, _UNKNOWN)
        if start is _UNKNOWN:
            start = self._body_start(header, value)
        if start is None:
            return None
        try:
            values = self._fields.read(value, start)  # the id, then the checked fields
        except (ValueError, IndexError):
            return None
        for index, check in self._checks:
            if not check(values[index]):
                return None
        return values[0], start

    def _body_start(self, header: bytes, value: bytes) -> int | None:
        try:
            writer, start = self.codec.writer_schema(value)
        except DecodeError:
            return None  # not cached: junk must not grow the cache; the model's path dead-letters it
        self._body_starts[header] = start if schema_fingerprint(writer) == self._fingerprint else None
        return self._body_starts[header]


class AvroRows:
    """Rows waiting for their insert as Avro: the container of their bodies, and each
    one's id and message (to decode them here should ClickHouse refuse the block).

    Also the copies dropped as duplicates of a row taken in this same batch: should the
    row's own message turn out not to decode, a copy that does stands in for it, rather
    than being lost for having come second."""

    def __init__(self, schema_json: str) -> None:
        self.container = AvroContainer(schema_json)
        self.ids: list[str] = []
        self.messages: list[Any] = []  # aiokafka ConsumerRecords
        self.copies: dict[str, list[Any]] = {}
        self._taken: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, message: Any, body_start: int, row_id: str) -> None:
        self.container.append(memoryview(message.value)[body_start:])
        self.ids.append(row_id)
        self.messages.append(message)
        self._taken.add(row_id)

    def keep_copy(self, message: Any, row_id: str) -> None:
        """``message`` was dropped as a duplicate of ``row_id``: keep it if that row is in this batch."""
        if row_id in self._taken:
            self.copies.setdefault(row_id, []).append(message)
