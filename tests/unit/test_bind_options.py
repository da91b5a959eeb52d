"""bind_tools' OpenAI-style options: parallel_tool_calls, strict, response_format."""

from __future__ import annotations

import json

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_k2 import ChatK2, K2ConfigError
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class City(BaseModel):
    """A city."""

    name: str
    population: int


def make(**kwargs) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    return ChatK2(backend=backend, retry_backoff=0.0, **kwargs), backend


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("parallel_tool_calls", "no"),
        ("strict", 1),
        ("response_format", 42),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "x"}}),
        ("response_format", {"type": "text"}),
    ],
)
def test_bad_values_fail_at_bind_time_naming_the_keyword(option: str, value: object) -> None:
    llm, backend = make()
    with pytest.raises(K2ConfigError, match=option):
        llm.bind_tools([add], **{option: value})
    assert backend.requests == []


def two_calls() -> str:
    calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": {}}]
    return "<tool_call>" + json.dumps(calls) + "</tool_call>"


def test_parallel_tool_calls_false_asks_for_one_call_and_keeps_the_first() -> None:
    llm, backend = make(max_tool_call_retries=0)
    bound = llm.bind_tools([add], parallel_tool_calls=False)
    backend.script([two_calls()], [two_calls()])
    invoked = bound.invoke("q")
    merged = None
    for chunk in bound.stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert "Call at most one function per turn." in backend.requests[0][0]
    for message in (invoked, merged):
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 1, "b": 2})]
        # The second call (whose arguments fail the schema) is reported, not lost.
        [dropped] = message.response_metadata["dropped_tool_calls"]
        assert (dropped["name"], dropped["args"]) == ("add", {})
        assert "tool_call_schema_errors" not in message.response_metadata


def test_parallel_tool_calls_true_or_unset_keeps_every_call() -> None:
    llm, backend = make(max_tool_call_retries=0)
    backend.script([two_calls()])
    message = llm.bind_tools([add], parallel_tool_calls=True).invoke("q")
    assert len(message.tool_calls) == 2
    assert "Call at most one" not in backend.requests[0][0]


def test_strict_true_is_the_grammar_already_sent_and_false_sends_none() -> None:
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    reply = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    backend.script([reply], [reply], [reply])
    for strict in (True, None, False):
        message = llm.bind_tools([add], tool_choice="add", strict=strict).invoke("q")
        assert message.tool_calls[0]["args"] == {"a": 1, "b": 2}
    grammars = [params.grammar for _prompt, params in backend.requests]
    assert grammars[0] is not None
    assert grammars[0] == grammars[1]
    assert grammars[2] is None


@pytest.mark.parametrize(
    "response_format",
    [
        City,
        {
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": City.model_json_schema(), "strict": True},
        },
    ],
    ids=["pydantic", "openai-json-schema"],
)
def test_response_format_without_tools_is_the_json_schema_grammar(response_format) -> None:
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    backend.script(['{"name": "Lima", "population": 10}'])
    message = llm.bind_tools([], response_format=response_format).invoke("q")
    assert json.loads(message.content) == {"name": "Lima", "population": 10}
    prompt, params = backend.requests[0]
    assert params.grammar is not None
    assert params.grammar.kind == "json"
    assert params.grammar.value["required"] == ["name", "population"]
    assert "Respond with a single JSON object and nothing else." in prompt
    assert '"population"' in prompt


def test_response_format_with_tools_keeps_tools_callable() -> None:
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    backend.script(['<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'])
    message = llm.bind_tools([add], response_format=City).invoke("q")
    assert message.tool_calls[0]["args"] == {"a": 1, "b": 2}
    prompt, params = backend.requests[0]
    assert params.grammar is None  # a grammar would forbid the call
    assert "When you answer without calling a function, respond with a single JSON" in prompt


def test_json_object_response_format_is_json_mode() -> None:
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    backend.script(['{"x": 1}'])
    llm.bind_tools([], response_format={"type": "json_object"}).invoke("q")
    grammar = backend.requests[0][1].grammar
    assert grammar.value["additionalProperties"] is True
