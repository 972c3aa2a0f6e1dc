"""Reader for Fisale's released fluid–solid data (the ``paper`` variant of ``fisale``).

The reference (therontau0054/Fisale: ``data_loaders/*.py``, ``exp_*.py``, ``config.toml``)
reads three datasets; :func:`read_split` returns each in the per-domain layout of the FSI
generator (:mod:`jaxpapers.physics.generators.fsi`, interface §B): leading axes
(sample, frame), then points, then channels —

* ``solid/pos`` ``(S, T, Ps, d)``, ``solid/stress`` ``(S, T, Ps)`` where the data has it;
* ``fluid/pos``, ``fluid/pressure`` ``(S, T, Pf)``, ``fluid/vel`` ``(S, T, Pf, d)``;
* ``interface/pos``, ``interface/pressure`` and, where the data has them,
  ``interface/stress`` / ``interface/vel``.

Per domain the quantities in the reference's channel order are :attr:`DatasetSpec.quantities`
(a model input is ``[pos, *quantities]``).

**structure_oscillation** (Turek–Hron FSI2, CoDA-NO's ``TF_fsi2_results``; 2D). Layout::

    <data_dir>/TF_fsi2_results/mesh.h5          domains/{coordinates, topology, values}
    <data_dir>/TF_fsi2_results/mu=<mu>/x1=<x1>/x2=<x2>/Visualization/
        displacement.h5, pressure.h5, velocity.h5   VisualisationVector/<frame number>

Cells with ``values == 1`` are fluid, the others solid; a node of both is an interface node and
belongs to neither domain (the reference's set arithmetic); each domain's nodes are sorted by
index. A frame's positions are the mesh coordinates plus the first two displacement
components; pressure is one channel, velocity the first two components. As in the reference,
frames ``0, 4, 8, … < 1000`` (``frames``, ``stride``) of every parameter folder make
consecutive (current, next) pairs; all pairs of all folders are shuffled with Python's
``random`` seeded 42 and cut 80 / 10 / 10 (``int(0.8 n)``, ``int(0.9 n)``). The reference's
solid carries no quantity (positions only) and its interface only pressure. So a split of
this dataset is a set of **pairs**: ``T = 2`` (frame 0 = current, frame 1 = next), with
``params`` ``(S, 3)`` = ``(mu, x1, x2)`` and ``frame`` ``(S, 2)`` the frame numbers.

The folders are found by formatting the reference's parameter lists with ``str``:
``mu ∈ [1.0, 5, 10.0]``, ``x1 ∈ [-4.0, -2, 0, 0.0, 2.0, 6.0, 4.0]`` (the reference's list,
with its ``-2,0`` typo kept), ``x2 ∈ [-4.0, -2.0, 0, 2.0, 4.0, 6.0]``; missing folders are
skipped, as in the reference. We keep the lists exactly, so the same folders are read (and in
the same order, which fixes the shuffle) as the reference reads.

**venous_valve** (2D) — ``<data_dir>/venous_valve_<split>.pkl``: a list of trajectories, each
``{"solid": {position, stress}, "fluid": {position, pressure, velocity},
"interface": {position, stress, pressure, velocity}}`` with per-frame arrays ``(T, P, c)``;
the reference uses frames ``0 .. 100`` (``frames = 101``, ``stride = 1``) and predicts frame
``t + 1`` from frame ``t``. A split is whole trajectories: ``T = 101``.

**flexible_wing** (3D, long-time) — ``<data_dir>/flexible_wing_<split>.pkl``: per sample each
domain's ``init_position`` and ``final_position`` and final ``stress`` / ``pressure`` /
``velocity``, plus scalars or vectors ``wing_material``, ``attack_angle``,
``wind_velocity``. The reference maps (initial positions, the parameters broadcast to every
point: solid ← material, fluid ← angle and wind, interface ← all three) to the final state.
We return ``T = 2`` frames (0 = initial, 1 = final) and ``params`` ``(S, K)``
(``wing_material…, attack_angle, wind_velocity``); the fields at the initial frame are not in
the data and are **zero placeholders** — a model must take its inputs from frame-0 positions
and ``params`` (:attr:`DatasetSpec.param_inputs`), not from frame-0 quantities.

Choices where the reference is silent or that deviate from it:

* Splits are named ``train`` / ``valid`` / ``test``; ``valid`` is the reference's ``eval``
  (``eval`` is accepted as well).
* Scalar quantities stored as ``(…, P, 1)`` are returned as ``(…, P)``.
* Only the pairs of the requested split are read from the h5 files (the shuffle depends only on
  the number of pairs, so the split is the reference's without loading everything).
* ``data_dir`` may also be the ``TF_fsi2_results`` folder itself (it holds ``mesh.h5``).
* When samples differ in point count a key is a 1-D ``object`` array of per-sample arrays.
* Everything is float32 (``frame``: int32). Pickles run code when loaded: read trusted files.

Example::

    data = read_split("structure_oscillation/data/input", "structure_oscillation", "train")
    data["fluid/pos"].shape, data["fluid/vel"].shape     # (S, 2, Pf, 2), (S, 2, Pf, 2)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpapers.physics.multisolid_files import SPLITS, _file_split

__all__ = [
    "DATASETS",
    "DATA_URLS",
    "DatasetSpec",
    "SPLITS",
    "domain_nodes",
    "read_split",
    "split_bounds",
    "structure_oscillation_folders",
]

DOMAINS = ("solid", "fluid", "interface")

DATA_URLS: dict[str, str] = {
    "coda_no": "https://github.com/neuraloperator/CoDA-NO",
    "fisale": "https://disk.pku.edu.cn/link/AA579CFCCB9AFF4614B7B0FC0525F5554E",
}
"""Where the reference's README says to get the data: structure oscillation "can be found in
[CoDA-NO repo]"; venous valve and flexible wing from the authors' link."""

