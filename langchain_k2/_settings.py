"""The chat model's settings for one call: a frozen snapshot of the ``ChatK2`` fields a turn reads.

In: a ``ChatK2`` (its fields, and the prompt format it resolved: the user's, or the
served family's), read through `SettingsSource` (this module does not import
``chat_models``). Out: a `Settings` that turn setup (`langchain_k2._turn_setup`) and
token counting (`langchain_k2._counting`) read instead of the model, so nothing past
this point reaches back into the chat model; its `Sampling` holds the sampling fields,
which one call's options may override (`langchain_k2._call_options.SamplingOverrides`).

Example:
    >>> from langchain_k2.formats import get_format
    >>> settings = Settings(fmt=get_format("k2-v3"), sampling=Sampling(max_new_tokens=64))
    >>> settings.fmt.name, settings.sampling.max_new_tokens, settings.max_tool_call_retries
    ('k2-v3', 64, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from langchain_k2._stops import stop_strings
from langchain_k2.formats._base import PromptFormat

__all__ = ["Sampling", "Settings", "SettingsSource", "settings_of"]


class SettingsSource(Protocol):
    """What `settings_of` reads of a chat model (``ChatK2`` is one), read-only.

    ``format`` is the prompt format resolved now (the field's, else the served family's);
    ``model_fields_set`` the fields the user set (pydantic's).
    """

    @property
    def max_new_tokens(self) -> int: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def top_k(self) -> int | None: ...
    @property
    def repetition_penalty(self) -> float | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def stop(self) -> list[str] | None: ...
    @property
    def system_prompt(self) -> str | None: ...
    @property
    def neutralize_markers(self) -> bool: ...
    @property
    def reasoning_effort(self) -> str | None: ...
    @property
    def tool_call_format(self) -> str | None: ...
    @property
    def max_tool_call_retries(self) -> int: ...
    @property
    def context_window(self) -> int | None: ...
    @property
    def trim_history(self) -> bool: ...
    @property
    def model_name(self) -> str: ...
    @property
    def output_version(self) -> str | None: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def format(self) -> PromptFormat: ...


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters: ``max_new_tokens`` and the sampler's (``None``: the server's)."""

    max_new_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Settings:
    """What one call reads of the chat model, fixed for the call.

    Args:
        fmt: the prompt format (the ``prompt_format`` field, else the served family's).
        sampling: the sampling fields (a call's options override them).
        stop: the ``stop`` field's strings (a call's are added).
        system_prompt: system text when the messages carry no ``SystemMessage``.
        neutralize_markers: escape K2 markers found in message text.
        reasoning_effort: the field (a call's option overrides it; ``None``: the family's).
        tool_call_format: the field (likewise).
        max_tool_call_retries: repairs of malformed calls per turn (a call may override).
        context_window: prompt plus new tokens, at most (``None``: the engine's).
        trim_history: drop the oldest turns rather than raise when the prompt is too long.
        model_name: the ``model_name`` the user set, if set (reported when the engine
            does not say which model it serves).
        indexed_text: ``output_version="v1"``: streamed text carries content-block indexes.
    """

    fmt: PromptFormat
    sampling: Sampling
    stop: tuple[str, ...] = ()
    system_prompt: str | None = None
    neutralize_markers: bool = True
    reasoning_effort: str | None = None
    tool_call_format: str | None = None
    max_tool_call_retries: int = 2
    context_window: int | None = None
    trim_history: bool = False
    model_name: str | None = None
    indexed_text: bool = False


def settings_of(chat: SettingsSource) -> Settings:
    """The snapshot of ``chat``'s fields one call reads (its format as resolved now)."""
    return Settings(
        fmt=chat.format,
        sampling=Sampling(
            max_new_tokens=chat.max_new_tokens,
            temperature=chat.temperature,
            top_p=chat.top_p,
            top_k=chat.top_k,
            repetition_penalty=chat.repetition_penalty,
            seed=chat.seed,
        ),
        stop=stop_strings(chat.stop),
        system_prompt=chat.system_prompt,
        neutralize_markers=chat.neutralize_markers,
        reasoning_effort=chat.reasoning_effort,
        tool_call_format=chat.tool_call_format,
        max_tool_call_retries=chat.max_tool_call_retries,
        context_window=chat.context_window,
        trim_history=chat.trim_history,
        model_name=chat.model_name if "model_name" in chat.model_fields_set else None,
        indexed_text=chat.output_version == "v1",
    )
