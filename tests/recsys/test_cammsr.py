"""CAMMSR: gate, losses against NumPy, the modality swap, ablations and the SASRec reduction.

Compiles are the cost on a CPU: every model is initialised under one ``jax.jit`` and each
fixture runs ONE jitted probe whose outputs several tests check.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core import config as config_lib
from jaxpapers.data import multimodal
from jaxpapers.recsys import cammsr, ranking

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NI, L, C, D, F_TEXT, F_IMAGE = 9, 6, 3, 8, 3, 5
SEQUENCES = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [2, 9, 4, 1], [7, 3, 5, 6, 8]]
# Left-padded inputs/targets: row 0 has 2 items, row 3 a single one (nothing to swap with).
INPUTS = np.array(
    [[0, 0, 0, 0, 1, 2], [4, 5, 6, 7, 8, 9], [0, 0, 2, 9, 4, 1], [0, 0, 0, 0, 0, 7]], np.int32
)
TARGETS = np.array(
    [[0, 0, 0, 0, 2, 3], [5, 6, 7, 8, 9, 3], [0, 0, 9, 4, 1, 6], [0, 0, 0, 0, 0, 3]], np.int32
)


def _config(variant="tiny", **overrides):
    path = os.path.join(ROOT, "experiments", "configs", "cammsr.py")
    return config_lib.override(config_lib.load_file(path, variant), overrides)


def _data() -> multimodal.MultimodalData:
    rng = np.random.default_rng(0)
    base = multimodal.from_sequences(SEQUENCES, num_items=NI)
    text = rng.normal(size=(NI + 1, F_TEXT)).astype(np.float32)
    image = rng.normal(size=(NI + 1, F_IMAGE)).astype(np.float32)
    text[0] = image[0] = 0.0
    category = rng.integers(0, C, size=NI + 1).astype(np.int32)
    category[0] = 0
    return dataclasses.replace(
        base,
        modalities=("text", "image"),
        text_features=text,
        image_features=image,
        item_category=category,
        num_categories=C,
    )


DATA = _data()
REPEATS, SWAP_RATE = 16, 0.4  # swap plans: 16 independent draws of each row of INPUTS


def _next_item_case():
    """next_item_loss inputs: states [2, 3, 4], table [5, 4], targets [2, 3] (0 = padding)."""
    rng = np.random.default_rng(1)
    states = rng.normal(size=(2, 3, 4)).astype(np.float32)
    states[0, 0] = 1e3  # the state of a padding target
    table = rng.normal(size=(5, 4)).astype(np.float32)
    return states, table, np.array([[0, 3, 1], [2, 4, 4]], np.int32)


NEXT_ITEM_CASE = _next_item_case()


def _model(**kwargs) -> cammsr.CAMMSR:
    args = dict(
        features={"text": DATA.text_features, "image": DATA.image_features},
        item_category=DATA.item_category,
        num_categories=C,
        dim=D,
        num_layers=1,
        num_heads=2,
        max_len=L,
        dropout=0.0,
        category_weight=0.7,
        swap_weight=0.3,
        swap_rate=0.5,
        temperature=0.5,
    )
    args.update(kwargs)
    return cammsr.CAMMSR(NI, rngs=nnx.Rngs(0), **args)


def _materialize(make, seed: int = 0):
    """``make()``'s graph and a state filled from NumPy: no initialisation is compiled.

    Parameters ~ N(0, 1/fan-in); frozen features and category labels are the data's; the
    swap stream gets a fixed key. (Eager or jitted Flax init costs seconds on a busy CPU.)
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(abstract):
        shape, dtype = var.get_value().shape, var.get_value().dtype
        if isinstance(var, nnx.Param):
            fan = int(np.prod(shape[:-1])) if len(shape) >= 2 else 10
            value = jnp.asarray(rng.normal(size=shape) / np.sqrt(fan), dtype)
        elif isinstance(var, ranking.Frozen):
            value = jnp.asarray(getattr(DATA, f"{path[-1]}_features"))
        elif isinstance(var, cammsr.CategoryLabel):
            value = jnp.asarray(DATA.item_category)
        elif isinstance(var, nnx.RngKey):
            value = jax.random.key(seed, impl="rbg")
        elif isinstance(var, nnx.RngCount):
            value = jnp.zeros(shape, dtype)
        else:
            raise TypeError(f"unexpected variable {path}: {type(var).__name__}")
        flat.append((path, var.replace(value)))
    return graphdef, nnx.from_flat_state(flat)


