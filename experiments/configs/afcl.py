"""AFCL — Analytic Federated Continual Learning.

Variants:
  tiny     seconds: digits, a 2-epoch ConvNet backbone, 256-wide buffer, 5 clients.
  default  sklearn's digits (offline): ConvNet trained on 5 base classes, then 5
           one-class tasks learned by 10 Dirichlet(0.1) clients; buffer 1024.
  paper    CIFAR-100 with ACIL's protocol (B50 + 25 phases, ResNet-32, buffer 8192,
           gamma 0.1) over 100 Dirichlet(0.1) clients; needs TFDS cifar100 in
           --config.data.data_dir (prepared with `tfds build cifar100`).
Sweep the claim: --config.federated.alpha=0.01 ... 100, --config.federated.num_clients=1 ... 1000.
"""

from jaxpapers.analytic import features

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown afcl variant {variant!r}; choose one of {VARIANTS}")
    c = features.base_config(variant)
    c.experiment = "afcl"
    c.variant = variant
    c.lock()
    if variant == "tiny":
        c.federated.num_clients = 5
        c.federated.block_size = 32
    elif variant == "paper":
        c.federated.num_clients = 100
        c.federated.block_size = 256
    return c
