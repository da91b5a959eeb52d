"""One call's options, parsed once: keyword arguments in, a frozen `CallOptions` out.

In: the options LangChain hands ``_generate``/``_stream`` (what ``bind``/``bind_tools``
bound, and what ``invoke`` was given) and the chat model whose fields check the sampling
values. Out: a `CallOptions` that every later step reads attributes of (nothing past
this module reads the options dict), or a ``K2ConfigError`` naming an option ChatK2
does not take (or a ``pydantic.ValidationError`` naming the field a value breaks).
`bound_options` checks what ``bind`` binds; `traced_options` is the lenient view
LangSmith's parameters take of a call (nothing there raises).

Example:
    >>> options = parse_call_options({"max_tokens": 5, "tool_choice": "auto"})
    >>> options.sampling.max_new_tokens, options.tool_choice, options.tool_grammar
    (5, 'auto', True)
    >>> options.sampling.over(Sampling(max_new_tokens=64, temperature=0.2))
    Sampling(max_new_tokens=5, temperature=0.2, top_p=None, top_k=None, \
repetition_penalty=None, seed=None)
    >>> parse_call_options({"temprature": 0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    langchain_k2.errors.K2ConfigError: Unknown call option(s) ['temprature']; ChatK2 ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from langchain_k2._arguments import call_arguments
from langchain_k2._bind_options import ResponseFormat, checked_flag, response_format_of
from langchain_k2._settings import Sampling
from langchain_k2._tool_binding import ToolChoice, bound_tools
from langchain_k2.backends._base import Grammar
from langchain_k2.errors import K2ConfigError

__all__ = [
    "CALL_OPTIONS",
    "PASSED_THROUGH",
    "UNSET",
    "CallOptions",
    "SamplingOverrides",
    "TracedOptions",
    "Unset",
    "bound_options",
    "parse_call_options",
    "traced_options",
]

CALL_OPTIONS = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
)
"""The sampling fields a call may override (checked like the fields themselves)."""

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


class Unset(Enum):
    """An option the call did not give (``None`` may be a value given)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET

T = TypeVar("T")


def _or(value: T | Unset, default: T) -> T:
    return default if isinstance(value, Unset) else value


@dataclass(frozen=True)
class SamplingOverrides:
    """The sampling fields a call overrides (`UNSET`: the field's value stays)."""

    max_new_tokens: int | Unset = UNSET
    temperature: float | Unset | None = UNSET
    top_p: float | Unset | None = UNSET
    top_k: int | Unset | None = UNSET
    repetition_penalty: float | Unset | None = UNSET
    seed: int | Unset | None = UNSET

    def over(self, fields: Sampling) -> Sampling:
        """``fields`` with this call's overrides applied."""
        return Sampling(
            max_new_tokens=_or(self.max_new_tokens, fields.max_new_tokens),
            temperature=_or(self.temperature, fields.temperature),
            top_p=_or(self.top_p, fields.top_p),
            top_k=_or(self.top_k, fields.top_k),
            repetition_penalty=_or(self.repetition_penalty, fields.repetition_penalty),
            seed=_or(self.seed, fields.seed),
        )


@dataclass(frozen=True)
class CallOptions:
    """One call's options, parsed and checked once (`parse_call_options`).

    Args:
        sampling: the sampling fields this call overrides.
        grammar: the ``grammar=`` constraint of the answer, if any.
        tools: the bound tools, normalized (the very list ``bind_tools`` bound, so what
            is derived from it stays cached).
        tool_choice: as bound (`langchain_k2._tool_binding.resolve_tool_choice` reads it).
        tool_grammar: ``False`` (``strict=False``): no grammar for forced or repaired calls.
        parallel_tool_calls: ``False``: at most one call per turn.
        response_format: the bound answer format, normalized, if any.
        reasoning_effort: the call's effort (`UNSET`: the field's).
        tool_call_format: the call's call form (`UNSET`: the field's).
        max_tool_call_retries: the call's repair budget (``None``: the field's).
        streaming: the call streams (``stream``/``astream``): the turn builds message
            chunks (``invoke`` needs only the whole message).
    """

    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    grammar: Grammar | None = None
    tools: Sequence[dict[str, Any]] = ()
    tool_choice: ToolChoice = None
    tool_grammar: bool = True
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | Unset | None = UNSET
    tool_call_format: str | Unset | None = UNSET
    max_tool_call_retries: int | None = None
    streaming: bool = False


