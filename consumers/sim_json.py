"""JSON documents for the simulator's structured-output answers.

A request that asks for structured output (an OpenAI ``response_format`` with a JSON
schema, a forced tool, Anthropic's ``output_config.format``) must get a document that
validates against the schema it sent, so that a worker's validation path is exercised
by honest answers; the simulator's output faults then break that document on purpose
in the two ways real models do: JSON that breaks the schema, and almost-JSON that a
repair library can fix. Everything here is pure and deterministic given its inputs.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["NEAR_JSON_STYLES", "instance", "near_json", "violate"]

NEAR_JSON_STYLES = ("fenced", "trailing_comma", "single_quotes", "prose")
_SAMPLE_TEXT = "sample"
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
}


class _Refs:
    """Resolves local ``$ref`` pointers (``#/$defs/X``, ``#/definitions/X``) against the
    root schema, which is how pydantic and most generators share sub-schemas."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < 32:
            target: Any = self.root
            for part in schema["$ref"].removeprefix("#").strip("/").split("/"):
                if part:
                    target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema, depth = {**target, **siblings}, depth + 1
        return schema if isinstance(schema, dict) else {}


def instance(schema: dict[str, Any]) -> Any:
    """A small document valid against ``schema``: required properties only, the first
    enum value or ``anyOf``/``oneOf`` branch, the fewest array items allowed, numbers
    inside their bounds, strings of an allowed length (well-known ``format``s honoured)."""
    return _instance(schema, _Refs(schema), 0)


def _instance(schema: Any, refs: _Refs, depth: int) -> Any:
    schema = refs.resolve(schema)
    if depth > 24:  # a recursive schema: stop at the shallowest value allowed
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        if schema.get(combinator):
            return _instance({**_without(schema, combinator), **refs.resolve(schema[combinator][0])}, refs, depth + 1)
    if schema.get("allOf"):
        merged = _without(schema, "allOf")
        for part in schema["allOf"]:
            merged = _merge(merged, refs.resolve(part))
        return _instance(merged, refs, depth + 1)
    kind = _first_type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _instance(properties.get(name, {}), refs, depth + 1) for name in schema.get("required") or []}
    if kind == "array":
        items = schema.get("items")
        prefix = schema.get("prefixItems") or (items if isinstance(items, list) else [])  # draft 4 tuples
        items = items if isinstance(items, dict) else {}
        count = max(int(schema.get("minItems") or 0), len(prefix))
        values = [_instance(prefix[i] if i < len(prefix) else items, refs, depth + 1) for i in range(count)]
        return _distinct(values, refs.resolve(items)) if schema.get("uniqueItems") else values
    if kind == "string":
        return _string(schema)
    if kind in {"integer", "number"}:
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """``allOf`` parts combined: properties and required lists united, the rest overlaid."""
    merged = {**left, **right}
    merged["properties"] = {**(left.get("properties") or {}), **(right.get("properties") or {})}
    merged["required"] = list(dict.fromkeys([*(left.get("required") or []), *(right.get("required") or [])]))
    return merged


def _first_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    if isinstance(declared, list) and declared:
        non_null = [t for t in declared if t != "null"]
        return (non_null or declared)[0]
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string" if {"minLength", "maxLength", "format", "pattern"} & set(schema) else "null"


def _string(schema: dict[str, Any]) -> str:
    text = _FORMATS.get(schema.get("format", ""), _SAMPLE_TEXT)
    minimum, maximum = int(schema.get("minLength") or 0), schema.get("maxLength")
    if len(text) < minimum:
        text += "x" * (minimum - len(text))
    return text[: int(maximum)] if maximum is not None else text


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """The first of a few candidates (zero, the bounds, just inside them, midpoints)
    that every bound and ``multipleOf`` accept."""
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if above is True:  # draft 4: a boolean that makes ``minimum`` exclusive
        above, low = low, None
    if below is True:
        below, high = high, None
    above, below = (None if isinstance(b, bool) else b for b in (above, below))
    step = schema.get("multipleOf")

    def accepted(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (above is None or value > above)
            and (below is None or value < below)
            and (not step or math.isclose(value / step, round(value / step)))
        )

    edges = [b for b in (low, high, above, below) if b is not None]
    candidates: list[float] = [0, *edges, *(e + d for e in edges for d in (1, -1)), *((a + b) / 2 for a in edges for b in edges)]
    if step:
        candidates += [f(e / step) * step for e in edges for f in (math.ceil, math.floor)]
    if integer:
        candidates = [f(c) for c in candidates for f in (math.ceil, math.floor)]
    return next((c for c in candidates if accepted(c)), candidates[0])


