"""Reader for Unisoma's released multi-solid data (the ``paper`` variant of ``unisoma``).

The reference (therontau0054/Unisoma: ``data_loaders/*.py``, ``exp_*_{longtime,rollout}.py``,
``configs/*.toml``) ships one pickle per dataset and split,
``<data_dir>/<dataset>_dataset_<split>.pkl`` with ``<split>`` in ``train`` / ``eval`` /
``test`` (``<data_dir>`` is the reference's ``root_folder/<dataset>/data/input``). Each pickle
is a Python list with one ``dict`` per sample. :func:`read_split` turns a split into the
per-object arrays of the contact generator (:mod:`jaxpapers.physics.generators.contact`,
interface §A), in 3D:

* ``deformable_{i}/init`` ``(N, P_i, 3)``, ``deformable_{i}/final`` ``(N, P_i, 3)``;
  ``deformable_{i}/stress`` / ``/peeq`` ``(N, P_i)`` where the dataset has them;
* ``rigid_{j}/init`` ``(N, Q_j, 3)``, ``rigid_{j}/final`` ``(N, Q_j, 3)``;
* ``load_{k}`` ``(N, L_k, 6)``: the reference's long-time loads, exactly as its loaders build
  them (see below: the rule differs between datasets, so they are always returned);
* trajectory datasets also ``deformable_{i}/steps`` ``(N, F, P_i, 3)`` and
  ``rigid_{j}/steps`` ``(N, F, Q_j, 3)``, the first ``F = frames`` frames (frame 0 = start).

Where a dataset's samples differ in an object's number of points (deforming plate's meshes
differ between trajectories), that object's arrays come back as 1-D object arrays of per-sample
arrays; :func:`jaxpapers.physics.multisolid.pad_objects` pads them to a common count with a mask.

Objects are numbered as the reference numbers them (deformables ``0..D-1`` first, then rigids
``D..D+R-1`` in :attr:`DatasetSpec.contact_pairs`); :data:`DATASETS` records which pickle key
each object comes from. The datasets and their layouts:

==================== ========== ============================================================
dataset              tasks      layout
==================== ========== ============================================================
deforming_plate      longtime   per-frame lists ``deformable_solid_pos`` / ``_stress``,
                                ``rigid_solid_pos``; target = the frame where the rigid body
                                is farthest (mean point distance) from its start
bilateral_stamping   longtime   ``init_/final_{metal,rubber}_pos``, ``final_*_stress/peeq``;
                                dies ``die_1_pos``, ``die_2_pos`` with 6 columns
                                (position, displacement)
unilateral_stamping  longtime   as bilateral, but one fixed die ``die_1_pos`` (3 columns)
                                and 16 moving parts ``die_2-1_pos .. die_2-16_pos``
cavity_grasping      both       per-frame ``tissue_mesh_positions``, ``gripper_position_1/2``
tissue_manipulation  both       per-frame ``tissue_mesh_positions``, ``gripper_position``;
                                a fixed grasp point ``grasping_position`` (one point)
rice_grip            rollout    per-frame ``rice_positions``, ``gripper_{1,2}_positions``
cavity_extruding     rollout    per-frame ``cavity_{1,2,3}_pos``, ``gripper_{1..4}_pos``
==================== ========== ============================================================

Loads (``load_{k}``, 6 features per point), as the reference's long-time loaders build them:

* ``"displacement"`` (trajectory datasets, deforming plate): ``[r₀, r_T − r₀]`` — the rigid
  body's points at the start and their displacement to the target frame;
* ``"end_position"`` (stamping): the die's stored ``[position, displacement]`` with the
  displacement added to the position, i.e. ``[r₀, r₀ + d]`` (the reference's
  ``load[:, 3:] += load[:, :3]``); ``rigid_{j}/final`` is ``r₀ + d``;
* ``"static"`` (the tissue grasp point): ``[r, 0]``.

The rollout loaders build the per-frame load ``[r_t, r_{t+1} − r_t]`` from the rigid bodies'
frames (:func:`rollout_loads`); these are a function of ``rigid_{j}/steps`` and are not stored.

Choices where the reference is silent or that deviate from it:

* Splits are named ``train`` / ``valid`` / ``test``; ``valid`` reads the reference's ``eval``
  pickle (``eval`` is accepted as well).
* Long-time ``final`` of a trajectory dataset is the file's last frame (the reference's
  ``target_frame = -1``), while ``steps`` holds the first ``frames`` frames (its rollout
  ``frames_num``: 105, 105, 41, 121); they agree when a file has exactly ``frames`` frames. A
  trajectory with fewer than ``frames`` frames raises ``ValueError`` (the reference would
  fail on the index).
* Deforming plate's stress is divided by 1000 as in the reference ("for stable training").
  Its full trajectories (hundreds of frames) are not returned: the reference uses the dataset
  for the long-time task only.
* When all samples of a split share each object's point count the arrays are stacked
  (``float32``). If the counts differ between samples (the reference trains such datasets with
  batch size 1), that key is a 1-D ``object`` array of per-sample ``float32`` arrays; callers
  can test ``arr.dtype == object``.
* Pickles run code when loaded: read only files you trust (the released ones).

Example::

    data = read_split("root_folder/bilateral_stamping/data/input", "bilateral_stamping", "train")
    data["deformable_0/init"].shape, data["load_1"].shape      # (N, P_0, 3), (N, L_1, 6)
    DATASETS["bilateral_stamping"].contact_pairs               # ((0, 1), (0, 2), ...)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "DATA_URLS",
    "DatasetSpec",
    "SPLITS",
    "dataset_path",
    "read_split",
    "rollout_loads",
]

SPLITS = ("train", "valid", "test")
_FILE_SPLIT = {"train": "train", "valid": "eval", "eval": "eval", "test": "test"}

DATA_URLS: dict[str, str] = {
    "public": "https://drive.google.com/drive/folders/1bYeYYsOnBgxujN7mv8Lx8YILykc6GzY-?usp=sharing",
    "created": "https://disk.pku.edu.cn/link/AA70C3D42902954D1798DCD62CD4DB3C79",
    "ggns": "https://github.com/jlinki/GGNS",
}
"""Where the reference's README says to get the data: its preprocessed public datasets, its
self-curated ("created") datasets, and the GGNS repository (Tissue Manipulation)."""

LOAD_RULES = ("displacement", "end_position", "static")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One of the reference's datasets: files, objects, loads, contacts and dimensions."""

    name: str
    layout: str  # "plate" | "stamping" | "trajectory": how a record is read
    tasks: tuple[str, ...]  # "longtime" and/or "rollout" (the reference's exp_* scripts)
    deformables: tuple[str, ...]  # record keys of the deformables, in the reference's order
    rigids: tuple[str, ...]  # record keys of the rigid bodies, in order
    loads: tuple[tuple[int, str], ...]  # per load: (rigid index it is built from, rule)
    contact_pairs: tuple[tuple[int, int], ...]  # the config's contact_id
    fields: tuple[str, ...] = ()  # extra per-node targets, in the reference's channel order
    frames: int | None = None  # rollout frames_num (trajectory layout)
    source: str = "public"  # key of DATA_URLS
    coord_dim: int = 3

    @property
    def num_deformables(self) -> int:
        return len(self.deformables)

    @property
    def num_rigids(self) -> int:
        return len(self.rigids)

    @property
    def num_loads(self) -> int:
        return len(self.loads)

    @property
    def load_dim(self) -> int:
        return 2 * self.coord_dim

    @property
    def rigid_dim(self) -> int:
        return self.coord_dim

    @property
    def deformable_in_dim(self) -> int:
        return self.coord_dim

    @property
    def deformable_out_dim(self) -> int:
        """Displacement plus one channel per field (the config's ``output_deformable_dim``)."""
        return self.coord_dim + len(self.fields)

    def file_name(self, split: str) -> str:
        return f"{self.name}_dataset_{_file_split(split)}.pkl"


