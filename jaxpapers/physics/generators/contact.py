r"""Multi-solid contact: a 2D finite-element generator of Unisoma-style data.

Unisoma (ICML 2025) learns systems of several solids — deformable bodies, rigid bodies with
prescribed motions, contacts and loads — from finite-element data that is not downloadable
here. This module solves the same kind of problem with a small, real, vectorised FEM solver in
JAX (``jit`` + ``vmap`` over samples, quasi-static load stepping, Newton on the total
potential energy) and returns the per-object arrays of :mod:`jaxpapers.physics.multisolid`.

Units: millimetres, megapascals (N/mm²); energies per unit thickness (N·mm/mm). Coordinates
are ``(..., 2)``; ``x`` to the right, ``y`` up.

Scene ("stack")
---------------
* **Deformables** ``0..D-1`` (``num_deformables``, 1–3): rectangular blocks stacked
  vertically, block 0 at the bottom. Block 0 has width ``w₀ ~ U(base_width)``; each block
  above is narrower, ``wᵢ = wᵢ₋₁·U(width_ratio)``, shifted sideways by
  ``U(-1, 1)·offset_fraction·(wᵢ₋₁ - wᵢ)/2`` from the one below (so it always rests wholly on
  it: a pyramid; choice, so that every node of the upper block's bottom face stays above the
  lower block's top face, which the one-pass contact below needs). Heights ``U(block_height)``.
  Each block has its own Young's modulus, log-uniform in ``youngs_modulus`` (10–1000 MPa: a
  rubber-like to a polymer-like solid; the factor 100 rather than rubber/metal's 10⁴ keeps
  the float32 Newton solves well conditioned), and Poisson ratio ``U(poisson_ratio)``.
* **Rigid bodies** ``0..R-1`` (``num_rigids``). With ``R >= 2``, rigid 0 is the **die**: a
  fixed rectangle under the stack (``1.2·w₀`` wide, ``0.2·w₀`` high) to which block 0 is
  bonded (its bottom nodes are fixed); rigids ``1..R-1`` are **punches**. With ``R = 1`` the
  single rigid body is a punch and block 0's base is clamped all the same (the die is then
  not an object; choice, so that ``num_rigids = 1`` is a meaningful scene).
* **Punches** press the top block from above. The top block's width is split into ``Rp``
  equal sectors (``Rp`` = number of punches), one punch per sector (they never overlap). A
  punch is a rounded square (half-width ``a``, corner radius ``rc = ρ·a``; ``ρ = 1`` is a
  circle), tilted by ``θ``: ``a ~ U(punch_half_width)·s`` (``s`` the sector width),
  ``ρ ~ U(punch_roundness)``, ``θ ~ U(±punch_tilt)``, centre ``x`` at the sector centre
  ``+ U(±punch_offset)·s``. It starts just touching the flat top face (its lowest point at
  the face) and moves by the prescribed displacement ``(drift, -depth)`` linearly over the
  ``T = num_load_steps`` steps, ``depth ~ U(indentation)·h_top``,
  ``drift ~ U(±punch_drift)·s``.

Mesh
----
Every block is a structured ``nx × ny`` grid of quadrilaterals (``nx`` even), each split in
two linear triangles (P1). Nodes are numbered row by row from the bottom-left, so each block
has ``P = (nx+1)(ny+1)`` nodes. Diagonals run ``/`` in the left half and ``\`` in the right
half, so the mesh is mirror-symmetric about the block's centre line (a centred punch gives a
mirror-symmetric solution; the usual one-direction split does not).

Energy (total Lagrangian, plane strain)
---------------------------------------
``Π(u) = Σ_e A_e ψ(F_e) + Π_punch + Π_interface + Π_reg - s·fᵀu`` with ``F_e = D_s D_m⁻¹``
per triangle (``D_m``, ``D_s`` the reference and current edge matrices, ``A_e`` the reference
area) and ``s = t/T`` the load factor.

* ``material="neo_hookean"``: the compressible neo-Hookean solid in plane strain
  (``F₃ = diag(F, 1)``), ``ψ = μ/2 (tr FᵀF - 2 - 2 ln J) + λ/2 (ln J)²``, ``J = det F``;
  ``ψ = +∞`` for ``J <= 0`` (the line search never accepts an inverted element). Cauchy
  stress ``σ = (μ(FFᵀ - I) + λ ln J·I)/J``, ``σ_zz = λ ln J / J``.
* ``material="linear"``: small-strain linear elasticity, ``ψ = λ/2 (tr ε)² + μ ε:ε``,
  ``ε = sym(F - I)``; ``σ = λ tr ε I + 2με``, ``σ_zz = λ tr ε``. (Contact stays geometrically
  nonlinear.)
* ``μ = E/(2(1+ν))``, ``λ = Eν/((1+ν)(1-2ν))``.
* **Contact penalty** (:func:`penalty`): a C² version of ``½ k ⟨-g⟩²``: ``k(g²/2 - εg/2 +
  ε²/6)`` for ``g < 0``, ``k(ε-g)³/(6ε)`` in a thin layer ``0 <= g < ε`` (``ε =
  contact_layer`` × the top block's element width, 5%), zero beyond. Choice: with the plain
  quadratic penalty, nodes flipping in and out of contact made Newton stall (measured); the
  smooth layer gives a continuous contact stiffness. Equilibrium gaps shift by ~``ε/2``.
* **Punch contact** (frictionless penalty against the analytic signed distance ``φ`` of the
  rigid body, negative inside): ``Π_punch = Σ_nodes penalty(φ(x))`` over every node of the
  top block, ``k_p = penalty·E_top`` (a node-lumped penalty; the tributary length is not
  weighted in, choice: uniform meshes). The force is along ``∇φ``: frictionless.
* **Block–block contact** (frictionless, one-pass node-to-surface): every node of block
  ``i+1``'s bottom face (slave) against block ``i``'s top face (master). The gap is the
  vertical distance to the master face, ``g = y_s - h(x_s)``, with ``h``
  (:func:`master_height`) the Gaussian-kernel average of the master nodes' heights (kernel
  width ``smoothing`` × the master element width; exact for a flat face). Choice: a smoothed
  face rather than the polyline, whose kinks at the vertices made Newton cycle (measured).
  The top face stays a graph of ``x`` for the deformations here.
  ``Π_interface = Σ penalty(g)``, ``k_c = penalty·min(Eᵢ, Eᵢ₊₁)``. Since ``∇g ∝ (-h', 1)``
  for the slave, the force is normal to the face (frictionless); ``g`` is the normal gap
  times ``√(1+h'²)``, a slightly larger penalty on a sloped face.
* **Rigid-body modes.** Blocks above block 0 are held only by frictionless contact: their
  horizontal translation is removed by pinning the horizontal displacement of the middle node
  of their bottom face (a locating pin; symmetric, so a centred punch keeps the symmetry),
  and their vertical translation and rotation, free before the contact engages, by a very
  weak spring ``Π_reg = Σ ½ regularization·Eᵢ·|u|²`` on every node of those blocks
  (``regularization = 1e-5``: its total stiffness is ~10⁻³ of a block's).
* **Dirichlet** conditions (block 0's bottom nodes, the pins, and in tests any prescribed
  node) by elimination: fixed dofs are set to ``s·ū`` before each step and excluded from the
  Newton update.

Solver
------
Per load step (``lax.scan`` over steps; the start is the last solution extrapolated by the
last increment when that lowers the energy, else the last solution): Newton on ``Π`` with the
gradient by ``jax.grad`` and the Hessian assembled from exact element Hessians
(``jax.hessian`` of each triangle's energy, 6×6) and **Gauss–Newton** contact Hessians
``penalty''(g)∇g∇gᵀ`` (punch: 2×2 per node; interface: per slave, its node and the master
face's nodes). Choice: the dropped ``penalty'(g)∇²g`` term made the matrix indefinite at
curved, penetrated contacts (measured: negative eigenvalues, failed line searches); the
Gauss–Newton matrix is positive semi-definite. Nodes are numbered so that a node row (``2(nx+1)`` dofs) only couples to the rows
above and below, including across a block–block interface, so the global Hessian is **block
tridiagonal** with ``D(ny+1)`` diagonal blocks and is solved by the block Thomas algorithm
(``lax.scan``, exact, ~20× cheaper than a dense solve). Backtracking line search over
``α ∈ {1, ½, …, 2⁻⁵, 2⁻⁷, 2⁻⁹}`` with an Armijo test (with an allowance for float32
round-off), else the best candidate if it lowers the energy, else no step; stop when
``max|αd| <= tolerance·w₀`` (``1e-5``) or after ``newton_iterations`` (16). Everything is float32,
``jit``-compiled once per config and ``vmap``-ed over ``chunk_size`` samples.

Nodal von Mises stress: the element Cauchy stresses (in-plane components and ``σ_zz``) are
averaged to the nodes weighted by reference area; ``σ_vm = √(½((σxx-σyy)² + (σyy-σzz)² +
(σzz-σxx)²) + 3σxy²)``.

Outputs (:func:`generate`)
--------------------------
``deformable_{i}/init, /final, /steps, /stress, /stress_steps`` (node positions, nodal von
Mises stress; step 0 is the rest state with zero stress), ``rigid_{j}/init, /final, /steps``
(``rigid_points`` boundary points of each rigid body, uniform in arc length, counter-clockwise
from the bottom-left; the die is fixed) and ``params`` with the columns of
:func:`param_names`: per block ``width, height, x_offset, youngs_modulus, poisson_ratio``
(``x_offset`` is the block's centre), then per punch ``x_center, half_width,
corner_radius, tilt, depth, drift``.

Measured on a 2-core CPU (default config, float32): see :data:`MEASURED`.

Example::

    import jax
    from jaxpapers.physics.generators import contact

    cfg = contact.ContactConfig(num_deformables=2, num_rigids=2)
    data = contact.generate(jax.random.key(0, impl="rbg"), 16, cfg)
    data["deformable_1/steps"].shape     # (16, 9, 102, 2)
    contact.contact_pairs(cfg)           # ((0, 2), (0, 1), (1, 3))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MATERIALS = ("neo_hookean", "linear")
BLOCK_PARAMS = ("width", "height", "x_offset", "youngs_modulus", "poisson_ratio")
PUNCH_PARAMS = ("x_center", "half_width", "corner_radius", "tilt", "depth", "drift")
MEASURED = (
    "2-core shared CPU, float32, default config (16×5 elements per block, 8 steps), chunks of 32: "
    "~0.02 s/sample with 1 block, ~0.06 with 2, ~0.11 with 3 (500 samples: ~10 / 30 / 55 s); "
    "Newton iterations per step: mean 4.5 / 5.5 / 5.5; with 3 blocks ~3% of steps stop at the "
    "iteration cap (line search stalled by float32 round-off near the solution)"
)


@dataclasses.dataclass(frozen=True)
class ContactConfig:
    """Scene, mesh and solver settings. Ranges ``(low, high)`` are sampled uniformly per sample
    (``youngs_modulus`` log-uniformly); lengths in mm, moduli in MPa, angles in radians."""

    num_deformables: int = 2
    num_rigids: int = 2
    material: str = "neo_hookean"
    num_load_steps: int = 8
    # mesh
    nx: int = 16
    ny: int = 5
    rigid_points: int = 32
    # blocks
    base_width: tuple[float, float] = (36.0, 44.0)
    width_ratio: tuple[float, float] = (0.7, 0.9)
    offset_fraction: float = 0.5
    block_height: tuple[float, float] = (8.0, 14.0)
    youngs_modulus: tuple[float, float] = (10.0, 1000.0)
    poisson_ratio: tuple[float, float] = (0.25, 0.45)
    # punches (fractions of the sector width s, or of the top block's height for the depth)
    punch_half_width: tuple[float, float] = (0.2, 0.35)
    punch_roundness: tuple[float, float] = (0.4, 1.0)
    punch_tilt: float = 0.15
    punch_offset: float = 0.15
    indentation: tuple[float, float] = (0.05, 0.2)
    punch_drift: float = 0.05
    # solver
    penalty: float = 100.0
    smoothing: float = 0.5
    contact_layer: float = 0.05
    regularization: float = 1e-5
    newton_iterations: int = 16
    tolerance: float = 1e-5
    chunk_size: int = 32

    def __post_init__(self):
        if not 1 <= self.num_deformables <= 3:
            raise ValueError(f"num_deformables must be 1, 2 or 3, got {self.num_deformables}")
        if self.num_rigids < 1:
            raise ValueError(
                f"num_rigids must be >= 1 (a punch; with >= 2 rigid 0 is the die), "
                f"got {self.num_rigids}"
            )
        if self.material not in MATERIALS:
            raise ValueError(f"material must be one of {MATERIALS}, got {self.material!r}")
        if self.num_load_steps < 1:
            raise ValueError(f"num_load_steps must be >= 1, got {self.num_load_steps}")
        if self.nx < 2 or self.nx % 2:
            raise ValueError(
                f"nx must be an even number >= 2 (mirror-symmetric mesh), got {self.nx}"
            )
        if self.ny < 1:
            raise ValueError(f"ny must be >= 1, got {self.ny}")
        if self.rigid_points < 4:
            raise ValueError(f"rigid_points must be >= 4, got {self.rigid_points}")
        for name in (
            "base_width",
            "width_ratio",
            "block_height",
            "youngs_modulus",
            "poisson_ratio",
            "punch_half_width",
            "punch_roundness",
            "indentation",
        ):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range with 0 < low <= high, got {(lo, hi)}")
        if self.width_ratio[1] > 0.95:
            raise ValueError(
                f"width_ratio must stay <= 0.95 (pyramid stack), got {self.width_ratio}"
            )
        if self.poisson_ratio[1] >= 0.5:
            raise ValueError(f"poisson_ratio must stay below 0.5, got {self.poisson_ratio}")
        if self.punch_half_width[1] > 0.45 or self.punch_roundness[1] > 1.0:
            raise ValueError("punch_half_width must be <= 0.45 and punch_roundness <= 1")
        if self.indentation[1] >= 0.5:
            raise ValueError(
                f"indentation must stay below 0.5 (of the height), got {self.indentation}"
            )
        for name in ("offset_fraction", "punch_tilt", "punch_offset", "punch_drift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.penalty <= 0 or self.regularization < 0 or self.tolerance <= 0:
            raise ValueError("penalty and tolerance must be > 0, regularization >= 0")
        if self.smoothing <= 0 or self.contact_layer <= 0:
            raise ValueError("smoothing and contact_layer must be > 0")
        if self.newton_iterations < 1 or self.chunk_size < 1:
            raise ValueError("newton_iterations and chunk_size must be >= 1")

    @property
    def num_punches(self) -> int:
        return self.num_rigids - 1 if self.num_rigids >= 2 else 1

    @property
    def has_die(self) -> bool:
        return self.num_rigids >= 2

    @property
    def num_nodes(self) -> int:
        return (self.nx + 1) * (self.ny + 1)


def contact_pairs(config: ContactConfig) -> tuple[tuple[int, int], ...]:
    """Unisoma's ``contact_id``: pairs of objects that touch (deformables ``0..D-1``, then
    rigids ``D..D+R-1``): block 0–die, block i–block i+1, top block–each punch."""
    d = config.num_deformables
    pairs = []
    if config.has_die:
        pairs.append((0, d))
    pairs += [(i, i + 1) for i in range(d - 1)]
    first_punch = d + 1 if config.has_die else d
    pairs += [(d - 1, first_punch + j) for j in range(config.num_punches)]
    return tuple(pairs)


def param_names(config: ContactConfig) -> tuple[str, ...]:
    """Names of the ``params`` columns (see the module docstring)."""
    names = [f"block{i}_{p}" for i in range(config.num_deformables) for p in BLOCK_PARAMS]
    names += [f"punch{j}_{p}" for j in range(config.num_punches) for p in PUNCH_PARAMS]
    return tuple(names)


# --------------------------------------------------------------------------- mesh


def block_triangles(nx: int, ny: int) -> np.ndarray:
    """``(2·nx·ny, 3)`` int32 counter-clockwise triangles of an ``nx × ny`` structured grid
    (nodes row by row); diagonals ``/`` left of the centre, ``\\`` right of it."""
    tris = []
    for r in range(ny):
        for c in range(nx):
            n00, n10 = r * (nx + 1) + c, r * (nx + 1) + c + 1
            n01, n11 = n00 + nx + 1, n10 + nx + 1
            if 2 * c < nx:
                tris += [(n00, n10, n11), (n00, n11, n01)]
            else:
                tris += [(n00, n10, n01), (n10, n11, n01)]
    return np.asarray(tris, np.int32)


def triangles(config: ContactConfig) -> list[np.ndarray]:
    """Per deformable, its ``(M, 3)`` int32 triangles (node indices into its ``P`` nodes)."""
    tri = block_triangles(config.nx, config.ny)
    return [tri.copy() for _ in range(config.num_deformables)]


def block_nodes(nx: int, ny: int, x0, y0, width, height) -> jax.Array:
    """``(P, 2)`` node positions of a block with bottom-left corner ``(x0, y0)``."""
    c = jnp.arange(nx + 1, dtype=jnp.float32) / nx
    r = jnp.arange(ny + 1, dtype=jnp.float32) / ny
    x = jnp.broadcast_to(x0 + width * c[None, :], (ny + 1, nx + 1))
    y = jnp.broadcast_to(y0 + height * r[:, None], (ny + 1, nx + 1))
    return jnp.stack([x.ravel(), y.ravel()], -1)


# --------------------------------------------------------------------------- rigid bodies


def rounded_box_sdf(x: jax.Array, center, half, radius, theta) -> jax.Array:
    """Signed distance (negative inside) of a box of half extents ``half = (a, b)`` with corner
    radius ``radius`` (``<= min(a, b)``), centred at ``center`` and rotated by ``theta``."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    d = x - center
    p = jnp.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
    q = jnp.abs(p) - (jnp.asarray(half) - radius)
    qp = jnp.maximum(q, 0.0)
    n2 = jnp.sum(qp * qp, -1)
    outside = jnp.where(n2 > 0, jnp.sqrt(jnp.where(n2 > 0, n2, 1.0)), 0.0)
    return outside + jnp.minimum(jnp.max(q, -1), 0.0) - radius


