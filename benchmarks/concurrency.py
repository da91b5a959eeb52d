"""3. Concurrency: a burst of concurrent ``ainvoke`` calls against a 100 ms server.

The fake server holds every generation request ``latency_s`` (100 ms) and, like TGI, answers
"Model is overloaded" (429; an error event on a stream) once ``max_concurrent_requests``
requests are in flight. It runs twice: with TGI's default limit (128) and with a limit above
the burst, so that only the clients limit themselves.

What limits connections:

- the peer: ``HuggingFaceEndpoint`` holds one ``AsyncInferenceClient``, which holds one
  ``httpx.AsyncClient`` with httpx's default pool, ``max_connections=100`` (read off the
  live client below): at most 100 requests in flight, the rest queue in the pool;
- ChatK2: its TGI backend sends every request through one shared ``httpx.AsyncClient`` per
  event loop (from huggingface_hub's own session factory, httpx's default pool of 100
  connections): at most 100 requests in flight, like the peer. The requests beyond that
  wait for a slot in ChatK2's backend instead of in httpcore's pool queue, which httpcore
  rescans whenever a connection frees up.

ChatK2's sync path uses huggingface_hub's global ``httpx.Client`` (``get_session()``), so
connections are kept alive. "CPU ms per call" (this process's
``time.process_time()``, and the server's from ``/proc``) shows where a burst's time goes.

The ideal wall time is 100 ms x the number of waves, ``ceil(burst / min(client limit, server
limit))``. "First wave" is how many requests the server received within 90 ms of the first
one (no second-wave request can arrive earlier).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import Row, Settings, fake_engine, process_cpu_s, words
from benchmarks.overhead import k2_model, peer_model

SECTION = "3. Concurrency"
KEYS = ("concurrency.tgi_default", "concurrency.unlimited")
LATENCY_S = 0.1
GENERATION_PATHS = {"/", "/generate", "/generate_stream", "/v1/chat/completions"}
REPLY = {"text": words(10)}


def pool_limit(client: Any) -> int | None:
    """``max_connections`` of a live ``httpx.AsyncClient``'s pool."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    limit = getattr(pool, "_max_connections", None)
    return int(limit) if limit is not None else None


def peer_pool_limit(peer: Any) -> int | None:
    """The peer's pool limit (after a call)."""
    return pool_limit(getattr(peer.llm.async_client, "_async_client", None))


def k2_pool_limit(loop: asyncio.AbstractEventLoop) -> int | None:
    """ChatK2's pool limit: its TGI backend's shared session on ``loop`` (after a call)."""
    from langchain_k2.backends._http import _ASYNC_SESSIONS

    session = _ASYNC_SESSIONS.get(loop)
    return None if session is None else pool_limit(session.client)


async def _burst(model: Any, n: int) -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, failed calls) of ``n`` concurrent calls."""
    messages = [HumanMessage("Hi")]
    cpu = time.process_time()
    start = time.perf_counter()
    calls = (model.ainvoke(messages) for _ in range(n))
    results = await asyncio.gather(*calls, return_exceptions=True)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return elapsed, cpu, sum(isinstance(r, BaseException) for r in results)


@dataclass
class _Side:
    """What one client's bursts measured."""

    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    first_waves: list[int] = field(default_factory=list)
    refused: int = 0
    failed: int = 0

    def wall(self) -> float:
        return statistics.median(self.walls)

    def per_call_ms(self, seconds: list[float], n: int) -> float:
        return statistics.median(seconds) * 1000 / n


