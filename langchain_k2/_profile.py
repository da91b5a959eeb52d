"""``ChatK2.profile``: what the K2 family in use can do, in ``ModelProfile`` terms.

In: the prompt format in use (its family) and the context limits known so far
(``context_window``, then the engine's reported window and prompt limit). Out: a
``ModelProfile`` dict: the static capabilities (open weights, text in and out only, tool
calling with ``tool_choice`` and streamed tool-call chunks), the family's reasoning
(``reasoning_output``, ``reasoning_effort_levels``, ``reasoning_effort_default``) and,
once known, ``max_input_tokens`` / ``max_output_tokens``.
LangChain reads it: ``SummarizationMiddleware(trigger=("fraction", ...))`` needs
``max_input_tokens``; ``create_agent`` reads ``structured_output`` to choose between
provider-native structured output and tool calling.

Until a first call has told the window, ``profile`` is a `LazyProfile`: the first time
someone asks it for ``max_input_tokens`` or ``max_output_tokens`` (as
``SummarizationMiddleware(trigger=("fraction", 0.8))`` does when it is built), it asks the
engine once (its ``/info``) and fills itself in; if the engine cannot be reached, the limits
stay absent and are asked for again next time.

Example:
    >>> profile = k2_profile(window=4096, max_input_tokens=4000)
    >>> profile["tool_calling"], profile["image_inputs"], profile["max_input_tokens"]
    (True, False, 4000)
    >>> "max_input_tokens" in k2_profile()
    False
    >>> from langchain_k2.formats import get_format
    >>> v3 = k2_profile(fmt=get_format("k2-v3"))
    >>> v3["name"], v3["reasoning_output"], v3["reasoning_effort_levels"]
    ('K2-V3', True, ['low', 'medium', 'high'])
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from langchain_core.language_models import ModelProfile

from langchain_k2._context import window_from_info
from langchain_k2.backends._base import BackendInfo
from langchain_k2.formats._base import PromptFormat

NAMES = {"k2-chat": "K2-Chat", "k2-v2": "K2-V2-Instruct", "k2-think-v2": "K2-Think-V2"}
"""The profile name of each family (K2-V3 is named as its format)."""

CAPABILITIES: ModelProfile = {
    "name": "K2-Chat",
    "open_weights": True,
    "text_inputs": True,
    "image_inputs": False,
    "image_url_inputs": False,
    "pdf_inputs": False,
    "audio_inputs": False,
    "video_inputs": False,
    "image_tool_message": False,
    "pdf_tool_message": False,
    "text_outputs": True,
    "image_outputs": False,
    "audio_outputs": False,
    "video_outputs": False,
    "reasoning_output": False,
    "tool_calling": True,
    "tool_choice": True,
    "tool_call_streaming": True,
    "mid_conversation_system_messages": False,
    # ``with_structured_output`` constrains decoding with a JSON-schema grammar, but
    # create_agent takes True here to mean "bind(response_format=...)" works, which
    # ChatK2 does not accept yet (issue 15, item 6): False keeps create_agent on its
    # tool-calling strategy, which works.
    "structured_output": False,
}
"""K2-Chat's static capabilities (a text-only 65B model with Hermes-style tool calls)."""


def k2_profile(
    *,
    window: int | None = None,
    max_input_tokens: int | None = None,
    fmt: PromptFormat | None = None,
) -> ModelProfile:
    """The family's profile with the limits known so far.

    Args:
        window: prompt plus new tokens, at most (``context_window``, TGI's
            ``max_total_tokens``, llama.cpp's ``n_ctx``); also the most a request could
            generate, so it is ``max_output_tokens``.
        max_input_tokens: the longest prompt the engine takes; the window when unknown,
            and never more than the window.
        fmt: the prompt format in use (``None``: K2-Chat's).
    """
    profile: ModelProfile = {**CAPABILITIES}
    if fmt is not None:
        extra = cast("dict[str, Any]", profile)
        extra["name"] = NAMES.get(fmt.name, fmt.name.upper())
        extra["reasoning_output"] = bool(fmt.reasoning_efforts)
        if fmt.reasoning_efforts:
            extra["reasoning_effort_levels"] = list(fmt.reasoning_efforts)
            extra["reasoning_effort_default"] = fmt.default_effort
    limits = [limit for limit in (max_input_tokens, window) if limit is not None]
    prompt_limit = min(limits) if limits else None
    if prompt_limit is not None:
        profile["max_input_tokens"] = prompt_limit
    if window is not None:
        profile["max_output_tokens"] = window
    return profile


__all__ = [
    "CAPABILITIES",
    "LazyProfile",
    "WindowSource",
    "k2_profile",
    "lazy_profile",
    "profile_from_info",
]

_LIMITS = frozenset({"max_input_tokens", "max_output_tokens"})


class LazyProfile(dict[str, Any]):
    """A profile dict that asks ``fill`` for the limits when one is first read.

    ``fill`` returns the complete profile (``None`` when the engine could not tell); it is
    called at most until it succeeds, and only for a read of a limit.

    Example:
        >>> asked = []
        >>> profile = LazyProfile(k2_profile(), lambda: asked.append(1) or k2_profile(window=8))
        >>> profile["tool_calling"], asked
        (True, [])
        >>> profile.get("max_input_tokens"), profile["max_output_tokens"], asked
        (8, 8, [1])
    """

    def __init__(self, profile: ModelProfile, fill: Callable[[], ModelProfile | None]) -> None:
        super().__init__(profile)
        self._fill: Callable[[], ModelProfile | None] | None = fill

    def _filled(self, key: object) -> None:
        fill = self._fill
        if fill is None or key not in _LIMITS or dict.__contains__(self, key):
            return
        profile = fill()
        if profile is not None:
            self._fill = None
            self.update(profile)

    def __getitem__(self, key: str) -> Any:
        self._filled(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``, filling the limits first when one is asked for."""
        self._filled(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._filled(key)
        return super().__contains__(key)

    def __reduce__(self) -> Any:  # copies and pickles are plain dicts
        return (dict, (dict(self),))


def profile_from_info(
    info: BackendInfo, context_window: int | None, fmt: PromptFormat | None = None
) -> ModelProfile:
    """The family's profile with the engine's limits, narrowed by ``context_window``."""
    limits = window_from_info(info.max_input_tokens, info.max_total_tokens, context_window)
    return k2_profile(window=limits.window, max_input_tokens=limits.max_input_tokens, fmt=fmt)


class WindowSource(Protocol):
    """What `lazy_profile` reads of a chat model (``ChatK2`` is one), read-only."""

    @property
    def context_window(self) -> int | None: ...
    @property
    def format(self) -> PromptFormat: ...


_Model = TypeVar("_Model", bound=WindowSource)


def lazy_profile(
    model: _Model, from_engine: Callable[[_Model], ModelProfile | None]
) -> ModelProfile:
    """The profile ``model`` starts with: its window, or one asked for lazily.

    With ``context_window`` set the limits are known; otherwise a `LazyProfile` asks the
    engine (``from_engine(model)``: its backend's ``info()``, which the first call would
    ask anyway) when a limit is first read. The model is held weakly, so the profile keeps
    nothing alive.
    """
    if model.context_window is not None:
        return k2_profile(window=model.context_window, fmt=model.format)
    owner = weakref.ref(model)

    def fill() -> ModelProfile | None:
        found = owner()
        return None if found is None else from_engine(found)

    return cast("ModelProfile", LazyProfile(k2_profile(fmt=model.format), fill))
