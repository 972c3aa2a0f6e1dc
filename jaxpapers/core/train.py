"""One flat, readable trainer for every gradient-trained experiment.

A paper supplies a :class:`Task` — how to build its NNX model, its loss, what to
compute per example at evaluation and how to summarise it, an optax optimizer
and its grain datasets — and :func:`train_and_evaluate` does the rest:

* **init under jit**: the model and optimizer are built once abstractly
  (``nnx.eval_shape``) to learn their shapes and logical axis names, then for
  real inside ``jax.jit`` with ``out_shardings`` from the rules table, so large
  tables are created already sharded;
* **step**: ``jax.jit`` over ``nnx.merge`` / ``nnx.split`` (no ``nnx.jit`` in the
  hot loop), train state donated (``donate_argnums=0``), batches sharded over the
  ``data`` axis;
* **NaN/Inf guard**: every step returns a finiteness flag for its loss and
  gradient norm; flags are read at each log/checkpoint boundary, a checkpoint is
  only written after every step before it was checked finite, and a non-finite
  step stops the run with :class:`NonFiniteError` naming the step and the last
  good checkpoint (which is kept);
* **progress and metrics**: a tqdm bar with examples/s, train means every
  ``log_every`` steps and evaluations every ``eval_every`` steps to
  ``metrics.jsonl``, TensorBoard and the console;
* **resume**: orbax checkpoints of model, optimizer and input-iterator state;
  the same call on the same workdir continues from the last checkpoint and ends
  with the same final metrics as an uninterrupted run;
* **interruption**: SIGINT/SIGTERM finish the current step, save a checkpoint and
  raise :class:`TrainingInterrupted` (a second Ctrl-C aborts at once).

Evaluation runs every example exactly once (padded batches with a ``mask``), in
eval mode (``model.eval()``: BatchNorm running averages, no dropout), and brings
the per-example outputs to the host, so metrics such as exact AUC need no
approximation. The final evaluation's per-example outputs are also written to
``<workdir>/final_outputs/<split>.npz`` (:func:`save_outputs`), so two runs scored
on the same examples can be compared by a paired test
(:mod:`jaxpapers.recsys.significance`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxpapers.core import checkpoint as checkpoint_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core import sharding as sharding_lib
from jaxpapers.data import pipeline

Batch = dict[str, Any]


class NonFiniteError(RuntimeError):
    """A training step produced a NaN/Inf loss or gradient."""


class TrainingInterrupted(KeyboardInterrupt):
    """The run was stopped by a signal after saving a checkpoint."""

    def __init__(self, step: int, signame: str, checkpoint_dir: str):
        super().__init__(
            f"{signame} received: stopped after step {step} and saved a checkpoint in "
            f"{checkpoint_dir}; run the same command again to resume"
        )
        self.step = step


@dataclasses.dataclass(frozen=True)
class Task:
    """What a gradient-trained experiment supplies to :func:`train_and_evaluate`.

    Attributes:
      init_model: builds the model from ``nnx.Rngs`` (called under ``jax.jit``).
      loss_fn: ``(model, batch) -> (scalar loss, dict of scalar metrics)``; the
        model is in train mode.
      eval_fn: ``(model, batch) -> dict of per-example arrays`` (leading axis =
        batch); the model is in eval mode. Padding rows are dropped on the host.
      summarize: host-side ``dict of concatenated per-example arrays -> dict of
        metrics`` (e.g. exact AUC over a whole split).
      optimizer: the optax transformation (schedules included).
      train_data: grain dataset whose elements are host training batches.
      eval_data: split name -> grain dataset of padded batches with a ``mask``.
      wrt: which variables the optimizer updates (an ``nnx`` filter).
      rules: logical-axis -> mesh-axis rules for parameters and batches.
      pretrained: optional ``state -> state`` applied to a freshly initialised
        ``{"model": State, "opt": State}`` (never to a resumed one), e.g. to load
        pretrained teachers into a distillation model; the result is laid out
        with the state's shardings.
      rng_impl: PRNG implementation of the initialisation keys (None: JAX's
        default, threefry). ``"rbg"`` compiles a model's initialisation several
        times faster on CPU (measured: 7.6 s instead of 25 s for a tiny LaDEEP)
        but gives other initial weights.
    """

    init_model: Callable[[nnx.Rngs], nnx.Module]
    loss_fn: Callable[[nnx.Module, Batch], tuple[jax.Array, dict[str, jax.Array]]]
    eval_fn: Callable[[nnx.Module, Batch], dict[str, jax.Array]]
    summarize: Callable[[dict[str, np.ndarray]], dict[str, float]]
    optimizer: optax.GradientTransformation
    train_data: grain.MapDataset
    eval_data: Mapping[str, grain.MapDataset]
    wrt: Any = nnx.Param
    rules: sharding_lib.Rules = sharding_lib.DEFAULT_RULES
    pretrained: Callable[[Any], Any] | None = None
    rng_impl: str | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Cadence of the training loop (``config.train`` in every experiment config)."""

    num_steps: int
    log_every: int = 100
    eval_every: int = 0  # 0: evaluate only at the end
    eval_splits: tuple[str, ...] = ("valid",)  # evaluated every `eval_every` steps
    final_splits: tuple[str, ...] = ("valid", "test")  # evaluated at the end
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    prefetch_threads: int = 2
    progress: bool = True

    def __post_init__(self):
        if self.num_steps <= 0:
            raise ValueError(f"train.num_steps must be positive, got {self.num_steps}")
        for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"train.eval_every must be >= 0, got {self.eval_every}")

    @classmethod
    def from_train(cls, train, *, num_steps: int, eval_every: int, seed: int) -> LoopConfig:
        """The loop of an experiment config's ``train`` block (``log_every``,
        ``checkpoint_every``, ``keep_checkpoints``, ``prefetch_threads``, ``progress``)."""
        return cls(
            num_steps=num_steps,
            log_every=train.log_every,
            eval_every=eval_every,
            checkpoint_every=train.checkpoint_every,
            keep_checkpoints=train.keep_checkpoints,
            seed=seed,
            prefetch_threads=train.prefetch_threads,
            progress=train.progress,
        )


