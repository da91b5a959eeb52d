"""Reasoning through a whole turn: reasoning_content, v1 reasoning blocks, streamed reasoning
chunks, reasoning token counts, and streamed chunks merging to the invoked message.

The turn runs against the scripted backend with a family's output parser put in place of
K2-Chat's (what ``PromptFormat.parser`` does once the formats are wired into ChatK2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from langchain_k2._driver import Driver
from langchain_k2._prompt import DEFAULT_FORMAT
from langchain_k2._tool_schema import tool_index
from langchain_k2._turn import Turn, TurnConfig
from langchain_k2.backends._base import GenerationParams
from langchain_k2.formats._k2_v2_output import K2V2OutputParser
from langchain_k2.formats._k2_v3_output import K2V3OutputParser
from tests.support.family_output import WEATHER
from tests.support.scripted_backend import ScriptedBackend

TOOLS = WEATHER


class FamilyTurn(Turn):
    """A turn whose output parser is a family's (as ``fmt.parser(...)`` will build it)."""

    def __init__(self, config: TurnConfig, make: Callable[[], Any]) -> None:
        self._make = make
        super().__init__(config)

    def _start(self, *, primed: bool, constrained: bool = False) -> None:
        super()._start(primed=primed, constrained=constrained)
        self._parser = self._make()


def v2() -> K2V2OutputParser:
    return K2V2OutputParser(tool_index(TOOLS), effort="medium")


def v3() -> K2V3OutputParser:
    return K2V3OutputParser(tool_index(TOOLS), effort="high")


def run(
    make: Callable[[], Any],
    tokens: list[str],
    *,
    stream: bool,
    v1: bool = False,
    repairs: int = 2,
) -> tuple[list[AIMessageChunk], AIMessage]:
    backend = ScriptedBackend()
    backend.script(tokens)
    config = TurnConfig(
        prompt="p",
        params=GenerationParams(max_new_tokens=64),
        fmt=DEFAULT_FORMAT,
        tools=TOOLS,
        emit_chunks=stream,
        indexed_text=v1,
        max_repairs=repairs,
    )
    turn = FamilyTurn(config, make)
    driver = Driver(backend=backend)
    if stream:
        chunks = [chunk.message for chunk in driver.stream(lambda info, count: turn)]
        return [c for c in chunks if isinstance(c, AIMessageChunk)], turn.message()
    result = driver.invoke(lambda info, count: turn)
    message = result.generations[0].message
    assert isinstance(message, AIMessage)
    return [], message


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


V2_TOKENS = [
    "The user",
    " wants Paris.",
    "\n</think",
    "_fast>\n",
    "Checking.",
    "<tool_call>",
    '\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n',
    "</tool_call>",
]
V3_TOKENS = [
    "Call ",
    "search.",
    "</ifm|think>",
    "One moment.",
    "<ifm|tool_calls>\n<ifm|tool_call>search\n<ifm|arg_key>query</ifm|arg_key>\n",
    "<ifm|arg_value>Paris weather</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>",
]


@pytest.mark.parametrize(
    ("make", "tokens", "reasoning", "content", "call"),
    [
        (
            v2,
            V2_TOKENS,
            "The user wants Paris.",
            "Checking.",
            ("get_weather", {"location": "Paris"}),
        ),
        (v3, V3_TOKENS, "Call search.", "One moment.", ("search", {"query": "Paris weather"})),
    ],
)
def test_reasoning_comes_back_in_reasoning_content_never_in_content(
    make: Callable[[], Any],
    tokens: list[str],
    reasoning: str,
    content: str,
    call: tuple[str, dict[str, Any]],
) -> None:
    _, message = run(make, tokens, stream=False)
    assert message.additional_kwargs == {"reasoning_content": reasoning}
    assert message.content == content
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [call]
    usage = message.usage_metadata
    assert usage is not None
    # The scripted backend counts one token per event: the events before the close tag's
    # end (the close tag included) are the reasoning's.
    reasoning_events = 4 if make is v2 else 3
    assert usage["output_token_details"] == {"reasoning": reasoning_events}
    assert usage["output_tokens"] == len(tokens)


@pytest.mark.parametrize(("make", "tokens"), [(v2, V2_TOKENS), (v3, V3_TOKENS)])
def test_streamed_chunks_merge_to_the_invoked_message(
    make: Callable[[], Any], tokens: list[str]
) -> None:
    chunks, _ = run(make, tokens, stream=True)
    _, invoked = run(make, tokens, stream=False)
    total = merged(chunks)
    assert total.content == invoked.content
    assert total.additional_kwargs == invoked.additional_kwargs
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        (c["name"], c["args"]) for c in invoked.tool_calls
    ]
    assert total.usage_metadata == invoked.usage_metadata
    assert chunks[-1].chunk_position == "last"
    assert total.chunk_position == "last"


def test_reasoning_streams_as_it_arrives_in_k2_v2() -> None:
    chunks, _ = run(v2, V2_TOKENS, stream=True)
    deltas = [c.additional_kwargs.get("reasoning_content") for c in chunks]
    assert deltas[:2] == ["The user", " wants Paris."]  # one chunk per event, before the end
    assert all(c.content == "" for c in chunks if c.additional_kwargs)


def test_v1_streams_a_reasoning_block_before_the_text() -> None:
    chunks, _ = run(v3, V3_TOKENS, stream=True, v1=True)
    total = merged(chunks)
    blocks = total.content_blocks
    assert [b["type"] for b in blocks] == ["reasoning", "text", "tool_call"]
    assert blocks[0]["reasoning"] == "Call search."  # type: ignore[typeddict-item]
    assert blocks[1]["text"] == "One moment."  # type: ignore[typeddict-item]
    _, invoked = run(v3, V3_TOKENS, stream=False, v1=True)
    assert [b["type"] for b in invoked.content_blocks] == ["reasoning", "text", "tool_call"]
    assert invoked.content_blocks[0] == {"type": "reasoning", "reasoning": "Call search."}


def test_k2_v3_output_without_a_close_tag_has_no_reasoning_and_counts_none() -> None:
    _, message = run(v3, ["Just ", "an answer."], stream=False)
    assert message.content == "Just an answer."
    assert message.additional_kwargs == {}
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_token_details"] == {"reasoning": 0}


def test_an_invalid_group_without_repairs_left_is_kept_as_invalid_calls() -> None:
    # Repairs of the families' broken calls: tests/unit/test_repair_strategy.py.
    bad = "<ifm|tool_calls>\n<ifm|tool_call>launch\n</ifm|tool_call>\n</ifm|tool_calls>"
    _, message = run(v3, ["Go.</ifm|think>", bad], stream=False, repairs=0)
    assert message.tool_calls == []
    [invalid] = message.invalid_tool_calls
    assert invalid["args"] == "<ifm|tool_call>launch\n</ifm|tool_call>"
    assert "unknown tool 'launch'" in (invalid["error"] or "")
    assert message.response_metadata["tool_call_retries"] == 0


def test_k2_chat_turns_report_no_reasoning_details() -> None:
    backend = ScriptedBackend()
    backend.script(["Hi", "."])
    config = TurnConfig(prompt="p", params=GenerationParams(max_new_tokens=8), fmt=DEFAULT_FORMAT)
    turn = Turn(config)
    message = Driver(backend=backend).invoke(lambda info, count: turn).generations[0].message
    assert message.usage_metadata is not None
    assert "output_token_details" not in message.usage_metadata
    assert message.additional_kwargs == {}
