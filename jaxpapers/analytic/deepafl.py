"""DeepAFL: Deep Analytic Federated Learning — gradient-free residual blocks.

Facts from the reference implementation (tangent-heng/DeepAFL,
``federated_entity/{deep_afl,client,server}.py`` and ``run.sh``):

* ``X_0 = tanh(φ A_0 + b_0)`` — a random, untrained layer of width D on the
  frozen backbone's features φ (PyTorch ``nn.Linear`` initialisation:
  U(±1/√fan_in) for weights and bias).
* For every layer t = 0..T a ridge **head** ``W_t = (Σ_k X_tkᵀX_tk + λI)⁻¹ Σ_k X_tkᵀY_k``
  (λ added once, at the server).
* For t < T, random features ``F_t = σ(X_t B_t + c_t)`` (p columns, GELU), the
  residual ``E_t = Y − X_t W_t``; clients upload ``F_tᵀF_t`` and ``W_t E_tᵀ F_t``;
  the server solves the **sandwich** problem
  ``min_Δ ‖E_t − F_t Δ W_t‖² + λ_s‖Δ‖²`` by two eigendecompositions
  (:func:`jaxpapers.linalg.sandwich_solve`), and every client updates its
  representation ``X_{t+1} = X_t + F_t Δ_t`` (a residual block).
* 2T + 1 upload rounds; defaults (``run.sh``): D = p = 1024, T = 20, λ = 1,
  λ_s = 0.05, GELU.

Why depth cannot hurt the training objective: with ``W_t`` fixed, Δ = 0 is
feasible for the sandwich problem, so ``‖Y − X_{t+1}W_t‖² ≤ ‖E_t‖²``; re-solving
the head then gives ``J_{t+1} ≤ J_t`` for ``J_t = min_W ‖Y − X_tW‖² + λ‖W‖²``.
The experiment logs ``J_t`` per layer (computed from the aggregated statistics,
no extra pass) and the tests check it never increases.

Federated equals centralized per layer, whatever the partition: every server
quantity is a sum of per-client statistics. Clients here are blocks on the
``clients`` mesh axis (:mod:`jaxpapers.federated.clients`); each keeps its own
``X_t`` between rounds.

The single-layer baseline is AFL: ridge on the backbone features φ (summed
client statistics; :mod:`jaxpapers.linalg.afl` shows the pairwise aggregation
gives the same weights).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import federated, linalg
from jaxpapers.analytic import features as features_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.linalg.gram import matmul_tn

_HIGHEST = jax.lax.Precision.HIGHEST
ACTIVATIONS = {
    "gelu": jax.nn.gelu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


class RandomLayers(NamedTuple):
    """The untrained parts: X_0's projection and every layer's random features."""

    a0: jax.Array  # (d, D)
    b0: jax.Array  # (D,)
    b: jax.Array  # (T, D, p)
    c: jax.Array  # (T, p)


class DeepAFLModel(NamedTuple):
    random: RandomLayers
    heads: list  # T + 1 arrays (D, C)
    deltas: list  # T arrays (p, D)


def random_layers(key, d: int, hidden: int, features: int, layers: int, dtype) -> RandomLayers:
    """PyTorch ``nn.Linear``'s default init: U(±1/√fan_in) for weights and biases."""
    k0, k1, k2, k3 = jax.random.split(key, 4)

    def u(k, shape, fan_in):  # float32 draws: the same layers in float32 and float64 runs
        bound = 1.0 / np.sqrt(fan_in)
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound).astype(dtype)

    return RandomLayers(
        u(k0, (d, hidden), d),
        u(k1, (hidden,), d),
        u(k2, (layers, hidden, features), hidden),
        u(k3, (layers, features), hidden),
    )


def initial_representation(phi, r: RandomLayers):
    return jnp.tanh(jnp.matmul(phi, r.a0, precision=_HIGHEST) + r.b0)


def random_features(x, r: RandomLayers, t: int, activation: str):
    return ACTIVATIONS[activation](jnp.matmul(x, r.b[t], precision=_HIGHEST) + r.c[t])


def next_representation(x, r: RandomLayers, t: int, delta, activation: str):
    """``X_{t+1} = X_t + F_t Δ_t``."""
    return x + jnp.matmul(random_features(x, r, t, activation), delta, precision=_HIGHEST)


def predict(model: DeepAFLModel, phi, activation: str) -> list[jax.Array]:
    """Logits of every layer's head, ``[X_0 W_0, X_1 W_1, ..., X_T W_T]``."""
    x = initial_representation(phi, model.random)
    out = []
    for t, w in enumerate(model.heads):
        out.append(jnp.matmul(x, w, precision=_HIGHEST))
        if t < len(model.deltas):
            x = next_representation(x, model.random, t, model.deltas[t], activation)
    return out


