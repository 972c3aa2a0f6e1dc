r"""Stretch bending of slender metal strips: a reduced-order physics generator.

The data source of LaDEEP (Tao et al., KDD 2025) and FilDeep (arXiv 2601.10031): a strip
(aircraft frame / stringer profile) is pre-stretched, wrapped onto a mould (die) under
tension, post-stretched and released; it springs back. The authors' finite-element data is not
downloadable, so this module solves the same problem with a beam model that is seeded,
vectorised in JAX (``vmap`` over samples, ``jit``) and makes thousands of samples in seconds
on a CPU. Every sample gives the arrays LaDEEP reads: the strip, the mould, the
cross-section as a signed-distance image, six process parameters, and the loaded and
unloaded (springback) centre lines.

Units: millimetres, megapascals (N/mm²), newtons. Curves are ``(P, 3)`` point arrays.

Geometry
--------
* **Strip.** A beam of random length ``L`` (``strip_length``) with a cross-section from
  :data:`SECTION_TYPES`. Its initial centre line has a small random imperfection: a smooth
  curvature ``κ0(S) = (κ0₁, κ0₂)`` of amplitude ``imperfection`` (1/mm), ``S`` the material
  arc length, so the strip is straight when ``imperfection = 0``.
* **Cross-section.** In the section plane, ``y`` is the in-plane (main bending plane)
  direction and ``z`` the out-of-plane one. The image is ``section_shape = (H, W)`` pixels
  over ``section_extent = (Y, Z)`` mm; row ``i`` is at ``y = -Y/2 + (i + ½)·Y/H`` and
  column ``j`` at ``z = -Z/2 + (j + ½)·Z/W``. Values are signed distances in **mm**,
  negative inside; the section's bounding box is centred in the image. Types (height ``h``
  along ``y``, width ``b`` along ``z``, wall thickness ``t``):
  ``rectangle`` (solid ``b×h``), ``l`` (web at ``z = -b/2`` plus bottom flange),
  ``t`` (top flange plus centred web), ``channel`` (web at ``z = -b/2`` plus top and bottom
  flanges, open towards ``+z``), ``hollow_box`` (``b×h`` minus ``(b-2t)×(h-2t)``). The SDF is
  the exact box SDF combined by ``min`` (union) and ``max(outer, -inner)`` (hole): exact
  outside, a close bound inside (choice; the references use FEM meshes).
* **Mould.** A smooth 3D curve given by its curvature in a rotation-minimising frame:
  ``κm₁(s) = (1/R)·(1 + a·Σⱼ cⱼ cos(2πjs/Lm + φⱼ))`` in the main plane (``R`` from
  ``mould_radius``, ``a = mould_variation``) and ``κm₂(s) = (r/R)·Σⱼ dⱼ sin(2πjs/Lm + ψⱼ)``
  out of plane (``r = out_of_plane``), ``j = 1..mould_modes``, ``cⱼ, dⱼ`` normal scaled by
  ``1/j`` and normalised so that ``Σ|cⱼ| ≤ 1``. Its length ``Lm = L·(1 + ε_pre + ε_post)·1.1``
  always exceeds the loaded strip.

Curves from curvature (:func:`integrate_centreline`)
----------------------------------------------------
A centre line is built from per-segment curvatures ``(k₁, k₂)`` and lengths ``ds`` with the
Bishop (rotation-minimising) frame ``(T, N₁, N₂)``:
``T' = k₁N₁ + k₂N₂``, ``N₁' = -k₁T + τN₂``, ``N₂' = -k₂T - τN₁`` (``τ = 0``: rotation
minimising; an optional twist rate ``τ`` is accepted). For constant curvature over a segment
this is a rigid rotation with body angular velocity ``ω = (τ, -k₂, k₁)``, integrated exactly:
``R ← R·exp(ds[ω]ₓ)``, ``x ← x + ds·R·V(ds ω)·e₁`` with
``V(φ) = I + (1-cos θ)/θ²·[φ]ₓ + (θ - sin θ)/θ³·[φ]ₓ²``, ``θ = |φ|``. **Every curve starts
at the origin with tangent +x and in-plane normal +y** (the frame of its first point: the
first end is the clamped reference end), so translations never matter (LaDEEP uses point
differences) and the springback displacement is largest at the tail (LaDEEP's TE metric).

Material (:func:`return_map`)
-----------------------------
One-dimensional rate-independent elastoplasticity with isotropic hardening at every section
integration point, state ``(εp, α)`` (plastic strain, accumulated plastic strain):
trial stress ``σtr = E(ε - εp)``, yield function ``f = |σtr| - σf(α)``; if ``f > 0`` solve
``|σtr| - EΔγ - σf(α + Δγ) = 0`` (Newton from ``Δγ = 0``, monotone since ``σf`` is concave),
``σ = σtr - sign(σtr)·EΔγ``, ``εp += sign(σtr)Δγ``, ``α += Δγ``; consistent tangent
``Eₜ = E·H/(E + H)``, ``H = σf'(α)``. Flow stress laws:
``linear``: ``σf = σy + H·α``; ``power`` (Swift, continuous at yield):
``σf = σy·(1 + Eα/σy)ⁿ``. Backward-Euler return mapping is exact for a monotonic strain
increment in 1D, so load steps only matter where the strain path turns.

Section response (:func:`section_response`)
-------------------------------------------
Generalised strains ``e = (ε₀, k₁, k₂)`` (centroidal axial strain and the curvature change
from the initial shape) give the fibre strain ``ε(y, z) = ε₀ - k₁y - k₂z`` (``y, z`` from the
centroid; a positive curvature bends towards ``+y`` / ``+z``, so those fibres shorten).
With ``g = (1, -y, -z)`` the work-conjugate forces are ``F = (N, M₁, M₂) = Σ wᵢσᵢgᵢ`` and the
tangent stiffness ``Kₜ = Σ wᵢEₜ,ᵢ gᵢgᵢᵀ``, a sum over integration cells. The solver uses a
``section_grid`` of cells over the section's bounding box (:func:`section_cells`), each
weighted by its exactly covered area (the sections are unions of axis-aligned boxes), so the
area is exact on any grid and refinement only improves the moments and the elastic–plastic
interface. :func:`section_properties` integrates an arbitrary SDF image instead, with the
covered fraction ``clip(½ - sdf/Δ, 0, 1)`` per pixel (exact for one axis-parallel edge).

Process (per strip element, :func:`solve`)
------------------------------------------
1. **Pre-stretch**: ``ε₀: 0 → ε_pre`` at ``k = 0`` (one exact step); axial force ``N_pre``.
2. **Wrap** onto the mould in ``bend_steps`` increments ``k = (i/n)·(κm - κ0)``, with the
   element at mould position ``s = S·(1 + ε_pre + ε_post)`` (the nominal stretch; choice).
   *High fidelity (tension–bending coupling)*: the jaws hold the tension
   ``T = τ_w·N_pre``, reduced by friction from each end towards the middle (capstan law)
   ``T(S) = τ_w·N_pre·exp(-μ·θ(S))``, ``θ(S)`` the wrap angle ``∫|κm|ds`` to the nearer end;
   at every increment ``ε₀`` is solved so that ``N(ε₀, k) = T(S)`` (``newton_iterations``
   Newton steps on the tangent ``Σ wEₜ`` from the previous ``ε₀``, then the state is
   committed). Bending shifts the axial force, so ``ε₀`` rises during the wrap.
   *Low fidelity*: the same force control without friction (uniform tension) by default.
   With ``coupling_low=False`` the low fidelity has **no tension–bending coupling**: ``ε₀``
   stays at ``ε_pre`` during the wrap (bending solved as if it did not change the tension),
   and ``τ_w``, ``μ`` have no effect. Choice: the coupled default, because the uncoupled
   model is qualitatively wrong whenever the bending strain exceeds the pre-stretch (the
   inner fibres yield in compression): measured on 2000 default samples its mean LF–HF
   unloaded distance is 1.8× the HF springback (coupled default: 0.44×, springback
   correlation 0.985).
3. **Post-stretch**: ``ε₀ += ε_post`` at fixed curvature (displacement control, one step).
4. **Springback**: elastic unloading ``Δe = -K_el⁻¹F`` with ``K_el = E·Σ wggᵀ`` brings
   ``N, M₁, M₂`` to zero (:func:`springback`; no reverse yielding, as in the brief).

The **loaded** centre line integrates the mould curvature ``κm(s)`` over segment lengths
``dS·(1 + ε₀)``: it lies on the mould up to the difference between the computed and the
nominal axial strain (a shift along the mould of a fraction of a percent). The **unloaded**
one integrates ``κ0 + Δk_perm`` over ``dS·(1 + ε₀,perm)``, with the permanent changes
``Δk_perm = (κm - κ0) + Δk`` and ``ε₀,perm = ε₀ + Δε₀``. Element results (at element
midpoints) are interpolated linearly to the ``P - 1`` output segments, so every curve is
integrated on the same grid: a purely elastic strip returns exactly to its initial shape.

Fidelities
----------
``high``: ``elements_high`` elements, a ``section_grid_high`` integration grid,
``bend_steps_high`` wrap increments, the configured hardening law, tension–bending coupling
and friction. ``low``: ``elements_low`` elements, a ``section_grid_low`` grid,
``bend_steps_low`` increments, a power law replaced by the least-squares linear fit over
``α ∈ [0, fit_strain]`` (:func:`fit_linear_hardening`), no friction, and coupling only if
``coupling_low`` (default ``True``, see above). Both
solve the same sampled inputs in :func:`generate_pair`.

The six process parameters (``params[:, i]``, physical units)
-------------------------------------------------------------
0. ``pre_stretch``: axial strain of the pre-stretch (–).
1. ``post_stretch``: additional axial strain of the post-stretch (–).
2. ``wrap_tension``: jaw tension during the wrap over the pre-stretch force, ``τ_w`` (–).
3. ``friction``: strip–mould Coulomb friction coefficient ``μ`` (–).
4. ``yield_stress``: initial yield stress ``σy`` (MPa).
5. ``youngs_modulus``: ``E`` (GPa; MPa elsewhere).

Typical magnitudes with the defaults (2000 samples, :func:`summarize`): mean loaded-to-unloaded
point distance 2.3 mm (median 1.8, 90th percentile 2.9), tail distance 5.6 mm, on strips
400–800 mm long; it grows with yield stress and mould curvature and shrinks with the stretch.
The default high fidelity is within ~4% (of the springback) of a 4× finer solution.

Example::

    import jax
    from jaxpapers.physics.generators import stretch_bending as sb

    data = sb.generate(jax.random.key(0), 16)
    data["unloaded"].shape          # (16, 301, 3)
    low, high = sb.generate_pair(jax.random.key(1), 16)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SECTION_TYPES = ("rectangle", "l", "t", "channel", "hollow_box")
FIDELITIES = ("low", "high")
HARDENING_LAWS = ("linear", "power")
PARAM_NAMES = (
    "pre_stretch",
    "post_stretch",
    "wrap_tension",
    "friction",
    "yield_stress",
    "youngs_modulus",
)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Everything the generator samples from and how finely it solves.

    Ranges are ``(low, high)`` and sampled uniformly per sample; set ``low == high`` to fix a
    quantity. Lengths in mm, stresses in MPa.
    """

    num_points: int = 301
    section_shape: tuple[int, int] = (64, 32)
    section_extent: tuple[float, float] = (40.0, 20.0)
    fidelity: str = "high"
    # material (aluminium-alloy-like defaults)
    youngs_modulus: tuple[float, float] = (68e3, 74e3)
    yield_stress: tuple[float, float] = (200.0, 400.0)
    hardening: str = "power"
    hardening_exponent: float = 0.12
    hardening_modulus: float = 1000.0
    fit_strain: float = 0.05
    # geometry
    strip_length: tuple[float, float] = (400.0, 800.0)
    imperfection: float = 2e-5
    section_height: tuple[float, float] = (16.0, 36.0)
    section_width: tuple[float, float] = (8.0, 18.0)
    wall_thickness: tuple[float, float] = (2.0, 5.0)
    mould_radius: tuple[float, float] = (1000.0, 4000.0)
    mould_variation: float = 0.5
    out_of_plane: float = 0.15
    mould_modes: int = 3
    # process
    pre_stretch: tuple[float, float] = (0.0, 0.03)
    post_stretch: tuple[float, float] = (0.0, 0.015)
    wrap_tension: tuple[float, float] = (0.95, 1.1)
    friction: tuple[float, float] = (0.0, 0.2)
    # discretisation per fidelity
    elements_high: int = 24
    elements_low: int = 8
    section_grid_high: tuple[int, int] = (16, 8)
    section_grid_low: tuple[int, int] = (6, 3)
    bend_steps_high: int = 8
    bend_steps_low: int = 2
    newton_iterations: int = 2
    coupling_low: bool = True
    chunk_size: int = 64

    def __post_init__(self):
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {FIDELITIES}, got {self.fidelity!r}")
        if self.hardening not in HARDENING_LAWS:
            raise ValueError(f"hardening must be one of {HARDENING_LAWS}, got {self.hardening!r}")
        if self.num_points < 3:
            raise ValueError(f"num_points must be >= 3, got {self.num_points}")
        for name in ("section_shape", "section_grid_high", "section_grid_low"):
            shape = getattr(self, name)
            if len(shape) != 2 or min(shape) < 2:
                raise ValueError(f"{name} must be two ints >= 2, got {shape}")
        for name in ("elements_high", "elements_low", "bend_steps_high", "bend_steps_low"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "youngs_modulus",
            "yield_stress",
            "strip_length",
            "section_height",
            "section_width",
            "wall_thickness",
            "mould_radius",
            "pre_stretch",
            "post_stretch",
            "wrap_tension",
            "friction",
        ):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} range must have low <= high, got {(lo, hi)}")
        if self.youngs_modulus[0] <= 0 or self.yield_stress[0] <= 0:
            raise ValueError("youngs_modulus and yield_stress must be positive")
        if self.wall_thickness[0] <= 0 or self.mould_radius[0] <= 0:
            raise ValueError("wall_thickness and mould_radius must be positive")
        if self.section_height[1] > self.section_extent[0] or (
            self.section_width[1] > self.section_extent[1]
        ):
            raise ValueError(
                f"sections up to {self.section_height[1]}x{self.section_width[1]} mm do not fit "
                f"the image extent {self.section_extent}"
            )

    def discretisation(self, fidelity: str | None = None) -> tuple[int, tuple[int, int], int]:
        """``(elements, section_grid, bend_steps)`` for ``fidelity`` (default: the config's)."""
        fidelity = self.fidelity if fidelity is None else fidelity
        if fidelity == "high":
            return self.elements_high, self.section_grid_high, self.bend_steps_high
        return self.elements_low, self.section_grid_low, self.bend_steps_low


