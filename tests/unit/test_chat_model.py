"""ChatK2's turn logic over an in-memory backend: params, stops, tools, repair."""

from __future__ import annotations

import importlib.util
import json

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_k2 import (
    ChatK2,
    K2ConfigError,
    K2GrammarUnsupportedError,
    K2OverloadedError,
    K2StreamInterruptedError,
    K2UnavailableError,
    K2ValidationError,
    ToolDefinitionError,
)
from langchain_k2.backends._base import BackendInfo, TokenEvent
from tests.support.scripted_backend import Reply, ScriptedBackend


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"sunny in {city}"


def make(**kwargs) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    kwargs.setdefault("retry_backoff", 0.0)
    return ChatK2(backend=backend, **kwargs), backend


def call_block(name: str, args: dict) -> str:
    return "<tool_call>" + json.dumps([{"name": name, "arguments": args}]) + "</tool_call>"


def test_invoke_returns_content_usage_and_metadata():
    llm, backend = make(seed=7)
    backend.script(["Hel", "lo", "<|endoftext|>"])
    message = llm.invoke("Hi")
    assert message.content == "Hello"
    assert message.usage_metadata == {"input_tokens": 1, "output_tokens": 3, "total_tokens": 4}
    assert message.response_metadata["finish_reason"] == "eos_token"
    assert message.response_metadata["model_name"] == "LLM360/K2-Chat"
    assert message.response_metadata["seed"] == 7
    assert backend.requests[0][0] == "<|beginofuser|>Hi<|beginofsystem|>"


