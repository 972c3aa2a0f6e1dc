"""CTR-style ranking over a behaviour history: DIN and the experiment QARM and EM3 share.

Industrial multimodal recommenders (QARM, EM3) are judged inside a *ranking model*: given a
user's behaviour history and a candidate item, predict the click. Here the ranker is DIN
(Zhou et al., KDD 2018): target attention over the history followed by an MLP.

* :class:`DIN` — the attention unit scores each history item against the target from
  ``[h, t, h - t, h * t]`` through a small MLP; as in DIN the weights are NOT normalised by a
  softmax (the sum keeps the intensity of interest); padded positions weigh 0. The output MLP
  sees ``[interest, target, interest * target]``. GELU is used where DIN has Dice/PReLU
  (a deliberate simplification; it does not change the mechanism).
* :class:`Frozen` — a non-trainable array variable (cached content embeddings, pretrained
  outputs): never selected by ``nnx.Param`` filters, so never in the optimizer.
* :func:`run` — data from :func:`jaxpapers.data.multimodal.ranking_samples` (leave-one-out by
  time; each positive next-item event with sampled negatives), loss = mean binary
  cross-entropy + the model's auxiliary terms (already weighted by the model), final test
  ``auc`` and ``logloss`` (exact, over every test example) and the validation ones.

A ranking model is any ``nnx.Module`` with
``__call__(batch, *, deterministic=True) -> (logits [B], aux: dict[str, scalar])`` where
``batch`` has ``"user"``, ``"history"`` (``[B, L]``, left-padded with 0), ``"target"`` and
``"label"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx

from jaxpapers.core import train as train_lib
from jaxpapers.core.sharding import logical
from jaxpapers.data import multimodal, pipeline
from jaxpapers.recsys import experiment
from jaxpapers.recsys import metrics as rec_metrics

ModelFactory = Callable[[Any, "multimodal.MultimodalData", nnx.Rngs], nnx.Module]


class Frozen(nnx.Variable):
    """A constant array carried in the model state but never trained."""


class MLP(nnx.Module):
    """Linear layers with GELU between them (and after the last when ``final_act``)."""

    def __init__(self, dims: Sequence[int], *, rngs: nnx.Rngs, final_act: bool = True):
        if len(dims) < 2:
            raise ValueError(f"an MLP needs an input and an output size, got {tuple(dims)}")
        init = logical(nnx.initializers.xavier_uniform(), "embed", "mlp")
        self.layers = nnx.List(
            [nnx.Linear(a, b, kernel_init=init, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])]
        )
        self.final_act = final_act

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1 or self.final_act:
                x = jax.nn.gelu(x)
        return x


class DIN(nnx.Module):
    """Deep Interest Network: target attention over the history, then an MLP to a logit."""

    def __init__(
        self,
        dim: int,
        *,
        hidden: Sequence[int] = (200, 80),
        attention_hidden: Sequence[int] = (80, 40),
        rngs: nnx.Rngs,
    ):
        self.attention = MLP((4 * dim, *attention_hidden, 1), rngs=rngs, final_act=False)
        self.mlp = MLP((3 * dim, *hidden, 1), rngs=rngs, final_act=False)

    def interest(self, history: jax.Array, mask: jax.Array, target: jax.Array) -> jax.Array:
        """``[B, D]``: the history pooled by (unnormalised) attention to the target."""
        t = jnp.broadcast_to(target[:, None, :], history.shape)
        units = jnp.concatenate([history, t, history - t, history * t], axis=-1)
        weights = self.attention(units)[..., 0] * mask
        return jnp.einsum("bl,bld->bd", weights, history)

    def __call__(
        self,
        history: jax.Array,
        mask: jax.Array,
        target: jax.Array,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        del deterministic  # no dropout in DIN's default configuration
        if history.ndim != 3 or target.shape != (history.shape[0], history.shape[2]):
            raise ValueError(
                f"history must be [B, L, D] and target [B, D], got {history.shape}, {target.shape}"
            )
        pooled = self.interest(history, mask.astype(history.dtype), target)
        features = jnp.concatenate([pooled, target, pooled * target], axis=-1)
        return self.mlp(features)[:, 0]


def _arrays(split: multimodal.RankingSplit) -> dict:
    return {
        "user": split.user,
        "history": split.history,
        "target": split.target,
        "label": split.label,
    }


def make_task(
    config,
    data: multimodal.MultimodalData,
    splits: Mapping[str, multimodal.RankingSplit],
    model_factory: ModelFactory,
    *,
    wrt: Any = nnx.Param,
    pretrained: Callable[[Any], Any] | None = None,
) -> tuple[train_lib.Task, int]:
    """The trainer's view of a ranking experiment, and its number of steps."""
    num_train = len(splits["train"].label)
    steps, epochs, optimizer = experiment.schedule(config, num_train)

    def loss_fn(model, batch):
        logits, aux = model(batch, deterministic=False)
        bce = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
        return bce + sum(aux.values(), jnp.zeros(())), {"bce": bce, **aux}

    def eval_fn(model, batch):
        logits, _ = model(batch, deterministic=True)
        return {"prob": jax.nn.sigmoid(logits), "label": batch["label"], "user": batch["user"]}

    def summarize(out):
        return {
            "auc": rec_metrics.auc(out["label"], out["prob"]),
            "logloss": rec_metrics.logloss(out["label"], out["prob"]),
            "num_examples": int(len(out["label"])),
        }

    task = train_lib.Task(
        init_model=lambda rngs: model_factory(config.model, data, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarize,
        optimizer=optimizer,
        train_data=pipeline.train_batches(
            _arrays(splits["train"]), config.train.batch_size, num_epochs=epochs, seed=config.seed
        ),
        eval_data={
            name: pipeline.eval_batches(_arrays(splits[name]), config.eval_batch_size)
            for name in ("valid", "test")
        },
        wrt=wrt,
        pretrained=pretrained,
        rng_impl=config.get("rng_impl") or None,
    )
    return task, steps


def samples(config, data: multimodal.MultimodalData) -> dict[str, multimodal.RankingSplit]:
    """The leave-one-out ranking samples named by ``config.split``."""
    return multimodal.ranking_samples(
        data,
        config.split.history_len,
        num_negatives=config.split.num_negatives,
        hard_negative_fraction=config.split.hard_negative_fraction,
        seed=config.seed,
    )


def run(
    config,
    workdir: str,
    data: multimodal.MultimodalData,
    model_factory: ModelFactory,
    *,
    wrt: Any = nnx.Param,
    pretrained: Callable[[Any], Any] | None = None,
    after: experiment.After | None = None,
) -> dict:
    """Trains ``model_factory``'s ranker on ``data``; returns the final metrics."""
    splits = samples(config, data)
    logging.info(
        "ranking samples of %s: %s",
        data.name,
        {k: len(v.label) for k, v in splits.items()},
    )
    task, steps = make_task(config, data, splits, model_factory, wrt=wrt, pretrained=pretrained)
    results, extra = experiment.fit(
        config,
        workdir,
        task,
        num_train=len(splits["train"].label),
        steps=steps,
        curves=[("loss", ["train"]), ("auc", ["valid", "test"]), ("logloss", ["valid", "test"])],
        title=f"{config.model.name} on {data.name}",
        after=after,
    )
    return {
        "auc": results["test"]["auc"],
        "logloss": results["test"]["logloss"],
        "valid_auc": results["valid"]["auc"],
        "valid_logloss": results["valid"]["logloss"],
        "num_steps": steps,
        **extra,
    }
