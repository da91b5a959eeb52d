"""TGI's wire format offline: request bodies, answers, SSE framing, error mapping.

The pure functions of `langchain_k2.backends._tgi_wire`, then `TGIBackend` over an
``httpx.MockTransport`` installed with huggingface_hub's own ``set_client_factory`` (which
also shows that a user's client factory is honoured), for answers the loopback server
cannot give: a streamed request answered with JSON, an error page from a proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import close_session, set_client_factory
from huggingface_hub.utils._http import default_client_factory

from langchain_k2 import (
    K2AuthenticationError,
    K2BackendError,
    K2ContextOverflowError,
    K2GenerationError,
    K2GrammarUnsupportedError,
    K2IncompleteGenerationError,
    K2NotFoundError,
    K2OverloadedError,
    K2ServerError,
    K2UnavailableError,
    K2ValidationError,
)
from langchain_k2.backends._base import FinalEvent, GenerationParams, TokenEvent
from langchain_k2.backends._tgi import TGIBackend
from langchain_k2.backends._tgi_wire import (
    StreamDecoder,
    answer_events,
    error_body,
    error_from,
    request_body,
)
from langchain_k2.backends._wire import SSEDecoder, retry_after

URL = "http://tgi.test"


def tok(text: str, special: bool = False) -> dict[str, Any]:
    return {"id": 1, "text": text, "logprob": -0.5, "special": special}


def answer(tokens: list[dict[str, Any]], **details: Any) -> dict[str, Any]:
    base = {"finish_reason": "eos_token", "generated_tokens": len(tokens), "seed": None}
    return {
        "generated_text": "".join(t["text"] for t in tokens if not t["special"]),
        "details": {**base, "prefill": [], "tokens": tokens, **details},
    }


# ------------------------------------------------------------------ request bodies


def test_request_body_greedy_with_stops_and_grammar() -> None:
    grammar = {"type": "json", "value": {"type": "object"}}
    params = GenerationParams(
        max_new_tokens=32, temperature=0, top_p=0.5, stop=("<|endoftext|>",), grammar=grammar
    )
    body = request_body("P", params, stream=False)
    assert body == {
        "inputs": "P",
        "parameters": {
            "max_new_tokens": 32,
            "do_sample": False,
            "stop": ["<|endoftext|>"],
            "grammar": grammar,
            "details": True,
            "return_full_text": False,
        },
    }
    assert request_body("P", params, stream=True)["stream"] is True


def test_request_body_sampling() -> None:
    params = GenerationParams(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=3)
    parameters = request_body("P", params, stream=True)["parameters"]
    assert parameters["temperature"] == 0.7
    assert parameters["do_sample"] is True
    assert (parameters["top_p"], parameters["top_k"]) == (0.9, 40)
    assert (parameters["repetition_penalty"], parameters["seed"]) == (1.1, 3)


# ------------------------------------------------------------------ non-streamed answers


def test_answer_joins_ordinary_runs_and_keeps_specials_in_place() -> None:
    tokens = [
        tok("Let"),
        tok(" me"),
        tok("<tool_call>", special=True),
        tok('{"name"'),
        tok(': "a"}'),
        tok("</tool_call>", special=True),
        tok("<|endoftext|>", special=True),
    ]
    events = answer_events([answer(tokens, seed=9)], {"x-prompt-tokens": "12"}, URL)
    assert events == [
        TokenEvent("Let me"),
        TokenEvent("<tool_call>", special=True),
        TokenEvent('{"name": "a"}'),
        TokenEvent("</tool_call>", special=True),
        TokenEvent("<|endoftext|>", special=True),
        FinalEvent(finish_reason="eos_token", input_tokens=12, output_tokens=7, seed=9),
    ]


def test_answer_from_generate_route_is_a_dict_and_a_missing_header_is_none() -> None:
    events = answer_events(answer([tok("ok")]), {}, URL)
    assert events == [TokenEvent("ok"), FinalEvent("eos_token", None, 1, None)]


def test_answer_with_no_tokens() -> None:
    events = answer_events(answer([], finish_reason="length"), {"x-prompt-tokens": "3"}, URL)
    assert events == [FinalEvent("length", 3, 0, None)]


@pytest.mark.parametrize(
    "doc",
    [
        {"generated_text": "hi"},  # details=True was ignored: not TGI (or a proxy ate them)
        {"generated_text": "hi", "details": None},
        [{"generated_text": "a"}, {"generated_text": "b"}],
        "hi",
        {"choices": []},  # an OpenAI-style route
    ],
)
def test_answer_without_token_details_is_refused_clearly(doc: Any) -> None:
    with pytest.raises(K2BackendError, match="without token details, which is not a TGI answer"):
        answer_events(doc, {}, URL)


# ------------------------------------------------------------------ SSE framing


def test_sse_decoder_framing() -> None:
    decoder = SSEDecoder()
    lines = [
        ": keep-alive",
        "event: message",
        "id: 7",
        "data:no-space",
        "data:  two spaces",
        "",
        "",
        "retry: 100",
        "data: last",
    ]
    out = [decoder.feed(line) for line in lines]
    assert out == [None, None, None, None, None, "no-space\n two spaces", None, None, None]
    assert decoder.flush() == "last"
    assert decoder.flush() is None


def stream_doc(text: str, special: bool = False, **details: Any) -> str:
    doc: dict[str, Any] = {"index": 1, "token": tok(text, special), "generated_text": None}
    doc["details"] = details or None
    return "data:" + json.dumps(doc)


def decode(lines: list[str]) -> list[Any]:
    decoder = StreamDecoder(URL)
    events: list[Any] = []
    for line in lines:
        events += decoder.line(line)
    return events + decoder.end()


def test_stream_decoder_tokens_and_final() -> None:
    final = {"finish_reason": "length", "generated_tokens": 2, "seed": 4, "input_length": 9}
    lines = [stream_doc("Hi"), "", stream_doc("<|endoftext|>", special=True, **final)]
    assert decode(lines) == [
        TokenEvent("Hi"),
        TokenEvent("<|endoftext|>", special=True),
        FinalEvent("length", 9, 2, 4),
    ]


def test_stream_decoder_ignores_a_done_marker() -> None:
    final = {"finish_reason": "eos_token", "generated_tokens": 1, "seed": None, "input_length": 2}
    lines = [stream_doc("x", **final), "", "data: [DONE]", ""]
    assert decode(lines)[-1] == FinalEvent("eos_token", 2, 1, None)


def test_stream_that_ends_before_its_last_event_raises_retryable() -> None:
    with pytest.raises(K2UnavailableError, match="ended before its last event") as info:
        decode([stream_doc("Hi"), ""])
    assert info.value.retryable


def test_stream_event_that_is_not_json_is_refused() -> None:
    with pytest.raises(K2BackendError, match="not a TGI answer"):
        decode(["data: <html>", ""])


@pytest.mark.parametrize(
    ("error_type", "expected", "status"),
    [
        ("validation", K2ValidationError, 422),
        ("generation", K2GenerationError, 424),
        ("overloaded", K2OverloadedError, 429),
        ("incomplete_generation", K2IncompleteGenerationError, 500),
        ("something_new", K2GenerationError, None),  # an error event: generation failed
    ],
)
def test_error_events_map_by_type(
    error_type: str, expected: type[K2BackendError], status: int | None
) -> None:
    line = "data:" + json.dumps({"error": "it broke", "error_type": error_type})
    with pytest.raises(expected, match="it broke") as info:
        decode([stream_doc("a"), "", line, ""])
    assert type(info.value) is expected
    assert info.value.status == status
    assert "in the stream" in str(info.value)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "body", "expected", "fragment"),
    [
        (
            422,
            {"error": "Input validation error: `temperature` must be strictly positive"},
            K2ValidationError,
            "use temperature=0",
        ),
        (
            422,
            {"error": "Input validation error: `stop` supports up to 4 stop sequences. Given: 5"},
            K2ValidationError,
            "--max-stop-sequences",
        ),
        (
            422,
            {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048"},
            K2ContextOverflowError,
            "--max-total-tokens",
        ),
        (
            422,
            {"error": "Grammar and tools are not supported by this model", "error_type": "grammar"},
            K2GrammarUnsupportedError,
            "--disable-grammar-support",
        ),
        (424, {"error": "CUDA OOM", "error_type": "generation"}, K2GenerationError, "CUDA OOM"),
        (429, {"error": "Model is overloaded"}, K2OverloadedError, "raise max_retries"),
        (
            500,
            {"error": "x", "error_type": "incomplete_generation"},
            K2IncompleteGenerationError,
            "x",
        ),
        (502, "<html>Bad Gateway</html>", K2UnavailableError, "Bad Gateway"),
        (503, {"message": "loading"}, K2UnavailableError, "loading"),
        (504, "", K2UnavailableError, "HTTP 504"),
        (401, {"error": "no"}, K2AuthenticationError, "set hf_token"),
        (403, {"error": "no"}, K2AuthenticationError, "set hf_token"),
        (404, "Not Found", K2NotFoundError, "base URL"),
        (500, {"error": "Internal error"}, K2ServerError, "failed (500): Internal error"),
    ],
)
def test_error_answers(
    status: int, body: Any, expected: type[K2BackendError], fragment: str
) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    message, error_type = error_body(raw)
    err = error_from(status, message, error_type, URL)
    assert type(err) is expected
    assert fragment in str(err)
    retried = status in {429, 502, 503, 504} or expected is K2IncompleteGenerationError
    assert err.retryable == retried


def test_error_body_is_capped_and_decoded_leniently() -> None:
    message, error_type = error_body(b"\xff" + b"x" * 100_000)
    assert error_type is None
    assert len(message) <= 64 * 1024
    assert message.startswith("\ufffd")


def test_retry_after_forms() -> None:
    assert retry_after("0") == 0.0
    assert retry_after("-3") == 0.0
    assert retry_after("1.5") == 1.5
    assert retry_after("nan") is None
    assert retry_after("Wed, 25 Nov 2026 06:00:00 GMT", now=1795586400.0 + 30) == 0.0
    assert retry_after("not a date") is None


# ------------------------------------------------------------ TGIBackend over a mock transport


@pytest.fixture
def transport() -> Iterator[Callable[[Callable[[httpx.Request], httpx.Response]], None]]:
    """Install a handler as huggingface_hub's HTTP client (``set_client_factory``)."""

    def install(handler: Callable[[httpx.Request], httpx.Response]) -> None:
        set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handler)))

    yield install
    set_client_factory(default_client_factory)
    close_session()


