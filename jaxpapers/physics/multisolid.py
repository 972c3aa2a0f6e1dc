"""Multi-solid experiments: Unisoma and the implicit baseline on contact data.

Data (``config.data``):

* ``source="synthetic"`` (default, offline): :mod:`jaxpapers.physics.generators.contact`
  solves ``num_train + num_valid + num_test`` scenes of ``num_deformables`` elastic blocks
  pressed by ``num_rigids`` rigid bodies (2D, quasi-static, ``num_load_steps`` increments).
* ``source="unisoma_files"``: Unisoma's released pickles for ``data.dataset`` in
  ``data.data_dir`` (:mod:`jaxpapers.physics.multisolid_files`; 3D).

Both give the same per-object arrays (``deformable_{i}/init``, ``/final``, ``/stress``,
``/steps``, ``rigid_{j}/init``, ``/final``, ``/steps``, optionally ``load_{k}``).

Datasets whose samples differ in their number of points (Unisoma's deforming plate has its own
mesh per sample; the reader returns such keys as 1-D ``object`` arrays) are padded and masked
(:func:`pad_objects`), since the trainer batches fixed shapes where the reference trains them
with batch size 1. Every object that is ragged in some split (``deformable_{i}``,
``rigid_{j}`` or ``load_{k}``; all its keys together) is zero-padded, in every split, to its
largest point count over all splits, and gets ``<object>/mask`` ``(N, P)`` float32 (1 real, 0
padded point); objects with one point count per split stay exactly as they are, without a
mask. The :class:`Scene` then has ``masked=True``; the example builders carry the masks into
the batches as ``mask_{object}`` (``mask_deformable_0``, ``mask_rigid_1``, ``mask_load_0``),
the normalisers are fitted on the real points only, :func:`call` hands the masks to the model
(padded points get zero slice weight in every slicing, so the outputs at the real points do
not depend on the padding), and the losses, ``rel_l2`` metrics, :func:`rollout` (increments at
padded points are zeroed) and :func:`rollout_rmse` count real points only. Data without ragged
objects (the synthetic default) runs exactly as before.

Material (synthetic data; a choice, the reference's datasets have one material each): every
generated block has its own Young's modulus E (log-uniform over a factor 100) and Poisson
ratio ν. They are model inputs: each deformable node carries ``[log E, ν]`` of its block
(``deformable_{i}/material``, normalised like every input), since without them neither the
split of a punch's displacement between stacked blocks nor the stress level is determined by
the inputs. The stress target is the block's von Mises stress *over its E* (σ/E, a
strain-like number): for a prescribed punch motion σ scales with E, so σ in MPa spans the
modulus range (per-scene norms 4–1,050 MPa on the default) and a global normaliser cannot
serve the soft blocks; σ/E spans a factor 6.5. ``rel_l2_stress`` is per object, so it is the
same for σ/E as for σ (E is one number per block).

Tasks (``data.task``), as Unisoma's two settings:

* ``"longtime"`` — from the initial configuration and the loads, predict each deformable's
  final displacement and stress in one shot. Inputs as the reference's loaders: a rigid body
  is its initial points; a load is the rigid body's points at the start and at the end
  (``[x₀, x_T]`` per point: the reference's ``load[:, 3:] += load[:, :3]``), unless the data
  defines its own loads. Targets: ``[x_T − x₀, σ]`` per node. Every input and target is
  normalised per object and channel on the training split (:class:`fields.Normalizer`); the
  loss is the relative L2 of positions plus the relative L2 of each extra field, summed over
  deformables (the reference's ``pos_loss + stress_loss (+ peeq_loss)``). Evaluation
  de-normalises: ``rel_l2`` is the relative L2 of the predicted *final positions*
  ``x₀ + Δx̂`` (the reference's evaluation criterion), averaged over deformables;
  ``rel_l2_disp`` the same for displacements (which the positions' large norm hides) and
  ``rel_l2_stress`` for stress.
* ``"rollout"`` — one load increment at a time: the state at frame t (node positions), the
  rigid bodies at t and the loads (the reference's ``[r_t, r_{t+1} − r_t]`` per rigid point) →
  the position increment and
  stress at t + 1. Training adds Gaussian noise of ``data.noise_std`` (normalised units, 1e-3
  in the reference) to the input positions and asks for the increment to the true next frame
  from the noisy one (the standard noise-injection of learned simulators); the loss is the
  MSE of normalised targets (the reference's "ggns" MSE). Evaluation rolls the model out from
  the rest state through every frame of each test scene; ``rollout_rmse`` is the per-frame
  position RMSE averaged over frames (``rollout_rmse_last`` at the final frame) and the one-step
  ``rel_l2`` is reported beside it.

Models (``config.model.name``): ``unisoma`` (explicit: per-object encoders and the contact /
load triplets of :class:`~jaxpapers.physics.unisoma.Unisoma`) and ``transolver`` (implicit:
every point of every object in one set, :class:`Implicit`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import plotting
from jaxpapers.core import train as train_lib
from jaxpapers.data import pipeline
from jaxpapers.physics import fields, implicit, unisoma
from jaxpapers.physics.stretch import loop_config, num_steps, steps_per_epoch

SPLITS = ("train", "valid", "test")
TASKS = ("longtime", "rollout")
MODELS = ("unisoma", "transolver")


def data_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "source": "synthetic",  # synthetic | unisoma_files
            "data_dir": "",  # unisoma_files: the folder holding the released pickles
            "dataset": "bilateral_stamping",  # unisoma_files: one of multisolid_files.DATASETS
            "task": "longtime",  # longtime | rollout
            "num_deformables": 2,  # synthetic: 1..3 stacked blocks
            "num_rigids": 2,  # synthetic: a die and punches
            "material": "neo_hookean",  # synthetic: neo_hookean | linear
            "num_load_steps": 8,  # synthetic: frames of the quasi-static loading
            "nx": 16,  # synthetic: elements per block along x (even) and y
            "ny": 5,
            "num_train": 400,
            "num_valid": 50,
            "num_test": 100,
            "noise_std": 1e-3,  # rollout: input noise in normalised units
            "seed": 0,
            "cache_dir": "",  # synthetic: keep generated scenes here, reuse them ("": off)
        }
    )


def model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "unisoma",  # unisoma | transolver
            "emb_dim": 128,
            "slice_num": 32,
            "num_heads": 8,
            "mlp_ratio": 4,
            "num_processors": 2,  # unisoma
            "num_layers": 4,  # transolver
        }
    )


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Scene:
    """What the models need to know about a dataset's objects."""

    num_deformables: int
    num_rigids: int
    num_loads: int
    contact_pairs: tuple[tuple[int, int], ...]
    coord_dim: int
    fields: tuple[str, ...]  # extra per-node targets beside the displacement, e.g. ("stress",)
    material_dim: int = 0  # per-node material inputs of each deformable (``material_{i}``)
    masked: bool = False  # padded objects: batches carry ``mask_{object}`` (see pad_objects)


