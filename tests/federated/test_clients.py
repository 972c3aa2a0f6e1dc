import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.federated import clients, partition

HIGHEST = jax.lax.Precision.HIGHEST
N, D, T = 3000, 6, 3


def gram(x, y, m):
    """Masked sufficient statistics of least squares: xᵀ diag(m) x and xᵀ diag(m) y."""
    xx = jnp.einsum("bi,b,bj->ij", x, m, x, precision=HIGHEST)
    xy = jnp.einsum("bi,b,bk->ik", x, m, y, precision=HIGHEST)
    return xx, xy


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(dtype)
    y = rng.normal(size=(N, T)).astype(dtype)
    labels = rng.integers(0, 10, N)
    return x, y, labels


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize(
    "num_devices,num_clients,alpha,block_size,chunk_per_device",
    [
        (1, 1, 100.0, 64, None),
        (8, 1, 100.0, 64, None),
        (8, 1, 100.0, 7, 2),
        (1, 7, 0.01, 16, 3),
        (8, 7, 0.01, 16, 3),
        (8, 7, 100.0, 1000, 1),
        (1, 100, 100.0, 5, None),
        (8, 100, 0.01, 5, 4),
        (8, 100, 100.0, 32, 1),
        (1, 1000, 0.01, 3, 64),
        (8, 1000, 0.01, 3, 16),
        (8, 1000, 100.0, 2, None),
    ],
)
def test_federated_sum_matches_numpy(
    devices, x64, num_devices, num_clients, alpha, block_size, chunk_per_device
):
    x, y, labels = _data()
    parts = partition.dirichlet(labels, num_clients, alpha, seed=num_clients)
    blocks = clients.pack(x, y, parts, block_size=block_size)
    mesh = clients.clients_mesh(num_devices)
    chunk = None if chunk_per_device is None else chunk_per_device * num_devices
    xx, xy = clients.federated_sum(gram, blocks, mesh, chunk_blocks=chunk)
    assert xx.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(xx), x.T @ x, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.asarray(xy), x.T @ y, rtol=1e-12, atol=1e-10)
    assert xx.sharding.is_fully_replicated


