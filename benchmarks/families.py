"""8. K2 families: parsing and streaming overhead of K2-V2 and K2-V3 output.

Parser rows: one generation (a 2,000-word thought, a short answer, two calls) fed token by
token to the family's output parser (`K2V2OutputParser`, `K2V3OutputParser` in each call
form), against K2-Chat's `ToolCallStreamParser` fed the same text as K2-Chat writes it (the
thought as plain text, the calls as one ``<tool_call>`` list): what splitting the reasoning
and reading the family's call grammar cost over K2-Chat's parser. Median of timed runs.

Streaming rows: ``ChatK2.stream`` on a K2-V2 and a K2-V3 model against ``ChatOpenAI.stream``
on the chat route of the same loopback fake vLLM (`benchmarks.fake_vllm_family`), which
returns what vLLM's reasoning and tool parsers return (``reasoning_content`` deltas,
``content`` deltas, whole ``tool_calls``): ChatK2 receives the raw text and parses it itself,
ChatOpenAI receives it parsed by the server. Same tokens, same server, interleaved calls.
(``ChatOpenAI`` drops the ``reasoning_content`` it is sent; ChatK2 returns it.) ChatK2 on
K2-Chat output of the same length is timed too, for the family-vs-K2-Chat ratio.

Standalone: ``python -m benchmarks.families [--quick]`` prints the rows.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import AIMessageChunk, HumanMessage

from benchmarks.common import REPO_ROOT, Row, Settings, interleaved, median_ms
from langchain_k2 import ChatK2
from langchain_k2._tool_calls import ToolCallStreamParser
from langchain_k2._tool_schema import tool_index
from langchain_k2.formats._k2_v2_output import K2V2OutputParser
from langchain_k2.formats._k2_v3_output import K2V3OutputParser

SECTION = "8. K2 families"
KEYS = (
    "families.parse.k2-v2",
    "families.parse.k2-v3",
    "families.parse.k2-v3-json",
    "families.stream.k2-v2",
    "families.stream.k2-v3",
)
PEER = "ChatOpenAI (vLLM chat route)"

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
    for name in ("weather", "population")
]
CALLS = [
    {"name": "weather", "arguments": {"city": "Paris", "days": 3}},
    {"name": "population", "arguments": {"city": "Rome"}},
]


def _words(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{i} " for i in range(count)]


def generation(family: str, thought: int, fmt: str = "xml") -> dict[str, Any]:
    """One scripted generation: raw tokens and what vLLM's parsers make of them."""
    reasoning = _words(thought, "think")
    content = _words(12, "answer")
    if family == "k2-chat":
        block = "<tool_call>" + json.dumps(CALLS) + "</tool_call>"
        tokens = [*reasoning, *content, *_pieces(block)]
    elif family == "k2-v2":
        blocks = ["\n<tool_call>\n" + json.dumps(call) + "\n</tool_call>" for call in CALLS]
        tokens = [*reasoning, "\n</think_fast>\n", *content, *_pieces("".join(blocks))]
    else:
        tokens = [*reasoning, "</ifm|think>", *content, *_group_tokens(fmt)]
    return {"tokens": tokens, "reasoning": reasoning, "content": content, "tool_calls": CALLS}


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _group_tokens(fmt: str) -> list[str]:
    tokens = ["<ifm|tool_calls>", "\n"]
    for call in CALLS:
        tokens.append("<ifm|tool_call>")
        if fmt == "json":
            tokens += [*_pieces(json.dumps(call)), "</ifm|tool_call>", "\n"]
            continue
        tokens += [call["name"], "\n"]
        for key, value in call["arguments"].items():
            tokens += ["<ifm|arg_key>", key, "</ifm|arg_key>", "\n"]
            tokens += ["<ifm|arg_value>", str(value), "</ifm|arg_value>", "\n"]
        tokens += ["</ifm|tool_call>", "\n"]
    return [*tokens, "</ifm|tool_calls>"]


# --------------------------------------------------------------------------- parsers


