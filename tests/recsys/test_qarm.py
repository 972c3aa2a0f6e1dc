"""QARM: pair mining by hand, the aligned pipeline's codes, gradients, configs, a tiny run."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core import config as config_lib
from jaxpapers.core.testing import compile_fast, materialize
from jaxpapers.data import multimodal
from jaxpapers.recsys import qarm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(variant="tiny", **overrides):
    overrides = {"train.progress": False, **overrides}
    return config_lib.override(
        config_lib.load_file(os.path.join(ROOT, "experiments", "configs", "qarm.py"), variant),
        overrides,
    )


# --------------------------------------------------------------------------- pair mining

# Items 1..6 in 2-D: 2 and 6 lie next to 1, 4 next to 3, 5 opposite 1.
_EMB = np.array([[0, 0], [1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0], [1, 0.05]], np.float32)
# The last two items of each sequence (5 and 6) are validation / test targets.
_SEQS = [np.array([1, 3, 2, 4, 6, 5]), np.array([3, 1, 4, 2, 5, 6]), np.array([2, 1, 5, 6])]


def test_mine_pairs_hand_case():
    pairs = qarm.mine_pairs(_SEQS, _EMB, window=2, min_count=2)
    # User2Item: each training target after the first with its most similar of the 2 previous.
    # user 0 [1,3,2,4]: 3<-{1}; 2<-{3,1}: 1; 4<-{2,3}: 3.  user 1 [3,1,4,2]: 1<-{3}; 4<-{1,3}:
    # 3; 2<-{4,1}: 1.  user 2 [2,1]: 1<-{2}.
    np.testing.assert_array_equal(
        pairs.user2item, [[3, 1], [2, 1], [4, 3], [1, 3], [4, 3], [2, 1], [1, 2]]
    )
    # Item2Item: pairs within 2 positions, distinct users: {1,2}: 3, {1,3}: 2, {2,4}: 2,
    # {3,4}: 2, {2,3}: 1, {1,4}: 1. Frequent (>= 2): 12, 13, 24, 34; best partner of
    # 1 -> 2 (cos .99 vs 0), 2 -> 1, 3 -> 4, 4 -> 3 (.99 vs .22).
    np.testing.assert_array_equal(pairs.item2item, [[1, 2], [3, 4]])
    assert qarm.mine_pairs(_SEQS, _EMB, window=2, min_count=3).item2item.tolist() == [[1, 2]]
    # users processed one at a time (a tiny memory budget): the same pairs
    small = qarm.mine_pairs(_SEQS, _EMB, window=2, min_count=2, budget=1)
    np.testing.assert_array_equal(small.all(), pairs.all())
    # window 1: 4 only sees 2 (user 0) and 1 (user 1), 2 sees 3 then 4.
    one = qarm.mine_pairs(_SEQS, _EMB, window=1, min_count=1)
    assert one.user2item.tolist() == [[3, 1], [2, 3], [4, 2], [1, 3], [4, 1], [2, 4], [1, 2]]


def test_mine_pairs_never_touches_held_out_targets():
    held_out = {5, 6}
    pairs = qarm.mine_pairs(_SEQS, _EMB, window=3, min_count=1)
    assert not held_out & set(pairs.all().ravel().tolist())
    # the same sequences without the cut would pair them (the test can fail)
    leaky = qarm.mine_pairs(_SEQS, _EMB, window=3, min_count=1, holdout=0)
    assert held_out <= set(leaky.all().ravel().tolist())


def test_mine_pairs_rejects_bad_input():
    with pytest.raises(ValueError, match="window must be >= 1"):
        qarm.mine_pairs(_SEQS, _EMB, window=0, min_count=1)
    with pytest.raises(ValueError, match="item ids must be in"):
        qarm.mine_pairs([np.array([1, 9, 2, 3, 4])], _EMB, window=2, min_count=1)


# --------------------------------------------------------------------------- aligned pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The tiny config's data, aligned embeddings and codes, made by the run's own stages."""
    config = _config()
    data = multimodal.load(config.data)
    cached = qarm.cached_embeddings(data)
    stage_dir = str(tmp_path_factory.mktemp("qarm"))
    aligned, stats = qarm.align_stage(config, data, cached, stage_dir)
    codes = qarm.codes_stage(config, aligned, "aligned", stage_dir)
    return config, data, cached, aligned, stats, codes, stage_dir


