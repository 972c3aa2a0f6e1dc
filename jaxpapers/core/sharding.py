"""Logical-axis sharding: names on weights, one rules table maps them to the mesh.

Modules annotate parameters with *logical* axis names (``"vocab"``, ``"embed"``,
``"mlp"`` ...) through :func:`logical` — metadata only, nothing is placed on
devices at construction. A rules table maps each logical name to a mesh axis (or
``None`` = replicated); :func:`state_shardings` turns a whole (abstract) NNX state
into ``NamedSharding`` s for ``jax.jit(..., out_shardings=...)`` and checkpoint
restore. Optimizer state inherits its parameter's names, so Adam moments follow
their embedding table.

A rule is skipped for one array dimension (that dimension is replicated) when the
mesh axis is absent or of size 1, already used by another dimension, or does not
divide the dimension: a 1037-row vocabulary stays whole on an 8-way ``model`` axis
instead of failing. Batches shard their leading dimension over the ``batch``
rule's axis (``data``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

Rules = Sequence[tuple[str, str | None]]

# Batch over `data`; large embedding tables may shard their rows over `model`.
DEFAULT_RULES: Rules = (
    ("batch", "data"),
    ("vocab", "model"),
    ("embed", None),
    ("mlp", None),
    ("heads", None),
)

LOGICAL_AXES = "logical_axes"


def logical(init_fn: Callable[..., jax.Array], *names: str | None) -> Callable[..., jax.Array]:
    """Wraps an initializer so the created ``nnx.Param`` carries logical axis names.

    >>> init = logical(nnx.initializers.normal(0.01), "vocab", "embed")
    >>> emb = nnx.Embed(100, 8, embedding_init=init, rngs=nnx.Rngs(0))
    >>> emb.embedding.get_metadata()["logical_axes"]
    ('vocab', 'embed')
    """
    return nnx.with_metadata(init_fn, **{LOGICAL_AXES: tuple(names)})


def spec_for(
    names: Sequence[str | None] | None,
    shape: Sequence[int],
    mesh: Mesh,
    rules: Rules = DEFAULT_RULES,
) -> P:
    """The ``PartitionSpec`` of an array with logical axis ``names`` on ``mesh``."""
    if names is None:
        return P()
    if len(names) != len(shape):
        raise ValueError(f"logical axes {tuple(names)} do not match array shape {tuple(shape)}")
    table = dict(rules)
    used: set[str] = set()
    spec: list[str | None] = []
    for name, dim in zip(names, shape):
        axis = table.get(name) if name is not None else None
        size = mesh.shape.get(axis, 1) if axis is not None else 1
        if axis is None or size == 1 or axis in used or dim % size:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    while spec and spec[-1] is None:
        spec.pop()
    return P(*spec)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """``NamedSharding`` for every variable of an (abstract) NNX state or pytree of them.

    The result is a pytree prefix of ``state`` (one sharding per variable) usable as
    ``jax.jit`` ``in_shardings``/``out_shardings``.
    """

    def one(v):
        if _is_variable(v):
            names = v.get_metadata().get(LOGICAL_AXES)
            shape = v.get_value().shape
        else:
            names, shape = None, v.shape
        return NamedSharding(mesh, spec_for(names, shape, mesh, rules))

    return jax.tree.map(one, state, is_leaf=_is_variable)


def batch_spec(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> P:
    """Leading-dimension spec for batches (``batch`` rule, usually the ``data`` axis)."""
    axis = dict(rules).get("batch")
    if axis is None or axis not in mesh.shape:
        return P()
    return P(axis)


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(mesh, rules))


def data_parallel_size(sharding: NamedSharding) -> int:
    """How many ways a batch sharding splits the leading (batch) dimension."""
    spec = sharding.spec
    if not len(spec) or spec[0] is None:
        return 1
    axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def shard_batch(batch: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict:
    """Host batch -> global arrays laid out by ``sharding`` (see :func:`batch_sharding`).

    Single-process: ``batch`` holds the whole global batch.
    """
    n = data_parallel_size(sharding)
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % n:
            raise ValueError(
                f"batch field {key!r} with shape {value.shape} cannot be split over the "
                f"{n}-way data axis; make the batch size a multiple of {n}"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
