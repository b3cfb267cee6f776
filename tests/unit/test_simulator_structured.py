"""Structured output from the simulator: documents that validate against the request's
JSON schema (checked with ``jsonschema``), and on purpose documents that break it or
near-JSON that ``json_repair`` fixes, in both wire formats."""

from __future__ import annotations

import enum
import json
from collections import Counter
from typing import Any, Literal

import anthropic
import json_repair
import jsonschema
import openai
import pytest
from anthropic.types import TextBlock, ToolUseBlock
from pydantic import BaseModel, Field

from backend_fixtures import running_simulator
from test_simulator import anthropic_client, client, health, instant, simulator_settings
from turnout.consumers.sim_json import NEAR_JSON_STYLES, instance, near_json, violate

TICKET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 12},
        "priority": {"enum": ["p1", "p2", "p3"]},
        "score": {"type": "number", "minimum": 0.5, "maximum": 0.9},
        "count": {"type": "integer", "exclusiveMinimum": 3},
        "urgent": {"type": "boolean"},
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "owner": {"$ref": "#/$defs/person"},
        "note": {"type": "string"},
    },
    "required": ["title", "priority", "score", "count", "urgent", "labels", "owner"],
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
            "required": ["name", "email"],
            "additionalProperties": False,
        }
    },
}
SETTINGS = simulator_settings(
    honest=instant(),
    violating=instant(schema_violation_rate=1.0),
    nearly=instant(near_json_rate=1.0),
    mixed=instant(schema_violation_rate=0.25, near_json_rate=0.25),
)
TURNS = [{"role": "user", "content": "file a ticket"}]
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": TICKET, "strict": True}}
TOOL = {"name": "file_ticket", "description": "file a ticket", "input_schema": TICKET}


def valid(document: Any, schema: dict[str, Any] = TICKET) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(document)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Line(BaseModel):
    sku: str = Field(min_length=3, max_length=8)
    quantity: int = Field(ge=1, le=10)


class Order(BaseModel):
    reference: str
    lines: list[Line] = Field(min_length=1)
    colour: Colour
    channel: Literal["web", "shop"]
    note: str | None