def rounded_box_points(num: int, center, half, radius, theta) -> jax.Array:
    """``(num, 2)`` points uniform in arc length on a rounded box's boundary, counter-clockwise
    from the bottom edge's left end (same parameters as :func:`rounded_box_sdf`)."""
    a, b = half[0] - radius, half[1] - radius
    quarter = 0.5 * jnp.pi * radius
    lengths = jnp.stack([2 * a, quarter, 2 * b, quarter, 2 * a, quarter, 2 * b, quarter])
    ends = jnp.cumsum(lengths)
    s = (jnp.arange(num, dtype=jnp.float32) + 0.5) / num * ends[-1]
    piece = jnp.clip(jnp.sum(s[:, None] >= ends[None, :], -1), 0, 7)
    local = s - (ends - lengths)[piece]
    frac = local / jnp.maximum(lengths[piece], 1e-30)
    ang = frac * 0.5 * jnp.pi
    # straight edges: start point and direction; arcs: centre and start angle
    edge_start = jnp.stack(
        [
            jnp.stack([-a, -half[1]]),
            jnp.stack([half[0], -b]),
            jnp.stack([a, half[1]]),
            jnp.stack([-half[0], b]),
        ]
    )
    edge_dir = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    arc_centre = jnp.stack(
        [jnp.stack([a, -b]), jnp.stack([a, b]), jnp.stack([-a, b]), jnp.stack([-a, -b])]
    )
    arc_start = jnp.asarray([-0.5, 0.0, 0.5, 1.0]) * jnp.pi
    k = piece // 2
    on_edge = edge_start[k] + edge_dir[k] * local[:, None]
    phi = arc_start[k] + ang
    on_arc = arc_centre[k] + radius * jnp.stack([jnp.cos(phi), jnp.sin(phi)], -1)
    p = jnp.where((piece % 2 == 0)[:, None], on_edge, on_arc)
    c, s_ = jnp.cos(theta), jnp.sin(theta)
    rot = jnp.stack([c * p[:, 0] - s_ * p[:, 1], s_ * p[:, 0] + c * p[:, 1]], -1)
    return rot + center


