"""AFCL: Analytic Federated Continual Learning (reconstructed from the abstract).

No public code or full text was available; the design below follows the
abstract's claims and is written down so it can be checked.

Setting. Tasks arrive one after another (class-incremental: each task brings
new classes); within a task the data is split over clients, non-IID. Every
client holds a frozen feature extractor (a backbone trained on the base classes
followed by ACIL's random buffer, :mod:`jaxpapers.analytic.buffer`).

Algorithm (one forward pass per client per task, one round per task):

* **client** (``client_statistics``): features ``X_k`` of its task data, one-hot
  labels ``Y_k`` over all C classes (columns of classes not seen yet are zero),
  uploads ``X_kᵀX_k`` and ``X_kᵀY_k`` — computed blockwise on the ``clients``
  mesh axis and summed with a ``psum`` (:func:`jaxpapers.federated.clients.federated_sum`);
* **server** (:class:`AFCLServer`): keeps the running sums ``C = Σ XᵀX`` and
  ``Q = Σ XᵀY`` over every client and task — a state of size d² + dC whatever the
  number of clients — and answers with ``W_t = (C + γI)⁻¹ Q`` (Cholesky).

Claim (spatio-temporal invariance): after task t, ``W_t`` equals centralized
joint ridge regression on all data of tasks ≤ t, for any client split, any
number of clients and any task order, because it is computed from the same
sufficient statistics. Columns of classes not seen yet are exactly zero. The
experiment measures ``gap_to_centralized`` (max relative difference of the
weights) after every task.

Choices where the abstract is silent: Q is kept with all C columns from the
start (zero columns for future classes) instead of being padded when a class
arrives — the same numbers, static shapes; the backbone is trained centrally on
the base classes (phase 0) and the base classes are then learned analytically
like every later task; statistics in float64 by default (``analytic.float64``).
"""

from __future__ import annotations

import functools
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxpapers import federated, linalg
from jaxpapers.analytic import buffer as buffer_lib
from jaxpapers.analytic import features as features_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.data import incremental


class AFCLServer(NamedTuple):
    """The server's whole state: Σ XᵀX (d, d), Σ XᵀY (d, C) and the row count."""

    stats: linalg.GramStats


def client_statistics(x, labels, mask, buffer_w, num_classes: int) -> linalg.GramStats:
    """One client block: buffer features, one-hot labels, masked Gram statistics."""
    feats = buffer_lib.expand(x, buffer_w)
    y = jax.nn.one_hot(labels, num_classes, dtype=feats.dtype)
    return linalg.gram_stats(feats, y, mask)


@functools.cache
def _block_fn(num_classes: int, dtype: str):
    """One function object per (C, dtype), so the jitted reduction is compiled once."""

    def block_fn(x, labels, mask, buffer_w):
        return client_statistics(x.astype(dtype), labels, mask.astype(dtype), buffer_w, num_classes)

    return block_fn


def afcl(dim: int, num_classes: int, gamma: float, *, dtype=None) -> federated.FederatedAlgorithm:
    """AFCL as ``FederatedAlgorithm(init, apply)``; ``apply`` runs one task's round.

    ``apply(server, blocks, mesh, buffer_w)`` sums the clients' statistics of one
    task (``blocks``: :class:`jaxpapers.federated.clients.ClientBlocks`) into the
    server state and returns the diagnostics of the round.
    """

    dtype = dtype or jnp.result_type(float)  # float64 under jax.enable_x64, else float32

    def init() -> AFCLServer:
        return AFCLServer(linalg.gram_init(dim, num_classes, dtype))

    block_fn = _block_fn(num_classes, jnp.dtype(dtype).name)

    def apply(server: AFCLServer, blocks, mesh, buffer_w):
        task_stats = federated.federated_sum(block_fn, blocks, mesh, buffer_w, additive=True)
        server = AFCLServer(linalg.gram_merge(server.stats, task_stats))
        return server, {"num_clients": blocks.num_clients, "rows": float(task_stats.count)}

    del gamma  # the solve happens in `weights`
    return federated.FederatedAlgorithm(init=init, apply=apply)


def weights(server: AFCLServer, gamma: float) -> jax.Array:
    """The global classifier ``(C + γI)⁻¹ Q``, refused with advice if ill-conditioned."""
    w = linalg.ridge_solve(server.stats.xtx, server.stats.xty, gamma)
    linalg.ensure_finite(w, "AFCL's ridge solve")
    return w


def predict(x: np.ndarray, w: jax.Array, buffer_w) -> np.ndarray:
    return features_lib.classify(buffer_lib.expand(jnp.asarray(x, w.dtype), buffer_w), w)


