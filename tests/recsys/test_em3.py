"""EM3: Fusion-Q-Former shapes, LoRA at init and in training, the unique-item path, the
Content-ID-Contrastive loss, the pre-extracted baseline, config checks, the pre-training
cache and a tiny end-to-end run."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.configs import em3 as em3_config
from jaxpapers.core import testing
from jaxpapers.nn.lora import add_lora
from jaxpapers.recsys import em3, ranking

NUM_ITEMS = 30


@dataclasses.dataclass(frozen=True)
class FakeData:
    """The fields of MultimodalData that EM3's models read."""

    name: str
    num_items: int
    image_tokens: np.ndarray
    text_tokens: np.ndarray
    text_vocab: int
    modalities: tuple[str, ...] = ("text", "image")


def fake_data(num_items=NUM_ITEMS, patches=3, image_dim=5, text_len=4, vocab=20, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(num_items + 1, patches, image_dim)).astype(np.float32)
    text = rng.integers(1, vocab, size=(num_items + 1, text_len)).astype(np.int32)
    text[:, -1] = 0  # some padding in every text
    image[0], text[0] = 0.0, 0
    return FakeData("fake", num_items, image, text, vocab)


def tiny_config(**model):
    c = em3_config.get_config("tiny")
    c.model.dim, c.model.content_dim, c.model.qformer_dim = 4, 6, 4
    c.model.num_queries, c.model.qformer_layers, c.model.qformer_heads = 2, 1, 1
    c.model.hidden, c.model.attention_hidden = (4,), (4,)
    for key, value in model.items():
        setattr(c.model, key, value)
    return c


def rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


