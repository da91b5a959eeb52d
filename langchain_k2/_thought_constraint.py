r"""Constraints after the thought, per family: what a forced call or a JSON answer becomes.

In: a reasoning family's `PromptFormat` and the call's `FormatSettings` (effort, call
form), the generation parameters (a JSON-mode / structured-output grammar, if any) and
the tools a forced ``tool_choice`` allows. Out: the parameters with a ``thought`` grammar
(`langchain_k2.backends._thought.after_thought`): the reasoning free up to the effort's close
tag, then the constrained part in the family's own syntax (issue 21 item 4):

- K2-V2 / K2-Think-V2 forced call: ``<tool_call>\n`` + the call's JSON + ``\n</tool_call>``;
- K2-V3 forced call, ``json`` form: ``<ifm|tool_calls>\n<ifm|tool_call>`` + the JSON +
  ``</ifm|tool_call>\n</ifm|tool_calls>``; ``xml`` / ``xml_typed``: a GBNF grammar
  (`xml_call_gbnf`) fixing the markers, the tool's name and its argument keys; values
  (and types) are free text up to their close tag and are typed and validated after;
- JSON mode and ``with_structured_output``: the JSON grammar after the thought.

K2-Chat (no reasoning) and a prompt that does not end inside the reasoning (a prefill)
are left unchanged. Each engine sends the ``thought`` grammar its own way (see
``docs/structured-output.md``).

Example:
    >>> from langchain_k2.formats import get_format
    >>> from langchain_k2.backends._base import GenerationParams
    >>> fmt = get_format("k2-v2")
    >>> tools = [{"name": "f", "parameters": {"type": "object", "properties": {}}}]
    >>> params = constrain_after_thought(fmt, fmt.settings("low"), GenerationParams(), tools)
    >>> spec = params.grammar.value
    >>> spec.close, spec.lead, spec.tail
    ('</think_faster>', '<tool_call>\n', '\n</tool_call>')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from langchain_k2._tool_schema import function_of
from langchain_k2.backends._base import GenerationParams, Grammar
from langchain_k2.backends._thought import after_thought, gbnf_literal, until_rules
from langchain_k2.formats._base import FormatSettings, PromptFormat
from langchain_k2.formats._k2_v3 import TAGS as V3_TAGS
from langchain_k2.formats._k2_v3 import K2V3Format

__all__ = ["close_tag", "constrain_after_thought", "xml_call_gbnf"]


def close_tag(fmt: PromptFormat, effort: str) -> str:
    """The close tag of ``effort``'s reasoning in ``fmt``'s family.

    >>> from langchain_k2.formats import get_format
    >>> close_tag(get_format("k2-v3"), "medium"), close_tag(get_format("k2-think-v2"), "high")
    ('</ifm|think_fast>', '</think>')
    """
    if isinstance(fmt, K2V3Format):
        return f"</{V3_TAGS[effort]}>"
    from langchain_k2.formats._k2_v2 import TAGS

    return f"</{TAGS[effort]}>"


def xml_call_gbnf(tools: Sequence[Mapping[str, Any]], *, typed: bool) -> str:
    r"""GBNF for one K2-V3 XML call block of one of ``tools`` (``typed``: ``xml_typed``).

    The markers, the tool's name and its declared argument keys are fixed; a value (and a
    type) is any text up to its close tag. A tool declaring no properties takes any key.

    Example:
        >>> print(xml_call_gbnf([{"name": "f", "parameters": {"properties": {"a": {}}}}],
        ...                     typed=False).splitlines()[1])
        k2-tool-0 ::= "f\n" k2-tool-0-arg*
    """
    lines = []
    names = []
    for index, tool in enumerate(tools):
        fn = function_of(tool)
        rule = f"k2-tool-{index}"
        names.append(rule)
        properties = (fn.get("parameters") or {}).get("properties")
        keys = (
            " | ".join(gbnf_literal(str(k)) for k in properties)
            if isinstance(properties, Mapping) and properties
            else "k2-key-0"
        )
        typed_part = ' "<ifm|arg_type>" k2-type-0 "\\n"' if typed else ""
        lines.append(f"{rule} ::= {gbnf_literal(str(fn['name']) + chr(10))} {rule}-arg*")
        lines.append(
            f'{rule}-arg ::= "<ifm|arg_key>" ({keys}) "</ifm|arg_key>\\n"{typed_part}'
            ' "<ifm|arg_value>" k2-value-0 "\\n"'
        )
    head = f'root ::= "<ifm|tool_call>" ({" | ".join(names)}) "</ifm|tool_call>"'
    rules = [head, *lines]
    rules += until_rules("</ifm|arg_value>", "k2-value")
    rules += _key_rules()
    if typed:
        rules += until_rules("</ifm|arg_type>", "k2-type")
    return "\n".join(rules)


def _key_rules() -> list[str]:
    """A free key: any text without ``<`` (keys are names), up to ``</ifm|arg_key>``."""
    return ["k2-key-0 ::= [^<\\n]+"]


def _call_part(
    fmt: PromptFormat, settings: FormatSettings, tools: Sequence[Mapping[str, Any]]
) -> tuple[Grammar, str, str]:
    """The constrained call, and the literal text before and after it."""
    from langchain_k2._call_grammar import call_grammar

    if not isinstance(fmt, K2V3Format):
        return call_grammar(tools), fmt.tool_call_open + "\n", "\n" + fmt.tool_call_close
    form = settings.tool_call_format or "xml"
    group_open, group_close = fmt.tool_call_open + "\n", "\n" + fmt.tool_call_close
    if form == "json":
        lead, tail = group_open + "<ifm|tool_call>", "</ifm|tool_call>" + group_close
        return call_grammar(tools), lead, tail
    return Grammar("gbnf", xml_call_gbnf(tools, typed=form == "xml_typed")), group_open, group_close


def constrain_after_thought(
    fmt: PromptFormat,
    settings: FormatSettings,
    params: GenerationParams,
    forced_tools: Sequence[Mapping[str, Any]] = (),
) -> GenerationParams:
    """``params`` with the constraint placed after the reasoning, where the family reasons.

    A JSON or GBNF grammar already in ``params`` (JSON mode, structured output, a user's
    ``grammar=``) follows the thought; otherwise ``forced_tools`` (a forced
    ``tool_choice``'s tools, empty when not forced or not to be constrained) become a
    call grammar in the family's syntax. A regex grammar is left as given.
    """
    if not fmt.reasoning_efforts or not settings.opened or settings.effort is None:
        return params
    close = close_tag(fmt, settings.effort)
    grammar = params.grammar
    if grammar is not None:
        if grammar.kind not in {"json", "gbnf"}:
            return params
        return replace(params, grammar=after_thought(grammar, close))
    if not forced_tools:
        return params
    then, lead, tail = _call_part(fmt, settings, forced_tools)
    return replace(params, grammar=after_thought(then, close, lead=lead, tail=tail))
