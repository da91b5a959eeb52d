"""with_structured_output over an in-memory backend: methods, schema kinds, retries."""

from __future__ import annotations

import json
from typing import TypedDict

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, field_validator

from langchain_k2 import ChatK2, K2ConfigError, K2GrammarUnsupportedError
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import Reply, ScriptedBackend


class Person(BaseModel):
    """A person."""

    name: str
    age: int = Field(ge=0)


class PersonDict(TypedDict):
    """A person."""

    name: str
    age: int


PERSON_SCHEMA = {
    "title": "Person",
    "description": "A person.",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
ALICE = '{"name": "Alice", "age": 30}'


def make(**kwargs):
    backend = ScriptedBackend(info_value=BackendInfo(max_stop_sequences=4, supports_grammar=True))
    return ChatK2(backend=backend, retry_backoff=0.0, **kwargs), backend


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (Person, Person(name="Alice", age=30)),
        (PersonDict, {"name": "Alice", "age": 30}),
        (PERSON_SCHEMA, {"name": "Alice", "age": 30}),
    ],
)
def test_json_schema_method_constrains_with_grammar(schema, expected):
    llm, backend = make()
    backend.script([ALICE])
    assert llm.with_structured_output(schema).invoke("Alice is 30.") == expected
    prompt, params = backend.requests[0]
    assert params.grammar is not None
    assert params.grammar.kind == "json"
    assert set(params.grammar.value["properties"]) == {"name", "age"}
    assert "It must satisfy this JSON schema" in prompt


@pytest.mark.parametrize(
    ("schema", "name"), [(Person, "Person"), (PersonDict, "PersonDict"), (PERSON_SCHEMA, "Person")]
)
def test_function_calling_method_forces_the_schema_tool(schema, name):
    llm, backend = make()
    backend.script([f'{{"name": "{name}", "arguments": {{"name": "Bob", "age": 4}}}}'])
    result = llm.with_structured_output(schema, method="function_calling").invoke("Bob is 4.")
    got = result.model_dump() if isinstance(result, BaseModel) else result
    assert got == {"name": "Bob", "age": 4}
    prompt, params = backend.requests[0]
    assert prompt.endswith("<tool_call>")
    assert params.grammar.value["properties"]["name"] == {"const": name}


def test_strict_false_instructs_without_grammar():
    llm, backend = make()
    backend.script([ALICE])
    assert llm.with_structured_output(Person, strict=False).invoke("q") == Person(
        name="Alice", age=30
    )
    prompt, params = backend.requests[0]
    assert params.grammar is None
    assert "It must satisfy this JSON schema" in prompt


def test_json_mode_without_schema_returns_any_object():
    llm, backend = make()
    backend.script(['{"anything": [1, 2]}'])
    assert llm.with_structured_output(None, method="json_mode").invoke("q") == {"anything": [1, 2]}
    prompt, params = backend.requests[0]
    assert params.grammar.value["type"] == "object"
    assert "Respond with a single JSON object" in prompt


def test_json_mode_with_schema_validates():
    llm, backend = make()
    backend.script(['{"name": "C", "age": 2}'])
    assert llm.with_structured_output(Person, method="json_mode").invoke("q") == Person(
        name="C", age=2
    )


def test_first_reply_fails_validation_second_is_used():
    llm, backend = make()
    backend.script(['{"name": "Alice", "age": -3}'], [ALICE])
    structured = llm.with_structured_output(Person, include_raw=True)
    result = structured.invoke("Alice is 30.")
    assert result["parsed"] == Person(name="Alice", age=30)
    assert result["parsing_error"] is None
    assert result["raw"].response_metadata["structured_output_retries"] == 1
    assert len(backend.requests) == 2


def test_retries_run_out_include_raw_reports_error_else_raises():
    llm, backend = make(max_tool_call_retries=1)
    backend.script(["not json"], ["still not"], ["nope"], ["no"])
    result = llm.with_structured_output(Person, include_raw=True).invoke("q")
    assert result["parsed"] is None
    assert isinstance(result["parsing_error"], OutputParserException)
    assert result["raw"].content == "still not"
    with pytest.raises(OutputParserException, match="JSON"):
        llm.with_structured_output(Person).invoke("q")


