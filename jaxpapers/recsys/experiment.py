"""What the multimodal recommendation experiments share: training a task, restoring the
trained model, and the learning-curve plot.

:mod:`jaxpapers.recsys.seqrec` (next-item, full ranking) and :mod:`jaxpapers.recsys.ranking`
(CTR-style ranking with a history) build a :class:`~jaxpapers.core.train.Task` each; this
module runs it with the core trainer (checkpoints, resume, NaN guard, progress), reads the
config's ``optim`` / ``train`` blocks the same way as the CTR experiments, and hands the
restored model to an ``after(model, final)`` hook for paper-specific reports and plots.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.core import train as train_lib

After = Callable[[nnx.Module, dict], Mapping[str, Any]]


def batches_per_epoch(batch_size: int, num_train: int) -> int:
    per_epoch = num_train // batch_size
    if per_epoch == 0:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {num_train} training examples")
    return per_epoch


def schedule(config, num_train: int) -> tuple[int, int, optax.GradientTransformation]:
    """``(num_steps, num_epochs, optimizer)`` from ``config.train`` and ``config.optim``.

    ``train.num_steps`` overrides ``train.num_epochs``; the learning rate is multiplied by
    ``optim.decay_factor`` after each epoch in ``optim.decay_epochs``; Adam, or AdamW when
    ``optim.weight_decay`` is set.
    """
    per_epoch = batches_per_epoch(config.train.batch_size, num_train)
    if config.train.num_steps:
        steps = int(config.train.num_steps)
    else:
        steps = max(1, round(config.train.num_epochs * per_epoch))
    optim = config.optim
    boundaries = {int(e * per_epoch): float(optim.decay_factor) for e in optim.decay_epochs}
    lr = optax.piecewise_constant_schedule(float(optim.learning_rate), boundaries or None)
    wd = float(optim.get("weight_decay", 0.0))
    opt = optax.adamw(lr, weight_decay=wd) if wd else optax.adam(lr)
    return steps, math.ceil(steps / per_epoch), opt


def loop_config(config, steps: int, num_train: int) -> train_lib.LoopConfig:
    """The loop cadence; ``train.eval_every_epochs`` applies when ``eval_every`` is 0."""
    t = config.train
    eval_every = t.eval_every
    if not eval_every and t.eval_every_epochs > 0:
        per_epoch = batches_per_epoch(t.batch_size, num_train)
        eval_every = max(1, round(t.eval_every_epochs * per_epoch))
    return train_lib.LoopConfig.from_train(
        t, num_steps=steps, eval_every=eval_every, seed=config.seed
    )


def count_params(model: nnx.Module, wrt: Any = nnx.Param) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, wrt))))


def fit(
    config,
    workdir: str,
    task: train_lib.Task,
    *,
    num_train: int,
    steps: int,
    curves: Sequence[tuple[str, Sequence[str]]],
    title: str,
    after: After | None = None,
) -> tuple[dict[str, dict[str, float]], dict]:
    """Trains ``task`` (resuming from ``workdir``), then runs ``after`` on the trained model.

    Returns ``(results, extra)``: the trainer's ``{split: metrics}`` and what ``after``
    returned (``{}`` without it). Writes ``plots/learning_curves.png``.
    """
    mesh = mesh_lib.mesh_from_config(config.mesh)
    results = train_lib.train_and_evaluate(
        task, loop_config(config, steps, num_train), workdir=workdir, mesh=mesh
    )
    extra: dict = {}
    setup_ = train_lib.task_setup(task, mesh, seed=config.seed)
    model = train_lib.restore_model(setup_, workdir)
    extra["num_params"] = count_params(model)
    extra["num_trainable"] = count_params(model, task.wrt)
    if after is not None:
        extra.update(after(model, results))
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    plotting.learning_curves(
        events, os.path.join(workdir, "plots", "learning_curves.png"), curves, title=title
    )
    return results, extra
