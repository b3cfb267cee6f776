"""A few fields of an Avro datum, read straight from its binary body without decoding the rest.

Why: when ClickHouse decodes the sink's Avro itself (``passthrough.py``), Python still
needs two things from each message: the row's id (to drop a copy it inserted already)
and the values the model constrains beyond Avro's types (an event's ``kind``), so that
a record the model would refuse is dead-lettered instead of stored. Decoding the whole
datum with fastavro to get them would cost what the pass-through saves, so this reads
the fields up to the last one wanted, skipping the others by their encoded lengths.

Built from the writer schema, so nothing here names a field of a Turnout record. The
binary encoding is the Avro specification's: zig-zag varints for ``int``/``long`` (and
for lengths, counts, union branches and enum symbols), 4- and 8-byte little-endian
floats, one byte per boolean, length-prefixed bytes and strings, arrays and maps as
blocks of items ended by a zero count.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Buffer = bytes | memoryview
Skip = Callable[[Buffer, int], int]  # the position after a value that starts at the given one
Read = Callable[[Buffer, int], tuple[Any, int]]  # the value there, and the position after it

_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from


class UnsupportedSchema(ValueError):
    """The schema has a construct this reader cannot read or skip."""


def read_long(buf: Buffer, pos: int) -> tuple[int, int]:
    """A zig-zag varint (``int`` or ``long``); ``IndexError`` when the buffer ends first."""
    byte = buf[pos]
    pos += 1
    if byte < 0x80:  # the usual case: a length or a small number fits one byte
        return (byte >> 1) ^ -(byte & 1), pos
    value, shift = byte & 0x7F, 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _length(buf: Buffer, pos: int) -> tuple[int, int]:
    """A length prefix that must fit the buffer (a corrupt one must not read past it)."""
    size, pos = read_long(buf, pos)
    if size < 0 or pos + size > len(buf):
        raise ValueError(f"length {size} at byte {pos} runs past the end of the datum ({len(buf)} bytes)")
    return size, pos


def _string_bounds(buf: Buffer, pos: int) -> tuple[int, int]:
    """Where a string's (or bytes') content starts and ends. Inlines the one-byte length
    (a string under 64 bytes, most of them), the sink's hottest path."""
    byte = buf[pos]
    if byte < 0x80 and not byte & 1:
        end = pos + 1 + (byte >> 1)
        if end > len(buf):
            raise ValueError(f"length {byte >> 1} at byte {pos} runs past the end of the datum ({len(buf)} bytes)")
        return pos + 1, end
    size, pos = _length(buf, pos)
    return pos, pos + size


def _read_string(buf: Buffer, pos: int) -> tuple[str, int]:
    start, end = _string_bounds(buf, pos)
    return str(buf[start:end], "utf-8"), end  # UnicodeDecodeError for bytes that are not UTF-8


def _read_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    start, end = _string_bounds(buf, pos)
    return bytes(buf[start:end]), end


def _read_boolean(buf: Buffer, pos: int) -> tuple[bool, int]:
    byte = buf[pos]
    if byte > 1:
        raise ValueError(f"boolean byte {byte} at {pos}")
    return byte == 1, pos + 1


def _read_float(buf: Buffer, pos: int) -> tuple[float, int]:
    if pos + 4 > len(buf):
        raise IndexError("float runs past the end of the datum")
    return _FLOAT(buf, pos)[0], pos + 4


def _read_double(buf: Buffer, pos: int) -> tuple[float, int]:
    if pos + 8 > len(buf):
        raise IndexError("double runs past the end of the datum")
    return _DOUBLE(buf, pos)[0], pos + 8


_PRIMITIVE_READERS: dict[str, Read] = {
    "null": lambda buf, pos: (None, pos),
    "boolean": _read_boolean,
    "int": read_long,
    "long": read_long,
    "float": _read_float,
    "double": _read_double,
    "bytes": _read_bytes,
    "string": _read_string,
}


def _skip_string(buf: Buffer, pos: int) -> int:
    return _string_bounds(buf, pos)[1]


_PRIMITIVE_SKIPS: dict[str, Skip] = {
    "null": lambda buf, pos: pos,
    "boolean": lambda buf, pos: pos + 1,
    "int": lambda buf, pos: read_long(buf, pos)[1],
    "long": lambda buf, pos: read_long(buf, pos)[1],
    "float": lambda buf, pos: pos + 4,
    "double": lambda buf, pos: pos + 8,
    "bytes": _skip_string,
    "string": _skip_string,
}
PRIMITIVES = frozenset(_PRIMITIVE_SKIPS)
"""Avro's primitive type names."""


