"""Checks shared by the real-server test files: the same behaviour, asked of each server.

In: a `ChatK2` pointed at a real server (`real_servers.py`: the SmolLM2 stand-in, ChatML
markers, greedy decoding) and, for checks on what was sent, the ``(path, JSON body)`` list
the ``sent`` fixture collects (`recording.py`). Out: assertions, and the values a test goes
on to check against its engine's own request fields (the invoked message, the error text).

Used by ``test_real_llama_server.py`` and ``test_real_vllm.py``; what differs between the
engines (request fields, setting names, the server's own words) stays in those files.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from pydantic import BaseModel
from typing_extensions import TypedDict

from langchain_k2 import ChatK2, ContextWindowExceededError, K2Format, K2StreamInterruptedError
from langchain_k2.demo import SYSTEM, TOOLS, _force_on_user_turn, calculator
from tests.support.real_servers import CONTEXT, SERVED_NAME, RealServer
from tests.support.recording import Sent, bodies_to


def real_chat(server: RealServer, defaults: dict[str, Any], /, **kwargs: Any) -> ChatK2:
    """A greedy ChatK2 on ``server`` with the stand-in's ChatML markers.

    ``defaults`` holds the test file's own (``engine``, ``timeout``); ``kwargs`` win.
    """
    options: dict[str, Any] = {
        "endpoint_url": server.url,
        "model_name": SERVED_NAME,
        "prompt_format": K2Format.chatml(),
        "temperature": 0,
        "max_new_tokens": 24,
    }
    return ChatK2(**{**options, **defaults, **kwargs})


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


# --------------------------------------------------------------------------- basics


def check_invoke_stream_and_batch(llm: ChatK2, engine: str) -> AIMessage:
    """Invoke, stream and batch agree, with usage; returns the invoked message."""
    message = llm.invoke("Name a color.")
    assert message.response_metadata["engine"] == engine
    assert isinstance(message.content, str)
    assert message.content.strip()
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 10
    assert 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    streamed = merged(list(llm.stream("Name a color.")))
    assert streamed.content == message.content
    assert streamed.usage_metadata == usage

    batch = llm.batch(["Name a color.", "Name an animal."])
    assert batch[0].content == message.content
    assert batch[1].content == llm.invoke("Name an animal.").content
    return message


async def check_async_twins(llm: ChatK2) -> None:
    """Ainvoke, astream and concurrent ainvokes agree with each other and with invoke."""
    message = await llm.ainvoke("Name a fruit.")
    chunks = [chunk async for chunk in llm.astream("Name a fruit.")]
    assert merged(chunks).content == message.content
    assert merged(chunks).usage_metadata == message.usage_metadata
    both = await asyncio.gather(llm.ainvoke("Name a fruit."), llm.ainvoke("Name a fruit."))
    assert [m.content for m in both] == [message.content, message.content]
    assert message.content == llm.invoke("Name a fruit.").content


def check_window_refusal(llm: ChatK2, sent: Sent, route: str, setting: str) -> str:
    """The window is read from the server, and an over-long prompt refused before sending.

    Returns the error's text (it names ``setting``, the server's own option).
    """
    llm.invoke("Hi")
    assert llm._get_backend().info().max_total_tokens == CONTEXT
    sent.clear()
    with pytest.raises(ContextWindowExceededError) as caught:
        llm.invoke("word " * 2100)
    text = str(caught.value)
    assert f"context window of {CONTEXT}" in text
    assert setting in text
    assert bodies_to(sent, route) == []  # refused before sending: /tokenize counted it
    assert [path for path, _ in sent] == ["/tokenize"]
    return text


def check_stop_strings(llm: ChatK2) -> None:
    """A stop string ends the text before it, invoked and streamed."""
    prompt = "Count from one to ten in words, separated by commas."
    whole = llm.invoke(prompt).content
    assert isinstance(whole, str)
    words = re.findall(r"[A-Za-z]+", whole)
    assert len(words) >= 3, whole
    stop = words[2]
    cut = whole[: whole.index(stop)]
    stopped = llm.invoke(prompt, stop=[stop])
    assert stopped.content == cut
    assert merged(list(llm.stream(prompt, stop=[stop]))).content == cut


# --------------------------------------------------------------------------- tools


def check_forced_calculator_call(llm: ChatK2) -> AIMessage:
    """A forced calculator call comes back valid, with no schema errors or fallback."""
    message = llm.bind_tools([calculator], tool_choice="calculator").invoke("What is 17 * 23?")
    assert message.invalid_tool_calls == []
    assert [call["name"] for call in message.tool_calls] == ["calculator"]
    calculator.args_schema.model_validate(message.tool_calls[0]["args"])  # type: ignore[union-attr]
    assert "tool_call_schema_errors" not in message.response_metadata
    assert "grammar_fallback" not in message.response_metadata
    return message


def check_nothing_lost(message: AIMessage) -> None:
    """Whatever the model wrote is accounted for: valid calls, or invalid ones with the raw
    text and the error, or plain text."""
    for call in message.tool_calls:
        assert call["name"] == "calculator"
        calculator.args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    for bad in message.invalid_tool_calls:
        assert bad["error"]
        assert bad["args"] is not None
    assert message.tool_calls or message.invalid_tool_calls or str(message.content).strip()


def check_demo_agent(llm: ChatK2) -> None:
    """The demo's agent calls the calculator, gets 391 and answers after it."""
    from langchain.agents import create_agent

    agent = create_agent(llm, tools=TOOLS, system_prompt=SYSTEM, middleware=[_force_on_user_turn()])
    result = agent.invoke(
        {"messages": [HumanMessage("What is 17 * 23?")]}, config={"recursion_limit": 9}
    )
    messages: list[BaseMessage] = result["messages"]
    calls = [call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]
    assert calls[0]["name"] == "calculator"
    assert calls[0]["args"] == {"a": 17, "op": "*", "b": 23}
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results[0].content == "391"
    final = messages[-1]
    assert messages.index(results[0]) < len(messages) - 1
    assert isinstance(final, AIMessage)
    assert final.tool_calls == []
    assert str(final.content).strip()


