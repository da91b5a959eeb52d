"""Which wire form each call takes, over real sockets, and what happens when a proxy meddles.

invoke / ainvoke take one non-streamed answer (the prompt's size in ``x-prompt-tokens``);
stream / astream read server-sent events (the size in the last event). Both must give the
same message and usage. A proxy that strips the header, or ends a stream before its last
event, or eats ``details``, must not make ChatK2 report wrong figures or a truncated reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool

from langchain_k2 import ChatK2, K2BackendError, K2StreamInterruptedError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of

HELLO = ("Hello", " wor", "ld", "!")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def eos() -> dict[str, Any]:
    return special("<|endoftext|>")


def chat(tgi: FakeEngine, **kwargs: Any) -> ChatK2:
    return ChatK2(endpoint_url=tgi.url, retry_backoff=0.0, timeout=10, **kwargs)


def generations(tgi: FakeEngine) -> list[dict[str, Any]]:
    return [r for r in tgi.requests() if r["path"] == "/" and r["method"] == "POST"]


def streamed(tgi: FakeEngine) -> list[bool]:
    return [bool(r["body"].get("stream")) for r in generations(tgi)]


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


@pytest.mark.parametrize("asynchronous", [False, True])
def test_invoke_takes_one_json_answer_and_stream_takes_events(
    tgi: FakeEngine, asynchronous: bool
) -> None:
    call = '{"name": "add", "arguments": {"a": 2, "b": 3}}'
    tokens = tokens_of("Sure. ", special("<tool_call>"), call, special("</tool_call>"), eos())
    tgi.script(reply(tokens=tokens), reply(tokens=tokens))
    llm = chat(tgi).bind_tools([add])
    if asynchronous:
        whole = asyncio.run(llm.ainvoke("2+3?"))

        async def collect() -> list[AIMessageChunk]:
            return [c async for c in llm.astream("2+3?")]

        chunks = asyncio.run(collect())
    else:
        whole = llm.invoke("2+3?")
        chunks = list(llm.stream("2+3?"))
    assert isinstance(whole, AIMessage)
    assert streamed(tgi) == [False, True]
    # The special tool tags are in no generated_text; both forms rebuild them from tokens.
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [("add", {"a": 2, "b": 3})]
    stream_message = merged(chunks)
    assert stream_message.content == whole.content == "Sure. "
    assert [c["args"] for c in stream_message.tool_calls] == [{"a": 2, "b": 3}]
    assert stream_message.usage_metadata == whole.usage_metadata
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["input_tokens"] > 0
    assert whole.usage_metadata["output_tokens"] == len(tokens)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_proxy_that_strips_the_prompt_count_header(tgi: FakeEngine, asynchronous: bool) -> None:
    tgi.script(*[reply(tokens=tokens_of(*HELLO, eos())) for _ in range(3)])
    llm = chat(tgi)
    reference = llm.invoke("q")  # header present: the reference count
    tgi.configure(timing_headers=False)

    def run() -> list[AIMessage]:
        if asynchronous:

            async def both() -> list[AIMessage]:
                return [await llm.ainvoke("q"), await llm.ainvoke("q")]

            return asyncio.run(both())
        return [llm.invoke("q"), llm.invoke("q")]

    first, second = run()
    # The answer without the header was counted with /tokenize, then whole answers came
    # as streams, whose last event carries the count: the figures never went wrong.
    assert first.usage_metadata == second.usage_metadata == reference.usage_metadata
    assert first.content == second.content == "Hello world!"
    assert streamed(tgi) == [False, False, True]
    assert len(tgi.requests("/tokenize")) == 1


def consume(llm: ChatK2, received: list[str], *, asynchronous: bool) -> None:
    """Stream a reply, its chunks' text into ``received`` as they come."""
    if not asynchronous:
        received.extend(str(chunk.content) for chunk in llm.stream("q"))
        return

    async def astream() -> None:
        received.extend([str(chunk.content) async for chunk in llm.astream("q")])

    asyncio.run(astream())


def answer(llm: ChatK2, *, asynchronous: bool) -> AIMessage:
    return asyncio.run(llm.ainvoke("q")) if asynchronous else llm.invoke("q")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_stream_closed_cleanly_before_its_last_event_is_not_taken_as_complete(
    tgi: FakeEngine, asynchronous: bool
) -> None:
    tgi.script(reply(tokens=tokens_of(*HELLO, eos()), end_after=2))
    llm = chat(tgi, max_retries=3)
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError, match="ended before its last event") as info:
        consume(llm, received, asynchronous=asynchronous)
    assert info.value.partial_text == "Hello wor"
    assert len(generations(tgi)) == 1  # text had reached the caller: not retried


def test_a_stream_closed_before_any_token_is_retried(tgi: FakeEngine) -> None:
    hello = tokens_of(*HELLO, eos())
    tgi.script(reply(tokens=hello, end_after=0), reply(tokens=hello))
    received: list[str] = []
    consume(chat(tgi, max_retries=1), received, asynchronous=False)
    assert "".join(received) == "Hello world!"
    assert [r["fault"] for r in generations(tgi)] == ["ended_early", None]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_an_answer_without_details_is_refused_not_guessed(
    tgi: FakeEngine, asynchronous: bool
) -> None:
    tgi.script(reply(tokens=tokens_of(*HELLO, eos()), end_after=0))
    llm = chat(tgi, max_retries=3)
    with pytest.raises(K2BackendError, match="without token details"):
        answer(llm, asynchronous=asynchronous)
    assert len(generations(tgi)) == 1  # not a transport fault: not retried
