"""The prompt-format seam: what every K2 family's format provides, and the shared helpers.

In: LangChain messages, bound tools (OpenAI function dicts) and the call's
`FormatSettings` (reasoning effort, tool-call form). Out, from a `PromptFormat`: the
prompt as a list of pieces (`PromptFormat.pieces`; the prompt is their join, and
token counting sums the pieces: one walker for both), the markers that end or must
survive generation, and the output parser of the family (`PromptFormat.parser`).

The helpers here are shared by the family modules: a message's role, its text, the
check that a ``ToolMessage`` answers a call, and marker neutralization (the ``<`` of a
marker in message text becomes ``&lt;``, reversibly), so no user or tool text can
open a turn or forge a call in any family.

Example:
    >>> neutralize_markers("a <|im_end|> b", ("<|im_end|>",))
    'a &lt;|im_end|> b'
    >>> restore_markers("a &lt;|im_end|> b", ("<|im_end|>",))
    'a <|im_end|> b'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, ConfigDict

from langchain_k2._tool_calls import ToolCallStreamParser
from langchain_k2.errors import K2ConfigError, K2InputError

EFFORTS = ("low", "medium", "high")
"""Reasoning efforts, as ``reasoning_effort`` takes them."""


@dataclass(frozen=True)
class FormatSettings:
    """One call's choices within a family.

    Args:
        effort: the reasoning effort rendered (``None`` for a family without reasoning).
        tool_call_format: the call form the model is taught (K2-V3: ``xml``,
            ``xml_typed`` or ``json``; ``None`` where the family has one form).
        opened: the prompt ends inside the reasoning (the generation prompt opened the
            effort's tag), so the output starts with reasoning.
    """

    effort: str | None = None
    tool_call_format: str | None = None
    opened: bool = False


@dataclass(frozen=True)
class RenderOptions:
    """One render's choices, as `PromptFormat.pieces` takes them, for a family's `walk`.

    ``safe`` is ``pieces``' ``neutralize_markers``; the others keep their names.
    """

    tools: Sequence[Mapping[str, Any]] | None = None
    default_system: str | None = None
    force_tool_call: bool = False
    safe: bool = True
    settings: FormatSettings | None = None
    lenient: bool = False


class PromptFormat(BaseModel):
    """A K2 family's prompt format: rendering, markers and its output parser.

    Subclasses set the class attributes and implement `walk` (or override `pieces`) and
    `parser`; the marker fields are pydantic fields, so a deployment can override them.
    """

    model_config = ConfigDict(frozen=True)

    name: ClassVar[str] = ""
    """The registry name (``"k2-chat"``, ``"k2-v2"``...), reported in ``response_metadata``."""
    model_id: ClassVar[str] = "LLM360/K2-Chat"
    """The family's model, reported as ``response_metadata["model_name"]`` when neither the
    engine nor the user (``model=``) names the served one."""
    reasoning_efforts: ClassVar[tuple[str, ...]] = ()
    """The efforts the family renders (empty: no reasoning)."""
    default_effort: ClassVar[str | None] = None
    """The effort used when none is asked for."""
    tool_call_formats: ClassVar[tuple[str, ...]] = ()
    """The call forms the family can be taught (empty: one fixed form)."""
    forces_calls: ClassVar[bool] = False
    """Whether a forced ``tool_choice`` is rendered by ending the prompt in the open tag."""
    bos_in_prompt: ClassVar[bool] = False
    """Whether the prompt text starts with the BOS marker (K2-V3): an engine must then not
    add another (``add_special_tokens: false``, spec section 6)."""

    tool_call_open: str = ""
    """Opens the model's tool-call output (a block, or a group of blocks)."""
    tool_call_close: str = ""
    """Closes it."""
    stop_markers: tuple[str, ...] = ()
    """Markers that end the model's turn: generation is cut there."""
    special_markers: tuple[str, ...] = ()
    """Strings message text may not contain verbatim; the first is the counting anchor."""
    output_markers: tuple[str, ...] = ()
    """Special tokens the model writes inside its turn (tags that must survive decoding)."""
    stop_token_ids: tuple[int, ...] = ()
    """End-of-turn token ids (spec section 5), for engines that take ``stop_token_ids``."""

    # ------------------------------------------------------------------ settings

    def settings(
        self, effort: str | None = None, tool_call_format: str | None = None
    ) -> FormatSettings:
        """The call's settings, checked against the family's choices.

        Raises:
            K2ConfigError: an effort on a family without reasoning, an unknown effort,
                or a tool-call form the family does not have; the choices are named.
        """
        if effort is not None and not self.reasoning_efforts:
            raise K2ConfigError(
                f"reasoning_effort={effort!r}, but prompt_format {self.name!r} has no "
                "reasoning: drop reasoning_effort, or choose a reasoning family "
                "(prompt_format='k2-v2', 'k2-think-v2' or 'k2-v3')."
            )
        if effort is not None and effort not in self.reasoning_efforts:
            raise K2ConfigError(
                f"reasoning_effort={effort!r} is not one of {list(self.reasoning_efforts)}."
            )
        if tool_call_format is not None and tool_call_format not in self.tool_call_formats:
            choices = (
                f"one of {list(self.tool_call_formats)}"
                if self.tool_call_formats
                else f"supported by prompt_format {self.name!r} (only 'k2-v3' has one)"
            )
            raise K2ConfigError(f"tool_call_format={tool_call_format!r} is not {choices}.")
        default_form = self.tool_call_formats[0] if self.tool_call_formats else None
        return FormatSettings(
            effort=effort or self.default_effort,
            tool_call_format=tool_call_format or default_form,
            opened=bool(self.reasoning_efforts),
        )

    # ------------------------------------------------------------------ rendering

    def pieces(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        default_system: str | None = None,
        force_tool_call: bool = False,
        neutralize_markers: bool = True,
        settings: FormatSettings | None = None,
        lenient: bool = False,
    ) -> list[str]:
        """The prompt in pieces: the system section, then the turns, then the ending.

        Every piece but the first starts at a special marker, so a tokenizer never merges
        tokens across two pieces and the prompt's token count is the sum of theirs.
        With ``lenient`` any list renders (a slice probed by ``trim_messages``): a message
        that would be refused is written with its role's markers instead.
        """
        options = RenderOptions(
            tools, default_system, force_tool_call, neutralize_markers, settings, lenient
        )
        return self.walk(messages, options)

    def walk(self, messages: Sequence[BaseMessage], options: RenderOptions) -> list[str]:
        """The family's renderer: `pieces`, with the call's choices in one object."""
        raise NotImplementedError

    def render_prompt(
        self,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        default_system: str | None = None,
        force_tool_call: bool = False,
        neutralize_markers: bool = True,
        settings: FormatSettings | None = None,
    ) -> str:
        """The prompt the model continues: ``"".join(self.pieces(...))``."""
        return "".join(
            self.pieces(
                messages,
                tools=tools,
                default_system=default_system,
                force_tool_call=force_tool_call,
                neutralize_markers=neutralize_markers,
                settings=settings,
            )
        )

    def ends_in_reasoning(self, messages: Sequence[BaseMessage]) -> bool:
        """Whether the prompt for ``messages`` ends inside the effort's open tag.

        It does unless the last message is an ``AIMessage`` without calls (a prefill the
        model continues after its closed reasoning).
        """
        last = messages[-1] if messages else None
        prefill = isinstance(last, AIMessage) and not (last.tool_calls or last.invalid_tool_calls)
        return bool(self.reasoning_efforts) and not prefill

    def inert(self, text: str, safe: bool) -> str:
        """``text`` with this format's markers neutralized when ``safe``, else as is."""
        return neutralize_markers(text, self.special_markers) if safe else text

    def inert_json(self, text: str, safe: bool) -> str:
        r"""JSON ``text`` with this format's markers made inert (``\u003c``) when ``safe``."""
        return neutralize_markers_json(text, self.special_markers) if safe else text

    # ------------------------------------------------------------------ output

    def call_parser(self, tools: Sequence[Mapping[str, Any]] | None) -> ToolCallStreamParser:
        """K2-Chat's ``<tool_call>`` parser on this format's call tags."""
        return ToolCallStreamParser(
            tools, open_tag=self.tool_call_open, close_tag=self.tool_call_close
        )

    def parser(self, tools: Sequence[Mapping[str, Any]] | None, settings: FormatSettings) -> Any:
        """The output parser of one generation (``feed``/``close``/``in_block``)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- markers


def _marker_pattern(markers: Sequence[str]) -> re.Pattern[str]:
    # A marker's first character '<' may already be escaped (any number of "amp;").
    tails = sorted({m[1:] for m in markers if m.startswith("<")}, key=len, reverse=True)
    alternation = "|".join(re.escape(t) for t in tails)
    return re.compile(f"(<|&(?:amp;)*lt;)({alternation})")


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def pattern_for(markers: tuple[str, ...]) -> re.Pattern[str]:
    """The (cached) pattern matching ``markers``, raw or already escaped."""
    pattern = _PATTERNS.get(markers)
    if pattern is None:
        pattern = _PATTERNS[markers] = _marker_pattern(markers)
    return pattern


def neutralize_markers(text: str, markers: tuple[str, ...]) -> str:
    """``text`` with every marker's ``<`` written ``&lt;`` (already escaped: one more ``amp;``)."""
    if "<" not in text and "&" not in text:
        return text

    def escape(match: re.Match[str]) -> str:
        head = match.group(1)
        return ("&lt;" if head == "<" else "&amp;" + head[1:]) + match.group(2)

    return pattern_for(markers).sub(escape, text)


def neutralize_markers_json(text: str, markers: tuple[str, ...]) -> str:
    r"""Markers inside JSON text made inert (``\u003c``) without changing what it decodes to."""
    if "<" not in text:
        return text
    return pattern_for(markers).sub(
        lambda m: ("\\u003c" if m.group(1) == "<" else m.group(1)) + m.group(2), text
    )


def restore_markers(text: str, markers: tuple[str, ...]) -> str:
    """Undo `neutralize_markers`."""

    def unescape(match: re.Match[str]) -> str:
        head = match.group(1)
        if head == "<":
            return match.group(0)
        return ("<" if head == "&lt;" else "&" + head[5:]) + match.group(2)

    return pattern_for(markers).sub(unescape, text)


# --------------------------------------------------------------------------- messages

_UNSUPPORTED_BLOCKS = frozenset(
    {"image", "image_url", "audio", "input_audio", "file", "video", "document"}
)
_IGNORED_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "reasoning", "thinking"})