async def test_async_structured_output():
    llm, backend = make()
    backend.script([ALICE])
    assert await llm.with_structured_output(Person).ainvoke("q") == Person(name="Alice", age=30)


def test_instruction_joins_an_existing_system_message():
    llm, backend = make()
    backend.script([ALICE])
    llm.with_structured_output(Person).invoke([SystemMessage("Be exact."), HumanMessage("q")])
    prompt = backend.requests[0][0]
    assert prompt.startswith("Be exact.\n\nRespond with a single JSON object")
    assert prompt.count("<|endofsystemprompt|>") == 1


def test_grammar_refusal_falls_back_to_instructions_and_says_so():
    llm, backend = make()
    backend.script(
        Reply(error=K2GrammarUnsupportedError("grammar is not supported", status=422)), [ALICE]
    )
    result = llm.with_structured_output(Person, include_raw=True).invoke("q")
    assert result["parsed"] == Person(name="Alice", age=30)
    assert "grammar_fallback" in result["raw"].response_metadata
    assert backend.requests[1][1].grammar is None


def test_bad_arguments_raise():
    llm, _ = make()
    with pytest.raises(K2ConfigError, match="method"):
        llm.with_structured_output(Person, method="xml")  # type: ignore[arg-type]
    with pytest.raises(K2ConfigError, match="needs a schema"):
        llm.with_structured_output(None)
    with pytest.raises(K2ConfigError, match="frob"):
        llm.with_structured_output(Person, frob=1)


def test_schema_json_is_in_the_instruction():
    llm, backend = make()
    backend.script([ALICE])
    llm.with_structured_output(PERSON_SCHEMA).invoke("q")
    prompt = backend.requests[0][0]
    schema_text = prompt.split("JSON schema: ", 1)[1].split("<|endofsystemprompt|>")[0]
    assert json.loads(schema_text)["required"] == ["name", "age"]


def test_function_calling_strict_false_sends_no_grammar_even_for_a_repair():
    llm, backend = make()
    structured = llm.with_structured_output(Person, method="function_calling", strict=False)
    backend.script(
        ['{"name": "Person", "arguments": {"name": "Bob", "age": "four"}}</tool_call>'],
        ['{"name": "Person", "arguments": {"name": "Bob", "age": 4}}</tool_call>'],
    )
    assert structured.invoke("Bob is 4.") == Person(name="Bob", age=4)
    assert len(backend.requests) == 2  # the first call failed its schema and was repaired
    assert [params.grammar for _, params in backend.requests] == [None, None]
    assert all(prompt.endswith("<tool_call>") for prompt, _ in backend.requests)


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_repairs_and_re_asks_share_max_tool_call_retries(retries):
    llm, backend = make(max_tool_call_retries=retries)
    bad = '{"name": "Person", "arguments": {"name": "Bob", "age": "four"}}</tool_call>'
    backend.script(*[[bad]] * 20)
    structured = llm.with_structured_output(Person, method="function_calling", include_raw=True)
    result = structured.invoke("Bob is 4.")
    assert result["parsed"] is None
    assert isinstance(result["parsing_error"], OutputParserException)
    assert len(backend.requests) == retries + 1  # not (retries + 1) ** 2


def test_a_repair_uses_the_budget_a_re_ask_would_have_used():
    llm, backend = make(max_tool_call_retries=2)
    bad = '{"name": "Person", "arguments": {"name": "Bob", "age": "four"}}</tool_call>'
    good = '{"name": "Person", "arguments": {"name": "Bob", "age": 4}}</tool_call>'
    backend.script([bad], [good])
    structured = llm.with_structured_output(Person, method="function_calling", include_raw=True)
    result = structured.invoke("Bob is 4.")
    assert result["parsed"] == Person(name="Bob", age=4)
    assert result["raw"].response_metadata["tool_call_retries"] == 1
    assert result["raw"].response_metadata["structured_output_retries"] == 0
    assert len(backend.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [
        f"```json\n{ALICE}\n```",
        f"```JSON\n{ALICE}\n```",  # a language tag in capitals
        f"```jsonc {ALICE}```",  # another tag, on the same line
        f"```\n{ALICE}",  # the closing fence never came
    ],
)
def test_fenced_json_is_read_without_asking_again(reply):
    """Free-form output (``strict=False``) in a markdown fence parses as the parser reads
    a fenced tool-call body: one owner for fence stripping, so no second request."""
    llm, backend = make()
    backend.script([reply])
    result = llm.with_structured_output(Person, strict=False).invoke("Alice is 30.")
    assert result == Person(name="Alice", age=30)
    assert len(backend.requests) == 1


