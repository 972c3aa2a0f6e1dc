import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxpapers.core import checkpoint, sharding
from jaxpapers.core import mesh as mesh_lib


class _WithRng(nnx.Module):
    def __init__(self, rngs):
        self.emb = nnx.Embed(
            16,
            4,
            embedding_init=sharding.logical(nnx.initializers.normal(), "vocab", "embed"),
            rngs=rngs,
        )
        self.layers = nnx.List([nnx.Linear(4, 4, rngs=rngs) for _ in range(2)])
        self.drop = nnx.Dropout(0.5, rngs=rngs)


def _build():
    model = _WithRng(nnx.Rngs(0, dropout=1))
    return {
        "model": nnx.state(model),
        "opt": nnx.state(nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)),
    }


def test_roundtrip_keeps_values_keys_shardings_and_json(tmp_path, devices):
    mesh = mesh_lib.make_mesh(("data", "model"), (4, 2))
    abstract = jax.eval_shape(_build)
    shardings = sharding.state_shardings(abstract, mesh)
    state = jax.jit(_build, out_shardings=shardings)()
    state = jax.tree.map(
        lambda x: x if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x + 1, state
    )

    with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
        assert ckpt.latest_step() is None
        ckpt.save(7, state, data={"next_index": 7}, meta={"best": 0.5})
        assert ckpt.latest_step() == 7
        restored, data, meta = ckpt.restore(
            7, checkpoint.abstract_with_shardings(abstract, shardings)
        )
    assert data == {"next_index": 7} and meta == {"best": 0.5}

    def same(a, b):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            assert jnp.issubdtype(b.dtype, jax.dtypes.prng_key)
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim)

    jax.tree.map(same, state, restored)
    emb = restored["model"]["emb"]["embedding"][...]
    assert emb.sharding.spec == P("model")


def test_keeps_only_the_newest_checkpoints(tmp_path):
    state = {"w": jnp.zeros(3)}
    with checkpoint.Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, state)
        assert ckpt.all_steps() == [2, 3]
