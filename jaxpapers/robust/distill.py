"""One trainer for adversarial robustness distillation: teachers, ARD, RSLAD, MTARD, B-MTARD, CIARD.

Everything here is a :class:`jaxpapers.core.train.Task` for the core trainer
(jitted split/merge step, checkpoints and resume, NaN guard, progress): a
method is a *loss function* over a small NNX module that holds the networks,
the balancing state and the attack's PRNG stream, plus an optimizer.

**Teachers** (:func:`teacher_task`): ``standard`` (cross-entropy on clean
images: the clean teacher), ``pgd_at`` (Madry et al.: cross-entropy on PGD-10
examples, uniform start) and ``trades`` (Zhang et al.: ``CE(f(x), y) + β·KL(f(x)
‖ f(x_adv))`` with ``x_adv`` maximising that KL from ``x + 0.001·N(0, 1)``,
``β = 6``, the KL summed over classes and averaged over the batch). Training
attacks run with the model in eval mode (batch norm on running statistics),
as the TRADES reference does.

**Students** (:func:`distill_task`), one step each as its reference does it
(facts in :mod:`.losses`, :mod:`.schedules` and :mod:`.models`):

========  ==================================================  =====================
method    student's training attack (PGD-10, ε, 2/255)         loss (:mod:`.losses`)
========  ==================================================  =====================
ard       CE, uniform start, student in **train** mode          :func:`~.losses.ard_loss` (robust teacher on x)
rslad     KL to the robust teacher's x logits, normal start     :func:`~.losses.rslad_loss`
mtard     CE, normal start, student in eval mode                :func:`~.losses.mtard_loss`
bmtard    as mtard                                               :func:`~.losses.bmtard_loss`
ciard     as mtard                                               :func:`~.losses.ciard_loss`
========  ==================================================  =====================

``mtard``/``bmtard``/``ciard`` distil from two teachers: the robust one on
``x_adv`` and the clean one on ``x``; their balancing state (temperatures,
weights, first losses: :class:`~.losses.BalanceState`) lives in the module as a
:class:`Balance` variable, so it is checkpointed and resumed with the weights.
CIARD adds the push loss (the clean teacher on ``x_adv``) and **continuous
adversarial retraining**: the robust teacher runs in train mode on the current
``x_adv`` and its cross-entropy there is added to the loss; its own optimizer
(:func:`~.schedules.torch_sgd`, momentum 0.1, weight decay 2e-4) follows
:func:`~.schedules.ciard_teacher_schedule`, exactly 0 before the retraining
epoch. The student's distillation terms see the teachers' logits through
``stop_gradient``, so each optimizer only ever receives its own gradient.
Other teachers are frozen (left out of the optimizer's ``wrt``).

The order inside a step follows the references: the student's clean logits
(train mode), the attack, the student's adversarial logits (train mode), the
teachers, the loss; the balancing schedules read a step counter kept in the
module.

**Evaluation** (:func:`eval_fn`): every test example under ``clean``,
``fgsm``, ``pgd20`` (step 0.003 as CIARD's evaluation, uniform start),
``cw`` (CW∞ margin, 30 steps), ``apgd_ce`` and ``apgd_dlr`` (AutoAttack's two
untargeted APGD components, reported under their own names, never as
AutoAttack); ``apgd`` is the per-example worst case of the two. All in eval
mode, one PRNG key per batch from the example index.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core import train as train_lib
from jaxpapers.data import pipeline
from jaxpapers.robust import attacks, losses, models, schedules

METHODS = ("ard", "rslad", "mtard", "bmtard", "ciard")
TEACHER_KINDS = ("standard", "pgd_at", "trades")
EVAL_ATTACKS = ("clean", "fgsm", "pgd20", "cw", "apgd_ce", "apgd_dlr")
TWO_TEACHERS = ("mtard", "bmtard", "ciard")


class Balance(nnx.Variable):
    """One field of the two-teacher balancing state (:class:`~.losses.BalanceState`)."""


class StepCount(nnx.Variable):
    """Training steps taken (the balancing schedules read it)."""


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """The ℓ∞ threat model: radius, PGD step and steps (training) and evaluation budgets."""

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    eval_step_size: float = 0.003  # CIARD's PGD-20 / CW evaluation step
    pgd_steps: int = 20
    cw_steps: int = 30
    apgd_steps: int = 100

    def __post_init__(self):
        if not 0 < self.eps <= 1:
            raise ValueError(f"attack.eps must lie in (0, 1]; got {self.eps}")
        for name in ("step_size", "eval_step_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"attack.{name} must be > 0; got {getattr(self, name)}")
        for name in ("steps", "pgd_steps", "cw_steps", "apgd_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"attack.{name} must be >= 1; got {getattr(self, name)}")


# --------------------------------------------------------------------------- modules


def attack_key(seed: int, step: jax.Array) -> jax.Array:
    """The training attack's key at ``step``: folded from the seed (plain, resumable state)."""
    return jax.random.fold_in(jax.random.key(seed), step)


