"""Errors LangChain's middleware understands, and the served model's name, over loopback fakes.

K2's errors are langchain-core's ``ModelError`` family (``docs/limits.md``, "Error
table"), so the real middleware decides on them: ``SummarizationMiddleware`` recovers from
a context-window overflow the fake vLLM answers (400 "maximum context length"), and
``ModelRetryMiddleware`` does not retry a 401 (the fake counts one request) while it does
retry a 503. Every OpenAI-style completions request names the served model (read from
``/v1/models``, or ``model_name`` when the user set it), and ``engine="tgi"`` pointed at
another engine says to fix ``engine=``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.exceptions import ModelAuthenticationError
from langchain_core.messages import AIMessage, HumanMessage

from langchain_k2 import ChatK2, K2AuthenticationError, K2NotFoundError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import http_error, reply

OVERFLOW = (
    "This model's maximum context length is 4096 tokens. However, you requested 5000 "
    "tokens (4936 in the messages, 64 in the completion). Please reduce the length of the "
    "messages or completion."
)


@pytest.fixture
def vllm(fake_vllm_server: FakeEngine) -> FakeEngine:
    fake_vllm_server.reset()
    return fake_vllm_server


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("max_new_tokens", 64)
    return ChatK2(endpoint_url=server.url, engine=server.engine, **kwargs)


def generations(server: FakeEngine) -> list[dict[str, Any]]:
    return [r for r in server.requests("/v1/completions") if r["method"] == "POST"]


def test_summarization_middleware_recovers_from_a_window_overflow(vllm: FakeEngine) -> None:
    from langchain.agents import create_agent
    from langchain.agents.middleware import SummarizationMiddleware

    vllm.script(
        http_error(400, OVERFLOW, "BadRequestError"),  # the summary prompt: too long
        reply("The user asked about K2 and Paris twice."),  # the retry, middle cut out
        reply("Paris."),  # the agent's own turn, on the summarized history
    )
    llm = chat(vllm)
    summarize = SummarizationMiddleware(model=llm, trigger=("messages", 4), keep=("messages", 1))
    agent = create_agent(llm, tools=[], middleware=[summarize])
    history = [
        HumanMessage("Tell me about K2. " * 40),
        AIMessage("K2 is a 65B model by LLM360. " * 40),
        HumanMessage("And the capital of France? " * 20),
        AIMessage("Paris. " * 20),
        HumanMessage("Which city again?"),
    ]
    result = agent.invoke({"messages": history})
    assert result["messages"][-1].content == "Paris."
    sent = generations(vllm)
    assert [r["status"] for r in sent] == [400, 200, 200]
    assert "middle of conversation omitted" in sent[1]["body"]["prompt"]
    assert "The user asked about K2 and Paris twice." in sent[2]["body"]["prompt"]


def test_model_retry_middleware_does_not_retry_a_401(vllm: FakeEngine) -> None:
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelRetryMiddleware

    vllm.script(http_error(401, "Unauthorized"), reply("never sent"), reply("never sent"))
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0.0, on_failure="error")
    agent = create_agent(chat(vllm, max_retries=1), tools=[], middleware=[retry])
    with pytest.raises(K2AuthenticationError, match="refused the credentials") as caught:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert isinstance(caught.value, ModelAuthenticationError)
    assert len(generations(vllm)) == 1  # no retry reached the server


def test_model_retry_middleware_retries_a_503(vllm: FakeEngine) -> None:
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelRetryMiddleware

    vllm.script(http_error(503, "loading"), reply("Hello."))
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0.0, on_failure="error")
    agent = create_agent(chat(vllm, max_retries=1), tools=[], middleware=[retry])
    result = agent.invoke({"messages": [HumanMessage("hi")]})
    assert result["messages"][-1].content == "Hello."
    assert [r["status"] for r in generations(vllm)] == [503, 200]


def test_every_completions_request_names_the_served_model(vllm: FakeEngine) -> None:
    vllm.configure(model_id="acme/K2-Chat-AWQ")
    vllm.set_default(reply("Hi."))
    llm = chat(vllm)
    message = llm.invoke("hi")
    assert "".join(str(c.content) for c in llm.stream("hi")) == "Hi."
    assert [r["body"]["model"] for r in generations(vllm)] == ["acme/K2-Chat-AWQ"] * 2
    assert message.response_metadata["model_name"] == "acme/K2-Chat-AWQ"


def test_a_model_name_the_user_set_is_the_one_sent(vllm: FakeEngine) -> None:
    vllm.set_default(reply("Hi."))
    assert chat(vllm, model_name="LLM360/K2-Chat").invoke("hi").content == "Hi."
    assert generations(vllm)[0]["body"]["model"] == "LLM360/K2-Chat"
    vllm.configure(model_id="acme/other")  # a router with no worker for that name: 404
    with (
        pytest.warns(UserWarning, match="vLLM at .* serves 'acme/other'"),
        pytest.raises(K2NotFoundError, match=r"does not exist.*engine="),
    ):
        chat(vllm, model_name="LLM360/K2-Chat").invoke("hi")


def test_sglang_native_route_sends_no_model(fake_sglang_server: FakeEngine) -> None:
    fake_sglang_server.reset()
    fake_sglang_server.set_default(reply("Hi."))
    assert chat(fake_sglang_server).invoke("hi").content == "Hi."
    sent = [r for r in fake_sglang_server.requests("/generate") if r["method"] == "POST"]
    assert all("model" not in r["body"] for r in sent)


def test_engine_tgi_pointed_at_another_engine_names_engine(vllm: FakeEngine) -> None:
    with pytest.raises(
        K2NotFoundError, match=r"engine= must name the engine it runs \(now 'tgi'\)"
    ):
        ChatK2(endpoint_url=vllm.url, engine="tgi", max_retries=1, timeout=10).invoke("hi")
