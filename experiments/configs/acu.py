"""ACU — Analytic Continual Unlearning.

Variants:
  tiny     seconds: digits, a 2-epoch ConvNet backbone, 256-wide buffer.
  default  sklearn's digits: continual learning of 5 base classes + 5 one-class tasks
           (ACIL recursion), then forget one whole class and 100 random samples.
  paper    CIFAR-100, ACIL protocol (B50 + 25 phases, ResNet-32, buffer 8192,
           gamma 0.1); forget 5 classes and 100 samples. Needs TFDS cifar100.
"""

import ml_collections

from jaxpapers.analytic import features

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown acu variant {variant!r}; choose one of {VARIANTS}")
    c = features.base_config(variant)
    c.experiment = "acu"
    c.variant = variant
    c.unlearn = ml_collections.ConfigDict()
    c.unlearn.classes = (3,)  # whole classes to forget (arrival-order ids)
    c.unlearn.num_samples = 100  # random samples of the other classes to forget
    c.unlearn.learn_batch_size = 256  # rows per recursive update while learning
    c.lock()
    if variant == "tiny":
        c.unlearn.num_samples = 20
    elif variant == "paper":
        c.unlearn.classes = (10, 20, 30, 60, 80)
        c.unlearn.learn_batch_size = 1024
    return c
