"""Benchmark extensions of the fake TGI server (used by `benchmarks/`), kept apart from TGI's logic.

A reply spec without the fields below, and a chat request without `tools`, behave exactly as
before; the server calls in here at four marked places (`# bench:` in `server.py`/`protocol.py`).

Reply-spec fields:
  tool_call: `{"name": str, "arguments": object}`: the "model" calls this tool, and the reply to
    each request is built from that request:
      - grammar-constrained (TGI `parameters.grammar`, or a chat request carrying `tools`, which
        TGI decodes under a JSON grammar): the call's JSON alone, NEVER corrupted, because
        grammar-constrained decoding cannot produce malformed JSON;
      - otherwise: `<tool_call>` + JSON + `</tool_call>` (the open tag left out when the prompt
        already ends with it), corrupted with probability `corrupt_p`.
  corrupt_p: probability in [0, 1] that an unconstrained reply is corrupted (default 0).
  corrupt_seed: seed of the spec's own `random.Random` (default 0). The server decides per
    request, in the order requests reach generation; the client cannot influence it.
  first_token_delay_s: streams only: sleep after the response headers, before the first event
    (TGI sends the SSE headers when the request is queued, then the tokens once prefill is done).

Corruptions (each is invalid JSON and also not a Python literal, so no lenient parser can read
it): `truncated` (last `}` dropped), `unquoted_key` (`name:`), `bracket` (last `}` made `]`),
`trailing_prose` (text after the object, inside the block).

Records: a generation answered from a `tool_call` spec gets `bench` =
`{"constrained": bool, "corrupted": bool, "corruption": str | None}`; every stream record gets
`first_event_mono`, `time.monotonic()` just before its first event is written
(CLOCK_MONOTONIC is system-wide on Linux, so a client process can subtract it from its own).

Chat completions with `tools`: the tools JSON is appended to the rendered prompt (TGI's chat
template puts the tools in the prompt, so the server tokenizes about as much as for a K2
prompt with its tools), and a non-stream answer whose text is a JSON `{"name", "arguments"}` is
returned as OpenAI `tool_calls` (arguments as a JSON string, as TGI 3.x does).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from typing import Any

BENCH_SPEC_KEYS = frozenset({"tool_call", "corrupt_p", "corrupt_seed", "first_token_delay_s"})
CORRUPTIONS = ("truncated", "unquoted_key", "bracket", "trailing_prose")
OPEN_TAG, CLOSE_TAG = "<tool_call>", "</tool_call>"


@dataclass
class BenchSpec:
    """The benchmark fields of one reply spec, with the spec's own random generator."""

    tool_call: dict[str, Any] | None = None
    corrupt_p: float = 0.0
    corrupt_seed: int = 0
    first_token_delay_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)


def parse_bench_fields(raw: dict[str, Any]) -> BenchSpec | None:
    """Check the benchmark fields of a raw reply spec; None when it has none.

    Raises:
        TypeError: a field has a wrong type (the caller reports it as a SpecError).
        ValueError: a field has a wrong value (likewise).
    """
    if not BENCH_SPEC_KEYS & raw.keys():
        return None
    bench = BenchSpec()
    call = raw.get("tool_call")
    if call is not None:
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("name"), str)
            or not isinstance(call.get("arguments", {}), dict)
        ):
            raise TypeError("tool_call must be {'name': str, 'arguments': object}")
        bench.tool_call = {"name": call["name"], "arguments": call.get("arguments", {})}
    p = raw.get("corrupt_p", 0.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError("corrupt_p must be a number in [0, 1]")
    seed = raw.get("corrupt_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("corrupt_seed must be an integer")
    delay = raw.get("first_token_delay_s", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError("first_token_delay_s must be a number >= 0")
    bench.corrupt_p, bench.corrupt_seed = float(p), seed
    bench.first_token_delay_s = float(delay)
    bench.rng = random.Random(seed)
    return bench


def corrupt(call_json: str, kind: str) -> str:
    """`call_json` (a JSON object) made malformed in the way `kind` names."""
    if kind == "truncated":
        return call_json[:-1]
    if kind == "unquoted_key":
        return call_json.replace('"name":', "name:", 1)
    if kind == "bracket":
        return call_json[:-1] + "]"
    if kind == "trailing_prose":
        return call_json + " and then I will summarize"
    raise ValueError(f"unknown corruption {kind!r}")


def materialize(spec: Any, inputs: str, constrained: bool) -> tuple[Any, dict[str, Any] | None]:
    """The concrete reply spec for one request, and what was decided (for the record).

    Specs without a `tool_call` are returned unchanged (with None).
    """
    bench: BenchSpec | None = getattr(spec, "bench", None)
    if bench is None or bench.tool_call is None:
        return spec, None
    call_json = json.dumps(bench.tool_call, ensure_ascii=False)
    kind: str | None = None
    if constrained:
        text = call_json
    else:
        if bench.corrupt_p > 0 and bench.rng.random() < bench.corrupt_p:
            kind = bench.rng.choice(CORRUPTIONS)
            call_json = corrupt(call_json, kind)
        prefix = "" if inputs.endswith(OPEN_TAG) else OPEN_TAG
        text = prefix + call_json + CLOSE_TAG
    decided = {"constrained": constrained, "corrupted": kind is not None, "corruption": kind}
    return replace(spec, text=text, tokens=None), decided


def first_token_delay(spec: Any) -> float:
    """Seconds to wait between a stream's headers and its first event."""
    bench: BenchSpec | None = getattr(spec, "bench", None)
    return 0.0 if bench is None else bench.first_token_delay_s


def chat_prompt(prompt: str, body: dict[str, Any]) -> str:
    """The rendered chat prompt with the request's tools in it (as a chat template does)."""
    tools = body.get("tools")
    if not tools:
        return prompt
    return f"tools: {json.dumps(tools, ensure_ascii=False)}\n{prompt}"


def chat_has_tools(body: dict[str, Any]) -> bool:
    """Whether a chat request offers tools (TGI then decodes under a tool-call grammar)."""
    return bool(body.get("tools")) and body.get("tool_choice") != "none"


def chat_tool_calls(doc: dict[str, Any], body: dict[str, Any]) -> None:
    """Turn a non-stream chat answer whose text is a JSON call into OpenAI `tool_calls`."""
    if not chat_has_tools(body):
        return
    choice = doc["choices"][0]
    try:
        call = json.loads(choice["message"]["content"])
    except (TypeError, ValueError):
        return
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return
    arguments = call.get("arguments", {})
    choice["message"] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "0",
                "type": "function",
                "function": {
                    "description": None,
                    "name": call["name"],
                    "arguments": json.dumps(arguments, ensure_ascii=False),
                },
            }
        ],
    }


__all__ = [
    "BENCH_SPEC_KEYS",
    "CORRUPTIONS",
    "BenchSpec",
    "chat_has_tools",
    "chat_prompt",
    "chat_tool_calls",
    "corrupt",
    "first_token_delay",
    "materialize",
    "parse_bench_fields",
]
