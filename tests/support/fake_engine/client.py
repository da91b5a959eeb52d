"""Drive the fake TGI server from tests: start it as a subprocess and script its replies.

Flows in: reply specs (build them with `reply`, `tokens_of`, `special`, `http_error`...),
configuration and reset calls. Flows out: the server's base `url`, and the requests it received
(`requests()`), as recorded by the server. Control calls go over HTTP with `urllib` (no extra
dependency) to the server's `/_control/...` routes.

    with FakeEngine() as tgi:
        tgi.script(reply(tokens=tokens_of("Hi", special("<tool_call>"), '{"name": "f"}')))
        ...  # point the code under test at tgi.url
        assert tgi.requests("/")[0]["body"]["parameters"]["return_full_text"] is False
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_REPO_ROOT = Path(__file__).resolve().parents[3]
_MODULE = "tests.support.fake_engine.server"


# --------------------------------------------------------------------------- reply helpers


def token(text: str, special: bool = False, **extra: Any) -> dict[str, Any]:
    """One scripted token (`extra` may set `id` or `logprob`)."""
    return {"text": text, "special": special, **extra}


def special(text: str, **extra: Any) -> dict[str, Any]:
    """A special token: in each token's `text`, left out of `generated_text`."""
    return token(text, special=True, **extra)


def tokens_of(*parts: str | dict[str, Any]) -> list[dict[str, Any]]:
    """A token list: plain strings become ordinary tokens, dicts (from `special`) pass through."""
    return [token(p) if isinstance(p, str) else dict(p) for p in parts]


def reply(
    text: str | None = None,
    *,
    tokens: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A reply spec; `fields` are the other spec keys (seed, delay_s, cut_after, ...)."""
    spec: dict[str, Any] = dict(fields)
    if text is not None:
        spec["text"] = text
    if tokens is not None:
        spec["tokens"] = tokens
    if finish_reason is not None:
        spec["finish_reason"] = finish_reason
    return spec


_UNSET: Any = object()


def http_error(
    status: int,
    error: str | None = None,
    error_type: str | None = _UNSET,
    *,
    retry_after: str | int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An HTTP error answered before validation (as a proxy or an overloaded TGI would).

    The body is `{"error": error, "error_type": error_type}`. Left out, `error_type` is TGI's
    for 422/424/429/500 and absent for other statuses; `error_type=None` leaves it out.
    """
    spec: dict[str, Any] = {"status": status, **fields}
    if error is not None:
        spec["error"] = error
    if error_type is not _UNSET:
        spec["error_type"] = error_type
    if retry_after is not None:
        spec["retry_after"] = str(retry_after)
    return spec


def reset_before_headers(**fields: Any) -> dict[str, Any]:
    """The connection is reset (TCP RST) before any byte of the answer."""
    return {"reset_before_headers": True, **fields}


def hang(**fields: Any) -> dict[str, Any]:
    """The server never answers (until the client gives up, or the server's hang cap)."""
    return {"hang": True, **fields}


# --------------------------------------------------------------------------- the process


class FakeEngineError(RuntimeError):
    """The fake server could not start, or a control call failed."""


class FakeEngine:
    """The fake TGI server in a subprocess, with its control API as methods."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        tokenizer: str | os.PathLike[str] | None = None,
        config: dict[str, Any] | None = None,
        start_timeout: float = 30.0,
        engine: str = "tgi",
    ) -> None:
        """Describe the server (`engine`: tgi, vllm, sglang, llama.cpp or llama-cpp-python).

        `start()` launches it.
        """
        self.engine = engine
        self.host = host
        self.tokenizer = None if tokenizer is None else os.fspath(tokenizer)
        self.config = dict(config or {})
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The server's base URL, e.g. `http://127.0.0.1:41234`."""
        if self.port is None:
            raise FakeEngineError("the fake TGI server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> FakeEngine:
        """Launch the server and wait for its `LISTENING <port>` line."""
        if self._proc is not None:
            return self
        cmd = [sys.executable, "-m", _MODULE, "--host", self.host, "--port", "0"]
        cmd += ["--exit-on-stdin-eof", "--config", json.dumps(self.config)]
        cmd += ["--engine", self.engine]
        if self.tokenizer:
            cmd += ["--tokenizer", self.tokenizer]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept open while it runs
        self._proc = subprocess.Popen(
            cmd,
            cwd=_REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            self.port = self._read_port()
        except BaseException:
            self.close()
            raise
        return self

    def _read_port(self) -> int:
        assert self._proc is not None
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FakeEngineError(f"fake TGI did not start in {self.start_timeout}s")
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self._proc.stdout.fileno(), 1)
                if not chunk:
                    raise FakeEngineError(f"fake TGI exited at start:\n{self.stderr_text()}")
                line += chunk
        words = line.decode().split()
        if len(words) != 2 or words[0] != "LISTENING":
            raise FakeEngineError(f"unexpected first line from fake TGI: {line!r}")
        return int(words[1])

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (its log)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Stop the server (closing its stdin, then SIGTERM, then SIGKILL) and wait for it."""
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> FakeEngine:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.close()

    # ------------------------------------------------------------------ control API
    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        data = None if method == "GET" else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by this class
            f"{self.url}/_control/{route}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise FakeEngineError(
                f"control {route}: {exc.read().decode(errors='replace')}"
            ) from exc

    def script(self, *replies: dict[str, Any]) -> int:
        """Queue reply specs, answered in order; returns how many are pending."""
        return int(self._call("POST", "script", list(replies))["pending"])

    def set_default(self, spec: dict[str, Any] | None) -> None:
        """The reply used whenever the queue is empty (None: answer 500 instead)."""
        self._call("POST", "default", spec)

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change server settings (e.g. `max_stop_sequences=2`, `grammar_enabled=False`)."""
        result: dict[str, Any] = self._call("POST", "config", config)
        return result

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """The recorded TGI requests (control calls excluded), optionally for one path."""
        route = "requests" if path is None else f"requests?path={urllib.parse.quote(path)}"
        records: list[dict[str, Any]] = self._call("GET", route)
        return records

    def pending(self) -> int:
        """How many scripted replies are still queued."""
        return int(self._call("GET", "state")["pending"])

    def reset(self) -> None:
        """Forget the queue, the default reply, the records and any configuration changes."""
        self._call("POST", "reset", None)
