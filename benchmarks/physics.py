"""Physics family (stretch bending): LaDEEP's inference against the generator's solve.

Issue 5's benchmark: LaDEEP's inference time per sample (batched, jitted) against the
high-fidelity generator's solve time per sample, as a ratio, and training throughput of
LaDEEP and its two baselines.

Entries (timed with :func:`harness.run_interleaved`, every ratio from the same run; one
warm-up call each, whose time is ``first_call_s``; compile time apart, from
``compile_jax``):

* ``generator_hf`` / ``generator_lf`` — one call of
  :func:`jaxpapers.physics.generators.stretch_bending.solve` at ``fidelity="high"`` /
  ``"low"`` on a batch of ``gen_batch`` (512) samples of the default
  ``GeneratorConfig()`` (301 points, 64x32 section images): the per-sample beam solves
  (``vmap`` over samples, mapped over chunks of 64), the section SDF images and the
  parameter vectors, compiled ahead of time, ``block_until_ready``. The random inputs are
  drawn once beforehand (``sample_inputs``, key 0) and stay on the device: sampling and the
  copy to NumPy that :func:`generate` adds are not timed (they are not the solve).
* ``ladeep_infer`` / ``mlp_infer`` / ``transformer_infer`` — one jitted forward pass in eval
  mode (``model.eval()``: BatchNorm on running averages) on a batch of ``batch`` (256):
  ``(strip, mould, section, params) -> (loaded, unloaded)``, the weights passed as
  arguments (``nnx.split`` state), inputs on the device. Only the two curves are returned —
  what a user of the surrogate needs — so XLA drops LaDEEP's auxiliary section decoder
  (``recon``), which only serves the training loss.
* ``ladeep_train`` / ``mlp_train`` / ``transformer_train`` — one call of the library's own
  train step (:func:`jaxpapers.core.train.make_train_step` over
  :func:`jaxpapers.core.train.setup` on a one-device ``("data", "model")`` mesh, state
  donated) on a batch of ``train_batch`` (32): forward in train mode,
  :func:`jaxpapers.physics.ladeep.ladeep_loss` (axis weights all 1), gradients, the
  experiments' Adam (:func:`jaxpapers.physics.stretch.adam`: L2 weight decay, per-epoch
  cosine), the gradient norm and the finiteness flag. The state carries over from call to
  call (a real training run); the last loss is checked finite after timing.

Models as ``experiments/configs/ladeep.py:default`` builds them (``config.model``): LaDEEP
with 60 region tokens of width 64, 3 + 3 attention layers of 4 heads and the small CNN
section encoder; the MLP baseline with hidden layers (512, 512); the Transformer baseline
with 6 layers of 4 heads over 60 patch tokens of 5 points. Section images 32x16 and a
section decoder 64 channels wide, as the default config (the CPU-sized choice).

Model inputs are uniform in [0, 1] (numpy, seed 0; the surrogate's inputs are min-max scaled
curves, so this is their range), the same arrays for every model: ``strip``, ``mould``,
``loaded``, ``unloaded`` ``(B, 300, 3)``, ``section`` ``(B, 32, 16, 1)``, ``params``
``(B, 6)``.

What is reported: ms per call (median and quartiles over rounds), per-sample microseconds,
samples/s (and steps/s for training), lowering + compile seconds, the first call, and:

* ``generator_hf_over_ladeep_infer`` — **HF solve seconds per sample / LaDEEP inference
  seconds per sample**, the issue's ratio, with its per-round quartiles (each round's two
  call times, each divided by its batch). The paper's ~10^5x is against finite-element
  simulations; ours is against our own reduced-order beam generator, which is itself
  vectorised and jitted, so the ratio is expected to be small (it may be below 1).
* the same ratio for the baselines, and the HF / LF solve ratio.

The 2048^3 float32 matmul reference brackets every block of calls, as in the other suites,
so a reader can see how fast the machine was meanwhile.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import harness

MODELS = ("ladeep", "mlp", "transformer")
ENTRIES = (
    "generator_hf",
    "generator_lf",
    *(f"{m}_infer" for m in MODELS),
    *(f"{m}_train" for m in MODELS),
)
FIDELITY = {"generator_hf": "high", "generator_lf": "low"}
SEED = 0
INPUT_LENGTH = 300  # LaDEEP's curves: 301 points -> 300 differences
PAPER_SPEEDUP = 1e5  # the paper's claim, against FEM
RATIO_NOTE = (
    "the paper's ~1e5x is LaDEEP against finite-element simulations; ours is against our "
    "reduced-order beam generator (itself vmapped and jitted), so a small ratio is expected"
)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def experiment_config():
    """``experiments/configs/ladeep.py:default`` (model, optimizer and data settings)."""
    from experiments.configs import ladeep as ladeep_config

    return ladeep_config.get_config("default")


def make_batch(
    batch: int, section_shape: Sequence[int], length: int = INPUT_LENGTH, degrees: int = 6
) -> dict[str, np.ndarray]:
    """Model inputs and targets uniform in [0, 1], float32, seed :data:`SEED`."""
    rng = np.random.default_rng(SEED)
    h, w = section_shape

    def u(*shape):
        return rng.uniform(0.0, 1.0, (batch, *shape)).astype(np.float32)

    return {
        "strip": u(length, 3),
        "mould": u(length, 3),
        "section": u(h, w, 1),
        "params": u(degrees),
        "loaded": u(length, 3),
        "unloaded": u(length, 3),
    }


def build_model(name: str, model_cfg, section_shape: Sequence[int], rngs):
    """LaDEEP or a baseline with the experiment config's ``config.model`` settings."""
    from jaxpapers.physics import ladeep

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    cfg = model_cfg.copy_and_resolve_references()
    cfg.name = name
    return ladeep.make_model(cfg, section_shape, rngs)