class _Compiler:
    """Readers and skippers for the types of one schema, named types resolved as met."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self._compiling: set[str] = set()  # records whose skipper is being built: met again, the type is recursive

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVE_SKIPS:
            if schema not in self.named:
                raise UnsupportedSchema(f"named type {schema!r} is used before it is defined")
            return self.named[schema]
        if isinstance(schema, dict) and schema.get("type") in ("record", "error", "enum", "fixed"):
            self.named[schema["name"]] = schema  # fastavro's parsed schemas carry full names
        return schema

    def skip(self, schema: Any) -> Skip:
        schema = self._resolve(schema)
        if isinstance(schema, list):
            branches = [self.skip(branch) for branch in schema]
            return _skip_union(branches)
        if isinstance(schema, str):
            return _PRIMITIVE_SKIPS[schema]
        kind = schema["type"]
        if kind in _PRIMITIVE_SKIPS:  # a primitive with a logical type or other attributes
            return _PRIMITIVE_SKIPS[kind]
        if kind in ("record", "error"):
            if schema["name"] in self._compiling:
                raise UnsupportedSchema(f"recursive type {schema['name']}")
            self._compiling.add(schema["name"])
            fields = [self.skip(field["type"]) for field in schema["fields"]]
            self._compiling.discard(schema["name"])

            def skip_record(buf: Buffer, pos: int) -> int:
                for skip_field in fields:
                    pos = skip_field(buf, pos)
                return pos

            return skip_record
        if kind == "enum":
            return _PRIMITIVE_SKIPS["int"]
        if kind == "fixed":
            size = schema["size"]
            return lambda buf, pos: pos + size
        if kind == "array":
            return _blocks(self.skip(schema["items"]))
        if kind == "map":
            value = self.skip(schema["values"])
            return _blocks(lambda buf, pos: value(buf, _skip_string(buf, pos)))
        raise UnsupportedSchema(f"Avro type {kind!r}")

    def read(self, schema: Any) -> Read:
        schema = self._resolve(schema)
        if isinstance(schema, list):
            branches = [self.read(branch) for branch in schema]
            return lambda buf, pos: _union_read(branches, buf, pos)
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind in _PRIMITIVE_READERS:
            return _PRIMITIVE_READERS[kind]
        raise UnsupportedSchema(f"reading a value of Avro type {kind!r} (only primitives and unions of them)")


def _branch(branches: list[Any], buf: Buffer, pos: int) -> tuple[Any, int]:
    index, pos = read_long(buf, pos)
    if not 0 <= index < len(branches):
        raise ValueError(f"union branch {index} of {len(branches)}")
    return branches[index], pos


def _skip_union(branches: list[Skip]) -> Skip:
    def skip_union(buf: Buffer, pos: int) -> int:
        branch, pos = _branch(branches, buf, pos)
        return branch(buf, pos)

    return skip_union


def _union_read(branches: list[Read], buf: Buffer, pos: int) -> tuple[Any, int]:
    branch, pos = _branch(branches, buf, pos)
    return branch(buf, pos)


def _blocks(item: Skip) -> Skip:
    def skip_blocks(buf: Buffer, pos: int) -> int:
        while True:
            count, pos = read_long(buf, pos)
            if count == 0:
                return pos
            if count < 0:  # a block that also gives its size in bytes
                size, pos = _length(buf, pos)
                pos += size
                continue
            for _ in range(count):
                pos = item(buf, pos)

    return skip_blocks


class FieldsReader:
    """Reads the values of ``names`` (fields of the record ``schema``, each a primitive or
    a union of primitives) from a datum's body, in the order of ``names``.

    It reads up to the last of them and no further: what follows is not looked at, so a
    datum that is corrupt after it passes here (whoever decodes the whole datum finds
    out). ``read`` raises ``ValueError`` (``UnicodeDecodeError`` included) or
    ``IndexError`` for bytes that do not decode as far as it reads.
    """

    def __init__(self, schema: dict[str, Any], names: list[str]) -> None:
        compiler = _Compiler()
        compiler._resolve(schema)
        fields = schema["fields"]
        positions = {field["name"]: i for i, field in enumerate(fields)}
        missing = [name for name in names if name not in positions]
        if missing:
            raise UnsupportedSchema(f"the record has no field {', '.join(missing)}")
        last = max(positions[name] for name in names)
        wanted = {name: slot for slot, name in enumerate(names)}
        self._steps: list[tuple[int | None, Callable[[Buffer, int], Any]]] = []
        for field in fields[: last + 1]:
            slot = wanted.get(field["name"])
            self._steps.append((slot, compiler.read(field["type"]) if slot is not None else compiler.skip(field["type"])))
        self._size = len(names)

    def read(self, buf: Buffer, pos: int = 0) -> list[Any]:
        values: list[Any] = [None] * self._size
        for slot, step in self._steps:
            if slot is None:
                pos = step(buf, pos)
            else:
                values[slot], pos = step(buf, pos)
        return values
