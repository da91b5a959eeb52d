"""fit_messages and window_from_info: the prompt always fits, or the error says why.

Counts come from a small deterministic tokenizer over the real rendered prompt: every K2
marker is one token, other text splits into words and punctuation (no transformers).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_k2 import ContextWindowExceededError, K2ConfigError
from langchain_k2._context import ContextLimits, fit_messages, window_from_info
from langchain_k2._prompt import DEFAULT_FORMAT, render_prompt

LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}

_MARKERS = "|".join(re.escape(m) for m in DEFAULT_FORMAT.special_markers)
_TOKENS = re.compile(rf"{_MARKERS}|\s*\w+|\s*[^\w\s]|\s+")


def text_tokens(text: str) -> int:
    return len(_TOKENS.findall(text))


def make_counter(
    tools: Sequence[dict[str, Any]] | None = None,
) -> tuple[Callable[[list[BaseMessage]], int], list[int]]:
    """A prompt counter like the one ChatK2 builds, and a log of the list sizes it saw."""
    seen: list[int] = []

    def count(messages: list[BaseMessage]) -> int:
        seen.append(len(messages))
        return text_tokens(render_prompt(messages, tools=tools))

    return count, seen


def call(call_id: str, q: str = "x") -> dict[str, Any]:
    return {"name": "lookup", "args": {"q": q}, "id": call_id}


def long_history(turns: int, *, system: bool = True) -> list[BaseMessage]:
    """Turns of: question, two parallel calls, their results, an answer; then a question."""
    messages: list[BaseMessage] = [SystemMessage("You are terse.")] if system else []
    for t in range(turns):
        messages += [
            HumanMessage(f"Question {t}: " + "tell me more " * 5),
            AIMessage("", tool_calls=[call(f"a{t}"), call(f"b{t}")]),
            ToolMessage("result " * 20, tool_call_id=f"a{t}"),
            ToolMessage("other " * 10, tool_call_id=f"b{t}"),
            AIMessage(f"Answer {t}."),
        ]
    messages.append(HumanMessage("And finally?"))
    return messages


def tokens(messages: list[BaseMessage], tools: Sequence[dict[str, Any]] | None = None) -> int:
    return text_tokens(render_prompt(messages, tools=tools))


def turn_starts(messages: Sequence[BaseMessage]) -> list[int]:
    return [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]


def assert_invariants(
    original: list[BaseMessage], result: list[BaseMessage], fits: Callable[[int], bool]
) -> None:
    """Everything fit_messages promises about a trimmed history."""
    head = original[:1] if isinstance(original[0], SystemMessage) else []
    assert result[: len(head)] == head  # system prompt kept, first
    body = result[len(head) :]
    latest = max(turn_starts(original))
    # The latest user turn is kept; before it only whole turns were dropped (a tail of the
    # original from a HumanMessage); after it, only whole model turns, oldest first, and
    # the newest model turn is always kept.
    assert isinstance(body[0], HumanMessage)
    if body[0] is original[latest]:
        rest = body[1:]
        tail = original[len(original) - len(rest) :] if rest else []
        assert all(a is b for a, b in zip(rest, tail, strict=True))
        assert not rest or isinstance(rest[0], AIMessage)
        ai_after = [
            i for i in range(latest + 1, len(original)) if isinstance(original[i], AIMessage)
        ]
        if ai_after:
            assert len(rest) >= len(original) - ai_after[-1]
    else:
        tail = original[len(original) - len(body) :]
        assert all(a is b for a, b in zip(body, tail, strict=True))
    # No AIMessage with tool_calls is separated from its ToolMessages, either way.
    kept_ids = {id(m) for m in result}
    for i, message in enumerate(original):
        if isinstance(message, AIMessage) and message.tool_calls:
            answers = [
                m
                for m in original[i + 1 :]
                if isinstance(m, ToolMessage)
                and m.tool_call_id in {tc["id"] for tc in message.tool_calls}
            ]
            assert {id(m) in kept_ids for m in [message, *answers]} != {True, False}
    assert not any(isinstance(m, ToolMessage) for m in result[len(head) : len(head) + 1])
    # It renders, and it fits.
    render_prompt(result)
    assert fits(tokens(result))


# --------------------------------------------------------------------------- window_from_info


def test_window_from_info_prefers_the_tightest_limit() -> None:
    assert window_from_info(4095, 4096) == ContextLimits(4096, 4095)
    assert window_from_info(None, 4096, override=8192) == ContextLimits(4096, None)
    assert window_from_info(None, 4096, override=1024) == ContextLimits(1024, None)
    assert window_from_info(None, None, override=2048) == ContextLimits(2048, None)
    assert window_from_info(3000, None) == ContextLimits(None, 3000)
    assert window_from_info(None, None) == ContextLimits(None, None)


@pytest.mark.parametrize("override", [0, -5, True])
def test_window_from_info_rejects_a_bad_override(override: int) -> None:
    with pytest.raises(K2ConfigError, match="context_window must be a positive"):
        window_from_info(None, 4096, override=override)


# --------------------------------------------------------------------------- fitting


def test_a_prompt_that_fits_is_returned_unchanged_after_one_count() -> None:
    messages = long_history(2)
    count, seen = make_counter()
    needed = tokens(messages)
    result = fit_messages(messages, count=count, window=needed + 100, max_new_tokens=100, trim=True)
    assert result == messages
    assert all(a is b for a, b in zip(result, messages, strict=True))
    assert seen == [len(messages)]


def test_nothing_is_counted_without_a_known_limit() -> None:
    count, seen = make_counter()
    messages = long_history(3)
    assert fit_messages(messages, count=count, window=None, max_new_tokens=10, trim=False) == (
        messages
    )
    assert seen == []


def test_without_trimming_the_error_states_both_counts_and_the_ways_out() -> None:
    messages = long_history(3)
    count, _ = make_counter()
    prompt = tokens(messages)
    window = prompt + 50
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(messages, count=count, window=window, max_new_tokens=100, trim=False)
    error = info.value
    assert (error.prompt_tokens, error.max_new_tokens, error.window) == (prompt, 100, window)
    text = str(error)
    assert f"The prompt takes {prompt} tokens and max_new_tokens is 100" in text
    assert f"together {prompt + 100} tokens, more than the context window of {window}" in text
    assert "lower max_new_tokens to at most 50" in text
    assert "set trim_history=True" in text
    assert "shorten the conversation" in text
    assert "larger --max-total-tokens" in text


def test_a_prompt_longer_than_the_window_is_not_told_to_lower_max_new_tokens() -> None:
    messages = long_history(3)
    count, _ = make_counter()
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(messages, count=count, window=20, max_new_tokens=10, trim=False)
    assert "max_new_tokens to at most" not in str(info.value)


def test_the_input_limit_is_checked_too() -> None:
    messages = long_history(3)
    count, _ = make_counter()
    prompt = tokens(messages)
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(
            messages,
            count=count,
            window=prompt * 10,
            max_new_tokens=10,
            trim=False,
            max_input_tokens=prompt - 1,
        )
    text = str(info.value)
    assert f"the server takes at most {prompt - 1} prompt tokens" in text
    assert "larger --max-input-tokens" in text
    assert "max_new_tokens to at most" not in text  # it would not help
    assert "--max-total-tokens" not in text
    assert info.value.window == prompt - 1 + 10  # prompt + max_new_tokens > window holds
    # With only an input limit known, it is still enforced.
    kept = fit_messages(
        messages,
        count=count,
        window=None,
        max_new_tokens=10,
        trim=True,
        max_input_tokens=prompt - 1,
    )
    assert tokens(kept) <= prompt - 1
    assert_invariants(messages, kept, lambda n: n <= prompt - 1)


def test_trimming_drops_the_oldest_whole_turns_and_keeps_the_most_that_fit() -> None:
    messages = long_history(6)
    count, _ = make_counter()
    starts = turn_starts(messages)
    # A window that fits the last three turns exactly.
    window = tokens([messages[0], *messages[starts[-3] :]]) + 64
    result = fit_messages(messages, count=count, window=window, max_new_tokens=64, trim=True)
    assert result == [messages[0], *messages[starts[-3] :]]
    assert_invariants(messages, result, lambda n: n + 64 <= window)
    # One token less and the oldest of those turns goes too.
    result = fit_messages(messages, count=count, window=window - 1, max_new_tokens=64, trim=True)
    assert result == [messages[0], *messages[starts[-2] :]]


def test_trimming_counts_the_tools_system_prompt() -> None:
    messages = long_history(4, system=False)
    count, _ = make_counter(tools=[LOOKUP_TOOL])
    starts = turn_starts(messages)
    window = tokens(messages[starts[-2] :], tools=[LOOKUP_TOOL]) + 10
    result = fit_messages(messages, count=count, window=window, max_new_tokens=10, trim=True)
    assert result == messages[starts[-2] :]
    # The tools prompt is large: without counting it, more history would seem to fit.
    assert tokens(messages[starts[-4] :]) + 10 <= window


def test_counting_stays_logarithmic_in_the_history_length() -> None:
    messages = long_history(300)
    count, seen = make_counter()
    window = tokens([messages[0], *messages[-11:]]) + 10
    result = fit_messages(messages, count=count, window=window, max_new_tokens=10, trim=True)
    assert result == [messages[0], *messages[-11:]]
    # full prompt, minimal tail, then a binary search over ~1500 messages
    assert len(seen) <= 2 + (len(messages)).bit_length() + 1


def test_a_long_tool_result_in_an_old_turn_goes_with_its_whole_turn() -> None:
    messages: list[BaseMessage] = [
        SystemMessage("You summarize tool results."),
        HumanMessage("Fetch the report."),
        AIMessage("Fetching.", tool_calls=[call("r1", "report")]),
        ToolMessage("line of the report " * 500, tool_call_id="r1"),
        AIMessage("It is long."),
        HumanMessage("Thanks. Now the weather?"),
        AIMessage("", tool_calls=[call("w1", "weather")]),
        ToolMessage("sunny", tool_call_id="w1"),
    ]
    count, _ = make_counter()
    result = fit_messages(messages, count=count, window=200, max_new_tokens=50, trim=True)
    assert result == [messages[0], *messages[5:]]
    assert render_prompt(result).endswith("<tool_response>sunny</tool_response>")


def test_a_long_tool_result_in_the_latest_turn_cannot_be_trimmed_away() -> None:
    messages: list[BaseMessage] = [
        SystemMessage("Be brief."),
        HumanMessage("Hi"),
        AIMessage("Hello!"),
        HumanMessage("Fetch the report."),
        AIMessage("", tool_calls=[call("r1", "report")]),
        ToolMessage("line of the report " * 500, tool_call_id="r1"),
    ]
    count, _ = make_counter()
    minimal = tokens([messages[0], *messages[3:]])
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(messages, count=count, window=500, max_new_tokens=50, trim=True)
    text = str(info.value)
    assert text.startswith(
        "Even the shortest history trimming keeps (the system prompt and the latest user turn "
        f"onward) takes {minimal} tokens and max_new_tokens is 50"
    )
    assert "trim_history" not in text  # it is already on
    assert info.value.prompt_tokens == minimal


def test_a_single_turn_that_does_not_fit_has_nothing_to_trim() -> None:
    messages: list[BaseMessage] = [SystemMessage("Be brief."), HumanMessage("word " * 200)]
    count, _ = make_counter()
    with pytest.raises(ContextWindowExceededError, match="Even the shortest history"):
        fit_messages(messages, count=count, window=100, max_new_tokens=10, trim=True)


def test_parallel_tool_calls_are_never_split_at_any_window() -> None:
    messages: list[BaseMessage] = [SystemMessage("Use tools.")]
    for t in range(4):
        ids = [f"p{t}_{k}" for k in range(3)]
        messages += [
            HumanMessage(f"Compare three cities, round {t}."),
            AIMessage("Looking up.", tool_calls=[call(i, f"city {i}") for i in ids]),
            *(ToolMessage(f"weather of {i} " * (3 + k), tool_call_id=i) for k, i in enumerate(ids)),
            AIMessage("", tool_calls=[call(f"q{t}", "again")]),
            ToolMessage("more data " * 4, tool_call_id=f"q{t}"),
            AIMessage(f"Done {t}."),
        ]
    messages.append(HumanMessage("Summarize."))
    count, _ = make_counter()
    lowest = tokens([messages[0], messages[-1]])
    for window in range(lowest + 1, tokens(messages) + 2):
        result = fit_messages(messages, count=count, window=window, max_new_tokens=1, trim=True)
        assert_invariants(messages, result, lambda n, w=window: n + 1 <= w)


def test_a_history_without_a_system_message_or_starting_with_the_model() -> None:
    messages: list[BaseMessage] = [
        AIMessage("Hi, I am K2. Ask me anything."),
        HumanMessage("one " * 30),
        AIMessage("ok " * 30),
        HumanMessage("two"),
    ]
    count, _ = make_counter()
    result = fit_messages(messages, count=count, window=40, max_new_tokens=5, trim=True)
    assert result == messages[3:]
    window = tokens(messages[1:]) + 5
    assert tokens(messages) + 5 > window
    result = fit_messages(messages, count=count, window=window, max_new_tokens=5, trim=True)
    assert result == messages[1:]  # the greeting goes first: it cannot start a valid history


def test_the_same_message_object_twice_is_handled() -> None:
    again = HumanMessage("same question " * 10)
    messages: list[BaseMessage] = [
        SystemMessage("s"),
        again,
        AIMessage("a " * 10),
        again,
        AIMessage("b " * 10),
        HumanMessage("last"),
    ]
    count, _ = make_counter()
    window = tokens([messages[0], *messages[3:]]) + 1
    result = fit_messages(messages, count=count, window=window, max_new_tokens=1, trim=True)
    assert len(result) == 4
    assert result[1] is again
    assert result[2] is messages[4]


# --------------------------------------------------------------------------- property


_WORDS = st.text(alphabet="abcdefgh .,!", min_size=0, max_size=40)
_LONG = st.text(alphabet="abcdefgh .,!{}:", min_size=0, max_size=400)


@st.composite
def histories(draw: st.DrawFn) -> list[BaseMessage]:
    ids = itertools.count()
    messages: list[BaseMessage] = []
    if draw(st.booleans()):
        messages.append(SystemMessage(draw(_WORDS)))
    turns = draw(st.integers(1, 6))
    for turn in range(turns):
        messages.append(HumanMessage(draw(_WORDS)))
        for _ in range(draw(st.integers(0, 2))):
            calls = [call(f"c{next(ids)}", draw(_WORDS)) for _ in range(draw(st.integers(1, 3)))]
            messages.append(AIMessage(draw(_WORDS), tool_calls=calls))
            messages += [ToolMessage(draw(_LONG), tool_call_id=c["id"]) for c in calls]
        if turn < turns - 1 or draw(st.booleans()):
            messages.append(AIMessage(draw(_WORDS)))
    return messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=histories(),
    position=st.floats(-0.1, 1.1),
    max_new_tokens=st.integers(1, 40),
)
def test_trimming_keeps_every_invariant(
    messages: list[BaseMessage], position: float, max_new_tokens: int
) -> None:
    head = messages[:1] if isinstance(messages[0], SystemMessage) else []
    latest = max(turn_starts(messages))
    ai_after = [i for i in range(latest + 1, len(messages)) if isinstance(messages[i], AIMessage)]
    newest = [messages[latest], *messages[ai_after[-1] :]] if ai_after else messages[latest:]
    minimal = tokens([*head, *newest])
    full = tokens(messages)
    window = max_new_tokens + minimal + round(position * (full - minimal))
    count, _ = make_counter()

    def fits(n: int) -> bool:
        return n + max_new_tokens <= window

    droppable = len(newest) < len(messages) - len(head)
    if not fits(minimal):
        event("even the minimal history does not fit")
        with pytest.raises(ContextWindowExceededError) as info:
            fit_messages(
                messages, count=count, window=window, max_new_tokens=max_new_tokens, trim=True
            )
        assert info.value.prompt_tokens == (minimal if droppable else full)
        return
    result = fit_messages(
        messages, count=count, window=window, max_new_tokens=max_new_tokens, trim=True
    )
    if fits(full):
        event("fits untrimmed")
        assert result == messages
        return
    event("trimmed")
    assert_invariants(messages, result, fits)


def test_agent_tool_loop_after_one_user_turn_is_trimmed_oldest_first():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from langchain_k2._context import fit_messages
    from langchain_k2._prompt import render_prompt

    history = [SystemMessage("sys"), HumanMessage("read all pages")]
    for page in range(10):
        call = {"name": "read", "args": {"page": page}, "id": f"c{page}"}
        history += [
            AIMessage("", tool_calls=[call]),
            ToolMessage("x" * 50, tool_call_id=f"c{page}"),
        ]

    def count(messages):
        return len(render_prompt(messages))

    budget = count(history[:2] + history[-6:]) + 5
    kept = fit_messages(history, count=count, window=budget + 10, max_new_tokens=10, trim=True)
    assert kept[:2] == history[:2]
    assert kept[2:] == history[-6:]
    render_prompt(kept)  # still a valid conversation
