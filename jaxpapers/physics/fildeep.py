"""FilDeep: fidelity-based deep learning for large deformation (arXiv 2601.10031), Flax NNX.

Faithful to passthings/FilDeep (``Transformer_based_FilDeep/*.py``, ``core/*.py``,
``main.py``); component names are the reference's. Same inputs and scaling as
:mod:`jaxpapers.physics.ladeep`, but only the *unloaded* (springback) strip is predicted.

* :class:`FilDeepLF` — the low-fidelity backbone (the reference's ``Transformer``):
  LaDEEP's curve encoders (``cle_for_strip``, ``cle_for_mould``), section encoder/decoder
  (``cse``, ``csd``), motion-parameter encoder (``mpe``) and section fusion (``wrfe``, the
  same Linear 512->E added to every strip token as LaDEEP's ``off``), then
  ``ecfe`` — the external condition ``Linear(2E -> E)([params ‖ mould])`` —,
  ``cross_attention`` (3 post-LN layers, 4 heads: query = external condition, keys = values =
  strip tokens; the condition is not updated between layers), ``self_attention`` (3 post-LN
  self-attention layers) and one decoder ``cld``. Returns ``(section_recon, unloaded)``.
* :class:`FilDeep` — ``.low`` (a :class:`FilDeepLF`) plus the high-fidelity modules:
  ``acf`` (:class:`AttentionCrossFidelity`, 2 layers, 4 heads) and ``add_norm``. On the HF
  path the frozen LF model gives the external condition ``c`` and its final strip features
  ``h``; ``acf`` runs ``y = AN(y + CrossAttn(q=c, kv=y)); y = AN(y + SelfAttn(y));
  y = AN_fc(y + FFN(y))`` per layer (learned positional offsets on ``c`` and ``h`` first);
  then ``LN(h + acf(c, h))`` is decoded by the frozen LF decoder ``low.cld``. The section
  decoder is not run on the HF path.
* Freezing: the reference sets ``requires_grad = False`` on every LF module for the HF
  forward and re-enables it for the LF forward. Here the HF path runs a copy of ``.low``
  whose whole state is behind ``jax.lax.stop_gradient``, so every LF parameter gets an
  exactly zero gradient from a HF loss; the LF path never touches ``acf``/``add_norm``, so
  they get zero gradient from a LF loss.
* :func:`param_group` reproduces ``main.py``'s three Adam optimizers: ``"section"``
  (``params_r``: names under ``low`` containing ``cse``/``csd``), ``"lf"`` (``params_p_low``:
  the rest of ``low``), ``"hf"`` (``params_p_high``: everything else). Schedule (``main.py``,
  ``config.ini``): per epoch one LF epoch (LF optimizers; loss ``loss_p(unloaded) +
  loss_r``) then one HF epoch (HF optimizer; ``loss_p`` on the HF prediction), lr 5e-4 (LF,
  section) and 1e-3 (HF), weight decay 5e-5, cosine per epoch; then HF-only fine-tuning with a
  fresh Adam at lr 5e-4. :func:`fildeep_loss` gives both losses.

Quirks kept from the reference: each ``acf`` layer uses the *same* ``add_norm`` LayerNorm
after its cross- and its self-attention (one LayerNorm, two uses); attention projections have
no bias; dropout is 0 (so there is none).

Choices where the reference is silent or we cannot follow it:

* Section encoder as in :mod:`jaxpapers.physics.ladeep` (small CNN by default, or a ResNet-18
  trained from scratch: no pretrained weights here). The reference keeps its pretrained
  ResNet frozen in both phases; ours trains with the ``"section"`` group.
* Batch norm in ``.low`` (decoder; ResNet backbone) follows ``train()``/``eval()`` on the LF
  path; on the HF path the frozen copy's running statistics are not written back (the HF
  path does not run the decoder, so with the CNN encoder there is no BN on it at all).

Parameter count of ``FilDeep()`` with the defaults (``section_shape=(64, 32)``, CNN section
encoder): 3,703,627, of which the HF modules (``acf`` + ``add_norm``) have 99,448.

Example::

    model = FilDeep(rngs=nnx.Rngs(0))
    recon, unloaded_lf = model(strip, mould, section, params, fidelity="low")
    unloaded_hf = model(strip, mould, section, params, fidelity="high")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import train as train_lib
from jaxpapers.data import pipeline
from jaxpapers.physics import ladeep, optim, stretch
from jaxpapers.physics.ladeep import (
    AddNorm,
    CharacteristicLineDecoder,
    CharacteristicLineEncoder,
    CrossSectionDecoder,
    CrossSectionEncoder,
    DeformationLayer,
    MotionParametersEncoder,
    MultiHeadAttention,
    ObjectFeatureFusioner,
    PositionalEncoding,
    PositionWiseFFN,
    UnloadingModule,
    loss_p,
    loss_r,
)

FIDELITIES = ("low", "high")


class ExternalConditionFusionEncoder(nnx.Module):
    """``Linear(2E -> E)([params tokens ‖ mould tokens])``: the external condition."""

    def __init__(self, *, emb_dim: int = 64, rngs: nnx.Rngs):
        self.fusion_fc = ladeep._linear(2 * emb_dim, emb_dim, rngs)

    def __call__(self, params: jax.Array, mould: jax.Array) -> jax.Array:
        return self.fusion_fc(jnp.concatenate([params, mould], axis=-1))


class CrossModule(nnx.Module):
    """Post-LN cross-attention layers: the strip tokens attend with the condition as query."""

    def __init__(
        self,
        *,
        num_layers: int = 3,
        num_heads: int = 4,
        fea_len: int = 64,
        seq_length: int = 60,
        rngs: nnx.Rngs,
    ):
        self.pos_encoding_x = PositionalEncoding(seq_length=seq_length)
        self.pos_encoding_y = PositionalEncoding(seq_length=seq_length)
        self.layers = nnx.List([self._layer(fea_len, num_heads, rngs) for _ in range(num_layers)])

    @staticmethod
    def _layer(fea_len: int, num_heads: int, rngs: nnx.Rngs) -> nnx.Module:
        return DeformationLayer(fea_len=fea_len, num_heads=num_heads, query_dim=fea_len, rngs=rngs)

    def __call__(self, condition: jax.Array, strip: jax.Array) -> jax.Array:
        x = self.pos_encoding_x(condition)
        y = self.pos_encoding_y(strip)
        for layer in self.layers:
            y = layer(x, y)
        return y


class SelfModule(UnloadingModule):
    """Post-LN self-attention layers (the same computation as LaDEEP's unloading stage)."""


class CrossFidelityLayer(nnx.Module):
    """Cross-attention (query = condition), self-attention, FFN; one LayerNorm shared by both
    attention residuals, as the reference."""

    def __init__(self, *, fea_len: int, num_heads: int, rngs: nnx.Rngs):
        kw = dict(query_dim=fea_len, kv_dim=fea_len, feature_dims=fea_len, num_heads=num_heads)
        self.attention_cross = MultiHeadAttention(**kw, rngs=rngs)
        self.attention_self = MultiHeadAttention(**kw, rngs=rngs)
        self.add_norm = AddNorm(fea_len, rngs=rngs)
        self.fc = PositionWiseFFN(fea_len, fea_len * num_heads // 2, fea_len, rngs=rngs)
        self.add_norm_fc = AddNorm(fea_len, rngs=rngs)

    def __call__(self, condition: jax.Array, y: jax.Array) -> jax.Array:
        y = self.add_norm(y, self.attention_cross(condition, y))
        y = self.add_norm(y, self.attention_self(y, y))
        return self.add_norm_fc(y, self.fc(y))


class AttentionCrossFidelity(CrossModule):
    """The cross-fidelity modules: positional offsets, then ``num_layers`` CrossFidelityLayers."""

    def __init__(
        self,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        fea_len: int = 64,
        seq_length: int = 60,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            num_layers=num_layers,
            num_heads=num_heads,
            fea_len=fea_len,
            seq_length=seq_length,
            rngs=rngs,
        )

    @staticmethod
    def _layer(fea_len: int, num_heads: int, rngs: nnx.Rngs) -> nnx.Module:
        return CrossFidelityLayer(fea_len=fea_len, num_heads=num_heads, rngs=rngs)


class FilDeepLF(nnx.Module):
    """Low-fidelity backbone: ``(strip, mould, section, params) -> (section_recon, unloaded)``.

    Example::

        lf = FilDeepLF(section_shape=(64, 32), rngs=nnx.Rngs(0))
        recon, unloaded = lf(strip, mould, section, params)
    """

    def __init__(
        self,
        *,
        input_length: int = 300,
        seq_length: int = 60,
        emb_dim: int = 64,
        cross_layers: int = 3,
        cross_heads: int = 4,
        self_layers: int = 3,
        self_heads: int = 4,
        motion_degrees: int = 6,
        section_shape: tuple[int, int] = (64, 32),
        section_encoder: str = "cnn",
        section_decoder_width: int = ladeep.SECTION_FEATURES,
        rngs: nnx.Rngs,
    ):
        self.input_length, self.motion_degrees = input_length, motion_degrees
        self.section_shape = ladeep._check_section_shape(section_shape)
        cle = dict(input_length=input_length, seq_length=seq_length, emb_dim=emb_dim, rngs=rngs)
        self.cle_for_mould = CharacteristicLineEncoder(**cle)
        self.cle_for_strip = CharacteristicLineEncoder(**cle)
        self.cse = CrossSectionEncoder(
            backbone=section_encoder, section_shape=self.section_shape, rngs=rngs
        )
        self.csd = CrossSectionDecoder(
            section_shape=self.section_shape, width=section_decoder_width, rngs=rngs
        )
        self.wrfe = ObjectFeatureFusioner(cl_dim=emb_dim, rngs=rngs)
        self.mpe = MotionParametersEncoder(
            seq_length=seq_length, emb_dim=emb_dim, motion_degrees=motion_degrees, rngs=rngs
        )
        self.ecfe = ExternalConditionFusionEncoder(emb_dim=emb_dim, rngs=rngs)
        self.cross_attention = CrossModule(
            num_layers=cross_layers,
            num_heads=cross_heads,
            fea_len=emb_dim,
            seq_length=seq_length,
            rngs=rngs,
        )
        self.self_attention = SelfModule(
            num_layers=self_layers,
            num_heads=self_heads,
            fea_len=emb_dim,
            seq_length=seq_length,
            rngs=rngs,
        )
        self.cld = CharacteristicLineDecoder(
            seq_length=seq_length, emb_dim=emb_dim, output_length=input_length, rngs=rngs
        )

    check_inputs = ladeep.LaDEEP.check_inputs

    def features(self, strip, mould, section, params) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(external condition, final strip tokens, section feature)``, before decoding."""
        self.check_inputs(strip, mould, section, params)
        s = self.cle_for_strip(strip)
        m = self.cle_for_mould(mould)
        f = self.cse(section)
        p = self.mpe(params)
        s = self.wrfe(s, f)
        condition = self.ecfe(p, m)
        s = self.cross_attention(condition, s)
        s = self.self_attention(s)
        return condition, s, f

    def __call__(self, strip, mould, section, params) -> tuple[jax.Array, jax.Array]:
        _, s, f = self.features(strip, mould, section, params)
        return self.csd(f), self.cld(s)


class FilDeep(nnx.Module):
    """LF backbone ``.low`` + cross-fidelity modules; ``fidelity`` picks the path.

    ``fidelity="low"`` returns ``(section_recon, unloaded)`` from ``.low``;
    ``fidelity="high"`` returns ``unloaded`` from the HF path with ``.low`` frozen.
    """

    def __init__(
        self,
        *,
        input_length: int = 300,
        seq_length: int = 60,
        emb_dim: int = 64,
        cross_layers: int = 3,
        cross_heads: int = 4,
        self_layers: int = 3,
        self_heads: int = 4,
        motion_degrees: int = 6,
        acf_layers: int = 2,
        acf_heads: int = 4,
        section_shape: tuple[int, int] = (64, 32),
        section_encoder: str = "cnn",
        section_decoder_width: int = ladeep.SECTION_FEATURES,
        rngs: nnx.Rngs,
    ):
        self.low = FilDeepLF(
            input_length=input_length,
            seq_length=seq_length,
            emb_dim=emb_dim,
            cross_layers=cross_layers,
            cross_heads=cross_heads,
            self_layers=self_layers,
            self_heads=self_heads,
            motion_degrees=motion_degrees,
            section_shape=section_shape,
            section_encoder=section_encoder,
            section_decoder_width=section_decoder_width,
            rngs=rngs,
        )
        self.acf = AttentionCrossFidelity(
            num_layers=acf_layers,
            num_heads=acf_heads,
            fea_len=emb_dim,
            seq_length=seq_length,
            rngs=rngs,
        )
        self.add_norm = AddNorm(emb_dim, rngs=rngs)

    def __call__(self, strip, mould, section, params, *, fidelity: str):
        """``"low"``: ``(recon, unloaded)``; ``"high"``: ``unloaded``; ``"both"``: all three.

        ``"both"`` runs the LF encoders once for a training step that needs either
        loss: ``(recon, unloaded_lf, unloaded_hf)``, the HF head fed the LF features
        behind ``stop_gradient`` (the same values and zero LF gradient as ``"high"``).
        """
        if fidelity not in FIDELITIES + ("both",):
            raise ValueError(f"fidelity must be one of {FIDELITIES + ('both',)}, got {fidelity!r}.")
        if fidelity == "low":
            return self.low(strip, mould, section, params)
        if fidelity == "high":
            graphdef, state = nnx.split(self.low)
            frozen = nnx.merge(graphdef, jax.tree.map(jax.lax.stop_gradient, state))
            condition, low_feature, _ = frozen.features(strip, mould, section, params)
            return self._high_head(condition, low_feature)
        condition, low_feature, f = self.low.features(strip, mould, section, params)
        recon, unloaded_lf = self.low.csd(f), self.low.cld(low_feature)
        sg = jax.lax.stop_gradient
        return recon, unloaded_lf, self._high_head(sg(condition), sg(low_feature))

    def _high_head(self, condition: jax.Array, low_feature: jax.Array) -> jax.Array:
        """Cross-fidelity modules, then the LF decoder with its parameters frozen."""
        y = self.acf(condition, low_feature)
        y = self.add_norm(low_feature, y)
        graphdef, state = nnx.split(self.low.cld)
        return nnx.merge(graphdef, jax.tree.map(jax.lax.stop_gradient, state))(y)


def param_group(path: Sequence[Any]) -> str:
    """``"section"`` / ``"lf"`` / ``"hf"`` for a FilDeep state path, as the reference's optimizers.

    Example: ``("low", "cse", "conv1", "kernel") -> "section"``,
    ``("low", "mpe", "emb_nn", "bias") -> "lf"``, ``("acf", ...) -> "hf"``.
    """
    keys = [str(k) for k in path]
    if keys and keys[0] == "low":
        if any("cse" in k or "csd" in k for k in keys[1:2]):
            return "section"
        return "lf"
    return "hf"


def fildeep_loss(
    outputs: Any,
    batch: Mapping[str, jax.Array],
    axis_weights: Any,
    *,
    fidelity: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The reference's step losses: LF ``loss_p(unloaded) + loss_r``; HF ``loss_p(unloaded)``.

    ``outputs`` is what :class:`FilDeep` returned for that ``fidelity``; ``batch`` has
    ``"unloaded"`` (and ``"section"`` for LF); ``axis_weights`` is ``(3,)`` (that data set's
    unloaded scale widths).
    """
    if fidelity == "low":
        recon, unloaded = outputs
        l_p = loss_p(batch["unloaded"], unloaded, axis_weights)
        l_r = loss_r(batch["section"], recon)
        return l_p + l_r, {"loss": l_p + l_r, "loss_unloaded": l_p, "loss_section": l_r}
    if fidelity == "high":
        l_p = loss_p(batch["unloaded"], outputs, axis_weights)
        return l_p, {"loss": l_p, "loss_unloaded": l_p}
    raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}.")


# --------------------------------------------------------------------------- experiment

METHODS = ("fildeep", "hf_only", "lf_only")
LOW, HIGH = 0, 1  # batch["fidelity"]


def load_fidelity_data(data) -> tuple[stretch.Prepared, stretch.Prepared]:
    """``(low, high)``: LF and HF strips from independent draws, scaled alike.

    The HF path decodes with the frozen LF decoder, so both fidelities live in one
    scaled space: the normalisation is fitted on the union of both training sets.
    The LF set has train/valid splits, the HF set train/valid/test.
    """
    if data.source != "synthetic":
        raise ValueError(
            "fildeep runs on the synthetic generator's two fidelities: FilDeep's own LF/HF data "
            f"are not released (data.source={data.source!r})"
        )
    k_low, k_high = jax.random.split(jax.random.key(int(data.seed), impl="rbg"))
    low = stretch.synthetic_splits(data, k_low, "low", (data.num_lf_train, data.num_lf_valid, 0))
    high = stretch.synthetic_splits(
        data, k_high, "high", (data.num_hf_train, data.num_hf_valid, data.num_hf_test)
    )
    del low["test"]
    union = {k: np.concatenate([low["train"][k], high["train"][k]]) for k in high["train"]}
    normaliser = stretch.Normaliser.fit(data, union)
    return stretch.prepare(data, low, normaliser), stretch.prepare(data, high, normaliser)


def make_model(config, section_shape, rngs: nnx.Rngs) -> nnx.Module:
    """FilDeep (method ``fildeep``) or its single-fidelity backbone (the baselines)."""
    m = config.model
    kwargs = dict(
        seq_length=m.seq_length,
        emb_dim=m.emb_dim,
        cross_layers=m.loading_layers,
        cross_heads=m.loading_heads,
        self_layers=m.unloading_layers,
        self_heads=m.unloading_heads,
        section_shape=tuple(section_shape),
        section_encoder=m.section_encoder,
        section_decoder_width=m.section_decoder_width,
        rngs=rngs,
    )
    if config.method == "fildeep":
        return FilDeep(acf_layers=m.acf_layers, acf_heads=m.acf_heads, **kwargs)
    return FilDeepLF(**kwargs)


def fildeep_optimizer(config, steps: Mapping[str, int]) -> optax.GradientTransformation:
    """The reference's three Adams: LF predictor, section (``cse``/``csd``), HF modules.

    ``steps`` gives each group's batches per epoch (``"low"``, ``"high"``). The HF
    group's fine-tuning is a fresh Adam at the LF rate (``restart_at`` after the
    alternating epochs), its cosine restarting with it.
    """
    o, t = config.optim, config.train
    wd = float(o.weight_decay)
    low_steps = steps["low"]

    def cos(base, decay_min, per_epoch):
        return optim.epoch_cosine(
            float(base), steps_per_epoch=per_epoch, num_epochs=t.num_epochs, decay_min=decay_min
        )

    groups = {
        "lf": optim.AdamGroup(cos(o.lr_p, o.lr_p_decay_min, low_steps), weight_decay=wd),
        "section": optim.AdamGroup(cos(o.lr_r, o.lr_r_decay_min, low_steps), weight_decay=wd),
    }
    if config.method == "fildeep":
        alternating = t.num_epochs * steps["high"]
        first = cos(o.high_lr_p, o.high_lr_p_decay_min, steps["high"])
        tune = cos(o.lr_p, o.lr_p_decay_min, steps["high"])

        def high_rate(count):
            return jnp.where(count < alternating, first(count), tune(count - alternating))

        groups["hf"] = optim.AdamGroup(
            high_rate, weight_decay=float(o.high_weight_decay), restart_at=alternating
        )

    prefix = () if config.method == "fildeep" else ("low",)  # the baselines are a bare backbone

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: param_group(prefix + _keys(path)), params
        )

    return optim.torch_adam_groups(groups, labels)


