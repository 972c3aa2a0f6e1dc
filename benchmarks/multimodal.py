"""Multimodal recommendation (issue 4): train-step throughput of CAMMSR, QARM and EM3.

Entries, timed with :func:`harness.run_interleaved` (one warm-up call each, reported as
``first_call_s``; compilation apart, from :func:`harness.compile_jax`; the 2048^3 float32
matmul reference of each framework brackets every block of calls, so a reader can see how
fast the machine was meanwhile). Every JAX entry is one call of the library's own train step
(:func:`jaxpapers.core.train.setup` + :func:`~jaxpapers.core.train.make_train_step` on a
one-device ``("data", "model")`` mesh, state donated and carried over from call to call, the
gradient norm and finiteness flag included), with the model and loss the experiments use:

* ``sasrec_train`` — the SASRec baseline of ``experiments/configs/cammsr.py:default``
  (``model.name="sasrec"``: ID embedding -> ID expert MLP, 2 DyT blocks of width 64, 2 heads,
  dropout 0.2), ``model.losses``: next-item cross-entropy over ALL items at every position.
* ``torch_sasrec_train`` — a PyTorch SASRec of the same shape (:func:`torch_sasrec`, written
  here after the reference architecture of pmixer/SASRec.pytorch: item embedding * sqrt(d) +
  learned positions, dropout, blocks of [LayerNorm(query) -> causal MultiheadAttention ->
  residual, LayerNorm -> point-wise FFN (Linear, equivalent to Conv1d k=1) -> residual], final
  LayerNorm), with the SAME loss as ours (full softmax cross-entropy over every item, padding
  column masked, mean over non-padding targets — not the reference's BCE with one sampled
  negative) and Adam (lr 1e-3, betas 0.9/0.999 as optax's). Only when torch is installed
  (the ``bench`` extra); otherwise the table says so.
* ``cammsr_train`` — CAMMSR in full (``model.name="cammsr"``: 7 experts over ID, text and
  image features, category-guided attentive gate, category loss, the modality-swap
  contrastive pass through CAMoE and the Transformer a second time).
* ``qarm_train`` — QARM's DIN ranker with its quantitative codes as trainable sparse
  features (``experiments/configs/qarm.py:default``: VQ code = 25 pool items, RQ code = 3
  levels of 64, code tables of width 32), loss = BCE, as :mod:`jaxpapers.recsys.ranking`.
  The codes are random but valid (uniform item ids / codeword indices, seed 0): the item
  alignment and k-means stages that produce the real ones are not what this times, and a
  step's cost does not depend on their values.
* ``em3_train`` — EM3 end to end (``experiments/configs/em3.py:default``): the
  Fusion-Q-Former (2 layers, 4 queries, width 32) runs inside the step on the catalogue's
  image patch and text tokens, LoRA rank 4 on every Linear of the core (only the adapters and
  the ranker are trained, ``em3.trainable``), DIN over ``[ID || adapted content]`` and the
  Content-ID-Contrastive loss. The core's weights are the random initialisation (no ITC
  pre-training: same cost); the catalogue tokens are the data's.
* ``em3_pre_extracted_train`` — the two-stage baseline: the same ranker over frozen content
  embeddings (random, ``N(0, 1)``; the values do not change the cost).

Batches: the synthetic generator at its default size
(:func:`jaxpapers.data.multimodal.synthetic_multimodal`: 2000 users, 1500 items, 8
categories, sequences of 8-40 items), one dataset for every model. Sequence models get rows
of :func:`~jaxpapers.data.multimodal.leave_one_out` (``inputs``/``targets`` ``[B, L]``),
rankers rows of :func:`~jaxpapers.data.multimodal.ranking_samples` (``history [B, L]``,
target, label). Batch ``B`` (256) and length ``L`` (50) are the benchmark's, for every model
(the configs' own history lengths differ: 40, 30, 50); the generator's sequences are at most
40 long, so about half of a ``[B, 50]`` input is padding, which costs as much as real items in
dense attention and DIN. A pool of :data:`POOL` batches is drawn once (numpy seed 0) and put
on the device; every entry walks its pool in order (a single repeated batch gets memorised,
see the CTR suite's notes), the PyTorch SASRec the very same arrays as ``sasrec_train``.

Memory (``em3_memory``): :func:`jaxpapers.recsys.em3.core_memory` compiles EM3's train step
at the same ``B`` and ``L`` with LoRA (rank 4) and with full fine-tuning of the core
(``lora_rank=0``) and reads XLA's ``memory_analysis()``: argument, output, temporary and
aliased (donated) bytes; *total* = temp + argument + output, *peak* = total - alias. The same
figures are reported for every timed JAX step (from its compiled executable).

Initialisation and compilation (single-threaded per program in XLA:CPU, and most of a short
run's time) happen before any timing, in a thread pool with one worker per usable core, so the
reported compile seconds include the contention of the compilations running beside them.

Reported: ms per step (median and quartiles over rounds), examples/s and steps/s, parameter
counts (all and trainable), lowering + compile seconds, the first call, XLA's FLOP count per
step and the rate it implies, the last loss (finite), and ``torch_sasrec_over_sasrec`` =
PyTorch step time / ours (median of the per-round ratios and their quartiles: > 1 means ours
is faster).
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import harness

TRAIN_MODELS = ("sasrec", "torch_sasrec", "cammsr", "qarm", "em3", "em3_pre_extracted")
ENTRIES = (*(f"{m}_train" for m in TRAIN_MODELS), "em3_memory")
SEED = 0
POOL = 8  # distinct batches each entry cycles through
MiB = 2**20


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configs and data


def experiment_configs() -> dict[str, Any]:
    """The ``default`` variants of ``experiments/configs/{cammsr,qarm,em3}.py``."""
    from experiments.configs import cammsr as cammsr_config
    from experiments.configs import em3 as em3_config
    from experiments.configs import qarm as qarm_config

    return {
        "cammsr": cammsr_config.get_config("default"),
        "qarm": qarm_config.get_config("default"),
        "em3": em3_config.get_config("default"),
    }


def make_data():
    """The synthetic generator at its default size (one dataset for every model)."""
    from jaxpapers.data import multimodal

    return multimodal.synthetic_multimodal(seed=SEED)


def _rows(n: int, batch: int, pool: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``pool`` index arrays of ``batch`` rows out of ``n`` (without repeats while they last)."""
    need = batch * pool
    order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]
    return [order[i * batch : (i + 1) * batch] for i in range(pool)]


