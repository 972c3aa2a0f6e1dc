"""Reader for LaDEEP's released stretch-bending data (the ``paper`` variant).

The released data (Google Drive, see :data:`DATA_URL`) is a folder tree that the reference
(therontau0054/LaDEEP, ``core/data_loader.py`` and ``main.py``; ``data_path = ./data`` in
``config.ini``) reads as follows, and so do we:

* one folder per kind, named as in :data:`FOLDERS` (``original_strip_line``, ``mould_line``,
  ``strip_section_tiff``, ``stretch_bending_params``, ``load_strip_line``,
  ``unload_strip_line``), each holding ``type_0 ... type_4`` sub-folders (one per cross-section
  type);
* inside a type folder the files are sorted by name and paired across kinds **by position**;
* per type, the split is ``_data_split``: with ``k = n // 10`` (integer division first),
  train is ``[0, 8k)``, eval ``[8k, 9k)``, test ``[9k, n)``. So 80/10/10 when ``n`` is a
  multiple of 10; otherwise the remainder goes to test (n = 15 gives 8 / 1 / 6);
* curve files are whitespace-separated ``x y z`` rows; a curve whose length is not ``n_points``
  is resampled with :func:`~jaxpapers.physics.curves.resample` (``method="reference"``: the
  reference's index-uniform cubic spline);
* parameter files are CSVs with 6 columns, scaled with
  :func:`~jaxpapers.physics.curves.scale_params` (rows summed, groups of three min-max scaled);
* section files are signed-distance images read unchanged (``cv2.IMREAD_UNCHANGED`` in the
  reference); values are returned as stored, cast to float32, with no normalisation.

Choices where the reference is silent:

* The reference hard-codes 5 types; we use every ``type_<i>`` folder present (``n_types`` limits
  it to ``type_0 .. type_{n_types-1}``), and ``section_type`` is the ``i`` of the folder.
* Hidden files (names starting with ".") and sub-directories inside type folders are ignored.
* Kinds with different file counts in one type folder raise ``ValueError`` (the reference would
  silently mis-pair them).
* Images are read with Pillow (installed with matplotlib) instead of OpenCV; a 3-channel image
  with identical channels is read as grey, other multi-channel images are an error.
  ``section_shape=(H, W)`` resizes with bilinear interpolation; without it all images must share
  one shape.
* Curves are returned as float64 (as parsed; the reference casts only after differencing).

Example::

    data = read_split("./data", "train")
    data["strip"].shape, data["section"].shape, data["params"].shape
    # (N, 301, 3), (N, 512, 256), (N, 6)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from jaxpapers.physics.curves import resample, scale_params

__all__ = [
    "DATA_URL",
    "FOLDERS",
    "SPLITS",
    "expected_layout",
    "read_curve_file",
    "read_section_file",
    "read_split",
    "split_bounds",
]

DATA_URL = "https://drive.google.com/drive/folders/1DJCi74Gg3d4cBv1JlUG1pmyS1pVo2mJm"
"""The released LaDEEP data (linked from the reference's README)."""

FOLDERS: dict[str, str] = {
    "strip": "original_strip_line",
    "mould": "mould_line",
    "section": "strip_section_tiff",
    "params": "stretch_bending_params",
    "loaded": "load_strip_line",
    "unloaded": "unload_strip_line",
}
"""Output key -> folder name under the data root (as in the reference's ``main.py``)."""

_DESCRIPTIONS = {
    "strip": "strip centre lines, one 'x y z' row per point (.txt)",
    "mould": "mould centre lines (.txt)",
    "section": "cross-section signed-distance images (.tiff)",
    "params": "process parameters, CSV with 6 columns",
    "loaded": "loaded strip centre lines (.txt)",
    "unloaded": "unloaded (springback) strip centre lines (.txt)",
}

SPLITS = ("train", "eval", "test")
_TYPE_RE = re.compile(r"^type_(\d+)$")


def split_bounds(n: int, split: str) -> tuple[int, int]:
    """``[start, end)`` of ``split`` among ``n`` sorted files of one type (``_data_split``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    k = n // 10
    return {"train": (0, 8 * k), "eval": (8 * k, 9 * k), "test": (9 * k, n)}[split]


def expected_layout(root: str | os.PathLike[str]) -> str:
    """The folder tree the reader expects, with where to get the data."""
    lines = [
        f"Download the released LaDEEP data from {DATA_URL}",
        "and unpack it so that the tree is:",
        f"  {Path(root)}/",
    ]
    for key, folder in FOLDERS.items():
        lines.append(f"    {folder + '/type_0 ... type_4/':<42} {_DESCRIPTIONS[key]}")
    lines.append("Files are paired by sorted name within each type_<i> folder.")
    return "\n".join(lines)


def _missing(root: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"LaDEEP data not found: {what}.\n{expected_layout(root)}")


def _type_folders(root: Path, n_types: int | None) -> list[tuple[int, str]]:
    if not root.is_dir():
        raise _missing(root, f"data root {root} does not exist")
    for folder in FOLDERS.values():
        if not (root / folder).is_dir():
            raise _missing(root, f"folder {root / folder} does not exist")
    if n_types is not None:
        if n_types < 1:
            raise ValueError(f"n_types must be >= 1, got {n_types}.")
        types = [(i, f"type_{i}") for i in range(n_types)]
    else:
        found = {
            int(m.group(1)): name
            for name in os.listdir(root / FOLDERS["strip"])
            if (m := _TYPE_RE.match(name)) and (root / FOLDERS["strip"] / name).is_dir()
        }
        if not found:
            raise _missing(root, f"no type_<i> folders in {root / FOLDERS['strip']}")
        types = sorted(found.items())
    for folder in FOLDERS.values():
        for _, name in types:
            if not (root / folder / name).is_dir():
                raise _missing(root, f"folder {root / folder / name} does not exist")
    return types


def _sorted_files(folder: Path) -> list[Path]:
    return [
        folder / name
        for name in sorted(os.listdir(folder))
        if not name.startswith(".") and (folder / name).is_file()
    ]


def read_curve_file(path: str | os.PathLike[str], n_points: int | None = None) -> np.ndarray:
    """An ``x y z`` text curve ``(P, 3)`` float64, resampled to ``n_points`` if given."""
    pts = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if pts.shape[1] != 3 or pts.shape[0] < 2:
        raise ValueError(f"{path}: expected rows of 'x y z' (>= 2 points), got {pts.shape}.")
    if n_points is not None and pts.shape[0] != n_points:
        pts = resample(pts, n_points)
    return pts


def read_section_file(
    path: str | os.PathLike[str], section_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """A single-channel section image ``(H, W)`` float32, values as stored."""
    from PIL import Image  # Pillow is installed with matplotlib

    with Image.open(path) as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise ValueError(f"{path}: expected a single-channel image, got shape {arr.shape}.")
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got shape {arr.shape}.")
    arr = arr.astype(np.float32)
    if section_shape is not None and tuple(arr.shape) != tuple(section_shape):
        h, w = section_shape
        resized = Image.fromarray(arr).resize((int(w), int(h)), Image.Resampling.BILINEAR)
        arr = np.asarray(resized, dtype=np.float32)
    return arr


def _read_params_file(path: Path) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape[1] != 6:
        raise ValueError(f"{path}: expected CSV rows of 6 parameters, got shape {rows.shape}.")
    return scale_params(rows)


def read_split(
    root: str | os.PathLike[str],
    split: str,
    *,
    n_points: int = 301,
    section_shape: tuple[int, int] | None = None,
    n_types: int | None = None,
) -> dict[str, np.ndarray]:
    """Reads one split of the released data.

    Returns ``strip``, ``mould``, ``loaded``, ``unloaded`` (raw curves ``(N, n_points, 3)``
    float64), ``section`` ``(N, H, W)`` float32, ``params`` ``(N, 6)`` float32 (scaled as the
    reference) and ``section_type`` ``(N,)`` int32. Samples are ordered by type, then by name.
    Raises ``FileNotFoundError`` naming the expected tree when data is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not isinstance(n_points, int | np.integer) or n_points < 4:
        raise ValueError(f"n_points must be an int >= 4, got {n_points!r}.")
    if section_shape is not None and (
        len(section_shape) != 2 or any(int(s) < 1 for s in section_shape)
    ):
        raise ValueError(f"section_shape must be (H, W) with positive sizes, got {section_shape}.")
    root = Path(root)
    types = _type_folders(root, n_types)

    paths: dict[str, list[Path]] = {key: [] for key in FOLDERS}
    type_ids: list[int] = []
    for type_id, name in types:
        per_kind = {key: _sorted_files(root / folder / name) for key, folder in FOLDERS.items()}
        counts = {key: len(files) for key, files in per_kind.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"{name}: every kind needs the same number of files, got {counts}.")
        start, end = split_bounds(counts["strip"], split)
        for key, files in per_kind.items():
            paths[key] += files[start:end]
        type_ids += [type_id] * (end - start)

    out: dict[str, np.ndarray] = {}
    for key in ("strip", "mould", "loaded", "unloaded"):
        curves = [read_curve_file(p, n_points) for p in paths[key]]
        out[key] = np.stack(curves) if curves else np.zeros((0, n_points, 3))
    sections = [read_section_file(p, section_shape) for p in paths["section"]]
    shapes = {s.shape for s in sections}
    if len(shapes) > 1:
        raise ValueError(
            f"section images have different shapes {sorted(shapes)}; pass section_shape=(H, W)."
        )
    empty_shape = (0, *(section_shape or (0, 0)))
    out["section"] = np.stack(sections) if sections else np.zeros(empty_shape, np.float32)
    params = [_read_params_file(p) for p in paths["params"]]
    out["params"] = np.stack(params) if params else np.zeros((0, 6), np.float32)
    out["section_type"] = np.asarray(type_ids, dtype=np.int32)
    return out