def _pairs(*pairs: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(pairs)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="deforming_plate",
            layout="plate",
            tasks=("longtime",),
            deformables=("deformable_solid_pos",),
            rigids=("rigid_solid_pos",),
            loads=((0, "displacement"),),
            contact_pairs=_pairs((0, 1)),
            fields=("stress",),
        ),
        DatasetSpec(
            name="bilateral_stamping",
            layout="stamping",
            tasks=("longtime",),
            deformables=("metal", "rubber"),
            rigids=("die_1_pos", "die_2_pos"),
            loads=((0, "end_position"), (1, "end_position")),
            contact_pairs=_pairs((0, 1), (0, 2), (0, 3), (1, 2), (1, 3)),
            fields=("stress", "peeq"),
            source="created",
        ),
        DatasetSpec(
            name="unilateral_stamping",
            layout="stamping",
            tasks=("longtime",),
            deformables=("metal", "rubber"),
            rigids=("die_1_pos",) + tuple(f"die_2-{i}_pos" for i in range(1, 17)),
            loads=tuple((j, "end_position") for j in range(1, 17)),
            # The exp script overrides the config ("write in python file"): [[0, i] for i in
            # range(1, 19)] — the metal touches the rubber and all 17 rigid parts.
            contact_pairs=tuple((0, i) for i in range(1, 19)),
            fields=("stress", "peeq"),
            source="created",
        ),
        DatasetSpec(
            name="cavity_grasping",
            layout="trajectory",
            tasks=("longtime", "rollout"),
            deformables=("tissue_mesh_positions",),
            rigids=("gripper_position_1", "gripper_position_2"),
            loads=((0, "displacement"), (1, "displacement")),
            contact_pairs=_pairs((0, 1), (0, 2)),
            frames=105,
        ),
        DatasetSpec(
            name="tissue_manipulation",
            layout="trajectory",
            tasks=("longtime", "rollout"),
            deformables=("tissue_mesh_positions",),
            rigids=("gripper_position", "grasping_position"),
            loads=((0, "displacement"), (1, "static")),
            contact_pairs=_pairs((0, 1), (0, 2)),
            frames=105,
            source="ggns",
        ),
        DatasetSpec(
            name="rice_grip",
            layout="trajectory",
            tasks=("rollout",),
            deformables=("rice_positions",),
            rigids=("gripper_1_positions", "gripper_2_positions"),
            loads=((0, "displacement"), (1, "displacement")),
            contact_pairs=_pairs((0, 1), (0, 2)),
            frames=41,
        ),
        DatasetSpec(
            name="cavity_extruding",
            layout="trajectory",
            tasks=("rollout",),
            deformables=("cavity_1_pos", "cavity_2_pos", "cavity_3_pos"),
            rigids=("gripper_1_pos", "gripper_2_pos", "gripper_3_pos", "gripper_4_pos"),
            loads=tuple((j, "displacement") for j in range(4)),
            contact_pairs=_pairs((0, 1), (1, 2), (0, 3), (0, 4), (0, 5), (0, 6)),
            frames=121,
            source="created",
        ),
    )
}
"""The reference's datasets by name (``configs/<name>.toml`` and ``data_loaders/<name>.py``)."""

