"""A Llama-family decoder in Flax NNX, with a functional KV cache and scoring helpers.

The model is the Llama architecture as llama.cpp runs it: token embedding, ``n_layers``
pre-norm blocks (RMSNorm -> grouped-query attention with rotary embeddings -> residual,
RMSNorm -> SwiGLU MLP -> residual), a final RMSNorm and an output head that is either the
embedding matrix (tied, as in SmolLM2) or a separate matrix. :mod:`jaxpapers.nn.gguf` fills
it with the weights of a GGUF file; tests build tiny models from NumPy weights with
:func:`from_weights`.

Design choices (the architecture is fixed by the checkpoints; these are the free ones):

* **Stacked layers, one scan.** Every per-layer weight is one array with a leading
  ``n_layers`` axis and the blocks run under :func:`jax.lax.scan`, so a 30-layer model
  compiles one block, in seconds. Weights are stored ``(in, out)`` (``x @ w``).
* **Rotary embeddings on adjacent pairs.** The rotation acts on the pairs
  ``(x[2i], x[2i+1])`` with angle ``pos * theta**(-2i/head_dim)`` (Meta's original layout,
  llama.cpp's "normal" rope mode). llama.cpp's converter permutes the rows of Hugging
  Face's ``q_proj``/``k_proj`` back to this layout when it writes a GGUF file, so GGUF
  weights are used as stored. (The "rotate half" layout on GGUF weights gives a perplexity
  orders of magnitude worse; ``tests/nn/test_gguf.py`` checks it.)
* **Grouped-query attention** without copying K/V: query head ``h`` reads KV head
  ``h // (n_heads // n_kv_heads)`` (the grouping of ``repeat_kv`` / llama.cpp).
* **Numerics.** Every matmul and einsum uses ``precision=HIGHEST`` (so CPU, GPU and TPU
  agree on float32 scores); RMSNorm statistics, attention softmax and logits are float32
  whatever the parameter dtype (``dtype`` sets the weights, activations and KV cache).
  Masked scores are the most negative float32 rather than ``-inf``, so a row with nothing
  to attend to stays finite.
* **KV cache** (:class:`KVCache`): a pytree of ``k``/``v`` of shape
  ``(n_layers, batch, max_len, n_kv_heads, head_dim)`` and the per-row ``lengths``.
  :func:`prefill` appends a right-padded chunk of tokens at each row's current length
  (scatter with ``mode="drop"``: the padding may run past ``max_len`` and is discarded, it
  never shifts valid entries); a key is visible to a query when its position is ``<=`` the
  query's, so stale or padded entries past a row's length are never read.
* **Jitted entry points** are :func:`jax.jit` functions of ``(graphdef, state, ...)`` from
  :func:`flax.nnx.split`; the high-level helpers split the model once per call.
* **Scoring** (:func:`score_continuations`): prompts are sorted by length, batched, padded
  to multiples of :data:`BUCKET` tokens (and the batch to ``batch_size`` rows), prefilled
  once in chunks of at most :data:`PREFILL_CHUNK` tokens (bounded attention memory), and
  every continuation is appended to the prefilled cache in one call (the cache is a value,
  so each continuation starts from the same prefix). The first continuation token is
  scored from the prompt's last logits. :func:`log_likelihood` is the naive cache-free
  full-sequence computation (attention memory grows with the square of the length) and
  serves as the reference in tests.
* :func:`generate` is greedy (argmax, ties to the lowest id), stops after emitting a stop
  id (which is not returned) or at ``max_seq_len`` total tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

PRECISION = jax.lax.Precision.HIGHEST
BUCKET = 64  # prompt lengths are padded to a multiple of this (few compiled shapes)
PREFILL_CHUNK = 512  # prefill processes at most this many tokens per call
_NEG = float(np.finfo(np.float32).min)
_LAYER_KEYS = ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture hyperparameters; ``head_dim = dim // n_heads``."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 2048
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.max_seq_len, int | np.integer) or self.max_seq_len < 1:
            raise ValueError(
                f"LlamaConfig.max_seq_len must be a positive int, got {self.max_seq_len!r}"
            )
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim = dim // n_heads must be even for rope, got {self.head_dim}"
            )
        if not self.rope_theta > 0 or not self.norm_eps > 0:
            raise ValueError(
                f"rope_theta and norm_eps must be > 0, got {self.rope_theta} and {self.norm_eps}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def param_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter (per-layer weights stacked, stored ``(in, out)``)."""
    c, hd = config, config.head_dim
    shapes = {
        "embed": (c.vocab_size, c.dim),
        "attn_norm": (c.n_layers, c.dim),
        "wq": (c.n_layers, c.dim, c.n_heads * hd),
        "wk": (c.n_layers, c.dim, c.n_kv_heads * hd),
        "wv": (c.n_layers, c.dim, c.n_kv_heads * hd),
        "wo": (c.n_layers, c.n_heads * hd, c.dim),
        "ffn_norm": (c.n_layers, c.dim),
        "w_gate": (c.n_layers, c.dim, c.hidden_dim),
        "w_up": (c.n_layers, c.dim, c.hidden_dim),
        "w_down": (c.n_layers, c.hidden_dim, c.dim),
        "final_norm": (c.dim,),
    }
    if not c.tie_embeddings:
        shapes["lm_head"] = (c.dim, c.vocab_size)
    return shapes


