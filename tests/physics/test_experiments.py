"""LaDEEP and FilDeep experiments end to end on their tiny configs, and FilDeep's schedule."""

import math
import os

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core import config as config_lib
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import registry
from jaxpapers.core import sharding as sharding_lib
from jaxpapers.core import train as train_lib
from jaxpapers.physics import fildeep, stretch_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(paper, variant="tiny", **overrides):
    path = os.path.join(ROOT, "experiments", "configs", f"{paper}.py")
    return config_lib.override(config_lib.load_file(path, variant), overrides)


def _train_losses(workdir):
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    return [e["loss"] for e in events if e.get("split") == "train" and "loss" in e]


@pytest.mark.slow  # 31 s; LaDEEP's model, losses and optimizer are tested fast (CI budget)
def test_ladeep_tiny_end_to_end(tmp_path):
    # One device: the 1- vs 8-device path of the core trainer is tested in tests/core (48 s
    # here on 8 fake devices, 31 s on one).
    work = str(tmp_path / "ladeep")
    final = registry.get("ladeep")(_config("ladeep", **{"mesh.shape": (1, 1)}), work)
    for key in ("loaded_mad", "loaded_te", "unloaded_mad", "unloaded_te"):
        assert math.isfinite(final[key]) and final[key] > 0, key
    assert final["num_steps"] == 3 * (64 // 16)
    losses = _train_losses(work)
    assert losses[-1] < losses[0]
    for name in ("loaded_curves", "unloaded_curves", "learning_curves"):
        assert os.path.getsize(os.path.join(work, "plots", f"{name}.png")) > 0


@pytest.mark.slow  # FilDeep's model, losses and optimizer groups are tested fast
def test_fildeep_tiny_end_to_end(tmp_path):
    work = str(tmp_path / "fildeep")
    final = registry.get("fildeep")(_config("fildeep", **{"mesh.shape": (1, 1)}), work)
    assert set(final) >= {"unloaded_mad", "unloaded_te", "valid_unloaded_mad"}
    assert math.isfinite(final["unloaded_mad"]) and final["unloaded_mad"] > 0
    # 2 rounds of (64/16 LF + 32/16 HF batches), then 1 HF fine-tuning epoch.
    assert final["num_steps"] == 2 * (4 + 2) + 2
    assert os.path.getsize(os.path.join(work, "plots", "unloaded_curves.png")) > 0


@pytest.mark.slow  # compiles FilDeep's train step (the model- and optimizer-level tests are fast)
def test_fildeep_steps_only_the_optimizer_of_the_batch_fidelity(devices):
    """An LF batch moves LF and section weights only; an HF batch only the HF modules."""
    config = _config("fildeep")
    low, high = fildeep.load_fidelity_data(config.data)
    task, steps, per_round = fildeep.make_task(config, low, high)
    assert (steps, per_round) == (14, 6)
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    setup_ = train_lib.setup(task.init_model, task.optimizer, mesh=mesh, rules=task.rules)
    step = train_lib.make_train_step(task.loss_fn, setup_)
    state = setup_.init()
    groups = {}
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state["model"]))[0]
    for path, _ in flat:
        keys = tuple(getattr(k, "key", k) for k in path)
        groups[keys] = fildeep.param_group(keys)
    assert set(groups.values()) == {"lf", "section", "hf"}

    def params(state):
        pure = nnx.to_pure_dict(state["model"])
        return {
            tuple(getattr(k, "key", k) for k in p): np.array(v)
            for p, v in jax.tree_util.tree_flatten_with_path(pure)[0]
        }

    data = task.train_data
    lf_batch, hf_batch = data[0], data[4]  # epoch order: 4 LF batches, then 2 HF batches
    assert lf_batch["fidelity"][0] == fildeep.LOW and hf_batch["fidelity"][0] == fildeep.HIGH
    sharding = sharding_lib.batch_sharding(mesh)
    for batch, moving in ((lf_batch, {"lf", "section"}), (hf_batch, {"hf"})):
        before = params(state)
        state, _, _ = step(state, sharding_lib.shard_batch(batch, sharding))
        after = params(state)
        for keys, group in groups.items():
            if "mean" in keys or "var" in keys:  # batch-norm statistics are not parameters
                continue
            changed = not np.array_equal(before[keys], after[keys])
            assert changed == (group in moving), (keys, group, changed)


def test_paper_variant_without_data_says_where_to_put_it(tmp_path):
    config = _config("ladeep", "paper", **{"data.data_dir": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="drive.google.com") as err:
        registry.get("ladeep")(config, str(tmp_path / "work"))
    assert stretch_files.DATA_URL in str(err.value)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="model.name must be one of"):
        registry.get("ladeep")(_config("ladeep", **{"model.name": "cnn"}), str(tmp_path))
    with pytest.raises(ValueError, match="method must be one of"):
        registry.get("fildeep")(_config("fildeep", method="both"), str(tmp_path))
    with pytest.raises(ValueError, match="LF/HF data are not released"):
        config = _config("fildeep", **{"data.source": "ladeep_files"})
        registry.get("fildeep")(config, str(tmp_path))
