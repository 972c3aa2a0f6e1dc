"""DeepAFL — Deep Analytic Federated Learning (residual analytic blocks, no gradients).

Variants:
  tiny     seconds: digits pixels, D = p = 64, 3 layers.
  default  sklearn's digits on the raw 8x8 pixels (the frozen extractor is the identity,
           so a single ridge layer - AFL - has headroom): all 10 classes over 10
           Dirichlet(0.1) clients; D = p = 512, 10 layers.
  paper    CIFAR-100 with the reference's run.sh: 10 Dirichlet(0.1) clients, D = p = 1024,
           T = 20, lambda = 1, lambda_s = 0.05, GELU, on frozen ResNet features (the
           reference uses an ImageNet-pretrained ResNet-18, which is not downloaded here:
           this variant trains a ResNet-32 on 50 classes instead). Needs TFDS cifar100.
"""

import ml_collections

from jaxpapers.analytic import features

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown deepafl variant {variant!r}; choose one of {VARIANTS}")
    c = features.base_config(variant)
    c.experiment = "deepafl"
    c.variant = variant
    c.deepafl = ml_collections.ConfigDict()
    c.deepafl.hidden = 512  # D
    c.deepafl.features = 512  # p
    c.deepafl.layers = 10  # T
    c.deepafl.reg = 1.0  # lambda (heads)
    c.deepafl.reg_sandwich = 0.05  # lambda_s
    c.deepafl.activation = "gelu"
    c.lock()
    c.analytic.buffer_size = 0  # DeepAFL's own random layer X_0 replaces the buffer
    if variant in ("tiny", "default"):
        c.backbone.name = "none"
    if variant == "tiny":
        c.deepafl.hidden = 64
        c.deepafl.features = 64
        c.deepafl.layers = 3
        c.federated.num_clients = 5
        c.federated.block_size = 32
    elif variant == "paper":
        c.data.num_phases = 1
        c.deepafl.hidden = 1024
        c.deepafl.features = 1024
        c.deepafl.layers = 20
        c.federated.block_size = 256
    return c
