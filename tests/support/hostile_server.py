"""A loopback server that breaks HTTP on purpose, speaking each engine's routes.

Run: ``python -m tests.support.hostile_server`` (prints ``PORT <n>``); tests use
`HostileServer`, which runs it in a subprocess, so the client's memory measured in the
test is the client's alone. The first path segment picks the behaviour and the engine
routes follow it: ``endpoint_url=f"{server.url}/drip-headers"`` with ``engine="vllm"``
sends ``POST /drip-headers/v1/completions``. A ``probe-`` prefix (``probe-huge``) applies
the behaviour to the info and tokenize routes instead of the generation route.

Behaviours (on the generation route; a streamed request gets an event stream):
  - ``text``: a proper answer whose text is `TEXT` (Unicode line breaks inside);
  - ``endless``: a stream of one-token events that never ends (a whole answer: a body that
    never ends);
  - ``keepalive``: an event stream of keep-alive comments that never ends;
  - ``drip-headers``: the status line, then one byte of headers every `DRIP_S` seconds;
  - ``drip-body``: headers, then one byte of the body every `DRIP_S` seconds;
  - ``drip-events``: an event stream whose events come one byte every `DRIP_S` seconds;
  - ``huge``: a body (or one SSE line) that never ends, as fast as the client reads;
  - ``gzip``: ``Content-Encoding: gzip`` (unasked) on a 0.5 MB body inflating to 512 MB;
  - ``huge-error``: a 500 whose body never ends.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

__all__ = ["DRIP_S", "TEXT", "HostileServer"]

TEXT = "line\u2028sep\u2029para\u0085nel, then\u000bvt and\u000cff; \u001c\u001d\u001e end"
"""Generated text with every line break Python's ``str.splitlines`` knows but SSE does not."""
DRIP_S = 0.1
_MAX_S = 60.0  # no connection is served longer than this
_REPO_ROOT = Path(__file__).resolve().parents[2]

_GEN_ROUTES = {"/", "/v1/completions", "/generate", "/completion"}
_INFO = {
    "/info": {"model_id": "LLM360/K2-Chat", "max_input_tokens": 4000, "max_total_tokens": 4096},
    "/v1/models": {"data": [{"id": "LLM360/K2-Chat", "max_model_len": 4096}]},
    "/server_info": {"context_length": 4096, "model_path": "LLM360/K2-Chat"},
    "/props": {"default_generation_settings": {"n_ctx": 4096}, "model_path": "LLM360/K2-Chat"},
}


def _engine(route: str, body: dict[str, Any]) -> str:
    if route == "/":
        return "tgi"
    if route == "/generate":
        return "sglang"
    if route == "/completion":
        return "llama.cpp"
    return "vllm"  # llama-cpp-python's /v1/completions answers alike


def _pieces(text: str) -> list[str]:
    return [text[i : i + 3] for i in range(0, len(text), 3)]


def _whole(engine: str, text: str) -> dict[str, Any] | list[dict[str, Any]]:
    n = len(_pieces(text))
    if engine == "tgi":
        tokens = [
            {"id": i, "text": t, "logprob": 0.0, "special": False}
            for i, t in enumerate(_pieces(text))
        ]
        details = {
            "finish_reason": "eos_token",
            "generated_tokens": n,
            "seed": None,
            "prefill": [],
            "tokens": tokens,
        }
        return [{"generated_text": text, "details": details}]
    if engine == "sglang":
        meta = {
            "finish_reason": {"type": "stop", "matched": 2},
            "prompt_tokens": 3,
            "completion_tokens": n,
        }
        return {"text": text, "meta_info": meta}
    if engine == "llama.cpp":
        return {
            "content": text,
            "stop": True,
            "stop_type": "eos",
            "tokens_evaluated": 3,
            "tokens_predicted": n,
        }
    return {
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "stop_reason": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": n},
    }


def _event(engine: str, piece: str, index: int, seen: str, last: bool) -> bytes:
    doc: dict[str, Any]
    if engine == "tgi":
        details = (
            {
                "finish_reason": "eos_token",
                "generated_tokens": index + 1,
                "seed": None,
                "input_length": 3,
            }
            if last
            else None
        )
        doc = {
            "index": index,
            "token": {"id": index, "text": piece, "logprob": 0.0, "special": False},
            "generated_text": None,
            "details": details,
        }
    elif engine == "sglang":
        finish = {"type": "stop", "matched": 2} if last else None
        doc = {
            "text": seen + piece,
            "meta_info": {
                "finish_reason": finish,
                "prompt_tokens": 3,
                "completion_tokens": index + 1,
            },
        }
    elif engine == "llama.cpp":
        doc = {"content": piece, "stop": False}
        if last:
            done = {
                "content": "",
                "stop": True,
                "stop_type": "eos",
                "tokens_evaluated": 3,
                "tokens_predicted": index + 1,
            }
            return _sse(doc) + _sse(done)
    else:
        doc = {"choices": [{"index": 0, "text": piece, "finish_reason": "stop" if last else None}]}
    event = _sse(doc)
    if last and engine in {"vllm", "sglang"}:
        event += b"data: [DONE]\n\n"
    return event


def _sse(doc: Any) -> bytes:
    # Raw UTF-8, as real servers write it (serde_json escapes only control characters).
    return b"data: " + json.dumps(doc, ensure_ascii=False).encode() + b"\n\n"


def _probe_answer(route: str) -> Any:
    if route in _INFO:
        return _INFO[route]
    if route == "/tokenize":  # TGI's list, vLLM's count, llama-server's tokens: all three
        return {"count": 3, "tokens": [1, 2, 3]}
    return {"tokens": [1, 2, 3]}  # /extras/tokenize


