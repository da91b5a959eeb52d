"""Run SGLang's real Model Gateway (``sglang-router``) in front of loopback workers, for tests.

In: the workers' base URLs (this project's fake SGLang servers) and the routing policy.
Out: a running gateway process on a free 127.0.0.1 port (`SGLangGateway.url`), its log
(`log_text`), and a stop that waits for it (`close`).

The launch line is the documented one plus flags that keep a test run short and local:

- ``--worker-startup-check-interval 1``: poll the workers every second while starting
  (default 30 s);
- ``--health-check-interval-secs 1 --health-failure-threshold 2``: a stopped worker is
  taken out of rotation within about 2 s (defaults: 60 s and 3);
- ``--shutdown-grace-period-secs 1``: a stop does not wait 180 s for requests in flight;
- ``--prometheus-host 127.0.0.1 --prometheus-port <free>``: the metrics listener would
  otherwise bind 0.0.0.0:29000, which two test runs on one machine would fight over;
- ``HF_ENDPOINT`` points at a closed loopback port: the gateway fetches the tokenizer
  of the model the workers report from the Hugging Face Hub (to count tokens for its
  own OpenAI routes); ChatK2 needs none of that, and nothing may leave the machine.

A gateway that exits or is not ready (every worker healthy, ``GET /readiness``) within
``start_timeout`` raises `GatewayError` carrying its log: the test fails, it never skips.

    with SGLangGateway([w.url for w in workers]) as gateway:
        ChatK2(endpoint_url=gateway.url).invoke("Hi")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["GatewayError", "SGLangGateway", "free_port", "gateway_command"]


class GatewayError(RuntimeError):
    """The gateway could not start (its log is in the message)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's pick).

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def gateway_command(
    worker_urls: Sequence[str], port: int, metrics_port: int, policy: str = "cache_aware"
) -> list[str]:
    """The ``sglang-router launch`` command line for ``worker_urls``.

    Example:
        >>> gateway_command(["http://127.0.0.1:1", "http://127.0.0.1:2"], 30000, 29000)[1:9]
        ['launch', '--host', '127.0.0.1', '--port', '30000', '--worker-urls', \
'http://127.0.0.1:1', 'http://127.0.0.1:2']
    """
    executable = Path(sys.executable).with_name("sglang-router")
    program = str(executable) if executable.exists() else (shutil.which("sglang-router") or "")
    return [
        program or "sglang-router",
        "launch",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--worker-urls",
        *worker_urls,
        "--policy",
        policy,
        "--worker-startup-check-interval",
        "1",
        "--health-check-interval-secs",
        "1",
        "--health-failure-threshold",
        "2",
        "--shutdown-grace-period-secs",
        "1",
        "--prometheus-host",
        "127.0.0.1",
        "--prometheus-port",
        str(metrics_port),
    ]


class SGLangGateway:
    """The ``sglang-router`` process in front of ``worker_urls``."""

    def __init__(
        self,
        worker_urls: Sequence[str],
        *,
        policy: str = "cache_aware",
        start_timeout: float = 60.0,
    ) -> None:
        """Describe the gateway; `start` launches it."""
        self.worker_urls = list(worker_urls)
        self.policy = policy
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.command: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL (what ``endpoint_url`` is set to)."""
        if self.port is None:
            raise GatewayError("the gateway is not running")
        return f"http://127.0.0.1:{self.port}"

    def log_text(self, first: int = 12, last: int = 50) -> str:
        """The gateway's log: its ``first`` lines (start-up) and ``last`` lines, uncoloured."""
        if self._log is None:
            return ""
        self._log.seek(0)
        text = re.sub(r"\x1b\[[0-9;]*m", "", self._log.read().decode(errors="replace"))
        lines = text.splitlines()
        if len(lines) > first + last:
            skipped = len(lines) - first - last
            lines = [*lines[:first], f"[... {skipped} lines ...]", *lines[-last:]]
        return "\n".join(lines)

    def start(self) -> SGLangGateway:
        """Launch the gateway and wait until it reports every worker healthy."""
        self.port = free_port()
        self.command = gateway_command(self.worker_urls, self.port, free_port(), self.policy)
        env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "NO_COLOR": "1"}
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open while it runs
        try:
            self._proc = subprocess.Popen(
                self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env
            )
        except OSError as exc:
            raise GatewayError(f"could not run {self.command[0]}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _readiness(self) -> Any:
        """``GET /readiness``'s JSON (503 while a worker is not healthy), None if no answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/readiness", timeout=2) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return json.loads(exc.read())
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise GatewayError(
                    f"sglang-router exited with {self._proc.returncode} at start "
                    f"({' '.join(self.command)}):\n{self.log_text()}"
                )
            ready = self._readiness()
            if isinstance(ready, dict) and ready.get("healthy_workers") == len(self.worker_urls):
                return
            if time.monotonic() > deadline:
                raise GatewayError(
                    f"sglang-router was not ready within {self.start_timeout:.0f} s "
                    f"(last /readiness: {ready}):\n{self.log_text()}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the gateway (SIGTERM, then SIGKILL) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.port = None

    def __enter__(self) -> SGLangGateway:
        """Start the gateway."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the gateway (its log stays readable until the object is dropped)."""
        self.close()
