import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.physics import optim


def torch_adam_reference(p, grads, *, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """NumPy transcription of torch.optim.Adam's documented update (float64)."""
    p = np.array(p, np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        lr_t = lr(t - 1) if callable(lr) else lr
        g = np.asarray(g, np.float64) + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr_t * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p.copy())
    return out


def run(tx, params, grads_seq):
    state = tx.init(params)
    history = []
    for grads in grads_seq:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history, state


def test_matches_torch_adam_per_group():
    rng = np.random.default_rng(0)
    p0 = {"a": rng.normal(size=3).astype(np.float32), "b": rng.normal(size=2).astype(np.float32)}
    grads = [
        {k: rng.normal(size=v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(4)
    ]
    sched = optim.epoch_cosine(0.01, steps_per_epoch=2, num_epochs=2, decay_min=100)
    tx = optim.torch_adam_groups(
        {"a": optim.AdamGroup(sched, weight_decay=0.1), "b": optim.AdamGroup(0.05)},
        lambda p: {"a": "a", "b": "b"},
    )
    history, _ = run(tx, jax.tree.map(jnp.asarray, p0), grads)
    ref_a = torch_adam_reference(p0["a"], [g["a"] for g in grads], lr=sched, wd=0.1)
    ref_b = torch_adam_reference(p0["b"], [g["b"] for g in grads], lr=0.05, wd=0.0)
    for t in range(4):
        np.testing.assert_allclose(history[t]["a"], ref_a[t], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(history[t]["b"], ref_b[t], rtol=1e-5, atol=1e-6)


def test_group_without_gradient_is_not_stepped():
    """Alternating phases equal two optimizers each stepped only in its own phase."""
    rng = np.random.default_rng(1)
    p0 = {"lf": rng.normal(size=3).astype(np.float32), "hf": rng.normal(size=3).astype(np.float32)}
    tx = optim.torch_adam_groups(
        {"lf": optim.AdamGroup(0.01, weight_decay=0.5), "hf": optim.AdamGroup(0.02)},
        lambda p: {"lf": "lf", "hf": "hf"},
    )
    seq, lf_g, hf_g = [], [], []
    for step in range(6):
        g = rng.normal(size=3).astype(np.float32)
        if step % 2 == 0:
            seq.append({"lf": g, "hf": np.zeros(3, np.float32)})
            lf_g.append(g)
        else:
            seq.append({"lf": np.zeros(3, np.float32), "hf": g})
            hf_g.append(g)
    history, state = run(tx, jax.tree.map(jnp.asarray, p0), seq)
    assert {k: int(v) for k, v in state.counts.items()} == {"lf": 3, "hf": 3}
    ref_lf = torch_adam_reference(p0["lf"], lf_g, lr=0.01, wd=0.5)
    ref_hf = torch_adam_reference(p0["hf"], hf_g, lr=0.02, wd=0.0)
    # Weight decay does not wake a frozen group: lf is unchanged on hf steps.
    np.testing.assert_array_equal(history[1]["lf"], history[0]["lf"])
    np.testing.assert_allclose(history[-1]["lf"], ref_lf[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history[-1]["hf"], ref_hf[-1], rtol=1e-5, atol=1e-6)


def test_restart_is_a_fresh_optimizer():
    rng = np.random.default_rng(2)
    p0 = rng.normal(size=4).astype(np.float32)
    grads = [rng.normal(size=4).astype(np.float32) for _ in range(5)]

    def lr(count):  # 0.1 for the first two steps, then the fine-tuning rate 0.03
        return jnp.where(count < 2, 0.1, 0.03)

    tx = optim.torch_adam_groups({"g": optim.AdamGroup(lr, restart_at=2)}, lambda p: "g")
    history, _ = run(tx, jnp.asarray(p0), grads)
    first = torch_adam_reference(p0, grads[:2], lr=0.1, wd=0.0)
    second = torch_adam_reference(first[-1], grads[2:], lr=0.03, wd=0.0)
    np.testing.assert_allclose(history[1], first[-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(history[-1], second[-1], rtol=1e-5, atol=1e-5)


def test_epoch_cosine_matches_cosine_annealing():
    base, decay_min, epochs = 1e-3, 1000, 5
    s = optim.epoch_cosine(base, steps_per_epoch=3, num_epochs=epochs, decay_min=decay_min)
    eta_min = base / decay_min
    for e in range(epochs + 1):
        want = eta_min + (base - eta_min) * (1 + np.cos(np.pi * e / epochs)) / 2
        for t in range(3 * e, 3 * e + 3):
            np.testing.assert_allclose(float(s(t)), want, rtol=1e-5)


def test_inside_nnx_optimizer():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: str(path[0].key), params)

    tx = optim.torch_adam_groups(
        {"kernel": optim.AdamGroup(0.1), "bias": optim.AdamGroup(0.1)}, labels
    )
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = nnx.state(model, nnx.Param)
    before = jax.tree.map(jnp.copy, before)
    grads = jax.tree.map(jnp.ones_like, before)
    grads["bias"] = jax.tree.map(jnp.zeros_like, grads["bias"])
    opt.update(model, grads)
    after = nnx.state(model, nnx.Param)
    assert not np.allclose(after["kernel"].value, before["kernel"].value)
    np.testing.assert_array_equal(after["bias"].value, before["bias"].value)


@pytest.mark.parametrize(
    "groups, match",
    [
        ({}, "at least one group"),
        ({"a": (0.1,)}, "must be an AdamGroup"),
        ({"a": optim.AdamGroup(-1.0)}, "learning_rate"),
        ({"a": optim.AdamGroup(0.1, b1=1.0)}, "invalid Adam"),
    ],
)
def test_bad_groups(groups, match):
    with pytest.raises(ValueError, match=match):
        optim.torch_adam_groups(groups, lambda p: "a")


def test_unknown_label():
    tx = optim.torch_adam_groups({"a": optim.AdamGroup(0.1)}, lambda p: "b")
    with pytest.raises(ValueError, match="label_fn gave"):
        tx.init(jnp.ones(2))
