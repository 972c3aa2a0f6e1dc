"""Sequential (next-item) recommendation: the leave-one-out protocol with full ranking.

The protocol of SASRec and of CAMMSR's evaluation, as one experiment function:

* **Split** — :func:`jaxpapers.data.multimodal.leave_one_out`: per user, the last item is the
  test target, the second-to-last the validation target, everything before is training
  (SASRec-style: inputs ``seq[:-1]``, targets ``seq[1:]`` of the training part). The test
  history includes the validation item; neither held-out item is ever in that user's
  training arrays.
* **Metrics** — the held-out item is ranked against the WHOLE catalogue
  (:func:`jaxpapers.recsys.metrics.full_ranks`: padding never ranked, the history removed,
  ties against the target); HR@K and NDCG@K for K in 5, 10, 20. Ranks are computed on the
  device inside the eval step, so only one integer per user leaves it.

A sequential model is an ``nnx.Module`` with ``encode(items [B, L], *, deterministic) ->
[B, L, D]``, ``item_table(*, deterministic) -> [I+1, D]`` and ``losses(batch, *,
deterministic) -> (loss, metrics)`` (train batches carry ``"inputs"`` and ``"targets"``).
The score of item ``i`` after a history is ``<state at the last position, item_table[i]>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from absl import logging
from flax import nnx

from jaxpapers.core import train as train_lib
from jaxpapers.data import multimodal, pipeline
from jaxpapers.recsys import experiment
from jaxpapers.recsys import metrics as rec_metrics

KS = (5, 10, 20)
ModelFactory = Callable[[Any, "multimodal.MultimodalData", nnx.Rngs], nnx.Module]


def scores(model: nnx.Module, history: jnp.ndarray) -> jnp.ndarray:
    """``[B, I+1]`` scores of every item after each history (eval mode)."""
    state = model.encode(history, deterministic=True)[:, -1]
    table = model.item_table(deterministic=True)
    return jnp.matmul(state, table.T, precision="highest")


def summarize_ranks(ranks) -> dict[str, float]:
    out = {}
    for k in KS:
        out[f"hr@{k}"] = rec_metrics.hit_rate(ranks, k)
        out[f"ndcg@{k}"] = rec_metrics.ndcg(ranks, k)
    out["num_users"] = int(len(ranks))
    return out


def make_task(
    config,
    data: multimodal.MultimodalData,
    splits: multimodal.SeqSplits,
    model_factory: ModelFactory,
    *,
    wrt: Any = nnx.Param,
    pretrained: Callable[[Any], Any] | None = None,
) -> tuple[train_lib.Task, int]:
    """The trainer's view of a next-item experiment, and its number of steps."""
    num_train = len(splits.train_inputs)
    steps, epochs, optimizer = experiment.schedule(config, num_train)

    def loss_fn(model, batch):
        return model.losses(batch, deterministic=False)

    def eval_fn(model, batch):
        s = scores(model, batch["history"])
        ranks = rec_metrics.full_ranks(s, batch["target"], exclude=batch["history"])
        return {"rank": ranks, "target": batch["target"]}

    def summarize(out):
        return summarize_ranks(out["rank"])

    def split(history, target):
        return pipeline.eval_batches({"history": history, "target": target}, config.eval_batch_size)

    task = train_lib.Task(
        init_model=lambda rngs: model_factory(config.model, data, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarize,
        optimizer=optimizer,
        train_data=pipeline.train_batches(
            {"inputs": splits.train_inputs, "targets": splits.train_targets},
            config.train.batch_size,
            num_epochs=epochs,
            seed=config.seed,
        ),
        eval_data={
            "valid": split(splits.valid_history, splits.valid_target),
            "test": split(splits.test_history, splits.test_target),
        },
        wrt=wrt,
        pretrained=pretrained,
        rng_impl=config.get("rng_impl") or None,
    )
    return task, steps


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
    """Trains ``model_factory``'s sequential model; returns test HR/NDCG@K and more."""
    splits = multimodal.leave_one_out(data, config.split.history_len)
    logging.info(
        "%s: %d users, %d items, %d training sequences",
        data.name,
        data.num_users,
        data.num_items,
        len(splits.train_inputs),
    )
    task, steps = make_task(config, data, splits, model_factory, wrt=wrt, pretrained=pretrained)
    results, extra = experiment.fit(
        config,
        workdir,
        task,
        num_train=len(splits.train_inputs),
        steps=steps,
        curves=[("loss", ["train"]), ("ndcg@10", ["valid", "test"]), ("hr@10", ["valid", "test"])],
        title=f"{config.model.name} on {data.name}",
        after=after,
    )
    final = {f"{m}@{k}": results["test"][f"{m}@{k}"] for m in ("hr", "ndcg") for k in KS}
    final["valid_ndcg@10"] = results["valid"]["ndcg@10"]
    final["valid_hr@10"] = results["valid"]["hr@10"]
    final["num_steps"] = steps
    final.update(extra)
    return final
