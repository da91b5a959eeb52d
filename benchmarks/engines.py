"""6. ChatK2 on vLLM against ``ChatOpenAI`` on the same vLLM: client CPU per call and per token.

A vLLM user's other choice is ``langchain-openai``'s ``ChatOpenAI`` pointed at vLLM's
OpenAI-compatible chat route. Both sides talk to one fake vLLM server (its own process,
``tests/support/fake_engine/engines.py``) that answers at once with the same text: ChatK2
(``engine="vllm"``) through ``/v1/completions`` with K2's rendered prompt, ``ChatOpenAI``
through ``/v1/chat/completions``. Measured: the client process's CPU time (user + system,
``time.process_time``) per ``invoke`` and per streamed token, the two sides interleaved in
blocks (A B, then B A) and reported as medians, so what the server costs is left out.

The peer needs ``pip install ".[bench]"`` (langchain-openai); without it the rows say so.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import SERVER_LIMITS, Row, Settings, words
from langchain_k2 import ChatK2
from tests.support.fake_engine import FakeEngine

SECTION = "6. ChatK2 on vLLM vs ChatOpenAI"
KEYS = ("engines.vllm_invoke", "engines.vllm_stream")
PEER = "ChatOpenAI (vLLM chat route)"
REPLY_TOKENS = 40
MESSAGES = [HumanMessage("Tell me something.")]


def cpu_interleaved(
    sides: Mapping[str, Callable[[], Any]], calls: int, block: int = 10
) -> dict[str, list[float]]:
    """Client CPU seconds of each call of each side, alternating blocks (A B, B A...)."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(max(1, -(-calls // block))):
        for name in names if number % 2 == 0 else names[::-1]:
            gc.collect()
            for _ in range(min(block, calls - len(samples[name]))):
                start = time.process_time()
                sides[name]()
                samples[name].append(time.process_time() - start)
    return samples


def _models(url: str) -> tuple[ChatK2, Any]:
    from langchain_openai import ChatOpenAI

    k2 = ChatK2(endpoint_url=url, engine="vllm", temperature=0, max_new_tokens=4096)
    peer = ChatOpenAI(
        base_url=f"{url}/v1", api_key="none", model="LLM360/K2-Chat", temperature=0,
        max_tokens=4096,
    )  # fmt: skip
    return k2, peer


def _row(key: str, measure: str, *, k2: float, peer: float, unit: str, goal: str, note: str) -> Row:
    return Row(
        key=key,
        section=SECTION,
        measure=measure,
        k2=k2,
        peer=peer,
        unit=unit,
        peer_name=PEER,
        reference=goal,
        note=note,
    )


def _invoke(server: FakeEngine, calls: int) -> Row:
    text = words(REPLY_TOKENS)
    server.set_default({"text": text})
    k2, peer = _models(server.url)
    assert k2.invoke(MESSAGES).content == text
    assert peer.invoke(MESSAGES).content == text
    samples = cpu_interleaved(
        {"k2": lambda: k2.invoke(MESSAGES), "peer": lambda: peer.invoke(MESSAGES)}, calls
    )
    return _row(
        "engines.vllm_invoke",
        f"client CPU per `invoke`, {REPLY_TOKENS}-token answer",
        k2=statistics.median(samples["k2"]) * 1000.0,
        peer=statistics.median(samples["peer"]) * 1000.0,
        unit="ms CPU/call",
        goal="ratio <= 1.0",
        note=f"ChatK2: `/v1/completions`, prompt rendered and reply parsed on the client; peer: "
        f"`/v1/chat/completions`. {len(samples['k2'])} calls each.",
    )


def _stream(server: FakeEngine, calls: int, tokens: int) -> Row:
    text = words(tokens)
    server.set_default({"text": text})
    k2, peer = _models(server.url)

    def k2_stream() -> None:
        for _ in k2.stream(MESSAGES):
            pass

    def peer_stream() -> None:
        for _ in peer.stream(MESSAGES):
            pass

    assert "".join(str(c.content) for c in k2.stream(MESSAGES)) == text
    assert "".join(str(c.content) for c in peer.stream(MESSAGES)) == text
    samples = cpu_interleaved({"k2": k2_stream, "peer": peer_stream}, calls, block=2)
    per_token = {side: statistics.median(s) / tokens * 1e6 for side, s in samples.items()}
    return _row(
        "engines.vllm_stream",
        f"client CPU per streamed token, {tokens}-token stream",
        k2=per_token["k2"],
        peer=per_token["peer"],
        unit="µs CPU/token",
        goal="ratio <= 0.6",
        note=f"ChatK2: vLLM's completion stream (`include_usage`, `[DONE]`); peer: the chat "
        f"stream. {len(samples['k2'])} streams each.",
    )


def run(settings: Settings) -> list[Row]:
    """Client CPU per invoke and per streamed token, ChatK2 (vLLM) against ChatOpenAI."""
    if importlib.util.find_spec("langchain_openai") is None:
        why = 'not run: pip install ".[bench]" (langchain-openai) for the peer'
        return [
            Row(key=key, section=SECTION, measure=why, k2=None, peer=None, unit="-", note=why)
            for key in KEYS
        ]
    calls = settings.overhead_calls
    tokens = 50 if settings.quick else 1000
    streams = 2 if settings.quick else 12
    with FakeEngine(engine="vllm", config=dict(SERVER_LIMITS)) as server:
        return [_invoke(server, calls), _stream(server, streams, tokens)]
