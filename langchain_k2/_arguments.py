"""Constructor and call arguments: LangChain's common names accepted, unknown ones refused.

In: the keyword arguments given to ``ChatK2(...)`` (or to one call, ``bind(...)``) and the
model class. Out: the same arguments with LangChain's usual names (``max_tokens``,
``base_url``) turned into ChatK2's own, or a ``K2ConfigError`` naming an argument no field
takes and the nearest name that does (``temprature`` -> ``temperature``).

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from langchain_k2._stops import sent_stops
from langchain_k2.backends._base import GenerationParams, Grammar
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


__all__ = ["ALIASES", "call_arguments", "constructor_arguments", "field_names", "unknown_argument"]


CALL_OPTIONS = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
)
PASSED_THROUGH = frozenset(
    {
        "tools",
        "tool_choice",
        "grammar",
        "tool_grammar",
        "max_tool_call_retries",
        "stream",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "tool_call_format",
    }
)
"""Options read by turn setup. Two are set by ``with_structured_output``:
``tool_grammar=False`` sends no grammar for forced or repaired tool calls
(``method="function_calling", strict=False``), and ``max_tool_call_retries`` replaces the
field for one call (what is left of the budget its re-asks share with repairs)."""


def max_repairs(kwargs: dict[str, Any], field: int) -> int:
    """Tool-call repairs allowed in this call: the call option, else the field."""
    given = kwargs.get("max_tool_call_retries", field)
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise K2ConfigError(f"max_tool_call_retries must be an int >= 0, got {given!r}.")
    return given


def checked_options(model: BaseModel, kwargs: Mapping[str, Any]) -> Any:
    """``model``, or a copy with ``kwargs``' sampling options set, each checked like its field.

    ``bind(temperature=float("inf"))`` fails here, when it is bound, naming the field.

    Raises:
        pydantic.ValidationError: a value its field refuses (the message names the field).
    """
    kwargs = call_arguments(kwargs)
    overrides = [name for name in CALL_OPTIONS if name in kwargs]
    if not overrides:
        return model
    options = model.model_copy()
    for name in overrides:
        model.__pydantic_validator__.validate_assignment(options, name, kwargs[name])
    return options


def call_params(
    model: BaseModel, stop: str | Sequence[str] | None, kwargs: Mapping[str, Any]
) -> GenerationParams:
    """The generation parameters of one call: ``model``'s fields, overridden per call.

    Per-call values are validated against the fields' own constraints (on a copy); an
    option that is neither a sampling field nor read by turn setup raises.
    """
    kwargs = call_arguments(kwargs)  # max_tokens= is max_new_tokens=
    unknown = set(kwargs) - set(CALL_OPTIONS) - PASSED_THROUGH
    if unknown:
        raise K2ConfigError(
            f"Unknown call option(s) {sorted(unknown)}; ChatK2 accepts "
            f"{sorted(CALL_OPTIONS)} per call (or set them as fields)."
        )
    options = checked_options(model, kwargs)
    stops = sent_stops(getattr(model, "stop", None), stop)
    return GenerationParams(
        max_new_tokens=options.max_new_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        repetition_penalty=options.repetition_penalty,
        seed=options.seed,
        stop=stops,
        grammar=Grammar.of(kwargs.get("grammar")),
    )
