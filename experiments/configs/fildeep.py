"""FilDeep — multi-fidelity springback prediction from many LF and few HF strips.

Variants:
  tiny     seconds on a CPU: 64 LF + 32 HF strips, a narrow model, 2 rounds (CI).
  default  the embedded stretch-bending generator: 1,000 low-fidelity strips (coarse
           discretisation, linear hardening, no friction) and 60 high-fidelity strips
           (+ 60 HF valid, 200 HF test); LaDEEP-sized encoders (32x16 sections, section
           decoder narrowed to 64 channels as in LaDEEP's default), 2 cross-fidelity
           layers with 4 heads; 20 alternating LF/HF rounds then 40 HF fine-tuning epochs
           with the reference's three Adams (LF 5e-4, section 5e-4, HF 1e-3; L2 5e-5).
  paper    the reference's settings (batch 15, 1,000 alternating epochs + 1,000
           fine-tuning epochs) on the synthetic generator: FilDeep's LF/HF data are
           not released.

Baselines on the same HF test set: ``--config.method=hf_only`` (the single-fidelity
backbone trained on the HF strips alone) and ``--config.method=lf_only`` (on the LF
strips alone).
"""

import ml_collections

from jaxpapers.physics.stretch import data_config, model_config

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown fildeep variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "fildeep"
    c.variant = variant
    c.seed = 0
    c.rng_impl = ""  # PRNG of the weight initialisation ("": JAX's default; "rbg" compiles faster)
    c.method = "fildeep"  # fildeep | hf_only | lf_only
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.data = data_config()
    for key in ("num_train", "num_valid", "num_test", "fidelity"):  # FilDeep sizes each fidelity
        del c.data[key]
    c.data.update(
        {
            "num_lf_train": 1000,
            "num_lf_valid": 100,
            "num_hf_train": 60,
            "num_hf_valid": 60,
            "num_hf_test": 200,
        }
    )
    c.model = model_config()
    c.model.name = "fildeep"
    c.model.acf_layers = 2
    c.model.acf_heads = 4
    c.optim = ml_collections.ConfigDict(
        {
            "lr_p": 5e-4,
            "lr_r": 5e-4,
            "weight_decay": 5e-5,
            "lr_p_decay_min": 500.0,
            "lr_r_decay_min": 1000.0,
            "high_lr_p": 1e-3,
            "high_weight_decay": 5e-5,
            "high_lr_p_decay_min": 200.0,
        }
    )
    c.train = ml_collections.ConfigDict(
        {
            "batch_size": 20,
            "num_epochs": 20,  # alternating LF/HF rounds
            "finetune_epochs": 40,  # HF-only epochs after them
            "num_steps": 0,  # > 0: stop after this many steps
            "log_every": 50,
            "eval_every_epochs": 5,  # in rounds (one LF + one HF epoch)
            "checkpoint_every": 500,
            "keep_checkpoints": 2,
            "prefetch_threads": 2,
            "progress": True,
        }
    )
    c.eval_batch_size = 200
    c.lock()
    if variant == "default":  # CPU-sized, as LaDEEP's default
        c.data.section_shape = (32, 16)
        c.model.section_decoder_width = 64
    if variant == "tiny":
        c.data.num_lf_train, c.data.num_lf_valid = 64, 16
        c.data.num_hf_train, c.data.num_hf_valid, c.data.num_hf_test = 32, 16, 16
        c.data.section_shape = (32, 16)
        c.model.section_decoder_width = 16
        c.model.emb_dim = 16
        c.model.seq_length = 30
        c.model.loading_layers = c.model.unloading_layers = 1
        c.model.loading_heads = c.model.unloading_heads = 2
        c.model.acf_layers = 1
        c.model.acf_heads = 2
        c.train.batch_size = 16
        c.train.num_epochs = 2
        c.train.finetune_epochs = 1
        c.train.log_every = 2
        c.train.eval_every_epochs = 1
        c.train.checkpoint_every = 8
        c.train.progress = False
        c.eval_batch_size = 16
        c.rng_impl = "rbg"  # the initialisation compiles 3x faster on CPU
    elif variant == "paper":
        c.train.batch_size = 15
        c.train.num_epochs = 1000
        c.train.finetune_epochs = 1000
        c.train.log_every = 100
        c.train.checkpoint_every = 5000
        c.eval_batch_size = 10
    return c
