"""Repair as a strategy: a toy strategy added in this one file, and the families' repairs.

A strategy (`langchain_k2._repair.Repair`) says what to ask when a call is broken; the turn
keeps the budget and the bookkeeping. The K2 families' broken calls are repaired like
K2-Chat's: the repair prompt is the raw completion up to the broken call (the reasoning
included) and the call's open tag.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from langchain_k2 import ChatK2
from langchain_k2._driver import Driver
from langchain_k2._prompt import DEFAULT_FORMAT
from langchain_k2._repair import Broken, Retry
from langchain_k2._turn import Turn, TurnConfig
from langchain_k2.backends._base import GenerationParams, json_grammar
from tests.support.scripted_backend import ScriptedBackend

TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


class NamePrefilled:
    """A toy strategy: continue with the call's name already written, after a hint line."""

    def __init__(self) -> None:
        self.seen: list[Broken] = []

    def __call__(self, broken: Broken) -> Retry | None:
        self.seen.append(broken)
        return Retry(
            context=broken.context + broken.written + "(one call, please)\n",
            primer='<tool_call>{"name": "search", "arguments": ',
        )


class KeepIt:
    """A toy strategy that never repairs."""

    def __call__(self, broken: Broken) -> Retry | None:
        return None


def turn_with(repair: Any, *, repairs: int = 2) -> Turn:
    config = TurnConfig(
        prompt="PROMPT ",
        params=GenerationParams(max_new_tokens=64),
        fmt=DEFAULT_FORMAT,
        tools=[TOOL],
        use_grammar=True,
        max_repairs=repairs,
        repair=repair,
    )
    return Turn(config)


BROKEN = '<tool_call>{"name": "search", "arguments": {"query": }}</tool_call>'


def test_a_strategy_defined_in_a_test_drives_the_repair() -> None:
    backend = ScriptedBackend()
    backend.script(["Looking. ", BROKEN, " ignored"], ['{"query": "1984"}}', "</tool_call>"])
    strategy = NamePrefilled()
    turn = turn_with(strategy)
    result = Driver(backend=backend).invoke(lambda info, count: turn)
    message = result.generations[0].message
    assert isinstance(message, AIMessage)
    assert [c["args"] for c in message.tool_calls] == [{"query": "1984"}]
    assert message.content == "Looking. "
    assert message.response_metadata["tool_call_retries"] == 1
    [broken] = strategy.seen
    assert (broken.context, broken.written, broken.repairs) == ("PROMPT ", "Looking. ", 0)
    assert broken.block.raw == BROKEN
    prompts = [prompt for prompt, _ in backend.requests]
    assert prompts[1] == (
        'PROMPT Looking. (one call, please)\n<tool_call>{"name": "search", "arguments": '
    )
    assert backend.requests[1][1].grammar is None  # the strategy asked for none


def test_a_repair_request_carries_only_the_grammar_its_strategy_asks_for() -> None:
    # The first request's grammar (a JSON answer, or a family's thought-then-call grammar)
    # describes output from the prompt's end; a repair's prompt ends inside the call.
    backend = ScriptedBackend()
    backend.script(["Looking. ", BROKEN], ['{"query": "1984"}}', "</tool_call>"])
    config = TurnConfig(
        prompt="PROMPT ",
        params=GenerationParams(max_new_tokens=64, grammar=json_grammar({"type": "object"})),
        fmt=DEFAULT_FORMAT,
        tools=[TOOL],
        repair=NamePrefilled(),
    )
    result = Driver(backend=backend).invoke(lambda info, count: Turn(config))
    message = result.generations[0].message
    assert isinstance(message, AIMessage)
    assert [c["args"] for c in message.tool_calls] == [{"query": "1984"}]
    assert backend.requests[0][1].grammar == json_grammar({"type": "object"})
    assert backend.requests[1][1].grammar is None


def test_a_strategy_that_declines_keeps_the_broken_call_and_spends_nothing() -> None:
    backend = ScriptedBackend()
    backend.script(["Looking. ", BROKEN])
    turn = turn_with(KeepIt())
    message = Driver(backend=backend).invoke(lambda info, count: turn).generations[0].message
    assert len(backend.requests) == 1
    assert isinstance(message, AIMessage)
    assert [c["args"] for c in message.invalid_tool_calls] == [BROKEN]
    assert message.response_metadata["tool_call_retries"] == 0


def test_the_budget_is_the_turns_whatever_the_strategy() -> None:
    backend = ScriptedBackend()
    backend.script(["Looking. ", BROKEN], ['{"query": }}</tool_call>'])
    strategy = NamePrefilled()
    turn = turn_with(strategy, repairs=1)
    message = Driver(backend=backend).invoke(lambda info, count: turn).generations[0].message
    assert len(strategy.seen) == 1
    assert len(backend.requests) == 2
    assert message.response_metadata["tool_call_retries"] == 1
    assert isinstance(message, AIMessage)
    assert len(message.invalid_tool_calls) == 1


