"""Image classification datasets as in-memory arrays.

* ``digits`` — scikit-learn's bundled handwritten digits (1,797 8x8 grey images,
  10 classes; shipped inside the scikit-learn wheel, so it works offline). The
  embedded default of the analytic family. Split into train/test by a seeded,
  class-stratified shuffle.
* ``mnist``, ``cifar10``, ``cifar100`` — TFDS datasets read with
  ``tfds.data_source`` (no TensorFlow) from a prepared ``data_dir``; missing data
  raises ``FileNotFoundError`` saying how to prepare it.
* ``tiny_imagenet`` — the standard ``tiny-imagenet-200`` folder (TFDS has no
  builder for it): ``train/<wnid>/images/*.JPEG`` and ``val/images`` with
  ``val/val_annotations.txt`` (the labelled validation set is the test split).

Images are ``uint8`` (N, H, W, C) or ``float32`` in [0, 1] for digits; labels
``int32`` in ``[0, num_classes)``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxpapers.data import tfds as tfds_lib

NAMES = ("digits", "mnist", "cifar10", "cifar100", "tiny_imagenet")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.ndim != 4 or len(images) != len(labels):
                raise ValueError(
                    f"{split}: images must be (N, H, W, C) with one label each, got "
                    f"{images.shape} and {labels.shape}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"{split} labels must lie in [0, {self.num_classes})")

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] or float images -> float32 in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def crop_flip(batch: dict, rng: np.random.Generator, *, pad_mode: str = "reflect") -> dict:
    """CIFAR-style augmentation of ``batch["image"]``: a random crop of the image
    padded by 4 pixels (``pad_mode`` as :func:`numpy.pad`; torchvision's
    ``RandomCrop(32, padding=4)`` is ``"constant"``), and a horizontal flip with
    probability 1/2 (a ``transform`` for :func:`jaxpapers.data.pipeline.train_batches`)."""
    images = batch["image"]
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode=pad_mode)
    dy, dx = rng.integers(0, 9, size=(2, n))
    out = np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return {**batch, "image": out}


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Row indices (train, test) with ``test_fraction`` of every class in test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(test_fraction * len(rows)))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits(*, test_fraction: float = 0.3, seed: int = 0) -> ImageDataset:
    """scikit-learn's handwritten digits (8x8, 10 classes), stratified split."""
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[..., None]
    labels = raw.target.astype(np.int32)
    train, test = stratified_split(labels, test_fraction, seed)
    return ImageDataset("digits", images[train], labels[train], images[test], labels[test], 10)


_TFDS = {"mnist": 10, "cifar10": 10, "cifar100": 100}


def _materialise(source) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(source[i]["image"]) for i in range(len(source))])
    labels = np.asarray([source[i]["label"] for i in range(len(source))], np.int32)
    return images, labels


def tfds_images(name: str, data_dir: str | None) -> ImageDataset:
    """A prepared TFDS image dataset (train / test splits) as uint8 arrays."""
    if name not in _TFDS:
        raise ValueError(f"TFDS image datasets: {sorted(_TFDS)}, got {name!r}")
    train = _materialise(tfds_lib.data_source(name, split="train", data_dir=data_dir or None))
    test = _materialise(tfds_lib.data_source(name, split="test", data_dir=data_dir or None))
    return ImageDataset(name, *train, *test, _TFDS[name])


def tiny_imagenet(data_dir: str) -> ImageDataset:
    """Tiny-ImageNet from its ``tiny-imagenet-200`` folder (200 classes, 64x64)."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    root = os.path.join(data_dir, "tiny-imagenet-200")
    if not os.path.isdir(root):
        root = data_dir
    wnids_file = os.path.join(root, "wnids.txt")
    if not os.path.isfile(wnids_file):
        raise FileNotFoundError(
            f"Tiny-ImageNet not found: no {wnids_file}. Download tiny-imagenet-200.zip (the "
            "Stanford CS231n release), unzip it so that <dir>/tiny-imagenet-200/wnids.txt "
            "exists, and pass --config.data.data_dir=<dir>. jaxpapers never downloads data."
        )
    with open(wnids_file, encoding="utf-8") as f:
        wnids = [line.strip() for line in f if line.strip()]
    index = {w: i for i, w in enumerate(wnids)}

    def load(path):
        return np.asarray(Image.open(path).convert("RGB"), np.uint8)

    train_images, train_labels = [], []
    for wnid in wnids:
        folder = os.path.join(root, "train", wnid, "images")
        for name in sorted(os.listdir(folder)):
            train_images.append(load(os.path.join(folder, name)))
            train_labels.append(index[wnid])
    test_images, test_labels = [], []
    with open(os.path.join(root, "val", "val_annotations.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 2:
                test_images.append(load(os.path.join(root, "val", "images", parts[0])))
                test_labels.append(index[parts[1]])
    return ImageDataset(
        "tiny_imagenet",
        np.stack(train_images),
        np.asarray(train_labels, np.int32),
        np.stack(test_images),
        np.asarray(test_labels, np.int32),
        len(wnids),
    )


def load(name: str, *, data_dir: str = "", seed: int = 0) -> ImageDataset:
    """Dispatches on ``name`` (one of :data:`NAMES`)."""
    if name == "digits":
        return digits(seed=seed)
    if name in _TFDS:
        return tfds_images(name, data_dir)
    if name == "tiny_imagenet":
        return tiny_imagenet(data_dir)
    raise ValueError(f"data.name must be one of {NAMES}, got {name!r}")
