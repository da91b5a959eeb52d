"""Repair strategies: what a turn asks next when a tool call it read is broken.

In: a `Broken` (the block that failed to parse or validate, the prompt and the text the model
wrote before it, the family's format and settings). Out: a `Retry` (the next request's prompt
and how its output is read), or ``None`` to keep the broken call as an invalid tool call.

The turn (`langchain_k2._turn.Turn`) owns the budget (``max_tool_call_retries``, shared with
structured output's re-asks: `langchain_k2._structured`), the window check of the repair
prompt, and what happens when a repair request fails; a strategy only says what to ask.

`Continuation` is K2-Chat's repair (``k2-format.md`` section 5), and the new families' too:
the model writes again from the raw completion up to the broken call and its open tag, with a
grammar for the call where the family's call is the JSON object the grammar describes. The
output parser of the repair starts after the reasoning (a reasoning family's thought is part
of the prompt by then), so the call is read, not taken for reasoning.

Example:
    >>> from langchain_k2._prompt import DEFAULT_FORMAT
    >>> from langchain_k2._tool_block import ToolBlock
    >>> broken = Broken(ToolBlock(raw="<tool_call>{bad", tool_calls=[], invalid_tool_calls=[]),
    ...     context="PROMPT", written="Let me look. ", fmt=DEFAULT_FORMAT, repairs=0)
    >>> Continuation()(broken)
    Retry(context='PROMPTLet me look. ', primer='<tool_call>', grammar=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from langchain_k2._tool_block import ToolBlock
from langchain_k2.formats._base import FormatSettings, PromptFormat


@dataclass(frozen=True)
class Broken:
    """A block that failed to parse or validate, where the model wrote it.

    Attributes:
        block: the broken block (its ``raw`` text is what the model wrote).
        context: the prompt of the request that wrote the block, without its primer.
        written: what that request wrote before the block, starting with its primer:
            ``context + written + block.raw`` is the text the model continued.
        fmt: the family's format (its call tags).
        repairs: repairs already made in this turn (the budget's use so far).
        settings: the format's settings of the call.
    """

    block: ToolBlock
    context: str
    written: str
    fmt: PromptFormat
    repairs: int
    settings: FormatSettings = field(default_factory=FormatSettings)


@dataclass(frozen=True)
class Retry:
    """The next request of a repair.

    Attributes:
        context: the prompt up to the primer.
        primer: text the prompt ends with that belongs to the output (the call's open tag):
            the request's prompt is ``context + primer``, and its output parser reads the
            primer first, after the reasoning.
        grammar: constrain the output to one call of the bound tools, when the backend
            takes grammars (the primer must then be the family's call open tag).
    """

    context: str
    primer: str
    grammar: bool = False


class Repair(Protocol):
    """A repair strategy: the `Retry` for a `Broken` block, or ``None`` to keep it broken."""

    def __call__(self, broken: Broken) -> Retry | None:
        """The next request of the repair of ``broken``, or ``None``."""
        ...


class Continuation:
    """Write the call again, from the raw completion up to the broken call's open tag.

    The grammar is asked for where the family's call is K2-Chat's JSON object
    (``forces_calls``): K2-V3's calls are XML groups the JSON call grammar does not describe,
    and K2-V2's Hermes blocks wrap the JSON in newlines the grammar would forbid.
    """

    def __call__(self, broken: Broken) -> Retry:
        """Continue from the text before the broken call, with its open tag."""
        fmt = broken.fmt
        return Retry(
            context=broken.context + broken.written,
            primer=fmt.tool_call_open,
            grammar=type(fmt).forces_calls,
        )


@dataclass
class Budget:
    """The retries one call may still spend; every strategy of the call draws on it.

    ``max_tool_call_retries`` fills it. The turn's repairs spend it (they come back as
    ``response_metadata["tool_call_retries"]``), and so do structured output's re-asks
    (`langchain_k2._structured.ReAsk`): one call sends at most ``left + 1`` requests.

    Example:
        >>> budget = Budget(2)
        >>> budget.spend(1)
        >>> budget.left, budget.exhausted
        (1, False)
    """

    left: int

    def spend(self, count: int = 1) -> None:
        """Take ``count`` retries (a negative or unknown count takes none)."""
        self.left -= max(0, count)

    @property
    def exhausted(self) -> bool:
        """Whether no retry is left."""
        return self.left < 1


__all__ = ["Broken", "Budget", "Continuation", "Repair", "Retry"]
