r"""Credentials written into an endpoint URL: split off for the request, redacted for display.

In: an endpoint URL, possibly ``http://user:password@host:port/path``. Out: the URL without
its userinfo (what requests are sent to, so httpx's request log and every error name it
bare), the ``Authorization: Basic`` value the userinfo stands for (kept as a ``SecretStr``),
and a redacted form (``http://***@host:port``) for reprs, dumps, metadata and messages.
`redact_text` and `scrub_exception` take secrets (a token, a URL's credentials) out of text
that came from elsewhere (a transport exception's message) before it is shown, and
`describe_endpoint` names a mis-shaped ``endpoint_url`` without showing any password.

Example:
    >>> bare, auth = split_credentials("http://k2:s3cret@10.0.0.5:8080/")
    >>> bare, auth is not None, redact_url("http://k2:s3cret@10.0.0.5:8080/")
    ('http://10.0.0.5:8080/', True, 'http://***@10.0.0.5:8080/')
    >>> split_credentials("http://10.0.0.5:8080")
    ('http://10.0.0.5:8080', None)
    >>> redact_text("Illegal header value b'Bearer hf_abc\\n'", ["hf_abc"])
    "Illegal header value b'Bearer ***'"
    >>> describe_endpoint(["http://k2:s3cret@h:1", None])
    "a list holding ['http://***@h:1', None]"
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr

from langchain_k2.errors import K2ConfigError, K2Error

REDACTED = "***"
"""What stands for a URL's userinfo wherever the URL is shown."""


def _userinfo(url: str) -> tuple[str, str] | None:
    """``(userinfo, host part)`` of ``url``'s authority, or ``None`` without userinfo."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = url.partition("://")[2].partition("/")[0]
    if "@" not in netloc:
        return None
    userinfo, _, host = netloc.rpartition("@")
    return userinfo, host


def _with_netloc(url: str, netloc: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        scheme, _, rest = url.partition("://")
        tail = rest.partition("/")
        return f"{scheme}://{netloc}{tail[1]}{tail[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def has_credentials(value: str | Sequence[str] | None) -> bool:
    """Whether ``value`` (one URL or several) carries userinfo."""
    if value is None:
        return False
    urls = [value] if isinstance(value, str) else list(value)
    return any(isinstance(url, str) and _userinfo(url) is not None for url in urls)


def redact_url(url: str) -> str:
    """``url`` with its userinfo (user name and password) replaced by ``***``."""
    found = _userinfo(url)
    return url if found is None else _with_netloc(url, f"{REDACTED}@{found[1]}")


def redact(value: str | list[str] | None) -> str | list[str] | None:
    """`redact_url` for ``endpoint_url``'s shapes (one URL, a list of them, or ``None``)."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [redact_url(url) if isinstance(url, str) else url for url in value]
    return value


def split_credentials(url: str) -> tuple[str, SecretStr | None]:
    """``url`` without userinfo, and the ``Authorization`` header value it stood for.

    The user name and password are percent-decoded, as browsers and httpx do
    (``p%40ss`` is the password ``p@ss``).
    """
    found = _userinfo(url)
    if found is None:
        return url, None
    userinfo, host = found
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    auth = SecretStr("Basic " + base64.b64encode(pair).decode("ascii"))
    return _with_netloc(url, host), auth


_AUTH_VALUE = re.compile(r"\b(Bearer|Basic)\s+[^\s'\",;)\]}]+")
"""An ``Authorization`` value written out in some text (``Bearer <token>``)."""


def redact_text(text: str, secrets: Iterable[str], *, headers: bool = True) -> str:
    r"""``text`` with every ``secrets`` string (and ``Bearer``/``Basic`` value) as ``***``.

    A secret is also looked for as Python writes it inside a ``repr`` (escaped), so a token
    with a stray newline, shown by httpx as ``b'Bearer tok\\n'``, is caught too.
    ``headers=False`` keeps text that only looks like a header value (K2's own messages
    say "the bearer token").
    """
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, secret.strip(), repr(secret)[1:-1]}:
            if len(form) >= 4:
                text = text.replace(form, REDACTED)
    return _AUTH_VALUE.sub(rf"\1 {REDACTED}", text) if headers else text


def _scrub_value(value: Any, secrets: Sequence[str], headers: bool) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets, headers=headers)
    if isinstance(value, bytes):
        return redact_text(value.decode("latin-1"), secrets, headers=headers).encode("latin-1")
    return value


def scrub_exception(exc: BaseException, secrets: Iterable[str]) -> None:
    """Redact ``secrets`` in place from the messages of ``exc`` and its whole chain.

    The exception raised for a transport failure keeps the transport's own exception as
    its cause; that one's text may hold the request's ``Authorization`` header (h11 quotes
    an illegal header value whole). Its ``args`` (and a ``UnicodeError``'s ``object``) are
    rewritten, so ``str``, ``repr`` and a printed traceback show ``***`` instead. In K2's
    own errors (built from a server's answer) only the secrets themselves are redacted.
    """
    found = list(secrets)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            headers = not isinstance(current, K2Error)
            current.args = tuple(_scrub_value(arg, found, headers) for arg in current.args)
            if isinstance(current, UnicodeError) and hasattr(current, "object"):
                current.object = _scrub_value(current.object, found, headers)
        except (AttributeError, TypeError):  # an exception whose args cannot be set
            pass
        current = current.__cause__ or current.__context__


def describe_endpoint(value: Any) -> str:
    """What a mis-shaped ``endpoint_url`` holds, with every URL in it redacted."""
    if isinstance(value, (list, tuple)):
        shown = [redact_url(item) if isinstance(item, str) else _kind(item) for item in value]
        return f"a {type(value).__name__} holding {shown!r}"
    return f"a {type(value).__name__}"


def _kind(item: Any) -> Any:
    return None if item is None else f"<{type(item).__name__}>"


def check_endpoint_url(value: Any) -> str | list[str] | None:
    """``endpoint_url`` as ChatK2 keeps it, checked before pydantic would echo it whole.

    Raises:
        K2ConfigError: ``value`` is not a URL string, a non-empty list of them, or ``None``;
            the message shows the URLs redacted and other items by their type only.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(u, str) for u in value):
        return list(value)
    hint = ""
    if isinstance(value, (list, tuple)) and any(item is None for item in value):
        hint = " (None in a list is often an unset environment variable)"
    raise K2ConfigError(
        f"endpoint_url must be a URL string or a non-empty list of URL strings, got "
        f"{describe_endpoint(value)}{hint}: pass e.g. 'http://127.0.0.1:8080' or "
        "['http://10.0.0.1:8080', 'http://10.0.0.2:8080']."
    )


__all__ = [
    "REDACTED",
    "check_endpoint_url",
    "describe_endpoint",
    "has_credentials",
    "redact",
    "redact_text",
    "redact_url",
    "scrub_exception",
    "split_credentials",
]
