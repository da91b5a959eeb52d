"""with_structured_output over real sockets: each method and schema kind, the grammar on
the wire, a first reply that fails validation and a retried second one, and the fallback
when the server refuses grammars.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel, Field

from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of


class Movie(BaseModel):
    """A movie."""

    title: str
    year: int = Field(ge=1888)


class MovieDict(TypedDict):
    """A movie."""

    title: str
    year: int


MOVIE_SCHEMA = {
    "title": "Movie",
    "description": "A movie.",
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}
SCHEMAS = [(Movie, "Movie"), (MovieDict, "MovieDict"), (MOVIE_SCHEMA, "Movie")]
GOOD = '{"title": "Alien", "year": 1979}'


def answer(text: str) -> dict[str, Any]:
    return reply(tokens=tokens_of(text, special("<|endoftext|>")))


def sent(tgi: FakeEngine) -> list[dict[str, Any]]:
    return [r["body"] for r in tgi.requests() if r["path"] == "/"]


def as_dict(value: Any) -> dict[str, Any]:
    return value.model_dump() if isinstance(value, BaseModel) else dict(value)


@pytest.mark.parametrize(("schema", "name"), SCHEMAS)
def test_json_schema_method(tgi: FakeEngine, schema: Any, name: str) -> None:
    tgi.script(answer(GOOD))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = llm.with_structured_output(schema).invoke("Alien came out in 1979.")
    assert as_dict(result) == {"title": "Alien", "year": 1979}
    body = sent(tgi)[0]
    grammar = body["parameters"]["grammar"]
    assert grammar["type"] == "json"
    assert grammar["value"]["required"] == ["title", "year"]
    assert "It must satisfy this JSON schema" in body["inputs"]


@pytest.mark.parametrize(("schema", "name"), SCHEMAS)
def test_function_calling_method(tgi: FakeEngine, schema: Any, name: str) -> None:
    tgi.script(answer(f'{{"name": "{name}", "arguments": {GOOD}}}'))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = llm.with_structured_output(schema, method="function_calling").invoke("Alien, 1979")
    assert as_dict(result) == {"title": "Alien", "year": 1979}
    body = sent(tgi)[0]
    assert body["inputs"].endswith("<|beginofsystem|><tool_call>")
    assert body["parameters"]["grammar"]["value"]["properties"]["name"] == {"const": name}


@pytest.mark.parametrize(("schema", "name"), SCHEMAS)
def test_json_mode_method(tgi: FakeEngine, schema: Any, name: str) -> None:
    tgi.script(answer(GOOD))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = llm.with_structured_output(schema, method="json_mode").invoke("Alien, 1979")
    assert as_dict(result) == {"title": "Alien", "year": 1979}
    grammar = sent(tgi)[0]["parameters"]["grammar"]
    assert grammar["value"]["type"] == "object"
    assert "properties" in grammar["value"]


def test_failed_validation_is_asked_again(tgi: FakeEngine) -> None:
    tgi.script(answer('{"title": "Alien", "year": 19}'), answer(GOOD))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = llm.with_structured_output(Movie, include_raw=True).invoke("Alien, 1979")
    assert result["parsed"] == Movie(title="Alien", year=1979)
    assert result["parsing_error"] is None
    assert result["raw"].response_metadata["structured_output_retries"] == 1
    first, second = sent(tgi)
    # The re-ask is not the same request again: it carries the answer and why it failed.
    assert second["inputs"].startswith(first["inputs"])
    added = second["inputs"][len(first["inputs"]) :]
    assert added.startswith(
        '{"title": "Alien", "year": 19}<|beginofuser|>That answer cannot be used'
    )
    assert "greater than or equal to 1888" in added


async def test_async_and_fallback_without_grammar(tgi: FakeEngine) -> None:
    tgi.configure(grammar_enabled=False)
    tgi.script(answer(GOOD))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = await llm.with_structured_output(Movie, include_raw=True).ainvoke("Alien, 1979")
    assert result["parsed"] == Movie(title="Alien", year=1979)
    assert "grammar_fallback" in result["raw"].response_metadata
    bodies = sent(tgi)
    assert "grammar" in bodies[0]["parameters"]
    assert "grammar" not in bodies[-1]["parameters"]
    assert "It must satisfy this JSON schema" in bodies[-1]["inputs"]


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    """A person and where they live."""

    name: str
    home: Address


def test_function_calling_with_a_raw_schema_holding_defs(tgi: FakeEngine) -> None:
    """A JSON-schema dict keeps its ``$defs``/``$ref``; the forced-call grammar on the wire
    must still resolve them (they move to the grammar's top level)."""
    import jsonschema

    schema = Person.model_json_schema()
    assert "$defs" in schema
    arguments = {"name": "Ada", "home": {"street": "1 Main St", "city": "London"}}
    call = {"name": "Person", "arguments": arguments}
    tgi.script(answer(json.dumps(call)))
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    result = llm.with_structured_output(schema, method="function_calling").invoke("Ada, London")
    assert result == arguments
    grammar = sent(tgi)[0]["parameters"]["grammar"]["value"]
    jsonschema.validate(call, grammar)
    with pytest.raises(jsonschema.ValidationError, match="'city' is a required property"):
        jsonschema.validate({**call, "arguments": {**arguments, "home": {"street": "x"}}}, grammar)


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_grammars_off_k2_call_form_and_prose_are_read_on_the_first_request(
    tgi: FakeEngine, method: str
) -> None:
    """Issue 15 item 11: with grammars off K2 answers in its own call form, or with a
    sentence before the JSON; both are read without asking again."""
    tgi.configure(grammar_enabled=False)
    call = json.dumps({"name": "Movie", "arguments": json.loads(GOOD)})
    tgi.script(
        reply(
            tokens=tokens_of(
                special("<tool_call>"), call, special("</tool_call>"), special("<|endoftext|>")
            )
        ),
        answer(f"Sure, here it is: {GOOD}"),
    )
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    structured = llm.with_structured_output(Movie, method=method)  # type: ignore[arg-type]
    assert structured.invoke("Alien, 1979") == Movie(title="Alien", year=1979)
    assert structured.invoke("Alien, 1979") == Movie(title="Alien", year=1979)
    bodies = sent(tgi)
    # Each answer took one generation (the first also met the grammar refusal).
    assert [("grammar" in b["parameters"]) for b in bodies] == [True, False, False]
