"""Items a hidden QA run found (issue 23, item 5), each with the way it failed.

- ``bind(tools=[a @tool])`` crashed with an internal ``AttributeError``: the tools are
  converted as ``bind_tools`` converts them (or refused, naming what was passed).
- ``SummarizationMiddleware(trigger=("fraction", 0.8))`` refused ChatK2 until a first call
  had told the window: ``profile`` now asks the engine once when a limit is read.
- A recursive pydantic model lost its nested ``Literal`` to langchain-core's inlining
  (``items: {}``), so a nested violation was a valid call: the schema is kept whole.
- ``create_agent(response_format=ToolStrategy(Model))`` with a structured call that stays
  invalid: the agent retries it with the error (``handle_errors``) or raises it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_k2 import ChatK2, K2ConfigError
from langchain_k2._tool_binding import normalize_tools
from langchain_k2._tool_calls import parse_block
from langchain_k2.backends._base import BackendInfo
from tests.support.scripted_backend import ScriptedBackend

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support.fake_engine import FakeEngine, reply  # noqa: E402


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def make(**kwargs: Any) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    kwargs.setdefault("retry_backoff", 0.0)
    return ChatK2(backend=backend, **kwargs), backend


# ------------------------------------------------------------------------------ bind(tools=...)


@pytest.mark.parametrize("how", ["bind", "per-call"])
def test_tools_given_to_bind_are_converted_like_bind_tools_does(how: str) -> None:
    llm, backend = make()
    call = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
    backend.script([call], [call])
    if how == "bind":
        message = llm.bind(tools=[add]).invoke("2+3?")
    else:
        message = llm.invoke("2+3?", tools=[add])
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 2, "b": 3})]
    prompt = backend.requests[0][0]
    reference = llm.bind_tools([add]).invoke("2+3?")
    assert backend.requests[1][0] == prompt  # the same system prompt as bind_tools writes
    assert reference.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert '"name": "add"' in prompt


def test_bind_checks_tools_and_options_when_they_are_bound() -> None:
    llm, _ = make()
    with pytest.raises(K2ConfigError, match="is not a list of tools"):
        llm.bind(tools=add)
    bound = llm.bind(tools=[add], tool_choice="add")
    (function,) = bound.kwargs["tools"]  # type: ignore[attr-defined]
    assert function["function"]["name"] == "add"


# ------------------------------------------------------------------------------ profile, lazily


def test_summarization_middleware_with_a_fraction_asks_the_engine_for_its_window() -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    llm, backend = make(max_new_tokens=64)
    backend.info_value = BackendInfo(
        max_stop_sequences=4, max_input_tokens=1999, max_total_tokens=2000
    )
    middleware = SummarizationMiddleware(model=llm, trigger=("fraction", 0.5), keep=("messages", 2))
    assert llm.profile is not None
    assert (llm.profile["max_input_tokens"], llm.profile["max_output_tokens"]) == (1999, 2000)
    assert backend.requests == []  # only the engine's limits were asked, no generation
    history: list[Any] = []
    for turn in range(30):
        history += [HumanMessage(f"Question {turn} " + "word " * 40), AIMessage(f"Answer {turn}")]
    backend.script(["A summary of the early turns."])
    update = middleware.before_model({"messages": history}, runtime=None)  # type: ignore[arg-type]
    assert update is not None
    assert any("A summary of the early turns." in str(m.content) for m in update["messages"])


@pytest.fixture(scope="module")
def tgi_server() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


@pytest.fixture
def tgi(tgi_server: FakeEngine) -> FakeEngine:
    tgi_server.reset()
    return tgi_server


def test_the_profile_asks_a_real_servers_info_once(
    tgi: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    monkeypatch.delenv("HF_TOKEN", raising=False)
    llm = ChatK2(endpoint_url=tgi.url, engine="tgi", retry_backoff=0.0)
    SummarizationMiddleware(model=llm, trigger=("fraction", 0.8))
    SummarizationMiddleware(model=llm, trigger=("fraction", 0.8))
    assert llm.profile is not None
    assert llm.profile["max_input_tokens"] == 1024  # the fake TGI's --max-input-tokens
    assert [r["path"] for r in tgi.requests()] == ["/info"]
    tgi.script(reply("ok"))
    assert llm.invoke("q").content == "ok"
    assert [r["path"] for r in tgi.requests()].count("/info") == 1


def test_an_unreachable_engine_leaves_the_limits_unknown_and_asks_again() -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    llm = ChatK2(endpoint_url="http://127.0.0.1:9", engine="tgi", max_retries=0, timeout=5)
    assert llm.profile is not None
    with pytest.raises(ValueError, match="Model profile information is required"):
        SummarizationMiddleware(model=llm, trigger=("fraction", 0.8))
    assert llm.profile["tool_calling"] is True  # the static capabilities stay
    assert llm.profile.get("max_input_tokens") is None


def test_a_given_context_window_needs_no_request() -> None:
    llm = ChatK2(endpoint_url="http://127.0.0.1:9", engine="tgi", context_window=4096)
    assert llm.profile is not None
    assert llm.profile["max_input_tokens"] == 4096


# ------------------------------------------------------------------------------ nested Literal


class Node(BaseModel):
    """A tree node."""

    kind: Literal["leaf", "branch"]
    children: list[Node] = []


class Tree(BaseModel):
    """A tree to plant."""

    root: Node


@tool
def plant(tree: Node) -> str:
    """Plant a tree."""
    return "planted"


@pytest.mark.parametrize(
    ("tool_like", "name", "key"), [(Tree, "Tree", "root"), (plant, "plant", "tree")]
)
def test_a_nested_literal_in_a_recursive_model_is_validated(
    tool_like: Any, name: str, key: str
) -> None:
    tools = normalize_tools([tool_like])
    deep_bad = {key: {"kind": "leaf", "children": [{"kind": "mars"}]}}
    good = {key: {"kind": "branch", "children": [{"kind": "leaf"}]}}

    def block(args: dict[str, Any]) -> str:
        return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"

    bad = parse_block(block(deep_bad), tools)
    assert bad.tool_calls == []
    assert "'mars' is not one of ['leaf', 'branch']" in (bad.invalid_tool_calls[0]["error"] or "")
    assert parse_block(block(good), tools).tool_calls[0]["args"] == good


def test_a_recursive_model_bound_as_a_tool_round_trips_through_a_turn() -> None:
    llm, backend = make(max_tool_call_retries=1)
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    bad = '{"name": "plant", "arguments": {"tree": {"kind": "leaf", "children": [{"kind": "x"}]}}}'
    good = '{"name": "plant", "arguments": {"tree": {"kind": "leaf", "children": []}}}'
    backend.script(["<tool_call>" + bad + "</tool_call>"], [good])
    message = llm.bind_tools([plant]).invoke("plant one")
    assert message.tool_calls[0]["args"] == {"tree": {"kind": "leaf", "children": []}}
    assert message.response_metadata["tool_call_retries"] == 1
    grammar = backend.requests[1][1].grammar
    assert grammar is not None
    assert "Node" in json.dumps(grammar.value)  # the repair grammar keeps the recursion