# The one rigid body whose record holds a single fixed point, not per-frame positions.
_STATIC_KEYS = ("grasping_position",)


def _file_split(split: str) -> str:
    if split not in _FILE_SPLIT:
        raise ValueError(f"split must be one of {SPLITS} (or 'eval'), got {split!r}.")
    return _FILE_SPLIT[split]


def _spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}.")
    return DATASETS[dataset]


def dataset_path(data_dir: str | os.PathLike[str], dataset: str, split: str) -> Path:
    """The pickle :func:`read_split` reads for ``(dataset, split)``."""
    return Path(data_dir) / _spec(dataset).file_name(split)


def _missing_message(path: Path, spec: DatasetSpec) -> str:
    where = {
        "public": f"the reference's preprocessed public datasets: {DATA_URLS['public']}",
        "created": f"the reference's self-curated datasets: {DATA_URLS['created']}",
        "ggns": (
            f"the GGNS repository ({DATA_URLS['ggns']}), as the reference's README says "
            f"(its other public datasets: {DATA_URLS['public']})"
        ),
    }[spec.source]
    return (
        f"Unisoma data not found: expected {path}.\n"
        f"Get the {spec.name} pickles ({spec.file_name('train')}, {spec.file_name('eval')}, "
        f"{spec.file_name('test')}) from {where}, and put them in {path.parent} "
        f"(the reference's root_folder/{spec.name}/data/input)."
    )