def init_model(name: str, model_cfg, section_shape: Sequence[int]):
    """:func:`build_model` with ``nnx.Rngs(SEED)``, its initialisation jitted.

    Eager initialisation dispatches (and compiles) every initialiser op apart, which took tens
    of seconds per model on a busy 2-core CPU; under ``jax.jit`` it is one compilation.
    """
    import jax
    from flax import nnx

    def make():
        return build_model(name, model_cfg, section_shape, nnx.Rngs(SEED))

    graphdef, _ = nnx.split(nnx.eval_shape(make))
    state = jax.jit(lambda: nnx.state(make()))()
    return nnx.merge(graphdef, state)


# --------------------------------------------------------------------------- entries


def generator_entries(gen_batch: int, selected: Sequence[str]) -> list[harness.Entry]:
    """The generator's batched solve at each selected fidelity."""
    import jax

    from jaxpapers.physics.generators import stretch_bending as sb

    config = sb.GeneratorConfig()
    inputs = None
    out = []
    for name in ("generator_hf", "generator_lf"):
        if name not in selected:
            continue
        if inputs is None:
            inputs = jax.block_until_ready(
                sb.sample_inputs(jax.random.key(SEED), gen_batch, config)
            )
        fidelity = FIDELITY[name]
        _log(f"compiling {name} (stretch_bending.solve, fidelity={fidelity!r})")
        compiled, info = harness.compile_jax(sb.solve, inputs, config, fidelity)
        elements, grid, steps = config.discretisation(fidelity)
        out.append(
            harness.Entry(
                name,
                lambda c=compiled, x=inputs: jax.block_until_ready(c(x)),
                info={
                    **info,
                    "batch": gen_batch,
                    "fidelity": fidelity,
                    "elements": elements,
                    "section_grid": list(grid),
                    "bend_steps": steps,
                    "num_points": config.num_points,
                    "chunk_size": config.chunk_size,
                },
            )
        )
    return out


