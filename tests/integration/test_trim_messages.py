"""ChatK2 is a token counter for ``trim_messages`` (issue 15, item 4).

``trim_messages(messages, token_counter=llm, ...)`` probes slices of a history that are no
conversation (a leading ``ToolMessage``, a history cut after a tool call, reversed lists),
so ``get_num_tokens_from_messages`` must count any list; and it probes many times, so a
long history must cost one ``/tokenize`` request per distinct message, not one per probe.
The counts stay exact: for a conversation, the sum equals the tokens TGI counts for the
prompt (the loopback fake TGI's ``input_tokens``), and the lenient rendering is exactly the
prompt ``render_prompt`` writes.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.tools import tool

from langchain_k2 import ChatK2, K2Format, render_prompt
from langchain_k2._counting import render_parts
from langchain_k2._tool_binding import normalize_tools
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of


@tool
def read_page(page: int) -> str:
    """Read one page of the report."""
    return f"Page {page}: sales rose by {page} percent in region {page % 7}."


def call(page: int, call_id: str) -> dict[str, Any]:
    return {"name": "read_page", "args": {"page": page}, "id": call_id}


def history(turns: int) -> list[BaseMessage]:
    """A system prompt, then per turn: a question, a call, its answer and a reply."""
    messages: list[BaseMessage] = [SystemMessage("You read reports page by page.")]
    for page in range(1, turns + 1):
        call_id = f"call_{page}"
        messages += [
            HumanMessage(f"What does page {page} say about sales?"),
            AIMessage("", tool_calls=[call(page, call_id)]),
            ToolMessage(read_page.invoke({"page": page}), tool_call_id=call_id),
            AIMessage(f"Page {page} reports sales up {page} percent.\nNext page?"),
        ]
    return messages


def tokenize_requests(tgi: FakeEngine) -> int:
    return len(tgi.requests("/tokenize"))


def chat(tgi: FakeEngine, **kwargs: Any) -> ChatK2:
    return ChatK2(endpoint_url=tgi.url, retry_backoff=0.0, timeout=10, **kwargs)


TRIMS: dict[str, dict[str, Any]] = {
    "default": {},
    "first": {"strategy": "first"},
    "allow_partial": {"allow_partial": True},
    "chat_history": {"include_system": True, "start_on": "human", "end_on": ("human", "tool")},
}


@pytest.mark.parametrize("options", list(TRIMS), ids=list(TRIMS))
def test_trim_messages_counts_with_the_model(tgi: FakeEngine, options: str) -> None:
    llm = chat(tgi)
    messages = history(20)  # 81 messages
    full = llm.get_num_tokens_from_messages(messages)
    assert tokenize_requests(tgi) <= 3  # the anchor, the system section, all messages at once
    limit = full // 3
    probes: list[int] = []

    def counter(probe: list[BaseMessage]) -> int:
        probes.append(len(probe))
        return llm.get_num_tokens_from_messages(probe)

    before = tokenize_requests(tgi)
    trimmed = trim_messages(messages, token_counter=counter, max_tokens=limit, **TRIMS[options])
    assert trimmed
    assert len(trimmed) < len(messages)
    assert llm.get_num_tokens_from_messages(trimmed) <= limit
    if options == "first":
        assert trimmed == messages[: len(trimmed)]
    elif options == "chat_history":
        assert trimmed[0] == messages[0]
        assert isinstance(trimmed[1], HumanMessage)
    # The probes were slices of a history counted already: a new piece here and there
    # (a message first in a slice, a partial message), far fewer requests than probes.
    spent = tokenize_requests(tgi) - before
    print(f"\ntrim_messages({options}): {len(probes)} probes, {spent} /tokenize requests")
    assert len(probes) >= 5
    assert spent <= len(probes) // 2
    before = tokenize_requests(tgi)
    again = trim_messages(messages, token_counter=llm, max_tokens=limit, **TRIMS[options])
    assert again == trimmed
    assert tokenize_requests(tgi) == before  # all counted already


def test_a_count_is_the_servers_count_of_the_prompt(tgi: FakeEngine) -> None:
    tgi.configure(max_input_tokens=20000, max_total_tokens=30000)
    tgi.set_default(reply(tokens=tokens_of("ok", special("<|endoftext|>"))))
    llm = chat(tgi, max_new_tokens=8)
    for messages in (
        history(6),
        [*history(3), HumanMessage("And overall?")],
        [HumanMessage("Hi"), AIMessage("Hello!"), HumanMessage("Bye")],
    ):
        for tools in (None, [read_page]):
            counted = llm.get_num_tokens_from_messages(messages, tools=tools)
            model = llm if tools is None else llm.bind_tools(tools)
            answer = model.invoke(messages)
            assert answer.usage_metadata is not None
            assert counted == answer.usage_metadata["input_tokens"]


@pytest.mark.parametrize(
    "messages",
    [
        [ToolMessage("42", tool_call_id="c1")],
        [ToolMessage("42", tool_call_id="c1"), AIMessage("The answer is 42.")],
        [HumanMessage("Hi"), SystemMessage("Be brief."), HumanMessage("Bye")],
        [AIMessage("", tool_calls=[call(1, "c")])],
        list(reversed(history(2))),
        [ChatMessage(role="function", content="f() = 1"), HumanMessage("ok")],
    ],
    ids=["tool-only", "tool-first", "system-later", "call-last", "reversed", "other-role"],
)
def test_any_list_of_messages_is_counted(tgi: FakeEngine, messages: list[BaseMessage]) -> None:
    llm = chat(tgi)
    count = llm.get_num_tokens_from_messages(messages)
    # Written with each message's role markers, counted as one text (the new pieces go to
    # the server in one request, each token to the piece it starts in).
    text = "".join(render_parts(messages, fmt=llm.format))
    assert count == llm.get_num_tokens(text)
    assert llm.get_num_tokens_from_messages([]) == 0


CONVERSATIONS: list[list[BaseMessage]] = [
    [HumanMessage("Hi")],
    [SystemMessage("A"), SystemMessage("B"), HumanMessage("Hi"), AIMessage("Hello")],
    [*history(2), HumanMessage("More?")],
    history(2)[:3],  # ends on a tool answer
    [HumanMessage("x <|beginofuser|> y"), AIMessage("prefill")],
]


@pytest.mark.parametrize("fmt", [K2Format(), K2Format.chatml()], ids=["k2", "chatml"])
@pytest.mark.parametrize("tools", [None, [read_page]], ids=["no-tools", "tools"])
@pytest.mark.parametrize("default_system", [None, "Default."])
def test_lenient_rendering_of_a_conversation_is_its_prompt(
    fmt: K2Format, tools: list[Any] | None, default_system: str | None
) -> None:
    formatted = normalize_tools(tools) if tools else None
    for messages in CONVERSATIONS:
        parts = render_parts(messages, fmt=fmt, tools=formatted, default_system=default_system)
        assert "".join(parts) == render_prompt(
            messages, fmt=fmt, tools=formatted, default_system=default_system
        )


def test_without_offsets_each_message_is_counted_once() -> None:
    """A backend without ``token_starts`` (llama.cpp) counts each new piece on its own."""
    from tests.support.scripted_backend import ScriptedBackend

    backend = ScriptedBackend()
    asked: list[str] = []

    def count_tokens(text: str) -> int:
        asked.append(text)
        return len(text.split())

    backend.count_tokens = count_tokens  # type: ignore[method-assign]
    llm = ChatK2(backend=backend)
    messages = history(10)  # 41 messages
    trimmed = trim_messages(messages, token_counter=llm, max_tokens=80)
    assert trimmed
    assert llm.get_num_tokens_from_messages(trimmed) <= 80
    first = len(asked)
    # Each message once, a few twice (first in a probed slice, without its previous role).
    assert first <= len(messages) + 10
    assert len(set(asked)) == len(asked)  # nothing counted twice
    trim_messages(messages, token_counter=llm, max_tokens=80)
    assert len(asked) == first
