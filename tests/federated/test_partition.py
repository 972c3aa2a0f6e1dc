import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.federated import partition

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).integers(0, NUM_CLASSES, 12_000)


def _check_valid(parts, n, num_clients):
    assert len(parts) == num_clients
    for p in parts:
        assert p.ndim == 1 and np.issubdtype(p.dtype, np.integer)
        assert np.all(np.diff(p) > 0), "each client's rows must be sorted and unique"
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


PARTITIONERS = {
    "iid": lambda y, k, seed: partition.iid(y, k, seed=seed),
    "dirichlet_0.01": lambda y, k, seed: partition.dirichlet(y, k, 0.01, seed=seed),
    "dirichlet_1": lambda y, k, seed: partition.dirichlet(y, k, 1.0, seed=seed),
    "dirichlet_100": lambda y, k, seed: partition.dirichlet(y, k, 100.0, seed=seed),
    "shards": lambda y, k, seed: partition.shards(y, k, 2, seed=seed),
}


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
@pytest.mark.parametrize("num_clients", [1, 7, 100, 1000])
def test_disjoint_and_complete(labels, name, num_clients):
    parts = PARTITIONERS[name](labels, num_clients, 3)
    _check_valid(parts, labels.size, num_clients)


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
def test_deterministic_per_seed(labels, name):
    a, b, c = (PARTITIONERS[name](labels, 20, s) for s in (5, 5, 6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    num_classes=st.integers(1, 12),
    num_clients=st.integers(1, 60),
    alpha=st.floats(0.01, 100.0),
    min_size=st.integers(0, 5),
    seed=st.integers(0, 2**31),
)
def test_dirichlet_property(n, num_classes, num_clients, alpha, min_size, seed):
    y = np.random.default_rng(seed).integers(0, num_classes, n)
    if min_size * num_clients > n:
        with pytest.raises(ValueError, match="impossible"):
            partition.dirichlet(y, num_clients, alpha, min_size=min_size, seed=seed)
        return
    parts = partition.dirichlet(y, num_clients, alpha, min_size=min_size, seed=seed, max_tries=20)
    _check_valid(parts, n, num_clients)
    assert min(p.size for p in parts) >= min_size


@pytest.mark.parametrize(
    "num_clients,alpha,min_size,max_tries",
    [
        (10, 0.5, 200, 1000),  # reachable by resampling
        (100, 0.01, 1, 1000),  # hopeless for resampling: repaired
        (1000, 0.01, 12, 1000),  # exactly feasible: every row is needed
        (50, 0.05, 100, 1),  # a single draw, repaired
    ],
)
def test_dirichlet_min_size(labels, num_clients, alpha, min_size, max_tries):
    parts = partition.dirichlet(
        labels, num_clients, alpha, min_size=min_size, seed=1, max_tries=max_tries
    )
    _check_valid(parts, labels.size, num_clients)
    assert min(p.size for p in parts) >= min_size


def test_dirichlet_repair_keeps_skew(labels):
    # With alpha = 0.01 almost every client is empty in every draw; the repaired
    # clients receive rows of a single class, so the partition stays skewed.
    parts = partition.dirichlet(labels, 500, 0.01, seed=0)
    stats = partition.describe(parts, labels, NUM_CLASSES)
    assert stats["min_size"] >= 1
    assert stats["mean_classes_per_client"] < 1.5


@pytest.mark.parametrize("seed", range(5))
def test_small_alpha_gives_fewer_classes_per_client(labels, seed):
    skewed = partition.describe(partition.dirichlet(labels, 50, 0.05, seed=seed), labels, 10)
    uniform = partition.describe(partition.dirichlet(labels, 50, 100.0, seed=seed), labels, 10)
    assert skewed["mean_classes_per_client"] < 5
    assert uniform["mean_classes_per_client"] > 9.5
    # Near-IID client sizes are close to n / clients; skewed ones spread out.
    assert uniform["max_size"] < 1.5 * uniform["min_size"]
    assert np.std(skewed["sizes"]) > 5 * np.std(uniform["sizes"])


def test_dirichlet_is_fast_at_scale():
    y = np.random.default_rng(0).integers(0, 10, 60_000)
    for alpha in (0.01, 1.0, 100.0):
        start = time.perf_counter()
        parts = partition.dirichlet(y, 1000, alpha, seed=0)
        elapsed = time.perf_counter() - start
        assert elapsed < 3.0, f"alpha={alpha}: {elapsed:.2f} s"
        assert min(p.size for p in parts) >= 1


def test_iid_sizes_are_balanced(labels):
    sizes = [p.size for p in partition.iid(labels, 7, seed=0)]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == labels.size


def test_shards_pathological_non_iid():
    # Balanced labels (1200 per class) and 300-row shards: no shard straddles a class.
    y = np.repeat(np.arange(10), 1200)[np.random.default_rng(0).permutation(12_000)]
    parts = partition.shards(y, 20, 2, seed=0)
    _check_valid(parts, y.size, 20)
    stats = partition.describe(parts, y, 10)
    assert all(c <= 2 for c in stats["classes_per_client"])
    assert stats["min_size"] == stats["max_size"] == 600
    parts = partition.shards(y, 10, 3, seed=0)  # 400-row shards, 3 per client
    assert all(c <= 3 for c in partition.describe(parts, y, 10)["classes_per_client"])


def test_shards_uneven_sizes(labels):
    parts = partition.shards(labels[:1003], 10, 3, seed=0)
    sizes = [p.size for p in parts]
    _check_valid(parts, 1003, 10)
    assert max(sizes) - min(sizes) <= 3  # shard sizes differ by at most one row


def test_describe_known_answer():
    parts = [np.array([0, 3]), np.array([1, 2, 4]), np.array([], np.int64)]
    stats = partition.describe(parts, np.array([2, 0, 0, 1, 2]), 3)
    assert stats["num_clients"] == 3 and stats["num_rows"] == 5
    assert stats["sizes"] == [2, 3, 0]
    assert (stats["min_size"], stats["max_size"]) == (0, 3)
    assert stats["mean_size"] == pytest.approx(5 / 3)
    assert stats["classes_per_client"] == [2, 2, 0]
    assert stats["counts"] == [[0, 1, 1], [2, 0, 1], [0, 0, 0]]


def test_describe_counts_match(labels):
    parts = partition.dirichlet(labels, 30, 0.3, seed=2)
    counts = np.array(partition.describe(parts, labels, NUM_CLASSES)["counts"])
    assert counts.shape == (30, NUM_CLASSES)
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(labels, minlength=NUM_CLASSES))
    np.testing.assert_array_equal(counts[4], np.bincount(labels[parts[4]], minlength=NUM_CLASSES))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda y: partition.iid(y.reshape(-1, 2), 2, seed=0), "1-D"),
        (lambda y: partition.iid(y.astype(float), 2, seed=0), "integers"),
        (lambda y: partition.iid(y - 1, 2, seed=0), ">= 0"),
        (lambda y: partition.iid(y[:0], 2, seed=0), "empty"),
        (lambda y: partition.iid(y, 0, seed=0), "num_clients must be >= 1"),
        (lambda y: partition.iid(y, 2.5, seed=0), "num_clients must be an integer"),
        (lambda y: partition.iid(y, True, seed=0), "num_clients must be an integer"),
        (lambda y: partition.iid(y, 101, seed=0), "only 100 rows"),
        (lambda y: partition.dirichlet(y, 2, 0.0, seed=0), "alpha"),
        (lambda y: partition.dirichlet(y, 2, -1.0, seed=0), "alpha"),
        (lambda y: partition.dirichlet(y, 2, float("nan"), seed=0), "alpha"),
        (lambda y: partition.dirichlet(y, 2, "1", seed=0), "alpha"),
        (lambda y: partition.dirichlet(y, 0, 1.0, seed=0), "num_clients"),
        (lambda y: partition.dirichlet(y, 11, 1.0, min_size=10, seed=0), "impossible"),
        (lambda y: partition.dirichlet(y, 2, 1.0, min_size=-1, seed=0), "min_size"),
        (lambda y: partition.dirichlet(y, 2, 1.0, seed=0, max_tries=0), "max_tries"),
        (lambda y: partition.shards(y, 51, 2, seed=0), "impossible"),
        (lambda y: partition.shards(y, 2, 0, seed=0), "shards_per_client"),
        (lambda y: partition.describe([np.arange(100)], y, 3), "num_classes"),
        (lambda y: partition.describe([np.arange(101)], y, 10), "outside"),
        (lambda y: partition.describe([], y, 10), "no clients"),
    ],
)
def test_bad_inputs_raise(call, match):
    y = np.random.default_rng(0).integers(0, 10, 100)
    y[:2] = [9, 0]
    with pytest.raises(ValueError, match=match):
        call(y)
