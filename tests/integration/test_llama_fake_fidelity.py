"""The fake llama-server checked against the real one: the same requests, the same shapes.

Each request goes to the session's real ``llama-server`` (``real_servers.py``: SmolLM2's
GGUF, ``--special``, alias ``SmolLM2-135M-Instruct``) and to a fake llama-server
(``fake_engine/llama.py``) whose EOS is SmolLM2's ``<|im_end|>``. What is compared is what a
client reads, not the generated text: the status, the JSON keys and their types (`shape`),
the stop fields, the error messages word for word, and the headers. Where the fake keeps
only part of a real object (``generation_settings``, `/props`) the fake's keys must be a
subset of the real ones, with the same types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of
from tests.support.real_servers import SERVED_NAME, RealServer

pytestmark = [pytest.mark.real_llama_server, pytest.mark.timeout(600)]

EOS = "<|im_end|>"
PROMPT = f"<|im_start|>user\nSay yes.{EOS}\n<|im_start|>assistant\n"
"""SmolLM2 answers ``Yes.`` and its EOS to this (greedy)."""
PARTIAL = ("generation_settings", "props")
"""Where the fake keeps a subset of the real server's keys."""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeEngine]:
    """A fake llama-server with SmolLM2's EOS and alias, answering ``Yes.`` and the EOS."""
    config = {"eos_token": EOS, "model_id": SERVED_NAME, "max_total_tokens": 2048}
    with FakeEngine(engine="llama.cpp", config=config) as server:
        server.set_default(reply(tokens=tokens_of("Yes", ".", special(EOS))))
        yield server


@pytest.fixture
def both(real_llama_server: RealServer, fake: FakeEngine) -> Iterator[list[httpx.Client]]:
    """An HTTP client on the real server and one on the fake, in that order."""
    with (
        httpx.Client(base_url=real_llama_server.url, timeout=120) as real,
        httpx.Client(base_url=fake.url, timeout=30) as faked,
    ):
        yield [real, faked]


def shape(value: Any) -> Any:
    """The JSON value's structure: keys, and the type of each leaf (int and float: number)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def same_shape(real: Any, fake: Any, where: str = "", partial: bool = False) -> None:
    """Assert the fake's JSON has the real one's shape (a subset under `PARTIAL` keys)."""
    real_s, fake_s = shape(real), shape(fake)
    partial = partial or where.rsplit(".", 1)[-1] in PARTIAL
    if isinstance(real_s, dict) and isinstance(fake_s, dict):
        extra = set(fake_s) - set(real_s)
        assert not extra, f"{where}: keys only the fake has: {sorted(extra)}"
        missing = set(real_s) - set(fake_s)
        assert partial or not missing, f"{where}: keys the fake lacks: {sorted(missing)}"
        for key in fake_s:
            same_shape(real[key], fake[key], f"{where}.{key}", partial)
    elif isinstance(real, list) and isinstance(fake, list):
        if real and fake:
            same_shape(real[0], fake[0], f"{where}[0]", partial)
    else:
        assert real_s == fake_s, f"{where}: real {real_s!r}, fake {fake_s!r}"


def events(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of an SSE body (``[DONE]`` as the string)."""
    out: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def post(clients: list[httpx.Client], path: str, body: Any) -> list[httpx.Response]:
    return [client.post(path, json=body) for client in clients]


def test_answer_keeps_the_eos_text_and_echoes_the_prompt(both: list[httpx.Client]) -> None:
    real, fake = post(both, "/completion", {"prompt": PROMPT, "n_predict": 40, "temperature": 0})
    assert real.status_code == fake.status_code == 200
    same_shape(real.json(), fake.json(), "answer")
    for answer in (real.json(), fake.json()):
        assert answer["content"].endswith(EOS)
        assert (answer["stop_type"], answer["stopping_word"]) == ("eos", "")
        assert answer["prompt"] == PROMPT
        assert answer["generation_settings"]["n_predict"] == 40


def test_a_stop_string_that_is_the_eos_text_is_an_eos_stop(both: list[httpx.Client]) -> None:
    body = {"prompt": PROMPT, "n_predict": 40, "temperature": 0, "stop": [EOS]}
    real, fake = post(both, "/completion", body)
    same_shape(real.json(), fake.json(), "answer")
    for answer in (real.json(), fake.json()):
        assert not answer["content"].endswith(EOS)
        assert (answer["stop_type"], answer["stopping_word"]) == ("eos", EOS)