@pytest.mark.parametrize("num_devices", [1, 8])
def test_federated_sum_float32(devices, num_devices):
    x, y, labels = _data(np.float32)
    blocks = clients.pack(x, y, partition.dirichlet(labels, 50, 0.1, seed=0), block_size=32)
    xx, xy = clients.federated_sum(gram, blocks, clients.clients_mesh(num_devices))
    assert xx.dtype == jnp.float32
    x64_, y64 = x.astype(np.float64), y.astype(np.float64)
    for got, want in ((xx, x64_.T @ x64_), (xy, x64_.T @ y64)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("num_devices", [1, 8])
@pytest.mark.parametrize("num_clients,alpha", [(7, 0.01), (100, 100.0), (300, 0.01)])
def test_per_client_sum_matches_numpy(devices, x64, num_devices, num_clients, alpha):
    x, y, labels = _data()
    parts = partition.dirichlet(labels, num_clients, alpha, seed=1)
    blocks = clients.pack(x, y, parts, block_size=8)
    xx, xy = clients.per_client_sum(gram, blocks, clients.clients_mesh(num_devices))
    assert xx.shape == (num_clients, D, D) and xy.shape == (num_clients, D, T)
    want_xx = np.stack([x[p].T @ x[p] for p in parts])
    want_xy = np.stack([x[p].T @ y[p] for p in parts])
    np.testing.assert_allclose(np.asarray(xx), want_xx, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.asarray(xy), want_xy, rtol=1e-12, atol=1e-10)


def test_one_and_eight_devices_agree(devices, x64):
    x, y, labels = _data(seed=3)
    blocks = clients.pack(x, y, partition.shards(labels, 40, 2, seed=0), block_size=16)
    one = clients.federated_sum(gram, blocks, clients.clients_mesh(1), chunk_blocks=5)
    eight = clients.federated_sum(gram, blocks, clients.clients_mesh(8), chunk_blocks=40)
    for a, b in zip(one, eight):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("num_devices", [1, 8])
def test_args_are_passed_replicated(devices, x64, num_devices):
    x, y, labels = _data()
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(D, 4)), rng.normal(size=(4,))
    scale = 0.5

    def projected(x, y, m, params, s):
        h = jnp.tanh(jnp.dot(x, params["w"], precision=HIGHEST) + params["b"]) * s
        return {"sum_h": jnp.einsum("b,bk->k", m, h), "hh": jnp.einsum("bi,b,bj->ij", h, m, h)}

    blocks = clients.pack(x, y, partition.iid(labels, 37, seed=0), block_size=10)
    mesh = clients.clients_mesh(num_devices)
    out = clients.federated_sum(projected, blocks, mesh, {"w": w, "b": b}, scale)
    h = np.tanh(x @ w + b) * scale
    np.testing.assert_allclose(np.asarray(out["sum_h"]), h.sum(0), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.asarray(out["hh"]), h.T @ h, rtol=1e-12, atol=1e-10)
    # Replicated on device too: a jax.Array argument sharded elsewhere works the same.
    w_dev = jax.device_put(w, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    out2 = clients.federated_sum(projected, blocks, mesh, {"w": w_dev, "b": b}, scale)
    np.testing.assert_allclose(np.asarray(out2["hh"]), h.T @ h, rtol=1e-12, atol=1e-10)


def test_integer_labels_per_client_class_counts(devices):
    x, _, labels = _data(np.float32)
    parts = partition.dirichlet(labels, 25, 0.1, seed=4)
    blocks = clients.pack(x, labels.astype(np.int32), parts, block_size=12)

    def class_counts(x, y, m):
        return jnp.zeros(10, jnp.float32).at[y].add(m)

    counts = clients.per_client_sum(class_counts, blocks, clients.clients_mesh(8))
    np.testing.assert_array_equal(
        np.asarray(counts), np.array(partition.describe(parts, labels, 10)["counts"])
    )


def test_pack_layout():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3, 2)).astype(np.float32)  # any trailing feature shape
    y = np.arange(50)
    parts = [np.arange(0, 23), np.array([], np.int64), np.arange(23, 24), np.arange(24, 50)]
    blocks = clients.pack(x, y, parts, block_size=5)
    assert blocks.num_clients == 4 and blocks.block_size == 5
    assert blocks.num_blocks == 5 + 0 + 1 + 6  # O(total rows): no padding to the largest client
    np.testing.assert_array_equal(blocks.owner, [0] * 5 + [2] + [3] * 6)
    np.testing.assert_array_equal(blocks.client_sizes(), [23, 0, 1, 26])
    assert blocks.x.shape == (12, 5, 3, 2) and blocks.y.shape == (12, 5)
    assert blocks.mask.dtype == np.float32
    for k, rows in enumerate(parts):
        sel = blocks.owner == k
        real = blocks.mask[sel] == 1
        np.testing.assert_array_equal(blocks.x[sel][real], x[rows])
        np.testing.assert_array_equal(blocks.y[sel][real], y[rows])
    # Padded rows are zero; only a client's last block is padded.
    assert np.all(blocks.x[blocks.mask == 0] == 0)
    np.testing.assert_array_equal(blocks.mask.sum(1), [5, 5, 5, 5, 3, 1, 5, 5, 5, 5, 5, 1])


