"""2. Streaming: first-token latency and a 2,000-token stream, ``ChatK2.stream`` vs the peer.

First-token latency is measured across the two processes on one clock: the fake server waits
``first_token_delay_s`` after sending the stream's headers (as TGI does while it prefills),
then stamps ``time.monotonic()`` just before it writes the first token's event
(``first_event_mono`` in its request record); the caller stamps ``time.monotonic()`` when it
receives the first chunk with content. CLOCK_MONOTONIC is system-wide on Linux, so the
difference is the time one token takes from the server's socket to the caller's hands:
transport, SSE parsing, the wrapper's own work. The delay makes sure the client is already
waiting on the stream (its request set-up is not counted).

The long stream is timed from the call to the last chunk, with an instant server.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import Row, Settings, fake_engine, median_ms, quartiles_ms, words
from benchmarks.overhead import k2_model, peer_model

SECTION = "2. Streaming"
KEYS = ("stream.first_token", "stream.total")
FIRST_TOKEN_DELAY_S = 0.05
QUESTION = "Tell me a story."


def _first_chunk_latency(model: Any, tgi: Any, path: str) -> float:
    """Seconds from the server writing the first token to the caller seeing its chunk."""
    seen: float | None = None
    for chunk in model.stream([HumanMessage(QUESTION)]):
        if seen is None and chunk.content:
            seen = time.monotonic()
    assert seen is not None, "no content chunk arrived"
    record = tgi.requests(path)[-1]
    return seen - float(record["first_event_mono"])


def _whole_stream(model: Any, expected: str) -> float:
    start = time.perf_counter()
    parts = [chunk.content for chunk in model.stream([HumanMessage(QUESTION)])]
    elapsed = time.perf_counter() - start
    text = "".join(p for p in parts if isinstance(p, str))
    assert text == expected, f"stream text differs ({len(text)} vs {len(expected)} chars)"
    return elapsed


def run(settings: Settings) -> list[Row]:
    """First-token latency (ms) and the time of a 2,000-token stream (ms)."""
    rows: list[Row] = []
    n_tokens = settings.stream_tokens
    with fake_engine() as tgi:
        k2 = k2_model(tgi.url, max_new_tokens=n_tokens + 100)
        peer = peer_model(tgi.url, max_new_tokens=n_tokens + 100)

        # -- first token: server stamp -> caller's first content chunk
        tgi.set_default({"text": words(40), "first_token_delay_s": FIRST_TOKEN_DELAY_S})
        samples: dict[str, list[float]] = {"k2": [], "peer": []}
        _first_chunk_latency(k2, tgi, "/")  # warm-up (ChatK2 reads /info once)
        _first_chunk_latency(peer, tgi, "/v1/chat/completions")
        for i in range(settings.stream_first_token_calls):
            order = ("k2", "peer") if i % 2 == 0 else ("peer", "k2")
            for name in order:
                if name == "k2":
                    samples[name].append(_first_chunk_latency(k2, tgi, "/"))
                else:
                    samples[name].append(_first_chunk_latency(peer, tgi, "/v1/chat/completions"))
        k2_q, peer_q = quartiles_ms(samples["k2"]), quartiles_ms(samples["peer"])
        rows.append(
            Row(
                key="stream.first_token",
                section=SECTION,
                measure="server writes first token -> caller gets first content chunk",
                k2=median_ms(samples["k2"]),
                peer=median_ms(samples["peer"]),
                unit="ms",
                reference="ratio <= 1.0",
                note=(
                    f"`stream()`; server stamps CLOCK_MONOTONIC before writing the first "
                    f"event, {FIRST_TOKEN_DELAY_S * 1000:.0f} ms after the headers. IQR "
                    f"ChatK2 {k2_q[0]:.2f}-{k2_q[1]:.2f} ms, peer {peer_q[0]:.2f}-"
                    f"{peer_q[1]:.2f} ms; {len(samples['k2'])} streams each."
                ),
            )
        )

        # -- a 2,000-token stream from an instant server
        text = words(n_tokens)
        tgi.set_default({"text": text})
        totals: dict[str, list[float]] = {"k2": [], "peer": []}
        _whole_stream(k2, text)
        _whole_stream(peer, text)
        for i in range(settings.stream_total_calls):
            order = ("k2", "peer") if i % 2 == 0 else ("peer", "k2")
            for name in order:
                totals[name].append(_whole_stream(k2 if name == "k2" else peer, text))
        k2_s, peer_s = statistics.median(totals["k2"]), statistics.median(totals["peer"])
        rows.append(
            Row(
                key="stream.total",
                section=SECTION,
                measure=f"whole {n_tokens:,}-token stream, instant server",
                k2=k2_s * 1000,
                peer=peer_s * 1000,
                unit="ms",
                reference="ratio <= 1.0",
                note=(
                    f"{n_tokens / k2_s:,.0f} tokens/s ChatK2, {n_tokens / peer_s:,.0f} "
                    f"tokens/s peer (server included); median of {len(totals['k2'])} each."
                ),
                extra={"k2_tps": n_tokens / k2_s, "peer_tps": n_tokens / peer_s},
            )
        )
    return rows
