r"""Constraints after the thought: the reasoning is free, the part after it is constrained.

In: a `ThoughtFirst` (the effort's close tag, literal text around the constrained part,
and that part as a JSON-schema or GBNF `langchain_k2.backends._base.Grammar`). Out: what
each engine takes for it: a GBNF grammar (the llama.cpp flavours: `thought_gbnf`), an
xgrammar structural tag (vLLM, SGLang: `structural_tag`), or a lazy grammar triggered by
the close tag (llama-server: `lazy_gbnf`).

The prompt of a reasoning family (K2-V2, K2-Think-V2, K2-V3) already opened the effort's
tag, so the output is ``reasoning CLOSE [ws] LEAD constrained TAIL``. The reasoning is any
text not containing ``CLOSE``; GBNF has no "not containing", so `until_rules` writes the
string-matching automaton of ``CLOSE`` as right-recursive rules (constant parser stack,
however long the thought).

Example:
    >>> print("\n".join(until_rules("</a>", "t")))
    t-0 ::= [^\x3C] t-0 | "<" t-1
    t-1 ::= [^\x2F\x3C] t-0 | "/" t-2 | "<" t-1
    t-2 ::= [^\x3C\x61] t-0 | "<" t-1 | "a" t-3
    t-3 ::= [^\x3C\x3E] t-0 | "<" t-1 | ">"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_k2.backends._base import Grammar
from langchain_k2.errors import K2ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "SEPARATOR",
    "ThoughtFirst",
    "after_thought",
    "gbnf_literal",
    "lazy_gbnf",
    "structural_tag",
    "thought_gbnf",
    "until_rules",
]

SEPARATOR = "[ \n]{0,2}"
"""Whitespace allowed between the close tag and the constrained part (a regex)."""

_SEPARATOR_GBNF = '("\\n" | " ")? ("\\n" | " ")?'


@dataclass(frozen=True)
class ThoughtFirst:
    """Reasoning (ended by ``close``), then ``lead`` + the ``then`` grammar + ``tail``.

    Attributes:
        close: the effort's close tag (``</think_fast>``, ``</ifm|think>``...).
        then: the constrained part: a ``json`` or ``gbnf`` `Grammar`.
        lead: literal text the constrained part starts with (the family's call opener).
        tail: literal text after it (the call's closer).
    """

    close: str
    then: Grammar
    lead: str = ""
    tail: str = ""

    def as_json(self) -> dict[str, Any]:
        """Plain JSON data (for a grammar's cache key and ``as_option``)."""
        return {
            "close": self.close,
            "then": self.then.as_option(),
            "lead": self.lead,
            "tail": self.tail,
        }


def gbnf_literal(text: str) -> str:
    r"""``text`` as a GBNF string literal.

    >>> gbnf_literal('a"b\n')
    '"a\\"b\\n"'
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _class_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02X}" if code < 0x100 else f"\\u{code:04X}"


def until_rules(stop: str, name: str) -> list[str]:
    """GBNF rules ``name-0`` … : any text not containing ``stop``, then ``stop`` itself.

    State ``k`` has matched ``stop[:k]``; each character moves to the longest prefix of
    ``stop`` that the text now ends with (KMP), other characters back to state 0.
    """
    if not stop:
        raise ValueError("the close tag must be a non-empty string")
    chars = sorted(set(stop))
    rules = []
    for state in range(len(stop)):
        seen = stop[:state]
        moves: list[tuple[str, int]] = []
        for char in chars:
            text = seen + char
            nxt = next(
                j for j in range(min(len(text), len(stop)), -1, -1) if text.endswith(stop[:j])
            )
            if nxt:
                moves.append((char, nxt))
        others = "[^" + "".join(_class_char(c) for c, _ in moves) + "]"
        alternatives = [f"{others} {name}-0"]
        for char, nxt in moves:
            target = "" if nxt == len(stop) else f" {name}-{nxt}"
            alternatives.append(gbnf_literal(char) + target)
        rules.append(f"{name}-{state} ::= " + " | ".join(alternatives))
    return rules


_ROOT = re.compile(r'(?<![\w\-"\\])root(?![\w\-\\])')


def _renamed(gbnf: str, prefix: str) -> str:
    """``gbnf`` with its ``root`` rule (and references to it) named ``PREFIX-root``."""
    return _ROOT.sub(f"{prefix}-root", gbnf)


def _inner_gbnf(spec: ThoughtFirst, convert: Callable[[Grammar], str]) -> str:
    return _renamed(convert(spec.then), "k2-then")


def thought_gbnf(spec: ThoughtFirst, convert: Callable[[Grammar], str]) -> str:
    """The whole output as one GBNF grammar: thought, close tag, lead, part, tail.

    ``convert`` turns ``spec.then`` into GBNF (`langchain_k2.backends._gbnf.grammar_gbnf`).
    """
    root = " ".join(
        part
        for part in (
            "k2-thought-0",
            _SEPARATOR_GBNF,
            gbnf_literal(spec.lead) if spec.lead else "",
            "k2-then-root",
            gbnf_literal(spec.tail) if spec.tail else "",
        )
        if part
    )
    return "\n".join(
        [f"root ::= {root}", *until_rules(spec.close, "k2-thought"), _inner_gbnf(spec, convert)]
    )


def lazy_gbnf(spec: ThoughtFirst, convert: Callable[[Grammar], str]) -> str:
    """The grammar llama-server applies from the close tag on (its lazy-grammar trigger)."""
    root = " ".join(
        part
        for part in (
            gbnf_literal(spec.close),
            _SEPARATOR_GBNF,
            gbnf_literal(spec.lead) if spec.lead else "",
            "k2-then-root",
            gbnf_literal(spec.tail) if spec.tail else "",
        )
        if part
    )
    return "\n".join([f"root ::= {root}", _inner_gbnf(spec, convert)])


def structural_tag(spec: ThoughtFirst) -> dict[str, Any]:
    """The xgrammar structural tag for ``spec`` (vLLM's and SGLang's ``structural_tag``).

    The thought is a tag with no opening text whose content is any text, ended by the
    close tag; then the whitespace, the lead, the part (a JSON schema, or a GBNF grammar:
    xgrammar reads GBNF as its EBNF) and the tail, in sequence.

    Example:
        >>> from langchain_k2.backends._base import json_grammar
        >>> tag = structural_tag(ThoughtFirst("</think>", json_grammar({"type": "object"})))
        >>> [e["type"] for e in tag["format"]["elements"]]
        ['tag', 'regex', 'json_schema']
    """
    then = spec.then
    part: dict[str, Any] = (
        {"type": "json_schema", "json_schema": then.value}
        if then.kind == "json"
        else {"type": "grammar", "grammar": str(then.value)}
    )
    elements: list[dict[str, Any]] = [
        {"type": "tag", "begin": "", "content": {"type": "any_text"}, "end": spec.close},
        {"type": "regex", "pattern": SEPARATOR},
    ]
    if spec.lead:
        elements.append({"type": "const_string", "value": spec.lead})
    elements.append(part)
    if spec.tail:
        elements.append({"type": "const_string", "value": spec.tail})
    return {"type": "structural_tag", "format": {"type": "sequence", "elements": elements}}


def structural_tag_text(spec: ThoughtFirst) -> str:
    """`structural_tag` as the JSON text the engines take."""
    return json.dumps(structural_tag(spec))


def after_thought(then: Grammar, close: str, *, lead: str = "", tail: str = "") -> Grammar:
    """The grammar leaving the reasoning (up to ``close``) free, then ``lead`` ``then`` ``tail``.

    Example:
        >>> from langchain_k2.backends._base import json_grammar
        >>> g = after_thought(json_grammar({"type": "object"}), "</think>")
        >>> g.kind, g.value.close, g.value.then.kind
        ('thought', '</think>', 'json')
    """
    if then.kind not in {"json", "gbnf"}:
        raise K2ConfigError(
            f"a {then.kind!r} grammar cannot follow the reasoning: pass a JSON schema or GBNF."
        )
    return Grammar("thought", ThoughtFirst(close, then, lead, tail))
