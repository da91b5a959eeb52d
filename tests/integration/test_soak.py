"""Soak: 2,000 tool-calling requests through three faulty TGI replicas, nothing lost or doubled.

Three fake TGI servers (subprocesses) answer with an *echo* reply (`fake_engine/echo.py`): a
`<tool_call>` for `echo` whose argument `n` is the number the request's own prompt carries, so
every reply can be checked against the request that got it. Each server's reply queue is a
fault sequence drawn from a seeded `random.Random` (one per server, so each server's sequence is
deterministic and bounded: `QUEUE_LEN` slots, then a healthy default); which client request meets
which fault depends on scheduling, which is the point of a soak.

Asserted:
- every request either succeeds with exactly one valid call carrying its own `n`, or raises one
  of the documented exceptions (`DOCUMENTED`);
- no call lost or duplicated: successes hold distinct `n`s, successes plus documented failures
  account for every `n`, and every reply a server delivered whole reached its caller as a success
  (and no `n` was delivered whole twice);
- no replica received traffic while cooling down. The client's `ReplicaSet.pick` and `.failed`
  are wrapped to record when each replica was picked and marked failed. Every generation request a
  server logged is matched to the pick that sent it (by replica and `n`). A pick inside a
  cool-down window is a violation (exact: picks and marks are recorded on one thread, with no
  await between the call and the clock read). A request the server *received* inside a window is
  tolerated only when its pick came before the mark: it was already in flight (picked, being
  connected or sent) when another request's failure cooled the replica. Rather than a fixed 50 ms
  allowance, which on a loaded 2-core machine is not a bound on how long a request picked before
  the mark takes to reach a server, the test checks that exact condition per request and reports
  the in-flight count and the largest pick-to-arrival lag among them.

The servers are configured with a large context window so that no request needs `/tokenize`
(see `test_ainvoke_does_not_block_the_event_loop_to_count_tokens` below for why that matters).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
import re
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.tools import tool

from langchain_k2 import (
    ChatK2,
    K2GenerationError,
    K2IncompleteGenerationError,
    K2OverloadedError,
    K2StreamInterruptedError,
    K2TimeoutError,
    K2UnavailableError,
)
from langchain_k2.backends._tgi import TGIBackend
from tests.support.fake_engine import FakeEngine, FakeEngineError
from tests.support.fake_engine.client import hang, http_error, reply, reset_before_headers

SEED = 20_240_917
N_REQUESTS = 2_000
CONCURRENCY = 64
QUEUE_LEN = 750  # scripted slots per server (about its share of attempts); then healthy
COOLDOWN = 0.15
TIMEOUT = 2.0
MAX_RETRIES = 4
WALL_LIMIT_S = 150.0  # hard bound on the request phase (the target is well under 60 s)

DOCUMENTED = (
    K2OverloadedError,
    K2UnavailableError,
    K2TimeoutError,
    K2StreamInterruptedError,
    K2GenerationError,
    K2IncompleteGenerationError,
)
MARKER = re.compile(r"ECHO-N=(\d+)")
TEMPLATE = '<tool_call>{"name": "echo", "arguments": {"n": {echo}}}</tool_call>'
ECHO_TOKENS = 24  # the echo reply's events: 23 tokens of the block, then EOS

# (kind, weight): ~11% of the scripted slots are faults.
FAULT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ok", 0.89),
    ("http_429", 0.016),
    ("http_503", 0.016),
    ("http_500_incomplete", 0.01),
    ("reset_before_headers", 0.016),
    ("hang", 0.003),
    ("cut_before_first_token", 0.01),
    ("cut_mid_stream", 0.008),
    ("error_event_generation_at_start", 0.006),
    ("error_event_generation_mid_stream", 0.006),
    ("error_event_overloaded_at_start", 0.009),
)


@tool
def echo(n: int) -> int:
    """Echo the request number n."""
    return n


def echo_reply(**fields: Any) -> dict[str, Any]:
    return reply(
        "no marker in the prompt", echo={"pattern": MARKER.pattern, "template": TEMPLATE}, **fields
    )


def scripted_slot(kind: str, rng: random.Random) -> dict[str, Any]:
    """The reply spec for one queue slot of fault ``kind``."""
    specs: dict[str, Any] = {
        "ok": lambda: echo_reply(delay_s=rng.choice((0.0, 0.0, 0.0, 0.002, 0.01))),
        "http_429": lambda: http_error(429, "Model is overloaded", "overloaded"),
        "http_503": lambda: http_error(503, "Model is loading", None),
        "http_500_incomplete": lambda: http_error(
            500, "Incomplete generation", "incomplete_generation"
        ),
        "reset_before_headers": reset_before_headers,
        "hang": hang,
        "cut_before_first_token": lambda: echo_reply(cut_after=0),
        "cut_mid_stream": lambda: echo_reply(cut_after=rng.randint(1, ECHO_TOKENS - 4)),
        "error_event_generation_at_start": lambda: echo_reply(
            error_event_after=0, error="CUDA out of memory", error_type="generation"
        ),
        "error_event_generation_mid_stream": lambda: echo_reply(
            error_event_after=rng.randint(1, ECHO_TOKENS - 4),
            error="CUDA out of memory",
            error_type="generation",
        ),
        "error_event_overloaded_at_start": lambda: echo_reply(
            error_event_after=0, error="Model is overloaded", error_type="overloaded"
        ),
    }
    return specs[kind]()  # type: ignore[no-any-return]


def fault_sequence(server_index: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED * 10 + server_index)
    kinds = [k for k, _ in FAULT_WEIGHTS]
    weights = [w for _, w in FAULT_WEIGHTS]
    return [scripted_slot(rng.choices(kinds, weights)[0], rng) for _ in range(QUEUE_LEN)]


def kind_of(spec: dict[str, Any]) -> str:
    """The fault kind of a served reply spec (as recorded by the server)."""
    if "status" in spec:
        return {429: "http_429", 503: "http_503", 500: "http_500_incomplete"}[spec["status"]]
    if spec.get("reset_before_headers"):
        return "reset_before_headers"
    if spec.get("hang"):
        return "hang"
    if "cut_after" in spec:
        return "cut_before_first_token" if spec["cut_after"] == 0 else "cut_mid_stream"
    if "error_event_after" in spec:
        where = "at_start" if spec["error_event_after"] == 0 else "mid_stream"
        return f"error_event_{spec['error_type']}_{where}"
    return "ok"


# ------------------------------------------------------------------------------ instrumentation

CURRENT_N: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_n", default=None)
PURPOSE: contextvars.ContextVar[str] = contextvars.ContextVar("purpose", default="generate")


@dataclass(frozen=True)
class Pick:
    url: str
    mono: float
    wall: float
    n: int | None
    purpose: str


@dataclass
class Probe:
    """What the client did: every replica pick, and when each replica was marked failed."""

    picks: list[Pick] = field(default_factory=list)
    marks: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))


def instrument(backend: TGIBackend) -> Probe:
    """Wrap the backend's ReplicaSet (pick, failed) and ainfo to record what happened when."""
    probe = Probe()
    replicas = backend.replicas
    pick, failed, ainfo = replicas.pick, replicas.failed, backend.ainfo

    def recording_pick() -> str:
        url = pick()
        probe.picks.append(Pick(url, time.monotonic(), time.time(), CURRENT_N.get(), PURPOSE.get()))
        return url

    def recording_failed(url: str) -> None:
        failed(url)
        probe.marks[url].append((time.monotonic(), time.time()))

    async def tagged_ainfo() -> Any:
        token = PURPOSE.set("info")
        try:
            return await ainfo()
        finally:
            PURPOSE.reset(token)

    replicas.pick = recording_pick  # type: ignore[method-assign]
    replicas.failed = recording_failed  # type: ignore[method-assign]
    backend.ainfo = tagged_ainfo  # type: ignore[method-assign]
    return probe