def _generator_config(data):
    from jaxpapers.physics.generators import contact  # pylint: disable=g-import-not-at-top

    return contact.ContactConfig(
        num_deformables=int(data.num_deformables),
        num_rigids=int(data.num_rigids),
        material=str(data.material),
        num_load_steps=int(data.num_load_steps),
        nx=int(data.nx),
        ny=int(data.ny),
    )


def load_raw(data) -> tuple[dict[str, dict[str, np.ndarray]], Scene]:
    """``(split -> per-object arrays, scene)`` from the generator or the released files."""
    if data.task not in TASKS:
        raise ValueError(f"data.task must be one of {TASKS}, got {data.task!r}")
    if data.source == "synthetic":
        from jaxpapers.physics.generators import contact  # pylint: disable=g-import-not-at-top

        gen = _generator_config(data)
        sizes = (int(data.num_train), int(data.num_valid), int(data.num_test))
        if min(sizes) <= 0:
            raise ValueError(f"data.num_train/num_valid/num_test must be positive, got {sizes}")
        raw = _generate_cached(gen, sum(sizes), int(data.seed), str(data.cache_dir))
        splits, start = {}, 0
        for split, n in zip(SPLITS, sizes):
            splits[split] = {k: np.asarray(v[start : start + n]) for k, v in raw.items()}
            start += n
        pairs = tuple(tuple(int(i) for i in p) for p in contact.contact_pairs(gen))
        num_rigids = int(data.num_rigids)
        for arrays in splits.values():
            _add_material(arrays, contact.param_names(gen))
    elif data.source == "unisoma_files":
        from jaxpapers.physics import multisolid_files  # pylint: disable=g-import-not-at-top

        spec = multisolid_files.DATASETS.get(data.dataset)
        if spec is None:
            raise ValueError(
                f"data.dataset must be one of {sorted(multisolid_files.DATASETS)}, "
                f"got {data.dataset!r}"
            )
        splits = {s: multisolid_files.read_split(data.data_dir, data.dataset, s) for s in SPLITS}
        pairs = tuple(tuple(int(i) for i in p) for p in spec.contact_pairs)
        num_rigids = _count(splits["train"], "rigid")
    else:
        raise ValueError(f"data.source must be 'synthetic' or 'unisoma_files', got {data.source!r}")
    splits = pad_objects(splits)
    train = splits["train"]
    num_deformables = _count(train, "deformable")
    for arrays in splits.values():
        _add_loads(arrays, num_rigids)
    if data.source == "synthetic":
        fields_ = tuple(
            k.split("/", 1)[1]
            for k in sorted(train)
            if k.startswith("deformable_0/")
            and k.split("/", 1)[1] not in ("init", "final", "steps", "material", "mask")
            and not k.endswith("_steps")
        )
    else:  # the reference's channel order, e.g. (stress, peeq)
        fields_ = tuple(spec.fields)
    if data.task == "rollout":  # per-frame targets exist only for fields with trajectories
        fields_ = tuple(f for f in fields_ if f"deformable_0/{f}_steps" in train)
    if data.task == "rollout" and "deformable_0/steps" not in train:
        raise ValueError("data.task='rollout' needs per-step trajectories ('deformable_i/steps')")
    scene = Scene(
        num_deformables=num_deformables,
        num_rigids=num_rigids,
        num_loads=_count(train, "load"),
        contact_pairs=pairs,
        coord_dim=int(train["deformable_0/init"].shape[-1]),
        fields=fields_,
        material_dim=int(train["deformable_0/material"].shape[-1])
        if "deformable_0/material" in train
        else 0,
        masked=any(k.endswith("/mask") for k in train),
    )
    return splits, scene