class Material(NamedTuple):
    """Elastic–plastic material; fields are scalars or arrays broadcasting together."""

    youngs_modulus: jax.Array
    yield_stress: jax.Array
    hardening_modulus: jax.Array  # H of the linear law (MPa)
    hardening_exponent: jax.Array  # n of the power law


# --------------------------------------------------------------------------------------
# Cross-sections
# --------------------------------------------------------------------------------------


def _grid(shape: tuple[int, int], extent: tuple[float, float]):
    """Cell-centre coordinates ``(y, z)`` of an ``shape`` grid over ``extent`` mm."""
    (h, w), (ly, lz) = shape, extent
    y = -ly / 2 + (jnp.arange(h) + 0.5) * (ly / h)
    z = -lz / 2 + (jnp.arange(w) + 0.5) * (lz / w)
    return jnp.meshgrid(y, z, indexing="ij")


def _box_sdf(y, z, cy, cz, hy, hz):
    qy = jnp.abs(y - cy) - hy
    qz = jnp.abs(z - cz) - hz
    outside = jnp.sqrt(jnp.maximum(qy, 0.0) ** 2 + jnp.maximum(qz, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(qy, qz), 0.0)


def _section_boxes(section_type, dims):
    """Axis-aligned boxes ``(cy, cz, hy, hz)`` describing a section.

    Returns ``(sdf_boxes (3, 4), cover_boxes (4, 4))``: overlapping boxes whose union gives a
    clean SDF (the hollow box's hole is handled apart), and disjoint boxes (possibly empty)
    whose areas add up to the exact section, for exact cell coverage.
    """
    h, b, t = dims[0], dims[1], dims[2]
    kind = jnp.asarray(section_type)
    zero = 0.0 * h
    full = (zero, zero, h / 2, b / 2)
    empty = (zero, zero, zero, zero)
    web_left = (zero, -b / 2 + t / 2, h / 2, t / 2)
    web_mid = (zero, zero, h / 2, t / 2)
    bottom = (-h / 2 + t / 2, zero, t / 2, b / 2)
    top = (h / 2 - t / 2, zero, t / 2, b / 2)
    sdf_table = [
        (full, full, full),  # rectangle
        (web_left, bottom, bottom),  # l
        (top, web_mid, web_mid),  # t
        (web_left, bottom, top),  # channel
        (full, full, full),  # hollow_box (outer; hole below)
    ]
    bottom_r = (-h / 2 + t / 2, t / 2, t / 2, (b - t) / 2)
    top_r = (h / 2 - t / 2, t / 2, t / 2, (b - t) / 2)
    cover_table = [
        (full, empty, empty, empty),
        (web_left, bottom_r, empty, empty),
        (top, (-t / 2, zero, (h - t) / 2, t / 2), empty, empty),
        (web_left, bottom_r, top_r, empty),
        (
            web_left,
            (zero, b / 2 - t / 2, h / 2, t / 2),
            (h / 2 - t / 2, zero, t / 2, b / 2 - t),
            (-h / 2 + t / 2, zero, t / 2, b / 2 - t),
        ),
    ]

    def pick(table):
        arr = jnp.stack([jnp.stack([jnp.stack(box) for box in row]) for row in table])
        return arr[kind]

    return pick(sdf_table), pick(cover_table)


@functools.partial(jax.jit, static_argnames=("shape", "extent"))
def section_sdf(
    section_type,
    dims,
    shape: tuple[int, int] = (64, 32),
    extent: tuple[float, float] = (40.0, 20.0),
) -> jax.Array:
    """Signed distance (mm, negative inside) of a section on a ``shape`` pixel grid.

    Args:
      section_type: int index into :data:`SECTION_TYPES` (may be traced).
      dims: ``(h, b, t)``: height along ``y`` (image rows), width along ``z`` (columns), wall
        thickness (ignored for ``rectangle``), mm.
      shape: ``(H, W)`` pixels; extent: ``(Y, Z)`` mm covered by the image.

    Example: ``section_sdf(0, (20., 10., 2.))`` is a solid 20×10 mm bar; its pixels with
    ``sdf < 0`` cover 200 mm².
    """
    dims = jnp.asarray(dims, jnp.float32)
    y, z = _grid(shape, extent)
    boxes, _ = _section_boxes(section_type, dims)
    sdf = jnp.min(jnp.stack([_box_sdf(y, z, *boxes[i]) for i in range(3)]), 0)
    h, b, t = dims[0], dims[1], dims[2]
    hole = _box_sdf(y, z, 0.0, 0.0, h / 2 - t, b / 2 - t)
    return jnp.where(jnp.asarray(section_type) == 4, jnp.maximum(sdf, -hole), sdf)


@functools.partial(jax.jit, static_argnames=("grid",))
def section_cells(section_type, dims, grid: tuple[int, int] = (24, 12)):
    """Integration cells of a section: a ``grid`` of cells over its bounding box.

    Each cell's weight is its area covered by the section, computed exactly from the
    section's disjoint boxes (overlap length in ``y`` × in ``z``); ``y, z`` are cell centres
    measured from the section's centroid. Returns flat ``(y, z, w)``. Refining ``grid`` only
    refines the midpoint rule for the moments (the area is exact on any grid).
    """
    dims = jnp.asarray(dims, jnp.float32)
    h, b = dims[0], dims[1]
    ny, nz = grid
    dy, dz = h / ny, b / nz
    y0 = -h / 2 + dy * jnp.arange(ny, dtype=jnp.float32)
    z0 = -b / 2 + dz * jnp.arange(nz, dtype=jnp.float32)
    _, boxes = _section_boxes(section_type, dims)

    def overlap(lo, width, c, half):
        return jnp.clip(jnp.minimum(lo + width, c + half) - jnp.maximum(lo, c - half), 0.0)

    w = 0.0
    for i in range(4):
        cy, cz, hy, hz = boxes[i]
        w = w + overlap(y0, dy, cy, hy)[:, None] * overlap(z0, dz, cz, hz)[None, :]
    y, z = jnp.meshgrid(y0 + dy / 2, z0 + dz / 2, indexing="ij")
    area = w.sum()
    yc, zc = (w * y).sum() / area, (w * z).sum() / area
    return (y - yc).ravel(), (z - zc).ravel(), w.ravel()


def coverage(sdf: jax.Array, pixel_size) -> jax.Array:
    """Fraction of each pixel inside the section, ``clip(½ - sdf/Δ, 0, 1)``, ``Δ`` = pixel size.

    Exact for one straight, axis-parallel edge crossing the pixel; a thin wall narrower than a
    pixel is over-counted (the coarse-grid error of the low fidelity).
    """
    return jnp.clip(0.5 - sdf / jnp.asarray(pixel_size), 0.0, 1.0)


def section_properties(
    sdf: jax.Array, extent: tuple[float, float] = (40.0, 20.0)
) -> dict[str, jax.Array]:
    """Area, centroid and centroidal second moments of the section in an SDF image.

    Integrates over the pixels with the covered fraction of :func:`coverage` (pixel size
    ``extent / shape``; the smaller side is used for the fraction). Returns ``area`` (mm²),
    ``centroid`` ``(y_c, z_c)`` (mm), ``i_yy = ∫(y-y_c)²dA``, ``i_zz = ∫(z-z_c)²dA``,
    ``i_yz = ∫(y-y_c)(z-z_c)dA`` (mm⁴).

    Example: a solid ``b × h`` rectangle gives ``area ≈ b·h`` and ``i_yy ≈ b·h³/12``.
    """
    sdf = jnp.asarray(sdf)
    if sdf.ndim != 2:
        raise ValueError(f"sdf must be an (H, W) image, got shape {sdf.shape}")
    return _section_properties(sdf, tuple(extent))


@functools.partial(jax.jit, static_argnames=("extent",))
def _section_properties(sdf, extent):
    dy, dz = extent[0] / sdf.shape[0], extent[1] / sdf.shape[1]
    y, z = _grid(sdf.shape, extent)
    w = coverage(sdf, min(dy, dz)) * (dy * dz)
    area = w.sum()
    yc, zc = (w * y).sum() / area, (w * z).sum() / area
    yy, zz = y - yc, z - zc
    return {
        "area": area,
        "centroid": jnp.stack([yc, zc]),
        "i_yy": (w * yy**2).sum(),
        "i_zz": (w * zz**2).sum(),
        "i_yz": (w * yy * zz).sum(),
    }


# --------------------------------------------------------------------------------------
# Material
# --------------------------------------------------------------------------------------


def flow_stress(alpha, material: Material, law: str = "power"):
    """Flow stress ``σf(α)`` and its slope ``H(α)`` for the hardening ``law``."""
    e, sy = material.youngs_modulus, material.yield_stress
    if law == "linear":
        h = material.hardening_modulus
        return sy + h * alpha, h + 0.0 * alpha
    if law == "power":
        n = material.hardening_exponent
        base = 1.0 + e * alpha / sy
        sig = sy * base**n
        return sig, n * e * sig / (sy * base)
    raise ValueError(f"law must be one of {HARDENING_LAWS}, got {law!r}")


@functools.partial(jax.jit, static_argnames=("law", "iterations"))
def return_map(
    strain, plastic_strain, alpha, material: Material, law: str = "power", iterations: int = 2
):
    """1D elastic–plastic return mapping with isotropic hardening.

    Args:
      strain: total strain; plastic_strain, alpha: the committed history (same shape).
      material: :class:`Material`; law: ``"linear"`` or ``"power"``; iterations: local Newton
        steps for the power law (the linear law is solved in closed form).

    Returns ``(stress, plastic_strain, alpha, tangent)``, the tangent being consistent.

    Example: with ``E = 70e3``, ``σy = 280``, ``H = 700`` (linear), a strain of 0.01 from a
    virgin state gives ``σ = 280 + 70e3·700/70.7e3·(0.01 - 0.004) ≈ 284.16`` MPa.
    """
    e = material.youngs_modulus
    trial = e * (strain - plastic_strain)
    sig_f, h = flow_stress(alpha, material, law)
    f = jnp.abs(trial) - sig_f
    plastic = f > 0
    if law == "linear":
        dgamma = jnp.maximum(f, 0.0) / (e + h)
    else:
        dgamma = jnp.zeros_like(f)
        for _ in range(iterations):
            dgamma = dgamma + (jnp.abs(trial) - e * dgamma - sig_f) / (e + h)
            sig_f, h = flow_stress(alpha + dgamma, material, law)
        dgamma = jnp.where(plastic, jnp.maximum(dgamma, 0.0), 0.0)
    sign = jnp.sign(trial)
    stress = trial - sign * e * dgamma
    tangent = jnp.where(plastic, e * h / (e + h), e)
    return stress, plastic_strain + sign * dgamma, alpha + dgamma, tangent


@functools.partial(jax.jit, static_argnames=("fit_strain",))
def fit_linear_hardening(material: Material, fit_strain: float = 0.05) -> Material:
    """Least-squares linear hardening fitted to the power law over ``α ∈ [0, fit_strain]``.

    ``H = 3/a³ ∫₀ᵃ α(σf(α) - σy) dα`` (midpoint rule, 64 points); used by the low fidelity.
    """
    a = fit_strain
    alpha = (jnp.arange(64) + 0.5) * (a / 64)
    shape = jnp.shape(material.yield_stress)
    alpha = alpha.reshape((64,) + (1,) * len(shape))
    sig, _ = flow_stress(alpha, material, "power")
    integral = ((sig - material.yield_stress) * alpha).sum(0) * (a / 64)
    return material._replace(hardening_modulus=3.0 * integral / a**3)


# --------------------------------------------------------------------------------------
# Section response and springback
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("law",))
def section_response(
    gen_strain, plastic_strain, alpha, y, z, w, material: Material, law: str = "power"
):
    """Forces ``(N, M₁, M₂)`` and tangent of a section at generalised strain ``(ε₀, k₁, k₂)``.

    Fibre strain ``ε = ε₀ - k₁y - k₂z`` at each point ``(y, z)`` with weight (area) ``w``;
    ``F = Σ wσ(1, -y, -z)``, ``Kₜ = Σ wEₜ ggᵀ``. Returns
    ``(forces (3,), plastic_strain, alpha, tangent (3, 3))`` (the new history).

    Example: an elastic rectangle at ``(0, k, 0)`` gives ``M₁ = E·I_yy·k``.
    """
    g = jnp.stack([jnp.ones_like(y), -y, -z])
    strain = gen_strain[0] - gen_strain[1] * y - gen_strain[2] * z
    stress, plastic_strain, alpha, et = return_map(strain, plastic_strain, alpha, material, law)
    forces = g @ (w * stress)
    tangent = (g * (w * et)) @ g.T
    return forces, plastic_strain, alpha, tangent


