"""The shared trainer on a toy task: learning, NaN guard, resume, interruption, devices."""

import dataclasses
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
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


def _latest_step(workdir):
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
    assert _latest_step(str(tmp_path)) == 32
    # The final evaluation's per-example outputs are kept, in the eval data's order.
    for split, n in (("valid", 200), ("test", 300)):
        out = train.load_outputs(str(tmp_path), split)
        assert set(out) == {"sq"} and out["sq"].shape == (n,)
        assert float(np.mean(out["sq"])) == pytest.approx(results[split]["mse"], rel=1e-6)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, mesh1):
    # rows 64*9 .. 64*10-1 form batch 10 (no shuffling): its loss is NaN.
    task = _task(nan_rows=[64 * 9 + 3], shuffle=False, n_train=1024)
    with pytest.raises(train.NonFiniteError, match=r"step 10 .*last good checkpoint \(step 8\)"):
        train.train_and_evaluate(task, _loop(log_every=1), workdir=str(tmp_path), mesh=mesh1)
    assert _latest_step(str(tmp_path)) == 8


def test_nan_between_log_steps_is_caught_before_any_save(tmp_path, mesh1):
    task = _task(nan_rows=[64 * 5], shuffle=False, n_train=1024)  # batch 6; first save: step 8
    with pytest.raises(train.NonFiniteError, match="step 6 .*no checkpoint had been saved"):
        train.train_and_evaluate(task, _loop(log_every=100), workdir=str(tmp_path), mesh=mesh1)
    assert _latest_step(str(tmp_path)) is None


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
    assert _latest_step(work) == 13
    resumed = train.train_and_evaluate(_task(), _loop(), workdir=work, mesh=mesh8)
    for split in ("valid", "test"):
        assert resumed[split]["mse"] == full[split]["mse"], split  # bit-for-bit on CPU
        assert resumed[split]["n"] == full[split]["n"]

    # The resumed metrics.jsonl reads like the uninterrupted one, values included
    # (the train mean of steps 13-16 straddles the interruption).
    timing = {"examples_per_sec", "steps_per_sec", "compile_seconds", "eval_seconds"}

    def events(path):
        return [
            {k: v for k, v in e.items() if k not in timing}
            for e in metrics.read_jsonl(os.path.join(path, "metrics.jsonl"))
        ]

    assert events(work) == events(str(tmp_path / "full"))


def test_rerun_of_finished_run_only_evaluates(tmp_path, mesh1):
    first = train.train_and_evaluate(_task(), _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh1)
    steps = []
    again = train.train_and_evaluate(
        _task(), _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh1, hooks=[steps.append]
    )
    assert steps == []  # nothing retrained
    assert first["test"]["mse"] == again["test"]["mse"]
    events = [(e["step"], e["split"]) for e in metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))]
    assert len(events) == len(set(events)), events  # final evals replaced, not appended


class _Exploding(nnx.Module):
    """A regressor whose (unused) running statistic overflows while the loss stays finite."""

    def __init__(self, rngs):
        self.out = nnx.Linear(4, 1, rngs=rngs)
        self.stat = nnx.BatchStat(jnp.ones(()))

    def __call__(self, x):
        self.stat[...] = self.stat[...] * 1e30
        return self.out(x)[:, 0]


def test_a_non_finite_state_is_never_saved(tmp_path, mesh1):
    task = dataclasses.replace(_task(), init_model=_Exploding)
    with pytest.raises(train.NonFiniteError, match="state after step 8 holds NaN/Inf"):
        train.train_and_evaluate(task, _loop(), workdir=str(tmp_path), mesh=mesh1)
    assert _latest_step(str(tmp_path)) is None


def test_problems_are_reported_before_training(tmp_path, mesh1, devices):
    steps = []
    with pytest.raises(ValueError, match=r"no evaluation data for split\(s\) \['tset'\]"):
        train.train_and_evaluate(
            _task(),
            _loop(final_splits=("tset",)),
            workdir=str(tmp_path),
            mesh=mesh1,
            hooks=[steps.append],
        )
    explicit = mesh_lib.make_mesh(("data", "model"), (-1, 1), axis_types="explicit")
    with pytest.raises(ValueError, match="axis_types='auto'"):
        train.train_and_evaluate(_task(), _loop(), workdir=str(tmp_path), mesh=explicit)
    assert steps == []


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


def test_pretrained_hook_loads_weights_into_a_fresh_state_only(tmp_path, mesh8):
    w = np.zeros((16, 1), np.float32)
    calls = []

    def pretrained(state):
        calls.append(1)
        state["model"]["out"]["kernel"][...] = jnp.asarray(w)
        state["model"]["out"]["bias"][...] = jnp.full((1,), 7.0)
        return state

    task = dataclasses.replace(_task(lr=0.0), pretrained=pretrained)  # lr 0: nothing moves
    results = train.train_and_evaluate(task, _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh8)
    y = _data(300, 2)["y"]
    np.testing.assert_allclose(results["test"]["mse"], np.mean((7.0 - y) ** 2), rtol=1e-5)
    again = train.train_and_evaluate(task, _loop(num_steps=8), workdir=str(tmp_path), mesh=mesh8)
    assert calls == [1] and again["test"]["mse"] == results["test"]["mse"]  # resumed: not reloaded