# --------------------------------------------------------------------------- pure layers


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """``x / sqrt(mean(x**2) + eps) * weight``, statistics in float32."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * weight.astype(jnp.float32)).astype(x.dtype)


def rope_angles(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin of ``pos * theta**(-2i/head_dim)``: ``positions[...]`` -> ``[..., head_dim/2]``."""
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate adjacent pairs of ``x[B, T, H, head_dim]`` by angles ``cos/sin[B, T, head_dim/2]``."""
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = jnp.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query attention.

    ``q[B, T, H, d]``, ``k, v[B, S, KV, d]`` with ``H % KV == 0``, ``mask[B, T, S]`` (True =
    may attend). Query head ``h`` uses KV head ``h // (H // KV)``. Returns ``[B, T, H, d]``.
    """
    b, t, h, d = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, h // kv, d)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, precision=PRECISION)
    scores = scores.astype(jnp.float32) / math.sqrt(d)
    scores = jnp.where(mask[:, None, None], scores, _NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v, precision=PRECISION)
    return out.reshape(b, t, h, d)


def _mm(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.matmul(x, w, precision=PRECISION)


# --------------------------------------------------------------------------- model


class KVCache(NamedTuple):
    """Per-layer keys/values ``[n_layers, batch, max_len, n_kv_heads, head_dim]`` and the
    number of valid positions of each row."""

    k: jax.Array
    v: jax.Array
    lengths: jax.Array  # [batch] int32

    @property
    def max_len(self) -> int:
        return int(self.k.shape[2])


def init_cache(
    config: LlamaConfig, batch: int, max_len: int, dtype: jnp.dtype = jnp.float32
) -> KVCache:
    """An empty cache for ``batch`` rows of at most ``max_len`` positions."""
    if batch < 1 or max_len < 1:
        raise ValueError(f"batch and max_len must be >= 1, got {batch} and {max_len}")
    shape = (config.n_layers, batch, max_len, config.n_kv_heads, config.head_dim)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros(batch, jnp.int32))