# --------------------------------------------------------------------------- signals


class _StopRequest:
    """Turns SIGINT/SIGTERM into a request to stop at the next step boundary."""

    def __init__(self):
        self.signame: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        if self.signame is not None:  # second signal: give up on a clean stop
            raise KeyboardInterrupt
        self.signame = signal.Signals(signum).name
        logging.warning(
            "%s received: finishing this step, saving a checkpoint, then stopping "
            "(send it again to abort without saving)",
            self.signame,
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            # None: the previous handler was installed from C; restore the default.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


# --------------------------------------------------------------------------- steps


@dataclasses.dataclass(frozen=True)
class Setup:
    """Graph definitions, abstract state and shardings of a model + optimizer.

    Attributes:
      model_def: train-mode graph of the model.
      eval_model_def: the same graph in eval mode (BatchNorm averages, no dropout).
      opt_def: graph of the ``nnx.Optimizer``.
      abstract_state: ``{"model": State, "opt": State}`` of ShapeDtypeStructs.
      shardings: ``NamedSharding`` per variable of ``abstract_state`` (a prefix tree).
      batch_sharding: how batches are laid out (leading axis over ``data``).
      init: jitted ``() -> state``, created directly with ``shardings``.
    """

    model_def: Any
    eval_model_def: Any
    opt_def: Any
    abstract_state: Any
    shardings: Any
    batch_sharding: NamedSharding
    init: Callable[[], Any]
    wrt: Any = nnx.Param


def setup(
    init_model: Callable[[nnx.Rngs], nnx.Module],
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh,
    rules: sharding_lib.Rules = sharding_lib.DEFAULT_RULES,
    wrt: Any = nnx.Param,
    seed: int = 0,
    rng_impl: str | None = None,
) -> Setup:
    """Builds the model abstractly, derives shardings, and jits a sharded init.

    ``rng_impl`` picks the PRNG implementation of the initialisation keys
    (see :class:`Task`).
    """

    def rngs():
        return nnx.Rngs(seed if rng_impl is None else jax.random.key(seed, impl=rng_impl))

    def build(rngs):
        model = init_model(rngs)
        return model, nnx.Optimizer(model, optimizer, wrt=wrt)

    abstract_model, abstract_opt = nnx.eval_shape(lambda: build(rngs()))
    model_def, abstract_model_state = nnx.split(abstract_model)
    opt_def, abstract_opt_state = nnx.split(abstract_opt)
    abstract_model.eval()  # flips static flags only
    eval_model_def, _ = nnx.split(abstract_model)
    abstract_state = {"model": abstract_model_state, "opt": abstract_opt_state}
    shardings = sharding_lib.state_shardings(abstract_state, mesh, rules)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        model, opt = build(rngs())
        return {"model": nnx.state(model), "opt": nnx.state(opt)}

    return Setup(
        model_def,
        eval_model_def,
        opt_def,
        abstract_state,
        shardings,
        sharding_lib.batch_sharding(mesh, rules),
        init,
        wrt,
    )


def task_setup(task: Task, mesh: Mesh, *, seed: int = 0) -> Setup:
    """:func:`setup` for ``task`` (e.g. to :func:`restore_model` what a run trained)."""
    return setup(
        task.init_model,
        task.optimizer,
        mesh=mesh,
        rules=task.rules,
        wrt=task.wrt,
        seed=seed,
        rng_impl=task.rng_impl,
    )


def global_norm(tree: Any) -> jax.Array:
    """L2 norm of all leaves, accumulated in float32 (no fp16/bf16 overflow)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def make_train_step(
    loss_fn: Callable[[nnx.Module, Batch], tuple[jax.Array, dict[str, jax.Array]]],
    setup_: Setup,
) -> Callable[[Any, Batch], tuple[Any, dict[str, jax.Array], jax.Array]]:
    """Jitted ``(state, batch) -> (state, metrics, finite)``; ``state`` is donated.

    ``finite`` is true when the loss and the gradient norm are finite.
    """

    def step(state, batch):
        model = nnx.merge(setup_.model_def, state["model"])
        opt = nnx.merge(setup_.opt_def, state["opt"])

        def loss(m):
            return loss_fn(m, batch)

        grad_fn = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, setup_.wrt), has_aux=True)
        (value, aux), grads = grad_fn(model)
        opt.update(model, grads)
        grad_norm = global_norm(grads)
        metrics = {"loss": value, **aux, "grad_norm": grad_norm}
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        return {"model": nnx.state(model), "opt": nnx.state(opt)}, metrics, finite

    replicated = NamedSharding(setup_.batch_sharding.mesh, P())
    return jax.jit(
        step,
        in_shardings=(setup_.shardings, setup_.batch_sharding),
        out_shardings=(setup_.shardings, replicated, replicated),
        donate_argnums=0,
    )


def make_eval_step(
    eval_fn: Callable[[nnx.Module, Batch], dict[str, jax.Array]],
    setup_: Setup,
) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """Jitted ``(model_state, batch) -> per-example outputs`` in eval mode."""

    @functools.partial(jax.jit, in_shardings=(setup_.shardings["model"], setup_.batch_sharding))
    def eval_step(model_state, batch):
        return eval_fn(nnx.merge(setup_.eval_model_def, model_state), batch)

    return eval_step


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """True when every floating-point leaf of ``tree`` is finite (keys/ints skipped)."""
    checks = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


def evaluate(
    eval_step: Callable[[Any, Batch], dict[str, jax.Array]],
    model_state: Any,
    dataset: grain.MapDataset,
    batch_sharding: NamedSharding,
    *,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Runs ``eval_step`` over every batch; returns per-example outputs (no padding)."""
    outputs: dict[str, list[np.ndarray]] = {}

    def collect(out, mask):
        out = jax.device_get(out)
        keep = np.asarray(mask) > 0
        for k, v in out.items():
            outputs.setdefault(k, []).append(np.asarray(v)[keep])

    it = pipeline.make_iterator(dataset)
    pending = None
    try:
        for batch in tqdm(it, total=len(dataset), desc=desc, leave=False, disable=not progress):
            out = eval_step(model_state, sharding_lib.shard_batch(batch, batch_sharding))
            if pending is not None:
                collect(*pending)  # fetch batch i-1 while batch i runs
            pending = (out, batch["mask"])
        if pending is not None:
            collect(*pending)
    finally:
        pipeline.close_iterator(it)
    return {k: np.concatenate(v) for k, v in outputs.items()}


# --------------------------------------------------------------------------- loop


def _check_supported(task: Task, loop: LoopConfig, mesh: Mesh) -> None:
    """Fails fast on what the loop cannot do, before any work is done."""
    missing = (set(loop.eval_splits) | set(loop.final_splits)) - set(task.eval_data)
    if missing:
        raise ValueError(
            f"no evaluation data for split(s) {sorted(missing)}; the task has "
            f"{sorted(task.eval_data)}"
        )
    if any(t == AxisType.Explicit for t in mesh.axis_types):
        raise ValueError(
            "the trainer lays out arrays with NamedSharding and lets XLA propagate the rest, "
            "which needs Auto mesh axes; set mesh.axis_types='auto' (explicit axes are for "
            "code written with sharding-in-types)"
        )
    if jax.process_count() > 1:
        raise ValueError(
            "multi-process training is not supported yet: the input pipeline gives every "
            "process the same batches and evaluation gathers outputs on one host"
        )


def train_and_evaluate(
    task: Task,
    loop: LoopConfig,
    *,
    workdir: str,
    mesh: Mesh,
    hooks: Sequence[Callable[[int], None]] = (),
) -> dict[str, dict[str, float]]:
    """Trains ``task`` for ``loop.num_steps`` (resuming if possible) and evaluates.

    ``hooks`` are called with the step number after each step is dispatched.

    Returns:
      ``{split: metrics}`` for ``loop.final_splits`` after the last step.
    """
    _check_supported(task, loop, mesh)
    os.makedirs(workdir, exist_ok=True)
    setup_ = task_setup(task, mesh, seed=loop.seed)
    train_step = make_train_step(task.loss_fn, setup_)
    eval_step = make_eval_step(task.eval_fn, setup_)
    ckpt_dir = os.path.join(workdir, "checkpoints")

    with contextlib.ExitStack() as stack:
        checkpointer = stack.enter_context(
            checkpoint_lib.Checkpointer(ckpt_dir, max_to_keep=loop.keep_checkpoints)
        )
        start = checkpointer.latest_step() or 0
        if start > loop.num_steps:
            raise ValueError(
                f"the checkpoint in {ckpt_dir} is at step {start}, beyond train.num_steps="
                f"{loop.num_steps}; use a new --workdir or raise num_steps"
            )
        train_mean = metrics_lib.Mean()
        if start:
            logging.info("resuming from the checkpoint at step %d in %s", start, ckpt_dir)
            state, data_state, meta = checkpointer.restore(
                start,
                checkpoint_lib.abstract_with_shardings(setup_.abstract_state, setup_.shardings),
            )
            train_mean.load(meta.get("train_mean"))
        else:
            state, data_state = setup_.init(), None
            if task.pretrained is not None:
                state = jax.device_put(task.pretrained(state), setup_.shardings)

        def keep_event(e: dict) -> bool:
            """Events a resumed run keeps: everything written before its checkpoint."""
            if e["step"] != start:
                return e["step"] < start
            return not (start == loop.num_steps and e["split"] in loop.final_splits)

        writer = stack.enter_context(
            metrics_lib.MetricWriter(
                workdir, keep=keep_event if start else None, purge_step=start + 1
            )
        )
        iterator = pipeline.make_iterator(task.train_data, num_threads=loop.prefetch_threads)
        stack.callback(pipeline.close_iterator, iterator)
        if data_state:
            iterator.set_state(data_state)
        bar = stack.enter_context(
            tqdm(
                total=loop.num_steps,
                initial=start,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                disable=not loop.progress,
            )
        )
        last_ckpt = start or None
        pending: list[tuple[int, dict, jax.Array]] = []  # (step, metrics, finite) not yet read
        clock = _Throughput()

        def drain() -> None:
            """Reads pending step metrics; stops the run on a non-finite step."""
            fetched = jax.device_get([(m, f) for _, m, f in pending])
            steps = [step_i for step_i, _, _ in pending]
            pending.clear()
            for step_i, (m, f) in zip(steps, fetched):
                if not bool(f):
                    raise NonFiniteError(
                        f"non-finite loss or gradient at step {step_i} (loss={float(m['loss'])}, "
                        f"grad_norm={float(m['grad_norm'])}); {where_good()}. Lower the learning "
                        "rate, check the inputs, or enable gradient clipping."
                    )
                train_mean.update(m)

        def where_good() -> str:
            if last_ckpt:
                return f"the last good checkpoint (step {last_ckpt}) is kept in {ckpt_dir}"
            return "no checkpoint had been saved yet"

        def save(step: int) -> None:
            nonlocal last_ckpt
            with clock.paused():
                drain()  # every step up to here had a finite loss and gradient ...
                if not bool(all_finite(state)):  # ... and so must every saved value
                    raise NonFiniteError(
                        f"the state after step {step} holds NaN/Inf (e.g. BatchNorm statistics "
                        f"or optimizer moments) although its loss was finite; {where_good()}"
                    )
                checkpointer.save(
                    step, state, data=iterator.get_state(), meta={"train_mean": train_mean.state()}
                )
                last_ckpt = step

        def run_eval(
            step: int, splits: Sequence[str], *, final: bool = False
        ) -> dict[str, dict[str, float]]:
            results = {}
            with clock.paused():
                for split in splits:
                    t0 = time.perf_counter()
                    outputs = evaluate(
                        eval_step,
                        state["model"],
                        task.eval_data[split],
                        setup_.batch_sharding,
                        desc=split,
                        progress=loop.progress,
                    )
                    summary = task.summarize(outputs)
                    summary["eval_seconds"] = time.perf_counter() - t0
                    if final:
                        save_outputs(workdir, split, outputs)
                    writer.write(step, split, summary)
                    results[split] = summary
            return results

        with _StopRequest() as stop:
            for step in range(start + 1, loop.num_steps + 1):
                try:
                    batch = next(iterator)
                except StopIteration as e:
                    raise ValueError(
                        f"the training data ran out at step {step} of {loop.num_steps}; the "
                        "task's train_data must hold at least num_steps batches"
                    ) from e
                n = len(next(iter(batch.values())))
                clock.start_step()
                state, m, finite = train_step(
                    state, sharding_lib.shard_batch(batch, setup_.batch_sharding)
                )
                pending.append((step, m, finite))
                clock.end_step(n, first=step == start + 1)  # the first call compiles
                bar.update(1)
                for hook in hooks:
                    hook(step)

                if step % loop.log_every == 0 or step == loop.num_steps:
                    drain()
                    means = {**train_mean.result(), **clock.report(n)}
                    writer.write(step, "train", means, console=not loop.progress)
                    bar.set_postfix(
                        loss=f"{means['loss']:.4g}",
                        ex_s=f"{means.get('examples_per_sec', 0.0):.0f}",
                    )
                    train_mean.reset()
                if loop.eval_every and step % loop.eval_every == 0 and step != loop.num_steps:
                    run_eval(step, loop.eval_splits)
                if step % loop.checkpoint_every == 0 or step == loop.num_steps:
                    save(step)
                if stop.signame is not None and step != loop.num_steps:
                    if last_ckpt != step:
                        save(step)
                    raise TrainingInterrupted(step, stop.signame, ckpt_dir)
        drain()
        bar.close()
        return run_eval(loop.num_steps, loop.final_splits, final=True)


FINAL_OUTPUTS = "final_outputs"
MAX_OUTPUT_BYTES = 256 * 2**20


def save_outputs(workdir: str, split: str, outputs: dict[str, np.ndarray]) -> str:
    """Writes the final evaluation's per-example outputs to ``<workdir>/final_outputs/<split>.npz``.

    One row per evaluation example, in the order of the task's eval data (for paired
    significance tests between runs on the same data: :mod:`jaxpapers.recsys.significance`).
    Written atomically (a temporary file, then a rename). Outputs larger than
    :data:`MAX_OUTPUT_BYTES` in all (full predicted fields of a big physics test set) are not
    written; the log says so and ``""`` is returned.
    """
    size = sum(np.asarray(v).nbytes for v in outputs.values())
    if size > MAX_OUTPUT_BYTES:
        logging.info(
            "final %s outputs not saved: %.0f MiB > %.0f MiB", split, size / 2**20,
            MAX_OUTPUT_BYTES / 2**20,
        )  # fmt: skip
        return ""
    directory = os.path.join(workdir, FINAL_OUTPUTS)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{split}.npz")
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **outputs)
    os.replace(tmp, path)
    return path


