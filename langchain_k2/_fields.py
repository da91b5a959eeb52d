"""ChatK2's constructor fields checked before pydantic sees them, where pydantic would leak.

In: the keyword arguments given to ``ChatK2(...)`` (names are resolved by
`langchain_k2._arguments.constructor_arguments` first). Out: the same arguments with
``hf_token`` (or ``api_key``) cleaned into a ``SecretStr``, ``endpoint_url`` checked for its
shape and ``stop`` given as one string turned into a list of one; or a ``K2ConfigError``
that names the field and never shows a secret. ``hf_token=None`` counts as not given
(``HF_TOKEN`` is read, as ``load(dumpd(llm))`` needs); ``hf_token=""`` sends no token.

pydantic's own errors print the offending input whole (``input_value=...``): a token of the
wrong type, or a list of URLs holding ``None`` next to ``https://user:password@host``, would
be echoed into the message. These checks run first and show types and redacted URLs only.

Example:
    >>> clean_token("  hf_abc  ").get_secret_value()
    'hf_abc'
    >>> clean_token("hf_aébc")
    Traceback (most recent call last):
    ...
    langchain_k2.errors.K2ConfigError: hf_token holds a character that cannot be sent in an \
HTTP header (a control or non-ASCII character, at position 5 of 7): check how the token \
was read (it is not shown here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from langchain_k2._arguments import constructor_arguments
from langchain_k2._urls import check_endpoint_url
from langchain_k2.errors import K2ConfigError

__all__ = ["checked_arguments", "clean_token", "token_from_env"]


def _legal(character: str) -> bool:
    """Whether ``character`` may stand inside a header value (visible ASCII or a space)."""
    return " " <= character <= "~"


def clean_token(value: Any, name: str = "hf_token") -> SecretStr | None:
    """The bearer token as sent: surrounding whitespace stripped, every character legal.

    ``None`` and an empty (or all-whitespace) token mean no token.

    Raises:
        K2ConfigError: not a string, or a character no HTTP header may carry; the message
            names the field and the character's position, never the token.
    """
    if value is None:
        return None
    if isinstance(value, SecretStr):
        text = value.get_secret_value()
    elif isinstance(value, str):
        text = value
    else:
        raise K2ConfigError(
            f"{name} must be a string (or a pydantic SecretStr), got a "
            f"{type(value).__name__}: pass the token's text."
        )
    text = text.strip()
    if not text:
        return None
    for position, character in enumerate(text, start=1):
        if not _legal(character):
            raise K2ConfigError(
                f"{name} holds a character that cannot be sent in an HTTP header (a control "
                f"or non-ASCII character, at position {position} of {len(text)}): check how "
                "the token was read (it is not shown here)."
            )
    return SecretStr(text)


def token_from_env() -> SecretStr | None:
    """``HF_TOKEN`` from the environment, cleaned like a token given as ``hf_token``."""
    return clean_token(os.environ.get("HF_TOKEN"), "the environment variable HF_TOKEN")


def _stop(value: Any) -> Any:
    """``stop`` as a list: a string is one stop string."""
    return [value] if isinstance(value, str) else value


def checked_arguments(model: type[BaseModel], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``model(...)``: names resolved, the fields pydantic would echo checked.

    Raises:
        K2ConfigError: an unknown argument (`constructor_arguments`), or one of the fields
            above of the wrong shape.
    """
    values = constructor_arguments(model, kwargs)
    for name in ("hf_token", "api_key"):
        if name in values and values[name] is None:
            # None is "not given": HF_TOKEN is read, as ``load(dumpd(llm))`` needs (it passes
            # None for the secret unless ``secrets_from_env``). hf_token="" sends none.
            del values[name]
        elif name in values:
            values[name] = clean_token(values[name], name)
    if "endpoint_url" in values:
        values["endpoint_url"] = check_endpoint_url(values["endpoint_url"])
    for name in ("stop", "stop_sequences"):
        if name in values:
            values[name] = _stop(values[name])
    return values