class Trainee(nnx.Module):
    """One network being trained by itself (a teacher), with its step count (attack keys)."""

    def __init__(self, net: nnx.Module, *, seed: int):
        self.net = net
        self.seed = seed
        self.step = StepCount(jnp.zeros((), jnp.int32))


class Distiller(nnx.Module):
    """The student, its teachers, the balancing state and the step count (attack keys).

    ``robust_teacher`` stays in train mode only for CIARD (it is retrained);
    every other teacher is put in eval mode here, once, so the train-mode graph
    of the whole module already has them in eval mode.
    """

    def __init__(
        self,
        method: str,
        student: nnx.Module,
        robust_teacher: nnx.Module,
        clean_teacher: nnx.Module | None,
        *,
        seed: int,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        if (method in TWO_TEACHERS) != (clean_teacher is not None):
            need = "needs" if method in TWO_TEACHERS else "takes no"
            raise ValueError(f"method {method!r} {need} a clean teacher")
        self.student = student
        self.robust_teacher = robust_teacher
        self.clean_teacher = clean_teacher
        if method != "ciard":
            robust_teacher.eval()
        if clean_teacher is not None:
            clean_teacher.eval()
        self.balance = nnx.Dict(
            {k: Balance(v) for k, v in losses.init_balance_state()._asdict().items()}
        )
        self.step = StepCount(jnp.zeros((), jnp.int32))
        self.seed = seed

    def get_balance(self) -> losses.BalanceState:
        return losses.BalanceState(**{k: v[...] for k, v in self.balance.items()})

    def set_balance(self, state: losses.BalanceState) -> None:
        for k, v in state._asdict().items():
            self.balance[k][...] = v


def logits_of(module: nnx.Module, *, train: bool = False):
    """The pure ``x -> logits`` view of ``module`` for attacks (see :func:`.models.logits_fn`)."""
    graphdef, state = nnx.split(module)
    return models.logits_fn(graphdef, state, train=train)


# --------------------------------------------------------------------------- teachers


def teacher_loss_fn(kind: str, attack: AttackConfig, *, trades_beta: float = 6.0):
    """``(trainee, batch) -> (loss, metrics)`` for a teacher of ``kind``."""
    if kind not in TEACHER_KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; choose one of {TEACHER_KINDS}")

    def loss_fn(model: Trainee, batch):
        x, y = batch["image"], batch["label"]
        step = model.step[...]
        model.step[...] = step + 1
        key = attack_key(model.seed, step)
        metrics = {}
        if kind == "standard":
            logits = model.net(x)
            loss = losses.cross_entropy(logits, y)
        elif kind == "pgd_at":
            x_adv = attacks.pgd(
                logits_of(model.net), key, x, y, eps=attack.eps,
                step_size=attack.step_size, steps=attack.steps, start="uniform",
            )  # fmt: skip
            logits = model.net(x_adv)
            loss = losses.cross_entropy(logits, y)
        else:
            x_adv = attacks.pgd(
                logits_of(model.net), key, x, y, eps=attack.eps,
                step_size=attack.step_size, steps=attack.steps, loss="kl", start="normal",
            )  # fmt: skip
            logits = model.net(x)
            natural = losses.cross_entropy(logits, y)
            robust = losses.kl_div(model.net(x_adv), logits, reduction="batchmean")
            loss = natural + trades_beta * robust
            metrics = {"loss_natural": natural, "loss_robust": robust}
        metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == y)
        return loss, metrics

    return loss_fn


