"""Token counts of any list of messages, as a LangChain token counter needs them.

In: messages in any order (``trim_messages`` probes slices that are no conversation: a
leading ``ToolMessage``, a ``SystemMessage`` that is not first, a reversed history), the
bound tools, a `PromptFormat` (any family), and a function counting a text's tokens (the server's
``/tokenize``, or a local tokenizer). Out: the number of tokens.

`render_parts` asks the format's own renderer for its pieces (`PromptFormat.pieces`:
the system section, one piece per message or run of tool results, the turn's ending),
leniently: for a conversation the renderer accepts their concatenation is its prompt
(one walker renders and counts); where it would refuse (a misplaced system message, a
tool answer with no call, another role), each message is still written with its role's
markers. `PieceCounter` counts each piece once
and sums: a history probed many times (``trim_messages``' binary search, ``allow_partial``)
costs one count per distinct message, not one per probe, and with a server that reports
token offsets the new messages of a call are counted in one request.

Every piece but the system section is counted after an anchor marker and the anchor's
own count taken off. Pieces start at marker boundaries, which tokenizers never merge
across (markers are special tokens), so the sum equals the whole prompt's count. The
system section is counted as it is, with the BOS the engine adds to a prompt; but a
prompt that holds its own BOS text (K2-V3's) gets no second BOS from an engine that can
be told so (vLLM, the in-process backend: their ``bos_switch``), so there it is counted
after the anchor too.

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    >>> from langchain_k2._prompt import DEFAULT_FORMAT
    >>> render_parts([ToolMessage("42", tool_call_id="c1"), HumanMessage("Thanks")],
    ...              fmt=DEFAULT_FORMAT)
    ['', '<tool_response>42</tool_response>', '<|beginofuser|>Thanks', '<|beginofsystem|>']
    >>> counter = PieceCounter(lambda text: text.count("<") + 1)  # a BOS, then one per tag
    >>> counter.count(["", "<a>b", "<c>"], anchor="<x>")
    3
    >>> counter.count(["<a>b", "<c>"], anchor="<x>", whole_first=False)  # no BOS added
    2
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_k2._settings import Settings
from langchain_k2._tool_binding import ToolChoice, normalize_tools, resolve_tool_choice
from langchain_k2.backends._base import Backend
from langchain_k2.formats._base import FormatSettings, PromptFormat
from langchain_k2.formats._selection import call_settings


def anchor_of(fmt: PromptFormat) -> str:
    """A marker to count pieces after (the format's first special marker)."""
    return fmt.special_markers[0] if fmt.special_markers else ""


def render_parts(
    messages: Sequence[BaseMessage],
    *,
    fmt: PromptFormat,
    tools: Sequence[Mapping[str, Any]] | None = None,
    default_system: str | None = None,
    neutralize_markers: bool = True,
    force_tool_call: bool = False,
    settings: FormatSettings | None = None,
) -> list[str]:
    """The prompt's pieces, from the renderer itself (`PromptFormat.pieces`, leniently).

    Their concatenation is the format's prompt for any conversation it renders; other
    lists render too (nothing is refused but non-text content).

    Raises:
        K2InputError: a message holds non-text content (K2-Chat is text-only), or tool-call
            arguments that are not JSON.
    """
    return fmt.pieces(
        messages,
        tools=tools,
        default_system=default_system,
        force_tool_call=force_tool_call,
        neutralize_markers=neutralize_markers,
        settings=settings,
        lenient=True,
    )


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

    def count(self, parts: Sequence[str], *, anchor: str, whole_first: bool = True) -> int:
        """Tokens of ``"".join(parts)``, each distinct part counted once.

        The first part is counted as it is (with the BOS the engine adds); the others as
        they count after ``anchor`` (a marker), so each is tokenized as it is inside the
        prompt. ``whole_first=False``: the first one too (no BOS is added to the prompt).
        """
        if not parts:
            return 0
        if not whole_first:
            parts = ["", *parts]
        rest = [part for part in parts[1:] if part]
        missing = [part for part in dict.fromkeys(rest) if part not in self._pieces]
        if missing:
            self._count_missing(missing, anchor)
        total = self.tokens(parts[0]) if parts[0] or whole_first else 0
        for part in rest:
            known = self._pieces.get(part)
            if known is None:  # forgotten meanwhile (the memory was full)
                self._count_missing([part], anchor)
                known = self._pieces[part]
            total += known
        return total


def backend_pieces(backend: Backend, count: Callable[[str], int]) -> PieceCounter:
    """A `PieceCounter` over ``count``, batching with the backend's token offsets if it has them."""
    return PieceCounter(count, getattr(backend, "token_starts", None))


def count_messages(
    settings: Settings,
    messages: Sequence[BaseMessage],
    tools: Sequence[Any] | None,
    tool_choice: ToolChoice,
    counter: PieceCounter | Callable[[str], int],
    *,
    engine_skips_bos: bool = False,
) -> int:
    """Tokens of the prompt a chat model with ``settings`` sends for ``messages`` and ``tools``.

    The pieces come from the same renderer, with the same system prompt, settings and
    forced-call ending as the request itself (`langchain_k2._turn_setup`), so the count
    is the input tokens the server reports. ``counter``: a `PieceCounter`, or a function
    counting the whole prompt at once (a local tokenizer). ``engine_skips_bos``: the engine
    is told not to add its own BOS to a prompt that holds one (vLLM), so none is counted.
    """
    if not messages:
        return 0
    fmt = settings.fmt
    formatted = normalize_tools(tools) if tools else []
    mode, _ = resolve_tool_choice(tool_choice, formatted)
    chosen = call_settings(
        fmt,
        settings.reasoning_effort,
        settings.tool_call_format,
        ends_in_reasoning=fmt.ends_in_reasoning(messages),
    )
    parts = render_parts(
        messages,
        fmt=fmt,
        tools=formatted if formatted and mode != "none" else None,
        default_system=settings.system_prompt,
        neutralize_markers=settings.neutralize_markers,
        force_tool_call=mode in {"any", "tool"} and fmt.forces_calls,
        settings=chosen,
    )
    anchor = anchor_of(fmt)
    # The engine adds no BOS of its own to a prompt holding one: none is counted.
    own_bos = fmt.bos_in_prompt and engine_skips_bos
    if isinstance(counter, PieceCounter):
        return counter.count(parts, anchor=anchor, whole_first=not own_bos)
    if own_bos:
        return counter(anchor + "".join(parts)) - counter(anchor)
    return counter("".join(parts))


__all__ = ["PieceCounter", "anchor_of", "backend_pieces", "count_messages", "render_parts"]