def elastic_stiffness(y, z, w, youngs_modulus) -> jax.Array:
    """Elastic section stiffness ``K_el = E·Σ w ggᵀ``, ``g = (1, -y, -z)`` (3×3)."""
    g = jnp.stack([jnp.ones_like(y), -y, -z])
    return youngs_modulus * (g * w) @ g.T


@jax.jit
def springback(forces, y, z, w, youngs_modulus) -> jax.Array:
    """Elastic unloading ``Δe = -K_el⁻¹F`` that brings ``N, M₁, M₂`` to zero.

    Returns the generalised strain change ``(Δε₀, Δk₁, Δk₂)``; the recovered curvature is
    ``-Δk``.
    """
    k = elastic_stiffness(y, z, w, youngs_modulus)
    return -jnp.linalg.solve(k, forces)


# --------------------------------------------------------------------------------------
# Centre lines
# --------------------------------------------------------------------------------------


def _hat(v):
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = jnp.zeros_like(x)
    return jnp.stack(
        [jnp.stack([o, -z, y], -1), jnp.stack([z, o, -x], -1), jnp.stack([-y, x, o], -1)], -2
    )


def _rotation_and_v(phi):
    """``exp([φ]ₓ)`` and ``V(φ)`` with series for small angles (float32-safe)."""
    theta2 = (phi**2).sum(-1)
    small = theta2 < 1e-4
    t2 = jnp.where(small, 1.0, theta2)
    theta = jnp.sqrt(t2)
    a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / t2)
    c = jnp.where(small, 1.0 / 6.0 - theta2 / 120.0, (theta - jnp.sin(theta)) / (t2 * theta))
    k = _hat(phi)
    k2 = k @ k
    eye = jnp.eye(3, dtype=phi.dtype)
    rot = eye + a[..., None, None] * k + b[..., None, None] * k2
    v = eye + b[..., None, None] * k + c[..., None, None] * k2
    return rot, v


