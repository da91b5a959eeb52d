"""Tests of the fake TGI server itself, so that it stays faithful to TGI 3.3.6.

Every JSON document and SSE event body is validated against TGI's own OpenAPI components
(strictly: no key the description does not declare); the wire framing is checked on raw bytes;
and `huggingface_hub.InferenceClient` (the client the TGI backend uses) is run against every
scripted fault to pin the exception it raises.
"""

from __future__ import annotations

import importlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import InferenceClient, get_session
from huggingface_hub import __version__ as hub_version
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)

from tests.support.fake_engine import (
    FakeEngine,
    FakeEngineError,
    hang,
    http_error,
    reply,
    reset_before_headers,
    special,
    tokens_of,
)
from tests.support.fake_engine.openapi_schema import validate as validate_schema

TOOL_TOKENS = tokens_of("Sure", special("<tool_call>"), '{"name": "f"}', special("</tool_call>"))
STREAM_KEYS = ["index", "token", "generated_text", "details"]
TOKEN_KEYS = ["id", "text", "logprob", "special"]


def post(tgi: FakeEngine, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(tgi.url + path, json=body, timeout=10, **kw)


def sse_bodies(raw: bytes) -> list[dict[str, Any]]:
    """Split a TGI SSE body into its JSON event bodies, checking axum's framing on the way."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data:{"), event  # axum 0.7: no space after `data:`
        assert "\n" not in event
    return [json.loads(event[len("data:") :]) for event in events]


def stream(tgi: FakeEngine, path: str, body: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with httpx.stream("POST", tgi.url + path, json=body, timeout=10) as response:
        raw = response.read()
    return response, sse_bodies(raw)


def client(tgi: FakeEngine, timeout: float | None = None) -> InferenceClient:
    return InferenceClient(base_url=tgi.url, timeout=timeout)


def drain(events: Any, into: list[Any] | None = None) -> None:
    """Consume a huggingface_hub stream (keeping what arrived before an error, if asked)."""
    for event in events:
        if into is not None:
            into.append(event)


# --------------------------------------------------------------------------- documents and framing


def test_info_matches_openapi_and_config(tgi: FakeEngine) -> None:
    info = httpx.get(tgi.url + "/info").json()
    validate_schema(info, "Info", strict=True)
    assert info["model_id"] == "LLM360/K2-Chat"
    assert (info["max_stop_sequences"], info["max_input_tokens"], info["max_total_tokens"]) == (
        4,
        1024,
        2048,
    )
    tgi.configure(max_stop_sequences=2, model_id="org/other", max_total_tokens=4096)
    info = httpx.get(tgi.url + "/info").json()
    assert (info["max_stop_sequences"], info["model_id"], info["max_total_tokens"]) == (
        2,
        "org/other",
        4096,
    )
    tgi.reset()
    assert httpx.get(tgi.url + "/info").json()["max_stop_sequences"] == 4


def test_health_ok_then_unhealthy(tgi: FakeEngine) -> None:
    ok = httpx.get(tgi.url + "/health")
    assert (ok.status_code, ok.content) == (200, b"")
    tgi.configure(healthy=False)
    down = httpx.get(tgi.url + "/health")
    assert down.status_code == 503
    assert down.json() == {"error": "unhealthy", "error_type": "healthcheck"}
    validate_schema(down.json(), "ErrorResponse", strict=True)


def test_generate_document_matches_openapi(tgi: FakeEngine) -> None:
    tgi.script(reply("Hello world!"), reply("Hello world!"))
    body = {"inputs": "<|beginofuser|>Hi<|beginofsystem|>", "parameters": {"details": True}}
    first = post(tgi, "/generate", body)
    second = post(tgi, "/generate", {**body, "parameters": {"details": True, "do_sample": True}})
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    doc = first.json()
    validate_schema(doc, "GenerateResponse", strict=True)
    assert list(doc) == ["generated_text", "details"]
    details = doc["details"]
    assert list(details) == ["finish_reason", "generated_tokens", "seed", "prefill", "tokens"]
    assert doc["generated_text"] == "Hello world!"
    assert [t["text"] for t in details["tokens"]] == ["Hello", " world", "!", "<|endoftext|>"]
    assert [t["special"] for t in details["tokens"]] == [False, False, False, True]
    assert all(list(t) == TOKEN_KEYS for t in details["tokens"])
    assert (details["finish_reason"], details["generated_tokens"]) == ("eos_token", 4)
    assert details["seed"] is None  # greedy: TGI reports no seed
    assert isinstance(second.json()["details"]["seed"], int)  # sampling: it does
    ids = [t["id"] for t in details["tokens"]]
    assert ids == [t["id"] for t in second.json()["details"]["tokens"]]  # deterministic ids
    assert first.headers["x-generated-tokens"] == "4"
    assert first.headers["x-prompt-tokens"] == "3"  # two markers and "Hi"


def test_compat_route_answers_an_array_with_full_text_by_default(tgi: FakeEngine) -> None:
    tgi.script(reply(" there"), reply(" there"), reply(" there"))
    default = post(tgi, "/", {"inputs": "Hi"}).json()
    explicit = post(tgi, "/", {"inputs": "Hi", "parameters": {"return_full_text": False}}).json()
    generate_route = post(tgi, "/generate", {"inputs": "Hi"}).json()
    assert isinstance(default, list)
    assert len(default) == 1
    for doc in (*default, *explicit, generate_route):
        validate_schema(doc, "GenerateResponse", strict=True)
    assert default[0]["generated_text"] == "Hi there"
    assert explicit[0]["generated_text"] == " there"
    assert generate_route["generated_text"] == " there"  # /generate defaults to false
    assert "details" not in default[0]  # details default to false on the wire


def test_stream_bytes_are_tgi_sse(tgi: FakeEngine) -> None:
    tgi.script(reply("Hello world!"))
    response, events = stream(
        tgi, "/generate_stream", {"inputs": "Hi", "parameters": {"details": True}}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert [e["index"] for e in events] == [1, 2, 3, 4]  # TGI counts from 1
    for event in events:
        validate_schema(event, "StreamResponse", strict=True)
        assert list(event) == STREAM_KEYS  # no top_tokens key unless asked for
        assert list(event["token"]) == TOKEN_KEYS
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    last = events[-1]
    assert last["generated_text"] == "Hello world!"
    assert last["details"] == {
        "finish_reason": "eos_token",
        "generated_tokens": 4,
        "seed": None,
        "input_length": 1,
    }
    assert last["token"] == {"id": 1, "text": "<|endoftext|>", "logprob": -0.002, "special": True}


def test_compat_stream_and_details_off(tgi: FakeEngine) -> None:
    tgi.script(reply("ok"))
    _, events = stream(tgi, "/", {"inputs": "Hi", "stream": True})
    assert events[-1]["details"] is None
    assert events[-1]["generated_text"] == "Hiok"  # `/` prepends the input by default


def test_special_tokens_are_skipped_in_generated_text(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=TOOL_TOKENS), reply(tokens=TOOL_TOKENS))
    doc = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"details": True}}).json()
    _, events = stream(tgi, "/generate_stream", {"inputs": "Hi"})
    assert doc["generated_text"] == events[-1]["generated_text"] == 'Sure{"name": "f"}'
    texts = [t["text"] for t in doc["details"]["tokens"]]
    assert texts == [e["token"]["text"] for e in events]
    assert "".join(texts) == 'Sure<tool_call>{"name": "f"}</tool_call><|endoftext|>'


def test_text_reply_is_split_by_the_tokenizer(tgi: FakeEngine) -> None:
    text = 'Let me check.<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    tgi.script(reply(text, append_eos=False), reply(text, finish_reason="length"))
    doc = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"details": True}}).json()
    tokens = doc["details"]["tokens"]
    assert "".join(t["text"] for t in tokens) == text
    assert {t["text"] for t in tokens if t["special"]} == {"<tool_call>", "</tool_call>"}
    assert doc["generated_text"] == 'Let me check.{"name": "f", "arguments": {}}'
    length = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"details": True}}).json()
    assert length["details"]["finish_reason"] == "length"  # no EOS appended when not eos_token
    assert length["details"]["tokens"][-1]["text"] == "</tool_call>"


def test_special_tokens_are_configurable(tgi: FakeEngine) -> None:
    tgi.configure(special_tokens=["<|endoftext|>"])
    tgi.script(reply("a<tool_call>b"))
    doc = post(tgi, "/generate", {"inputs": "Hi"}).json()
    assert doc["generated_text"] == "a<tool_call>b"


def test_stop_sequences_end_after_the_completing_token(tgi: FakeEngine) -> None:
    tgi.script(
        reply(tokens=tokens_of("a", " b", "ST", "OP", " c")),
        reply(tokens=tokens_of("a", "xSTOPy", " c")),
    )
    params = {"details": True, "stop": ["STOP"]}
    stopped = post(tgi, "/generate", {"inputs": "Hi", "parameters": params}).json()
    assert stopped["generated_text"] == "a bSTOP"  # the stop string stays in the text
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["details"]["generated_tokens"] == 4
    # TGI matches `.*STOP$` on the text so far: a stop string inside a token does not stop.
    inside = post(tgi, "/generate", {"inputs": "Hi", "parameters": params}).json()
    assert inside["generated_text"] == "axSTOPy c"
    assert inside["details"]["finish_reason"] == "eos_token"


def test_max_new_tokens_truncates_with_length(tgi: FakeEngine) -> None:
    tgi.script(reply("one two three four"))
    _, events = stream(
        tgi,
        "/generate_stream",
        {"inputs": "Hi", "parameters": {"max_new_tokens": 2, "details": True}},
    )
    assert [e["token"]["text"] for e in events] == ["one", " two"]
    assert events[-1]["details"]["finish_reason"] == "length"
    assert events[-1]["details"]["generated_tokens"] == 2


def test_top_tokens_prefill_and_best_of(tgi: FakeEngine) -> None:
    tgi.script(reply("ok"), reply("ok"))
    _, events = stream(tgi, "/generate_stream", {"inputs": "Hi", "parameters": {"top_n_tokens": 1}})
    assert list(events[0]) == ["index", "token", "top_tokens", "generated_text", "details"]
    params = {"details": True, "decoder_input_details": True, "best_of": 2, "do_sample": True}
    doc = post(tgi, "/generate", {"inputs": "Hi there", "parameters": params}).json()
    validate_schema(doc, "GenerateResponse", strict=True)
    assert [p["text"] for p in doc["details"]["prefill"]] == ["Hi", " there"]
    assert doc["details"]["prefill"][0]["logprob"] is None
    assert len(doc["details"]["best_of_sequences"]) == 1


# --------------------------------------------------------------------------- TGI's validation

BIG = " ".join(["a"] * 2000)
MID = " ".join(["a"] * 1500)
VALIDATION_CASES = [
    ({"temperature": 0.0}, "Hi", "`temperature` must be strictly positive"),
    ({"top_p": 1.0}, "Hi", "`top_p` must be > 0.0 and < 1.0"),
    ({"top_p": 0}, "Hi", "`top_p` must be > 0.0 and < 1.0"),
    ({"top_k": 0}, "Hi", "`top_k` must be strictly positive"),
    ({"repetition_penalty": 0}, "Hi", "`repetition_penalty` must be strictly positive"),
    ({"frequency_penalty": 3}, "Hi", "`frequency_penalty` must be >= -2.0 and <= 2.0"),
    ({"typical_p": 1.5}, "Hi", "`typical_p` must be > 0.0 and < 1.0"),
    ({"max_new_tokens": 0}, "Hi", "`max_new_tokens` must be strictly positive"),
    ({"stop": list("abcde")}, "Hi", "`stop` supports up to 4 stop sequences. Given: 5"),
    (
        {"max_new_tokens": 100},
        BIG,
        "`inputs` tokens + `max_new_tokens` must be <= 2048. "
        "Given: 2000 `inputs` tokens and 100 `max_new_tokens`",
    ),
    ({"max_new_tokens": 10}, MID, "`inputs` must have less than 1024 tokens. Given: 1500"),
    ({}, "", "`inputs` cannot be empty"),
    ({"truncate": 0}, "Hi", "`truncate` must be strictly positive and less than 1024. Given: 0"),
    ({"top_n_tokens": 6}, "Hi", "`top_n_tokens` must be >= 0 and <= 5. Given: 6"),
    ({"best_of": 2}, "Hi", "you must use sampling when `best_of` is > 1"),
    (
        {"best_of": 2, "do_sample": True, "seed": 1},
        "Hi",
        "`seed` must not be set when `best_of` > 1",
    ),
]


@pytest.mark.parametrize(("params", "inputs", "message"), VALIDATION_CASES)
def test_validation_errors_are_422_with_tgi_messages(
    tgi: FakeEngine, params: dict[str, Any], inputs: str, message: str
) -> None:
    response = post(tgi, "/generate", {"inputs": inputs, "parameters": params})
    assert response.status_code == 422
    assert response.json() == {
        "error": f"Input validation error: {message}",
        "error_type": "validation",
    }
    validate_schema(response.json(), "ErrorResponse", strict=True)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 0.0}, "`temperature` must be strictly positive"),
        ({"stop": list("abcde")}, "`stop` supports up to 4 stop sequences. Given: 5"),
        (
            {"decoder_input_details": True},
            "`decoder_input_details` == true is not supported when streaming tokens",
        ),
        (
            {"best_of": 2, "do_sample": True},
            "`best_of` != 1 is not supported when streaming tokens",
        ),
    ],
)
def test_stream_validation_errors_are_error_events_on_200(
    tgi: FakeEngine, params: dict[str, Any], message: str
) -> None:
    tgi.script(reply("never sent"))
    response, events = stream(tgi, "/generate_stream", {"inputs": "Hi", "parameters": params})
    assert response.status_code == 200  # TGI's generate_stream yields the error as an event
    assert events == [{"error": f"Input validation error: {message}", "error_type": "validation"}]
    assert tgi.pending() == 1  # a request that fails validation consumes no reply


def test_grammar_validation(tgi: FakeEngine) -> None:
    tgi.set_default(reply('{"a": 1}'))
    good = {"type": "json", "value": {"properties": {"a": {"type": "integer"}}}}
    no_properties = {"type": "json", "value": {"type": "object"}}
    bad_string = {"type": "json", "value": "{not json"}
    assert (
        post(tgi, "/generate", {"inputs": "Hi", "parameters": {"grammar": good}}).status_code == 200
    )
    answer = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"grammar": no_properties}})
    assert answer.json()["error"] == (
        "Input validation error: grammar is not valid: Grammar must have a 'properties' field"
    )
    answer = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"grammar": bad_string}})
    assert answer.json()["error"].startswith("Input validation error: grammar is not valid: ")
    tgi.configure(grammar_enabled=False)
    answer = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"grammar": good}})
    assert answer.status_code == 422
    assert answer.json()["error"] == "Input validation error: grammar is not supported"


def test_body_errors_are_axum_rejections(tgi: FakeEngine) -> None:
    wrong_type = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"temperature": "hot"}})
    assert wrong_type.status_code == 422
    assert wrong_type.headers["content-type"].startswith("text/plain")
    assert wrong_type.text == (
        "Failed to deserialize the JSON body into the target type: "
        'parameters.temperature: invalid type: string "hot", expected f32'
    )
    missing = post(tgi, "/generate", {"parameters": {}})
    assert missing.text.endswith("missing field `inputs`")
    null_stop = post(tgi, "/generate", {"inputs": "Hi", "parameters": {"stop": None}})
    assert null_stop.status_code == 422
    bad_json = httpx.post(
        tgi.url + "/generate", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    no_ctype = httpx.post(tgi.url + "/generate", content=b'{"inputs": "Hi"}')
    assert no_ctype.status_code == 415


def test_tokenize_matches_openapi(tgi: FakeEngine) -> None:
    inputs = "<|beginofuser|>What's up?<|beginofsystem|>"
    tokens = post(tgi, "/tokenize", {"inputs": inputs}).json()
    validate_schema(tokens, "TokenizeResponse", strict=True)
    assert [t["text"] for t in tokens] == [
        "<|beginofuser|>",
        "What",
        "'",
        "s",
        " up",
        "?",
        "<|beginofsystem|>",
    ]
    assert all(inputs[t["start"] : t["stop"]] == t["text"] for t in tokens)


def test_metrics_are_plain_text(tgi: FakeEngine) -> None:
    tgi.script(reply("x"))
    post(tgi, "/generate", {"inputs": "Hi"})
    metrics = httpx.get(tgi.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "tgi_request_count 1" in metrics.text
    assert "tgi_request_success 1" in metrics.text


# --------------------------------------------------------------------------- scripting and records


def test_requests_are_recorded(tgi: FakeEngine) -> None:
    spec = reply("hi", seed=5)
    tgi.script(spec)
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}
    post(tgi, "/generate", body, headers={"X-Trace-Id": "abc"})
    httpx.get(tgi.url + "/info")
    records = tgi.requests()
    assert [r["path"] for r in records] == ["/generate", "/info"]  # control calls not recorded
    generate_record = tgi.requests("/generate")[0]
    assert generate_record["method"] == "POST"
    assert generate_record["headers"]["x-trace-id"] == "abc"
    assert generate_record["body"] == body
    assert (generate_record["reply"], generate_record["reply_source"]) == (spec, "script")
    assert generate_record["status"] == 200
    assert abs(generate_record["received_at"] - time.time()) < 60


def test_queue_is_fifo_then_default_then_500(tgi: FakeEngine) -> None:
    tgi.script(reply("first"), reply("second"))
    texts = [post(tgi, "/generate", {"inputs": "Hi"}).json()["generated_text"] for _ in range(2)]
    assert texts == ["first", "second"]
    empty = post(tgi, "/generate", {"inputs": "Hi"})
    assert empty.status_code == 500
    assert empty.json() == {
        "error": "fake TGI: no scripted reply left",
        "error_type": "incomplete_generation",
    }
    tgi.set_default(reply("default"))
    assert [
        post(tgi, "/generate", {"inputs": "Hi"}).json()["generated_text"] for _ in range(2)
    ] == [
        "default",
        "default",
    ]
    tgi.script(reply("queued"))
    assert post(tgi, "/generate", {"inputs": "Hi"}).json()["generated_text"] == "queued"
    assert tgi.requests()[-1]["reply_source"] == "script"


def test_control_api_rejects_bad_input(tgi: FakeEngine) -> None:
    with pytest.raises(FakeEngineError, match="unknown reply field"):
        tgi.script({"txt": "typo"})
    with pytest.raises(FakeEngineError, match="unknown config key"):
        tgi.configure(max_stop=2)
    with pytest.raises(FakeEngineError, match="either 'tokens' or 'text'"):
        tgi.script(reply("a", tokens=tokens_of("a")))
    with pytest.raises(FakeEngineError, match="HTTP error status"):
        tgi.script(reply("fine"), http_error(200))  # nothing is queued when one spec is bad
    assert tgi.pending() == 0


def test_unserved_paths_are_recorded(tgi: FakeEngine) -> None:
    assert post(tgi, "/v1/completions", {"prompt": "Hi"}).status_code == 404
    assert httpx.get(tgi.url + "/generate").status_code == 405
    assert [(r["path"], r["status"]) for r in tgi.requests()] == [
        ("/v1/completions", 404),
        ("/generate", 405),
    ]


def test_concurrency_limit_answers_overloaded(tgi: FakeEngine) -> None:
    tgi.configure(max_concurrent_requests=1)
    tgi.script(reply("slow", delay_s=0.5), reply("fast"))
    slow = threading.Thread(target=post, args=(tgi, "/generate", {"inputs": "Hi"}))
    slow.start()
    time.sleep(0.2)
    busy = post(tgi, "/generate", {"inputs": "Hi"})
    slow.join()
    assert busy.status_code == 429
    assert busy.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    assert post(tgi, "/generate", {"inputs": "Hi"}).json()["generated_text"] == "fast"


def test_latency_and_delays(tgi: FakeEngine) -> None:
    tgi.configure(latency_s=0.2)
    tgi.script(reply("a b", token_delay_s=0.1))
    start = time.monotonic()
    _, events = stream(tgi, "/generate_stream", {"inputs": "Hi"})
    assert time.monotonic() - start >= 0.4  # 0.2 latency + 2 gaps between 3 events
    assert len(events) == 3


def test_chat_completions_for_the_benchmark_peer(tgi: FakeEngine) -> None:
    tgi.script(reply("Hello there"), reply("Hello there"))
    body = {"model": "tgi", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
    doc = post(tgi, "/v1/chat/completions", body).json()
    validate_schema(doc, "ChatCompletion")
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "Hello there"}
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert doc["usage"]["completion_tokens"] == 3
    assert tgi.requests()[0]["body"] == body
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", tgi.url + "/v1/chat/completions", json=streamed) as response:
        raw = response.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    chunks = sse_bodies(raw[: -len("data: [DONE]\n\n")].encode())
    for chunk in chunks:
        validate_schema(chunk, "ChatCompletionChunk")
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == "Hello there"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == doc["usage"]


# --------------------------------------------------------------------------- huggingface_hub


def test_hf_client_non_stream_details(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=TOOL_TOKENS))
    out = client(tgi).text_generation("Hi", details=True, return_full_text=False, max_new_tokens=20)
    assert out.generated_text == 'Sure{"name": "f"}'
    assert [t.text for t in out.details.tokens][1] == "<tool_call>"
    assert out.details.finish_reason == "eos_token"
    sent = tgi.requests("/")[0]["body"]
    assert sent == {
        "inputs": "Hi",
        "parameters": {"details": True, "max_new_tokens": 20, "return_full_text": False},
    }  # huggingface_hub leaves `stream` out when it is false


def test_hf_client_stream_details(tgi: FakeEngine) -> None:
    tgi.script(reply(tokens=TOOL_TOKENS))
    hf = client(tgi)  # keep the client referenced while its stream is read
    events = list(hf.text_generation("Hi", details=True, stream=True, return_full_text=False))
    assert [e.token.text for e in events] == [t["text"] for t in TOOL_TOKENS] + ["<|endoftext|>"]
    assert [e.token.special for e in events][-1] is True
    assert events[-1].generated_text == 'Sure{"name": "f"}'
    assert events[-1].details.finish_reason == "eos_token"
    assert tgi.requests("/")[0]["body"]["stream"] is True


# The HTTP stack under huggingface_hub's client: httpx (hub 1.x) or its fork httpx2 (hub 2.x).
hub_httpx: Any = importlib.import_module(type(get_session()).__module__.split(".")[0])


def test_hf_stream_dies_with_its_client(tgi: FakeEngine) -> None:
    """huggingface_hub ties a stream to its client: drop the client, and reading fails."""
    tgi.script(reply("a b"))
    events = client(tgi).text_generation("Hi", stream=True)  # the client is garbage now
    with pytest.raises(hub_httpx.StreamClosed):
        drain(events)


HF_FAULTS = [
    # (spec, expected exception, stream items before it)
    (http_error(429, retry_after=7), OverloadedError, 0),
    (http_error(503), HfHubHTTPError, 0),  # proxy-like body: {"error"} only
    (http_error(503, "Model is loading", error_type="unavailable"), UnknownError, 0),
    (http_error(424), GenerationError, 0),
    (http_error(500), IncompleteGenerationError, 0),
    (reset_before_headers(), hub_httpx.ReadError, 0),
    (reset_before_headers(abort="close"), hub_httpx.RemoteProtocolError, 0),
    (reply("a b c d", error_event_after=2), GenerationError, 2),
    (reply("a b c d", error_event_after=0, error_type="overloaded"), OverloadedError, 0),
    (reply("a b c d", cut_after=2, abort="close"), hub_httpx.RemoteProtocolError, 2),
    (reply("a b c d", cut_after=2), hub_httpx.ReadError, 2),
]


@pytest.mark.parametrize(("spec", "expected", "items"), HF_FAULTS)
def test_hf_client_stream_faults(
    tgi: FakeEngine, spec: dict[str, Any], expected: Any, items: int
) -> None:
    tgi.script(spec)
    received: list[Any] = []
    hf = client(tgi)
    with pytest.raises(expected) as caught:
        drain(hf.text_generation("Hi", details=True, stream=True), received)
    assert len(received) == items
    if expected is OverloadedError and "retry_after" in spec:
        assert caught.value.__cause__.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (http_error(429, retry_after=7), OverloadedError),
        (http_error(503), HfHubHTTPError),
        (reset_before_headers(), hub_httpx.ReadError),
        (reply("a b c d", cut_after=2, abort="close"), hub_httpx.RemoteProtocolError),
        (reply("a b c d", error_event_after=2), GenerationError),  # non-stream: HTTP 424
    ],
)
def test_hf_client_non_stream_faults(tgi: FakeEngine, spec: dict[str, Any], expected: Any) -> None:
    tgi.script(spec)
    with pytest.raises(expected):
        client(tgi).text_generation("Hi", details=True, return_full_text=False)


def test_hf_client_validation_errors(tgi: FakeEngine) -> None:
    hf = client(tgi)
    with pytest.raises(ValidationError, match=re.escape("`top_p` must be > 0.0 and < 1.0")):
        hf.text_generation("Hi", top_p=1.0, return_full_text=False)
    with pytest.raises(ValidationError, match="`temperature` must be strictly positive"):
        drain(hf.text_generation("Hi", temperature=0.0, stream=True))


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_client_timeout_is_raised_as_its_hub_version_does(
    tgi: FakeEngine, streaming: bool
) -> None:
    tgi.script(hang())
    start = time.monotonic()
    hf = client(tgi, timeout=0.3)
    with pytest.raises((hub_httpx.ReadTimeout, InferenceTimeoutError)) as caught:
        drain(hf.text_generation("Hi", stream=streaming))
    assert time.monotonic() - start < 5
    if int(hub_version.split(".")[0]) >= 2:
        # huggingface_hub 2 wraps its stack's timeout in its own error.
        assert isinstance(caught.value, InferenceTimeoutError)
        assert isinstance(caught.value.__cause__, hub_httpx.ReadTimeout)
    else:
        # huggingface_hub 1 only maps the builtin TimeoutError; httpx's pass through.
        assert not isinstance(caught.value, (InferenceTimeoutError, TextGenerationError))
        assert isinstance(caught.value, hub_httpx.HTTPError)


# --------------------------------------------------------------------------- the process


def test_process_starts_and_stops_cleanly() -> None:
    server = FakeEngine()
    with server:
        pid, port = server.pid, server.port
        assert pid is not None
        assert httpx.get(server.url + "/health").status_code == 200
    assert server.pid is None
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.fake_engine.server", "--host", "0.0.0.0"],
        capture_output=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert b"loopback" in result.stderr


def test_tokenizer_file_option(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "<tool_call>": 3}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.add_special_tokens(["<tool_call>"])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    with FakeEngine(tokenizer=path) as server:
        tokens = post(server, "/tokenize", {"inputs": "hello world"}).json()
        assert [t["id"] for t in tokens] == [1, 2]
        server.script(reply(tokens=tokens_of("hello", special("<tool_call>"))))
        doc = post(server, "/generate", {"inputs": "hello", "parameters": {"details": True}}).json()
        assert [t["id"] for t in doc["details"]["tokens"]][:2] == [1, 3]