def _lowest_offset(half, radius, theta):
    """Distance from a rotated rounded box's centre down to its lowest point."""
    return (
        jnp.abs((half[0] - radius) * jnp.sin(theta))
        + jnp.abs((half[1] - radius) * jnp.cos(theta))
        + radius
    )


# --------------------------------------------------------------------------- materials


def lame(youngs_modulus, poisson_ratio):
    """``(μ, λ)`` from ``E`` and ``ν``."""
    mu = youngs_modulus / (2 * (1 + poisson_ratio))
    lam = youngs_modulus * poisson_ratio / ((1 + poisson_ratio) * (1 - 2 * poisson_ratio))
    return mu, lam


def strain_energy_density(f: jax.Array, mu, lam, material: str) -> jax.Array:
    """Plane-strain ``ψ(F)`` for a ``(..., 2, 2)`` deformation gradient (see the docstring)."""
    if material == "linear":
        g = f - jnp.eye(2, dtype=f.dtype)
        eps = 0.5 * (g + jnp.swapaxes(g, -1, -2))
        tr = eps[..., 0, 0] + eps[..., 1, 1]
        return 0.5 * lam * tr**2 + mu * jnp.sum(eps * eps, (-1, -2))
    j = f[..., 0, 0] * f[..., 1, 1] - f[..., 0, 1] * f[..., 1, 0]
    ok = j > 0
    log_j = jnp.log(jnp.where(ok, j, 1.0))
    i1 = jnp.sum(f * f, (-1, -2))
    psi = 0.5 * mu * (i1 - 2.0 - 2.0 * log_j) + 0.5 * lam * log_j**2
    return jnp.where(ok, psi, jnp.inf)


