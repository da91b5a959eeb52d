"""Which format and settings a call uses: the user's choice, else the served model's family.

In: ChatK2's ``prompt_format`` / ``reasoning_effort`` / ``tool_call_format`` fields (or a
call's options of the same names, which override them), and the model id the engine
reports. Out: the
`PromptFormat` in use (`chosen_format`), the call's checked `FormatSettings`
(`call_settings`), or a ``K2ConfigError`` naming the choices.

Example:
    >>> chosen_format("k2-v2", None).name, chosen_format(None, "IFM/K2-Horizon-7B").name
    ('k2-v2', 'k2-v3')
    >>> chosen_format(None, "some/other-model").name
    'k2-chat'
    >>> call_settings(chosen_format("k2-v3", None), "low", None, ends_in_reasoning=True)
    FormatSettings(effort='low', tool_call_format='xml', opened=True)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langchain_k2.formats import format_for_model, get_format
from langchain_k2.formats._base import FormatSettings, PromptFormat


def chosen_format(prompt_format: str | PromptFormat | None, served: str | None) -> PromptFormat:
    """The user's format if any; else the family of the served model id; else K2-Chat."""
    if prompt_format is not None:
        return get_format(prompt_format)
    return get_format(format_for_model(served))


def check_fields(
    prompt_format: str | PromptFormat | None, effort: str | None, tool_call_format: str | None
) -> None:
    """Refuse, at construction, a name or setting the chosen format does not have.

    With no ``prompt_format`` the family is not known until the engine answers, so
    only the name is checked here; `call_settings` checks the rest on the first call.
    """
    if prompt_format is None:
        return
    get_format(prompt_format).settings(effort, tool_call_format)


def call_settings(
    fmt: PromptFormat,
    effort: str | None,
    tool_call_format: str | None,
    *,
    ends_in_reasoning: bool,
) -> FormatSettings:
    """The call's settings (its options over the fields), checked against ``fmt``."""
    settings = fmt.settings(effort, tool_call_format)
    return replace(settings, opened=settings.opened and ends_in_reasoning)


def describe(fmt: PromptFormat, settings: FormatSettings) -> dict[str, Any]:
    """What ``response_metadata`` reports of the format: its name, effort and call form."""
    shown: dict[str, Any] = {"prompt_format": fmt.name}
    if settings.effort is not None:
        shown["reasoning_effort"] = settings.effort
    if settings.tool_call_format is not None:
        shown["tool_call_format"] = settings.tool_call_format
    return shown


__all__ = ["call_settings", "check_fields", "chosen_format", "describe"]