def content_text(message: BaseMessage) -> str:
    """The text of a message: a string as is, text blocks joined; K2 is text-only.

    Raises:
        K2InputError: for image, audio, file or unknown content blocks.
    """
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(kind, str) and kind in _IGNORED_BLOCKS:
            continue
        elif isinstance(kind, str) and kind in _UNSUPPORTED_BLOCKS:
            raise K2InputError(
                f"{type(message).__name__} has a {kind!r} content block, but K2-Chat is a "
                "text-only model: pass text only (describe or transcribe the media first)."
            )
        else:
            raise K2InputError(
                f"{type(message).__name__} has a content block of unknown type {kind!r}; "
                "K2-Chat accepts plain strings or {'type': 'text', 'text': ...} blocks."
            )
    return "".join(parts)


def reasoning_text(message: BaseMessage) -> str | None:
    """An ``AIMessage``'s reasoning: ``reasoning_content``, or its reasoning blocks; else None.

    Example:
        >>> reasoning_text(AIMessage("4", additional_kwargs={"reasoning_content": "2+2"}))
        '2+2'
        >>> reasoning_text(AIMessage([{"type": "reasoning", "reasoning": "hm"}, "4"]))
        'hm'
        >>> reasoning_text(AIMessage("4")) is None
        True
    """
    found = message.additional_kwargs.get("reasoning_content")
    if isinstance(found, str):
        return found
    if isinstance(message.content, list):
        blocks = [
            str(b.get("reasoning", "")) or str(b.get("thinking", ""))
            for b in message.content
            if isinstance(b, dict) and b.get("type") in {"reasoning", "thinking"}
        ]
        if blocks:
            return "".join(blocks)
    return None


