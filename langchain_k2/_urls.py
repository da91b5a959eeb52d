"""Credentials written into an endpoint URL: split off for the request, redacted for display.

In: an endpoint URL, possibly ``http://user:password@host:port/path``. Out: the URL without
its userinfo (what requests are sent to, so httpx's request log and every error name it
bare), the ``Authorization: Basic`` value the userinfo stands for (kept as a ``SecretStr``),
and a redacted form (``http://***@host:port``) for reprs, dumps, metadata and messages.

Example:
    >>> bare, auth = split_credentials("http://k2:s3cret@10.0.0.5:8080/")
    >>> bare, auth is not None, redact_url("http://k2:s3cret@10.0.0.5:8080/")
    ('http://10.0.0.5:8080/', True, 'http://***@10.0.0.5:8080/')
    >>> split_credentials("http://10.0.0.5:8080")
    ('http://10.0.0.5:8080', None)
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr

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


__all__ = ["REDACTED", "has_credentials", "redact", "redact_url", "split_credentials"]
