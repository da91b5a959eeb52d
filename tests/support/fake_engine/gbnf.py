"""A GBNF check for the fake llama-server: the grammars the real one refuses to parse.

In: a grammar's text. Out: `parse_error(text)`, ``None`` when the grammar passes or a short
reason when it does not. llama.cpp's ``llama_grammar_parser`` is a full parser; this is a
fake-only simplification that catches what matters to a client: an unterminated string
literal or character class, unbalanced parentheses, a rule used but never defined, a rule
body missing, and no ``root`` rule (the real server then answers 400 "Failed to initialize
samplers: failed to parse grammar"). It does not check repetition bounds or escapes' values.

>>> parse_error('root ::= "a" | x\\nx ::= [a-z]+ # comment')
>>> parse_error('root ::= "a')
'unterminated string literal'
>>> parse_error('root ::= ("a"')
'unbalanced parentheses'
>>> parse_error('foo ::= "a"')
'no root rule'
>>> parse_error("root ::= y")
'undefined rule: y'
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9-]+")
_DEFINE = re.compile(r"([A-Za-z0-9-]+)\s*::=")


def _skip_quoted(text: str, i: int, close: str) -> int | None:
    """The index after the ``close`` that ends the literal opened at ``i`` (None: never)."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == close:
            return i + 1
        if close == '"' and text[i] == "\n":
            return None
        i += 1
    return None


def parse_error(text: str) -> str | None:
    """Why llama.cpp would refuse ``text`` as a grammar, or None when it would parse it."""
    defined: set[str] = set()
    used: list[str] = []
    depth, i, expect_body = 0, 0, False
    while i < len(text):
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char.isspace():
            i += 1
        elif char in '"[':
            kind = "string literal" if char == '"' else "character class"
            after = _skip_quoted(text, i, '"' if char == '"' else "]")
            if after is None:
                return f"unterminated {kind}"
            i, expect_body = after, False
        elif char == "(":
            depth, i, expect_body = depth + 1, i + 1, False
        elif char == ")":
            depth, i = depth - 1, i + 1
            if depth < 0:
                return "unbalanced parentheses"
        elif (define := _DEFINE.match(text, i)) is not None:
            if depth:
                return "unbalanced parentheses"
            if expect_body:
                return "a rule without a body"
            defined.add(define.group(1))
            i, expect_body = define.end(), True
        elif (name := _NAME.match(text, i)) is not None:
            used.append(name.group(0))
            i, expect_body = name.end(), False
        elif char == "<":  # a token reference, <[id]> or <|name|>
            end = text.find(">", i)
            if end < 0:
                return "unterminated token reference"
            i, expect_body = end + 1, False
        else:
            i += 1
    if depth:
        return "unbalanced parentheses"
    if expect_body:
        return "a rule without a body"
    if "root" not in defined:
        return "no root rule"
    missing = next((n for n in used if n not in defined and not n.isdigit()), None)
    return None if missing is None else f"undefined rule: {missing}"
