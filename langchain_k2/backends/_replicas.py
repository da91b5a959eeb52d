"""Spreading requests over several replicas of a server, with a cool-down for failing ones.

In: the replicas' base URLs and a cool-down in seconds. Out: the URL to use next
(round robin over the replicas not cooling down) and, after a retryable failure, a
cool-down for the replica that failed. When every replica is cooling down, picking
raises ``K2UnavailableError`` (retryable, with ``retry_after`` set to the shortest wait),
so no replica receives traffic while it cools down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from langchain_k2.errors import K2ConfigError, K2UnavailableError


class ReplicaSet:
    """Round robin over healthy replicas; a failed replica sits out ``cooldown`` seconds.

    Example:
        >>> replicas = ReplicaSet(["http://a:80", "http://b:80"], cooldown=30.0)
        >>> replicas.pick(), replicas.pick(), replicas.pick()
        ('http://a:80', 'http://b:80', 'http://a:80')
        >>> replicas.failed("http://b:80")
        >>> replicas.pick(), replicas.pick()
        ('http://a:80', 'http://a:80')
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        server: str = "TGI",
    ) -> None:
        self.server = server
        """The engine's name in messages."""
        if not urls:
            raise K2ConfigError(f"endpoint_url is an empty list: give at least one {server} URL.")
        if len(set(urls)) != len(urls):
            raise K2ConfigError(f"endpoint_url lists a replica twice: {list(urls)}.")
        self.urls = list(urls)
        self.cooldown = cooldown
        self._clock = clock
        self._until = dict.fromkeys(self.urls, 0.0)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self) -> str:
        """The next replica not cooling down."""
        with self._lock:
            now = self._clock()
            count = len(self.urls)
            for offset in range(count):
                index = (self._next + offset) % count
                url = self.urls[index]
                if self._until[url] <= now:
                    self._next = (index + 1) % count
                    return url
            wait = min(self._until.values()) - now
        raise K2UnavailableError(
            f"All {count} {self.server} replicas are cooling down after failures; the first is "
            f"back in {wait:.1f}s. Retried with backoff; add replicas or lower the cool-down.",
            retry_after=max(wait, 0.0),
        )

    def failed(self, url: str) -> None:
        """Take ``url`` out of rotation for ``cooldown`` seconds (a single URL never is)."""
        if len(self.urls) == 1:
            return
        with self._lock:
            self._until[url] = self._clock() + self.cooldown

    def cooling(self) -> list[str]:
        """The replicas cooling down now."""
        with self._lock:
            now = self._clock()
            return [url for url in self.urls if self._until[url] > now]
