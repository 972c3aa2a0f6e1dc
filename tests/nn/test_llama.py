"""Llama decoder on tiny configs with NumPy weights: known answers against a float64 NumPy
reference, cache/padding/GQA equivalences and the scoring helpers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn import llama

TINY = dict(
    vocab_size=61,
    dim=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    hidden_dim=48,
    rope_theta=10000.0,
    norm_eps=1e-5,
    max_seq_len=96,
)


def make_weights(config: llama.LlamaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in llama.param_shapes(config).items():
        if name.endswith("norm"):
            weights[name] = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            weights[name] = rng.standard_normal(shape) * (0.5 if name == "embed" else 0.25)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def reference_logits(
    config: llama.LlamaConfig, w: dict[str, np.ndarray], ids: list[int]
) -> np.ndarray:
    """Float64 NumPy Llama, one head at a time, rope as complex rotation of adjacent pairs."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    hd, t = config.head_dim, len(ids)
    group = config.n_heads // config.n_kv_heads

    def norm(x, g):
        return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + config.norm_eps) * g

    freqs = config.rope_theta ** (-np.arange(0, hd, 2) / hd)
    rot = np.exp(1j * np.arange(t)[:, None] * freqs[None, :])  # [T, hd/2]

    def rope(x):  # [T, hd]
        z = (x[:, 0::2] + 1j * x[:, 1::2]) * rot
        out = np.empty_like(x)
        out[:, 0::2], out[:, 1::2] = z.real, z.imag
        return out

    x = w["embed"][ids]
    causal = np.tril(np.ones((t, t), bool))
    for layer in range(config.n_layers):
        h = norm(x, w["attn_norm"][layer])
        q, k, v = (h @ w[n][layer] for n in ("wq", "wk", "wv"))
        heads = []
        for head in range(config.n_heads):
            kvh = head // group
            qh = rope(q[:, head * hd : (head + 1) * hd])
            kh = rope(k[:, kvh * hd : (kvh + 1) * hd])
            s = np.where(causal, qh @ kh.T / math.sqrt(hd), -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            heads.append((p / p.sum(-1, keepdims=True)) @ v[:, kvh * hd : (kvh + 1) * hd])
        x = x + np.concatenate(heads, -1) @ w["wo"][layer]
        h = norm(x, w["ffn_norm"][layer])
        gate = h @ w["w_gate"][layer]
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w["w_up"][layer])) @ w["w_down"][layer]
    x = norm(x, w["final_norm"])
    return x @ (w["embed"].T if config.tie_embeddings else w["lm_head"])


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def tiny():
    config = llama.LlamaConfig(**TINY)
    weights = make_weights(config)
    return config, weights, llama.from_weights(config, weights)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(dim=30), "divisible by n_heads"),
        (dict(n_kv_heads=3), "multiple of n_kv_heads"),
        (dict(dim=36, n_heads=12, n_kv_heads=4), "must be even"),
        (dict(n_layers=0), "n_layers must be a positive int"),
        (dict(rope_theta=0.0), "must be > 0"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        llama.LlamaConfig(**{**TINY, **change})


def test_param_count_from_shapes(tiny):
    config, _, model = tiny
    d, f, hd = config.dim, config.hidden_dim, config.head_dim
    per_layer = 2 * d + d * 4 * hd + 2 * d * 2 * hd + 4 * hd * d + 3 * d * f
    assert llama.count_params(model) == 61 * d + 2 * per_layer + d
    untied = llama.LlamaConfig(**{**TINY, "tie_embeddings": False})
    assert llama.param_shapes(untied)["lm_head"] == (d, 61)


@pytest.mark.parametrize("tied,kv_heads", [(True, 2), (False, 4)])
def test_forward_matches_float64_reference(tied, kv_heads):
    # kv_heads == n_heads: the reference is plain multi-head attention, one head at a time
    config = llama.LlamaConfig(**{**TINY, "tie_embeddings": tied, "n_kv_heads": kv_heads})
    weights = make_weights(config, seed=1)
    ids = np.random.default_rng(2).integers(0, 61, (2, 16))
    got = np.asarray(llama.forward(llama.from_weights(config, weights), jnp.asarray(ids)))
    for row in range(2):
        want = reference_logits(config, weights, ids[row].tolist())
        np.testing.assert_allclose(got[row], want, atol=1e-4, rtol=1e-4)


def test_from_weights_rejects_wrong_shapes(tiny):
    config, weights, _ = tiny
    with pytest.raises(ValueError, match="'wq' has shape"):
        llama.from_weights(config, {**weights, "wq": weights["wq"][:, :, :8]})
    with pytest.raises(ValueError, match="missing \\['final_norm'\\]"):
        llama.from_weights(config, {k: v for k, v in weights.items() if k != "final_norm"})


def test_kv_cache_decoding_equals_full_forward(tiny):
    config, _, model = tiny
    ids = np.random.default_rng(3).integers(0, 61, (2, 16)).astype(np.int32)
    full = np.asarray(llama.forward(model, jnp.asarray(ids)))
    cache = llama.init_cache(config, 2, 16)
    logits, cache = llama.prefill(model, ids[:, :5], np.array([5, 5]), cache)
    steps = [np.asarray(logits)]
    for t in range(5, 16):
        logits, cache = llama.decode_step(model, jnp.asarray(ids[:, t]), cache)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(steps, 1), full[:, 4:], atol=1e-4)
    assert np.asarray(cache.lengths).tolist() == [16, 16]