def sequence_pool(data, batch: int, length: int, pool: int = POOL) -> list[dict[str, np.ndarray]]:
    """Next-item training batches ``{"inputs", "targets"}`` ``[batch, length]`` int32."""
    from jaxpapers.data import multimodal

    splits = multimodal.leave_one_out(data, length)
    rng = np.random.default_rng(SEED)
    return [
        {
            "inputs": splits.train_inputs[idx].astype(np.int32),
            "targets": splits.train_targets[idx].astype(np.int32),
        }
        for idx in _rows(len(splits.train_inputs), batch, pool, rng)
    ]


def ranking_pool(data, batch: int, length: int, pool: int = POOL) -> list[dict[str, np.ndarray]]:
    """Ranking training batches ``{"user", "history", "target", "label"}``."""
    from jaxpapers.data import multimodal

    train = multimodal.ranking_samples(data, length, num_negatives=1, seed=SEED)["train"]
    rng = np.random.default_rng(SEED + 1)
    return [
        {
            "user": train.user[idx].astype(np.int32),
            "history": train.history[idx].astype(np.int32),
            "target": train.target[idx].astype(np.int32),
            "label": train.label[idx].astype(np.float32),
        }
        for idx in _rows(len(train.label), batch, pool, rng)
    ]


def random_codes(num_items: int, vq_k: int, rq_levels: Sequence[int], dim: int = 8):
    """Valid QARM codes drawn uniformly (seed 0): VQ ids in 1..I, RQ indices per level."""
    from jaxpapers.recsys import qarm

    rng = np.random.default_rng(SEED)
    vq = rng.integers(1, num_items + 1, (num_items + 1, vq_k)).astype(np.int32)
    rq = np.stack([rng.integers(0, s, num_items + 1) for s in rq_levels], axis=1).astype(np.int32)
    vq[0], rq[0] = 0, 0
    return qarm.Codes(
        vq=vq,
        rq=rq,
        rq_sizes=tuple(int(s) for s in rq_levels),
        rq_codebooks=tuple(np.zeros((s, dim), np.float32) for s in rq_levels),
        residual_norms=np.zeros(len(rq_levels) + 1),
    )


