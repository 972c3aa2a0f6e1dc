"""Stretch-bending experiments: data, the trainer's task, metrics and plots for LaDEEP and FilDeep.

Data (``config.data``):

* ``source="synthetic"`` (default, offline): :mod:`jaxpapers.physics.generators.stretch_bending`
  solves ``num_train + num_valid + num_test`` strips at ``data.fidelity`` (FilDeep draws
  an LF and an HF set, see :func:`load_fidelity_data`).
* ``source="ladeep_files"``: LaDEEP's released data in ``data.data_dir``
  (:mod:`jaxpapers.physics.stretch_files`, the reference's 80/10/10 split per section
  type; the ``eval`` part is our ``valid`` split).

Model inputs, as in the reference's data loader: each 301-point curve becomes 300
point differences, min-max scaled per axis (``curves.AxisScale``). The released data
uses the reference's three constant scales (strip curves use the unloading scale, as
the reference does); synthetic data fits the scales on the training split. The six
process parameters are min-max scaled per column on the training split (synthetic;
the reference's own row-sum scaling for its CSV files is applied by the reader), and
the synthetic signed-distance images are divided by the training split's largest
``|sdf|``. Metrics (MAD, TE) are computed on curves rebuilt from the de-normalised
differences (cumulative sums), in the data's units.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.core import train as train_lib
from jaxpapers.data import pipeline
from jaxpapers.physics import curves, ladeep, metrics, optim
from jaxpapers.physics.generators import stretch_bending

CURVES = ("strip", "mould", "loaded", "unloaded")
TARGETS = ("loaded", "unloaded")
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Model-ready arrays per split, and what is needed to undo the scaling."""

    arrays: dict[str, dict[str, np.ndarray]]  # split -> name -> array
    scales: dict[str, curves.AxisScale]  # curve name -> per-axis scale of its differences
    info: dict


# --------------------------------------------------------------------------- data


def data_config() -> ml_collections.ConfigDict:
    """``config.data`` of the stretch-bending experiments (LaDEEP's; FilDeep adds LF/HF sizes)."""
    return ml_collections.ConfigDict(
        {
            "source": "synthetic",  # synthetic | ladeep_files
            "data_dir": "",  # ladeep_files: the folder holding the reference's six data folders
            "fidelity": "high",  # synthetic: high | low
            "num_points": 301,
            "section_shape": (64, 32),
            "num_train": 1000,
            "num_valid": 100,
            "num_test": 200,
            "seed": 0,
        }
    )


def model_config() -> ml_collections.ConfigDict:
    """``config.model`` of LaDEEP and its baselines (FilDeep adds its HF modules)."""
    return ml_collections.ConfigDict(
        {
            "name": "ladeep",  # ladeep | mlp | transformer
            "seq_length": 60,  # region tokens
            "emb_dim": 64,
            "loading_layers": 3,
            "loading_heads": 4,
            "unloading_layers": 3,
            "unloading_heads": 4,
            "section_encoder": "cnn",  # cnn | resnet18
            "section_decoder_width": 512,  # the reference's; narrower is far cheaper on a CPU
            "mlp_hidden": (512, 512),  # mlp baseline
            "transformer_layers": 6,  # transformer baseline (same depth as LaDEEP's two stages)
            "transformer_heads": 4,
            "transformer_patch": 5,  # 300 differences -> 60 patch tokens
        }
    )


def generator_config(data, fidelity: str | None = None) -> stretch_bending.GeneratorConfig:
    return stretch_bending.GeneratorConfig(
        num_points=int(data.num_points),
        section_shape=tuple(int(s) for s in data.section_shape),
        fidelity=fidelity or data.fidelity,
    )


def synthetic_splits(data, key, fidelity: str | None = None, sizes=None) -> dict[str, dict]:
    """Solves one set of strips and cuts it into train/valid/test."""
    sizes = sizes or (data.num_train, data.num_valid, data.num_test)
    total = int(sum(sizes))
    raw = stretch_bending.generate(key, total, generator_config(data, fidelity))
    out, start = {}, 0
    for split, n in zip(SPLITS, sizes):
        out[split] = {k: v[start : start + n] for k, v in raw.items()}
        start += n
    return out


