"""The error tree drawn in ``langchain_k2.errors``'s docstring is the real class tree."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import langchain_k2
from langchain_k2 import errors

_LINE = re.compile(r"^(?P<indent>[│├└─ ]*)(?P<name>\w+)(?: \((?P<bases>[\w, ]+)\))?\s")


TROUBLESHOOTING = Path(__file__).parents[2] / "docs" / "troubleshooting.md"


def drawing_in_docstring() -> str:
    return (errors.__doc__ or "").split("```")[1].strip("\n")


def drawn_tree() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Each drawn class: its drawn parent and the extra (non-K2) bases in parentheses."""
    drawing = drawing_in_docstring().splitlines()
    tree: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    parents: list[str] = []  # parents[d] is the last class drawn at depth d
    for line in drawing:
        match = _LINE.match(line + " ")
        assert match, f"cannot read this line of the drawing: {line!r}"
        depth = len(match["indent"]) // 4
        bases = tuple(b.strip() for b in (match["bases"] or "").split(",") if b.strip())
        parent = parents[depth - 1] if depth else None
        tree[match["name"]] = (parent, bases)
        del parents[depth:]
        parents.append(match["name"])
    return tree


def real_tree() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    tree: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for name, cls in vars(errors).items():
        if not (inspect.isclass(cls) and issubclass(cls, errors.K2Error)):
            continue
        ours = [b for b in cls.__bases__ if issubclass(b, errors.K2Error)]
        others = tuple(b.__name__ for b in cls.__bases__ if not issubclass(b, errors.K2Error))
        assert len(ours) <= 1, f"{name} has two K2 bases"
        parent = ours[0].__name__ if ours else None
        tree[name] = (parent, () if parent is None else others)
    return tree


def test_drawing_matches_class_hierarchy() -> None:
    drawn, real = drawn_tree(), real_tree()
    assert sorted(drawn) == sorted(real), "classes missing from or extra in the drawing"
    for name, (parent, bases) in real.items():
        assert drawn[name] == (parent, bases), (
            f"{name} is drawn under {drawn[name][0]} with bases {drawn[name][1]}, "
            f"but its class derives from {parent} with extra bases {bases}"
        )


def test_every_error_is_exported() -> None:
    missing = [name for name in real_tree() if getattr(langchain_k2, name, None) is None]
    assert missing == []


def test_troubleshooting_page_draws_the_same_tree() -> None:
    page = TROUBLESHOOTING.read_text(encoding="utf-8")
    drawing = page.split("```text\n", 1)[1].split("```", 1)[0].strip("\n")
    assert drawing == drawing_in_docstring()