def _server_view(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(requests in the first wave, requests refused as overloaded)."""
    gens = [r for r in records if r["path"] in GENERATION_PATHS]
    if not gens:
        return 0, 0
    first = min(r["received_at"] for r in gens)
    wave = sum(1 for r in gens if r["received_at"] - first < LATENCY_S * 0.9)
    refused = sum(1 for r in gens if r["fault"] == "overloaded")
    return wave, refused


def _measure(
    tgi: Any,
    *,
    loop: asyncio.AbstractEventLoop,
    models: dict[str, Any],
    config: dict[str, Any],
    n: int,
    repeats: int,
) -> dict[str, _Side]:
    """Alternate bursts of the two clients; the server is reset before each burst."""
    sides = {name: _Side() for name in models}
    for i in range(repeats):
        order = list(models) if i % 2 == 0 else list(models)[::-1]
        for name in order:
            tgi.reset()
            tgi.configure(**config)
            tgi.set_default(REPLY)
            before = process_cpu_s(tgi.pid)
            wall, used, failed = loop.run_until_complete(_burst(models[name], n))
            side = sides[name]
            side.server_cpu.append(process_cpu_s(tgi.pid) - before)
            side.walls.append(wall)
            side.cpu.append(used)
            side.failed += failed
            wave, refused = _server_view(tgi.requests())
            side.first_waves.append(wave)
            side.refused += refused
    return sides


def _row(
    key: str,
    *,
    label: str,
    n: int,
    repeats: int,
    sides: dict[str, _Side],
    limits: dict[str, int],
    server_limit: int,
) -> Row:
    k2, peer = sides["k2"], sides["peer"]
    ideal = {name: LATENCY_S * math.ceil(n / min(limits[name], server_limit)) for name in sides}
    return Row(
        key=key,
        section=SECTION,
        measure=f"{n} concurrent `ainvoke`, 100 ms server, {label}",
        k2=k2.wall() * 1000,
        peer=peer.wall() * 1000,
        unit="ms wall",
        reference=f"ideal ChatK2 {ideal['k2'] * 1000:.0f} ms, peer {ideal['peer'] * 1000:.0f} ms",
        note=(
            f"client limit: ChatK2 {limits['k2']}, peer {limits['peer']} (httpx pools). "
            f"wall/ideal ChatK2 {k2.wall() / ideal['k2']:.1f}, "
            f"peer {peer.wall() / ideal['peer']:.1f}. "
            f"First wave (server-side) ChatK2 {statistics.median(k2.first_waves):.0f}, "
            f"peer {statistics.median(peer.first_waves):.0f}; refused as overloaded per burst "
            f"ChatK2 {k2.refused / repeats:.0f}, peer {peer.refused / repeats:.0f}; failed calls "
            f"ChatK2 {k2.failed}, peer {peer.failed}. CPU ms per call: client ChatK2 "
            f"{k2.per_call_ms(k2.cpu, n):.1f}, peer {peer.per_call_ms(peer.cpu, n):.1f}; server "
            f"{k2.per_call_ms(k2.server_cpu, n):.1f} / {peer.per_call_ms(peer.server_cpu, n):.1f}. "
            f"Median of {repeats} bursts."
        ),
        extra={
            "ideal_k2": ideal["k2"] * 1000,
            "ideal_peer": ideal["peer"] * 1000,
            "cpu_k2": k2.per_call_ms(k2.cpu, n),
            "cpu_peer": peer.per_call_ms(peer.cpu, n),
        },
    )


def run(settings: Settings) -> list[Row]:
    """Wall time of a burst, per client and server limit, against the ideal."""
    n, repeats = settings.concurrency_requests, settings.concurrency_repeats
    rows: list[Row] = []
    with fake_engine() as tgi:
        loop = asyncio.new_event_loop()
        try:
            for key, server_limit, label in (
                ("concurrency.tgi_default", 128, "TGI's default max_concurrent_requests=128"),
                ("concurrency.unlimited", 1024, "max_concurrent_requests=1024"),
            ):
                config = {"latency_s": LATENCY_S, "max_concurrent_requests": server_limit}
                k2, peer = k2_model(tgi.url), peer_model(tgi.url)
                tgi.reset()
                tgi.configure(**config)
                tgi.set_default(REPLY)
                loop.run_until_complete(k2.ainvoke("warm up"))  # reads /info once
                loop.run_until_complete(peer.ainvoke("warm up"))
                limits = {"k2": k2_pool_limit(loop) or n, "peer": peer_pool_limit(peer) or n}
                sides = _measure(
                    tgi,
                    loop=loop,
                    models={"k2": k2, "peer": peer},
                    config=config,
                    n=n,
                    repeats=repeats,
                )
                loop.run_until_complete(peer.llm.async_client.close())
                rows.append(
                    _row(
                        key,
                        label=label,
                        n=n,
                        repeats=repeats,
                        sides=sides,
                        limits=limits,
                        server_limit=server_limit,
                    )
                )
        finally:
            loop.close()
    return rows