def cooling_window(marks: list[tuple[float, float]], t: float, clock: int) -> float | None:
    """The start of a cool-down window (on clock 0: monotonic, 1: wall) containing ``t``."""
    for mark in marks:
        start = mark[clock]
        if start <= t < start + COOLDOWN - 0.001:
            return start
    return None


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def soak_servers() -> Iterator[list[FakeEngine]]:
    config = {"max_input_tokens": 8192, "max_total_tokens": 16384, "hang_cap_s": 10.0}
    servers = [FakeEngine(config=config) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


# ------------------------------------------------------------------------------ tests


def test_echo_reply_mode_of_the_fake_server(soak_servers: list[FakeEngine]) -> None:
    server = soak_servers[0]
    server.reset()
    server.script(echo_reply(), echo_reply())
    llm = ChatK2(endpoint_url=server.url, max_retries=0, timeout=10).bind_tools([echo])
    message = llm.invoke("Please echo ECHO-N=41 (not ECHO-N=7, that was before) ECHO-N=42")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("echo", {"n": 42})]
    assert llm.invoke("nothing to echo").content == "no marker in the prompt"
    with pytest.raises(FakeEngineError, match="exactly one group"):
        server.script(reply("x", echo={"pattern": "ECHO", "template": "{echo}"}))
    with pytest.raises(FakeEngineError, match="needs 'text'"):
        server.script({"echo": {"pattern": "(x)", "template": "{echo}"}})