def _checked_sampling(model: BaseModel | None, given: Mapping[str, Any]) -> SamplingOverrides:
    """``given``'s sampling options, each checked against ``model``'s field of that name.

    ``bind(temperature=float("inf"))`` fails here (at bind time), naming the field.
    """
    overrides = {name: given[name] for name in CALL_OPTIONS if name in given}
    if overrides and model is not None:
        copy = model.model_copy()
        for name, value in overrides.items():
            model.__pydantic_validator__.validate_assignment(copy, name, value)
            overrides[name] = getattr(copy, name)
    return SamplingOverrides(**overrides)


def _choice(name: str, value: Any) -> str | Unset | None:
    if value is None or isinstance(value, str | Unset):
        return value
    raise K2ConfigError(f"{name}={value!r}: pass a string, or None for the default.")


def _repairs(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise K2ConfigError(f"max_tool_call_retries must be an int >= 0, got {value!r}.")
    return value


def parse_call_options(
    kwargs: Mapping[str, Any], model: BaseModel | None = None, *, streaming: bool = False
) -> CallOptions:
    """The options of one call, checked.

    ``model``'s fields check the sampling values (without one they are taken as given).

    Raises:
        K2ConfigError: an option that is neither a sampling field nor read by turn setup
            (or a value of the wrong kind for one that is).
        pydantic.ValidationError: a sampling value its field refuses (naming the field).
    """
    given = call_arguments(kwargs)  # max_tokens= is max_new_tokens=
    unknown = set(given) - set(CALL_OPTIONS) - PASSED_THROUGH
    if unknown:
        raise K2ConfigError(
            f"Unknown call option(s) {sorted(unknown)}; ChatK2 accepts "
            f"{sorted(CALL_OPTIONS)} per call (or set them as fields)."
        )
    return CallOptions(
        sampling=_checked_sampling(model, given),
        grammar=Grammar.of(given.get("grammar")),
        tools=bound_tools(given.get("tools")),  # bind(tools=[...]) as bind_tools takes them
        tool_choice=given.get("tool_choice"),
        tool_grammar=given.get("tool_grammar") is not False,
        # Options bound with ``bind`` rather than ``bind_tools`` are checked here.
        parallel_tool_calls=checked_flag("parallel_tool_calls", given.get("parallel_tool_calls")),
        response_format=response_format_of(given.get("response_format")),
        reasoning_effort=_choice("reasoning_effort", given.get("reasoning_effort", UNSET)),
        tool_call_format=_choice("tool_call_format", given.get("tool_call_format", UNSET)),
        max_tool_call_retries=(
            _repairs(given["max_tool_call_retries"]) if "max_tool_call_retries" in given else None
        ),
        streaming=streaming,
    )


def bound_options(model: BaseModel, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What ``bind(**kwargs)`` binds: sampling values checked now, tools normalized.

    Raises:
        pydantic.ValidationError: a sampling value its field refuses (naming the field).
    """
    _checked_sampling(model, call_arguments(kwargs))
    bound = dict(kwargs)
    if "tools" in bound:  # bind(tools=[a @tool]) binds them as bind_tools would
        bound["tools"] = bound_tools(bound["tools"])
    return bound


@dataclass(frozen=True)
class TracedOptions:
    """What LangSmith's parameters report of a call: its options over the fields.

    Read before the call's options are checked, so the values are as given (``Any``).
    """

    model: Any
    max_new_tokens: Any
    temperature: Any
    stop: Any


def traced_options(
    kwargs: Mapping[str, Any], model: str, max_new_tokens: int, temperature: float | None
) -> TracedOptions:
    """The call's ``model``, ``max_new_tokens``, ``temperature`` (else the fields') and ``stop``."""
    given = call_arguments(kwargs)
    return TracedOptions(
        model=given.get("model", model),
        max_new_tokens=given.get("max_new_tokens", max_new_tokens),
        temperature=given.get("temperature", temperature),
        stop=given.get("stop"),
    )