@jax.jit
def integrate_centreline(curvature, ds, twist=None) -> jax.Array:
    """Centre line from per-segment curvature in a rotation-minimising (Bishop) frame.

    Args:
      curvature: ``(n, 2)`` ``(k₁, k₂)`` (1/mm) along ``N₁``, ``N₂``, constant per segment.
      ds: ``(n,)`` segment lengths (mm) or a scalar.
      twist: optional ``(n,)`` frame twist rate ``τ`` (0: rotation minimising).

    Returns ``(n + 1, 3)`` points, starting at the origin with tangent ``+x``, ``N₁ = +y``,
    ``N₂ = +z`` (exact for piecewise-constant curvature).

    Example: ``k₁ = 1/R`` over a length ``πR`` draws a half circle ending at ``(0, 2R, 0)``.
    """
    curvature = jnp.asarray(curvature)
    if curvature.ndim != 2 or curvature.shape[-1] != 2:
        raise ValueError(f"curvature must be (n, 2), got {curvature.shape}")
    n = curvature.shape[0]
    ds = jnp.broadcast_to(jnp.asarray(ds, curvature.dtype), (n,))
    tau = jnp.zeros((n,), curvature.dtype) if twist is None else jnp.asarray(twist)
    omega = jnp.stack([tau, -curvature[:, 1], curvature[:, 0]], -1) * ds[:, None]
    rot, v = _rotation_and_v(omega)
    steps = v[:, :, 0] * ds[:, None]  # V·e₁·ds in the segment's start frame

    def body(frame, inp):
        r, step = inp
        return frame @ r, frame @ step

    _, dx = jax.lax.scan(body, jnp.eye(3, dtype=curvature.dtype), (rot, steps))
    zero = jnp.zeros((1, 3), curvature.dtype)
    return jnp.concatenate([zero, jnp.cumsum(dx, 0)], 0)


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


