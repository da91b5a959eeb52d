"""ChatK2 over each engine's loopback fake (TGI, vLLM, SGLang), one set of tests for all.

Every test runs against each fake (`served`, from ``conftest.py``) through the engine's own
route and wire rules, and asserts what a user would notice: the body on the wire (token
limit, special tokens kept, the constraint under the field the engine honours), the content
and calls parsed, usage, retries, and the errors raised. Then auto-detection: each fake
is recognised, the SGLang Model Gateway too, and a server that is none of them is a
`K2ConfigError` that says what was tried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_k2 import (
    ChatK2,
    ContextWindowExceededError,
    K2ConfigError,
    K2OverloadedError,
    K2StreamInterruptedError,
    K2ValidationError,
)
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import http_error, reply

ROUTE = {"tgi": "/", "vllm": "/v1/completions", "sglang": "/generate"}
EOS = "<|endoftext|>"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return {"Paris": "18C, sunny", "Oslo": "3C, snow"}[city]


class Movie(BaseModel):
    """A movie."""

    title: str
    year: int


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("max_new_tokens", 64)
    kwargs.setdefault("engine", server.engine)
    return ChatK2(endpoint_url=server.url, **kwargs)


def bodies(server: FakeEngine) -> list[dict[str, Any]]:
    """The generation requests' bodies (SGLang's prefill-only token counts left out)."""
    sent = [r["body"] for r in server.requests(ROUTE[server.engine]) if r["method"] == "POST"]
    return [b for b in sent if (b.get("sampling_params") or {}).get("max_new_tokens") != 0]


def prompt_of(server: FakeEngine, body: dict[str, Any]) -> str:
    return str(body[{"tgi": "inputs", "vllm": "prompt", "sglang": "text"}[server.engine]])


def constraint(server: FakeEngine, body: dict[str, Any]) -> Any:
    """The JSON schema a request constrains decoding to, read where the engine reads it."""
    if server.engine == "tgi":
        return body["parameters"]["grammar"]["value"]
    if server.engine == "vllm":
        assert "guided_json" not in body  # removed in vLLM 0.12: ignored with 200
        return body["structured_outputs"]["json"]
    return json.loads(body["sampling_params"]["json_schema"])


def call_text(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>" + json.dumps([{"name": name, "arguments": arguments}]) + "</tool_call>"


def test_invoke_sends_the_engines_body_and_reads_usage(served: FakeEngine) -> None:
    served.script(reply(text="Paris."))
    message = chat(served, temperature=0).invoke("Capital of France?")
    assert message.content == "Paris."
    assert message.response_metadata["engine"] == served.engine
    assert message.response_metadata["finish_reason"] == "eos_token"
    (body,) = bodies(served)
    assert prompt_of(served, body).endswith("<|beginofuser|>Capital of France?<|beginofsystem|>")
    usage = message.usage_metadata
    assert usage is not None
    assert usage["output_tokens"] == 3
    assert usage["input_tokens"] > 0
    if served.engine == "vllm":
        assert body["max_tokens"] == 64
        assert body["temperature"] == 0
        assert body["skip_special_tokens"] is False
        assert body["spaces_between_special_tokens"] is False
    if served.engine == "sglang":
        sampling = body["sampling_params"]
        assert sampling["max_new_tokens"] == 64
        assert sampling["temperature"] == 0
        assert sampling["skip_special_tokens"] is False
        assert sampling["spaces_between_special_tokens"] is False


async def test_stream_equals_invoke_with_a_tool_call(served: FakeEngine) -> None:
    text = "Checking." + call_text("get_weather", {"city": "Oslo"})
    served.script(reply(text=text), reply(text=text), reply(text=text))
    llm = chat(served).bind_tools([get_weather])
    whole = llm.invoke("Weather in Oslo?")
    merged: AIMessageChunk | None = None
    for chunk in llm.stream("Weather in Oslo?"):
        merged = chunk if merged is None else merged + chunk
    amerged: AIMessageChunk | None = None
    async for chunk in llm.astream("Weather in Oslo?"):
        amerged = chunk if amerged is None else amerged + chunk
    assert merged is not None
    assert amerged is not None
    for message in (whole, merged, amerged):
        assert message.content == "Checking."
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [
            ("get_weather", {"city": "Oslo"})
        ]
    assert merged.usage_metadata == whole.usage_metadata
    if served.engine == "vllm":
        assert bodies(served)[1]["stream_options"] == {"include_usage": True}


def test_forced_call_puts_the_constraint_where_the_engine_reads_it(served: FakeEngine) -> None:
    served.script(
        reply(
            text=json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])
            + "</tool_call>"
        )
    )
    llm = chat(served).bind_tools([get_weather], tool_choice="get_weather")
    message = llm.invoke("Weather?")
    assert message.tool_calls[0]["args"] == {"city": "Paris"}
    (body,) = bodies(served)
    assert prompt_of(served, body).endswith("<tool_call>")
    schema = constraint(served, body)
    assert json.dumps(schema).count("get_weather") >= 1


def test_a_malformed_call_is_repaired_under_the_constraint(served: FakeEngine) -> None:
    broken = '<tool_call>[{"name": "get_weather", "arguments": {"city": }]</tool_call>'
    served.script(
        reply(text=broken),
        reply(text=json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}}])),
    )
    message = chat(served).bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert message.tool_calls[0]["args"] == {"city": "Oslo"}
    assert message.response_metadata["tool_call_retries"] == 1
    _first, repair = bodies(served)
    assert "<tool_call>" in prompt_of(served, repair)
    assert json.dumps(constraint(served, repair)).count("get_weather") >= 1


async def test_with_structured_output(served: FakeEngine) -> None:
    served.script(reply(text='{"title": "Alien", "year": 1979}'))
    result = await chat(served).with_structured_output(Movie).ainvoke("A 1979 movie?")
    assert result == Movie(title="Alien", year=1979)
    (body,) = bodies(served)
    assert constraint(served, body)["properties"]["year"] == {"type": "integer"}


def test_an_agent_loop(served: FakeEngine) -> None:
    from langchain.agents import create_agent

    served.script(
        reply(text=call_text("get_weather", {"city": "Paris"})),
        reply(text="It is 18C and sunny in Paris."),
    )
    agent = create_agent(chat(served), [get_weather])
    state = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    assert state["messages"][-1].content == "It is 18C and sunny in Paris."
    first, second = (prompt_of(served, b) for b in bodies(served))
    assert second.startswith(first)
    assert "<tool_response>18C, sunny</tool_response>" in second


@pytest.mark.parametrize("status", [429, 503])
async def test_overload_and_unavailable_are_retried(served: FakeEngine, status: int) -> None:
    served.script(http_error(status), reply(text="ok"))
    message = await chat(served).ainvoke("hi")
    assert message.content == "ok"
    assert [r["status"] for r in served.requests(ROUTE[served.engine])] == [status, 200]


def test_a_400_is_never_retried(served: FakeEngine) -> None:
    if served.engine == "tgi":
        pytest.skip("TGI refuses with 422, tested in test_faults.py")
    served.script(http_error(400, error="top_p must be in (0, 1], got 2.0."), reply(text="ok"))
    with pytest.raises(K2ValidationError, match=r"rejected the request: top_p must be in"):
        chat(served).invoke("hi")
    assert len(served.requests(ROUTE[served.engine])) == 1


def test_a_real_400_from_the_engine_names_the_fix(served: FakeEngine) -> None:
    if served.engine == "tgi":
        pytest.skip("TGI validates with 422, tested in test_tgi_chat.py")
    served.configure(max_total_tokens=100)
    served.script(reply(text="never"))
    llm = ChatK2(
        endpoint_url=served.url,
        engine=served.engine,
        max_new_tokens=90,
        max_retries=0,
        context_window=None,
    )
    with pytest.raises((K2ValidationError, ContextWindowExceededError)) as info:
        llm.invoke("word " * 40)
    assert "context" in str(info.value).lower()


def test_an_error_event_mid_stream_interrupts_with_the_partial_text(served: FakeEngine) -> None:
    served.script(reply(text="one two three four", error_event_after=2, error="engine fell over"))
    received: list[str] = []
    with pytest.raises(K2StreamInterruptedError) as info:
        received.extend(str(chunk.content) for chunk in chat(served).stream("count"))
    assert "engine fell over" in str(info.value.cause)
    assert info.value.partial_text == "".join(received) == "one two"


def test_overloaded_past_the_retries(served: FakeEngine) -> None:
    served.script(http_error(429), http_error(429))
    with pytest.raises(K2OverloadedError):
        chat(served, max_retries=1).invoke("hi")


# ------------------------------------------------------------------ detection


async def test_auto_detects_each_engine_sync_and_async(served: FakeEngine) -> None:
    served.script(reply(text="sync"), reply(text="async"))
    llm = chat(served, engine="auto")
    assert llm.invoke("hi").response_metadata["engine"] == served.engine
    assert llm._get_ls_params()["ls_engine"] == served.engine  # type: ignore[typeddict-item]
    fresh = chat(served, engine="auto")
    assert (await fresh.ainvoke("hi")).response_metadata["engine"] == served.engine


def test_auto_recognises_the_sglang_gateway(fake_sglang_server: FakeEngine) -> None:
    server = fake_sglang_server
    server.reset()
    server.configure(gateway=True)
    server.script(reply(text="routed"))
    message = chat(server, engine="auto", context_window=4096).invoke("hi")
    assert message.response_metadata["engine"] == "sglang"
    assert {r["status"] for r in server.requests("/server_info")} == {404}
    assert [r["status"] for r in server.requests("/get_server_info")] == [200]


def test_the_window_and_counts_come_from_the_engine(served: FakeEngine) -> None:
    served.configure(max_total_tokens=60, max_input_tokens=59)
    # SGLang counts by prefilling (max_new_tokens 0): a prompt over its window is refused
    # by the engine itself, with its own words, before any generation request.
    raised = K2ValidationError if served.engine == "sglang" else ContextWindowExceededError
    with pytest.raises(raised, match="60"):
        chat(served, max_new_tokens=20).invoke("word " * 60)
    assert bodies(served) == []
    served.script(reply(text="fits"))
    assert chat(served, max_new_tokens=20).invoke("word " * 5).content == "fits"


class _NotAnEngine(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"service": "a web app", "version": "1.0"}' if self.path == "/version" else b"{}"
        self.send_response(200 if self.path == "/version" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_an_engine() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotAnEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_auto_against_a_server_that_is_no_engine(not_an_engine: str) -> None:
    llm = ChatK2(endpoint_url=not_an_engine, max_retries=0)
    with pytest.raises(K2ConfigError) as sync_info:
        llm.invoke("hi")
    with pytest.raises(K2ConfigError) as async_info:
        await llm.ainvoke("hi")
    for info in (sync_info, async_info):
        message = str(info.value)
        assert f"Could not tell which engine serves {not_an_engine}" in message
        assert "GET /info -> 404" in message
        assert "GET /version -> 200" in message
        assert "Pass engine=" in message
        assert "'vllm'" in message
