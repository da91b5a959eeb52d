"""A loopback fake of a vLLM server serving a K2 family model, both of its routes.

Run: ``python -m benchmarks.fake_vllm_family --port 0`` (prints ``PORT <n>`` once listening).
``POST /_control/reply`` sets the reply every later request gets (JSON):
``{"tokens": [...raw K2 text pieces...], "reasoning": [...], "content": [...],
"tool_calls": [{"name", "arguments"}]}``. Both routes answer from it:

- ``POST /v1/completions`` (what ChatK2 sends: the raw prompt) streams ``tokens`` one SSE
  event each, as vLLM does with ``skip_special_tokens: false``, then the finish reason, a
  usage chunk and ``[DONE]``;
- ``POST /v1/chat/completions`` (what ``ChatOpenAI`` sends) answers as vLLM does with
  ``--reasoning-parser k2_horizon --tool-call-parser k2_horizon``: ``reasoning_content``
  deltas one piece each, then the ``content`` deltas, then each call in one ``tool_calls``
  delta (the parser emits a call whole, when its group closes), ``finish_reason``
  ``tool_calls``, usage, ``[DONE]``; or all of it in one message when not streamed.
- ``GET /v1/models``, ``GET /version``, ``POST /tokenize``, ``GET /health``: what a client
  probes.

Standard library only (``http.server``), one thread per connection.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "IFM/K2-Horizon-7B"
_REPLY: dict[str, Any] = {"tokens": ["Hi."], "reasoning": [], "content": ["Hi."], "tool_calls": []}
_LOCK = threading.Lock()


def _usage(reply: dict[str, Any]) -> dict[str, int]:
    completion = len(reply["tokens"])
    return {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}


class Handler(BaseHTTPRequestHandler):
    """The routes (see the module docstring)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _body(self) -> Any:
        size = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(size) or b"{}")

    def _json(self, doc: Any, status: int = 200) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _events(self, docs: list[Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for doc in [*docs, "[DONE]"]:
            line = "data: " + (doc if isinstance(doc, str) else json.dumps(doc)) + "\n\n"
            data = line.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        """Info routes."""
        if self.path.startswith("/v1/models"):
            self._json({"object": "list", "data": [{"id": MODEL, "max_model_len": 65536}]})
        elif self.path == "/version":
            self._json({"version": "0.11.0"})
        elif self.path == "/health":
            self._json({})
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
        """Generation and control routes."""
        body = self._body()
        with _LOCK:
            reply = dict(_REPLY)
        if self.path == "/_control/reply":
            with _LOCK:
                _REPLY.clear()
                _REPLY.update(body)
            self._json({"ok": True})
        elif self.path == "/tokenize":
            prompt = str(body.get("prompt", ""))
            count = len(prompt.split())
            self._json({"count": count, "max_model_len": 65536, "tokens": list(range(count))})
        elif self.path == "/v1/completions":
            self._completions(body, reply)
        elif self.path == "/v1/chat/completions":
            self._chat(body, reply)
        else:
            self._json({"error": {"message": "not found"}}, 404)

    def _completions(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
        base = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": MODEL}
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(reply["tokens"]), "finish_reason": "stop"}
            self._json({**base, "choices": [choice], "usage": _usage(reply)})
            return
        docs: list[Any] = [
            {**base, "choices": [{"index": 0, "text": token, "finish_reason": None}]}
            for token in reply["tokens"]
        ]
        docs.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        docs.append({**base, "choices": [], "usage": _usage(reply)})
        self._events(docs)

    def _chat(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0}
        base["model"] = MODEL
        calls = [
            {
                "id": f"chatcmpl-tool-{n}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for n, c in enumerate(reply["tool_calls"])
        ]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "reasoning_content": "".join(reply["reasoning"]) or None,
                "content": "".join(reply["content"]) or None,
                "tool_calls": calls,
            }
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self._json(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [choice],
                    "usage": _usage(reply),
                }
            )
            return

        def delta(fields: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": fields, "finish_reason": reason}]}

        docs: list[Any] = [delta({"role": "assistant", "content": ""})]
        docs += [delta({"reasoning_content": piece}) for piece in reply["reasoning"]]
        docs += [delta({"content": piece}) for piece in reply["content"]]
        docs += [delta({"tool_calls": [{"index": n, **call}]}) for n, call in enumerate(calls)]
        docs.append(delta({}, finish))
        docs.append({**base, "choices": [], "usage": _usage(reply)})
        self._events(docs)


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--port", type=int, default=0)
    args = cli.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    sys.stdout.write(f"PORT {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