def infer_entry(name: str, model, batch_np: dict[str, np.ndarray]) -> harness.Entry:
    """A jitted eval-mode forward pass returning ``(loaded, unloaded)``."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxpapers.physics import ladeep

    model.eval()
    graphdef, state = nnx.split(model)
    xs = tuple(jnp.asarray(batch_np[k]) for k in ("strip", "mould", "section", "params"))

    def infer(state, strip, mould, section, params):
        _, loaded, unloaded = nnx.merge(graphdef, state)(strip, mould, section, params)
        return loaded, unloaded

    _log(f"compiling {name}")
    compiled, info = harness.compile_jax(infer, state, *xs)
    return harness.Entry(
        name,
        lambda: jax.block_until_ready(compiled(state, *xs)),
        info={**info, "batch": int(xs[0].shape[0]), "num_params": ladeep.count_params(model)},
    )


def train_entry(name: str, model_name: str, cfg, batch_np: dict[str, np.ndarray]):
    """The library's train step for ``model_name`` on one fixed batch."""
    import jax
    from flax import nnx

    from jaxpapers.core import mesh as mesh_lib
    from jaxpapers.core import train as train_lib
    from jaxpapers.physics import ladeep, stretch

    section_shape = batch_np["section"].shape[1:3]
    batch_size = batch_np["strip"].shape[0]
    per_epoch = stretch.steps_per_epoch(cfg.data.num_train, batch_size)
    tx = stretch.adam(cfg, per_epoch, cfg.train.num_epochs)
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    weights = np.ones((2, 3), np.float32)

    def init_model(rngs):
        return build_model(model_name, cfg.model, section_shape, rngs)

    def loss_fn(model, batch):
        out = model(batch["strip"], batch["mould"], batch["section"], batch["params"])
        return ladeep.ladeep_loss(out, batch, weights)

    setup_ = train_lib.setup(init_model, tx, mesh=mesh, seed=SEED)
    step = train_lib.make_train_step(loss_fn, setup_)
    state = setup_.init()
    batch = jax.device_put(batch_np, setup_.batch_sharding)
    num_params = int(
        sum(np.prod(x.shape) for x in jax.tree.leaves(state["model"].filter(nnx.Param)))
    )
    _log(f"compiling {name}")
    compiled, info = harness.compile_jax(step, state, batch)
    return harness.Entry(
        name,
        harness.TrainCall(compiled, state, [batch]),
        info={
            **info,
            "batch": int(batch_size),
            "num_params": num_params,
            "optimizer": "stretch.adam (lr 1e-3 cosine, L2 5e-5) as experiments/configs/ladeep",
        },
    )


# --------------------------------------------------------------------------- run