def _keys(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)


def multi_fidelity_loss(model, batch, weights) -> tuple[jax.Array, dict]:
    """The LF loss (unloaded curve + section) on LF batches, the HF loss on HF batches.

    Both heads share one pass through the encoders (``fidelity="both"``); the batch's
    ``fidelity`` tag selects the loss, so the other path gets exactly zero gradient and
    its optimizer groups do not step (:func:`optim.torch_adam_groups`): the
    reference's alternating LF and HF optimizers.
    """
    inputs = (batch["strip"], batch["mould"], batch["section"], batch["params"])
    recon, low, high = model(*inputs, fidelity="both")
    l_low, m_low = fildeep_loss((recon, low), batch, weights, fidelity="low")
    l_high, _ = fildeep_loss(high, batch, weights, fidelity="high")
    is_high = batch["fidelity"][0] == HIGH
    loss = jnp.where(is_high, l_high, l_low)
    return loss, {
        "loss_low": m_low["loss_unloaded"],
        "loss_section": m_low["loss_section"],
        "loss_high": l_high,
    }


def single_loss(model, batch, weights) -> tuple[jax.Array, dict]:
    """The single-fidelity backbone's loss (the baselines): unloaded curve + section."""
    outputs = model(batch["strip"], batch["mould"], batch["section"], batch["params"])
    return fildeep_loss(outputs, batch, weights, fidelity="low")


