"""What trying a real vLLM by hand found (issue 22), pinned on the fake vLLM as well.

The same behaviours are tested through the real server in ``test_real_vllm.py``; here they
run everywhere, fast: a schema vLLM refuses (400 "Grammar error") is about that schema, so
the next request is constrained again; the context-window error names vLLM's own
``--max-model-len``; the fake answers like vLLM 0.32 where the window is concerned (a
prompt that fits with ``max_tokens`` over the window: 200, the completion cut to the room
left; a prompt alone over it: 400).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from langchain_k2 import ChatK2, ContextWindowExceededError
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import http_error, reply

REFUSAL = (
    "Grammar error: Invalid regex pattern '[a-z' in json schema (xgrammar could not compile it)"
)


@pytest.fixture
def vllm(fake_vllm_server: FakeEngine) -> FakeEngine:
    fake_vllm_server.reset()
    return fake_vllm_server


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    options: dict[str, Any] = {"engine": "vllm", "timeout": 10, "max_new_tokens": 32}
    return ChatK2(endpoint_url=server.url, **{**options, **kwargs})


def generation_bodies(server: FakeEngine) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests("/v1/completions") if r["method"] == "POST"]


class Code(BaseModel):
    code: str


def test_one_refused_schema_does_not_switch_off_constraints(vllm: FakeEngine) -> None:
    vllm.script(
        http_error(400, error=REFUSAL),
        reply(text='{"code": "abc"}'),
        reply(text='{"code": "xyz"}'),
    )
    llm = chat(vllm)
    first = llm.with_structured_output(Code, include_raw=True).invoke("Give a code.")
    assert first["parsed"] == Code(code="abc")
    note = first["raw"].response_metadata["grammar_fallback"]
    assert "Invalid regex pattern '[a-z'" in note  # vLLM's own words
    second = llm.with_structured_output(Code, include_raw=True).invoke("Another code.")
    assert second["parsed"] == Code(code="xyz")
    assert "grammar_fallback" not in second["raw"].response_metadata
    sent = generation_bodies(vllm)
    assert ["structured_outputs" in body for body in sent] == [True, False, True]
    assert llm._get_backend().info().supports_grammar is True


def test_the_window_error_names_vllms_setting(vllm: FakeEngine) -> None:
    vllm.configure(max_total_tokens=60)
    with pytest.raises(ContextWindowExceededError) as caught:
        chat(vllm, max_new_tokens=20).invoke("word " * 50)
    text = str(caught.value)
    assert "context window of 60 (prompt + new tokens, vLLM's --max-model-len)" in text
    assert "larger --max-model-len" in text
    assert "TGI" not in text
    assert generation_bodies(vllm) == []


def _tokens(server: FakeEngine, prompt: str) -> int:
    doc = httpx.post(f"{server.url}/tokenize", json={"prompt": prompt}, timeout=10).json()
    return int(doc["count"])


def test_fake_cuts_max_tokens_to_the_room_left_like_vllm(vllm: FakeEngine) -> None:
    vllm.configure(max_total_tokens=40)
    vllm.set_default(reply(text=" ".join(["word"] * 30)))
    prompt = "word " * 30
    used = _tokens(vllm, prompt)
    body = {"prompt": prompt, "max_tokens": 50, "temperature": 0}
    answer = httpx.post(f"{vllm.url}/v1/completions", json=body, timeout=10)
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 40 - used


def test_fake_refuses_a_prompt_alone_over_the_window_like_vllm(vllm: FakeEngine) -> None:
    vllm.configure(max_total_tokens=40)
    vllm.set_default(reply(text="never"))
    body = {"prompt": "word " * 45, "max_tokens": 5}
    answer = httpx.post(f"{vllm.url}/v1/completions", json=body, timeout=10)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "maximum context length is 40 tokens" in message
