"""The public surface: what users import, pinned; everything else private.

Public are `langchain_k2` (its ``__all__``), `langchain_k2.backends`, `langchain_k2.formats`,
and the modules `langchain_k2.chat_models`, `langchain_k2.errors` and `langchain_k2.demo`.
Changing one of the lists below is changing the API: do it on purpose, with the docs. Every
other module of the package is underscored, and neither the docs nor the README send a
reader to one (they may name one as a file path, ``langchain_k2/_turn.py``, in prose).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.load import dumps, loads
from langchain_core.tools import BaseTool

import langchain_k2
import langchain_k2.backends
import langchain_k2.formats

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "langchain_k2"

TOP_LEVEL = [
    "ChatK2",
    "ContextWindowExceededError",
    "K2AuthenticationError",
    "K2BackendError",
    "K2ConfigError",
    "K2ConnectionError",
    "K2ContextOverflowError",
    "K2Error",
    "K2Format",
    "K2GenerationError",
    "K2GrammarUnsupportedError",
    "K2IncompleteGenerationError",
    "K2InputError",
    "K2NotFoundError",
    "K2OverloadedError",
    "K2SchemaWarning",
    "K2ServerError",
    "K2StreamInterruptedError",
    "K2TimeoutError",
    "K2UnavailableError",
    "K2ValidationError",
    "ParsedToolCalls",
    "ToolBlock",
    "ToolCallStreamParser",
    "ToolDefinitionError",
    "__version__",
    "neutralize",
    "parse_tool_calls",
    "render_prompt",
    "restore",
]

BACKENDS = [
    "Backend",
    "BackendInfo",
    "FinalEvent",
    "GenerationEvent",
    "GenerationParams",
    "Grammar",
    "LlamaCppBackend",
    "TGIBackend",
    "TokenEvent",
    "find_smollm2_gguf",
    "json_grammar",
]

FORMATS = [
    "FORMATS",
    "FormatSettings",
    "K2Format",
    "K2ThinkV2Format",
    "K2V2Format",
    "K2V3Format",
    "PromptFormat",
    "format_for_model",
    "format_from_tokenizer",
    "get_format",
]

PUBLIC_MODULES = (
    "langchain_k2",
    "langchain_k2.backends",
    "langchain_k2.formats",
    "langchain_k2.chat_models",
    "langchain_k2.errors",
    "langchain_k2.demo",
)

PUBLIC_FILES = frozenset(
    {
        "__init__.py",
        "chat_models.py",
        "errors.py",
        "demo.py",
        "backends/__init__.py",
        "formats/__init__.py",
    }
)

# A dotted name with an underscored part: ``langchain_k2._turn``, ``langchain_k2.backends._tgi``.
_PRIVATE_DOTTED = re.compile(r"\blangchain_k2(?:\.[A-Za-z]\w*)*\._[A-Za-z]\w*")
_PRIVATE_FROM = re.compile(r"\bfrom\s+langchain_k2[\w.]*\s+import\s+\(?\s*_[A-Za-z]")


def _doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


@pytest.mark.parametrize(
    ("module", "pinned"),
    [
        (langchain_k2, TOP_LEVEL),
        (langchain_k2.backends, BACKENDS),
        (langchain_k2.formats, FORMATS),
    ],
    ids=["langchain_k2", "backends", "formats"],
)
def test_all_is_pinned_and_resolves(module: ModuleType, pinned: list[str]) -> None:
    assert sorted(module.__all__) == pinned, (
        f"{module.__name__}.__all__ changed: update the pinned list, the package docstring "
        "and docs/reference/ together"
    )
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [name for name in pinned if not hasattr(module, name)]
    assert missing == []
    star: dict[str, object] = {}
    exec(f"from {module.__name__} import *", star)  # noqa: S102 - a fixed import line
    assert set(pinned) <= set(star)


def test_the_error_module_and_the_package_export_the_same_errors() -> None:
    from langchain_k2 import errors

    assert set(errors.__all__) <= set(langchain_k2.__all__)
    classes = {
        n for n, v in vars(errors).items() if inspect.isclass(v) and v.__module__ == errors.__name__
    }
    assert set(errors.__all__) == classes


def _own_docstring(value: object) -> str | None:
    if isinstance(value, BaseTool):
        return value.description
    if inspect.isclass(value):
        doc = vars(value).get("__doc__")
        # a dataclass without a docstring gets its signature, "Name(field, ...)"
        if isinstance(doc, str) and not doc.startswith(f"{value.__name__}("):
            return doc
        return None
    if inspect.isroutine(value):
        return value.__doc__
    return None


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    module_doc = module.__doc__ or ""
    assert module_doc.strip(), f"{name} has no module docstring"
    assert hasattr(module, "__all__"), f"{name} is public: give it an __all__"
    undocumented = []
    for exported in module.__all__:
        value = getattr(module, exported)
        if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, BaseTool):
            doc = _own_docstring(value)
            if not (doc and doc.strip()):
                undocumented.append(exported)
        elif f"`{exported}`" not in module_doc:  # data: named in the module's docstring
            undocumented.append(exported)
    assert undocumented == [], f"{name}: exported without a docstring: {undocumented}"


def test_every_other_module_is_private() -> None:
    public = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if "__pycache__" in relative.parts or relative.as_posix() in PUBLIC_FILES:
            continue
        parts = [*relative.parts[:-1], relative.stem]
        if not any(p.startswith("_") and not p.startswith("__") for p in parts):
            public.append(relative.as_posix())
    assert public == [], (
        f"modules {public} are public by name: underscore them (langchain_k2/_name.py) and "
        "export what users need from langchain_k2, langchain_k2.backends or langchain_k2.formats"
    )


@pytest.mark.parametrize("page", _doc_pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_docs_never_send_readers_to_a_private_module(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = sorted(set(_PRIVATE_DOTTED.findall(text)) | set(_PRIVATE_FROM.findall(text)))
    assert found == [], (
        f"{page.relative_to(REPO)} names private modules {found}: import the public name "
        "(langchain_k2, langchain_k2.backends, langchain_k2.formats), or name the module "
        "as a file path (langchain_k2/_turn.py) in prose"
    )


def test_the_api_reference_renders_exported_names_only() -> None:
    rendered = []
    for page in sorted((REPO / "docs" / "reference").glob("*.md")):
        for target in re.findall(r"^:::\s*(\S+)", page.read_text(encoding="utf-8"), re.M):
            rendered.append(target)
            if target in PUBLIC_MODULES:
                continue
            module, _, name = target.rpartition(".")
            assert module in PUBLIC_MODULES, f"{page.name}: {target} is not in a public module"
            assert name in importlib.import_module(module).__all__, (
                f"{page.name}: {target} is not exported by {module}"
            )
    assert "langchain_k2.ChatK2" in rendered
    assert "langchain_k2.backends.Backend" in rendered


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_serialization_names_the_public_module() -> None:
    chat = langchain_k2.ChatK2(endpoint_url="http://127.0.0.1:8080", temperature=0)
    assert langchain_k2.ChatK2.get_lc_namespace() == ["langchain_k2", "chat_models"]
    back = loads(
        dumps(chat), valid_namespaces=["langchain_k2"], allowed_objects=[langchain_k2.ChatK2]
    )
    assert isinstance(back, langchain_k2.ChatK2)
    assert back.endpoint_url == chat.endpoint_url
    assert back.temperature == 0
