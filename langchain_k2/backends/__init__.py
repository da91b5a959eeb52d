"""Backends behind one protocol: TGI (remote) and llama.cpp (in process).

In: a prompt and ``GenerationParams``. Out: ``TokenEvent``s and one ``FinalEvent``.
The llama.cpp backend is imported lazily (its extra may not be installed).
"""

from langchain_k2.backends._base import (
    Backend,
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    TokenEvent,
)

__all__ = [
    "Backend",
    "BackendInfo",
    "FinalEvent",
    "GenerationEvent",
    "GenerationParams",
    "TokenEvent",
]
