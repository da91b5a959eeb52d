"""ChatK2 over real sockets against the loopback TGI server (a separate process).

Every test scripts the server's replies and asserts what a user would notice: the
prompt and parameters on the wire, the content and calls parsed, the error raised.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_k2 import (
    ChatK2,
    ContextWindowExceededError,
    K2BackendError,
    K2ConfigError,
    K2GenerationError,
    K2OverloadedError,
    K2StreamInterruptedError,
    K2UnavailableError,
    K2ValidationError,
)
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import http_error, reply, special, tokens_of


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def chat(tgi: FakeEngine, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    kwargs.setdefault("timeout", 10)
    return ChatK2(endpoint_url=tgi.url, **kwargs)


def generate_requests(tgi: FakeEngine) -> list[dict[str, Any]]:
    return [r for r in tgi.requests() if r["path"] == "/" and r["method"] == "POST"]


def eos() -> dict[str, Any]:
    return special("<|endoftext|>")


def test_invoke_sends_the_k2_prompt_and_tgi_parameters(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=tokens_of("Paris", ".", eos()), seed=42))
    message = chat(tgi, temperature=0, top_p=1.0, max_new_tokens=64).invoke("Capital of France?")
    assert message.content == "Paris."
    body = generate_requests(tgi)[0]["body"]
    assert body["inputs"] == "<|beginofuser|>Capital of France?<|beginofsystem|>"
    params = body["parameters"]
    assert params["return_full_text"] is False
    assert params["details"] is True
    assert params["do_sample"] is False
    assert "temperature" not in params
    assert "top_p" not in params
    assert params["max_new_tokens"] == 64
    assert "stream" not in body  # invoke takes the whole answer in one JSON document
    assert message.response_metadata["finish_reason"] == "eos_token"
    assert message.response_metadata["seed"] == 42
    usage = message.usage_metadata
    assert usage is not None
    assert usage["output_tokens"] == 3
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + 3


def test_sampling_parameters_are_sent(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=tokens_of("x", eos())))
    chat(tgi, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=3).invoke("q")
    params = generate_requests(tgi)[0]["body"]["parameters"]
    assert params["temperature"] == 0.7
    assert params["do_sample"] is True
    assert params["top_p"] == 0.9
    assert params["top_k"] == 40
    assert params["repetition_penalty"] == 1.1
    assert params["seed"] == 3


def test_stream_matches_invoke_and_reports_usage_last(tgi: FakeEngine) -> None:
    tokens = tokens_of("The", " sky", " is", " blue", ".", eos())
    tgi.script(reply(tokens=tokens), reply(tokens=tokens))
    llm = chat(tgi)
    whole = llm.invoke("Sky?")
    chunks = list(llm.stream("Sky?"))
    assert "".join(str(c.content) for c in chunks) == whole.content == "The sky is blue."
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert sum(1 for c in chunks if c.content) == 5
    # invoke read the prompt's size from x-prompt-tokens, stream from the last SSE event.
    assert [r["body"].get("stream") for r in generate_requests(tgi)] == [None, True]


async def test_async_invoke_stream_and_batch(tgi: FakeEngine) -> None:
    tgi.set_default(reply(tokens=tokens_of("ok", eos())))
    llm = chat(tgi)
    assert (await llm.ainvoke("a")).content == "ok"
    assert "".join([str(c.content) async for c in llm.astream("b")]) == "ok"
    assert [m.content for m in await llm.abatch(["c", "d", "e"])] == ["ok"] * 3
    assert [m.content for m in llm.batch(["f", "g"])] == ["ok"] * 2
    prompts = sorted(r["body"]["inputs"] for r in generate_requests(tgi))
    assert len(prompts) == 7


def test_stop_strings_are_sent_and_kept_out_of_content(tgi: FakeEngine) -> None:
    tgi.script(
        reply(tokens=tokens_of("one", " two", " STOP", " three"), finish_reason="stop_sequence")
    )
    message = chat(tgi).invoke("count", stop=["STOP"])
    assert message.content == "one two "
    assert message.response_metadata["finish_reason"] == "stop_sequence"
    stops = generate_requests(tgi)[0]["body"]["parameters"]["stop"]
    assert stops[0] == "STOP"
    assert len(stops) <= 4


def test_more_stop_strings_than_the_server_allows_fails_before_generating(tgi: FakeEngine) -> None:
    tgi.configure(max_stop_sequences=2)
    with pytest.raises(K2ConfigError, match="at most 2"):
        chat(tgi).invoke("q", stop=["a", "b", "c"])
    assert generate_requests(tgi) == []


def test_special_token_tags_survive_tgis_generated_text(tgi: FakeEngine) -> None:
    call = json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    tgi.script(
        reply(
            tokens=tokens_of(
                "Let me check.", special("<tool_call>"), call, special("</tool_call>"), eos()
            )
        )
    )
    message = chat(tgi).bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert message.content == "Let me check."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    prompt = generate_requests(tgi)[0]["body"]["inputs"]
    assert '<tools>[{"name": "get_weather", "description": "Current weather in a city."' in prompt


def test_malformed_call_then_repair_with_grammar(tgi: FakeEngine) -> None:
    broken = '[{"name": "add", "arguments": {"a": 2, "b": }}]'
    tgi.script(
        reply(
            tokens=tokens_of("Adding. ", special("<tool_call>"), broken, special("</tool_call>"))
        ),
        reply(tokens=tokens_of('{"name": "add", "arguments": {"a": 2, "b": 3}}', eos())),
    )
    message = chat(tgi).bind_tools([add, get_weather]).invoke("2+3?")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert message.content == "Adding. "
    assert message.response_metadata["tool_call_retries"] == 1
    first, second = generate_requests(tgi)
    assert second["body"]["inputs"] == first["body"]["inputs"] + "Adding. <tool_call>"
    grammar = second["body"]["parameters"]["grammar"]
    assert grammar["type"] == "json"
    assert grammar["value"]["properties"]["name"] == {"enum": ["add", "get_weather"]}


def test_usage_of_a_repaired_turn_sums_every_request_on_invoke_and_stream(tgi: FakeEngine) -> None:
    broken = '[{"name": "add", "arguments": {"a": 2, "b": }}]'
    read = tokens_of("Adding", ". ", special("<tool_call>"), broken, special("</tool_call>"))
    first = reply(tokens=[*read, *tokens_of(" and", " more", " text", eos())])
    second = reply(tokens=tokens_of('{"name": "add", ', '"arguments": {"a": 2, "b": 3}}', eos()))
    tgi.script(first, second, first, second)
    model = chat(tgi)
    llm = model.bind_tools([add, get_weather])
    whole = llm.invoke("2+3?")
    chunks = list(llm.stream("2+3?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert whole.tool_calls[0]["args"] == merged.tool_calls[0]["args"] == {"a": 2, "b": 3}
    prompts = [r["body"]["inputs"] for r in generate_requests(tgi)]
    assert prompts[:2] == prompts[2:]
    # Every request's prompt is counted (the abandoned first one too), and the output is
    # what was generated: the first request up to the broken block, then the repair.
    input_tokens = sum(model.get_num_tokens(p) for p in prompts[:2])
    output_tokens = len(read) + 3
    expected = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    assert whole.usage_metadata == expected
    assert merged.usage_metadata == expected


def test_a_repair_the_server_refuses_keeps_the_first_generation(tgi: FakeEngine) -> None:
    broken = '[{"name": "add", "arguments": {"a": 2, "b": }}]'
    tgi.script(
        reply(
            tokens=tokens_of(
                "Adding. ", special("<tool_call>"), broken, special("</tool_call>"), eos()
            )
        ),
        http_error(422, "Grammar is too complex"),
    )
    message = chat(tgi).bind_tools([add, get_weather]).invoke("2+3?")
    assert message.content == "Adding. "
    assert message.tool_calls == []
    assert [c["args"] for c in message.invalid_tool_calls] == [
        "<tool_call>" + broken + "</tool_call>"
    ]
    reason = message.response_metadata["tool_call_repair_skipped"]
    assert reason.startswith("the repair request failed (K2ValidationError: ")
    assert "Grammar is too complex" in reason
    assert len(generate_requests(tgi)) == 2


def test_forced_tool_choice_request_body(tgi: FakeEngine) -> None:
    tgi.script(
        reply(tokens=tokens_of('{"name": "get_weather", "arguments": {"city": "Rome"}}', eos()))
    )
    llm = chat(tgi).bind_tools([add, get_weather], tool_choice="get_weather")
    message = llm.invoke("Rome?")
    body = generate_requests(tgi)[0]["body"]
    assert body["inputs"].endswith("<|beginofuser|>Rome?<|beginofsystem|><tool_call>")
    assert body["parameters"]["grammar"]["value"]["properties"]["name"] == {"const": "get_weather"}
    assert message.tool_calls[0]["args"] == {"city": "Rome"}


def test_server_without_grammar_falls_back_to_prompting(tgi: FakeEngine) -> None:
    tgi.configure(grammar_enabled=False)
    call = '{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    tgi.script(reply(tokens=tokens_of(call, eos())), reply(tokens=tokens_of(call, eos())))
    model = chat(tgi)
    llm = model.bind_tools([add], tool_choice="any")
    assert llm.invoke("1+2").tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert model._get_backend().info().supports_grammar is False  # the refusal is recorded
    assert llm.invoke("1+2").tool_calls[0]["args"] == {"a": 1, "b": 2}
    sent = generate_requests(tgi)
    # First try carried a grammar and got a 422; every later request carries none.
    assert "grammar" in sent[0]["body"]["parameters"]
    assert all("grammar" not in r["body"]["parameters"] for r in sent[1:])
    assert len(sent) == 3


def test_agent_round_trip_is_prefix_stable(tgi: FakeEngine) -> None:
    first = '[{"name": "add", "arguments": {"a": 2, "b": 3}}]'
    tgi.script(
        reply(
            tokens=tokens_of(
                "Let me add.", special("<tool_call>"), first, special("</tool_call>"), eos()
            )
        ),
        reply(tokens=tokens_of("It is 5.", eos())),
    )
    llm = chat(tgi).bind_tools([add])
    history: list[Any] = [HumanMessage("2+3?")]
    answer = llm.invoke(history)
    history += [answer, ToolMessage("5", tool_call_id=answer.tool_calls[0]["id"])]
    final = llm.invoke(history)
    assert final.content == "It is 5."
    p1, p2 = (r["body"]["inputs"] for r in generate_requests(tgi))
    completion = f"Let me add.<tool_call>{first}</tool_call><|endoftext|>"
    assert p2 == p1 + completion + "<tool_response>5</tool_response>"


# ------------------------------------------------------------------------------ errors


def test_validation_error_names_the_fix_and_is_not_retried(tgi: FakeEngine) -> None:
    # The server's limit is lower than /info says (e.g. a replica started differently).
    tgi.script(
        http_error(
            422,
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 40. "
            "Given: 53 `inputs` tokens and 20 `max_new_tokens`",
            "validation",
        )
    )
    with pytest.raises(K2ValidationError, match="lower max_new_tokens") as info:
        chat(tgi, max_retries=3).invoke("hello", max_new_tokens=20)
    assert info.value.status == 422
    assert "must be <= 40" in str(info.value)
    assert len(generate_requests(tgi)) == 1


def test_prompt_over_the_window_fails_before_any_request(tgi: FakeEngine) -> None:
    tgi.configure(max_total_tokens=40, max_input_tokens=30)
    with pytest.raises(ContextWindowExceededError, match="trim_history=True") as info:
        chat(tgi).invoke("hello " * 50, max_new_tokens=20)
    assert info.value.window == 40
    assert info.value.prompt_tokens > 30
    assert generate_requests(tgi) == []


def test_overloaded_is_retried(tgi: FakeEngine) -> None:
    tgi.script(
        http_error(429, "Model is overloaded", "overloaded", retry_after=0),
        reply(tokens=tokens_of("fine", eos())),
    )
    assert chat(tgi, max_retries=2).invoke("q").content == "fine"
    assert len(generate_requests(tgi)) == 2


def test_overloaded_surfaces_after_retries(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(429, "Model is overloaded", "overloaded"))
    with pytest.raises(K2OverloadedError, match="overloaded"):
        chat(tgi, max_retries=1).invoke("q")
    assert len(generate_requests(tgi)) == 2


def test_503_loading_is_unavailable(tgi: FakeEngine) -> None:
    tgi.set_default(http_error(503, "Model is loading", None))
    with pytest.raises(K2UnavailableError, match="503"):
        chat(tgi, max_retries=0).invoke("q")


def test_error_event_inside_the_stream(tgi: FakeEngine) -> None:
    tgi.script(
        reply(
            tokens=tokens_of("a", "b", "c"),
            error_event_after=0,
            error="Request failed during generation: CUDA OOM",
            error_type="generation",
        )
    )
    with pytest.raises(K2GenerationError, match="CUDA OOM"):
        chat(tgi, max_retries=0).invoke("q")


def test_stream_cut_after_tokens_raises_with_partial_text(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=tokens_of("Hello", " wor", "ld", "!"), cut_after=2))
    received: list[str] = []
    stream = chat(tgi, max_retries=3).stream("q")
    with pytest.raises(K2StreamInterruptedError) as info:
        received.extend(str(chunk.content) for chunk in stream)
    assert info.value.partial_text == "Hello wor"
    assert "".join(received) == "Hello wor"
    assert len(generate_requests(tgi)) == 1


def test_info_failure_is_retried_on_another_replica(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=tokens_of("up", eos())))
    llm = ChatK2(
        endpoint_url=["http://127.0.0.1:9", tgi.url], max_retries=2, timeout=3, retry_backoff=0
    )
    assert llm.invoke("q").content == "up"
    assert [r["path"] for r in tgi.requests()] == ["/info", "/"]


def test_unreachable_server_says_so() -> None:
    llm = ChatK2(endpoint_url="http://127.0.0.1:9", max_retries=0, timeout=2)
    with pytest.raises(K2BackendError, match=r"127\.0\.0\.1:9"):
        llm.invoke("q")


def test_streamed_invalid_call_stays_invalid_after_langchain_merges_it(tgi: FakeEngine) -> None:
    truncated = '[{"name": "add", "arguments": {"a": 1'
    tgi.script(reply(tokens=tokens_of("x", special("<tool_call>"), truncated)))
    merged: AIMessageChunk | None = None
    for chunk in chat(tgi, max_tool_call_retries=0).bind_tools([add]).stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.tool_calls == []
    assert len(merged.invalid_tool_calls) == 1
    assert merged.invalid_tool_calls[0]["args"] == "<tool_call>" + truncated
