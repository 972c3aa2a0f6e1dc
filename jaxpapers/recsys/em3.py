"""EM3: End-to-end training of Multimodal Model and ranking Model (Kuaishou, arXiv 2404.06078).

EM3 trains the multimodal model that turns an item's image and text into a content embedding
*inside* the ranking model, end to end with the click loss, instead of the usual two-stage
pipeline (pre-train a content encoder, extract frozen features, feed them to the ranker). No
code is public; this is a reconstruction from the paper's description (``papers.md``, family
2). Its three parts, named as in the paper:

* **Fusion-Q-Former** (:class:`FusionQFormer`, the "content core"): an item's image patch
  tokens (``[P, D_img]``, projected to the Q-Former width by a Linear) and text tokens
  (``[T]`` ids, embedded; id 0 is padding and masked out) are concatenated into one context;
  each token gets a learned *modality-type* embedding (image / text, N(0, 0.02^2) like the
  token embeddings, BERT's scale). Image patches also get a fixed sinusoidal position (fixed,
  so any patch count works; patch identity matters, each patch shows another part of the
  image). Text is read as a *bag of tokens* (no positions; the cross-attention is permutation
  invariant): a unit-scale sinusoid swamped the small token embeddings and left ITC
  pre-training at twice the loss (1.5 vs 0.77 after 300 steps on the synthetic default),
  token embeddings at unit scale did worse still (1.9), and learned positions would cap the
  text length. A fixed number of trainable queries
  (:class:`jaxpapers.nn.qformer.QFormer`) cross-attend over that context, giving
  ``[num_queries, d]`` whatever ``P + T`` is; the item's content embedding is a Linear map of
  the *flattened* query outputs (flattening keeps what each query specialised in; the size is
  still fixed because the number of queries is).
* **User content-interest modelling with LoRA** (:class:`EM3`): the ranker (DIN,
  :class:`jaxpapers.recsys.ranking.DIN`) represents every history item and the candidate by
  ``[ID embedding || content adapter(content embedding)]``, and the content embeddings come
  from the Fusion-Q-Former run in the forward pass, so the click loss trains the content core.
  To afford this over long behaviour sequences, the pre-trained core is frozen and low-rank
  adapters (:func:`jaxpapers.nn.lora.add_lora`, rank ``model.lora_rank``) on *every*
  ``nnx.Linear`` of the core (image projection, attention and FFN projections, output head)
  train with the ranker: the optimizer holds state for the adapters only and no weight
  gradient of a frozen kernel is kept. The token embedding table, modality embeddings,
  queries and LayerNorms of the core are frozen too (they are not Linear layers).
  ``model.lora_rank=0`` fine-tunes the whole core instead (the full-fine-tuning ablation).
* **Content-ID-Contrastive loss**: ``lambda * InfoNCE(content(target), ID(target))`` over the
  batch's candidates (:func:`jaxpapers.nn.contrastive.info_nce`, cosine similarity,
  temperature ``loss.temperature``), returned in the model's ``aux`` already weighted (the
  ranking experiment adds every aux term to the BCE). The content side is the adapted content
  (``content adapter``'s output, the same width as the ID embedding). Gradients reach both the
  ID table and the content path. A candidate that appears twice in a batch is its own
  (false) negative; it only lowers the attainable minimum by ``log`` of its multiplicity and
  was left in rather than masked, to keep the loss the shared InfoNCE.

Scale: the ID table and the content adapter's kernel start at N(0, 0.02^2), so both halves
of an item vector start small. DIN pools an *unnormalised* attention-weighted sum over the
history; with a Xavier-initialised adapter on unit-scale content the first logits were about
+-20 (BCE 14 at the first steps of the pre-extracted baseline).

Computing content for a batch (:meth:`EM3.item_content`): the ids of the batch (history and
candidates, ``B * (L + 1)``) repeat heavily, so the core never runs once per position:

1. when the catalogue (``num_items + 1`` rows) is no larger than the static bound, the core
   encodes the whole catalogue once and the batch gathers from it;
2. else, with a bound ``model.max_unique_items`` smaller than the batch's ids, the batch's
   UNIQUE ids are found with ``jnp.unique(..., size=bound)`` (static shape; fill value = the
   largest id so the result stays sorted), encoded once, and gathered back with
   ``searchsorted``. An id beyond the bound (more distinct items than the bound) gets a zero
   content vector; :func:`run` estimates the largest distinct count of a training batch and
   warns when the bound is too small;
3. else (no useful bound) the ids are encoded directly.

All three give the same embeddings (tested). The bound is 0 (= the batch's id count) by
default.

**Pre-training of the content core** (:func:`pretrain_core`): the multimodal model that exists
before EM3 and knows nothing of behaviour. Image-text contrastive learning (ITC, as BLIP-2's
first stage): the Fusion-Q-Former run on the image tokens alone and on the text tokens alone
of the same item should match (symmetric InfoNCE over a batch of random items, temperature
``pretrain.temperature``), by a short jitted Adam loop of ``pretrain.steps`` steps. The result
is cached in ``<workdir>/em3/pretrained.npz`` (or ``pretrain.cache_path``, so several runs can
share one core) together with the facts it depends on, and reused when they match; a mismatch
retrains. The core is then used on the *fused* image+text context, which ITC never showed it
(the paper's core is pre-trained on fused content by its own objectives, which are not
described); the end-to-end adapters and the pre-extracted baseline's adapter absorb the shift.
With fewer than two modalities ITC is impossible and pre-training is skipped (random core).

**Baseline** ``model.name=pre_extracted`` (:class:`PreExtracted`): the same ranker (same ID
table, content adapter, DIN and contrastive loss) fed with the pre-trained core's fused
content embeddings computed once for all items and frozen (:class:`ranking.Frozen`, never an
``nnx.Param``): the usual two-stage pipeline. Ablations: ``loss.contrastive_weight=0``,
``model.lora_rank=0``.

Catalogue content (image and text tokens) and pre-extracted features live in the model as
:class:`ranking.Frozen` variables created as zeros and filled, with the pre-trained core's
weights, by the trainer's ``pretrained`` hook (:func:`inject`): nothing big is baked into a
jitted program, and a resumed run restores them from its checkpoint. The hook maps the core's
saved parameter paths onto the model's, skipping the ``base_module`` level that LoRA wrapping
inserts, and fails if any saved array found no place.

:func:`core_memory` compiles the train step of the long-sequence path with and without LoRA
and reads XLA's memory analysis (the benchmark's "memory of EM3's long-sequence path").

Measured (synthetic default, one epoch = 436 steps, one pre-trained core per seed shared by
both models; test AUC over 3000 rows, mean of seeds 0-2, ``experiments/results/
em3_default.json``): EM3 0.7363, pre-extracted 0.7356; the paired difference (bootstrap over
users, :mod:`jaxpapers.recsys.significance`) is +0.0007 ± 0.0016, p = 0.62. On a catalogue six
times sparser (``data.num_items=6000``) +0.0023 ± 0.0017, p = 0.17. Seed 0 alone, earlier:
EM3 without the contrastive loss 0.736, with full fine-tuning 0.732. On this data the
end-to-end core does NOT beat the frozen features beyond noise (also not at two epochs, nor
with 500 users). Compiled train-step memory (batch 256):
LoRA shrinks the train state (3.5 vs 3.9 MB) but not the peak (134 vs 132 MB at L=50; 947 vs
937 MB at L=200 over 20000 items with ``max_unique_items=8192``), because this core is small
and activations dominate; the unique-item bound is what controls the peak (1969 MB encoding
the whole 20001-row catalogue, 947 MB at 8192, 593 MB at 4096).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import train as train_lib
from jaxpapers.core.sharding import logical
from jaxpapers.nn.contrastive import info_nce
from jaxpapers.nn.lora import LORA, add_lora
from jaxpapers.nn.qformer import QFormer
from jaxpapers.nn.transformer import dense
from jaxpapers.recsys import ranking

MODELS = ("em3", "pre_extracted")
MODALITY_INDEX = {"image": 0, "text": 1}
EMBEDDING_INIT_STD = 0.02
CORE_PREFIX = "core"
_SKIP_IN_PATHS = ("base_module",)  # the level LoRA wrapping inserts above a Linear's weights


# --------------------------------------------------------------------------- content core


def sinusoid(length: int, dim: int) -> np.ndarray:
    """Fixed sinusoidal positions ``[length, dim]`` (Vaswani et al.; any length, no params)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(10000.0) * (np.arange(0, dim, 2) / dim))[None, :]
    out = np.zeros((length, dim), np.float64)
    out[:, 0::2] = np.sin(pos * freq)
    out[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
    return out.astype(np.float32)


class FusionQFormer(nnx.Module):
    """EM3's content core: image + text tokens -> a fixed-size content embedding.

    ``__call__(image [N, P, D_img] | None, text [N, T] | None) -> [N, content_dim]``: either
    modality alone (as in ITC pre-training) or both, concatenated into one context.
    """

    def __init__(
        self,
        *,
        image_dim: int,
        text_vocab: int,
        dim: int,
        num_queries: int,
        num_layers: int,
        num_heads: int,
        content_dim: int,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if min(image_dim, text_vocab, dim, content_dim) < 1:
            raise ValueError(
                "FusionQFormer sizes must be positive, got image_dim="
                f"{image_dim}, text_vocab={text_vocab}, dim={dim}, content_dim={content_dim}"
            )
        self.dim = dim
        self.content_dim = content_dim
        self.image_proj = dense(image_dim, dim, ("embed", "embed"), rngs=rngs)
        self.text_embedding = nnx.Embed(
            text_vocab,
            dim,
            embedding_init=logical(nnx.initializers.normal(EMBEDDING_INIT_STD), "vocab", "embed"),
            rngs=rngs,
        )
        init = logical(nnx.initializers.normal(EMBEDDING_INIT_STD), None, "embed")
        self.modality_embedding = nnx.Param(init(rngs.params(), (len(MODALITY_INDEX), dim)))
        self.qformer = QFormer(
            num_queries=num_queries,
            dim=dim,
            context_dim=dim,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
            rngs=rngs,
        )
        self.head = dense(num_queries * dim, content_dim, ("mlp", "embed"), rngs=rngs)

    def context(
        self, image: jax.Array | None, text: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        """The Q-Former's context ``[N, P + T, dim]`` and its mask (False = text padding)."""
        parts, masks = [], []
        modality = self.modality_embedding[...]
        if image is not None:
            if image.ndim != 3:
                raise ValueError(f"image tokens must be [N, P, D_img], got shape {image.shape}")
            x = self.image_proj(image) + sinusoid(image.shape[1], self.dim) + modality[0]
            parts.append(x)
            masks.append(jnp.ones(image.shape[:2], bool))
        if text is not None:
            if text.ndim != 2:
                raise ValueError(f"text tokens must be [N, T] ids, got shape {text.shape}")
            x = self.text_embedding(text) + modality[1]  # a bag of tokens: no positions
            parts.append(x)
            masks.append(text != 0)
        if not parts:
            raise ValueError("FusionQFormer needs image tokens, text tokens or both")
        if len(parts) == 2 and parts[0].shape[0] != parts[1].shape[0]:
            raise ValueError(
                f"image and text tokens disagree on the number of items: {image.shape[0]} vs "
                f"{text.shape[0]}"
            )
        return jnp.concatenate(parts, axis=1), jnp.concatenate(masks, axis=1)

    def __call__(
        self,
        image: jax.Array | None = None,
        text: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        tokens, mask = self.context(image, text)
        queries = self.qformer(tokens, mask, deterministic=deterministic)
        return self.head(queries.reshape(queries.shape[0], -1))


# --------------------------------------------------------------------------- rankers


class _ContentRanker(nnx.Module):
    """DIN over ``[ID embedding || content adapter(content)]`` + Content-ID-Contrastive.

    Subclasses supply :meth:`item_content` (``ids [...] -> [..., content_dim]``).
    """

    def _init_ranker(
        self,
        *,
        num_items: int,
        content_dim: int,
        dim: int,
        hidden: tuple[int, ...],
        attention_hidden: tuple[int, ...],
        contrastive_weight: float,
        temperature: float,
        rngs: nnx.Rngs,
    ) -> None:
        if num_items < 1 or dim < 1:
            raise ValueError(f"num_items ({num_items}) and dim ({dim}) must be positive")
        if contrastive_weight < 0 or temperature <= 0:
            raise ValueError(
                f"contrastive_weight must be >= 0 and temperature > 0, got {contrastive_weight}"
                f" and {temperature}"
            )
        self.num_items = num_items
        self.item_embedding = nnx.Embed(
            num_items + 1,
            dim,
            embedding_init=logical(nnx.initializers.normal(EMBEDDING_INIT_STD), "vocab", "embed"),
            rngs=rngs,
        )
        self.content_adapter = nnx.Linear(  # small init: both halves start at the ID scale
            content_dim,
            dim,
            kernel_init=logical(nnx.initializers.normal(EMBEDDING_INIT_STD), "embed", "embed"),
            bias_init=logical(nnx.initializers.zeros_init(), "embed"),
            rngs=rngs,
        )
        self.din = ranking.DIN(
            2 * dim, hidden=tuple(hidden), attention_hidden=tuple(attention_hidden), rngs=rngs
        )
        self.contrastive_weight = float(contrastive_weight)
        self.temperature = float(temperature)

    def item_content(self, ids: jax.Array, *, deterministic: bool = True) -> jax.Array:
        raise NotImplementedError

    def __call__(
        self, batch: Mapping[str, jax.Array], *, deterministic: bool = True
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        history, target = batch["history"], batch["target"]
        if history.ndim != 2 or target.shape != history.shape[:1]:
            raise ValueError(
                f"batch history must be [B, L] and target [B], got {history.shape}, {target.shape}"
            )
        ids = jnp.concatenate([history, target[:, None]], axis=1)  # [B, L + 1]
        id_emb = self.item_embedding(ids)
        content = self.content_adapter(self.item_content(ids, deterministic=deterministic))
        items = jnp.concatenate([id_emb, content], axis=-1)
        logits = self.din(items[:, :-1], history != 0, items[:, -1], deterministic=deterministic)
        aux = {}
        if self.contrastive_weight:
            aux["content_id_contrastive"] = self.contrastive_weight * info_nce(
                content[:, -1], id_emb[:, -1], temperature=self.temperature
            )
        return logits, aux


class EM3(_ContentRanker):
    """The end-to-end model: the Fusion-Q-Former (LoRA-adapted) runs inside the ranker.

    ``image_tokens`` / ``text_tokens`` (the catalogue, ``[num_items + 1, ...]``) are
    :class:`ranking.Frozen` zeros until :func:`inject` fills them. ``make_core(rngs)`` builds
    the core AFTER the ranker, so the ranker's initial weights are the same as
    :class:`PreExtracted`'s for the same seed (a paired comparison).
    """

    def __init__(
        self,
        make_core: Callable[[nnx.Rngs], FusionQFormer],
        *,
        content_dim: int,
        num_items: int,
        num_patches: int,
        image_dim: int,
        text_len: int,
        modalities: tuple[str, ...] = ("image", "text"),
        lora_rank: int = 0,
        lora_alpha: float | None = None,
        max_unique_items: int = 0,
        dim: int,
        hidden: tuple[int, ...] = (200, 80),
        attention_hidden: tuple[int, ...] = (80, 40),
        contrastive_weight: float = 0.0,
        temperature: float = 0.07,
        rngs: nnx.Rngs,
    ):
        unknown = set(modalities) - set(MODALITY_INDEX)
        if unknown or not modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of image/text, got {modalities}"
            )
        if lora_rank < 0 or max_unique_items < 0:
            raise ValueError(
                f"lora_rank ({lora_rank}) and max_unique_items ({max_unique_items}) must be >= 0"
            )
        self._init_ranker(
            num_items=num_items,
            content_dim=content_dim,
            dim=dim,
            hidden=hidden,
            attention_hidden=attention_hidden,
            contrastive_weight=contrastive_weight,
            temperature=temperature,
            rngs=rngs,
        )
        self.modalities = tuple(m for m in MODALITY_INDEX if m in modalities)
        self.image_tokens = ranking.Frozen(jnp.zeros((num_items + 1, num_patches, image_dim)))
        self.text_tokens = ranking.Frozen(jnp.zeros((num_items + 1, text_len), jnp.int32))
        self.core = make_core(rngs)
        if self.core.content_dim != content_dim:
            raise ValueError(
                f"the core emits {self.core.content_dim} features, content_dim is {content_dim}"
            )
        self.lora_rank = lora_rank
        if lora_rank:
            add_lora(self.core, lora_rank, rngs=rngs, alpha=lora_alpha)
        self.max_unique_items = max_unique_items

    def encode(self, ids: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """The core's content embedding of items ``ids [N]`` -> ``[N, content_dim]``."""
        image = self.image_tokens[...][ids] if "image" in self.modalities else None
        text = self.text_tokens[...][ids] if "text" in self.modalities else None
        return self.core(image, text, deterministic=deterministic)

    def item_content(self, ids: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Content of ``ids [...]`` with each distinct item encoded once (module docstring)."""
        flat = ids.reshape(-1)
        catalogue = self.num_items + 1
        bound = min(self.max_unique_items or flat.size, flat.size)
        if catalogue <= bound:  # 1. the whole catalogue is no bigger: encode it, gather
            table = self.encode(jnp.arange(catalogue), deterministic=deterministic)
            out = table[flat]
        elif bound < flat.size:  # 2. the batch's unique ids, at most `bound` of them
            unique = jnp.unique(flat, size=bound, fill_value=self.num_items)  # sorted
            table = self.encode(unique, deterministic=deterministic)
            slot = jnp.clip(jnp.searchsorted(unique, flat), 0, bound - 1)
            found = unique[slot] == flat
            out = jnp.where(found[:, None], table[slot], 0.0)
        else:  # 3. no useful bound: encode every position
            out = self.encode(flat, deterministic=deterministic)
        out = jnp.where(flat[:, None] != 0, out, 0.0)  # the padding item has no content
        return out.reshape(*ids.shape, out.shape[-1])


class PreExtracted(_ContentRanker):
    """The two-stage baseline: frozen content embeddings computed once by the core."""

    def __init__(
        self,
        *,
        num_items: int,
        content_dim: int,
        dim: int,
        hidden: tuple[int, ...] = (200, 80),
        attention_hidden: tuple[int, ...] = (80, 40),
        contrastive_weight: float = 0.0,
        temperature: float = 0.07,
        rngs: nnx.Rngs,
    ):
        self._init_ranker(
            num_items=num_items,
            content_dim=content_dim,
            dim=dim,
            hidden=hidden,
            attention_hidden=attention_hidden,
            contrastive_weight=contrastive_weight,
            temperature=temperature,
            rngs=rngs,
        )
        self.features = ranking.Frozen(jnp.zeros((num_items + 1, content_dim)))

    def item_content(self, ids: jax.Array, *, deterministic: bool = True) -> jax.Array:
        del deterministic
        return self.features[...][ids]


# --------------------------------------------------------------------------- config -> model


def validate(config) -> None:
    """Raises ValueError naming the bad key and what is valid."""
    m, loss, pre = config.model, config.loss, config.pretrain
    if m.name not in MODELS:
        raise ValueError(f"model.name must be one of {MODELS}, got {m.name!r}")
    positive = {
        "model.dim": m.dim,
        "model.content_dim": m.content_dim,
        "model.qformer_dim": m.qformer_dim,
        "model.num_queries": m.num_queries,
        "model.qformer_layers": m.qformer_layers,
        "model.qformer_heads": m.qformer_heads,
        "loss.temperature": loss.temperature,
        "pretrain.batch_size": pre.batch_size,
        "pretrain.temperature": pre.temperature,
        "pretrain.learning_rate": pre.learning_rate,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"{key} must be positive, got {value}")
    non_negative = {
        "model.lora_rank": m.lora_rank,
        "model.lora_alpha": m.lora_alpha,
        "model.max_unique_items": m.max_unique_items,
        "loss.contrastive_weight": loss.contrastive_weight,
        "pretrain.steps": pre.steps,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    if m.qformer_dim % m.qformer_heads:
        raise ValueError(
            f"model.qformer_dim ({m.qformer_dim}) must be a multiple of model.qformer_heads "
            f"({m.qformer_heads})"
        )
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {m.dropout}")


def _data_shapes(data) -> dict[str, int]:
    return {
        "num_items": int(data.num_items),
        "num_patches": int(data.image_tokens.shape[1]),
        "image_dim": int(data.image_tokens.shape[2]),
        "text_len": int(data.text_tokens.shape[1]),
        "text_vocab": int(data.text_vocab),
    }


def make_core(config, data, rngs: nnx.Rngs) -> FusionQFormer:
    """The Fusion-Q-Former described by ``config.model`` for ``data``'s content shapes."""
    m, shapes = config.model, _data_shapes(data)
    return FusionQFormer(
        image_dim=shapes["image_dim"],
        text_vocab=shapes["text_vocab"],
        dim=m.qformer_dim,
        num_queries=m.num_queries,
        num_layers=m.qformer_layers,
        num_heads=m.qformer_heads,
        content_dim=m.content_dim,
        dropout=m.dropout,
        rngs=rngs,
    )


def make_model(config, data, rngs: nnx.Rngs) -> _ContentRanker:
    """``config.model.name``'s ranker (catalogue content and features still zero)."""
    validate(config)
    m, shapes = config.model, _data_shapes(data)
    ranker = {
        "num_items": shapes["num_items"],
        "dim": m.dim,
        "hidden": tuple(m.hidden),
        "attention_hidden": tuple(m.attention_hidden),
        "contrastive_weight": float(config.loss.contrastive_weight),
        "temperature": float(config.loss.temperature),
        "rngs": rngs,
    }
    if m.name == "pre_extracted":
        return PreExtracted(content_dim=m.content_dim, **ranker)
    return EM3(
        lambda core_rngs: make_core(config, data, core_rngs),
        content_dim=m.content_dim,
        num_patches=shapes["num_patches"],
        image_dim=shapes["image_dim"],
        text_len=shapes["text_len"],
        modalities=tuple(data.modalities),
        lora_rank=m.lora_rank,
        lora_alpha=float(m.lora_alpha) or None,
        max_unique_items=m.max_unique_items,
        **ranker,
    )


def model_factory(config) -> ranking.ModelFactory:
    """``(model_config, data, rngs) -> ranker`` for :func:`ranking.run` (closes over the
    whole config: the loss weights live outside ``config.model``)."""

    def factory(model_config, data, rngs):
        del model_config  # the same object as config.model
        return make_model(config, data, rngs)

    return factory


def trainable(config) -> Any:
    """The ``wrt`` filter: with LoRA, the ranker's params and the core's adapters only."""
    if config.model.name == "em3" and config.model.lora_rank > 0:
        return nnx.Any(LORA, nnx.All(nnx.Param, nnx.Not(nnx.PathContains(CORE_PREFIX))))
    return nnx.Param


# --------------------------------------------------------------------------- state surgery


def path_key(path: tuple) -> str:
    """``"a/b/0/kernel"`` for a pytree path into an ``nnx.State`` (``base_module`` skipped)."""
    keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return "/".join(str(k) for k in keys if k not in _SKIP_IN_PATHS)


def flat_values(state: Any) -> dict[str, np.ndarray]:
    """Every array of an ``nnx.State`` by :func:`path_key` (host copies)."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {path_key(p): np.asarray(jax.device_get(x)) for p, x in leaves}


def inject(state: Any, values: Mapping[str, np.ndarray]) -> Any:
    """Replaces ``state["model"]`` arrays by ``values`` (keys as :func:`path_key`).

    Raises ValueError when a value has the wrong shape or finds no place.
    """
    used = set()

    def one(path, x):
        key = path_key(path)
        if key not in values:
            return x
        value = np.asarray(values[key])
        if value.shape != tuple(x.shape):
            raise ValueError(f"{key}: the saved array is {value.shape}, the model's {x.shape}")
        used.add(key)
        return jnp.asarray(value, x.dtype)

    model = jax.tree.map_with_path(one, state["model"])
    unused = sorted(set(values) - used)
    if unused:
        raise ValueError(f"saved arrays found no place in the model: {unused[:5]}")
    return {**state, "model": model}


def pretrained_values(
    config, data, core_values: Mapping[str, np.ndarray], *, features: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """What the ``pretrained`` hook writes into a fresh model of ``config.model.name``."""
    if config.model.name == "pre_extracted":
        if features is None:
            features = extract_features(config, data, core_values)
        return {"features": features}
    values = {f"{CORE_PREFIX}/{k}": v for k, v in core_values.items()}
    values["image_tokens"] = np.asarray(data.image_tokens, np.float32)
    values["text_tokens"] = np.asarray(data.text_tokens, np.int32)
    return values


# --------------------------------------------------------------------------- pre-training


def _modalities(data) -> tuple[str, ...]:
    return tuple(m for m in MODALITY_INDEX if m in tuple(data.modalities))


def core_arrays(core: FusionQFormer) -> dict[str, np.ndarray]:
    """The core's weights by :func:`path_key` (dropout RNG state left out)."""
    return flat_values(nnx.state(core, nnx.Not(nnx.RngState)))


def core_with(config, data, core_values: Mapping[str, np.ndarray]) -> FusionQFormer:
    """A plain (no LoRA) core holding ``core_values``, for inference (dropout off).

    Built abstractly and filled from ``core_values``, which must cover every array.
    """
    cfg = copy.deepcopy(config)
    cfg.model.dropout = 0.0
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make_core(cfg, data, nnx.Rngs(0))))
    state = inject({"model": state}, core_values)["model"]
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    missing = [path_key(p) for p, x in leaves if isinstance(x, jax.ShapeDtypeStruct)]
    if missing:
        raise ValueError(f"the saved core lacks {missing[:5]}")
    return nnx.merge(graphdef, state)


def encode_catalogue(
    core: FusionQFormer, data, *, batch_size: int = 1024, modalities: tuple[str, ...] = ()
) -> np.ndarray:
    """The core's fused content embedding of every item, ``[num_items + 1, content_dim]``
    (row 0, the padding item, is zero)."""
    modalities = modalities or _modalities(data)
    graphdef, state = nnx.split(core)

    @jax.jit
    def encode(state, image, text):
        return nnx.merge(graphdef, state)(image, text)

    rows = data.num_items + 1
    out = []
    for lo in range(0, rows, batch_size):
        idx = np.arange(lo, min(lo + batch_size, rows))
        pad = batch_size - len(idx) if rows > batch_size else 0
        idx = np.concatenate([idx, np.zeros(pad, idx.dtype)])  # one compiled shape
        image = data.image_tokens[idx] if "image" in modalities else None
        text = data.text_tokens[idx] if "text" in modalities else None
        out.append(np.asarray(encode(state, image, text))[: len(idx) - pad])
    table = np.concatenate(out).astype(np.float32)
    table[0] = 0.0
    return table


def extract_features(config, data, core_values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The pre-extracted baseline's frozen table: the pre-trained core on every item."""
    return encode_catalogue(
        core_with(config, data, core_values), data, batch_size=config.eval_batch_size
    )


def pretrain_core(config, data) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """ITC pre-training of the Fusion-Q-Former (module docstring).

    Returns the core's arrays by :func:`path_key` and summary metrics
    (``pretrain_loss_first``/``_last``: mean ITC loss of the first and last 10% of steps;
    ``pretrain_i2t_top1``: image->text retrieval accuracy among up to 512 items).
    """
    p = config.pretrain
    impl = config.get("rng_impl") or None
    key = config.seed if impl is None else jax.random.key(config.seed, impl=impl)
    core = make_core(config, data, nnx.Rngs(key))
    metrics: dict[str, float] = {"pretrain_steps": 0}
    if p.steps == 0 or len(_modalities(data)) < 2:
        if p.steps:
            logging.warning("EM3: ITC pre-training needs image and text; the core stays random")
        return core_arrays(core), metrics

    opt = nnx.Optimizer(core, optax.adam(float(p.learning_rate)), wrt=nnx.Param)
    graphdef, state = nnx.split((core, opt))
    temperature = float(p.temperature)

    @jax.jit
    def step(state, image, text):
        core, opt = nnx.merge(graphdef, state)

        def loss_fn(c):
            zi = c(image=image, deterministic=False)
            zt = c(text=text, deterministic=False)
            return info_nce(zi, zt, temperature=temperature, symmetric=True)

        loss, grads = nnx.value_and_grad(loss_fn)(core)
        opt.update(core, grads)
        return nnx.state((core, opt)), loss

    rng = np.random.default_rng(config.seed)
    batch = min(int(p.batch_size), data.num_items)
    losses = []
    for _ in range(int(p.steps)):
        ids = rng.choice(np.arange(1, data.num_items + 1), size=batch, replace=False)
        state, loss = step(state, data.image_tokens[ids], data.text_tokens[ids])
        losses.append(loss)
    losses = np.asarray(jax.device_get(losses))
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError("EM3 pre-training diverged (non-finite ITC loss)")
    core, _ = nnx.merge(graphdef, state)
    tail = max(1, len(losses) // 10)
    metrics = {
        "pretrain_steps": int(p.steps),
        "pretrain_loss_first": float(losses[:tail].mean()),
        "pretrain_loss_last": float(losses[-tail:].mean()),
        "pretrain_i2t_top1": _retrieval_top1(core, data, rng),
    }
    return core_arrays(core), metrics


def _retrieval_top1(core: FusionQFormer, data, rng: np.random.Generator) -> float:
    ids = rng.choice(np.arange(1, data.num_items + 1), size=min(512, data.num_items), replace=False)
    zi = np.array(core(image=jnp.asarray(data.image_tokens[ids])))
    zt = np.array(core(text=jnp.asarray(data.text_tokens[ids])))
    zi /= np.linalg.norm(zi, axis=1, keepdims=True) + 1e-12
    zt /= np.linalg.norm(zt, axis=1, keepdims=True) + 1e-12
    return float(np.mean(np.argmax(zi @ zt.T, axis=1) == np.arange(len(ids))))


def _cache_facts(config, data) -> dict:
    """What the pre-trained core depends on (a different value retrains it)."""
    m = config.model
    return {
        "data": data.name,
        "shapes": _data_shapes(data),
        "modalities": list(_modalities(data)),
        "core": [m.qformer_dim, m.num_queries, m.qformer_layers, m.qformer_heads, m.content_dim],
        "dropout": m.dropout,
        "pretrain": json.loads(config.pretrain.to_json()),
        "seed": config.seed,
        "rng_impl": config.get("rng_impl") or "",
        "text_checksum": hashlib.sha1(np.ascontiguousarray(data.text_tokens)).hexdigest(),
    }


def cached_pretrained_core(
    config, data, workdir: str
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """:func:`pretrain_core`, cached in ``pretrain.cache_path`` (default
    ``<workdir>/em3/pretrained.npz``) and reused while its facts match."""
    path = config.pretrain.cache_path or os.path.join(workdir, "em3", "pretrained.npz")
    facts = json.dumps(_cache_facts(config, data), sort_keys=True)
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["__facts__"]) == facts:
                logging.info("EM3: reusing the pre-trained core in %s", path)
                metrics = json.loads(str(saved["__metrics__"]))
                values = {k: saved[k] for k in saved.files if not k.startswith("__")}
                return values, metrics
        logging.warning("EM3: %s was pre-trained under other settings; pre-training again", path)
    values, metrics = pretrain_core(config, data)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, __facts__=facts, __metrics__=json.dumps(metrics), **values)
    os.replace(tmp, path)
    return values, metrics


# --------------------------------------------------------------------------- experiment


def max_unique_per_batch(history: np.ndarray, target: np.ndarray, batch_size: int, seed: int = 0):
    """The largest distinct-id count over 20 random training batches (host estimate)."""
    rng = np.random.default_rng(seed)
    n = len(target)
    worst = 0
    for _ in range(20):
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        worst = max(worst, len(np.unique(np.concatenate([history[idx].ravel(), target[idx]]))))
    return worst


def run(config, workdir: str) -> dict:
    """Registry entry: EM3 (or the pre-extracted baseline) on ``config.data``."""
    from jaxpapers.data import multimodal  # pylint: disable=g-import-not-at-top

    validate(config)
    data = multimodal.load(config.data)
    core_values, metrics = cached_pretrained_core(config, data, workdir)
    values = pretrained_values(config, data, core_values)
    bound = config.model.max_unique_items
    if config.model.name == "em3" and bound:
        train = ranking.samples(config, data)["train"]
        worst = max_unique_per_batch(train.history, train.target, config.train.batch_size)
        if worst > bound and bound < data.num_items + 1:
            logging.warning(
                "EM3: a training batch holds up to ~%d distinct items but model.max_unique_items"
                "=%d; the excess items get zero content. Raise the bound.",
                worst,
                bound,
            )
    final = ranking.run(
        config,
        workdir,
        data,
        model_factory(config),
        wrt=trainable(config),
        pretrained=lambda state: inject(state, values),
    )
    final.update(metrics)
    return final


# --------------------------------------------------------------------------- memory


def core_memory(
    config,
    *,
    lora: bool,
    data=None,
    batch_size: int | None = None,
    history_len: int | None = None,
) -> dict[str, int]:
    """Compiled memory of EM3's train step on the long-sequence path, with or without LoRA.

    ``lora=True`` uses ``model.lora_rank`` (8 when it is 0); ``lora=False`` fine-tunes the
    whole core. The step is the core trainer's (value_and_grad over ``trainable(config)`` +
    Adam update, state donated); ``batch_size`` / ``history_len`` default to the config's.
    Returns XLA's ``memory_analysis`` sizes in bytes, ``peak_bytes`` = arguments + outputs +
    temporaries - aliased, and the number of trainable parameters.
    """
    cfg = copy.deepcopy(config)
    cfg.model.name = "em3"
    cfg.model.lora_rank = (config.model.lora_rank or 8) if lora else 0
    validate(cfg)
    if data is None:
        from jaxpapers.data import multimodal  # pylint: disable=g-import-not-at-top

        data = multimodal.load(cfg.data)
    batch = int(batch_size or cfg.train.batch_size)
    length = int(history_len or cfg.split.history_len)
    wrt = trainable(cfg)
    mesh = mesh_lib.make_mesh(("data", "model"), (1, 1))
    setup_ = train_lib.setup(
        lambda rngs: make_model(cfg, data, rngs),
        optax.adam(1e-3),
        mesh=mesh,
        wrt=wrt,
        seed=cfg.seed,
        rng_impl=cfg.get("rng_impl") or None,
    )

    def loss_fn(model, batch):
        logits, aux = model(batch, deterministic=False)
        bce = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
        return bce + sum(aux.values(), jnp.zeros(())), {"bce": bce}

    step = train_lib.make_train_step(loss_fn, setup_)
    i32 = jnp.int32
    abstract_batch = {
        "user": jax.ShapeDtypeStruct((batch,), i32),
        "history": jax.ShapeDtypeStruct((batch, length), i32),
        "target": jax.ShapeDtypeStruct((batch,), i32),
        "label": jax.ShapeDtypeStruct((batch,), jnp.float32),
    }
    analysis = step.lower(setup_.abstract_state, abstract_batch).compile().memory_analysis()
    sizes = {
        name: int(getattr(analysis, f"{name}_size_in_bytes", 0))
        for name in ("argument", "output", "temp", "alias", "generated_code")
    }
    sizes["peak_bytes"] = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    abstract = nnx.eval_shape(lambda: make_model(cfg, data, nnx.Rngs(0)))
    sizes["trainable_params"] = sum(
        math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, wrt))
    )
    sizes["lora_rank"] = int(cfg.model.lora_rank)
    return sizes