# The reference's parameter lists, exactly (folder names are ``str`` of these values).
MU_LIST: tuple[float | int, ...] = (1.0, 5, 10.0)
X1_LIST: tuple[float | int, ...] = (-4.0, -2, 0, 0.0, 2.0, 6.0, 4.0)
X2_LIST: tuple[float | int, ...] = (-4.0, -2.0, 0, 2.0, 4.0, 6.0)
SHUFFLE_SEED = 42
FIELD_FILES = ("displacement", "pressure", "velocity")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One of Fisale's datasets."""

    name: str
    task: str  # "next_frame" (pairs) | "rollout" (trajectories) | "longtime" (init -> final)
    dim: int  # spatial dimension
    quantities: Mapping[str, tuple[str, ...]]  # per domain, the reference's channel order
    frames: int | None = None  # frames_num of the loader
    stride: int = 1  # dt of the loader
    param_inputs: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    source: str = "fisale"  # key of DATA_URLS

    def file_name(self, split: str) -> str:
        if self.name == "structure_oscillation":
            return "TF_fsi2_results/mesh.h5"
        return f"{self.name}_{_file_split(split)}.pkl"


DATASETS: dict[str, DatasetSpec] = {
    "structure_oscillation": DatasetSpec(
        name="structure_oscillation",
        task="next_frame",
        dim=2,
        quantities={"solid": (), "fluid": ("pressure", "vel"), "interface": ("pressure",)},
        frames=1000,
        stride=4,
        source="coda_no",
    ),
    "venous_valve": DatasetSpec(
        name="venous_valve",
        task="rollout",
        dim=2,
        quantities={
            "solid": ("stress",),
            "fluid": ("pressure", "vel"),
            "interface": ("stress", "pressure", "vel"),
        },
        frames=101,
        stride=1,
    ),
    "flexible_wing": DatasetSpec(
        name="flexible_wing",
        task="longtime",
        dim=3,
        quantities={
            "solid": ("stress",),
            "fluid": ("pressure", "vel"),
            "interface": ("stress", "pressure", "vel"),
        },
        param_inputs={
            "solid": ("wing_material",),
            "fluid": ("attack_angle", "wind_velocity"),
            "interface": ("wing_material", "attack_angle", "wind_velocity"),
        },
    ),
}
"""Fisale's datasets by name (``config.toml`` sections, ``data_loaders/<name>.py``)."""

