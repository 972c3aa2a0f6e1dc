"""The shared trainer on a toy task: learning, NaN guard, resume, interruption, devices."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.core import metrics, train
from jaxpapers.data import pipeline

W_TRUE = np.array([1.5, -2.0, 0.5, 3.0], np.float32)


class _Regressor(nnx.Module):
    def __init__(self, rngs):
        # No bias before BatchNorm: BN cancels it, so its gradient is float noise that
        # Adam normalises into lr-sized steps, and 1- and 8-device runs (different
        # reduction orders) would drift apart in eval mode.
        self.hidden = nnx.Linear(4, 16, use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)  # carries RNG state through checkpoints
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.relu(self.norm(self.hidden(x)))))[:, 0]


def _data(n, seed, nan_rows=()):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ W_TRUE + 0.1 * rng.normal(size=n)).astype(np.float32)
    x[list(nan_rows)] = np.nan
    return {"x": x, "y": y}


def _task(num_epochs=4, nan_rows=(), shuffle=True, lr=3e-2, n_train=512):
    def loss_fn(model, batch):
        err = model(batch["x"]) - batch["y"]
        return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}

    def eval_fn(model, batch):
        return {"sq": (model(batch["x"]) - batch["y"]) ** 2}

    return train.Task(
        init_model=_Regressor,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=lambda out: {"mse": float(np.mean(out["sq"])), "n": int(len(out["sq"]))},
        optimizer=optax.adam(lr),
        train_data=pipeline.train_batches(
            _data(n_train, 0, nan_rows), 64, num_epochs=num_epochs, seed=1, shuffle=shuffle
        ),
        eval_data={
            "valid": pipeline.eval_batches(_data(200, 1), 64),
            "test": pipeline.eval_batches(_data(300, 2), 64),
        },
    )


def _loop(**kw):
    defaults = dict(num_steps=32, log_every=4, eval_every=8, checkpoint_every=8, progress=False)
    return train.LoopConfig(**{**defaults, **kw})


def _params(workdir):
    from jaxpapers.core import checkpoint

    with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
        return ckpt.latest_step()


def test_learns_and_writes_metrics(tmp_path, mesh8):
    results = train.train_and_evaluate(_task(), _loop(), workdir=str(tmp_path), mesh=mesh8)
    assert set(results) == {"valid", "test"}
    assert results["test"]["n"] == 300  # every example once, padding dropped
    assert results["test"]["mse"] < 2.0  # var(y) is about 15.5
    events = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
    train_events = [e for e in events if e["split"] == "train"]
    assert [e["step"] for e in train_events] == list(range(4, 33, 4))
    assert train_events[-1]["loss"] < train_events[0]["loss"]
    assert all({"loss", "mae", "grad_norm", "examples_per_sec"} <= set(e) for e in train_events)
    assert [e["step"] for e in events if e["split"] == "valid"] == [8, 16, 24, 32]
    assert _params(str(tmp_path)) == 32


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, mesh1):
    # rows 64*9 .. 64*10-1 form batch 10 (no shuffling): its loss is NaN.
    task = _task(nan_rows=[64 * 9 + 3], shuffle=False, n_train=1024)
    with pytest.raises(train.NonFiniteError, match=r"step 10 .*last good checkpoint \(step 8\)"):
        train.train_and_evaluate(task, _loop(log_every=1), workdir=str(tmp_path), mesh=mesh1)
    assert _params(str(tmp_path)) == 8


def test_nan_between_log_steps_is_caught_before_any_save(tmp_path, mesh1):
    task = _task(nan_rows=[64 * 5], shuffle=False, n_train=1024)  # batch 6; first save: step 8
    with pytest.raises(train.NonFiniteError, match="step 6 .*no checkpoint had been saved"):
        train.train_and_evaluate(task, _loop(log_every=100), workdir=str(tmp_path), mesh=mesh1)
    assert _params(str(tmp_path)) is None


def test_interrupt_then_resume_matches_uninterrupted_run(tmp_path, mesh8):
    full = train.train_and_evaluate(_task(), _loop(), workdir=str(tmp_path / "full"), mesh=mesh8)

    def interrupt_at_13(step):
        if step == 13:
            os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C: finish the step, save, stop

    work = str(tmp_path / "resumed")
    with pytest.raises(train.TrainingInterrupted, match="after step 13"):
        train.train_and_evaluate(
            _task(), _loop(), workdir=work, mesh=mesh8, hooks=[interrupt_at_13]
        )
    assert _params(work) == 13
    resumed = train.train_and_evaluate(_task(), _loop(), workdir=work, mesh=mesh8)
    assert resumed == {s: {k: v for k, v in m.items()} for s, m in resumed.items()}
    for split in ("valid", "test"):
        assert resumed[split]["mse"] == full[split]["mse"], split  # bit-for-bit on CPU

    # the resumed metrics.jsonl reads like the uninterrupted one
    def steps(path):
        return [
            (e["step"], e["split"]) for e in metrics.read_jsonl(os.path.join(path, "metrics.jsonl"))
        ]

    assert steps(work) == steps(str(tmp_path / "full"))


def test_rerun_of_finished_run_only_evaluates(tmp_path, mesh1):
    first = train.train_and_evaluate(_task(), _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh1)
    again = train.train_and_evaluate(_task(), _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh1)
    assert first["test"]["mse"] == again["test"]["mse"]


def test_one_and_eight_devices_agree(tmp_path, mesh1, mesh8):
    one = train.train_and_evaluate(_task(), _loop(), workdir=str(tmp_path / "1"), mesh=mesh1)
    eight = train.train_and_evaluate(_task(), _loop(), workdir=str(tmp_path / "8"), mesh=mesh8)
    for split in ("valid", "test"):
        np.testing.assert_allclose(one[split]["mse"], eight[split]["mse"], rtol=1e-4)


def test_loop_config_and_data_errors(tmp_path, mesh1):
    with pytest.raises(ValueError, match="num_steps must be positive"):
        train.LoopConfig(num_steps=0)
    with pytest.raises(ValueError, match="ran out at step 33"):
        train.train_and_evaluate(
            _task(num_epochs=4), _loop(num_steps=40), workdir=str(tmp_path), mesh=mesh1
        )
