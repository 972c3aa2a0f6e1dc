"""grain input pipelines over in-memory or memory-mapped arrays.

Tabular data (CTR logs, features, point clouds ...) lives in NumPy arrays or
``np.memmap`` s with a leading example axis. Building batches record by record
in Python costs more than a small model's step, so the element of these grain
datasets is a whole *batch*: element ``i`` is batch ``i mod B`` of epoch
``i // B``, whose rows are a slice of that epoch's seeded permutation (a
random-access gather from the arrays). Consequences:

* deterministic for a seed, and resumable exactly: the iterator state is grain's
  ``{"next_index": i}``, saved with every checkpoint;
* static shapes: training drops the last partial batch of each epoch; evaluation
  pads it and marks padding rows with ``mask == 0`` so metrics see every example
  exactly once;
* prefetching on threads through ``grain.ReadOptions``; iterators own threads, so
  close them (:func:`close_iterator`) when done.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

import grain
import numpy as np

Arrays = Mapping[str, np.ndarray]
Transform = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]


def _num_rows(arrays: Arrays) -> int:
    if not arrays:
        raise ValueError("no arrays given")
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays differ in their number of rows: {sizes}")
    return next(iter(sizes.values()))


class _EpochBatches:
    """index -> batch dict; rows from a per-epoch seeded permutation."""

    def __init__(
        self, arrays: Arrays, batch_size: int, seed: int, shuffle: bool, transform: Transform | None
    ):
        self.arrays = dict(arrays)
        self.transform = transform
        self.num_rows = _num_rows(arrays)
        self.batch_size = batch_size
        self.batches_per_epoch = self.num_rows // batch_size
        self.seed = seed
        self.shuffle = shuffle
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        with self._lock:
            order = self._cache.get(epoch)
            if order is None:
                if self.shuffle:
                    order = np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
                else:
                    order = np.arange(self.num_rows)
                if len(self._cache) >= 2:  # threads may straddle an epoch boundary
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = order
            return order

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        epoch, b = divmod(int(index), self.batches_per_epoch)
        rows = self._order(epoch)[b * self.batch_size : (b + 1) * self.batch_size]
        # Sorted: locality for memory-mapped arrays (order within a batch is irrelevant).
        rows = np.sort(rows)
        batch = {k: np.asarray(v[rows]) for k, v in self.arrays.items()}
        if self.transform is not None:  # seeded by the batch index: resumable and thread-safe
            batch = self.transform(batch, np.random.default_rng([self.seed, 1, int(index)]))
        return batch


def train_batches(
    arrays: Arrays,
    batch_size: int,
    *,
    num_epochs: int,
    seed: int,
    shuffle: bool = True,
    transform: Transform | None = None,
) -> grain.MapDataset:
    """A grain dataset of ``num_epochs`` epochs of full training batches.

    Each epoch visits every row at most once in a fresh seeded order (the final
    ``num_rows % batch_size`` rows of each epoch's order are dropped).
    ``transform(batch, rng)`` (e.g. data augmentation) gets a NumPy generator
    seeded by ``(seed, batch index)``, so a resumed run sees the same batches.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive, got {num_epochs}")
    fetch = _EpochBatches(arrays, batch_size, seed, shuffle, transform)
    if fetch.batches_per_epoch == 0:
        raise ValueError(
            f"batch_size {batch_size} is larger than the dataset ({fetch.num_rows} rows)"
        )
    return grain.MapDataset.range(fetch.batches_per_epoch * num_epochs).map(fetch)


class _PaddedBatches:
    """index -> batch dict in row order; the last batch padded, with a ``mask``."""

    def __init__(self, arrays: Arrays, batch_size: int):
        self.arrays = dict(arrays)
        self.num_rows = _num_rows(arrays)
        self.batch_size = batch_size

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        start = int(index) * self.batch_size
        stop = min(start + self.batch_size, self.num_rows)
        n = stop - start
        out = {}
        for k, v in self.arrays.items():
            chunk = np.asarray(v[start:stop])
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n,) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out[k] = chunk
        mask = np.zeros(self.batch_size, np.float32)
        mask[:n] = 1.0
        out["mask"] = mask
        return out


