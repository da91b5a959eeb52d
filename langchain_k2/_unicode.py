r"""Text from a server made safe to keep: lone UTF-16 surrogates become U+FFFD.

In: text decoded from a server's JSON (``"\ud800"`` is legal JSON and decodes to a lone
surrogate, which no UTF-8 encoder accepts). Out: the same text with each lone surrogate
replaced by U+FFFD (and a split pair joined), so the answer can be sent back in the next
turn's request, printed and stored. Text without surrogates is returned as is (one scan).

Example:
    >>> clean_surrogates("ok\ud800!") == "ok\ufffd!", clean_surrogates("\ud83d\ude00")
    (True, '😀')
    >>> clean_values({"a": ["x\udfff"]}) == {"a": ["x\ufffd"]}
    True
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["clean_surrogates", "clean_values"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_surrogates(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (pairs joined into their character)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_values(value: Any) -> Any:
    """`clean_surrogates` over every string (keys included) of a JSON value."""
    if isinstance(value, str):
        return clean_surrogates(value)
    if isinstance(value, list):
        return [clean_values(item) for item in value]
    if isinstance(value, dict):
        return {clean_surrogates(k): clean_values(v) for k, v in value.items()}
    return value
