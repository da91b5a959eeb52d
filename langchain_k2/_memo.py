"""Memoize a pure function of a JSON-like argument that is passed again and again.

In: a function of one argument (the bound tools: a list of dicts, the same object on every
call of a bound model). Out: the same function, answering from a cache when the argument is
the object it saw before and still equal to a copy taken then.

Bound tools are rendered to JSON and turned into validators on every call; with 20 tools
that is about 0.2 ms a call. Dicts cannot be hashed, and keying on ``id()`` alone would
serve stale results after an in-place edit, so each entry keeps the object (its ``id`` is
not reused while it is held) and a deep copy to compare with (a few microseconds). An
object is only copied and cached the second time it is seen: one built afresh for every
call (a single forced tool, say) costs a lookup, never a copy.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

_UNSEEN = object()
"""Snapshot placeholder of an object seen once (or not copyable): never served."""


class MemoByValue(Generic[A, R]):
    """``fn`` with a small cache keyed on the argument's identity, checked by equality.

    Example:
        >>> calls = []
        >>> def count_keys(tools):
        ...     calls.append(1)
        ...     return sum(len(t) for t in tools)
        >>> memo = MemoByValue(count_keys)
        >>> tools = [{"a": 1}]
        >>> memo(tools), memo(tools), memo(tools), len(calls)
        (1, 1, 1, 2)
        >>> tools[0]["b"] = 2  # edited in place: computed again
        >>> memo(tools), len(calls)
        (2, 3)
    """

    def __init__(self, fn: Callable[[A], R], size: int = 64) -> None:
        self._fn = fn
        self._size = size
        self._entries: OrderedDict[int, tuple[A, object, R]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, arg: A) -> R:
        key = id(arg)
        with self._lock:
            entry = self._entries.get(key)
        seen = entry is not None and entry[0] is arg
        if seen and entry is not None and entry[1] is not _UNSEEN and entry[1] == arg:
            with self._lock:
                self._entries.move_to_end(key, last=True)
            return entry[2]
        result = self._fn(arg)
        snapshot: object = _UNSEEN
        if seen:  # the second sighting: worth a copy
            try:
                snapshot = copy.deepcopy(arg)
            except Exception:  # noqa: BLE001 -- not copyable: never cached
                snapshot = _UNSEEN
        with self._lock:
            self._entries[key] = (arg, snapshot, result)
            self._entries.move_to_end(key, last=True)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return result

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


__all__ = ["MemoByValue"]