def _codes(aligned, config, seed):
    c = config.codes
    return qarm.quantize_items(
        aligned,
        vq_k=c.vq_k,
        rq_levels=tuple(c.rq_levels),
        kmeans_iters=c.kmeans_iters,
        seed=seed,
    )


def test_alignment_learns_and_is_reused(pipeline, monkeypatch):
    config, data, cached, aligned, stats, _, stage_dir = pipeline
    assert aligned.shape == (data.num_items + 1, config.align.dim)
    np.testing.assert_allclose(np.linalg.norm(aligned[1:], axis=1), 1.0, atol=1e-5)
    assert not aligned[0].any()
    assert stats["align_loss_last"] < stats["align_loss_first"]
    # a rerun loads the saved stage outputs: nothing is recomputed
    monkeypatch.setattr(qarm, "train_aligner", None)
    monkeypatch.setattr(qarm, "quantize_items", None)
    again, stats_again = qarm.align_stage(config, data, cached, stage_dir)
    np.testing.assert_array_equal(again, aligned)
    assert stats_again == stats
    assert qarm.codes_stage(config, again, "aligned", stage_dir).rq.tolist() == (
        pipeline[5].rq.tolist()
    )


def test_rq_residual_norms_shrink_level_by_level(pipeline):
    aligned, codes = pipeline[3], pipeline[5]
    norms = codes.residual_norms
    assert len(norms) == len(codes.rq_sizes) + 1
    assert np.all(np.diff(norms) < 0), norms
    # the last norm is the reconstruction error of the decoded codes (float64 NumPy)
    recon = sum(np.float64(b)[codes.rq[1:, i]] for i, b in enumerate(codes.rq_codebooks))
    np.testing.assert_allclose(
        norms[-1], np.linalg.norm(aligned[1:] - recon, axis=1).mean(), rtol=1e-5
    )


def test_codes_deterministic_for_a_seed(pipeline):
    config, aligned, codes = pipeline[0], pipeline[3], pipeline[5]
    same = _codes(aligned, config, seed=config.seed)
    np.testing.assert_array_equal(same.rq, codes.rq)
    np.testing.assert_array_equal(same.vq, codes.vq)
    other = _codes(aligned, config, seed=config.seed + 1)
    assert (other.rq != codes.rq).any()


def test_vq_codes_are_the_nearest_other_items(pipeline):
    aligned, codes = pipeline[3], pipeline[5]
    x = np.float64(aligned[1:])
    sim = x @ x.T  # unit rows: cosine
    np.fill_diagonal(sim, -np.inf)
    k = codes.vq.shape[1]
    want = np.argsort(-sim, axis=1, kind="stable")[:, :k] + 1
    np.testing.assert_array_equal(codes.vq[1:], want)
    assert (codes.vq[1:] != np.arange(1, len(x) + 1)[:, None]).all()
    # computed in row chunks (the last one padded), the answer is the same
    np.testing.assert_array_equal(qarm.vq_codes(aligned[1:], k, chunk=16) + 1, codes.vq[1:])


def test_items_sharing_an_rq_prefix_are_closer(pipeline):
    aligned, codes = pipeline[3], pipeline[5]
    x, rq = np.float64(aligned[1:]), codes.rq[1:]
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    off = ~np.eye(len(x), dtype=bool)
    same1 = (rq[:, None, 0] == rq[None, :, 0]) & off
    same2 = same1 & (rq[:, None, 1] == rq[None, :, 1])
    assert same2.any()
    assert dist[same2].mean() < dist[same1].mean() < dist[off & ~same1].mean()


