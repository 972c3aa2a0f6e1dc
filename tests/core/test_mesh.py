import pytest
from jax.sharding import AxisType

from jaxpapers.core import mesh as mesh_lib


@pytest.mark.parametrize(
    "shape,n,expected",
    [
        ((-1, 1), 8, (8, 1)),
        ((-1, 2), 8, (4, 2)),
        ((2, -1), 8, (2, 4)),
        ((1, 1), 8, (1, 1)),
        ((2, 2), 8, (2, 2)),
        ((-1,), 1, (1,)),
    ],
)
def test_resolve_shape(shape, n, expected):
    assert mesh_lib.resolve_shape(shape, n) == expected


@pytest.mark.parametrize(
    "shape,n,match",
    [
        ((-1, -1), 8, "more than one -1"),
        ((3, -1), 8, "not divisible"),
        ((4, 4), 8, "needs 16 devices"),
        ((0, 1), 8, "positive"),
        ((), 8, "at least one axis"),
    ],
)
def test_resolve_shape_errors(shape, n, match):
    with pytest.raises(ValueError, match=match):
        mesh_lib.resolve_shape(shape, n)


def test_make_mesh_fills_devices_with_explicit_axis_types(devices):
    mesh = mesh_lib.make_mesh(("data", "model"), (-1, 2))
    assert dict(mesh.shape) == {"data": 4, "model": 2}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
    explicit = mesh_lib.make_mesh(("data",), (-1,), axis_types="explicit")
    assert explicit.axis_types == (AxisType.Explicit,)


def test_smaller_mesh_uses_first_devices(devices):
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    assert mesh.devices.size == 1 and mesh.devices.flat[0] == devices[0]


def test_make_mesh_validates_names_and_types(devices):
    with pytest.raises(ValueError, match="unique"):
        mesh_lib.make_mesh(("data", "data"), (-1, 1))
    with pytest.raises(ValueError, match="differ in length"):
        mesh_lib.make_mesh(("data",), (-1, 1))
    with pytest.raises(ValueError, match="axis_types"):
        mesh_lib.make_mesh(("data",), (-1,), axis_types="manual")