def run_stream(config, feats: features_lib.Features, *, writer=None) -> dict:
    """Learns every phase federatedly and checks it against centralized ridge.

    Returns per-phase accuracies, the centralized ones, the weight gaps and the
    final weights (``w``) and buffer.
    """
    dtype = jnp.float64 if config.analytic.float64 else jnp.float32
    num_classes = feats.num_classes
    buffer_w = None
    dim = feats.dim
    if config.analytic.buffer_size:
        buffer_w = buffer_lib.buffer_weights(
            jax.random.key(config.seed), feats.dim, config.analytic.buffer_size, dtype
        )
        dim = config.analytic.buffer_size
    gamma = config.analytic.gamma
    algorithm = afcl(dim, num_classes, gamma, dtype=dtype)
    mesh = federated.clients_mesh()
    server = algorithm.init()
    central = linalg.gram_init(dim, num_classes, dtype)
    history = {
        "accuracy": [],
        "centralized_accuracy": [],
        "gap": [],
        "seen": [],
        "round_seconds": [],
    }
    w = None
    for phase, classes in enumerate(feats.phases):
        rows = incremental.rows_of(feats.train_labels, classes)
        x, y = feats.train[rows], feats.train_labels[rows]
        parts = features_lib.client_partition(config.federated, y, seed=config.seed * 1000 + phase)
        blocks = federated.pack(x, y, parts, block_size=config.federated.block_size)
        t0 = time.perf_counter()
        server, diag = algorithm.apply(server, blocks, mesh, buffer_w)
        w = weights(server, gamma)
        jax.block_until_ready(w)
        history["round_seconds"].append(time.perf_counter() - t0)

        # Centralized joint ridge on the same rows (the claim's reference).
        central = linalg.gram_update(
            central,
            buffer_lib.expand(jnp.asarray(x, dtype), buffer_w),
            jax.nn.one_hot(y, num_classes, dtype=dtype),
        )
        w_central = linalg.ridge_solve(central.xtx, central.xty, gamma)
        gap = float(jnp.max(jnp.abs(w - w_central)) / jnp.max(jnp.abs(w_central)))

        seen = feats.seen(phase)
        test_rows = np.flatnonzero(feats.test_labels < seen)
        x_test, y_test = feats.test[test_rows], feats.test_labels[test_rows]
        acc = float(np.mean(predict(x_test, w, buffer_w) == y_test))
        acc_central = float(np.mean(predict(x_test, w_central, buffer_w) == y_test))
        unseen = float(jnp.max(jnp.abs(w[:, seen:]))) if seen < num_classes else 0.0
        for key, value in (
            ("accuracy", acc),
            ("centralized_accuracy", acc_central),
            ("gap", gap),
            ("seen", seen),
        ):
            history[key].append(value)
        if writer is not None:
            writer.write(
                phase,
                "phase",
                {
                    "accuracy": acc,
                    "centralized_accuracy": acc_central,
                    "gap_to_centralized": gap,
                    "seen_classes": seen,
                    "unseen_column_max": unseen,
                    "rows": diag["rows"],
                    "num_clients": diag["num_clients"],
                    "round_seconds": history["round_seconds"][-1],
                },
            )
    return {**history, "w": w, "buffer_w": buffer_w}


def run(config, workdir: str) -> dict:
    """Registry entry: AFCL on ``config.data`` with ``config.federated`` clients."""
    feats = features_lib.prepare(config, workdir)
    logging.info("features: %s", feats.info)
    with jax.enable_x64(bool(config.analytic.float64)):
        with metrics_lib.MetricWriter(workdir) as writer:
            out = run_stream(config, feats, writer=writer)
    final = {
        "accuracy": out["accuracy"][-1],
        "average_accuracy": float(np.mean(out["accuracy"])),
        "centralized_accuracy": out["centralized_accuracy"][-1],
        "gap_to_centralized": float(max(out["gap"])),
        "num_clients": config.federated.num_clients,
        "num_phases": len(feats.phases),
    }
    if "backbone_base_accuracy" in feats.info:
        final["backbone_base_accuracy"] = feats.info["backbone_base_accuracy"]
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    plotting.learning_curves(
        events,
        os.path.join(workdir, "plots", "phases.png"),
        [
            ("accuracy", ["phase"]),
            ("centralized_accuracy", ["phase"]),
            ("gap_to_centralized", ["phase"]),
        ],
        title=f"AFCL on {feats.info['dataset']}: {config.federated.num_clients} clients, "
        f"{config.federated.partition} (alpha={config.federated.alpha})",
    )
    return final
