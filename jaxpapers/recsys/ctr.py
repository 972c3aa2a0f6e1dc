"""CTR prediction experiments: data, loss, metrics and the run function.

Shared by every click-through-rate model (FGCNN and its baselines IPNN and
logistic regression): the config picks the dataset (``data.source``: the
embedded ``synthetic`` generator, or raw ``criteo`` / ``avazu`` files from
``data.data_dir``) and the model (``model.name``); training is the core
trainer; the final metrics are test ``auc`` and ``logloss`` (exact, over every
test example), the validation ones, and on synthetic data the Bayes-optimal
``oracle_auc`` / ``oracle_logloss`` of the known click probability.

Loss: mean binary cross-entropy on logits plus FuxiCTR's embedding regularizer
``lambda/2 * ||W||^2`` over every embedding table (``optim.embedding_l2``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.core import train as train_lib
from jaxpapers.data import ctr as ctr_data
from jaxpapers.data import ctr_files, pipeline
from jaxpapers.recsys import experiment
from jaxpapers.recsys import metrics as rec_metrics

ModelFactory = Callable[[Any, tuple[int, ...], nnx.Rngs], nnx.Module]

SOURCES = ("synthetic", "criteo", "avazu")


def load_data(cfg) -> ctr_data.CTRDataset:
    """The dataset named by ``config.data`` (embedded synthetic by default)."""
    source = cfg.source
    if source == "synthetic":
        return ctr_data.synthetic_ctr(
            num_train=cfg.num_train,
            num_valid=cfg.num_valid,
            num_test=cfg.num_test,
            num_fields=cfg.num_fields,
            seed=cfg.seed,
        )
    max_rows = cfg.max_rows or None
    if source == "criteo":
        return ctr_files.load_criteo(cfg.data_dir, min_count=cfg.min_count, max_rows=max_rows)
    if source == "avazu":
        return ctr_files.load_avazu(cfg.data_dir, min_count=cfg.min_count, max_rows=max_rows)
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")


def _arrays(split: ctr_data.CTRSplit) -> dict[str, np.ndarray]:
    return {"ids": split.features, "label": split.labels}


def make_task(
    config, data: ctr_data.CTRDataset, model_factory: ModelFactory, steps: int
) -> train_lib.Task:
    """The trainer's view of a CTR experiment that runs for ``steps`` steps."""
    vocab = tuple(int(v) for v in data.vocab_sizes)
    batches_per_epoch = _batches_per_epoch(config, len(data.train))
    l2 = float(config.optim.embedding_l2)

    def loss_fn(model, batch):
        logits = model(batch["ids"])
        bce = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
        reg = l2 * model.embedding_l2() if l2 else 0.0
        return bce + reg, {"bce": bce}

    def eval_fn(model, batch):
        return {"prob": jax.nn.sigmoid(model(batch["ids"])), "label": batch["label"]}

    def summarize(out: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {
            "auc": rec_metrics.auc(out["label"], out["prob"]),
            "logloss": rec_metrics.logloss(out["label"], out["prob"]),
            "num_examples": int(len(out["label"])),
        }

    epochs = math.ceil(steps / batches_per_epoch)
    return train_lib.Task(
        init_model=lambda rngs: model_factory(config.model, vocab, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarize,
        optimizer=optax.adam(learning_rate(config.optim, batches_per_epoch)),
        train_data=pipeline.train_batches(
            _arrays(data.train), config.train.batch_size, num_epochs=epochs, seed=config.seed
        ),
        eval_data={
            "valid": pipeline.eval_batches(_arrays(data.valid), config.eval_batch_size),
            "test": pipeline.eval_batches(_arrays(data.test), config.eval_batch_size),
        },
    )


def learning_rate(optim, batches_per_epoch: int) -> optax.Schedule:
    """Constant, times ``decay_factor`` after each epoch listed in ``decay_epochs``."""
    boundaries = {int(e * batches_per_epoch): float(optim.decay_factor) for e in optim.decay_epochs}
    return optax.piecewise_constant_schedule(float(optim.learning_rate), boundaries or None)


def _batches_per_epoch(config, num_train: int) -> int:
    return experiment.batches_per_epoch(config.train.batch_size, num_train)


def num_steps(config, num_train: int) -> int:
    """``train.num_steps`` if set, else ``train.num_epochs`` full passes."""
    if config.train.num_steps:
        return int(config.train.num_steps)
    return max(1, round(config.train.num_epochs * _batches_per_epoch(config, num_train)))


def loop_config(config, steps: int, num_train: int) -> train_lib.LoopConfig:
    """The loop cadence; ``train.eval_every_epochs`` applies when ``eval_every`` is 0."""
    return experiment.loop_config(config, steps, num_train)


def count_params(model_factory: ModelFactory, config, vocab) -> int:
    abstract = nnx.eval_shape(lambda: model_factory(config.model, vocab, nnx.Rngs(0)))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))))


def run(config, workdir: str, model_factories: Mapping[str, ModelFactory]) -> dict:
    """Trains and evaluates ``config.model.name`` on ``config.data``; returns final metrics."""
    name = config.model.name
    if name not in model_factories:
        raise ValueError(f"model.name must be one of {sorted(model_factories)}, got {name!r}")
    factory = model_factories[name]
    data = load_data(config.data)
    logging.info(
        "data %s: %d/%d/%d rows, %d fields, %d ids; %s",
        data.name,
        len(data.train),
        len(data.valid),
        len(data.test),
        data.num_fields,
        sum(data.vocab_sizes),
        json.dumps(data.info),
    )
    mesh = mesh_lib.mesh_from_config(config.mesh)
    steps = num_steps(config, len(data.train))
    task = make_task(config, data, factory, steps)
    results = train_lib.train_and_evaluate(
        task, loop_config(config, steps, len(data.train)), workdir=workdir, mesh=mesh
    )

    final = {
        "auc": results["test"]["auc"],
        "logloss": results["test"]["logloss"],
        "valid_auc": results["valid"]["auc"],
        "valid_logloss": results["valid"]["logloss"],
    }
    for key in ("oracle_auc", "oracle_logloss", "first_order_oracle_auc"):
        if key in data.info:
            final[key] = float(data.info[key])
    final["num_params"] = count_params(factory, config, tuple(data.vocab_sizes))
    final["num_steps"] = steps

    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    refs = {"auc": {"oracle": final["oracle_auc"]}} if "oracle_auc" in final else {}
    plotting.learning_curves(
        events,
        os.path.join(workdir, "plots", "learning_curves.png"),
        [("loss", ["train"]), ("auc", ["valid", "test"]), ("logloss", ["valid", "test"])],
        reference_lines=refs,
        title=f"{name} on {data.name}",
    )
    return final
