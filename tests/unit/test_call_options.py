"""One call's options, parsed once (`langchain_k2._call_options`): what a caller sees.

A per-call option overrides its field, ``None`` included (``temperature=None`` asks for the
server's default although the field is set); an option not given leaves the field; a value
of the wrong kind fails naming the option, before anything is sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from langchain_k2 import ChatK2, K2ConfigError
from tests.support.scripted_backend import ScriptedBackend


def model(**fields: Any) -> tuple[ChatK2, ScriptedBackend]:
    backend = ScriptedBackend()
    return ChatK2(backend=backend, retry_backoff=0.0, **fields), backend


def test_a_sampling_option_overrides_its_field_and_none_is_a_value() -> None:
    llm, backend = model(temperature=0.5, top_k=40, seed=7)
    backend.script(["ok", "<|endoftext|>"], ["ok", "<|endoftext|>"])
    llm.invoke("q", temperature=None, seed=3)
    llm.invoke("q")
    overridden, kept = (params for _, params in backend.requests)
    assert (overridden.temperature, overridden.top_k, overridden.seed) == (None, 40, 3)
    assert (kept.temperature, kept.top_k, kept.seed) == (0.5, 40, 7)


def test_a_bad_sampling_value_names_its_field_and_sends_nothing() -> None:
    llm, backend = model()
    with pytest.raises(ValidationError, match="temperature"):
        llm.invoke("q", temperature=float("inf"))
    assert backend.requests == []


def test_reasoning_effort_none_per_call_is_the_familys_default_over_the_field() -> None:
    llm, backend = model(prompt_format="k2-v2", reasoning_effort="low")
    backend.script(["</think_faster>", "a."], ["</think_fast>", "b."])
    low = llm.invoke("q")
    default = llm.invoke("q", reasoning_effort=None)
    (first, _), (second, _) = backend.requests
    assert first.endswith("<think_faster>\n")
    assert second.endswith("<think_fast>\n")
    assert low.response_metadata["reasoning_effort"] == "low"
    assert default.response_metadata["reasoning_effort"] == "medium"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("reasoning_effort", 3, r"reasoning_effort=3: pass a string, or None"),
        ("tool_call_format", ["xml"], r"tool_call_format=\['xml'\]: pass a string"),
        ("max_tool_call_retries", -1, r"max_tool_call_retries must be an int >= 0, got -1"),
        ("parallel_tool_calls", "no", r"parallel_tool_calls='no'\): pass True, False or None"),
        ("tools", "search", r"tools='search' is not a list of tools"),
    ],
)
def test_an_option_of_the_wrong_kind_is_named_before_anything_is_sent(
    option: str, value: Any, message: str
) -> None:
    llm, backend = model(prompt_format="k2-v3")
    with pytest.raises(K2ConfigError, match=message):
        llm.bind(**{option: value}).invoke("q")
    assert backend.requests == []


def test_a_bound_response_format_in_any_accepted_shape_reaches_the_prompt() -> None:
    llm, backend = model()
    backend.script(['{"a": 1}', "<|endoftext|>"])
    shape = {"type": "json_schema", "json_schema": {"name": "A", "schema": {"type": "object"}}}
    llm.bind(response_format=shape).invoke("q")
    prompt, params = backend.requests[-1]
    assert prompt.startswith(
        "Respond with a single JSON object and nothing else. It must satisfy this JSON "
        'schema: {"type": "object", "properties": {}}<|endofsystemprompt|>'
    )
    assert params.grammar is not None
    assert params.grammar.kind == "json"