def load_outputs(workdir: str, split: str) -> dict[str, np.ndarray]:
    """The per-example outputs :func:`save_outputs` wrote for ``split`` in ``workdir``."""
    path = os.path.join(workdir, FINAL_OUTPUTS, f"{split}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no final outputs for split {split!r} in {workdir} (expected {path}); they are "
            "written at the end of a run's training, so rerun it (a finished run only "
            "re-evaluates)"
        )
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


class _Throughput:
    """Examples/s over a log window, excluding compilation, evaluation and saving.

    Dispatch is asynchronous, so the interval between two consecutive step calls
    returning is, on average, the step time; :meth:`paused` restarts the interval
    after work that is not training.
    """

    def __init__(self):
        self._examples = 0
        self._seconds = 0.0
        self._compile: float | None = None
        self._t0 = 0.0
        self._last: float | None = None

    def start_step(self) -> None:
        self._t0 = time.perf_counter()

    def end_step(self, examples: int, *, first: bool) -> None:
        now = time.perf_counter()
        if first:
            self._compile = now - self._t0
        elif self._last is not None:
            self._examples += examples
            self._seconds += now - self._last
        self._last = now

    @contextlib.contextmanager
    def paused(self):
        try:
            yield
        finally:
            self._last = time.perf_counter()

    def report(self, batch: int) -> dict[str, float]:
        out = {}
        if self._examples and self._seconds > 0:
            out["examples_per_sec"] = self._examples / self._seconds
            out["steps_per_sec"] = out["examples_per_sec"] / batch
        if self._compile is not None:
            out["compile_seconds"], self._compile = self._compile, None
        self._examples, self._seconds = 0, 0.0
        return out


def restore_model(setup_: Setup, workdir: str) -> nnx.Module:
    """The model of the latest checkpoint in ``workdir``, in eval mode.

    Raises:
      FileNotFoundError: if ``workdir`` holds no checkpoint.
    """
    ckpt_dir = os.path.join(workdir, "checkpoints")
    with checkpoint_lib.Checkpointer(ckpt_dir) as checkpointer:
        step = checkpointer.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
        state, _, _ = checkpointer.restore(
            step, checkpoint_lib.abstract_with_shardings(setup_.abstract_state, setup_.shardings)
        )
    return nnx.merge(setup_.eval_model_def, state["model"])
