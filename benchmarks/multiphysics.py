"""Multi-solid and fluid–solid family (issue 6): simulators against the surrogates.

Issue 6's benchmark: "simulator seconds per sample vs model inference per sample; training
throughput for both models, beside the reference PyTorch models' shapes where they can be run".
Every entry is timed with :func:`harness.run_interleaved` (one warm-up call each, reported as
``first_call_s``; compilation apart, from :func:`harness.compile_jax`; the 2048^3 float32 matmul
reference of each framework brackets every block of calls, so a reader sees how fast the
machine was meanwhile), so every ratio comes from one process run.

Generators (what "one sample" costs the simulators; sampling the random scene parameters and
the copies to NumPy that ``generate`` adds are not timed — they are not the simulation):

* ``contact_generator`` — :mod:`jaxpapers.physics.generators.contact` on the scenes of
  ``experiments/configs/unisoma.py:default`` (the ``ContactConfig`` that
  ``multisolid._generator_config`` builds from its data block: 2 neo-Hookean blocks of 16x5
  quadrilaterals, a die and one punch, 8 load steps). One call is the generator's jitted
  ``contact._simulate_chunk`` on ``gen_batch`` (32) scenes whose parameters were drawn
  beforehand with ``contact.sample_params`` (key 0): building each scene's problem, the
  quasi-static Newton solves of every load step, the nodal von Mises stress and the rigid
  bodies' trajectories, ``vmap``-ed over the scenes — exactly one of ``simulate``'s chunks
  (``ContactConfig.chunk_size`` is 32 as well), without its host copies. The Newton loop is a
  ``while_loop``, so under ``vmap`` a chunk runs until its slowest scene converges: the
  per-sample time depends on the batch (the generator's chunk of 32 is what the experiment
  pays). The mean Newton iterations per step of the timed scenes are reported.
  Seconds per sample = seconds per call / ``gen_batch``.
* ``fsi_generator`` — :mod:`jaxpapers.physics.generators.fsi` at ``FSIConfig()`` (what
  ``experiments/configs/fisale.py:default`` generates: 160x41 D2Q9 lattice, a 28-segment flag,
  40 lattice steps per recorded frame), one call = the jitted ``fsi._simulate_batch`` of
  ``fsi_trajectories`` (12, the default experiment's 8 + 2 + 2, generated in one ``vmap``)
  trajectories over ``fsi_frames`` (5) recorded frames **with the warm-up removed**
  (``warmup_steps=0``; the per-step cost of the lattice Boltzmann / immersed-boundary step
  does not depend on the flow state). One sample of the Fisale task is a frame pair, i.e. one
  recorded frame, so seconds per sample = seconds per call / (trajectories x frames), which is
  ``frame_every`` = 40 coupled steps. The default generator also simulates 5,000 warm-up steps
  before its 150 recorded frames (11,000 steps for 6,000 recorded): the per-frame cost
  *amortising the warm-up* is the measured one x 11,000 / 6,000 (``amortised_per_sample_s``,
  computed, not timed).

Surrogates, built as the experiments build them (``multisolid.make_model`` from
``experiments/configs/unisoma.py:default``, ``fluidsolid.make_model`` from
``experiments/configs/fisale.py:default``), inputs random normal float32 (numpy seed 0) of
the shapes the default generators give (:func:`contact_scene`, :func:`fsi_shapes`):

* contact (per scene): 2 deformables of 102 nodes with ``[x, y]`` + material ``[log E, ν]``,
  2 rigid bodies of 32 points ``[x, y]``, 2 loads of 32 points ``[x0, y0, xT, yT]``; targets
  ``[Δx, Δy, σ/E]`` per node. Unisoma (emb 128, 32 slices, 8 heads, 2 processors, mlp ratio 4)
  and the implicit baseline (``model.name="transolver"``: emb 128, 4 layers, 8 heads, 32
  slices, mlp ratio 4, over all 332 points with a one-hot object id).
* FSI (per frame): solid 87 points ``[x, y, σ]``, fluid 394 ``[x, y, p, u, v]``, interface 58
  ``[x, y, p]`` (``fsi.point_counts``; the quantities from ``jax.eval_shape`` of the
  generator). Fisale (grids 16² and 8², hidden 64/64, 2 coupling steps, 5/4 neighbours, 8
  heads, mlp ratio 2) and its implicit baseline (emb 64, 4 layers, 8 heads, 32 slices).

* ``unisoma_infer``, ``transolver_contact_infer``, ``fisale_infer``, ``transolver_fsi_infer`` —
  one jitted forward in eval mode on a batch of ``batch`` (32), weights passed as arguments
  (``nnx.split`` state), inputs on the device, the per-object outputs returned.
* ``unisoma_train``, ``transolver_contact_train``, ``fisale_train``, ``transolver_fsi_train`` —
  one call of the library's train step (:func:`jaxpapers.core.train.setup` +
  :func:`~jaxpapers.core.train.make_train_step`, one-device ``("data", "model")`` mesh, state
  donated and carried over from call to call, gradient norm and finiteness flag included) with
  the experiments' losses (:func:`multisolid.longtime_loss`, :func:`fluidsolid.fsi_loss`) and
  optimizer (:func:`multisolid.optimizer`: AdamW with a cosine to lr / 10 over the default
  run's number of steps; Fisale uses the same function) at the default configs' train batch
  (Unisoma 8, Fisale 16; ``train_batch`` overrides both). Each entry cycles through a pool of
  :data:`POOL` batches (a single repeated batch gets memorised; see the CTR suite's notes).
* ``torch_transolver_contact_train`` — **our own** PyTorch port of the implicit baseline
  (:func:`torch_transolver`, written here after :mod:`jaxpapers.physics.implicit` and
  :mod:`jaxpapers.nn.slicing`: the same padding + one-hot concatenation, preprocess FFN,
  placeholder, pre-LN blocks of Physics-Attention and FFN, ``ln_3`` + ``mlp2`` in the last
  block; exact GELU, LayerNorm eps 1e-5), started from the same weights as ours (copied from
  the JAX initialisation, :func:`copy_jax_params`; the parameter counts are checked equal and
  reported), on the same batches, with the same loss (the long-time relative L2 of positions
  plus that of the stress, per deformable) and ``torch.optim.AdamW(lr=3e-4,
  weight_decay=1e-5)`` (constant learning rate: a scheduler's per-step cost is negligible):
  ``zero_grad``, forward, loss, ``backward``, ``step``. Beside ``transolver_contact_train`` at
  the same batch and point count. Only when torch is installed; otherwise the table says so.
  The reference Unisoma and Transolver code is PyTorch on a GPU; their released code is not
  run here (CUDA-oriented, ``torch_geometric`` imports, and no data), so this port stands in
  for "the reference PyTorch model's shape".
* ``torch_unisoma_infer`` — **our own** PyTorch port of Unisoma (:func:`torch_unisoma`, after
  :mod:`jaxpapers.physics.unisoma`: per-object encoders, slice blocks with clamped per-slice
  temperature, contact blocks per pair, interaction allocation, load blocks, de-slicing), with
  our initial weights, forward under ``torch.inference_mode`` at ``batch`` beside
  ``unisoma_infer`` (same inputs; parameter counts reported).

Ratios (``comparisons`` in the JSON; the median per-sample ratio and the quartiles of the
per-round ratios, each round's call times divided by their samples per call):

* ``contact_generator_over_<model>_infer`` for Unisoma and its baseline,
  ``fsi_generator_over_<model>_infer`` for Fisale and its baseline: simulator seconds per
  sample / inference seconds per sample (> 1: the surrogate is faster).
* ``torch_transolver_contact_over_transolver_contact_train`` and
  ``torch_unisoma_over_unisoma_infer``: PyTorch time / ours (> 1: ours is faster), with both
  parameter counts.

Compare the frameworks only from a run whose title reports about 0% CPU use by other
processes (PyTorch's OpenMP threads suffer far more from a busy core than XLA's pool).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks import harness

GENERATORS = ("contact_generator", "fsi_generator")
MODELS = ("unisoma", "transolver_contact", "fisale", "transolver_fsi")
CONTACT_MODELS = ("unisoma", "transolver_contact")
ENTRIES = (
    *GENERATORS,
    *(f"{m}_infer" for m in MODELS),
    *(f"{m}_train" for m in MODELS),
    "torch_transolver_contact_train",
    "torch_unisoma_infer",
)
TORCH_ENTRIES = ("torch_transolver_contact_train", "torch_unisoma_infer")
# model entry -> (experiment, config.model.name)
MODEL_NAMES = {
    "unisoma": ("unisoma", "unisoma"),
    "transolver_contact": ("unisoma", "transolver"),
    "fisale": ("fisale", "fisale"),
    "transolver_fsi": ("fisale", "transolver"),
}
SEED = 0
POOL = 4  # distinct training batches each train entry cycles through
FSI_FRAMES = 5
FSI_TRAJECTORIES = 12  # the default Fisale experiment's 8 + 2 + 2 trajectories, one vmap


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configs and shapes


def experiment_configs() -> dict[str, Any]:
    """The ``default`` variants of ``experiments/configs/{unisoma,fisale}.py``."""
    from experiments.configs import fisale as fisale_config
    from experiments.configs import unisoma as unisoma_config

    return {
        "unisoma": unisoma_config.get_config("default"),
        "fisale": fisale_config.get_config("default"),
    }


def contact_generator_config(cfg):
    """The experiment's ``ContactConfig`` (``multisolid._generator_config`` of ``cfg.data``)."""
    from jaxpapers.physics import multisolid

    return multisolid._generator_config(cfg.data)  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class ContactShapes:
    """Points and feature widths per object of the default multi-solid data."""

    scene: Any  # multisolid.Scene
    deformable_points: int
    rigid_points: int


