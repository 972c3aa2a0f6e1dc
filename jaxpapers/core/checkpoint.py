"""Checkpointing: the only module that imports orbax.

A checkpoint holds three items under ``<workdir>/checkpoints/<step>/``:
``state`` (any pytree of arrays, e.g. ``{"model": nnx.State, "opt": nnx.State}``),
``data`` (the input iterator's JSON state, so a resumed run sees exactly the
batches an uninterrupted one would) and ``meta`` (small JSON facts such as the
best validation metric so far).

Saving is synchronous: the trainer donates its state buffers to the next step, so
a checkpoint must be on disk (or at least on the host) before that step runs. (The
trainer, not this module, checks that a state is finite before saving it.) Typed PRNG keys (from
``nnx.Rngs``) are stored as their raw ``key_data`` and re-wrapped on restore.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_encoded(abstract: Any) -> Any:
    """Abstract arrays as they are stored (keys replaced by their uint32 data)."""

    def one(x):
        if _is_key(x):
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
            sharding = getattr(x, "sharding", None)
            if sharding is not None:
                sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
        return x

    return jax.tree.map(one, abstract)


def _decode(tree: Any, abstract: Any) -> Any:
    def one(x, a):
        if _is_key(a):
            # The key dtype carries its PRNG implementation (threefry, rbg, ...).
            return jax.random.wrap_key_data(x, impl=a.dtype._impl)  # pylint: disable=protected-access
        return x

    return jax.tree.map(one, tree, abstract)


class Checkpointer:
    """Saves and restores (state, data-iterator state, meta) by step."""

    def __init__(self, directory: str, *, max_to_keep: int | None = 2):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self, step: int, state: Any, *, data: dict | None = None, meta: dict | None = None
    ) -> None:
        args = {"state": ocp.args.StandardSave(_encode(state))}
        args["data"] = ocp.args.JsonSave(data or {})
        args["meta"] = ocp.args.JsonSave(meta or {})
        self._manager.save(step, args=ocp.args.Composite(**args), force=True)
        self._manager.wait_until_finished()
        logging.info("saved checkpoint at step %d to %s", step, self.directory)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
        """Restores ``step``; ``abstract_state`` holds ShapeDtypeStructs with shardings."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract_encoded(abstract_state)),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
        state = _decode(restored["state"], abstract_state)
        return state, dict(restored["data"] or {}), dict(restored["meta"] or {})

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
    """Attaches shardings (a pytree prefix of ``abstract_state``) to its leaves."""
    return jax.tree.map(
        lambda s, a: jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(
                leaf.shape, leaf.dtype, sharding=s, weak_type=getattr(leaf, "weak_type", False)
            ),
            a,
        ),
        shardings,
        abstract_state,
    )