def ridge_objective_from_stats(stats: linalg.GramStats, w, lam, y_sq: float) -> float:
    """``‖Y − XW‖² + λ‖W‖²`` from Σ XᵀX, Σ XᵀY and ‖Y‖² alone."""
    fit = (
        y_sq
        - 2.0 * jnp.sum(w * stats.xty)
        + jnp.sum(w * jnp.matmul(stats.xtx, w, precision=_HIGHEST))
    )
    return float(fit + lam * jnp.sum(w * w))


@dataclasses.dataclass(frozen=True)
class DeepAFLConfig:
    hidden: int = 1024  # D
    features: int = 1024  # p
    layers: int = 20  # T
    reg: float = 1.0  # λ
    reg_sandwich: float = 0.05  # λ_s
    activation: str = "gelu"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if min(self.hidden, self.features) <= 0 or self.layers < 0:
            raise ValueError("DeepAFL needs positive widths and layers >= 0")


def fit(blocks, mesh, num_classes: int, cfg: DeepAFLConfig, key, *, dtype=None):
    """Trains DeepAFL federatedly over ``blocks`` (features φ, labels, mask per block).

    Returns ``(model, per-layer diagnostics)``. Every server quantity is a
    :func:`~jaxpapers.federated.clients.federated_sum` of client statistics.
    """
    dtype = dtype or jnp.result_type(float)  # float64 under jax.enable_x64, else float32
    d = blocks.x.shape[-1]
    r = random_layers(key, d, cfg.hidden, cfg.features, cfg.layers, dtype)
    activation = cfg.activation

    x_blocks = _map_blocks(_x0_fn(jnp.dtype(dtype).name), blocks.x, r.a0, r.b0)
    state = dataclasses.replace(blocks, x=x_blocks)
    y_sq = float(np.sum(np.asarray(blocks.mask)))  # one-hot rows: ‖Y‖² = number of rows
    head_stats = _head_stats_fn(num_classes, jnp.dtype(dtype).name)
    sandwich_stats = _sandwich_stats_fn(num_classes, jnp.dtype(dtype).name, activation)
    step = _next_fn(activation)

    heads, deltas, objective = [], [], []
    for t in range(cfg.layers + 1):
        stats = federated.federated_sum(head_stats, state, mesh, additive=True)
        w = linalg.ridge_solve(stats.xtx, stats.xty, cfg.reg)
        linalg.ensure_finite(w, f"DeepAFL head {t}")
        heads.append(w)
        objective.append(ridge_objective_from_stats(stats, w, cfg.reg, y_sq))
        if t == cfg.layers:
            break
        ftf, wef = federated.federated_sum(
            sandwich_stats, state, mesh, r.b[t], r.c[t], w, additive=True
        )
        delta = linalg.sandwich_solve(ftf, wef, w, cfg.reg_sandwich)
        linalg.ensure_finite(delta, f"DeepAFL sandwich solve {t}")
        deltas.append(delta)
        state = dataclasses.replace(state, x=_map_blocks(step, state.x, r.b[t], r.c[t], delta))
    return DeepAFLModel(r, heads, deltas), {"objective": objective}


# Client-side functions, one object per static configuration, so that the jitted
# reductions and maps compile once (not once per layer).


@functools.cache
def _x0_fn(dtype: str):
    @jax.jit
    def x0(phi, a0, b0):
        return jnp.tanh(jnp.matmul(phi.astype(dtype), a0, precision=_HIGHEST) + b0)

    return x0


@functools.cache
def _next_fn(activation: str):
    @jax.jit
    def step(x, b, c, delta):
        f = ACTIVATIONS[activation](jnp.matmul(x, b, precision=_HIGHEST) + c)
        return x + jnp.matmul(f, delta, precision=_HIGHEST)

    return step


@functools.cache
def _head_stats_fn(num_classes: int, dtype: str):
    """Client statistics of a head: Σ XᵀX, Σ XᵀY."""

    def head_stats(x, labels, mask):
        y = jax.nn.one_hot(labels, num_classes, dtype=dtype)
        return linalg.gram_stats(x.astype(dtype), y, mask.astype(dtype))

    return head_stats


