"""Counting goes through the renderer: for every prompt format, on every engine's fake.

``get_num_tokens_from_messages`` sums the counts of the format's own pieces
(`PromptFormat.pieces`, the walker that renders the prompt). Here that sum must equal
the input tokens each engine's loopback fake reports for the very request ChatK2 sends
(TGI's ``input_length``, vLLM's and llama-cpp-python's ``usage.prompt_tokens``, SGLang's
``meta_info.prompt_tokens``, llama-server's ``tokens_evaluated``; the vLLM and llama.cpp
fakes add a BOS as a tokenizer does, vLLM's none to K2-V3's prompt, which holds its own):
with and without ``tools=``, with a forced ``tool_choice``, for
histories holding tool runs and invalid calls; and for a slice starting with a
``ToolMessage`` (no request can carry one) the server's own count of the lenient rendering.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from langchain_k2 import ChatK2
from langchain_k2._counting import render_parts
from langchain_k2._tool_binding import normalize_tools
from langchain_k2.formats import FORMATS
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, tokens_of


@tool
def read_page(page: int) -> str:
    """Read one page of the report."""
    return f"Page {page}: sales rose."


def history() -> list[BaseMessage]:
    bad = {"name": "read_page", "args": '{"page": ', "id": "c2", "error": "unterminated"}
    return [
        SystemMessage("You read reports <|im_start|> page by page."),
        HumanMessage("What do pages 1 and 2 say?"),
        AIMessage(
            "Reading.",
            tool_calls=[{"name": "read_page", "args": {"page": 1}, "id": "c1"}],
            invalid_tool_calls=[bad],
            additional_kwargs={"reasoning_content": "Two pages: two calls."},
        ),
        ToolMessage("Page 1: sales rose.", tool_call_id="c1"),
        ToolMessage("Error: the call was cut off.", tool_call_id="c2"),
        AIMessage("Page 1 says sales rose.", additional_kwargs={"reasoning_content": "ok"}),
        HumanMessage("And overall?"),
    ]


def chat(server: FakeEngine, name: str, **kwargs: Any) -> ChatK2:
    return ChatK2(
        endpoint_url=server.url,
        retry_backoff=0.0,
        timeout=10,
        max_new_tokens=8,
        max_tool_call_retries=0,  # one request per call: its input tokens are the prompt's
        prompt_format=name,
        **kwargs,
    )


@pytest.mark.parametrize("name", list(FORMATS))
def test_count_is_the_servers_input_tokens(any_engine: FakeEngine, name: str) -> None:
    served = any_engine
    # A tokenizer that adds a BOS (where the fake models one: vLLM, the llama.cpp servers).
    served.configure(max_input_tokens=20000, max_total_tokens=30000, bos_token="<s>")
    served.set_default(reply(tokens=tokens_of("ok")))
    llm = chat(served, name)
    cases: list[tuple[list[BaseMessage], Any, Any]] = [
        (history(), None, None),
        (history(), [read_page], None),
        (history(), [read_page], "read_page"),
        ([HumanMessage("Hi"), AIMessage("Hello!"), HumanMessage("Bye")], [read_page], "any"),
    ]
    for messages, tools, choice in cases:
        counted = llm.get_num_tokens_from_messages(messages, tools=tools, tool_choice=choice)
        model = llm if tools is None else llm.bind_tools(tools, tool_choice=choice)
        answer = model.invoke(messages)
        assert answer.usage_metadata is not None
        assert counted == answer.usage_metadata["input_tokens"], (name, tools, choice)
        assert answer.response_metadata["prompt_format"] == name
        assert answer.response_metadata["engine"] == served.engine  # probed, not named


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_slice_starting_with_a_tool_message(any_engine: FakeEngine, name: str) -> None:
    llm = chat(any_engine, name)
    sliced = history()[3:]
    counted = llm.get_num_tokens_from_messages(sliced, tools=[read_page])
    fmt = llm.format
    parts = render_parts(
        sliced,
        fmt=fmt,
        tools=normalize_tools([read_page]),
        settings=fmt.settings(),
    )
    assert counted == llm.get_num_tokens("".join(parts))