_BOMB: list[bytes] = []


def _bomb() -> bytes:
    """512 MB of zeros, gzipped (about 0.5 MB), made once.

    Each 1 MB block is fully flushed, so every block after the first compresses to the
    same bytes: two are compressed, the rest repeated, the trailer computed.
    """
    if not _BOMB:
        block = bytes(1 << 20)
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        head = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
        repeated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
        end = packer.flush()[:-8]  # the last (empty) block, without the trailer
        crc = 0
        for _ in range(512):
            crc = zlib.crc32(block, crc)
        trailer = struct.pack("<II", crc, (512 << 20) & 0xFFFFFFFF)
        _BOMB.append(head + repeated * 511 + end + trailer)
    return _BOMB[0]


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.started = time.monotonic()
        with contextlib.suppress(OSError):  # the client went away: done
            self._serve()

    def _serve(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1")
        if not line:
            return
        _method, path, _ = line.split(" ", 2)
        length = 0
        while True:
            header = self.rfile.readline(65536).decode("latin-1").strip()
            if not header:
                break
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        _, mode, *rest = path.split("/", 2)
        route = "/" + (rest[0] if rest else "")
        probe = mode.startswith("probe-")
        mode = mode.removeprefix("probe-")
        if route not in _GEN_ROUTES or (route == "/generate" and _is_count(body)):
            if not probe:
                self._json(200, _probe_answer(route))
                return
        elif probe:
            mode = "text"
        stream = bool(body.get("stream"))
        engine = _engine(route, body)
        getattr(self, "_" + mode.replace("-", "_"))(engine, stream, route)

    def _alive(self) -> bool:
        return time.monotonic() - self.started < _MAX_S

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _head(self, status: int, kind: str, extra: str = "") -> None:
        reason = {200: "OK", 500: "Internal Server Error"}[status]
        self._send(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
            f"Connection: close\r\n{extra}\r\n".encode()
        )

    def _json(self, status: int, doc: Any) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode()
        self._head(status, "application/json", f"Content-Length: {len(data)}\r\n")
        self._send(data)

    # ------------------------------------------------------------ behaviours

    def _text(self, engine: str, stream: bool, route: str) -> None:
        if route not in _GEN_ROUTES:
            self._json(200, _probe_answer(route))
            return
        if not stream:
            self._json(200, _whole(engine, TEXT))
            return
        self._head(200, "text/event-stream")
        pieces, seen = _pieces(TEXT), ""
        for i, piece in enumerate(pieces):
            self._send(_event(engine, piece, i, seen, i == len(pieces) - 1))
            seen += piece

    def _endless(self, engine: str, stream: bool, route: str) -> None:
        if not stream:
            self._huge(engine, stream, route)
            return
        self._head(200, "text/event-stream")
        index, seen = 0, ""
        while self._alive():
            batch = []
            for _ in range(64):
                batch.append(_event(engine, "x", index, seen, False))
                index += 1
                if engine == "sglang":  # cumulative: each event repeats all text so far
                    seen += "x"
            self._send(b"".join(batch))

    def _keepalive(self, engine: str, stream: bool, route: str) -> None:
        self._head(200, "text/event-stream")
        batch = b": keep-alive\n\n" * 256
        while self._alive():
            self._send(batch)

    def _drip(self, data: bytes) -> None:
        for byte in data:
            if not self._alive():
                return
            self._send(bytes([byte]))
            time.sleep(DRIP_S)

    def _drip_headers(self, engine: str, stream: bool, route: str) -> None:
        self._send(b"HTTP/1.1 200 OK\r\n")
        self._drip(b"X-Slow: " + b"a" * 100_000)

    def _drip_body(self, engine: str, stream: bool, route: str) -> None:
        self._head(200, "application/json", "Content-Length: 100000\r\n")
        self._drip(b'{"text": "' + b"a" * 100_000)

    def _drip_events(self, engine: str, stream: bool, route: str) -> None:
        if not stream:
            self._drip_body(engine, stream, route)
            return
        self._head(200, "text/event-stream")
        events = b"".join(_event(engine, "x", i, "x" * i, False) for i in range(300))
        self._drip(events)

    def _huge(self, engine: str, stream: bool, route: str) -> None:
        if stream:
            self._head(200, "text/event-stream")
            self._send(b'data: {"text": "')
        else:
            self._head(200, "application/json")
            self._send(b'{"text": "')
        block = b"a" * 65536
        while self._alive():
            self._send(block)

    def _gzip(self, engine: str, stream: bool, route: str) -> None:
        bomb = _bomb()
        kind = "text/event-stream" if stream else "application/json"
        self._head(200, kind, f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n")
        self._send(bomb)

    def _huge_error(self, engine: str, stream: bool, route: str) -> None:
        self._head(500, "text/html")
        self._send(b"<html>" + b"overloaded " * 10)
        block = b"x" * 65536
        while self._alive():
            self._send(block)


def _is_count(body: dict[str, Any]) -> bool:
    sampling = body.get("sampling_params")
    return isinstance(sampling, dict) and sampling.get("max_new_tokens") == 0


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileServer:
    """`main` in a subprocess on 127.0.0.1; ``url`` is its base URL."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> HostileServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hostile_server"],
            cwd=_REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the hostile server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()


def main() -> None:
    """Serve on an ephemeral loopback port, printing ``PORT <n>`` first."""
    _bomb()
    with _Server(("127.0.0.1", 0), _Handler) as server:
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        print(f"PORT {server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
