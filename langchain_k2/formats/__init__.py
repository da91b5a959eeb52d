"""Prompt formats of the K2 family, one module each, selected by name or by served model.

In: a format name (``"k2-chat"``, ``"k2-v2"``, ``"k2-think-v2"``, ``"k2-v3"``), a format
object, or the model id an engine reports. Out: a `PromptFormat` (`get_format`), or the
name of the family a model id belongs to (`format_for_model`).

Public names:

- `PromptFormat`, the base every family's format implements, and `FormatSettings`.
- the family formats: `K2Format` (K2-Chat), `K2V2Format` (K2-V2-Instruct),
  `K2ThinkV2Format` (K2-Think-V2), `K2V3Format` (K2-V3, K2 Horizon); pass one as
  ``ChatK2(prompt_format=...)`` to change its settings.
- the registry: `FORMATS` (every format by name), `get_format`, `format_for_model`.
- `format_from_tokenizer`: check K2-Chat's format against a tokenizer directory.

A new family is one private module defining a `PromptFormat` subclass plus one line in
`FORMATS`; rendering, counting and the output parser all go through it.

Examples:
    >>> get_format("k2-v3").name
    'k2-v3'
    >>> [format_for_model(m) for m in ("LLM360/K2-V2-Instruct", "IFM/K2-Horizon-7B",
    ...                                "k2-think-v2.Q4_K_M.gguf", "k2-v2-instruct-awq",
    ...                                "LLM360/K2-Chat", "Qwen/Qwen3-8B")]
    ['k2-v2', 'k2-v3', 'k2-think-v2', 'k2-v2', 'k2-chat', None]
"""

from __future__ import annotations

import re
from collections.abc import Callable

from langchain_k2._format_check import format_from_tokenizer
from langchain_k2.errors import K2ConfigError
from langchain_k2.formats._base import FormatSettings, PromptFormat
from langchain_k2.formats._k2_chat import DEFAULT_FORMAT, K2Format
from langchain_k2.formats._k2_v2 import K2ThinkV2Format, K2V2Format
from langchain_k2.formats._k2_v3 import K2V3Format

FORMATS: dict[str, Callable[[], PromptFormat]] = {
    "k2-chat": K2Format,
    "k2-v2": K2V2Format,
    "k2-think-v2": K2ThinkV2Format,
    "k2-v3": K2V3Format,
}
"""Every format by name; the first is the default."""

_MODEL_PATTERNS = (
    ("k2-v3", re.compile(r"k2horizon|k2v3")),
    ("k2-think-v2", re.compile(r"k2thinkv2")),
    ("k2-v2", re.compile(r"k2v2")),
    ("k2-chat", re.compile(r"k2chat")),
)
"""Model-id fragments (lowercase, separators removed) and the family they name."""

_INSTANCES: dict[str, PromptFormat] = {"k2-chat": DEFAULT_FORMAT}


def get_format(value: str | PromptFormat | None) -> PromptFormat:
    """The format named ``value`` (a format object is returned as is; ``None``: K2-Chat).

    Raises:
        K2ConfigError: an unknown name; the choices are named.
    """
    if value is None:
        return DEFAULT_FORMAT
    if isinstance(value, PromptFormat):
        return value
    if not isinstance(value, str) or value not in FORMATS:
        raise K2ConfigError(
            f"prompt_format={value!r} is not a known format: pass one of {list(FORMATS)} "
            "or a format object (K2Format(...), K2Format.chatml())."
        )
    found = _INSTANCES.get(value)
    if found is None:
        found = _INSTANCES[value] = FORMATS[value]()
    return found


def format_for_model(model_id: str | None) -> str | None:
    """The family of a served model id (hub id, path, GGUF file name), if it is a K2 one.

    Only the last path part counts; case, ``-``, ``_``, ``.`` and spaces are ignored, so
    quantized and renamed variants (``k2-v2-instruct-awq``, ``K2-Think-V2-Q4_K_M.gguf``)
    are recognised.
    """
    if not model_id:
        return None
    last = model_id.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    key = re.sub(r"[-_. ]", "", last.lower())
    for name, pattern in _MODEL_PATTERNS:
        if pattern.search(key):
            return name
    return None


__all__ = [
    "FORMATS",
    "FormatSettings",
    "K2Format",
    "K2ThinkV2Format",
    "K2V2Format",
    "K2V3Format",
    "PromptFormat",
    "format_for_model",
    "format_from_tokenizer",
    "get_format",
]
