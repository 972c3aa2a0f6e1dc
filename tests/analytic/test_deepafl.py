"""DeepAFL: federated == centralized per layer, depth never raises the ridge objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import federated
from jaxpapers.analytic import deepafl

CFG = deepafl.DeepAFLConfig(hidden=96, features=80, layers=4, reg=1.0, reg_sandwich=0.05)


def _blocks(feats, parts, block=32):
    return federated.pack(feats.train, feats.train_labels, parts, block_size=block)


@pytest.mark.parametrize("partition", ["dirichlet-0.05", "iid-50", "one"])
def test_federated_equals_centralized_per_layer(digits_pixels, partition):
    labels = digits_pixels.train_labels
    if partition == "one":
        parts = [np.arange(len(labels))]
    elif partition.startswith("iid"):
        parts = federated.iid(labels, 50, seed=0)
    else:
        parts = federated.dirichlet(labels, 20, 0.05, seed=0)
    mesh = federated.clients_mesh()
    key = jax.random.key(0)
    with jax.enable_x64(True):
        fed, fed_diag = deepafl.fit(_blocks(digits_pixels, parts), mesh, 10, CFG, key)
        cen, cen_diag = deepafl.fit(
            _blocks(digits_pixels, [np.arange(len(labels))], 1024), mesh, 10, CFG, key
        )
        for a, b in zip(fed.heads, cen.heads):
            assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) < 1e-9
        for a, b in zip(fed.deltas, cen.deltas):
            assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) < 1e-9
    np.testing.assert_allclose(fed_diag["objective"], cen_diag["objective"], rtol=1e-9)


def test_ridge_objective_never_increases_with_depth(digits_pixels):
    parts = federated.dirichlet(digits_pixels.train_labels, 10, 0.1, seed=1)
    with jax.enable_x64(True):
        cfg = deepafl.DeepAFLConfig(hidden=64, features=64, layers=8)
        _, diag = deepafl.fit(
            _blocks(digits_pixels, parts), federated.clients_mesh(), 10, cfg, jax.random.key(3)
        )
    objective = np.asarray(diag["objective"])
    assert np.all(np.diff(objective) <= 1e-9 * objective[0])
    assert objective[-1] < objective[0]


@pytest.mark.slow  # 14 s; DeepAFL's exactness per layer is tested fast (CI budget)
def test_deeper_beats_single_layer_afl_on_pixels(digits_pixels):
    parts = federated.dirichlet(digits_pixels.train_labels, 10, 0.1, seed=2)
    blocks = _blocks(digits_pixels, parts)
    mesh = federated.clients_mesh()
    with jax.enable_x64(True):
        cfg = deepafl.DeepAFLConfig(hidden=256, features=256, layers=6)
        model, _ = deepafl.fit(blocks, mesh, 10, cfg, jax.random.key(0))
        phi = jnp.asarray(digits_pixels.test)
        final = float(
            np.mean(
                np.asarray(deepafl.predict(model, phi, cfg.activation)[-1].argmax(-1))
                == digits_pixels.test_labels
            )
        )
        w_afl = deepafl.afl_weights(blocks, mesh, 10, cfg.reg)
        afl = float(np.mean(np.asarray((phi @ w_afl).argmax(-1)) == digits_pixels.test_labels))
    assert final > afl + 0.02, (final, afl)


def test_config_validation():
    with pytest.raises(ValueError, match="activation"):
        deepafl.DeepAFLConfig(activation="swish")