_OBJECT = re.compile(r"^(deformable|rigid|load)_\d+$")


def _object_of(key: str) -> str | None:
    """``deformable_0/init`` -> ``deformable_0``, ``load_1`` -> ``load_1``; None otherwise."""
    name = key.split("/", 1)[0]
    return name if _OBJECT.match(name) else None


def _samples(values: np.ndarray) -> list[np.ndarray]:
    """The per-sample arrays of a stacked ``(N, ...)`` or a ragged 1-D ``object`` array."""
    return [np.asarray(v) for v in values]


def pad_objects(
    splits: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, dict[str, np.ndarray]]:
    """Zero-pads every object whose samples differ in point count; adds ``<object>/mask``.

    An object (``deformable_{i}``, ``rigid_{j}``, ``load_{k}``, with all its keys) is padded
    when any of its keys is a ragged 1-D ``object`` array (one per-sample array each, as
    :func:`~jaxpapers.physics.multisolid_files.read_split` returns them) in any split. It is
    then padded with zeros in every split to its largest point count over all splits, and
    ``<object>/mask`` ``(N, P)`` float32 marks the real points (1) and the padding (0). The
    point axis of a sample is its first axis, or its second for per-frame keys (names ending
    in ``steps``: ``(F, P, ...)``). Objects that are not ragged anywhere are left as they are
    and get no mask (a different but fixed count per split needs no padding: the models take
    any number of points).

    Returns new dicts (the arrays of unpadded objects are shared with the input); raises
    ``ValueError`` for a ragged key that belongs to no object or keys of one object that
    disagree on a sample's point count.
    """
    out = {split: dict(arrays) for split, arrays in splits.items()}
    ragged = sorted({k for a in splits.values() for k, v in a.items() if v.dtype == object})
    strays = [k for k in ragged if _object_of(k) is None]
    if strays:
        raise ValueError(
            f"keys {strays} differ in shape between samples but belong to no object "
            "(deformable_i/..., rigid_j/..., load_k); only objects' points can be padded"
        )
    for obj in sorted({_object_of(k) for k in ragged}):
        counts: dict[str, np.ndarray] = {}
        for split, arrays in splits.items():
            keys = sorted(k for k in arrays if _object_of(k) == obj)
            per_key = {}
            for k in keys:
                axis = 1 if k.endswith("steps") else 0
                per_key[k] = np.array([v.shape[axis] for v in _samples(arrays[k])], np.int64)
            if not per_key:
                continue
            first = per_key[keys[0]]
            for k in keys[1:]:
                if not np.array_equal(per_key[k], first):
                    bad = int(np.argmax(per_key[k] != first))
                    raise ValueError(
                        f"{split} sample {bad}: {obj}'s keys disagree on its number of points "
                        f"({keys[0]}: {first[bad]}, {k}: {per_key[k][bad]})"
                    )
            counts[split] = first
        width = int(max(c.max() for c in counts.values()))
        for split, arrays in splits.items():
            if split not in counts:
                continue
            for k in sorted(k for k in arrays if _object_of(k) == obj):
                axis = 1 if k.endswith("steps") else 0
                padded = []
                for v in _samples(arrays[k]):
                    pad = [(0, 0)] * v.ndim
                    pad[axis] = (0, width - v.shape[axis])
                    padded.append(np.pad(v.astype(np.float32), pad))
                out[split][k] = np.stack(padded)
            mask = np.arange(width)[None, :] < counts[split][:, None]
            out[split][f"{obj}/mask"] = mask.astype(np.float32)
    return out


def _generate_cached(gen, num: int, seed: int, cache_dir: str) -> dict[str, np.ndarray]:
    """``contact.generate`` of ``num`` scenes, read from / written to ``cache_dir`` if set.

    The file name hashes the generator config, the count and the seed, so any change makes a
    new file; it is written to a temporary name and renamed (an interrupted write leaves no
    partial file behind).
    """
    from jaxpapers.physics.generators import contact  # pylint: disable=g-import-not-at-top

    def generate():
        return jax.device_get(contact.generate(jax.random.key(seed, impl="rbg"), num, gen))

    if not cache_dir:
        return generate()
    spec = json.dumps([dataclasses.asdict(gen), num, seed, "contact-v1"], sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"contact-{digest}.npz")
    if os.path.exists(path):
        logging.info("multi-solid data: reading the cached scenes %s", path)
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    raw = generate()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in raw.items()})
    os.replace(tmp, path)
    logging.info("multi-solid data: cached the scenes in %s", path)
    return raw


