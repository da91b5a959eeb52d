"""What each engine's constraint compiler enforces, and the schema it is given.

In: a JSON schema (a tool's parameters, a structured-output schema) and the engine name
(``tgi``, ``vllm``, ``sglang``, ``llama.cpp``, ``llama-cpp-python``, ``llamacpp`` for the
in-process backend; ``None`` or ``auto`` when not known). Out: a `GrammarSchema`: the
schema the engine is sent as its grammar, and the keywords taken out of it. Validation
never uses it: the client validates every answer against the *whole* schema and repairs
a failing one, so the grammar may be looser than the schema but never stricter.

The engines drop or reject different JSON-schema keywords (read from their sources, late
2026; ``ENGINE_UNSUPPORTED`` below):

- vLLM and SGLang compile with xgrammar (vLLM's ``auto`` backend falls back to guidance
  only when xgrammar cannot, and a forced xgrammar answers 400): no ``multipleOf``,
  ``uniqueItems``, ``contains``, ``patternProperties``, ``propertyNames``,
  ``min/maxProperties``, conditionals, ``not``; a ``format`` outside its list; a
  ``pattern`` next to length bounds keeps the pattern and drops the lengths.
- llama.cpp's converter (the C++ server and llama-cpp-python's Python port) has no
  ``patternProperties``, ``uniqueItems``, ``multipleOf``, ``not``, conditionals,
  ``propertyNames``, ``min/maxProperties``; string formats beyond date/time/uuid are
  plain strings; numeric bounds hold for integers only on the server and not at all in
  the port; the port reads a ``"type"`` list as the bare types, so one with keywords
  beside it is sent as an ``anyOf`` of one typed copy each; both read an ``anyOf`` or a
  ``$ref`` alone, so keywords beside one are folded in (`_fold_siblings`); the port copies
  some regex escapes into broken GBNF, so such a ``pattern`` is left to the client.
- TGI compiles with outlines: no ``patternProperties``, ``uniqueItems``, ``multipleOf``,
  conditionals, ``not``, ``propertyNames``, ``min/maxProperties``; few formats.

Every engine gets, besides: ``oneOf`` as ``anyOf`` (looser; exactly-one is checked on the
client), ``allOf`` merged into one schema (no engine intersects reliably), non-local
``$ref`` as "any value", and no repetition bound above `REPETITION_CAP`
(``maxLength``/``maxItems`` in the tens of thousands make llama.cpp build a grammar rule
per repetition and crash the process). A ``patternProperties`` taken out widens
``additionalProperties`` to its value schemas, so keys it allowed stay allowed.

Example:
    >>> simplified = grammar_schema({"type": "array", "uniqueItems": True}, "vllm")
    >>> simplified.schema, simplified.dropped
    ({'type': 'array'}, ('uniqueItems',))
    >>> grammar_schema({"type": "string", "maxLength": 50000}, "llamacpp").schema
    {'type': 'string'}
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENGINE_FORMATS",
    "ENGINE_UNSUPPORTED",
    "REPETITION_CAP",
    "GrammarSchema",
    "K2SchemaWarning",
    "grammar_schema",
    "warn_dropped",
]


class K2SchemaWarning(UserWarning):
    """A schema keyword the engine does not enforce: it is checked on the client instead.

    Silence it with ``warnings.filterwarnings("ignore", category=K2SchemaWarning)``.
    """


REPETITION_CAP = 256
"""The largest ``minLength``/``maxLength``/``minItems``/``maxItems`` sent in a grammar."""

_REPETITION_KEYS = ("minLength", "maxLength", "minItems", "maxItems")

_NOWHERE = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "uniqueItems",
        "multipleOf",
        "patternProperties",
        "minProperties",
        "maxProperties",
    }
)
"""Keywords no engine here compiles into its grammar (each drops or rejects them)."""

_XGRAMMAR_FORMATS = frozenset(
    {
        "email",
        "date",
        "time",
        "date-time",
        "duration",
        "ipv4",
        "ipv6",
        "hostname",
        "uuid",
        "uri",
        "uri-reference",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
    }
)

_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
# Sources (read late 2026), each checked against the table:
# - vLLM: vllm/v1/structured_output/backend_xgrammar.py, has_xgrammar_unsupported_json_features
#   (multipleOf; uniqueItems/contains/min-/maxContains; a format outside
#   STRING_SUPPORTED_FORMATS, which is _XGRAMMAR_FORMATS; a pattern or format beside length
#   bounds; patternProperties/propertyNames): with the xgrammar backend forced, a 400.
#   xgrammar's own main branch (cpp/json_schema_converter.cc) parses more (patternProperties,
#   propertyNames, min/maxProperties, integer multipleOf) but the releases vLLM and SGLang
#   pin may not: those stay out (looser, and checked on the client).
# - llama.cpp's server: common/json-schema.cpp builds rules from type, $ref, anyOf/oneOf,
#   allOf, const, enum, properties, required, additionalProperties, items, prefixItems,
#   min/maxItems, min/maxLength, pattern, format (date, time, date-time, uuid) and
#   minimum/maximum/exclusive* for integers only (build_integer); nothing else.
# - llama-cpp-python's port (llama_cpp/llama_grammar.py, SchemaConverter.visit, 0.3.x): the
#   same minus every numeric bound ("TODO: support minimum, maximum, ..."); a type list
#   loses its sibling keywords (`_split_type_list`).
# - TGI: outlines-core's src/json_schema (no patternProperties, uniqueItems, multipleOf,
#   conditionals, not, propertyNames; a few formats).
ENGINE_UNSUPPORTED: Mapping[str, frozenset[str]] = {
    "vllm": _NOWHERE,
    "sglang": _NOWHERE,
    "llama.cpp": _NOWHERE,
    "llama-cpp-python": _NOWHERE | _BOUNDS,
    "llamacpp": _NOWHERE | _BOUNDS,
    "tgi": _NOWHERE,
}
"""Per engine, the keywords its constraint compiler drops or answers 400 for (llama.cpp's
server also drops numeric bounds on anything but an integer: `_Simplifier`)."""

ENGINE_FORMATS: Mapping[str, frozenset[str] | None] = {
    "vllm": _XGRAMMAR_FORMATS,
    "sglang": _XGRAMMAR_FORMATS,
    "tgi": frozenset({"date-time", "date", "time", "uuid", "email", "uri"}),
    "llama.cpp": frozenset({"date", "time", "date-time", "uuid"}),
    "llama-cpp-python": frozenset({"date", "time", "date-time", "uuid"}),
    "llamacpp": frozenset({"date", "time", "date-time", "uuid"}),
}
"""Per engine, the string formats it enforces; any other ``format`` is taken out."""

_NOT_XGRAMMAR = frozenset({"tgi", "llama.cpp", "llama-cpp-python", "llamacpp"})
_LLAMA = frozenset({"llama.cpp", "llama-cpp-python", "llamacpp"})
_LLAMA_RECOGNIZED = frozenset(
    {"$ref", "oneOf", "anyOf", "allOf", "const", "enum", "type", "properties",
     "additionalProperties", "items", "prefixItems", "pattern", "format"}
)  # fmt: skip
"""The keywords llama.cpp's converter builds a rule from (a schema with none is refused)."""


