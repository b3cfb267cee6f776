"""consumers/structured.py: parse, repair and validate answers against the request's schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from turnout.consumers import structured
from turnout.consumers.structured import InvalidSchema, StructuredChecker, StructuredConfig, reask_messages
from turnout.schemas.models import ChatMessage

ORDER = {
    "type": "object",
    "properties": {
        "customer": {"type": "string"},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"sku": {"type": "string"}, "price": {"type": "number"}}, "required": ["sku"]},
        },
    },
    "required": ["customer", "items"],
    "additionalProperties": False,
}
ORDER_TEXT = json.dumps(ORDER)
GOOD = '{\n  "customer": "Zoë",\n  "items": [{"sku": "a-1", "price": 9.5}]\n}'


@pytest.fixture
def checker() -> StructuredChecker:
    return StructuredChecker()


def item(price: object) -> dict[str, object]:
    return {"sku": "x", "price": price}


# -- valid and repairable answers ----------------------------------------------------------------
def test_a_valid_answer_passes_unrepaired_as_compact_json(checker: StructuredChecker) -> None:
    result = checker.check(GOOD, ORDER_TEXT)
    assert (result.ok, result.repaired, result.errors) == (True, False, ())
    assert result.content == '{"customer":"Zoë","items":[{"sku":"a-1","price":9.5}]}'  # key order and non-ASCII kept


def test_a_schema_may_be_given_parsed_or_as_text(checker: StructuredChecker) -> None:
    assert checker.check(GOOD, ORDER) == checker.check(GOOD, ORDER_TEXT)


@pytest.mark.parametrize(
    "content",
    [
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here is the order:\n\n```json\n{GOOD}\n```\nLet me know if you need anything else.",
    ],
    ids=["json-fence", "bare-fence", "fence-in-prose"],
)
def test_fenced_json_is_unwrapped(checker: StructuredChecker, content: str) -> None:
    result = checker.check(content, ORDER)
    assert (result.ok, result.repaired) == (True, True)
    assert json.loads(result.content or "") == json.loads(GOOD)


@pytest.mark.parametrize(
    "content",
    [
        '{"customer": "Zoë", "items": [{"sku": "a-1", "price": 9.5},],}',  # trailing commas
        "{'customer': 'Zoë', 'items': [{'sku': 'a-1', 'price': 9.5}]}",  # single quotes
        '{"customer": "Zoë", "items": [{"sku": "a-1", "price": 9.5}',  # cut off
        'Sure! {"customer": "Zoë", "items": [{"sku": "a-1", "price": 9.5}]}',  # prose before
    ],
    ids=["trailing-commas", "single-quotes", "cut-off", "prose"],
)
def test_near_json_is_repaired(checker: StructuredChecker, content: str) -> None:
    result = checker.check(content, ORDER)
    assert (result.ok, result.repaired, result.errors) == (True, True, ())
    assert json.loads(result.content or "") == json.loads(GOOD)


def test_repair_can_be_turned_off() -> None:
    result = StructuredChecker(StructuredConfig(repair=False)).check(f"```json\n{GOOD}\n```", ORDER)
    assert (result.ok, result.content, result.repaired) == (False, None, False)
    assert result.errors[0].startswith("$: not a JSON document (")


@pytest.mark.parametrize(
    ("content", "reason"),
    [("I cannot help with that.", "Expecting value"), ("", "Expecting value"), ('{"a": NaN}', "NaN is not JSON"), ("[1, Infinity]", "Infinity is not JSON")],
)
def test_an_answer_with_no_json_reports_why(checker: StructuredChecker, content: str, reason: str) -> None:
    result = checker.check(content, {})
    assert (result.ok, result.content, result.repaired) == (False, None, False)
    assert len(result.errors) == 1
    assert result.errors[0].startswith("$: not a JSON document (") and reason in result.errors[0]


def test_an_escaped_lone_surrogate_stays_escaped(checker: StructuredChecker) -> None:
    result = checker.check('{"customer": "Zo\\u00eb \\ud800", "items": []}', ORDER)
    assert result.ok
    assert result.content == '{"customer":"Zo\\u00eb \\ud800","items":[]}'  # UTF-8 could not carry it unescaped
    assert checker.check('{"customer": "Zo\\u00eb", "items": []}', ORDER).content == '{"customer":"Zoë","items":[]}'


# -- schema violations -----------------------------------------------------------------------------
def test_violations_are_listed_with_their_json_paths(checker: StructuredChecker) -> None:
    answer = {"items": [item(1), item(2), item("abc")], "note": "extra"}
    result = checker.check(json.dumps(answer), ORDER)
    assert (result.ok, result.repaired) == (False, False)
    assert result.content == json.dumps(answer, separators=(",", ":"))
    assert set(result.errors) == {
        "$: 'customer' is a required property",
        "$: Additional properties are not allowed ('note' was unexpected)",
        "$.items[2].price: 'abc' is not of type 'number'",
    }


def test_violations_come_in_document_order(checker: StructuredChecker) -> None:
    answer = {"customer": "c", "items": [item(i) if i not in (2, 10) else item("bad") for i in range(12)]}
    result = checker.check(json.dumps(answer), ORDER)
    assert [e.split(":")[0] for e in result.errors] == ["$.items[2].price", "$.items[10].price"]


def test_a_repaired_answer_can_still_violate_the_schema(checker: StructuredChecker) -> None:
    result = checker.check("```json\n{'customer': 7, 'items': []}\n```", ORDER)
    assert (result.ok, result.repaired, result.content) == (False, True, '{"customer":7,"items":[]}')
    assert result.errors == ("$.customer: 7 is not of type 'string'",)


def test_the_number_of_errors_is_capped() -> None:
    checker = StructuredChecker(StructuredConfig(max_errors=3))
    answer = {"customer": "c", "items": [item("bad") for _ in range(8)]}
    result = checker.check(json.dumps(answer), ORDER)
    assert len(result.errors) == 4
    assert result.errors[:3] == tuple(f"$.items[{i}].price: 'bad' is not of type 'number'" for i in range(3))
    assert result.errors[3] == "… and 5 more errors"


def test_each_error_is_clipped() -> None:
    checker = StructuredChecker(StructuredConfig(max_error_chars=60))
    result = checker.check(json.dumps({"customer": "x" * 500, "items": []}), {"properties": {"customer": {"maxLength": 3}}})
    (error,) = result.errors
    assert len(error) == 60 and error.startswith("$.customer: 'xxx") and error.endswith("…")


def test_formats_are_annotations_unless_asked_for() -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    answer = '{"email": "not an address"}'
    assert StructuredChecker().check(answer, schema).ok
    strict = StructuredChecker(StructuredConfig(check_formats=True)).check(answer, schema)
    assert strict.errors == ("$.email: 'not an address' is not a 'email'",)


def test_the_schema_s_own_draft_is_honoured(checker: StructuredChecker) -> None:
    tuple_items = {"type": "array", "items": [{"type": "string"}, {"type": "number"}]}  # draft-07 tuple form
    with pytest.raises(InvalidSchema):
        checker.check('["a", 1]', tuple_items)  # not a valid 2020-12 schema: the default draft
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **tuple_items}
    assert checker.check('["a", 1]', draft7).ok
    assert checker.check('[1, "a"]', draft7).errors == ("$[0]: 1 is not of type 'string'", "$[1]: 'a' is not of type 'number'")


# -- invalid schemas ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "object",', "the response schema is not valid JSON: "),
        ("[1, 2]", "the response schema must be a JSON object, not list"),
        ({"type": "strng"}, "the response schema is not a valid JSON Schema at $.type: 'strng' is not valid under any of the given schemas"),
        ({"properties": {"a": {"minLength": -1}}}, "the response schema is not a valid JSON Schema at $.properties.a.minLength: "),
        ({"$ref": "#/$defs/missing"}, "the response schema has a $ref that cannot be resolved: "),
        ({"$ref": "https://example.com/schema.json"}, "the response schema has a $ref that cannot be resolved: "),
    ],
    ids=["not-json", "not-object", "bad-type", "bad-keyword-value", "dangling-ref", "remote-ref"],
)
def test_an_invalid_schema_raises_a_clear_error(checker: StructuredChecker, schema: object, message: str) -> None:
    with pytest.raises(InvalidSchema) as raised:
        checker.check('{"a": 1}', schema)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


# -- the validator cache -------------------------------------------------------------------------------
def test_validators_are_compiled_once_per_schema(checker: StructuredChecker) -> None:
    first = checker.validator(ORDER_TEXT)
    assert checker.validator(ORDER_TEXT) is first
    reordered = dict(reversed(list(ORDER.items())))
    assert checker.validator(ORDER) is checker.validator(reordered)


def test_the_validator_cache_is_bounded_and_keeps_the_recently_used() -> None:
    checker = StructuredChecker(StructuredConfig(validator_cache_size=2))
    a, b, c = ('{"type": "string"}', '{"type": "number"}', '{"type": "array"}')
    kept = checker.validator(a)
    dropped = checker.validator(b)
    checker.validator(a)  # a is used again: b is now the least recent
    checker.validator(c)
    assert checker.validator(a) is kept
    assert checker.validator(b) is not dropped


def test_an_invalid_schema_is_not_cached(checker: StructuredChecker) -> None:
    for _ in range(2):
        with pytest.raises(InvalidSchema):
            checker.validator('{"type": 5}')


def test_the_module_level_check_uses_the_defaults() -> None:
    assert structured.check(GOOD, ORDER_TEXT) == StructuredChecker().check(GOOD, ORDER_TEXT)


# -- re-ask -----------------------------------------------------------------------------------------
def test_reask_appends_the_bad_answer_and_the_errors() -> None:
    request = [ChatMessage(role="system", content="You extract orders."), ChatMessage(role="user", content="Order: 2 apples")]
    errors = ["$: 'customer' is a required property", "$.items[0].price: 'two' is not of type 'number'"]
    messages = reask_messages(request, '{"items": [{"price": "two"}]}', errors)
    assert messages[:2] == request
    assert messages[2] == ChatMessage(role="assistant", content='{"items": [{"price": "two"}]}')
    assert messages[3].role == "user" and len(messages) == 4
    text = messages[3].content
    assert "\n- $: 'customer' is a required property\n- $.items[0].price: 'two' is not of type 'number'" in text
    assert "corrected JSON document only" in text and "no code fences" in text


def test_reask_does_not_change_the_request_s_messages() -> None:
    request = [ChatMessage(role="user", content="hi")]
    reask_messages(request, "nope", ["$: not a JSON document (Expecting value: line 1 column 1 (char 0))"])
    assert request == [ChatMessage(role="user", content="hi")]


def test_reask_after_a_checker_result_round_trips(checker: StructuredChecker) -> None:
    bad = '{"customer": 1, "items": []}'
    result = checker.check(bad, ORDER)
    messages = reask_messages([ChatMessage(role="user", content="order")], bad, result.errors)
    assert "$.customer: 1 is not of type 'string'" in messages[-1].content


# -- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [("max_errors", 0), ("max_error_chars", 10), ("validator_cache_size", 0)])
def test_out_of_range_settings_are_refused_by_name(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        StructuredConfig(**{field: value})
