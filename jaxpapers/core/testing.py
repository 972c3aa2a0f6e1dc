"""Helpers for tests and notebooks that build big models cheaply on a CPU.

Eager Flax initialisation compiles one random-number kernel per parameter shape (~0.25 s
each on a small CPU), which dominates a test that only needs *some* weights of the right
shapes. :func:`materialize` builds a module abstractly (``nnx.eval_shape``) and fills every
array from NumPy instead; :func:`compile_fast` compiles a function ahead of time with LLVM's
expensive passes off (~25% faster to compile the big test programs on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

FAST_COMPILE = {"xla_llvm_disable_expensive_passes": True}


def compile_fast(fn: Callable[..., Any], *args: Any):
    """``jax.jit(fn)`` lowered for ``args`` and compiled with :data:`FAST_COMPILE`."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


def materialize(make: Callable[[], nnx.Module], seed: int = 0) -> nnx.Module:
    """Builds ``make()`` abstractly and fills it from NumPy (``seed``).

    BatchNorm ``mean`` 0 and ``var`` 1, ``scale`` ~1 + 0.1 N(0, 1), every other array
    ~N(0, 1/fan-in) (fan-in = the product of all but the last axis; 10 for vectors).
    """
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)

    def fill(path, x):
        name = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][-1]
        if name == "var":
            return jnp.ones(x.shape, x.dtype)
        if name == "mean":
            return jnp.zeros(x.shape, x.dtype)
        if name == "scale":
            return jnp.asarray(1.0 + 0.1 * rng.normal(size=x.shape), x.dtype)
        fan = int(np.prod(x.shape[:-1])) if len(x.shape) >= 2 else 10
        return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(fan), x.dtype)

    return nnx.merge(graphdef, jax.tree.map_with_path(fill, state))
