import importlib.util
import os
import subprocess
import sys

import ml_collections
import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.core import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "experiments", "configs")


def test_every_registered_paper_has_a_config_with_all_variants():
    for name in registry.names():
        path = os.path.join(CONFIG_DIR, f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert {"tiny", "default", "paper"} <= set(module.VARIANTS)
        for variant in module.VARIANTS:
            config = config_lib.load_file(path, variant)
            assert config.experiment == name
            assert config.is_locked, f"{name}:{variant} must be locked"
            assert {"seed", "mesh"} <= set(config.keys())


def test_override_checks_keys_and_names_valid_ones():
    config = config_lib.load_file(os.path.join(CONFIG_DIR, "fgcnn.py"), "tiny")
    config_lib.override(config, {"train.batch_size": 64, "model.name": "lr"})
    assert config.train.batch_size == 64 and config.model.name == "lr"
    with pytest.raises(KeyError, match=r"config.train has no 'batchsize'.*batch_size"):
        config_lib.override(config, {"train.batchsize": 64})
    with pytest.raises(KeyError, match=r"config.seed has no 'x'.*it is a value"):
        config_lib.check_key(config, "seed.x")
    with pytest.raises(FileNotFoundError):
        config_lib.load_file(os.path.join(CONFIG_DIR, "nope.py"))


def test_load_with_keyword_overrides():
    config = config_lib.load(os.path.join(CONFIG_DIR, "fgcnn.py"), "tiny", train__num_steps=3)
    assert config.train.num_steps == 3


def test_registry_imports_nothing_until_asked():
    code = (
        "import sys; from jaxpapers.core import registry; "
        "assert not any(m.startswith('jaxpapers.recsys') for m in sys.modules); "
        "registry.get('fgcnn'); assert 'jaxpapers.recsys.fgcnn' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_registry_is_lazy_and_extensible():
    assert "fgcnn" in registry.names()
    assert callable(registry.get("fgcnn"))
    with pytest.raises(KeyError, match="unknown experiment 'nope'.*fgcnn"):
        registry.get("nope")
    calls = []
    registry.register("_toy", lambda config, workdir: calls.append(workdir) or {"x": 1.0})
    try:
        assert registry.get("_toy")(ml_collections.ConfigDict(), "w") == {"x": 1.0}
        with pytest.raises(ValueError, match="already registered"):
            registry.register("_toy", "m:f")
    finally:
        registry._EXPERIMENTS.pop("_toy")  # pylint: disable=protected-access