# --------------------------------------------------------------------------- students


@dataclasses.dataclass(frozen=True)
class Schedules:
    """Per-step rates of a distillation run (all optax schedules over the step)."""

    student: optax.Schedule
    teacher: optax.Schedule | None = None  # CIARD's robust-teacher retraining
    weight: optax.Schedule | None = None  # two-teacher loss-weight balancing
    temperature: optax.Schedule | None = None  # B-MTARD / CIARD temperature balancing


def method_schedules(
    method: str,
    steps_per_epoch: int,
    epochs: int,
    *,
    base_lr: float = 0.1,
    teacher_lr: float = 1e-4,
    balance_as_coded: bool = True,
) -> Schedules:
    """The reference schedules of ``method``, scaled to ``epochs`` (see :mod:`.schedules`)."""
    spe = steps_per_epoch
    if method == "ard":
        return Schedules(schedules.ard_schedule(spe, base_lr=base_lr, epochs=epochs))
    if method == "rslad":
        return Schedules(schedules.rslad_schedule(spe, base_lr=base_lr, epochs=epochs))
    if method in ("mtard", "bmtard"):
        return Schedules(
            schedules.mtard_schedule(spe, base_lr=base_lr, epochs=epochs),
            weight=schedules.mtard_schedule(spe, base_lr=0.025, epochs=epochs),
            temperature=schedules.mtard_schedule(spe, base_lr=0.001, epochs=epochs),
        )
    if method == "ciard":
        balance = functools.partial(
            schedules.ciard_balance_schedule, spe, epochs=epochs, as_coded=balance_as_coded
        )
        return Schedules(
            schedules.ciard_student_schedule(spe, base_lr=base_lr, epochs=epochs),
            teacher=schedules.ciard_teacher_schedule(spe, base_lr=teacher_lr, epochs=epochs),
            weight=balance(base_lr=0.025),
            temperature=balance(base_lr=0.001),
        )
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def distill_loss_fn(
    method: str,
    attack: AttackConfig,
    rates: Schedules,
    *,
    ard_alpha: float = 1.0,
    ard_temperature: float = 30.0,
    use_push: bool = True,
):
    """``(distiller, batch) -> (loss, metrics)``: one step of ``method`` (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    pgd = functools.partial(
        attacks.pgd, eps=attack.eps, step_size=attack.step_size, steps=attack.steps
    )

    def loss_fn(model: Distiller, batch):
        x, y = batch["image"], batch["label"]
        step = model.step[...]
        key = attack_key(model.seed, step)
        student = model.student
        if method == "ard":
            x_adv = pgd(logits_of(student, train=True), key, x, y, start="uniform")
            teacher_x = model.robust_teacher(x)
            s_nat, s_adv = student(x), student(x_adv)
            loss, metrics = losses.ard_loss(
                s_adv, s_nat, teacher_x, y, alpha=ard_alpha, temperature=ard_temperature
            )
        elif method == "rslad":
            teacher_x = model.robust_teacher(x)
            s_nat = student(x)
            x_adv = pgd(
                logits_of(student), key, x, y, start="normal", loss="kl",
                target_logits=jax.lax.stop_gradient(teacher_x),
            )  # fmt: skip
            s_adv = student(x_adv)
            loss, metrics = losses.rslad_loss(s_adv, s_nat, teacher_x)
        else:
            s_nat = student(x)
            clean_x = model.clean_teacher(x)
            x_adv = pgd(logits_of(student), key, x, y, start="normal")
            s_adv = student(x_adv)
            robust_adv = model.robust_teacher(x_adv)
            state = model.get_balance()
            if method == "mtard":
                loss, aux = losses.mtard_loss(
                    s_adv, s_nat, robust_adv, clean_x, state, weight_lr=rates.weight(step)
                )
            elif method == "bmtard":
                loss, aux = losses.bmtard_loss(
                    s_adv, s_nat, robust_adv, clean_x, state,
                    weight_lr=rates.weight(step), temperature_lr=rates.temperature(step),
                )  # fmt: skip
            else:
                clean_adv = model.clean_teacher(x_adv)
                loss, aux = losses.ciard_loss(
                    s_adv, s_nat, robust_adv, clean_x, clean_adv, y, state,
                    weight_lr=rates.weight(step), temperature_lr=rates.temperature(step),
                    use_push=use_push,
                )  # fmt: skip
                # continuous adversarial retraining of the robust teacher (own optimizer)
                teacher_ce = losses.cross_entropy(robust_adv, y)
                loss = loss + teacher_ce
                aux.metrics["teacher_ce"] = teacher_ce
                aux.metrics["teacher_accuracy_adv"] = jnp.mean(jnp.argmax(robust_adv, -1) == y)
            model.set_balance(aux.state)
            metrics = aux.metrics
        model.step[...] = step + 1
        metrics = dict(metrics)
        metrics["accuracy_adv"] = jnp.mean(jnp.argmax(s_adv, -1) == y)
        metrics["accuracy_nat"] = jnp.mean(jnp.argmax(s_nat, -1) == y)
        metrics["learning_rate"] = rates.student(step)
        return loss, metrics

    return loss_fn


def distill_optimizer(method: str, rates: Schedules, *, weight_decay: float = 2e-4):
    """``(optax transformation, wrt filter)``: the student's SGD, and CIARD's teacher SGD.

    The references' PyTorch SGD: the student with momentum 0.9 and weight
    decay 2e-4; CIARD's robust teacher with momentum 0.1 and weight decay 2e-4,
    its momentum untouched while its learning rate is 0 (the reference takes no
    teacher step then). Teachers outside the ``wrt`` filter stay frozen.
    """
    student = schedules.SGDGroup(rates.student, momentum=0.9, weight_decay=weight_decay)
    groups = {"student": student}
    if method == "ciard":
        groups["robust_teacher"] = schedules.SGDGroup(
            rates.teacher, momentum=0.1, weight_decay=weight_decay, freeze_while_zero_lr=True
        )

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: str(path[0].key), params)

    wrt = nnx.All(nnx.Param, nnx.Any(*(nnx.PathContains(name) for name in groups)))
    return schedules.torch_sgd_groups(groups, labels), wrt


# --------------------------------------------------------------------------- evaluation


def eval_attacks(attack: AttackConfig) -> dict[str, Any]:
    """Name -> attack (``None``: clean) with the evaluation budgets of ``attack``."""
    return {
        "clean": None,
        "fgsm": functools.partial(attacks.fgsm, eps=attack.eps),
        "pgd20": functools.partial(
            attacks.pgd,
            eps=attack.eps,
            step_size=attack.eval_step_size,
            steps=attack.pgd_steps,
            start="uniform",
        ),  # fmt: skip
        "cw": functools.partial(
            attacks.cw_linf,
            eps=attack.eps,
            step_size=attack.eval_step_size,
            steps=attack.cw_steps,
        ),  # fmt: skip
        "apgd_ce": functools.partial(attacks.apgd_ce, eps=attack.eps, steps=attack.apgd_steps),
        "apgd_dlr": functools.partial(attacks.apgd_dlr, eps=attack.eps, steps=attack.apgd_steps),
    }


def check_attack_names(names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the valid attacks if ``names`` has an unknown one."""
    unknown = set(names) - set(EVAL_ATTACKS)
    if unknown:
        raise ValueError(f"unknown evaluation attacks {sorted(unknown)}; valid: {EVAL_ATTACKS}")