def test_right_padded_batch_equals_unpadded(tiny):
    config, weights, model = tiny
    rng = np.random.default_rng(4)
    lengths = np.array([7, 13], np.int32)
    rows = [[int(i) for i in rng.integers(0, 61, n)] for n in lengths]
    padded = np.full((2, 16), 60, np.int32)
    for r, row in enumerate(rows):
        padded[r, : len(row)] = row
    batch = np.asarray(llama.forward(model, jnp.asarray(padded), jnp.asarray(lengths)))
    cache = llama.init_cache(config, 2, 16)
    last_chunked, _ = llama.prefill(model, padded, lengths, cache, chunk=5)  # three chunks
    for r, row in enumerate(rows):
        alone = reference_logits(config, weights, row)  # the row without padding
        np.testing.assert_allclose(batch[r, : len(row)], alone, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(last_chunked)[r], alone[-1], atol=1e-4, rtol=1e-4)


def test_gqa_with_as_many_kv_heads_is_plain_multi_head_attention():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 6, 3, 8)).astype(np.float32) for _ in range(3))
    mask = np.tril(np.ones((6, 6), bool))[None].repeat(2, 0)
    got = np.asarray(jax.jit(llama.attention)(q, k, v, mask))
    s = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(8)
    s = np.where(mask[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bhts,bshd->bthd", p / p.sum(-1, keepdims=True), v)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_gqa_equals_multi_head_attention_with_repeated_kv_heads():
    rng = np.random.default_rng(6)
    q = jnp.asarray(rng.standard_normal((2, 5, 6, 8)).astype(np.float32))
    k, v = (jnp.asarray(rng.standard_normal((2, 5, 2, 8)).astype(np.float32)) for _ in range(2))
    mask = jnp.asarray(np.tril(np.ones((5, 5), bool))[None].repeat(2, 0))
    attention = jax.jit(llama.attention)
    grouped = attention(q, k, v, mask)
    # query heads 0-2 read KV head 0, heads 3-5 KV head 1 (repeat_kv's grouping)
    repeated = attention(q, jnp.repeat(k, 3, axis=2), jnp.repeat(v, 3, axis=2), mask)
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(repeated), atol=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(9)
    n, hd = 64, 16
    q, k = (jnp.asarray(rng.standard_normal((1, n, 1, hd)).astype(np.float32)) for _ in range(2))
    pos, shift, gap = (rng.integers(0, 4000, n) for _ in range(3))

    @jax.jit
    def rotate(x, positions):
        return llama.apply_rope(x, *llama.rope_angles(positions[None], hd, 10000.0))

    def scores(pq, pk):
        return np.asarray(jnp.sum(rotate(q, pq) * rotate(k, pk), axis=-1))[0, :, 0]

    np.testing.assert_allclose(
        scores(pos + gap, pos), scores(pos + gap + shift, pos + shift), atol=2e-3
    )
    norms = np.linalg.norm(np.asarray(rotate(q, pos)), axis=-1)
    np.testing.assert_allclose(norms, np.linalg.norm(np.asarray(q), axis=-1), rtol=1e-5)


def test_log_likelihood_and_perplexity_known_answer(tiny):
    config, weights, model = tiny
    ids = [int(i) for i in np.random.default_rng(7).integers(0, 61, 15)]
    logp = log_softmax(reference_logits(config, weights, ids))
    want = sum(logp[t - 1, ids[t]] for t in range(1, len(ids)))
    assert llama.log_likelihood(model, ids) == pytest.approx(want, abs=1e-3)
    assert llama.perplexity(model, ids) == pytest.approx(math.exp(-want / 14), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        llama.log_likelihood(model, ids[:1])


def test_score_continuations_equals_naive_log_likelihood(tiny):
    _, _, model = tiny
    rng = np.random.default_rng(8)
    prompts = [[int(i) for i in rng.integers(0, 61, n)] for n in (5, 40, 1, 13)]
    continuations = [[3], [4, 5, 6], [7, 8]]
    got = llama.score_continuations(model, prompts, continuations, batch_size=3)
    for i, p in enumerate(prompts):
        base = llama.log_likelihood(model, p) if len(p) > 1 else 0.0
        for j, c in enumerate(continuations):
            assert got[i, j] == pytest.approx(llama.log_likelihood(model, p + c) - base, abs=2e-3)


def test_generate_is_greedy_argmax_of_reference(tiny):
    config, weights, model = tiny
    prompt = [5, 17, 42, 8]
    out = llama.generate(model, prompt, 6)
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(np.argmax(reference_logits(config, weights, seq)[-1])))
    assert out == seq[len(prompt) :]
    assert llama.generate(model, prompt, 6) == out
    stop = out[2]
    assert llama.generate(model, prompt, 6, stop_ids=(stop,)) == out[: out.index(stop)]


def test_too_long_or_invalid_inputs_raise(tiny):
    config, _, model = tiny
    with pytest.raises(ValueError, match="97 tokens, more than max_seq_len=96"):
        llama.log_likelihood(model, [1] * 97)
    with pytest.raises(ValueError, match="max_seq_len=96"):
        llama.score_continuations(model, [[1] * 95], [[2, 3]])
    with pytest.raises(ValueError, match="outside \\[0, 61\\)"):
        llama.generate(model, [1, 61], 3)
    with pytest.raises(ValueError, match="cache overflow"):
        llama.prefill(
            model, np.ones((1, 9), np.int32), np.array([9]), llama.init_cache(config, 1, 8)
        )
