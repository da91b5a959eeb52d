"""The fake TGI server's mutable state: configuration, the reply queue and the request log.

Flows in: control-API calls (`script`, `set_default`, `configure`, `reset`) and every TGI request
(`record`). Flows out: the reply spec each generation request gets (`next_fault`, `take`), the
current configuration and tokenizer, and the recorded requests.

Replies are consumed in FIFO order by requests that reach generation; when the queue is empty
the default reply (if any) answers without being consumed. A spec carrying a network/proxy fault
(`status`, `reset_before_headers`, `hang`) is taken before TGI's validation would run.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from typing import Any

from .protocol import ReplySpec, SpecError, parse_spec
from .tokenizer import K2_SPECIAL_TOKENS, Tokenizer, load_tokenizer

#: Every configurable key with its default (`/info` fields first).
DEFAULT_CONFIG: dict[str, Any] = {
    "model_id": "LLM360/K2-Chat",
    "model_sha": None,
    "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_tokens": 1024,
    "max_total_tokens": 2048,
    "validation_workers": 2,
    "max_client_batch_size": 4,
    "router": "text-generation-router",
    "version": "3.3.6-dev0",
    "sha": None,
    "docker_label": None,
    # Server behaviour (not in /info).
    "max_top_n_tokens": 5,
    "grammar_enabled": True,
    "compat_return_full_text": True,
    "healthy": True,
    "timing_headers": True,
    "latency_s": 0.0,
    "hang_cap_s": 30.0,
    "eos_token": "<|endoftext|>",
    "special_tokens": list(K2_SPECIAL_TOKENS),
    "compute_type": "gpu+optimized",
    "gateway": False,  # engines.py: SGLang behind its Model Gateway
    "bos_token": None,  # the BOS the tokenizer adds (None: none): vLLM's (engines.py), llama.py
}
INFO_KEYS = (
    "model_id",
    "model_sha",
    "model_pipeline_tag",
    "max_concurrent_requests",
    "max_best_of",
    "max_stop_sequences",
    "max_input_tokens",
    "max_total_tokens",
    "validation_workers",
    "max_client_batch_size",
    "router",
    "version",
    "sha",
    "docker_label",
)
_INT_KEYS = {
    "max_concurrent_requests",
    "max_best_of",
    "max_stop_sequences",
    "max_input_tokens",
    "max_total_tokens",
    "validation_workers",
    "max_client_batch_size",
    "max_top_n_tokens",
}


class ConfigError(ValueError):
    """A configuration update names an unknown key or has a wrong type."""


def check_config(update: dict[str, Any]) -> None:
    """Reject unknown keys and wrongly typed values in a configuration update."""
    unknown = set(update) - set(DEFAULT_CONFIG)
    if unknown:
        known = sorted(DEFAULT_CONFIG)
        raise ConfigError(f"unknown config key(s) {sorted(unknown)}; known: {known}")
    for key, value in update.items():
        default = DEFAULT_CONFIG[key]
        if key in _INT_KEYS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        elif key == "special_tokens":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = value is None or isinstance(value, str)
            if default is not None and value is None:
                ok = False
        if not ok:
            raise ConfigError(f"bad value for config {key!r}: {value!r}")


class State:
    """Everything the server remembers between requests."""

    def __init__(self, base_config: dict[str, Any], tokenizer_path: str | None) -> None:
        """Start from `base_config` (defaults plus command-line overrides)."""
        check_config(base_config)
        self._base = {**copy.deepcopy(DEFAULT_CONFIG), **copy.deepcopy(base_config)}
        self._tokenizer_path = tokenizer_path
        self.queue: deque[ReplySpec] = deque()
        self.default: ReplySpec | None = None
        self.records: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {}
        self.tokenizer: Tokenizer = load_tokenizer(tokenizer_path, K2_SPECIAL_TOKENS)
        self.in_flight = 0
        self.reset()

    # ------------------------------------------------------------------ control
    def reset(self) -> None:
        """Clear the queue, the default reply and the records; restore the start configuration."""
        self.queue.clear()
        self.default = None
        self.records.clear()
        self.config = copy.deepcopy(self._base)
        self._reload_tokenizer()

    def configure(self, update: dict[str, Any]) -> dict[str, Any]:
        """Merge `update` into the configuration and return the whole configuration."""
        check_config(update)
        self.config.update(copy.deepcopy(update))
        if "special_tokens" in update:
            self._reload_tokenizer()
        return copy.deepcopy(self.config)

    def _reload_tokenizer(self) -> None:
        specials = tuple(self.config["special_tokens"])
        self.tokenizer = load_tokenizer(self._tokenizer_path, specials)

    def script(self, raw_specs: list[Any]) -> int:
        """Append reply specs (all checked first; none is queued if one is bad)."""
        specs = [parse_spec(raw) for raw in raw_specs]
        self.queue.extend(specs)
        return len(self.queue)

    def set_default(self, raw: Any) -> None:
        """Set (or clear, with None) the reply used when the queue is empty."""
        self.default = None if raw is None else parse_spec(raw)

    def info(self) -> dict[str, Any]:
        """The `/info` document, in TGI's key order."""
        return {key: self.config[key] for key in INFO_KEYS}

    # ------------------------------------------------------------------ requests
    def record(
        self, *, method: str, path: str, query: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Log a TGI request; the returned dict is filled in further as it is answered."""
        entry: dict[str, Any] = {
            "seq": len(self.records),
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": None,
            "body_text": "",
            "received_at": time.time(),
            "reply": None,
            "reply_source": None,
            "status": None,
            "fault": None,
        }
        self.records.append(entry)
        return entry

    def next_fault(self) -> tuple[ReplySpec, str] | None:
        """The next spec if it is a pre-validation fault (taken off the queue), else None."""
        if self.queue:
            if self.queue[0].pre_validation_fault:
                return self.queue.popleft(), "script"
            return None
        if self.default is not None and self.default.pre_validation_fault:
            return self.default, "default"
        return None

    def take(self) -> tuple[ReplySpec, str] | None:
        """The spec for a request that passed validation: queued first, then the default."""
        if self.queue:
            return self.queue.popleft(), "script"
        if self.default is not None:
            return self.default, "default"
        return None


__all__ = ["DEFAULT_CONFIG", "ConfigError", "SpecError", "State", "check_config"]
