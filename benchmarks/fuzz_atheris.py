"""Coverage-guided fuzzing (atheris, libFuzzer) of the renderer and the tool-call parsers.

The same properties as ``tests/unit/test_fuzz.py`` (hypothesis), driven by libFuzzer's coverage
feedback over ``langchain_k2``'s code instead of random generation:

- ``render_prompt`` on fuzzer-built conversations raises nothing but ``K2InputError``, and with
  markers neutralized the prompt holds one user marker per user message;
- ``parse_tool_calls`` never raises and loses no text (content and blocks rebuild the input);
- ``ToolCallStreamParser`` on fuzzer-chosen splits agrees with the whole parse.

Not collected by pytest (no ``test_`` name, and ``benchmarks/`` is not a test path). Needs
``pip install atheris``. Run, for example::

    python -m benchmarks.fuzz_atheris -runs=100000
    python -m benchmarks.fuzz_atheris -max_total_time=60 /tmp/k2-corpus

Any other libFuzzer flag is passed through. A property failure raises, and libFuzzer writes the
input to ``crash-*``; at exit the harness prints the iterations per property and the time.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import atheris

with atheris.instrument_imports(include=["langchain_k2"]):
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )

    from langchain_k2 import (
        K2Format,
        K2InputError,
        ToolBlock,
        ToolCallStreamParser,
        parse_tool_calls,
        render_prompt,
    )

K2 = K2Format()
FRAGMENTS = [
    *K2.special_markers,
    "<tool_", "call>", "</tool_", "<", ">", "|", "&lt;", "&amp;", "amp;", "{", "}", "[", "]",
    '"name"', '"arguments"', '"parameters"', ":", ", ", '"f"', "'f'", "'name'", "null", "true",
    "None", "1e999", "NaN", "\\", '"', "'", "```json\n", "```", " ", "\n", "é",
]  # fmt: skip
TOOLS = [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}]
COUNTS: Counter[str] = Counter()
START = time.monotonic()


def text_from(fdp: atheris.FuzzedDataProvider, pieces: int = 12) -> str:
    """Text mixing marker/JSON fragments with arbitrary unicode, as the fuzzer chooses."""
    parts: list[str] = []
    for _ in range(fdp.ConsumeIntInRange(0, pieces)):
        if fdp.ConsumeBool():
            parts.append(FRAGMENTS[fdp.ConsumeIntInRange(0, len(FRAGMENTS) - 1)])
        else:
            parts.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 8)))
    return "".join(parts)


def json_value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 5 if depth < 3 else 3)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeInt(4)
    if kind == 2:
        return fdp.ConsumeRegularFloat()
    if kind == 3:
        return text_from(fdp, 3)
    if kind == 4:
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        text_from(fdp, 2): json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))
    }


def message_from(fdp: atheris.FuzzedDataProvider, index: int) -> BaseMessage:
    kind = fdp.ConsumeIntInRange(0, 5)
    text = text_from(fdp)
    if kind == 0:
        return HumanMessage(text)
    if kind == 1:
        return SystemMessage(text)
    if kind == 2:
        calls = [
            {"name": text_from(fdp, 2), "args": {"x": json_value(fdp)}, "id": f"c{index}{k}"}
            for k in range(fdp.ConsumeIntInRange(0, 2))
        ]
        return AIMessage(text, tool_calls=calls)
    if kind == 3:
        return ToolMessage(text, tool_call_id=f"c{fdp.ConsumeIntInRange(0, 9)}0")
    if kind == 4:
        role = ["user", "assistant", "system", "tool"][fdp.ConsumeIntInRange(0, 3)]
        return ChatMessage(role=role, content=text)
    blocks: list[Any] = [{"type": "text", "text": text}, text_from(fdp, 3)]
    if fdp.ConsumeBool():
        blocks.append({"type": ["image", "reasoning", "x"][fdp.ConsumeIntInRange(0, 2)]})
    return HumanMessage(blocks)


def check_render(fdp: atheris.FuzzedDataProvider) -> None:
    messages = [message_from(fdp, i) for i in range(fdp.ConsumeIntInRange(0, 6))]
    tools = [{**TOOLS[0], "description": text_from(fdp, 4)}] if fdp.ConsumeBool() else None
    try:
        prompt = render_prompt(messages, tools=tools, force_tool_call=fdp.ConsumeBool())
    except K2InputError:
        return
    users = sum(
        isinstance(m, HumanMessage) or (isinstance(m, ChatMessage) and m.role == "user")
        for m in messages
    )
    if prompt.count(K2.user_prefix) != users:
        raise AssertionError(f"forged user turn: {prompt!r}")


def check_parse(fdp: atheris.FuzzedDataProvider) -> None:
    text = text_from(fdp, 40)
    parsed = parse_tool_calls(text, TOOLS if fdp.ConsumeBool() else None)
    content, position = [], 0
    for block in parsed.blocks:
        start = text.find("<tool_call>", position)
        if start == -1 or not text.startswith(block.raw, start):
            raise AssertionError(f"block out of place: {block.raw!r} in {text!r}")
        content.append(text[position:start])
        position = start + len(block.raw)
    content.append(text[position:])
    if "".join(content) != parsed.content:
        raise AssertionError(f"text lost: {text!r}")
    for block in parsed.blocks:
        for call in block.tool_calls:
            json.dumps(call["args"])


def _comparable(block: ToolBlock) -> tuple[Any, ...]:
    return (
        block.raw,
        [(c["name"], c["args"]) for c in block.tool_calls],
        [(c["name"], c["args"], c["error"]) for c in block.invalid_tool_calls],
    )


def check_stream(fdp: atheris.FuzzedDataProvider) -> None:
    text = text_from(fdp, 40)
    cuts = sorted(
        {fdp.ConsumeIntInRange(0, len(text)) for _ in range(fdp.ConsumeIntInRange(0, 10))}
    )
    parser = ToolCallStreamParser(TOOLS)
    out: list[str | ToolBlock] = []
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        out += parser.feed(text[a:b])
    out += parser.close()
    whole = parse_tool_calls(text, TOOLS)
    if "".join(p for p in out if isinstance(p, str)) != whole.content or [
        _comparable(b) for b in out if isinstance(b, ToolBlock)
    ] != [_comparable(b) for b in whole.blocks]:
        raise AssertionError(f"stream and whole parse disagree on {text!r} split at {cuts}")


CHECKS = {"render_prompt": check_render, "parse_tool_calls": check_parse, "stream": check_stream}
NAMES = list(CHECKS)


RUNS = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("-runs=")), None)
REPORT_EVERY_S = 10.0
_last_report = [START]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    COUNTS[name] += 1
    try:
        CHECKS[name](fdp)
    finally:
        # libFuzzer ends the process with C exit(), so Python's atexit never runs: report
        # here, at the last of `-runs=N`, and every REPORT_EVERY_S seconds.
        now = time.monotonic()
        if sum(COUNTS.values()) == RUNS or now - _last_report[0] >= REPORT_EVERY_S:
            _last_report[0] = now
            report()


def report() -> None:
    elapsed = time.monotonic() - START
    total = sum(COUNTS.values())
    per = ", ".join(f"{name}: {COUNTS[name]}" for name in NAMES)
    print(f"atheris: {total} iterations in {elapsed:.1f}s ({per})", file=sys.stderr, flush=True)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