def role_of(message: BaseMessage, family: str = "K2-Chat") -> str:
    """``user``, ``assistant``, ``system`` or ``tool``.

    Raises:
        K2InputError: a message type or ``ChatMessage`` role the family cannot render.
    """
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, ChatMessage) and message.role in {"user", "assistant", "system"}:
        return message.role
    raise K2InputError(
        f"Cannot render a {type(message).__name__}"
        + (f" with role {message.role!r}" if isinstance(message, ChatMessage) else "")
        + f": {family} takes SystemMessage (first only), HumanMessage, AIMessage and "
        "ToolMessage."
    )


def lenient_role(message: BaseMessage) -> str:
    """The role `role_of` gives; any other message is written as a user's."""
    try:
        return role_of(message)
    except K2InputError:
        return "user"


def check_answer(message: ToolMessage, previous: str, open_calls: set[str]) -> None:
    """Refuse a ``ToolMessage`` that answers no call of the ``AIMessage`` before it."""
    if previous not in {"assistant", "tool"}:
        raise K2InputError(
            "A ToolMessage must follow the AIMessage whose tool call it answers "
            f"(tool_call_id={message.tool_call_id!r})."
        )
    if open_calls and message.tool_call_id not in open_calls:
        raise K2InputError(
            f"ToolMessage.tool_call_id={message.tool_call_id!r} answers no tool call "
            f"of the AIMessage before it (its call ids: {sorted(open_calls)})."
        )