def test_pack_subset_of_clients_keeps_global_ids(devices, x64):
    x, y, labels = _data()
    parts = partition.dirichlet(labels, 10, 1.0, seed=0)
    mine = clients.process_clients(10, process_index=1, process_count=3)
    np.testing.assert_array_equal(mine, [4, 5, 6])
    blocks = clients.pack(x, y, parts, block_size=8, clients=mine)
    assert blocks.num_clients == 10 and set(np.unique(blocks.owner)) == {4, 5, 6}
    xx, _ = clients.per_client_sum(gram, blocks, clients.clients_mesh(8))
    for k in range(10):
        want = x[parts[k]].T @ x[parts[k]] if k in mine else np.zeros((D, D))
        np.testing.assert_allclose(np.asarray(xx[k]), want, rtol=1e-12, atol=1e-10)
    covered = np.concatenate([clients.process_clients(10, i, 3) for i in range(3)])
    np.testing.assert_array_equal(covered, np.arange(10))
    np.testing.assert_array_equal(clients.process_clients(10), np.arange(10))


def test_padding_blocks_contribute_nothing(devices):
    # A block_fn that ignores the mask still sees only real blocks: the chunk
    # padding (all-zero blocks) is dropped, whatever the chunk size.
    x, y, labels = _data(np.float32)
    blocks = clients.pack(x, y, partition.iid(labels, 13, seed=0), block_size=64)
    count_blocks = lambda x, y, m: jnp.ones((), jnp.float32)  # noqa: E731
    mesh = clients.clients_mesh(8)
    for chunk in (8, 24, 800):
        assert float(clients.federated_sum(count_blocks, blocks, mesh, chunk_blocks=chunk)) == (
            blocks.num_blocks
        )


def test_traced_once_across_chunks_and_calls(devices):
    x, y, labels = _data(np.float32)
    blocks = clients.pack(x, y, partition.iid(labels, 9, seed=0), block_size=16)
    traces = []

    def counted(x, y, m):
        traces.append(1)
        return jnp.sum(m)

    mesh = clients.clients_mesh(8)
    assert float(clients.federated_sum(counted, blocks, mesh, chunk_blocks=16)) == N  # 13 chunks
    first = len(traces)
    assert first <= 2  # shape inference + the scan body, once for all chunks
    assert float(clients.federated_sum(counted, blocks, mesh, chunk_blocks=16)) == N
    assert len(traces) == first


def test_no_blocks_gives_zeros(devices):
    x, y, _ = _data(np.float32)
    blocks = clients.pack(x, y, [np.array([], np.int64)] * 3, block_size=4)
    assert blocks.num_blocks == 0
    xx, xy = clients.federated_sum(gram, blocks, clients.clients_mesh(8))
    assert xx.shape == (D, D) and not np.any(np.asarray(xx)) and not np.any(np.asarray(xy))
    per = clients.per_client_sum(gram, blocks, clients.clients_mesh(8))
    assert per[0].shape == (3, D, D) and not np.any(np.asarray(per[0]))


def test_clients_mesh(devices):
    assert clients.clients_mesh().shape == {"clients": 8}
    assert clients.clients_mesh(1).shape == {"clients": 1}
    assert clients.clients_mesh(4).axis_names == ("clients",)


def test_bad_inputs_raise(devices, mesh8):
    x, y, labels = _data(np.float32)
    parts = partition.iid(labels, 4, seed=0)
    blocks = clients.pack(x, y, parts, block_size=16)
    with pytest.raises(ValueError, match="multiple"):
        clients.federated_sum(gram, blocks, clients.clients_mesh(8), chunk_blocks=12)
    with pytest.raises(ValueError, match="'clients' axis"):
        clients.federated_sum(gram, blocks, mesh8)
    with pytest.raises(ValueError, match="block_size"):
        clients.pack(x, y, parts, block_size=0)
    with pytest.raises(ValueError, match="leading"):
        clients.pack(x, y[:-1], parts, block_size=4)
    with pytest.raises(ValueError, match="outside"):
        clients.pack(x, y, [np.array([0, N])], block_size=4)
    with pytest.raises(ValueError, match="clients must be"):
        clients.pack(x, y, parts, block_size=4, clients=[4])
    with pytest.raises(ValueError, match="no clients"):
        clients.pack(x, y, [], block_size=4)