# Names of the quantities in the pickles.
_PICKLE_KEYS = {"stress": "stress", "pressure": "pressure", "vel": "velocity"}
_WING_PARAMS = ("wing_material", "attack_angle", "wind_velocity")


def _spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}.")
    return DATASETS[dataset]


def _missing(path: Path, spec: DatasetSpec, what: str = "") -> FileNotFoundError:
    if spec.source == "coda_no":
        where = (
            "The structure oscillation dataset can be found in the CoDA-NO repo "
            f"({DATA_URLS['coda_no']}), as the reference's README says; put its "
            f"TF_fsi2_results folder (mesh.h5 and the mu=*/x1=*/x2=*/Visualization/"
            f"{{displacement,pressure,velocity}}.h5 tree) in the data directory."
        )
    else:
        where = (
            f"Download the {spec.name} pickles ({spec.name}_train.pkl, {spec.name}_eval.pkl, "
            f"{spec.name}_test.pkl) from the reference's link {DATA_URLS['fisale']} and put "
            f"them in {path.parent}."
        )
    detail = f" ({what})" if what else ""
    return FileNotFoundError(f"Fisale data not found: expected {path}{detail}.\n{where}")


def split_bounds(n: int, split: str) -> tuple[int, int]:
    """``[start, end)`` of ``split`` among ``n`` shuffled pairs: the reference's 80/10/10."""
    file_split = _file_split(split)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    a, b = int(0.8 * n), int(0.9 * n)
    return {"train": (0, a), "eval": (a, b), "test": (b, n)}[file_split]


def _stack(items: list[np.ndarray], dtype: Any = np.float32) -> np.ndarray:
    if all(a.shape == items[0].shape for a in items):
        return np.stack(items).astype(dtype)
    out = np.empty(len(items), dtype=object)
    for n, a in enumerate(items):
        out[n] = np.asarray(a, dtype)
    return out


def _scalar(values: Any, points: int, what: str) -> np.ndarray:
    """``(..., P)`` from a scalar field stored as ``(..., P)`` or ``(..., P, 1)``."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim >= 2 and v.shape[-1] == 1 and v.shape[-2] == points:
        v = v[..., 0]
    if v.shape[-1] != points:
        raise ValueError(f"{what} must have {points} points, got shape {v.shape}")
    return v


# --------------------------------------------------------------------------- structure oscillation


def domain_nodes(topology: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted node indices of each domain from the cells and their domain ids (1 = fluid)."""
    topology = np.asarray(topology, dtype=np.int64)
    values = np.asarray(values).reshape(-1)
    if topology.ndim != 2 or topology.shape[0] != values.shape[0]:
        raise ValueError(
            f"topology must be (cells, nodes per cell) with one value per cell, got "
            f"{topology.shape} and {values.shape}"
        )
    fluid = set(np.unique(topology[values == 1]).tolist())
    solid = set(np.unique(topology[values != 1]).tolist())
    interface = fluid & solid
    return {
        "solid": np.array(sorted(solid - interface), dtype=np.int64),
        "fluid": np.array(sorted(fluid - interface), dtype=np.int64),
        "interface": np.array(sorted(interface), dtype=np.int64),
    }


def _oscillation_root(data_dir: Path) -> Path:
    if not (data_dir / "TF_fsi2_results").is_dir() and (data_dir / "mesh.h5").is_file():
        return data_dir
    return data_dir / "TF_fsi2_results"


def structure_oscillation_folders(root: str | os.PathLike[str]) -> list[tuple[tuple, Path]]:
    """``((mu, x1, x2), Visualization folder)`` that exist, in the reference's loop order."""
    out = []
    for mu in MU_LIST:
        for x1 in X1_LIST:
            for x2 in X2_LIST:
                folder = Path(root) / f"mu={mu}" / f"x1={x1}" / f"x2={x2}" / "Visualization"
                if folder.exists():
                    out.append(((float(mu), float(x1), float(x2)), folder))
    return out


