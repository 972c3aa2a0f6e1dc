import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import sharding


@pytest.fixture
def mesh42(devices):
    return mesh_lib.make_mesh(("data", "model"), (4, 2))


def test_spec_for_maps_rules_and_replicates_what_cannot_shard(mesh42):
    assert sharding.spec_for(("vocab", "embed"), (1000, 8), mesh42) == P("model")
    assert sharding.spec_for(("vocab", "embed"), (1001, 8), mesh42) == P()  # 2 does not divide 1001
    assert sharding.spec_for(("batch", "vocab"), (8, 4), mesh42) == P("data", "model")
    assert sharding.spec_for(None, (3, 3), mesh42) == P()
    # one mesh axis is used at most once per array
    assert sharding.spec_for(("vocab", "vocab"), (4, 4), mesh42) == P("model")
    # a rule pointing at an axis the mesh does not have is ignored
    assert sharding.spec_for(("vocab",), (4,), mesh42, rules=(("vocab", "expert"),)) == P()
    with pytest.raises(ValueError, match="do not match"):
        sharding.spec_for(("vocab",), (4, 4), mesh42)


def test_one_device_mesh_replicates_everything(mesh1):
    assert sharding.spec_for(("batch", "vocab"), (8, 8), mesh1) == P()


class _Tiny(nnx.Module):
    def __init__(self, rngs):
        self.emb = nnx.Embed(
            64,
            4,
            embedding_init=sharding.logical(nnx.initializers.normal(), "vocab", "embed"),
            rngs=rngs,
        )
        self.out = nnx.Linear(4, 1, rngs=rngs)


def test_state_shardings_follow_logical_names_into_optimizer_state(mesh42):
    def build():
        model = _Tiny(nnx.Rngs(0))
        return {
            "model": nnx.state(model),
            "opt": nnx.state(nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)),
        }

    abstract = jax.eval_shape(build)
    shardings = sharding.state_shardings(abstract, mesh42)
    state = jax.jit(build, out_shardings=shardings)()
    specs = {jax.tree_util.keystr(k): v.sharding.spec for k, v in jax.tree.leaves_with_path(state)}
    emb = [s for k, s in specs.items() if "emb" in k and "embedding" in k]
    assert len(emb) == 3  # the table and Adam's two moments
    assert all(s == P("model") for s in emb)
    assert all(s == P() for k, s in specs.items() if "out" in k)


def test_shard_batch_splits_rows_over_data_axis(mesh42):
    batch = {"x": np.arange(16 * 3).reshape(16, 3), "y": np.arange(16.0)}
    out = sharding.shard_batch(batch, sharding.batch_sharding(mesh42))
    assert out["x"].sharding.spec == P("data")
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
    assert len(out["x"].addressable_shards) == 8
    assert out["x"].addressable_shards[0].data.shape == (4, 3)
    with pytest.raises(ValueError, match="multiple of 4"):
        sharding.shard_batch({"x": np.zeros((6, 2))}, sharding.batch_sharding(mesh42))