def _load_records(path: Path, spec: DatasetSpec) -> list[Mapping[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path, spec))
    with open(path, "rb") as f:
        records = pickle.load(f)
    if not isinstance(records, Sequence) or not all(isinstance(r, Mapping) for r in records):
        raise ValueError(f"{path} must hold a list of dicts (one per sample), got {type(records)}")
    if not records:
        raise ValueError(f"{path} holds no samples")
    return list(records)


def _get(record: Mapping[str, Any], key: str, index: int) -> Any:
    if key not in record:
        raise ValueError(f"sample {index} has no key {key!r}; its keys are {sorted(record)}")
    return record[key]


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _stack(items: list[np.ndarray]) -> np.ndarray:
    """Stack per-sample arrays; a 1-D object array when their shapes differ."""
    if all(a.shape == items[0].shape for a in items):
        return np.stack(items).astype(np.float32)
    out = np.empty(len(items), dtype=object)
    for n, a in enumerate(items):
        out[n] = a
    return out


def _load(start: np.ndarray, end: np.ndarray, rule: str) -> np.ndarray:
    """A long-time load ``(L, 6)`` from a rigid body's start and end points."""
    if rule == "displacement":
        return np.concatenate([start, end - start], axis=-1)
    if rule == "end_position":
        return np.concatenate([start, end], axis=-1)
    if rule == "static":
        return np.concatenate([start, np.zeros_like(start)], axis=-1)
    raise ValueError(f"load rule must be one of {LOAD_RULES}, got {rule!r}")


def rollout_loads(rigid_steps: np.ndarray, static: bool = False) -> np.ndarray:
    """The reference's rollout loads ``[r_t, r_{t+1} − r_t]`` from ``(..., F, Q, c)`` frames.

    Returns ``(..., F − 1, Q, 2c)``; ``static=True`` (the tissue grasp point) gives
    ``[r_t, 0]``, which equals the rule for a body that does not move.
    """
    steps = np.asarray(rigid_steps, dtype=np.float32)
    if steps.ndim < 3 or steps.shape[-3] < 2:
        raise ValueError(f"rigid_steps must be (..., F >= 2, Q, c), got {steps.shape}")
    now, nxt = steps[..., :-1, :, :], steps[..., 1:, :, :]
    delta = np.zeros_like(now) if static else nxt - now
    return np.concatenate([now, delta], axis=-1)


# --------------------------------------------------------------------------- layouts


def _read_plate(record: Mapping[str, Any], n: int, spec: DatasetSpec) -> dict[str, np.ndarray]:
    positions = _get(record, "deformable_solid_pos", n)
    rigid_frames = _get(record, "rigid_solid_pos", n)
    stresses = _get(record, "deformable_solid_stress", n)
    rigid_0 = _f32(rigid_frames[0])
    # The reference's target frame: the first frame of largest mean rigid displacement.
    target, best = 0, -1.0
    for t in range(len(rigid_frames)):
        dist = float(np.sqrt(np.sum((_f32(rigid_frames[t]) - rigid_0) ** 2, axis=-1)).mean())
        if dist > best:
            best, target = dist, t
    rigid_t = _f32(rigid_frames[target])
    return {
        "deformable_0/init": _f32(positions[0]),
        "deformable_0/final": _f32(positions[target]),
        "deformable_0/stress": _f32(stresses[target]).reshape(-1) / 1e3,
        "rigid_0/init": rigid_0,
        "rigid_0/final": rigid_t,
        "load_0": _load(rigid_0, rigid_t, "displacement"),
    }