QUICK = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def quick_jit(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` with XLA's optimisations off (halves compile time
    of these tiny programs; the numbers do not depend on it)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=QUICK)


def init(make, seed=0):
    """``make()`` built abstractly and filled from NumPy: no initialisation compiles."""
    return testing.materialize(make, seed)


def random_core_values(config, data, seed=7):
    return em3.core_arrays(init(lambda: em3.make_core(config, data, nnx.Rngs(0)), seed))


def fresh_em3(config, data, core_values, lora_rank):
    """A fresh EM3 with the pre-trained core put in, as the trainer's ``pretrained`` hook does.

    The ranker is filled from NumPy; the adapters are REAL fresh ones: EM3.__init__ calls
    ``add_lora(core, rank)`` and so does this (eagerly, after the NumPy fill).
    """
    config.model.lora_rank = 0
    model = init(lambda: em3.make_model(config, data, nnx.Rngs(0)))
    config.model.lora_rank = lora_rank
    if lora_rank:
        assert add_lora(model.core, lora_rank, rngs=rngs(3)) > 0
    graphdef, state = nnx.split(model)
    values = em3.pretrained_values(config, data, core_values)
    return nnx.merge(graphdef, em3.inject({"model": state}, values)["model"])


@pytest.fixture(scope="module")
def setup():
    data = fake_data()
    config = tiny_config()
    values = random_core_values(config, data)
    return data, config, values, fresh_em3(config, data, values, lora_rank=2)


def test_fusion_qformer_output_shape_is_independent_of_token_count(setup):
    data, config, values, _ = setup
    core = em3.core_with(config, data, values)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32)
    short = jnp.asarray(rng.integers(1, 20, size=(2, 4)), jnp.int32)
    long = jnp.asarray(rng.integers(1, 20, size=(2, 20)), jnp.int32)

    def encode(image, text):
        return core(image, text)

    encode_short = quick_jit(encode, image, short)
    a = encode_short(image, short)
    encode_long = quick_jit(encode, image, long)
    b = encode_long(image, long)
    d = encode_long(image, jnp.pad(short, ((0, 0), (0, 16))))  # 16 padding ids after 4 real ones
    assert a.shape == b.shape == (2, config.model.content_dim)
    assert not np.allclose(a, b)  # the content is read, not ignored
    # text padding (id 0) is masked out of the context: padding the text changes nothing
    np.testing.assert_allclose(d, a, rtol=1e-5, atol=1e-6)
    # text is a bag of tokens; image patches carry their positions
    np.testing.assert_allclose(encode_short(image, short[:, ::-1]), a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(encode_short(image[:, ::-1], short), a, atol=1e-4)


@pytest.fixture(scope="module")
def contents(setup):
    """Item contents by every path of EM3.item_content, and the pre-trained core's, in one jit."""
    data, config, values, model = setup
    pretrained = em3.core_with(config, data, values)
    ids = np.array([[0, 0, 3, 7, 3], [7, 7, 1, 12, 3], [0, 12, 12, 1, 9]], np.int32)  # 6 distinct
    wide = np.concatenate([ids, ids + 3, ids + 9], axis=0)  # 45 ids >= 31 rows: catalogue path
    models = {}
    for bound in (7, 4):  # unique ids: all 6 fit (one fill slot) | overflow (9 and 12 dropped)
        models[bound] = nnx.merge(*nnx.split(model))
        models[bound].max_unique_items = bound

    def run(ids, wide):
        out = {bound: m.item_content(ids) for bound, m in models.items()}
        out[-1] = model.item_content(wide)  # 45 ids >= 31 catalogue rows: the catalogue path
        catalogue = jnp.arange(NUM_ITEMS + 1)
        image, text = jnp.asarray(data.image_tokens), jnp.asarray(data.text_tokens)
        out[-2] = pretrained(image[catalogue], text[catalogue])  # every item, one by one
        return out

    out = jax.device_get(quick_jit(run, ids, wide)(ids, wide))
    return ids, wide, out


def test_lora_adapters_are_zero_at_init_so_em3_starts_at_the_pretrained_core(setup, contents):
    model = setup[3]
    assert len(jax.tree.leaves(nnx.state(model.core, nnx.LoRAParam))) > 0
    _, wide, out = contents
    want = np.where(wide[..., None] != 0, out[-2][wide], 0.0)  # the padding item: no content
    np.testing.assert_allclose(out[-1], want, rtol=1e-5, atol=1e-6)


def test_unique_item_path_equals_encoding_every_item_directly(contents):
    ids, _, out = contents
    direct = np.where(ids[..., None] != 0, out[-2][ids], 0.0)
    np.testing.assert_allclose(out[7], direct, rtol=1e-5, atol=1e-6)
    # bound 4 < 6 distinct ids: the 4 smallest (0, 1, 3, 7) are exact, 9 and 12 get zeros
    overflow = np.isin(ids, [9, 12])
    np.testing.assert_allclose(out[4][~overflow], direct[~overflow], rtol=1e-5, atol=1e-6)
    assert np.all(out[4][overflow] == 0.0)


def _batch(b=4, length=5, seed=0):
    rng = np.random.default_rng(seed)
    history = rng.integers(1, NUM_ITEMS + 1, size=(b, length)).astype(np.int32)
    history[:, :2] = 0  # left padding
    return {
        "user": jnp.arange(b, dtype=jnp.int32),
        "history": jnp.asarray(history),
        "target": jnp.asarray(rng.integers(1, NUM_ITEMS + 1, size=b), jnp.int32),
        "label": jnp.asarray([1.0, 0.0] * (b // 2), jnp.float32),
    }


def test_em3_training_changes_only_lora_inside_the_core(setup):
    data, config, _, model = setup
    config.model.lora_rank = 2
    config.loss.contrastive_weight = 0.5
    wrt = em3.trainable(config)
    model = nnx.merge(*nnx.split(model))  # a copy: the fixture stays untouched
    model.contrastive_weight = 0.5
    graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.sgd(0.1), wrt=wrt)))

    def step(state, batch):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(m):
            logits, aux = m(batch, deterministic=False)
            bce = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
            return bce + sum(aux.values())

        opt.update(model, nnx.grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model))
        return nnx.state((model, opt))

    batch = _batch()
    step = quick_jit(step, state, batch)
    before = em3.flat_values(nnx.state(model))
    for _ in range(2):
        state = step(state, batch)
    after = em3.flat_values(state[0])
    lora = {k for k in before if k.startswith("core/") and k.endswith(("lora_a", "lora_b"))}
    assert lora
    core_base = {k for k in before if k.startswith("core/")} - lora
    assert any(k.endswith("kernel") for k in core_base)
    for k in core_base:  # frozen kernels, biases, embeddings, queries, norms: bit-identical
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert all(not np.array_equal(after[k], before[k]) for k in lora if k.endswith("lora_b"))
    for k in ("item_embedding/embedding", "content_adapter/kernel", "din/mlp/layers/0/kernel"):
        assert not np.array_equal(after[k], before[k]), k
    np.testing.assert_array_equal(after["text_tokens"], before["text_tokens"])


def test_trainable_filters():
    data = fake_data()
    cases = {
        ("em3", 2): lambda k: not k.startswith("core/") or k.endswith(("lora_a", "lora_b")),
        ("em3", 0): lambda k: True,  # full fine-tuning: the whole core trains
        ("pre_extracted", 2): lambda k: True,
    }
    for (name, rank), allowed in cases.items():
        config = tiny_config(name=name, lora_rank=rank)
        model = nnx.eval_shape(lambda c=config: em3.make_model(c, data, rngs()))
        keys = set(em3.flat_values(nnx.state(model, em3.trainable(config))))
        assert keys and all(allowed(k) for k in keys), (name, rank, sorted(keys))
        assert "image_tokens" not in keys and "text_tokens" not in keys and "features" not in keys
        if (name, rank) == ("em3", 0):
            assert "core/head/kernel" in keys and "core/text_embedding/embedding" in keys
        if name == "pre_extracted":  # no core at all; the table is Frozen, not a Param
            assert not any(k.startswith("core/") for k in em3.flat_values(nnx.state(model)))
            assert isinstance(model.features, ranking.Frozen)
            assert not isinstance(model.features, nnx.Param)


def test_content_id_contrastive_is_log_batch_when_all_embeddings_are_equal():
    data = fake_data()
    config = tiny_config(name="pre_extracted")
    config.loss.contrastive_weight = 0.5
    model = init(lambda: em3.make_model(config, data, nnx.Rngs(0)))
    model.item_embedding.embedding[...] = jnp.ones_like(model.item_embedding.embedding[...])
    model.content_adapter.kernel[...] = jnp.zeros_like(model.content_adapter.kernel[...])
    model.content_adapter.bias[...] = jnp.full_like(model.content_adapter.bias[...], 2.0)
    batch = _batch(b=6)
    graphdef, state = nnx.split(model)
    _, aux = quick_jit(lambda s, b: nnx.merge(graphdef, s)(b), state, batch)(state, batch)
    assert float(aux["content_id_contrastive"]) == pytest.approx(0.5 * math.log(6), rel=1e-5)
    config.loss.contrastive_weight = 0.0  # the ablation: no aux term at all
    assert nnx.eval_shape(lambda: em3.make_model(config, data, rngs())(batch)[1]) == {}


@pytest.mark.parametrize(
    "key,value",
    [
        ("model.name", "em4"),
        ("model.lora_rank", -1),
        ("model.num_queries", 0),
        ("model.qformer_heads", 3),  # 8 is not a multiple of 3
        ("loss.contrastive_weight", -0.1),
        ("loss.temperature", 0.0),
        ("pretrain.steps", -5),
        ("model.max_unique_items", -1),
    ],
)
def test_bad_config_raises(key, value):
    config = em3_config.get_config("tiny")
    section, name = key.split(".")
    setattr(getattr(config, section), name, value)
    with pytest.raises(ValueError, match=name):
        em3.validate(config)


def test_config_is_locked_and_variants_checked():
    config = em3_config.get_config("tiny")
    with pytest.raises(AttributeError):
        config.model.lora_rnak = 2
    with pytest.raises(ValueError, match="variant"):
        em3_config.get_config("huge")
    em3.validate(em3_config.get_config("default"))
    em3.validate(em3_config.get_config("paper"))


def test_inject_rejects_arrays_without_a_place():
    state = {"model": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
    with pytest.raises(ValueError, match="no place"):
        em3.inject(state, {"kernel": np.zeros((2, 3)), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="kernel"):
        em3.inject(state, {"kernel": np.zeros((3, 2))})


def test_pretrained_core_is_cached_and_redone_when_settings_change(tmp_path, monkeypatch):
    data = fake_data()
    calls = []

    def fake_pretrain(config, data):
        calls.append(config.pretrain.steps)
        return {"head/kernel": np.full((2, 2), config.pretrain.steps, np.float32)}, {"x": 1.0}

    monkeypatch.setattr(em3, "pretrain_core", fake_pretrain)
    config = tiny_config()
    first = em3.cached_pretrained_core(config, data, str(tmp_path))
    second = em3.cached_pretrained_core(config, data, str(tmp_path))
    assert calls == [config.pretrain.steps]
    assert (tmp_path / "em3" / "pretrained.npz").exists()
    np.testing.assert_array_equal(first[0]["head/kernel"], second[0]["head/kernel"])
    assert second[1] == {"x": 1.0}
    config.pretrain.steps += 1
    em3.cached_pretrained_core(config, data, str(tmp_path))
    assert calls == [config.pretrain.steps - 1, config.pretrain.steps]


@pytest.mark.slow
def test_tiny_end_to_end_and_resume(tmp_path):
    config = em3_config.get_config("tiny")
    config.train.progress = False
    final = em3.run(config, str(tmp_path))
    assert 0.0 <= final["auc"] <= 1.0 and final["logloss"] > 0
    assert final["pretrain_loss_last"] < final["pretrain_loss_first"]
    assert final["num_trainable"] < final["num_params"]  # the core's base weights are frozen
    again = em3.run(config, str(tmp_path))  # resumes: cached core, last checkpoint
    assert again["auc"] == final["auc"] and again["logloss"] == final["logloss"]
    config.model.name = "pre_extracted"
    base = em3.run(config, str(tmp_path / "pre"))
    assert base["pretrain_loss_last"] == final["pretrain_loss_last"]


@pytest.mark.slow
def test_lora_shrinks_the_compiled_train_state():
    config = em3_config.get_config("tiny")
    data = fake_data(num_items=200)
    with_lora = em3.core_memory(config, lora=True, data=data, batch_size=32, history_len=16)
    full = em3.core_memory(config, lora=False, data=data, batch_size=32, history_len=16)
    assert with_lora["trainable_params"] < full["trainable_params"]
    # the train state (weights + Adam moments of what trains) shrinks; activations need not
    # (the adapters' inputs are still kept for backprop), so the peak is only reported
    assert with_lora["argument"] < full["argument"]
    assert with_lora["peak_bytes"] > 0 and full["peak_bytes"] > 0