# --------------------------------------------------------------------------- JAX train steps


def ranking_loss(model, batch):
    """:func:`jaxpapers.recsys.ranking.make_task`'s loss: mean BCE + the model's aux terms."""
    import jax.numpy as jnp
    import optax

    logits, aux = model(batch, deterministic=False)
    bce = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
    return bce + sum(aux.values(), jnp.zeros(())), {"bce": bce, **aux}


def sequence_loss(model, batch):
    """:func:`jaxpapers.recsys.seqrec.make_task`'s loss: the model's ``losses`` in train mode."""
    return model.losses(batch, deterministic=False)


def memory_sizes(compiled) -> dict[str, int]:
    """XLA's ``memory_analysis()`` in bytes; ``total`` = temp + argument + output."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- a backend without it
        analysis = None
    if analysis is None:
        return {}
    out = {
        name: int(getattr(analysis, f"{name}_size_in_bytes", 0) or 0)
        for name in ("argument", "output", "temp", "alias", "generated_code")
    }
    out["total"] = out["argument"] + out["output"] + out["temp"]
    out["peak"] = out["total"] - out["alias"]
    return out


def jax_train_entry(
    name: str,
    init_model: Callable[[Any], Any],
    loss_fn: Callable,
    config,
    pool: Sequence[dict[str, np.ndarray]],
    *,
    wrt: Any = None,
    pretrained: Callable[[Any], Any] | None = None,
    info: dict[str, Any] | None = None,
) -> harness.Entry:
    """The library's train step of ``init_model`` with ``config``'s optimizer and init keys."""
    import jax
    from flax import nnx

    from jaxpapers.core import mesh as mesh_lib
    from jaxpapers.core import train as train_lib
    from jaxpapers.recsys import experiment

    wrt = nnx.Param if wrt is None else wrt
    batch = int(len(next(iter(pool[0].values()))))
    # Adam (AdamW with optim.weight_decay) at optim.learning_rate; no decay within a benchmark
    _, _, optimizer = experiment.schedule(config, max(batch, config.train.batch_size))
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    setup_ = train_lib.setup(
        init_model,
        optimizer,
        mesh=mesh,
        wrt=wrt,
        seed=SEED,
        rng_impl=config.get("rng_impl") or None,
    )
    _log(f"initialising {name}")
    state = setup_.init()
    if pretrained is not None:
        state = jax.device_put(pretrained(state), setup_.shardings)
    step = train_lib.make_train_step(loss_fn, setup_)
    batches = [jax.device_put(b, setup_.batch_sharding) for b in pool]
    params = state["model"].filter(nnx.Param)
    trainable = state["model"].filter(wrt)

    def count(tree) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))

    _log(f"compiling {name}")
    compiled, compile_info = harness.compile_jax(step, state, batches[0])
    return harness.Entry(
        name,
        harness.TrainCall(compiled, state, batches),
        flops=compile_info["xla_flops"] if np.isfinite(compile_info["xla_flops"]) else None,
        framework="jax",
        info={
            **compile_info,
            "batch": batch,
            "num_params": count(params),
            "num_trainable": count(trainable),
            "memory_bytes": memory_sizes(compiled),
            "flops_source": "XLA cost_analysis of the compiled step",
            **(info or {}),
        },
    )


def seqrec_entry(name: str, model_name: str, cfg, data, pool, length: int) -> harness.Entry:
    """``sasrec`` / ``cammsr`` from ``cfg`` (cammsr's default config) on next-item batches."""
    from jaxpapers.recsys import cammsr

    model_cfg = cfg.model.copy_and_resolve_references()
    model_cfg.name = model_name

    def init_model(rngs):
        return cammsr.make_model(model_cfg, data, rngs, loss_cfg=cfg.loss, max_len=length)

    return jax_train_entry(
        name,
        init_model,
        sequence_loss,
        cfg,
        pool,
        info={"model": model_cfg.to_dict(), "loss": cfg.loss.to_dict()},
    )


def qarm_entry(name: str, cfg, data, pool) -> harness.Entry:
    """QARM's ranker over random valid codes (module docstring)."""
    from jaxpapers.recsys import qarm

    codes = random_codes(data.num_items, cfg.codes.vq_k, cfg.codes.rq_levels)
    factory, values = qarm.make_factory(
        "qarm", cached=qarm.cached_embeddings(data), aligned=None, codes=codes
    )
    return jax_train_entry(
        name,
        lambda rngs: factory(cfg.model, data, rngs),
        ranking_loss,
        cfg,
        pool,
        pretrained=qarm.fill_frozen(values),
        info={
            "model": cfg.model.to_dict(),
            "codes": {"vq_k": cfg.codes.vq_k, "rq_levels": list(cfg.codes.rq_levels)},
            "codes_source": "random valid codes (seed 0)",
        },
    )


def em3_entry(name: str, cfg, data, pool, *, pre_extracted: bool) -> harness.Entry:
    """EM3 end to end (LoRA) or the pre-extracted baseline."""
    from jaxpapers.recsys import em3

    cfg = cfg.copy_and_resolve_references()
    cfg.model.name = "pre_extracted" if pre_extracted else "em3"
    em3.validate(cfg)
    if pre_extracted:
        rng = np.random.default_rng(SEED)
        features = rng.standard_normal((data.num_items + 1, cfg.model.content_dim))
        features = features.astype(np.float32)
        features[0] = 0.0
        values = {"features": features}
    else:
        values = {
            "image_tokens": np.asarray(data.image_tokens, np.float32),
            "text_tokens": np.asarray(data.text_tokens, np.int32),
        }
    return jax_train_entry(
        name,
        lambda rngs: em3.make_model(cfg, data, rngs),
        ranking_loss,
        cfg,
        pool,
        wrt=em3.trainable(cfg),
        pretrained=lambda state: em3.inject(state, values),
        info={"model": cfg.model.to_dict(), "loss": cfg.loss.to_dict()},
    )


# --------------------------------------------------------------------------- PyTorch SASRec


def torch_sasrec(
    num_items: int, *, dim: int, num_layers: int, num_heads: int, max_len: int, dropout: float
):
    """A PyTorch SASRec (pmixer/SASRec.pytorch's architecture) with the full-softmax loss.

    Imported lazily: this module stays importable without torch.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    class PointWiseFeedForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(dim, dim)  # = Conv1d(dim, dim, kernel_size=1)
            self.fc2 = nn.Linear(dim, dim)
            self.drop1 = nn.Dropout(dropout)
            self.drop2 = nn.Dropout(dropout)

        def forward(self, x):
            return self.drop2(self.fc2(F.relu(self.drop1(self.fc1(x)))))

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
            self.pos_emb = nn.Embedding(max_len, dim)
            self.emb_dropout = nn.Dropout(dropout)
            self.attention_norms = nn.ModuleList(
                [nn.LayerNorm(dim, eps=1e-8) for _ in range(num_layers)]
            )
            self.attentions = nn.ModuleList(
                [
                    nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
                    for _ in range(num_layers)
                ]
            )
            self.ffn_norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-8) for _ in range(num_layers)])
            self.ffns = nn.ModuleList([PointWiseFeedForward() for _ in range(num_layers)])
            self.last_norm = nn.LayerNorm(dim, eps=1e-8)
            for p in self.parameters():  # the reference re-initialises matrices Xavier-normal
                if p.dim() > 1:
                    nn.init.xavier_normal_(p)

        def encode(self, seqs):
            length = seqs.shape[1]
            x = self.item_emb(seqs) * dim**0.5
            x = x + self.pos_emb.weight[max_len - length :]
            x = self.emb_dropout(x)
            keep = (seqs != 0).unsqueeze(-1).to(x.dtype)
            x = x * keep
            causal = ~torch.tril(torch.ones(length, length, dtype=torch.bool))
            for norm_a, attn, norm_f, ffn in zip(
                self.attention_norms, self.attentions, self.ffn_norms, self.ffns
            ):
                q = norm_a(x)
                out, _ = attn(q, x, x, attn_mask=causal, need_weights=False)
                x = q + out
                x = norm_f(x)
                x = x + ffn(x)
                x = x * keep
            return self.last_norm(x)

        def loss(self, inputs, targets):
            states = self.encode(inputs)
            logits = states @ self.item_emb.weight.T  # [B, L, I+1]
            logits = logits.masked_fill(self._pad_column(logits), float("-inf"))
            return F.cross_entropy(
                logits.reshape(-1, num_items + 1), targets.reshape(-1), ignore_index=0
            )

        @staticmethod
        def _pad_column(logits):
            col = torch.zeros(logits.shape[-1], dtype=torch.bool)
            col[0] = True
            return col

    return SASRec()


class _TorchTrainCall:
    """One PyTorch SASRec train step (zero_grad, loss, backward, Adam) per call."""

    def __init__(self, model, optimizer, batches):
        self.model, self.optimizer, self.batches = model, optimizer, batches
        self.calls = 0
        self.loss = None

    def __call__(self):
        inputs, targets = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(inputs, targets)
        loss.backward()
        self.optimizer.step()
        self.loss = loss.detach()

    def last(self) -> dict[str, Any]:
        value = float(self.loss)
        return {"last_loss": value, "last_step_finite": bool(np.isfinite(value))}


def torch_entry(name: str, cfg, data, pool, length: int) -> harness.Entry:
    """The PyTorch SASRec with ``cfg.model``'s width, blocks, heads and dropout."""
    import torch

    torch.manual_seed(SEED)
    m = cfg.model
    model = torch_sasrec(
        data.num_items,
        dim=m.dim,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        max_len=length,
        dropout=m.dropout,
    )
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.learning_rate))
    batches = [
        (torch.from_numpy(b["inputs"]).long(), torch.from_numpy(b["targets"]).long()) for b in pool
    ]
    return harness.Entry(
        name,
        _TorchTrainCall(model, optimizer, batches),
        framework="torch",
        info={
            "batch": int(batches[0][0].shape[0]),
            "num_params": int(sum(p.numel() for p in model.parameters())),
            "num_trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "threads": torch.get_num_threads(),
            "architecture": "pmixer/SASRec.pytorch (LayerNorm eps 1e-8, Linear FFN, ReLU)",
            "loss": "full softmax cross-entropy over all items (as ours)",
            "optimizer": "torch.optim.Adam(lr, betas=(0.9, 0.999)), default implementation",
        },
    )