def _compile(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` without XLA's optimisation passes.

    The test programs are tiny and run once; at the default level XLA:CPU spends ~2x longer
    compiling them (measured 9 s -> 4.6 s of CPU for a CAMMSR gradient).
    """
    options = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    return jax.jit(fn).lower(*args).compile(compiler_options=options)


def _batch():
    return {"inputs": jnp.asarray(INPUTS), "targets": jnp.asarray(TARGETS)}


def _with_scrambled_padding(state):
    """The same state with the padding rows (id embedding row 0, feature rows 0) changed."""
    out = []
    for path, var in nnx.to_flat_state(state):
        if path in {("id_embedding", "embedding"), ("features", "text"), ("features", "image")}:
            var = var.replace(var.get_value().at[0].set(5.0 if path[0] == "id_embedding" else -3.0))
        out.append((path, var))
    return nnx.from_flat_state(out)


# --------------------------------------------------------------------------- full model


@pytest.fixture(scope="module")
def full():
    graphdef, state = _materialize(_model)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), state, _with_scrambled_padding(state))

    def probe(state, batch, key):
        model = nnx.merge(graphdef, state)
        items = batch["inputs"]
        mask = items > 0
        loss, metrics = model.losses(batch, deterministic=True)
        table, weights, cat_logits = model._all_items()
        all_inputs = model.item_inputs(jnp.arange(NI + 1))
        many = jnp.tile(items, (REPEATS, 1))  # many independent draws per row
        plan = cammsr.swap_plan(key, many, 2, SWAP_RATE)
        return {
            "pure_next_item": cammsr.next_item_loss(*NEXT_ITEM_CASE),
            "loss": loss,
            "metrics": metrics,
            "table": table,
            "weights": weights,
            "gate_weights": model.gate_weights(),
            "cat_logits": cat_logits,
            "experts": model.camoe.expert_outputs(all_inputs),
            "encode": model.encode(items, deterministic=True),
            "encode_via_table": model._encode_reps(table[items], mask, True),
            "inputs": model.item_inputs(many),
            "swapped": model.swapped_inputs(many, plan),
            "plan": plan,
        }

    # one compile: the model and its padding-scrambled twin, vmapped
    args = (stacked, _batch(), jax.random.key(3, impl="rbg"))
    both = jax.device_get(_compile(jax.vmap(probe, in_axes=(0, None, None)), *args)(*args))
    out = jax.tree.map(lambda x: x[0], both)
    twin = jax.tree.map(lambda x: x[1], both)
    return nnx.merge(graphdef, state), out, twin


def test_expert_set_and_gate_weights_sum_to_one(full):
    model, out, _ = full
    assert model.expert_names == (
        "id",
        "text",
        "image",
        "id+text",
        "id+image",
        "text+image",
        "id+text+image",
    )
    w = out["gate_weights"]
    assert w.shape == (NI + 1, 7)
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert w[1:].std(0).max() > 1e-4  # weights depend on the item
    # item representation = sum_k w_k e_k (row 0, padding, is zero)
    mix = np.einsum("ik,ikd->id", w, out["experts"])
    np.testing.assert_allclose(out["table"][1:], mix[1:], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["table"][0], 0.0)


def test_next_item_loss_matches_numpy_and_padding_never_contributes(full):
    _, out, twin = full
    states = np.asarray(out["encode_via_table"], np.float64)
    table = np.asarray(out["table"], np.float64)
    logits = states @ table.T
    logits[..., 0] = -np.inf
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    logp -= logits.max(-1, keepdims=True)
    rows, cols = np.nonzero(TARGETS)
    expected = -np.mean(logp[rows, cols, TARGETS[rows, cols]])
    np.testing.assert_allclose(out["metrics"]["next_item"], expected, rtol=1e-5)
    # the padding rows of the id table and of the features play no part
    for key in ("loss", "table", "encode"):
        np.testing.assert_allclose(twin[key], out[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(twin["metrics"]["swap"], out["metrics"]["swap"], rtol=1e-6)
    # eval-time encode (CAMoE per position) equals the training path (gathered table rows)
    np.testing.assert_allclose(out["encode"], out["encode_via_table"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["encode"][INPUTS == 0], 0.0)


def test_pure_next_item_loss_against_numpy(full):
    _, out, _ = full
    states, table, targets = (np.asarray(a, np.float64) for a in NEXT_ITEM_CASE)
    logits = states @ table.T
    z = logits[..., 1:]  # the padding column never competes
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    valid = [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # (0, 0) is a padding target ...
    assert states[0, 0, 0] == 1e3  # ... whose huge state would dominate if it counted
    expected = -np.mean([logp[b, t, int(targets[b, t]) - 1] for b, t in valid])
    np.testing.assert_allclose(out["pure_next_item"], expected, rtol=1e-5)


def test_category_loss_matches_numpy_and_total_adds_the_weights(full):
    model, out, _ = full
    logits = np.asarray(out["cat_logits"], np.float64)[INPUTS]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = DATA.item_category[INPUTS]
    mask = INPUTS > 0
    expected = -np.take_along_axis(logp, labels[..., None], -1)[..., 0][mask].mean()
    m = out["metrics"]
    np.testing.assert_allclose(m["category"], expected, rtol=1e-5)
    assert m["swap"] > 0
    np.testing.assert_allclose(
        out["loss"], m["next_item"] + 0.7 * m["category"] + 0.3 * m["swap"], rtol=1e-6
    )
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert "features" not in params and "item_category" not in params  # frozen, not trained


def test_swap_changes_only_the_chosen_modality_with_items_of_the_same_row(full):
    model, out, _ = full
    before, after, plan = out["inputs"], out["swapped"], dataclasses.asdict(out["plan"])
    np.testing.assert_array_equal(after["id"], before["id"])  # ID embeddings untouched
    swapped, source, modality = plan["swapped"], plan["source"], plan["modality"]
    many = np.tile(INPUTS, (REPEATS, 1))
    assert swapped.any()
    for b in range(len(many)):
        for index, m in enumerate(model.modalities):
            changed = np.any(after[m][b] != before[m][b], axis=-1)
            if index != modality[b]:
                assert not changed.any()
                continue
            assert not (changed & ~swapped[b]).any()
            for t in np.nonzero(swapped[b])[0]:
                donor = many[b, source[b, t]]
                assert donor != 0 and donor != many[b, t]
                np.testing.assert_array_equal(after[m][b, t], model.features[m][...][donor])


def test_swap_plan_properties(full):
    _, out, _ = full
    plan = out["plan"]
    swapped = plan.swapped.reshape(REPEATS, len(INPUTS), L)
    source = plan.source.reshape(REPEATS, len(INPUTS), L)
    valid = INPUTS > 0
    n = valid.sum(-1)
    want = np.where(n >= 2, np.maximum(1, np.round(SWAP_RATE * n)), 0)
    np.testing.assert_array_equal(swapped.sum(-1), np.broadcast_to(want, swapped.shape[:2]))
    assert not (swapped & ~valid).any()
    pos = np.arange(L)
    assert np.where(swapped, source != pos, source == pos).all()
    rows = np.arange(len(INPUTS))[None, :, None]
    assert valid[rows, source][swapped].all()  # donors are real items of the same row
    assert set(plan.modality.tolist()) == {0, 1}
    # every valid position of row 1 gets swapped in some draw, from several donors
    assert swapped[:, 1].any(0).all()
    assert len(set(source[:, 1, 0][swapped[:, 1, 0]].tolist())) > 1


# --------------------------------------------------------------------------- reduction


def test_without_auxiliary_losses_cammsr_reduces_to_sasrec_mm():
    cfg = _config(**{"model.name": "sasrec_mm", "model.dim": D, "model.num_heads": 2})
    cfg.model.dropout = 0.0

    def reduced():
        return _model(
            experts=("id+text+image",),
            category_weight=0.0,
            swap_weight=0.0,
            dropout=0.0,
        )

    def baseline():
        return cammsr.make_model(cfg.model, DATA, nnx.Rngs(0), max_len=L)

    graphdef, state = _materialize(reduced)
    base_def, base_abstract = nnx.split(nnx.eval_shape(baseline))
    base = nnx.merge(base_def, base_abstract)
    assert base.expert_names == ("id+text+image",)
    assert base.camoe.category_head is None and base.swap_rngs is None
    # the baseline's variables are a subset of the reduced CAMMSR's: share them
    base_paths = [path for path, _ in nnx.to_flat_state(base_abstract)]
    shapes = {path: var.get_value().shape for path, var in nnx.to_flat_state(state)}
    for path, var in nnx.to_flat_state(base_abstract):
        assert shapes.get(path) == var.get_value().shape, path

    def both(state, batch):
        flat = dict(nnx.to_flat_state(state))
        base_state = nnx.from_flat_state([(p, flat[p]) for p in base_paths])

        def go(gd, st):
            model = nnx.merge(gd, st)
            fn = nnx.value_and_grad(lambda m: m.losses(batch, deterministic=False), has_aux=True)
            (loss, metrics), grads = fn(model)
            return loss, metrics, nnx.to_pure_dict(grads)

        # one program over the same buffers: XLA shares the common computation
        return go(graphdef, state), go(base_def, base_state)

    args = (state, _batch())
    (loss, metrics, grads), (base_loss, base_metrics, base_grads) = jax.device_get(
        _compile(both, *args)(*args)
    )
    assert metrics["category"] > 0  # computed, but weighted by 0
    assert base_metrics["category"] == 0 and base_metrics["swap"] == 0
    np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
    np.testing.assert_allclose(loss, metrics["next_item"], rtol=0)
    shared = dict(nnx.to_flat_state(nnx.State(base_grads)))
    for path, g in nnx.to_flat_state(nnx.State(grads)):
        if path in shared:
            np.testing.assert_allclose(g, shared[path], rtol=1e-5, atol=1e-7, err_msg=str(path))
        else:  # the category predictor: present, but its loss weight is 0
            assert path[:2] == ("camoe", "category_head"), path
            np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------- config


def _abstract(name, **model):
    cfg = _config(**{"model.name": name, **{f"model.{k}": v for k, v in model.items()}})
    return nnx.eval_shape(lambda: cammsr.make_model(cfg.model, DATA, nnx.Rngs(0), max_len=L))


def test_each_ablation_flag_removes_its_component():
    full = _abstract("cammsr")
    assert full.camoe.category_head is not None and full.swap_rngs is not None
    assert full.camoe.queries.shape == (C, 16)
    no_cat = _abstract("cammsr", category_guidance=False)
    assert no_cat.camoe.category_head is None and no_cat.item_category is None
    assert no_cat.camoe.queries.shape == (1, 16)  # one learned query
    assert len(no_cat.expert_names) == 7
    no_swap = _abstract("cammsr", modality_swap=False, swap_head=True)
    assert no_swap.swap_rngs is None and no_swap.swap_head is None
    assert no_swap.camoe.category_head is not None
    assert full.swap_head is None and _abstract("cammsr", swap_head=True).swap_head is not None
    no_syn = _abstract("cammsr", synergy_experts=False)
    assert no_syn.expert_names == ("id", "text", "image")
    sasrec = _abstract("sasrec")
    assert sasrec.expert_names == ("id",) and sasrec.camoe.gate is None
    assert len(sasrec.features) == 0 and sasrec.swap_rngs is None
    # the single-query gate traces (the swap-free path runs in the reduction test)
    _, metrics = nnx.eval_shape(lambda m: m.losses(_batch()), no_cat)
    assert metrics["category"].shape == metrics["swap"].shape == ()


def test_text_only_data_gets_text_experts_only():
    assert cammsr.expert_names(("text",)) == ("id", "text", "id+text")
    assert cammsr.concat_expert_name(("image",)) == "id+image"
    assert cammsr.expert_names((), synergy=True) == ("id",)


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="model.name must be one of"):
        _abstract("bert4rec")
    with pytest.raises(ValueError, match="swap_rate"):
        nnx.eval_shape(lambda: _model(swap_rate=0.0))
    with pytest.raises(ValueError, match="temperature"):
        nnx.eval_shape(lambda: _model(temperature=0.0))
    with pytest.raises(ValueError, match="reads"):
        nnx.eval_shape(
            lambda: _model(features={"text": DATA.text_features}, experts=("id", "image"))
        )
    with pytest.raises(ValueError, match="bad expert name"):
        nnx.eval_shape(lambda: _model(experts=("id", "audio")))
    with pytest.raises(ValueError, match="modality_swap needs"):
        nnx.eval_shape(lambda: _model(features={}, experts=("id",)))
    with pytest.raises(ValueError, match="unknown norm"):
        nnx.eval_shape(lambda: _model(norm="rmsnorm"))
    with pytest.raises(ValueError, match="unknown cammsr variant"):
        _config("huge")
    with pytest.raises(AttributeError):
        _config().model.catgory_guidance = False  # locked: a misspelt key is an error


def test_modality_shares_known_answer():
    names = ("id", "text", "image", "text+image")
    weights = np.array(
        [[1, 0, 0, 0], [0.1, 0.6, 0.2, 0.1], [0.1, 0.2, 0.6, 0.1], [0.5, 0.5, 0.0, 0.0]]
    )
    shares = cammsr.modality_shares(weights, names, np.array([0, 0, 1, 1]), 3)
    np.testing.assert_allclose(shares["text"][:2], [0.7, (0.3 + 0.5) / 2])
    np.testing.assert_allclose(shares["image"][:2], [0.3, (0.7 + 0.0) / 2])
    assert np.isnan(shares["text"][2]) and shares["count"].tolist() == [1, 2, 0]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow  # ~30 s on 2 CPU cores
def test_tiny_run_end_to_end(tmp_path):
    final = cammsr.run(_config(**{"train.progress": False}), str(tmp_path))
    for k in (5, 10, 20):
        assert 0.0 <= final[f"ndcg@{k}"] <= final[f"hr@{k}"] <= 1.0
    assert final["hr@5"] <= final["hr@10"] <= final["hr@20"]
    assert -1.0 <= final["gate_text_reliance_corr"] <= 1.0
    assert os.path.getsize(tmp_path / "plots" / "modality_weights.png") > 10_000