class Llama(nnx.Module):
    """Llama decoder; parameters as in :func:`param_shapes`.

    ``__init__`` draws small random weights (useful for shapes and training experiments);
    pretrained weights come from :func:`from_weights` or :func:`jaxpapers.nn.gguf.load_llama`.
    """

    def __init__(self, config: LlamaConfig, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.dtype = dtype
        for name, shape in param_shapes(config).items():
            if name.endswith("norm"):
                value = jnp.ones(shape, dtype)
            else:
                fan_in = shape[-1] if name == "embed" else shape[-2]
                value = (jax.random.normal(rngs.params(), shape) / math.sqrt(fan_in)).astype(dtype)
            setattr(self, name, nnx.Param(value))
        if config.tie_embeddings:
            self.lm_head = None

    def params(self) -> dict[str, jax.Array]:
        return {name: getattr(self, name)[...] for name in param_shapes(self.config)}

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, T, V]`` (float32) of a right-padded batch, no cache."""
        params = self.params()
        return _logits(self.config, params, _hidden(self.config, params, tokens, lengths)[0])


def _hidden(
    config: LlamaConfig,
    params: Mapping[str, jax.Array],
    tokens: jax.Array,
    lengths: jax.Array | None,
    cache: KVCache | None = None,
) -> tuple[jax.Array, KVCache | None]:
    """Final-normed hidden states ``[B, T, D]`` of a right-padded chunk, and the new cache.

    Without a cache (``None`` is returned for it) the chunk starts at position 0 and attends
    to itself, causally and only to its first ``lengths`` keys. With a cache it starts at
    ``cache.lengths`` per row, is written into the cache and attends to the whole cache
    causally; the new cache's lengths are ``cache.lengths + lengths``.
    """
    b, t = tokens.shape
    if lengths is None:
        lengths = jnp.full((b,), t, jnp.int32)
    start = jnp.zeros((b,), jnp.int32) if cache is None else cache.lengths
    qpos = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]  # [B, T]
    cos, sin = rope_angles(qpos, config.head_dim, config.rope_theta)
    end = start + lengths
    if cache is None:
        kpos = qpos
    else:
        kpos = jnp.broadcast_to(jnp.arange(cache.max_len, dtype=jnp.int32), (b, cache.max_len))
    mask = (kpos[:, None, :] <= qpos[:, :, None]) & (kpos[:, None, :] < end[:, None, None])
    rows = jnp.arange(b)[:, None]
    h_, kv_, hd = config.n_heads, config.n_kv_heads, config.head_dim
    dtype = params["embed"].dtype

    def block(x, layer):
        p, ck, cv = layer
        h = rms_norm(x, p["attn_norm"], config.norm_eps)
        q = apply_rope(_mm(h, p["wq"]).reshape(b, t, h_, hd), cos, sin)
        k = apply_rope(_mm(h, p["wk"]).reshape(b, t, kv_, hd), cos, sin)
        v = _mm(h, p["wv"]).reshape(b, t, kv_, hd)
        if ck is not None:
            ck = ck.at[rows, qpos].set(k.astype(ck.dtype), mode="drop")
            cv = cv.at[rows, qpos].set(v.astype(cv.dtype), mode="drop")
            k, v = ck, cv
        x = x + _mm(attention(q, k, v, mask).reshape(b, t, h_ * hd), p["wo"])
        h = rms_norm(x, p["ffn_norm"], config.norm_eps)
        x = x + _mm(jax.nn.silu(_mm(h, p["w_gate"])) * _mm(h, p["w_up"]), p["w_down"])
        return x, (ck, cv)

    layers = {key: params[key] for key in _LAYER_KEYS}
    x = jnp.take(params["embed"], tokens, axis=0).astype(dtype)
    if cache is None:
        x, _ = jax.lax.scan(lambda x, p: block(x, (p, None, None)), x, layers)
        return rms_norm(x, params["final_norm"], config.norm_eps), None
    x, (k_all, v_all) = jax.lax.scan(block, x, (layers, cache.k, cache.v))
    hidden = rms_norm(x, params["final_norm"], config.norm_eps)
    return hidden, KVCache(k_all, v_all, end.astype(jnp.int32))


def _logits(config: LlamaConfig, params: Mapping[str, jax.Array], hidden: jax.Array) -> jax.Array:
    if config.tie_embeddings:
        return jnp.einsum(
            "...d,vd->...v",
            hidden,
            params["embed"],
            precision=PRECISION,
            preferred_element_type=jnp.float32,
        )
    return jnp.einsum(
        "...d,dv->...v",
        hidden,
        params["lm_head"],
        precision=PRECISION,
        preferred_element_type=jnp.float32,
    )


def from_weights(
    config: LlamaConfig, weights: Mapping[str, np.ndarray], *, dtype: jnp.dtype = jnp.float32
) -> Llama:
    """A :class:`Llama` holding ``weights`` (names and shapes of :func:`param_shapes`).

    The module is built abstractly (:func:`flax.nnx.eval_shape`): no random initialiser is
    compiled or run.
    """
    expected = param_shapes(config)
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise ValueError(f"weights do not match the config: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(np.shape(weights[name])) != shape:
            raise ValueError(
                f"weight {name!r} has shape {tuple(np.shape(weights[name]))}, config needs {shape}"
            )
    abstract = nnx.eval_shape(lambda: Llama(config, dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    nnx.replace_by_pure_dict(state, {k: jnp.asarray(w, dtype) for k, w in weights.items()})
    return nnx.merge(graphdef, state)


def count_params(model: Llama) -> int:
    """Number of scalar parameters (tied embeddings counted once)."""
    return sum(math.prod(shape) for shape in param_shapes(model.config).values())


# --------------------------------------------------------------------------- jitted entry points


@functools.partial(jax.jit, static_argnums=0)
def _forward_jit(graphdef, state, tokens, lengths):
    model = nnx.merge(graphdef, state)
    params = model.params()
    return _logits(model.config, params, _hidden(model.config, params, tokens, lengths)[0])


@functools.partial(jax.jit, static_argnums=0)
def _token_logprobs_jit(graphdef, state, tokens, lengths):
    """``log p(tokens[:, t+1] | tokens[:, :t+1])`` for ``t < T-1`` (cache-free): ``[B, T-1]``."""
    model = nnx.merge(graphdef, state)
    params = model.params()
    logits = _logits(model.config, params, _hidden(model.config, params, tokens, lengths)[0])
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


@functools.partial(jax.jit, static_argnums=0)
def _extend_last_jit(graphdef, state, cache, tokens, lengths):
    """Append a chunk; logits ``[B, V]`` at each row's last appended token."""
    model = nnx.merge(graphdef, state)
    params = model.params()
    hidden, cache = _hidden(model.config, params, tokens, lengths, cache)
    last = jnp.clip(lengths - 1, 0, tokens.shape[1] - 1)
    picked = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    return _logits(model.config, params, picked), cache


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _greedy_step_jit(graphdef, state, cache, tokens):
    logits, cache = _extend_last_jit(graphdef, state, cache, tokens[:, None], jnp.ones_like(tokens))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache


