"""What every benchmark shares: result rows, run sizes, timing, the fake server, tools.

Timings on a shared two-core machine are noisy, so every comparison interleaves the two
sides (A B, then B A, in blocks) and reports medians; ratios are taken between figures
measured in the same run.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/run.py` imports `tests.support`
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.fake_engine import FakeEngine  # noqa: E402

#: Server limits large enough for 20 tools in the prompt and 2,000-token streams.
SERVER_LIMITS: dict[str, Any] = {"max_input_tokens": 8192, "max_total_tokens": 16384}


@dataclass
class Row:
    """One figure of the report: ChatK2's value, the peer's, and how they compare."""

    key: str
    section: str
    measure: str
    k2: float | None
    peer: float | None
    unit: str
    peer_name: str = "ChatHuggingFace"
    reference: str = ""
    note: str = ""
    ratio: float | None = None
    compare: bool = True
    """Whether ChatK2/peer is a meaningful ratio (it is not for growth factors)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Further numbers for the plot (e.g. the ideal wall time)."""

    def __post_init__(self) -> None:
        if self.compare and self.ratio is None and self.k2 is not None and self.peer:
            self.ratio = self.k2 / self.peer


@dataclass(frozen=True)
class Settings:
    """How big a run is: the full run, or ``--quick`` (a smoke run of seconds)."""

    quick: bool = False

    @property
    def overhead_calls(self) -> int:
        """Timed calls per side for the per-call overhead."""
        return 12 if self.quick else 300

    @property
    def stream_first_token_calls(self) -> int:
        """Timed streams per side for the first-token latency."""
        return 4 if self.quick else 40

    @property
    def stream_total_calls(self) -> int:
        """Timed 2,000-token streams per side."""
        return 1 if self.quick else 12

    @property
    def stream_tokens(self) -> int:
        """Tokens of the long stream."""
        return 2000

    @property
    def concurrency_requests(self) -> int:
        """Concurrent ``ainvoke`` calls per burst."""
        return 32 if self.quick else 256

    @property
    def concurrency_repeats(self) -> int:
        """Bursts per side and server configuration."""
        return 1 if self.quick else 3

    @property
    def malformed_turns(self) -> int:
        """Tool-calling turns per configuration."""
        return 40 if self.quick else 1000

    @property
    def local_tokens(self) -> int:
        """Tokens generated per local call."""
        return 8 if self.quick else 96

    @property
    def local_repeats(self) -> int:
        """Timed local calls per side."""
        return 1 if self.quick else 7


# --------------------------------------------------------------------------- timing


def median_ms(samples: Sequence[float]) -> float:
    """Median of samples in seconds, in milliseconds."""
    return statistics.median(samples) * 1000.0


def quartiles_ms(samples: Sequence[float]) -> tuple[float, float]:
    """25th and 75th percentiles of samples in seconds, in milliseconds."""
    if len(samples) < 4:
        low, high = min(samples), max(samples)
    else:
        q = statistics.quantiles(samples, n=4)
        low, high = q[0], q[2]
    return low * 1000.0, high * 1000.0


def interleaved(
    sides: Mapping[str, Callable[[], Any]], calls: int, block: int = 10
) -> dict[str, list[float]]:
    """Time ``calls`` calls of each side, alternating blocks (A B, B A, ...).

    Returns each side's per-call durations in seconds. The garbage collector runs between
    blocks, not inside them.
    """
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    rounds = max(1, -(-calls // block))
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            fn = sides[name]
            todo = min(block, calls - len(samples[name]))
            gc.collect()
            for _ in range(todo):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return samples


# --------------------------------------------------------------------------- the server


@contextmanager
def fake_engine(**config: Any) -> Iterator[FakeEngine]:
    """A fake TGI server in a subprocess on 127.0.0.1, stopped when the block ends."""
    server = FakeEngine(config={**SERVER_LIMITS, **config})
    with server:
        yield server


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0.0 where unknown (Linux)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def words(count: int, prefix: str = "word") -> str:
    """``count`` words; the fake tokenizer makes each one token (`` word7``)."""
    return " ".join(f"{prefix}{i}" for i in range(count))


# --------------------------------------------------------------------------- tools


def make_tools(count: int = 20) -> list[dict[str, Any]]:
    """``count`` OpenAI-format tools with typed, required parameters."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i:02d}",
                "description": f"Tool number {i}: looks up record {i} of a city's data.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name"},
                        "count": {"type": "integer", "description": "How many rows"},
                        "unit": {"type": "string", "enum": ["metric", "imperial"]},
                    },
                    "required": ["city", "count"],
                },
            },
        }
        for i in range(count)
    ]


#: The call the fake "model" makes in the tool-calling benchmarks.
TOOL_CALL: dict[str, Any] = {
    "name": "tool_07",
    "arguments": {"city": "Paris", "count": 3, "unit": "metric"},
}


def call_ok(message: Any) -> bool:
    """Whether a message carries exactly the expected call and nothing invalid."""
    calls = list(getattr(message, "tool_calls", []) or [])
    invalid = list(getattr(message, "invalid_tool_calls", []) or [])
    return (
        not invalid
        and len(calls) == 1
        and calls[0]["name"] == TOOL_CALL["name"]
        and calls[0]["args"] == TOOL_CALL["arguments"]
    )


# --------------------------------------------------------------------------- loopback only


@contextmanager
def loopback_only() -> Iterator[None]:
    """Refuse any socket connection that is not to a loopback address while the block runs.

    Neither client may reach the network (no hub lookups): a connection elsewhere raises
    ``ConnectionRefusedError`` naming the address.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address:
            try:
                loopback = ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ConnectionRefusedError(f"benchmarks are loopback-only: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]


BENCH_EXTRA = ("langchain_huggingface", "langchain_openai", "matplotlib")
"""Modules of the ``bench`` extra: the peers measured against, and the plot."""


def require_bench_extra() -> None:
    """Exit with the install command when the ``bench`` extra is missing."""
    import importlib.util

    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"benchmarks need the bench extra (missing: {', '.join(missing)}): "
            'pip install -e ".[test,bench]"'
        )
