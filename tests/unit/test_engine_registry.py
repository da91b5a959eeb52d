"""The engine registry: what derives from it, and a made-up engine added in one file.

The engine ``Literal`` types, ``ChatK2.engine``'s choices, the probe list and the labels
all come from `langchain_k2.backends._engines.ENGINES` (pinned here). Then "toy"
(`tests/support/toy_engine.py`, one module) is registered with one line and driven through a
real loopback HTTP server: invoke, stream, token counts, the context window and model id
from its info route, auto-detection by its probe, and a 404 naming ``engine=``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, get_args

import pytest

from langchain_k2 import ChatK2, K2ConfigError, K2NotFoundError
from langchain_k2.backends._engines import (
    ENGINE_CHOICES,
    ENGINES,
    LABELS,
    PROBES,
    EngineChoice,
    EngineName,
)
from langchain_k2.backends._factory import make_backend
from tests.support import toy_engine


def test_the_engine_types_and_lists_derive_from_the_registry() -> None:
    assert get_args(EngineName) == tuple(ENGINES)
    assert get_args(EngineChoice) == ENGINE_CHOICES == ("auto", *ENGINES)
    assert get_args(ChatK2.model_fields["engine"].annotation) == ENGINE_CHOICES
    assert tuple(ENGINES) == ("tgi", "vllm", "sglang", "llama.cpp", "llama-cpp-python")
    assert LABELS == {
        "tgi": "TGI",
        "vllm": "vLLM",
        "sglang": "SGLang",
        "llama.cpp": "llama-server",
        "llama-cpp-python": "llama-cpp-python's server",
    }
    assert PROBES == (
        "/info",
        "/server_info",
        "/get_server_info",
        "/model_info",
        "/version",
        "/props",
        "/openapi.json",
    )
    assert all(hooks.name == name for name, hooks in ENGINES.items())
    assert {name: hooks.context_setting.split()[-1] for name, hooks in ENGINES.items()} == {
        "tgi": "--max-input-tokens",
        "vllm": "--max-model-len",
        "sglang": "--context-length",
        "llama.cpp": "--ctx-size",
        "llama-cpp-python": "--n_ctx",
    }


class _Toy(BaseHTTPRequestHandler):
    """The toy engine's server: one scripted answer ("Hello!"), requests logged."""

    log: ClassVar[list[tuple[str, str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.log.append(("GET", self.path, None))
        if self.path == "/toy/about":
            self._send(200, {"toy": True, "window": 2048, "model": "LLM360/K2-Chat-toy"})
        else:
            self._send(404, {"error": "no such route"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.log.append(("POST", self.path, body))
        if self.path == "/toy/count":
            self._send(200, {"n": len(body["input"].split())})
        elif self.path != "/toy/run":
            self._send(404, {"error": "no such route"})
        elif not body["stream"]:
            self._send(200, {"output": "Hello!", "why": "eos", "used": [5, 2]})
        else:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            events = [{"delta": "Hel"}, {"delta": "lo!", "why": "eos", "used": [5, 2]}]
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            self.close_connection = True


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setitem(ENGINES, "toy", toy_engine.HOOKS)  # the one registry line
    _Toy.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Toy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_made_up_engine_in_one_file_serves_invoke_stream_and_counts(toy: str) -> None:
    llm = ChatK2(backend=make_backend("toy", toy), max_new_tokens=16)
    message = llm.invoke("hi")
    assert message.content == "Hello!"
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 5
    assert message.response_metadata["engine"] == "toy"
    assert message.response_metadata["model_name"] == "LLM360/K2-Chat-toy"
    streamed = "".join(str(chunk.content) for chunk in llm.stream("hi"))
    assert streamed == "Hello!"
    runs = [body for method, path, body in _Toy.log if path == "/toy/run"]
    assert [body["stream"] for body in runs] == [False, True]
    assert runs[0]["model"] == "LLM360/K2-Chat-toy"  # read from its info route
    assert llm.get_num_tokens("one two three") == 3
    assert llm.profile is not None
    assert llm.profile.get("max_input_tokens") == 2048


def test_a_made_up_engine_is_found_by_its_probe(toy: str) -> None:
    backend = make_backend("auto", toy)
    llm = ChatK2(backend=backend, max_new_tokens=16)
    assert llm.invoke("hi").content == "Hello!"
    assert backend.name == "toy"
    probed = [path for method, path, _ in _Toy.log if method == "GET"]
    assert probed[: len(PROBES) + 1] == [*PROBES, "/toy/about"]  # the built-in ones first


def test_a_made_up_engine_reports_a_missing_route_naming_engine(toy: str) -> None:
    llm = ChatK2(backend=make_backend("toy", f"{toy}/wrong"), max_new_tokens=16, max_retries=1)
    named = r"No Toy route .* engine= must name the engine it runs \(now 'toy'\)"
    with pytest.raises(K2NotFoundError, match=named):
        llm.invoke("hi")


def test_a_bogus_k2_engine_variable_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K2_ENGINE", "bogus")
    with pytest.raises(K2ConfigError, match=r"K2_ENGINE='bogus' \(an environment variable\)"):
        ChatK2(endpoint_url="http://127.0.0.1:1")
    monkeypatch.setenv("K2_ENGINE", "sglang")
    assert ChatK2(endpoint_url="http://127.0.0.1:1").engine == "sglang"


class _LlamaCppPython(_Toy):
    """llama-cpp-python's server, as far as its model list and completions go."""

    def do_GET(self) -> None:
        self.log.append(("GET", self.path, None))
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "/models/k2-chat.Q4.gguf"}]})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.log.append(("POST", self.path, body))
        choice = {"text": "Hi.", "index": 0, "finish_reason": "stop"}
        usage = {"prompt_tokens": 4, "completion_tokens": 2}
        self._send(200, {"object": "text_completion", "choices": [choice], "usage": usage})


def test_llama_cpp_python_reads_and_sends_the_served_model() -> None:
    _LlamaCppPython.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LlamaCppPython)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        # The served file is a K2-Chat GGUF: its family's format is picked from the id, so
        # the explicit (other) model_name is only what is sent, with no mismatch warning.
        message = ChatK2(
            endpoint_url=url, engine="llama-cpp-python", model_name="Other/Model"
        ).invoke("hi")
    finally:
        server.shutdown()
        server.server_close()
    assert message.content == "Hi."
    assert message.response_metadata["model_name"] == "/models/k2-chat.Q4.gguf"
    assert message.response_metadata["prompt_format"] == "k2-chat"
    sent = [body for method, path, body in _LlamaCppPython.log if path == "/v1/completions"]
    assert sent[0]["model"] == "Other/Model"  # the user's name, set explicitly, is sent
