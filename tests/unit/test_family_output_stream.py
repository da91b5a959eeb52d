"""Streamed K2-V2 / K2-V3 output equals the whole-text parse, whatever the split (hypothesis).

Texts are assembled from the families' markers (every effort's tags, call tags, group and
argument tags), JSON and XML fragments, whitespace and plain words: where the splitter's and
the call readers' edge cases live. Each text is parsed whole, then fed in random pieces; the
pieces must join to the same reasoning, the same content and equal blocks (call ids aside).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_k2._tool_block import ToolBlock
from langchain_k2._tool_schema import tool_index
from langchain_k2.formats._k2_v2_output import K2V2OutputParser
from langchain_k2.formats._k2_v3_output import K2V3OutputParser
from langchain_k2.formats._pieces import Piece
from tests.support.family_output import WEATHER, summary

EXAMPLES = int(os.environ.get("K2_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = tool_index(WEATHER)

COMMON = [" ", "\n", "x", "hello ", "<", ">", "/", "|", "{", "}", '"', "Paris", "2", "true"]
V2_BITS = [
    "<think>",
    "</think>",
    "<think_fast>",
    "</think_fast>",
    "<think_faster>",
    "</think_faster>",
    "<tool_call>",
    "</tool_call>",
    '{"name": "search", "arguments": {"query": "q"}}',
    '{"name": "get_weather", "arguments": {"location": "</tool_call>"}}',
    '{"name": ',
    "[",
]
V3_BITS = [
    "<ifm|think>",
    "</ifm|think>",
    "<ifm|think_fast>",
    "</ifm|think_fast>",
    "<ifm|think_faster>",
    "</ifm|think_faster>",
    "<ifm|tool_calls>",
    "</ifm|tool_calls>",
    "<ifm|tool_call>",
    "</ifm|tool_call>",
    "search\n",
    "get_weather",
    "<ifm|arg_key>",
    "</ifm|arg_key>",
    "<ifm|arg_type>",
    "</ifm|arg_type>",
    "<ifm|arg_value>",
    "</ifm|arg_value>",
    "query",
    "location",
    "days",
    "string",
    "integer",
    '{"name": "search", "arguments": {"query": "q"}}',
    "<ifm|tool_calls>\n<ifm|tool_call>search\n<ifm|arg_key>query</ifm|arg_key>\n"
    "<ifm|arg_value>q</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>",
]


def texts(bits: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(bits + COMMON), max_size=30).map("".join)


def splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


def blocks_equal(left: list[Piece], right: list[Piece]) -> bool:
    def shape(block: ToolBlock) -> Any:
        return (
            block.raw,
            [(c["name"], c["args"]) for c in block.tool_calls],
            [(c["name"], c["args"], c["error"]) for c in block.invalid_tool_calls],
        )

    mine = [shape(p) for p in left if isinstance(p, ToolBlock)]
    theirs = [shape(p) for p in right if isinstance(p, ToolBlock)]
    return mine == theirs


def agree(make: Any, text: str, cuts: list[int]) -> None:
    whole_parser = make()
    whole = whole_parser.feed(text) + whole_parser.close()
    parser = make()
    streamed: list[Piece] = []
    for part in splits(text, cuts):
        streamed += parser.feed(part)
    streamed += parser.close()
    a, b = summary(whole), summary(streamed)
    assert (a.reasoning, a.content) == (b.reasoning, b.content)
    assert blocks_equal(whole, streamed)
    assert all(p != "" for p in streamed if isinstance(p, str))


@FUZZ
@given(
    texts(V2_BITS),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.sampled_from(["high", "medium", "low"]),
    st.booleans(),
)
def test_k2_v2_stream_equals_whole(text: str, cuts: list[int], effort: str, opened: bool) -> None:
    agree(lambda: K2V2OutputParser(TOOLS, effort=effort, opened=opened), text, cuts)


@FUZZ
@given(
    texts(V3_BITS),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.sampled_from(["high", "medium", "low"]),
    st.sampled_from(["xml", "xml_typed", "json"]),
    st.sampled_from(["live", "content", "boundary", "reasoning"]),
    st.booleans(),
)
def test_k2_v3_stream_equals_whole(  # noqa: PLR0917 -- one argument per strategy
    text: str, cuts: list[int], effort: str, fmt: Any, unclosed: Any, opened: bool
) -> None:
    agree(
        lambda: K2V3OutputParser(
            TOOLS, effort=effort, tool_call_format=fmt, unclosed=unclosed, opened=opened
        ),
        text,
        cuts,
    )


@FUZZ
@given(st.text(max_size=200), st.lists(st.integers(0, 10_000), max_size=8))
def test_arbitrary_unicode_never_raises(text: str, cuts: list[int]) -> None:
    agree(lambda: K2V2OutputParser(TOOLS, effort="high"), text, cuts)
    agree(lambda: K2V3OutputParser(TOOLS, effort="high"), text, cuts)