def call_ids(message: BaseMessage) -> set[str]:
    """The ids of an ``AIMessage``'s valid and invalid calls."""
    if not isinstance(message, AIMessage):
        return set()
    calls = [*message.tool_calls, *message.invalid_tool_calls]
    return {call_id for tc in calls if (call_id := tc.get("id"))}


def args_json(args: Any, *, ascii_only: bool = True) -> str:
    """``json.dumps`` of a call's arguments, refused (`K2InputError`) when not JSON."""
    try:
        return json.dumps(args, allow_nan=False, ensure_ascii=ascii_only)
    except (TypeError, ValueError) as exc:
        raise K2InputError(
            f"An AIMessage's tool-call args cannot be written as JSON ({exc}): use JSON "
            "values (str, finite numbers, bool, None, lists, dicts)."
        ) from exc


def open_conversation(
    messages: Sequence[BaseMessage],
    text: Callable[[BaseMessage], str],
    default: str | None,
    *,
    lenient: bool,
    family: str = "K2-Chat",
) -> tuple[list[str], int, str | None]:
    """Each message's role (`role_of`; `lenient_role` when ``lenient``), then `split_system`."""
    roles = [lenient_role(m) if lenient else role_of(m, family) for m in messages]
    leading, system = split_system(messages, roles, text, default)
    return roles, leading, system


def split_system(
    messages: Sequence[BaseMessage], roles: Sequence[str], text: Any, default: str | None
) -> tuple[int, str | None]:
    """How many leading messages are system messages, and their text (paragraphs apart)."""
    leading = 0
    while leading < len(messages) and roles[leading] == "system":
        leading += 1
    system = "\n\n".join(text(m) for m in messages[:leading]) if leading else default
    return leading, system


__all__ = [
    "EFFORTS",
    "FormatSettings",
    "PromptFormat",
    "RenderOptions",
    "args_json",
    "call_ids",
    "check_answer",
    "content_text",
    "lenient_role",
    "neutralize_markers",
    "neutralize_markers_json",
    "open_conversation",
    "reasoning_text",
    "restore_markers",
    "role_of",
    "split_system",
]
