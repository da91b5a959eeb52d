"""K2-V3 (K2 Horizon) output: reasoning, call groups, value typing (spec sections 3, 4.2, 7, 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from langchain_k2._tool_schema import tool_index
from langchain_k2.formats._k2_v3_calls import coerce_value
from langchain_k2.formats._k2_v3_output import K2V3OutputParser, parse_k2_v3
from langchain_k2.formats._pieces import Reasoning
from tests.support.family_output import WEATHER, Parsed, summary

TOOLS = tool_index(WEATHER)
TAGS = {"high": "ifm|think", "medium": "ifm|think_fast", "low": "ifm|think_faster"}


def xml_call(name: str, *args: tuple[str, str], typed: dict[str, str] | None = None) -> str:
    parts = [f"<ifm|tool_call>{name}\n"]
    for key, value in args:
        parts.append(f"<ifm|arg_key>{key}</ifm|arg_key>\n")
        if typed is not None:
            parts.append(f"<ifm|arg_type>{typed[key]}</ifm|arg_type>\n")
        parts.append(f"<ifm|arg_value>{value}</ifm|arg_value>\n")
    return "".join(parts) + "</ifm|tool_call>"


def group(*calls: str) -> str:
    return "<ifm|tool_calls>\n" + "\n".join(calls) + "\n</ifm|tool_calls>"


def parse(text: str, **kwargs: Any) -> Parsed:
    kwargs.setdefault("effort", "high")
    return summary(parse_k2_v3(text, TOOLS, **kwargs))


@pytest.mark.parametrize("effort", ["high", "medium", "low"])
def test_every_effort_splits_reasoning_from_the_answer(effort: str) -> None:
    tag = TAGS[effort]
    got = parse(f"The user greets.</{tag}>Hello!", effort=effort)
    assert (got.reasoning, got.content, got.calls) == ("The user greets.", "Hello!", [])


def test_a_generated_opening_tag_is_dropped() -> None:
    got = parse("<ifm|think_fast>\nHm.</ifm|think_fast>Hi.", effort="medium")
    assert (got.reasoning, got.content) == ("Hm.", "Hi.")


def test_golden_call_after_reasoning() -> None:
    text = "The user wants weather. Call get_weather.</ifm|think>" + group(
        xml_call("get_weather", ("location", "Paris, FR"), ("days", "2"))
    )
    got = parse(text)
    assert got.reasoning == "The user wants weather. Call get_weather."
    assert got.content == ""
    assert got.calls == [("get_weather", {"location": "Paris, FR", "days": 2})]
    assert got.blocks == [group(xml_call("get_weather", ("location", "Paris, FR"), ("days", "2")))]


def test_several_calls_with_text_around_the_group() -> None:
    text = (
        "Two.</ifm|think>Let me check both."
        + group(
            xml_call("get_weather", ("location", "Paris")),
            xml_call("search", ("query", "Rome")),
        )
        + "\nOne moment."
    )
    got = parse(text)
    assert got.content == "Let me check both.\nOne moment."
    assert got.calls == [("get_weather", {"location": "Paris"}), ("search", {"query": "Rome"})]


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("days", "3", 3),
        ("days", " 3 ", 3),
        ("ratio", "2.5", 2.5),
        ("ratio", "2.0", 2),
        ("metric", "true", True),
        ("metric", "False", False),
        ("metric", "1", True),
        ("note", "null", None),
        ("note", "nullish", "nullish"),
        ("tags", '["a", "b"]', ["a", "b"]),
        ("options", '{"lang": "fr", "n": null}', {"lang": "fr", "n": None}),
        ("code", "123", "123"),  # a string argument stays a string
        ("code", " keep  spaces ", " keep  spaces "),
        (
            "location",
            "a < b > c <ifm|tool_call> </ifm|arg_key>",
            "a < b > c <ifm|tool_call> </ifm|arg_key>",
        ),
        ("when", "5", 5),  # integer before string in a union
    ],
)
def test_xml_values_are_typed_from_the_schema(key: str, raw: str, value: object) -> None:
    args = [("location", "x")] if key != "location" else []
    got = parse("t</ifm|think>" + group(xml_call("get_weather", *args, (key, raw))))
    assert got.invalid == []
    [(_, parsed)] = got.calls
    assert parsed[key] == value
    assert type(parsed[key]) is type(value)


def test_an_undeclared_argument_stays_a_string() -> None:
    loose = tool_index([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
    text = "t</ifm|think>" + group(xml_call("f", ("flag", "true"), ("n", "7")))
    got = summary(parse_k2_v3(text, loose, effort="high"))
    assert got.calls == [("f", {"flag": "true", "n": "7"})]


def test_the_typed_form_uses_the_tag_when_the_schema_is_a_union() -> None:
    text = "t</ifm|think>" + group(
        xml_call(
            "get_weather",
            ("location", "Paris"),
            ("when", "5"),
            typed={"location": "string", "when": "string"},
        )
    )
    got = parse(text, tool_call_format="xml_typed")
    assert got.calls == [("get_weather", {"location": "Paris", "when": "5"})]


def test_the_typed_form_needs_a_type_and_the_plain_form_refuses_one() -> None:
    typed = group(xml_call("search", ("query", "q"), typed={"query": "string"}))
    plain = group(xml_call("search", ("query", "q")))
    assert parse("t</ifm|think>" + typed, tool_call_format="xml_typed").calls == [
        ("search", {"query": "q"})
    ]
    wrong = parse("t</ifm|think>" + typed)
    assert wrong.calls == []
    assert "arg_type" in (wrong.invalid[0][2] or "")
    missing = parse("t</ifm|think>" + plain, tool_call_format="xml_typed")
    assert missing.calls == []
    assert "has no <ifm|arg_type>" in (missing.invalid[0][2] or "")


def test_the_json_form_is_typed_by_schema() -> None:
    body = json.dumps({"name": "get_weather", "arguments": {"location": 7, "days": "2"}})
    text = "t</ifm|think>" + group(f"<ifm|tool_call>{body}</ifm|tool_call>")
    got = parse(text, tool_call_format="json")
    assert got.calls == [("get_weather", {"location": "7", "days": 2})]


def test_the_json_form_with_bad_json_is_invalid() -> None:
    text = "t</ifm|think>" + group('<ifm|tool_call>{"name": "search", </ifm|tool_call>')
    got = parse(text, tool_call_format="json")
    assert got.calls == []
    assert "not valid JSON" in (got.invalid[0][2] or "")


def test_wrong_format_is_invalid_never_guessed() -> None:
    xml = group(xml_call("search", ("query", "q")))
    got = parse("t</ifm|think>" + xml, tool_call_format="json")
    assert got.calls == []
    assert got.invalid[0][1] == xml_call("search", ("query", "q"))


def test_calls_inside_the_reasoning_are_never_calls() -> None:
    drafted = group(xml_call("search", ("query", "q")))
    got = parse(f"I could {drafted} but no.</ifm|think>Answer.")
    assert got.calls == []
    assert got.invalid == []
    assert drafted in got.reasoning
    assert got.content == "Answer."


def test_missing_close_tag_without_a_group_is_all_content() -> None:
    got = parse("Just an answer, no thought.")
    assert (got.reasoning, got.content) == ("", "Just an answer, no thought.")


def test_missing_close_tag_with_a_group_splits_before_it() -> None:
    calls = group(xml_call("search", ("query", "q")))
    got = parse("Thinking about it." + calls + " after")
    assert got.reasoning == "Thinking about it."
    assert got.calls == [("search", {"query": "q"})]
    assert got.content == "after"


def test_missing_close_tag_under_the_other_rules() -> None:
    calls = group(xml_call("search", ("query", "q")))
    boundary = parse("Think." + calls, unclosed="boundary")
    assert (boundary.reasoning, boundary.calls) == ("Think.", [("search", {"query": "q"})])
    assert parse("Think.", unclosed="boundary").reasoning == "Think."
    sglang = parse("Think." + calls, unclosed="reasoning")
    assert sglang.calls == []
    assert sglang.reasoning == "Think." + calls


@pytest.mark.parametrize(("effort", "wrong"), [("low", "ifm|think"), ("high", "ifm|think_fast")])
def test_a_wrong_effort_close_tag_is_text(effort: str, wrong: str) -> None:
    right = TAGS[effort]
    got = parse(f"A </{wrong}> B</{right}>C", effort=effort)
    assert (got.reasoning, got.content) == (f"A </{wrong}> B", "C")


def test_unterminated_group_is_one_invalid_call_with_its_text() -> None:
    open_group = "<ifm|tool_calls>\n" + xml_call("search", ("query", "q"))
    got = parse("t</ifm|think>Checking." + open_group)
    assert got.calls == []
    assert got.content == "Checking."
    [(name, args, error)] = got.invalid
    assert (name, args) == (None, open_group)
    assert "not closed" in (error or "")


def test_a_bare_block_without_the_group_is_text() -> None:
    bare = xml_call("search", ("query", "q"))
    got = parse("t</ifm|think>" + bare)
    assert got.calls == []
    assert got.invalid == []
    assert got.content == bare


def test_unknown_tool_fails_the_whole_group_closed() -> None:
    text = "t</ifm|think>" + group(
        xml_call("search", ("query", "q")), xml_call("launch", ("what", "rocket"))
    )
    got = parse(text)
    assert got.calls == []
    (first, *_), (second, *_) = got.invalid
    assert (first, second) == ("search", "launch")
    assert "call #2" in (got.invalid[0][2] or "")
    assert "unknown tool 'launch'" in (got.invalid[1][2] or "")


def test_duplicate_key_and_stray_text_are_invalid() -> None:
    dup = parse("t</ifm|think>" + group(xml_call("search", ("query", "a"), ("query", "b"))))
    assert dup.calls == []
    assert "given twice" in (dup.invalid[0][2] or "")
    stray = parse(
        "t</ifm|think><ifm|tool_calls>oops"
        + xml_call("search", ("query", "a"))
        + "</ifm|tool_calls>"
    )
    assert stray.calls == []
    assert len(stray.invalid) == 1
    assert stray.invalid[0][1] == stray.blocks[0]


def test_schema_failures_are_recorded_so_the_group_can_run_once_repairs_end() -> None:
    text = "t</ifm|think>" + group(
        xml_call("search", ("query", "q")), xml_call("get_weather", ("days", "2"))
    )
    [block] = [
        p for p in parse_k2_v3(text, TOOLS, effort="high") if not isinstance(p, (str, Reasoning))
    ]
    assert block.tool_calls == []
    accepted, errors = block.accept_schema_failures()
    assert [c["name"] for c in accepted.tool_calls] == ["search", "get_weather"]
    assert any("'location' is a required property" in e for e in errors.values())


def test_only_the_first_group_is_read() -> None:
    first, second = (
        group(xml_call("search", ("query", "a"))),
        group(xml_call("search", ("query", "b"))),
    )
    got = parse("t</ifm|think>" + first + second)
    assert got.calls == [("search", {"query": "a"})]
    assert got.content == second


def test_a_call_without_arguments() -> None:
    got = summary(
        parse_k2_v3("t</ifm|think>" + group("<ifm|tool_call>ping\n</ifm|tool_call>"), effort="high")
    )
    assert got.calls == [("ping", {})]


def test_think_false_reads_answer_and_calls_only() -> None:
    calls = group(xml_call("search", ("query", "q")))
    got = parse("Sure." + calls, think=False, opened=False)
    assert (got.reasoning, got.content, got.calls) == ("", "Sure.", [("search", {"query": "q"})])


def test_unknown_settings_are_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="'high', 'medium', 'low'; got 'none'"):
        K2V3OutputParser(effort="none")
    with pytest.raises(ValueError, match="'xml', 'xml_typed', 'json'; got 'yaml'"):
        K2V3OutputParser(effort="high", tool_call_format="yaml")  # type: ignore[arg-type]


def test_streaming_holds_the_reasoning_until_the_close_tag_under_the_default_rule() -> None:
    parser = K2V3OutputParser(TOOLS, effort="high")
    assert parser.feed("Thinking hard") == []
    assert parser.feed(" still.</ifm|th") == []
    assert parser.feed("ink>Done.") == [Reasoning("Thinking hard still."), "Done."]
    assert parser.close() == []


def test_streaming_under_the_boundary_rule_streams_reasoning_as_it_comes() -> None:
    parser = K2V3OutputParser(TOOLS, effort="high", unclosed="boundary")
    assert parser.feed("Thinking hard") == [Reasoning("Thinking hard")]
    assert parser.feed(" still.<ifm|tool_") == [Reasoning(" still.")]
    assert parser.feed("calls>\n" + xml_call("search", ("query", "q"))) == []
    assert parser.in_block
    [block] = parser.feed("\n</ifm|tool_calls>")
    assert [c["name"] for c in block.tool_calls] == ["search"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "types", "expected"),
    [
        ("1e999", ["number"], "1e999"),
        ("nan", ["number"], "nan"),
        ("[1e999]", ["array"], "[1e999]"),
        ("x", ["integer", "boolean"], "x"),
        ('{"a": 1}', ["integer"], {"a": 1}),  # no type fits: read as JSON
        ("5", ["object"], 5),  # vLLM accepts any JSON value for object/array
        ("yes", ["bool"], "yes"),
        ("7", ["int"], 7),
    ],
)
def test_coercion_matches_vllm_edge_cases(value: str, types: list[str], expected: object) -> None:
    assert coerce_value(value, types) == expected


def test_the_live_rule_reads_missing_close_tags_like_vllm_but_never_runs_a_drafted_call() -> None:
    calls = group(xml_call("search", ("query", "q")))
    # A group with no close tag after it: the thought ended there (vLLM's implicit boundary).
    got = parse("Think." + calls + " after", unclosed="live")
    assert (got.reasoning, got.calls, got.content) == (
        "Think.",
        [("search", {"query": "q"})],
        "after",
    )
    # A group followed by the close tag was drafted in the thought: reasoning, never a call.
    got = parse("Think." + calls + " no.</ifm|think>Answer.", unclosed="live")
    assert (got.reasoning, got.calls, got.content) == ("Think." + calls + " no.", [], "Answer.")
    # Neither close tag nor group: an unfinished thought.
    assert parse("Think.", unclosed="live").reasoning == "Think."
    assert parse("Think.", unclosed="live").content == ""


def test_streaming_under_the_live_rule_streams_reasoning_and_holds_a_group_inside_it() -> None:
    parser = K2V3OutputParser(TOOLS, effort="high", unclosed="live")
    assert parser.feed("Thinking hard") == [Reasoning("Thinking hard")]
    assert parser.feed(" still.<ifm|tool_") == [Reasoning(" still.")]
    assert parser.feed("calls>\n" + xml_call("search", ("query", "q"))) == []
    assert parser.feed("\n</ifm|tool_calls> no") == []  # held: a close tag may follow
    assert parser.feed(".</ifm|think>Done.") == [
        Reasoning(
            "<ifm|tool_calls>\n" + xml_call("search", ("query", "q")) + "\n</ifm|tool_calls> no."
        ),
        "Done.",
    ]
    assert parser.close() == []
