"""Closed-form (analytic) learning: Gram statistics, ridge, RLS, AFL, DeepAFL.

Small pure functions in the optax/rlax style, shared by the analytic-learning
papers (ACIL/G-ACIL, AFL, DeepAFL):

* :mod:`~jaxpapers.linalg.gram`: sufficient statistics ``XᵀX``, ``XᵀY``, count.
* :mod:`~jaxpapers.linalg.ridge`: ridge solves by Cholesky.
* :mod:`~jaxpapers.linalg.rls`: recursive least squares (learning and exact
  unlearning, chunk by chunk, with classes appearing over time).
* :mod:`~jaxpapers.linalg.afl`: analytic federated aggregation and cleaning.
* :mod:`~jaxpapers.linalg.sandwich`: DeepAFL's sandwiched least squares.
* :mod:`~jaxpapers.linalg.checks`: host-level guards (NaN/ill-conditioning,
  labels).

Every function solves one problem (``jax.vmap`` for many), is jit-able and
keeps the input dtype; failures inside ``jit`` surface as NaN, which the
host-level guards in :mod:`~jaxpapers.linalg.checks` turn into errors.
"""

from jaxpapers.linalg.afl import afl_clean, afl_local, afl_merge
from jaxpapers.linalg.checks import (
    DEFAULT_ADVICE,
    IllConditionedError,
    check_labels,
    condition_number,
    ensure_finite,
    ensure_positive_definite,
    one_hot,
)
from jaxpapers.linalg.gram import (
    GramStats,
    gram_downdate,
    gram_init,
    gram_merge,
    gram_stats,
    gram_update,
    pad_columns,
)
from jaxpapers.linalg.ridge import ridge_inverse, ridge_objective, ridge_solve
from jaxpapers.linalg.rls import RLSState, rls_downdate, rls_from_stats, rls_init, rls_update
from jaxpapers.linalg.sandwich import sandwich_residual, sandwich_solve

__all__ = [
    "DEFAULT_ADVICE",
    "GramStats",
    "IllConditionedError",
    "RLSState",
    "afl_clean",
    "afl_local",
    "afl_merge",
    "check_labels",
    "condition_number",
    "ensure_finite",
    "ensure_positive_definite",
    "gram_downdate",
    "gram_init",
    "gram_merge",
    "gram_stats",
    "gram_update",
    "one_hot",
    "pad_columns",
    "ridge_inverse",
    "ridge_objective",
    "ridge_solve",
    "rls_downdate",
    "rls_from_stats",
    "rls_init",
    "rls_update",
    "sandwich_residual",
    "sandwich_solve",
]