def predict_unloaded(model, batch) -> jax.Array:
    inputs = (batch["strip"], batch["mould"], batch["section"], batch["params"])
    if isinstance(model, FilDeep):
        return model(*inputs, fidelity="high")
    return model(*inputs)[1]


def make_task(
    config, low: stretch.Prepared, high: stretch.Prepared
) -> tuple[train_lib.Task, int, int]:
    """``(task, steps, steps per round)`` for ``config.method``.

    A round is one LF and one HF epoch for FilDeep, one epoch for the baselines.
    """
    method, t = config.method, config.train
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    weights = np.asarray(low.scales["unloaded"].weights, np.float32)
    sources = {"low": low.arrays["train"], "high": high.arrays["train"]}
    per_epoch = {
        k: stretch.steps_per_epoch(len(v["strip"]), t.batch_size) for k, v in sources.items()
    }
    if method == "fildeep":
        epochs = ["low", "high"] * t.num_epochs + ["high"] * t.finetune_epochs
        loss = multi_fidelity_loss
    else:  # one fidelity for as many epochs as FilDeep's path of that fidelity
        only = "low" if method == "lf_only" else "high"
        n = t.num_epochs + (t.finetune_epochs if only == "high" else 0)
        epochs, sources = [only] * n, {only: sources[only]}
        per_epoch = {"low": per_epoch[only]}  # the backbone's groups step on every batch
        loss = single_loss
    train_data = pipeline.scheduled_epochs(
        sources, t.batch_size, epochs=epochs, seed=config.seed, tag="fidelity"
    )
    steps = len(train_data)
    per_round = sum(per_epoch.values()) if method == "fildeep" else per_epoch["low"]
    if t.num_steps:
        steps = min(steps, int(t.num_steps))
    section_shape = tuple(high.arrays["train"]["section"].shape[1:3])

    def eval_fn(model, batch):
        return {"pred_unloaded": predict_unloaded(model, batch), "unloaded": batch["unloaded"]}

    task = train_lib.Task(
        init_model=lambda rngs: make_model(config, section_shape, rngs),
        loss_fn=lambda model, batch: loss(model, batch, weights),
        eval_fn=eval_fn,
        summarize=stretch.summarizer(high.scales, targets=("unloaded",)),
        optimizer=fildeep_optimizer(config, per_epoch),
        rng_impl=config.rng_impl or None,
        train_data=train_data,
        eval_data={
            "valid": pipeline.eval_batches(high.arrays["valid"], config.eval_batch_size),
            "test": pipeline.eval_batches(high.arrays["test"], config.eval_batch_size),
        },
    )
    return task, steps, per_round