def load_raw(data) -> dict[str, dict[str, np.ndarray]]:
    """``split -> raw arrays`` (curves (N, P, 3), section (N, H, W), params (N, 6))."""
    if data.source == "synthetic":
        return synthetic_splits(data, jax.random.key(int(data.seed), impl="rbg"))
    if data.source == "ladeep_files":
        from jaxpapers.physics import stretch_files  # pylint: disable=g-import-not-at-top

        return {
            split: stretch_files.read_split(
                data.data_dir, "eval" if split == "valid" else split, n_points=data.num_points
            )
            for split in SPLITS
        }
    raise ValueError(f"data.source must be 'synthetic' or 'ladeep_files', got {data.source!r}")


def fit_scales(data, train: Mapping[str, np.ndarray]) -> dict[str, curves.AxisScale]:
    if data.source == "ladeep_files":
        return {
            "strip": curves.STRIP_SCALE,
            "mould": curves.MOULD_SCALE,
            "loaded": curves.LOAD_SCALE,
            "unloaded": curves.UNLOAD_SCALE,
        }
    return {k: curves.AxisScale.fit(np.diff(train[k], axis=1)) for k in CURVES}


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """How raw arrays become model inputs (fitted once, applied to every split)."""

    scales: dict[str, curves.AxisScale]
    params_min: np.ndarray | None = None  # None: params are used as read
    params_span: np.ndarray | None = None
    sdf_scale: float = 1.0

    @classmethod
    def fit(cls, data, train: Mapping[str, np.ndarray]) -> Normaliser:
        scales = fit_scales(data, train)
        if data.source != "synthetic":  # the reader already scaled params as the reference
            return cls(scales)
        lo, hi = train["params"].min(0), train["params"].max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return cls(scales, lo, span, float(np.abs(train["section"]).max()) or 1.0)

    def __call__(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: curves.to_scaled_diffs(raw[k], self.scales[k]).astype(np.float32) for k in CURVES}
        out["section"] = (raw["section"].astype(np.float32) / self.sdf_scale)[..., None]
        params = raw["params"].astype(np.float32)
        if self.params_min is not None:
            params = (params - self.params_min) / self.params_span
        out["params"] = params.astype(np.float32)
        return out


def prepare(data, raw: Mapping[str, Mapping[str, np.ndarray]], normaliser=None) -> Prepared:
    """Scales ``raw`` splits for the models (fitted on ``raw['train']`` unless given)."""
    normaliser = normaliser or Normaliser.fit(data, raw["train"])
    arrays = {split: normaliser(r) for split, r in raw.items()}
    info = {split: int(len(r["strip"])) for split, r in raw.items()}
    return Prepared(arrays, normaliser.scales, info)


# --------------------------------------------------------------------------- metrics


def curve_metrics(
    pred: np.ndarray, true: np.ndarray, scale: curves.AxisScale, prefix: str
) -> dict[str, float]:
    """MAD and TE (means over examples) of curves rebuilt from scaled differences."""
    m = metrics.mad_te_from_scaled_diffs(
        np.asarray(pred, np.float64), np.asarray(true, np.float64), scale
    )
    return {f"{prefix}_{k}": float(np.mean(v)) for k, v in m.items()}


def summarizer(
    scales: Mapping[str, curves.AxisScale], targets=TARGETS
) -> Callable[[Mapping[str, np.ndarray]], dict[str, float]]:
    """Host-side ``summarize`` for the trainer: MAD/TE of each predicted curve."""

    def summarize(out):
        result = {}
        for name in targets:
            result.update(curve_metrics(out[f"pred_{name}"], out[name], scales[name], name))
        result["num_examples"] = int(len(out[targets[0]]))
        return result

    return summarize


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    n = num_train // batch_size
    if n == 0:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {num_train} training examples")
    return n