def cauchy_stress(f: jax.Array, mu, lam, material: str) -> tuple[jax.Array, jax.Array]:
    """Plane-strain Cauchy stress: in-plane ``(..., 2, 2)`` and ``σ_zz`` ``(...)``."""
    eye = jnp.eye(2, dtype=f.dtype)
    mu_, lam_ = jnp.asarray(mu)[..., None, None], jnp.asarray(lam)[..., None, None]
    if material == "linear":
        g = f - eye
        eps = 0.5 * (g + jnp.swapaxes(g, -1, -2))
        tr = eps[..., 0, 0] + eps[..., 1, 1]
        return lam_ * tr[..., None, None] * eye + 2 * mu_ * eps, lam * tr
    j = f[..., 0, 0] * f[..., 1, 1] - f[..., 0, 1] * f[..., 1, 0]
    log_j = jnp.log(jnp.maximum(j, 1e-12))
    b = f @ jnp.swapaxes(f, -1, -2)
    sig = (mu_ * (b - eye) + lam_ * log_j[..., None, None] * eye) / j[..., None, None]
    return sig, lam * log_j / j


def von_mises(sig: jax.Array, szz: jax.Array) -> jax.Array:
    """Plane-strain von Mises stress from in-plane ``σ`` ``(..., 2, 2)`` and ``σ_zz``."""
    sxx, syy, sxy = sig[..., 0, 0], sig[..., 1, 1], sig[..., 0, 1]
    return jnp.sqrt(0.5 * ((sxx - syy) ** 2 + (syy - szz) ** 2 + (szz - sxx) ** 2) + 3 * sxy**2)


# --------------------------------------------------------------------------- problem


@dataclasses.dataclass(frozen=True)
class Structure:
    """Static (hashable) part of a problem: mesh sizes, material law, steps, solver."""

    num_bodies: int
    nx: int
    ny: int
    material: str = "neo_hookean"
    num_steps: int = 1
    newton_iterations: int = 16
    tolerance: float = 1e-6  # on max|Δu|, relative to `length`

    @property
    def num_nodes(self) -> int:
        return (self.nx + 1) * (self.ny + 1)

    @property
    def row_size(self) -> int:
        return 2 * (self.nx + 1)

    @property
    def num_rows(self) -> int:
        return self.num_bodies * (self.ny + 1)


class Problem(NamedTuple):
    """Per-sample arrays of a quasi-static problem (``B`` bodies, ``P`` nodes, ``K`` punches).

    Prescribed values scale with the load factor ``s = t/T``: fixed dofs ``u = s·u_fixed``,
    nodal forces ``s·force``, punch ``k`` centred at ``punch_center + s·punch_travel``.
    """

    rest: jax.Array  # (B, P, 2) reference node positions
    mu: jax.Array  # (B,)
    lam: jax.Array  # (B,)
    fixed: jax.Array  # (B, P, 2) 1 where the dof is prescribed
    u_fixed: jax.Array  # (B, P, 2)
    force: jax.Array  # (B, P, 2)
    reg: jax.Array  # (B,) spring stiffness on every node of the body
    punch_center: jax.Array  # (K, 2)
    punch_travel: jax.Array  # (K, 2)
    punch_half: jax.Array  # (K, 2)
    punch_radius: jax.Array  # (K,)
    punch_theta: jax.Array  # (K,)
    punch_k: jax.Array  # () penalty on the top body's nodes (0: no punches)
    interface_k: jax.Array  # (B-1,) penalty of the interface between bodies i and i+1
    interface_width: jax.Array  # (B-1,) kernel width of the smoothed master face
    length: jax.Array  # () length scale of the convergence test
    layer: jax.Array  # () thickness ε of the contact layer of :func:`penalty`


def _element_data(rest, tri):
    """Reference inverse edge matrices ``(B, M, 2, 2)`` and areas ``(B, M)``."""
    xe = rest[:, tri]  # (B, M, 3, 2)
    dm = jnp.stack([xe[:, :, 1] - xe[:, :, 0], xe[:, :, 2] - xe[:, :, 0]], -1)
    area = 0.5 * (dm[..., 0, 0] * dm[..., 1, 1] - dm[..., 0, 1] * dm[..., 1, 0])
    return jnp.linalg.inv(dm), area


def _deformation_gradient(x, tri, dm_inv):
    xe = x[:, tri]
    ds = jnp.stack([xe[:, :, 1] - xe[:, :, 0], xe[:, :, 2] - xe[:, :, 0]], -1)
    return ds @ dm_inv


def _punch_gaps(x, prob: Problem, s):
    """Signed distances ``(..., K)`` of node positions ``x`` ``(..., 2)`` to the punches."""
    centre = prob.punch_center + s * prob.punch_travel  # (K, 2)
    return jax.vmap(rounded_box_sdf, in_axes=(None, 0, 0, 0, 0), out_axes=-1)(
        x, centre, prob.punch_half, prob.punch_radius, prob.punch_theta
    )


