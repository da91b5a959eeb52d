"""Constraints after the thought (issue 21 item 4): the grammar each family and engine gets.

The reasoning families' prompts open the effort's tag, so a forced call, JSON mode and
structured output constrain only what follows the close tag. These tests check the
automaton that admits the thought (against Python's own search), the grammar each family
builds, what each engine's hooks send, and that K2-Chat is unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_k2._steps import GenerationRequest
from langchain_k2._thought_constraint import close_tag, constrain_after_thought, xml_call_gbnf
from langchain_k2.backends._base import GenerationParams, Grammar, json_grammar
from langchain_k2.backends._engines import ENGINES
from langchain_k2.backends._thought import (
    ThoughtFirst,
    after_thought,
    lazy_gbnf,
    structural_tag,
    until_rules,
)
from langchain_k2.errors import K2ConfigError
from langchain_k2.formats import get_format

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def _automaton(rules: list[str], name: str) -> dict[int, list[tuple[str, str, int | None]]]:
    """The rules read back as transitions: (kind, chars, next state or None at the end)."""
    table: dict[int, list[tuple[str, str, int | None]]] = {}
    for rule in rules:
        head, body = rule.split(" ::= ")
        state = int(head.rsplit("-", 1)[1])
        moves = []
        for alt in body.split(" | "):
            target = re.search(rf"{name}-(\d+)$", alt)
            nxt = int(target.group(1)) if target else None
            if alt.startswith("[^"):
                chars = alt[2 : alt.index("]")].encode().decode("unicode_escape")
                moves.append(("not", chars, nxt))
            else:
                moves.append(("is", json.loads(alt.split(" ")[0]), nxt))
        table[state] = moves
    return table


def _accepts(table: dict[int, list[tuple[str, str, int | None]]], text: str) -> bool:
    """Whether ``text`` is exactly a thought plus its close tag (it ends at the last move)."""
    state: int | None = 0
    for index, char in enumerate(text):
        if state is None:
            return False
        for kind, chars, nxt in table[state]:
            if (kind == "is" and char == chars) or (kind == "not" and char not in chars):
                state = nxt
                break
        else:
            return False
        if state is None:
            return index == len(text) - 1
    return False


@pytest.mark.parametrize("close", ["</think_fast>", "</ifm|think>", "</a>", "aab", "abab"])
@pytest.mark.parametrize(
    "thought",
    ["", "plain", "a < b and </think", "</think_fas", "<<//", "aa", "aba", "ababa", "é ✓"],
)
def test_the_automaton_admits_exactly_a_thought_then_its_close_tag(
    close: str, thought: str
) -> None:
    table = _automaton(until_rules(close, "t"), "t")
    text = thought + close
    assert _accepts(table, text) is (text.find(close) == len(thought))


def test_the_thought_gbnf_compiles_in_llama_cpp() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from langchain_k2.backends._gbnf import grammar_gbnf

    fmt = get_format("k2-v3")
    for form in ("xml", "xml_typed", "json"):
        params = constrain_after_thought(
            fmt, fmt.settings("medium", form), GenerationParams(), [WEATHER]
        )
        assert params.grammar is not None
        text = grammar_gbnf(params.grammar, label="llama.cpp")
        assert text.startswith("root ::= k2-thought-0")
        llama_cpp.LlamaGrammar.from_string(text, verbose=False)


def test_k2_v2_forced_call_is_the_hermes_block_after_the_thought() -> None:
    fmt = get_format("k2-v2")
    params = constrain_after_thought(fmt, fmt.settings("medium"), GenerationParams(), [WEATHER])
    grammar = params.grammar
    assert grammar is not None
    assert grammar.kind == "thought"
    spec = grammar.value
    assert (spec.close, spec.lead, spec.tail) == (
        "</think_fast>",
        "<tool_call>\n",
        "\n</tool_call>",
    )
    assert spec.then.kind == "json"
    assert spec.then.value["properties"]["name"] == {"const": "get_weather"}


def test_k2_v3_forms_wrap_the_call_in_the_group() -> None:
    fmt = get_format("k2-v3")
    as_json = constrain_after_thought(
        fmt, fmt.settings("low", "json"), GenerationParams(), [WEATHER]
    )
    spec = as_json.grammar.value  # type: ignore[union-attr]
    assert spec.close == "</ifm|think_faster>"
    assert spec.lead == "<ifm|tool_calls>\n<ifm|tool_call>"
    assert spec.tail == "</ifm|tool_call>\n</ifm|tool_calls>"
    xml = constrain_after_thought(fmt, fmt.settings("high", "xml"), GenerationParams(), [WEATHER])
    spec = xml.grammar.value  # type: ignore[union-attr]
    assert spec.close == "</ifm|think>"
    assert spec.then.kind == "gbnf"
    assert '"get_weather\\n"' in spec.then.value
    assert '("city" | "days")' in spec.then.value
    assert "arg_type" not in spec.then.value
    assert "<ifm|arg_type>" in xml_call_gbnf([WEATHER], typed=True)


def test_json_mode_and_structured_output_follow_the_thought() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for name in ("k2-v2", "k2-think-v2", "k2-v3"):
        fmt = get_format(name)
        params = constrain_after_thought(
            fmt, fmt.settings(), GenerationParams(grammar=json_grammar(schema))
        )
        assert params.grammar is not None
        assert params.grammar.kind == "thought"
        assert params.grammar.value.then == json_grammar(schema)
        assert (params.grammar.value.lead, params.grammar.value.tail) == ("", "")
        assert params.grammar.value.close == close_tag(fmt, fmt.settings().effort or "")


def test_k2_chat_a_prefill_and_a_regex_are_left_alone() -> None:
    chat = get_format("k2-chat")
    given = GenerationParams(grammar=json_grammar({"type": "object"}))
    assert constrain_after_thought(chat, chat.settings(), given, [WEATHER]) == given
    assert constrain_after_thought(chat, chat.settings(), GenerationParams(), [WEATHER]) == (
        GenerationParams()
    )
    v2 = get_format("k2-v2")
    prefill = v2.settings().__class__(effort="medium", opened=False)
    assert constrain_after_thought(v2, prefill, given) == given
    regex = GenerationParams(grammar=Grammar("regex", "[0-9]+"))
    assert constrain_after_thought(v2, v2.settings(), regex) == regex
    assert constrain_after_thought(v2, v2.settings(), GenerationParams()) == GenerationParams()


def _thought() -> Grammar:
    return after_thought(
        json_grammar({"type": "object", "properties": {"a": {"type": "integer"}}}),
        "</think>",
        lead="<tool_call>\n",
        tail="\n</tool_call>",
    )


def test_each_engine_sends_the_thought_its_own_way() -> None:
    grammar = _thought()
    vllm = ENGINES["vllm"].constraint(grammar, None)
    tag = json.loads(vllm["structured_outputs"]["structural_tag"])
    assert tag == structural_tag(grammar.value)
    first, sep, lead, part, tail = tag["format"]["elements"]
    assert first == {"type": "tag", "begin": "", "content": {"type": "any_text"}, "end": "</think>"}
    assert sep["type"] == "regex"
    assert lead == {"type": "const_string", "value": "<tool_call>\n"}
    assert part["json_schema"] == grammar.value.then.value
    assert tail == {"type": "const_string", "value": "\n</tool_call>"}
    sglang = ENGINES["sglang"].constraint(grammar, None)
    assert json.loads(sglang["structural_tag"]) == tag
    assert ENGINES["tgi"].constraint(grammar, None) == {}  # validated after generation


def test_llama_server_gets_a_lazy_grammar_triggered_by_the_close_tag() -> None:
    fake_gbnf = 'root ::= "{}"'
    sent = ENGINES["llama.cpp"].constraint(_thought(), lambda schema: fake_gbnf)
    assert sent["grammar_lazy"] is True
    assert sent["grammar_triggers"] == [{"type": 1, "value": "</think>"}]
    # A one-token trigger word must be a preserved token too, or llama-server answers 400.
    assert sent["preserved_tokens"] == ["</think>"]
    assert sent["grammar"].splitlines()[0] == (
        'root ::= "</think>" ("\\n" | " ")? ("\\n" | " ")? "<tool_call>\\n" k2-then-root '
        '"\\n</tool_call>"'
    )
    assert 'k2-then-root ::= "{}"' in sent["grammar"]


def test_llama_cpp_python_gets_the_whole_grammar() -> None:
    sent = ENGINES["llama-cpp-python"].constraint(_thought(), lambda schema: 'root ::= "{}"')
    assert sent["grammar"].startswith("root ::= k2-thought-0 ")
    assert "k2-thought-3 ::=" in sent["grammar"]


def test_a_thought_needs_a_schema_or_gbnf_after_it() -> None:
    with pytest.raises(K2ConfigError, match="cannot follow the reasoning"):
        after_thought(Grammar("regex", "x"), "</think>")
    assert lazy_gbnf(ThoughtFirst("</x>", Grammar("gbnf", "root ::= [a]")), str).startswith(
        'root ::= "</x>"'
    )


def test_the_turn_gets_the_thought_grammar(monkeypatch: Any) -> None:
    from langchain_k2 import ChatK2
    from langchain_k2._call_options import parse_call_options
    from langchain_k2._settings import settings_of
    from langchain_k2._turn_setup import prepare_turn
    from langchain_k2.backends._base import BackendInfo

    llm = ChatK2(endpoint_url="http://127.0.0.1:9", prompt_format="k2-v2", engine="vllm")
    info = BackendInfo(supports_grammar=True)
    turn = prepare_turn(
        settings_of(llm),
        parse_call_options({"tools": [WEATHER], "tool_choice": "get_weather"}, llm),
        [HumanMessage("Weather?")],
        None,
        info=info,
        engine="vllm",
        count=lambda text: len(text) // 4,
    )
    step = turn.step()
    assert isinstance(step, GenerationRequest)
    request = step
    assert request.prompt.endswith("<|im_start|>assistant\n<think_fast>\n")
    assert request.params.grammar is not None
    assert request.params.grammar.kind == "thought"
    unconstrained = {"tools": [WEATHER], "tool_choice": "get_weather", "tool_grammar": False}
    free = prepare_turn(
        settings_of(llm),
        parse_call_options(unconstrained, llm),
        [HumanMessage("Weather?")],
        None,
        info=info,
        engine="vllm",
        count=lambda text: len(text) // 4,
    ).step()
    assert isinstance(free, GenerationRequest)
    assert free.params.grammar is None


def test_a_server_refusing_the_structural_tag_is_named_as_a_constraint_failure() -> None:
    from langchain_k2.backends._completions_wire import server_of
    from langchain_k2.backends._error_table import Failure, classify

    message = "Invalid structural tag: unknown format type 'any_text'"
    err = classify(Failure(400, message, None, "http://vllm:8000"), server_of(ENGINES["vllm"]))
    assert "could not compile the constraint" in str(err)
    assert "validates the output on the client" in str(err)
