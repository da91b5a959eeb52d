"""Constructor and call arguments: LangChain's common names accepted, unknown ones refused.

In: the keyword arguments given to ``ChatK2(...)`` (or to one call, ``bind(...)``) and the
model class. Out: the same arguments with LangChain's usual names (``max_tokens``,
``base_url``) turned into ChatK2's own, or a ``K2ConfigError`` naming an argument no field
takes and the nearest name that does (``temprature`` -> ``temperature``). One call's
options are parsed, once, by `langchain_k2._call_options` (which resolves their aliases here).

Example:
    >>> from pydantic import BaseModel, Field
    >>> class Model(BaseModel):
    ...     max_new_tokens: int = 1
    ...     temperature: float = 0.0
    ...     endpoint_url: str = ""
    >>> constructor_arguments(Model, {"max_tokens": 5, "base_url": "http://h"})
    {'max_new_tokens': 5, 'endpoint_url': 'http://h'}
    >>> constructor_arguments(Model, {"temprature": 0.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    langchain_k2.errors.K2ConfigError: Model got an unknown argument 'temprature': did you ...
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from langchain_k2.errors import K2ConfigError

ALIASES: Mapping[str, str] = {
    "max_tokens": "max_new_tokens",
    "base_url": "endpoint_url",
}
"""LangChain's usual argument names (``ChatOpenAI``, ``ChatAnthropic``...) -> ChatK2's fields.

``api_key`` (``hf_token``), ``model`` (``model_name``), ``timeout`` and ``stop_sequences``
(``stop``) are the fields' own names or pydantic aliases already."""


def _apply_aliases(kwargs: Mapping[str, Any], known: set[str], what: str) -> dict[str, Any]:
    result = dict(kwargs)
    for alias, name in ALIASES.items():
        if alias not in result or name not in known:
            continue
        if name in result:
            raise K2ConfigError(
                f"Both {alias}= and {name}= were given to {what}; {alias} is another name "
                f"for {name}: pass one of them."
            )
        result[name] = result.pop(alias)
    return result


def unknown_argument(name: str, known: Iterable[str], what: str) -> K2ConfigError:
    """The error for an argument ``name`` that none of ``known`` takes."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return K2ConfigError(
        f"{what} got an unknown argument {name!r}: {hint}It takes {', '.join(names)}."
    )


def field_names(model: type[BaseModel]) -> set[str]:
    """Every name a field can be given by: its own, its alias, and ``ALIASES``."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
    names |= {alias for alias, name in ALIASES.items() if name in names}
    return names


def constructor_arguments(model: type[BaseModel], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``model(...)`` with aliases resolved; unknown names raise.

    Raises:
        K2ConfigError: an argument no field takes (naming the nearest that does), or an
            alias given together with the field it stands for.
    """
    known = field_names(model)
    for name in kwargs:
        if name not in known:
            raise unknown_argument(name, known, model.__name__)
    return _apply_aliases(kwargs, set(model.model_fields), model.__name__)


def call_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Per-call options with aliases resolved (``max_tokens`` -> ``max_new_tokens``)."""
    if not any(alias in kwargs for alias in ALIASES):
        return dict(kwargs)
    return _apply_aliases(kwargs, {"max_new_tokens"}, "this call")


def given(kwargs: Mapping[str, Any], name: str) -> bool:
    """Whether the argument ``name`` was given a value (``None`` counts as not given)."""
    return kwargs.get(name) is not None


__all__ = [
    "ALIASES",
    "call_arguments",
    "constructor_arguments",
    "field_names",
    "given",
    "unknown_argument",
]
