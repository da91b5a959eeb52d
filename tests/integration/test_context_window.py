"""Exact token counts and a context window that never overflows, over the loopback server.

The server tokenizes with the same (test-built, K2-style) tokenizer that ChatK2 loads
through ``transformers``, so local counts, ``/tokenize`` counts and the server's
``input_length`` must agree exactly.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from langchain_k2 import ChatK2, ContextWindowExceededError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of

pytest.importorskip("transformers", reason="needs the [tokenizer] extra")
from tests.support.k2_tokenizer import build_k2_tokenizer

WINDOW = 1200
MAX_INPUT = 1100
MAX_NEW = 64


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_k2_tokenizer(tmp_path_factory.mktemp("k2tok"))


@pytest.fixture(scope="module")
def server(tokenizer_dir: Path) -> Iterator[FakeEngine]:
    config = {"max_total_tokens": WINDOW, "max_input_tokens": MAX_INPUT}
    with FakeEngine(tokenizer=tokenizer_dir / "tokenizer.json", config=config) as fake:
        yield fake


@pytest.fixture
def tgi(server: FakeEngine) -> FakeEngine:
    server.reset()
    server.configure(max_total_tokens=WINDOW, max_input_tokens=MAX_INPUT)
    return server


@tool
def read_page(page: int) -> str:
    """Read one page of a long report."""
    return f"Page {page}: " + " ".join(f"figure {page}.{i} rose by {i} percent" for i in range(12))


def call_turn(page: int) -> dict[str, Any]:
    payload = json.dumps([{"name": "read_page", "arguments": {"page": page}}])
    return reply(
        tokens=tokens_of(
            special("<tool_call>"), payload, special("</tool_call>"), special("<|endoftext|>")
        )
    )


def test_local_tokenize_and_server_counts_agree(tgi: FakeEngine, tokenizer_dir: Path) -> None:
    tgi.set_default(reply(tokens=tokens_of("ok", special("<|endoftext|>"))))
    local = ChatK2(
        endpoint_url=tgi.url,
        tokenizer=str(tokenizer_dir),
        retry_backoff=0.0,
        max_new_tokens=MAX_NEW,
    )
    remote = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    messages = [
        SystemMessage("You read reports."),
        HumanMessage("Summarise page 1."),
        AIMessage("", tool_calls=[{"name": "read_page", "args": {"page": 1}, "id": "c1"}]),
        ToolMessage(read_page.invoke({"page": 1}), tool_call_id="c1"),
    ]
    bound_local = local.bind_tools([read_page])
    tools = bound_local.kwargs["tools"]  # type: ignore[attr-defined]
    counted_local = local.get_num_tokens_from_messages(messages, tools=tools)
    counted_remote = remote.get_num_tokens_from_messages(messages, tools=tools)
    answer = bound_local.invoke(messages)
    assert answer.usage_metadata is not None
    assert counted_local == counted_remote == answer.usage_metadata["input_tokens"]


def agent_run(
    tgi: FakeEngine, tokenizer_dir: Path, *, trim: bool, turns: int = 32
) -> tuple[list[Any], list[int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent
    tgi.script(*[call_turn(page) for page in range(1, turns + 1)])
    tgi.script(reply(tokens=tokens_of("All pages read.", special("<|endoftext|>"))))
    llm = ChatK2(
        endpoint_url=tgi.url,
        max_new_tokens=MAX_NEW,
        trim_history=trim,
        tokenizer=str(tokenizer_dir),
        retry_backoff=0.0,
        system_prompt="You read long reports page by page.",
    )
    agent = create_react_agent(llm, [read_page])
    state = agent.invoke(
        {"messages": [HumanMessage("Read the whole report, page by page.")]},
        config={"recursion_limit": 2 * turns + 5},
    )
    counts = [
        int(m.usage_metadata["input_tokens"])
        for m in state["messages"]
        if isinstance(m, AIMessage) and m.usage_metadata
    ]
    return state["messages"], counts


def test_long_agent_run_completes_with_trimming(tgi: FakeEngine, tokenizer_dir: Path) -> None:
    messages, prompt_tokens = agent_run(tgi, tokenizer_dir, trim=True)
    tool_turns = sum(1 for m in messages if isinstance(m, ToolMessage))
    assert tool_turns == 32
    assert messages[-1].content == "All pages read."
    assert max(prompt_tokens) + MAX_NEW <= WINDOW
    assert max(prompt_tokens) <= MAX_INPUT
    # The untrimmed history would have grown far past the window.
    untrimmed = ChatK2(
        endpoint_url=tgi.url, tokenizer=str(tokenizer_dir)
    ).get_num_tokens_from_messages([HumanMessage("x"), *messages[1:]])
    assert untrimmed > WINDOW
    print(
        f"\n30+ tool turns with trim_history=True: {tool_turns} tool calls, prompt tokens "
        f"per model call {prompt_tokens[:3]}...{prompt_tokens[-3:]} (max {max(prompt_tokens)}, "
        f"window {WINDOW}, max_new_tokens {MAX_NEW}); untrimmed history: {untrimmed} tokens"
    )
    # Every prompt sent was accepted: no 422 from the server.
    assert all(r["status"] == 200 for r in tgi.requests() if r["path"] == "/")


def test_long_agent_run_without_trimming_fails_clearly(
    tgi: FakeEngine, tokenizer_dir: Path
) -> None:
    with pytest.raises(ContextWindowExceededError) as info:
        agent_run(tgi, tokenizer_dir, trim=False)
    error = info.value
    assert error.prompt_tokens + error.max_new_tokens > error.window
    assert "trim_history=True" in str(error)
    sent = [r for r in tgi.requests() if r["path"] == "/"]
    assert all(r["status"] == 200 for r in sent)
    print(
        f"\nwithout trim_history: stopped before request {len(sent) + 1} with "
        f"ContextWindowExceededError: {error}"
    )


# --------------------------------------------------------------------------- repairs near the edge

BROKEN = '[{"name": "read_page", "arguments": {"page": }}]'
PREAMBLE = ["Let", " me", " read", " the", " page", " first", "."]


def broken_call_turn() -> dict[str, Any]:
    return reply(
        tokens=tokens_of(
            *PREAMBLE,
            special("<tool_call>"),
            BROKEN,
            special("</tool_call>"),
            special("<|endoftext|>"),
        )
    )


def edge_model(tgi: FakeEngine, *, input_room: int) -> tuple[ChatK2, list[HumanMessage], int]:
    """A model whose first request fits the server's window exactly.

    The server is set to ``max_total_tokens = prompt + MAX_NEW`` and ``max_input_tokens =
    prompt + input_room``; returns the model (tools bound), the messages and the window.
    """
    messages = [HumanMessage("Summarize the report. " + "Figures rose. " * 40)]
    probe = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0)
    prompt_tokens = probe.get_num_tokens_from_messages(messages, tools=[read_page])
    window = prompt_tokens + MAX_NEW
    tgi.configure(max_total_tokens=window, max_input_tokens=prompt_tokens + input_room)
    llm = ChatK2(endpoint_url=tgi.url, retry_backoff=0.0, max_retries=0, max_new_tokens=MAX_NEW)
    return llm, messages, window


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_repair_near_the_window_asks_for_what_is_left(tgi: FakeEngine, mode: str) -> None:
    llm, messages, window = edge_model(tgi, input_room=MAX_NEW - 1)
    tgi.script(
        broken_call_turn(),
        reply(
            tokens=tokens_of(
                '{"name": "read_page", "arguments": {"page": 3}}', special("<|endoftext|>")
            )
        ),
    )
    bound = llm.bind_tools([read_page])
    message = bound.invoke(messages) if mode == "invoke" else await bound.ainvoke(messages)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("read_page", {"page": 3})]
    assert message.response_metadata["tool_call_retries"] == 1
    first, repair = [r for r in tgi.requests() if r["path"] == "/"]
    assert first["status"] == repair["status"] == 200
    assert first["body"]["parameters"]["max_new_tokens"] == MAX_NEW
    repair_tokens = llm.get_num_tokens(repair["body"]["inputs"])
    assert repair["body"]["inputs"] == first["body"]["inputs"] + "".join(PREAMBLE) + "<tool_call>"
    # MAX_NEW would overflow the window (TGI answers 422); what the prompt leaves is asked.
    assert repair["body"]["parameters"]["max_new_tokens"] == window - repair_tokens < MAX_NEW


@pytest.mark.parametrize("mode", ["invoke", "astream"])
async def test_a_repair_with_no_room_keeps_the_call_invalid(tgi: FakeEngine, mode: str) -> None:
    llm, messages, window = edge_model(tgi, input_room=2)
    tgi.script(broken_call_turn())
    bound = llm.bind_tools([read_page])
    if mode == "invoke":
        message: Any = bound.invoke(messages)
    else:
        message = None
        async for chunk in bound.astream(messages):
            message = chunk if message is None else message + chunk
    assert message.content == "".join(PREAMBLE)
    assert message.tool_calls == []
    (invalid,) = message.invalid_tool_calls
    assert invalid["args"] == "<tool_call>" + BROKEN + "</tool_call>"
    assert message.response_metadata["tool_call_retries"] == 0
    skipped = message.response_metadata["tool_call_repair_skipped"]
    assert skipped.startswith("the repair prompt takes ")
    assert f"context window ({window} tokens" in skipped
    assert len([r for r in tgi.requests() if r["path"] == "/"]) == 1  # no request TGI refuses