def _parser(family: str, fmt: str = "xml") -> Any:
    index = tool_index(TOOLS)
    if family == "k2-chat":
        return ToolCallStreamParser(index)
    if family == "k2-v2":
        return K2V2OutputParser(index, effort="medium")
    # ChatK2's default reading of a missing close tag (K2V3Format.unclosed).
    return K2V3OutputParser(index, effort="high", tool_call_format=fmt, unclosed="live")  # type: ignore[arg-type]


def _parse_all(family: str, tokens: list[str], fmt: str = "xml") -> int:
    parser = _parser(family, fmt)
    calls = 0
    for token in tokens:
        for piece in parser.feed(token):
            calls += len(getattr(piece, "tool_calls", ()))
    for piece in parser.close():
        calls += len(getattr(piece, "tool_calls", ()))
    return calls


def _parse_rows(settings: Settings) -> list[Row]:
    thought = 200 if settings.quick else 2000
    repeats = 5 if settings.quick else 60
    base = generation("k2-chat", thought)["tokens"]
    assert _parse_all("k2-chat", base) == 2
    rows = []
    for key, family, fmt in (
        ("families.parse.k2-v2", "k2-v2", "xml"),
        ("families.parse.k2-v3", "k2-v3", "xml"),
        ("families.parse.k2-v3-json", "k2-v3", "json"),
    ):
        tokens = generation(family, thought, fmt)["tokens"]
        assert _parse_all(family, tokens, fmt) == 2, key
        samples = interleaved(
            {
                "family": lambda t=tokens, f=family, c=fmt: _parse_all(f, t, c),
                "k2-chat": lambda: _parse_all("k2-chat", base),
            },
            repeats,
            block=5,
        )
        family_ms, chat_ms = median_ms(samples["family"]), median_ms(samples["k2-chat"])
        chars = len("".join(tokens))
        rows.append(
            Row(
                key=key,
                section=SECTION,
                measure=(
                    f"parse {len(tokens):,} tokens ({chars / 1000:.0f} KB: thought, answer, "
                    f"2 calls{', JSON form' if fmt == 'json' else ''}) fed one at a time"
                ),
                k2=family_ms,
                peer=chat_ms,
                unit="ms",
                peer_name="K2-Chat's ToolCallStreamParser, same text",
                reference="ratio <= 2",
                note=(
                    f"{family} parser {len(tokens) / family_ms:,.0f} tokens/ms; "
                    f"median of {repeats} runs each"
                ),
            )
        )
    return rows


# --------------------------------------------------------------------------- streaming


