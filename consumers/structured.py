"""Structured output: does an answer satisfy the JSON Schema its request asked for?

A request with ``response_schema`` wants a JSON document, not prose. Providers that
enforce the schema still return truncated or fenced JSON now and then, and many models
behind OpenAI-compatible servers only try. So the worker checks every such answer:
``check`` parses it, repairs near-JSON (code fences, trailing commas, single quotes, a
missing closing bracket: syntax only, never values, so a repaired document says what
the model said) and validates it. An answer that still fails is asked again once with
``reask_messages``, which shows the model its answer and the validation errors.

The schema is the requester's: one that is not valid JSON, not an object, not a valid
JSON Schema or whose ``$ref`` cannot be resolved raises ``InvalidSchema`` with a message
fit for the requester, never a crash deep inside jsonschema. Validators are compiled
once per schema text and kept in a small LRU, since a pipeline sends the same schema
with thousands of requests.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import json_repair
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from turnout.schemas.models import ChatMessage
from turnout.schemas.worker_config import StructuredConfig

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\r?\n(.*?)```", re.DOTALL)


class InvalidSchema(ValueError):
    """The request's schema cannot be used; the message says why, for the requester."""


@dataclass(frozen=True)
class StructuredResult:
    """``content`` is the document as compact JSON (keys in the model's order), or ``None``
    when nothing JSON could be read; ``errors`` are ``"<json path>: <problem>"`` lines."""

    ok: bool
    content: str | None
    repaired: bool
    errors: tuple[str, ...] = ()


class StructuredChecker:
    def __init__(self, config: StructuredConfig | None = None) -> None:
        self.config = config or StructuredConfig()
        self._validators: OrderedDict[str, Validator] = OrderedDict()

    def validator(self, schema: str | Mapping[str, Any]) -> Validator:
        """The compiled validator of ``schema`` (a JSON text, as the request carries it, or
        a parsed object). Draft 2020-12 unless the schema's ``$schema`` names another."""
        key = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True, separators=(",", ":"))
        cached = self._validators.get(key)
        if cached is not None:
            self._validators.move_to_end(key)
            return cached
        compiled = self._compile(_schema_object(schema))
        self._validators[key] = compiled
        if len(self._validators) > self.config.validator_cache_size:
            self._validators.popitem(last=False)
        return compiled

    def check(self, content: str, schema: str | Mapping[str, Any]) -> StructuredResult:
        validator = self.validator(schema)
        try:
            document, repaired = self._parse(content)
        except ValueError as exc:
            return StructuredResult(ok=False, content=None, repaired=False, errors=(f"$: not a JSON document ({exc})",))
        errors = self._errors(validator, document)
        return StructuredResult(ok=not errors, content=_canonical(document), repaired=repaired, errors=errors)

    # -- internals ---------------------------------------------------------------------------
    def _compile(self, schema: dict[str, Any]) -> Validator:
        cls = validator_for(schema, default=Draft202012Validator)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise InvalidSchema(f"the response schema is not a valid JSON Schema at {exc.json_path}: {self._clip(exc.message)}") from None
        return cls(schema, format_checker=cls.FORMAT_CHECKER if self.config.check_formats else None)

    def _parse(self, content: str) -> tuple[Any, bool]:
        """The document and whether it had to be repaired; ``ValueError`` if there is none.
        A document that parses is never repaired: repair fixes syntax, which it has."""
        try:
            return _loads(content), False
        except ValueError:
            if not self.config.repair:
                raise
        text = _unfenced(content)
        try:
            return _loads(text), True
        except ValueError as exc:
            first_error = exc
        try:
            document = json_repair.loads(text)
        except Exception:  # a bug in the repair library must not stop the pipeline
            raise first_error from None
        if document == "" and text.strip() != '""':  # json_repair's answer for "no JSON here"
            raise first_error
        try:
            _canonical(document)  # a repaired NaN or Infinity is still not JSON
        except ValueError:
            raise first_error from None
        return document, True

    def _errors(self, validator: Validator, document: Any) -> tuple[str, ...]:
        try:
            found: list[ValidationError] = sorted(validator.iter_errors(document), key=_document_order)
        except Unresolvable as exc:
            raise InvalidSchema(f"the response schema has a $ref that cannot be resolved: {self._clip(str(exc))}") from None
        limit = self.config.max_errors
        lines = [self._clip(f"{e.json_path}: {e.message}") for e in found[:limit]]
        if len(found) > limit:
            lines.append(f"… and {len(found) - limit} more errors")
        return tuple(lines)

    def _clip(self, line: str) -> str:
        limit = self.config.max_error_chars
        return line if len(line) <= limit else line[: limit - 1] + "…"


_default = StructuredChecker()


def check(content: str, schema: str | Mapping[str, Any]) -> StructuredResult:
    """``StructuredChecker().check`` with the default configuration and a shared cache."""
    return _default.check(content, schema)


def reask_messages(request_messages: Sequence[ChatMessage], bad_content: str, errors: Sequence[str]) -> list[ChatMessage]:
    """The conversation for the one re-ask: the request's turns, the model's bad answer as
    its own turn, then a user turn listing what is wrong and asking for the JSON only."""
    listing = "".join(f"\n- {error}" for error in errors)
    instruction = (
        "Your answer does not match the required JSON schema."
        + (f" Problems found:{listing}" if listing else "")
        + "\n\nReply with the corrected JSON document only: no explanation and no code fences."
    )
    return [
        *request_messages,
        ChatMessage(role="assistant", content=bad_content),
        ChatMessage(role="user", content=instruction),
    ]


def _schema_object(schema: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise InvalidSchema(f"the response schema is not valid JSON: {exc}") from None
    if not isinstance(schema, Mapping):
        raise InvalidSchema(f"the response schema must be a JSON object, not {type(schema).__name__}")
    return dict(schema)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _unfenced(content: str) -> str:
    """The body of the first Markdown code fence, or the content as it is."""
    match = _FENCE.search(content)
    return match.group(1) if match else content


def _document_order(error: ValidationError) -> tuple[list[tuple[bool, int | str]], str]:
    """Errors sorted by where they are (``items[2]`` before ``items[10]``), then by message."""
    return [(isinstance(part, str), part) for part in error.absolute_path], error.message


def _canonical(document: Any) -> str:
    """Compact JSON with non-ASCII text as it is; all of it escaped instead when the
    document holds a lone surrogate (an escaped ``\\ud800`` in the answer), which UTF-8
    cannot carry."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":"), allow_nan=False)
    return text