def _plain_anchored(pattern: Any) -> bool:
    """Whether llama.cpp's converter takes ``pattern``: ``^...$`` without ``(?`` groups."""
    return (
        isinstance(pattern, str)
        and pattern.startswith("^")
        and pattern.endswith("$")
        and "(?" not in pattern
    )


_PORT = frozenset({"llama-cpp-python", "llamacpp"})
_GBNF_ESCAPES = frozenset('\\"[]tnr')
"""What may follow a backslash in a pattern llama-cpp-python's converter is given."""


def _mistranslated(pattern: str) -> bool:
    r"""Whether llama-cpp-python's converter would write ``pattern`` as broken GBNF.

    Its ``_visit_pattern`` (``llama_cpp/llama_grammar.py``, 0.3.x) copies an escape such as
    ``\.``, ``\d``, ``\/`` or ``\$`` into the grammar as is, and llama.cpp's GBNF parser
    refuses it ("unknown escape"): 6 of the JSON Schema Store files failed so.

    >>> _mistranslated(r"^v[0-9]+\.[0-9]+$"), _mistranslated(r'^[a-z\]\\"]+$')
    (True, False)
    """
    escaped = False
    for char in pattern:
        if escaped and char not in _GBNF_ESCAPES:
            return True
        escaped = not escaped and char == "\\"
    return False


