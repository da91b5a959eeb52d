"""Property fuzzing of the renderer and the tool-call parsers (hypothesis).

Inputs are arbitrary unicode, and text assembled from K2's markers, tool-call tags and JSON
fragments (where the parsers' edge cases live). Properties:

- ``render_prompt`` on arbitrary messages raises nothing but ``K2InputError``; when it renders
  with ``neutralize_markers`` on, the prompt holds exactly one user marker per user message and
  one ``<tool_response>`` per tool message, whatever the text (no turn forged);
- ``parse_tool_calls`` on arbitrary text never raises and never loses text: the content and the
  blocks' ``raw`` texts, in order, rebuild the input exactly but for stray close tags;
- ``ToolCallStreamParser`` fed the same text split at random points agrees with the whole parse.

Budget: ``FUZZ_EXAMPLES`` examples per property (env ``K2_FUZZ_EXAMPLES``, default 500), no
deadline; each property's test fails unless hypothesis really ran that many examples.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_k2 import (
    K2Format,
    K2InputError,
    ToolBlock,
    ToolCallStreamParser,
    parse_tool_calls,
    render_prompt,
)

FUZZ_EXAMPLES = int(os.environ.get("K2_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BUDGET: dict[str, tuple[int, float]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def timed(name: str) -> Callable[[F], F]:
    """Count the examples a property ran and the time they took (for the budget report)."""

    def wrap(fn: F) -> F:
        def inner(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                runs, spent = BUDGET.get(name, (0, 0.0))
                BUDGET[name] = (runs + 1, spent + time.perf_counter() - start)

        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner  # type: ignore[return-value]

    return wrap


# ------------------------------------------------------------------------------ strategies

K2 = K2Format()
CHATML = K2Format.chatml()
FRAGMENTS = [
    *K2.special_markers,
    *CHATML.special_markers,
    "<tool_", "call>", "</tool_", "<", ">", "|", "/", "&lt;", "&amp;", "amp;", "lt;",
    "{", "}", "[", "]", '"name"', '"arguments"', '"parameters"', ":", ", ", '"f"', '"g"',
    "'name'", "'f'", '{"a": 1}', '"{\\"a\\": 1}"', "null", "true", "None", "True", "1e999",
    "NaN", "-0", "1" * 30, "\\", '"', "'", "```json\n", "```", " ", "\n", "\t", "é", "\u2028",
    "[" * 50, "]" * 50, "\x00", "\ud7ff",
]  # fmt: skip
marker_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)
texts = st.one_of(st.text(max_size=60), marker_soup)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
CALL_IDS = ["c1", "c2", "c3"]
block_types = st.sampled_from(
    ["text", "text", "text", "image", "image_url", "tool_use", "reasoning", "file", "weird"]
)
content_blocks = st.one_of(
    texts,
    st.builds(lambda kind, text: {"type": kind, "text": text}, block_types, texts),
    # "type" is kept hashable here: an unhashable one is a known bug, pinned by
    # test_content_block_with_an_unhashable_type_is_an_input_error below.
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.none() | st.booleans() | st.integers() | st.floats() | texts,
            "text": json_values,
            "url": texts,
        },
    ),
)
contents = st.one_of(texts, st.lists(content_blocks, max_size=3))
tool_calls = st.lists(
    st.builds(
        lambda name, args, call_id: {"name": name, "args": args, "id": call_id},
        texts,
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        st.sampled_from([*CALL_IDS, None]),
    ),
    max_size=2,
)
invalid_calls = st.lists(
    st.builds(
        lambda name, args, call_id: {"name": name, "args": args, "id": call_id, "error": "bad"},
        st.none() | texts,
        st.none() | texts,
        st.sampled_from(CALL_IDS),
    ),
    max_size=1,
)


def _message(*, kind: str, content: Any, calls: Any, invalid: Any, call_id: str, role: str) -> Any:
    if kind == "human":
        return HumanMessage(content=content)
    if kind == "system":
        return SystemMessage(content=content)
    if kind == "ai":
        return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid)
    if kind == "tool":
        return ToolMessage(content=content, tool_call_id=call_id)
    return ChatMessage(role=role, content=content)


messages_strategy = st.lists(
    st.builds(
        _message,
        kind=st.sampled_from(["human", "human", "ai", "ai", "tool", "tool", "system", "chat"]),
        content=contents,
        calls=tool_calls,
        invalid=invalid_calls,
        call_id=st.sampled_from(CALL_IDS),
        role=st.sampled_from(["user", "assistant", "system", "tool", "function", "x"]),
    ),
    max_size=7,
)
text_contents = st.one_of(
    texts, st.lists(texts | st.builds(lambda t: {"type": "text", "text": t}, texts), max_size=3)
)


@st.composite
def conversations(draw: st.DrawFn) -> list[BaseMessage]:
    """A well-formed conversation (system, user, calls answered by tool messages), so that
    most examples render instead of stopping at the first K2InputError."""
    messages: list[BaseMessage] = [
        SystemMessage(content=draw(text_contents)) for _ in range(draw(st.integers(0, 2)))
    ]
    for turn in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            messages.append(HumanMessage(content=draw(text_contents)))
        else:
            messages.append(ChatMessage(role="user", content=draw(text_contents)))
        if not draw(st.booleans()):
            continue
        calls = draw(tool_calls)
        for k, call in enumerate(calls):
            call["id"] = f"t{turn}c{k}"
        messages.append(AIMessage(content=draw(text_contents), tool_calls=calls))
        messages += [
            ToolMessage(content=draw(text_contents), tool_call_id=call["id"]) for call in calls
        ]
        if draw(st.booleans()):
            messages.append(AIMessage(content=draw(text_contents)))
    return messages


# Three in four examples are well-formed; the rest are any sequence of any messages.
any_conversation = st.one_of(conversations(), conversations(), conversations(), messages_strategy)
tools_strategy = st.none() | st.lists(
    st.builds(
        lambda name, description: {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
        st.sampled_from(["f", "g", "search_web"]),
        texts,
    ),
    max_size=2,
    unique_by=lambda tool: tool["name"],
)


def _role(message: BaseMessage) -> str | None:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, ChatMessage):
        return message.role
    return None


# ------------------------------------------------------------------------------ render_prompt


@FUZZ
@given(
    messages=any_conversation,
    tools=tools_strategy,
    fmt=st.sampled_from([K2, CHATML]),
    default_system=st.none() | texts,
    force=st.booleans(),
    neutralize=st.booleans(),
)
@timed("render_prompt raises only K2InputError")
def check_render_prompt_raises_only_k2_input_error(
    *,
    messages: list[BaseMessage],
    tools: list[dict[str, Any]] | None,
    fmt: K2Format,
    default_system: str | None,
    force: bool,
    neutralize: bool,
) -> None:
    try:
        prompt = fmt.render_prompt(
            messages,
            tools=tools,
            default_system=default_system,
            force_tool_call=force,
            neutralize_markers=neutralize,
        )
    except K2InputError:
        return
    assert isinstance(prompt, str)
    if not neutralize or (default_system and "<" in default_system):
        return  # `default_system` is configuration, rendered as given
    roles = [_role(m) for m in messages]
    # K2's function-calling instructions name the response tags once each themselves.
    instructions = fmt.function_calling_prompt if tools else ""
    assert prompt.count(fmt.user_prefix) == roles.count("user")
    for tag in (fmt.tool_response_open, fmt.tool_response_close):
        assert prompt.count(tag) == roles.count("tool") + instructions.count(tag)


# ------------------------------------------------------------------------------ parse_tool_calls

parser_tools = st.none() | st.just(
    [
        {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        {"name": "g", "parameters": {"type": "object", "required": ["q"]}},
    ]
)


def rebuild(
    text: str,
    blocks: list[ToolBlock],
    open_tag: str = "<tool_call>",
    close_tag: str = "</tool_call>",
) -> str:
    """The content ``parse_tool_calls`` should report, checking each block sits in order:
    the text outside blocks without its (stray) close tags."""
    content: list[str] = []
    position = 0
    for block in blocks:
        start = text.find(open_tag, position)
        assert start != -1
        assert text.startswith(block.raw, start), (block.raw, text[start:])
        content.append(text[position:start].replace(close_tag, ""))
        position = start + len(block.raw)
    assert open_tag not in text[position:]
    content.append(text[position:].replace(close_tag, ""))
    return "".join(content)


def without_stray_close_tags(text: str, blocks: list[ToolBlock]) -> str:
    """``text`` with the close tags outside blocks taken out (what the parsers drop)."""
    kept: list[str] = []
    position = 0
    for block in blocks:
        start = text.find(block.raw, position)
        kept += [text[position:start].replace("</tool_call>", ""), block.raw]
        position = start + len(block.raw)
    return "".join([*kept, text[position:].replace("</tool_call>", "")])


@FUZZ
@given(text=texts, tools=parser_tools)
@timed("parse_tool_calls loses no text")
def check_parse_tool_calls_never_raises_and_loses_no_text(
    text: str, tools: list[dict[str, Any]] | None
) -> None:
    parsed = parse_tool_calls(text, tools)
    assert rebuild(text, parsed.blocks) == parsed.content
    kept = without_stray_close_tags(text, parsed.blocks)
    assert len(parsed.content) + sum(len(b.raw) for b in parsed.blocks) == len(kept)
    for block in parsed.blocks:
        assert block.tool_calls or block.invalid_tool_calls
        for bad in block.invalid_tool_calls:
            assert str(bad["args"]).startswith("<tool_call>")  # stays invalid on merge
        for call in block.tool_calls:
            json.dumps(call["args"])  # what is valid can be sent back as JSON
    assert parsed.tool_calls == [c for b in parsed.blocks for c in b.tool_calls]


def _comparable(block: ToolBlock) -> tuple[Any, ...]:
    """A block without its random call ids."""
    return (
        block.raw,
        [(c["name"], c["args"]) for c in block.tool_calls],
        [(c["name"], c["args"], c["error"]) for c in block.invalid_tool_calls],
    )


@FUZZ
@given(text=texts, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
@timed("stream parser agrees with whole parse")
def check_stream_parser_on_random_splits_agrees_with_the_whole_parse(
    text: str, cuts: list[int]
) -> None:
    tools = [{"name": "f", "parameters": {"type": "object"}}]
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    parser = ToolCallStreamParser(tools)
    out: list[str | ToolBlock] = []
    for piece in pieces:
        out += parser.feed(piece)
    out += parser.close()
    whole = parse_tool_calls(text, tools)
    assert "".join(p for p in out if isinstance(p, str)) == whole.content
    streamed = [_comparable(b) for b in out if isinstance(b, ToolBlock)]
    assert streamed == [_comparable(b) for b in whole.blocks]
    # And in order: the stream's items concatenate back to the input (stray close tags out).
    kept = without_stray_close_tags(text, whole.blocks)
    assert "".join(p if isinstance(p, str) else p.raw for p in out) == kept


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>" + "[" * 100_000,
        "<tool_call>" + "{" * 50_000 + "</tool_call>",
        "<tool_call>" + "1" * 10_000 + "</tool_call>",
        "<tool_call>{'name': 'f', 'arguments': {'a': " + "(" * 500 + "1" + ")" * 500 + "}}",
        "<tool_call>" * 2_000,
        "</tool_call>" * 2_000,
    ],
    ids=["deep-list", "deep-dict", "huge-int", "deep-parens", "many-opens", "many-closes"],
)
def test_pathological_blocks_do_not_raise(text: str) -> None:
    parsed = parse_tool_calls(text)
    assert rebuild(text, parsed.blocks) == parsed.content


@pytest.mark.parametrize("kind", [["text"], {"a": 1}])
def test_content_block_with_an_unhashable_type_is_an_input_error(kind: Any) -> None:
    with pytest.raises(K2InputError, match="unknown type"):
        render_prompt([HumanMessage([{"type": kind, "text": "hi"}])])


@pytest.mark.parametrize(
    "value", [datetime.date(2024, 1, 1), {1, 2}, b"bytes"], ids=["date", "set", "bytes"]
)
def test_tool_call_args_json_cannot_encode_are_an_input_error(value: Any) -> None:
    history = [
        HumanMessage("q"),
        AIMessage("", tool_calls=[{"name": "f", "args": {"x": value}, "id": "c1"}]),
        ToolMessage("r", tool_call_id="c1"),
    ]
    with pytest.raises(K2InputError, match="JSON"):
        render_prompt(history)


PROPERTIES: dict[str, Callable[[], None]] = {
    "render_prompt raises only K2InputError": check_render_prompt_raises_only_k2_input_error,
    "parse_tool_calls loses no text": check_parse_tool_calls_never_raises_and_loses_no_text,
    "stream parser agrees with whole parse": (
        check_stream_parser_on_random_splits_agrees_with_the_whole_parse
    ),
}


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property_holds_over_its_full_budget(name: str) -> None:
    """The property holds on every example, and hypothesis really ran ``FUZZ_EXAMPLES``."""
    BUDGET.pop(name, None)
    PROPERTIES[name]()  # runs every example; a counterexample fails here
    runs, spent = BUDGET.get(name, (0, 0.0))
    assert runs >= FUZZ_EXAMPLES, (
        f"{name}: only {runs} of max_examples={FUZZ_EXAMPLES} examples ran ({spent:.2f}s); "
        "the strategies filter or overrun too much, so the fuzzing is weaker than it says"
    )