def contact_scene(gen) -> ContactShapes:
    """The :class:`multisolid.Scene` that ``multisolid.load_raw`` derives for ``gen``.

    Built by hand from the generator config (no simulation): one load per rigid body (the
    rigid body's start and end points), the generator's contact pairs, 2D coordinates, the von
    Mises stress as the one extra field, and ``[log E, ν]`` per deformable node when this
    version of :class:`multisolid.Scene` has material inputs.
    """
    from jaxpapers.physics import multisolid
    from jaxpapers.physics.generators import contact

    kwargs = dict(
        num_deformables=gen.num_deformables,
        num_rigids=gen.num_rigids,
        num_loads=gen.num_rigids,
        contact_pairs=tuple(tuple(int(i) for i in p) for p in contact.contact_pairs(gen)),
        coord_dim=2,
        fields=("stress",),
    )
    if "material_dim" in {f.name for f in dataclasses.fields(multisolid.Scene)}:
        kwargs["material_dim"] = 2  # [log E, ν]
    return ContactShapes(multisolid.Scene(**kwargs), gen.num_nodes, gen.rigid_points)


def contact_batch(shapes: ContactShapes, batch: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Random normal float32 model arrays of one batch (the names ``multisolid.call`` reads)."""
    rng = np.random.default_rng(seed)
    s = shapes.scene
    c = s.coord_dim

    def normal(*shape):
        return rng.standard_normal((batch, *shape), dtype=np.float32)

    out = {}
    for k in range(s.num_loads):
        out[f"load_{k}"] = normal(shapes.rigid_points, 2 * c)
    for j in range(s.num_rigids):
        out[f"rigid_{j}"] = normal(shapes.rigid_points, c)
    for i in range(s.num_deformables):
        out[f"deformable_{i}"] = normal(shapes.deformable_points, c)
        if getattr(s, "material_dim", 0):
            out[f"material_{i}"] = normal(shapes.deformable_points, s.material_dim)
        out[f"target_{i}"] = normal(shapes.deformable_points, c + len(s.fields))
    return out


def fsi_bench_config(frames: int = FSI_FRAMES):
    """``FSIConfig()`` without the warm-up and with ``frames`` recorded frames."""
    from jaxpapers.physics.generators import fsi

    return dataclasses.replace(fsi.FSIConfig(), warmup_steps=0, num_frames=frames)


def fsi_warmup_factor(config) -> float:
    """Steps simulated per recorded frame (warm-up included) / steps per frame."""
    from jaxpapers.physics.generators import fsi

    frames = fsi.warmup_frames(config) + config.num_frames
    return frames / config.num_frames


def fsi_shapes(config) -> tuple[dict[str, int], dict[str, int], int]:
    """``(points per domain, quantities per domain, coordinate dim)`` of ``config``'s frames.

    Points from ``fsi.point_counts``; quantities from ``jax.eval_shape`` of the generator
    (traced, not run): the ones ``fluidsolid.domain_state`` stacks per domain.
    """
    import jax
    import jax.numpy as jnp

    from jaxpapers.physics import fluidsolid
    from jaxpapers.physics.generators import fsi

    one = dataclasses.replace(config, warmup_steps=0, num_frames=1)
    args = [jax.ShapeDtypeStruct((1,), jnp.float32)] * 3
    frames = jax.eval_shape(
        lambda a, b, c: fsi._simulate_batch(a, b, c, one),  # pylint: disable=protected-access
        *args,
    )
    coord = int(frames["solid/pos"].shape[-1])
    rank = frames["solid/pos"].ndim  # (trajectory, frame, point, coordinate)
    dims = {
        d: sum(
            int(frames[f"{d}/{q}"].shape[-1]) if frames[f"{d}/{q}"].ndim == rank else 1
            for q in fluidsolid.QUANTITIES[d]
            if f"{d}/{q}" in frames
        )
        for d in fluidsolid.DOMAINS
    }
    counts = fsi.point_counts(config)
    points = {d: int(counts[d]) for d in fluidsolid.DOMAINS}
    return points, dims, coord


def fsi_prepared(dims: Mapping[str, int], coord: int):
    """A data-less :class:`fluidsolid.Prepared` (what ``fluidsolid.make_model`` reads)."""
    from jaxpapers.physics import fluidsolid

    return fluidsolid.Prepared(arrays={}, normalizers={}, dims=dict(dims), coord_dim=coord)


def fsi_batch(
    points: Mapping[str, int], dims: Mapping[str, int], coord: int, batch: int, seed: int = SEED
) -> dict[str, np.ndarray]:
    """Random normal ``current_<domain>`` / ``next_<domain>`` arrays of one batch."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in points:
        shape = (batch, points[d], coord + dims[d])
        out[f"current_{d}"] = rng.standard_normal(shape, dtype=np.float32)
        out[f"next_{d}"] = rng.standard_normal(shape, dtype=np.float32)
    return out


# --------------------------------------------------------------------------- models


def model_config(cfg, name: str):
    """``cfg.model`` with ``name`` set (``unisoma`` / ``fisale`` / ``transolver``)."""
    m = cfg.model.copy_and_resolve_references()
    m.name = name
    return m


def model_factory(
    entry_model: str, cfgs, shapes
) -> tuple[Callable[[Any], Any], Callable, Callable]:
    """``(init_model(rngs), forward(model, batch), loss_fn(model, batch))`` of a model entry."""
    from jaxpapers.physics import fluidsolid, multisolid

    experiment, name = MODEL_NAMES[entry_model]
    m = model_config(cfgs[experiment], name)
    if experiment == "unisoma":
        scene = shapes["contact"].scene

        def init_model(rngs):
            return multisolid.make_model(m, scene, rngs)

        def forward(model, batch):
            return multisolid.call(model, batch, scene)

        def loss_fn(model, batch):
            return multisolid.longtime_loss(forward(model, batch), batch, scene)

        return init_model, forward, loss_fn
    prepared = shapes["fsi_prepared"]

    def init_model(rngs):
        return fluidsolid.make_model(m, prepared, rngs)

    def forward(model, batch):
        return fluidsolid.call(model, batch)

    def loss_fn(model, batch):
        return fluidsolid.fsi_loss(forward(model, batch), batch)

    return init_model, forward, loss_fn


def init_jax_model(init_model: Callable[[Any], Any]):
    """``init_model(nnx.Rngs(SEED))`` with the initialisation jitted (one compilation)."""
    import jax
    from flax import nnx

    def make():
        return init_model(nnx.Rngs(SEED))

    graphdef, _ = nnx.split(nnx.eval_shape(make))
    state = jax.jit(lambda: nnx.state(make()))()
    return nnx.merge(graphdef, state)


def count_params(model) -> int:
    from jaxpapers.physics import multisolid

    return multisolid.count_params(model)


def train_steps(cfg, experiment: str, batch: int) -> int:
    """The default run's number of optimizer steps (the cosine's length), as the experiments
    compute it: Unisoma's long-time task has one example per scene, Fisale one per frame
    pair of its training trajectories."""
    from jaxpapers.physics import stretch

    if experiment == "unisoma":
        examples = int(cfg.data.num_train)
    else:
        from jaxpapers.physics.generators import fsi

        frames = fsi.FSIConfig().num_frames
        examples = int(cfg.data.num_train) * (frames - int(cfg.data.frame_stride))
    return stretch.num_steps(cfg, stretch.steps_per_epoch(examples, max(batch, 1)))


# --------------------------------------------------------------------------- JAX entries


def generator_entry(name: str, gen_batch: int, fsi_trajectories: int, fsi_frames: int, cfgs):
    """``contact_generator`` or ``fsi_generator`` (see the module docstring)."""
    import jax

    if name == "contact_generator":
        from jaxpapers.physics.generators import contact

        gen = contact_generator_config(cfgs["unisoma"])
        params = jax.block_until_ready(contact.sample_params(jax.random.key(SEED), gen_batch, gen))
        _log(f"compiling {name} (contact._simulate_chunk, {gen_batch} scenes)")
        fn = contact._simulate_chunk  # pylint: disable=protected-access
        compiled, info = harness.compile_jax(fn, params, gen)
        iterations = np.asarray(compiled(params)[2])
        return harness.Entry(
            name,
            lambda: jax.block_until_ready(compiled(params)),
            info={
                **info,
                "batch": gen_batch,
                "samples_per_call": gen_batch,
                "sample": "one scene (all load steps)",
                "config": dataclasses.asdict(gen),
                "nodes_per_deformable": gen.num_nodes,
                "triangles_per_deformable": 2 * gen.nx * gen.ny,
                "mean_newton_iterations_per_step": float(iterations.mean()),
                "max_newton_iterations": int(iterations.max()),
            },
        )
    from jaxpapers.physics.generators import fsi

    sim = fsi_bench_config(fsi_frames)
    inflow, stiffness, mass = jax.block_until_ready(
        fsi.sample_params(jax.random.key(SEED), fsi_trajectories, sim)
    )
    _log(f"compiling {name} (fsi._simulate_batch, {fsi_trajectories} x {fsi_frames} frames)")
    fn = fsi._simulate_batch  # pylint: disable=protected-access
    compiled, info = harness.compile_jax(fn, inflow, stiffness, mass, sim)
    samples = fsi_trajectories * fsi_frames
    return harness.Entry(
        name,
        lambda: jax.block_until_ready(compiled(inflow, stiffness, mass)),
        info={
            **info,
            "batch": fsi_trajectories,
            "frames": fsi_frames,
            "samples_per_call": samples,
            "sample": f"one recorded frame ({sim.frame_every} coupled LBM/IB steps)",
            "lattice": [sim.nx, sim.ny],
            "steps_per_call": sim.frame_every * fsi_frames,
            "warmup_factor_default": fsi_warmup_factor(fsi.FSIConfig()),
            "config": {k: v for k, v in dataclasses.asdict(sim).items()},
        },
    )


def infer_entry(name: str, model, forward: Callable, batch_np: Mapping[str, np.ndarray]):
    """A jitted eval-mode forward pass returning the per-object outputs."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model.eval()
    graphdef, state = nnx.split(model)
    batch = {k: jnp.asarray(v) for k, v in batch_np.items()}

    def infer(state, batch):
        return forward(nnx.merge(graphdef, state), batch)

    _log(f"compiling {name}")
    compiled, info = harness.compile_jax(infer, state, batch)
    n = int(next(iter(batch_np.values())).shape[0])
    return harness.Entry(
        name,
        lambda: jax.block_until_ready(compiled(state, batch)),
        flops=info["xla_flops"] if np.isfinite(info["xla_flops"]) else None,
        info={**info, "batch": n, "samples_per_call": n, "num_params": count_params(model)},
    )


def train_entry(
    name: str, init_model: Callable, loss_fn: Callable, cfg, experiment: str, pool
) -> harness.Entry:
    """The library's train step with the experiment's optimizer on a pool of batches."""
    import jax
    from flax import nnx

    from jaxpapers.core import mesh as mesh_lib
    from jaxpapers.core import train as train_lib
    from jaxpapers.physics import multisolid

    batch = int(len(next(iter(pool[0].values()))))
    steps = train_steps(cfg, experiment, batch)
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    setup_ = train_lib.setup(
        init_model,
        multisolid.optimizer(cfg, steps),
        mesh=mesh,
        seed=SEED,
        rng_impl=cfg.get("rng_impl") or None,
    )
    _log(f"initialising {name}")
    state = setup_.init()
    step = train_lib.make_train_step(loss_fn, setup_)
    batches = [jax.device_put(b, setup_.batch_sharding) for b in pool]
    num_params = int(
        sum(np.prod(x.shape) for x in jax.tree.leaves(state["model"].filter(nnx.Param)))
    )
    _log(f"compiling {name}")
    compiled, info = harness.compile_jax(step, state, batches[0])
    o = cfg.optim
    return harness.Entry(
        name,
        harness.TrainCall(compiled, state, batches),
        flops=info["xla_flops"] if np.isfinite(info["xla_flops"]) else None,
        info={
            **info,
            "batch": batch,
            "samples_per_call": batch,
            "num_params": num_params,
            "optimizer": (
                f"multisolid.optimizer: AdamW lr {o.learning_rate} cosine to lr/{o.lr_decay} "
                f"over {steps} steps, weight decay {o.weight_decay}"
            ),
        },
    )


# --------------------------------------------------------------------------- PyTorch port


def torch_transolver(
    *,
    num_objects: int,
    in_dim: int,
    out_dim: int,
    emb_dim: int,
    num_layers: int,
    num_heads: int,
    slice_num: int,
    mlp_ratio: int,
):
    """A PyTorch version of :class:`jaxpapers.physics.implicit.ObjectsTransolver`.

    ``forward(objects)`` takes a list of ``(B, N_o, d_o)`` tensors (``d_o <= in_dim``) and
    returns the per-object ``(B, N_o, out_dim)`` outputs. Parameter names follow the JAX
    module's paths (``preprocess.fc_pre.weight`` <-> ``preprocess/fc_pre/kernel``), so
    :func:`copy_jax_params` can load our weights. Imported lazily: this module stays
    importable without torch.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    if emb_dim % num_heads:
        raise ValueError(f"emb_dim ({emb_dim}) must be a multiple of num_heads ({num_heads})")

    class FFN(nn.Module):
        def __init__(self, d_in: int, d_hidden: int, d_out: int):
            super().__init__()
            self.fc_pre = nn.Linear(d_in, d_hidden)
            self.fc_post = nn.Linear(d_hidden, d_out)

        def forward(self, x):
            return self.fc_post(F.gelu(self.fc_pre(x)))

    class PhysicsAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads, self.dim_head = num_heads, emb_dim // num_heads
            inner, d = self.heads * self.dim_head, self.dim_head
            self.in_project_x = nn.Linear(emb_dim, inner)
            self.in_project_fx = nn.Linear(emb_dim, inner)
            self.in_project_slice = nn.Linear(d, slice_num)
            self.temperature = nn.Parameter(torch.full((num_heads, 1, 1), 0.5))
            self.to_q = nn.Linear(d, d, bias=False)
            self.to_k = nn.Linear(d, d, bias=False)
            self.to_v = nn.Linear(d, d, bias=False)
            self.to_out = nn.Linear(inner, emb_dim)

        def split_heads(self, x):  # (B, N, H*D) -> (B, H, N, D)
            b, n, _ = x.shape
            return x.reshape(b, n, self.heads, self.dim_head).transpose(1, 2)

        def forward(self, x):
            fx_mid = self.split_heads(self.in_project_fx(x))
            x_mid = self.split_heads(self.in_project_x(x))
            w = torch.softmax(self.in_project_slice(x_mid) / self.temperature, dim=-1)
            norm = w.sum(dim=2)  # (B, H, G)
            tokens = torch.einsum("bhnc,bhng->bhgc", fx_mid, w) / (norm[..., None] + 1e-5)
            q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
            dots = torch.matmul(q, k.transpose(-1, -2)) * self.dim_head**-0.5
            out_tokens = torch.matmul(torch.softmax(dots, dim=-1), v)
            out = torch.einsum("bhgc,bhng->bhnc", out_tokens, w)
            b, _, n, _ = out.shape
            return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    class Block(nn.Module):
        def __init__(self, last: bool):
            super().__init__()
            self.last = last
            self.ln_1 = nn.LayerNorm(emb_dim, eps=1e-5)
            self.Attn = PhysicsAttention()  # noqa: N815 (the reference's name)
            self.ln_2 = nn.LayerNorm(emb_dim, eps=1e-5)
            self.mlp = FFN(emb_dim, emb_dim * mlp_ratio, emb_dim)
            if last:
                self.ln_3 = nn.LayerNorm(emb_dim, eps=1e-5)
                self.mlp2 = nn.Linear(emb_dim, out_dim)

        def forward(self, fx):
            fx = self.Attn(self.ln_1(fx)) + fx
            fx = self.mlp(self.ln_2(fx)) + fx
            return self.mlp2(self.ln_3(fx)) if self.last else fx

    class ObjectsTransolver(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_dim, self.num_objects = in_dim, num_objects
            self.preprocess = FFN(in_dim + num_objects, 2 * emb_dim, emb_dim)
            self.placeholder = nn.Parameter(torch.rand(emb_dim) / emb_dim)
            self.blocks = nn.ModuleList([Block(i == num_layers - 1) for i in range(num_layers)])

        def forward(self, objects):
            parts = []
            for o, x in enumerate(objects):
                b, n, d = x.shape
                one_hot = torch.zeros(b, n, self.num_objects, dtype=x.dtype)
                one_hot[..., o] = 1.0
                parts.append(torch.cat([F.pad(x, (0, self.in_dim - d)), one_hot], dim=-1))
            fx = self.preprocess(torch.cat(parts, dim=1)) + self.placeholder
            for block in self.blocks:
                fx = block(fx)
            return list(torch.split(fx, [x.shape[1] for x in objects], dim=1))

    return ObjectsTransolver()


def torch_unisoma(
    *,
    load_dim: int,
    rigid_dim: int,
    deformable_in_dim: int,
    deformable_out_dim: int,
    num_loads: int,
    num_rigids: int,
    num_deformables: int,
    contact_pairs: Sequence[tuple[int, int]],
    emb_dim: int,
    slice_num: int,
    num_processors: int,
    num_heads: int,
    mlp_ratio: int,
):
    """A PyTorch version of :class:`jaxpapers.physics.unisoma.Unisoma` (forward only).

    ``forward(loads, rigids, deformables)`` returns one ``(B, P_i, deformable_out_dim)`` per
    deformable. Module and parameter names follow the JAX module's paths, so
    :func:`copy_jax_params` (``prefix=()``) loads our weights.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    e = emb_dim

    class FFN(nn.Module):
        def __init__(self, d_in: int, d_hidden: int, d_out: int):
            super().__init__()
            self.fc_pre = nn.Linear(d_in, d_hidden)
            self.fc_post = nn.Linear(d_hidden, d_out)

        def forward(self, x):
            return self.fc_post(F.gelu(self.fc_pre(x)))

    class Sequential(nn.Module):  # nnx.Sequential's parameter paths (``layers.<i>``)
        def __init__(self, *layers):
            super().__init__()
            self.layers = nn.ModuleList(layers)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    class SliceBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_project_x = nn.Linear(e, e)
            self.in_project_fx = nn.Linear(e, e)
            self.in_project_slice = nn.Linear(e, slice_num)
            self.temperature_x = nn.Parameter(torch.full((slice_num,), 0.5))
            self.place_holder_x = nn.Parameter(torch.rand(e) / e)

        def forward(self, x):
            fx_mid = self.in_project_fx(x)
            x_mid = self.in_project_x(x) + self.place_holder_x
            tau = self.temperature_x.clamp(0.01, 5.0)
            w = torch.softmax(self.in_project_slice(x_mid) / tau, dim=-1)  # (B, N, G)
            tokens = torch.einsum("bng,bnc->bgc", w, fx_mid) / (w.sum(1)[..., None] + 1e-5)
            return tokens, w

    class DesliceBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_out = FFN(e, e * mlp_ratio, e)
            self.place_holder = nn.Parameter(torch.rand(e) / e)

        def forward(self, tokens, w, feature):
            out = torch.matmul(w, tokens) + self.place_holder + feature
            return self.fc_out(out) + out

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = e**-0.5
            self.W_q = nn.Linear(e, e, bias=False)  # noqa: N815 (the reference's names)
            self.W_k = nn.Linear(e, e, bias=False)  # noqa: N815
            self.W_v = nn.Linear(e, e, bias=False)  # noqa: N815
            self.W_o = nn.Linear(e, e)  # noqa: N815

        def heads(self, x):  # (B, N, H*C) -> (B, H, N, C)
            b, n, _ = x.shape
            return x.reshape(b, n, num_heads, -1).transpose(1, 2)

        def forward(self, x, y, z):
            q, k, v = self.heads(self.W_q(x)), self.heads(self.W_k(y)), self.heads(self.W_v(z))
            attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
            out = torch.matmul(attn, v).transpose(1, 2)
            return self.W_o(out.reshape(out.shape[0], out.shape[1], -1))

    class AttentionLayer(nn.Module):
        def __init__(self, use_ffn: bool):
            super().__init__()
            self.attn_layer = Attention()
            self.ln_x, self.ln_y, self.ln_z = (nn.LayerNorm(e, eps=1e-5) for _ in range(3))
            self.use_ffn = use_ffn
            if use_ffn:
                self.ffn = FFN(e, e * mlp_ratio, e)
                self.ln_t = nn.LayerNorm(e, eps=1e-5)

        def forward(self, x, y, z):
            t = self.attn_layer(self.ln_x(x), self.ln_y(y), self.ln_z(z)) + x
            return self.ffn(self.ln_t(t)) + t if self.use_ffn else t

    class ContactBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention_layer = AttentionLayer(use_ffn=False)
            self.ln_x = nn.LayerNorm(e, eps=1e-5)
            self.ln_y = nn.LayerNorm(e, eps=1e-5)

        def forward(self, x, y):
            z = self.ln_x(x) + self.ln_y(y)
            return self.attention_layer(z, z, z)

    class InteractionAllocation(nn.Module):
        def __init__(self, contact: bool):
            super().__init__()
            self.contact = contact
            self.fc_weight = nn.Linear(e, e)
            if contact:
                self.fc = Sequential(nn.LayerNorm(e, eps=1e-5), FFN(e, e * mlp_ratio, e))

        def forward(self, interactions):
            stack = torch.stack(interactions, dim=-1)  # (B, G, E, K)
            logits = self.fc_weight(stack.transpose(-1, -2)).transpose(-1, -2)
            x = (torch.softmax(logits, dim=-1) * stack).sum(-1)
            return self.fc(x) + x if self.contact else x

    class LoadBlock(nn.Module):
        def __init__(self):
            super().__init__()
            if num_loads > 1:
                self.loads_allocation = InteractionAllocation(contact=False)
            if len(contact_pairs) > 1:
                self.contact_constraints_allocation = InteractionAllocation(contact=True)
            self.attention_layer = AttentionLayer(use_ffn=True)
            self.ln_load = nn.LayerNorm(e, eps=1e-5)
            self.ln_contact_constraint = nn.LayerNorm(e, eps=1e-5)
            self.ln_deformable_solid = nn.LayerNorm(e, eps=1e-5)

        def forward(self, loads, deformable, contacts):
            load = self.loads_allocation(loads) if num_loads > 1 else loads[0]
            many = len(contact_pairs) > 1
            contact = self.contact_constraints_allocation(contacts) if many else contacts[0]
            z = (
                self.ln_load(load)
                + self.ln_contact_constraint(contact)
                + self.ln_deformable_solid(deformable)
            )
            return self.attention_layer(z, z, z)

    class ContactModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.contact_blocks = nn.ModuleList(ContactBlock() for _ in contact_pairs)

        def forward(self, solids):
            return [
                blk(solids[a], solids[b]) for (a, b), blk in zip(contact_pairs, self.contact_blocks)
            ]

    class LoadModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.load_blocks = nn.ModuleList(LoadBlock() for _ in range(num_deformables))

        def forward(self, loads, deformables, contacts):
            return [blk(loads, d, contacts) for blk, d in zip(self.load_blocks, deformables)]

    class Processor(nn.Module):
        def __init__(self):
            super().__init__()
            self.contact_module = ContactModule()
            self.load_module = LoadModule()

        def forward(self, loads, rigids, deformables):
            contacts = self.contact_module([*deformables, *rigids])
            return self.load_module(loads, deformables, contacts)

    class Unisoma(nn.Module):
        def __init__(self):
            super().__init__()
            self.load_ffn = nn.ModuleList(nn.Linear(load_dim, e) for _ in range(num_loads))
            self.rigid_ffn = nn.ModuleList(nn.Linear(rigid_dim, e) for _ in range(num_rigids))
            self.deformable_ffn = nn.ModuleList(
                FFN(deformable_in_dim, 2 * e, e) for _ in range(num_deformables)
            )
            self.load_slice_blocks = nn.ModuleList(SliceBlock() for _ in range(num_loads))
            self.rigid_slice_blocks = nn.ModuleList(SliceBlock() for _ in range(num_rigids))
            self.deformable_slice_blocks = nn.ModuleList(
                SliceBlock() for _ in range(num_deformables)
            )
            self.processors = nn.ModuleList(Processor() for _ in range(num_processors))
            self.deformable_deslice_blocks = nn.ModuleList(
                DesliceBlock() for _ in range(num_deformables)
            )
            self.deformable_ffn_out = nn.ModuleList(
                FFN(e, e * mlp_ratio, deformable_out_dim) for _ in range(num_deformables)
            )

        def forward(self, loads, rigids, deformables):
            load_tokens = [
                s(f(x))[0] for f, s, x in zip(self.load_ffn, self.load_slice_blocks, loads)
            ]
            rigid_tokens = [
                s(f(x))[0] for f, s, x in zip(self.rigid_ffn, self.rigid_slice_blocks, rigids)
            ]
            features = [f(x) for f, x in zip(self.deformable_ffn, deformables)]
            sliced = [s(x) for s, x in zip(self.deformable_slice_blocks, features)]
            tokens = [t for t, _ in sliced]
            for processor in self.processors:
                tokens = processor(load_tokens, rigid_tokens, tokens)
            return [
                out(deslice(t, w, f) + f)
                for out, deslice, t, (_, w), f in zip(
                    self.deformable_ffn_out,
                    self.deformable_deslice_blocks,
                    tokens,
                    sliced,
                    features,
                )
            ]

    return Unisoma()


def unisoma_dims(scene, m) -> dict[str, Any]:
    """``multisolid.make_model``'s Unisoma arguments for ``scene`` and ``config.model`` ``m``."""
    c = scene.coord_dim
    return {
        "load_dim": 2 * c,
        "rigid_dim": c,
        "deformable_in_dim": c + getattr(scene, "material_dim", 0),
        "deformable_out_dim": c + len(scene.fields),
        "num_loads": scene.num_loads,
        "num_rigids": scene.num_rigids,
        "num_deformables": scene.num_deformables,
        "contact_pairs": scene.contact_pairs,
        **{
            k: int(m[k])
            for k in ("emb_dim", "slice_num", "num_processors", "num_heads", "mlp_ratio")
        },
    }


def copy_jax_params(torch_model, jax_params, prefix: Sequence[Any] = ()) -> int:
    """Loads a JAX :class:`~jaxpapers.physics.implicit.Transolver`'s parameters into
    :func:`torch_transolver`'s model; returns the number of scalars copied.

    ``jax_params``: an ``nnx.State`` of ``nnx.Param`` leaves whose paths start with ``prefix``
    (``("model", "transolver")`` for the state of a ``multisolid.Implicit``). Kernels are transposed
    (``(in, out)`` -> ``(out, in)``); LayerNorm ``scale`` is ``weight``. Raises ``ValueError``
    unless every torch parameter is set exactly once with the right shape.
    """
    import jax
    import torch

    prefix = tuple(prefix)
    targets = dict(torch_model.named_parameters())
    seen, copied = set(), 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax_params):
        keys = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)
        if keys[: len(prefix)] != prefix:
            continue
        keys = [str(k) for k in keys[len(prefix) :] if str(k) != "value"]
        value = np.asarray(leaf, np.float32)
        last = keys[-1]
        if last == "kernel":
            keys[-1], value = "weight", value.T
        elif last == "scale":
            keys[-1] = "weight"
        name = ".".join(keys)
        if name not in targets:
            raise ValueError(f"JAX parameter {name!r} has no PyTorch counterpart")
        if tuple(targets[name].shape) != value.shape:
            raise ValueError(
                f"{name}: PyTorch shape {tuple(targets[name].shape)}, JAX {value.shape}"
            )
        with torch.no_grad():
            targets[name].copy_(torch.from_numpy(np.array(value, np.float32)))
        seen.add(name)
        copied += value.size
    missing = sorted(set(targets) - seen)
    if missing:
        raise ValueError(f"PyTorch parameters not set from JAX: {missing[:5]}")
    return copied


