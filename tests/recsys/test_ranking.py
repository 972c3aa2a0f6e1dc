"""DIN, the ranker QARM and EM3 share: known answers on a tiny instance."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.recsys import ranking


def _gelu(x):  # jax.nn.gelu's default (tanh) approximation
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _numpy_mlp(layers, x, final_act):
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
        if i < len(layers) - 1 or final_act:
            x = _gelu(x)
    return x


def test_din_matches_numpy_and_ignores_padding():
    din = ranking.DIN(3, hidden=(5,), attention_hidden=(4,), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    history = rng.normal(size=(2, 4, 3)).astype(np.float32)
    target = rng.normal(size=(2, 3)).astype(np.float32)
    mask = np.array([[0, 1, 1, 1], [0, 0, 0, 1]], bool)
    logits = np.asarray(din(jnp.asarray(history), jnp.asarray(mask), jnp.asarray(target)))

    t = np.broadcast_to(target[:, None], history.shape)
    units = np.concatenate([history, t, history - t, history * t], -1)
    w = _numpy_mlp(din.attention.layers, units, False)[..., 0] * mask  # no softmax (DIN)
    pooled = np.einsum("bl,bld->bd", w, history)
    want = _numpy_mlp(din.mlp.layers, np.concatenate([pooled, target, pooled * target], -1), False)
    np.testing.assert_allclose(logits, want[:, 0], rtol=1e-5, atol=1e-5)

    # whatever sits in padded positions changes nothing
    history2 = history.copy()
    history2[~mask] = 100.0
    np.testing.assert_allclose(
        np.asarray(din(jnp.asarray(history2), jnp.asarray(mask), jnp.asarray(target))), logits
    )


def test_frozen_is_not_a_param():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.cache = ranking.Frozen(jnp.ones(3))

    m = M()
    leaves = [x.shape for x in jax.tree.leaves(nnx.state(m, nnx.Param))]
    assert leaves == [(2,)]
