"""What ChatK2 POSTs, recorded on the wire: the ``sent`` fixture's engine.

In: nothing; inside `recording`, huggingface_hub's sync session is an ``httpx.Client`` with a
request hook. Out: the ``(path, JSON body)`` of every POST sent meanwhile, in order
(`bodies_to` picks one route's bodies); the default session is restored on exit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from huggingface_hub import close_session, set_client_factory
from huggingface_hub.utils._http import default_client_factory

Sent = list[tuple[str, dict[str, Any]]]


@contextmanager
def recording() -> Iterator[Sent]:
    """``(path, JSON body)`` of every POST ChatK2 sends (sync session), recorded by a hook."""
    bodies: Sent = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            bodies.append((request.url.path, json.loads(request.content)))

    close_session()
    set_client_factory(lambda: httpx.Client(event_hooks={"request": [record]}))
    try:
        yield bodies
    finally:
        set_client_factory(default_client_factory)
        close_session()


def bodies_to(sent: Sent, route: str) -> list[dict[str, Any]]:
    """The JSON bodies sent to ``route``, in order."""
    return [body for path, body in sent if path == route]
