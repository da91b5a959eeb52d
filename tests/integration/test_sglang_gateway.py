"""ChatK2 behind SGLang's real Model Gateway (``sglang-router``), in front of three fake workers.

Three fake SGLang workers (`fake_engine/engines.py`, subprocesses) and one ``sglang-router
launch --policy cache_aware`` (`sglang_gateway.py`) start once for this module, on free
loopback ports, and stop at its end; a test that fails prints the gateway's and the workers'
logs. ChatK2 runs with ``endpoint_url`` set to the gateway and, unless a test says why,
default settings. Checked, in this order (the last test stops a worker):

- the gateway is recognised by ``engine="auto"`` and the body it forwards is ChatK2's,
  less ``spaces_between_special_tokens`` (it drops it), which tool calls survive;
- a gateway that cannot start raises with its log (it is never skipped);
- a LangGraph agent conversation of three user turns lands on one worker: ChatK2's prompts
  are byte-prefix-stable, so the gateway's prefix tree sends every turn where the
  conversation's KV cache is (requests per worker printed);
- a soak: a few hundred tool-calling requests with faults injected at the workers; each
  succeeds with its own call exactly once or raises a documented error (figures printed);
- with the worker that serves the traffic stopped mid-run, no request of 24 is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
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
from tests.support.fake_engine import FakeEngine, FakeEngineError
from tests.support.fake_engine.client import hang, http_error, reply, reset_before_headers
from tests.support.sglang_gateway import GatewayError, SGLangGateway, free_port

pytestmark = pytest.mark.timeout(240)

WORKERS = 3
MARKER = re.compile(r"ECHO-N=(\d+)")
TEMPLATE = '<tool_call>{"name": "echo", "arguments": {"n": {echo}}}</tool_call>'


@tool
def echo(n: int) -> int:
    """Echo the request number n."""
    return n


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return {"Paris": "18C, sunny", "Oslo": "3C, snow"}[city]


def echo_reply(**fields: Any) -> dict[str, Any]:
    """A reply whose tool call carries the number in the request's own prompt."""
    pattern = {"pattern": MARKER.pattern, "template": TEMPLATE}
    return reply("no marker in the prompt", echo=pattern, **fields)