def _uniform(key, shape, bounds):
    lo, hi = bounds
    return jax.random.uniform(key, shape, jnp.float32, lo, hi)


def _smooth_profile(key, num_samples, modes):
    """Random Fourier coefficients ``(B, modes)`` (∝ 1/j, Σ|c| ≤ 1) and phases."""
    kc, kp = jax.random.split(key)
    j = jnp.arange(1, modes + 1, dtype=jnp.float32)
    c = jax.random.normal(kc, (num_samples, modes)) / j
    c = c / jnp.maximum(jnp.abs(c).sum(-1, keepdims=True), 1.0)
    phase = jax.random.uniform(kp, (num_samples, modes), jnp.float32, 0.0, 2 * jnp.pi)
    return c, phase


def _eval_profile(c, phase, s, length):
    """``Σⱼ cⱼ cos(2πjs/length + φⱼ)`` at ``s`` (``(..., m)`` coefficients, ``(..., n)`` s)."""
    j = jnp.arange(1, c.shape[-1] + 1, dtype=jnp.float32)
    arg = 2 * jnp.pi * j * s[..., None] / length[..., None, None] + phase[..., None, :]
    return (c[..., None, :] * jnp.cos(arg)).sum(-1)


@functools.partial(jax.jit, static_argnums=(1, 2))
def sample_inputs(key, num_samples: int, config: GeneratorConfig = GeneratorConfig()) -> dict:
    """Draw the random inputs of ``num_samples`` samples (fidelity-independent).

    Returns a dict of JAX arrays: per-sample scalars and the Fourier descriptions of the mould
    and imperfection profiles (what :func:`solve` needs).
    """
    keys = jax.random.split(key, 16)
    b, cfg = num_samples, config
    out = {
        "section_type": jax.random.randint(keys[0], (b,), 0, len(SECTION_TYPES)),
        "height": _uniform(keys[1], (b,), cfg.section_height),
        "width": _uniform(keys[2], (b,), cfg.section_width),
        "thickness": _uniform(keys[3], (b,), cfg.wall_thickness),
        "length": _uniform(keys[4], (b,), cfg.strip_length),
        "radius": _uniform(keys[5], (b,), cfg.mould_radius),
        "pre_stretch": _uniform(keys[6], (b,), cfg.pre_stretch),
        "post_stretch": _uniform(keys[7], (b,), cfg.post_stretch),
        "wrap_tension": _uniform(keys[8], (b,), cfg.wrap_tension),
        "friction": _uniform(keys[9], (b,), cfg.friction),
        "yield_stress": _uniform(keys[10], (b,), cfg.yield_stress),
        "youngs_modulus": _uniform(keys[11], (b,), cfg.youngs_modulus),
    }
    # keep walls thinner than a third of the smaller outer dimension
    out["thickness"] = jnp.minimum(out["thickness"], jnp.minimum(out["height"], out["width"]) / 3)
    out["mould_c1"], out["mould_p1"] = _smooth_profile(keys[12], b, cfg.mould_modes)
    out["mould_c2"], out["mould_p2"] = _smooth_profile(keys[13], b, cfg.mould_modes)
    out["imp_c"], out["imp_p"] = _smooth_profile(keys[14], b, 3)
    out["imp_c2"], out["imp_p2"] = _smooth_profile(keys[15], b, 3)
    return out