def torch_longtime_loss(outputs, batch, scene):
    """:func:`multisolid.longtime_loss` in PyTorch (relative L2 per sample, batch mean)."""
    import torch

    def rel_l2(p, t):
        return torch.sqrt(((p - t) ** 2).sum(dim=(1, 2))) / torch.sqrt((t**2).sum(dim=(1, 2)))

    c = scene.coord_dim
    total = 0.0
    for i, pred in enumerate(outputs):
        true = batch[f"target_{i}"]
        total = total + rel_l2(pred[..., :c], true[..., :c]).mean()
        for f in range(len(scene.fields)):
            sl = slice(c + f, c + f + 1)
            total = total + rel_l2(pred[..., sl], true[..., sl]).mean()
    return total


def torch_contact_objects(batch, scene) -> list:
    """``multisolid.call``'s object list (loads, rigids, deformables + material) in PyTorch."""
    import torch

    deformables = [batch[f"deformable_{i}"] for i in range(scene.num_deformables)]
    if getattr(scene, "material_dim", 0):
        deformables = [
            torch.cat([x, batch[f"material_{i}"]], dim=-1) for i, x in enumerate(deformables)
        ]
    return [
        *(batch[f"load_{k}"] for k in range(scene.num_loads)),
        *(batch[f"rigid_{j}"] for j in range(scene.num_rigids)),
        *deformables,
    ]