_COMMON_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
"""The formats every engine enforces (what an unknown engine is sent)."""
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "prefixItems")
_METADATA = frozenset({"$schema", "$id", "$comment"})
"""Left out of every grammar: no engine constrains by them, and a nested ``$id`` would move
the base of the references the wrapper grammar hoists."""
_DATA_KEYS = frozenset({"enum", "const", "default", "examples", "example", "required"})


_TYPE_KEYWORDS: Mapping[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems"}),
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
}
"""The keywords that constrain only values of one type (``integer`` takes ``number``'s)."""
_TYPED = frozenset().union(*_TYPE_KEYWORDS.values())
_NODE_LEVEL = frozenset({"$defs", "definitions", "title", "description"})


def _types(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``"type"`` of ``node`` as a tuple (empty when it has none)."""
    kind = node.get("type")
    return tuple(kind) if isinstance(kind, list) else () if kind is None else (kind,)


def _split_type_list(node: dict[str, Any]) -> dict[str, Any]:
    """A ``"type"`` list with other keywords beside it, as a union of one typed copy each.

    llama-cpp-python's converter turns a type list into the bare types and drops every
    keyword beside it (``SchemaConverter.visit`` in ``llama_cpp/llama_grammar.py``, 0.3.x:
    ``[{"type": t} for t in schema_type]``), so ``{"type": ["string", "null"], "enum":
    ["v1"]}`` became any string, and a nullable object any object. The union means the
    same; each branch keeps the keywords that apply to its type.

    >>> _split_type_list({"type": ["string", "null"], "enum": ["v1"], "title": "V"})
    {'title': 'V', 'anyOf': [{'enum': ['v1'], 'type': 'string'}, {'enum': ['v1'], 'type': 'null'}]}
    >>> _split_type_list({"type": ["integer", "null"]})  # nothing beside it: as given
    {'type': ['integer', 'null']}
    """
    types = node.get("type")
    rest = {k: v for k, v in node.items() if k not in _NODE_LEVEL and k != "type"}
    if not isinstance(types, list) or len(types) < 2 or not rest or "anyOf" in rest:
        return node
    if "$ref" in rest:  # the converter follows the reference and ignores the rest
        return node
    branches = []
    for kind in types:
        own = _TYPE_KEYWORDS.get("number" if kind == "integer" else str(kind), frozenset())
        kept = {k: v for k, v in rest.items() if k not in _TYPED or k in own}
        branches.append({**kept, "type": kind})
    return {**{k: v for k, v in node.items() if k in _NODE_LEVEL}, "anyOf": branches}


_NOT_CONSTRAINING = _NODE_LEVEL | {"anyOf", "$ref", "default", "examples", "example"}


def _recognized(branch: Any) -> Any:
    """``branch`` if llama.cpp's converter builds a rule from it, else ``{}`` (any value)."""
    if isinstance(branch, Mapping) and not _LLAMA_RECOGNIZED.intersection(branch):
        return {}
    return branch


def _fold_siblings(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf`` or ``$ref`` with constraining keywords beside it, as llama.cpp reads it.

    Both converters build an ``anyOf`` node from its branches alone and a ``$ref`` node from
    its target alone, dropping the keywords beside them (``SchemaConverter.visit``; the
    server's ``build_node`` in ``common/json-schema.cpp``). The siblings are merged into
    each branch instead (`_merge_all_of`: never stricter), and beside a ``$ref`` an
    ``enum``/``const`` is kept rather than the reference (JSON Schema Store writes
    ``{"$ref": "#/definitions/string", "enum": [...]}``).

    >>> _fold_siblings({"type": "object", "properties": {"a": {}, "b": {}},
    ...                 "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})["anyOf"][0]
    {'type': 'object', 'properties': {'a': {}, 'b': {}}, 'required': ['a']}
    >>> _fold_siblings({"$ref": "#/definitions/string", "enum": ["git", "svn"]})
    {'enum': ['git', 'svn']}
    """
    siblings = {k: v for k, v in node.items() if k not in _NOT_CONSTRAINING}
    if not siblings:
        return node
    if isinstance(node.get("anyOf"), list) and "$ref" not in node:
        branches = [
            _merge_all_of({**siblings, "allOf": [branch]}) if isinstance(branch, Mapping)
            else branch
            for branch in node["anyOf"]
        ]  # fmt: skip
        return {**{k: v for k, v in node.items() if k in _NODE_LEVEL}, "anyOf": branches}
    if "$ref" in node and ("enum" in siblings or "const" in siblings):
        return {k: v for k, v in node.items() if k != "$ref"}
    return node


@dataclass(frozen=True)
class GrammarSchema:
    """The schema an engine compiles, and the keywords taken out of the given one.

    Attributes:
        schema: what the grammar is built from (looser than the given schema, or equal).
        dropped: the keywords taken out, sorted (``format=...`` for a format).
    """

    schema: dict[str, Any]
    dropped: tuple[str, ...]


def _merge_all_of(node: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with its ``allOf`` folded in: union of properties and required, first wins.

    Every instance valid for all branches is valid for the merge (it is looser).
    """
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for given in node.get("allOf") or []:
        if not isinstance(given, Mapping):
            continue
        branch = _merge_all_of(given) if "allOf" in given else given
        for key, value in branch.items():
            if key == "properties" and isinstance(value, Mapping):
                properties = dict(merged.get("properties") or {})
                for name, sub in value.items():
                    properties.setdefault(name, sub)
                merged["properties"] = properties
            elif key == "required" and isinstance(value, list):
                required = list(merged.get("required") or [])
                merged["required"] = required + [r for r in value if r not in required]
            else:
                merged.setdefault(key, value)
    return merged


class _Simplifier:
    def __init__(self, engine: str | None) -> None:
        self.unsupported = ENGINE_UNSUPPORTED.get(engine or "", _NOWHERE)
        self.formats = ENGINE_FORMATS.get(engine or "", _COMMON_FORMATS)
        self.xgrammar = engine not in _NOT_XGRAMMAR  # an unknown engine may be one
        self.llama = engine in _LLAMA
        self.engine = engine
        self.dropped: set[str] = set()

    def visit(self, node: Any, *, branch: bool = False) -> Any:
        if not isinstance(node, Mapping):
            return node
        if "allOf" in node:
            self.dropped.add("allOf")
            node = _merge_all_of(node)
        ref = node.get("$ref")
        if isinstance(ref, str) and not (ref == "#" or ref.startswith("#/")):
            self.dropped.add("$ref (not local)")
            return {}
        if ref == "#" and self.llama:  # the whole schema again: its converter cannot
            self.dropped.add("$ref to the root")
            return {}
        out: dict[str, Any] = {}
        patterns: list[Any] = []
        for key, value in node.items():
            if key in _METADATA:
                continue
            if key in _DATA_KEYS:
                out[key] = value
            elif key == "patternProperties" and key in self.unsupported:
                self.dropped.add(key)
                if isinstance(value, Mapping):
                    patterns.extend(self.visit(sub) for sub in value.values())
            elif key in self.unsupported:
                self.dropped.add(key)
            elif key == "oneOf" and isinstance(value, list):
                out["anyOf"] = [self.visit(sub, branch=True) for sub in value]
            elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
                out[key] = {name: self.visit(sub) for name, sub in value.items()}
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.visit(sub, branch=key == "anyOf") for sub in value]
            elif key in {"items", "additionalProperties", "additionalItems"}:
                is_list = isinstance(value, list)
                out[key] = [self.visit(sub) for sub in value] if is_list else self.visit(value)
            elif key in _REPETITION_KEYS and isinstance(value, int) and value > REPETITION_CAP:
                self.dropped.add(f"{key} over {REPETITION_CAP}")
            elif key == "format" and self.formats is not None and value not in self.formats:
                self.dropped.add(f"format={value}")
            elif key == "pattern" and self.llama and not _plain_anchored(value):
                self.dropped.add("pattern (not ^...$, or with (?...))")
            elif key == "pattern" and self.engine in _PORT and _mistranslated(value):
                self.dropped.add("pattern (an escape llama-cpp-python's converter garbles)")
            else:
                out[key] = value
        if patterns:
            extra = out.get("additionalProperties", True)
            if extra is not False:
                patterns.append({} if extra is True else extra)
            out["additionalProperties"] = patterns[0] if len(patterns) == 1 else {"anyOf": patterns}
        return self.finish(out, branch=branch)

    def finish(self, out: dict[str, Any], *, branch: bool = False) -> dict[str, Any]:
        """The per-engine rules that read a whole node (its keywords already visited)."""
        if self.engine == "llama.cpp" and "integer" not in _types(out):
            for key in _BOUNDS.intersection(out):  # common/json-schema.cpp: integers only
                del out[key]
                self.dropped.add(f"{key} (not an integer)")
        if self.llama:
            out = _fold_siblings(_split_type_list(out))
            if isinstance(out.get("anyOf"), list):  # branches kept whole until folded
                out["anyOf"] = [_recognized(sub) for sub in out["anyOf"]]
        if self.llama and not branch and not _LLAMA_RECOGNIZED.intersection(out):
            return {}  # only annotations or "required": its converter refuses such a schema
        if self.xgrammar and "pattern" in out:
            for key in ("minLength", "maxLength"):
                if out.pop(key, None) is not None:
                    self.dropped.add(f"{key} beside pattern")
        return out


def grammar_schema(schema: Mapping[str, Any], engine: str | None = None) -> GrammarSchema:
    """The part of ``schema`` that ``engine`` enforces, as the schema to send it.

    Args:
        schema: the whole JSON schema (left unchanged).
        engine: the engine's name; ``None``/``"auto"`` takes out what any engine drops.

    Example:
        >>> grammar_schema({"oneOf": [{"type": "integer"}, {"type": "string"}]}).schema
        {'anyOf': [{'type': 'integer'}, {'type': 'string'}]}
        >>> grammar_schema({"type": "object", "patternProperties": {"^x": {"type": "integer"}},
        ...                 "additionalProperties": False}, "llamacpp").schema
        {'type': 'object', 'additionalProperties': {'type': 'integer'}}
    """
    simplifier = _Simplifier(engine)
    simplified = simplifier.visit(schema)
    return GrammarSchema(simplified, tuple(sorted(simplifier.dropped)))


_warned: set[tuple[str, str, tuple[str, ...]]] = set()
_warned_lock = threading.Lock()
_MAX_WARNED = 1024


def warn_dropped(
    what: str, engine: str | None, dropped: tuple[str, ...], *, checked: bool = True
) -> None:
    """Say once (per schema and engine) that ``dropped`` keywords are not in the grammar.

    ``what`` names the schema (``"tool 'search'"``). ``checked``: the answer is validated
    against the whole schema on the client (tool calls, structured output); ``False`` for a
    grammar the caller gave, whose raw answer ChatK2 returns unchecked. Nothing is said
    when nothing was dropped.
    """
    if not dropped:
        return
    key = (what, engine or "auto", dropped)
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _MAX_WARNED:
            _warned.clear()
        _warned.add(key)
    after = (
        "the answer is validated against the whole schema on the client (a failing answer "
        "is repaired)"
        if checked
        else "ChatK2 returns the answer without checking it against the whole schema "
        "(with_structured_output checks it, and repairs a failing answer)"
    )
    warnings.warn(
        f"The JSON schema of {what} uses {', '.join(dropped)}, which the grammar of "
        f"{engine or 'the engine'} does not enforce: decoding is constrained without it, and "
        f"{after}. Silence this with warnings.filterwarnings('ignore', "
        "category=langchain_k2.K2SchemaWarning).",
        K2SchemaWarning,
        stacklevel=3,
    )