# --------------------------------------------------------------------------- memory


def em3_memory(cfg, data, batch: int, length: int) -> dict[str, dict[str, int]]:
    """:func:`jaxpapers.recsys.em3.core_memory` with LoRA and with full fine-tuning."""
    from jaxpapers.recsys import em3

    out = {}
    for label, lora in (("lora", True), ("full_finetune", False)):
        _log(f"compiling em3's train step for memory_analysis ({label})")
        t0 = time.perf_counter()
        sizes = em3.core_memory(cfg, lora=lora, data=data, batch_size=batch, history_len=length)
        sizes["total"] = sizes["argument"] + sizes["output"] + sizes["temp"]
        sizes["compile_s"] = time.perf_counter() - t0
        out[label] = sizes
    return out


# --------------------------------------------------------------------------- run


def _mib(x: float | None) -> str:
    return "" if x is None else f"{x / MiB:.1f}"


def _torch_available() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return False, f"torch is not installed ({e}); install the bench extra"
    return True, ""


def run(
    *,
    batch: int = 256,
    length: int = 50,
    rounds: int = 5,
    only: Sequence[str] = (),
    matmul_n: int = 2048,
    threads: int | None = None,
    warmup: int = 1,
    compile_workers: int | None = None,
    wait_for_idle: float = 0.0,
) -> tuple[dict[str, Any], str]:
    """Runs the selected entries; returns ``(results, printable tables)``.

    ``wait_for_idle`` > 0: after building (compilation is long and needs no quiet machine),
    first wait up to that many seconds until other processes use under 5% of the CPU over 10 s.
    """
    unknown = [o for o in only if o not in ENTRIES]
    if unknown:
        raise ValueError(f"unknown entries {unknown}; choose from {list(ENTRIES)}")
    if batch <= 0 or length <= 0 or rounds <= 0:
        raise ValueError(
            f"batch, length and rounds must be positive, got {batch}, {length}, {rounds}"
        )
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (in-batch contrastive losses), got {batch}")
    selected = [e for e in ENTRIES if e in only] if only else list(ENTRIES)

    import jax

    machine = harness.machine_info()
    machine["devices"] = [str(d) for d in jax.devices()]
    _log(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, devices "
        f"{machine['devices']}, load average {machine['load_average_at_start']}"
    )
    has_torch, torch_note = _torch_available()
    cfgs = experiment_configs()
    results: dict[str, Any] = {
        "machine": machine,
        "config": {
            "batch": batch,
            "length": length,
            "rounds": rounds,
            "warmup": warmup,
            "entries": selected,
            "seed": SEED,
            "pool_batches": POOL,
            "matmul_shape": [matmul_n] * 3,
            "data": "synthetic_multimodal() defaults (2000 users, 1500 items, 8 categories)",
            "configs": {k: f"experiments/configs/{k}.py:default" for k in cfgs},
        },
        "reference": {},
        "entries": {},
        "comparisons": {},
        "contention": {},
        "not_run": {},
    }

    _log("generating the synthetic data")
    data = make_data()
    results["config"]["data_info"] = data.info

    refs = {"jax": harness.jax_matmul_entry(matmul_n)}
    if has_torch and "torch_sasrec_train" in selected:
        refs["torch"] = harness.torch_matmul_entry(
            matmul_n, threads=threads or harness.usable_cores()
        )
    elif "torch_sasrec_train" in selected:
        results["not_run"]["torch_sasrec_train"] = torch_note
        _log(f"torch_sasrec_train not run: {torch_note}")

    seq = rank = None
    if {"sasrec_train", "torch_sasrec_train", "cammsr_train"} & set(selected):
        seq = sequence_pool(data, batch, length)
    if {"qarm_train", "em3_train", "em3_pre_extracted_train"} & set(selected):
        rank = ranking_pool(data, batch, length)
    builders: dict[str, Callable[[], Any]] = {
        "sasrec_train": lambda: seqrec_entry(
            "sasrec_train", "sasrec", cfgs["cammsr"], data, seq, length
        ),
        "cammsr_train": lambda: seqrec_entry(
            "cammsr_train", "cammsr", cfgs["cammsr"], data, seq, length
        ),
        "qarm_train": lambda: qarm_entry("qarm_train", cfgs["qarm"], data, rank),
        "em3_train": lambda: em3_entry("em3_train", cfgs["em3"], data, rank, pre_extracted=False),
        "em3_pre_extracted_train": lambda: em3_entry(
            "em3_pre_extracted_train", cfgs["em3"], data, rank, pre_extracted=True
        ),
        "em3_memory": lambda: em3_memory(cfgs["em3"], data, batch, length),
    }
    # Initialisation and compilation (single-threaded in XLA:CPU) dominate a short run: they
    # run in a thread pool, one per usable core; nothing is timed meanwhile.
    workers = max(1, min(harness.usable_cores(), compile_workers or harness.usable_cores()))
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {n: pool.submit(b) for n, b in builders.items() if n in selected}
        torch_built = None
        if "torch_sasrec_train" in selected and has_torch:
            torch_built = torch_entry("torch_sasrec_train", cfgs["cammsr"], data, seq, length)
        built = {n: f.result() for n, f in futures.items()}
    results["config"]["build_s"] = time.perf_counter() - t0
    results["config"]["compile_workers"] = workers
    if torch_built is not None:
        built["torch_sasrec_train"] = torch_built
    entries = [built[n] for n in ENTRIES if n in built and n != "em3_memory"]

    tables = []
    if entries and wait_for_idle > 0:
        results["contention"]["before_timing"] = harness.wait_for_idle(
            wait_for_idle, window_s=10.0, log=_log
        )
    if entries:
        _log(f"{rounds} interleaved rounds of {[e.name for e in entries]} (warm-up {warmup})")
        monitor = harness.CpuMonitor()
        harness.run_interleaved(entries, rounds, warmup=warmup, references=refs, log=_log)
        results["contention"]["main"] = monitor.read()
        tables.append(_throughput_table(entries, refs, results, batch, length, rounds))

    if "em3_memory" in built:
        results["em3_memory"] = built["em3_memory"]
        tables.append(_memory_table(built["em3_memory"], batch, length))
    for name, why in results["not_run"].items():
        tables.append(f"{name}: not run -- {why}")
    return results, "\n\n".join(tables)


