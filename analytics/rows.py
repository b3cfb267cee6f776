"""Kafka messages to ClickHouse insert columns, without a pydantic model per message.

Why: the sink spent most of its time per event building a pydantic model (validation)
and dumping it back to a dict (``model_dump``), only to hand clickhouse-connect rows it
transposes into columns again. The Avro schema already types every field, and the
reader schema's datum has exactly the model's fields with the model's Python types
(``models.py`` keeps the two in step; fastavro returns ``timestamp-millis`` as aware UTC
datetimes), so the datum itself is the row. What Avro cannot say and the model can is
checked here, derived from the model's fields so that the two cannot drift apart: a
``Literal`` field's allowed values, a ``min_length``, a float that must be finite. A
datum that fails one of them is handed to the model itself, so that the record is
dead-lettered with the model's own reason, worded as before.

A model with validators of its own (``Feedback`` fills in its default id) is not
second-guessed: its messages still go through the model, one by one. Only the records
that are numerous take the fast path; ``tests/unit/test_sink_rows.py`` checks both give
the same columns, and that a model gaining a constraint this module does not know
about falls back to the model rather than letting a bad value through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, Literal, get_args, get_origin

from annotated_types import MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from turnout.schemas.models import AvroRecord
from turnout.schemas.serde import AvroCodec, validate

Check = Callable[[Any], bool]  # True when the value is one the model accepts


def _field_checks(field: FieldInfo) -> list[Check] | None:
    """The checks of ``field`` that Avro's types do not make, or ``None`` when it has a
    constraint this module does not know how to check (then the model must)."""
    if _mentions_model(field.annotation):
        return None  # a nested record has constraints of its own, which only its model checks
    checks: list[Check] = []
    if get_origin(field.annotation) is Literal:
        allowed = frozenset(get_args(field.annotation))
        checks.append(allowed.__contains__)
    for constraint in field.metadata:
        if isinstance(constraint, MinLen):
            checks.append(lambda value, least=constraint.min_length: len(value) >= least)
        elif getattr(constraint, "allow_inf_nan", True) is False:
            checks.append(math.isfinite)
        else:
            return None
    return checks


def _mentions_model(annotation: Any) -> bool:
    """``annotation`` is, or contains (``list[ChatMessage]``, ``Signals | None``), a model."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_mentions_model(arg) for arg in get_args(annotation))


def fast_checks(model: type[AvroRecord]) -> dict[str, list[Check]] | None:
    """Per field, what a decoded datum must satisfy to be a valid ``model``; ``None``
    when only the model itself can tell (it has validators, or a constraint unknown here)."""
    decorators = model.__pydantic_decorators__
    if decorators.model_validators or decorators.field_validators or decorators.validators or decorators.root_validators:
        return None
    checks: dict[str, list[Check]] = {}
    for name, field in model.model_fields.items():
        field_checks = _field_checks(field)
        if field_checks is None:
            return None
        if field_checks:
            checks[name] = field_checks
    return checks


class RecordReader:
    """Decodes one topic's messages into datums whose keys are ``model``'s fields, each
    value as the table takes it (timestamps in UTC); raises ``DecodeError`` (the DLQ
    reason) for a message that does not decode or that the model would refuse."""

    def __init__(self, codec: AvroCodec, model: type[AvroRecord]) -> None:
        self.codec = codec
        self.model = model
        self.schema = codec.reader_schema(model)
        self.checks = fast_checks(model)

    def read(self, data: bytes) -> dict[str, Any]:
        datum = self.codec.decode_datum(data, self.schema)
        if self.checks is not None and all(check(datum[name]) for name, checks in self.checks.items() for check in checks):
            return datum
        return model_datum(validate(self.model, datum))  # refuses with the model's reason, or applies its validators


def model_datum(record: AvroRecord) -> dict[str, Any]:
    """``record``'s fields as the table takes them: its dump, timestamps in UTC."""
    return {name: _utc(value) for name, value in record.model_dump().items()}


def _utc(value: Any) -> Any:
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value


class Columns:
    """Rows kept as the insert wants them: one list per column, in ``names`` order
    (``client.insert(..., column_oriented=True)``, so nothing transposes them again)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.data: list[list[Any]] = [[] for _ in names]

    def __len__(self) -> int:
        return len(self.data[0]) if self.data else 0

    def append(self, datum: dict[str, Any]) -> None:
        for name, column in zip(self.names, self.data):
            column.append(datum[name])

    def column(self, name: str) -> list[Any]:
        return self.data[self.names.index(name)]

    def keep(self, mask: Iterable[bool]) -> Columns:
        """The rows whose ``mask`` entry is true, as new columns."""
        kept = Columns(self.names)
        indexes = [i for i, keep in enumerate(mask) if keep]
        kept.data = [[column[i] for i in indexes] for column in self.data]
        return kept

    def rows(self) -> list[list[Any]]:
        """Row by row: for tests and for eyes, never for the insert."""
        return [list(row) for row in zip(*self.data)]