def _read_stamping(record: Mapping[str, Any], n: int, spec: DatasetSpec) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(spec.deformables):
        out[f"deformable_{i}/init"] = _f32(_get(record, f"init_{name}_pos", n))
        out[f"deformable_{i}/final"] = _f32(_get(record, f"final_{name}_pos", n))
        for field in spec.fields:
            value = _f32(_get(record, f"final_{name}_{field}", n))
            out[f"deformable_{i}/{field}"] = value.reshape(-1)
    c = spec.coord_dim
    for j, key in enumerate(spec.rigids):
        die = _f32(_get(record, key, n))
        if die.ndim != 2 or die.shape[-1] not in (c, 2 * c):
            raise ValueError(
                f"sample {n}: {key!r} must be (Q, {c}) or (Q, {2 * c}), got {die.shape}"
            )
        start = die[:, :c]
        out[f"rigid_{j}/init"] = start
        out[f"rigid_{j}/final"] = start + die[:, c:] if die.shape[-1] == 2 * c else start
    for k, (j, rule) in enumerate(spec.loads):
        out[f"load_{k}"] = _load(out[f"rigid_{j}/init"], out[f"rigid_{j}/final"], rule)
    return out


def _frames(record: Mapping[str, Any], key: str, n: int, frames: int) -> tuple[np.ndarray, ...]:
    seq = _get(record, key, n)
    if len(seq) < frames:
        raise ValueError(f"sample {n}: {key!r} has {len(seq)} frames, the rollout needs {frames}")
    return _f32(np.stack([_f32(x) for x in seq[:frames]])), _f32(seq[-1])


def _read_trajectory(
    record: Mapping[str, Any], n: int, spec: DatasetSpec, frames: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, key in enumerate(spec.deformables):
        steps, last = _frames(record, key, n, frames)
        out[f"deformable_{i}/steps"] = steps
        out[f"deformable_{i}/init"] = steps[0]
        out[f"deformable_{i}/final"] = last
    for j, key in enumerate(spec.rigids):
        if key in _STATIC_KEYS:
            point = _f32(_get(record, key, n)).reshape(1, -1)
            out[f"rigid_{j}/steps"] = np.repeat(point[None], frames, axis=0)
            out[f"rigid_{j}/init"] = out[f"rigid_{j}/final"] = point
        else:
            steps, last = _frames(record, key, n, frames)
            out[f"rigid_{j}/steps"] = steps
            out[f"rigid_{j}/init"] = steps[0]
            out[f"rigid_{j}/final"] = last
    for k, (j, rule) in enumerate(spec.loads):
        out[f"load_{k}"] = _load(out[f"rigid_{j}/init"], out[f"rigid_{j}/final"], rule)
    return out


def read_split(
    data_dir: str | os.PathLike[str], dataset: str, split: str, *, frames: int | None = None
) -> dict[str, np.ndarray]:
    """Per-object arrays of one split of one of the reference's datasets (see module doc).

    ``frames`` overrides the rollout length of a trajectory dataset (default: the
    reference's ``frames_num``). Raises ``FileNotFoundError`` naming the expected pickle and
    where to get it, ``ValueError`` for an unknown dataset/split or a malformed record.
    """
    spec = _spec(dataset)
    path = dataset_path(data_dir, dataset, split)
    if spec.layout == "trajectory":
        frames = spec.frames if frames is None else frames
        if not isinstance(frames, int | np.integer) or frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {frames!r}")
    elif frames is not None:
        raise ValueError(f"{dataset} has no trajectories; frames must be None, got {frames!r}")
    records = _load_records(path, spec)
    rows = []
    for n, record in enumerate(records):
        if spec.layout == "plate":
            rows.append(_read_plate(record, n, spec))
        elif spec.layout == "stamping":
            rows.append(_read_stamping(record, n, spec))
        else:
            rows.append(_read_trajectory(record, n, spec, int(frames)))
    return {key: _stack([row[key] for row in rows]) for key in rows[0]}
