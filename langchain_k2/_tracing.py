"""What tracing sees of a chat model: LangSmith's parameters and the identifying ones.

In: the chat model's fields, read through `TracedSource` (this module does not import
``chat_models``), the model id the engine reported serving and the backend found so far,
and one call's ``stop`` and options. Out: the ``LangSmithParams`` of a call
(`ls_params`: the call's options over the fields, read leniently: nothing here raises),
and the parameters that identify the model (`identifying_params`, an ``endpoint_url``'s
credentials redacted).

Example:
    >>> from langchain_k2 import ChatK2
    >>> llm = ChatK2(endpoint_url="http://u:p@127.0.0.1:8080", engine="tgi", stop=["END"])
    >>> params = ls_params(llm, None, {"max_tokens": 5}, served=None, found=None)
    >>> params["ls_model_name"], params["ls_max_tokens"], params["ls_stop"], params["ls_engine"]
    ('LLM360/K2-Chat', 5, ['END'], 'tgi')
    >>> identifying_params(llm)["endpoint_url"]
    'http://***@127.0.0.1:8080'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from langchain_core.language_models import LangSmithParams

from langchain_k2._call_options import CALL_OPTIONS, traced_options
from langchain_k2._served import reported_model
from langchain_k2._stops import sent_stops
from langchain_k2._urls import redact
from langchain_k2.backends._base import Backend
from langchain_k2.formats._base import PromptFormat

__all__ = ["TracedSource", "identifying_params", "ls_params"]


class TracedSource(Protocol):
    """What tracing reads of a chat model (``ChatK2`` is one), read-only.

    ``model_fields_set`` is the fields the user set (pydantic's); ``format`` the prompt
    format in use (its ``model_id`` is reported when nothing else names the model).
    """

    @property
    def model_name(self) -> str: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def format(self) -> PromptFormat: ...
    @property
    def max_new_tokens(self) -> int: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def stop(self) -> list[str] | None: ...
    @property
    def endpoint_url(self) -> str | list[str] | None: ...
    @property
    def model_path(self) -> str | None: ...
    @property
    def engine(self) -> str: ...
    @property
    def backend(self) -> Backend | None: ...


def identifying_params(chat: TracedSource) -> dict[str, Any]:
    """The model's name, where it runs (credentials redacted) and its sampling fields."""
    return {
        "model_name": chat.model_name,
        "endpoint_url": redact(chat.endpoint_url),
        "model_path": chat.model_path,
        **{name: getattr(chat, name) for name in CALL_OPTIONS},
    }


def ls_params(
    chat: TracedSource,
    stop: list[str] | None,
    options: Mapping[str, Any],
    *,
    served: str | None,
    found: Backend | None,
) -> LangSmithParams:
    """LangSmith's parameters of a call with ``stop`` and ``options``.

    ``served`` is the model id the engine reported (``None``: not asked yet) and ``found``
    the backend built so far: with a server, its engine is reported (``engine`` until
    probed).
    """
    chosen = chat.model_name if "model_name" in chat.model_fields_set else None
    model = reported_model(served, chosen, chat.format.model_id)
    traced = traced_options(options, model, chat.max_new_tokens, chat.temperature)
    params = LangSmithParams(
        ls_provider="k2",
        ls_model_name=traced.model,
        ls_model_type="chat",
        ls_max_tokens=traced.max_new_tokens,
    )
    if traced.temperature is not None:
        params["ls_temperature"] = traced.temperature
    if stops := sent_stops(chat.stop, stop or traced.stop):
        params["ls_stop"] = list(stops)
    if chat.endpoint_url or chat.backend is not None:  # the engine found, once probed
        backend = chat.backend or found
        cast("dict[str, Any]", params)["ls_engine"] = backend.name if backend else chat.engine
    return params