def _add_material(arrays: dict[str, np.ndarray], param_names: Sequence[str]) -> None:
    """Per-node ``[log E, ν]`` of each generated block, and its stress as σ/E (see above)."""
    params = arrays["params"]
    for i in range(_count(arrays, "deformable")):
        youngs = params[:, param_names.index(f"block{i}_youngs_modulus")]
        poisson = params[:, param_names.index(f"block{i}_poisson_ratio")]
        points = arrays[f"deformable_{i}/init"].shape[1]
        per_block = np.stack([np.log(youngs), poisson], -1)  # (N, 2)
        arrays[f"deformable_{i}/material"] = np.repeat(per_block[:, None], points, axis=1)
        for key in (f"deformable_{i}/stress", f"deformable_{i}/stress_steps"):
            if key in arrays:
                scale = youngs.reshape((-1,) + (1,) * (arrays[key].ndim - 1))
                arrays[key] = arrays[key] / scale


def _count(arrays: Mapping[str, np.ndarray], kind: str) -> int:
    n = 0
    while any(k.startswith(f"{kind}_{n}/") or k == f"{kind}_{n}" for k in arrays):
        n += 1
    return n


def _add_loads(arrays: dict[str, np.ndarray], num_rigids: int) -> None:
    """The reference's loads when the data has none: each rigid body's start and end points."""
    if any(k.startswith("load_") for k in arrays):
        return
    for j in range(num_rigids):
        arrays[f"load_{j}"] = np.concatenate(
            [arrays[f"rigid_{j}/init"], arrays[f"rigid_{j}/final"]], axis=-1
        )
        if f"rigid_{j}/mask" in arrays:  # a padded rigid body: its load has its points
            arrays[f"load_{j}/mask"] = arrays[f"rigid_{j}/mask"]


def longtime_examples(raw: Mapping[str, np.ndarray], scene: Scene) -> dict[str, np.ndarray]:
    """Un-normalised model inputs and targets of the long-time task, one row per scene."""
    out = {}
    for k in range(scene.num_loads):
        out[f"load_{k}"] = raw[f"load_{k}"]
    for j in range(scene.num_rigids):
        out[f"rigid_{j}"] = raw[f"rigid_{j}/init"]
    for i in range(scene.num_deformables):
        init, final = raw[f"deformable_{i}/init"], raw[f"deformable_{i}/final"]
        extra = [raw[f"deformable_{i}/{f}"][..., None] for f in scene.fields]
        out[f"deformable_{i}"] = init
        out[f"target_{i}"] = np.concatenate([final - init, *extra], axis=-1)
        if scene.material_dim:
            out[f"material_{i}"] = raw[f"deformable_{i}/material"]
    if scene.masked:
        for obj in _objects(scene):
            if f"{obj}/mask" in raw:
                out[f"mask_{obj}"] = raw[f"{obj}/mask"]
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _objects(scene: Scene) -> list[str]:
    """The model's objects: ``load_k``, ``rigid_j``, ``deformable_i``."""
    return [
        *(f"load_{k}" for k in range(scene.num_loads)),
        *(f"rigid_{j}" for j in range(scene.num_rigids)),
        *(f"deformable_{i}" for i in range(scene.num_deformables)),
    ]


def _mask_key(name: str) -> str:
    """The batch mask of a model array: ``target_1`` / ``material_1`` -> ``mask_deformable_1``."""
    kind, index = name.rsplit("_", 1)
    if kind in ("target", "material"):
        kind = "deformable"
    return f"mask_{kind}_{index}"


def rollout_examples(raw: Mapping[str, np.ndarray], scene: Scene) -> dict[str, np.ndarray]:
    """Un-normalised one-increment examples: every (scene, frame t) pair, t → t + 1."""
    out = {}
    for j in range(scene.num_rigids):
        steps = raw[f"rigid_{j}/steps"]  # (N, T+1, Q, c)
        out[f"rigid_{j}"] = _pairs(steps[:, :-1])
        out[f"load_{j}"] = _pairs(rollout_loads(steps))
    for i in range(scene.num_deformables):
        steps = raw[f"deformable_{i}/steps"]
        extra = [raw[f"deformable_{i}/{f}_steps"][:, 1:, :, None] for f in scene.fields]
        out[f"deformable_{i}"] = _pairs(steps[:, :-1])
        out[f"target_{i}"] = _pairs(np.concatenate([steps[:, 1:] - steps[:, :-1], *extra], -1))
        if scene.material_dim:
            material = raw[f"deformable_{i}/material"][:, None]
            out[f"material_{i}"] = _pairs(np.repeat(material, steps.shape[1] - 1, axis=1))
    if scene.masked:  # the per-scene masks of every pair (a load has its rigid body's points)
        frames = raw["deformable_0/steps"].shape[1] - 1
        for obj, source in [
            *((f"rigid_{j}", f"rigid_{j}") for j in range(scene.num_rigids)),
            *((f"load_{j}", f"rigid_{j}") for j in range(scene.num_rigids)),
            *((f"deformable_{i}", f"deformable_{i}") for i in range(scene.num_deformables)),
        ]:
            if f"{source}/mask" in raw:
                out[f"mask_{obj}"] = np.repeat(raw[f"{source}/mask"], frames, axis=0)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def rollout_loads(rigid_steps: np.ndarray) -> np.ndarray:
    """The reference's rollout loads ``[r_t, r_{t+1} − r_t]``: ``(N, F, Q, c) -> (N, F−1, Q, 2c)``."""
    now, nxt = rigid_steps[:, :-1], rigid_steps[:, 1:]
    return np.concatenate([now, nxt - now], axis=-1)