# --------------------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------------------


def _mould_length(inp):
    return inp["length"] * (1.0 + inp["pre_stretch"] + inp["post_stretch"]) * 1.1


def _mould_curvature(inp, s, cfg):
    """Mould curvature ``(…, n, 2)`` at mould arc lengths ``s`` (per sample, batched)."""
    lm = _mould_length(inp)
    k = 1.0 / inp["radius"][..., None]
    k1 = k * (1.0 + cfg.mould_variation * _eval_profile(inp["mould_c1"], inp["mould_p1"], s, lm))
    k2 = (
        k
        * cfg.out_of_plane
        * _eval_profile(inp["mould_c2"], inp["mould_p2"], s + 0.25 * lm[..., None], lm)
    )
    return jnp.stack([k1, k2], -1)


def _initial_curvature(inp, s, cfg):
    """Imperfection curvature ``(…, n, 2)`` at material arc lengths ``s``."""
    ln = inp["length"]
    k1 = cfg.imperfection * _eval_profile(inp["imp_c"], inp["imp_p"], s, ln)
    k2 = cfg.imperfection * _eval_profile(inp["imp_c2"], inp["imp_p2"], s, ln)
    return jnp.stack([k1, k2], -1)


def element_response(
    dk,
    tension,
    eps_pre,
    eps_post,
    y,
    z,
    w,
    material: Material,
    law: str = "power",
    coupled: bool = True,
    steps: int = 8,
    newton: int = 2,
):
    """The load path of one strip element (pre-stretch, wrap, post-stretch, springback).

    Args:
      dk: ``(2,)`` curvature change imposed by the wrap (mould minus initial curvature).
      tension: axial force held during the wrap when ``coupled`` (N).
      eps_pre, eps_post: pre- and post-stretch strains. y, z, w: integration cells
        (:func:`section_cells`). material, law: see :func:`return_map`.
      coupled: solve ``ε₀`` for ``N = tension`` at each of the ``steps`` wrap increments
        (``newton`` Newton steps each) or hold ``ε₀ = eps_pre`` (no tension–bending coupling).

    Returns ``(ε₀ loaded, ε₀ permanent, Δk permanent (2,))``.

    Example: a purely elastic element returns ``ε₀ perm = 0`` and ``Δk perm = 0``.
    """
    zeros = jnp.zeros_like(y)
    e_pre = jnp.stack([eps_pre, 0.0, 0.0])
    _, ep, al, _ = section_response(e_pre, zeros, zeros, y, z, w, material, law)

    def bend(carry, i):
        eps0, step, ep, al = carry
        k = dk * (i / steps)
        start = eps0
        if coupled:
            eps0 = eps0 + step  # linear predictor from the previous increment
            for _ in range(newton):
                f, _, _, kt = section_response(
                    jnp.concatenate([eps0[None], k]), ep, al, y, z, w, material, law
                )
                eps0 = eps0 - (f[0] - tension) / kt[0, 0]
        _, ep, al, _ = section_response(
            jnp.concatenate([eps0[None], k]), ep, al, y, z, w, material, law
        )
        return (eps0, eps0 - start, ep, al), None

    idx = jnp.arange(1, steps + 1, dtype=jnp.float32)
    (eps0, _, ep, al), _ = jax.lax.scan(bend, (eps_pre, 0.0 * eps_pre, ep, al), idx)
    e_load = jnp.concatenate([(eps0 + eps_post)[None], dk])
    forces, _, _, _ = section_response(e_load, ep, al, y, z, w, material, law)
    de = springback(forces, y, z, w, material.youngs_modulus)
    perm = e_load + de
    return e_load[0], perm[0], perm[1:]


