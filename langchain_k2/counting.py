"""Token counts of any list of messages, as a LangChain token counter needs them.

In: messages in any order (``trim_messages`` probes slices that are no conversation: a
leading ``ToolMessage``, a ``SystemMessage`` that is not first, a reversed history), the
bound tools, a `K2Format`, and a function counting a text's tokens (the server's
``/tokenize``, or a local tokenizer). Out: the number of tokens.

`render_parts` renders leniently: the system section, one piece per message and the
turn's ending, written exactly as `langchain_k2.prompt.render_prompt` writes them, so
for a conversation it would accept their concatenation is its prompt; where it would
refuse (a misplaced system message, a tool answer with no call, another role), each
message is still written with its role's markers. `PieceCounter` counts each piece once
and sums: a history probed many times (``trim_messages``' binary search, ``allow_partial``)
costs one count per distinct message, not one per probe, and with a server that reports
token offsets the new messages of a call are counted in one request.

Every piece but the system section is counted after an anchor marker and the anchor's
own count taken off. Pieces start at marker boundaries, which tokenizers never merge
across (markers are special tokens), so the sum equals the whole prompt's count.

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    >>> from langchain_k2.prompt import DEFAULT_FORMAT
    >>> render_parts([ToolMessage("42", tool_call_id="c1"), HumanMessage("Thanks")],
    ...              fmt=DEFAULT_FORMAT)
    ['', '<tool_response>42</tool_response>', '<|beginofuser|>Thanks', '<|beginofsystem|>']
    >>> counter = PieceCounter(lambda text: text.count("<") + 1)  # a BOS, then one per tag
    >>> counter.count(["", "<a>b", "<c>"], anchor="<x>")
    3
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage

from langchain_k2.errors import K2InputError
from langchain_k2.prompt import (
    K2Format,
    _role_of,
    _system_section,
    content_text,
    neutralize,
    neutralize_json,
    tool_calls_json,
)


def _lenient_role(message: BaseMessage) -> str:
    """The role `render_prompt` gives a message; any other role is written as a user's."""
    if isinstance(message, ChatMessage) and message.role not in {"user", "assistant", "system"}:
        return "user"
    try:
        return _role_of(message)
    except K2InputError:
        return "user"


def anchor_of(fmt: K2Format) -> str:
    """A marker to count pieces after (the format's first special marker)."""
    return fmt.special_markers[0] if fmt.special_markers else ""


def render_parts(
    messages: Sequence[BaseMessage],
    *,
    fmt: K2Format,
    tools: Sequence[Mapping[str, Any]] | None = None,
    default_system: str | None = None,
    neutralize_markers: bool = True,
) -> list[str]:
    """The system section, one piece per remaining message, then the turn's ending.

    Their concatenation is `render_prompt`'s prompt for any conversation it renders; other
    lists render too (nothing is refused but non-text content).

    Raises:
        K2InputError: a message holds non-text content (K2-Chat is text-only), or tool-call
            arguments that are not JSON.
    """

    def text(message: BaseMessage) -> str:
        raw = content_text(message)
        return neutralize(raw, fmt) if neutralize_markers else raw

    roles = [_lenient_role(m) for m in messages]
    leading = 0
    while leading < len(messages) and roles[leading] == "system":
        leading += 1
    system = "\n\n".join(text(m) for m in messages[:leading]) if leading else default_system
    parts = [_system_section(fmt, system, tools, safe=neutralize_markers)]
    previous = "system"
    last = len(messages) - 1
    for index in range(leading, len(messages)):
        message, role = messages[index], roles[index]
        piece: list[str] = []
        if role != "tool" and previous == "tool":
            piece.append(fmt.after_tool_responses)
        if role == "system":  # misplaced: written as a system section of its own
            piece += [fmt.system_prefix, text(message), fmt.system_suffix]
        elif role == "user":
            piece += [fmt.user_prefix, text(message), fmt.user_suffix]
        elif role == "assistant":
            if previous != "tool":
                piece.append(fmt.assistant_prefix)
            piece.append(text(message))
            calls = message.tool_calls if isinstance(message, AIMessage) else []
            if calls:
                listing = tool_calls_json(calls)
                piece += [
                    fmt.tool_call_open,
                    neutralize_json(listing, fmt) if neutralize_markers else listing,
                    fmt.tool_call_close,
                    fmt.tool_call_turn_suffix,
                ]
            elif index < last:
                piece.append(fmt.assistant_suffix)
        else:
            if previous != "tool":
                piece.append(fmt.tool_responses_prefix)
            piece += [fmt.tool_response_open, text(message), fmt.tool_response_close]
        parts.append("".join(piece))
        previous = role
    if previous == "tool":
        parts.append(fmt.after_tool_responses)
    elif previous in {"user", "system"}:
        parts.append(fmt.assistant_prefix)
    return parts


class PieceCounter:
    """Counts prompt pieces, each distinct piece once, and sums them.

    Args:
        count: tokens of a text, as the server counts a prompt (BOS included).
        starts: the start offset of each token of a text (TGI's ``/tokenize`` reports
            them), or ``None``. With it, the pieces not counted yet are counted together
            in one request, each token going to the piece its start falls in.
        max_entries: pieces remembered; the memory is emptied when it is full.
    """

    def __init__(
        self,
        count: Callable[[str], int],
        starts: Callable[[str], Sequence[int]] | None = None,
        max_entries: int = 4096,
    ) -> None:
        self._count = count
        self._starts = starts
        self._max = max_entries
        self._whole: dict[str, int] = {}
        self._pieces: dict[str, int] = {}
        self._lock = threading.Lock()

    def _remember(self, memory: dict[str, int], text: str, tokens: int) -> None:
        with self._lock:
            if len(memory) >= self._max:
                memory.clear()
            memory[text] = tokens

    def tokens(self, text: str) -> int:
        """``count(text)``, asked once per distinct text."""
        known = self._whole.get(text)
        if known is None:
            known = self._count(text)
            self._remember(self._whole, text, known)
        return known

    def _count_missing(self, missing: list[str], anchor: str) -> None:
        """Count pieces after ``anchor``: all in one request when offsets are known."""
        if self._starts is None or len(missing) < 2:
            base = self.tokens(anchor)
            for piece in missing:
                self._remember(self._pieces, piece, self._count(anchor + piece) - base)
            return
        bounds = [len(anchor)]
        for piece in missing:
            bounds.append(bounds[-1] + len(piece))
        counts = [0] * len(missing)
        for start in self._starts(anchor + "".join(missing)):
            if bounds[0] <= start < bounds[-1]:  # not the anchor's (nor a BOS) token
                counts[bisect.bisect_right(bounds, start) - 1] += 1
        for piece, tokens in zip(missing, counts, strict=True):
            self._remember(self._pieces, piece, tokens)

    def count(self, parts: Sequence[str], *, anchor: str) -> int:
        """Tokens of ``"".join(parts)``, each distinct part counted once.

        The first part is counted as it is; the others as they count after ``anchor`` (a
        marker), so each is tokenized as it is inside the prompt.
        """
        if not parts:
            return 0
        rest = [part for part in parts[1:] if part]
        missing = [part for part in dict.fromkeys(rest) if part not in self._pieces]
        if missing:
            self._count_missing(missing, anchor)
        total = self.tokens(parts[0])
        for part in rest:
            known = self._pieces.get(part)
            if known is None:  # forgotten meanwhile (the memory was full)
                self._count_missing([part], anchor)
                known = self._pieces[part]
            total += known
        return total


__all__ = ["PieceCounter", "anchor_of", "render_parts"]