def loop_config(config, steps: int, steps_per_epoch_: int) -> train_lib.LoopConfig:
    t = config.train
    eval_every = max(1, round(t.eval_every_epochs * steps_per_epoch_)) if t.eval_every_epochs else 0
    return train_lib.LoopConfig.from_train(
        t, num_steps=steps, eval_every=eval_every, seed=config.seed
    )


# --------------------------------------------------------------------------- plots


def plot_curves(
    path: str,
    examples: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    title: str = "",
) -> str:
    """Centre lines, one column per example (x–y and x–z views).

    ``examples`` holds ``(panel title, {label: curve (P, 3)})``; the labels
    ``true`` and ``predicted`` get fixed styles (black, dashed red).
    """
    styles = {"true": dict(color="k", lw=1.6), "predicted": dict(color="C3", lw=1.2, ls="--")}
    fig = Figure(figsize=(4.2 * len(examples), 6.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(examples), squeeze=False)
    for col, (label, named) in enumerate(examples):
        for row, (j, name) in enumerate(((1, "y"), (2, "z"))):
            ax = axes[row, col]
            for i, (curve_label, curve) in enumerate(named.items()):
                style = styles.get(curve_label, dict(color=f"C{i}", lw=1.2))
                ax.plot(curve[:, 0], curve[:, j], label=curve_label, **style)
            ax.set_xlabel("x")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(label, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def predict(model, arrays: Mapping[str, np.ndarray], rows: np.ndarray, call) -> dict:
    """``call(model, batch) -> {name: scaled differences}`` on ``rows`` (eval mode)."""
    batch = {k: np.asarray(v[rows]) for k, v in arrays.items()}
    return {k: np.asarray(v) for k, v in call(model, batch).items()}


def plot_predictions(
    workdir: str, prepared: Prepared, predictions: Mapping[str, np.ndarray], rows, title: str
) -> list[str]:
    """One PNG per predicted curve kind: rebuilt predictions against the truth."""
    paths = []
    test = prepared.arrays["test"]
    for name, pred in predictions.items():
        scale = prepared.scales[name]
        examples = []
        for i, r in enumerate(rows):
            true = curves.from_scaled_diffs(np.asarray(test[name][r], np.float64), scale)
            p = curves.from_scaled_diffs(np.asarray(pred[i], np.float64), scale)
            d = metrics.mad(p[None], true[None])[0]
            examples.append((f"test #{r}: MAD {d:.3g}", {"true": true, "predicted": p}))
        paths.append(
            plot_curves(
                os.path.join(workdir, "plots", f"{name}_curves.png"), examples, f"{title}: {name}"
            )
        )
    return paths


def learning_curves(workdir: str, metric_names, title: str) -> str:
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    panels = [("loss", ["train"])] + [(m, ["valid", "test"]) for m in metric_names]
    return plotting.learning_curves(
        events, os.path.join(workdir, "plots", "learning_curves.png"), panels, title=title
    )


def log_data(name: str, prepared: Prepared) -> None:
    spans = {k: np.round(np.asarray(s.weights), 4).tolist() for k, s in prepared.scales.items()}
    logging.info("%s data: %s examples; difference spans per axis %s", name, prepared.info, spans)


def num_steps(config, steps_per_epoch_: int) -> int:
    if config.train.num_steps:
        return int(config.train.num_steps)
    return max(1, math.ceil(config.train.num_epochs * steps_per_epoch_))


# --------------------------------------------------------------------------- single fidelity

ModelFactory = Callable[..., object]  # (config.model, section_shape, rngs) -> nnx.Module


def adam(config, steps_per_epoch_: int, num_epochs: int):
    """The references' Adam (L2 weight decay) with a per-epoch cosine to ``lr / decay_min``.

    LaDEEP steps three Adams (loading, unloading, section) with the same
    hyperparameters on the summed losses' gradients — one Adam over all parameters.
    """
    o = config.optim
    rate = optim.epoch_cosine(
        float(o.learning_rate),
        steps_per_epoch=steps_per_epoch_,
        num_epochs=num_epochs,
        decay_min=float(o.decay_min),
    )
    group = optim.AdamGroup(rate, weight_decay=float(o.weight_decay))
    return optim.torch_adam_groups({"all": group}, lambda p: jax.tree.map(lambda _: "all", p))


def make_task(config, prepared: Prepared, factory: ModelFactory) -> tuple[train_lib.Task, int, int]:
    """``(task, steps, steps per epoch)`` of a LaDEEP-style experiment (LaDEEP or a baseline)."""
    per_epoch = steps_per_epoch(len(prepared.arrays["train"]["strip"]), config.train.batch_size)
    steps = num_steps(config, per_epoch)
    epochs = math.ceil(steps / per_epoch)
    weights = axis_weights(prepared.scales, TARGETS)
    section_shape = tuple(prepared.arrays["train"]["section"].shape[1:3])

    def loss_fn(model, batch):
        out = model(batch["strip"], batch["mould"], batch["section"], batch["params"])
        return ladeep.ladeep_loss(out, batch, weights)

    def eval_fn(model, batch):
        _, loaded, unloaded = model(
            batch["strip"], batch["mould"], batch["section"], batch["params"]
        )
        return {
            "pred_loaded": loaded,
            "pred_unloaded": unloaded,
            "loaded": batch["loaded"],
            "unloaded": batch["unloaded"],
        }

    task = train_lib.Task(
        init_model=lambda rngs: factory(config.model, section_shape, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarizer(prepared.scales),
        optimizer=adam(config, per_epoch, epochs),
        rng_impl=config.rng_impl or None,
        train_data=pipeline.train_batches(
            prepared.arrays["train"], config.train.batch_size, num_epochs=epochs, seed=config.seed
        ),
        eval_data={
            s: pipeline.eval_batches(prepared.arrays[s], config.eval_batch_size)
            for s in ("valid", "test")
        },
    )
    return task, steps, per_epoch


def axis_weights(scales: Mapping[str, curves.AxisScale], names) -> np.ndarray:
    """The references' per-axis loss weights (difference span per axis), one row per curve."""
    return np.stack([np.asarray(scales[k].weights, np.float32) for k in names])


def run(config, workdir: str, factories: Mapping[str, ModelFactory]) -> dict:
    """Trains ``config.model.name`` on stretch-bending data; returns the final metrics."""
    name = config.model.name
    if name not in factories:
        raise ValueError(f"model.name must be one of {sorted(factories)}, got {name!r}")
    prepared = prepare(config.data, load_raw(config.data))
    log_data(name, prepared)
    task, steps, per_epoch = make_task(config, prepared, factories[name])
    mesh = mesh_lib.mesh_from_config(config.mesh)
    results = train_lib.train_and_evaluate(
        task, loop_config(config, steps, per_epoch), workdir=workdir, mesh=mesh
    )
    test = results["test"]
    final = {k: test[k] for k in ("loaded_mad", "loaded_te", "unloaded_mad", "unloaded_te")}
    final.update(
        {f"valid_{k}": v for k, v in results["valid"].items() if k.endswith(("mad", "te"))}
    )

    setup_ = train_lib.task_setup(task, mesh, seed=config.seed)
    model = train_lib.restore_model(setup_, workdir)
    final["num_params"] = ladeep.count_params(model)
    final["num_steps"] = steps
    rows = np.arange(min(4, len(prepared.arrays["test"]["strip"])))
    preds = predict(model, prepared.arrays["test"], rows, _predict_curves)
    plot_predictions(workdir, prepared, preds, rows, name)
    learning_curves(workdir, ["unloaded_mad", "loaded_mad"], f"{name} on {config.data.source}")
    return final


@jax.jit
def _predict_curves_jit(graphdef, state, batch):
    model = nnx.merge(graphdef, state)
    _, loaded, unloaded = model(batch["strip"], batch["mould"], batch["section"], batch["params"])
    return {"loaded": loaded, "unloaded": unloaded}


def _predict_curves(model, batch):
    graphdef, state = nnx.split(model)
    return _predict_curves_jit(graphdef, state, batch)
