"""The raw-completion wire of vLLM, SGLang and the llama.cpp servers, offline.

Request bodies byte for byte per engine, stream decoding (usage chunk, ``[DONE]``,
SGLang's cumulative text, error events inside a 200 stream), error bodies mapped onto the
error tree, and engine detection (`identify`, then `AutoBackend` over an
``httpx.MockTransport`` installed with huggingface_hub's ``set_client_factory``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import close_session, set_client_factory
from huggingface_hub.utils._http import default_client_factory

from langchain_k2 import (
    ChatK2,
    K2AuthenticationError,
    K2BackendError,
    K2ConfigError,
    K2ContextOverflowError,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2NotFoundError,
    K2OverloadedError,
    K2ServerError,
    K2UnavailableError,
)
from langchain_k2.backends._base import FinalEvent, GenerationParams, TokenEvent
from langchain_k2.backends._completions import CompletionsBackend
from langchain_k2.backends._completions_wire import (
    StreamDecoder,
    answer_events,
    error_body,
    error_from,
    request_body,
)
from langchain_k2.backends._factory import AutoBackend, identify, make_backend

URL = "http://engine.test"
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
GRAMMAR = {"type": "json", "value": SCHEMA}
FULL = GenerationParams(
    max_new_tokens=64,
    temperature=0.7,
    top_p=0.9,
    top_k=40,
    repetition_penalty=1.1,
    seed=7,
    stop=("<|endoftext|>",),
)


def wire(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


# ------------------------------------------------------------------ request bodies


def test_vllm_body_keeps_special_tokens_sends_every_field_and_asks_for_usage() -> None:
    body = request_body("vllm", "P", FULL, stream=True)
    assert wire(body) == (
        '{"prompt":"P","max_tokens":64,"temperature":0.7,"top_p":0.9,"top_k":40,'
        '"repetition_penalty":1.1,"stop":["<|endoftext|>"],"seed":7,'
        '"skip_special_tokens":false,"spaces_between_special_tokens":false,'
        '"include_stop_str_in_output":false,"stream":true,'
        '"stream_options":{"include_usage":true}}'
    )


def test_vllm_whole_answer_has_no_stream_options_and_constraint_is_structured_outputs() -> None:
    params = GenerationParams(max_new_tokens=16, temperature=0, grammar=GRAMMAR)
    body = request_body("vllm", "P", params, stream=False)
    assert wire(body) == (
        '{"prompt":"P","max_tokens":16,"temperature":0,"skip_special_tokens":false,'
        '"spaces_between_special_tokens":false,"include_stop_str_in_output":false,'
        '"structured_outputs":{"json":' + wire(SCHEMA) + '},"stream":false}'
    )
    assert "guided_json" not in body


def test_sglang_native_body_with_json_schema_as_a_string() -> None:
    params = GenerationParams(max_new_tokens=32, temperature=0, stop=("</s>",), grammar=GRAMMAR)
    body = request_body("sglang", "P", params, stream=True)
    assert wire(body) == (
        '{"text":"P","sampling_params":{"max_new_tokens":32,"temperature":0,"stop":["</s>"],'
        '"skip_special_tokens":false,"spaces_between_special_tokens":false,'
        '"json_schema":' + json.dumps(json.dumps(SCHEMA)) + '},"stream":true}'
    )
    assert json.loads(body["sampling_params"]["json_schema"]) == SCHEMA


def test_sglang_refuses_a_seed_it_would_not_honour() -> None:
    with pytest.raises(K2ConfigError, match="seed= cannot be sent to SGLang"):
        request_body("sglang", "P", FULL, stream=False)


def test_llama_server_body_uses_n_predict_and_json_schema() -> None:
    params = GenerationParams(max_new_tokens=8, temperature=0, repetition_penalty=1.2, seed=1)
    body = request_body("llama.cpp", "P", params, stream=True)
    assert wire(body) == (
        '{"prompt":"P","n_predict":8,"temperature":0,"repeat_penalty":1.2,"seed":1,"stream":true}'
    )
    constrained = request_body("llama.cpp", "P", GenerationParams(grammar=GRAMMAR), stream=False)
    assert constrained["json_schema"] == SCHEMA


def test_llama_cpp_python_gets_gbnf_converted_on_the_client() -> None:
    seen: list[str] = []

    def convert(schema_text: str) -> str:
        seen.append(schema_text)
        return 'root ::= "{}"'

    params = GenerationParams(max_new_tokens=8, grammar=GRAMMAR)
    body = request_body("llama-cpp-python", "P", params, stream=False, gbnf=convert)
    assert (
        wire(body) == '{"prompt":"P","max_tokens":8,"grammar":"root ::= \\"{}\\"","stream":false}'
    )
    assert json.loads(seen[0]) == SCHEMA


def test_llama_cpp_python_without_llama_cpp_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_grammar", None)
    with pytest.raises(K2ConfigError, match="json_schema_to_gbnf: pip install"):
        request_body("llama-cpp-python", "P", GenerationParams(grammar=GRAMMAR), stream=False)


@pytest.mark.parametrize("engine", ["llama.cpp", "llama-cpp-python"])
def test_a_regex_constraint_is_refused_where_no_field_takes_it(engine: str) -> None:
    params = GenerationParams(grammar={"type": "regex", "value": "[0-9]+"})
    with pytest.raises(K2ConfigError, match="cannot take a 'regex' grammar"):
        request_body(engine, "P", params, stream=False)
    assert request_body("vllm", "P", params, stream=False)["structured_outputs"] == {
        "regex": "[0-9]+"
    }


# ------------------------------------------------------------------ answers


def test_whole_answers_of_each_engine() -> None:
    vllm = {
        "choices": [{"text": "a<tool_call>", "finish_reason": "stop", "stop_reason": "</s>"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    assert answer_events("vllm", vllm, URL) == [
        TokenEvent("a<tool_call>"),
        FinalEvent("stop_sequence", 5, 2),
    ]
    sglang = {
        "text": "hi",
        "meta_info": {
            "finish_reason": {"type": "length"},
            "prompt_tokens": 3,
            "completion_tokens": 1,
        },
    }
    assert answer_events("sglang", sglang, URL) == [TokenEvent("hi"), FinalEvent("length", 3, 1)]
    llama = {
        "content": "ok",
        "stop": True,
        "stop_type": "eos",
        "tokens_evaluated": 9,
        "tokens_predicted": 2,
    }
    assert answer_events("llama.cpp", llama, URL) == [
        TokenEvent("ok"),
        FinalEvent("eos_token", 9, 2),
    ]


def test_an_answer_that_is_not_the_engines_is_refused_clearly() -> None:
    with pytest.raises(K2BackendError, match="not a vLLM answer"):
        answer_events("vllm", {"generated_text": "hi"}, URL)


def feed(decoder: StreamDecoder, lines: list[str]) -> list[Any]:
    events: list[Any] = []
    for line in lines:
        events += decoder.line(line)
    return events + decoder.end()


def test_vllm_stream_with_usage_chunk_and_done() -> None:
    chunk = (
        '{"id":"c","object":"text_completion","choices":[{"index":0,"text":%s,'
        '"finish_reason":%s,"stop_reason":null}]}'
    )
    lines = [
        "data: " + chunk % ('"Hel"', "null"),
        "",
        "data: " + chunk % ('"lo"', '"stop"'),
        "",
        'data: {"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,'
        '"total_tokens":6}}',
        "",
        "data: [DONE]",
        "",
    ]
    assert feed(StreamDecoder("vllm", URL), lines) == [
        TokenEvent("Hel"),
        TokenEvent("lo"),
        FinalEvent("eos_token", 4, 2),
    ]


def test_llama_cpp_python_stream_has_no_usage() -> None:
    lines = ['data: {"choices":[{"text":"x","finish_reason":"length"}]}', "", "data: [DONE]", ""]
    assert feed(StreamDecoder("llama-cpp-python", URL), lines) == [
        TokenEvent("x"),
        FinalEvent("length", None, None),
    ]


def test_llama_server_stream_ends_on_its_stop_event() -> None:
    lines = [
        'data: {"content":"Hi","stop":false}',
        "",
        'data: {"content":"","stop":true,"stop_type":"limit","tokens_evaluated":3,'
        '"tokens_predicted":1}',
        "",
    ]
    assert feed(StreamDecoder("llama.cpp", URL), lines) == [
        TokenEvent("Hi"),
        FinalEvent("length", 3, 1),
    ]


def test_sglang_cumulative_stream_becomes_deltas() -> None:
    events = [
        {"text": "<tool_call>", "meta_info": {"finish_reason": None, "completion_tokens": 1}},
        {"text": "<tool_call>[{", "meta_info": {"finish_reason": None, "completion_tokens": 2}},
        {
            "text": "<tool_call>[{}]",
            "meta_info": {
                "finish_reason": {"type": "stop", "matched": 2},
                "prompt_tokens": 8,
                "completion_tokens": 3,
            },
        },
    ]
    lines = [x for doc in events for x in ("data: " + json.dumps(doc), "")] + ["data: [DONE]", ""]
    assert feed(StreamDecoder("sglang", URL), lines) == [
        TokenEvent("<tool_call>"),
        TokenEvent("[{"),
        TokenEvent("}]"),
        FinalEvent("eos_token", 8, 3),
    ]


def test_an_error_event_inside_a_200_stream_raises_the_servers_words() -> None:
    decoder = StreamDecoder("vllm", URL)
    decoder.line('data: {"choices":[{"text":"a","finish_reason":null}]}')
    assert decoder.line("") == [TokenEvent("a")]
    decoder.line(
        'data: {"error":{"message":"engine died","type":"InternalServerError",'
        '"param":null,"code":500}}'
    )
    with pytest.raises(K2BackendError, match="engine died") as info:
        decoder.line("")
    assert info.value.status == 500


def test_an_sglang_abort_raises() -> None:
    decoder = StreamDecoder("sglang", URL)
    decoder.line('data: {"text":"a","meta_info":{"finish_reason":{"type":"abort","message":"x"}}}')
    with pytest.raises(K2GenerationError, match="aborted the generation in the stream"):
        decoder.line("")


def test_a_stream_cut_before_its_finish_reason_is_retryable() -> None:
    decoder = StreamDecoder("vllm", URL)
    decoder.line('data: {"choices":[{"text":"a","finish_reason":null}]}')
    decoder.line("")
    with pytest.raises(K2UnavailableError, match="ended before its finish reason"):
        decoder.end()


# ------------------------------------------------------------------ errors


def test_error_bodies_nested_flat_and_plain() -> None:
    nested = b'{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}'
    flat = b'{"object":"error","message":"too long","type":"BadRequestError","code":400}'
    assert error_body(nested) == ("bad", "BadRequestError")
    assert error_body(flat) == ("too long", "BadRequestError")
    assert error_body(b'{"detail":"Not Found"}') == ("Not Found", None)


@pytest.mark.parametrize(
    ("status", "message", "raised"),
    [
        (400, "This model's maximum context length is 4096 tokens", K2ContextOverflowError),
        (
            400,
            "The provided JSON schema contains features not supported by xgrammar",
            K2GrammarUnsupportedError,
        ),
        (429, "busy", K2OverloadedError),
        (503, "loading", K2UnavailableError),
        (500, "EngineCore died", K2ServerError),
    ],
)
def test_error_mapping(status: int, message: str, raised: type[Exception]) -> None:
    err = error_from("vllm", status, message, None, URL, retry_after_s=2.0)
    assert type(err) is raised
    assert err.status == status
    assert "vLLM at http://engine.test" in str(err)
    assert err.retryable is (status in {429, 503})


def test_a_404_names_engine_and_endpoint() -> None:
    err = error_from("sglang", 404, "Not Found", None, URL)
    assert type(err) is K2NotFoundError
    assert "No SGLang route at http://engine.test (404" in str(err)
    assert "engine= must name the engine" in str(err)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_an_authentication_error(engine: str, status: int) -> None:
    err = error_from(engine, status, '{"error": "Unauthorized"}', None, URL)
    assert type(err) is K2AuthenticationError
    assert err.status == status
    assert not err.retryable
    assert "refused the credentials" in str(err)


# ------------------------------------------------------------------ detection


@pytest.mark.parametrize(
    ("route", "doc", "engine"),
    [
        ("/info", {"model_id": "LLM360/K2-Chat", "max_total_tokens": 8192}, "tgi"),
        ("/server_info", {"context_length": 8192, "model_path": "LLM360/K2-Chat"}, "sglang"),
        (
            "/get_server_info",
            {"router_manager": None, "routers_count": 1, "workers_count": 2},
            "sglang",
        ),
        ("/model_info", {"model_path": "LLM360/K2-Chat", "is_generation": True}, "sglang"),
        ("/version", {"version": "0.11.2"}, "vllm"),
        ("/props", {"default_generation_settings": {"n_ctx": 4096}}, "llama.cpp"),
        (
            "/openapi.json",
            {"paths": {"/v1/completions": {}, "/extras/tokenize": {}}},
            "llama-cpp-python",
        ),
        ("/version", {"version": "1.0", "service": "something else"}, None),
        ("/info", {"name": "a web app"}, None),
    ],
)
def test_identify(route: str, doc: Any, engine: str | None) -> None:
    assert identify(route, 200, doc) == engine


@pytest.fixture
def transport() -> Iterator[Callable[[Callable[[httpx.Request], httpx.Response]], None]]:
    def install(handler: Callable[[httpx.Request], httpx.Response]) -> None:
        set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handler)))

    yield install
    set_client_factory(default_client_factory)
    close_session()


def test_auto_probes_once_and_delegates(transport: Any) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "0.11.2"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "k2", "max_model_len": 8192}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    transport(handler)
    backend = make_backend("auto", URL)
    assert isinstance(backend, AutoBackend)
    assert backend.info().max_total_tokens == 8192
    assert backend.name == "vllm"
    assert isinstance(backend.inner, CompletionsBackend)
    backend.info()
    assert seen == [
        "GET /info",
        "GET /server_info",
        "GET /get_server_info",
        "GET /model_info",
        "GET /version",
        "GET /v1/models",
    ]


def test_auto_against_an_unknown_server_says_what_it_tried(transport: Any) -> None:
    transport(lambda request: httpx.Response(404, text="nope"))
    llm = ChatK2(endpoint_url=URL, max_retries=0)
    with pytest.raises(K2ConfigError) as info:
        llm.invoke("hi")
    message = str(info.value)
    assert "Could not tell which engine serves http://engine.test" in message
    assert "GET /info -> 404; GET /server_info -> 404" in message
    assert "GET /openapi.json -> 404" in message
    assert "Pass engine=" in message


def test_engine_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2_ENGINE", "sglang")
    llm = ChatK2(endpoint_url=URL)
    assert llm.engine == "sglang"
    assert llm._get_ls_params()["ls_engine"] == "sglang"  # type: ignore[typeddict-item]
