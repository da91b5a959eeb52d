"""Turn setup: one call's messages, options and the engine's limits become a `Turn`.

In: the chat model's `langchain_k2._settings.Settings` (format, system prompt, retries,
context window...), the call's parsed `langchain_k2._call_options.CallOptions` (tools,
``tool_choice``, grammar, bound options), its messages and stop strings, the backend's
`BackendInfo` and engine name, and a token counter. Out: a `langchain_k2._turn.Turn`
holding the fitted prompt, the generation parameters and everything the turn must
enforce (forced call, grammar or its fallback, repair budget, stop strings, refused
tools). A JSON-schema grammar the call carries is checked and fitted to the
engine (`fit_grammar`). Pure apart from the counter: no request is sent here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from langchain_core.messages import BaseMessage

from langchain_k2._bind_options import apply_bound_options
from langchain_k2._call_options import UNSET, CallOptions
from langchain_k2._context import window_from_info
from langchain_k2._driver import Count, fitted_prompt, server_stops
from langchain_k2._grammar_fit import fit_grammar
from langchain_k2._settings import Settings
from langchain_k2._stops import sent_stops
from langchain_k2._thought_constraint import constrain_after_thought
from langchain_k2._tool_binding import resolve_tool_choice, unoffered_reason
from langchain_k2._turn import Turn, TurnConfig
from langchain_k2.backends._base import BackendInfo, GenerationParams
from langchain_k2.formats._base import FormatSettings, PromptFormat
from langchain_k2.formats._selection import call_settings

__all__ = ["format_settings", "prepare_turn"]


def format_settings(
    settings: Settings, options: CallOptions, messages: Sequence[BaseMessage]
) -> FormatSettings:
    """The format's settings of a call: its options over the fields, checked."""
    fmt = settings.fmt
    return call_settings(
        fmt,
        settings.reasoning_effort
        if options.reasoning_effort is UNSET
        else options.reasoning_effort,
        settings.tool_call_format
        if options.tool_call_format is UNSET
        else options.tool_call_format,
        ends_in_reasoning=fmt.ends_in_reasoning(messages),
    )


def prepare_turn(
    settings: Settings,
    options: CallOptions,
    messages: list[BaseMessage],
    stop: list[str] | None,
    *,
    info: BackendInfo,
    engine: str,
    count: Count | None,
) -> Turn:
    """The turn a chat model with ``settings`` runs for ``messages`` under ``options``.

    ``engine``: the backend's name (``vllm``...). ``count=None``: raise
    `langchain_k2._driver.MustCount` rather than count tokens.
    """
    sampling = options.sampling.over(settings.sampling)
    params = GenerationParams(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        repetition_penalty=sampling.repetition_penalty,
        seed=sampling.seed,
        stop=sent_stops(settings.stop, stop),
        grammar=options.grammar,
    )
    tools = options.tools
    mode, allowed = resolve_tool_choice(options.tool_choice, tools)
    refusal = unoffered_reason(options.tool_choice, tools)
    fmt: PromptFormat = settings.fmt
    messages, params, one_call = apply_bound_options(
        messages,
        params,
        parallel_tool_calls=options.parallel_tool_calls,
        response_format=options.response_format,
        tools_offered=bool(tools) and mode != "none",
    )
    chosen = format_settings(settings, options, messages)
    # A format whose turn opens the reasoning cannot end the prompt in the open tag: the
    # model thinks first (issue 21 item 4); the call is constrained after the thought
    # (`constrain_after_thought`) and checked on the output.
    forced = mode in {"any", "tool"} and fmt.forces_calls

    def render(conversation: Sequence[BaseMessage]) -> str:
        return fmt.render_prompt(
            conversation,
            tools=tools if mode != "none" else None,
            default_system=settings.system_prompt,
            force_tool_call=forced,
            neutralize_markers=settings.neutralize_markers,
            settings=chosen,
        )

    limits = window_from_info(info.max_input_tokens, info.max_total_tokens, settings.context_window)
    params = replace(params, grammar=fit_grammar(params.grammar, engine))  # checked, capped
    prompt = fitted_prompt(
        messages,
        render,
        limits,
        params.max_new_tokens,
        trim=settings.trim_history,
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
        constrain_call = mode in {"any", "tool"} and options.tool_grammar
        params = constrain_after_thought(
            fmt, chosen, params, allowed if constrain_call and refusal is None else ()
        )
    repairs = options.max_tool_call_retries
    return Turn(
        TurnConfig(
            prompt=prompt,
            params=params,
            fmt=fmt,
            tools=allowed,  # empty for tool_choice="none"
            forced=forced,
            use_grammar=use_grammar and params.grammar is None and options.tool_grammar,
            grammar_fallback=fallback,
            max_repairs=(settings.max_tool_call_retries if repairs is None else repairs)
            if refusal is None
            else 0,
            refusal=refusal,
            user_stops=user_stops,
            # The served model when known, else the user's model=, else the family's.
            model_name=info.model_id
            or (fmt.model_id if settings.model_name is None else settings.model_name),
            engine=engine,
            emit_chunks=options.streaming,
            window=limits.window,
            max_input_tokens=limits.max_input_tokens,
            indexed_text=settings.indexed_text,
            one_call=one_call,
            settings=chosen,
        )
    )
