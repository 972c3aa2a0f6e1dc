"""CIARD — cyclic iterative adversarial robustness distillation (and its baselines).

``--config.method=ard|rslad|mtard|bmtard|ciard`` picks the method; every method runs from
this one config with the same data, teachers (shared through ``teachers.dir``) and attacks.

Variants:
  tiny     seconds: digits, tiny networks, one epoch each, short attacks (CI).
  default  scikit-learn's digits (offline), ε = 32/255 (the 8×8 digits at 8/255 are
           barely perturbed: see the module docstring of jaxpapers/robust/ciard.py),
           TRADES WRN-10-1 and standard ResNet-20-class teachers, a SmallCNN student.
  paper    CIFAR-10 as the reference: MobileNetV2 student, TRADES WRN-34-10 robust
           teacher, ResNet-56 clean teacher, ε = 8/255, PGD-10 step 2/255, batch 128,
           300 epochs; needs TFDS cifar10 in --config.data.data_dir (`tfds build
           cifar10`); --config.data.name=cifar100 or tiny_imagenet for the others.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown ciard variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "ciard"
    c.variant = variant
    c.seed = 0
    c.method = "ciard"  # ard | rslad | mtard | bmtard | ciard
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = ml_collections.ConfigDict({"name": "digits", "data_dir": ""})
    c.models = ml_collections.ConfigDict(
        {
            "student": "small_cnn",
            "student_width": 1.0,  # mobilenet_v2's width multiplier
            "robust_teacher": "wrn_tiny",
            "clean_teacher": "resnet56",
        }
    )
    c.attack = ml_collections.ConfigDict(
        {
            "eps": 32 / 255,
            "step_size": 8 / 255,  # training PGD step (the references: eps / 4)
            "steps": 10,
            "eval_step_size": 0.012,  # PGD-20 / CW step (CIARD: 0.003 at eps 8/255)
            "pgd_steps": 20,
            "cw_steps": 30,
            "apgd_steps": 100,
        }
    )
    c.teachers = ml_collections.ConfigDict(
        {
            "robust_kind": "trades",  # trades | pgd_at
            "epochs": 30,
            "batch_size": 64,
            "learning_rate": 0.05,
            "weight_decay": 5e-4,
            "dir": "",  # "" = <workdir>/teachers; share one across methods
            "progress": True,
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "epochs": 30,
            "batch_size": 64,
            "learning_rate": 0.05,
            "log_every": 20,
            "eval_every_epochs": 10,  # clean/attacked accuracy on eval.valid_examples
            "checkpoint_every": 200,
            "progress": True,
        }
    )
    c.loss = ml_collections.ConfigDict(
        {
            "ard_alpha": 1.0,
            "ard_temp": 30.0,
            "use_push": True,  # CIARD's push loss (False: the ablation)
            "teacher_lr": 1e-4,  # CIARD's robust-teacher retraining lr
            "balance_as_coded": True,  # CIARD's in-loop balancing-rate decay (see schedules)
        }
    )
    c.eval = ml_collections.ConfigDict(
        {
            "batch_size": 128,
            "valid_examples": 256,
            "attacks": ("clean", "fgsm", "pgd20", "cw", "apgd_ce", "apgd_dlr"),
        }
    )
    c.lock()
    if variant == "tiny":
        c.models.robust_teacher = "wrn_tiny"
        c.models.clean_teacher = "small_cnn"
        c.attack.steps = 3
        c.attack.pgd_steps = 5
        c.attack.cw_steps = 5
        c.attack.apgd_steps = 5
        c.teachers.epochs = 1
        c.teachers.progress = False
        c.train.epochs = 2
        c.train.eval_every_epochs = 1
        c.train.log_every = 5
        c.train.progress = False
        c.eval.valid_examples = 64
    elif variant == "paper":
        c.data.name = "cifar10"
        c.models.student = "mobilenet_v2"
        c.models.robust_teacher = "wrn34_10"
        c.models.clean_teacher = "resnet56"
        c.attack.eps = 8 / 255
        c.attack.step_size = 2 / 255
        c.attack.eval_step_size = 0.003
        c.teachers.epochs = 100
        c.teachers.batch_size = 128
        c.teachers.learning_rate = 0.1
        c.teachers.weight_decay = 2e-4
        c.train.epochs = 300
        c.train.batch_size = 128
        c.train.learning_rate = 0.1
        c.train.eval_every_epochs = 10
        c.train.log_every = 100
        c.train.checkpoint_every = 1000
        c.eval.valid_examples = 1000
    return c
