"""Whole-text parsing of K2-Chat tool calls (``langchain_k2._tool_calls``)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.utils.json import parse_partial_json

from langchain_k2._tool_calls import (
    CLOSE_TAG,
    OPEN_TAG,
    ParsedToolCalls,
    ToolBlock,
    new_call_id,
    parse_block,
    parse_tool_calls,
)
from langchain_k2.errors import ToolDefinitionError
from tests.support.tool_call_corpus import CORPUS, TOOL_SETS, Case

ID_RE = re.compile(r"call_[0-9a-f]{24}")
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def tools_for(case: Case) -> list[dict[str, Any]] | None:
    return TOOL_SETS[case.tools] if case.tools else None


def block_key(block: ToolBlock) -> tuple[Any, ...]:
    return (
        block.raw,
        [(c["name"], c["args"]) for c in block.tool_calls],
        [(c["name"], c["args"], c["error"]) for c in block.invalid_tool_calls],
    )


def rebuild(
    text: str, parsed: ParsedToolCalls, open_tag: str = OPEN_TAG, close_tag: str = CLOSE_TAG
) -> str:
    """Walk ``text``: every block's raw must appear in order, the rest must be content
    once its stray close tags (the only text the parsers drop) are taken out.

    Returns ``text`` without its stray close tags (nothing else may be missing).
    """
    gaps: list[str] = []
    kept: list[str] = []
    position = 0
    for block in parsed.blocks:
        start = text.index(block.raw, position)
        gaps.append(text[position:start])
        kept += [text[position:start].replace(close_tag, ""), block.raw]
        position = start + len(block.raw)
    gaps.append(text[position:])
    kept.append(text[position:].replace(close_tag, ""))
    assert all(open_tag not in gap for gap in gaps), "an open tag outside every block"
    assert "".join(gap.replace(close_tag, "") for gap in gaps) == parsed.content
    return "".join(kept)


# --------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus_case(case: Case) -> None:
    parsed = parse_tool_calls(case.text, tools_for(case))
    assert parsed.content == case.content
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == case.calls
    assert len(parsed.invalid_tool_calls) == len(case.invalid), parsed.invalid_tool_calls
    for got, (name, error) in zip(parsed.invalid_tool_calls, case.invalid, strict=True):
        assert got["name"] == name
        assert got["error"] is not None
        assert error in got["error"], got["error"]
    # nothing lost: content and raws account for the whole input, bar stray close tags
    dropped = case.text.count(CLOSE_TAG) - sum(b.raw.count(CLOSE_TAG) for b in parsed.blocks)
    total = len(parsed.content) + sum(len(b.raw) for b in parsed.blocks)
    assert total + dropped * len(CLOSE_TAG) == len(case.text)
    rebuild(case.text, parsed)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus_ids_and_invalid_args(case: Case) -> None:
    parsed = parse_tool_calls(case.text, tools_for(case))
    ids = [c["id"] for c in parsed.tool_calls] + [c["id"] for c in parsed.invalid_tool_calls]
    assert all(isinstance(i, str) and ID_RE.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for block in parsed.blocks:
        # every block yields at least one call, so none vanishes from a message
        assert block.tool_calls or block.invalid_tool_calls
        assert block.raw.startswith(OPEN_TAG)
        for bad in block.invalid_tool_calls:
            args = bad["args"]
            assert isinstance(args, str)
            assert args.startswith(OPEN_TAG)
            # LangChain's lenient parser must not turn it into a valid call on merge
            try:
                merged = parse_partial_json(args)
            except Exception:
                merged = None
            assert not isinstance(merged, dict)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_parse_block_matches_blocks(case: Case) -> None:
    parsed = parse_tool_calls(case.text, tools_for(case))
    position = 0
    for block in parsed.blocks:
        end = case.text.index(block.raw, position) + len(block.raw)
        # an unclosed block followed by a new block was cut off by it
        cut_off = not block.raw.endswith(CLOSE_TAG) and case.text.startswith(OPEN_TAG, end)
        again = parse_block(block.raw, tools_for(case), cut_off=cut_off)
        assert block_key(again) == block_key(block)
        position = end


# --------------------------------------------------------------------------------------
# Details the corpus does not pin
# --------------------------------------------------------------------------------------


def test_invalid_args_whole_block_is_raw() -> None:
    text = 'hi <tool_call>{"name": "f", "arguments": {</tool_call>'
    parsed = parse_tool_calls(text)
    (bad,) = parsed.invalid_tool_calls
    assert bad["args"] == '<tool_call>{"name": "f", "arguments": {</tool_call>'
    assert bad["name"] is None
    assert bad["error"] is not None
    assert "Expecting" in bad["error"]


def test_invalid_args_element_is_retagged_json() -> None:
    text = "<tool_call>[{'name': 'ok'}, {'name': 'f', 'arguments': 'nope'}]</tool_call>"
    parsed = parse_tool_calls(text)
    assert [c["name"] for c in parsed.tool_calls] == ["ok"]
    (bad,) = parsed.invalid_tool_calls
    assert bad["args"] == OPEN_TAG + json.dumps({"name": "f", "arguments": "nope"}) + CLOSE_TAG
    assert bad["name"] == "f"


def test_unknown_tool_error_names_bound_tools() -> None:
    parsed = parse_tool_calls(
        '<tool_call>{"name": "x", "arguments": {}}</tool_call>',
        [{"name": "a", "parameters": {}}, {"type": "function", "function": {"name": "b"}}],
    )
    assert parsed.invalid_tool_calls[0]["error"] == "unknown tool 'x'; bound tools: a, b"


def test_empty_tool_list_makes_every_call_unknown() -> None:
    parsed = parse_tool_calls('<tool_call>{"name": "x"}</tool_call>', [])
    assert parsed.invalid_tool_calls[0]["error"] == "unknown tool 'x'; bound tools: (none)"


def test_schema_error_message_exact() -> None:
    tools = TOOL_SETS["weather_search"]
    parsed = parse_tool_calls(
        '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>', tools
    )
    assert parsed.invalid_tool_calls[0]["error"] == (
        "arguments for 'get_weather' fail its schema: 'city' is a required property"
    )


def test_schema_enum_checked_with_jsonschema() -> None:
    tools = TOOL_SETS["weather_search"]
    text = block_text({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}})
    parsed = parse_tool_calls(text, tools)
    assert "'kelvin' is not one of" in (parsed.invalid_tool_calls[0]["error"] or "")


def test_tool_definition_errors() -> None:
    text = '<tool_call>{"name": "a"}</tool_call>'
    with pytest.raises(ToolDefinitionError, match="no name"):
        parse_tool_calls(text, [{"description": "nameless"}])
    with pytest.raises(ToolDefinitionError, match="unique"):
        parse_tool_calls(text, [{"name": "a"}, {"type": "function", "function": {"name": "a"}}])
    bad_schema = [{"name": "a", "parameters": {"type": "objekt"}}]
    with pytest.raises(ToolDefinitionError, match="not a valid JSON schema"):
        parse_tool_calls(text, bad_schema)


def test_tool_without_parameters_accepts_any_args() -> None:
    parsed = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {"z": 1}}</tool_call>', [{"name": "a"}]
    )
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [("a", {"z": 1})]


def test_custom_tags() -> None:
    text = 'x <call>{"name": "f"}</call> y <tool_call>{"name": "g"}</tool_call>'
    parsed = parse_tool_calls(text, open_tag="<call>", close_tag="</call>")
    assert parsed.content == 'x  y <tool_call>{"name": "g"}</tool_call>'
    assert [c["name"] for c in parsed.tool_calls] == ["f"]


def test_unusable_tags_rejected() -> None:
    with pytest.raises(ValueError, match="open tag must start with '<'"):
        parse_tool_calls("x", open_tag="[TOOL]")
    with pytest.raises(ValueError, match="non-empty"):
        parse_tool_calls("x", close_tag="")
    with pytest.raises(ValueError, match="must not contain each other"):
        parse_tool_calls("x", open_tag="<call>", close_tag="<call>>")
    with pytest.raises(ValueError, match="must not contain"):
        parse_tool_calls("x", open_tag='<call">', close_tag="</call>")


def test_parse_block_requires_open_tag() -> None:
    with pytest.raises(ValueError, match="must start with"):
        parse_block('{"name": "f"}')


def test_parse_block_unclosed() -> None:
    block = parse_block('<tool_call>{"name": "f", "arguments": {"a": 1}}')
    assert [(c["name"], c["args"]) for c in block.tool_calls] == [("f", {"a": 1})]


def test_new_call_id() -> None:
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(ID_RE.fullmatch(i) for i in ids)


def test_deep_nesting_is_invalid_not_a_crash() -> None:
    parsed = parse_tool_calls(OPEN_TAG + "[" * 100_000 + CLOSE_TAG)
    assert parsed.tool_calls == []
    assert len(parsed.invalid_tool_calls) == 1


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

FRAGMENTS = [
    OPEN_TAG,
    CLOSE_TAG,
    "<tool_",
    "<",
    "</",
    "call>",
    "```json\n",
    "```",
    '{"name": "f"}',
    '[{"name": "g", "arguments": {"a": 1}}]',
    "{'name': 'h', 'arguments': {'b': True}}",
    '{"name": "f", "arguments": {"x": "<b>"',
    "\n",
    # tags inside strings, glaive quoting, empty arguments, escapes
    '{"name": "f", "arguments": {"s": "',
    '"}}',
    '"',
    "\\",
    "'",
    '{"name": "g", "arguments": \'{"t": "it\'s\nfine"}\'}',
    '{"name": "h", "arguments": ""}',
    '"</tool_call>"',
]
mixed_text = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(FRAGMENTS)), max_size=14).map(
    "".join
)

# Strings that hold the tags, quotes and backslashes: a tag inside a JSON string is text.
tricky_text = st.lists(
    st.one_of(st.text(max_size=5), st.sampled_from([OPEN_TAG, CLOSE_TAG, '"', "\\", "'"])),
    max_size=6,
).map("".join)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    tricky_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Text between blocks holds no tag; names and arguments may hold anything.
safe_text = st.text().filter(lambda s: CLOSE_TAG not in s)
calls_strategy = st.lists(
    st.tuples(
        st.one_of(st.text(min_size=1, max_size=12), tricky_text.filter(bool)),
        st.dictionaries(st.one_of(st.text(), tricky_text), json_values, max_size=4),
    ),
    min_size=1,
    max_size=4,
)


def render(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """The project's history rendering of one assistant turn's calls (spec section 5)."""
    return OPEN_TAG + json.dumps([{"name": n, "arguments": a} for n, a in calls]) + CLOSE_TAG


@PROPERTY_SETTINGS
@given(text=mixed_text)
def test_nothing_lost_for_arbitrary_text(text: str) -> None:
    parsed = parse_tool_calls(text)
    dropped = text.count(CLOSE_TAG) - sum(b.raw.count(CLOSE_TAG) for b in parsed.blocks)
    total = len(parsed.content) + sum(len(b.raw) for b in parsed.blocks)
    assert total + dropped * len(CLOSE_TAG) == len(text)
    rebuild(text, parsed)
    for block in parsed.blocks:
        assert block.tool_calls or block.invalid_tool_calls
        for bad in block.invalid_tool_calls:
            assert isinstance(bad["args"], str)
            assert bad["args"].startswith(OPEN_TAG)


@PROPERTY_SETTINGS
@given(calls=calls_strategy)
def test_render_round_trip(calls: list[tuple[str, dict[str, Any]]]) -> None:
    parsed = parse_tool_calls(render(calls))
    assert parsed.invalid_tool_calls == []
    assert parsed.content == ""
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == calls


@PROPERTY_SETTINGS
@given(
    turns=st.lists(calls_strategy, min_size=1, max_size=4),
    gaps=st.lists(safe_text.filter(lambda s: "<tool_call>" not in s), min_size=5, max_size=5),
)
def test_render_round_trip_several_blocks(
    turns: list[list[tuple[str, dict[str, Any]]]], gaps: list[str]
) -> None:
    text = gaps[0]
    for number, calls in enumerate(turns, start=1):
        text += render(calls) + gaps[number]
    # a gap ending in a prefix of the open tag cannot create a tag: the next char is '<'
    parsed = parse_tool_calls(text)
    assert parsed.invalid_tool_calls == []
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [c for t in turns for c in t]
    assert parsed.content == "".join(gaps[: len(turns) + 1])


def block_text(payload: Any) -> str:
    return OPEN_TAG + json.dumps(payload) + CLOSE_TAG
