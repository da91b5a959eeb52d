"""Agent loops on each newer K2 family (issue 21 item 7), over the loopback fake vLLM.

LangGraph's ReAct agent and LangChain's ``create_agent`` drive ChatK2 with K2-V2-Instruct,
K2-Think-V2 and K2-V3 formats against a scripted engine that answers in the family's own
output: reasoning closed by the effort's tag, then the family's call form. The loop must
reach the right answer, run only the call made after the thought (a call drafted inside
the thought never runs), and keep the reasoning out of the call arguments and the answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from langchain_k2 import ChatK2
from tests.integration.test_agents import langchain_agent, langgraph_agent, run_agent
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply


def v2_call(city: str) -> str:
    payload = json.dumps({"name": "get_weather", "arguments": {"city": city}})
    return f"<tool_call>\n{payload}\n</tool_call>"


def v3_call(city: str) -> str:
    return (
        "<ifm|tool_calls>\n<ifm|tool_call>get_weather\n<ifm|arg_key>city</ifm|arg_key>\n"
        f"<ifm|arg_value>{city}</ifm|arg_value>\n</ifm|tool_call>\n</ifm|tool_calls>"
    )


# family: (close tag of its default effort, its call form)
FAMILIES = {
    "k2-v2": ("</think_fast>", v2_call),
    "k2-think-v2": ("</think>", v2_call),
    "k2-v3": ("</ifm|think>", v3_call),
}
THOUGHT = "Maybe Oslo? {draft} No: the user asked about Paris."
ANSWER = "Paris is 18C and sunny."


@pytest.fixture
def vllm(fake_vllm_server: FakeEngine) -> FakeEngine:
    fake_vllm_server.reset()
    return fake_vllm_server


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("factory", [langgraph_agent, langchain_agent])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_agent_reaches_the_answer_with_reasoning_kept_apart(
    vllm: FakeEngine, family: str, factory: Any, streamed: bool
) -> None:
    close, call = FAMILIES[family]
    vllm.script(
        reply(text=THOUGHT.format(draft=call("Oslo")) + close + "Checking." + call("Paris")),
        reply(text="The tool says 18C and sunny." + close + ANSWER),
    )
    llm = ChatK2(
        endpoint_url=vllm.url,
        engine="vllm",
        prompt_format=family,
        temperature=0,
        retry_backoff=0.0,
        timeout=10,
    )
    messages = run_agent(factory(llm), "Weather in Paris?", streamed=streamed)

    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert final.content == ANSWER
    assert final.additional_kwargs["reasoning_content"] == "The tool says 18C and sunny."
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [(m.name, m.content) for m in tool_messages] == [("get_weather", "18C, sunny")]
    first = next(m for m in messages if isinstance(m, AIMessage))
    # Only the call after the thought ran; the drafted one stayed in the reasoning.
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert first.invalid_tool_calls == []
    assert call("Oslo") in first.additional_kwargs["reasoning_content"]
    assert first.content == "Checking."
    # The engine got the tool result in the family's prompt, and the final answer came back.
    prompts = [
        r["body"]["prompt"] for r in vllm.requests("/v1/completions") if r["method"] == "POST"
    ]
    assert len(prompts) == 2
    assert "18C, sunny" in prompts[1]
    assert "18C, sunny" not in prompts[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_invoke_counts_the_reasoning_tokens_as_the_stream_does(
    vllm: FakeEngine, family: str
) -> None:
    # A non-streamed answer arrives as one event holding every token: the reasoning's count
    # is its share of the answer, not one token (the stream counts it token by token).
    close, _ = FAMILIES[family]
    text = "Let me think about the weather in Paris for a while." + close + ANSWER
    vllm.script(reply(text=text), reply(text=text))
    llm = ChatK2(endpoint_url=vllm.url, engine="vllm", prompt_format=family, retry_backoff=0.0)
    invoked = llm.invoke("Weather in Paris?")
    chunks = list(llm.stream("Weather in Paris?"))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert invoked.usage_metadata is not None
    assert streamed.usage_metadata is not None
    assert invoked.usage_metadata["output_tokens"] == streamed.usage_metadata["output_tokens"]
    exact = streamed.usage_metadata["output_token_details"]["reasoning"]
    estimated = invoked.usage_metadata["output_token_details"]["reasoning"]
    assert exact > 5
    assert abs(estimated - exact) <= max(3, exact // 4)  # the share of characters, near
