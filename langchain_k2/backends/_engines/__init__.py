"""The engines ChatK2 can drive, one module each, behind one registry.

In: nothing. Out: `ENGINES` (``engine=`` value -> its `EngineHooks`), and what derives
from it: `EngineName` (pinned to the registry by a unit test), `ENGINE_CHOICES` (with
``"auto"``), `PROBES` (the GET routes ``engine="auto"`` reads, in order) and `LABELS`.

Adding an engine of the raw-completion kind is one module defining one `EngineHooks`
instance (``HOOKS``) and one line in `ENGINES` (plus its name in the two ``Literal`` types
below, which a type checker needs spelled out; ``tests/unit/test_engine_registry.py`` fails
until they match). Nothing else in the backends names engines.

Example:
    >>> ENGINE_CHOICES
    ('auto', 'tgi', 'vllm', 'sglang', 'llama.cpp', 'llama-cpp-python')
    >>> PROBES  # doctest: +NORMALIZE_WHITESPACE
    ('/info', '/server_info', '/get_server_info', '/model_info', '/version', '/props',
     '/openapi.json')
"""

from __future__ import annotations

from typing import Literal

from langchain_k2.backends._engines import llama_cpp_python, llama_server, sglang, tgi, vllm
from langchain_k2.backends._engines._base import EngineHooks, NotThisEngineError, Piece
from langchain_k2.backends._gbnf import GBNF
from langchain_k2.errors import K2ConfigError

__all__ = [
    "ENGINES",
    "ENGINE_CHOICES",
    "GBNF",
    "LABELS",
    "PROBES",
    "EngineHooks",
    "EngineName",
    "NotThisEngineError",
    "Piece",
    "hooks_for",
    "probes",
]

ENGINES: dict[str, EngineHooks] = {
    "tgi": tgi.HOOKS,
    "vllm": vllm.HOOKS,
    "sglang": sglang.HOOKS,
    "llama.cpp": llama_server.HOOKS,
    "llama-cpp-python": llama_cpp_python.HOOKS,
}
"""Every engine, by its ``engine=`` value."""

EngineName = Literal["tgi", "vllm", "sglang", "llama.cpp", "llama-cpp-python"]
"""The engines' names, as a type (a unit test pins it to `ENGINES`)."""

EngineChoice = Literal["auto", "tgi", "vllm", "sglang", "llama.cpp", "llama-cpp-python"]
"""What ``ChatK2(engine=...)`` takes: an engine, or ``"auto"`` (probe the server)."""

ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINES)
"""The values ``ChatK2(engine=...)`` accepts."""

LABELS: dict[str, str] = {name: hooks.label for name, hooks in ENGINES.items()}
"""Each engine's name in messages."""


def probes() -> tuple[str, ...]:
    """The GET routes ``engine="auto"`` reads, in order (by each engine's ``probe_rank``)."""
    ranked = sorted(ENGINES.values(), key=lambda hooks: hooks.probe_rank)
    return tuple(dict.fromkeys(route for hooks in ranked for route in hooks.probes))


PROBES = probes()
"""The probe routes of the registered engines, in the order they are read."""


def hooks_for(engine: str | EngineHooks) -> EngineHooks:
    """The hooks of ``engine`` (a name in `ENGINES`, or hooks already).

    Raises:
        K2ConfigError: no such engine; the message lists them.
    """
    if isinstance(engine, EngineHooks):
        return engine
    hooks = ENGINES.get(engine)
    if hooks is None:
        raise K2ConfigError(f"engine={engine!r} is not one of {ENGINE_CHOICES}.")
    return hooks