V2_BROKEN = '<tool_call>\n{"name": "search", "arguments": {"query": }}\n</tool_call>'
V2_FIXED = ['\n{"name": "search", ', '"arguments": {"query": "1984"}}\n</tool_call>']
V3_BROKEN = (
    "<ifm|tool_calls>\n<ifm|tool_call>serch\n<ifm|arg_key>query</ifm|arg_key>\n"
    "<ifm|arg_value>1984</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>"
)
V3_FIXED = [
    "\n<ifm|tool_call>search\n<ifm|arg_key>query</ifm|arg_key>\n",
    "<ifm|arg_value>1984</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>",
]
FAMILIES = [
    ("k2-v2", ["The book.", "\n</think_fast>\n", "Searching.\n", V2_BROKEN], V2_FIXED),
    ("k2-think-v2", ["The book.", "</think_fast>", "Searching.", V2_BROKEN], V2_FIXED),
    ("k2-v3", ["The book.", "</ifm|think_fast>", "Searching.", V3_BROKEN], V3_FIXED),
]


@pytest.mark.parametrize(("fmt", "first", "fixed"), FAMILIES)
def test_a_reasoning_familys_broken_call_is_repaired_from_its_raw_completion(
    fmt: str, first: list[str], fixed: list[str]
) -> None:
    backend = ScriptedBackend()
    backend.script(first, fixed)
    model = ChatK2(backend=backend, prompt_format=fmt, reasoning_effort="medium")
    message = model.bind_tools([TOOL]).invoke("Find 1984")
    assert [c["args"] for c in message.tool_calls] == [{"query": "1984"}]
    assert message.invalid_tool_calls == []
    assert message.content == "Searching."
    assert message.additional_kwargs["reasoning_content"] == "The book."
    assert message.response_metadata["tool_call_retries"] == 1
    (prompt, _), (repair, params) = backend.requests
    open_tag = first[-1][: first[-1].index(">") + 1]
    assert repair == prompt + "".join(first[:-1]) + open_tag  # the thought is kept verbatim
    assert params.grammar is None  # the JSON call grammar describes K2-Chat's call only


@pytest.mark.parametrize(("fmt", "first", "fixed"), FAMILIES)
def test_a_repaired_family_stream_merges_to_the_invoked_message(
    fmt: str, first: list[str], fixed: list[str]
) -> None:
    def run(stream: bool) -> AIMessage | AIMessageChunk:
        backend = ScriptedBackend()
        backend.script(first, fixed)
        model = ChatK2(backend=backend, prompt_format=fmt, reasoning_effort="medium")
        bound = model.bind_tools([TOOL])
        if not stream:
            return bound.invoke("Find 1984")
        chunks = list(bound.stream("Find 1984"))
        total = chunks[0]
        for chunk in chunks[1:]:
            total += chunk
        return total

    invoked, streamed = run(False), run(True)
    assert streamed.content == invoked.content
    assert streamed.additional_kwargs == invoked.additional_kwargs
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [
        (c["name"], c["args"]) for c in invoked.tool_calls
    ]
    assert streamed.response_metadata["tool_call_retries"] == 1


class Narrow:
    """A turn seen through the seam only: any other member is an AttributeError."""

    SEAM = frozenset({"step", "feed", "reading", "counted", "failed"})

    def __init__(self, turn: Turn) -> None:
        self._turn = turn

    def __getattr__(self, name: str) -> Any:
        if name not in self.SEAM:
            raise AttributeError(f"the driver reached Turn.{name}, outside the seam")
        return getattr(self._turn, name)


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
async def test_the_driver_needs_only_the_five_seam_members(mode: str) -> None:
    backend = ScriptedBackend()
    backend.script(["Looking. ", BROKEN], ['{"query": "1984"}}', "</tool_call>"])
    turn = turn_with(NamePrefilled())
    narrow: Any = Narrow(turn)
    driver = Driver(backend=backend)
    if mode == "invoke":
        driver.invoke(lambda info, count: narrow)
    elif mode == "stream":
        list(driver.stream(lambda info, count: narrow))
    elif mode == "ainvoke":
        await driver.ainvoke(lambda info, count: narrow)
    else:
        [chunk async for chunk in driver.astream(lambda info, count: narrow)]
    assert [c["args"] for c in turn.message().tool_calls] == [{"query": "1984"}]
    assert len(backend.requests) == 2