@functools.partial(jax.jit, static_argnums=0)
def _continuation_logprob_jit(graphdef, state, cache, first_logp, cont, cont_len):
    """Summed log-probability of ``cont[:cont_len]`` after every cached row: ``[B]``."""
    model = nnx.merge(graphdef, state)
    params = model.params()
    b = cache.lengths.shape[0]
    tokens = jnp.broadcast_to(cont, (b, cont.shape[0]))
    hidden, _ = _hidden(model.config, params, tokens, jnp.full((b,), cont_len), cache)
    logp = jax.nn.log_softmax(_logits(model.config, params, hidden[:, :-1]), axis=-1)
    per_token = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    valid = jnp.arange(1, cont.shape[0]) < cont_len
    return first_logp[:, cont[0]] + jnp.sum(jnp.where(valid, per_token, 0.0), axis=-1)


# --------------------------------------------------------------------------- public API


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check_ids(config: LlamaConfig, ids: Sequence[int], what: str) -> None:
    arr = np.asarray(ids)
    if arr.size and (arr.min() < 0 or arr.max() >= config.vocab_size):
        raise ValueError(
            f"{what} has token ids outside [0, {config.vocab_size}): min {arr.min()}, max {arr.max()}"
        )


def _check_length(config: LlamaConfig, n: int, what: str) -> None:
    if n > config.max_seq_len:
        raise ValueError(f"{what} has {n} tokens, more than max_seq_len={config.max_seq_len}")