def test_fault_sequences_are_deterministic() -> None:
    assert fault_sequence(0) == fault_sequence(0)
    assert fault_sequence(0) != fault_sequence(1)
    assert all(len(fault_sequence(i)) == QUEUE_LEN for i in range(3))


@dataclass
class Outcomes:
    """What the client saw, per request number."""

    successes: list[int] = field(default_factory=list)
    failures: dict[int, BaseException] = field(default_factory=dict)
    wrong: dict[int, Any] = field(default_factory=dict)


async def run_requests(bound: Any) -> tuple[Outcomes, float]:
    """N_REQUESTS ainvokes, CONCURRENCY at a time; returns the outcomes and the wall time."""
    outcomes = Outcomes()
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with semaphore:
            CURRENT_N.set(n)
            try:
                message = await bound.ainvoke(f"Call echo with n set to ECHO-N={n}.")
            except DOCUMENTED as exc:
                outcomes.failures[n] = exc
                return
            except Exception as exc:  # not documented: reported by the caller
                outcomes.wrong[n] = exc
                return
            calls = [(c["name"], c["args"]) for c in message.tool_calls]
            if calls == [("echo", {"n": n})] and not message.invalid_tool_calls:
                outcomes.successes.append(n)
            else:
                outcomes.wrong[n] = message

    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(one(n) for n in range(N_REQUESTS))), timeout=WALL_LIMIT_S
    )
    return outcomes, time.monotonic() - start


def check_outcomes(outcomes: Outcomes) -> None:
    """Every request: its own call exactly once, or a documented exception."""
    successes, failures = outcomes.successes, outcomes.failures
    assert outcomes.wrong == {}, f"undocumented outcomes: {dict(list(outcomes.wrong.items())[:5])}"
    assert len(successes) == len(set(successes)), "a call was delivered twice"
    assert set(successes) | set(failures) == set(range(N_REQUESTS))
    assert not set(successes) & set(failures)
    for exc in failures.values():
        if isinstance(exc, K2StreamInterruptedError):
            # The stream broke inside the one <tool_call> block: no call, no text delivered.
            assert exc.partial_text == ""
            assert isinstance(exc.cause, DOCUMENTED)


@dataclass
class ServerView:
    """What the servers logged: faults served, arrivals per (replica, n), whole replies per n."""

    attempts: int
    served: Counter[str]
    arrivals: dict[tuple[str, int], list[float]]
    delivered: Counter[int]


def read_servers(servers: list[FakeEngine]) -> ServerView:
    served: Counter[str] = Counter()
    arrivals: dict[tuple[str, int], list[float]] = defaultdict(list)
    delivered: Counter[int] = Counter()
    attempts = 0
    for server in servers:
        for record in server.requests("/"):
            attempts += 1
            if record["reply_source"] == "script":
                served[kind_of(record["reply"])] += 1
            found = MARKER.findall((record["body"] or {}).get("inputs", ""))
            assert found, f"a generation request without its number: {record}"
            n = int(found[-1])
            arrivals[(server.url, n)].append(record["received_at"])
            if record["status"] == 200 and record["fault"] is None:
                delivered[n] += 1
    return ServerView(attempts, served, arrivals, delivered)


def check_cooldown(probe: Probe, view: ServerView, failed: set[int]) -> list[float]:
    """No pick inside a cool-down; arrivals inside one were picked before its mark.

    Returns the pick-to-arrival lags of the requests that arrived in a window (in flight).
    """
    picked_in_window = [
        p for p in probe.picks if cooling_window(probe.marks[p.url], p.mono, 0) is not None
    ]
    assert picked_in_window == [], f"picked while cooling: {picked_in_window[:5]}"
    picks: dict[tuple[str, int], list[Pick]] = defaultdict(list)
    for pick in probe.picks:
        assert pick.n is not None
        if pick.purpose == "generate":
            picks[(pick.url, pick.n)].append(pick)
    # Every request a server logged was picked for it. A pick may have no arrival only when
    # its attempt failed before reaching the server (on a loaded machine a connect can outlast
    # the timeout): then its number was retried (picked again) or failed in a documented way.
    per_n = Counter(key[1] for key, sent in picks.items() for _ in sent)
    unreached: list[tuple[str, int]] = []
    for key, sent in picks.items():
        missing = len(sent) - len(view.arrivals.get(key, []))
        assert missing >= 0, f"{key} arrived more often than it was picked"
        if missing:
            assert key[1] in failed or per_n[key[1]] > 1, f"{key} picked, never sent, not retried"
            unreached.append(key)
    assert set(view.arrivals) <= set(picks), "every generation request matches one pick"
    in_flight: list[float] = []
    for key, arrivals in view.arrivals.items():
        sent = (
            sorted(p.wall for p in picks[key])[-len(arrivals) :]
            if key in unreached
            else sorted(p.wall for p in picks[key])
        )
        for picked_at, received_at in zip(sent, sorted(arrivals), strict=True):
            window = cooling_window(probe.marks[key[0]], received_at, 1)
            if window is not None:
                assert picked_at < window, f"{key} was sent into a cool-down window"
                in_flight.append(received_at - picked_at)
    return in_flight


