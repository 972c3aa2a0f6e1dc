import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.recsys import fgcnn

# ----------------------------------------------------------------- generated features


@pytest.mark.parametrize(
    "num_fields",  # odd and even counts; 20 and 24 run in `make test-slow`
    [5, 8, 13, 39] + [pytest.param(n, marks=pytest.mark.slow) for n in (20, 24)],
)
@pytest.mark.parametrize("pooling", ["ceil", "floor"])
@pytest.mark.parametrize("pools,recombined", [((2, 2), (3, 3)), ((3, 2, 2), (1, 2, 4))])
def test_generated_feature_count_formula_matches_the_layer(num_fields, pooling, pools, recombined):
    expected, h = 0, num_fields
    for p, r in zip(pools, recombined):
        h = -(-h // p) if pooling == "ceil" else h // p
        expected += h * r
    if h == 0:
        with pytest.raises(ValueError):
            fgcnn.generated_feature_counts(num_fields, pools, recombined, pooling)
        return
    assert sum(fgcnn.generated_feature_counts(num_fields, pools, recombined, pooling)) == expected
    layer = fgcnn.FeatureGeneration(
        num_fields,
        3,
        channels=(2,) * len(pools),
        kernel_heights=(3,) * len(pools),
        pooling_sizes=pools,
        recombined_channels=recombined,
        pooling=pooling,
        rngs=nnx.Rngs(0),
    )
    out = layer(jnp.ones((2, num_fields, 3)))
    assert out.shape == (2, expected, 3)
    assert layer.num_generated == expected


def test_published_counts_for_criteo():
    # papers.md: 39 fields, pooling 2, r=3 -> 114 new features (FuxiCTR ceil), 102 (DeepCTR floor)
    assert sum(fgcnn.generated_feature_counts(39, [2] * 4, [3] * 4, "ceil")) == 114
    assert sum(fgcnn.generated_feature_counts(39, [2] * 4, [3] * 4, "floor")) == 102


def test_mismatched_stage_lists_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        fgcnn.FeatureGeneration(
            10,
            4,
            channels=(2, 2),
            kernel_heights=(3,),
            pooling_sizes=(2, 2),
            recombined_channels=(2, 2),
            rngs=nnx.Rngs(0),
        )
    with pytest.raises(ValueError, match="pooling must be one of"):
        fgcnn.pooled_height(10, 2, "round")


# ----------------------------------------------------------------- pooling


def _pool_reference(x, p, mode):
    """Brute-force max pool over axis 1 of (b, h, k, c)."""
    h = x.shape[1]
    if mode == "ceil":
        top = (-h) % p
        x = np.concatenate([np.full((x.shape[0], top) + x.shape[2:], -np.inf), x], axis=1)
    n = x.shape[1] // p
    return np.stack([x[:, i * p : (i + 1) * p].max(axis=1) for i in range(n)], axis=1)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 17),
    p=st.integers(1, 4),
    mode=st.sampled_from(["ceil", "floor"]),
    seed=st.integers(0, 100),
)
def test_max_pool_matches_brute_force(h, p, mode, seed):
    if mode == "floor" and h < p:
        return
    x = np.random.default_rng(seed).normal(size=(2, h, 3, 2)).astype(np.float32)
    got = np.asarray(fgcnn.max_pool_fields(jnp.asarray(x), p, mode))
    np.testing.assert_array_equal(got, _pool_reference(x, p, mode))
    assert got.shape[1] == fgcnn.pooled_height(h, p, mode)


def test_ceil_pooling_reproduces_fuxictr_window_alignment():
    # FuxiCTR: MaxPool2d((2, 1), padding=(h % 2, 0)) on h=5 -> windows {0}, {1,2}, {3,4}
    x = np.arange(5, dtype=np.float32)[None, :, None, None] * np.array([1, -1])[None, None, None, :]
    got = np.asarray(fgcnn.max_pool_fields(jnp.asarray(x), 2, "ceil"))[0, :, 0, :]
    np.testing.assert_array_equal(got[:, 0], [0, 2, 4])
    np.testing.assert_array_equal(got[:, 1], [0, -1, -3])


# ----------------------------------------------------------------- inner products


def test_inner_products_in_row_major_pair_order():
    e = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    expected = np.stack(
        [np.einsum("bk,bk->b", e[:, i], e[:, j]) for i, j in itertools.combinations(range(6), 2)],
        axis=1,
    )
    np.testing.assert_allclose(
        np.asarray(fgcnn.inner_products(jnp.asarray(e))), expected, rtol=1e-5, atol=1e-6
    )
    assert fgcnn.num_pairs(6) == 15


def test_classifier_input_is_embeddings_plus_all_pairs():
    model = fgcnn.FGCNN(
        [7] * 20,
        embedding_dim=5,
        channels=(3, 3),
        kernel_heights=(3, 3),
        pooling_sizes=(2, 2),
        recombined_channels=(2, 3),
        hidden=(8,),
        rngs=nnx.Rngs(0),
    )
    n = 20 + 10 * 2 + 5 * 3
    assert model.num_features == n
    assert model.classifier.mlp.layers[0].in_features == n * 5 + n * (n - 1) // 2


# ----------------------------------------------------------------- models


VOCAB = [11, 3, 25, 7, 5, 9, 13]


def _ids(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.stack([rng.integers(0, v, n) for v in VOCAB], axis=1), jnp.int32)