def test_a_streamed_request_answered_with_json_is_refused(transport: Any) -> None:
    transport(lambda request: httpx.Response(200, json={"generated_text": "hi"}))
    backend = TGIBackend(URL)
    with pytest.raises(K2BackendError, match="instead of an event stream"):
        list(backend.stream("P", GenerationParams()))


def test_requests_carry_the_user_agent_and_only_the_given_token(transport: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        doc = [answer([tok("ok")])]
        return httpx.Response(200, json=doc, headers={"x-prompt-tokens": "4"})

    transport(handler)
    events = list(TGIBackend(URL).stream("P", GenerationParams(), live=False))
    assert events[-1] == FinalEvent("eos_token", 4, 1, None)
    assert "authorization" not in seen[0].headers
    assert seen[0].headers["user-agent"].startswith("langchain-k2/")
    assert json.loads(seen[0].content)["inputs"] == "P"
    assert "stream" not in json.loads(seen[0].content)


def test_an_error_page_on_a_stream_is_read_and_mapped(transport: Any) -> None:
    page = "<html>" + "x" * 200_000 + "</html>"
    transport(lambda request: httpx.Response(503, text=page, headers={"retry-after": "2"}))
    with pytest.raises(K2UnavailableError, match="503") as info:
        list(TGIBackend(URL).stream("P", GenerationParams()))
    assert info.value.retry_after == 2.0
