"""Turn setup: one call's messages, options and the engine's limits become a `Turn`.

In: the chat model (its fields: format, system prompt, retries, context window...), the
messages, the call's stop strings and options (tools, ``tool_choice``, grammar, bound
options), the backend's `BackendInfo` and a token counter. Out: a `langchain_k2._turn.Turn`
holding the fitted prompt, the generation parameters and everything the turn must enforce
(forced call, grammar or its fallback, repair budget, stop strings, refused tools); a
JSON-schema grammar the call carries is checked and fitted to the engine (`fit_grammar`).
Pure apart from the counter: no request is sent here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_k2._arguments import call_params, max_repairs
from langchain_k2._bind_options import apply_bound_options
from langchain_k2._context import window_from_info
from langchain_k2._driver import Count, fitted_prompt, server_stops
from langchain_k2._grammar_fit import fit_grammar
from langchain_k2._thought_constraint import constrain_after_thought
from langchain_k2._tool_binding import bound_tools, resolve_tool_choice, unoffered_reason
from langchain_k2._turn import Turn, TurnConfig
from langchain_k2.backends._base import BackendInfo
from langchain_k2.formats._base import PromptFormat
from langchain_k2.formats._selection import call_settings

__all__ = ["prepare_turn"]


def prepare_turn(
    model: Any,
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
    *,
    info: BackendInfo,
    count: Count | None,
    streaming: bool = False,
) -> Turn:
    """The turn ``model`` (a ``ChatK2``) runs for ``messages``.

    ``count=None``: raise `langchain_k2._driver.MustCount` rather than count tokens.
    """
    params = call_params(model, stop, kwargs)
    tools = bound_tools(kwargs.get("tools"))  # bind(tools=[...]) as bind_tools takes them
    mode, allowed = resolve_tool_choice(kwargs.get("tool_choice"), tools)
    refusal = unoffered_reason(kwargs.get("tool_choice"), tools)
    fmt: PromptFormat = model.format
    messages, params, one_call = apply_bound_options(
        kwargs, messages, params, tools_offered=bool(tools) and mode != "none"
    )
    settings = call_settings(
        fmt,
        model.reasoning_effort,
        model.tool_call_format,
        kwargs,
        ends_in_reasoning=fmt.ends_in_reasoning(messages),
    )
    # A format whose turn opens the reasoning cannot end the prompt in the open tag: the
    # model thinks first (issue 21 item 4); the call is constrained after the thought
    # (`constrain_after_thought`) and checked on the output.
    forced = mode in {"any", "tool"} and fmt.forces_calls

    def render(conversation: Sequence[BaseMessage]) -> str:
        return fmt.render_prompt(
            conversation,
            tools=tools if mode != "none" else None,
            default_system=model.system_prompt,
            force_tool_call=forced,
            neutralize_markers=model.neutralize_markers,
            settings=settings,
        )

    limits = window_from_info(info.max_input_tokens, info.max_total_tokens, model.context_window)
    engine = model._get_backend().name
    params = replace(params, grammar=fit_grammar(params.grammar, engine))  # checked, capped
    prompt = fitted_prompt(
        messages,
        render,
        limits,
        params.max_new_tokens,
        trim=model.trim_history,
        count=count,
        engine=engine,
    )
    user_stops = params.stop
    stops = server_stops(user_stops, fmt.stop_markers, info.max_stop_sequences)
    params = replace(
        params,
        stop=stops,
        stop_token_ids=fmt.stop_token_ids,
        stop_markers=fmt.stop_markers,
        bos_in_prompt=fmt.bos_in_prompt,
    )
    use_grammar = info.supports_grammar is not False
    fallback = params.grammar is not None and not use_grammar
    if fallback:
        params = params.without_grammar()
    elif use_grammar:  # a reasoning family: the constraint comes after the thought
        constrain_call = mode in {"any", "tool"} and kwargs.get("tool_grammar") is not False
        params = constrain_after_thought(
            fmt, settings, params, allowed if constrain_call and refusal is None else ()
        )
    return Turn(
        TurnConfig(
            prompt=prompt,
            params=params,
            fmt=fmt,
            tools=allowed,  # empty for tool_choice="none"
            forced=forced,
            use_grammar=use_grammar
            and params.grammar is None
            and kwargs.get("tool_grammar") is not False,
            grammar_fallback=fallback,
            max_repairs=max_repairs(kwargs, model.max_tool_call_retries) if refusal is None else 0,
            refusal=refusal,
            user_stops=user_stops,
            # The served model when known, else the user's model=, else the family's.
            model_name=info.model_id
            or (model.model_name if "model_name" in model.model_fields_set else fmt.model_id),
            engine=engine,
            emit_chunks=streaming,
            window=limits.window,
            max_input_tokens=limits.max_input_tokens,
            indexed_text=model.output_version == "v1",
            one_call=one_call,
            settings=settings,
        )
    )
