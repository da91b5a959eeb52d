"""A caller's own JSON-schema grammar goes through the same per-engine simplification.

``bind(grammar=...)`` and a bound ``response_format`` (no tools offered) are sent to each
loopback fake (TGI, vLLM, SGLang) as the simplified schema: keywords the engine drops or
refuses (``uniqueItems``, ``multipleOf``, ``patternProperties``) taken out, repetition
bounds above the cap left out, metadata left out, said once as a `K2SchemaWarning`; a
schema that is not a valid JSON schema is refused before any request is sent.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from langchain_k2 import ChatK2, K2ConfigError, K2SchemaWarning
from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply

ROUTE = {"tgi": "/", "vllm": "/v1/completions", "sglang": "/generate"}

TAGS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Tags",
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "step": {"type": "integer", "multipleOf": 5},
        "note": {"type": "string", "maxLength": 50000},
        "labels": {"type": "object", "patternProperties": {"^x-": {"type": "string"}},
                   "additionalProperties": False},
    },
    "required": ["tags"],
}  # fmt: skip
SENT = {
    "title": "Tags",
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "step": {"type": "integer"},
        "note": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["tags"],
}
"""What every engine here is sent for `TAGS`: the part its grammar compiler enforces."""


def _chat(server: FakeEngine) -> ChatK2:
    return ChatK2(
        endpoint_url=server.url, engine=server.engine, retry_backoff=0.0, timeout=10,
        max_new_tokens=64,
    )  # fmt: skip


def _sent_schema(server: FakeEngine) -> list[Any]:
    """The JSON schema of each generation request, read where the engine reads it."""
    sent = [r["body"] for r in server.requests(ROUTE[server.engine]) if r["method"] == "POST"]
    schemas: list[Any] = []
    for body in sent:
        if (body.get("sampling_params") or {}).get("max_new_tokens") == 0:
            continue  # SGLang's prefill-only token count
        if server.engine == "tgi":
            schemas.append(body["parameters"]["grammar"]["value"])
        elif server.engine == "vllm":
            schemas.append(body["structured_outputs"]["json"])
        else:
            schemas.append(json.loads(body["sampling_params"]["json_schema"]))
    return schemas


def _options(how: str, schema: dict[str, Any]) -> dict[str, Any]:
    if how == "grammar":
        return {"grammar": {"type": "json", "value": schema}}
    spec = {"name": schema["title"], "schema": schema}
    return {"response_format": {"type": "json_schema", "json_schema": spec}}


@pytest.mark.parametrize("how", ["grammar", "response_format"])
def test_own_schema_is_sent_simplified_and_said_once(served: FakeEngine, how: str) -> None:
    title = f"Tags-{served.engine}-{how}"  # the warning is said once per schema and engine
    served.script(reply(text='{"tags": ["a"]}'), reply(text='{"tags": ["b"]}'))
    llm = _chat(served).bind(**_options(how, {**TAGS, "title": title}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = llm.invoke("Tag it.")
        llm.invoke("Again.")
    assert first.content == '{"tags": ["a"]}'
    assert _sent_schema(served) == [{**SENT, "title": title}] * 2
    [said] = [str(w.message) for w in caught if issubclass(w.category, K2SchemaWarning)]
    assert f"the grammar '{title}'" in said
    for keyword in ("multipleOf", "uniqueItems", "patternProperties", "maxLength over 256"):
        assert keyword in said
    assert "without checking it against the whole schema" in said


def test_regex_grammar_is_sent_as_given(tgi: FakeEngine) -> None:
    tgi.script(reply(text="42"))
    _chat(tgi).invoke("A number.", grammar={"type": "regex", "value": "[0-9]{1,99999}"})
    [body] = [r["body"] for r in tgi.requests("/") if r["method"] == "POST"]
    assert body["parameters"]["grammar"] == {"type": "regex", "value": "[0-9]{1,99999}"}


def test_invalid_schema_is_refused_before_any_request(served: FakeEngine) -> None:
    broken = {"title": "Bad", "type": "object", "properties": {"n": {"minLength": "three"}}}
    with pytest.raises(K2ConfigError, match=r"not valid .*properties/n/minLength"):
        _chat(served).invoke("q", grammar={"type": "json", "value": broken})
    assert _sent_schema(served) == []
