"""EM3 (arXiv 2404.06078) — end-to-end multimodal content model inside a ranking model.

Variants:
  tiny     seconds on a CPU: a small synthetic catalogue, a one-layer Fusion-Q-Former (CI).
  default  the embedded synthetic multimodal generator (content drives behaviour; users rely
           on text or image depending on the category) with behaviour histories of up to 50
           items: ITC pre-training of the Fusion-Q-Former, then DIN ranking with the
           LoRA-adapted core trained end to end and the Content-ID-Contrastive loss; a few
           minutes per model on a CPU.
  paper    Amazon review + metadata files with precomputed features
           (``--config.data.data_dir``; layout in ``jaxpapers.data.multimodal.load_amazon``):
           each item is one image-feature token and its title words; the catalogue is large,
           so the batch's unique items are encoded (``model.max_unique_items``).

Baseline: ``--config.model.name=pre_extracted`` (the pre-trained core's outputs computed once
and frozen). Ablations: ``--config.loss.contrastive_weight=0`` (no Content-ID-Contrastive
loss), ``--config.model.lora_rank=0`` (full fine-tuning of the core instead of LoRA).
``--config.pretrain.cache_path=<file>.npz`` shares one pre-trained core between runs.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown em3 variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "em3"
    c.variant = variant
    c.seed = 0
    c.rng_impl = "rbg"  # initialisation keys: compiles several times faster than threefry on CPU

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "model")
    c.mesh.shape = (-1, 1)
    c.mesh.axis_types = "auto"

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"  # synthetic | movielens | amazon
    c.data.data_dir = ""
    c.data.num_users = 1500
    c.data.num_items = 1000
    c.data.num_categories = 8
    c.data.min_len = 20
    c.data.max_len = 60
    c.data.num_patches = 16
    c.data.patch_dim = 32
    c.data.text_len = 16
    c.data.text_vocab = 512
    c.data.seed = 0

    c.split = ml_collections.ConfigDict()
    c.split.history_len = 50
    c.split.num_negatives = 1
    c.split.hard_negative_fraction = 0.5

    c.model = ml_collections.ConfigDict()
    c.model.name = "em3"  # em3 | pre_extracted
    c.model.dim = 32  # ID embedding (and adapted content) width
    c.model.content_dim = 64  # the Fusion-Q-Former's content embedding
    c.model.qformer_dim = 32
    c.model.num_queries = 4
    c.model.qformer_layers = 2
    c.model.qformer_heads = 2
    c.model.dropout = 0.0
    c.model.lora_rank = 4  # 0: full fine-tuning of the core
    c.model.lora_alpha = 0.0  # 0: no alpha/rank scaling (Flax's nnx.LoRA)
    c.model.max_unique_items = 0  # static bound on a batch's distinct items; 0: all ids
    c.model.hidden = (128, 64)
    c.model.attention_hidden = (64, 32)

    c.loss = ml_collections.ConfigDict()
    c.loss.contrastive_weight = 0.1  # lambda of the Content-ID-Contrastive loss
    c.loss.temperature = 0.1

    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.steps = 300
    c.pretrain.batch_size = 128
    c.pretrain.learning_rate = 1e-3
    c.pretrain.temperature = 0.1
    c.pretrain.cache_path = ""  # default <workdir>/em3/pretrained.npz

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.decay_epochs = ()
    c.optim.decay_factor = 0.1

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 256
    c.train.num_epochs = 1.0
    c.train.num_steps = 0  # > 0 overrides num_epochs
    c.train.log_every = 50
    c.train.eval_every = 0
    c.train.eval_every_epochs = 0.5
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2
    c.train.prefetch_threads = 2
    c.train.progress = True
    c.eval_batch_size = 2048
    c.lock()  # before the variants: they may only change existing keys

    if variant == "tiny":
        c.data.num_users, c.data.num_items, c.data.num_categories = 120, 60, 4
        c.data.min_len, c.data.max_len = 5, 10
        c.data.num_patches, c.data.patch_dim = 4, 8
        c.data.text_len, c.data.text_vocab = 6, 64
        c.split.history_len = 8
        c.model.dim, c.model.content_dim = 8, 8
        c.model.qformer_dim, c.model.num_queries = 8, 2
        c.model.qformer_layers, c.model.qformer_heads = 1, 2
        c.model.lora_rank = 2
        c.model.hidden, c.model.attention_hidden = (16,), (8,)
        c.pretrain.steps, c.pretrain.batch_size = 10, 32
        c.train.batch_size = 64
        c.train.num_epochs = 0.0
        c.train.num_steps = 12
        c.train.log_every = 4
        c.train.eval_every = 6
        c.train.eval_every_epochs = 0.0
        c.train.checkpoint_every = 6
        c.eval_batch_size = 256
    elif variant == "paper":
        c.data.source = "amazon"
        c.data.min_len = 5
        c.split.history_len = 50
        c.model.dim = 64
        c.model.content_dim = 128
        c.model.qformer_dim = 64
        c.model.num_queries = 8
        c.model.qformer_heads = 4
        c.model.lora_rank = 8
        c.model.max_unique_items = 8192
        c.model.hidden = (200, 80)
        c.model.attention_hidden = (80, 40)
        c.pretrain.steps = 2000
        c.pretrain.batch_size = 512
        c.train.num_epochs = 2.0
        c.train.log_every = 200
        c.train.checkpoint_every = 2000
        c.eval_batch_size = 1024
    return c