def penalty(g: jax.Array, k, layer) -> jax.Array:
    """C² penalty of a gap ``g``: ``k(g²/2 - εg/2 + ε²/6)`` for ``g < 0``, ``k(ε-g)³/(6ε)``
    in the contact layer ``0 <= g < ε = layer``, 0 beyond (the quadratic penalty ``½kg²``
    shifted by ``ε/2`` and joined smoothly to zero)."""
    inner = jnp.clip(layer - g, 0.0, layer)  # ε - g inside the layer
    cubic = k * inner**3 / (6 * layer)
    neg = jnp.minimum(g, 0.0)
    return cubic + k * (0.5 * neg * neg - 0.5 * layer * neg)


def penalty_curvature(g: jax.Array, k, layer) -> jax.Array:
    """``d²penalty/dg² = k·clip((ε - g)/ε, 0, 1)``."""
    return k * jnp.clip((layer - g) / layer, 0.0, 1.0)


def _punch_energy(x, prob: Problem, s):
    """``Σ_k penalty(φ_k(x))`` for node positions ``x`` ``(..., 2)``."""
    return jnp.sum(penalty(_punch_gaps(x, prob, s), prob.punch_k, prob.layer), -1)


def master_height(x: jax.Array, master: jax.Array, width) -> jax.Array:
    """Height ``h(x)`` of the smoothed master face: the Gaussian-kernel (Nadaraya–Watson)
    average of the master nodes' heights, ``master (n, 2)``, kernel width ``width``. Exact for
    a flat face; ``C∞``, so Newton never meets the kinks of a polyline's vertices."""
    z = (x - master[:, 0]) / width
    logits = -0.5 * z * z
    w = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits)))
    return jnp.sum(w * master[:, 1]) / jnp.sum(w)


def _slave_gap(slave: jax.Array, master: jax.Array, width) -> jax.Array:
    """Gap ``g = y_s - h(x_s)`` of a slave node; ``+∞`` (never active) beyond the face."""
    g = slave[1] - master_height(slave[0], master, width)
    inside = (slave[0] >= master[0, 0]) & (slave[0] <= master[-1, 0])
    return jnp.where(inside, g, jnp.inf)


def _slave_energy(slave: jax.Array, master: jax.Array, width, k, layer) -> jax.Array:
    """:func:`penalty` of one slave node's gap (:func:`_slave_gap`)."""
    return penalty(_slave_gap(slave, master, width), k, layer)


def _interface_energy(slaves, master, width, k, layer):
    """Sum of :func:`_slave_energy` over ``slaves (n, 2)``."""
    energies = jax.vmap(_slave_energy, (0, None, None, None, None))(slaves, master, width, k, layer)
    return jnp.sum(energies)


def energy(u: jax.Array, prob: Problem, s, tri: np.ndarray, st: Structure) -> jax.Array:
    """Total potential energy ``Π(u)`` at load factor ``s`` (``u`` ``(B, P, 2)``)."""
    x = prob.rest + u
    dm_inv, area = _element_data(prob.rest, tri)
    f = _deformation_gradient(x, tri, dm_inv)
    psi = strain_energy_density(f, prob.mu[:, None], prob.lam[:, None], st.material)
    total = jnp.sum(area * psi)
    total += jnp.sum(_punch_energy(x[-1], prob, s))
    if st.num_bodies > 1:
        slaves, masters = x[1:, : st.nx + 1], x[:-1, st.ny * (st.nx + 1) :]
        total += jnp.sum(
            jax.vmap(_interface_energy, (0, 0, 0, 0, None))(
                slaves, masters, prob.interface_width, prob.interface_k, prob.layer
            )
        )
    total += 0.5 * jnp.sum(prob.reg[:, None, None] * u * u)
    total -= s * jnp.sum(prob.force * u)
    return total


# --------------------------------------------------------------------------- Hessian


def _flat_targets(ga: np.ndarray | jax.Array, gb, st: Structure, xp=jnp):
    """Index into the flat block-tridiagonal storage ``[D (R,S,S), U (R-1,S,S), dummy]`` of the
    global entry ``(ga, gb)``; entries below the block diagonal go to the dummy slot."""
    size, rows = st.row_size, st.num_rows
    ra, ca, rb, cb = ga // size, ga % size, gb // size, gb % size
    diag = ra * size * size + ca * size + cb
    upper = rows * size * size + ra * size * size + ca * size + cb
    dummy = (2 * rows - 1) * size * size
    return xp.where(ra == rb, diag, xp.where(rb == ra + 1, upper, dummy))


