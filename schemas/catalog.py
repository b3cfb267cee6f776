"""The Avro schemas this package ships, parsed once, addressable by name or fingerprint."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

AVRO_DIR = Path(__file__).with_name("avro")


class SchemaCatalog:
    """Writer schemas a reader can resolve without asking anyone.

    In embedded mode every process runs the same package, so the bundled schemas are
    all the writer schemas there are; ``register`` adds others (an older or newer
    version met in a test or a migration).
    """

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Any]] = {}
        self._json_by_name: dict[str, str] = {}
        self._by_fingerprint: dict[bytes, dict[str, Any]] = {}

    def register(self, schema: dict[str, Any] | str) -> dict[str, Any]:
        """Parse ``schema`` (dict or JSON text), index it, and return the parsed form."""
        parsed = parse_schema(json.loads(schema) if isinstance(schema, str) else schema)
        self._by_fingerprint[schema_fingerprint(parsed)] = parsed
        return parsed

    def add_bundled(self, name: str, schema: dict[str, Any]) -> None:
        """``schema``: self-contained (named types inlined where first used), as written."""
        parsed = parse_schema(schema)
        self._by_name[name] = parsed
        self._json_by_name[name] = json.dumps(schema, separators=(",", ":"))
        self._by_fingerprint[schema_fingerprint(parsed)] = parsed

    def registry_json(self, name: str) -> str:
        """The schema as a registry should store it: self-contained, with its defaults,
        docs and logical types (the parsing canonical form drops all three, and a
        registry's compatibility checks need the defaults)."""
        self.by_name(name)
        return self._json_by_name[name]

    def by_name(self, name: str) -> dict[str, Any]:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no bundled Avro schema named {name!r}; known: {sorted(self._by_name)}") from None

    def by_fingerprint(self, fp: bytes) -> dict[str, Any] | None:
        return self._by_fingerprint.get(fp)

    def names(self) -> list[str]:
        return sorted(self._by_name)


def schema_fingerprint(parsed: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, as the 8 little-endian bytes the
    Avro single-object encoding carries."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@cache
def bundled_catalog() -> SchemaCatalog:
    catalog = SchemaCatalog()
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        name = path.name.removesuffix(".avsc")
        catalog.add_bundled(name, load_schema(str(path), _write_hint=False))
    return catalog
