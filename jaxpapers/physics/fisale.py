"""Fisale: two-way fluid–solid interaction with multiscale latent ALE grids (ICLR 2026), in NNX.

Faithful to the reference code (therontau0054/Fisale ``model/{fisale,ale_grid,projection,
attention,loss}.py``, ``config.toml``, ``exp_structure_oscillation.py``); components keep the
reference's names. Solid, fluid and interface are three point sets, each ``(B, N_domain,
dim + q_domain)``: ``dim`` coordinates first, then ``q_domain`` physical quantities. The
model predicts the next state in the same layout (``dim + out_q_domain`` channels).

Data flow (``Fisale.__call__``, the reference's ``ALEModule.forward``)::

    for every scale g (grid shapes 16² and 8² in 2D, 5³ and 4³ in 3D):
        ALEGrid_g(coords of all domains) -> latent grid E_g (B, M_g, h_g), kNN graph (B, M_g, K_g)
        pre_ffn_{domain, g}(points)      -> point features F_{domain, g} (B, N, h_g)
    for j in range(coupling_steps):
        for every scale g:  ale_blocks[g][j]  (one ALEBlock per scale and step)
        multiscale fusion per domain: F_d += split(LN+FFN_j(concat_g F_{d,g}))
    fc_out(concat_g F_{d,g}) -> sliced to dim + out_q_domain        (one head shared by domains)

Components (facts read from the reference):

* :class:`ALEGrid` — a fixed lattice ``linspace(-3.5, 3.5)`` per axis ("ij" order; not a
  parameter: the inputs are standardised, so it spans ±3.5σ). For each domain the offset of
  node m is ``Σ_n w_nm (u_n - g_m)`` with ``w = softmax_over_points(w(-|u_n - g_m|²))``, where
  ``w`` = LayerNorm(M) + Linear(M, M) over the grid axis of each point's squared distances.
  The node positions are ``g + Σ_domains offset`` (exposed as ``grid_positions``); the latent
  grid is ``fc`` = LayerNorm(dim) + Linear(dim, h) of them; the graph is the kNN (``K``
  nearest *other* nodes, Euclidean in the ``h``-dim latent space, computed once per forward
  pass from the initial latent grid and reused by every coupling step).
* :class:`Projection` (per domain, per block) — ``q = wq(F + placeholder)``, ``k = wk(E)``
  (each LayerNorm + Linear), logits ``A = ww(q kᵀ)`` (LayerNorm(M) + Linear(M, M) over the
  grid axis; no 1/sqrt(d) scale), grid tokens ``P = softmax_over_points(A)ᵀ F`` ``(B, M, h)``:
  each node is a weighted mean of its domain's point features. :class:`Deprojection` maps
  back with the same logits, softmax over the grid axis: ``F' = fc_out(softmax_M(A) P)``.
* :class:`ALEBlock` — the partitioned coupling module, in the reference's order:

  1. project the three domains on the current latent grid ``E`` (pos embedding = ``E``);
  2. solid update: Galerkin attention layer, Q = [E+P_s ‖ E+P_i], K = V = [E+P_s ‖ E+P_f ‖
     E+P_i]; the output is split into new P_s, P_i;
  3. grid update (:class:`ALEGridUpdate`): LayerNorm(3h) + Linear(3h, h) of [P_s ‖ P_f ‖ P_i],
     then two GAT convolutions on the kNN graph (each after a LayerNorm) -> E';
  4. fluid update: Q = [E'+P_f ‖ E'+P_i], K = V = [E'+P_s ‖ E'+P_f ‖ E'+P_i] -> P_f, P_i;
  5. interface update: self-attention over all 3M tokens [E'+P_s ‖ E'+P_f ‖ E'+P_i];
  6. deproject each domain and add its point features (residual); the grid becomes
     ``E'' = E' + E``, then ``E'' + FFN(LN(E''))``.

* Attention: :class:`jaxpapers.nn.galerkin.GalerkinAttentionLayer` (pre-LN on Q/K/V inputs,
  softmax over each head's channels of q and k, ``q (kᵀv) / N_q``, residual, no FFN: the
  reference's ``experts_num=0``).
* FFNs are the reference's ``MLP``: Linear + GELU (exact erf, PyTorch's default), then
  ``layer_num`` residual (LayerNorm, Linear, GELU) layers, then Linear. The fusion and grid
  FFNs have ``layer_num=0``; ``fc_out`` has ``mlp_layers=2`` and width ``max(h)·mlp_ratio``.
* Losses (``model/loss.py``): training :func:`relative_l2` per domain (norms over all points
  and channels of a sample, mean over samples; the total is the mean of the three domains);
  evaluation :func:`relative_l1_per_channel` (Σ_points |err| / Σ_points |y| per sample and
  channel, mean over both), computed on de-normalised values. :func:`fisale_loss` returns both.

Reference behaviour that looks surprising and is kept on purpose:

* The node positions are ``g + Σ_d (c_d - g) = Σ_d c_d - 2g`` (``c_d`` the softmax-weighted
  centroid of domain d): offsets of the three domains are summed, not averaged.
* The attention layers' residual adds the *query input*, which contains the grid embedding,
  so the updated grid tokens carry ``E`` (and after the fluid step also ``E'``) into the
  deprojection. The grid update ignores the current grid embedding (its ``u_proj`` argument
  only gives the shape); ``E`` comes back through the block's residual ``E' + E``.
* The solid update reads the *old* ``P_f``; the grid update reads the solid step's P_s, P_i
  and the old P_f; the fluid step's positional embedding is the GAT output ``E'`` (before
  the residual ``+ E``).
* One output head (``fc_out``) is shared by the three domains; each domain keeps the first
  ``dim + out_q`` of its ``dim + max(out_q)`` outputs.
* ``ALEGrid.fc`` applies a LayerNorm over the ``dim`` coordinates of each node. In 2D this
  maps a node (a, b) to about ``±(1, -1)`` whatever its position (only nodes with a ≈ b, within
  ~0.01, land in between), so the latent grid is close to two points and the kNN graph links
  nodes of the same sign of a - b almost arbitrarily. In 3D one degree of freedom survives.
  The same LayerNorms over nearly constant vectors amplify float32 rounding: permuting the
  input points changes float32 outputs by up to ~1e-2 relative (float64: ~1e-14; the tests
  check equivariance in float64).

Deviations (why):

* No ``torch_geometric`` in JAX: :func:`knn_graph` is a dense top-k over pairwise latent
  distances with the diagonal excluded (torch_cluster's ``knn_graph(loop=False)``), giving a
  static ``(B, M, K)`` neighbour array; :class:`GATConv` reimplements PyG's ``GATConv``
  (``heads=H``, ``out_channels=h/H``, concat, LeakyReLU 0.2 attention logits ``a_srcᵀx_j +
  a_dstᵀx_i``, self loops added, softmax over each node's K neighbours + itself, a bias-free
  ``residual`` Linear of the input, a bias) on that dense array. Same function, static
  shapes. Squared latent distances are rounded to 1e-3 of their mean before ranking, ties
  going to the lower node index (``knn_graph(tie_tol=...)``): with the near-degenerate 2D
  latent grid above, the reference's graph is decided by rounding noise (and
  torch_cluster's internal order), so it changes with the order of the input points; ours
  is reproducible.
* ``ALEModule`` is folded into :class:`Fisale` (the reference's ``Fisale`` only wraps it).
* ``dropout`` (0 in every reference config) is omitted; ``grid_num`` is ``len(grid_shapes)``.
* The ``(B, N, M, dim)`` direction tensor of the grid offsets is never built: since the
  weights sum to one over points, ``Σ_n w_nm (u_n - g_m) = Σ_n w_nm u_n - g_m Σ_n w_nm``.

Initialisation: PyTorch defaults, as the reference does not re-initialise: Linear kernel and
bias ``U(±1/sqrt(fan_in))``; LayerNorm 1/0 (eps 1e-5); ``placeholder ~ N(0, 1)/h``; GAT
``lin``/``res`` Glorot-uniform, attention vectors Glorot over ``(heads, channels)``, bias 0.

Parameter count (``count_params``) at the structure-oscillation config (``dim=2``, input =
output quantities solid 0 / fluid 3 / interface 1, hidden 64/64, grids 16²/8², coupling 2,
neighbours 5/4, 8 heads, mlp_ratio 2, mlp_layers 2): 1,538,125, of which the M×M linears
over grid axes (``ALEGrid.w``, ``Projection.ww``; M = 256 and 64) hold 494,144; the tests
write the count out as a formula.

Example::

    model = Fisale(dim=2, input_dims={"solid": 0, "fluid": 3, "interface": 1},
                   output_dims={"solid": 0, "fluid": 3, "interface": 1}, rngs=nnx.Rngs(0))
    solid, fluid, interface = model(solid, fluid, interface)   # (B, N_d, 2 + q_d) each
    out, aux = model.forward_with_aux(solid, fluid, interface)  # + grid positions, weights
    loss, metrics = fisale_loss(out, (next_solid, next_fluid, next_interface))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.galerkin import LN_EPS, GalerkinAttentionLayer, torch_linear
from jaxpapers.physics import fields

__all__ = [
    "DOMAINS",
    "ALEBlock",
    "ALEGrid",
    "ALEGridUpdate",
    "Deprojection",
    "FFN",
    "Fisale",
    "GATConv",
    "Projection",
    "count_params",
    "fisale_loss",
    "knn_graph",
    "lattice",
    "relative_l1_per_channel",
    "relative_l2",
]

DOMAINS = ("solid", "fluid", "interface")
GRID_EXTENT = 3.5  # the reference's lattice spans linspace(-3.5, 3.5) on every axis
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.1),
    "softplus": jax.nn.softplus,
    "ELU": jax.nn.elu,
    "silu": jax.nn.silu,
}


def _layer_norm(d: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(d, epsilon=LN_EPS, rngs=rngs)


def _glorot(key: jax.Array, shape: Sequence[int], fan_sum: int) -> jax.Array:
    bound = math.sqrt(6.0 / fan_sum)
    return jax.random.uniform(key, tuple(shape), jnp.float32, -bound, bound)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


# --------------------------------------------------------------------------- small layers


class NormLinear(nnx.Module):
    """The reference's ``nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_out))``."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs):
        self.norm = _layer_norm(d_in, rngs)
        self.linear = torch_linear(d_in, d_out, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(self.norm(x))


class FFN(nnx.Module):
    """The reference's ``FFN``/``MLP``: Linear+act, ``layer_num`` residual (LN, Linear, act),
    Linear."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        *,
        layer_num: int = 0,
        act: str = "gelu",
        rngs: nnx.Rngs,
    ):
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}.")
        self.act = act
        self.fc_pre = torch_linear(input_dim, hidden_dim, axes=("embed", "mlp"), rngs=rngs)
        self.fcs = nnx.List(
            [NormLinear(hidden_dim, hidden_dim, rngs=rngs) for _ in range(layer_num)]
        )
        self.fc_post = torch_linear(hidden_dim, output_dim, axes=("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.act]
        x = act(self.fc_pre(x))
        for layer in self.fcs:
            x = act(layer(x)) + x
        return self.fc_post(x)


class PreNormFFN(nnx.Module):
    """``nn.Sequential(nn.LayerNorm(d), FFN(d, d * mlp_ratio, d, layer_num=0))``."""

    def __init__(self, d: int, mlp_ratio: int, act: str, *, rngs: nnx.Rngs):
        self.norm = _layer_norm(d, rngs)
        self.ffn = FFN(d, d * mlp_ratio, d, layer_num=0, act=act, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.ffn(self.norm(x))


# --------------------------------------------------------------------------- grid and graph


def lattice(grid_shape: Sequence[int]) -> np.ndarray:
    """The reference's fixed ALE lattice: ``(prod(grid_shape), dim)`` nodes on
    ``linspace(-3.5, 3.5)`` per axis, "ij" (row-major) order."""
    if len(grid_shape) < 1 or any(int(g) < 1 for g in grid_shape):
        raise ValueError(f"grid_shape must be positive sizes, got {tuple(grid_shape)}.")
    axes = [np.linspace(-GRID_EXTENT, GRID_EXTENT, int(g), dtype=np.float32) for g in grid_shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(grid_shape))


def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pairwise squared Euclidean distances ``(..., N, D) x (..., M, D) -> (..., N, M)``."""
    return jnp.sum(jnp.square(a[..., :, None, :] - b[..., None, :, :]), axis=-1)


def knn_graph(x: jax.Array, k: int, *, tie_tol: float = 1e-3) -> jax.Array:
    """Indices of each node's ``k`` nearest *other* nodes: ``(B, M, C) -> (B, M, k)`` int32.

    torch_cluster ``knn_graph(x, k, batch, loop=False)`` per sample, as a dense array: row i
    lists the sources j of the edges j -> i (PyG's ``source_to_target`` flow). Indices carry
    no gradient. Squared distances are rounded to multiples of ``tie_tol`` times their mean
    over all pairs of the sample and ties go to the lower node index (``tie_tol=0``: exact
    ``top_k``). The reference's 2D latent grid is nearly degenerate (LayerNorm over the two
    coordinates maps every node close to one of two vectors, see the module docstring), so
    without this rounding its graph is decided by float rounding noise and changes with the
    order of the input points or with XLA's fusion choices.
    """
    m = x.shape[-2]
    if not 1 <= k < m:
        raise ValueError(f"k must be in [1, {m - 1}] for a graph of {m} nodes, got {k}.")
    if tie_tol < 0:
        raise ValueError(f"tie_tol must be >= 0, got {tie_tol}.")
    x = jax.lax.stop_gradient(x)
    d = _sq_dists(x, x)
    if tie_tol > 0:
        quantum = tie_tol * jnp.mean(d, axis=(-2, -1), keepdims=True)
        d = jnp.round(d / jnp.maximum(quantum, jnp.finfo(d.dtype).tiny))
    d = jnp.where(jnp.eye(m, dtype=bool), jnp.inf, d)
    idx = jnp.argsort(d, axis=-1, stable=True)[..., :k]
    return idx.astype(jnp.int32)


class GATConv(nnx.Module):
    """PyG's ``GATConv(in, out/heads, heads, residual=True)`` on a dense neighbour array.

    For node i with neighbours N(i) (from :func:`knn_graph`) and itself::

        x' = lin(x) viewed (M, H, C)
        e_ij = LeakyReLU_0.2(a_src · x'_j + a_dst · x'_i)      j in N(i) ∪ {i}
        out_i = concat_h Σ_j softmax_j(e_ij) x'_j  +  res(x_i)  +  bias
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int, *, rngs: nnx.Rngs):
        total = heads * out_channels
        self.heads, self.out_channels = heads, out_channels
        glorot = nnx.initializers.xavier_uniform()
        self.lin = nnx.Linear(in_channels, total, use_bias=False, kernel_init=glorot, rngs=rngs)
        self.att_src = nnx.Param(
            _glorot(rngs.params(), (heads, out_channels), heads + out_channels)
        )
        self.att_dst = nnx.Param(
            _glorot(rngs.params(), (heads, out_channels), heads + out_channels)
        )
        self.res = nnx.Linear(in_channels, total, use_bias=False, kernel_init=glorot, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((total,), jnp.float32))

    def __call__(self, x: jax.Array, neighbors: jax.Array) -> jax.Array:
        """``x (B, M, in)``, ``neighbors (B, M, K)`` -> ``(B, M, heads * out_channels)``."""
        b, m, _ = x.shape
        h = self.lin(x).reshape(b, m, self.heads, self.out_channels)
        alpha_src = jnp.sum(h * self.att_src[...], axis=-1)  # (B, M, H)
        alpha_dst = jnp.sum(h * self.att_dst[...], axis=-1)
        self_idx = jnp.broadcast_to(jnp.arange(m, dtype=neighbors.dtype)[None, :, None], (b, m, 1))
        src = jnp.concatenate([neighbors, self_idx], axis=-1)  # (B, M, K+1)
        gather = jax.vmap(lambda arr, idx: arr[idx])
        logits = gather(alpha_src, src) + alpha_dst[:, :, None, :]  # (B, M, K+1, H)
        alpha = jax.nn.softmax(jax.nn.leaky_relu(logits, 0.2), axis=2)
        out = jnp.einsum("bmkh,bmkhc->bmhc", alpha, gather(h, src))
        return out.reshape(b, m, -1) + self.res(x) + self.bias[...]


class ALEGrid(nnx.Module):
    """One latent ALE grid: learned node offsets from all domains, latent embedding, kNN."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        grid_shape: Sequence[int],
        neighbors_num: int,
        *,
        rngs: nnx.Rngs,
    ):
        if len(grid_shape) != dim:
            raise ValueError(f"grid_shape {tuple(grid_shape)} must have dim={dim} entries.")
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.neighbors_num = neighbors_num
        length = int(np.prod(self.grid_shape))
        if not 1 <= neighbors_num < length:
            raise ValueError(
                f"neighbors_num must be in [1, {length - 1}] for a {self.grid_shape} grid, "
                f"got {neighbors_num}."
            )
        self.fc = NormLinear(dim, hidden_dim, rngs=rngs)
        self.w = NormLinear(length, length, rngs=rngs)

    @property
    def grid(self) -> jax.Array:
        """The fixed lattice ``(M, dim)`` (a constant, as the reference's frozen parameter)."""
        return jnp.asarray(lattice(self.grid_shape))

    def offset_weights(self, u: jax.Array) -> jax.Array:
        """``softmax_over_points(w(-|u_n - g_m|²))``: ``(B, N, dim) -> (B, N, M)``."""
        return jax.nn.softmax(self.w(-_sq_dists(u, self.grid)), axis=1)

    def __call__(self, coords: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``coords``: per domain ``(B, N_d, dim)`` -> latent grid ``(B, M, h)``, neighbours
        ``(B, M, K)`` and node positions ``(B, M, dim)``."""
        grid = self.grid
        positions = grid[None]
        for u in coords:
            w = self.offset_weights(u)
            positions = positions + (
                jnp.einsum("bnm,bnd->bmd", w, u) - jnp.sum(w, axis=1)[..., None] * grid
            )
        latent = self.fc(positions)
        return latent, knn_graph(latent, self.neighbors_num), positions


class ALEGridUpdate(nnx.Module):
    """Grid update: LN+Linear of [P_s ‖ P_f ‖ P_i], then GAT(LN_p(.)), GAT(LN_u(.))."""

    def __init__(self, hidden_dim: int, heads_num: int, *, rngs: nnx.Rngs):
        if hidden_dim % heads_num:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be a multiple of heads ({heads_num})."
            )
        self.fc = NormLinear(3 * hidden_dim, hidden_dim, rngs=rngs)
        self.aggr_p = GATConv(hidden_dim, hidden_dim // heads_num, heads_num, rngs=rngs)
        self.ln_p = _layer_norm(hidden_dim, rngs)
        self.aggr_u = GATConv(hidden_dim, hidden_dim // heads_num, heads_num, rngs=rngs)
        self.ln_u = _layer_norm(hidden_dim, rngs)

    def __call__(
        self, ps_proj: jax.Array, pf_proj: jax.Array, pb_proj: jax.Array, neighbors: jax.Array
    ) -> jax.Array:
        p = self.fc(jnp.concatenate([ps_proj, pf_proj, pb_proj], axis=-1))
        update = self.aggr_p(self.ln_p(p), neighbors)
        return self.aggr_u(self.ln_u(update), neighbors)


class Projection(nnx.Module):
    """Learned soft assignment of a domain's points to the grid nodes."""

    def __init__(self, hidden_dim: int, grid_length: int, *, rngs: nnx.Rngs):
        self.placeholder = nnx.Param(
            jax.random.normal(rngs.params(), (hidden_dim,), jnp.float32) / hidden_dim
        )
        self.ww = NormLinear(grid_length, grid_length, rngs=rngs)
        self.wq = NormLinear(hidden_dim, hidden_dim, rngs=rngs)
        self.wk = NormLinear(hidden_dim, hidden_dim, rngs=rngs)

    def __call__(self, feature: jax.Array, ale_grid: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``feature (B, N, h)``, ``ale_grid (B, M, h)`` -> grid tokens ``(B, M, h)`` and
        assignment logits ``(B, N, M)``."""
        q = self.wq(feature + self.placeholder[...])
        k = self.wk(ale_grid)
        weight = self.ww(jnp.einsum("bnc,bmc->bnm", q, k))
        w = jax.nn.softmax(weight, axis=1)  # over points: each node is a mean of its points
        return jnp.einsum("bnm,bnc->bmc", w, feature), weight


class Deprojection(nnx.Module):
    """Back to points: ``fc_out(softmax_over_grid(logits) @ grid_tokens)``."""

    def __init__(self, hidden_dim: int, *, rngs: nnx.Rngs):
        self.fc_out = NormLinear(hidden_dim, hidden_dim, rngs=rngs)

    def __call__(self, p_proj: jax.Array, weight: jax.Array) -> jax.Array:
        return self.fc_out(jnp.einsum("bnm,bmc->bnc", jax.nn.softmax(weight, axis=-1), p_proj))


class ALEBlock(nnx.Module):
    """One partitioned coupling iteration on one latent grid (see the module docstring)."""

    def __init__(
        self,
        hidden_dim: int,
        grid_length: int,
        heads_num: int,
        mlp_ratio: int,
        act: str,
        *,
        rngs: nnx.Rngs,
    ):
        h = hidden_dim

        def attention() -> GalerkinAttentionLayer:
            return GalerkinAttentionLayer(h, h, h, h, num_heads=heads_num, rngs=rngs)

        self.solid_proj_op = Projection(h, grid_length, rngs=rngs)
        self.fluid_proj_op = Projection(h, grid_length, rngs=rngs)
        self.interface_proj_op = Projection(h, grid_length, rngs=rngs)
        self.update_solid = attention()
        self.update_grid = ALEGridUpdate(h, heads_num, rngs=rngs)
        self.update_fluid = attention()
        self.interface_coupling = attention()
        self.solid_deproj_op = Deprojection(h, rngs=rngs)
        self.fluid_deproj_op = Deprojection(h, rngs=rngs)
        self.interface_deproj_op = Deprojection(h, rngs=rngs)
        self.ffn_ale_grid = PreNormFFN(h, mlp_ratio, act, rngs=rngs)

    def __call__(
        self,
        solid_feature: jax.Array,
        fluid_feature: jax.Array,
        interface_feature: jax.Array,
        ale_grid: jax.Array,
        neighbors: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
        cat = lambda *xs: jnp.concatenate(xs, axis=1)  # noqa: E731  (token axis)
        m = ale_grid.shape[1]
        ps, ws = self.solid_proj_op(solid_feature, ale_grid)
        pf, wf = self.fluid_proj_op(fluid_feature, ale_grid)
        pi, wi = self.interface_proj_op(interface_feature, ale_grid)

        pos = ale_grid
        kv = cat(pos + ps, pos + pf, pos + pi)
        out = self.update_solid(cat(pos + ps, pos + pi), kv, kv)
        ps, pi = out[:, :m], out[:, m:]

        new_grid = self.update_grid(ps, pf, pi, neighbors)

        pos = new_grid
        kv = cat(pos + ps, pos + pf, pos + pi)
        out = self.update_fluid(cat(pos + pf, pos + pi), kv, kv)
        pf, pi = out[:, :m], out[:, m:]

        tokens = cat(pos + ps, pos + pf, pos + pi)
        out = self.interface_coupling(tokens, tokens, tokens)
        ps, pf, pi = out[:, :m], out[:, m : 2 * m], out[:, 2 * m :]

        solid = self.solid_deproj_op(ps, ws) + solid_feature
        fluid = self.fluid_deproj_op(pf, wf) + fluid_feature
        interface = self.interface_deproj_op(pi, wi) + interface_feature

        new_grid = new_grid + ale_grid
        new_grid = self.ffn_ale_grid(new_grid) + new_grid
        logits = {"solid": ws, "fluid": wf, "interface": wi}
        return solid, fluid, interface, new_grid, logits


# --------------------------------------------------------------------------- the model


def _check_domain_dims(name: str, dims: Mapping[str, int]) -> dict[str, int]:
    if set(dims) != set(DOMAINS) or any(int(v) < 0 for v in dims.values()):
        raise ValueError(
            f"{name} must map exactly {DOMAINS} to non-negative quantity counts, got {dict(dims)}."
        )
    return {d: int(dims[d]) for d in DOMAINS}


class Fisale(nnx.Module):
    """Fisale (the reference's ``Fisale`` + ``ALEModule``).

    ``input_dims`` / ``output_dims``: per domain the number of physical quantities beyond the
    ``dim`` coordinates (``output_dims=None`` means the same as ``input_dims``, as the
    reference). ``grid_shapes``, ``hidden_dims`` and ``neighbors`` have one entry per scale;
    every grid shape has ``dim`` sizes (2D default 16²/8²; the reference's 3D config uses
    ``((5, 5, 5), (4, 4, 4))`` with hidden ``(96, 128)``).
    """

    def __init__(
        self,
        *,
        dim: int,
        input_dims: Mapping[str, int],
        output_dims: Mapping[str, int] | None = None,
        grid_shapes: Sequence[Sequence[int]] = ((16, 16), (8, 8)),
        hidden_dims: Sequence[int] = (64, 64),
        coupling_steps: int = 2,
        neighbors: Sequence[int] = (5, 4),
        num_heads: int = 8,
        mlp_ratio: int = 2,
        mlp_layers: int = 2,
        act: str = "gelu",
        rngs: nnx.Rngs,
    ):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}.")
        input_dims = _check_domain_dims("input_dims", input_dims)
        output_dims = (
            dict(input_dims)
            if output_dims is None
            else _check_domain_dims("output_dims", output_dims)
        )
        grid_num = len(grid_shapes)
        if grid_num < 1 or not grid_num == len(hidden_dims) == len(neighbors):
            raise ValueError(
                "grid_shapes, hidden_dims and neighbors need one entry per scale (>= 1), got "
                f"{len(grid_shapes)}, {len(hidden_dims)} and {len(neighbors)}."
            )
        for shape in grid_shapes:
            if len(shape) != dim:
                raise ValueError(
                    f"every grid shape needs dim={dim} sizes, got {tuple(shape)} (2D default "
                    "((16, 16), (8, 8)); 3D as the reference ((5, 5, 5), (4, 4, 4)))."
                )
        for h in hidden_dims:
            if h < 1 or h % num_heads:
                raise ValueError(
                    f"hidden_dims {tuple(hidden_dims)} must be positive multiples of "
                    f"num_heads={num_heads}."
                )
        for shape, k in zip(grid_shapes, neighbors):
            if not 1 <= k < int(np.prod(shape)):
                raise ValueError(
                    f"neighbors_num must be in [1, {int(np.prod(shape)) - 1}] for a "
                    f"{tuple(shape)} grid, got {k}."
                )
        if coupling_steps < 1:
            raise ValueError(f"coupling_steps must be >= 1, got {coupling_steps}.")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}.")

        self.dim = dim
        self.input_dims = input_dims
        self.output_dims = output_dims
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.coupling_steps = coupling_steps
        grid_lengths = [int(np.prod(s)) for s in grid_shapes]

        self.ale_grids = nnx.List(
            [
                ALEGrid(dim, h, s, k, rngs=rngs)
                for h, s, k in zip(self.hidden_dims, grid_shapes, neighbors)
            ]
        )

        def pre_ffns(domain: str) -> nnx.List:
            d_in = dim + input_dims[domain]
            return nnx.List(
                [FFN(d_in, h * mlp_ratio, h, act=act, rngs=rngs) for h in self.hidden_dims]
            )

        self.solid_pre_ffns = pre_ffns("solid")
        self.fluid_pre_ffns = pre_ffns("fluid")
        self.interface_pre_ffns = pre_ffns("interface")
        # ale_blocks[scale][step]
        self.ale_blocks = nnx.List(
            [
                nnx.List(
                    [
                        ALEBlock(h, length, num_heads, mlp_ratio, act, rngs=rngs)
                        for _ in range(coupling_steps)
                    ]
                )
                for h, length in zip(self.hidden_dims, grid_lengths)
            ]
        )
        s = sum(self.hidden_dims)

        def fusion() -> nnx.List:
            return nnx.List(
                [PreNormFFN(s, mlp_ratio, act, rngs=rngs) for _ in range(coupling_steps)]
            )

        self.ffn_solid = fusion()
        self.ffn_fluid = fusion()
        self.ffn_interface = fusion()
        self.fc_out = FFN(
            s,
            max(self.hidden_dims) * mlp_ratio,
            dim + max(output_dims.values()),
            layer_num=mlp_layers,
            act=act,
            rngs=rngs,
        )

    def _check_inputs(self, solid: jax.Array, fluid: jax.Array, interface: jax.Array) -> None:
        batch = None
        for name, x in zip(DOMAINS, (solid, fluid, interface)):
            want = self.dim + self.input_dims[name]
            if x.ndim != 3 or x.shape[-1] != want or x.shape[1] < 1:
                raise ValueError(
                    f"{name} must have shape (batch, points >= 1, {want}) (dim {self.dim} + "
                    f"{self.input_dims[name]} quantities), got {tuple(x.shape)}."
                )
            if batch is not None and x.shape[0] != batch:
                raise ValueError(
                    f"all domains need the same batch size, got {x.shape[0]} vs {batch}."
                )
            batch = x.shape[0]

    def _fuse(self, features: list[jax.Array], ffn: PreNormFFN) -> list[jax.Array]:
        """Multiscale fusion: ``F_g += split_g(LN+FFN(concat_g F_g))``."""
        fused = ffn(jnp.concatenate(features, axis=-1))
        cuts = np.cumsum(self.hidden_dims)[:-1].tolist()
        return [f + u for f, u in zip(features, jnp.split(fused, cuts, axis=-1))]

    def forward_with_aux(
        self, solid: jax.Array, fluid: jax.Array, interface: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], dict[str, Any]]:
        """The forward pass plus, for tests and plots, per scale:

        * ``grid_positions``: list of ``(B, M_g, dim)`` learned node positions;
        * ``offset_weights``: list of dicts domain -> ``(B, N_d, M_g)`` (sum to 1 over points);
        * ``neighbors``: list of ``(B, M_g, K_g)`` kNN indices of the latent grid;
        * ``projection_weights`` / ``deprojection_weights``: ``[scale][step]`` dicts domain ->
          ``(B, N_d, M_g)`` assignment weights, softmax over points (projection: each node's
          column sums to 1) and over grid nodes (deprojection: each point's row sums to 1).
        """
        self._check_inputs(solid, fluid, interface)
        inputs = (solid, fluid, interface)
        coords = [x[..., : self.dim] for x in inputs]
        aux: dict[str, Any] = {
            "grid_positions": [],
            "offset_weights": [],
            "neighbors": [],
            "projection_weights": [],
            "deprojection_weights": [],
        }
        grids, edges = [], []
        for ale_grid in self.ale_grids:
            latent, nbrs, positions = ale_grid(coords)
            grids.append(latent)
            edges.append(nbrs)
            aux["grid_positions"].append(positions)
            aux["neighbors"].append(nbrs)
            aux["offset_weights"].append(
                {d: ale_grid.offset_weights(u) for d, u in zip(DOMAINS, coords)}
            )
            aux["projection_weights"].append([])
            aux["deprojection_weights"].append([])

        solid_f = [ffn(solid) for ffn in self.solid_pre_ffns]
        fluid_f = [ffn(fluid) for ffn in self.fluid_pre_ffns]
        interface_f = [ffn(interface) for ffn in self.interface_pre_ffns]

        for j in range(self.coupling_steps):
            for i, blocks in enumerate(self.ale_blocks):
                solid_f[i], fluid_f[i], interface_f[i], grids[i], logits = blocks[j](
                    solid_f[i], fluid_f[i], interface_f[i], grids[i], edges[i]
                )
                aux["projection_weights"][i].append(
                    {d: jax.nn.softmax(a, axis=1) for d, a in logits.items()}
                )
                aux["deprojection_weights"][i].append(
                    {d: jax.nn.softmax(a, axis=-1) for d, a in logits.items()}
                )
            solid_f = self._fuse(solid_f, self.ffn_solid[j])
            fluid_f = self._fuse(fluid_f, self.ffn_fluid[j])
            interface_f = self._fuse(interface_f, self.ffn_interface[j])

        outputs = tuple(
            self.fc_out(jnp.concatenate(feats, axis=-1))[..., : self.dim + self.output_dims[d]]
            for d, feats in zip(DOMAINS, (solid_f, fluid_f, interface_f))
        )
        return outputs, aux  # type: ignore[return-value]

    def __call__(
        self, solid: jax.Array, fluid: jax.Array, interface: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Each ``(B, N_d, dim + input_dims[d])`` -> ``(B, N_d, dim + output_dims[d])``."""
        outputs, _ = self.forward_with_aux(solid, fluid, interface)
        return outputs


# --------------------------------------------------------------------------- losses / metrics


def relative_l2(pred: jax.Array, true: jax.Array, *, reduction: str = "mean") -> jax.Array:
    """Training loss (:func:`jaxpapers.physics.fields.relative_l2`) of ``(B, P, C)`` fields;
    ``reduction="mean"`` averages over samples, ``"none"`` gives ``(B,)``."""
    return _reduce(fields.relative_l2(pred, true), reduction)


def relative_l1_per_channel(
    pred: jax.Array, true: jax.Array, *, reduction: str = "mean"
) -> jax.Array:
    """Evaluation metric (:func:`jaxpapers.physics.fields.relative_l1_per_channel`): ``"mean"``
    averages over samples and channels, ``"none"`` gives ``(B,)`` (mean over channels)."""
    return _reduce(fields.relative_l1_per_channel(pred, true), reduction)


def _reduce(x: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(x)
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def fisale_loss(
    preds: Sequence[jax.Array], targets: Sequence[jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The reference's training loss: mean over the three domains of :func:`relative_l2`.

    ``preds``/``targets`` are (solid, fluid, interface). Metrics: ``{domain}_rel_l2`` per domain
    and ``rel_l2`` (= the loss); with ``{domain}_rel_l1`` / ``rel_l1`` (per-channel relative L1,
    the evaluation metric; meaningful on de-normalised values).
    """
    if len(preds) != 3 or len(targets) != 3:
        raise ValueError(
            f"need (solid, fluid, interface) predictions and targets, got "
            f"{len(preds)} and {len(targets)}."
        )
    metrics: dict[str, jax.Array] = {}
    for d, p, t in zip(DOMAINS, preds, targets):
        metrics[f"{d}_rel_l2"] = relative_l2(p, t)
        metrics[f"{d}_rel_l1"] = relative_l1_per_channel(p, t)
    loss = sum(metrics[f"{d}_rel_l2"] for d in DOMAINS) / 3
    metrics["rel_l2"] = loss
    metrics["rel_l1"] = sum(metrics[f"{d}_rel_l1"] for d in DOMAINS) / 3
    return loss, metrics
