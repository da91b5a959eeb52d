"""House rules for the seams between langchain_k2's modules, read from the source (AST).

- No private attribute is reached across modules: ``thing._name`` (or ``getattr(thing,
  "_name")``) where ``thing`` is not ``self``/``cls`` is allowed only when this module
  defines ``_name`` itself (a class of its own, a name of its own); nor is a private name
  imported from another module. Dunders (``__pydantic_validator__``...) are protocol
  names, not private ones.
- Nothing reads a call's options dict but the options parser: ``kwargs.get(...)``,
  ``kwargs.pop(...)`` and ``kwargs[...]`` (read) appear only in `langchain_k2._arguments`
  (constructor arguments) and `langchain_k2._call_options` (one call's options); every
  later step reads attributes of ``CallOptions`` and ``Settings``.
- No chat model crosses a seam untyped: no parameter named ``model``, ``chat`` or ``llm``
  is annotated ``Any``.

`ALLOWED` lists each exception with its reason: private members of other libraries that
have no public form.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "langchain_k2"
OPTIONS_PARSERS = {"_arguments.py", "_call_options.py"}

ALLOWED: dict[tuple[str, str], str] = {
    ("_urls.py", "_replace"): "namedtuple's public method (underscored so no field clashes)",
    ("backends/_bounded.py", "_transport"): "httpx keeps its transport private; the bounded "
    "reads wrap the connection pool's network backend beneath it",
    ("backends/_bounded.py", "_mounts"): "httpx's mounted transports (same wrapping)",
    ("backends/_bounded.py", "_pool"): "httpx's transport holds the httpcore pool privately",
    ("backends/_bounded.py", "_network_backend"): "httpcore's pool has no public hook for "
    "its network backend, which the bounded reads wrap",
    ("backends/_http.py", "_transport"): "httpx: the pool size of huggingface_hub's client "
    "is read from its transport (no public accessor)",
    ("backends/_http.py", "_pool"): "httpx: as above",
    ("backends/_http.py", "_max_connections"): "httpcore: the pool's connection limit",
    ("backends/_http.py", "_log_destroy_pending"): "asyncio.Task: silences the warning for "
    "a closer task a loop drops unrun (no public switch)",
    ("backends/_llamacpp_compat.py", "_grammar"): "llama-cpp-python's LlamaGrammar keeps "
    "its text private; the 'private sampler probe' workaround documents it",
    ("backends/_llamacpp_compat.py", "_root"): "llama-cpp-python's LlamaGrammar (as above)",
    ("backends/_llamacpp_compat.py", "_fields_"): "ctypes' Structure field list (a public "
    "sunder name of ctypes)",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Every name this module defines: defs, classes, class and module names, self.X."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
                names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
            names.add(node.target.attr)
    return names


def _reached(tree: ast.Module) -> Iterator[tuple[int, str, str]]:
    """``(line, attribute, source)`` for each private attribute read off another object."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}:
                continue
            yield node.lineno, node.attr, ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            receiver = node.args[0]
            if isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}:
                continue
            yield node.lineno, node.args[1].value, ast.unparse(node)


def _is_module(package: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*package.split("."), name)
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _private_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, source)`` for each private name (not a module) imported from elsewhere."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if _private(alias.name) and not _is_module(node.module, alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"


def private_reaches() -> list[str]:
    """Each private attribute reached across modules, outside `ALLOWED`."""
    found = []
    for name, tree in _modules():
        own = _own_names(tree)
        for line, attribute, source in _reached(tree):
            if attribute not in own and (name, attribute) not in ALLOWED:
                found.append(f"{name}:{line}: {source}")
        found += [f"{name}:{line}: {source}" for line, source in _private_imports(tree)]
    return found


def options_reads() -> list[str]:
    """Each read of a ``kwargs`` dict outside the options parser."""
    found = []
    for name, tree in _modules():
        if Path(name).name in OPTIONS_PARSERS:
            continue
        for node in ast.walk(tree):
            read = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"get", "pop", "setdefault"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "kwargs"
            ) or (
                isinstance(node, ast.Subscript)
                and not isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "kwargs"
            )
            if read:
                found.append(f"{name}:{getattr(node, 'lineno', 0)}: {ast.unparse(node)}")
    return found


def untyped_models() -> list[str]:
    """Each parameter named ``model``, ``chat`` or ``llm`` annotated ``Any``."""
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation = argument.annotation
                untyped = annotation is None or ast.unparse(annotation) in {"Any", "'Any'"}
                if argument.arg in {"model", "chat", "llm"} and untyped:
                    found.append(f"{name}:{node.lineno}: {node.name}({argument.arg})")
    return found


def test_no_private_attribute_is_reached_across_modules() -> None:
    assert private_reaches() == []


def test_only_the_options_parser_reads_the_options_dict() -> None:
    assert options_reads() == []


def test_no_chat_model_parameter_is_untyped() -> None:
    assert untyped_models() == []


def test_every_allowed_exception_is_still_used() -> None:
    """An exception whose access is gone is dropped from `ALLOWED` (no stale excuses)."""
    used = {(name, attribute) for name, tree in _modules() for _, attribute, _ in _reached(tree)}
    assert set(ALLOWED) - used == set()


@pytest.mark.parametrize(
    ("source", "rule", "expected"),
    [
        ("def f(other):\n    return other._secret\n", private_reaches, "other._secret"),
        ("def f(x):\n    return getattr(x, '_hidden')\n", private_reaches, "_hidden"),
        ("from langchain_k2._turn import _helper\n", private_reaches, "import _helper"),
        ("def f(**kwargs):\n    return kwargs.get('tools')\n", options_reads, "kwargs.get"),
        ("def f(**kwargs):\n    return kwargs['tools']\n", options_reads, "kwargs['tools']"),
        ("from typing import Any\ndef f(model: Any): ...\n", untyped_models, "f(model)"),
    ],
)
def test_the_rules_catch_what_they_name(
    source: str,
    rule: Callable[[], list[str]],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each rule, on a module that breaks it, names the place.

    It stays quiet on a module that keeps it: a class reading its own private attribute
    off another instance, a dict named ``kwargs`` that is only written.
    """
    package = tmp_path / "langchain_k2"
    package.mkdir()
    (package / "_turn.py").write_text("", encoding="utf-8")
    (package / "offender.py").write_text(source, encoding="utf-8")
    (package / "fine.py").write_text(
        "class A:\n    def __init__(self):\n        self._x = 1\n"
        "    def same(self, other):\n        return other._x\n"
        "def g(**kwargs):\n    kwargs['built'] = 1\n    return kwargs\n",
        encoding="utf-8",
    )
    monkeypatch.setitem(globals(), "PACKAGE", package)
    found = rule()
    assert len(found) == 1
    assert found[0].startswith("offender.py:")
    assert expected in found[0]
