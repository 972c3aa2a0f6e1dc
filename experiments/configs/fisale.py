"""Fisale (ICLR 2026) — two-way fluid–solid interaction with multiscale latent ALE grids.

Variants:
  tiny     seconds on a CPU: a few short generated trajectories, a narrow Fisale (one grid
           scale), a few steps (CI).
  default  the embedded FSI simulator (:mod:`jaxpapers.physics.generators.fsi`: an elastic flag
           behind a cylinder in channel flow, lattice Boltzmann + immersed boundary): 8 / 2 / 2
           trajectories with their own inflow and stiffness, next-frame prediction; the
           reference's structure-oscillation Fisale (grids 16² and 8², hidden 64/64, 2 coupling
           steps, 5/4 neighbours, 8 heads, mlp ratio 2) with its AdamW 1e-3, weight decay 1e-5,
           cosine to lr / 10; batch 16. The implicit baseline: ``--config.model.name=transolver``.
  paper    Fisale's released structure-oscillation data (Turek–Hron FSI2) in
           ``--config.data.data_dir`` with the reference's settings: batch 50, 100 epochs.
"""

import ml_collections

from jaxpapers.physics.fluidsolid import data_config, model_config

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown fisale variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "fisale"
    c.variant = variant
    c.seed = 0
    c.rng_impl = ""
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = data_config()
    c.model = model_config()
    c.optim = ml_collections.ConfigDict(
        {"learning_rate": 1e-3, "lr_decay": 10.0, "weight_decay": 1e-5}
    )
    c.train = ml_collections.ConfigDict(
        {
            "batch_size": 16,
            "num_epochs": 20,
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
        c.data.num_train, c.data.num_valid, c.data.num_test = 2, 1, 1
        c.data.simulator = "tiny"
        c.model.grid_shapes = ((4, 4),)
        c.model.hidden_dims = (16,)
        c.model.neighbors = (3,)
        c.model.coupling_steps = 1
        c.model.num_heads = 2
        c.model.emb_dim = 16
        c.model.num_layers = 1
        c.model.slice_num = 4
        c.train.batch_size = 4
        c.train.num_steps = 4
        c.train.log_every = 2
        c.train.eval_every_epochs = 0
        c.train.checkpoint_every = 4
        c.train.progress = False
        c.eval_batch_size = 8
        c.rng_impl = "rbg"
    elif variant == "paper":
        c.data.source = "fisale_files"
        c.train.batch_size = 50
        c.train.num_epochs = 100
        c.train.eval_every_epochs = 1
        c.train.log_every = 100
        c.train.checkpoint_every = 2000
    return c
