"""Clients as a sharded mesh axis: aggregating sufficient statistics is a ``psum``.

Analytic federated algorithms (AFL, AFCL, DeepAFL, ...) need, from every
client, sums over its rows: ``XᵀX``, ``XᵀY``, counts. This module lays the
clients' rows out so that those sums run data-parallel over a one-axis
``clients`` mesh and the server's aggregation is a single ``jax.lax.psum``.

Layout: fixed-size blocks
    :func:`pack` cuts every client's rows into blocks of ``block_size`` rows; a
    client's last block is padded with zero rows whose ``mask`` is 0, and
    ``owner`` records which client each block belongs to. Storage is
    ``O(total rows + clients * block_size)`` whatever the skew: a Dirichlet(0.01)
    partition with one 20k-row client and 999 tiny ones is not padded to
    1000 x 20k rows, which a ``(clients, max_rows, d)`` layout would need. Blocks
    of one client may land on different devices; that is fine because every
    reduction here is a sum.

Reduction
    :func:`federated_sum` computes ``sum over blocks of block_fn(x, y, mask, *args)``
    inside ``jax.shard_map`` over ``clients``: each device ``lax.scan`` s over its
    blocks accumulating the (pytree) statistic - a scan rather than ``vmap`` +
    sum so that per-block ``d x d`` Grams are never materialised side by side -
    and ``psum`` s the result over the axis. :func:`per_client_sum` scatters each
    block's statistic into a ``(num_clients, ...)`` accumulator by ``owner``
    before the ``psum`` (replicated, so device memory is ``num_clients`` times the
    statistic; use it for per-client solves and diagnostics, and
    :func:`federated_sum` for global sums).

Streaming
    Blocks stay on the host and are sent in chunks of ``chunk_blocks`` (a
    multiple of the devices on the axis; the last chunk is padded with all-zero
    blocks), so device memory is bounded by one chunk whatever the dataset size.
    Every chunk has the same static shape, so the per-chunk function is traced
    and compiled once (and cached per ``(block_fn, mesh)`` across calls); chunk
    results are added on device, and JAX's asynchronous dispatch overlaps the
    next chunk's transfer with the current chunk's compute.

Contract for ``block_fn(x, y, mask, *args)``
    ``x`` is ``(block_size, *feature_shape)``, ``y`` is ``(block_size, *target_shape)``,
    ``mask`` is ``(block_size,)`` with 1 for real rows and 0 for padding; ``args``
    are passed replicated (model weights, a projection, ...). It returns a pytree
    of arrays of fixed shapes and must give padded rows zero weight (multiply by
    ``mask``), as sufficient statistics do. A block with no real rows (the
    chunk padding) contributes exactly zero whatever ``block_fn`` returns.

Multi-host (the same code; only the single-process path has been tested)
    Under ``jax.distributed.initialize()`` every process runs the same program:

    1. compute the same partition on every process (same seed), e.g.
       ``parts = partition.dirichlet(labels, num_clients, alpha, seed=0)``;
    2. pack only this process's clients:
       ``blocks = pack(x, y, parts, block_size=256, clients=process_clients(len(parts)))``
       (``owner`` keeps global client ids; ``x``/``y`` need only hold the rows
       those clients index);
    3. ``mesh = clients_mesh()`` spans every process's devices (``jax.devices()``
       is global and ordered by process, so each process's devices are a
       contiguous run of the axis);
    4. ``federated_sum(block_fn, blocks, mesh, w)`` then makes each chunk a
       global array with ``jax.make_array_from_process_local_data``: every
       process supplies ``chunk_blocks * local_devices / axis_size`` blocks of its
       own, the number of chunks is the maximum over processes (processes that
       run out send all-padding chunks), and the ``psum`` crosses hosts. The
       result is replicated on every device of the mesh; read it on a process
       with ``out.addressable_data(0)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.core.mesh import make_mesh

CLIENTS_AXIS = "clients"

# Default device memory for one chunk's blocks (x, y and mask), per device.
_CHUNK_BYTES_PER_DEVICE = 64 * 2**20

BlockFn = Callable[..., Any]


@dataclasses.dataclass
class ClientBlocks:
    """Clients' rows cut into fixed-size, masked blocks (host NumPy arrays).

    Attributes:
      x: features, ``(num_blocks, block_size, *feature_shape)``.
      y: targets, ``(num_blocks, block_size, *target_shape)`` (int labels or floats).
      mask: ``(num_blocks, block_size)``, 1 for real rows and 0 for padding; a
        floating dtype (the features' when they are floating, else float32).
      owner: ``(num_blocks,)`` int32 client id of each block.
      num_clients: number of clients (ids are ``0 .. num_clients - 1``; a client
        without rows owns no block).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    owner: np.ndarray
    num_clients: int

    def __post_init__(self) -> None:
        b = self.owner.shape[0] if self.owner.ndim == 1 else -1
        if self.owner.ndim != 1 or self.mask.ndim != 2 or self.mask.shape[0] != b:
            raise ValueError(
                f"owner must be (B,) and mask (B, block); got {self.owner.shape}, {self.mask.shape}"
            )
        for name, arr in (("x", self.x), ("y", self.y)):
            if arr.shape[:2] != self.mask.shape:
                raise ValueError(
                    f"{name} must start with the mask's shape {self.mask.shape}, got {arr.shape}"
                )
        if self.num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {self.num_clients}")
        if b and (self.owner.min() < 0 or self.owner.max() >= self.num_clients):
            raise ValueError(f"owner ids must lie in [0, {self.num_clients})")

    @property
    def num_blocks(self) -> int:
        """Number of blocks."""
        return self.mask.shape[0]

    @property
    def block_size(self) -> int:
        """Rows per block."""
        return self.mask.shape[1]

    def client_sizes(self) -> np.ndarray:
        """Real rows per client, ``(num_clients,)`` int64."""
        rows = self.mask.sum(axis=1).round().astype(np.int64)
        return np.bincount(self.owner, weights=rows, minlength=self.num_clients).astype(np.int64)


def process_clients(
    num_clients: int, process_index: int | None = None, process_count: int | None = None
) -> np.ndarray:
    """The contiguous range of client ids one process packs in a multi-host run.

    Defaults to this process (``jax.process_index()`` of ``jax.process_count()``);
    on a single process it is every client.

    >>> process_clients(10, 1, 3).tolist()
    [4, 5, 6]
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} must lie in [0, {count})")
    return np.array_split(np.arange(num_clients), count)[index]


def pack(
    features: Any,
    targets: Any,
    partition: Sequence[Any],
    *,
    block_size: int,
    clients: Sequence[int] | np.ndarray | None = None,
) -> ClientBlocks:
    """Cuts each client's rows into ``block_size``-row blocks (last one padded).

    Args:
      features: ``(N, *feature_shape)`` array.
      targets: ``(N, *target_shape)`` array (int labels or float targets).
      partition: row indices per client (e.g. from :mod:`.partition`); client
        ``k`` is ``partition[k]``.
      block_size: rows per block (>= 1). Small blocks waste little padding on
        skewed partitions; large ones make bigger matmuls and fewer steps of
        each device's sequential scan (use hundreds of rows on accelerators).
      clients: the client ids to pack (default: all). In a multi-host run each
        process packs its own, e.g. :func:`process_clients`; owners keep the
        global ids and ``num_clients`` stays ``len(partition)``.

    Returns:
      The blocks of the selected clients, in client order; a client with no rows
      owns no block.
    """
    features = np.asarray(features)
    targets = np.asarray(targets)
    if features.ndim < 1 or targets.ndim < 1 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            f"features and targets need the same leading (row) axis, got {features.shape} "
            f"and {targets.shape}"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise ValueError(f"block_size must be an integer, got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    num_clients = len(partition)
    if num_clients < 1:
        raise ValueError("partition has no clients")
    ids = np.arange(num_clients) if clients is None else np.asarray(clients, np.int64)
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= num_clients)):
        raise ValueError(f"clients must be 1-D ids in [0, {num_clients})")

    n = features.shape[0]
    parts = []
    for k in ids:
        rows = np.asarray(partition[k])
        if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"partition[{k}] must be a 1-D integer array, got {rows.dtype}")
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"partition[{k}] holds row indices outside [0, {n})")
        parts.append(rows.astype(np.int64, copy=False))
    sizes = np.array([p.size for p in parts], np.int64)
    nblocks = -(-sizes // block_size)
    rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # Position of each packed row: client-local index -> (block, slot).
    pos = np.arange(rows.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    block = np.repeat(np.cumsum(nblocks) - nblocks, sizes) + pos // block_size
    slot = pos % block_size

    num_blocks = int(nblocks.sum())
    mask_dtype = features.dtype if np.issubdtype(features.dtype, np.floating) else np.float32
    x = np.zeros((num_blocks, block_size) + features.shape[1:], features.dtype)
    y = np.zeros((num_blocks, block_size) + targets.shape[1:], targets.dtype)
    mask = np.zeros((num_blocks, block_size), mask_dtype)
    x[block, slot] = features[rows]
    y[block, slot] = targets[rows]
    mask[block, slot] = 1
    owner = np.repeat(ids, nblocks).astype(np.int32)
    return ClientBlocks(x=x, y=y, mask=mask, owner=owner, num_clients=num_clients)


def clients_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis ``("clients",)`` mesh over the first ``num_devices`` devices (default all)."""
    shape = (-1,) if num_devices is None else (num_devices,)
    return make_mesh((CLIENTS_AXIS,), shape)


def _local_axis_positions(mesh: Mesh) -> int:
    """How many positions of the ``clients`` axis hold a device of this process."""
    axis = mesh.axis_names.index(CLIENTS_AXIS)
    me = jax.process_index()
    return len({idx[axis] for idx, d in np.ndenumerate(mesh.devices) if d.process_index == me})


def _max_over_processes(value: int) -> int:
    """The maximum of ``value`` over all processes (itself on a single process)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    return int(np.max(multihost_utils.process_allgather(np.asarray(value))))


@functools.lru_cache(maxsize=64)
def _chunk_fn(
    block_fn: BlockFn, mesh: Mesh, num_clients: int | None, additive: bool = False
) -> Callable[..., Any]:
    """The jitted, ``shard_map`` ped reduction of one chunk (cached per function and mesh).

    ``num_clients=None`` sums every block; an int scatters each block's statistic
    into a ``(num_clients, ...)`` accumulator at its ``owner``.
    """
    blocks = P(CLIENTS_AXIS)

    def block_stat(x, y, m, args):
        out = block_fn(x, y, m, *args)
        real = jnp.any(m != 0)  # an all-padding block contributes exactly zero
        return jax.tree.map(lambda o: jnp.where(real, o, jnp.zeros_like(o)), out)

    def local(x, y, m, owner, args):
        if additive:  # one call over all of this device's rows: a single large GEMM
            out = block_fn(
                x.reshape(-1, *x.shape[2:]), y.reshape(-1, *y.shape[2:]), m.reshape(-1), *args
            )
            return jax.lax.psum(out, CLIENTS_AXIS)
        shapes = jax.eval_shape(block_stat, x[0], y[0], m[0], args)
        lead = () if num_clients is None else (num_clients,)
        init = jax.tree.map(lambda s: jnp.zeros(lead + s.shape, s.dtype), shapes)
        # Each block's statistic varies over the devices (it is masked by the
        # device-local `m`), so the scan carry must be typed as varying too.
        init = jax.lax.pcast(init, CLIENTS_AXIS, to="varying")

        def body(acc, blk):
            xb, yb, mb, ob = blk
            out = block_stat(xb, yb, mb, args)
            if num_clients is None:
                return jax.tree.map(jnp.add, acc, out), None
            return jax.tree.map(lambda a, o: a.at[ob].add(o), acc, out), None

        acc, _ = jax.lax.scan(body, init, (x, y, m, owner))
        return jax.lax.psum(acc, CLIENTS_AXIS)

    reduce = jax.shard_map(
        local, mesh=mesh, in_specs=(blocks, blocks, blocks, blocks, P()), out_specs=P()
    )
    return jax.jit(lambda x, y, m, owner, *args: reduce(x, y, m, owner, args))


@jax.jit
def _tree_add(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


def _reduce(
    block_fn: BlockFn,
    blocks: ClientBlocks,
    mesh: Mesh,
    args: tuple[Any, ...],
    chunk_blocks: int | None,
    num_clients: int | None,
    additive: bool = False,
) -> Any:
    """Streams ``blocks`` to ``mesh`` chunk by chunk and sums the chunk reductions."""
    if CLIENTS_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh needs a {CLIENTS_AXIS!r} axis, got axes {mesh.axis_names}")
    axis_size = mesh.shape[CLIENTS_AXIS]
    local_positions = _local_axis_positions(mesh)
    if local_positions == 0:
        raise ValueError("this process holds no device of the mesh")
    max_blocks = _max_over_processes(blocks.num_blocks)
    if chunk_blocks is None:
        block_bytes = blocks.x[0:1].nbytes + blocks.y[0:1].nbytes + blocks.mask[0:1].nbytes
        per_device = min(
            max(1, -(-max_blocks // local_positions)),
            max(1, _CHUNK_BYTES_PER_DEVICE // max(1, block_bytes)),
        )
        chunk_blocks = per_device * axis_size
    if isinstance(chunk_blocks, bool) or not isinstance(chunk_blocks, int | np.integer):
        raise ValueError(f"chunk_blocks must be an integer, got {chunk_blocks!r}")
    if chunk_blocks < 1 or chunk_blocks % axis_size:
        raise ValueError(
            f"chunk_blocks must be a positive multiple of the {axis_size} devices on the "
            f"{CLIENTS_AXIS!r} axis, got {chunk_blocks}"
        )
    local_chunk = chunk_blocks // axis_size * local_positions
    num_chunks = max(1, math.ceil(max_blocks / local_chunk))

    sharding = NamedSharding(mesh, P(CLIENTS_AXIS))
    fn = _chunk_fn(block_fn, mesh, num_clients, additive)
    arrays = (blocks.x, blocks.y, blocks.mask, blocks.owner)

    def put(local: np.ndarray) -> jax.Array:
        if local.shape[0] < local_chunk:  # pad with all-zero (mask 0) blocks
            pad = np.zeros((local_chunk - local.shape[0],) + local.shape[1:], local.dtype)
            local = np.concatenate([local, pad])
        return jax.make_array_from_process_local_data(
            sharding, local, (chunk_blocks,) + local.shape[1:]
        )

    total = None
    for c in range(num_chunks):
        lo = c * local_chunk
        out = fn(*(put(a[lo : lo + local_chunk]) for a in arrays), *args)
        total = out if total is None else _tree_add(total, out)
    return total


def federated_sum(
    block_fn: BlockFn,
    blocks: ClientBlocks,
    mesh: Mesh,
    *args: Any,
    chunk_blocks: int | None = None,
    additive: bool = False,
) -> Any:
    """Sum over all blocks (all clients) of ``block_fn(x, y, mask, *args)``.

    Each device of the ``clients`` axis scans over its share of every chunk and
    the partial sums meet in one ``psum``; see the module docstring for the
    layout and the ``block_fn`` contract.

    Args:
      block_fn: ``(x, y, mask, *args) -> pytree of arrays`` for one block; padded
        rows (``mask == 0``) must contribute zero.
      blocks: packed clients (:func:`pack`).
      mesh: a mesh with a ``"clients"`` axis (:func:`clients_mesh`).
      *args: extra inputs passed to every ``block_fn`` call, replicated on the mesh.
      chunk_blocks: blocks sent to the devices per step, a multiple of the
        ``clients`` axis size; default: everything at once, capped at about
        64 MiB of blocks per device.
      additive: promise that ``block_fn`` is a sum over its rows that ignores
        masked rows (true of every sufficient statistic: ``XᵀX``, ``XᵀY``,
        ``FᵀF`` ...). Each device then calls it once on all the rows of its
        blocks, which turns many small GEMMs into one large one.

    Returns:
      The pytree of sums, replicated on the mesh (zeros if there are no blocks).

    >>> import numpy as np
    >>> from jaxpapers.federated import partition
    >>> x, y = np.ones((10, 2), np.float32), np.arange(10)
    >>> blocks = pack(x, y, partition.iid(y, 3, seed=0), block_size=2)
    >>> gram = lambda x, y, m: (x * m[:, None]).T @ x
    >>> federated_sum(gram, blocks, clients_mesh(1)).tolist()
    [[10.0, 10.0], [10.0, 10.0]]
    """
    return _reduce(block_fn, blocks, mesh, args, chunk_blocks, None, additive)


def per_client_sum(
    block_fn: BlockFn,
    blocks: ClientBlocks,
    mesh: Mesh,
    *args: Any,
    chunk_blocks: int | None = None,
) -> Any:
    """Per-client sums of ``block_fn(x, y, mask, *args)``, stacked on a leading axis.

    Like :func:`federated_sum`, but each block's statistic is added into row
    ``owner`` of a ``(num_clients, ...)`` accumulator, for algorithms that need
    every client's own statistics (local solves) and for diagnostics. Every
    device holds the whole accumulator: ``num_clients`` times the statistic.

    Args:
      block_fn: as for :func:`federated_sum`.
      blocks: packed clients (:func:`pack`).
      mesh: a mesh with a ``"clients"`` axis.
      *args: extra inputs passed to every ``block_fn`` call, replicated.
      chunk_blocks: as for :func:`federated_sum`.

    Returns:
      A pytree like ``block_fn``'s output with a leading ``blocks.num_clients``
      axis (zeros for clients without rows), replicated on the mesh.
    """
    return _reduce(block_fn, blocks, mesh, args, chunk_blocks, blocks.num_clients)