def _read_structure_oscillation(
    data_dir: Path, spec: DatasetSpec, split: str, frames: int, stride: int
) -> dict[str, np.ndarray]:
    import h5py  # pylint: disable=g-import-not-at-top

    root = _oscillation_root(data_dir)
    mesh_path = root / "mesh.h5"
    if not mesh_path.is_file():
        raise _missing(mesh_path, spec)
    with h5py.File(mesh_path, "r") as f:
        coords = np.asarray(f["domains"]["coordinates"], dtype=np.float64)[:, :2]
        nodes = domain_nodes(f["domains"]["topology"], f["domains"]["values"])
    folders = structure_oscillation_folders(root)
    if not folders:
        raise _missing(root / "mu=1.0/x1=-4.0/x2=-4.0/Visualization", spec, "no parameter folder")
    frame_ids = list(range(0, frames, stride))
    per = len(frame_ids) - 1
    if per < 1:
        raise ValueError(f"frames={frames}, stride={stride} give fewer than two frames")
    n = len(folders) * per
    order = list(range(n))  # pair p = (folder p // per, frame index p % per), reference order
    random.Random(SHUFFLE_SEED).shuffle(order)
    start, end = split_bounds(n, split)
    chosen = order[start:end]
    if not chosen:
        raise ValueError(f"split {split!r} of the {n} pairs is empty")
    by_folder: dict[int, list[int]] = {}
    for p in chosen:
        by_folder.setdefault(p // per, []).append(p % per)
    states: dict[tuple[int, int], np.ndarray] = {}  # (folder, frame index) -> (P, 5)
    for t, ks in by_folder.items():
        params, folder = folders[t]
        files = []
        try:
            for name in FIELD_FILES:
                path = folder / f"{name}.h5"
                if not path.is_file():
                    raise _missing(path, spec)
                files.append(h5py.File(path, "r"))
            handles = [f["VisualisationVector"] for f in files]
            for k in sorted({k for k0 in ks for k in (k0, k0 + 1)}):
                key = str(frame_ids[k])
                if any(key not in h for h in handles):
                    raise ValueError(f"{folder}: frame {key} missing (frames={frames})")
                disp, pres, vel = (np.asarray(h[key], dtype=np.float64) for h in handles)
                pos = coords + disp[:, :2]
                p = _scalar(pres, coords.shape[0], f"{folder}/pressure.h5[{key}]")
                states[(t, k)] = np.concatenate([pos, p[:, None], vel[:, :2]], -1)
        finally:
            for f in files:
                f.close()
    rows: dict[str, list[np.ndarray]] = {}
    for p in chosen:
        t, k = p // per, p % per
        pair = np.stack([states[(t, k)], states[(t, k + 1)]])  # (2, P, 5)
        parts = {
            "solid/pos": pair[:, nodes["solid"], :2],
            "fluid/pos": pair[:, nodes["fluid"], :2],
            "fluid/pressure": pair[:, nodes["fluid"], 2],
            "fluid/vel": pair[:, nodes["fluid"], 3:5],
            "interface/pos": pair[:, nodes["interface"], :2],
            "interface/pressure": pair[:, nodes["interface"], 2],
            "params": np.array(folders[t][0]),
            "frame": np.array([frame_ids[k], frame_ids[k + 1]]),
        }
        for key, value in parts.items():
            rows.setdefault(key, []).append(value)
    return {k: _stack(v, np.int32 if k == "frame" else np.float32) for k, v in rows.items()}


# --------------------------------------------------------------------------- pickles


def _load_records(path: Path, spec: DatasetSpec) -> list[Mapping[str, Any]]:
    if not path.is_file():
        raise _missing(path, spec)
    with open(path, "rb") as f:
        records = pickle.load(f)
    if not isinstance(records, Sequence) or not all(isinstance(r, Mapping) for r in records):
        raise ValueError(f"{path} must hold a list of dicts (one per sample), got {type(records)}")
    if not records:
        raise ValueError(f"{path} holds no samples")
    return list(records)


def _domain(record: Mapping[str, Any], domain: str, n: int) -> Mapping[str, Any]:
    if domain not in record:
        raise ValueError(f"sample {n} has no {domain!r} entry; its keys are {sorted(record)}")
    return record[domain]


def _field(entry: Mapping[str, Any], key: str, what: str) -> np.ndarray:
    if key not in entry:
        raise ValueError(f"{what} has no {key!r}; its keys are {sorted(entry)}")
    return np.asarray(entry[key], dtype=np.float32)


def _read_venous_valve(
    data_dir: Path, spec: DatasetSpec, split: str, frames: int, stride: int
) -> dict[str, np.ndarray]:
    path = data_dir / spec.file_name(split)
    records = _load_records(path, spec)
    rows: dict[str, list[np.ndarray]] = {}
    for n, record in enumerate(records):
        for d in DOMAINS:
            entry = _domain(record, d, n)
            pos = _field(entry, "position", f"sample {n} {d}")
            if pos.ndim != 3 or pos.shape[0] < frames:
                raise ValueError(
                    f"sample {n} {d} position must be (T >= {frames}, P, {spec.dim}), "
                    f"got {pos.shape}"
                )
            rows.setdefault(f"{d}/pos", []).append(pos[:frames:stride])
            for q in spec.quantities[d]:
                v = _field(entry, _PICKLE_KEYS[q], f"sample {n} {d}")[:frames:stride]
                if q != "vel":
                    v = _scalar(v, pos.shape[1], f"sample {n} {d} {q}")
                rows.setdefault(f"{d}/{q}", []).append(v)
    return {k: _stack(v) for k, v in rows.items()}


def _read_flexible_wing(data_dir: Path, spec: DatasetSpec, split: str) -> dict[str, np.ndarray]:
    path = data_dir / spec.file_name(split)
    records = _load_records(path, spec)
    rows: dict[str, list[np.ndarray]] = {}
    for n, record in enumerate(records):
        for d in DOMAINS:
            entry = _domain(record, d, n)
            init = _field(entry, "init_position", f"sample {n} {d}")
            final = _field(entry, "final_position", f"sample {n} {d}")
            rows.setdefault(f"{d}/pos", []).append(np.stack([init, final]))
            for q in spec.quantities[d]:
                v = _field(entry, _PICKLE_KEYS[q], f"sample {n} {d}")
                if q != "vel":
                    v = _scalar(v, init.shape[0], f"sample {n} {d} {q}")
                rows.setdefault(f"{d}/{q}", []).append(np.stack([np.zeros_like(v), v]))
        missing = [k for k in _WING_PARAMS if k not in record]
        if missing:
            raise ValueError(f"sample {n} has no {missing}; its keys are {sorted(record)}")
        params = [np.asarray(record[k], dtype=np.float32).reshape(-1) for k in _WING_PARAMS]
        rows.setdefault("params", []).append(np.concatenate(params))
    return {k: _stack(v) for k, v in rows.items()}


def read_split(
    data_dir: str | os.PathLike[str],
    dataset: str,
    split: str,
    *,
    frames: int | None = None,
    stride: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-domain arrays of one split of one of Fisale's datasets (see the module doc).

    ``frames`` / ``stride`` override the reference's ``frames_num`` / ``dt`` (structure
    oscillation 1000 / 4, venous valve 101 / 1; flexible wing has neither). Raises
    ``FileNotFoundError`` naming the expected file and where to get the data, ``ValueError``
    for an unknown dataset or split or a malformed file.
    """
    spec = _spec(dataset)
    _file_split(split)
    data_dir = Path(data_dir)
    if spec.frames is None:
        if frames is not None or stride is not None:
            raise ValueError(f"{dataset} has no frames; frames and stride must be None")
        return _read_flexible_wing(data_dir, spec, split)
    frames = spec.frames if frames is None else frames
    stride = spec.stride if stride is None else stride
    for name, value in (("frames", frames), ("stride", stride)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if dataset == "structure_oscillation":
        return _read_structure_oscillation(data_dir, spec, split, int(frames), int(stride))
    return _read_venous_valve(data_dir, spec, split, int(frames), int(stride))
