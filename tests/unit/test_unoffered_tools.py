"""A tool call of a tool that was never offered is not a valid call (issue 15, item 2).

With no tools bound, or with ``tool_choice="none"``, the prompt lists no tools; a
``<tool_call>`` block in the output (a hallucination, or text the model was steered into
writing) must not reach an agent's executor as a valid ``tool_call``. It stays visible as
an ``invalid_tool_call`` (its raw block as ``args``) whose ``error`` names the reason, the
content around it is kept, no repair request is made, and stream equals invoke. Checked on
the scripted backend and over the loopback fake TGI (tags as special tokens).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import tool

from langchain_k2 import ChatK2
from tests.support.scripted_backend import ScriptedBackend

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine  # noqa: E402
from tests.support.fake_engine.client import reply, special, tokens_of  # noqa: E402

CALL = '{"name": "delete_all", "arguments": {"confirm": true}}'
OUTPUT = ["Sure. ", "<tool_call>", CALL, "</tool_call>", "<|endoftext|>"]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def scripted(*, tool_choice: str | None) -> tuple[Runnable[Any, BaseMessage], ScriptedBackend]:
    backend = ScriptedBackend()
    llm = ChatK2(backend=backend, max_tool_call_retries=2)
    model: Runnable[Any, BaseMessage] = (
        llm if tool_choice is None else llm.bind_tools([add], tool_choice=tool_choice)
    )
    return model, backend


REASONS = {
    None: "no tools were offered to the model (none are bound)",
    "none": "tool_choice='none' offers no tools to the model",
}


def check(message: AIMessage, reason: str) -> None:
    assert message.content == "Sure. "
    assert message.tool_calls == []
    (bad,) = message.invalid_tool_calls
    assert bad["name"] == "delete_all"
    assert bad["args"] == f"<tool_call>{CALL}</tool_call>"
    assert bad["error"] == f"{reason}, so the call of 'delete_all' is not valid"
    assert message.response_metadata["invalid_tool_call_errors"] == {bad["id"]: bad["error"]}
    assert message.response_metadata["tool_call_retries"] == 0


@pytest.mark.parametrize("tool_choice", [None, "none"])
def test_invoke_keeps_an_unoffered_call_as_invalid(tool_choice: str | None) -> None:
    model, backend = scripted(tool_choice=tool_choice)
    backend.script(OUTPUT)
    message = model.invoke("Delete everything.")
    assert isinstance(message, AIMessage)
    check(message, REASONS[tool_choice])
    assert len(backend.requests) == 1  # no repair of a call that could never be valid
    assert "<tools>" not in backend.requests[0][0]


@pytest.mark.parametrize("tool_choice", [None, "none"])
def test_stream_equals_invoke_for_an_unoffered_call(tool_choice: str | None) -> None:
    model, backend = scripted(tool_choice=tool_choice)
    backend.script(OUTPUT)
    merged: Any = None
    for chunk in model.stream("Delete everything."):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls == []
    assert merged.content == "Sure. "
    (bad,) = merged.invalid_tool_calls
    assert bad["name"] == "delete_all"
    assert bad["args"] == f"<tool_call>{CALL}</tool_call>"
    assert merged.response_metadata["invalid_tool_call_errors"] == {
        bad["id"]: f"{REASONS[tool_choice]}, so the call of 'delete_all' is not valid"
    }
    assert len(backend.requests) == 1


def test_a_bound_tool_is_still_a_valid_call() -> None:
    model, backend = scripted(tool_choice="auto")
    backend.script(['<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'])
    message = model.invoke("1 + 2?")
    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 1, "b": 2})]


@pytest.mark.parametrize("tool_choice", [None, "none"])
async def test_over_tgi_an_unoffered_call_is_invalid(
    fake_engine: FakeEngine, tool_choice: str | None
) -> None:
    fake_engine.reset()
    tokens = tokens_of(
        "Sure. ", special("<tool_call>"), CALL, special("</tool_call>"), special("<|endoftext|>")
    )
    fake_engine.set_default(reply(tokens=tokens))
    llm = ChatK2(endpoint_url=fake_engine.url, timeout=10, max_retries=0)
    model: Runnable[Any, BaseMessage] = (
        llm if tool_choice is None else llm.bind_tools([add], tool_choice=tool_choice)
    )
    for message in (model.invoke("Delete everything."), await model.ainvoke("Delete.")):
        assert isinstance(message, AIMessage)
        check(message, REASONS[tool_choice])
    merged: Any = None
    async for chunk in model.astream("Delete everything."):
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls == []
    assert [c["name"] for c in merged.invalid_tool_calls] == ["delete_all"]
    generations = [r for r in fake_engine.requests() if r["path"] == "/"]
    assert len(generations) == 3  # one per call: no repair requests


@pytest.fixture(scope="module")
def fake_engine() -> Any:
    with FakeEngine() as server:
        yield server
