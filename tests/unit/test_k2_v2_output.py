"""K2-V2-Instruct / K2-Think-V2 output: reasoning per effort, Hermes calls (spec 3, 4.1, 7, 8)."""

from __future__ import annotations

import json

import pytest

from langchain_k2._tool_schema import tool_index
from langchain_k2.formats._k2_v2_output import K2V2OutputParser, parse_k2_v2
from langchain_k2.formats._pieces import Reasoning
from tests.support.family_output import WEATHER, summary

TOOLS = tool_index(WEATHER)
TAGS = {"high": "think", "medium": "think_fast", "low": "think_faster"}


def call(name: str, args: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


@pytest.mark.parametrize("effort", ["high", "medium", "low"])
def test_every_effort_splits_reasoning_from_the_answer(effort: str) -> None:
    tag = TAGS[effort]
    got = summary(parse_k2_v2(f"2 plus 2 is 4.\n</{tag}>\n\nThe answer is 4.", effort=effort))
    assert (got.reasoning, got.content, got.calls) == ("2 plus 2 is 4.", "The answer is 4.", [])


@pytest.mark.parametrize("effort", ["high", "medium", "low"])
def test_a_generated_opening_tag_is_dropped(effort: str) -> None:
    tag = TAGS[effort]
    got = summary(parse_k2_v2(f"<{tag}>\nHmm.\n</{tag}>\nHi.", effort=effort))
    assert (got.reasoning, got.content) == ("Hmm.", "Hi.")


def test_a_plain_answer_after_an_empty_thought() -> None:
    got = summary(parse_k2_v2("</think_fast>Paris.", effort="medium"))
    assert (got.reasoning, got.content) == ("", "Paris.")


def test_several_calls_after_reasoning_with_text_around() -> None:
    text = (
        "Two cities.</think_fast>\nLet me check both.\n"
        + call("get_weather", {"location": "Paris, FR", "days": 2})
        + "\n"
        + call("search", {"query": "Rome weather"})
        + "\nDone."
    )
    got = summary(parse_k2_v2(text, TOOLS, effort="medium"))
    assert got.reasoning == "Two cities."
    assert got.content == "Let me check both.\n\n\nDone."
    assert got.calls == [
        ("get_weather", {"location": "Paris, FR", "days": 2}),
        ("search", {"query": "Rome weather"}),
    ]
    assert got.invalid == []


def test_calls_inside_the_reasoning_are_never_calls() -> None:
    drafted = call("search", {"query": "x"})
    got = summary(parse_k2_v2(f"Maybe {drafted} no.</think>Answer.", TOOLS, effort="high"))
    assert got.calls == []
    assert got.invalid == []
    assert drafted in got.reasoning
    assert got.content == "Answer."


def test_missing_close_tag_everything_is_reasoning() -> None:
    text = "Thinking " + call("search", {"query": "x"}) + " still thinking"
    got = summary(parse_k2_v2(text, TOOLS, effort="low"))
    assert got.content == ""
    assert got.calls == []
    assert got.invalid == []
    assert got.reasoning == text.strip()


@pytest.mark.parametrize(("effort", "wrong"), [("low", "think"), ("high", "think_fast")])
def test_a_wrong_effort_close_tag_is_text(effort: str, wrong: str) -> None:
    right = TAGS[effort]
    got = summary(parse_k2_v2(f"A </{wrong}> B</{right}>C", effort=effort))
    assert (got.reasoning, got.content) == (f"A </{wrong}> B", "C")


def test_bad_json_block_is_an_invalid_call_with_its_raw_text() -> None:
    bad = '<tool_call>\n{"name": "search", "arguments": {"query": }\n</tool_call>'
    got = summary(parse_k2_v2("Go.</think>" + bad, TOOLS, effort="high"))
    assert got.calls == []
    [(name, args, error)] = got.invalid
    assert args == bad
    assert name is None
    assert error is not None
    assert "not valid JSON" in error


def test_unknown_tool_and_schema_failure_are_invalid() -> None:
    text = "x</think>" + call("nope", {}) + call("get_weather", {"location": 3})
    got = summary(parse_k2_v2(text, TOOLS, effort="high"))
    assert got.calls == []
    errors = [e or "" for _, _, e in got.invalid]
    assert "unknown tool 'nope'" in errors[0]
    assert "fail its schema" in errors[1]


def test_arguments_as_a_json_string_and_a_list_are_read() -> None:
    text = (
        "x</think>"
        '<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"a\\"}"}</tool_call>'
        '<tool_call>[{"name": "search", "arguments": {"query": "b"}}]</tool_call>'
    )
    got = summary(parse_k2_v2(text, TOOLS, effort="high"))
    assert got.calls == [("search", {"query": "a"}), ("search", {"query": "b"})]


def test_string_argument_values_are_never_trimmed() -> None:
    got = summary(parse_k2_v2("x</think>" + call("search", {"query": "  a  "}), effort="high"))
    assert got.calls == [("search", {"query": "  a  "})]


def test_think_false_reads_answer_and_calls_only() -> None:
    text = "Sure. " + call("search", {"query": "q"})
    got = summary(parse_k2_v2(text, TOOLS, effort="high", think=False, opened=False))
    assert (got.reasoning, got.content, got.calls) == ("", "Sure.", [("search", {"query": "q"})])


def test_not_opened_reasoning_only_when_the_output_opens_it() -> None:
    assert summary(parse_k2_v2("Hi.", effort="high", opened=False)).content == "Hi."
    got = summary(parse_k2_v2("<think>a</think>b", effort="high", opened=False))
    assert (got.reasoning, got.content) == ("a", "b")


def test_an_unknown_effort_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="'high', 'medium', 'low'; got 'max'"):
        K2V2OutputParser(effort="max")


def test_streaming_holds_partial_tags_and_reports_blocks() -> None:
    parser = K2V2OutputParser(TOOLS, effort="medium")
    assert parser.feed("Plan</think") == [Reasoning("Plan")]
    assert parser.feed("_fast>Ok <tool_") == ["Ok"]
    assert parser.feed('call>{"name": "search", ') == []
    assert parser.in_block
    [block] = parser.feed('"arguments": {"query": "q"}}</tool_call>')
    assert not parser.in_block
    assert [c["args"] for c in block.tool_calls] == [{"query": "q"}]  # type: ignore[union-attr]
    assert parser.close() == []