def _pairs(x: np.ndarray) -> np.ndarray:
    return x.reshape((-1,) + x.shape[2:])


@dataclasses.dataclass(frozen=True)
class Prepared:
    arrays: dict[str, dict[str, np.ndarray]]  # split -> normalised model arrays
    raw: dict[str, dict[str, np.ndarray]]  # split -> the per-object source arrays
    normalizers: dict[str, fields.Normalizer]  # model array name -> its normaliser
    scene: Scene


def prepare(data, raw: Mapping[str, Mapping[str, np.ndarray]], scene: Scene) -> Prepared:
    build = longtime_examples if data.task == "longtime" else rollout_examples
    examples = {s: build(raw[s], scene) for s in raw}
    train = examples["train"]
    if scene.masked:  # masks are not normalised; the fits see the real points only
        norms = {
            k: fields.Normalizer.fit(v, train.get(_mask_key(k)))
            for k, v in train.items()
            if not k.startswith("mask_")
        }
        arrays = {
            s: {k: norms[k](v) if k in norms else v for k, v in ex.items()}
            for s, ex in examples.items()
        }
    else:
        norms = {k: fields.Normalizer.fit(v) for k, v in train.items()}
        arrays = {s: {k: norms[k](v) for k, v in ex.items()} for s, ex in examples.items()}
    return Prepared(arrays, {s: dict(r) for s, r in raw.items()}, norms, scene)


# --------------------------------------------------------------------------- models


class Implicit(nnx.Module):
    """The implicit baseline with Unisoma's call signature.

    Every point of every object goes into one Transolver as a single set
    (:func:`implicit.concat_objects`: features zero-padded to a common width, plus a
    one-hot object id); the outputs at the deformables' points are cut back per object.
    """

    def __init__(self, scene: Scene, *, in_dim: int, out_dim: int, m, rngs: nnx.Rngs):
        num_objects = scene.num_loads + scene.num_rigids + scene.num_deformables
        self.model = implicit.ObjectsTransolver(
            num_objects=num_objects,
            in_dim=in_dim,
            out_dim=out_dim,
            rngs=rngs,
            **transolver_kwargs(m),
        )

    def __call__(
        self,
        loads,
        rigids,
        deformables,
        *,
        load_masks=None,
        rigid_masks=None,
        deformable_masks=None,
    ):
        objects = [*loads, *rigids, *deformables]
        if load_masks is None and rigid_masks is None and deformable_masks is None:
            out = self.model(objects)
        else:
            masks = [
                *(load_masks or [None] * len(loads)),
                *(rigid_masks or [None] * len(rigids)),
                *(deformable_masks or [None] * len(deformables)),
            ]
            out = self.model(objects, masks)
        return out[len(loads) + len(rigids) :]


def transolver_kwargs(m) -> dict[str, int]:
    """The implicit baseline's sizes from ``config.model``."""
    keys = ("emb_dim", "num_layers", "num_heads", "slice_num", "mlp_ratio")
    return {k: int(m[k]) for k in keys}


def make_model(m, scene: Scene, rngs: nnx.Rngs) -> nnx.Module:
    c = scene.coord_dim
    out_dim = c + len(scene.fields)
    if m.name == "unisoma":
        return unisoma.Unisoma(
            load_dim=2 * c,
            rigid_dim=c,
            deformable_in_dim=c + scene.material_dim,
            deformable_out_dim=out_dim,
            num_loads=scene.num_loads,
            num_rigids=scene.num_rigids,
            num_deformables=scene.num_deformables,
            contact_pairs=scene.contact_pairs,
            emb_dim=int(m.emb_dim),
            slice_num=int(m.slice_num),
            num_processors=int(m.num_processors),
            num_heads=int(m.num_heads),
            mlp_ratio=int(m.mlp_ratio),
            rngs=rngs,
        )
    if m.name == "transolver":
        in_dim = max(2 * c, c + scene.material_dim)
        return Implicit(scene, in_dim=in_dim, out_dim=out_dim, m=m, rngs=rngs)
    raise ValueError(f"model.name must be one of {MODELS}, got {m.name!r}")


def call(model, batch, scene: Scene):
    """The model's per-deformable outputs on a batch of normalised arrays."""
    deformables = [batch[f"deformable_{i}"] for i in range(scene.num_deformables)]
    if scene.material_dim:
        deformables = [
            jnp.concatenate([x, batch[f"material_{i}"]], axis=-1) for i, x in enumerate(deformables)
        ]
    loads = [batch[f"load_{k}"] for k in range(scene.num_loads)]
    rigids = [batch[f"rigid_{j}"] for j in range(scene.num_rigids)]
    if not scene.masked:
        return model(loads, rigids, deformables)
    return model(
        loads,
        rigids,
        deformables,
        load_masks=[batch.get(f"mask_load_{k}") for k in range(scene.num_loads)],
        rigid_masks=[batch.get(f"mask_rigid_{j}") for j in range(scene.num_rigids)],
        deformable_masks=[batch.get(f"mask_deformable_{i}") for i in range(scene.num_deformables)],
    )