class _TorchTrainCall:
    """One PyTorch train step (zero_grad, forward, loss, backward, AdamW) per call."""

    def __init__(self, model, optimizer, batches, scene):
        self.model, self.optimizer, self.batches, self.scene = model, optimizer, batches, scene
        self.calls = 0
        self.loss = None

    def __call__(self):
        batch = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        self.optimizer.zero_grad(set_to_none=True)
        outs = self.model(torch_contact_objects(batch, self.scene))
        first = self.scene.num_loads + self.scene.num_rigids
        loss = torch_longtime_loss(outs[first:], batch, self.scene)
        loss.backward()
        self.optimizer.step()
        self.loss = loss.detach()

    def last(self) -> dict[str, Any]:
        value = float(self.loss)
        return {"last_loss": value, "last_step_finite": bool(np.isfinite(value))}


def transolver_dims(scene, m) -> dict[str, int]:
    """``multisolid.Implicit``'s sizes for ``scene`` and ``config.model`` ``m``."""
    from jaxpapers.physics import multisolid

    c = scene.coord_dim
    material = getattr(scene, "material_dim", 0)
    return {
        "num_objects": scene.num_loads + scene.num_rigids + scene.num_deformables,
        "in_dim": max(2 * c, c + material),
        "out_dim": c + len(scene.fields),
        **multisolid.transolver_kwargs(m),
    }


