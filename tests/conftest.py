"""Test setup: 8 fake CPU devices, so every test can build 1- and 8-device meshes.

XLA reads the flags once, when the backend starts, so they are set before
anything imports jax. The legacy (non-fusion-emitter) CPU code generator
compiles faster; it cut the physics and nn tests' time by 10% (181 s -> 164 s).
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_force_host_platform_device_count=8",
        "--xla_cpu_use_fusion_emitters=false",
    ]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  pylint: disable=wrong-import-position
import pytest  # noqa: E402  pylint: disable=wrong-import-position

from jaxpapers.core import mesh as mesh_lib  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def devices():
    devs = jax.devices()
    assert len(devs) == 8, f"tests expect 8 fake CPU devices, got {devs}"
    return devs


@pytest.fixture
def mesh1(devices):
    return mesh_lib.make_mesh(("data", "model"), (1, 1))


@pytest.fixture
def mesh8(devices):
    return mesh_lib.make_mesh(("data", "model"), (-1, 1))
