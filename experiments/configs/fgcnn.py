"""FGCNN (WWW 2019) — CTR prediction with CNN-generated features.

Variants:
  tiny     seconds on a CPU: a small synthetic dataset and a small FGCNN (CI).
  default  the embedded synthetic CTR generator (known click logit with pairwise
           and neighbouring-field interactions; the Bayes-optimal AUC is reported
           as ``oracle_auc``) at a size that shows FGCNN working: 2M rows of 16
           fields, a three-stage FGCNN scaled to 16 fields, two epochs with the
           learning rate x0.1 for the last half epoch; minutes on a CPU.
  paper    Criteo with the open benchmark's (BARS) Criteo_x4_001 FGCNN settings:
           min_count 10, embedding 16, channels 38-40-42-44, kernel 9, pooling 2,
           recombination 3, MLP 1000-1000-1000, batch 5000, Adam 1e-3, embedding
           L2 1e-5; the logged run's plateau decay (x0.1 after epoch 9, best at
           epoch 10) is replayed as a fixed schedule. Needs ``train.txt`` in
           ``--config.data.data_dir``. BARS reports test AUC 0.8121, logloss 0.4398.
  paper_avazu  Avazu with BARS Avazu_x4_001 settings (min_count 2, embedding 16,
           channels 20-22-24-26, MLP 2000x4, batch 10000; best after 1 epoch).

Baselines: ``--config.model.name=ipnn`` or ``--config.model.name=lr``.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper", "paper_avazu")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown fgcnn variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "fgcnn"
    c.variant = variant
    c.seed = 0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "model")
    c.mesh.shape = (-1, 1)  # -1: all remaining devices
    c.mesh.axis_types = "auto"

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"  # synthetic | criteo | avazu
    c.data.data_dir = ""  # where train.txt (Criteo) / train.csv (Avazu) live
    c.data.min_count = 10  # rarer values map to the OOV id (train split counts)
    c.data.max_rows = 0  # 0: the whole file
    c.data.num_train = 2_000_000  # synthetic only
    c.data.num_valid = 100_000
    c.data.num_test = 200_000
    c.data.num_fields = 16
    c.data.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "fgcnn"  # fgcnn | ipnn | lr
    c.model.embedding_dim = 16
    c.model.channels = (8, 10, 12)  # 16 fields: three stages (16 -> 8 -> 4 -> 2 rows)
    c.model.kernel_heights = (7, 5, 3)
    c.model.pooling_sizes = (2, 2, 2)
    c.model.recombined_channels = (2, 2, 2)
    c.model.pooling = "ceil"  # ceil (FuxiCTR) | floor (DeepCTR)
    c.model.conv_batch_norm = True
    c.model.share_embedding = False
    c.model.hidden = (400, 400, 400)
    c.model.dropout = 0.0
    c.model.dnn_batch_norm = False

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.embedding_l2 = 0.0
    c.optim.decay_epochs = (1.5,)  # epochs after which the learning rate is x decay_factor
    c.optim.decay_factor = 0.1

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 1024
    c.train.num_epochs = 2.0
    c.train.num_steps = 0  # > 0 overrides num_epochs
    c.train.log_every = 100
    c.train.eval_every = 0  # steps; 0: use eval_every_epochs
    c.train.eval_every_epochs = 0.5
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 2
    c.train.prefetch_threads = 2
    c.train.progress = True
    c.eval_batch_size = 8192
    c.lock()  # before the variants: they may only change existing keys

    if variant == "tiny":
        c.data.num_train, c.data.num_valid, c.data.num_test = 8192, 2048, 2048
        c.data.num_fields = 8
        c.model.embedding_dim = 4
        c.model.channels = (4, 4)
        c.model.kernel_heights = (3, 3)
        c.model.pooling_sizes = (2, 2)
        c.model.recombined_channels = (2, 2)
        c.model.hidden = (32, 16)
        c.optim.decay_epochs = ()
        c.train.batch_size = 256
        c.train.num_epochs = 1.0
        c.train.log_every = 8
        c.train.eval_every = 16
        c.train.eval_every_epochs = 0.0
        c.train.checkpoint_every = 16
        c.eval_batch_size = 1024
    elif variant == "paper":
        c.data.source = "criteo"
        c.data.min_count = 10
        c.model.embedding_dim = 16
        c.model.channels = (38, 40, 42, 44)
        c.model.kernel_heights = (9, 9, 9, 9)
        c.model.pooling_sizes = (2, 2, 2, 2)
        c.model.recombined_channels = (3, 3, 3, 3)
        c.model.hidden = (1000, 1000, 1000)
        c.optim.embedding_l2 = 1e-5
        c.optim.decay_epochs = (9.0,)
        c.train.batch_size = 5000
        c.train.num_epochs = 10.0
        c.train.log_every = 200
        c.train.eval_every_epochs = 1.0  # as BARS: validate after every epoch
        c.train.checkpoint_every = 2000
        c.eval_batch_size = 10000
    elif variant == "paper_avazu":
        c.data.source = "avazu"
        c.data.min_count = 2
        c.model.embedding_dim = 16
        c.model.channels = (20, 22, 24, 26)
        c.model.kernel_heights = (9, 9, 9, 9)
        c.model.pooling_sizes = (2, 2, 2, 2)
        c.model.recombined_channels = (3, 3, 3, 3)
        c.model.hidden = (2000, 2000, 2000, 2000)
        c.optim.embedding_l2 = 1e-9
        c.optim.decay_epochs = ()
        c.train.batch_size = 10000
        c.train.num_epochs = 1.0
        c.train.log_every = 200
        c.train.eval_every_epochs = 0.25
        c.train.checkpoint_every = 1000
        c.eval_batch_size = 10000
    return c