def torch_entry(name: str, cfg, scene, pool, jax_params, threads: int) -> harness.Entry:
    """The PyTorch implicit baseline, from the JAX initial weights, on ``pool``."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    m = model_config(cfg, "transolver")
    model = torch_transolver(**transolver_dims(scene, m))
    copied = copy_jax_params(model, jax_params, ("model", "transolver"))
    model.train()
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(o.learning_rate), weight_decay=float(o.weight_decay)
    )
    batches = [{k: torch.from_numpy(v) for k, v in b.items()} for b in pool]
    batch = int(len(next(iter(pool[0].values()))))
    return harness.Entry(
        name,
        _TorchTrainCall(model, optimizer, batches, scene),
        framework="torch",
        info={
            "batch": batch,
            "samples_per_call": batch,
            "num_params": int(sum(p.numel() for p in model.parameters())),
            "params_copied_from_jax": copied,
            "threads": torch.get_num_threads(),
            "architecture": "our PyTorch port of implicit.ObjectsTransolver (same weights)",
            "loss": "multisolid.longtime_loss (rel. L2 of positions + stress per deformable)",
            "optimizer": (
                f"torch.optim.AdamW(lr={o.learning_rate}, weight_decay={o.weight_decay}), "
                "constant lr"
            ),
        },
    )


class _TorchInferCall:
    """One PyTorch Unisoma forward (``torch.inference_mode``) per call."""

    def __init__(self, model, objects, scene):
        self.model, self.scene = model, scene
        loads, rigids = scene.num_loads, scene.num_rigids
        self.args = (objects[:loads], objects[loads : loads + rigids], objects[loads + rigids :])

    def __call__(self):
        import torch

        with torch.inference_mode():
            self.model(*self.args)


def torch_unisoma_entry(name: str, cfg, scene, batch_np, jax_params, threads: int):
    """The PyTorch Unisoma port's forward, from the JAX initial weights, on ``batch_np``."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = torch_unisoma(**unisoma_dims(scene, model_config(cfg, "unisoma")))
    copied = copy_jax_params(model, jax_params)
    model.eval()
    batch = {k: torch.from_numpy(v) for k, v in batch_np.items()}
    n = int(len(next(iter(batch_np.values()))))
    return harness.Entry(
        name,
        _TorchInferCall(model, torch_contact_objects(batch, scene), scene),
        framework="torch",
        info={
            "batch": n,
            "samples_per_call": n,
            "num_params": int(sum(p.numel() for p in model.parameters())),
            "params_copied_from_jax": copied,
            "threads": torch.get_num_threads(),
            "architecture": "our PyTorch port of unisoma.Unisoma (same weights), inference_mode",
        },
    )


