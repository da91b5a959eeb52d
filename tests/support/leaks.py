"""Where a secret could surface: the places the leak tests search for it.

In: a ChatK2, an exception, or the callbacks of a run. Out: text to search. Shared by
tests/unit/test_secrets.py (tokens), test_url_credentials.py (URL credentials) and
test_secret_leaks.py (the whole chain on every call path).
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, dumps
from langchain_core.tools import tool

from langchain_k2 import ChatK2


class Recorder(BaseCallbackHandler):
    """Keeps the repr of every callback payload."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _keep(self, *args: Any, **kwargs: Any) -> None:
        self.seen.append(repr(args) + repr(kwargs))

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self._keep(*args, **kwargs)

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self._keep(*args, **kwargs)

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self._keep(*args, **kwargs)

    def on_llm_error(self, *args: Any, **kwargs: Any) -> None:
        self._keep(*args, **kwargs)


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: its chain's messages, reprs and the formatted traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return q


def representations(llm: ChatK2) -> dict[str, str]:
    """Every way the model shows itself: reprs, dumps, traced params, backend, a bound copy."""
    return {
        "repr": repr(llm),
        "str": str(llm),
        "model_dump_json": llm.model_dump_json(),
        "model_dump": repr(llm.model_dump()),
        "model_dump(json)": json.dumps(llm.model_dump(mode="json")),
        "dumps": dumps(llm),
        "dumpd": json.dumps(dumpd(llm)),
        "ls_params": repr(llm._get_ls_params()),
        "identifying_params": repr(llm._identifying_params),
        "backend": repr(llm._get_backend()),
        "bound": repr(llm.bind_tools([lookup])),
    }
