"""A small K2-style tokenizer, built offline for tests: no Hub, a few kilobytes.

In: a directory. Out: that directory holding ``tokenizer.json`` (a byte-level BPE trained
here on a few paragraphs, K2-Chat's markers and tool tags added as special tokens) and
``tokenizer_config.json`` (``PreTrainedTokenizerFast`` with a K2-style ``chat_template``).

``transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)`` loads
it; the loopback TGI server takes the JSON file (``--tokenizer DIR/tokenizer.json``).
Only the ``tokenizers`` library is needed to build it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from langchain_k2._prompt import DEFAULT_FORMAT

K2_SPECIAL_TOKENS: tuple[str, ...] = DEFAULT_FORMAT.special_markers
"""K2-Chat's turn markers and tool tags: each one special token."""

K2_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] }}<|endofsystemprompt|>"
    "{%- elif message['role'] == 'user' -%}<|beginofuser|>{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}<|beginofsystem|>{{ message['content'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|beginofsystem|>{%- endif -%}"
)
"""K2-Chat's format as a Jinja chat template (the card's multi-turn template)."""

TRAINING_TEXT = """\
K2 is a large language model trained by LLM360. It answers questions, writes code and
calls functions when tools are available. The weather in Paris is mild in spring; the
capital of France is Paris, and the capital of Japan is Tokyo. How many kilometers is
26.2 miles? About 42.2 kilometers, the length of a marathon.
You are a helpful assistant. Hello, who are you? I am K2, a language model. What can you
do? I can summarize texts, translate, reason step by step, and use the tools you give me.
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
{"news": [{"title": "A great news headline"}], "temperature": 21, "ok": true}
Please also summarize texts wrapped between tool responses in bullet points. For example:
Fruits: - Apple - Pear. The quick brown fox jumps over the lazy dog 0123456789 times.
"""


def build_k2_tokenizer(
    directory: str | Path,
    *,
    special_tokens: Sequence[str] = K2_SPECIAL_TOKENS,
    chat_template: str | None = K2_CHAT_TEMPLATE,
    bos_token: str | None = None,
    vocab_size: int = 600,
) -> Path:
    """Train and save a K2-style tokenizer into ``directory``; return the directory.

    Args:
        directory: where ``tokenizer.json`` and ``tokenizer_config.json`` go (created).
        special_tokens: strings added as special tokens (leave one out to test warnings).
        chat_template: the Jinja template saved with it; ``None`` saves none.
        bos_token: a BOS token to declare (added as a special token too).
        vocab_size: BPE vocabulary size (the byte alphabet is always included).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    specials = list(dict.fromkeys([*special_tokens, *([bos_token] if bos_token else [])]))
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(path / "tokenizer.json"))

    eos = "<|endoftext|>" if "<|endoftext|>" in specials else None
    config: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 8192,
        "bos_token": bos_token,
        "eos_token": eos,
        "clean_up_tokenization_spaces": False,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path
