"""Unisoma (ICML 2025) — explicit multi-solid modelling on contact data.

Variants:
  tiny     seconds on a CPU: 24 generated scenes of two blocks and two rigid bodies, a
           narrow Unisoma, a few steps (CI).
  default  the embedded contact simulator (:mod:`jaxpapers.physics.generators.contact`):
           400 / 50 / 100 scenes of ``data.num_deformables`` (1–3) neo-Hookean blocks on a die,
           pressed by punches; the reference's Unisoma (emb 128, 32 slices, 8 heads, 2
           processors, mlp ratio 4) with the reference's AdamW 3e-4, weight decay 1e-5 and a
           cosine to lr / 10, batch 8; minutes on a CPU. The implicit baseline:
           ``--config.model.name=transolver``; the rollout task: ``--config.data.task=rollout``.
  paper    Unisoma's released pickles in ``--config.data.data_dir`` for
           ``--config.data.dataset`` (bilateral stamping by default) with the reference's
           settings: batch 1, 100 epochs.
"""

import ml_collections

from jaxpapers.physics.multisolid import data_config, model_config

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown unisoma variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "unisoma"
    c.variant = variant
    c.seed = 0
    c.rng_impl = ""  # PRNG of the weight initialisation ("": JAX's default; "rbg" compiles faster)
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = data_config()
    c.model = model_config()
    c.optim = ml_collections.ConfigDict(
        {"learning_rate": 3e-4, "lr_decay": 10.0, "weight_decay": 1e-5}
    )
    c.train = ml_collections.ConfigDict(
        {
            "batch_size": 8,
            "num_epochs": 30,
            "num_steps": 0,  # > 0 overrides num_epochs
            "log_every": 50,
            "eval_every_epochs": 5,
            "checkpoint_every": 500,
            "keep_checkpoints": 2,
            "prefetch_threads": 2,
            "progress": True,
        }
    )
    c.eval_batch_size = 50
    c.lock()
    if variant == "tiny":
        c.data.num_train, c.data.num_valid, c.data.num_test = 16, 4, 4
        c.data.num_load_steps = 3
        c.data.nx, c.data.ny = 6, 2
        c.model.emb_dim = 16
        c.model.slice_num = 4
        c.model.num_heads = 2
        c.model.mlp_ratio = 2
        c.model.num_processors = 1
        c.model.num_layers = 1
        c.train.batch_size = 4
        c.train.num_epochs = 2
        c.train.log_every = 2
        c.train.eval_every_epochs = 1
        c.train.checkpoint_every = 4
        c.train.progress = False
        c.eval_batch_size = 4
        c.rng_impl = "rbg"
    elif variant == "paper":
        c.data.source = "unisoma_files"
        c.train.batch_size = 1
        c.train.num_epochs = 100
        c.train.eval_every_epochs = 1
        c.train.log_every = 100
        c.train.checkpoint_every = 2000
        c.eval_batch_size = 8
    return c