def forward(model: Llama, tokens: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Logits ``[B, T, V]`` (float32) of a right-padded batch ``tokens[B, T]`` (no cache).

    Row ``b``'s first ``lengths[b]`` positions (all by default) are its tokens; logits at
    padded positions are finite but meaningless.
    """
    tokens = np.asarray(tokens, np.int32)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, time], got shape {tokens.shape}")
    _check_length(model.config, tokens.shape[1], "the batch")
    _check_ids(model.config, tokens, "tokens")
    if lengths is None:  # one compiled program whether or not lengths are given
        lengths = np.full(tokens.shape[:1], tokens.shape[1], np.int32)
    lengths = jnp.asarray(lengths, jnp.int32)
    graphdef, state = nnx.split(model)
    return _forward_jit(graphdef, state, jnp.asarray(tokens), lengths)


def prefill(
    model: Llama,
    tokens: jax.Array,
    lengths: jax.Array,
    cache: KVCache,
    *,
    chunk: int = PREFILL_CHUNK,
) -> tuple[jax.Array, KVCache]:
    """Append a right-padded batch ``tokens[B, T]`` (row ``b`` has ``lengths[b] >= 1`` tokens)
    at each row's current cache length, in chunks of at most ``chunk`` tokens.

    Returns the logits ``[B, V]`` at each row's last appended token and the new cache.
    """
    tokens = np.asarray(tokens, np.int32)
    lengths = np.asarray(lengths, np.int32)
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(
            f"need tokens[B, T] and lengths[B], got {tokens.shape} and {lengths.shape}"
        )
    if lengths.min() < 1 or lengths.max() > tokens.shape[1]:
        raise ValueError(f"lengths must be in [1, {tokens.shape[1]}], got {lengths.tolist()}")
    _check_ids(model.config, tokens, "tokens")
    start = np.asarray(cache.lengths)
    if (start + lengths).max() > cache.max_len:
        raise ValueError(
            f"cache overflow: {int((start + lengths).max())} positions, max_len={cache.max_len}"
        )
    _check_length(model.config, int((start + lengths).max()), "a row")
    graphdef, state = nnx.split(model)
    last = None
    for offset in range(0, int(lengths.max()), chunk):
        piece = tokens[:, offset : offset + chunk]
        n = np.clip(lengths - offset, 0, piece.shape[1]).astype(np.int32)
        logits, cache = _extend_last_jit(graphdef, state, cache, jnp.asarray(piece), jnp.asarray(n))
        ends_here = jnp.asarray((lengths > offset) & (lengths <= offset + piece.shape[1]))
        last = logits if last is None else jnp.where(ends_here[:, None], logits, last)
    return last, cache


def decode_step(model: Llama, tokens: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """Append one token per row (``tokens[B]``); logits ``[B, V]`` for the next token."""
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.ndim != 1 or tokens.shape[0] != cache.lengths.shape[0]:
        raise ValueError(f"tokens must be [batch={cache.lengths.shape[0]}], got {tokens.shape}")
    if int(jnp.max(cache.lengths)) >= cache.max_len:
        raise ValueError(f"cache is full (max_len={cache.max_len})")
    graphdef, state = nnx.split(model)
    return _extend_last_jit(graphdef, state, cache, tokens[:, None], jnp.ones_like(tokens))


def generate(
    model: Llama, prompt_ids: list[int], max_new_tokens: int, stop_ids: Sequence[int] = ()
) -> list[int]:
    """Greedy continuation of ``prompt_ids`` (KV cache, deterministic).

    Returns at most ``max_new_tokens`` new ids; stops after a stop id (not returned) or when
    prompt plus output reach ``max_seq_len``.
    """
    config = model.config
    if not prompt_ids:
        raise ValueError("prompt_ids is empty: generation needs at least one token")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    _check_ids(config, prompt_ids, "prompt_ids")
    n = len(prompt_ids)
    _check_length(config, n, "the prompt")
    max_new_tokens = min(max_new_tokens, config.max_seq_len - n)
    if max_new_tokens == 0:
        return []
    padded = np.zeros((1, _round_up(n, BUCKET)), np.int32)
    padded[0, :n] = prompt_ids
    cache = init_cache(config, 1, _round_up(n + max_new_tokens, BUCKET), model.dtype)
    logits, cache = prefill(model, padded, np.array([n]), cache)
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    graphdef, state = nnx.split(model)
    stops, out = set(int(s) for s in stop_ids), []
    while True:
        value = int(token[0])
        if value in stops:
            break
        out.append(value)
        if len(out) == max_new_tokens:
            break
        token, cache = _greedy_step_jit(graphdef, state, cache, token)
    return out


def score_continuations(
    model: Llama,
    prompts: list[list[int]],
    continuations: list[list[int]],
    *,
    batch_size: int = 8,
) -> np.ndarray:
    """``out[i, j] = log p(continuations[j] | prompts[i])``, summed over its tokens.

    Each prompt is prefilled once; see the module docstring for batching and bucketing.
    """
    config = model.config
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("continuations must be a non-empty list of non-empty token lists")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    for j, c in enumerate(continuations):
        _check_ids(config, c, f"continuation {j}")
    cont_max = max(len(c) for c in continuations)
    for i, p in enumerate(prompts):
        _check_ids(config, p, f"prompt {i}")
        _check_length(config, len(p) + cont_max, f"prompt {i} plus its longest continuation")
    out = np.zeros((len(prompts), len(continuations)), np.float64)
    if not prompts:
        return out
    conts = np.zeros((len(continuations), cont_max), np.int32)
    for j, c in enumerate(continuations):
        conts[j, : len(c)] = c
    graphdef, state = nnx.split(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        width = _round_up(max(len(prompts[i]) for i in rows), BUCKET)
        tokens = np.zeros((batch_size, width), np.int32)
        lengths = np.ones(batch_size, np.int32)  # filler rows: one token, discarded
        for r, i in enumerate(rows):
            tokens[r, : len(prompts[i])] = prompts[i]
            lengths[r] = len(prompts[i])
        cache = init_cache(config, batch_size, width + cont_max, model.dtype)
        logits, cache = prefill(model, tokens, lengths, cache)
        first_logp = jax.nn.log_softmax(logits, axis=-1)
        for j, c in enumerate(continuations):
            scores = _continuation_logprob_jit(
                graphdef, state, cache, first_logp, jnp.asarray(conts[j]), jnp.int32(len(c))
            )
            out[rows, j] = np.asarray(scores)[: len(rows)]
    return out


def log_likelihood(model: Llama, ids: list[int]) -> float:
    """``sum_{t >= 1} log p(ids[t] | ids[:t])`` by one cache-free forward pass."""
    config = model.config
    if len(ids) < 2:
        raise ValueError(f"log_likelihood needs at least 2 tokens, got {len(ids)}")
    _check_ids(config, ids, "ids")
    _check_length(config, len(ids), "the sequence")
    n = len(ids)
    padded = np.zeros((1, _round_up(n, BUCKET)), np.int32)
    padded[0, :n] = ids
    graphdef, state = nnx.split(model)
    logp = _token_logprobs_jit(graphdef, state, jnp.asarray(padded), jnp.array([n], jnp.int32))
    return float(np.sum(np.asarray(logp, np.float64)[0, : n - 1]))


def perplexity(model: Llama, ids: list[int]) -> float:
    """``exp(-log_likelihood / (len(ids) - 1))``: the first token is not predicted."""
    return math.exp(-log_likelihood(model, ids) / (len(ids) - 1))
