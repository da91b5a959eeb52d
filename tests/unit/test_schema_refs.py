"""Forced-call grammars keep the ``$ref`` pointers of raw tool schemas resolvable (issue 15,
item 14): the wrapper nests each schema under ``arguments``, so its ``$defs`` must move to the
wrapper's top level. Each grammar is checked the way a server reads it, with ``jsonschema``.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from langchain_k2._schema_refs import hoist_definitions
from langchain_k2._turn import call_grammar


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    """A person and where they live."""

    name: str
    home: Address
    previous: list[Address] = []


class Invoice(BaseModel):
    """An invoice with its own (different) Address."""

    class Address(BaseModel):
        country: str

    total: float
    billing: Address


PERSON = {"name": "save_person", "parameters": Person.model_json_schema()}
INVOICE = {
    "type": "function",
    "function": {"name": "bill", "parameters": Invoice.model_json_schema()},
}
GOOD_PERSON = {"name": "Ada", "home": {"street": "1 Main St", "city": "London"}}


def validator(tools: list[dict[str, Any]]) -> Any:
    schema = call_grammar(tools).value
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(tools: list[dict[str, Any]], call: dict[str, Any]) -> list[str]:
    return [error.message for error in validator(tools).iter_errors(call)]


def test_pydantic_nested_model_schema_has_defs_and_refs() -> None:
    assert "$defs" in PERSON["parameters"]
    assert PERSON["parameters"]["properties"]["home"] == {"$ref": "#/$defs/Address"}


def test_one_tool_with_defs_validates_calls() -> None:
    assert errors([PERSON], {"name": "save_person", "arguments": GOOD_PERSON}) == []
    bad_home = {"name": "Ada", "home": {"street": "1 Main St"}}
    assert errors([PERSON], {"name": "save_person", "arguments": bad_home}) == [
        "'city' is a required property"
    ]
    bad_list = {**GOOD_PERSON, "previous": [{"city": 3, "street": "x"}]}
    assert errors([PERSON], {"name": "save_person", "arguments": bad_list}) == [
        "3 is not of type 'string'"
    ]
    grammar = call_grammar([PERSON]).value
    assert sorted(grammar["$defs"]) == ["Address"]
    assert "$defs" not in grammar["properties"]["arguments"]


def test_two_tools_with_colliding_definition_names() -> None:
    tools = [PERSON, INVOICE]
    grammar = call_grammar(tools).value
    assert sorted(grammar["$defs"]) == ["Address", "Address_2"]
    assert errors(tools, {"name": "save_person", "arguments": GOOD_PERSON}) == []
    invoice = {"total": 9.5, "billing": {"country": "FR"}}
    assert errors(tools, {"name": "bill", "arguments": invoice}) == []
    # each tool's pointer reaches its own Address
    assert (
        validator(tools).is_valid({"name": "bill", "arguments": {**invoice, "billing": {}}})
        is False
    )
    wrong_address = {"name": "save_person", "arguments": {"name": "Ada", "home": {"country": "FR"}}}
    assert validator(tools).is_valid(wrong_address) is False


def test_draft7_definitions_and_a_pointer_to_the_schema_root() -> None:
    tree = {
        "name": "plant",
        "parameters": {
            "type": "object",
            "properties": {
                "label": {"$ref": "#/definitions/label"},
                "children": {"type": "array", "items": {"$ref": "#"}},
            },
            "required": ["label"],
            "definitions": {"label": {"type": "string", "minLength": 1}},
        },
    }
    good = {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}
    assert errors([tree], {"name": "plant", "arguments": good}) == []
    bad = {"label": "a", "children": [{"label": "b", "children": [{"label": ""}]}]}
    assert len(errors([tree], {"name": "plant", "arguments": bad})) == 1


def test_schemas_without_pointers_are_left_as_they_are() -> None:
    plain = {"type": "object", "properties": {"q": {"type": "string"}}}
    assert hoist_definitions([plain]) == ([plain], {})
    assert "$defs" not in call_grammar([{"name": "search", "parameters": plain}]).value
    url_ref = {"type": "object", "properties": {"q": {"$ref": "https://example.org/q.json"}}}
    assert hoist_definitions([url_ref]) == ([url_ref], {})


def test_pointer_segments_are_escaped() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/a~1b"}},
        "$defs": {"a/b": {"type": "integer"}},
    }
    other = {"type": "object", "$defs": {"a/b": {"type": "string"}}}
    (_first, second), definitions = hoist_definitions([other, schema])
    assert definitions == {"a/b": {"type": "string"}, "a/b_2": {"type": "integer"}}
    assert second["properties"]["x"] == {"$ref": "#/$defs/a~1b_2"}


@pytest.mark.parametrize("tools", [[PERSON], [PERSON, INVOICE]], ids=["one", "two"])
def test_the_input_schemas_are_not_modified(tools: list[dict[str, Any]]) -> None:
    before = repr(tools)
    call_grammar(tools)
    assert repr(tools) == before