def test_zero_stages_is_exactly_ipnn():
    fg = fgcnn.FGCNN(
        VOCAB,
        embedding_dim=4,
        channels=(),
        kernel_heights=(),
        pooling_sizes=(),
        recombined_channels=(),
        hidden=(16, 8),
        rngs=nnx.Rngs(1),
    )
    ipnn = fgcnn.IPNN(VOCAB, embedding_dim=4, hidden=(16, 8), rngs=nnx.Rngs(2))
    assert fg.generation_embedding is None  # no second table without generation stages

    def count(m):
        return sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))

    assert count(fg) == count(ipnn)
    nnx.update(fg.embedding, nnx.state(ipnn.embedding))
    nnx.update(fg.classifier, nnx.state(ipnn.classifier))
    ids = _ids()
    np.testing.assert_array_equal(np.asarray(fg(ids)), np.asarray(ipnn(ids)))
    fg_grads = nnx.grad(lambda m: m(ids).sum())(fg)
    ipnn_grads = nnx.grad(lambda m: m(ids).sum())(ipnn)
    np.testing.assert_array_equal(
        np.asarray(fg_grads["embedding"]["table"]["embedding"][...]),
        np.asarray(ipnn_grads["embedding"]["table"]["embedding"][...]),
    )


def test_generated_features_change_the_prediction_and_get_gradients():
    model = fgcnn.FGCNN(
        VOCAB,
        embedding_dim=4,
        channels=(3,),
        kernel_heights=(3,),
        pooling_sizes=(2,),
        recombined_channels=(2,),
        hidden=(8,),
        rngs=nnx.Rngs(0),
    )
    ids = _ids()
    grads = nnx.grad(lambda m: m(ids).sum())(model)
    g = np.asarray(grads["generation_embedding"]["table"]["embedding"][...])
    assert np.abs(g).sum() > 0  # the feature-generation table is trained through the CNN
    shared = fgcnn.FGCNN(
        VOCAB,
        embedding_dim=4,
        channels=(3,),
        kernel_heights=(3,),
        pooling_sizes=(2,),
        recombined_channels=(2,),
        hidden=(8,),
        share_embedding=True,
        rngs=nnx.Rngs(0),
    )
    assert shared.generation_embedding is None
    assert shared(ids).shape == (16,)


def test_convolution_only_mixes_neighbouring_fields():
    layer = fgcnn.FeatureGeneration(
        9,
        2,
        channels=(2,),
        kernel_heights=(3,),
        pooling_sizes=(1,),
        recombined_channels=(1,),
        batch_norm=False,
        rngs=nnx.Rngs(0),
    )
    maps = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 9, 1)), jnp.float32)
    conv = layer.convs[0]
    bumped = maps.at[0, :, 4].add(1.0)  # field 4, every embedding coordinate
    changed = np.abs(np.asarray(conv(bumped) - conv(maps)))[0].sum(axis=(0, 2)) > 0
    np.testing.assert_array_equal(
        changed, [False, False, False, True, True, True, False, False, False]
    )


@pytest.mark.parametrize("height,c_in,c_out,fields", [(3, 1, 4, 9), (7, 3, 2, 20), (4, 2, 3, 6)])
def test_field_conv_equals_a_same_padded_h_by_1_convolution(height, c_in, c_out, fields):
    conv = fgcnn.FieldConv(c_in, c_out, height, use_bias=True, rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.arange(c_out, dtype=jnp.float32)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, fields, c_in)), jnp.float32)
    reference = jax.lax.conv_general_dilated(  # NHWC with H = fields, W = k
        jnp.swapaxes(x, 1, 2),
        conv.kernel[...][:, None],
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    got = jnp.swapaxes(conv(x), 1, 2)
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(reference + conv.bias[...]), rtol=1e-5, atol=1e-5
    )


def test_field_offsets_index_one_shared_table():
    emb = fgcnn.FieldEmbedding([3, 5], 2, rngs=nnx.Rngs(0))
    table = np.asarray(emb.table.embedding[...])
    assert table.shape == (8, 2)  # 3 + 5 rows, padded to a multiple of 8
    out = np.asarray(emb(jnp.asarray([[2, 4]])))
    np.testing.assert_array_equal(out[0, 0], table[2])
    np.testing.assert_array_equal(out[0, 1], table[3 + 4])
    with pytest.raises(ValueError, match="positive"):
        fgcnn.FieldEmbedding([3, 0], 2, rngs=nnx.Rngs(0))


def test_logistic_regression_is_bias_plus_first_order_weights():
    lr = fgcnn.LogisticRegression([3, 4], rngs=nnx.Rngs(0))
    lr.bias[...] = jnp.asarray(0.25)
    w = np.asarray(lr.weights.table.embedding[...])[:, 0]
    got = float(lr(jnp.asarray([[1, 2]]))[0])
    assert got == pytest.approx(0.25 + w[1] + w[3 + 2], rel=1e-6)


def test_embedding_l2_is_half_squared_norm_of_both_tables():
    model = fgcnn.FGCNN(
        VOCAB,
        embedding_dim=4,
        channels=(3,),
        kernel_heights=(3,),
        pooling_sizes=(2,),
        recombined_channels=(2,),
        hidden=(8,),
        rngs=nnx.Rngs(0),
    )

    def sq(e):
        return float(np.sum(np.asarray(e.table.embedding[...], np.float64) ** 2))

    expected = 0.5 * (sq(model.embedding) + sq(model.generation_embedding))
    assert float(model.embedding_l2()) == pytest.approx(expected, rel=1e-5)
