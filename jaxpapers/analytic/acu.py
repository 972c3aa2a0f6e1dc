"""ACU: Analytic Continual Unlearning (reconstructed from the abstract).

No public code or full text was available; this is the natural analytic
formulation, written down so it can be checked.

Continual learning (ACIL / G-ACIL): the learner keeps only ``R = (Σ XᵀX + γI)⁻¹``
and ``W = R Σ XᵀY`` over everything it has learned — never the data — and
updates both recursively per batch (:func:`jaxpapers.linalg.rls_update`).

Unlearning: a request brings the samples to forget ``(X_u, Y_u)`` (a user's own
data, or every sample of a class) and nothing else. The rank-|U| downdate
(:func:`jaxpapers.linalg.rls_downdate`)::

    R' = R + R X_uᵀ (I − X_u R X_uᵀ)⁻¹ X_u R
    W' = W − R' X_uᵀ (Y_u − X_u W)

is exactly the ridge solution on the retained data (Woodbury with a minus sign),
at cost O(|U| d² + |U|² d), independent of how much was learned before.

Claims tested and measured: exact forgetting (equals retraining on the retained
data: ``gap_to_retrain``), efficiency (``unlearn_seconds`` vs ``retrain_seconds``),
fidelity (retained accuracy unchanged w.r.t. retraining); forgetting a whole
class zeroes its column of W and its accuracy.

Guards (host-side, before anything is changed): a request for more samples of a
class than were learned is refused (the learner keeps per-class counts); when the
downdated system stops being positive definite (rows that were never learned, or
a γ too small for the precision), the request is refused with advice instead of
producing NaN.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import linalg
from jaxpapers.analytic import buffer as buffer_lib
from jaxpapers.analytic import features as features_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.data import incremental


class UnlearningError(ValueError):
    """An unlearning request that cannot be honoured exactly."""


class ACUState(NamedTuple):
    """What the learner keeps: R, W and how many samples of each class it learned."""

    rls: linalg.RLSState
    counts: jax.Array  # (C,) learned samples per class


def init(dim: int, num_classes: int, gamma: float, dtype=None) -> ACUState:
    dtype = dtype or jnp.result_type(float)  # float64 under jax.enable_x64, else float32
    return ACUState(linalg.rls_init(dim, num_classes, gamma, dtype), jnp.zeros(num_classes, dtype))


def _one_hot(labels, state: ACUState):
    num_classes = state.counts.shape[0]
    linalg.check_labels(labels, num_classes)
    return jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=state.rls.w.dtype)


def learn(state: ACUState, x: jax.Array, labels) -> ACUState:
    """Learns a batch (features already expanded) — one recursive update."""
    y = _one_hot(labels, state)
    return ACUState(linalg.rls_update(state.rls, x, y), state.counts + y.sum(0))


def unlearn(state: ACUState, x: jax.Array, labels) -> ACUState:
    """Forgets the rows ``(x, labels)``; raises :class:`UnlearningError` when impossible."""
    y = _one_hot(labels, state)
    asked = np.asarray(y.sum(0))
    have = np.asarray(state.counts)
    if np.any(asked > have + 0.5):
        bad = np.flatnonzero(asked > have + 0.5)
        raise UnlearningError(
            f"request to forget {asked[bad].astype(int).tolist()} samples of classes "
            f"{bad.tolist()}, but only {have[bad].astype(int).tolist()} were learned; only data "
            "that was learned can be unlearned"
        )
    rls = linalg.rls_downdate(state.rls, x, y)
    try:
        linalg.ensure_finite(
            rls,
            "the downdated system (I - X_u R X_uᵀ is not positive definite)",
            advice="these rows were probably never learned (or were already forgotten); if "
            "they were, increase gamma or run in float64",
        )
    except linalg.IllConditionedError as e:
        raise UnlearningError(str(e)) from None
    return ACUState(rls, state.counts - asked)


def _timed(fn, *args):
    """``fn(*args)`` and its wall time, measured after a warm-up call (compilation)."""
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def retrain(x: jax.Array, y: jax.Array, gamma: float) -> jax.Array:
    """The reference: ridge from scratch on the retained data (stats + Cholesky)."""
    stats = linalg.gram_stats(x, y)
    return linalg.ridge_solve(stats.xtx, stats.xty, gamma)


def accuracy(w, x, labels) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(features_lib.classify(x, w) == np.asarray(labels)))


def run(config, workdir: str) -> dict:
    """Registry entry: continual learning over the phases, then unlearning requests."""
    return features_lib.run_with_features(config, workdir, _run)


def _run(config, feats: features_lib.Features, workdir: str) -> dict:
    dtype = jnp.float64 if config.analytic.float64 else jnp.float32
    gamma = config.analytic.gamma
    buffer_w = None
    if config.analytic.buffer_size:
        buffer_w = buffer_lib.buffer_weights(
            jax.random.key(config.seed), feats.dim, config.analytic.buffer_size, dtype
        )
    x_train = buffer_lib.expand(jnp.asarray(feats.train, dtype), buffer_w)
    x_test = buffer_lib.expand(jnp.asarray(feats.test, dtype), buffer_w)
    y_train, y_test = feats.train_labels, feats.test_labels
    state = init(x_train.shape[1], feats.num_classes, gamma, dtype)

    writer = metrics_lib.MetricWriter(workdir)
    try:
        # Continual learning, phase by phase, in mini-batches (ACIL's recursion).
        batch = config.unlearn.learn_batch_size
        for phase, classes in enumerate(feats.phases):
            rows = incremental.rows_of(y_train, classes)
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                state = learn(state, x_train[chunk], y_train[chunk])
            seen = feats.seen(phase)
            test_rows = np.flatnonzero(y_test < seen)
            writer.write(
                phase,
                "learn",
                {
                    "accuracy": accuracy(state.rls.w, x_test[test_rows], y_test[test_rows]),
                    "seen_classes": seen,
                },
            )
        before = np.asarray(state.rls.w)
        per_class_before = _per_class(state.rls.w, x_test, y_test, feats.num_classes)

        # Requests: whole classes, then random samples of the retained classes.
        rng = np.random.default_rng(config.seed)
        forget_classes = [int(c) for c in config.unlearn.classes]
        class_rows = incremental.rows_of(y_train, forget_classes)
        retained_pool = np.setdiff1d(np.arange(len(y_train)), class_rows)
        sample_rows = np.sort(
            rng.choice(retained_pool, size=config.unlearn.num_samples, replace=False)
        )
        forgotten = np.union1d(class_rows, sample_rows)

        unlearn_seconds = 0.0
        for step, rows in enumerate([class_rows, sample_rows]):
            if len(rows):
                state, seconds = _timed(unlearn, state, x_train[rows], y_train[rows])
                unlearn_seconds += seconds
                writer.write(step, "unlearn", {"rows": len(rows), "seconds": seconds})

        retained = np.setdiff1d(np.arange(len(y_train)), forgotten)
        y_retained = jax.nn.one_hot(y_train[retained], feats.num_classes, dtype=dtype)
        w_retrain, retrain_seconds = _timed(retrain, x_train[retained], y_retained, gamma)
        w = state.rls.w
        gap = float(jnp.max(jnp.abs(w - w_retrain)) / jnp.max(jnp.abs(w_retrain)))

        keep_test = ~np.isin(y_test, forget_classes)
        drop_test = np.isin(y_test, forget_classes)
        final = {
            "forgotten_accuracy": accuracy(w, x_test[drop_test], y_test[drop_test]),
            "forgotten_accuracy_before": accuracy(before, x_test[drop_test], y_test[drop_test]),
            "retained_accuracy": accuracy(w, x_test[keep_test], y_test[keep_test]),
            "retrain_retained_accuracy": accuracy(w_retrain, x_test[keep_test], y_test[keep_test]),
            "forgotten_samples_train_accuracy": accuracy(
                w, x_train[sample_rows], y_train[sample_rows]
            ),
            "gap_to_retrain": gap,
            "forgotten_column_max": float(jnp.max(jnp.abs(w[:, forget_classes])))
            if forget_classes
            else 0.0,
            "unlearn_seconds": unlearn_seconds,
            "retrain_seconds": retrain_seconds,
            "num_forgotten": int(len(forgotten)),
            "num_retained": int(len(retained)),
        }
        writer.write(len(feats.phases), "final", final)
        per_class_after = _per_class(w, x_test, y_test, feats.num_classes)
    finally:
        writer.close()
    _plot_per_class(
        per_class_before,
        per_class_after,
        forget_classes,
        os.path.join(workdir, "plots", "forgetting_per_class.png"),
    )
    return final


def _per_class(w, x, labels, num_classes):
    pred = features_lib.classify(x, w)
    return [
        float(np.mean(pred[labels == c] == c)) if np.any(labels == c) else float("nan")
        for c in range(num_classes)
    ]


def _plot_per_class(before, after, forgotten, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    fig = Figure(figsize=(max(6, 0.35 * len(before)), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    idx = np.arange(len(before))
    ax.bar(idx - 0.2, before, 0.4, label="before unlearning")
    ax.bar(idx + 0.2, after, 0.4, label="after unlearning")
    for c in forgotten:
        ax.axvspan(c - 0.5, c + 0.5, color="red", alpha=0.1)
    ax.set_xlabel("class (arrival order); shaded: forgotten")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