def _throughput_table(entries, refs, results, batch: int, length: int, rounds: int) -> str:
    by_name = {e.name: e for e in entries}
    rows = []
    for key, ref in refs.items():
        summary = results["reference"][f"{key}_matmul"] = ref.summary()
        s = summary["seconds"]
        rows.append(
            [
                ref.name,
                "",
                harness.ms_quartiles(s),
                "",
                "",
                "",
                "",
                "",
                "",
                f"{summary['gflops_per_s']:.0f}",
            ]
            + [""]
        )
    for e in entries:
        r = e.summary()
        s = r["seconds"]
        r["examples_per_s"] = r["batch"] / s["median"]
        r["steps_per_s"] = 1.0 / s["median"]
        r.update(e.call.last())
        ref = refs.get(e.framework)
        if e.flops and ref is not None:
            r["of_matmul_rate"] = harness.local_fraction(e, ref)
        results["entries"][e.name] = r
        compile_s = r.get("lower_s", 0.0) + r.get("compile_s", 0.0)
        mem = r.get("memory_bytes", {})
        rate = ""
        if "gflops_per_s" in r:
            frac = r.get("of_matmul_rate", {}).get("median")
            rate = f"{r['gflops_per_s']:.0f}" + ("" if frac is None else f" ({100 * frac:.0f}%)")
        rows.append(
            [
                e.name,
                f"{r['num_params']:,} / {r['num_trainable']:,}",
                harness.ms_quartiles(s),
                f"{r['examples_per_s']:.0f}",
                f"{r['steps_per_s']:.2f}",
                f"{compile_s:.1f}" if e.framework == "jax" else "",
                f"{r['first_call_s'] * 1e3:.0f}",
                _mib(mem.get("temp")),
                _mib(mem.get("total")),
                rate,
                f"last loss {r['last_loss']:.3g}"
                + ("" if r["last_step_finite"] else " NOT FINITE"),
            ]
        )
    if "torch_sasrec_train" in by_name and "sasrec_train" in by_name:
        paired = harness.paired_ratio(by_name["torch_sasrec_train"], by_name["sasrec_train"])
        a = results["entries"]["torch_sasrec_train"]["seconds"]["median"]
        b = results["entries"]["sasrec_train"]["seconds"]["median"]
        results["comparisons"]["torch_sasrec_over_sasrec"] = {
            "ratio_of_medians": a / b,
            "per_round": paired,
        }
        for row in rows:
            if row[0] == "sasrec_train":
                row[-1] += (
                    f"; PyTorch step / this {a / b:.2f}x (per round "
                    f"{paired['q1']:.2f}-{paired['q3']:.2f})"
                )
    title = (
        f"Multimodal recommendation (issue 4): train-step throughput at batch {batch}, "
        f"sequence length {length} (the library's train step, state donated, {POOL} batches "
        f"cycled); {rounds} interleaved rounds; ms median [q1-q3]; GFLOP/s from XLA's count "
        f"(share of the JAX matmul rate measured around each call); memory from XLA's "
        f"memory_analysis (total = temp + argument + output); compile s with "
        f"{results['config']['compile_workers']} compilations in parallel. "
        f"{harness.contention_note(results['contention']['main'])}"
    )
    table = harness.format_table(
        [
            "entry",
            "params / trainable",
            "ms/step",
            "examples/s",
            "steps/s",
            "compile s",
            "first call ms",
            "temp MiB",
            "total MiB",
            "GFLOP/s",
            "notes",
        ],
        rows,
    )
    return f"{title}\n{table}"


