"""Odd but legal data that broke ChatK2 (issue 23, item 3).

``stop="STOP"`` (a str) was sent as four one-letter stops; ``NaN``/``Infinity`` in a tool
call's arguments made a "valid" call that killed the next turn; ``Infinity`` in a server's
token counts lost the answer; a lone surrogate in the answer poisoned the next request;
deep nesting raised a bare ``RecursionError``; mis-typed TGI fields crashed inside the
decoder; ``temperature=inf`` was accepted; a huge tool-call block cost unbounded work.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import ValidationError

from langchain_k2 import ChatK2, K2BackendError, K2ConfigError, ToolDefinitionError
from langchain_k2._tool_block import MAX_CALLS, MAX_DEPTH, MAX_LITERAL_SIZE
from langchain_k2._tool_calls import parse_block
from langchain_k2.backends._engines._base import int_or_none as completions_int
from langchain_k2.backends._tgi_wire import StreamDecoder, answer_events
from tests.support.scripted_backend import ScriptedBackend


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def note(data: dict[str, Any]) -> str:
    """Keep a note."""
    return json.dumps(data)


def make(**kwargs: Any) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    kwargs.setdefault("retry_backoff", 0.0)
    return ChatK2(backend=backend, **kwargs), backend


class StartParams(BaseCallbackHandler):
    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.metadata.append(kwargs.get("metadata") or {})


# ------------------------------------------------------------------------------ stop as a str


def test_a_stop_string_given_as_a_str_is_one_stop_everywhere() -> None:
    llm, backend = make(stop="END")
    backend.script(["one ", "S ", "T two STOP three"], ["a STOP b"], ["x STOP y"], ["x DONE"])
    recorder = StartParams()
    config: Any = {"callbacks": [recorder]}
    assert llm.invoke("q", stop="STOP", config=config).content == "one S T two "
    assert backend.requests[0][1].stop[:2] == ("END", "STOP")
    assert "S" not in backend.requests[0][1].stop
    assert recorder.metadata[0]["ls_stop"] == ["END", "STOP"]  # what was sent
    assert "".join(str(c.content) for c in llm.bind(stop="STOP").stream("q")) == "a "
    assert backend.requests[1][1].stop[:2] == ("END", "STOP")
    assert llm.bind(stop=["STOP"]).invoke("q").content == "x "
    assert llm.invoke("q", stop="DONE").content == "x "
    assert llm.stop == ["END"]


def test_ls_stop_shows_the_field_and_the_call_together() -> None:
    llm, _ = make(stop=["END"])
    assert llm._get_ls_params(stop=["STOP"])["ls_stop"] == ["END", "STOP"]
    assert llm._get_ls_params(stop="STOP")["ls_stop"] == ["END", "STOP"]  # type: ignore[arg-type]
    assert llm._get_ls_params()["ls_stop"] == ["END"]


def test_stop_of_another_type_is_refused_naming_it() -> None:
    llm, _ = make()
    with pytest.raises(K2ConfigError, match="stop must be a string or a list of strings"):
        llm.invoke("q", stop=[1, 2])  # type: ignore[list-item]


# ------------------------------------------------------------------------------ NaN, Infinity


@pytest.mark.parametrize(
    "args",
    ['{"a": NaN, "b": 1}', '{"a": Infinity, "b": 1}', '{"a": -Infinity, "b": 1}', '{"a": 1e999}'],
)
def test_non_finite_numbers_make_the_call_invalid_and_repairable(args: str) -> None:
    raw = f'<tool_call>{{"name": "add", "arguments": {args}}}</tool_call>'
    block = parse_block(raw)
    assert block.tool_calls == []
    (bad,) = block.invalid_tool_calls
    assert bad["args"] == raw  # nothing lost
    assert "not valid JSON" in (bad["error"] or "")
    # ...and the repair turns it into a call the next turn can write back.
    llm, backend = make(max_tool_call_retries=1)
    backend.script([raw], ['{"name": "add", "arguments": {"a": 1, "b": 2}}'])  # the repair
    message = llm.bind_tools([add]).invoke("add")
    assert [c["args"] for c in message.tool_calls] == [{"a": 1, "b": 2}]
    assert message.invalid_tool_calls == []


def test_non_finite_numbers_in_string_encoded_arguments_are_invalid_too() -> None:
    raw = '<tool_call>{"name": "add", "arguments": "{\\"a\\": NaN, \\"b\\": 1}"}</tool_call>'
    block = parse_block(raw)
    assert block.tool_calls == []
    assert "NaN is not a JSON value" in (block.invalid_tool_calls[0]["error"] or "")


@pytest.mark.parametrize("count", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_infinity_in_a_servers_token_counts_does_not_lose_the_answer(count: str) -> None:
    doc = json.loads(
        '{"generated_text": "Hi", "details": {"finish_reason": "length", '
        f'"generated_tokens": {count}, "tokens": [{{"text": "Hi", "special": false}}]}}}}'
    )
    events = answer_events(doc, {"x-prompt-tokens": "7"}, "http://tgi")
    assert events[0].text == "Hi"  # type: ignore[union-attr]
    assert events[-1].output_tokens is None  # type: ignore[union-attr]
    decoder = StreamDecoder("http://tgi")
    line = (
        '{"token": {"text": "Hi", "special": false}, "details": {"finish_reason": "length", '
        f'"generated_tokens": {count}, "input_length": {count}}}}}'
    )
    events = decoder.line("data:" + line) + decoder.line("")
    assert events[0].text == "Hi"  # type: ignore[union-attr]
    assert events[-1].input_tokens is None  # type: ignore[union-attr]
    assert completions_int(json.loads(count)) is None


# ------------------------------------------------------------------------------ surrogates


def test_a_lone_surrogate_in_the_answer_does_not_poison_the_next_turn() -> None:
    llm, backend = make()
    answer = json.loads('"caf\\ud800 ok \\udfff"')  # legal JSON, as a server may send it
    backend.script([answer], [answer], ["fine"])
    message = llm.invoke("q")
    assert message.content == "caf\ufffd ok \ufffd"
    assert "".join(str(c.content) for c in llm.stream("q")) == message.content
    history = [HumanMessage("q"), message, HumanMessage("and?")]
    assert llm.invoke(history).content == "fine"
    prompt = backend.requests[-1][0]
    prompt.encode("utf-8")  # what an HTTP client does with the request body
    json.dumps({"inputs": prompt}, ensure_ascii=False).encode("utf-8")


def test_escaped_lone_surrogates_in_tool_arguments_are_replaced() -> None:
    args = '{"data": {"k\\ud800": "v\\udc00"}}'
    raw = f'<tool_call>{{"name": "note", "arguments": {args}}}</tool_call>'
    block = parse_block(raw)
    assert block.tool_calls[0]["args"] == {"data": {"k\ufffd": "v\ufffd"}}
    json.dumps(block.tool_calls[0]["args"], ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------------------ deep nesting


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000, 100_000])
def test_deeply_nested_arguments_give_an_invalid_call_not_a_recursion_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    raw = f'<tool_call>{{"name": "note", "arguments": {{"data": {{"x": {nested}}}}}}}</tool_call>'
    block = parse_block(raw, [note.tool_call_schema.model_json_schema() | {"name": "note"}])
    assert block.tool_calls == []
    (bad,) = block.invalid_tool_calls
    assert bad["args"] == raw
    assert "nested deeper" in (bad["error"] or "")


def test_deeply_nested_arguments_through_a_whole_turn() -> None:
    llm, backend = make(max_tool_call_retries=0)
    nested = "{" + '"a": {' * 2000 + "}" * 2001
    raw = f'<tool_call>{{"name": "note", "arguments": {{"data": {nested}}}}}</tool_call>'
    backend.script([raw], [raw])
    message = llm.bind_tools([note]).invoke("q")
    assert message.tool_calls == []
    assert message.invalid_tool_calls[0]["args"] == raw
    chunks = list(llm.bind_tools([note]).stream("q"))
    assert sum(len(c.invalid_tool_calls) for c in chunks) == 1


def test_shallow_arguments_stay_valid() -> None:
    nested: Any = "leaf"
    for _ in range(MAX_DEPTH - 4):
        nested = {"k": nested}
    raw = (
        "<tool_call>" + json.dumps({"name": "note", "arguments": {"data": nested}}) + "</tool_call>"
    )
    assert parse_block(raw).tool_calls[0]["args"] == {"data": nested}


@pytest.mark.parametrize("depth", [200, 3000])
def test_a_deeply_nested_tool_schema_is_a_tool_definition_error_naming_the_tool(
    depth: int,
) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    deep = {"type": "function", "function": {"name": "deep_tool", "parameters": schema}}
    llm, _ = make()
    with pytest.raises(ToolDefinitionError, match="deep_tool"):
        llm.bind_tools([deep])


# ------------------------------------------------------------------------------ TGI types


@pytest.mark.parametrize(
    "doc",
    [
        {"details": {"tokens": ["Hi"]}},
        {"details": {"tokens": [{"text": 5, "special": False}]}},
        {"details": {"tokens": [None]}},
        {"details": {"tokens": [{"special": False}]}},
    ],
)
def test_wrong_typed_tgi_answer_fields_are_a_protocol_error_naming_tgi(doc: Any) -> None:
    with pytest.raises(K2BackendError, match=r"The server at http://tgi:1 .*not a TGI answer"):
        answer_events(doc, {}, "http://tgi:1")


@pytest.mark.parametrize(
    "line",
    [
        '{"token": "Hi"}',
        '{"token": {"text": 5}}',
        '{"token": {"text": "a"}, "details": "done"}',
        '{"token": {"text": "a"}, "details": [1]}',
    ],
)
def test_wrong_typed_tgi_stream_fields_are_a_protocol_error_naming_tgi(line: str) -> None:
    decoder = StreamDecoder("http://tgi:1")
    with pytest.raises(K2BackendError, match=r"The server at http://tgi:1 .*not a TGI answer"):
        [decoder.line(text) for text in ("data:" + line, "")]


# ------------------------------------------------------------------------------ non-finite options


FLOAT_FIELDS = ["temperature", "top_p", "repetition_penalty", "timeout", "retry_backoff"]


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_are_refused_at_construction_naming_the_field(
    name: str, value: float
) -> None:
    with pytest.raises(ValidationError, match=name):
        ChatK2(endpoint_url="http://127.0.0.1:1", **{name: value})


@pytest.mark.parametrize("name", ["temperature", "top_p", "repetition_penalty"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_call_options_are_refused_at_bind_and_per_call(name: str, value: float) -> None:
    llm, backend = make()
    with pytest.raises(ValidationError, match=name):
        llm.bind(**{name: value})
    with pytest.raises(ValidationError, match=name):
        llm.invoke("q", **{name: value})
    assert backend.requests == []


# ------------------------------------------------------------------------------ bounded work


def test_a_block_listing_too_many_calls_is_one_invalid_call_holding_it_all() -> None:
    calls = [{"name": "add", "arguments": {"a": n, "b": 1}} for n in range(MAX_CALLS + 1)]
    raw = "<tool_call>" + json.dumps(calls) + "</tool_call>"
    block = parse_block(raw)
    assert block.tool_calls == []
    (bad,) = block.invalid_tool_calls
    assert bad["args"] == raw
    assert f"at most {MAX_CALLS}" in (bad["error"] or "")
    fits = "<tool_call>" + json.dumps(calls[:MAX_CALLS]) + "</tool_call>"
    assert len(parse_block(fits).tool_calls) == MAX_CALLS


def test_a_huge_block_is_not_tried_as_a_python_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []
    real = ast.literal_eval

    def counting(text: str) -> Any:
        tried.append(len(text))
        return real(text)

    monkeypatch.setattr(ast, "literal_eval", counting)
    body = "{'name': 'note', 'arguments': {'data': {'k': '" + "x" * 2_000_000 + "'}}"
    raw = "<tool_call>" + body + "</tool_call>"
    block = parse_block(raw)
    assert tried == []  # too large for the literal fallback: refused after one JSON pass
    assert block.tool_calls == []
    assert block.invalid_tool_calls[0]["args"] == raw  # nothing lost
    small = "<tool_call>{'name': 'add', 'arguments': {'a': 1, 'b': 2}}</tool_call>"
    assert parse_block(small).tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert tried
    assert max(tried) <= MAX_LITERAL_SIZE


def test_a_huge_block_through_a_turn_becomes_invalid_with_nothing_lost() -> None:
    llm, backend = make(max_tool_call_retries=0)
    calls = [{"name": "add", "arguments": {"a": n, "b": 1}} for n in range(20_000)]
    raw = "<tool_call>" + json.dumps(calls) + "</tool_call>"
    backend.script([raw])
    message = llm.bind_tools([add]).invoke("q")
    assert message.tool_calls == []
    assert [c["args"] for c in message.invalid_tool_calls] == [raw]


def test_tool_results_and_history_still_render_after_an_invalid_block() -> None:
    llm, backend = make()
    backend.script(["ok"])
    history = [
        HumanMessage("q"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", tool_call_id="c1"),
    ]
    assert llm.bind_tools([add]).invoke(history).content == "ok"


def test_many_shallow_objects_stay_valid() -> None:
    rows = [{"row": n, "cells": [n, [n]]} for n in range(500)]  # 1500 brackets, depth 6
    raw = "<tool_call>" + json.dumps({"name": "note", "arguments": {"data": {"rows": rows}}})
    block = parse_block(raw + "</tool_call>")
    assert block.tool_calls[0]["args"] == {"data": {"rows": rows}}
