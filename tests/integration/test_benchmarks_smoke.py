"""Smoke coverage of `benchmarks/` and of the fake server's benchmark extensions.

`python -m benchmarks --quick --out DIR` must finish well inside a minute, print a table with
every row and write `benchmarks.md` and `benchmarks.png` to DIR (never to docs/). The fake
TGI's benchmark-only reply fields (`tests/support/fake_engine/bench.py`) are checked here
too: per-request seeded corruption, grammar-constrained requests never corrupted, OpenAI
`tool_calls` on the chat route, and the first-event timestamp.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.common import BENCH_EXTRA
from langchain_k2._tool_calls import parse_block
from tests.support.fake_engine import FakeEngine, FakeEngineError, reply
from tests.support.fake_engine.bench import CORRUPTIONS, corrupt
from tests.support.fake_engine.openapi_schema import validate as validate_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
CALL = {"name": "f", "arguments": {"a": 1}}
GRAMMAR = {"type": "json", "value": {"type": "object", "properties": {"a": {"type": "integer"}}}}


def generate(tgi: FakeEngine, inputs: str, **parameters: object) -> str:
    body = {"inputs": inputs, "parameters": {"details": True, **parameters}}
    response = httpx.post(tgi.url + "/generate", json=body, timeout=10)
    response.raise_for_status()
    tokens = response.json()["details"]["tokens"]
    return "".join(t["text"] for t in tokens if t["text"] != "<|endoftext|>")


# --------------------------------------------------------------------------- the benchmark run


@pytest.mark.timeout(120)
def test_quick_run_prints_every_row_and_writes_the_report(tmp_path: Path) -> None:
    # The peers live in the `bench` extra, which .ci/run installs after the main test run.
    for module in BENCH_EXTRA:
        pytest.importorskip(module, reason='the bench extra: pip install -e ".[test,bench]"')
    from benchmarks.run import ROW_KEYS

    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 60
    table = [line for line in done.stdout.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == list(ROW_KEYS)
    assert not any("failed:" in line for line in table), done.stdout
    report = (tmp_path / "benchmarks.md").read_text()
    for key in ROW_KEYS:
        assert f"| `{key}` |" in report
    assert "## Machine" in report
    assert "quick" in report
    png = (tmp_path / "benchmarks.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 10_000


def test_unknown_section_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if all(importlib.util.find_spec(name) for name in BENCH_EXTRA):
        assert done.returncode == 2
        assert "unknown section" in done.stderr
    else:  # the main suite, before .ci/run installs the bench extra: the command says so
        assert done.returncode == 1
        assert 'pip install -e ".[test,bench]"' in done.stderr


# --------------------------------------------------------------------------- fake extensions


def test_every_corruption_is_malformed_for_the_parser() -> None:
    call_json = json.dumps(CALL)
    for kind in CORRUPTIONS:
        bad = corrupt(call_json, kind)
        with pytest.raises(ValueError, match=r".+"):
            json.loads(bad)
        block = parse_block(f"<tool_call>{bad}</tool_call>")
        assert block.invalid_tool_calls, kind
        assert not block.tool_calls, kind


def test_tool_call_corruption_is_seeded_per_request(tgi: FakeEngine) -> None:
    def decisions() -> list[bool]:
        tgi.reset()
        tgi.set_default(reply(tool_call=CALL, corrupt_p=0.5, corrupt_seed=7))
        texts = [generate(tgi, "Hi") for _ in range(20)]
        records = [r["bench"] for r in tgi.requests("/generate")]
        assert all(t.startswith("<tool_call>") and t.endswith("</tool_call>") for t in texts)
        for text, record in zip(texts, records, strict=True):
            ok = bool(parse_block(text).tool_calls)
            assert ok is not record["corrupted"]
        return [r["corrupted"] for r in records]

    first = decisions()
    assert 3 <= sum(first) <= 17
    assert decisions() == first  # same seed, same decisions


def test_grammar_constrained_requests_are_never_corrupted(tgi: FakeEngine) -> None:
    tgi.set_default(reply(tool_call=CALL, corrupt_p=1.0))
    assert json.loads(generate(tgi, "Hi<tool_call>", grammar=GRAMMAR)) == CALL
    assert generate(tgi, "Hi<tool_call>").endswith("</tool_call>")  # primed: no open tag
    assert not generate(tgi, "Hi<tool_call>").startswith("<tool_call>")
    constrained, plain, _ = (r["bench"] for r in tgi.requests("/generate"))
    assert constrained == {"constrained": True, "corrupted": False, "corruption": None}
    assert plain["corrupted"] is True
    assert plain["corruption"] in CORRUPTIONS


def test_chat_with_tools_answers_openai_tool_calls(tgi: FakeEngine) -> None:
    tgi.set_default(reply(tool_call=CALL, corrupt_p=1.0))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {"model": "tgi", "messages": [{"role": "user", "content": "Hi"}], "tools": tools}
    doc = httpx.post(tgi.url + "/v1/chat/completions", json=body, timeout=10).json()
    validate_schema(doc, "ChatCompletion")
    (call,) = doc["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "f"
    assert json.loads(call["function"]["arguments"]) == {"a": 1}
    record = tgi.requests("/v1/chat/completions")[0]
    assert record["bench"]["constrained"] is True
    assert "tools: " in record["body_text"] or record["body"]["tools"] == tools


def test_first_token_delay_and_first_event_stamp(tgi: FakeEngine) -> None:
    tgi.set_default(reply("a b c", first_token_delay_s=0.2))
    start = time.monotonic()
    with httpx.stream("POST", tgi.url + "/generate_stream", json={"inputs": "Hi"}) as response:
        for line in response.iter_lines():
            if line:
                seen = time.monotonic()
                break
    stamp = tgi.requests("/generate_stream")[0]["first_event_mono"]
    assert start + 0.2 <= stamp <= seen


def test_bad_benchmark_fields_are_refused(tgi: FakeEngine) -> None:
    with pytest.raises(FakeEngineError, match="corrupt_p"):
        tgi.set_default(reply(tool_call=CALL, corrupt_p=2))
    with pytest.raises(FakeEngineError, match="tool_call"):
        tgi.set_default({"tool_call": {"arguments": {}}})
    with pytest.raises(FakeEngineError, match="alone"):
        tgi.set_default(reply("text", tool_call=CALL))


def test_stop_sequences_stay_cheap_on_long_streams(tgi: FakeEngine) -> None:
    text = " ".join(f"w{i}" for i in range(3000)) + " STOP after"
    tgi.configure(max_total_tokens=8192)
    tgi.set_default(reply(text))
    start = time.monotonic()
    body = {"inputs": "Hi", "parameters": {"stop": ["STOP", "<|x|>"], "max_new_tokens": 4000}}
    doc = httpx.post(tgi.url + "/generate", json=body, timeout=30).json()
    assert time.monotonic() - start < 5
    assert doc["generated_text"].endswith("w2999 STOP")
