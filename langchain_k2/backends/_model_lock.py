"""The lock of an in-process model, which a stream its caller stopped reading gives up.

In: generations asking for the model (`ModelLock.take`), a stream pausing at each
``yield`` and resuming when read again. Out: a `Lease` for each generation that may run;
a `K2BackendError` for a stream that lost the model while it sat unread.

One llama.cpp context serves one generation at a time. A sync stream holds the lock while
its caller holds the iterator, so a caller that stopped reading without closing it would
block the next call forever. A stream paused at a ``yield`` is abandoned, and the lock
passes to the asking call, when the thread asking is the one that read the stream last
(it is not reading it any more: waiting would never end), or when the stream has sat
unread for `ABANDONED_AFTER_S` while another thread waits. Reading it again then raises.

Example:
    >>> lock = ModelLock()
    >>> first = lock.take(None)
    >>> first.pause()  # its caller stops reading
    >>> second = lock.take(None)  # the same thread asks again: the model passes on
    >>> lock.resume(first)
    Traceback (most recent call last):
    ...
    langchain_k2.errors.K2BackendError: This stream of the in-process model was abandoned: \
another call on the same model started while it sat unread, and took the model over. Read \
a stream to its end, or close() it, before the next call (docs/limits.md).
    >>> lock.give_back(first)  # no effect: it lost the lock
    >>> lock.locked()
    True
    >>> lock.give_back(second)
    >>> lock.locked()
    False
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from langchain_k2.errors import K2BackendError

__all__ = ["ABANDONED_AFTER_S", "Lease", "ModelLock"]

ABANDONED_AFTER_S = 10.0
"""A sync stream left unread this long, while another thread waits, loses the model."""
_POLL_S = 0.05


class Lease:
    """One generation's hold on the model."""

    __slots__ = ("idle_since", "revoked", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        """The thread that read the stream last."""
        self.idle_since: float | None = None
        """When the stream stopped at a ``yield`` (``None`` while it runs)."""
        self.revoked = False

    def pause(self) -> None:
        """The stream is about to ``yield``: it runs again when its caller reads it."""
        self.idle_since = time.monotonic()

    def abandoned(self, asker: int) -> bool:
        """Whether the stream sits unread at a ``yield`` that thread ``asker`` may take over."""
        idle = self.idle_since
        if idle is None:
            return False
        return asker == self.thread or time.monotonic() - idle > ABANDONED_AFTER_S


class ModelLock:
    """A lock held through a `Lease`, which a paused, abandoned stream gives up.

    Used bare (``with lock:``) it is a plain lock, for work that never pauses.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guard = threading.Lock()
        self._owner: Lease | None = None
        self._bare: Lease | None = None

    def take(self, cancel: threading.Event | None) -> Lease | None:
        """A lease once the model is free or abandoned; ``None`` once ``cancel`` is set."""
        me = threading.get_ident()
        while True:
            if self._lock.acquire(timeout=_POLL_S):
                with self._guard:
                    self._owner = Lease()
                    return self._owner
            with self._guard:
                owner = self._owner
                if owner is not None and owner.abandoned(me):
                    owner.revoked = True
                    self._owner = Lease()  # the lock passes on, still held
                    return self._owner
            if cancel is not None and cancel.is_set():
                return None

    def resume(self, lease: Lease) -> None:
        """The stream is read again: it goes on, unless another call took the model."""
        with self._guard:
            if lease.revoked:
                raise K2BackendError(
                    "This stream of the in-process model was abandoned: another call on the "
                    "same model started while it sat unread, and took the model over. Read "
                    "a stream to its end, or close() it, before the next call "
                    "(docs/limits.md)."
                )
            lease.idle_since = None
            lease.thread = threading.get_ident()

    def give_back(self, lease: Lease) -> None:
        """The generation ended: release the lock, unless it passed on already."""
        with self._guard:
            if self._owner is lease:
                self._owner = None
                self._lock.release()

    def locked(self) -> bool:
        """Whether a generation holds the model."""
        return self._lock.locked()

    def __enter__(self) -> None:
        lease = self.take(None)
        assert lease is not None  # noqa: S101 -- take(None) waits until it has one
        lease.idle_since = None
        self._bare = lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bare is not None:
            self.give_back(self._bare)
