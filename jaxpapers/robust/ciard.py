"""CIARD experiment (and its baselines): teachers → distilled student → attacks.

``run(config, workdir)`` (the registry entry ``ciard``):

1. **Data**: ``data.name`` = ``digits`` (scikit-learn's 8×8 digits, shipped in
   its wheel: the offline default), ``cifar10``/``cifar100`` (``tfds.data_source``
   from ``data.data_dir``) or ``tiny_imagenet`` (its folder). CIFAR and
   Tiny-ImageNet get the references' augmentation (4-pixel zero-padded random
   crop, horizontal flip); digits none. Inputs stay in [0, 1], unnormalised, as
   in the references.
2. **Teachers** (:mod:`.distill`): the robust teacher (``teachers.robust_kind``:
   ``trades`` or ``pgd_at``) and, for the two-teacher methods, the clean teacher
   (``standard`` training), each trained by the core trainer in
   ``teachers.dir`` (default ``<workdir>/teachers``; point several runs at one
   directory to share them: a teacher is keyed by its settings). A teacher
   that finished is restored, not retrained.
3. **Student**: ``method`` ∈ ``ard, rslad, mtard, bmtard, ciard`` distils the
   student with the reference step, loss and schedules, checkpointed in
   ``<workdir>/checkpoints`` (a rerun resumes).
4. **Evaluation** on the test set at ``attack.eps``: ``clean_acc``, ``fgsm_acc``,
   ``pgd20_acc``, ``cw_acc``, ``apgd_acc`` (correct under both APGD-CE and
   APGD-DLR; each is reported too) — the final metrics — plus the teachers'
   clean and PGD-20 accuracy and ``mean_clean_pgd20`` = (clean + PGD-20)/2.
   ``plots/accuracy.png`` draws the student beside its teachers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import jax
import numpy as np
from absl import logging
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import train as train_lib
from jaxpapers.data import images as images_lib
from jaxpapers.data import pipeline
from jaxpapers.robust import distill, models, schedules


def _attack_config(config) -> distill.AttackConfig:
    a = config.attack
    return distill.AttackConfig(
        eps=a.eps,
        step_size=a.step_size,
        steps=a.steps,
        eval_step_size=a.eval_step_size,
        pgd_steps=a.pgd_steps,
        cw_steps=a.cw_steps,
        apgd_steps=a.apgd_steps,
    )


def _check(config) -> None:
    if config.method not in distill.METHODS:
        raise ValueError(f"method must be one of {distill.METHODS}; got {config.method!r}")
    if config.teachers.robust_kind not in ("trades", "pgd_at"):
        raise ValueError(
            f"teachers.robust_kind must be 'trades' or 'pgd_at'; got {config.teachers.robust_kind!r}"
        )
    for name in ("student", "robust_teacher", "clean_teacher"):
        if config.models[name] not in models.NAMES:
            raise ValueError(
                f"models.{name} must be one of {models.NAMES}; got {config.models[name]!r}"
            )
    distill.check_attack_names(config.eval.attacks)  # before any teacher is trained
    for section, key in (("train", "epochs"), ("train", "batch_size"), ("teachers", "epochs")):
        if config[section][key] < 1:
            raise ValueError(f"{section}.{key} must be >= 1; got {config[section][key]}")


def _net_factory(name: str, data: images_lib.ImageDataset, width: float = 1.0):
    shape = data.image_shape

    def make(rngs):
        return models.make(name, data.num_classes, rngs=rngs, input_shape=shape, width=width)

    return make


def _train_batches(config, data, images, batch_size: int, epochs: int):
    augment = None
    if data.name in ("cifar10", "cifar100", "tiny_imagenet"):
        augment = functools.partial(images_lib.crop_flip, pad_mode="constant")
    return pipeline.train_batches(
        {"image": images, "label": data.train_labels},
        batch_size,
        num_epochs=epochs,
        seed=config.seed,
        transform=augment,
    )


def _loop(config, steps: int, steps_per_epoch: int, *, progress: bool):
    t = config.train
    every = t.eval_every_epochs * steps_per_epoch if t.eval_every_epochs else 0
    return train_lib.LoopConfig(
        num_steps=steps,
        log_every=max(1, min(t.log_every, steps)),
        eval_every=every,
        eval_splits=("valid",) if every else (),
        final_splits=("test",),
        checkpoint_every=max(1, min(t.checkpoint_every, steps)),
        seed=config.seed,
        progress=progress,
    )


def _teacher_key(config, role: str, kind: str, model: str) -> str:
    t = config.teachers
    settings = {
        "role": role,
        "kind": kind,
        "model": model,
        "data": config.data.name,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.learning_rate,
        "attack": [config.attack.eps, config.attack.step_size, config.attack.steps],
        "seed": config.seed,
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"{role}_{kind}_{model}_{digest}"


def train_teacher(config, data, images, eval_data, role: str, kind: str, model: str, mesh):
    """Trains (or restores) one teacher; returns ``(net state, its test metrics)``."""
    t = config.teachers
    directory = os.path.join(t.dir, _teacher_key(config, role, kind, model))
    attack = _attack_config(config)
    spe = len(images) // t.batch_size
    if spe < 1:
        raise ValueError(f"teachers.batch_size {t.batch_size} exceeds the training set")
    steps = spe * t.epochs
    # ×0.1 at 1/2 and 3/4 of training (the TRADES teachers' shape: 75 and 90 of 100)
    milestones = tuple(m for m in (t.epochs // 2, (3 * t.epochs) // 4) if m > 0)
    tx = schedules.torch_sgd(
        schedules.step_decay_schedule(spe, base_lr=t.learning_rate, milestones=milestones),
        momentum=0.9,
        weight_decay=t.weight_decay,
    )
    task = distill.teacher_task(
        kind,
        _net_factory(model, data),
        attack,
        tx,
        _train_batches(config, data, images, t.batch_size, t.epochs),
        eval_data,
        seed=config.seed,
        eval_names=("clean", "pgd20"),
    )
    done = os.path.join(directory, "teacher.json")
    setup_ = train_lib.setup(task.init_model, task.optimizer, mesh=mesh, seed=config.seed)
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            metrics = json.load(f)
        logging.info("using the %s teacher in %s", role, directory)
    else:
        logging.info("training the %s teacher (%s, %s) in %s", role, kind, model, directory)
        loop = _loop(config, steps, spe, progress=t.progress)
        metrics = train_lib.train_and_evaluate(task, loop, workdir=directory, mesh=mesh)["test"]
        with open(done + ".tmp", "w", encoding="utf-8") as f:
            json.dump(metrics, f)
        os.replace(done + ".tmp", done)
    trainee = train_lib.restore_model(setup_, directory)
    return nnx.state(trainee.net), metrics


def _plot(path: str, final: dict, names) -> None:
    fig = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = np.arange(len(names))
    ax.bar(xs, [final[f"{n}_acc"] for n in names], color="#4C72B0", label="student")
    for role, color in (("robust_teacher", "#C44E52"), ("clean_teacher", "#55A868")):
        if f"{role}_clean_acc" in final:
            for i, n in enumerate(("clean", "pgd20")):
                if n in names:
                    ax.plot(
                        [names.index(n) - 0.4, names.index(n) + 0.4],
                        [final[f"{role}_{n}_acc"]] * 2,
                        color=color,
                        lw=2,
                        label=role.replace("_", " ") if i == 0 else None,
                    )
    ax.set_xticks(xs, list(names))
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{final['method']} student on {final['data']} (ε = {final['eps']:.4f})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def run(config, workdir: str) -> dict:
    """Registry entry (see the module docstring)."""
    _check(config)
    os.makedirs(workdir, exist_ok=True)
    data = images_lib.load(config.data.name, data_dir=config.data.data_dir, seed=config.seed)
    images = images_lib.as_float(data.train_images)
    eval_data = distill.eval_datasets(  # the same test set for teachers and student
        images_lib.as_float(data.test_images),
        data.test_labels,
        batch_size=config.eval.batch_size,
        valid=config.eval.valid_examples,
    )
    mesh = mesh_lib.mesh_from_config(config.mesh)
    if not config.teachers.dir:
        with config.unlocked():
            config.teachers.dir = os.path.join(os.path.abspath(workdir), "teachers")
    method, m = config.method, config.models
    robust_state, robust_metrics = train_teacher(
        config, data, images, eval_data, "robust", config.teachers.robust_kind, m.robust_teacher,
        mesh,
    )  # fmt: skip
    loaded = {"robust_teacher": robust_state}
    final = {"method": method, "data": data.name, "eps": float(config.attack.eps)}
    final.update({f"robust_teacher_{k}": v for k, v in robust_metrics.items()})
    if method in distill.TWO_TEACHERS:
        clean_state, clean_metrics = train_teacher(
            config, data, images, eval_data, "clean", "standard", m.clean_teacher, mesh
        )
        loaded["clean_teacher"] = clean_state
        final.update({f"clean_teacher_{k}": v for k, v in clean_metrics.items()})

    t = config.train
    spe = len(images) // t.batch_size
    if spe < 1:
        raise ValueError(f"train.batch_size {t.batch_size} exceeds the training set")
    rates = distill.method_schedules(
        method,
        spe,
        t.epochs,
        base_lr=t.learning_rate,
        teacher_lr=config.loss.teacher_lr,
        balance_as_coded=config.loss.balance_as_coded,
    )
    attack = _attack_config(config)
    loss_kwargs = {}
    if method == "ard":
        loss_kwargs = {"ard_alpha": config.loss.ard_alpha, "ard_temperature": config.loss.ard_temp}
    elif method == "ciard":
        loss_kwargs = {"use_push": config.loss.use_push}
    task = distill.distill_task(
        method,
        _net_factory(m.student, data, m.student_width),
        _net_factory(m.robust_teacher, data),
        _net_factory(m.clean_teacher, data),
        attack,
        rates,
        _train_batches(config, data, images, t.batch_size, t.epochs),
        eval_data,
        seed=config.seed,
        pretrained=distill.load_teachers(loaded),
        eval_names=tuple(config.eval.attacks),
        **loss_kwargs,
    )
    loop = _loop(config, spe * t.epochs, spe, progress=t.progress)
    result = train_lib.train_and_evaluate(task, loop, workdir=workdir, mesh=mesh)["test"]
    final.update(result)
    if "clean_acc" in result and "pgd20_acc" in result:
        final["mean_clean_pgd20"] = (result["clean_acc"] + result["pgd20_acc"]) / 2
    final["student_params"] = models.param_count(
        nnx.eval_shape(lambda: _net_factory(m.student, data, m.student_width)(nnx.Rngs(0)))
    )
    names = [n for n in ("clean", "fgsm", "pgd20", "cw", "apgd") if f"{n}_acc" in final]
    _plot(os.path.join(workdir, "plots", "accuracy.png"), final, names)
    logging.info("devices: %s", jax.devices())
    return final
