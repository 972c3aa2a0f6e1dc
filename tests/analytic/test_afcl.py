"""AFCL's claim: after every task, federated == centralized joint ridge, for any split."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import federated, linalg
from jaxpapers.analytic import afcl, features
from jaxpapers.core import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(**overrides):
    base = {"backbone.progress": False, "federated.min_size": 0}
    return config_lib.override(
        config_lib.load_file(os.path.join(ROOT, "experiments", "configs", "afcl.py"), "tiny"),
        {**base, **overrides},
    )


@pytest.mark.parametrize("num_clients", [1, 7, 100, 1000])
@pytest.mark.parametrize("alpha", [0.01, 100.0])
def test_equals_centralized_ridge_after_every_task(digits_pixels, num_clients, alpha):
    config = _config(**{"federated.num_clients": num_clients, "federated.alpha": alpha})
    with jax.enable_x64(True):
        out = afcl.run_stream(config, digits_pixels)
    assert len(out["gap"]) == 6  # base + 5 tasks
    assert max(out["gap"]) < 1e-9
    assert out["accuracy"] == out["centralized_accuracy"]


@pytest.mark.parametrize("order_seed", [None, 0, 7])
def test_any_task_order_and_unseen_columns_exactly_zero(digits_pixels, order_seed):
    d = digits_pixels
    raw = {"train": d.train, "test": d.test}
    # recover the original labels, then re-order the classes with another seed
    original = np.asarray(d.info.get("class_order", np.arange(10)))
    del original
    feats = features.from_arrays(
        raw["train"],
        d.train_labels,
        raw["test"],
        d.test_labels,
        10,
        base_classes=2,
        num_phases=4,
        class_order_seed=order_seed,
    )
    config = _config(**{"federated.num_clients": 13, "federated.alpha": 0.1})
    seen_columns = []
    with jax.enable_x64(True):
        out = afcl.run_stream(config, feats)
        algorithm = afcl.afcl(config.analytic.buffer_size, 10, config.analytic.gamma)
        server = algorithm.init()
        mesh = federated.clients_mesh()
        buffer_w = out["buffer_w"]
        for phase, classes in enumerate(feats.phases):
            rows = np.flatnonzero(np.isin(feats.train_labels, classes))
            parts = federated.iid(feats.train_labels[rows], 5, seed=phase)
            blocks = federated.pack(
                feats.train[rows], feats.train_labels[rows], parts, block_size=16
            )
            server, _ = algorithm.apply(server, blocks, mesh, buffer_w)
            w = afcl.weights(server, config.analytic.gamma)
            seen = feats.seen(phase)
            seen_columns.append(seen)
            if seen < 10:
                assert np.all(np.asarray(w[:, seen:]) == 0.0)  # exactly zero, not just small
    assert max(out["gap"]) < 1e-9
    assert seen_columns == [2, 4, 6, 8, 10]


def test_one_round_per_task_and_constant_server_state(digits_pixels, monkeypatch):
    calls = []
    real = federated.federated_sum

    def counting(*args, **kwargs):
        calls.append(args[1].num_clients)
        return real(*args, **kwargs)

    monkeypatch.setattr(federated, "federated_sum", counting)
    sizes = {}
    for clients in (1, 200):
        calls.clear()
        config = _config(**{"federated.num_clients": clients, "federated.alpha": 1.0})
        with jax.enable_x64(True):
            out = afcl.run_stream(config, digits_pixels)
        assert calls == [clients] * 6  # one aggregation round per task, every client in it
        sizes[clients] = out["w"].shape
    algorithm = afcl.afcl(256, 10, 1.0)
    state = algorithm.init()
    assert sum(x.size for x in jax.tree.leaves(state)) == 256 * 256 + 256 * 10 + 1
    assert sizes[1] == sizes[200]


def test_float32_cholesky_path_matches_float64(digits_pixels):
    config = _config(**{"federated.num_clients": 10, "analytic.float64": False})
    out32 = afcl.run_stream(config, digits_pixels)
    assert out32["w"].dtype == jnp.float32
    with jax.enable_x64(True):
        out64 = afcl.run_stream(_config(**{"federated.num_clients": 10}), digits_pixels)
    w32, w64 = np.asarray(out32["w"], np.float64), np.asarray(out64["w"])
    assert np.linalg.norm(w32 - w64) / np.linalg.norm(w64) < 1e-4  # relative (Frobenius) error
    assert max(out32["gap"]) < 1e-3  # federated vs centralized sums, both in float32


def test_ill_conditioned_solve_is_refused_with_advice():
    server = afcl.AFCLServer(
        linalg.GramStats(jnp.zeros((4, 4)), jnp.ones((4, 2)), jnp.asarray(0.0))
    )
    with pytest.raises(linalg.IllConditionedError, match="increase gamma"):
        afcl.weights(server, 0.0)


@pytest.mark.parametrize(
    "alpha",
    [pytest.param(a, marks=pytest.mark.slow) for a in (0.01, 0.1)]
    + [1.0]
    + [pytest.param(100.0, marks=pytest.mark.slow)],
)
def test_digits_accuracy_identical_to_centralized(digits_pixels, alpha):
    config = _config(
        **{"federated.num_clients": 10, "federated.alpha": alpha, "analytic.buffer_size": 1024}
    )
    with jax.enable_x64(True):
        out = afcl.run_stream(config, digits_pixels)
    assert round(out["accuracy"][-1], 4) == round(out["centralized_accuracy"][-1], 4)
    assert out["accuracy"][-1] > 0.9
