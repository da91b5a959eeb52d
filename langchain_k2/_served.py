"""Which model the engine serves: compared with ``model_name``, and the warning when not.

In: the model id an engine reports (TGI's ``/info`` ``model_id``, a GGUF file's name),
the ``model_name`` ChatK2 was built with, and where the engine is. Out: whether they name
the same model (`same_model`), the text of the warning given once when they do not
(`mismatch_message`), and the name metadata reports (`reported_model`).

Example:
    >>> same_model("/data/models/K2-Chat", "LLM360/K2-Chat")
    True
    >>> same_model("k2-chat.Q4_K_M.gguf", "LLM360/K2-Chat")
    True
    >>> same_model("meta-llama/Llama-3.1-8B-Instruct", "LLM360/K2-Chat")
    False
"""

from __future__ import annotations

import warnings

from langchain_k2._urls import redact_url
from langchain_k2.backends._base import Backend, BackendInfo
from langchain_k2.backends._engines import LABELS


def _base(name: str) -> str:
    """A model name's last path part, lowercased, without a ``.gguf`` suffix."""
    last = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    return last.removesuffix(".gguf")


def same_model(served: str, expected: str) -> bool:
    """Whether ``served`` (a hub id, a path, a file name) is ``expected``'s model.

    Organisations and directories are ignored, and one name may extend the other (a
    quantized file ``k2-chat.Q4_K_M.gguf``, a ``K2-Chat-AWQ`` repository).
    """
    a, b = _base(served), _base(expected)
    return bool(a) and bool(b) and (a in b or b in a)


def mismatch_message(served: str, expected: str, engine: str, url: str | None) -> str:
    """The warning for an engine serving ``served`` to a ChatK2 built for ``expected``."""
    where = f"{engine} at {redact_url(url)}" if url else engine
    return (
        f"{where} serves {served!r}, not {expected!r}: ChatK2 renders K2-Chat's prompt "
        "format and parses its tool calls, which another model does not know. Point the "
        "endpoint at a server serving LLM360/K2-Chat; or pass prompt_format= for this "
        f"model (K2Format.chatml() for a ChatML one); or model_name={served!r} if it is a "
        "K2-Chat under another name. Its id is in response_metadata['model_name']."
    )


def reported_model(served: str | None, chosen: str | None, family: str) -> str:
    """The model name reported (LangSmith's ``ls_model_name``, ``response_metadata``).

    The id the engine reports serving when known, else the ``model_name`` the user set,
    else the prompt format's own model (``PromptFormat.model_id``): never K2-Chat's
    default name for another family.

    >>> reported_model(None, None, "IFM/K2-Horizon")
    'IFM/K2-Horizon'
    >>> reported_model(None, "my-k2", "IFM/K2-Horizon"), reported_model("/m/k2.gguf", "my-k2", "x")
    ('my-k2', '/m/k2.gguf')
    """
    return served or chosen or family


__all__ = ["mismatch_message", "reported_model", "same_model"]


_ENGINES = {**LABELS, "llamacpp": "llama.cpp"}
"""Engine names as messages write them (the in-process backend is ``llamacpp``)."""


def warn_if_other_model(info: BackendInfo, expected: str, backend: Backend) -> None:
    """Warn (``UserWarning``) when ``backend`` serves a model other than ``expected``."""
    served = info.model_id
    if not served or same_model(served, expected):
        return
    engine = _ENGINES.get(backend.name, backend.name)
    message = mismatch_message(served, expected, engine, getattr(backend, "url", None))
    warnings.warn(message, UserWarning, stacklevel=5)
