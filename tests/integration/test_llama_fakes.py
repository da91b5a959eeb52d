"""ChatK2 over the fake llama.cpp servers (llama-server, llama-cpp-python's server).

`tests/support/fake_engine/llama.py` speaks their wire. Through it, ChatK2 finds each
engine by probing, sends its own body (llama-server's ``n_predict``; llama-cpp-python's
``max_tokens`` and ``model``; the format's end markers as ``stop`` strings, since neither
takes stop ids), streams the same message it answers whole (content, finish reason, token
counts: llama-server counts the EOS it stopped on, llama-cpp-python does not, and sends no
usage in a stream), and a prompt over the window fails as a context overflow: before any
request where the window is known (llama-server's ``/props``), from the server's 400
otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import AIMessageChunk, HumanMessage

from langchain_k2 import ChatK2, ContextWindowExceededError, K2ContextOverflowError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of

ROUTE = {"llama.cpp": "/completion", "llama-cpp-python": "/v1/completions"}


@pytest.fixture(params=["llama.cpp", "llama-cpp-python"])
def llama(request: pytest.FixtureRequest) -> FakeEngine:
    name = {"llama.cpp": "fake_llama_server", "llama-cpp-python": "fake_llama_cpp_python_server"}
    server: FakeEngine = request.getfixturevalue(name[request.param])
    server.reset()
    return server


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("max_new_tokens", 16)
    return ChatK2(endpoint_url=server.url, retry_backoff=0.0, timeout=10, **kwargs)


def test_stream_and_invoke_agree(llama: FakeEngine) -> None:
    llama.set_default(reply(tokens=tokens_of("Hello", " there", special("<|endoftext|>"))))
    llm = chat(llama)
    whole = llm.invoke("Hi")
    chunks = list(llm.stream("Hi"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert isinstance(merged, AIMessageChunk)
    assert whole.content == merged.content == "Hello there"
    assert whole.response_metadata["engine"] == llama.engine  # found by probing
    assert merged.response_metadata["finish_reason"] == whole.response_metadata["finish_reason"]
    counted = llm.get_num_tokens_from_messages([HumanMessage("Hi")])
    generated = 3 if llama.engine == "llama.cpp" else 2  # the EOS counted, or not
    expected = {"input_tokens": counted, "output_tokens": generated}
    expected["total_tokens"] = counted + generated
    assert whole.usage_metadata == merged.usage_metadata == expected


def test_the_engines_own_body(llama: FakeEngine) -> None:
    llama.set_default(reply("ok"))
    chat(llama, max_new_tokens=7, temperature=0).invoke("Hi")
    (body,) = [r["body"] for r in llama.requests(ROUTE[llama.engine])]
    assert body["prompt"].startswith("<|beginofuser|>Hi")
    assert "<|endofchat|>" in body["stop"]  # no stop ids here: the end markers as text
    if llama.engine == "llama.cpp":
        assert body["n_predict"] == 7
        assert "max_tokens" not in body
        assert "model" not in body
    else:
        assert body["max_tokens"] == 7
        assert body["model"] == "LLM360/K2-Chat"  # the id /v1/models names
    assert body["temperature"] == 0


def test_a_prompt_over_the_window_is_a_context_overflow(llama: FakeEngine) -> None:
    llama.configure(max_total_tokens=12)
    llama.set_default(reply("ok"))
    llm = chat(llama, max_new_tokens=4, max_retries=0)
    error: type[Exception] = (
        ContextWindowExceededError if llama.engine == "llama.cpp" else K2ContextOverflowError
    )
    with pytest.raises(error) as caught:
        llm.invoke("Hi " * 30)
    assert isinstance(caught.value, ContextOverflowError)  # what LangChain's middleware reads
    sent = llama.requests(ROUTE[llama.engine])
    assert len(sent) == (0 if llama.engine == "llama.cpp" else 1)  # the window from /props
