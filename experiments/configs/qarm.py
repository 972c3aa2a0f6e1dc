"""QARM (arXiv 2411.11739) — aligned, quantised multimodal codes trained end to end in a ranker.

Variants:
  tiny     seconds on a CPU: a small synthetic catalogue, a few alignment steps, small codes (CI).
  default  the embedded synthetic multimodal generator (its default size: 2000 users, 1500
           items; content factors drive behaviour): pairs mined from the training part,
           item alignment (symmetric InfoNCE), VQ codes (25 nearest pool items) and RQ codes
           (3 levels x 64), then DIN ranking with the code tables trained end to end; a few
           minutes per model on a CPU.
  paper    Amazon review + metadata files with precomputed text / image features
           (``--config.data.data_dir``; layout in ``jaxpapers.data.multimodal.load_amazon``),
           the paper's K=25 VQ neighbours and 6 RQ levels (256 codewords each: our choice).

Models (``--config.model.name``): ``qarm`` (the method: the production ranker's cached
embedding feature, plus the aligned VQ/RQ codes as new trainable ID features;
``model.keep_cached=False`` keeps the codes only), ``cached`` (the paper's baseline: frozen
cached multimodal embedding through a Linear), ``aligned_cached`` (frozen ALIGNED embedding:
alignment without codes), ``qarm_no_align`` (codes from the cached embeddings: codes without
alignment) and ``id`` (ID embedding only).
Stage outputs live in ``<workdir>/qarm/`` (``aligned.npy``, ``codes_*.npz``) and are reused
when the same command runs again.

Measured on ``default`` (test AUC, mean of seeds 0-2; 4000 test rows each): aligned_cached
0.758, qarm_no_align 0.757, qarm 0.757, cached 0.746, id 0.743; codes only (keep_cached=False)
0.747. The codes beat the frozen cached embedding (+0.011); alignment helps the frozen
embedding but adds nothing to the codes at this data size.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown qarm variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "qarm"
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
    c.data.num_users = 2000
    c.data.num_items = 1500
    c.data.num_categories = 8
    c.data.min_len = 8
    c.data.max_len = 40
    c.data.num_patches = 16
    c.data.patch_dim = 32
    c.data.text_len = 16
    c.data.text_vocab = 512
    c.data.feature_dim = 64
    c.data.seed = 0

    c.split = ml_collections.ConfigDict()
    c.split.history_len = 30
    c.split.num_negatives = 1
    c.split.hard_negative_fraction = 0.5

    c.align = ml_collections.ConfigDict()  # item alignment on behaviour-mined pairs
    c.align.window = 5  # User2Item look-back and Item2Item co-occurrence window (positions)
    c.align.min_count = 3  # distinct users an Item2Item pair needs
    c.align.steps = 500
    c.align.batch_size = 256
    c.align.temperature = 0.1
    c.align.learning_rate = 1e-3
    c.align.hidden = 128
    c.align.dim = 32  # aligned embedding width

    c.codes = ml_collections.ConfigDict()
    c.codes.vq_k = 25  # VQ code: nearest pool items (the paper's K)
    c.codes.rq_levels = (64, 64, 64)  # RQ codebook size per level (the paper: 6 levels)
    c.codes.kmeans_iters = 20

    c.model = ml_collections.ConfigDict()
    c.model.name = "qarm"  # qarm | qarm_no_align | cached | aligned_cached | id
    c.model.dim = 32  # item representation fed to DIN
    c.model.keep_cached = True  # qarm*: the codes are added beside the cached embedding
    c.model.id_dim = 32
    c.model.code_dim = 32  # each code table's width (and the frozen embedding's projection)
    c.model.hidden = (128, 64)
    c.model.attention_hidden = (64, 32)

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.decay_epochs = ()
    c.optim.decay_factor = 0.1

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 256
    c.train.num_epochs = 2.0
    c.train.num_steps = 0  # > 0 overrides num_epochs
    c.train.log_every = 100
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
        c.data.feature_dim = 16
        c.split.history_len = 8
        c.align.window, c.align.min_count = 3, 2
        c.align.steps, c.align.batch_size = 30, 32
        c.align.hidden, c.align.dim = 16, 8
        c.codes.vq_k = 5
        c.codes.rq_levels = (8, 8, 8)
        c.codes.kmeans_iters = 5
        c.model.dim, c.model.id_dim, c.model.code_dim = 8, 8, 8
        c.model.hidden, c.model.attention_hidden = (16,), (8,)
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
        c.align.window, c.align.min_count = 10, 5
        c.align.steps, c.align.batch_size = 3000, 1024
        c.align.hidden, c.align.dim = 256, 64
        c.codes.vq_k = 25
        c.codes.rq_levels = (256,) * 6
        c.model.dim, c.model.id_dim, c.model.code_dim = 64, 64, 64
        c.model.hidden = (200, 80)
        c.model.attention_hidden = (80, 40)
        c.train.log_every = 200
        c.train.checkpoint_every = 2000
        c.eval_batch_size = 1024
    return c