def call_text(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>" + json.dumps([{"name": name, "arguments": arguments}]) + "</tool_call>"


@dataclass
class Cluster:
    """The gateway and its workers."""

    gateway: SGLangGateway
    workers: list[FakeEngine]

    def reset(self) -> None:
        for worker in self.workers:
            if worker.pid is not None:
                worker.reset()

    def generations(self, worker: FakeEngine) -> list[dict[str, Any]]:
        """The generation requests ``worker`` received (prefill-only counts left out)."""
        records = [r for r in worker.requests("/generate") if r["method"] == "POST"]
        return [
            r
            for r in records
            if ((r["body"] or {}).get("sampling_params") or {}).get("max_new_tokens") != 0
        ]

    def per_worker(self) -> list[int]:
        """Generation requests per worker, in worker order (a stopped worker: its last count)."""
        return [len(self.generations(w)) if w.pid is not None else -1 for w in self.workers]

    @staticmethod
    def worker_log(worker: FakeEngine) -> str:
        """A worker's log, less aiohttp's refusals of the gateway's HTTP/2 probe (``PRI``)."""
        blocks = worker.stderr_text().split("ERROR:aiohttp.server:")
        kept = [b for b in blocks if "PRI/Upgrade" not in b]
        return "ERROR:aiohttp.server:".join(kept)[-3000:]

    def logs(self) -> str:
        parts = [f"--- sglang-router ({' '.join(self.gateway.command)}):"]
        parts.append(self.gateway.log_text())
        for index, worker in enumerate(self.workers):
            parts.append(f"--- worker {index} ({'running' if worker.pid else 'stopped'}):")
            parts.append(self.worker_log(worker) if worker.pid else "")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    config = {"max_total_tokens": 16384, "hang_cap_s": 3.0}
    workers = [FakeEngine(engine="sglang", config=config) for _ in range(WORKERS)]
    gateway = SGLangGateway([])
    try:
        try:  # a server that cannot start fails the test, with its log (in the message)
            for worker in workers:
                worker.start()
            gateway = SGLangGateway([w.url for w in workers])
            gateway.start()
        except (FakeEngineError, GatewayError) as exc:
            pytest.fail(str(exc))
        yield Cluster(gateway, workers)
    finally:
        gateway.close()
        for worker in workers:
            worker.close()


@pytest.fixture(autouse=True)
def clean(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Reset the workers; print the gateway's and workers' logs when the test failed."""
    cluster.reset()
    failed_before = request.session.testsfailed
    yield cluster
    if request.session.testsfailed > failed_before:
        print(cluster.logs())


def calls_of(message: Any) -> list[tuple[str, Any]]:
    return [(c["name"], c["args"]) for c in message.tool_calls]


# ------------------------------------------------------------------------------ basics


def test_auto_detects_the_gateway_and_the_body_reaches_a_worker_intact(cluster: Cluster) -> None:
    for worker in cluster.workers:
        worker.set_default(reply(text="Paris."))
    llm = ChatK2(endpoint_url=cluster.gateway.url, temperature=0, max_new_tokens=16)
    message = llm.invoke("Capital of France?")
    assert message.content == "Paris."
    assert message.response_metadata["engine"] == "sglang"
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 3
    streamed = "".join(str(c.content) for c in llm.stream("Capital of France?"))
    assert streamed == "Paris."
    explicit = ChatK2(endpoint_url=cluster.gateway.url, engine="sglang", max_new_tokens=16)
    assert explicit.invoke("Capital of France?").content == "Paris."
    bodies = [r["body"] for w in cluster.workers for r in cluster.generations(w)]
    assert len(bodies) == 3
    for body in bodies:  # re-serialised by the gateway into its own request type
        assert body["text"].endswith("<|beginofuser|>Capital of France?<|beginofsystem|>")
        sampling = body["sampling_params"]
        assert sampling["max_new_tokens"] == 16
        assert sampling["skip_special_tokens"] is False
        # sglang-router 0.3.2 drops this sampling parameter (its SamplingParams has no such
        # field): the worker's default (true) applies, see test_tool_calls_survive_...
        assert "spaces_between_special_tokens" not in sampling


def test_tool_calls_survive_the_spaces_the_dropped_field_lets_in(cluster: Cluster) -> None:
    # The gateway forwards sampling_params without spaces_between_special_tokens, so the
    # worker's default (true) puts a space on each side of K2's special tokens:
    # 'Checking. <tool_call> [...] </tool_call>'. The calls still parse (the JSON parser
    # skips whitespace); the text before the block keeps its trailing space.
    text = "Checking." + call_text("get_weather", {"city": "Oslo"})
    for worker in cluster.workers:
        worker.set_default(reply(text=text))
    llm = ChatK2(endpoint_url=cluster.gateway.url, max_new_tokens=64).bind_tools([get_weather])
    message = llm.invoke("Weather in Oslo?")
    assert calls_of(message) == [("get_weather", {"city": "Oslo"})]
    assert message.invalid_tool_calls == []
    assert message.content == "Checking. "
    merged: Any = None
    for chunk in llm.stream("Weather in Oslo?"):
        merged = chunk if merged is None else merged + chunk
    assert calls_of(merged) == [("get_weather", {"city": "Oslo"})]
    assert merged.content == "Checking. "
    direct = ChatK2(endpoint_url=cluster.workers[0].url, max_new_tokens=64)
    assert direct.bind_tools([get_weather]).invoke("Weather in Oslo?").content == "Checking."


def test_a_gateway_that_cannot_start_raises_with_its_log() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: never ready
    # 8 s: long enough for the router itself to answer /readiness on a loaded machine
    gateway = SGLangGateway([dead], start_timeout=8.0)
    with pytest.raises(GatewayError, match="not ready within 8 s") as caught:
        gateway.start()
    message = str(caught.value)
    assert "(last /readiness: {'status': 'not ready'" in message
    assert "Starting router" in message  # the gateway's own log, from its start
    assert dead in message
    assert gateway.port is None


# ------------------------------------------------------------------------------ routing

QUESTIONS = ("Weather in Paris?", "And in Oslo?", "Which one is warmer?")


def conversation_replies() -> list[dict[str, Any]]:
    return [
        reply(text=call_text("get_weather", {"city": "Paris"})),
        reply(text="Paris: 18C, sunny."),
        reply(text=call_text("get_weather", {"city": "Oslo"})),
        reply(text="Oslo: 3C, snow."),
        reply(text="Paris is warmer."),
    ]


def test_an_agent_conversation_of_three_turns_lands_on_one_worker(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.prebuilt import create_react_agent

        llm = ChatK2(endpoint_url=cluster.gateway.url, temperature=0, max_new_tokens=64)
        agent = create_react_agent(llm, [get_weather], checkpointer=InMemorySaver())
    for worker in cluster.workers:  # whichever worker the gateway picks answers the same
        worker.script(*conversation_replies())
    thread = {"configurable": {"thread_id": "gateway"}}
    answers = []
    for question in QUESTIONS:
        state = agent.invoke({"messages": [HumanMessage(question)]}, thread)
        answers.append(state["messages"][-1].content)
    assert answers == ["Paris: 18C, sunny.", "Oslo: 3C, snow.", "Paris is warmer."]
    messages = state["messages"]
    assert [m.content for m in messages if isinstance(m, ToolMessage)] == ["18C, sunny", "3C, snow"]
    assert len([m for m in messages if isinstance(m, AIMessage)]) == 5

    per_worker = cluster.per_worker()
    assert sorted(per_worker) == [0, 0, 5], f"requests per worker: {per_worker}"
    (served,) = [w for w, n in zip(cluster.workers, per_worker, strict=True) if n]
    prompts = [r["body"]["text"] for r in sorted(cluster.generations(served), key=_arrival)]
    for earlier, later in itertools.pairwise(prompts):  # why the prefix tree keeps it there
        assert later.startswith(earlier)
    with capsys.disabled():
        print(
            f"\ngateway (cache_aware, {WORKERS} workers): LangGraph agent, "
            f"{len(QUESTIONS)} user turns, {sum(per_worker)} requests; requests per worker: "
            f"{per_worker}; each prompt a byte-prefix of the next "
            f"({len(prompts[0])} -> {len(prompts[-1])} characters)"
        )


def _arrival(record: dict[str, Any]) -> float:
    return float(record["received_at"])


# ------------------------------------------------------------------------------ soak

SOAK_N = 300
SOAK_CONCURRENCY = 16
SOAK_SEED = 20_261_202
SOAK_SLOTS = 250  # scripted replies per worker (then a healthy default)
SOAK_WALL_LIMIT_S = 120.0
DOCUMENTED = (
    K2OverloadedError,
    K2UnavailableError,
    K2TimeoutError,
    K2StreamInterruptedError,
    K2GenerationError,
    K2IncompleteGenerationError,
)
ECHO_TOKENS = 24
# (kind, weight): ~12% of the scripted replies are faults, injected at the workers.
FAULT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ok", 0.88),
    ("http_429", 0.02),
    ("http_503", 0.02),
    ("http_500", 0.01),
    ("reset_before_headers", 0.02),
    ("hang", 0.004),
    ("cut_mid_answer", 0.02),
    ("error_at_start", 0.013),
    ("error_mid_stream", 0.013),
)


def fault(kind: str, rng: random.Random) -> dict[str, Any]:
    """The reply spec of one scripted slot of fault ``kind``."""
    if kind.startswith("http_"):
        status = int(kind[5:])
        return http_error(status, {429: "overloaded", 503: "loading"}.get(status, "boom"))
    specs: dict[str, Any] = {
        "ok": lambda: echo_reply(delay_s=rng.choice((0.0, 0.0, 0.002, 0.01))),
        "reset_before_headers": reset_before_headers,
        "hang": hang,
        "cut_mid_answer": lambda: echo_reply(cut_after=rng.randint(1, ECHO_TOKENS - 4)),
        "error_at_start": lambda: echo_reply(
            error_event_after=0, error="CUDA out of memory", error_type="generation"
        ),
        "error_mid_stream": lambda: echo_reply(
            error_event_after=rng.randint(1, ECHO_TOKENS - 4), error="CUDA out of memory"
        ),
    }
    return specs[kind]()  # type: ignore[no-any-return]


def fault_sequence() -> list[dict[str, Any]]:
    """SOAK_SLOTS reply specs drawn from a seeded generator (one hang among the first 50)."""
    rng = random.Random(SOAK_SEED)
    kinds, weights = zip(*FAULT_WEIGHTS, strict=True)
    return [fault(rng.choices(kinds, weights)[0], rng) for _ in range(SOAK_SLOTS)]


def kind_of(spec: dict[str, Any]) -> str:
    if "status" in spec:
        return f"http_{spec['status']}"
    if spec.get("reset_before_headers"):
        return "reset_before_headers"
    if spec.get("hang"):
        return "hang"
    if "cut_after" in spec:
        return "cut_mid_answer"
    if "error_event_after" in spec:
        return "error_at_start" if spec["error_event_after"] == 0 else "error_mid_stream"
    return "ok"


async def soak_requests(bound: Any) -> tuple[list[int], dict[int, BaseException], dict[int, Any]]:
    """SOAK_N requests, SOAK_CONCURRENCY at a time: even n ainvoke, odd n astream."""
    successes: list[int] = []
    failures: dict[int, BaseException] = {}
    wrong: dict[int, Any] = {}
    semaphore = asyncio.Semaphore(SOAK_CONCURRENCY)

    async def one(n: int) -> None:
        prompt = f"Call echo with n set to ECHO-N={n}."
        async with semaphore:
            try:
                if n % 2 == 0:
                    message = await bound.ainvoke(prompt)
                else:
                    message = None
                    async for chunk in bound.astream(prompt):
                        message = chunk if message is None else message + chunk
            except DOCUMENTED as exc:
                failures[n] = exc
                return
            except Exception as exc:  # not documented: reported below
                wrong[n] = exc
                return
        if calls_of(message) == [("echo", {"n": n})] and not message.invalid_tool_calls:
            successes.append(n)
        else:
            wrong[n] = message

    tasks = (one(n) for n in range(SOAK_N))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=SOAK_WALL_LIMIT_S)
    return successes, failures, wrong


async def test_soak_through_the_gateway_with_faults_at_the_workers(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = fault_sequence()  # whichever worker the gateway picks meets the same faults
    for worker in cluster.workers:
        worker.set_default(echo_reply())
        worker.script(*faults)
    llm = ChatK2(
        endpoint_url=cluster.gateway.url,
        timeout=2.0,
        max_retries=4,
        retry_backoff=0.02,
        max_new_tokens=64,
        temperature=0,
    )
    start = time.monotonic()
    successes, failures, wrong = await soak_requests(llm.bind_tools([echo]))
    wall = time.monotonic() - start

    assert wrong == {}, f"undocumented outcomes: {dict(list(wrong.items())[:5])}"
    assert len(successes) == len(set(successes)), "a call was returned twice"
    assert set(successes) | set(failures) == set(range(SOAK_N))
    for exc in failures.values():
        if isinstance(exc, K2StreamInterruptedError):  # broke inside the one call: nothing out
            assert exc.partial_text == ""

    served: Counter[str] = Counter()
    delivered: Counter[int] = Counter()
    attempts = []
    for worker in cluster.workers:
        records = cluster.generations(worker)
        attempts.append(len(records))
        for record in records:
            if record["reply_source"] == "script":
                served[kind_of(record["reply"])] += 1
            found = MARKER.findall(record["body"]["text"])
            if record["status"] == 200 and record["fault"] is None:
                delivered[int(found[-1])] += 1
    lost = sorted(set(delivered) - set(successes))
    doubled = sorted(n for n, count in delivered.items() if count > 1)
    assert lost == [], f"replies a worker delivered whole but no caller got: {lost[:10]}"
    assert doubled == [], f"replies delivered whole twice: {doubled[:10]}"
    assert set(successes) <= set(delivered)
    injected = {k: v for k, v in sorted(served.items()) if k != "ok"}
    by_type = Counter(type(exc).__name__ for exc in failures.values())
    with capsys.disabled():
        print(
            f"\ngateway soak: requests={SOAK_N} (half ainvoke, half astream) "
            f"concurrency={SOAK_CONCURRENCY} workers={WORKERS} seed={SOAK_SEED} "
            f"attempts at the workers={sum(attempts)} per worker {attempts} "
            f"faults injected={sum(injected.values())} {json.dumps(injected)} "
            f"successes={len(successes)} documented failures={len(failures)} "
            f"{json.dumps(dict(sorted(by_type.items())))} calls lost: {len(lost)} "
            f"duplicated: {len(doubled)} "
            f"wall time: {wall:.1f}s"
        )
    assert len(successes) > SOAK_N * 0.9
    assert wall < SOAK_WALL_LIMIT_S


# ------------------------------------------------------------------------------ a worker stops


def test_a_worker_stopped_mid_run_loses_no_request(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs last: it stops a worker for good (the module's gateway keeps two)."""
    for worker in cluster.workers:
        worker.set_default(echo_reply())
    llm = ChatK2(endpoint_url=cluster.gateway.url, temperature=0, max_new_tokens=64)
    bound = llm.bind_tools([echo])
    stopped: int | None = None
    before: list[int] = []
    start = time.monotonic()
    slowest = 0.0
    for n in range(24):
        if n == 8:
            before = cluster.per_worker()
            stopped = max(range(WORKERS), key=lambda i: before[i])  # the one serving now
            cluster.workers[stopped].close()
        began = time.monotonic()
        message = bound.invoke(f"Call echo with n set to ECHO-N={n}.")
        slowest = max(slowest, time.monotonic() - began)
        assert calls_of(message) == [("echo", {"n": n})], n
    wall = time.monotonic() - start
    after = cluster.per_worker()
    assert stopped is not None
    served_after = sum(n for n in after if n > 0) - sum(
        b for i, b in enumerate(before) if i != stopped
    )
    assert served_after == 16
    with capsys.disabled():
        print(
            f"\ngateway: 24 requests, worker {stopped} stopped before request 8 "
            f"(it had served {before[stopped]}); all 24 returned their own call; requests "
            f"per worker before the stop {before}, at the end {after} (-1: stopped); "
            f"slowest request {slowest:.2f}s, wall {wall:.1f}s"
        )