def eval_batches(arrays: Arrays, batch_size: int) -> grain.MapDataset:
    """Every row exactly once, in order, in fixed-size batches with a ``mask`` field."""
    if "mask" in arrays:
        raise ValueError("'mask' is reserved for the padding mask of evaluation batches")
    fetch = _PaddedBatches(arrays, batch_size)
    return grain.MapDataset.range(math.ceil(fetch.num_rows / batch_size)).map(fetch)


def make_iterator(dataset: grain.MapDataset, *, num_threads: int = 2, prefetch: int = 4):
    """A checkpointable iterator (``get_state``/``set_state``) with thread prefetch."""
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(dataset.to_iter_dataset(options))


def close_iterator(iterator) -> None:
    """Stops an iterator's prefetch threads (a no-op for plain iterators)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class _ScheduledEpochs:
    """index -> batch of the source whose epoch it falls in, tagged with the source's number."""

    def __init__(self, fetches: Mapping[str, _EpochBatches], epochs: list[str], tag: str):
        self.fetches = dict(fetches)
        self.numbers = {name: i for i, name in enumerate(fetches)}
        self.tag = tag
        # Global batch index -> (source, that source's own batch index).
        self.starts, seen, start = [], dict.fromkeys(fetches, 0), 0
        for name in epochs:
            self.starts.append((start, name, seen[name]))
            start += self.fetches[name].batches_per_epoch
            seen[name] += 1
        self.length = start
        self._bounds = np.array([s for s, _, _ in self.starts])

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        start, name, epoch = self.starts[int(np.searchsorted(self._bounds, index, "right")) - 1]
        fetch = self.fetches[name]
        batch = fetch(epoch * fetch.batches_per_epoch + int(index) - start)
        batch[self.tag] = np.full(fetch.batch_size, self.numbers[name], np.int32)
        return batch


def scheduled_epochs(
    sources: Mapping[str, Arrays],
    batch_size: int,
    *,
    epochs: list[str] | tuple[str, ...],
    seed: int,
    tag: str = "source",
) -> grain.MapDataset:
    """Whole epochs of several datasets in a given order, e.g. alternating fidelities.

    ``epochs`` names the source of each epoch in turn (``["low", "high", "low",
    "high", "high"]``: two alternating rounds, then a last epoch of ``high``).
    Every batch carries ``batch[tag]``: the source's position in ``sources`` (one
    value per row). The ``k``-th epoch of a source is that source's ``k``-th seeded
    permutation, as in :func:`train_batches`, so the order is deterministic and a
    resumed run sees the same batches.

    >>> ds = scheduled_epochs({"a": {"x": np.zeros(4)}, "b": {"x": np.ones(2)}}, 2,
    ...                       epochs=["a", "b", "b"], seed=0)
    >>> [(int(ds[i]["source"][0]), float(ds[i]["x"][0])) for i in range(len(ds))]
    [(0, 0.0), (0, 0.0), (1, 1.0), (1, 1.0)]
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not epochs:
        raise ValueError("epochs must name at least one source")
    unknown = sorted(set(epochs) - set(sources))
    if unknown:
        raise ValueError(f"epochs name unknown sources {unknown}; sources are {sorted(sources)}")
    fetches = {}
    for i, (name, arrays) in enumerate(sources.items()):
        if tag in arrays:
            raise ValueError(f"{tag!r} is reserved for the source tag")
        fetch = _EpochBatches(arrays, batch_size, seed + 1000 * i, True, None)
        if fetch.batches_per_epoch == 0:
            raise ValueError(
                f"batch_size {batch_size} is larger than source {name!r} ({fetch.num_rows} rows)"
            )
        fetches[name] = fetch
    schedule = _ScheduledEpochs(fetches, list(epochs), tag)
    return grain.MapDataset.range(schedule.length).map(schedule)
