"""Real agent loops (LangGraph's ReAct agent, LangChain's create_agent) and LCEL chains
driving ChatK2 over the loopback TGI server, with every prompt on the wire asserted.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return {"Paris": "18C, sunny", "Oslo": "3C, snow"}[city]


@tool
def get_population(city: str) -> int:
    """Population of a city."""
    return {"Paris": 2_100_000, "Oslo": 700_000}[city]


@tool
def flaky(x: int) -> int:
    """A tool that always fails."""
    raise ValueError(f"flaky cannot handle {x}")


TOOLS = [get_weather, get_population, flaky]


def calls(*pairs: tuple[str, dict[str, Any]]) -> str:
    return json.dumps([{"name": n, "arguments": a} for n, a in pairs])


def call_turn(text: str, payload: str) -> dict[str, Any]:
    return reply(
        tokens=tokens_of(
            text, special("<tool_call>"), payload, special("</tool_call>"), special("<|endoftext|>")
        )
    )


def answer(text: str) -> dict[str, Any]:
    return reply(tokens=tokens_of(text, special("<|endoftext|>")))


def script_three_turns(tgi: FakeEngine) -> None:
    tgi.script(
        # Turn 1: two calls in parallel, in one block (K2's list form).
        call_turn(
            "Looking up both.",
            calls(("get_weather", {"city": "Paris"}), ("get_population", {"city": "Paris"})),
        ),
        # Turn 2: a call of a tool that raises.
        call_turn("", calls(("flaky", {"x": 1}))),
        # Turn 3: the final answer.
        answer("Paris: 18C and sunny, 2.1 million people."),
    )


def prompts(tgi: FakeEngine) -> list[str]:
    return [r["body"]["inputs"] for r in tgi.requests() if r["path"] == "/"]


def assert_three_turn_prompts(sent: list[str]) -> None:
    assert len(sent) == 3
    first, second, third = sent
    assert first.endswith("<|beginofuser|>Weather and population of Paris?<|beginofsystem|>")
    # Each prompt is a byte-prefix of the next (TGI can reuse its prefix cache).
    assert second.startswith(first)
    assert third.startswith(second)
    turn1 = (
        "Looking up both.<tool_call>"
        + calls(("get_weather", {"city": "Paris"}), ("get_population", {"city": "Paris"}))
        + "</tool_call><|endoftext|>"
    )
    assert second == (
        first
        + turn1
        + "<tool_response>18C, sunny</tool_response><tool_response>2100000</tool_response>"
    )
    assert third.startswith(second + "<tool_call>" + calls(("flaky", {"x": 1})))
    error_response = third.split("<tool_response>")[-1]
    assert "flaky cannot handle 1" in error_response
    assert third.endswith("</tool_response>")


def langgraph_agent(llm: ChatK2) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import ToolNode, create_react_agent

        return create_react_agent(llm, ToolNode(TOOLS, handle_tool_errors=True))


def langchain_agent(llm: ChatK2) -> Any:
    from langchain.agents import create_agent
    from langchain.agents.middleware import ToolCallRequest
    from langchain.agents.middleware.types import wrap_tool_call

    @wrap_tool_call
    def errors_to_messages(request: ToolCallRequest, handler: Any) -> Any:
        try:
            return handler(request)
        except ValueError as exc:
            call = request.tool_call
            return ToolMessage(
                f"Error: {exc}", tool_call_id=call["id"], name=call["name"], status="error"
            )

    return create_agent(llm, TOOLS, middleware=[errors_to_messages])


@pytest.mark.parametrize("factory", [langgraph_agent, langchain_agent])
def test_agent_loop_with_parallel_calls_and_a_failing_tool(tgi: FakeEngine, factory: Any) -> None:
    script_three_turns(tgi)
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0)
    agent = factory(llm)
    state = agent.invoke({"messages": [HumanMessage("Weather and population of Paris?")]})
    messages = state["messages"]
    assert messages[-1].content == "Paris: 18C and sunny, 2.1 million people."
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_messages] == ["get_weather", "get_population", "flaky"]
    assert tool_messages[2].status == "error"
    ai_turns = [m for m in messages if isinstance(m, AIMessage)]
    assert [len(m.tool_calls) for m in ai_turns] == [2, 1, 0]
    assert all(m.usage_metadata for m in ai_turns)
    assert_three_turn_prompts(prompts(tgi))


async def test_langgraph_agent_async_streaming(tgi: FakeEngine) -> None:
    script_three_turns(tgi)
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0)
    agent = langgraph_agent(llm)
    tokens: list[str] = []
    async for message, _meta in agent.astream(
        {"messages": [HumanMessage("Weather and population of Paris?")]}, stream_mode="messages"
    ):
        if isinstance(message, AIMessage) and isinstance(message.content, str):
            tokens.append(message.content)
    assert "".join(tokens).endswith("Paris: 18C and sunny, 2.1 million people.")
    assert_three_turn_prompts(prompts(tgi))


def lcel_chain(tgi: FakeEngine) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You look up cities."), ("human", "{question}")]
    )
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0)
    parser = JsonOutputKeyToolsParser(key_name="get_weather", first_tool_only=True)
    return prompt | llm.bind_tools(TOOLS) | parser


def test_lcel_chain_sync_and_streamed(tgi: FakeEngine) -> None:
    payload = calls(("get_weather", {"city": "Oslo"}))
    tgi.set_default(call_turn("", payload))
    chain = lcel_chain(tgi)
    assert chain.invoke({"question": "Oslo weather?"}) == {"city": "Oslo"}
    streamed = list(chain.stream({"question": "Oslo weather?"}))
    assert streamed[-1] == {"city": "Oslo"}
    sent = prompts(tgi)
    assert sent[0] == sent[1]
    assert "You look up cities.<|endofsystemprompt|>" in sent[0]


async def test_lcel_chain_async_and_streamed(tgi: FakeEngine) -> None:
    payload = calls(("get_weather", {"city": "Oslo"}))
    tgi.set_default(call_turn("", payload))
    chain = lcel_chain(tgi)
    assert await chain.ainvoke({"question": "Oslo weather?"}) == {"city": "Oslo"}
    streamed = [part async for part in chain.astream({"question": "Oslo weather?"})]
    assert streamed[-1] == {"city": "Oslo"}
    assert (await chain.abatch([{"question": "a"}, {"question": "b"}])) == [{"city": "Oslo"}] * 2


def script_bad_then_good_arguments(tgi: FakeEngine) -> None:
    """Bad arguments (and a repair that repeats them), then good ones, then the answer."""
    bad = json.dumps({"name": "get_weather", "arguments": {"town": "Oslo"}})
    tgi.script(
        call_turn("Checking.", bad),
        # The repair request's prompt already ends with the open tag.
        reply(tokens=tokens_of(bad, special("</tool_call>"), special("<|endoftext|>"))),
        call_turn("", calls(("get_weather", {"city": "Oslo"}))),
        answer("Oslo: 3C, snow."),
    )


def run_agent(agent: Any, question: str, *, streamed: bool) -> list[Any]:
    inputs = {"messages": [HumanMessage(question)]}
    if not streamed:
        return list(agent.invoke(inputs)["messages"])
    state: dict[str, Any] = {}
    for mode, part in agent.stream(inputs, stream_mode=["messages", "values"]):
        if mode == "values":
            state = part
    return list(state["messages"])


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("factory", [langgraph_agent, langchain_agent])
def test_agent_recovers_from_arguments_that_fail_the_schema(
    tgi: FakeEngine, factory: Any, streamed: bool
) -> None:
    """Issue 15 item 8: once repairs run out, a parsed call of a bound tool whose arguments
    fail the schema reaches ToolNode, which answers with the validation error; the model
    corrects itself instead of the agent stopping with an empty answer."""
    script_bad_then_good_arguments(tgi)
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0, max_tool_call_retries=1)
    messages = run_agent(factory(llm), "Weather in Oslo?", streamed=streamed)
    assert messages[-1].content == "Oslo: 3C, snow."
    first = messages[1]
    assert isinstance(first, AIMessage)
    assert first.invalid_tool_calls == []
    [bad_call] = first.tool_calls
    assert (bad_call["name"], bad_call["args"]) == ("get_weather", {"town": "Oslo"})
    schema_error = first.response_metadata["tool_call_schema_errors"][bad_call["id"]]
    assert "'city' is a required property" in schema_error
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.status for m in tool_messages] == ["error", "success"]
    assert tool_messages[0].tool_call_id == bad_call["id"]
    assert "city" in str(tool_messages[0].content)
    assert tool_messages[1].content == "3C, snow"
    sent = prompts(tgi)
    assert len(sent) == 4  # first turn, its repair, the corrected call, the answer
    assert sent[1].endswith("Checking.<tool_call>")
    # The model saw the validation error before it corrected itself.
    third = sent[2].split("<tool_response>")[-1]
    assert "city" in third
    assert "Field required" in third


def test_create_agent_provider_strategy_uses_the_json_schema_grammar(tgi: FakeEngine) -> None:
    """Issue 15 item 6: ProviderStrategy binds response_format through bind_tools; it
    becomes the JSON-schema grammar, and the agent returns the structured response."""
    from langchain.agents import create_agent
    from langchain.agents.structured_output import ProviderStrategy
    from pydantic import BaseModel

    class Weather(BaseModel):
        """Weather report."""

        city: str
        celsius: int

    tgi.script(answer('{"city": "Oslo", "celsius": 3}'))
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0)
    agent = create_agent(llm, tools=[], response_format=ProviderStrategy(Weather))
    state = agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    assert state["structured_response"] == Weather(city="Oslo", celsius=3)
    [request] = [r["body"] for r in tgi.requests() if r["path"] == "/"]
    grammar = request["parameters"]["grammar"]
    assert grammar["type"] == "json"
    assert grammar["value"]["required"] == ["city", "celsius"]
    assert "Respond with a single JSON object and nothing else." in request["inputs"]


def test_create_agent_tool_strategy_retries_arguments_that_fail_the_schema(tgi: FakeEngine) -> None:
    """Issue 15 item 8: ToolStrategy sees the bad call (not an invalid one), answers it with
    the validation error, and returns the structured response of the corrected call."""
    from langchain.agents import create_agent
    from langchain.agents.structured_output import ToolStrategy
    from pydantic import BaseModel

    class Weather(BaseModel):
        """Weather report."""

        city: str
        celsius: int

    def forced(arguments: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps({"name": "Weather", "arguments": arguments})
        return reply(tokens=tokens_of(payload, special("</tool_call>"), special("<|endoftext|>")))

    tgi.script(forced({"city": "Oslo"}), forced({"city": "Oslo", "celsius": 3}))
    llm = ChatK2(endpoint_url=tgi.url, temperature=0, retry_backoff=0.0, max_tool_call_retries=0)
    agent = create_agent(llm, tools=[], response_format=ToolStrategy(Weather))
    state = agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    assert state["structured_response"] == Weather(city="Oslo", celsius=3)
    sent = prompts(tgi)
    assert len(sent) == 2
    assert "celsius" in sent[1].split("<tool_response>")[-1]
