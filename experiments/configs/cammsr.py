"""CAMMSR (ICDE 2026) — category-guided attentive MoE for multimodal sequential recommendation.

Variants:
  tiny     seconds on a CPU (CI): 200 synthetic users, 150 items, one Transformer block of
           width 16, a few dozen steps.
  default  the embedded synthetic generator at its default size (2000 users, 1500 items,
           8 categories whose behaviour relies on text or image to a known degree), a
           2-block width-64 model; a few minutes per model on a laptop CPU.
  paper    Amazon review sequences with precomputed text and image features
           (``--config.data.data_dir``; layout in ``jaxpapers.data.multimodal.load_amazon``),
           the usual SASRec-family settings: width 64, 2 blocks, 2 heads, 50 items of history,
           dropout 0.2, Adam 1e-3, batch 256.

Default tuning (validation NDCG@10, seed 0, same 450-step budget for every model): Adam 3e-3
with x0.1 after epoch 22 of 30 beat 1e-3 without decay for CAMMSR and both SASRecs;
``loss.swap_weight`` 0.02 (0.069) beat 0.1 (0.066) and 0.1 with temperature 1.0; the swap's
projection head (``model.swap_head``) gave 0.070; CAMMSR without the swap gave 0.073. Measured
on 2 busy CPU cores (load 2-8): 2-5 minutes per model.

Models (``--config.model.name``): ``cammsr``; the baselines ``sasrec`` (ID expert only) and
``sasrec_mm`` (one expert over [ID || text || image]). Ablations: ``model.category_guidance``,
``model.modality_swap``, ``model.synergy_experts`` = False.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown cammsr variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "cammsr"
    c.variant = variant
    c.seed = 0
    c.rng_impl = ""  # "" = JAX's default (threefry); "rbg" compiles the init faster on CPU

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "model")
    c.mesh.shape = (-1, 1)
    c.mesh.axis_types = "auto"

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"  # synthetic | movielens | amazon
    c.data.data_dir = ""
    c.data.num_users = 2000  # synthetic only (the generator's keyword names)
    c.data.num_items = 1500
    c.data.num_categories = 8
    c.data.min_len = 8  # synthetic: shortest sequence; movielens/amazon: k-core threshold
    c.data.max_len = 40  # synthetic: longest sequence
    c.data.feature_dim = 64
    c.data.history_weight = 1.0  # synthetic: weight of the recent-items interest (0: none)
    c.data.history_decay = 0.5  # synthetic: its decay (0: the last item only)
    c.data.seed = 0

    c.split = ml_collections.ConfigDict()
    c.split.history_len = 40  # items of history fed to the model (= the positional table)

    c.model = ml_collections.ConfigDict()
    c.model.name = "cammsr"  # cammsr | sasrec | sasrec_mm
    c.model.dim = 64
    c.model.expert_hidden = 0  # 0: dim
    c.model.num_layers = 2
    c.model.num_heads = 2
    c.model.dropout = 0.2
    c.model.norm = "dyt"  # dyt | layernorm
    c.model.scale_input = False  # SASRec's sqrt(dim) input scaling
    c.model.category_guidance = True
    c.model.modality_swap = True
    c.model.synergy_experts = True
    c.model.swap_rate = 0.2
    c.model.swap_head = False  # InfoNCE on an MLP projection of the states (SimCLR-style)

    c.loss = ml_collections.ConfigDict()
    c.loss.category_weight = 0.1  # lambda1
    c.loss.swap_weight = 0.02  # lambda2 (tuned on validation: see above)
    c.loss.temperature = 0.2

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 3e-3
    c.optim.weight_decay = 0.0
    c.optim.decay_epochs = (22.0,)  # x decay_factor after these epochs
    c.optim.decay_factor = 0.1

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 128
    c.train.num_epochs = 30.0
    c.train.num_steps = 0  # > 0 overrides num_epochs
    c.train.log_every = 50
    c.train.eval_every = 0  # steps; 0: use eval_every_epochs
    c.train.eval_every_epochs = 5.0
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2
    c.train.prefetch_threads = 2
    c.train.progress = True
    c.eval_batch_size = 512
    c.lock()  # before the variants: they may only change existing keys

    if variant == "tiny":
        c.rng_impl = "rbg"
        c.data.num_users = 200
        c.data.num_items = 150
        c.data.num_categories = 4
        c.data.min_len = 5
        c.data.max_len = 12
        c.data.feature_dim = 8
        c.split.history_len = 10
        c.model.dim = 16
        c.model.num_layers = 1
        c.model.num_heads = 1
        c.model.dropout = 0.1
        c.optim.decay_epochs = ()
        c.train.batch_size = 32
        c.train.num_epochs = 0.0
        c.train.num_steps = 36
        c.train.log_every = 12
        c.train.eval_every = 18
        c.train.checkpoint_every = 18
        c.eval_batch_size = 128
    elif variant == "paper":
        c.data.source = "amazon"
        c.data.min_len = 5
        c.split.history_len = 50
        c.model.dim = 64
        c.model.num_layers = 2
        c.model.num_heads = 2
        c.model.dropout = 0.2
        c.loss.swap_weight = 0.1
        c.optim.learning_rate = 1e-3
        c.optim.decay_epochs = ()
        c.train.batch_size = 256
        c.train.num_epochs = 200.0
        c.train.log_every = 200
        c.train.eval_every_epochs = 5.0
        c.train.checkpoint_every = 2000
        c.eval_batch_size = 1024
    return c