def test_stream_events_and_headers(both: list[httpx.Client]) -> None:
    body = {"prompt": PROMPT, "n_predict": 40, "temperature": 0, "stream": True}
    real, fake = post(both, "/completion", body)
    for response in (real, fake):
        assert response.headers["server"] == "llama.cpp"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
    real_events, fake_events = events(real), events(fake)
    same_shape(real_events[0], fake_events[0], "event")
    same_shape(real_events[-1], fake_events[-1], "last")
    for stream in (real_events, fake_events):
        assert [e["id_slot"] for e in stream[:-1]] == [-1] * (len(stream) - 1)
        assert all(len(e["tokens"]) == 1 for e in stream[:-1])
        assert stream[-2]["content"] == EOS
        assert stream[-1]["stop"] is True
        assert "[DONE]" not in stream


def test_openai_completions_answer_and_stream(both: list[httpx.Client]) -> None:
    body = {"prompt": PROMPT, "max_tokens": 40, "temperature": 0}
    real, fake = post(both, "/v1/completions", body)
    same_shape(real.json(), fake.json(), "completion")
    for answer in (real.json(), fake.json()):
        assert answer["choices"][0]["text"].endswith(EOS)
    real, fake = post(both, "/v1/completions", {**body, "stream": True})
    real_events, fake_events = events(real), events(fake)
    assert real_events[-1] == fake_events[-1] == "[DONE]"
    same_shape(real_events[0], fake_events[0], "chunk")
    same_shape(real_events[-2], fake_events[-2], "last chunk")
    assert fake.headers["x-accel-buffering"] == real.headers["x-accel-buffering"] == "no"


def test_props_and_models(both: list[httpx.Client]) -> None:
    real, fake = (client.get("/props") for client in both)
    assert real.headers["server"] == fake.headers["server"] == "llama.cpp"
    same_shape(real.json(), fake.json(), "props")
    for props in (real.json(), fake.json()):
        assert props["model_alias"] == SERVED_NAME
        assert props["model_path"].endswith(".gguf")
    real, fake = (client.get("/v1/models") for client in both)
    same_shape(real.json(), fake.json(), "models")
    for models in (real.json(), fake.json()):
        assert models["data"][0]["id"] == models["models"][0]["name"] == SERVED_NAME
        assert models["data"][0]["meta"]["n_ctx"] == 2048


ERRORS = {
    "no prompt": ("/completion", {"n_predict": 4}),
    "n_predict a string": ("/completion", {"prompt": "x", "n_predict": "a"}),
    "max_tokens a string": ("/v1/completions", {"prompt": "x", "max_tokens": "a"}),
    "body an array": ("/completion", [1]),
    "grammar unterminated": ("/completion", {"prompt": "x", "grammar": 'root ::= "a'}),
    "grammar unbalanced": ("/completion", {"prompt": "x", "grammar": 'root ::= ("a"'}),
    "grammar without root": ("/completion", {"prompt": "x", "grammar": 'foo ::= "a"'}),
    "grammar undefined rule": ("/completion", {"prompt": "x", "grammar": "root ::= y"}),
    "trigger not preserved": (
        "/completion",
        {
            "prompt": "x",
            "grammar": 'root ::= "a"',
            "grammar_lazy": True,
            "grammar_triggers": [{"type": 1, "value": EOS}],
        },
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_refusals_in_the_real_words(both: list[httpx.Client], case: str) -> None:
    path, body = ERRORS[case]
    real, fake = post(both, path, body)
    assert real.status_code == fake.status_code == 400
    assert real.headers["server"] == fake.headers["server"] == "llama.cpp"
    assert real.json() == fake.json()


ACCEPTED = {
    "grammar": {"grammar": 'root ::= "Yes" x\nx ::= [.!] # a comment'},
    "preserved trigger": {
        "grammar": 'root ::= "a"',
        "grammar_lazy": True,
        "grammar_triggers": [{"type": 1, "value": EOS}],
        "preserved_tokens": [EOS],
    },
    "a float n_predict": {"n_predict": 2.7},
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_what_both_accept(both: list[httpx.Client], case: str) -> None:
    body = {"prompt": PROMPT, "n_predict": 2, "temperature": 0, **ACCEPTED[case]}
    real, fake = post(both, "/completion", body)
    assert real.status_code == fake.status_code == 200, real.text
    same_shape(real.json(), fake.json(), "answer")