@functools.cache
def _sandwich_stats_fn(num_classes: int, dtype: str, activation: str):
    """Client statistics of a sandwich problem: ``FᵀF`` and ``W EᵀF``."""

    def sandwich_stats(x, labels, mask, b, c, w):
        f = ACTIVATIONS[activation](jnp.matmul(x, b, precision=_HIGHEST) + c)
        f = f * mask.astype(dtype)[:, None]
        e = jax.nn.one_hot(labels, num_classes, dtype=dtype) - jnp.matmul(x, w, precision=_HIGHEST)
        return matmul_tn(f, f), jnp.matmul(w, matmul_tn(e, f), precision=_HIGHEST)

    return sandwich_stats


def _map_blocks(fn, x_blocks: np.ndarray, *args, chunk: int = 256) -> np.ndarray:
    """Applies ``fn`` to every row of (B, block, d) blocks on the host, in chunks."""
    jfn = fn if hasattr(fn, "lower") else jax.jit(fn)
    flat = x_blocks.reshape(-1, x_blocks.shape[-1])
    rows = chunk * x_blocks.shape[1]
    out = [
        np.asarray(jfn(jnp.asarray(flat[i : i + rows]), *args)) for i in range(0, len(flat), rows)
    ]
    out = np.concatenate(out)
    return out.reshape(*x_blocks.shape[:2], out.shape[-1])


def afl_weights(blocks, mesh, num_classes: int, reg: float, *, dtype=None):
    """Single-layer AFL: ridge on the backbone features from summed client statistics."""
    dtype = dtype or jnp.result_type(float)
    s = federated.federated_sum(
        _head_stats_fn(num_classes, jnp.dtype(dtype).name), blocks, mesh, additive=True
    )
    return linalg.ridge_solve(s.xtx, s.xty, reg)


def run(config, workdir: str) -> dict:
    """Registry entry: DeepAFL vs single-layer AFL, federated vs centralized."""
    return features_lib.run_with_features(config, workdir, _run)


def _run(config, feats: features_lib.Features, workdir: str) -> dict:
    dtype = jnp.float64 if config.analytic.float64 else jnp.float32
    d = config.deepafl
    cfg = DeepAFLConfig(d.hidden, d.features, d.layers, d.reg, d.reg_sandwich, d.activation)
    mesh = federated.clients_mesh()
    num_classes = feats.num_classes
    parts = features_lib.client_partition(config.federated, feats.train_labels, seed=config.seed)
    blocks = federated.pack(
        feats.train, feats.train_labels, parts, block_size=config.federated.block_size
    )
    one_client = federated.pack(
        feats.train,
        feats.train_labels,
        [np.arange(len(feats.train_labels))],
        block_size=config.federated.block_size,
    )
    key = jax.random.key(config.seed)
    model, diag = fit(blocks, mesh, num_classes, cfg, key, dtype=dtype)
    central, central_diag = fit(one_client, mesh, num_classes, cfg, key, dtype=dtype)
    gaps = [
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        for a, b in zip(model.heads, central.heads)
    ]

    phi_test = jnp.asarray(feats.test, dtype)
    logits = predict(model, phi_test, cfg.activation)
    accs = [float(np.mean(np.asarray(z.argmax(-1)) == feats.test_labels)) for z in logits]
    w_afl = afl_weights(blocks, mesh, num_classes, cfg.reg, dtype=dtype)
    afl_acc = float(np.mean(features_lib.classify(phi_test, w_afl) == feats.test_labels))

    with metrics_lib.MetricWriter(workdir) as writer:
        for t, (acc, obj, gap) in enumerate(zip(accs, diag["objective"], gaps)):
            writer.write(
                t,
                "layer",
                {
                    "accuracy": acc,
                    "ridge_objective": obj,
                    "gap_to_centralized": gap,
                    "centralized_objective": central_diag["objective"][t],
                },
            )
    final = {
        "accuracy": accs[-1],
        "afl_accuracy": afl_acc,
        "layer0_accuracy": accs[0],
        "best_layer_accuracy": max(accs),
        "gap_to_centralized": max(gaps),
        "objective_non_increasing": bool(
            np.all(np.diff(diag["objective"]) <= 1e-9 * abs(diag["objective"][0]))
        ),
        "num_clients": config.federated.num_clients,
        "layers": cfg.layers,
    }
    final.update({f"accuracy_layer_{t}": a for t, a in enumerate(accs)})
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    plotting.learning_curves(
        events,
        os.path.join(workdir, "plots", "layers.png"),
        [
            ("accuracy", ["layer"]),
            ("ridge_objective", ["layer"]),
            ("gap_to_centralized", ["layer"]),
        ],
        reference_lines={"accuracy": {"AFL (1 layer)": afl_acc}},
        title=f"DeepAFL on {feats.info['dataset']}: {config.federated.num_clients} clients",
    )
    return final