# --------------------------------------------------------------------------- run


def _torch_available() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return False, f"torch is not installed ({e}); install the bench extra"
    return True, ""


def per_sample_ratio(
    num: harness.Entry, den: harness.Entry, num_samples: int, den_samples: int
) -> dict[str, Any]:
    """Seconds per sample of ``num`` over those of ``den``: the ratio of the medians and the
    quartiles of the per-round ratios (each round's mean call time over its samples)."""
    a = harness.stats(num.samples)["median"] / num_samples
    b = harness.stats(den.samples)["median"] / den_samples
    paired = harness.paired_ratio(num, den)
    scale = den_samples / num_samples
    per_round = {k: (v if k == "n" else v * scale) for k, v in paired.items()}
    return {
        "ratio_per_sample": a / b,
        "per_round": per_round,
        "numerator_per_sample_s": a,
        "denominator_per_sample_s": b,
    }


def run(
    *,
    batch: int = 32,
    train_batch: int = 0,
    gen_batch: int = 32,
    fsi_trajectories: int = FSI_TRAJECTORIES,
    fsi_frames: int = FSI_FRAMES,
    rounds: int = 5,
    only: Sequence[str] = (),
    matmul_n: int = 2048,
    threads: int | None = None,
    warmup: int = 1,
    wait_for_idle: float = 0.0,
) -> tuple[dict[str, Any], str]:
    """Runs the selected entries; returns ``(results, printable table)``.

    ``train_batch`` 0: each experiment's default train batch (Unisoma 8, Fisale 16).
    ``wait_for_idle`` > 0: after building (compilation needs no quiet machine), first wait up
    to that many seconds until other processes use under 5% of the CPU over 10 s.
    """
    unknown = [o for o in only if o not in ENTRIES]
    if unknown:
        raise ValueError(f"unknown entries {unknown}; choose from {list(ENTRIES)}")
    for label, value in (
        ("batch", batch),
        ("gen_batch", gen_batch),
        ("fsi_trajectories", fsi_trajectories),
        ("fsi_frames", fsi_frames),
        ("rounds", rounds),
    ):
        if value <= 0:
            raise ValueError(f"{label} must be positive, got {value}")
    if train_batch < 0:
        raise ValueError(f"train_batch must be >= 0 (0: the configs' own), got {train_batch}")
    selected = [e for e in ENTRIES if e in only] if only else list(ENTRIES)

    import jax

    machine = harness.machine_info()
    machine["devices"] = [str(d) for d in jax.devices()]
    _log(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, devices "
        f"{machine['devices']}, load average {machine['load_average_at_start']}"
    )
    has_torch, torch_note = _torch_available()
    threads = threads or harness.usable_cores()
    cfgs = experiment_configs()
    train_batches = {e: train_batch or int(cfgs[e].train.batch_size) for e in ("unisoma", "fisale")}

    contact = contact_scene(contact_generator_config(cfgs["unisoma"]))
    fsi_points, fsi_dims, fsi_coord = fsi_shapes(fsi_bench_config(fsi_frames))
    shapes = {"contact": contact, "fsi_prepared": fsi_prepared(fsi_dims, fsi_coord)}

    def batch_of(experiment: str, n: int, seed: int = SEED) -> dict[str, np.ndarray]:
        if experiment == "unisoma":
            return contact_batch(contact, n, seed)
        return fsi_batch(fsi_points, fsi_dims, fsi_coord, n, seed)

    results: dict[str, Any] = {
        "machine": machine,
        "config": {
            "batch": batch,
            "train_batch": train_batches,
            "gen_batch": gen_batch,
            "fsi_trajectories": fsi_trajectories,
            "fsi_frames": fsi_frames,
            "rounds": rounds,
            "warmup": warmup,
            "entries": selected,
            "seed": SEED,
            "pool_batches": POOL,
            "matmul_shape": [matmul_n] * 3,
            "configs": {e: f"experiments/configs/{e}.py:default" for e in cfgs},
            "models": {e: cfgs[e].model.to_dict() for e in cfgs},
            "optim": {e: cfgs[e].optim.to_dict() for e in cfgs},
            "contact_points": {
                "deformable": contact.deformable_points,
                "rigid": contact.rigid_points,
                "load": contact.rigid_points,
                "scene": dataclasses.asdict(contact.scene),
            },
            "fsi_points": fsi_points,
            "fsi_quantities": fsi_dims,
            "inputs": "standard normal float32 (numpy seed 0), on the device",
        },
        "reference": {},
        "entries": {},
        "comparisons": {},
        "contention": {},
        "not_run": {},
    }

    refs = {"jax": harness.jax_matmul_entry(matmul_n)}
    torch_selected = [e for e in TORCH_ENTRIES if e in selected]
    if torch_selected and has_torch:
        refs["torch"] = harness.torch_matmul_entry(matmul_n, threads=threads)
    for name in torch_selected if not has_torch else ():
        results["not_run"][name] = torch_note
        _log(f"{name} not run: {torch_note}")

    factories = {m: model_factory(m, cfgs, shapes) for m in MODELS}
    pools = {
        e: [batch_of(e, train_batches[e], SEED + i) for i in range(POOL)]
        for e in ("unisoma", "fisale")
    }

    def build_infer(m: str):
        init_model, forward, _ = factories[m]
        _log(f"initialising {m}")
        return infer_entry(
            f"{m}_infer", init_jax_model(init_model), forward, batch_of(MODEL_NAMES[m][0], batch)
        )

    def build_train(m: str):
        init_model, _, loss_fn = factories[m]
        experiment = MODEL_NAMES[m][0]
        return train_entry(
            f"{m}_train", init_model, loss_fn, cfgs[experiment], experiment, pools[experiment]
        )

    def build_torch():
        from flax import nnx

        init_model = factories["transolver_contact"][0]
        jax_params = nnx.state(init_jax_model(init_model), nnx.Param)
        return torch_entry(
            "torch_transolver_contact_train",
            cfgs["unisoma"],
            contact.scene,
            pools["unisoma"],
            jax_params,
            threads,
        )

    def build_torch_unisoma():
        from flax import nnx

        jax_params = nnx.state(init_jax_model(factories["unisoma"][0]), nnx.Param)
        return torch_unisoma_entry(
            "torch_unisoma_infer",
            cfgs["unisoma"],
            contact.scene,
            batch_of("unisoma", batch),
            jax_params,
            threads,
        )

    builders: dict[str, Callable[[], Any]] = {}
    for g in GENERATORS:
        builders[g] = lambda g=g: generator_entry(g, gen_batch, fsi_trajectories, fsi_frames, cfgs)
    for m in MODELS:
        builders[f"{m}_infer"] = lambda m=m: build_infer(m)
        builders[f"{m}_train"] = lambda m=m: build_train(m)
    if has_torch:
        builders["torch_transolver_contact_train"] = build_torch
        builders["torch_unisoma_infer"] = build_torch_unisoma
    # Initialisation and compilation (single-threaded per program in XLA:CPU) run in a thread
    # pool, one worker per usable core; nothing is timed meanwhile.
    workers = max(1, harness.usable_cores())
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {n: pool.submit(b) for n, b in builders.items() if n in selected}
        built = {n: f.result() for n, f in futures.items()}
    results["config"]["build_s"] = time.perf_counter() - t0
    results["config"]["compile_workers"] = workers
    entries = [built[n] for n in ENTRIES if n in built]

    if entries and wait_for_idle > 0:
        results["contention"]["before_timing"] = harness.wait_for_idle(
            wait_for_idle, window_s=10.0, log=_log
        )
    tables = []
    if entries:
        _log(f"{rounds} interleaved rounds of {[e.name for e in entries]} (warm-up {warmup})")
        monitor = harness.CpuMonitor()
        harness.run_interleaved(entries, rounds, warmup=warmup, references=refs, log=_log)
        results["contention"]["main"] = monitor.read()
        tables.append(_table(entries, refs, results))
    for name, why in results["not_run"].items():
        tables.append(f"{name}: not run -- {why}")
    return results, "\n\n".join(tables)