# --------------------------------------------------------------------------- ranker gradients


def _batch():
    return {
        "user": jnp.array([0, 1]),
        "history": jnp.array([[0, 0, 1, 2], [0, 3, 1, 2]]),
        "target": jnp.array([3, 4]),
        "label": jnp.array([1.0, 0.0]),
    }


class _BothContents(nnx.Module):
    """Codes and a frozen embedding side by side: one ranker (one compile) exercises both."""

    def __init__(self, codes: qarm.QuantitativeCodes, frozen: qarm.FrozenContent):
        self.codes, self.frozen = codes, frozen
        self.out_dim = codes.out_dim + frozen.out_dim

    def __call__(self, ids):
        return jnp.concatenate([self.codes(ids), self.frozen(ids)], axis=-1)


def test_gradients_reach_code_tables_not_frozen_embeddings():
    num_items = 7
    vq = np.zeros((num_items + 1, 2), np.int32)
    vq[1:] = [[2, 3], [1, 3], [1, 2], [5, 6], [4, 6], [4, 5], [5, 6]]
    rq = np.zeros((num_items + 1, 2), np.int32)
    rq[1:] = [[0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 1], [2, 2]]
    cached = np.random.default_rng(0).normal(size=(num_items + 1, 5)).astype(np.float32)

    def make():
        rngs = nnx.Rngs(0)
        content = _BothContents(
            qarm.QuantitativeCodes(vq, rq, (3, 4), 3, rngs=rngs),
            qarm.FrozenContent(cached, 3, rngs=rngs),
        )
        return qarm.QARMRanker(
            num_items, content, dim=4, id_dim=3, hidden=(4,), attention_hidden=(4,), rngs=rngs
        )

    model = materialize(make)  # weights from NumPy (no init compile); Frozen values restored:
    model.content.codes.vq[...] = jnp.asarray(vq)
    model.content.codes.rq[...] = jnp.asarray(rq)
    model.content.frozen.embeddings[...] = jnp.asarray(cached)
    graphdef, state = nnx.split(model)

    def grads(state, batch):
        def loss(m):
            logits, _ = m(batch)
            return jnp.mean((logits - batch["label"]) ** 2)

        return nnx.grad(loss, argnums=nnx.DiffState(0, nnx.Param))(nnx.merge(graphdef, state))

    g = compile_fast(grads, state, _batch())(state, _batch())
    flat = {"/".join(map(str, p)): np.abs(np.asarray(v[...])) for p, v in nnx.to_flat_state(g)}
    # the Frozen codes and cached embedding are not differentiated at all
    assert not {"content/codes/vq", "content/codes/rq", "content/frozen/embeddings"} & set(flat)
    assert flat["content/frozen/proj/kernel"].sum() > 0

    used_items = [1, 2, 3, 4]  # in the batch's histories and targets
    vq_rows = sorted(set(vq[used_items].ravel()))  # [1, 2, 3, 5, 6]
    vq_grad = flat["content/codes/vq_table/embedding"].sum(1)
    assert (vq_grad[vq_rows] > 0).all()
    assert (np.delete(vq_grad, vq_rows) == 0).all()  # rows 0, 4 and 7: no used item's code
    for level in range(2):
        rows = sorted(set(rq[used_items, level]))
        g_level = flat[f"content/codes/rq_tables/{level}/embedding"].sum(1)
        assert (g_level[rows] > 0).all()
        assert (np.delete(g_level, rows) == 0).all()
    id_grad = flat["id_embed/embedding"].sum(1)
    assert (id_grad[1:5] > 0).all() and id_grad[0] == 0 and (id_grad[5:] == 0).all()


