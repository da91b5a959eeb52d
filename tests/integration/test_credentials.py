"""Issue 9 / spec section 5: only a token the user configured is sent to the endpoint.

`hf auth login` saves a token under `HF_HOME`, and huggingface_hub attaches it to every request,
to whatever host `endpoint_url` names. ChatK2 must not: with `hf_token` unset and no `HF_TOKEN`,
no `Authorization` header reaches the server, on invoke, stream, ainvoke and astream (and on
the `/info` request). A configured token (the field, or `HF_TOKEN`) is sent as `Bearer <token>`,
never the one on disk.

huggingface_hub reads `HF_HOME` (and so where the token file is) when it is imported, so each
case runs in a CHILD PROCESS whose environment holds only what the case sets. The child also
makes one plain `InferenceClient` call first: it does carry the disk token, which shows the
threat is real here and the test is not vacuous.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_engine import FakeEngine
from tests.support.fake_engine.client import reply, special, tokens_of

REPO_ROOT = Path(__file__).resolve().parents[2]
DISK_TOKEN = "hf_disk_token_from_hf_auth_login"
FIELD_TOKEN = "hf_configured_on_the_field"
ENV_TOKEN = "hf_configured_in_HF_TOKEN"
LEGACY_TOKEN = "hf_legacy_HUGGING_FACE_HUB_TOKEN"
MODES = ("invoke", "stream", "ainvoke", "astream")
# Every variable through which huggingface_hub could find a token other than the disk file.
TOKEN_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_OIDC_RESOURCE",
    "HF_OIDC_ID_TOKEN",
    "HUGGINGFACE_CO_STAGING",
    "HF_HUB_OFFLINE",
)

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import huggingface_hub
    from huggingface_hub import InferenceClient
    from langchain_k2 import ChatK2

    url, field_token = sys.argv[1], sys.argv[2] or None
    out = {"hub_sees": huggingface_hub.get_token()}
    # Control: huggingface_hub on its own attaches whatever token it finds.
    InferenceClient(base_url=url).text_generation("control", max_new_tokens=4)
    token = {"hf_token": field_token} if field_token else {}  # unset: the env may fill it
    llm = ChatK2(endpoint_url=url, max_retries=0, timeout=20, **token)
    out["invoke"] = llm.invoke("invoke").content
    out["stream"] = "".join(str(c.content) for c in llm.stream("stream"))

    async def main():
        out["ainvoke"] = (await llm.ainvoke("ainvoke")).content
        out["astream"] = "".join([str(c.content) async for c in llm.astream("astream")])

    asyncio.run(main())
    print(json.dumps(out))
    """
)


def run_child(
    tgi: FakeEngine, hf_home: Path, *, field: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    child_env = {k: v for k, v in os.environ.items() if k not in TOKEN_ENV}
    child_env.update(env or {})
    child_env["HF_HOME"] = str(hf_home)
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, tgi.url, field or ""],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def auth_by_prompt(tgi: FakeEngine) -> dict[str, str | None]:
    """The Authorization header of each generation request, keyed by its prompt's text."""
    sent: dict[str, str | None] = {}
    for record in tgi.requests("/"):
        inputs = record["body"]["inputs"]  # "control", or K2's prompt around the mode's name
        key = inputs.removeprefix("<|beginofuser|>").removesuffix("<|beginofsystem|>")
        assert key not in sent
        sent[key] = record["headers"].get("authorization")
    assert sorted(sent) == sorted(["control", *MODES])
    return sent


@pytest.fixture
def hf_home(tmp_path: Path) -> Path:
    """An HF_HOME as `hf auth login` leaves it: the token in `$HF_HOME/token`."""
    home = tmp_path / "hf_home"
    home.mkdir()
    (home / "token").write_text(DISK_TOKEN)
    return home


@pytest.fixture
def server(tgi: FakeEngine) -> FakeEngine:
    tgi.set_default(reply(tokens=tokens_of("ok", special("<|endoftext|>"))))
    return tgi


@pytest.mark.parametrize(
    "env",
    [{}, {"HUGGING_FACE_HUB_TOKEN": LEGACY_TOKEN}],
    ids=["disk-token", "disk-and-legacy-env-token"],
)
def test_a_token_chatk2_was_not_given_is_never_sent(
    server: FakeEngine, hf_home: Path, env: dict[str, str]
) -> None:
    result = run_child(server, hf_home, env=env)
    implicit = env.get("HUGGING_FACE_HUB_TOKEN", DISK_TOKEN)
    assert result["hub_sees"] == implicit  # huggingface_hub found a token...
    assert [result[m] for m in MODES] == ["ok"] * 4
    sent = auth_by_prompt(server)
    assert sent["control"] == f"Bearer {implicit}"  # ...and sends it on its own...
    for mode in MODES:  # ...but not through ChatK2
        assert sent[mode] is None, mode
    info = [r["headers"] for r in server.requests("/info")]
    assert info
    assert all("authorization" not in headers for headers in info)


@pytest.mark.parametrize("where", ["field", "HF_TOKEN"])
def test_a_configured_token_is_sent_as_bearer_not_the_disk_one(
    server: FakeEngine, hf_home: Path, where: str
) -> None:
    if where == "field":
        result, expected = run_child(server, hf_home, field=FIELD_TOKEN), FIELD_TOKEN
    else:
        result, expected = run_child(server, hf_home, env={"HF_TOKEN": ENV_TOKEN}), ENV_TOKEN
    assert [result[m] for m in MODES] == ["ok"] * 4
    sent = auth_by_prompt(server)
    for mode in MODES:
        assert sent[mode] == f"Bearer {expected}", mode
    assert all(
        r["headers"].get("authorization") == f"Bearer {expected}" for r in server.requests("/info")
    )