async def test_soak_2000_tool_calls_through_three_faulty_replicas(
    soak_servers: list[FakeEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    for index, server in enumerate(soak_servers):
        server.reset()
        server.set_default(echo_reply())
        server.script(*fault_sequence(index))
    llm = ChatK2(
        endpoint_url=[s.url for s in soak_servers],
        engine="tgi",  # the TGIBackend itself is instrumented below
        replica_cooldown=COOLDOWN,
        timeout=TIMEOUT,
        max_retries=MAX_RETRIES,
        retry_backoff=0.02,
        max_new_tokens=64,
        temperature=0,
    )
    backend = llm._get_backend()
    assert isinstance(backend, TGIBackend)
    probe = instrument(backend)

    outcomes, wall = await run_requests(llm.bind_tools([echo]))
    check_outcomes(outcomes)

    view = read_servers(soak_servers)
    successes = set(outcomes.successes)
    lost = sorted(n for n in view.delivered if n not in successes)
    doubled = sorted(n for n, count in view.delivered.items() if count > 1)
    assert lost == [], f"replies delivered whole but not returned: {lost[:10]}"
    assert doubled == [], f"replies delivered whole twice: {doubled[:10]}"
    assert set(view.delivered) == successes

    in_flight = check_cooldown(probe, view, set(outcomes.failures))
    marks = sum(len(m) for m in probe.marks.values())
    assert marks > 0

    by_type = Counter(type(exc).__name__ for exc in outcomes.failures.values())
    faults = {k: v for k, v in sorted(view.served.items()) if k != "ok"}
    summary = (
        f"soak: requests={N_REQUESTS} concurrency={CONCURRENCY} replicas=3 seed={SEED} "
        f"attempts={view.attempts} faults injected={sum(faults.values())} {json.dumps(faults)} "
        f"successes={len(successes)} documented failures={len(outcomes.failures)} "
        f"{json.dumps(dict(sorted(by_type.items())))} calls lost: {len(lost)} "
        f"duplicated: {len(doubled)} cool-down marks={marks} picks in cool-down: 0 "
        f"received in cool-down (in flight, picked before the mark): {len(in_flight)} "
        f"max pick-to-arrival lag {max(in_flight, default=0.0) * 1000:.0f} ms "
        f"wall time: {wall:.1f}s"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert len(successes) > N_REQUESTS * 0.9
    assert wall < WALL_LIMIT_S


# ------------------------------------------------------------------------------ throughput bugs


async def test_async_requests_do_not_build_an_ssl_context_each(
    soak_servers: list[FakeEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = soak_servers[0]
    server.reset()
    server.set_default(echo_reply())
    built: list[int] = []
    create = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(1)
        return create(*args, **kwargs)

    # An AsyncInferenceClient per request used to build its own httpx.AsyncClient, so an SSL
    # context and CA bundle per request (~25 ms of CPU: 2,000 requests took ~5x longer).
    monkeypatch.setattr(ssl, "create_default_context", counting)
    llm = ChatK2(endpoint_url=server.url, max_new_tokens=64, timeout=10).bind_tools([echo])
    for n in range(10):
        message = await llm.ainvoke(f"ECHO-N={n}")
        assert message.tool_calls[0]["args"] == {"n": n}
    assert len(built) <= 2  # one for /info and one for generation would be fine


async def test_ainvoke_does_not_block_the_event_loop_to_count_tokens(
    soak_servers: list[FakeEngine],
) -> None:
    server = soak_servers[0]
    server.reset()  # the default window (1024 input tokens): K2's tools prompt alone is
    server.set_default(echo_reply())  # ~1.4 KB, so the byte bound cannot prove it fits
    server.configure(max_input_tokens=1024, max_total_tokens=2048)
    llm = ChatK2(endpoint_url=server.url, max_new_tokens=64, timeout=10)
    backend = llm._get_backend()
    blocking_calls: list[str] = []
    count_tokens = backend.count_tokens

    def watched(text: str) -> int:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            blocking_calls.append("count_tokens")  # sync I/O on the running loop's thread
        return count_tokens(text)

    backend.count_tokens = watched  # type: ignore[method-assign]
    message = await llm.bind_tools([echo]).ainvoke("ECHO-N=5")
    assert message.tool_calls[0]["args"] == {"n": 5}
    assert server.requests("/tokenize"), "the prompt was counted by the server"
    assert blocking_calls == []
