"""Streaming parsing of K2-Chat tool calls (``ToolCallStreamParser``)."""

from __future__ import annotations

import json
from functools import reduce
from itertools import pairwise
from operator import add
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessageChunk

from langchain_k2._tool_calls import (
    CLOSE_TAG,
    OPEN_TAG,
    ToolBlock,
    ToolCallStreamParser,
    block_chunk,
    parse_tool_calls,
)
from langchain_k2.errors import ToolDefinitionError
from tests.support.tool_call_corpus import CORPUS, CORPUS_BY_ID, Case
from tests.unit.test_tool_calls import block_key, mixed_text, rebuild, tools_for

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in pairwise(points)]


def sized(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream(deltas: list[str], tools: list[dict[str, Any]] | None = None) -> list[str | ToolBlock]:
    parser = ToolCallStreamParser(tools)
    items: list[str | ToolBlock] = []
    for delta in deltas:
        items.extend(parser.feed(delta))
    items.extend(parser.close())
    return items


def assert_same_as_whole(text: str, deltas: list[str], tools: list[dict[str, Any]] | None) -> None:
    assert "".join(deltas) == text
    items = stream(deltas, tools)
    parsed = parse_tool_calls(text, tools)
    pieces = [i for i in items if isinstance(i, str)]
    blocks = [i for i in items if isinstance(i, ToolBlock)]
    assert all(pieces), "no empty text pieces"
    assert "".join(pieces) == parsed.content
    assert [block_key(b) for b in blocks] == [block_key(b) for b in parsed.blocks]
    # in order, nothing lost but stray close tags
    assert "".join(i if isinstance(i, str) else i.raw for i in items) == rebuild(text, parsed)


def merge(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    return reduce(add, chunks, AIMessageChunk(content=""))


def stream_chunks(deltas: list[str], tools: list[dict[str, Any]] | None = None) -> AIMessageChunk:
    parser = ToolCallStreamParser(tools)
    chunks: list[AIMessageChunk] = []
    for delta in deltas:
        chunks.extend(parser.feed_chunks(delta))
    chunks.extend(parser.close_chunks())
    return merge(chunks)


def assert_merge_matches(text: str, deltas: list[str], tools: list[dict[str, Any]] | None) -> None:
    merged = stream_chunks(deltas, tools)
    parsed = parse_tool_calls(text, tools)
    assert merged.content == parsed.content
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        (c["name"], c["args"]) for c in parsed.tool_calls
    ]
    assert [(c["name"], c["args"]) for c in merged.invalid_tool_calls] == [
        (c["name"], c["args"]) for c in parsed.invalid_tool_calls
    ]


# --------------------------------------------------------------------------------------
# Every corpus case, under fixed and random splits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 10**9])
@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus_fixed_splits(case: Case, size: int) -> None:
    assert_same_as_whole(case.text, sized(case.text, size), tools_for(case))


@PROPERTY_SETTINGS
@given(case=st.sampled_from(CORPUS), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_corpus_random_splits(case: Case, cuts: list[int]) -> None:
    assert_same_as_whole(case.text, split_at(case.text, cuts), tools_for(case))


@PROPERTY_SETTINGS
@given(text=mixed_text, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_arbitrary_text_random_splits(text: str, cuts: list[int]) -> None:
    assert_same_as_whole(text, split_at(text, cuts), None)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus_chunks_merge_like_whole_parse(case: Case) -> None:
    assert_merge_matches(case.text, sized(case.text, 4), tools_for(case))


@PROPERTY_SETTINGS
@given(case=st.sampled_from(CORPUS), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_corpus_chunks_merge_random_splits(case: Case, cuts: list[int]) -> None:
    assert_merge_matches(case.text, split_at(case.text, cuts), tools_for(case))


# --------------------------------------------------------------------------------------
# Holding back a possible open tag
# --------------------------------------------------------------------------------------


def test_text_is_emitted_at_once() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("Hello") == ["Hello"]
    assert parser.feed(", world") == [", world"]
    assert parser.close() == []


def test_prefix_of_open_tag_is_held_then_released() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("abc <tool") == ["abc "]
    assert parser.feed("x") == ["<toolx"]
    assert parser.feed("<tox") == ["<tox"]
    assert parser.feed("<") == []
    assert parser.close() == ["<"]


def test_split_open_tag_opens_block() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("hi <tool_") == ["hi "]
    assert not parser.in_block
    assert parser.feed("call>") == []
    assert parser.in_block
    assert parser.feed('{"name": "f"}</tool_') == []
    assert parser.in_block
    (block,) = parser.feed("call> bye")[:1]
    assert isinstance(block, ToolBlock)
    assert not parser.in_block
    assert [c["name"] for c in block.tool_calls] == ["f"]


def test_block_and_text_in_one_delta() -> None:
    parser = ToolCallStreamParser()
    items = parser.feed('a<tool_call>{"name": "f"}</tool_call>b<tool_call>[]</tool_call>c<tool')
    assert [i if isinstance(i, str) else "BLOCK" for i in items] == [
        "a",
        "BLOCK",
        "b",
        "BLOCK",
        "c",
    ]
    assert parser.close() == ["<tool"]


def test_close_turns_unclosed_block_into_block() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed('x<tool_call>{"name": "f", "arguments": {"a": 1}}') == ["x"]
    (block,) = parser.close()
    assert isinstance(block, ToolBlock)
    assert block.raw == '<tool_call>{"name": "f", "arguments": {"a": 1}}'
    assert [(c["name"], c["args"]) for c in block.tool_calls] == [("f", {"a": 1})]
    # reset: a new stream starts clean
    assert not parser.in_block
    assert parser.feed("again") == ["again"]


def test_empty_deltas() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("") == []
    assert parser.close() == []


def test_custom_tags_stream() -> None:
    text = 'pre <fn>{"name": "f"}</fn> post <f'
    parser = ToolCallStreamParser(open_tag="<fn>", close_tag="</fn>")
    items: list[str | ToolBlock] = []
    for ch in text:
        items.extend(parser.feed(ch))
    items.extend(parser.close())
    whole = parse_tool_calls(text, open_tag="<fn>", close_tag="</fn>")
    assert "".join(i for i in items if isinstance(i, str)) == whole.content == "pre  post <f"
    assert [block_key(b) for b in items if isinstance(b, ToolBlock)] == [
        block_key(b) for b in whole.blocks
    ]


def test_buffers_stay_small_outside_and_tail_bounded_inside() -> None:
    parser = ToolCallStreamParser()
    for _ in range(2000):
        parser.feed("ab<tool_cal")
        parser.feed("x ")
        assert len(parser._held) < len(OPEN_TAG)
    parser.feed(OPEN_TAG)
    for _ in range(2000):
        parser.feed('{"k": "</tool_cal')
        assert len(parser._held) < len(CLOSE_TAG)


# --------------------------------------------------------------------------------------
# LangChain chunks
# --------------------------------------------------------------------------------------


def test_truncated_block_merges_into_one_invalid_call() -> None:
    text = 'Let me check. <tool_call>[{"name": "f", "arguments": {"a": 1'
    merged = stream_chunks(sized(text, 3))
    assert merged.content == "Let me check. "
    assert merged.tool_calls == []
    assert len(merged.invalid_tool_calls) == 1
    bad = merged.invalid_tool_calls[0]
    assert bad["args"] == '<tool_call>[{"name": "f", "arguments": {"a": 1'


def test_unknown_tool_merges_into_one_invalid_call() -> None:
    case = CORPUS_BY_ID["tools_unknown_tool"]
    merged = stream_chunks(sized(case.text, 4), tools_for(case))
    assert merged.tool_calls == []
    assert len(merged.invalid_tool_calls) == 1
    assert merged.invalid_tool_calls[0]["name"] == "get_stock_price"


def test_chunk_ids_and_indexes_run_across_stream() -> None:
    text = (
        '<tool_call>[{"name": "a"}, {"name": "b"}]</tool_call> mid '
        '<tool_call>{"name": 1}</tool_call><tool_call>{"name": "c"}'
    )
    parser = ToolCallStreamParser()
    chunks = parser.feed_chunks(text) + parser.close_chunks()
    indexes = [tc["index"] for ch in chunks for tc in ch.tool_call_chunks]
    assert indexes == [0, 1, 2, 3]
    merged = merge(chunks)
    assert [c["name"] for c in merged.tool_calls] == ["a", "b", "c"]
    assert len(merged.invalid_tool_calls) == 1
    ids = [c["id"] for c in merged.tool_calls] + [c["id"] for c in merged.invalid_tool_calls]
    assert len(set(ids)) == 4
    # after close_chunks the index restarts for a new stream
    assert (
        parser.feed_chunks('<tool_call>{"name": "z"}</tool_call>')[0].tool_call_chunks[0]["index"]
        == 0
    )


def test_block_chunk_shape() -> None:
    parsed = parse_tool_calls(
        '<tool_call>[{"name": "f", "arguments": {"é": "ü"}}, '
        '{"name": "g", "arguments": 3}]</tool_call>'
    )
    chunk = block_chunk(parsed.blocks[0], 5)
    assert chunk.content == ""
    first, second = chunk.tool_call_chunks
    assert first["index"] == 5
    assert first["name"] == "f"
    assert json.loads(first["args"] or "") == {"é": "ü"}
    assert first["id"] == parsed.tool_calls[0]["id"]
    assert second["index"] == 6
    assert second["name"] == "g"
    assert second["args"] == parsed.invalid_tool_calls[0]["args"]
    assert chunk.tool_calls[0]["args"] == {"é": "ü"}
    assert len(chunk.invalid_tool_calls) == 1


TAG_PAIRS = [("<ab<a", "a>a>"), ("<t>", "</t>"), ("<x", ">"), (OPEN_TAG, CLOSE_TAG)]


@PROPERTY_SETTINGS
@given(
    tags=st.sampled_from(TAG_PAIRS),
    text=st.text(alphabet="<ab>/t{}x_ ", max_size=60),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_self_overlapping_custom_tags_random_splits(
    tags: tuple[str, str], text: str, cuts: list[int]
) -> None:
    open_tag, close_tag = tags
    parser = ToolCallStreamParser(open_tag=open_tag, close_tag=close_tag)
    items: list[str | ToolBlock] = []
    for delta in split_at(text, cuts):
        items.extend(parser.feed(delta))
    items.extend(parser.close())
    whole = parse_tool_calls(text, open_tag=open_tag, close_tag=close_tag)
    assert "".join(i for i in items if isinstance(i, str)) == whole.content
    assert [b.raw for b in items if isinstance(b, ToolBlock)] == [b.raw for b in whole.blocks]
    assert "".join(i if isinstance(i, str) else i.raw for i in items) == rebuild(
        text, whole, open_tag, close_tag
    )


def test_bad_tool_definitions_fail_at_construction_not_mid_stream() -> None:
    with pytest.raises(ToolDefinitionError, match="not a valid JSON schema"):
        ToolCallStreamParser([{"name": "a", "parameters": {"type": 5}}])
    with pytest.raises(ToolDefinitionError, match="no name"):
        ToolCallStreamParser([{"type": "function", "function": {"parameters": {}}}])


# --------------------------------------------------------------------------------------
# Tags inside strings, cut-off blocks and stray close tags, as they arrive
# --------------------------------------------------------------------------------------


def test_close_tag_inside_a_string_does_not_end_the_block_whatever_the_split() -> None:
    text = '<tool_call>{"name": "note", "arguments": {"text": "a</tool_call>b"}}</tool_call>ok'
    for size in (1, 2, 5, 13):
        parser = ToolCallStreamParser()
        items: list[str | ToolBlock] = []
        for index, delta in enumerate(sized(text, size)):
            got = parser.feed(delta)
            items += got
            end = (index + 1) * size
            if len(OPEN_TAG) <= end < text.index("}}</tool_call>") + 2:
                assert got == [], (size, index)
                assert parser.in_block, (size, index)
        items += parser.close()
        block = items[0]
        assert isinstance(block, ToolBlock)
        assert items[1:] == list(sized("ok", size))
        assert [(c["name"], c["args"]) for c in block.tool_calls] == [
            ("note", {"text": "a</tool_call>b"})
        ]


def test_open_tag_outside_a_string_cuts_the_block_off_at_once() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed('<tool_call>{"name": "a", "arguments": {') == []
    (cut,) = parser.feed('<tool_call>{"name": "b"}')
    assert isinstance(cut, ToolBlock)
    assert cut.raw == '<tool_call>{"name": "a", "arguments": {'
    assert "a new <tool_call> began" in (cut.invalid_tool_calls[0]["error"] or "")
    assert cut.invalid_tool_calls[0]["args"] == cut.raw
    assert parser.in_block
    (block,) = parser.feed("</tool_call>")
    assert isinstance(block, ToolBlock)
    assert [c["name"] for c in block.tool_calls] == ["b"]


def test_stray_close_tag_split_across_deltas_is_dropped() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("Done.</tool") == ["Done."]
    assert parser.feed("_call> Bye") == [" Bye"]
    assert parser.feed("</tool_cal") == []
    assert parser.close() == ["</tool_cal"]


def test_unterminated_string_is_cut_at_its_first_tag_when_the_stream_ends() -> None:
    text = (
        '<tool_call>{"name": "f", "arguments": {"a": "x}}</tool_call> Sorry. '
        '<tool_call>{"name": "g"}'
    )
    parser = ToolCallStreamParser()
    assert parser.feed(text) == []  # the first close tag is inside a string, so far
    items = parser.close()
    assert [i if isinstance(i, str) else i.raw for i in items] == [
        '<tool_call>{"name": "f", "arguments": {"a": "x}}</tool_call>',
        " Sorry. ",
        '<tool_call>{"name": "g"}',
    ]
    first, _, last = items
    assert isinstance(first, ToolBlock)
    assert first.invalid_tool_calls
    assert isinstance(last, ToolBlock)
    assert [c["name"] for c in last.tool_calls] == ["g"]


calls_with_tags = st.lists(
    st.tuples(
        st.sampled_from(["f", "g"]),
        st.dictionaries(
            st.sampled_from(["a", "b"]),
            st.lists(
                st.sampled_from([OPEN_TAG, CLOSE_TAG, '"', "\\", "'", "x", "\n", "<", "{"]),
                max_size=8,
            ).map("".join),
            max_size=2,
        ),
    ),
    min_size=1,
    max_size=3,
)


@PROPERTY_SETTINGS
@given(
    calls=calls_with_tags,
    gap=st.sampled_from(["", " ", "\n", "text ", CLOSE_TAG]),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_calls_holding_tags_round_trip_under_random_splits(
    calls: list[tuple[str, dict[str, str]]], gap: str, cuts: list[int]
) -> None:
    blocks = [OPEN_TAG + json.dumps({"name": n, "arguments": a}) + CLOSE_TAG for n, a in calls]
    text = gap.join(blocks)
    items = stream(split_at(text, cuts))
    got = [(c["name"], c["args"]) for i in items if isinstance(i, ToolBlock) for c in i.tool_calls]
    assert got == calls
    assert "".join(i for i in items if isinstance(i, str)) == gap.replace(CLOSE_TAG, "") * (
        len(calls) - 1
    )
