"""Workarounds for llama-cpp-python, kept apart from the backend that needs them.

In: the imported ``llama_cpp`` module, a model path and ``Llama`` keywords, a JSON schema's
text, a built ``LlamaGrammar``. Out: a loaded ``Llama`` (with ``use_extra_bufts`` set),
GBNF text for a schema, whether llama.cpp accepts a grammar.

Each workaround names the llama-cpp-python version it was written against (0.3.36, with
the llama.cpp it bundles). ``tests/integration/test_llamacpp_compat.py`` checks that each
upstream gap still exists in the installed version, and fails with "workaround ... no
longer needed, remove it" when it is gone, so that the workaround does not outlive it.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from typing import Any

__all__ = [
    "JSON_CHAR_RULE",
    "LOOSE_CHAR_RULE",
    "construct_llama",
    "cpu_advertises_amx",
    "grammar_is_usable",
    "is_any_object",
    "schema_to_gbnf",
]

logger = logging.getLogger(__name__)

_CONSTRUCT_LOCK = threading.Lock()
"""Serializes the short window in which ``llama_model_default_params`` is patched."""


# Workaround "AMX check" (llama-cpp-python 0.3.36; llama.cpp's CPU backend): builds with the
# AMX kernels crash with a general-protection fault in virtual machines that advertise AMX
# in /proc/cpuinfo without passing it through. The backend turns the model parameter
# ``use_extra_bufts`` off on such CPUs (through `construct_llama`). Whether the kernels still
# crash can only be seen on such a VM; the test checks that the switch still exists.
@lru_cache(maxsize=1)
def cpu_advertises_amx() -> bool:
    """Whether the CPU reports Intel AMX tiles (Linux ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and "amx_tile" in line.split() for line in cpuinfo)
    except OSError:
        return False


# Workaround "model-params patch" (llama-cpp-python 0.3.36): ``Llama(...)`` takes no
# ``use_extra_bufts`` keyword although llama.cpp's model parameters have the field.
def construct_llama(
    llama_cpp: Any, model_path: str, kwargs: dict[str, Any], extra_bufts: bool | None
) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)``, with ``use_extra_bufts`` set when given.

    llama-cpp-python does not expose the model parameter ``use_extra_bufts``; its
    ``Llama`` reads the defaults from ``llama_model_default_params`` while loading, so that
    function is swapped for the duration of the load (serialized by a module lock).
    """
    bindings = llama_cpp.llama_cpp
    original = bindings.llama_model_default_params
    fields = {field[0] for field in getattr(type(original()), "_fields_", ())}
    if extra_bufts is None or "use_extra_bufts" not in fields:
        if extra_bufts is not None:
            logger.debug("this llama-cpp-python has no use_extra_bufts model parameter")
        return llama_cpp.Llama(model_path=model_path, **kwargs)

    def default_params() -> Any:
        params = original()
        params.use_extra_bufts = extra_bufts
        return params

    with _CONSTRUCT_LOCK:
        bindings.llama_model_default_params = default_params
        try:
            return llama_cpp.Llama(model_path=model_path, **kwargs)
        finally:
            bindings.llama_model_default_params = original


# Workaround "GBNF character rule" (llama-cpp-python 0.3.36): its Python schema converter
# lets JSON strings hold raw control characters (llama.cpp's C++ converter does not); a
# small model then writes newlines inside a string, the JSON never parses and the string
# never ends. The rule is replaced by JSON's own.
LOOSE_CHAR_RULE = 'char ::= [^"\\\\] |'
"""The converter's string-character rule (any character but ``"`` and ``\\``)."""
JSON_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
"""JSON's string-character rule (no control characters either)."""


# Workaround "any-object grammar swap" (llama-cpp-python 0.3.36): the converter turns
# ``additionalProperties: true`` into object-only values (``additional-value ::= object``);
# the stock ``JSON_GBNF`` is exactly "any JSON object".
def is_any_object(schema_text: str) -> bool:
    """Whether the schema is JSON mode's "any object" (no properties, anything extra).

    Example:
        >>> is_any_object('{"type": "object", "properties": {}, "additionalProperties": true}')
        True
        >>> is_any_object('{"type": "object", "properties": {"a": {"type": "string"}}}')
        False
    """
    schema = json.loads(schema_text)
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties", False) not in (False, None)
        and set(schema) <= {"type", "properties", "additionalProperties"}
    )


def schema_to_gbnf(llama_cpp: Any, schema_text: str) -> str:
    """GBNF for a JSON schema, with the two converter workarounds above applied.

    Raises:
        Exception: whatever llama-cpp-python's converter raises for the schema.
    """
    if is_any_object(schema_text):
        gbnf = str(llama_cpp.llama_grammar.JSON_GBNF)
    else:
        gbnf = str(llama_cpp.llama_grammar.json_schema_to_gbnf(schema_text))
    return gbnf.replace(LOOSE_CHAR_RULE, JSON_CHAR_RULE)


# Workaround "private sampler probe" (llama-cpp-python 0.3.36): ``LlamaGrammar.from_string``
# does not check the grammar (an undefined rule passes), and llama.cpp then returns no
# sampler for it. The grammar is tried once, through the grammar's private ``_grammar`` and
# ``_root`` texts, rather than hand a null sampler to the sampling chain.
def grammar_is_usable(bindings: Any, vocab: Any, grammar: Any) -> bool:
    """Whether llama.cpp builds a grammar sampler from ``grammar`` (a ``LlamaGrammar``).

    ``bindings`` is ``llama_cpp.llama_cpp`` and ``vocab`` the loaded model's vocabulary.
    """
    sampler = bindings.llama_sampler_init_grammar(
        vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
    )
    if not sampler:
        return False
    bindings.llama_sampler_free(sampler)
    return True