def _deformable_mask(batch, scene: Scene, i: int):
    """Deformable i's point mask in ``batch``, or None (unpadded)."""
    return batch.get(f"mask_deformable_{i}") if scene.masked else None


# --------------------------------------------------------------------------- losses, metrics


def longtime_loss(outputs, batch, scene: Scene):
    """Σ over deformables of rel-L2(positions) + Σ rel-L2(each extra field) (normalised).

    Padded points (``mask_deformable_i``) do not count.
    """
    c = scene.coord_dim
    total, metrics = 0.0, {}
    for i, pred in enumerate(outputs):
        true = batch[f"target_{i}"]
        mask = _deformable_mask(batch, scene, i)
        pos = jnp.mean(fields.relative_l2(pred[..., :c], true[..., :c], mask))
        total = total + pos
        metrics[f"pos_loss_{i}"] = pos
        for f_index, name in enumerate(scene.fields):
            sl = slice(c + f_index, c + f_index + 1)
            term = jnp.mean(fields.relative_l2(pred[..., sl], true[..., sl], mask))
            total = total + term
            metrics[f"{name}_loss_{i}"] = term
    return total, metrics


def rollout_loss(outputs, batch, scene: Scene):
    """Mean over deformables of the MSE of normalised targets (the reference's rollout loss).

    With padded points (``mask_deformable_i``) the mean is over the real points only.
    """
    terms = []
    for i, pred in enumerate(outputs):
        err = (pred - batch[f"target_{i}"]) ** 2
        mask = _deformable_mask(batch, scene, i)
        if mask is None:
            terms.append(jnp.mean(err))
        else:
            keep = mask[..., None] > 0
            total = jnp.sum(jnp.where(keep, err, 0.0))
            terms.append(total / (jnp.maximum(jnp.sum(mask), 1.0) * err.shape[-1]))
    total = sum(terms) / len(terms)
    return total, {f"mse_{i}": t for i, t in enumerate(terms)}


def _denorm(x, norm: fields.Normalizer):
    return x * jnp.asarray(norm.std) + jnp.asarray(norm.mean)


def summarize_fn(scene: Scene):
    """Host-side metrics from de-normalised predictions (``pred_i``, ``true_i``, ``init_i``).

    ``mask_i`` (padded data) restricts every relative L2 to the real points.
    """
    c = scene.coord_dim

    def summarize(out):
        result, pos, disp, extra = {}, [], [], {f: [] for f in scene.fields}
        for i in range(scene.num_deformables):
            pred = np.asarray(out[f"pred_{i}"], np.float64)
            true = np.asarray(out[f"true_{i}"], np.float64)
            init = np.asarray(out[f"init_{i}"], np.float64)
            mask = np.asarray(out[f"mask_{i}"]) if f"mask_{i}" in out else None
            p = fields.relative_l2(init + pred[..., :c], init + true[..., :c], mask).mean()
            d = fields.relative_l2(pred[..., :c], true[..., :c], mask).mean()
            result[f"rel_l2_d{i}"] = float(p)
            pos.append(p)
            disp.append(d)
            for f_index, name in enumerate(scene.fields):
                sl = slice(c + f_index, c + f_index + 1)
                extra[name].append(fields.relative_l2(pred[..., sl], true[..., sl], mask).mean())
        result["rel_l2"] = float(np.mean(pos))
        result["rel_l2_disp"] = float(np.mean(disp))
        for name, v in extra.items():
            result[f"rel_l2_{name}"] = float(np.mean(v))
        result["num_examples"] = int(len(out["init_0"]))
        return result

    return summarize


def _noise_transform(scene: Scene, prepared_norms, std: float):
    """Rollout training noise on the input positions; the targets follow the noisy input."""

    def transform(batch, rng):
        for i in range(scene.num_deformables):
            x = batch[f"deformable_{i}"]
            noise = rng.normal(0.0, std, size=x.shape).astype(np.float32)
            batch[f"deformable_{i}"] = x + noise
            # The increment in physical units shrinks by the noise (also physical units).
            n_in, n_out = prepared_norms[f"deformable_{i}"], prepared_norms[f"target_{i}"]
            c = x.shape[-1]
            phys = noise * n_in.std
            target = batch[f"target_{i}"].copy()
            target[..., :c] -= phys / n_out.std[:c]
            batch[f"target_{i}"] = target
        return batch

    return transform


# --------------------------------------------------------------------------- training


def optimizer(config, steps: int):
    """The reference's AdamW with a cosine from ``lr`` to ``lr / lr_decay`` over training."""
    o = config.optim
    lr = float(o.learning_rate)
    schedule = optax.cosine_decay_schedule(lr, steps, alpha=1.0 / float(o.lr_decay))
    return optax.adamw(schedule, weight_decay=float(o.weight_decay))