@contextmanager
def fake_vllm() -> Iterator[str]:
    """The fake server (`benchmarks.fake_vllm_family`) in a subprocess; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_vllm_family", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake vLLM did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _set_reply(url: str, reply: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 -- a loopback URL of our own
        f"{url}/_control/reply",
        data=json.dumps(reply).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:  # noqa: S310
        response.read()


_FAMILY_OF: dict[int, str] = {}
"""Marked K2-Chat format objects (by id) standing for a family, on a checkout without them."""


def k2_family_model(url: str, family: str) -> Any:
    """ChatK2 on the fake vLLM, reading ``family``'s output.

    Uses ``prompt_format=<family>`` where ChatK2 has the family formats; on a checkout
    without them, a ChatK2 whose turns use the family's output parser (the prompt stays
    K2-Chat's, which the fake ignores).
    """
    fields: dict[str, Any] = {"endpoint_url": url, "engine": "vllm", "max_new_tokens": 8192}
    if family == "k2-chat":
        return ChatK2(**fields).bind_tools(TOOLS)
    try:
        return ChatK2(prompt_format=family, **fields).bind_tools(TOOLS)
    except ValueError:  # pydantic's ValidationError: no family formats in this checkout
        pass
    from langchain_k2 import _turn as turn
    from langchain_k2._prompt import DEFAULT_FORMAT

    marked = DEFAULT_FORMAT.model_copy()
    _FAMILY_OF[id(marked)] = family
    if not _FAMILY_OF.get(-1):
        _FAMILY_OF[-1] = "patched"
        original = turn.Turn._start

        def start(self: Any, *, primed: bool, constrained: bool = False) -> None:
            original(self, primed=primed, constrained=constrained)
            chosen = _FAMILY_OF.get(id(self.config.fmt))
            if chosen is not None:
                self._parser = _parser(chosen)

        turn.Turn._start = start  # type: ignore[method-assign]
    return ChatK2(prompt_format=marked, **fields).bind_tools(TOOLS)


def _peer(url: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=f"{url}/v1", api_key="unused", model="IFM/K2-Horizon-7B", max_retries=0
    ).bind_tools(TOOLS)


def _stream(model: Any) -> AIMessageChunk:
    total: AIMessageChunk | None = None
    for chunk in model.stream([HumanMessage("Weather in Paris, population of Rome?")]):
        total = chunk if total is None else total + chunk
    assert total is not None
    return total


def _stream_rows(settings: Settings) -> list[Row]:
    thought = 200 if settings.quick else 2000
    calls = 1 if settings.quick else 20
    rows = []
    with fake_vllm() as url:
        peer = _peer(url)
        chat = k2_family_model(url, "k2-chat")
        for key, family in (("families.stream.k2-v2", "k2-v2"), ("families.stream.k2-v3", "k2-v3")):
            reply = generation(family, thought)
            chat_reply = generation("k2-chat", thought)
            model = k2_family_model(url, family)
            _set_reply(url, reply)
            mine, theirs = _stream(model), _stream(peer)  # warm-up, and a check
            assert [c["args"] for c in mine.tool_calls] == [c["arguments"] for c in CALLS]
            assert [c["args"] for c in theirs.tool_calls] == [c["arguments"] for c in CALLS]
            assert (
                mine.additional_kwargs["reasoning_content"] == "".join(reply["reasoning"]).strip()
            )
            samples: dict[str, list[float]] = {"k2": [], "peer": [], "chat": []}
            for i in range(calls):
                order = ("k2", "peer", "chat") if i % 2 == 0 else ("chat", "peer", "k2")
                for name in order:
                    _set_reply(url, chat_reply if name == "chat" else reply)
                    target = {"k2": model, "peer": peer, "chat": chat}[name]
                    start = time.perf_counter()
                    _stream(target)
                    samples[name].append(time.perf_counter() - start)
            k2_ms, peer_ms = median_ms(samples["k2"]), median_ms(samples["peer"])
            chat_ms = median_ms(samples["chat"])
            rows.append(
                Row(
                    key=key,
                    section=SECTION,
                    measure=(
                        f"{family}: stream {len(reply['tokens']):,} tokens (thought, answer, "
                        "2 calls) from a fake vLLM"
                    ),
                    k2=k2_ms,
                    peer=peer_ms,
                    unit="ms",
                    peer_name=PEER,
                    reference="ratio <= 1.5",
                    note=(
                        f"ChatK2 parses the raw text itself; the peer gets it parsed (and "
                        f"drops the reasoning). ChatK2 on K2-Chat output of the same length: "
                        f"{chat_ms:.1f} ms ({k2_ms / chat_ms:.2f}x for {family})"
                        + (
                            "; K2-V3's reasoning is held until its close tag (spec rule for "
                            "a missing close tag), so it reaches the caller as one chunk"
                            if family == "k2-v3"
                            else "; the reasoning streams one chunk per token"
                        )
                        + f"; median of {calls} streams each, sd "
                        f"{statistics.pstdev(samples['k2']) * 1000:.1f} ms (ChatK2)."
                    ),
                )
            )
    return rows


def run(settings: Settings) -> list[Row]:
    """Parser rows, then streaming rows."""
    return _parse_rows(settings) + _stream_rows(settings)


def _main() -> int:
    from benchmarks.common import loopback_only

    quick = "--quick" in sys.argv[1:]
    with loopback_only():
        rows = run(Settings(quick=quick))
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        print(
            f"{row.key:28} {row.k2:10.2f} {row.unit}  vs {row.peer:10.2f} {row.unit}  "
            f"ratio {ratio:>5}  ({row.peer_name})"
        )
        print(f"{'':28} {row.measure}; {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
