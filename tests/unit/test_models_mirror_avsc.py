"""schemas/models.py mirrors schemas/avro/*.avsc: same records, same fields in the same
order, nullable exactly where Avro allows null, compatible types and the same defaults."""

from __future__ import annotations

import inspect
import json
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from factories import AVRO_DIR
from pydantic.fields import FieldInfo

from turnout.schemas import models
from turnout.schemas.models import AvroRecord

MODELS: dict[str, type[AvroRecord]] = {
    cls.avro_name: cls
    for _, cls in inspect.getmembers(models, inspect.isclass)
    if issubclass(cls, AvroRecord) and cls is not AvroRecord and cls.__module__ == models.__name__
}
AVSC: dict[str, dict[str, Any]] = {path.name.removesuffix(".avsc"): json.loads(path.read_text()) for path in sorted(AVRO_DIR.glob("*.avsc"))}


def full_name(schema: dict[str, Any]) -> str:
    return schema["name"] if "." in schema["name"] else f"{schema['namespace']}.{schema['name']}"


def qualify(name: str, namespace: str = "turnout") -> str:
    return name if "." in name else f"{namespace}.{name}"


def is_nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        assert len(rest) == 1, f"only T | None unions map to Avro [null, T]: {annotation}"
        return rest[0], True
    return annotation, False


def check_type(avro_type: Any, annotation: Any, where: str) -> None:
    """Does a value of ``annotation`` serialize as ``avro_type``? (non-null branch)"""
    if isinstance(avro_type, list):
        non_null = [t for t in avro_type if t != "null"]
        assert len(non_null) == 1, f"{where}: unions other than [null, T] have no model mirror"
        return check_type(non_null[0], annotation, where)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if avro_type.get("logicalType") == "timestamp-millis":
            assert kind == "long" and annotation is datetime, f"{where}: timestamp-millis needs datetime, model has {annotation}"
            return
        if kind == "array":
            assert origin is list, f"{where}: Avro array, model has {annotation}"
            return check_type(avro_type["items"], args[0], f"{where}[]")
        if kind == "map":
            assert origin is dict and args[0] is str, f"{where}: Avro map, model has {annotation}"
            return check_type(avro_type["values"], args[1], f"{where}{{}}")
        if kind == "record":
            raise AssertionError(f"{where}: inline records should be their own .avsc file")
        return check_type(kind, annotation, where)
    primitive = {"string": str, "int": int, "long": int, "double": float, "float": float, "boolean": bool}
    if avro_type in primitive:
        if origin is typing.Literal:
            assert all(type(a) is primitive[avro_type] for a in args), f"{where}: Literal{args} is not {avro_type}"
        else:
            assert annotation is primitive[avro_type], f"{where}: Avro {avro_type}, model has {annotation}"
        return
    # a named record defined in its own file
    target = MODELS.get(qualify(avro_type))
    assert target is not None, f"{where}: no model for Avro type {avro_type}"
    assert annotation is target, f"{where}: Avro {avro_type} should be {target.__name__}, model has {annotation}"


def model_default(info: FieldInfo) -> Any:
    return info.get_default(call_default_factory=True)


def test_every_avsc_has_a_model_and_every_model_an_avsc() -> None:
    assert MODELS, "no AvroRecord subclasses found"
    assert sorted(MODELS) == sorted(AVSC)


@pytest.mark.parametrize("name", sorted(AVSC))
def test_file_name_matches_record_name(name: str) -> None:
    schema = AVSC[name]
    assert schema["type"] == "record"
    assert full_name(schema) == name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_field_names_in_order(name: str) -> None:
    model = MODELS[name]
    assert list(model.model_fields) == [f["name"] for f in AVSC[name]["fields"]]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_nullable_in_avro_iff_optional_in_model(name: str) -> None:
    model = MODELS[name]
    for field in AVSC[name]["fields"]:
        _, optional = strip_optional(model.model_fields[field["name"]].annotation)
        assert optional == is_nullable(field["type"]), (
            f"{name}.{field['name']}: Avro nullable={is_nullable(field['type'])}, model Optional={optional}"
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_field_types_are_compatible(name: str) -> None:
    model = MODELS[name]
    for field in AVSC[name]["fields"]:
        annotation, _ = strip_optional(model.model_fields[field["name"]].annotation)
        check_type(field["type"], annotation, f"{name}.{field['name']}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_avro_defaults_are_model_defaults(name: str) -> None:
    """A field an old writer may omit must be optional in the model, with the same default."""
    model = MODELS[name]
    for field in AVSC[name]["fields"]:
        if "default" not in field:
            continue
        info = model.model_fields[field["name"]]
        assert not info.is_required(), f"{name}.{field['name']} has an Avro default but is required in the model"
        assert model_default(info) == field["default"], f"{name}.{field['name']}"


def test_nullable_fields_default_to_null() -> None:
    """Avro requires a union's default to match its first branch: null goes first."""
    for name, schema in AVSC.items():
        for field in schema["fields"]:
            if is_nullable(field["type"]):
                assert field["type"][0] == "null", f"{name}.{field['name']}"
                assert field.get("default", "missing") is None, f"{name}.{field['name']}"


def test_model_dump_is_the_avro_datum() -> None:
    """model_dump() keys are exactly the Avro field names, so fastavro writes it as is."""
    from factories import full_routed

    dumped = full_routed().model_dump()
    assert list(dumped) == [f["name"] for f in AVSC["turnout.RoutedRequest"]["fields"]]
    assert list(dumped["request"]) == [f["name"] for f in AVSC["turnout.InferenceRequest"]["fields"]]


def test_mirror_checker_notices_a_mismatch() -> None:
    """The type checker above is itself able to fail."""
    with pytest.raises(AssertionError):
        check_type("int", str, "x")
    with pytest.raises(AssertionError):
        check_type({"type": "long", "logicalType": "timestamp-millis"}, int, "x")
    with pytest.raises(AssertionError):
        check_type({"type": "array", "items": "string"}, list[int], "x")
    with pytest.raises(AssertionError):
        check_type("turnout.Usage", models.ErrorInfo, "x")
    assert strip_optional(str | None) == (str, True)
    assert strip_optional(str) == (str, False)


def test_avro_dir_is_the_packaged_one() -> None:
    from turnout.schemas.catalog import AVRO_DIR as PACKAGED

    assert Path(PACKAGED).resolve() == AVRO_DIR.resolve()