def run(config, workdir: str) -> dict:
    """Registry entry: trains ``config.method`` and evaluates on the HF test set."""
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
    low, high = load_fidelity_data(config.data)
    stretch.log_data("fildeep LF", low)
    stretch.log_data("fildeep HF", high)
    task, steps, per_round = make_task(config, low, high)
    mesh = mesh_lib.mesh_from_config(config.mesh)
    results = train_lib.train_and_evaluate(
        task, stretch.loop_config(config, steps, per_round), workdir=workdir, mesh=mesh
    )
    final = {k: results["test"][k] for k in ("unloaded_mad", "unloaded_te")}
    final.update({f"valid_{k}": results["valid"][k] for k in ("unloaded_mad", "unloaded_te")})
    final["method"] = config.method
    final["num_steps"] = steps
    setup_ = train_lib.task_setup(task, mesh, seed=config.seed)
    model = train_lib.restore_model(setup_, workdir)
    final["num_params"] = ladeep.count_params(model)
    rows = np.arange(min(4, len(high.arrays["test"]["strip"])))
    batch = {k: v[rows] for k, v in high.arrays["test"].items()}
    preds = {"unloaded": np.asarray(_predict_jit(*nnx.split(model), batch))}
    stretch.plot_predictions(workdir, high, preds, rows, f"FilDeep ({config.method})")
    stretch.learning_curves(workdir, ["unloaded_mad"], f"FilDeep ({config.method}), HF test")
    return final


@jax.jit
def _predict_jit(graphdef, state, batch):
    return predict_unloaded(nnx.merge(graphdef, state), batch)