def make_eval_fn(
    attack: AttackConfig, *, seed: int, names: Sequence[str] = EVAL_ATTACKS, net: str = "student"
):
    """``(model, batch) -> {"correct_<attack>": (B,) bool}`` in eval mode.

    ``net`` names the network to attack inside the model (``"student"`` of a
    :class:`Distiller`, ``"net"`` of a :class:`Trainee`). Batches carry a
    ``row`` field (the example index); the batch's key is folded from its
    first row, so a result does not depend on the batch it was evaluated in
    beyond that.
    """
    check_attack_names(names)
    table = eval_attacks(attack)

    def eval_fn(model, batch):
        x, y = batch["image"], batch["label"]
        fn = logits_of(getattr(model, net))
        key = jax.random.fold_in(jax.random.key(seed), batch["row"][0])
        out = {}
        for i, name in enumerate(names):
            attack_fn = table[name]
            xa = x if attack_fn is None else attack_fn(fn, jax.random.fold_in(key, i), x, y)
            out[f"correct_{name}"] = jnp.argmax(fn(xa), -1) == y
        return out

    return eval_fn


def summarize(outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracies ``<attack>_acc`` (and ``apgd_acc``: correct under both APGD attacks)."""
    out = {}
    for key, correct in outputs.items():
        out[key.removeprefix("correct_") + "_acc"] = float(np.mean(correct))
    if "correct_apgd_ce" in outputs and "correct_apgd_dlr" in outputs:
        both = outputs["correct_apgd_ce"] & outputs["correct_apgd_dlr"]
        out["apgd_acc"] = float(np.mean(both))
    return out


def eval_datasets(images: np.ndarray, labels: np.ndarray, *, batch_size: int, valid: int):
    """``{"valid": the first ``valid`` test examples, "test": all}`` with row ids."""
    rows = np.arange(len(labels), dtype=np.int32)
    arrays = {"image": images, "label": labels, "row": rows}
    head = {k: v[:valid] for k, v in arrays.items()}
    return {
        "valid": pipeline.eval_batches(head, min(batch_size, max(valid, 1))),
        "test": pipeline.eval_batches(arrays, batch_size),
    }


# --------------------------------------------------------------------------- tasks


def teacher_task(
    kind: str,
    make_net,
    attack: AttackConfig,
    optimizer: optax.GradientTransformation,
    train_data,
    eval_data,
    *,
    seed: int,
    eval_names: Sequence[str] = ("clean", "pgd20"),
) -> train_lib.Task:
    """The core-trainer task that trains one teacher (``make_net(rngs)`` builds it)."""
    return train_lib.Task(
        init_model=lambda rngs: Trainee(make_net(rngs), seed=seed),
        loss_fn=teacher_loss_fn(kind, attack),
        eval_fn=make_eval_fn(attack, seed=seed, names=eval_names, net="net"),
        summarize=summarize,
        optimizer=optimizer,
        train_data=train_data,
        eval_data=eval_data,
    )


def distill_task(
    method: str,
    make_student,
    make_robust_teacher,
    make_clean_teacher,
    attack: AttackConfig,
    rates: Schedules,
    train_data,
    eval_data,
    *,
    seed: int,
    pretrained,
    eval_names: Sequence[str] = EVAL_ATTACKS,
    **loss_kwargs,
) -> train_lib.Task:
    """The core-trainer task that distils a student with ``method``.

    ``pretrained(state) -> state`` loads the teachers' weights into a fresh
    state (see :func:`load_teachers`).
    """
    tx, wrt = distill_optimizer(method, rates)

    def init_model(rngs):
        clean = make_clean_teacher(rngs) if method in TWO_TEACHERS else None
        return Distiller(method, make_student(rngs), make_robust_teacher(rngs), clean, seed=seed)

    return train_lib.Task(
        init_model=init_model,
        loss_fn=distill_loss_fn(method, attack, rates, **loss_kwargs),
        eval_fn=make_eval_fn(attack, seed=seed, names=eval_names),
        summarize=summarize,
        optimizer=tx,
        train_data=train_data,
        eval_data=eval_data,
        wrt=wrt,
        pretrained=pretrained,
    )


def load_teachers(teachers: dict[str, nnx.State]):
    """``pretrained`` hook: copies each teacher's model state into the fresh distiller state.

    ``teachers`` maps a :class:`Distiller` attribute (``"robust_teacher"``,
    ``"clean_teacher"``) to the ``net`` state of its trained :class:`Trainee`.
    """

    def pretrained(state):
        model = state["model"]
        for name, net_state in teachers.items():
            if name not in model:
                raise ValueError(f"the distiller has no {name!r} to load a teacher into")
            model[name] = net_state
        return state

    return pretrained
