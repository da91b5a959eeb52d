"""Whether a tokenizer knows a K2 prompt format: single-token markers, the same chat template.

In: a `K2Format` and a tokenizer (loaded, or a local path for
`langchain_k2._tokenizer.load_tokenizer`). Out: the problems found (markers that are not one
token, the first position where the tokenizer's ``chat_template`` renders a plain chat
differently), or the checked format, with warnings for markers and `K2ConfigError` for a
template mismatch. Needs the optional extra ``tokenizer`` only when a tokenizer is loaded.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_k2._tokenizer import encode, load_tokenizer
from langchain_k2.errors import K2ConfigError
from langchain_k2.formats._k2_chat import DEFAULT_FORMAT, K2Format, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_CONTEXT = 30
"""Characters of context shown on each side of the first difference."""

_PROBE_CHAT: tuple[tuple[str, str], ...] = (
    ("system", "You are a helpful assistant."),
    ("user", "Hello, who are you?"),
    ("assistant", "I am K2, a language model."),
    ("user", "What can you do?"),
)
"""The plain chat rendered both ways by `template_mismatch`."""


def marker_problems(fmt: K2Format, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Markers of ``fmt.special_markers`` this tokenizer does not encode as one token.

    A marker that is not a single (added) token is split into ordinary text: the model
    does not see the turn boundary it was trained on, and counts are off.
    """
    problems: list[str] = []
    for marker in fmt.special_markers:
        ids = encode(tokenizer, marker)
        in_context = encode(tokenizer, f"a{marker}a")
        if len(ids) == 1 and ids[0] in in_context:
            continue
        pieces = tokenizer.convert_ids_to_tokens(ids)
        problems.append(
            f"{marker!r} is not a single token of this tokenizer (it encodes to {len(ids)} "
            f"token(s) {pieces!r}), so the model reads it as ordinary text. Use K2-Chat's own "
            "tokenizer, add the marker as a special token, or set the K2Format fields to this "
            "tokenizer's markers."
        )
    return problems


def first_difference(a: str, b: str) -> int | None:
    """The first index where ``a`` and ``b`` differ (``None`` if they are equal).

    Example:
        >>> first_difference("abcd", "abXd"), first_difference("ab", "abc")
        (2, 2)
    """
    if a == b:
        return None
    pairs = enumerate(zip(a, b, strict=False))
    return next((index for index, (x, y) in pairs if x != y), min(len(a), len(b)))


def _probe_messages() -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[role](content) for role, content in _PROBE_CHAT]


def template_mismatch(fmt: K2Format, tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Compare ``fmt``'s rendering of a plain chat with the tokenizer's ``chat_template``.

    The chat is system, user, assistant, user, with the generation prompt. A leading BOS
    token written by the template is ignored (the tokenizer adds it when encoding).

    Returns:
        ``None`` when they agree or the tokenizer has no chat template; otherwise a
        message giving the first differing position with context from both sides.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    ours = render_prompt(_probe_messages(), fmt=fmt)
    theirs = tokenizer.apply_chat_template(
        [{"role": role, "content": content} for role, content in _PROBE_CHAT],
        tokenize=False,
        add_generation_prompt=True,
    )
    if not isinstance(theirs, str):  # pragma: no cover - transformers returns str here
        raise K2ConfigError("apply_chat_template(tokenize=False) did not return a string.")
    bos = getattr(tokenizer, "bos_token", None)
    if bos and theirs.startswith(bos) and not ours.startswith(bos):
        theirs = theirs[len(bos) :]
    position = first_difference(ours, theirs)
    if position is None:
        return None

    def around(text: str) -> str:
        before = text[max(0, position - _CONTEXT) : position]
        return f"{before!r} | {text[position : position + _CONTEXT]!r}"

    return (
        f"K2Format and the tokenizer's chat_template render the same chat differently, first "
        f"at character {position}:\n  K2Format:      {around(ours)}\n"
        f"  chat_template: {around(theirs)}\n(' | ' marks the position.) Prompts would not be "
        "the ones the model was trained on: pass a K2Format whose markers match the template "
        "(or fix the template)."
    )


def check_format(fmt: K2Format, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every problem found between ``fmt`` and ``tokenizer``; empty when they agree.

    Pure: neither warns nor raises for what it finds (see `format_from_tokenizer`).
    Markers that are not single tokens come first, then a chat-template mismatch.
    """
    problems = marker_problems(fmt, tokenizer)
    mismatch = template_mismatch(fmt, tokenizer)
    if mismatch is not None:
        problems.append(mismatch)
    return problems


def format_from_tokenizer(
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase, base: K2Format | None = None
) -> K2Format:
    """Check ``base`` (K2-Chat's default format) against a tokenizer and return it.

    Markers that are not single tokens are reported with `warnings.warn`
    (``UserWarning``): prompts still work, but the model sees them as text. A chat
    template that renders differently raises: every prompt would then differ from the
    model's training format, which degrades answers silently; failing at setup, with the
    position, is cheaper than debugging quality later.

    Raises:
        K2ConfigError: the tokenizer's ``chat_template`` disagrees with ``base``, or the
            tokenizer cannot be loaded.
    """
    fmt = base if base is not None else DEFAULT_FORMAT
    loaded = load_tokenizer(tokenizer)
    for problem in marker_problems(fmt, loaded):
        warnings.warn(problem, UserWarning, stacklevel=2)
    mismatch = template_mismatch(fmt, loaded)
    if mismatch is not None:
        raise K2ConfigError(mismatch)
    return fmt


__all__ = [
    "check_format",
    "first_difference",
    "format_from_tokenizer",
    "marker_problems",
    "template_mismatch",
]