# -- the generator alone, on schemas of every kind ---------------------------------------------
SCHEMAS = [
    TICKET,
    Order.model_json_schema(),
    {"type": "array", "items": {"type": "integer", "multipleOf": 7, "minimum": 10}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2},
    {"type": "string", "minLength": 3, "maxLength": 5, "enum": ["abcd", "x"]},
    {"type": ["integer", "null"], "exclusiveMinimum": 5, "exclusiveMaximum": 7},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
    {"type": "object", "properties": {"n": {"type": "number", "minimum": -5, "maximum": -2}}, "required": ["n"]},
    {"anyOf": [{"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]}, {"type": "string"}]},
    {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
    {"type": "object", "properties": {"child": {"$ref": "#"}}},  # recursive
    {"enum": [1, 2]},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: str(s.get("title") or s.get("type") or next(iter(s))))
def test_generated_instances_validate_and_violations_do_not(schema):
    document = instance(schema)
    assert valid(document, schema), document
    broken = violate(schema, document)
    assert broken is not None and not valid(broken, schema), broken


@pytest.mark.parametrize("style", NEAR_JSON_STYLES)
@pytest.mark.parametrize("document", [instance(TICKET), instance(Order.model_json_schema()), [1, 2], {}, {"quote": "it's"}])
def test_near_json_is_not_json_but_repairs_to_the_document(style, document):
    text = near_json(document, style)
    with pytest.raises(ValueError):
        json.loads(text)
    assert json_repair.loads(text) == document


def test_what_cannot_be_faulted_is_said_so():
    assert violate({}, None) is None  # a schema that accepts anything has no violation
    assert near_json("text", "fenced") is None  # a scalar has no repairable near-JSON form


# -- OpenAI: response_format, the SDK's parse helper, forced tools ----------------------------
async def test_response_format_json_schema_answers_a_valid_document():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="honest", messages=TURNS, response_format=RESPONSE_FORMAT)
    choice = completion.choices[0]
    document = json.loads(choice.message.content)
    assert valid(document) and choice.finish_reason == "stop"
    assert completion.usage.completion_tokens == pytest.approx(len(choice.message.content) / 4, abs=1)


async def test_the_openai_parse_helper_gets_a_model_instance():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.parse(model="honest", messages=TURNS, response_format=Order)
    order = completion.choices[0].message.parsed
    assert isinstance(order, Order) and order.lines and 3 <= len(order.lines[0].sku) <= 8


async def test_json_object_answers_a_json_object():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="honest", messages=TURNS, response_format={"type": "json_object"})
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


@pytest.mark.parametrize(("tool_choice", "finish"), [({"type": "function", "function": {"name": "file_ticket"}}, "stop"), ("required", "tool_calls")])
async def test_a_forced_openai_function_is_called_with_valid_arguments(tool_choice, finish):
    tools = [{"type": "function", "function": {"name": "file_ticket", "parameters": TICKET}}]
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="honest", messages=TURNS, tools=tools, tool_choice=tool_choice)
    choice = completion.choices[0]
    [call] = choice.message.tool_calls
    assert call.function.name == "file_ticket" and choice.message.content is None
    assert valid(json.loads(call.function.arguments)) and choice.finish_reason == finish


async def test_a_cut_structured_answer_is_not_json_and_finishes_with_length():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        completion = await api.chat.completions.create(model="honest", messages=TURNS, response_format=RESPONSE_FORMAT, max_tokens=5)
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 5
    with pytest.raises(ValueError):
        json.loads(completion.choices[0].message.content)


async def test_openai_schema_violation_and_near_json_at_rate_one():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        broken = await api.chat.completions.create(model="violating", messages=TURNS, response_format=RESPONSE_FORMAT)
        nearly = await api.chat.completions.create(model="nearly", messages=TURNS, response_format=RESPONSE_FORMAT)
        plain = await api.chat.completions.create(model="violating", messages=TURNS)  # no schema: nothing to break
        report = await health(port)
    document = json.loads(broken.choices[0].message.content)
    assert not valid(document) and "title" not in document  # the first required property is dropped
    text = nearly.choices[0].message.content
    with pytest.raises(ValueError):
        json.loads(text)
    assert valid(json_repair.loads(text))
    assert "answer to: file a ticket" in plain.choices[0].message.content
    assert (report["faults"]["schema_violation"], report["faults"]["near_json"]) == (1, 1)


async def test_output_faults_at_intermediate_rates():
    async with running_simulator(SETTINGS) as (_, port), client(port) as api:
        texts = [
            (await api.chat.completions.create(model="mixed", messages=TURNS, response_format=RESPONSE_FORMAT)).choices[0].message.content
            for _ in range(200)
        ]
        report = await health(port)

    def kind(text: str) -> str:
        try:
            return "valid" if valid(json.loads(text)) else "schema_violation"
        except ValueError:
            return "near_json" if valid(json_repair.loads(text)) else "broken"

    seen = Counter(kind(text) for text in texts)
    assert seen["broken"] == 0
    assert 30 <= seen["schema_violation"] <= 70 and 30 <= seen["near_json"] <= 70  # 50 expected, 4 sd is about 25
    assert (report["faults"]["schema_violation"], report["faults"]["near_json"]) == (seen["schema_violation"], seen["near_json"])
    assert {text.split("\n")[0][:8] for text in texts if kind(text) == "near_json"} >= {"```json", "Here is "}  # several styles


# -- Anthropic: forced tools and output_config ---------------------------------------------
async def test_a_forced_anthropic_tool_gets_a_valid_tool_use_block():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        by_name = await claude.messages.create(
            model="honest", max_tokens=500, messages=TURNS, tools=[TOOL], tool_choice={"type": "tool", "name": "file_ticket"}
        )
        by_any = await claude.messages.create(model="honest", max_tokens=500, messages=TURNS, tools=[TOOL], tool_choice={"type": "any"})
    for message in (by_name, by_any):
        [block] = message.content
        assert isinstance(block, ToolUseBlock) and block.name == "file_ticket" and block.id.startswith("toolu_")
        assert valid(block.input) and message.stop_reason == "tool_use"


async def test_anthropic_output_config_format_answers_valid_json_text():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        message = await claude.messages.create(
            model="honest", max_tokens=500, messages=TURNS, output_config={"format": {"type": "json_schema", "schema": TICKET}}
        )
    [block] = message.content
    assert isinstance(block, TextBlock) and valid(json.loads(block.text)) and message.stop_reason == "end_turn"


async def test_anthropic_tool_input_breaks_the_schema_and_near_json_comes_as_text():
    forced = {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "file_ticket"}}
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude:
        broken = await claude.messages.create(model="violating", max_tokens=500, messages=TURNS, **forced)
        nearly = await claude.messages.create(model="nearly", max_tokens=500, messages=TURNS, **forced)
    [tool_use] = broken.content
    assert isinstance(tool_use, ToolUseBlock) and not valid(tool_use.input)
    # a tool's input is a parsed object on this wire: almost-JSON can only come as text
    [text] = nearly.content
    assert isinstance(text, TextBlock) and nearly.stop_reason == "end_turn"
    with pytest.raises(ValueError):
        json.loads(text.text)
    assert valid(json_repair.loads(text.text))


async def test_a_tool_the_request_does_not_declare_is_refused():
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude, client(port) as api:
        with pytest.raises(anthropic.BadRequestError):
            await claude.messages.create(model="honest", max_tokens=50, messages=TURNS, tools=[TOOL], tool_choice={"type": "tool", "name": "other"})
        with pytest.raises(openai.BadRequestError):
            await api.chat.completions.create(model="honest", messages=TURNS, tool_choice={"type": "function", "function": {"name": "other"}})


async def test_a_schema_the_simulator_cannot_read_is_refused_with_400():
    unreadable = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "minItems": "many"}}}
    async with running_simulator(SETTINGS) as (_, port), anthropic_client(port) as claude, client(port) as api:
        with pytest.raises(openai.BadRequestError) as openai_refusal:
            await api.chat.completions.create(model="honest", messages=TURNS, response_format=unreadable)
        with pytest.raises(anthropic.BadRequestError) as anthropic_refusal:  # Anthropic requires input_schema
            await claude.messages.create(
                model="honest", max_tokens=50, messages=TURNS, tools=[{"name": "bare"}], tool_choice={"type": "tool", "name": "bare"}
            )
        report = await health(port)
    assert openai_refusal.value.body["param"] == "response_format.json_schema.schema"
    assert "tools.input_schema" in anthropic_refusal.value.body["error"]["message"]
    assert report["invalid_requests"] == 2
