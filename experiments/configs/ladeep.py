"""LaDEEP (KDD 2025) — loaded and springback shapes of stretch-bent strips.

Variants:
  tiny     seconds on a CPU: 96 synthetic strips, a narrow LaDEEP, 3 epochs (CI).
  default  the embedded stretch-bending generator (high fidelity): 1,000 / 100 / 200
           strips with five section types, 32x16 section SDF images; the reference's
           LaDEEP (60 region tokens of width 64, 3 + 3 attention layers, 4 heads) with a
           small CNN section encoder and a section decoder narrowed to 64 channels (the
           reference's 512-channel decoder costs most of a CPU step; it only serves the
           auxiliary loss); Adam 1e-3, L2 5e-5, per-epoch cosine to 1e-6; batch 32,
           40 epochs; minutes on a CPU.
  paper    LaDEEP's released data in ``--config.data.data_dir`` (the reference's folder
           tree; 512x256 section images) with the reference's settings: batch 15,
           1,000 epochs, ResNet-18 section encoder. The reference's shipped test log:
           loaded MAD 0.0611 / TE 0.1234, unloaded MAD 0.1660 / TE 0.4462.

Baselines on the same inputs: ``--config.model.name=mlp`` or ``=transformer``.
"""

import ml_collections

from jaxpapers.physics.stretch import data_config, model_config

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown ladeep variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "ladeep"
    c.variant = variant
    c.seed = 0
    c.rng_impl = ""  # PRNG of the weight initialisation ("": JAX's default; "rbg" compiles faster)
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = data_config()
    c.model = model_config()
    c.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "weight_decay": 5e-5, "decay_min": 1000.0}
    )
    c.train = ml_collections.ConfigDict(
        {
            "batch_size": 32,
            "num_epochs": 40,
            "num_steps": 0,  # > 0 overrides num_epochs
            "log_every": 50,
            "eval_every_epochs": 10,
            "checkpoint_every": 500,
            "keep_checkpoints": 2,
            "prefetch_threads": 2,
            "progress": True,
        }
    )
    c.eval_batch_size = 200
    c.lock()
    if variant == "default":  # CPU-sized: 32x16 sections, a narrow section decoder
        c.data.section_shape = (32, 16)
        c.model.section_decoder_width = 64
    if variant == "tiny":
        c.data.num_train, c.data.num_valid, c.data.num_test = 64, 16, 16
        c.data.section_shape = (32, 16)
        c.model.section_decoder_width = 16
        c.model.emb_dim = 16
        c.model.seq_length = 30
        c.model.loading_layers = c.model.unloading_layers = 1
        c.model.loading_heads = c.model.unloading_heads = 2
        c.model.mlp_hidden = (64,)
        c.model.transformer_layers = 2
        c.model.transformer_heads = 2
        c.model.transformer_patch = 15
        c.train.batch_size = 16
        c.train.num_epochs = 3
        c.train.log_every = 2
        c.train.eval_every_epochs = 1
        c.train.checkpoint_every = 6
        c.train.progress = False
        c.eval_batch_size = 16
        c.rng_impl = "rbg"  # the initialisation compiles 3x faster on CPU
    elif variant == "paper":
        c.data.source = "ladeep_files"
        c.data.section_shape = (512, 256)
        c.model.section_encoder = "resnet18"
        c.model.section_decoder_width = 512
        c.train.batch_size = 15
        c.train.num_epochs = 1000
        c.train.eval_every_epochs = 10
        c.train.log_every = 100
        c.train.checkpoint_every = 5000
        c.eval_batch_size = 300
    return c