def _table(entries: Sequence[harness.Entry], refs, results: dict[str, Any]) -> str:
    by_name = {e.name: e for e in entries}
    rows = []
    for key, ref in refs.items():
        summary = results["reference"][f"{key}_matmul"] = ref.summary()
        s = summary["seconds"]
        rate = f"{summary['gflops_per_s']:.0f} (reference)"
        rows.append([ref.name, "", "", harness.ms_quartiles(s), "", "", "", "", "", rate, ""])
    for e in entries:
        r = e.summary()
        s = r["seconds"]
        n = r["samples_per_call"]
        r["per_sample_s"] = s["median"] / n
        r["samples_per_s"] = n / s["median"]
        notes = []
        steps = ""
        if e.name.endswith("_train"):
            r["steps_per_s"] = 1.0 / s["median"]
            r.update(e.call.last())
            steps = f"{r['steps_per_s']:.2f}"
            notes.append(
                f"last loss {r['last_loss']:.3g}" + ("" if r["last_step_finite"] else " NOT FINITE")
            )
        if e.name == "fsi_generator":
            r["amortised_per_sample_s"] = r["per_sample_s"] * r["warmup_factor_default"]
            notes.append(
                f"{r['amortised_per_sample_s'] * 1e3:.1f} ms/frame with the default warm-up "
                f"amortised (x{r['warmup_factor_default']:.3g})"
            )
        if e.name == "contact_generator":
            notes.append(f"{r['mean_newton_iterations_per_step']:.2f} Newton it./step")
        ref = refs.get(e.framework)
        rate = ""
        if e.flops and ref is not None:
            r["of_matmul_rate"] = harness.local_fraction(e, ref)
            frac = r["of_matmul_rate"].get("median")
            rate = f"{r['gflops_per_s']:.1f}" + ("" if frac is None else f" ({100 * frac:.0f}%)")
        results["entries"][e.name] = r
        compile_s = r.get("lower_s", 0.0) + r.get("compile_s", 0.0)
        rows.append(
            [
                e.name,
                n,
                f"{r['num_params']:,}" if "num_params" in r else "",
                harness.ms_quartiles(s),
                f"{r['per_sample_s'] * 1e3:.3f}",
                f"{r['samples_per_s']:.1f}",
                steps,
                f"{compile_s:.1f}" if e.framework == "jax" else "",
                f"{r['first_call_s'] * 1e3:.0f}",
                rate,
                "; ".join(notes),
            ]
        )

    def note(name: str, text: str) -> None:
        for row in rows:
            if row[0] == name:
                row[-1] = f"{row[-1]}; {text}" if row[-1] else text

    def compare(num: str, den: str, key: str, label: str) -> None:
        if num not in by_name or den not in by_name:
            return
        a, b = results["entries"][num], results["entries"][den]
        c = per_sample_ratio(
            by_name[num], by_name[den], a["samples_per_call"], b["samples_per_call"]
        )
        results["comparisons"][key] = c
        q = c["per_round"]
        note(den, f"{label} {c['ratio_per_sample']:.3g}x (per round {q['q1']:.3g}-{q['q3']:.3g})")

    for m in CONTACT_MODELS:
        compare("contact_generator", f"{m}_infer", f"contact_generator_over_{m}_infer", "sim/this")
    for m in ("fisale", "transolver_fsi"):
        compare("fsi_generator", f"{m}_infer", f"fsi_generator_over_{m}_infer", "sim/this")
    compare(
        "torch_transolver_contact_train",
        "transolver_contact_train",
        "torch_transolver_contact_over_transolver_contact_train",
        "PyTorch port step / this",
    )
    compare(
        "torch_unisoma_infer",
        "unisoma_infer",
        "torch_unisoma_over_unisoma_infer",
        "PyTorch port forward / this",
    )
    for torch_name, jax_name, key in (
        (
            "torch_transolver_contact_train",
            "transolver_contact_train",
            "torch_transolver_contact_over_transolver_contact_train",
        ),
        ("torch_unisoma_infer", "unisoma_infer", "torch_unisoma_over_unisoma_infer"),
    ):
        if torch_name in by_name and jax_name in by_name:
            ours = results["entries"][jax_name]["num_params"]
            theirs = results["entries"][torch_name]["num_params"]
            results["comparisons"][key]["num_params"] = {
                "jax": ours,
                "torch": theirs,
                "equal": ours == theirs,
            }
            note(torch_name, f"params {'=' if ours == theirs else '!='} ours")

    cfg = results["config"]
    title = (
        "Multi-solid contact and FSI (issue 6): simulator seconds per sample vs surrogate "
        f"inference (batch {cfg['batch']}, eval mode, jitted) and training (the library's "
        f"train step, experiments' loss and AdamW, batch Unisoma {cfg['train_batch']['unisoma']}, "
        f"Fisale {cfg['train_batch']['fisale']}); contact "
        f"generator: {cfg['gen_batch']} scenes per call (one sample = one scene); FSI "
        f"generator: {cfg['fsi_trajectories']} trajectories x {cfg['fsi_frames']} frames per "
        f"call, warm-up removed (one sample = one recorded frame); {cfg['rounds']} interleaved "
        f"rounds; ms median [q1-q3]; sim/this = simulator s/sample over the model's inference "
        f"s/sample; GFLOP/s from XLA's count (share of the matmul rate around each call). "
        f"{harness.contention_note(results['contention']['main'])}"
    )
    table = harness.format_table(
        [
            "entry",
            "samples/call",
            "params",
            "ms/call",
            "ms/sample",
            "samples/s",
            "steps/s",
            "compile s",
            "first call ms",
            "GFLOP/s",
            "notes",
        ],
        rows,
    )
    return f"{title}\n{table}"