@functools.cache
def _static_targets(st: Structure, tri_bytes: bytes):
    """Flat targets of every element-Hessian entry ``(B, M, 6, 6)`` (NumPy, static)."""
    tri = np.frombuffer(tri_bytes, np.int32).reshape(-1, 3)
    p = st.num_nodes
    nodes = np.arange(st.num_bodies)[:, None, None] * p + tri[None]  # (B, M, 3)
    dofs = (2 * nodes[..., None] + np.arange(2)).reshape(st.num_bodies, -1, 6)
    ga, gb = dofs[..., :, None], dofs[..., None, :]
    if np.any(np.abs(ga // st.row_size - gb // st.row_size) > 1):
        raise ValueError("element couples non-adjacent node rows: not block tridiagonal")
    return _flat_targets(ga, gb, st, xp=np).astype(np.int32)


@functools.cache
def _interface_targets(st: Structure) -> np.ndarray:
    """Flat targets ``(B-1, n, 2n+2, 2n+2)`` of the slave Hessians (slave node, then the
    master face's ``n = nx+1`` nodes)."""
    n, p = st.nx + 1, st.num_nodes
    body = np.arange(st.num_bodies - 1)[:, None, None]
    slave = (body + 1) * p + np.arange(n)[None, :, None]
    master = body * p + st.ny * n + np.arange(n)[None, None, :]
    nodes = np.concatenate([slave, np.broadcast_to(master, (st.num_bodies - 1, n, n))], -1)
    dofs = (2 * nodes[..., None] + np.arange(2)).reshape(st.num_bodies - 1, n, 2 * n + 2)
    return _flat_targets(dofs[..., :, None], dofs[..., None, :], st, xp=np).astype(np.int32)


def _element_energy(xe_flat, dm_inv, area, mu, lam, material):
    xe = xe_flat.reshape(3, 2)
    ds = jnp.stack([xe[1] - xe[0], xe[2] - xe[0]], -1)
    return area * strain_energy_density(ds @ dm_inv, mu, lam, material)


def _gauss_newton(z: jax.Array, gaps, k, layer) -> jax.Array:
    """Gauss–Newton Hessian ``Σ_i penalty''(g_i) ∇g_i ∇g_iᵀ`` of ``Σ_i penalty(g_i(z))``."""
    g = gaps(z)
    jac = jax.jacfwd(gaps)(z)  # (K, n)
    jac = jnp.where(jnp.isfinite(g)[:, None], jac, 0.0)
    return (jac.T * penalty_curvature(g, k, layer)) @ jac


def hessian(u: jax.Array, prob: Problem, s, tri: np.ndarray, st: Structure):
    """Block-tridiagonal Hessian of :func:`energy`: ``(diag (R,S,S), upper (R-1,S,S))``."""
    size, rows, nb, p = st.row_size, st.num_rows, st.num_bodies, st.num_nodes
    x = prob.rest + u
    dm_inv, area = _element_data(prob.rest, tri)
    xe = x[:, tri].reshape(nb, -1, 6)
    he = jax.vmap(
        jax.vmap(jax.hessian(_element_energy), (0, 0, 0, None, None, None)),
        (0, 0, 0, 0, 0, None),
    )(xe, dm_inv, area, prob.mu, prob.lam, st.material)
    flat = jnp.zeros(((2 * rows - 1) * size * size + 1,), x.dtype)
    flat = flat.at[_static_targets(st, tri.astype(np.int32).tobytes())].add(he)
    # node-local terms (punch penalty, springs) on the diagonal blocks
    # contact terms: Gauss–Newton Hessians k·[g<0]·∇g∇gᵀ (the dropped k·g·∇²g is indefinite)
    hp = jax.vmap(
        lambda xn: _gauss_newton(xn, lambda z: _punch_gaps(z, prob, s), prob.punch_k, prob.layer)
    )(x[-1])  # (P, 2, 2)
    node_h = jnp.zeros((nb, p, 2, 2), x.dtype).at[-1].add(hp)
    node_h += prob.reg[:, None, None, None] * jnp.eye(2, dtype=x.dtype)
    dofs = 2 * np.arange(nb * p).reshape(nb, p, 1) + np.arange(2)  # (B, P, 2)
    flat = flat.at[_flat_targets(dofs[..., :, None], dofs[..., None, :], st, xp=np)].add(node_h)
    if nb > 1:
        n = st.nx + 1
        slaves, masters = x[1:, :n], x[:-1, st.ny * n :]

        def slave_h(xs, xm, width, k):
            z = jnp.concatenate([xs, xm.reshape(-1)])
            return _gauss_newton(
                z, lambda z: _slave_gap(z[:2], z[2:].reshape(n, 2), width)[None], k, prob.layer
            )

        hc = jax.vmap(jax.vmap(slave_h, (0, None, None, None)))(
            slaves, masters, prob.interface_width, prob.interface_k
        )  # (B-1, n, 2n+2, 2n+2)
        flat = flat.at[_interface_targets(st)].add(hc)
    diag = flat[: rows * size * size].reshape(rows, size, size)
    upper = flat[rows * size * size : (2 * rows - 1) * size * size].reshape(rows - 1, size, size)
    return diag, upper


def _block_thomas(diag: jax.Array, upper: jax.Array, rhs: jax.Array) -> jax.Array:
    """Block Thomas algorithm, batch-major: ``diag (..., R, S, S)``, ``upper (..., R-1, S, S)``,
    ``rhs (..., R, S)`` with any leading batch dimensions."""
    size = diag.shape[-1]
    d = jnp.moveaxis(diag, -3, 0)
    u = jnp.moveaxis(upper, -3, 0)
    b = jnp.moveaxis(rhs, -2, 0)
    zero = jnp.zeros_like(d[:1])
    up_next = jnp.concatenate([u, zero])  # U_r: coupling of row r to row r+1
    up_prev = jnp.concatenate([zero, u])  # U_{r-1}

    def forward(carry, inp):
        g_prev, y_prev = carry
        d_r, u_prev, u_next, b_r = inp
        d_eff = d_r - jnp.einsum("...ji,...jk->...ik", u_prev, g_prev)
        b_eff = b_r - jnp.einsum("...ji,...j->...i", u_prev, y_prev)
        sol = jnp.linalg.solve(d_eff, jnp.concatenate([u_next, b_eff[..., None]], -1))
        out = (sol[..., :size], sol[..., size])
        return out, out

    _, (g, y) = jax.lax.scan(forward, (d[0] * 0, b[0] * 0), (d, up_prev, up_next, b))

    def backward(x_next, inp):
        g_r, y_r = inp
        x_r = y_r - jnp.einsum("...ij,...j->...i", g_r, x_next)
        return x_r, x_r

    _, x = jax.lax.scan(backward, b[0] * 0, (g, y), reverse=True)
    return jnp.moveaxis(x, 0, -2)


@jax.custom_batching.custom_vmap
def solve_block_tridiagonal(diag: jax.Array, upper: jax.Array, rhs: jax.Array) -> jax.Array:
    """Solve ``K x = rhs`` for the symmetric block-tridiagonal ``K`` with diagonal blocks
    ``diag (R, S, S)`` and super-diagonal blocks ``upper (R-1, S, S)`` (sub-diagonal =
    ``upperᵀ``) by the block Thomas algorithm (no pivoting across blocks; LU within);
    ``rhs (R, S)``. Under ``vmap`` the samples are solved batch-major (one ``scan`` over
    rows of batched solves: ~3× faster on CPU than vmap's default batching of the scan)."""
    return _block_thomas(diag, upper, rhs)


@solve_block_tridiagonal.def_vmap
def _solve_block_tridiagonal_vmap(axis_size, in_batched, diag, upper, rhs):
    args = [
        a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
        for a, batched in zip((diag, upper, rhs), in_batched)
    ]
    return _block_thomas(*args), True


def block_problem(
    rest: jax.Array,
    youngs_modulus: float,
    poisson_ratio: float,
    fixed: jax.Array,
    u_fixed: jax.Array | None = None,
    force: jax.Array | None = None,
) -> Problem:
    """A one-body :class:`Problem` without contact: ``rest (P, 2)`` nodes, Dirichlet mask
    ``fixed (P, 2)`` with values ``u_fixed`` and nodal ``force`` (both at load factor 1).
    Used by the patch and cantilever checks."""
    rest = jnp.asarray(rest, jnp.float32)[None]
    zeros = jnp.zeros_like(rest)
    mu, lam = lame(jnp.float32(youngs_modulus), jnp.float32(poisson_ratio))
    one = jnp.ones((1,), jnp.float32)
    return Problem(
        rest=rest,
        mu=mu * one,
        lam=lam * one,
        fixed=jnp.asarray(fixed, jnp.float32)[None],
        u_fixed=zeros if u_fixed is None else jnp.asarray(u_fixed, jnp.float32)[None],
        force=zeros if force is None else jnp.asarray(force, jnp.float32)[None],
        reg=jnp.zeros((1,), jnp.float32),
        punch_center=jnp.zeros((1, 2), jnp.float32),
        punch_travel=jnp.zeros((1, 2), jnp.float32),
        punch_half=jnp.ones((1, 2), jnp.float32),
        punch_radius=one,
        punch_theta=jnp.zeros((1,), jnp.float32),
        punch_k=jnp.float32(0.0),
        interface_k=jnp.zeros((0,), jnp.float32),
        interface_width=jnp.zeros((0,), jnp.float32),
        length=jnp.max(rest[..., 0]) - jnp.min(rest[..., 0]),
        layer=jnp.float32(1.0),
    )


# --------------------------------------------------------------------------- Newton


def _masked_system(diag, upper, free_rows):
    """Eliminate fixed dofs: their rows/columns become identity rows/columns."""
    m = free_rows
    diag = m[:, :, None] * m[:, None, :] * diag + jax.vmap(jnp.diag)(1.0 - m)
    upper = m[:-1, :, None] * m[1:, None, :] * upper
    return diag, upper


_ALPHAS = 2.0 ** -np.asarray([0, 1, 2, 3, 4, 5, 7, 9], np.float32)


def newton(u: jax.Array, prob: Problem, s, tri: np.ndarray, st: Structure):
    """Minimise :func:`energy` at load factor ``s`` from ``u`` (fixed dofs reset to
    ``s·u_fixed``). Returns ``(u, iterations)``."""
    free = 1.0 - prob.fixed
    free_rows = free.reshape(st.num_rows, st.row_size)
    u = jnp.where(prob.fixed > 0, s * prob.u_fixed, u)
    alphas = jnp.asarray(_ALPHAS, u.dtype)

    def total(v):
        return energy(v, prob, s, tri, st)

    def body(state):
        u, it, _ = state
        e0, g = jax.value_and_grad(total)(u)
        g = g * free
        diag, upper = _masked_system(*hessian(u, prob, s, tri, st), free_rows)
        d = -solve_block_tridiagonal(diag, upper, g.reshape(st.num_rows, st.row_size))
        d = d.reshape(u.shape) * free
        es = jax.vmap(lambda a: total(u + a * d))(alphas)
        es = jnp.where(jnp.isfinite(es), es, jnp.inf)
        slope = jnp.sum(g * d)
        ok = es <= e0 + 1e-4 * alphas * slope + 4e-6 * jnp.abs(e0)
        best = jnp.argmin(es)
        fallback = jnp.where(es[best] < e0, alphas[best], 0.0)
        alpha = jnp.where(jnp.any(ok), alphas[jnp.argmax(ok)], fallback)
        du = alpha * d
        tol = st.tolerance * prob.length
        # a failed line search (alpha = 0) is not convergence unless the step itself is tiny
        done = ((alpha > 0) & (jnp.max(jnp.abs(du)) <= tol)) | (jnp.max(jnp.abs(d)) <= tol)
        return u + du, it + 1, done

    def cond(state):
        _, it, done = state
        return (~done) & (it < st.newton_iterations)

    u, it, _ = jax.lax.while_loop(cond, body, (u, jnp.int32(0), jnp.bool_(False)))
    return u, it


def nodal_von_mises(u: jax.Array, prob: Problem, tri: np.ndarray, st: Structure) -> jax.Array:
    """``(B, P)`` von Mises stress of the area-weighted nodal average of element stresses."""
    dm_inv, area = _element_data(prob.rest, tri)
    f = _deformation_gradient(prob.rest + u, tri, dm_inv)
    sig, szz = cauchy_stress(f, prob.mu[:, None], prob.lam[:, None], st.material)
    comps = jnp.stack([sig[..., 0, 0], sig[..., 1, 1], sig[..., 0, 1], szz], -1)  # (B, M, 4)
    idx = jnp.asarray(tri.reshape(-1))

    def per_body(c, a):
        w = jnp.repeat(a, 3)
        num = jax.ops.segment_sum(jnp.repeat(c * a[:, None], 3, 0), idx, st.num_nodes)
        den = jax.ops.segment_sum(w, idx, st.num_nodes)
        return num / den[:, None]

    nodal = jax.vmap(per_body)(comps, area)
    sig_n = jnp.stack(
        [
            jnp.stack([nodal[..., 0], nodal[..., 2]], -1),
            jnp.stack([nodal[..., 2], nodal[..., 1]], -1),
        ],
        -2,
    )
    return von_mises(sig_n, nodal[..., 3])


@functools.partial(jax.jit, static_argnames=("st",))
def solve(prob: Problem, st: Structure):
    """Quasi-static solution over ``st.num_steps`` load steps on the blocks' meshes
    (:func:`block_triangles` of ``st.nx × st.ny``).

    Returns ``(u (T+1, B, P, 2), von_mises (T+1, B, P), newton_iterations (T,))``; index 0 is
    the rest state.
    """
    tri = block_triangles(st.nx, st.ny)
    u0 = jnp.zeros_like(prob.rest)

    def step(carry, t):
        u, u_prev = carry
        s = t / st.num_steps
        # predictor: extrapolate the last increment (proportional loading), unless it raises
        # the energy at the new load (then start from the last solution)
        guess = 2 * u - u_prev
        e_guess = energy(guess, prob, s, tri, st)
        e_last = energy(u, prob, s, tri, st)
        start = jnp.where(jnp.isfinite(e_guess) & (e_guess < e_last), guess, u)
        u_new, it = newton(start, prob, s, tri, st)
        return (u_new, u), (u_new, nodal_von_mises(u_new, prob, tri, st), it)

    ts = jnp.arange(1, st.num_steps + 1, dtype=prob.rest.dtype)
    _, (us, vms, its) = jax.lax.scan(step, (u0, u0), ts)
    us = jnp.concatenate([u0[None], us])
    vms = jnp.concatenate([jnp.zeros_like(vms[:1]), vms])
    return us, vms, its


# --------------------------------------------------------------------------- scenes


def _structure(config: ContactConfig) -> Structure:
    return Structure(
        num_bodies=config.num_deformables,
        nx=config.nx,
        ny=config.ny,
        material=config.material,
        num_steps=config.num_load_steps,
        newton_iterations=config.newton_iterations,
        tolerance=config.tolerance,
    )


@functools.partial(jax.jit, static_argnames=("num_samples", "config"))
def sample_params(key: jax.Array, num_samples: int, config: ContactConfig) -> jax.Array:
    """``(num_samples, K)`` scene parameters (columns: :func:`param_names`)."""
    d, k = config.num_deformables, config.num_punches
    keys = jax.random.split(key, 12)
    n = num_samples

    def uni(key_, shape, rng):
        return jax.random.uniform(key_, shape, jnp.float32, rng[0], rng[1])

    def sym(key_, shape, half):
        return jax.random.uniform(key_, shape, jnp.float32, -half, half)

    w0 = uni(keys[0], (n, 1), config.base_width)
    ratios = uni(keys[1], (n, d - 1), config.width_ratio)
    widths = w0 * jnp.concatenate([jnp.ones((n, 1)), jnp.cumprod(ratios, 1)], 1)
    heights = uni(keys[2], (n, d), config.block_height)
    shift = sym(keys[3], (n, d - 1), config.offset_fraction) * (widths[:, :-1] - widths[:, 1:]) / 2
    offsets = jnp.concatenate([jnp.zeros((n, 1)), jnp.cumsum(shift, 1)], 1)
    lo, hi = np.log(config.youngs_modulus[0]), np.log(config.youngs_modulus[1])
    youngs = jnp.exp(uni(keys[4], (n, d), (lo, hi)))
    poisson = uni(keys[5], (n, d), config.poisson_ratio)
    blocks = jnp.stack([widths, heights, offsets, youngs, poisson], -1).reshape(n, -1)

    w_top, x_top, h_top = widths[:, -1:], offsets[:, -1:], heights[:, -1:]
    sector = w_top / k
    centres = x_top - w_top / 2 + (jnp.arange(k) + 0.5) * sector
    half = uni(keys[6], (n, k), config.punch_half_width) * sector
    radius = uni(keys[7], (n, k), config.punch_roundness) * half
    tilt = sym(keys[8], (n, k), config.punch_tilt)
    x_c = centres + sym(keys[9], (n, k), config.punch_offset) * sector
    depth = uni(keys[10], (n, k), config.indentation) * h_top
    drift = sym(keys[11], (n, k), config.punch_drift) * sector
    punches = jnp.stack([x_c, half, radius, tilt, depth, drift], -1).reshape(n, -1)
    return jnp.concatenate([blocks, punches], 1)


def _unpack(params: jax.Array, config: ContactConfig):
    d, k = config.num_deformables, config.num_punches
    blocks = params[: 5 * d].reshape(d, 5)
    punches = params[5 * d :].reshape(k, 6)
    return blocks, punches


def build_problem(params: jax.Array, config: ContactConfig) -> Problem:
    """The :class:`Problem` of one scene from its ``params`` row."""
    blocks, punches = _unpack(params, config)
    d, nx, ny = config.num_deformables, config.nx, config.ny
    widths, heights, offsets, youngs, poisson = (blocks[:, i] for i in range(5))
    bottoms = jnp.concatenate([jnp.zeros(1), jnp.cumsum(heights)[:-1]])
    rest = jax.vmap(lambda x0, y0, w, h: block_nodes(nx, ny, x0, y0, w, h))(
        offsets - widths / 2, bottoms, widths, heights
    )
    mu, lam = lame(youngs, poisson)
    fixed = np.zeros((d, config.num_nodes, 2), np.float32)
    fixed[0, : nx + 1] = 1.0  # block 0 bonded to the die / clamped base
    fixed[1:, nx // 2, 0] = 1.0  # locating pins of the upper blocks
    reg = config.regularization * youngs * (jnp.arange(d) > 0)
    x_c, half, radius, tilt, depth, drift = (punches[:, i] for i in range(6))
    halves = jnp.stack([half, half], -1)
    y_top = jnp.sum(heights)
    centre = jnp.stack([x_c, y_top + _lowest_offset(halves.T, radius, tilt)], -1)
    return Problem(
        rest=rest,
        mu=mu,
        lam=lam,
        fixed=jnp.asarray(fixed),
        u_fixed=jnp.zeros_like(rest),
        force=jnp.zeros_like(rest),
        reg=reg,
        punch_center=centre,
        punch_travel=jnp.stack([drift, -depth], -1),
        punch_half=halves,
        punch_radius=radius,
        punch_theta=tilt,
        punch_k=config.penalty * youngs[-1],
        interface_k=config.penalty * jnp.minimum(youngs[:-1], youngs[1:]),
        interface_width=config.smoothing * widths[:-1] / nx,
        length=widths[0],
        layer=config.contact_layer * widths[-1] / nx,
    )


def rigid_steps(params: jax.Array, config: ContactConfig) -> list[jax.Array]:
    """Per rigid body, its ``(T+1, Q, 2)`` boundary points at every step (die first)."""
    blocks, punches = _unpack(params, config)
    q, t = config.rigid_points, config.num_load_steps
    prob = build_problem(params, config)
    s = jnp.arange(t + 1, dtype=jnp.float32) / t
    out = []
    if config.has_die:
        w0 = blocks[0, 0]
        die = rounded_box_points(
            q, jnp.stack([0.0, -0.1 * w0]), jnp.stack([0.6 * w0, 0.1 * w0]), 0.0, 0.0
        )
        out.append(jnp.broadcast_to(die, (t + 1, q, 2)))
    for j in range(config.num_punches):
        shape = rounded_box_points(
            q, jnp.zeros(2), prob.punch_half[j], prob.punch_radius[j], prob.punch_theta[j]
        )
        centres = prob.punch_center[j] + s[:, None] * prob.punch_travel[j]
        out.append(shape[None] + centres[:, None])
    return out


@functools.partial(jax.jit, static_argnames=("config",))
def _simulate_chunk(params: jax.Array, config: ContactConfig):
    st = _structure(config)

    def one(p):
        prob = build_problem(p, config)
        us, vms, its = solve(prob, st)
        return prob.rest[None] + us, vms, its, rigid_steps(p, config)

    return jax.vmap(one)(params)


def simulate(params: jax.Array, config: ContactConfig) -> dict[str, np.ndarray]:
    """Solve the scenes ``params (N, K)`` (see :func:`sample_params`); the arrays of
    :func:`generate`, plus ``newton_iterations`` ``(N, T)``."""
    params = jnp.asarray(params, jnp.float32)
    n = params.shape[0]
    chunk = min(config.chunk_size, n)
    pieces = []
    for start in range(0, n, chunk):
        part = params[start : start + chunk]
        pad = chunk - part.shape[0]
        if pad:
            part = jnp.concatenate([part, jnp.repeat(part[-1:], pad, 0)])
        keep = chunk - pad
        out = jax.tree.map(np.asarray, _simulate_chunk(part, config))
        pieces.append(jax.tree.map(lambda a, keep=keep: a[:keep], out))
    xs, vms, its, rigids = jax.tree.map(lambda *a: np.concatenate(a), *pieces)
    data = {}
    for i in range(config.num_deformables):
        steps = np.ascontiguousarray(xs[:, :, i], np.float32)
        stress = np.ascontiguousarray(vms[:, :, i], np.float32)
        data[f"deformable_{i}/init"] = steps[:, 0]
        data[f"deformable_{i}/final"] = steps[:, -1]
        data[f"deformable_{i}/steps"] = steps
        data[f"deformable_{i}/stress"] = stress[:, -1]
        data[f"deformable_{i}/stress_steps"] = stress
    for j, r in enumerate(rigids):
        r = np.asarray(r, np.float32)
        data[f"rigid_{j}/init"] = r[:, 0]
        data[f"rigid_{j}/final"] = r[:, -1]
        data[f"rigid_{j}/steps"] = r
    data["params"] = np.asarray(params, np.float32)
    data["newton_iterations"] = np.asarray(its, np.int32)
    return data


def generate(key: jax.Array, num_samples: int, config: ContactConfig) -> dict[str, np.ndarray]:
    """``num_samples`` random scenes of ``config`` solved; keys as the module docstring."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    data = simulate(sample_params(key, num_samples, config), config)
    data.pop("newton_iterations")
    return data
