"""Class-incremental protocols: a seeded class order cut into a base phase and tasks.

ACIL's protocol (B50 on CIFAR-100): shuffle the classes with a seed, train the
backbone on the first ``base`` classes (phase 0), then add the remaining classes
in ``num_phases`` equal tasks. ``phases`` returns the class ids of every phase;
``rows_of`` the rows holding a set of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_order(num_classes: int, seed: int | None) -> np.ndarray:
    """A seeded permutation of the class ids (``seed=None``: 0, 1, 2, ...)."""
    if seed is None:
        return np.arange(num_classes)
    return np.random.default_rng(seed).permutation(num_classes)


def phases(order: Sequence[int], base: int, num_phases: int) -> list[np.ndarray]:
    """``[base classes, task 1 classes, ...]``: ``num_phases`` tasks after the base.

    >>> [p.tolist() for p in phases(range(10), base=4, num_phases=3)]
    [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    """
    order = np.asarray(order)
    if not 0 < base <= len(order):
        raise ValueError(f"base must be in [1, {len(order)}], got {base}")
    rest = len(order) - base
    if num_phases < 0 or (num_phases == 0 and rest) or (num_phases and rest % num_phases):
        raise ValueError(
            f"{rest} classes after the {base} base classes cannot be cut into {num_phases} "
            "equal phases"
        )
    out = [order[:base]]
    if num_phases:
        out += list(np.split(order[base:], num_phases))
    return out


def rows_of(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Sorted row indices whose label is in ``classes``."""
    return np.flatnonzero(np.isin(labels, np.asarray(classes)))