# --------------------------------------------------------------------------- structured output


class Answer(BaseModel):
    number: int


class AnswerDict(TypedDict):
    number: int


ANSWER_SCHEMA = {
    "title": "answer",
    "type": "object",
    "properties": {"number": {"type": "integer"}},
    "required": ["number"],
}

SCHEMAS = [Answer, AnswerDict, ANSWER_SCHEMA]
"""The same answer as pydantic model, TypedDict and JSON schema."""


def check_structured_answer(llm: ChatK2, schema: Any) -> None:
    """``with_structured_output(schema)`` parses an integer, with no fallback or retry."""
    result = llm.with_structured_output(schema, include_raw=True).invoke("What is 2 + 3?")
    assert result["parsing_error"] is None
    parsed = result["parsed"]
    number = parsed.number if isinstance(parsed, Answer) else parsed["number"]
    assert isinstance(number, int)
    raw = result["raw"]
    assert "grammar_fallback" not in raw.response_metadata
    assert raw.response_metadata.get("structured_output_retries", 0) == 0


def check_json_mode(llm: ChatK2) -> None:
    """JSON mode parses one JSON object."""
    result = llm.with_structured_output(method="json_mode", include_raw=True).invoke(
        "Give a JSON object with a key 'color'."
    )
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], dict)


# --------------------------------------------------------------------------- failure


def check_killed_mid_stream(llm: ChatK2, server: RealServer) -> None:
    """``llm`` streams until ``server`` is killed: what was received is kept in the error."""
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError) as caught:  # noqa: PT012 -- kill mid-stream
        for chunk in llm.stream("Write a long story about a dragon."):
            received.append(str(chunk.content))
            if len("".join(received)) > 20 and server.process.poll() is None:
                server.kill()
    error = caught.value
    assert error.partial_text == "".join(received)
    assert len(error.partial_text) > 20
    assert "stream broke" in str(error)