def make_task(config, prepared: Prepared) -> tuple[train_lib.Task, int, int]:
    scene, norms = prepared.scene, prepared.normalizers
    train = prepared.arrays["train"]
    per_epoch = steps_per_epoch(len(train["deformable_0"]), config.train.batch_size)
    steps = num_steps(config, per_epoch)
    epochs = math.ceil(steps / per_epoch)
    loss = longtime_loss if config.data.task == "longtime" else rollout_loss

    def loss_fn(model, batch):
        return loss(call(model, batch, scene), batch, scene)

    def eval_fn(model, batch):
        outputs = call(model, batch, scene)
        out = {}
        for i, pred in enumerate(outputs):
            out[f"pred_{i}"] = _denorm(pred, norms[f"target_{i}"])
            out[f"true_{i}"] = _denorm(batch[f"target_{i}"], norms[f"target_{i}"])
            out[f"init_{i}"] = _denorm(batch[f"deformable_{i}"], norms[f"deformable_{i}"])
            mask = _deformable_mask(batch, scene, i)
            if mask is not None:
                out[f"mask_{i}"] = mask
        return out

    transform = None
    if config.data.task == "rollout" and config.data.noise_std > 0:
        transform = _noise_transform(scene, norms, float(config.data.noise_std))
    task = train_lib.Task(
        init_model=lambda rngs: make_model(config.model, scene, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarize_fn(scene),
        optimizer=optimizer(config, steps),
        rng_impl=config.rng_impl or None,
        train_data=pipeline.train_batches(
            train,
            config.train.batch_size,
            num_epochs=epochs,
            seed=config.seed,
            transform=transform,
        ),
        eval_data={
            s: pipeline.eval_batches(prepared.arrays[s], config.eval_batch_size)
            for s in ("valid", "test")
        },
    )
    return task, steps, per_epoch


# --------------------------------------------------------------------------- rollout


def rollout(model, prepared: Prepared, split: str = "test", batch_size: int = 32) -> np.ndarray:
    """Autoregressive positions ``(N, T+1, P_i, c)`` per deformable from the rest state.

    Each increment feeds the model its own previous prediction (the rigid bodies and loads
    follow their prescribed motion). Padded data: the batches carry the masks, and padded
    points keep their (zero) padding value: their predicted increments are discarded.
    """
    scene, norms, raw = prepared.scene, prepared.normalizers, prepared.raw[split]
    graphdef, state = nnx.split(model)
    frames = raw["deformable_0/steps"].shape[1]
    n = raw["deformable_0/steps"].shape[0]
    preds = [np.zeros_like(raw[f"deformable_{i}/steps"]) for i in range(scene.num_deformables)]
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        current = [raw[f"deformable_{i}/steps"][rows, 0] for i in range(scene.num_deformables)]
        for i in range(scene.num_deformables):
            preds[i][rows, 0] = current[i]
        for t in range(frames - 1):
            batch = {}
            for j in range(scene.num_rigids):
                steps = raw[f"rigid_{j}/steps"][rows]
                batch[f"rigid_{j}"] = norms[f"rigid_{j}"](steps[:, t])
                batch[f"load_{j}"] = norms[f"load_{j}"](rollout_loads(steps[:, t : t + 2])[:, 0])
                if scene.masked and f"rigid_{j}/mask" in raw:  # a load has its body's points
                    rigid_mask = raw[f"rigid_{j}/mask"][rows]
                    batch[f"mask_rigid_{j}"] = batch[f"mask_load_{j}"] = rigid_mask
            for i in range(scene.num_deformables):
                batch[f"deformable_{i}"] = norms[f"deformable_{i}"](current[i])
                if scene.material_dim:
                    material = raw[f"deformable_{i}/material"][rows]
                    batch[f"material_{i}"] = norms[f"material_{i}"](material)
                if scene.masked and f"deformable_{i}/mask" in raw:
                    batch[f"mask_deformable_{i}"] = raw[f"deformable_{i}/mask"][rows]
            outs = _predict(graphdef, state, batch, scene)
            for i in range(scene.num_deformables):
                inc = norms[f"target_{i}"].inverse(np.asarray(outs[i]))[..., : scene.coord_dim]
                if f"mask_deformable_{i}" in batch:
                    inc = np.where(batch[f"mask_deformable_{i}"][..., None] > 0, inc, 0.0)
                current[i] = current[i] + inc
                preds[i][rows, t + 1] = current[i]
    return preds


def _predict(graphdef, state, batch, scene):
    """The model's outputs on a host batch of normalised arrays (jitted per scene)."""
    return _predict_jit(graphdef, state, {k: jnp.asarray(v) for k, v in batch.items()}, scene)


@functools.partial(jax.jit, static_argnums=(3,))
def _predict_jit(graphdef, state, batch, scene):
    model = nnx.merge(graphdef, state)
    return call(model, batch, scene)


def rollout_rmse(preds: Sequence[np.ndarray], raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-frame position RMSE over every deformable node of every scene: ``(T+1,)``.

    Padded data (``deformable_i/mask`` in ``raw``): over the real nodes only.
    """
    err, count = 0.0, 0
    for i, pred in enumerate(preds):
        true = raw[f"deformable_{i}/steps"]
        mask = raw.get(f"deformable_{i}/mask")
        if mask is None:
            err = err + np.sum((pred - true) ** 2, axis=(0, 2, 3))
            count += true.shape[0] * true.shape[2]
        else:
            sq = np.where(mask[:, None, :, None] > 0, (pred - true) ** 2, 0.0)
            err = err + np.sum(sq, axis=(0, 2, 3))
            count += int(np.sum(mask > 0))
    return np.sqrt(err / count)


# --------------------------------------------------------------------------- plots


def plot_fields(
    path: str, scene: Scene, raw: Mapping[str, np.ndarray], pred_final, row: int, title: str
) -> str:
    """True vs predicted final configuration of one test scene, coloured by the first field.

    ``pred_final[i]``: predicted ``(P_i, c + F)`` displacement and fields of deformable i.
    2D data only (the synthetic default); 3D data is drawn in its x–y projection. Padded
    points (``<object>/mask`` in ``raw``) are not drawn.
    """

    def real(obj: str, x: np.ndarray) -> np.ndarray:
        mask = raw.get(f"{obj}/mask")
        return x if mask is None else np.asarray(x)[mask[row] > 0]

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    c = scene.coord_dim
    values = []
    for i in range(scene.num_deformables):
        if scene.fields:
            values.append(real(f"deformable_{i}", raw[f"deformable_{i}/{scene.fields[0]}"][row]))
            values.append(real(f"deformable_{i}", pred_final[i][:, c]))
    vmin, vmax = (min(v.min() for v in values), max(v.max() for v in values)) if values else (0, 1)
    for ax, which in zip(axes, ("true", "predicted")):
        for j in range(scene.num_rigids):
            pts = real(f"rigid_{j}", raw[f"rigid_{j}/final"][row])
            ax.plot(pts[:, 0], pts[:, 1], ".", color="0.5", ms=2)
        for i in range(scene.num_deformables):
            init = raw[f"deformable_{i}/init"][row]
            if which == "true":
                pos = raw[f"deformable_{i}/final"][row]
                val = raw[f"deformable_{i}/{scene.fields[0]}"][row] if scene.fields else None
            else:
                pos = init + pred_final[i][:, :c]
                val = pred_final[i][:, c] if scene.fields else None
            obj = f"deformable_{i}"
            pos, val = real(obj, pos), None if val is None else real(obj, val)
            sc = ax.scatter(pos[:, 0], pos[:, 1], c=val, s=8, vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(which)
        ax.set_aspect("equal")
    if scene.fields:
        label = scene.fields[0] + (" / E" if scene.material_dim else "")  # σ/E: see above
        fig.colorbar(sc, ax=list(axes), label=label, shrink=0.8)
    fig.suptitle(title)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_rollout(path: str, per_frame: Mapping[str, np.ndarray], title: str) -> str:
    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, curve in per_frame.items():
        ax.plot(np.arange(len(curve)), curve, marker="o", ms=3, label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel("position RMSE")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------- entry point


def count_params(model) -> int:
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def run(config, workdir: str) -> dict:
    """Trains ``config.model.name`` on multi-solid data; returns the final metrics."""
    if config.model.name not in MODELS:
        raise ValueError(f"model.name must be one of {MODELS}, got {config.model.name!r}")
    raw, scene = load_raw(config.data)
    prepared = prepare(config.data, raw, scene)
    logging.info(
        "multi-solid data: %s; scene %s",
        {s: len(a["deformable_0"]) for s, a in prepared.arrays.items()},
        scene,
    )
    task, steps, per_epoch = make_task(config, prepared)
    mesh = mesh_lib.mesh_from_config(config.mesh)
    results = train_lib.train_and_evaluate(
        task, loop_config(config, steps, per_epoch), workdir=workdir, mesh=mesh
    )
    test = results["test"]
    final = {k: v for k, v in test.items() if k.startswith("rel_l2")}
    final.update({f"valid_{k}": v for k, v in results["valid"].items() if k.startswith("rel_l2")})
    model = train_lib.restore_model(train_lib.task_setup(task, mesh, seed=config.seed), workdir)
    final["num_params"] = count_params(model)
    final["num_steps"] = steps
    name = f"{config.model.name}, {scene.num_deformables} deformable(s)"
    if config.data.task == "rollout":
        preds = rollout(model, prepared, "test", config.eval_batch_size)
        per_frame = rollout_rmse(preds, prepared.raw["test"])
        final["rollout_rmse"] = float(per_frame[1:].mean())
        final["rollout_rmse_last"] = float(per_frame[-1])
        plot_rollout(os.path.join(workdir, "plots", "rollout_rmse.png"), {name: per_frame}, name)
    else:
        batch = {k: v[:1] for k, v in prepared.arrays["test"].items()}
        outs = _predict(*nnx.split(model), batch, scene)
        pred = [
            prepared.normalizers[f"target_{i}"].inverse(np.asarray(o[0]))
            for i, o in enumerate(outs)
        ]
        plot_fields(
            os.path.join(workdir, "plots", "fields.png"),
            scene,
            prepared.raw["test"],
            pred,
            0,
            name,
        )
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    plotting.learning_curves(
        events,
        os.path.join(workdir, "plots", "learning_curves.png"),
        [("loss", ["train"]), ("rel_l2", ["valid", "test"])],
        title=name,
    )
    return final
