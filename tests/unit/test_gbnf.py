"""One GBNF builder for the in-process llama.cpp backend and llama-cpp-python's server.

A stand-in ``llama_cpp`` module (its converter reproduces the two gaps the workarounds of
``llamacpp_compat`` fix) shows that a request to llama-cpp-python's server gets the same
GBNF the in-process backend builds: JSON's string characters, the stock any-object
grammar for JSON mode; and that a schema the converter cannot take is a `K2ValidationError`
naming the tool and the fix, not the converter's bare exception.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from langchain_k2 import K2ValidationError
from langchain_k2._structured import JSON_MODE_GRAMMAR
from langchain_k2._turn import call_grammar
from langchain_k2.backends._base import GenerationParams, json_grammar
from langchain_k2.backends._completions_wire import request_body
from langchain_k2.backends._gbnf import grammar_gbnf
from langchain_k2.backends._llamacpp_compat import JSON_CHAR_RULE, LOOSE_CHAR_RULE

STOCK_JSON_GBNF = 'root ::= object\nobject ::= "{" ws "}"'


def _convert(schema_text: str) -> str:
    schema = json.loads(schema_text)
    if "$ref" in json.dumps(schema) and "$defs" not in schema:
        raise KeyError("Unresolved $ref: #/$defs/Missing")  # what the real converter raises
    return f"root ::= object\n{LOOSE_CHAR_RULE} escape\n"


@pytest.fixture
def llama_cpp(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("llama_cpp")
    grammar = types.ModuleType("llama_cpp.llama_grammar")
    grammar.json_schema_to_gbnf = _convert  # type: ignore[attr-defined]
    grammar.JSON_GBNF = STOCK_JSON_GBNF  # type: ignore[attr-defined]
    module.llama_grammar = grammar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_grammar", grammar)
    return module


def _server_grammar(grammar: object) -> str:
    params = GenerationParams(grammar=grammar)  # type: ignore[arg-type]
    return str(request_body("llama-cpp-python", "P", params, stream=False)["grammar"])


def test_the_server_gets_the_in_process_workarounds(llama_cpp: types.ModuleType) -> None:
    tool = {"name": "f", "parameters": {"type": "object", "properties": {}}}
    sent = _server_grammar(call_grammar([tool]))
    assert JSON_CHAR_RULE in sent
    assert LOOSE_CHAR_RULE not in sent
    assert sent == grammar_gbnf(call_grammar([tool]), label="llama.cpp")  # the same builder
    assert _server_grammar(JSON_MODE_GRAMMAR) == STOCK_JSON_GBNF  # JSON mode: any object


def test_a_schema_the_converter_cannot_take_names_the_tool(llama_cpp: types.ModuleType) -> None:
    broken = {"$ref": "#/$defs/Missing"}  # the arguments' schema refers to nothing
    grammar = json_grammar(
        {"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": broken}}
    )
    with pytest.raises(K2ValidationError, match="tool 'get_weather'") as caught:
        _server_grammar(grammar)
    assert "strict=False" in str(caught.value)
    assert "llama-cpp-python's server" in str(caught.value)
    assert isinstance(caught.value.__cause__, KeyError)


def test_gbnf_is_sent_as_given_to_the_llama_cpp_servers() -> None:
    gbnf = {"type": "gbnf", "value": 'root ::= "yes" | "no"'}
    assert _server_grammar(gbnf) == 'root ::= "yes" | "no"'
    params = GenerationParams(grammar=gbnf)  # type: ignore[arg-type]
    assert request_body("llama.cpp", "P", params, stream=False)["grammar"] == gbnf["value"]


def test_grammar_is_built_in_one_place_from_every_accepted_shape() -> None:
    from langchain_k2 import K2ConfigError
    from langchain_k2.backends._base import Grammar

    schema = {"type": "object", "properties": {}}
    assert Grammar.of({"type": "json", "value": schema}) == Grammar("json", schema)
    assert Grammar.of({"type": "json", "value": json.dumps(schema)}) == Grammar("json", schema)
    wrapped = {"type": "json_schema", "value": {"name": "x", "schema": schema}}
    assert Grammar.of(wrapped) == Grammar("json", schema)
    assert Grammar.of({"type": "regex", "value": "[0-9]+"}) == Grammar("regex", "[0-9]+")
    assert GenerationParams(grammar={"type": "json", "value": schema}).grammar == json_grammar(  # type: ignore[arg-type]
        schema
    )
    with pytest.raises(K2ConfigError, match=r"grammar=\{'type': 'xml'.* is not understood"):
        Grammar.of({"type": "xml", "value": "<a/>"})
    for engine in ("vllm", "sglang", "tgi"):
        with pytest.raises(K2ConfigError, match="GBNF"):
            request_body(
                engine, "P", GenerationParams(grammar=Grammar("gbnf", "root ::= x")), stream=False
            )


def test_the_real_converters_failure_is_a_clear_k2_error() -> None:
    pytest.importorskip("llama_cpp.llama_grammar")
    tool = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    tool["parameters"]["properties"] = {"city": {"type": "strin"}}  # a typo the converter refuses
    with pytest.raises(K2ValidationError, match="call of tool 'get_weather'") as caught:
        _server_grammar(call_grammar([tool]))
    assert "Unrecognized schema" in str(caught.value)
    assert "strict=False" in str(caught.value)
