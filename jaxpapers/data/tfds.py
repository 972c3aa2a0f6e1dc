"""A thin, offline-only wrapper around ``tfds.data_source``.

Design choices:

* ``tensorflow_datasets`` is imported inside the function, so importing
  ``jaxpapers.data`` stays cheap and works where TFDS is not installed.
  ``tfds.data_source`` itself needs no TensorFlow: it reads ArrayRecord files
  through the ``array_record`` package and returns an indexable, picklable
  random-access source, which is what Grain samplers expect.
* ``download=False`` always. Training jobs must never start a multi-GB
  download (and the machines typically have no internet). When the dataset
  has not been prepared, TFDS raises assorted errors that do not say what to
  do (for an empty directory it complains about the TFRecord file format);
  we turn them into a ``FileNotFoundError`` naming the dataset, the directory
  that was searched and the exact commands to prepare it elsewhere.
* Unknown dataset names keep TFDS's own ``DatasetNotFoundError`` (a
  ``ValueError``), which already lists the registered names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def _expected_dir(
    tfds: Any, name: str, data_dir: str | os.PathLike | None
) -> tuple[str, str | None]:
    """Returns (root data dir searched, versioned dataset dir if known)."""
    if data_dir is not None:
        root = os.fspath(data_dir)
    else:
        root = os.environ.get("TFDS_DATA_DIR") or os.fspath(tfds.core.constants.DATA_DIR)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        return root, os.fspath(builder.data_dir)
    except Exception:  # pylint: disable=broad-except
        return root, None


def _is_prepared(tfds: Any, name: str, data_dir: str | os.PathLike | None) -> bool:
    try:
        return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
    except Exception:  # pylint: disable=broad-except
        return False


def data_source(
    name: str, *, split: str, data_dir: str | os.PathLike | None = None
) -> Sequence[Any]:
    """Random-access source of a prepared TFDS dataset, never downloading.

    Args:
        name: TFDS name, optionally with config / version, e.g. ``"mnist"`` or
            ``"imagenet2012:5.1.0"``.
        split: Split expression, e.g. ``"train"`` or ``"train[:90%]"``.
        data_dir: TFDS data directory; ``None`` means TFDS's default
            (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

    Returns:
        The ``tfds.data_source`` result: a sequence of example dicts of NumPy
        arrays supporting ``len`` and integer indexing.

    Raises:
        FileNotFoundError: if the dataset is not prepared under ``data_dir``.
        ValueError: (``tfds.core.registered.DatasetNotFoundError``) if no
            dataset called ``name`` is registered.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise
    except Exception as error:  # pylint: disable=broad-except
        if _is_prepared(tfds, name, data_dir):
            raise
        root, expected = _expected_dir(tfds, name, data_dir)
        dataset = name.split(":")[0]
        where = f" (expected files under {expected})" if expected else ""
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in data_dir {root!r}"
            f"{where}, and jaxpapers never downloads data. On a machine with "
            f"internet access, build it in ArrayRecord format:\n"
            f"  tfds build {dataset} --data_dir={root} "
            f"--file_format=array_record\n"
            f"then copy that directory here and pass "
            f"--config.data.data_dir=<dir>."
        ) from error