K2_CALL = '<tool_call>{"name": "Person", "arguments": {"name": "Alice", "age": 30}}</tool_call>'


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_an_answer_in_k2s_own_call_form_is_accepted(method):
    """Issue 15 item 11: with grammars off, K2 answers as a call of the schema."""
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=False)
    backend.script([K2_CALL])
    result = llm.with_structured_output(Person, method=method).invoke("Alice is 30.")
    assert result == Person(name="Alice", age=30)
    assert len(backend.requests) == 1


def test_the_call_form_is_accepted_when_it_comes_back_as_an_invalid_call():
    """A block of a tool never offered may come back invalid (the raw block as args)."""
    from langchain_core.messages import AIMessage
    from langchain_core.messages.tool import invalid_tool_call

    from langchain_k2._structured import build_spec

    spec = build_spec(Person, "json_schema")
    raw = AIMessage(
        content="", invalid_tool_calls=[invalid_tool_call(name="Person", args=K2_CALL, id="c")]
    )
    assert spec.parse(raw) == Person(name="Alice", age=30)


def test_json_after_a_sentence_is_recovered_with_strict_false():
    llm, backend = make()
    backend.script([f"Here is the person you asked for: {ALICE}."])
    result = llm.with_structured_output(Person, strict=False).invoke("Alice is 30.")
    assert result == Person(name="Alice", age=30)
    assert len(backend.requests) == 1


def test_json_after_a_sentence_is_not_taken_under_a_grammar():
    llm, backend = make(max_tool_call_retries=1)
    backend.script([f"Here: {ALICE}"], [ALICE])
    result = llm.with_structured_output(Person, include_raw=True).invoke("Alice is 30.")
    assert result["parsed"] == Person(name="Alice", age=30)
    assert len(backend.requests) == 2


def test_a_re_ask_tells_the_model_why_and_is_never_byte_identical():
    llm, backend = make()
    backend.script(['{"name": "Alice", "age": -3}'], [ALICE])
    assert llm.with_structured_output(Person).invoke("Alice is 30.") == Person(name="Alice", age=30)
    first, second = (prompt for prompt, _ in backend.requests)
    assert second != first
    assert second.startswith(first)  # the first answer and the reason follow it
    added = second[len(first) :]
    assert '{"name": "Alice", "age": -3}' in added
    assert "That answer cannot be used: Output does not satisfy the schema 'Person'" in added
    assert "greater than or equal to 0" in added


class Even(BaseModel):
    """An even number (a rule the JSON schema cannot carry, so only pydantic sees it)."""

    n: int

    @field_validator("n")
    @classmethod
    def even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("n must be even")
        return value


def test_a_function_calling_re_ask_answers_the_call_with_the_error():
    llm, backend = make(max_tool_call_retries=1)
    backend.script(
        ['{"name": "Even", "arguments": {"n": 3}}'], ['{"name": "Even", "arguments": {"n": 4}}']
    )
    structured = llm.with_structured_output(Even, method="function_calling")
    assert structured.invoke("An even number?") == Even(n=4)
    first, second = (prompt for prompt, _ in backend.requests)
    assert second != first
    assert '<tool_call>[{"name": "Even", "arguments": {"n": 3}}]</tool_call>' in second
    assert "<tool_response>Error: Output does not satisfy the schema 'Even'" in second
    assert "n must be even" in second
    assert "Call Even again with corrected arguments.</tool_response>" in second
    assert second.endswith("<tool_call>")