def run(
    *,
    batch: int = 256,
    train_batch: int = 32,
    gen_batch: int = 512,
    rounds: int = 5,
    only: Sequence[str] = (),
    matmul_n: int = 2048,
    warmup: int = 1,
) -> tuple[dict[str, Any], str]:
    """Runs the selected entries; returns ``(results, printable tables)``."""
    unknown = [o for o in only if o not in ENTRIES]
    if unknown:
        raise ValueError(f"unknown entries {unknown}; choose from {list(ENTRIES)}")
    for label, value in (("batch", batch), ("train_batch", train_batch), ("gen_batch", gen_batch)):
        if value <= 0:
            raise ValueError(f"{label} must be positive, got {value}")
    if rounds <= 0:
        raise ValueError(f"rounds must be positive, got {rounds}")
    selected = [e for e in ENTRIES if e in only] if only else list(ENTRIES)

    import jax

    machine = harness.machine_info()
    machine["devices"] = [str(d) for d in jax.devices()]
    _log(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, devices "
        f"{machine['devices']}, load average {machine['load_average_at_start']}"
    )
    cfg = experiment_config()
    section_shape = tuple(cfg.data.section_shape)
    results: dict[str, Any] = {
        "machine": machine,
        "config": {
            "batch": batch,
            "train_batch": train_batch,
            "gen_batch": gen_batch,
            "rounds": rounds,
            "warmup": warmup,
            "entries": selected,
            "seed": SEED,
            "input_length": INPUT_LENGTH,
            "section_shape": list(section_shape),
            "model": cfg.model.to_dict(),
            "optim": cfg.optim.to_dict(),
            "matmul_shape": [matmul_n] * 3,
            "inputs": "uniform [0, 1] float32 (numpy seed 0), on the device",
        },
        "reference": {},
        "entries": {},
        "comparisons": {},
        "contention": {},
    }

    _log("compiling the matmul reference")
    refs = {"jax": harness.jax_matmul_entry(matmul_n)}
    entries = generator_entries(gen_batch, selected)
    infer_np = make_batch(batch, section_shape)
    train_np = make_batch(train_batch, section_shape)
    for m in MODELS:
        if f"{m}_infer" in selected:
            _log(f"initialising {m}")
            model = init_model(m, cfg.model, section_shape)
            entries.append(infer_entry(f"{m}_infer", model, infer_np))
    for m in MODELS:
        if f"{m}_train" in selected:
            entries.append(train_entry(f"{m}_train", m, cfg, train_np))

    _log(f"{rounds} interleaved rounds of {[e.name for e in entries]} (warm-up {warmup})")
    monitor = harness.CpuMonitor()
    harness.run_interleaved(entries, rounds, warmup=warmup, references=refs, log=_log)
    results["contention"]["main"] = monitor.read()

    by_name = {e.name: e for e in entries}
    rows = []
    ref = refs["jax"]
    summary = results["reference"]["jax_matmul"] = ref.summary()
    s = summary["seconds"]
    rows.append(
        [
            ref.name,
            "",
            harness.ms_quartiles(s),
            "",
            "",
            "",
            "",
            "",
            f"{summary['gflops_per_s']:.0f} GFLOP/s",
        ]
    )
    for e in entries:
        r = e.summary()
        s = r["seconds"]
        n = r["batch"]
        r["per_sample_s"] = s["median"] / n
        r["samples_per_s"] = n / s["median"]
        steps = ""
        if e.name.endswith("_train"):
            r["steps_per_s"] = 1.0 / s["median"]
            r.update(e.call.last())
            steps = f"{r['steps_per_s']:.2f}"
        results["entries"][e.name] = r
        rows.append(
            [
                e.name,
                n,
                harness.ms_quartiles(s),
                f"{r['per_sample_s'] * 1e6:.1f}",
                f"{r['samples_per_s']:.0f}",
                steps,
                f"{r['lower_s'] + r['compile_s']:.1f}",
                f"{r['first_call_s'] * 1e3:.0f}",
                "" if "last_loss" not in r else f"last loss {r['last_loss']:.3g}",
            ]
        )

    def note(name: str, text: str) -> None:
        for row in rows:
            if row[0] == name:
                row[-1] = f"{row[-1]}; {text}" if row[-1] else text

    def per_sample_ratio(num: str, den: str, key: str, label: str) -> None:
        if num not in by_name or den not in by_name:
            return
        a, b = results["entries"][num], results["entries"][den]
        ratio = a["per_sample_s"] / b["per_sample_s"]
        # each round's call times, each divided by its own batch
        paired = harness.paired_ratio(by_name[num], by_name[den])
        scale = b["batch"] / a["batch"]
        per_round = {k: (v * scale if k not in ("n",) else v) for k, v in paired.items()}
        results["comparisons"][key] = {
            "ratio_per_sample": ratio,
            "per_round": per_round,
            "numerator_per_sample_s": a["per_sample_s"],
            "denominator_per_sample_s": b["per_sample_s"],
        }
        note(den, f"{label} {ratio:.3g}x (per round {per_round['q1']:.3g}-{per_round['q3']:.3g})")

    for m in MODELS:
        per_sample_ratio(
            "generator_hf", f"{m}_infer", f"generator_hf_over_{m}_infer", "HF solve / this"
        )
    if "generator_hf_over_ladeep_infer" in results["comparisons"]:
        c = results["comparisons"]["generator_hf_over_ladeep_infer"]
        c["paper_speedup_vs_fem"] = PAPER_SPEEDUP
        c["note"] = RATIO_NOTE
    per_sample_ratio("generator_hf", "generator_lf", "generator_hf_over_lf", "HF solve / this")

    title = (
        f"Stretch bending (issue 5): generator solve vs surrogate inference and training; "
        f"generator batch {gen_batch} (GeneratorConfig() defaults), inference batch {batch} "
        f"(eval mode, jitted, returns the two curves), train batch {train_batch} (the "
        f"library's train step, experiments' Adam); {rounds} interleaved rounds; "
        f"ms median [q1-q3]; per-sample = median / batch. Ratio = HF solve s/sample over "
        f"the model's inference s/sample: {RATIO_NOTE}. Devices {machine['devices']}; "
        f"{harness.contention_note(results['contention']['main'])}"
    )
    table = harness.format_table(
        [
            "entry",
            "batch",
            "ms/call",
            "us/sample",
            "samples/s",
            "steps/s",
            "compile s",
            "first call ms",
            "notes",
        ],
        rows,
    )
    return results, f"{title}\n{table}"