def test_stream_concatenates_to_invoke_and_last_chunk_carries_usage():
    llm, backend = make()
    tokens = ["The", " answer", " <", "is", "> 4", ".", "<|endoftext|>"]
    backend.script(tokens, tokens)
    whole = llm.invoke("q")
    chunks = list(llm.stream("q"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert "".join(str(c.content) for c in chunks) == whole.content == "The answer <is> 4."
    assert chunks[-1].usage_metadata is not None
    assert merged.usage_metadata == whole.usage_metadata


async def test_async_twins_match_sync():
    llm, backend = make()
    backend.script(["a", "b"], ["a", "b"], ["a", "b"])
    assert (await llm.ainvoke("q")).content == "ab"
    assert "".join([str(c.content) async for c in llm.astream("q")]) == "ab"
    assert [m.content for m in await llm.abatch(["q"])] == ["ab"]


def test_stop_strings_are_cut_and_sent():
    llm, backend = make(stop=["END"])
    backend.script(["one ", "two E", "ND three"], ["x E", "N", "D"])
    assert llm.invoke("q").content == "one two "
    assert backend.requests[0][1].stop[0] == "END"
    chunks = list(llm.stream("q", stop=["ZZ"]))
    assert "".join(str(c.content) for c in chunks) == "x "
    assert backend.requests[1][1].stop[:2] == ("END", "ZZ")
    assert chunks[-1].response_metadata["finish_reason"] == "stop_sequence"


def test_too_many_stop_strings_is_an_error_before_any_request():
    llm, backend = make(stop=["a", "b", "c", "d", "e"])
    with pytest.raises(K2ConfigError, match="at most 4"):
        llm.invoke("q")
    assert backend.requests == []


def test_turn_markers_are_sent_as_stops_while_room_allows():
    llm, backend = make(stop=["a", "b"])
    backend.script(["x"])
    llm.invoke("q")
    assert backend.requests[0][1].stop == ("a", "b", "<|endoftext|>", "<|beginofuser|>")


def test_fake_user_turn_is_cut_client_side():
    llm, backend = make()
    backend.script(["Answer.", "<|beginofuser|>", "more?"])
    assert llm.invoke("q").content == "Answer."


def test_call_options_are_validated_and_unknown_ones_raise():
    llm, backend = make()
    backend.script(["x"])
    llm.invoke("q", temperature=0, max_new_tokens=5)
    params = backend.requests[0][1]
    assert params.temperature == 0
    assert params.max_new_tokens == 5
    with pytest.raises(K2ConfigError, match="frobnicate"):
        llm.invoke("q", frobnicate=1)
    with pytest.raises(ValueError, match="top_p"):
        llm.invoke("q", top_p=1.5)


def test_fields_are_validated():
    with pytest.raises(ValueError, match="temperature"):
        ChatK2(endpoint_url="http://127.0.0.1:1", temperature=-1)
    with pytest.raises(K2ConfigError, match="not both"):
        ChatK2(endpoint_url="http://127.0.0.1:1", model_path="/x.gguf")


def test_missing_endpoint_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("K2_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("K2_MODEL_PATH", raising=False)
    with pytest.raises(K2ConfigError, match="K2_ENDPOINT_URL"):
        ChatK2()


def test_endpoint_from_env(monkeypatch):
    monkeypatch.setenv("K2_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("K2_MODEL_PATH", raising=False)
    assert ChatK2().endpoint_url == "http://127.0.0.1:9"


def test_secret_never_in_repr_or_str():
    llm = ChatK2(endpoint_url="http://127.0.0.1:1", hf_token="hf_supersecret")
    assert "hf_supersecret" not in repr(llm)
    assert "hf_supersecret" not in str(llm)


# ----------------------------------------------------------------------------- tools


def test_tool_call_is_parsed():
    llm, backend = make()
    backend.script(["Checking.", call_block("add", {"a": 2, "b": 3}), "<|endoftext|>"])
    message = llm.bind_tools([add, weather]).invoke("2+3?")
    assert message.content == "Checking."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert message.tool_calls[0]["id"].startswith("call_")
    assert '"name": "add"' in backend.requests[0][0]


def test_streamed_tool_calls_merge_to_invoke_result():
    llm, backend = make()
    text = "Sure." + call_block("add", {"a": 1, "b": 2}) + call_block("weather", {"city": "Oslo"})
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    backend.script(pieces, pieces)
    bound = llm.bind_tools([add, weather])
    whole = bound.invoke("q")
    merged = None
    for chunk in bound.stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert isinstance(merged, AIMessageChunk)
    assert merged.content == whole.content == "Sure."
    strip = lambda calls: [(c["name"], c["args"]) for c in calls]  # noqa: E731
    assert strip(merged.tool_calls) == strip(whole.tool_calls)
    assert len(whole.tool_calls) == 2


def test_malformed_call_is_repaired_from_the_broken_block():
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    backend.script(
        [
            "Let me add. ",
            '<tool_call>[{"name": "add", "arguments": {"a": 2, "b": }}]</tool_call>',
            " tail",
        ],
        ['{"name": "add", "arguments": {"a": 2, "b": 3}}'],
    )
    message = llm.bind_tools([add, weather]).invoke("q")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert message.invalid_tool_calls == []
    assert message.content == "Let me add. "
    assert message.response_metadata["tool_call_retries"] == 1
    first_prompt, _ = backend.requests[0]
    repair_prompt, repair_params = backend.requests[1]
    assert repair_prompt == first_prompt + "Let me add. <tool_call>"
    assert repair_params.grammar is not None
    schema = repair_params.grammar.value
    assert schema["properties"]["name"] == {"enum": ["add", "weather"]}
    assert len(schema["properties"]["arguments"]["anyOf"]) == 2


def test_usage_of_a_repaired_turn_counts_the_abandoned_request_too():
    llm, backend = make()
    backend.script(
        [
            "Let me add. ",
            "<tool_call>",
            '{"name": "add", "arguments": {"a": }}',
            "</tool_call>",
            " x",
        ],
        ['{"name": "add", "arguments": {"a": 2, "b": 3}}'],
    )
    message = llm.bind_tools([add]).invoke("q")
    assert message.response_metadata["tool_call_retries"] == 1
    # The scripted backend counts a prompt's words; the first request was abandoned at its
    # fourth token, before its end event, so its prompt is counted separately.
    first, repair = (len(prompt.split()) for prompt, _ in backend.requests)
    assert message.usage_metadata == {
        "input_tokens": first + repair,
        "output_tokens": 4 + 1,
        "total_tokens": first + repair + 5,
    }


def test_retries_run_out_into_invalid_tool_calls():
    llm, backend = make(max_tool_call_retries=1)
    bad = '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>'
    backend.script([bad], ['{"name": "add", "arguments": {"a": '])
    message = llm.bind_tools([add]).invoke("q")
    assert message.tool_calls == []
    assert len(message.invalid_tool_calls) == 1
    assert message.invalid_tool_calls[0]["error"]
    assert message.response_metadata["tool_call_retries"] == 1


def test_unknown_tool_is_invalid_and_schema_failure_goes_to_the_executor():
    llm, backend = make(max_tool_call_retries=0)
    backend.script([call_block("nope", {}) + call_block("add", {"a": "x"})])
    message = llm.bind_tools([add]).invoke("q")
    # The unknown tool stays invalid; the parsed call of a bound tool is kept for the
    # tool executor (ToolNode answers the model with the validation error).
    assert [c["name"] for c in message.invalid_tool_calls] == ["nope"]
    assert "unknown tool 'nope'" in message.invalid_tool_calls[0]["error"]
    [call] = message.tool_calls
    assert (call["name"], call["args"]) == ("add", {"a": "x"})
    errors = message.response_metadata["tool_call_schema_errors"]
    assert list(errors) == [call["id"]]
    assert errors[call["id"]].startswith("arguments for 'add' fail its schema:")
    assert list(message.response_metadata["invalid_tool_call_errors"]) == [
        message.invalid_tool_calls[0]["id"]
    ]


def test_schema_failure_after_repairs_run_out_streams_like_invoke():
    llm, backend = make(max_tool_call_retries=1)
    bad = call_block("add", {"a": 1, "b": "two"})
    backend.script([bad], [bad[len("<tool_call>") :]], [bad], [bad[len("<tool_call>") :]])
    bound = llm.bind_tools([add])
    invoked = bound.invoke("q")
    merged = None
    for chunk in bound.stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    for message in (invoked, merged):
        assert message.invalid_tool_calls == []
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [
            ("add", {"a": 1, "b": "two"})
        ]
        assert message.response_metadata["tool_call_retries"] == 1
        [error] = message.response_metadata["tool_call_schema_errors"].values()
        assert "'two' is not of type 'integer' (at b)" in error
        assert [c["id"] for c in message.tool_calls] == list(
            message.response_metadata["tool_call_schema_errors"]
        )
    assert len(backend.requests) == 4


def test_an_unparseable_block_stays_invalid_when_repairs_run_out():
    llm, backend = make(max_tool_call_retries=0)
    backend.script(['<tool_call>{"name": "add", "arguments": {"a": </tool_call>'])
    message = llm.bind_tools([add]).invoke("q")
    assert message.tool_calls == []
    assert "not valid JSON" in message.invalid_tool_calls[0]["error"]
    assert "tool_call_schema_errors" not in message.response_metadata


def test_tool_choice_any_forces_call_with_grammar():
    llm, backend = make()
    backend.info_value = BackendInfo(max_stop_sequences=4, supports_grammar=True)
    backend.script(['{"name": "weather", "arguments": {"city": "Paris"}}'])
    message = llm.bind_tools([add, weather], tool_choice="any").invoke("q")
    prompt, params = backend.requests[0]
    assert prompt.endswith("<|beginofsystem|><tool_call>")
    assert params.grammar is not None
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("weather", {"city": "Paris"})]


def test_tool_choice_by_name_restricts_grammar_and_validation():
    llm, backend = make(max_tool_call_retries=0)
    backend.script(['{"name": "add", "arguments": {"a": 1, "b": 2}}'])
    message = llm.bind_tools(
        [add, weather], tool_choice={"type": "function", "function": {"name": "weather"}}
    ).invoke("q")
    schema = backend.requests[0][1].grammar.value
    assert schema["properties"]["name"] == {"const": "weather"}
    assert message.tool_calls == []
    assert "add" in message.invalid_tool_calls[0]["error"]


def test_grammar_refusal_falls_back_to_prompting_and_is_remembered():
    llm, backend = make()
    backend.script(
        Reply(error=K2GrammarUnsupportedError("grammar is not supported", status=422)),
        ['{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'],
        ['{"name": "add", "arguments": {"a": 3, "b": 4}}'],
    )
    bound = llm.bind_tools([add], tool_choice="add")
    assert bound.invoke("q").tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert backend.requests[0][1].grammar is not None
    assert backend.requests[1][1].grammar is None
    assert bound.invoke("q").tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert backend.requests[2][1].grammar is None


def test_a_retry_after_a_grammar_refusal_does_not_send_the_grammar_again():
    llm, backend = make(max_retries=1)
    backend.script(
        Reply(error=K2GrammarUnsupportedError("grammar is not supported", status=422)),
        Reply(error=K2UnavailableError("loading", status=503)),
        ['{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'],
    )
    message = llm.bind_tools([add], tool_choice="add").invoke("q")
    assert message.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert [params.grammar is not None for _, params in backend.requests] == [True, False, False]
    assert "refuses grammars" in message.response_metadata["grammar_fallback"]


def test_tool_choice_none_offers_no_tools():
    llm, backend = make()
    backend.script(["plain"])
    llm.bind_tools([add], tool_choice="none").invoke("q")
    assert "<tools>" not in backend.requests[0][0]


def test_bad_tool_definitions_raise_at_bind_time():
    llm, _ = make()
    with pytest.raises(ToolDefinitionError, match="repeats the name 'add'"):
        llm.bind_tools([add, add])
    with pytest.raises(ToolDefinitionError, match="no name"):
        llm.bind_tools([{"type": "function", "function": {"name": "", "parameters": {}}}])
    with pytest.raises(ToolDefinitionError, match="type 'object'"):
        llm.bind_tools([{"name": "f", "description": "d", "parameters": {"type": "string"}}])
    with pytest.raises(K2ConfigError, match="bound tool names"):
        llm.bind_tools([add], tool_choice="weather")


def test_bind_tools_accepts_every_kind_of_tool():
    class Lookup(BaseModel):
        """Look a word up."""

        word: str

    def plain(x: int) -> int:
        """Double x."""
        return 2 * x

    openai_dict = {
        "type": "function",
        "function": {
            "name": "od",
            "description": "d",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    llm, backend = make()
    backend.script(["ok"])
    llm.bind_tools([add, Lookup, plain, openai_dict]).invoke("q")
    prompt = backend.requests[0][0]
    for name in ("add", "Lookup", "plain", "od"):
        assert f'"name": "{name}"' in prompt


def test_agent_history_round_trip_prompt_is_prefix_stable():
    llm, backend = make()
    first = "Let me add." + call_block("add", {"a": 2, "b": 3})
    backend.script([first, "<|endoftext|>"], ["It is 5.", "<|endoftext|>"])
    bound = llm.bind_tools([add])
    history = [HumanMessage("2+3?")]
    reply = bound.invoke(history)
    history += [reply, ToolMessage("5", tool_call_id=reply.tool_calls[0]["id"])]
    final = bound.invoke(history)
    assert final.content == "It is 5."
    first_prompt, second_prompt = backend.requests[0][0], backend.requests[1][0]
    assert second_prompt.startswith(first_prompt + first + "<|endoftext|>")
    assert second_prompt.endswith("<tool_response>5</tool_response>")


# ----------------------------------------------------------------------------- transport


def test_overloaded_is_retried_then_succeeds():
    llm, backend = make(max_retries=2)
    backend.script(Reply(error=K2OverloadedError("busy", status=429)), ["ok"])
    assert llm.invoke("q").content == "ok"
    assert len(backend.requests) == 2


def test_validation_error_is_not_retried():
    llm, backend = make(max_retries=3)
    backend.script(Reply(error=K2ValidationError("bad", status=422)), ["never"])
    with pytest.raises(K2ValidationError):
        llm.invoke("q")
    assert len(backend.requests) == 1


def test_stream_cut_after_output_raises_with_partial_text():
    llm, backend = make(max_retries=3)
    backend.script(
        Reply(tokens=["par", "tial", "x"], error=K2OverloadedError("cut"), error_after=2)
    )
    received: list[object] = []
    stream = llm.stream("q")
    with pytest.raises(K2StreamInterruptedError) as info:
        received.extend(chunk.content for chunk in stream)
    assert info.value.partial_text == "partial"
    assert "".join(received) == "partial"
    assert len(backend.requests) == 1


def test_special_token_events_keep_their_text():
    llm, backend = make()
    backend.script(
        [
            TokenEvent("<tool_call>", special=True),
            '[{"name": "add", "arguments": {"a": 1, "b": 1}}]',
            TokenEvent("</tool_call>", special=True),
        ]
    )
    message = llm.bind_tools([add]).invoke("q")
    assert message.tool_calls[0]["args"] == {"a": 1, "b": 1}


def test_special_end_token_of_any_spelling_ends_the_turn():
    llm, backend = make()
    backend.script(["Done", TokenEvent("</s>", special=True), "garbage"])
    assert llm.invoke("q").content == "Done"


def test_held_stop_prefix_is_released_at_a_special_end_token():
    llm, backend = make(stop=["ENDX"])
    backend.script(["value EN", TokenEvent("<|endoftext|>", special=True)])
    assert llm.invoke("q").content == "value EN"


def test_assistant_message_from_tool_calls_renders_back():
    message = AIMessage("x", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c"}])
    assert message.tool_calls[0]["name"] == "add"


def test_streaming_field_streams_invoke_through_callbacks():
    from langchain_core.callbacks import BaseCallbackHandler

    class Collect(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tokens: list[str] = []

        def on_llm_new_token(self, token: str, **kwargs: object) -> None:
            self.tokens.append(token)

    llm, backend = make(streaming=True)
    backend.script(["Hel", "lo", "!"])
    handler = Collect()
    message = llm.invoke("q", config={"callbacks": [handler]})
    assert message.content == "Hello!"
    assert [t for t in handler.tokens if t] == ["Hel", "lo", "!"]
    assert message.usage_metadata is not None


def test_backends_are_told_whether_anyone_watches_the_tokens():
    llm, backend = make()
    broken = '<tool_call>[{"name": "add", "arguments": {"a": 1, "b": }}]</tool_call>'
    backend.script(["x"], ["x"], [broken], ['{"name": "add", "arguments": {"a": 1, "b": 2}}'])
    llm.invoke("q")
    list(llm.stream("q"))
    # A repair inside an invoke is still not watched: the whole answer may come at once.
    message = llm.bind_tools([add]).invoke("q")
    assert message.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert backend.live == [False, True, False, False]


async def test_async_backends_are_told_too():
    llm, backend = make()
    backend.script(["x"], ["x"])
    await llm.ainvoke("q")
    [chunk async for chunk in llm.astream("q")]
    assert backend.live == [False, True]


def test_tools_edited_in_place_between_calls_are_not_served_from_a_stale_cache():
    llm, backend = make(max_tool_call_retries=0)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    function = {"name": "f", "description": "one", "parameters": schema}
    tools = [{"type": "function", "function": function}]
    bound = llm.bind_tools(tools)
    call = call_block("f", {"a": "text"})
    backend.script([call], [call])
    first = bound.invoke("q")
    assert first.response_metadata["tool_call_schema_errors"]  # "text" is not an integer
    # Edit the bound list's schema in place: the next call renders and validates anew.
    bound_tools = bound.kwargs["tools"]
    bound_tools[0]["function"]["description"] = "two"
    bound_tools[0]["function"]["parameters"]["properties"]["a"] = {"type": "string"}
    second = bound.invoke("q")
    assert second.tool_calls[0]["args"] == {"a": "text"}
    assert '"description": "two"' in backend.requests[1][0]
    assert '"description": "one"' in backend.requests[0][0]


def test_fit_repair_cuts_max_new_tokens_to_the_room_left() -> None:
    from langchain_k2._prompt import DEFAULT_FORMAT
    from langchain_k2._turn import GenerationRequest, Turn, TurnConfig
    from langchain_k2.backends._base import GenerationParams

    params = GenerationParams(max_new_tokens=64)
    config = TurnConfig("p", params, DEFAULT_FORMAT, window=1000, max_input_tokens=990)
    turn = Turn(config)
    repair = GenerationRequest("p + text <tool_call>", params, repair=True)
    assert turn.fit_repair(repair, 900) is repair  # 900 + 64 fits
    cut = turn.fit_repair(repair, 950)
    assert cut is not None
    assert (cut.prompt, cut.params.max_new_tokens, cut.repair) == (repair.prompt, 50, True)
    assert turn.fit_repair(repair, 991) is None  # longer than the server takes
    assert turn.fit_repair(repair, 1000) is None  # no room for a single token
    unknown = Turn(TurnConfig(prompt="p", params=params, fmt=DEFAULT_FORMAT))
    assert unknown.fit_repair(repair, 10**6) is repair  # limits unknown: sent as it is


def test_a_repair_without_room_keeps_the_block_and_says_why() -> None:
    backend = ScriptedBackend()
    model = ChatK2(backend=backend, max_new_tokens=8)
    size = model.get_num_tokens_from_messages([HumanMessage("one two three")], tools=[add])
    backend.info_value = BackendInfo(
        max_stop_sequences=4, max_total_tokens=size + 8, max_input_tokens=size + 2
    )
    broken = '[{"name": "add", "arguments": {"a": 1, "b": }}]'
    backend.script(["word " * 6, "<tool_call>", broken, "</tool_call>"])
    message = model.bind_tools([add]).invoke("one two three")
    assert [c["args"] for c in message.invalid_tool_calls] == [
        "<tool_call>" + broken + "</tool_call>"
    ]
    assert len(backend.requests) == 1  # the repair was never sent
    repair_prompt = backend.requests[0][0] + "word " * 6 + "<tool_call>"
    assert message.response_metadata["tool_call_repair_skipped"] == (
        f"the repair prompt takes {len(repair_prompt.split())} tokens, which leaves no room "
        f"in the context window ({size + 8} tokens, at most {size + 2} of prompt): the "
        "malformed call is kept as an invalid tool call"
    )
    assert message.response_metadata["tool_call_retries"] == 0


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)
@pytest.mark.parametrize("window", [1024, 16384])
def test_context_window_sets_llama_cpps_n_ctx(tmp_path, window):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")  # never loaded: info() reads the window from n_ctx
    llm = ChatK2(model_path=str(gguf), context_window=window)
    info = llm._get_backend().info()
    assert (info.max_total_tokens, info.max_input_tokens) == (window, window - 1)


@pytest.mark.parametrize("path", ["invoke", "stream", "ainvoke", "astream"])
async def test_a_failed_repair_request_keeps_the_first_generation_and_says_why(path) -> None:
    llm, backend = make()
    broken = '[{"name": "add", "arguments": {"a": 1, "b": }}]'
    backend.script(
        ["Let me add. ", "<tool_call>", broken, "</tool_call>", " more"],
        Reply(error=K2ValidationError("TGI refused: grammar too complex", status=422)),
    )
    bound = llm.bind_tools([add])
    if path == "invoke":
        message = bound.invoke("q")
    elif path == "ainvoke":
        message = await bound.ainvoke("q")
    else:
        chunks = (
            list(bound.stream("q")) if path == "stream" else [c async for c in bound.astream("q")]
        )
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
    assert message.content == "Let me add. "
    assert message.tool_calls == []
    assert [c["args"] for c in message.invalid_tool_calls] == [
        "<tool_call>" + broken + "</tool_call>"
    ]
    assert len(backend.requests) == 2  # the repair was sent, and refused
    assert message.response_metadata["tool_call_repair_skipped"] == (
        "the repair request failed (K2ValidationError: TGI refused: grammar too complex): "
        "the malformed call is kept as an invalid tool call"
    )


def test_v1_streaming_keeps_text_and_tool_calls_in_separate_blocks():
    """Issue 15 item 7: with output_version="v1", a text block and the first tool-call
    chunk must not share index 0 (LangChain would merge the call into the text block)."""
    llm, backend = make(output_version="v1", max_tool_call_retries=0)
    two = json.dumps([{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "nope"}])
    backend.script(
        ["Let me ", "add.", f"<tool_call>{two}</tool_call>", "Then ", "more.", "<|endoftext|>"]
    )
    merged = None
    for chunk in llm.bind_tools([add]).stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    blocks = merged.content_blocks
    # langchain-core leaves a streamed invalid call as its "tool_call_chunk" block.
    assert [b["type"] for b in blocks] == ["text", "tool_call", "tool_call_chunk", "text"]
    assert [b.get("index") for b in merged.tool_call_chunks] == [1, 2]
    assert blocks[0]["text"] == "Let me add."
    assert "id" not in blocks[0]
    assert "name" not in blocks[0]
    [call] = merged.tool_calls
    assert (blocks[1]["id"], blocks[1]["name"], blocks[1]["args"]) == (
        call["id"],
        "add",
        {"a": 1, "b": 2},
    )
    assert blocks[2]["name"] == "nope"
    assert blocks[3]["text"] == "Then more."
    assert merged.text == "Let me add.Then more."
    # The same turn invoked: the same blocks (ids aside).
    backend.script(
        ["Let me ", "add.", f"<tool_call>{two}</tool_call>", "Then ", "more.", "<|endoftext|>"]
    )
    invoked = llm.bind_tools([add]).invoke("q")
    # invoke holds the text as one block (it is one string), then the calls.
    assert [b["type"] for b in invoked.content_blocks] == ["text", "tool_call"]
    assert [c["name"] for c in invoked.invalid_tool_calls] == ["nope"]
    assert invoked.text == merged.text
    assert [(c["name"], c["args"]) for c in invoked.tool_calls] == [("add", {"a": 1, "b": 2})]


def test_v0_streaming_is_unchanged_by_the_shared_index_counter():
    llm, backend = make()
    backend.script(["Adding.", call_block("add", {"a": 1, "b": 2}), "<|endoftext|>"])
    merged = None
    for chunk in llm.bind_tools([add]).stream("q"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.content == "Adding."
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert [c["index"] for c in merged.tool_call_chunks] == [0]