def _interp_elements(s_out, s_el, values):
    """Linear interpolation of element values ``(E, …)`` to ``s_out`` (held at the ends)."""
    return jax.vmap(lambda v: jnp.interp(s_out, s_el, v), in_axes=-1, out_axes=-1)(values)


def _solve_one(inp, cfg: GeneratorConfig, fidelity: str):
    """Solve one sample (unbatched ``inp``)."""
    n_el, grid, steps = cfg.discretisation(fidelity)
    law = cfg.hardening
    material = Material(
        inp["youngs_modulus"],
        inp["yield_stress"],
        jnp.float32(cfg.hardening_modulus),
        jnp.float32(cfg.hardening_exponent),
    )
    if fidelity == "low" and law == "power":
        material = fit_linear_hardening(material, cfg.fit_strain)
        law = "linear"
    coupled = fidelity == "high" or cfg.coupling_low
    dims = jnp.stack([inp["height"], inp["width"], inp["thickness"]])
    y, z, w = section_cells(inp["section_type"], dims, grid)

    length, p = inp["length"], cfg.num_points
    nominal = 1.0 + inp["pre_stretch"] + inp["post_stretch"]
    # elements (material coordinates) and their mould positions
    s_el = (jnp.arange(n_el, dtype=jnp.float32) + 0.5) * (length / n_el)
    dk_el = _mould_curvature(inp, s_el * nominal, cfg) - _initial_curvature(inp, s_el, cfg)
    # wrap angle to the nearer end, on the fine output grid, for the capstan law
    ds_out = length / (p - 1)
    s_seg = (jnp.arange(p - 1, dtype=jnp.float32) + 0.5) * ds_out
    km_seg = _mould_curvature(inp, s_seg * nominal, cfg)
    turn = jnp.linalg.norm(km_seg, axis=-1) * ds_out * nominal
    theta = jnp.cumsum(turn) - 0.5 * turn
    theta = jnp.minimum(theta, turn.sum() - theta)
    theta_el = jnp.interp(s_el, s_seg, theta)
    n_pre, _, _, _ = section_response(
        jnp.stack([inp["pre_stretch"], 0.0, 0.0]), y * 0, y * 0, y, z, w, material, law
    )
    friction = inp["friction"] if fidelity == "high" else 0.0
    tension = inp["wrap_tension"] * n_pre[0] * jnp.exp(-friction * theta_el)

    path = functools.partial(
        element_response,
        eps_pre=inp["pre_stretch"],
        eps_post=inp["post_stretch"],
        y=y,
        z=z,
        w=w,
        material=material,
        law=law,
        coupled=coupled,
        steps=steps,
        newton=cfg.newton_iterations,
    )
    eps_load, eps_perm, dk_perm = jax.vmap(path)(dk_el, tension)

    # curves on the common output grid
    k0_seg = _initial_curvature(inp, s_seg, cfg)
    eps_load_seg = jnp.interp(s_seg, s_el, eps_load)
    eps_perm_seg = jnp.interp(s_seg, s_el, eps_perm)
    dk_perm_seg = _interp_elements(s_seg, s_el, dk_perm)
    strip = integrate_centreline(k0_seg, ds_out)
    loaded = integrate_centreline(km_seg, ds_out * (1.0 + eps_load_seg))
    unloaded = integrate_centreline(k0_seg + dk_perm_seg, ds_out * (1.0 + eps_perm_seg))
    lm = _mould_length(inp)
    ds_m = lm / (p - 1)
    sm_seg = (jnp.arange(p - 1, dtype=jnp.float32) + 0.5) * ds_m
    mould = integrate_centreline(_mould_curvature(inp, sm_seg, cfg), ds_m)
    return {"strip": strip, "mould": mould, "loaded": loaded, "unloaded": unloaded}