def _distinct(values: list[Any], items: dict[str, Any]) -> list[Any]:
    """``uniqueItems`` with ``minItems`` > 1: successive enum values, numbers a step
    apart (``multipleOf`` kept), strings with a counter."""
    if items.get("enum"):
        return [items["enum"][i % len(items["enum"])] for i in range(len(values))]
    step = items.get("multipleOf") or 1
    out: list[Any] = []
    for i, value in enumerate(values):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value + i * step
        elif isinstance(value, str) and i:
            value = f"{value}{i}"
        out.append(value)
    return out


def violate(schema: dict[str, Any], document: Any) -> Any | None:
    """``document`` broken against ``schema`` the way models break it: the first required
    property dropped when the root is an object that has one, else a value of a type the
    root does not allow, else a value outside its ``enum``/``const``. None when the schema
    accepts anything, so that no fault is claimed that was not injected."""
    refs = _Refs(schema)
    root = refs.resolve(schema)
    for part in root.get("allOf") or []:
        root = _merge(root, refs.resolve(part))
    required = root.get("required") or []
    if isinstance(document, dict) and required:
        return {k: v for k, v in document.items() if k != required[0]}
    allowed = _allowed_types(root, refs)
    if allowed:
        return next(value for kind, value in _WRONG_VALUES if kind not in allowed)
    if "enum" in root or "const" in root:
        return _NOT_ALLOWED
    return None


_NOT_ALLOWED = "not-an-allowed-value"
# one value per JSON type, in the order tried; an integer is a number, so "number" is
# represented by a non-integral value and counts as allowed when either is; JSON null is
# left out so that None can mean "cannot be violated"
_WRONG_VALUES = (("object", {"unexpected": True}), ("array", ["unexpected"]), ("string", _NOT_ALLOWED), ("number", 1.5), ("boolean", False))


def _allowed_types(root: dict[str, Any], refs: _Refs) -> set[str]:
    """Every JSON type the root accepts, through ``anyOf``/``oneOf`` branches; empty when
    some branch accepts any type (then no wrong type exists)."""
    branches = root.get("anyOf") or root.get("oneOf") or [root]
    allowed: set[str] = set()
    for branch in branches:
        declared = refs.resolve(branch).get("type")
        if not declared:
            return set()
        allowed |= {declared} if isinstance(declared, str) else set(declared)
    if "integer" in allowed:
        allowed.add("number")
    return allowed if {kind for kind, _ in _WRONG_VALUES} - allowed else set()


def near_json(document: Any, style: str) -> str | None:
    """``document`` as almost-JSON in ``style`` (one of ``NEAR_JSON_STYLES``): fenced in
    Markdown, with a trailing comma, single-quoted, or after a line of prose, all of which
    ``json_repair`` turns back into ``document``. A style that would not survive repair
    for this document falls back to ``fenced``; a scalar has no such form (None)."""
    if not isinstance(document, (dict, list)):
        return None
    text = json.dumps(document, ensure_ascii=False)
    if style == "trailing_comma" and document:
        return text[:-1] + "," + text[-1]
    if style == "single_quotes" and '"' in text and "'" not in text and "\\" not in text:
        return text.replace('"', "'")
    if style == "prose":
        return f"Here is the JSON you asked for:\n{text}"
    return f"```json\n{json.dumps(document, ensure_ascii=False, indent=2)}\n```"