def _memory_table(memory: dict[str, dict[str, int]], batch: int, length: int) -> str:
    rows = []
    for label, m in memory.items():
        rows.append(
            [
                f"em3 {label} (lora_rank={m['lora_rank']})",
                f"{m['trainable_params']:,}",
                _mib(m["argument"]),
                _mib(m["output"]),
                _mib(m["temp"]),
                _mib(m["alias"]),
                _mib(m["total"]),
                _mib(m["peak_bytes"]),
            ]
        )
    lora, full = memory.get("lora"), memory.get("full_finetune")
    note = ""
    if lora and full:
        note = (
            f"\nfull fine-tuning / LoRA: total {full['total'] / lora['total']:.2f}x, temp "
            f"{full['temp'] / max(lora['temp'], 1):.2f}x, trainable parameters "
            f"{full['trainable_params'] / max(lora['trainable_params'], 1):.1f}x"
        )
    title = (
        f"EM3 train-step memory at batch {batch}, history {length} "
        f"(em3.core_memory: XLA memory_analysis of the compiled step; total = temp + argument + "
        f"output, peak = total - alias (donated state))"
    )
    table = harness.format_table(
        [
            "step",
            "trainable",
            "argument MiB",
            "output MiB",
            "temp MiB",
            "alias MiB",
            "total MiB",
            "peak MiB",
        ],
        rows,
    )
    return f"{title}\n{table}{note}"