@functools.partial(jax.jit, static_argnums=(1, 2))
def solve(inputs: dict, config: GeneratorConfig = GeneratorConfig(), fidelity: str | None = None):
    """Solve sampled ``inputs`` (from :func:`sample_inputs`) at ``fidelity``; JAX arrays out.

    The per-sample solve is ``vmap``-ed and mapped over chunks of ``config.chunk_size``
    samples (bounded memory).
    """
    fidelity = config.fidelity if fidelity is None else fidelity
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")
    one = jax.vmap(lambda x: _solve_one(x, config, fidelity))
    b = inputs["length"].shape[0]
    chunk = max(1, config.chunk_size)
    if b <= chunk:
        curves = one(inputs)
    else:  # pad to whole chunks (repeating the last sample), map over chunks, drop the padding
        n = -(-b // chunk)

        def split(x):
            x = jnp.concatenate([x, jnp.repeat(x[-1:], n * chunk - b, 0)], 0)
            return x.reshape((n, chunk) + x.shape[1:])

        curves = jax.lax.map(one, jax.tree.map(split, inputs))
        curves = jax.tree.map(lambda x: x.reshape((n * chunk,) + x.shape[2:])[:b], curves)
    dims = jnp.stack([inputs["height"], inputs["width"], inputs["thickness"]], -1)
    section = jax.vmap(lambda t, d: section_sdf(t, d, config.section_shape, config.section_extent))(
        inputs["section_type"], dims
    )
    params = jnp.stack(
        [
            inputs["pre_stretch"],
            inputs["post_stretch"],
            inputs["wrap_tension"],
            inputs["friction"],
            inputs["yield_stress"],
            inputs["youngs_modulus"] / 1e3,
        ],
        -1,
    )
    return {
        **curves,
        "section": section,
        "params": params,
        "section_type": inputs["section_type"].astype(jnp.int32),
    }


def _to_numpy(out: dict) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v, np.int32 if k == "section_type" else np.float32) for k, v in out.items()
    }


def _check(num_samples, config):
    if not isinstance(config, GeneratorConfig):
        raise ValueError(f"config must be a GeneratorConfig, got {type(config).__name__}")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def generate(
    key, num_samples: int, config: GeneratorConfig = GeneratorConfig()
) -> dict[str, np.ndarray]:
    """``num_samples`` stretch-bending samples at ``config.fidelity`` (float32 NumPy arrays).

    Keys: ``strip``, ``mould``, ``loaded``, ``unloaded`` ``(B, P, 3)`` (mm, first point at the
    origin, initial tangent +x); ``section`` ``(B, H, W)`` (SDF in mm, negative inside);
    ``params`` ``(B, 6)`` (:data:`PARAM_NAMES`); ``section_type`` ``(B,)`` int32.
    Deterministic for a key.
    """
    _check(num_samples, config)
    inputs = sample_inputs(key, int(num_samples), config)
    return _to_numpy(solve(inputs, config, config.fidelity))


def generate_pair(
    key, num_samples: int, config: GeneratorConfig = GeneratorConfig()
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The same sampled inputs solved at low and at high fidelity: ``(low, high)``.

    ``strip``, ``mould``, ``section``, ``params`` and ``section_type`` are identical in both;
    ``loaded`` and ``unloaded`` differ by the fidelity gap. (An LF training set and an HF
    training set are drawn with :func:`generate` and different keys.)
    """
    _check(num_samples, config)
    inputs = sample_inputs(key, int(num_samples), config)
    low = _to_numpy(solve(inputs, config, "low"))
    high = _to_numpy(solve(inputs, config, "high"))
    return low, high


def summarize(low: dict | None = None, high: dict | None = None) -> dict[str, float]:
    """Magnitudes: mean loaded→unloaded point distance (springback), tail distance, and where
    both are given the mean LF–HF unloaded distance relative to the HF springback."""
    out = {}
    for name, d in (("low", low), ("high", high)):
        if d is None:
            continue
        dist = np.linalg.norm(d["unloaded"] - d["loaded"], axis=-1)
        out[f"{name}_springback_mean"] = float(dist.mean())
        out[f"{name}_springback_tail"] = float(dist[:, -1].mean())
    if low is not None and high is not None:
        gap = np.linalg.norm(low["unloaded"] - high["unloaded"], axis=-1).mean()
        out["lf_hf_gap_mean"] = float(gap)
        out["lf_hf_gap_relative"] = float(gap / out["high_springback_mean"])
    return out
