"""LoRA adapters for any NNX model: wrap its ``nnx.Linear`` layers in place, train only the
adapters, fold them back into the kernels.

EM3 (issue 4) fine-tunes its multimodal core end to end with low-rank adapters (Hu et al.,
2021, "LoRA"): a frozen kernel ``W`` becomes ``W + s * A @ B`` with ``A [in, r]``, ``B [r, out]``
and ``B = 0`` at initialisation, so the adapted model starts exactly where the base model is.

* :func:`add_lora` walks the module tree (attributes, ``nnx.List`` / ``nnx.Dict`` entries and
  plain lists/dicts of modules) and replaces every selected ``nnx.Linear`` by a
  :class:`LoRALinear` that holds the original layer as ``base_module``. It returns the number
  of layers wrapped. A layer shared by several parents is wrapped once and the same wrapper is
  put in every place, so sharing survives. Layers already inside a LoRA wrapper are left alone
  (calling :func:`add_lora` twice does not stack adapters).
* :class:`LoRALinear` subclasses Flax's own :class:`flax.nnx.LoRA` (same parameters
  ``lora_a``/``lora_b`` of type :class:`flax.nnx.LoRAParam`, same initialisers: He-uniform
  ``A``, zero ``B``). ``nnx.LoRA`` has no scaling, so the subclass stores the static factor
  ``scale = alpha / rank`` (``1`` when ``alpha`` is None, i.e. plain ``nnx.LoRA`` behaviour)
  and overrides ``__call__`` to return ``base(x) + scale * (x @ A) @ B``. The adapters inherit
  the base kernel's logical axis names (``A``: ``(in_axis, None)``, ``B``: ``(None, out_axis)``)
  and its dtypes.
* :func:`merge_lora` adds ``scale * A @ B`` to each base kernel (HIGHEST precision) and puts
  the base layer back in place of the wrapper: a plain model again, same outputs up to float
  rounding.
* :data:`LORA` is the variable filter of the adapters: ``nnx.Optimizer(model, tx, wrt=LORA)``
  trains only them. Note that ``nnx.LoRAParam`` subclasses ``nnx.Param``, so ``wrt=nnx.Param``
  trains both; use ``nnx.All(nnx.Param, nnx.Not(LORA))`` for the base weights alone.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.sharding import LOGICAL_AXES

LORA = nnx.LoRAParam

Path = tuple[Any, ...]
Select = Callable[[Path, nnx.Linear], bool]


class LoRALinear(nnx.LoRA):
    """``nnx.LoRA`` around an ``nnx.Linear`` with the LoRA scaling ``alpha / rank``."""

    def __init__(self, base: nnx.Linear, rank: int, *, alpha: float | None = None, rngs: nnx.Rngs):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        axes = base.kernel.get_metadata().get(LOGICAL_AXES)
        a_meta = {LOGICAL_AXES: (axes[0], None)} if axes else {}
        b_meta = {LOGICAL_AXES: (None, axes[1])} if axes else {}
        super().__init__(
            base.in_features,
            rank,
            base.out_features,
            base_module=base,
            dtype=base.dtype,
            param_dtype=base.param_dtype,
            a_metadata=a_meta,
            b_metadata=b_meta,
            rngs=rngs,
        )
        self.rank = rank
        self.scale = 1.0 if alpha is None else float(alpha) / rank

    def delta(self) -> jax.Array:
        """The kernel update ``scale * A @ B`` (``[in, out]``)."""
        ab = jnp.matmul(self.lora_a[...], self.lora_b[...], precision=jax.lax.Precision.HIGHEST)
        return self.scale * ab

    def __call__(self, x: jax.Array, **kwargs: Any) -> jax.Array:
        y = self.base_module(x, **kwargs)
        x, lora_a, lora_b = self.promote_dtype(
            (x, self.lora_a[...], self.lora_b[...]), dtype=self.dtype
        )
        return y + (self.scale * ((x @ lora_a) @ lora_b)).astype(y.dtype)


# --------------------------------------------------------------------------- tree walking


def _is_container(node: Any) -> bool:
    return isinstance(node, (nnx.Module, list, dict))


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, nnx.Module):
        return list(nnx.iter_children(node))
    if isinstance(node, list):
        return list(enumerate(node))
    return list(node.items())


def _set_child(parent: Any, key: Any, value: Any) -> None:
    if isinstance(parent, (MutableSequence, MutableMapping)):
        parent[key] = value
    else:
        setattr(parent, key, value)


def _walk(root: nnx.Module) -> list[tuple[Path, Any, Any, Any]]:
    """Every ``(path, parent, key, child)`` edge below ``root`` (each parent visited once),
    not descending into LoRA wrappers nor into ``nnx.Linear`` layers."""
    edges: list[tuple[Path, Any, Any, Any]] = []
    seen: set[int] = set()

    def visit(node: Any, path: Path) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        for key, child in _children(node):
            if not _is_container(child):
                continue
            edges.append(((*path, key), node, key, child))
            if not isinstance(child, (nnx.LoRA, nnx.Linear)):
                visit(child, (*path, key))

    visit(root, ())
    return edges


def add_lora(
    module: nnx.Module,
    rank: int,
    *,
    rngs: nnx.Rngs,
    alpha: float | None = None,
    select: Select | None = None,
) -> int:
    """Wraps every (selected) ``nnx.Linear`` below ``module`` in a :class:`LoRALinear`.

    Args:
      module: the model, modified in place (it must not itself be an ``nnx.Linear``).
      rank: adapter rank ``r``.
      rngs: initialisation of the ``A`` matrices.
      alpha: LoRA ``alpha``; the update is scaled by ``alpha / rank`` (None: scale 1).
      select: ``select(path, linear) -> bool`` chooses layers; ``path`` is the tuple of
        attribute names / indices from ``module`` (e.g. ``("layers", 0, "cross_attention",
        "query")``). Default: every ``nnx.Linear``.

    Returns:
      The number of distinct layers wrapped.
    """
    if not isinstance(module, nnx.Module) or isinstance(module, nnx.Linear):
        raise ValueError(
            f"add_lora needs a module that contains nnx.Linear layers, got {type(module).__name__}"
            " (to adapt a single Linear, wrap it with LoRALinear directly)"
        )
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    wrappers: dict[int, LoRALinear] = {}
    for path, parent, key, child in _walk(module):
        if not isinstance(child, nnx.Linear):
            continue
        if id(child) not in wrappers:
            if select is not None and not select(path, child):
                continue
            wrappers[id(child)] = LoRALinear(child, rank, alpha=alpha, rngs=rngs)
        _set_child(parent, key, wrappers[id(child)])
    return len(wrappers)


def merge_lora(module: nnx.Module) -> int:
    """Folds every LoRA adapter below ``module`` into its base kernel, in place.

    ``kernel += scale * A @ B`` and the wrapper is replaced by its base ``nnx.Linear``.
    Plain ``nnx.LoRA`` wrappers (scale 1) are merged too; standalone ``nnx.LoRA`` layers
    (no base) are left alone. Returns the number merged.
    """
    merged: dict[int, nnx.Linear] = {}
    for path, parent, key, child in _walk(module):
        if not isinstance(child, nnx.LoRA):
            continue
        base = child.base_module
        if base is None:  # a standalone LoRA layer: nothing to merge into
            continue
        if not isinstance(base, nnx.Linear):
            raise ValueError(
                f"cannot merge the LoRA at {path}: its base_module is "
                f"{type(base).__name__}, only nnx.Linear can absorb the update"
            )
        if id(child) not in merged:
            if isinstance(child, LoRALinear):
                delta = child.delta()
            else:
                delta = jnp.matmul(
                    child.lora_a[...], child.lora_b[...], precision=jax.lax.Precision.HIGHEST
                )
            base.kernel[...] = (base.kernel[...] + delta).astype(base.kernel.dtype)
            merged[id(child)] = base
        _set_child(parent, key, merged[id(child)])
    return len(merged)
