"""Build a device ``Mesh`` from a config.

A mesh is named axes with sizes; one size may be ``-1`` ("fill with the remaining
devices"). ``axis_types`` is always passed to ``jax.make_mesh`` explicitly (its
default changed to ``Explicit``): this library uses ``Auto`` axes by default, so
that jitted functions with ``NamedSharding`` in/out shardings let XLA propagate
the rest, and ``Explicit`` is available for code written for sharding-in-types.

The same config runs on one device and on many: a mesh smaller than the number
of devices uses the first ``prod(shape)`` of them (``shape=(1, 1)`` on 8 fake CPU
devices is a one-device mesh), which is how tests compare 1 and 8 devices in one
process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh

_AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces one ``-1`` in ``shape`` so that the product uses every device.

    >>> resolve_shape((-1, 2), 8)
    (4, 2)
    >>> resolve_shape((1, 1), 8)
    (1, 1)
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("mesh shape must have at least one axis")
    fills = [i for i, s in enumerate(shape) if s == -1]
    if len(fills) > 1:
        raise ValueError(f"mesh shape {shape} has more than one -1; at most one axis can fill")
    if any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh shape {shape} must hold positive sizes or a single -1")
    known = math.prod(s for s in shape if s != -1)
    if fills:
        if num_devices % known:
            raise ValueError(
                f"mesh shape {shape}: {num_devices} devices are not divisible by the fixed "
                f"axes' product {known}"
            )
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) > num_devices:
        raise ValueError(
            f"mesh shape {shape} needs {math.prod(shape)} devices but only {num_devices} "
            "are available (set one size to -1 to fill whatever is there)"
        )
    return shape


def make_mesh(
    axis_names: Sequence[str] = ("data", "model"),
    shape: Sequence[int] = (-1, 1),
    axis_types: str = "auto",
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Makes a mesh with named axes; ``-1`` in ``shape`` fills the remaining devices."""
    axis_names = tuple(axis_names)
    if len(axis_names) != len(tuple(shape)):
        raise ValueError(f"mesh axes {axis_names} and shape {tuple(shape)} differ in length")
    if len(set(axis_names)) != len(axis_names):
        raise ValueError(f"mesh axis names must be unique, got {axis_names}")
    if axis_types not in _AXIS_TYPES:
        raise ValueError(
            f"mesh axis_types must be one of {sorted(_AXIS_TYPES)}, got {axis_types!r}"
        )
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_shape(shape, len(devices))
    devices = devices[: math.prod(shape)]
    types = (_AXIS_TYPES[axis_types],) * len(shape)
    return jax.make_mesh(shape, axis_names, axis_types=types, devices=devices)


def mesh_from_config(config) -> Mesh:
    """Builds the mesh described by ``config.mesh`` (``axes``, ``shape``, ``axis_types``)."""
    return make_mesh(tuple(config.axes), tuple(config.shape), config.get("axis_types", "auto"))