def test_factory_builds_placeholders_that_fill_frozen_replaces():
    num_items = 5
    codes = qarm.Codes(
        vq=np.arange(12, dtype=np.int32).reshape(6, 2) % 6,
        rq=np.arange(6, dtype=np.int32)[:, None] % 3,
        rq_sizes=(3,),
        rq_codebooks=(np.zeros((3, 2), np.float32),),
        residual_norms=np.ones(2),
    )
    cached = np.ones((num_items + 1, 4), np.float32)
    cfg = _config().model
    factory, values = qarm.make_factory("qarm", cached=cached, aligned=None, codes=codes)
    model = materialize(lambda: factory(cfg, None, nnx.Rngs(0)))
    state = qarm.fill_frozen(values)({"model": nnx.state(model)})
    np.testing.assert_array_equal(state["model"]["content"]["vq"][...], codes.vq)
    np.testing.assert_array_equal(state["model"]["content"]["rq"][...], codes.rq)
    # QARM proper: the codes are added beside the production ranker's cached embedding
    factory2, values2 = qarm.make_factory(
        "qarm", cached=cached, aligned=None, codes=codes, keep_cached=True
    )
    both = materialize(lambda: factory2(cfg, None, nnx.Rngs(0)))
    state2 = qarm.fill_frozen(values2)({"model": nnx.state(both)})["model"]["content"]
    np.testing.assert_array_equal(state2["codes"]["vq"][...], codes.vq)
    np.testing.assert_array_equal(state2["cached"]["embeddings"][...], cached)
    assert both.content.out_dim == 3 * cfg.code_dim  # [vq || rq || Linear(cached)]
    factory, values = qarm.make_factory("cached", cached=cached, aligned=None, codes=None)
    with pytest.raises(ValueError, match="no model state at"):
        qarm.fill_frozen(values)({"model": nnx.state(model)})  # the qarm model has no such leaf
    with pytest.raises(ValueError, match="needs aligned embeddings"):
        qarm.make_factory("aligned_cached", cached=cached, aligned=None, codes=None)


# --------------------------------------------------------------------------- configs


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="model.name must be one of"):
        qarm.validate(_config(**{"model.name": "qarm2"}))
    with pytest.raises(ValueError, match="align.steps must be >= 1"):
        qarm.validate(_config(**{"align.steps": 0}))
    with pytest.raises(ValueError, match="codes.rq_levels"):
        qarm.validate(_config(**{"codes.rq_levels": ()}))
    with pytest.raises(ValueError, match="unknown qarm variant"):
        _config("huge")
    with pytest.raises(KeyError, match="valid keys there"):
        _config(**{"align.stepz": 3})
    x = np.ones((11, 2), np.float32)
    with pytest.raises(ValueError, match=r"codes.rq_levels must be .* in \[1, 10\]"):
        qarm.quantize_items(x, vq_k=2, rq_levels=(16,), kmeans_iters=2, seed=0)
    with pytest.raises(ValueError, match=r"codes.vq_k must be in \[1, 9\]"):
        qarm.quantize_items(x, vq_k=10, rq_levels=(2,), kmeans_iters=2, seed=0)


def test_stage_outputs_of_other_settings_are_refused(tmp_path):
    qarm.check_meta(str(tmp_path), _config())
    qarm.check_meta(str(tmp_path), _config(**{"model.name": "cached"}))  # not a stage setting
    with pytest.raises(ValueError, match="use a new --workdir"):
        qarm.check_meta(str(tmp_path), _config(**{"codes.vq_k": 3}))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_run_end_to_end_and_resume(tmp_path):
    work = str(tmp_path / "qarm")
    final = qarm.run(_config(), work)
    for key in ("auc", "logloss", "rq_residual_l0", "rq_utilisation_l0", "align_loss_last"):
        assert np.isfinite(final[key]), key
    assert os.path.exists(os.path.join(work, "plots", "rq_residuals.png"))
    stamp = os.path.getmtime(os.path.join(work, "qarm", "aligned.npy"))
    again = qarm.run(_config(), work)
    assert again == final
    assert os.path.getmtime(os.path.join(work, "qarm", "aligned.npy")) == stamp
    cached = qarm.run(_config(**{"model.name": "cached"}), str(tmp_path / "cached"))
    assert "rq_residual_l0" not in cached and 0 < cached["auc"] < 1
