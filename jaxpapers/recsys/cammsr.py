"""CAMMSR: Category-guided Attentive Mixture of Experts for Multimodal Sequential Recommendation.

ICDE 2026. No code or full text was available; the model below is reconstructed from the
abstract and write-ups (``papers.md``, family 2). Every choice the sources leave open is
listed here, with the reason.

Items carry an ID, a text feature and an image feature (pre-extracted, frozen: the rows of
``MultimodalData.text_features`` / ``image_features``; only the modalities listed in
``data.modalities`` are used). The model has three parts, named as in the paper:

**CAMoE item encoder** (:class:`CAMoE`). Experts (:class:`jaxpapers.nn.moe.Expert`, two-layer
GELU MLPs with output width ``D``) look at an item from several "perspectives":

* one expert per source — ``id`` (over the item's ID embedding), ``text``, ``image`` (over the
  pre-extracted feature);
* with ``synergy_experts=True``, one expert per combination of two or more sources, over the
  concatenation of their inputs (``id+text``, ``id+image``, ``text+image``, ``id+text+image``)
  — the "inter-modal synergy" experts: an MLP over a concatenation can model interactions
  that a weighted sum of single-source experts cannot.

The **category-guided attentive gate** fuses them. A category predictor
``p(c | item) = softmax(W [e_1 || ... || e_K] + b)`` reads the concatenated expert outputs
(so the auxiliary category loss also shapes the experts, which is how we read "guided by an
auxiliary category-prediction task"); the gate query is the expected category query
``q = sum_c p(c | item) Q_c`` with one learned vector ``Q_c`` per category; the weights are
:class:`jaxpapers.nn.moe.AttentiveGate` of ``q`` over the expert outputs and the item
representation is their :func:`~jaxpapers.nn.moe.mixture`. The query uses the *predicted*
distribution, never the label, at training and at test time alike: the gate works for items
whose category is unknown or wrong (the paper reports robustness to 20% label noise). The
auxiliary loss is ``lambda1 * CE(p(c | item), category)`` averaged over the non-padding input
positions of the batch (the items of the batch, counted as often as they occur).
``category_guidance=False`` (ablation) replaces the query by one learned vector: no
predictor, no per-category queries, no category loss. With a single expert there is nothing to
gate and no gate is built (its weight would be exactly 1).

**User encoder**: :class:`jaxpapers.nn.transformer.CausalTransformer` (SASRec's block) over the
item representations of the sequence, DynamicTanh normalisation by default (the paper reports
it; ``norm="layernorm"`` selects SASRec's). ``scale_input`` (SASRec multiplies the input by
``sqrt(D)``) is off by default here: the expert outputs are already O(1) per coordinate, and
multiplying them by ``sqrt(D)`` pushes DyT's ``tanh`` towards saturation and drowns the
positional embeddings (on the synthetic default, CAMMSR without the swap: validation NDCG@10
0.069 with the scaling, 0.073 without).

**Losses.** Next-item cross-entropy over ALL items at every non-padding position
(``logits = states @ item_table.T``; the padding row 0 is masked to ``-inf``; mean over the
positions whose target is not padding). The item table is CAMoE over every item once per step
and is shared by the input side (rows gathered for the sequence) and the output side (the
softmax), as in SASRec. The total loss is ``next_item + lambda1 * category + lambda2 * swap``.

**Modality-swap contrastive augmentation** (``modality_swap=True``). Per sequence, one modality
(uniformly among those present) is picked and, at ``round(swap_rate * n)`` of its ``n``
non-padding positions (at least one when ``n >= 2``), that modality's feature is replaced with
the feature of ANOTHER item of the same sequence (:func:`swap_plan`: a uniformly random order of
the valid positions; the first ``m`` positions of that order take the feature of their
successor in the cyclic order, so no position keeps its own feature and every source is a
valid position of the same row). The ID embeddings and all other modalities are untouched.
The original and the swapped sequences go through the same CAMoE and Transformer, and
``lambda2 * InfoNCE`` (:func:`jaxpapers.nn.contrastive.info_nce`, cosine similarity, in-batch
negatives, temperature ``temperature``) aligns their last states; with ``swap_head=True``
(off by default; the paper is silent) it aligns an MLP projection of them instead, SimCLR's
way of keeping the invariance out of the state that scores items. The randomness comes from an
``nnx`` RNG stream held by the model (``swap_rngs``, like a dropout stream), so it lives in the
train state and a resumed run draws the same swaps. With ``lambda2 = 0`` the augmentation is
skipped altogether (it would cost a second pass through CAMoE and the Transformer for a
term multiplied by zero); its metric is then 0. On the synthetic data the swap task has not
helped: over seeds 0-2 of the default, CAMMSR without it scores 4.8% higher test NDCG@10
(paired p = 0.06). The obvious explanation, that the generator's users follow a recency-
weighted average of their recent items' content, which a swap changes, was tested and is
wrong: with ``data.history_weight=0`` (no recent-items interest, so the swap keeps everything
the next item depends on) a swap weight of 0.1 costs 42% (seed 0, paired p = 2e-5). With the
projection head (``swap_head=True``) the same run loses only 10% on test (p = 0.25) and
nothing on validation: the harm comes from imposing the invariance on the states that score
items. Our guess for why, not tested: the swapped sequence keeps every ID embedding, so the
InfoNCE is solved by the ID path and pulls the states away from the content the next-item
scores need.

**Baselines as configurations of the same code** (:data:`MODELS`): ``sasrec`` has only the ID
expert (an MLP over the ID embedding; no gate, no category loss, no swap) and ``sasrec_mm`` one
expert over ``[ID || text || image]`` (no auxiliary losses). They use the same Transformer
settings (norm included) as CAMMSR, so the comparison isolates the item encoder and the
auxiliary tasks. A CAMMSR whose expert set is the single concatenation expert and whose
``lambda1 = lambda2 = 0`` has exactly ``sasrec_mm``'s loss and gradients (tested): the extra
parameters (category predictor) get zero gradients.

Other choices: ID embeddings are ``N(0, 1)`` (the same scale as the standardised
pre-extracted features, so no expert starts out dominant); the frozen features are held as
:class:`~jaxpapers.recsys.ranking.Frozen` variables (not ``nnx.Param``: the optimiser never sees them); the expert
hidden width defaults to ``D``; experts have no dropout (the Transformer applies its dropout to
the item representations it receives).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core.sharding import logical
from jaxpapers.nn import moe
from jaxpapers.nn.contrastive import info_nce
from jaxpapers.nn.transformer import CausalTransformer
from jaxpapers.recsys.ranking import Frozen

SOURCES = ("id", "text", "image")
MODALITIES = ("text", "image")
MODEL_NAMES = ("cammsr", "sasrec", "sasrec_mm")


class CategoryLabel(nnx.Variable):
    """Per-item category ids (the auxiliary task's labels)."""


# --------------------------------------------------------------------------- expert sets


def expert_names(modalities: Sequence[str], *, synergy: bool = True) -> tuple[str, ...]:
    """Names of CAMoE's experts for the given modalities, e.g. ``("id", "text", "id+text")``.

    Single-source experts first (``id``, then the modalities in ``("text", "image")`` order),
    then, with ``synergy``, every combination of two or more sources (sizes ascending).
    """
    bad = [m for m in modalities if m not in MODALITIES]
    if bad:
        raise ValueError(f"unknown modalities {bad}; valid: {MODALITIES}")
    sources = ["id", *[m for m in MODALITIES if m in modalities]]
    names = list(sources)
    if synergy:
        for size in range(2, len(sources) + 1):
            names += ["+".join(c) for c in itertools.combinations(sources, size)]
    return tuple(names)


def concat_expert_name(modalities: Sequence[str]) -> str:
    """The one expert of ``sasrec_mm``: ID and every present modality, concatenated."""
    return "+".join(["id", *[m for m in MODALITIES if m in modalities]])


def expert_sources(name: str) -> tuple[str, ...]:
    """``"id+text"`` -> ``("id", "text")``; raises on unknown or repeated sources."""
    parts = tuple(name.split("+"))
    if not parts or any(p not in SOURCES for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(
            f"bad expert name {name!r}: it must join distinct sources from {SOURCES} with '+'"
        )
    return parts


# --------------------------------------------------------------------------- swap


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SwapPlan:
    """Where and how a batch of sequences is augmented.

    Attributes:
      modality: ``[B]`` index into the model's modalities of the swapped modality.
      source: ``[B, L]`` position whose feature each position takes (itself where not swapped).
      swapped: ``[B, L]`` bool, True where the chosen modality's feature is replaced.
    """

    modality: jax.Array
    source: jax.Array
    swapped: jax.Array


def swap_plan(key: jax.Array, items: jax.Array, num_modalities: int, rate: float) -> SwapPlan:
    """Random modality-swap plan for left-padded sequences ``items [B, L]`` (0 = padding).

    Per row with ``n`` valid positions: a uniformly random order ``o_0 .. o_{n-1}`` of them;
    the first ``m = max(1, round(rate * n))`` (0 when ``n < 2``) positions of that order are
    swapped, position ``o_k`` taking the feature of ``o_{(k+1) mod n}`` — another valid
    position of the same row (a cyclic derangement, so nothing is "swapped" with itself).
    """
    if num_modalities < 1:
        raise ValueError("modality swap needs at least one modality")
    batch, length = items.shape
    k_mod, k_order = jax.random.split(key)
    modality = jax.random.randint(k_mod, (batch,), 0, num_modalities)
    valid = items > 0
    n = valid.sum(-1, keepdims=True)  # [B, 1]
    noise = jax.random.uniform(k_order, (batch, length))
    order = jnp.argsort(jnp.where(valid, noise, 2.0), axis=-1)  # valid positions first
    rank = jnp.argsort(order, axis=-1)  # each position's place in that order
    successor = jnp.where(rank < n, (rank + 1) % jnp.maximum(n, 1), rank)
    m = jnp.where(n >= 2, jnp.maximum(1, jnp.round(rate * n)), 0)
    swapped = rank < m
    source = jnp.where(swapped, jnp.take_along_axis(order, successor, axis=-1), jnp.arange(length))
    return SwapPlan(modality, source, swapped)


# --------------------------------------------------------------------------- CAMoE


class CAMoE(nnx.Module):
    """Experts over ID / modality features and their combinations, fused by a gate.

    ``__call__(inputs)`` takes a dict ``{"id": [..., D], "text": [..., F_t], "image": [...,
    F_v]}`` (only the sources its experts read) and returns ``(representation [..., D],
    weights [..., K], category_logits [..., C] or None)``.
    """

    def __init__(
        self,
        experts: Sequence[str],
        input_dims: Mapping[str, int],
        dim: int,
        *,
        num_categories: int,
        category_guidance: bool = True,
        hidden_dim: int | None = None,
        rngs: nnx.Rngs,
    ):
        if not experts:
            raise ValueError("CAMoE needs at least one expert")
        if len(set(experts)) != len(experts):
            raise ValueError(f"repeated experts in {list(experts)}")
        for name in experts:
            missing = [s for s in expert_sources(name) if s not in input_dims]
            if missing:
                raise ValueError(
                    f"expert {name!r} reads {missing}, which the data does not have "
                    f"(available sources: {sorted(input_dims)})"
                )
        if category_guidance and num_categories < 1:
            raise ValueError(f"category guidance needs num_categories >= 1, got {num_categories}")
        self.names = tuple(experts)
        self.dim = dim
        self.category_guidance = bool(category_guidance)
        self.experts = nnx.List(
            [
                moe.Expert(
                    sum(input_dims[s] for s in expert_sources(n)),
                    dim,
                    hidden_dim=hidden_dim,
                    rngs=rngs,
                )
                for n in self.names
            ]
        )
        k = len(self.names)
        if category_guidance:
            self.category_head = nnx.Linear(
                k * dim,
                num_categories,
                kernel_init=logical(nnx.initializers.xavier_normal(), "embed", None),
                bias_init=logical(nnx.initializers.zeros_init(), None),
                rngs=rngs,
            )
        else:
            self.category_head = None
        if k > 1:
            init = logical(nnx.initializers.normal(1.0), None, "embed")
            rows = num_categories if category_guidance else 1
            self.queries = nnx.Param(init(rngs.params(), (rows, dim)))
            self.gate = moe.AttentiveGate(dim, dim, rngs=rngs)
        else:
            self.queries = None
            self.gate = None

    def expert_outputs(self, inputs: Mapping[str, jax.Array]) -> jax.Array:
        """``[..., K, D]``: every expert on the concatenation of its sources."""
        outs = []
        for name, expert in zip(self.names, self.experts):
            parts = [inputs[s] for s in expert_sources(name)]
            x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
            outs.append(expert(x))
        return jnp.stack(outs, axis=-2)

    def __call__(
        self, inputs: Mapping[str, jax.Array]
    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        experts = self.expert_outputs(inputs)  # [..., K, D]
        lead = experts.shape[:-2]
        logits = None
        if self.category_head is not None:
            logits = self.category_head(experts.reshape(*lead, -1))
        if self.gate is None:
            return experts[..., 0, :], jnp.ones((*lead, 1), experts.dtype), logits
        if logits is not None:
            query = jax.nn.softmax(logits, axis=-1) @ self.queries[...]
        else:
            query = jnp.broadcast_to(self.queries[0], (*lead, self.dim))
        weights = self.gate(query, experts)
        return moe.mixture(weights, experts), weights, logits


# --------------------------------------------------------------------------- model


class CAMMSR(nnx.Module):
    """CAMoE item encoder + causal Transformer user encoder + CAMMSR's losses.

    Also the SASRec baselines (see :data:`MODELS`). Sequences are ``[B, L]`` item ids, left
    padded with 0.

    Args:
      num_items: real items are ``1..num_items``; id 0 is padding.
      features: modality -> ``[num_items+1, F]`` frozen feature table (only the modalities the
        experts or the swap use need to be present).
      item_category: ``[num_items+1]`` category ids (labels of the auxiliary task).
      num_categories: ``C``.
      experts: expert names (see :func:`expert_names`); default: every expert of the given
        modalities, synergy included.
      dim: representation width ``D``.
      expert_hidden: hidden width of the experts (default ``D``).
      category_guidance: category-guided gate query and the category loss.
      modality_swap: the modality-swap contrastive loss.
      swap_rate: fraction of a sequence's valid positions whose feature is swapped.
      category_weight: ``lambda1``.
      swap_weight: ``lambda2``.
      temperature: InfoNCE temperature.
      swap_head: InfoNCE on an MLP projection of the last states (else on the states).
      num_layers, num_heads, max_len, dropout, norm, scale_input: the Transformer's.
      rngs: initialisation, dropout and swap randomness.
    """

    def __init__(
        self,
        num_items: int,
        *,
        features: Mapping[str, np.ndarray],
        item_category: np.ndarray | None = None,
        num_categories: int = 1,
        experts: Sequence[str] | None = None,
        dim: int = 64,
        expert_hidden: int | None = None,
        category_guidance: bool = True,
        modality_swap: bool = True,
        swap_rate: float = 0.2,
        category_weight: float = 0.1,
        swap_weight: float = 0.1,
        temperature: float = 0.2,
        num_layers: int = 2,
        num_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        norm: str = "dyt",
        scale_input: bool = False,
        swap_head: bool = False,
        rngs: nnx.Rngs,
    ):
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        bad = [m for m in features if m not in MODALITIES]
        if bad:
            raise ValueError(f"unknown feature modalities {bad}; valid: {MODALITIES}")
        for m, table in features.items():
            if np.ndim(table) != 2 or np.shape(table)[0] != num_items + 1:
                raise ValueError(
                    f"{m} features must be [num_items+1={num_items + 1}, F], got {np.shape(table)}"
                )
        if not 0.0 < swap_rate <= 1.0:
            raise ValueError(f"swap_rate must lie in (0, 1], got {swap_rate}")
        if category_weight < 0 or swap_weight < 0:
            raise ValueError(
                f"loss weights must be >= 0, got category_weight={category_weight}, "
                f"swap_weight={swap_weight}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        modalities = tuple(m for m in MODALITIES if m in features)
        experts = expert_names(modalities) if experts is None else tuple(experts)
        if modality_swap and not modalities:
            raise ValueError("modality_swap needs at least one modality feature (text or image)")
        if category_guidance:
            if item_category is None:
                raise ValueError("category_guidance needs item_category")
            item_category = np.asarray(item_category)
            if item_category.shape != (num_items + 1,):
                raise ValueError(
                    f"item_category must be [num_items+1={num_items + 1}], got "
                    f"{item_category.shape}"
                )
            if item_category.min() < 0 or item_category.max() >= num_categories:
                raise ValueError(f"item_category must lie in [0, {num_categories})")

        self.num_items = num_items
        self.dim = dim
        self.modalities = modalities
        self.category_weight = float(category_weight)
        self.swap_weight = float(swap_weight)
        self.temperature = float(temperature)
        self.swap_rate = float(swap_rate)
        used = {s for n in experts for s in expert_sources(n)} | (
            set(modalities) if modality_swap else set()
        )
        self.features = nnx.Dict(
            {m: Frozen(jnp.asarray(features[m], jnp.float32)) for m in modalities if m in used}
        )
        self.id_embedding = nnx.Embed(
            num_items + 1,
            dim,
            embedding_init=logical(nnx.initializers.normal(1.0), "vocab", "embed"),
            rngs=rngs,
        )
        input_dims = {"id": dim, **{m: int(np.shape(features[m])[1]) for m in modalities}}
        self.camoe = CAMoE(
            experts,
            input_dims,
            dim,
            num_categories=num_categories,
            category_guidance=category_guidance,
            hidden_dim=expert_hidden,
            rngs=rngs,
        )
        self.item_category = (
            CategoryLabel(jnp.asarray(item_category, jnp.int32)) if category_guidance else None
        )
        self.transformer = CausalTransformer(
            dim,
            num_layers=num_layers,
            num_heads=num_heads,
            max_len=max_len,
            dropout=dropout,
            norm=norm,
            scale_input=scale_input,
            rngs=rngs,
        )
        self.swap_head = moe.Expert(dim, dim, rngs=rngs) if modality_swap and swap_head else None
        self.swap_rngs = rngs.swap.fork() if modality_swap else None

    # ------------------------------------------------------------------ item side

    @property
    def expert_names(self) -> tuple[str, ...]:
        return self.camoe.names

    def item_inputs(self, items: jax.Array) -> dict[str, jax.Array]:
        """The experts' inputs of ``items [...]``: ID embedding and frozen features."""
        inputs = {"id": self.id_embedding(items)}
        for m, table in self.features.items():
            inputs[m] = table[...][items]
        return inputs

    def _all_items(self) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        table, weights, logits = self.camoe(self.item_inputs(jnp.arange(self.num_items + 1)))
        return table.at[0].set(0.0), weights, logits

    def item_table(self, *, deterministic: bool = True) -> jax.Array:
        """``[I+1, D]`` CAMoE representation of every item; row 0 (padding) is zero."""
        del deterministic  # CAMoE has no dropout
        return self._all_items()[0]

    def gate_weights(self) -> jax.Array:
        """``[I+1, K]`` gate weights of every item over :attr:`expert_names`."""
        return self._all_items()[1]

    # ------------------------------------------------------------------ sequence side

    def _encode_reps(self, reps: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        reps = reps * mask[..., None].astype(reps.dtype)
        return self.transformer(reps, mask, deterministic=deterministic)

    def encode(self, items: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """``[B, L, D]`` states of left-padded sequences ``items [B, L]``."""
        reps = self.camoe(self.item_inputs(items))[0]
        return self._encode_reps(reps, items > 0, deterministic)

    def swapped_inputs(self, items: jax.Array, plan: SwapPlan) -> dict[str, jax.Array]:
        """Expert inputs of ``items`` with the plan's modality swapped within each row."""
        inputs = self.item_inputs(items)
        swapped_items = jnp.take_along_axis(items, plan.source, axis=-1)
        for index, m in enumerate(self.modalities):
            if m not in inputs:
                continue
            here = (plan.swapped & (plan.modality[:, None] == index))[..., None]
            inputs[m] = jnp.where(here, self.features[m][...][swapped_items], inputs[m])
        return inputs

    def losses(
        self, batch: Mapping[str, jax.Array], *, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Total loss and its parts ``next_item``, ``category``, ``swap`` (zero when off)."""
        items, targets = batch["inputs"], batch["targets"]
        mask = items > 0
        table, _, cat_logits = self._all_items()
        states = self._encode_reps(table[items], mask, deterministic)
        next_item = next_item_loss(states, table, targets)
        zero = jnp.zeros((), next_item.dtype)

        category = zero
        if cat_logits is not None:
            labels = self.item_category[...][items]
            ce = optax.softmax_cross_entropy_with_integer_labels(cat_logits[items], labels)
            category = masked_mean(ce, mask)

        swap = zero
        if self.swap_rngs is not None and self.swap_weight > 0:
            plan = swap_plan(self.swap_rngs(), items, len(self.modalities), self.swap_rate)
            reps = self.camoe(self.swapped_inputs(items, plan))[0]
            other = self._encode_reps(reps, mask, deterministic)
            a, b = states[:, -1], other[:, -1]
            if self.swap_head is not None:
                a, b = self.swap_head(a), self.swap_head(b)
            swap = info_nce(a, b, temperature=self.temperature)

        loss = next_item + self.category_weight * category + self.swap_weight * swap
        return loss, {"next_item": next_item, "category": category, "swap": swap}


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` where ``mask`` (0 when nothing is valid)."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def next_item_loss(states: jax.Array, table: jax.Array, targets: jax.Array) -> jax.Array:
    """Cross-entropy of ``targets [B, L]`` over all items, averaged over non-padding targets.

    ``logits = states @ table.T`` with the padding column 0 set to ``-inf``.
    """
    logits = jnp.einsum("bld,id->bli", states, table, precision="highest")
    logits = logits.at[..., 0].set(-jnp.inf)
    valid = targets > 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, targets, 1))
    return masked_mean(jnp.where(valid, ce, 0.0), valid)


# --------------------------------------------------------------------------- factories


def _loss_kwargs(loss) -> dict[str, float]:
    """``loss.category_weight``, ``swap_weight``, ``temperature`` (None: the defaults)."""
    if loss is None:
        return {}
    return dict(
        category_weight=loss.category_weight,
        swap_weight=loss.swap_weight,
        temperature=loss.temperature,
    )


def _common(cfg, max_len: int) -> dict[str, Any]:
    return dict(
        dim=cfg.dim,
        expert_hidden=cfg.expert_hidden or None,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        max_len=max_len,
        dropout=cfg.dropout,
        norm=cfg.norm,
        scale_input=cfg.scale_input,
    )


def _features(data, modalities: Sequence[str]) -> dict[str, np.ndarray]:
    return {m: getattr(data, f"{m}_features") for m in modalities}


def _cammsr(cfg, data, rngs, *, loss, max_len):
    modalities = tuple(m for m in MODALITIES if m in data.modalities)
    return CAMMSR(
        data.num_items,
        features=_features(data, modalities),
        item_category=data.item_category if cfg.category_guidance else None,
        num_categories=data.num_categories,
        experts=expert_names(modalities, synergy=cfg.synergy_experts),
        category_guidance=cfg.category_guidance,
        modality_swap=cfg.modality_swap,
        swap_rate=cfg.swap_rate,
        swap_head=cfg.swap_head,
        rngs=rngs,
        **_loss_kwargs(loss),
        **_common(cfg, max_len),
    )


def _sasrec(cfg, data, rngs, *, loss, max_len):
    del loss
    return CAMMSR(
        data.num_items,
        features={},
        experts=("id",),
        category_guidance=False,
        modality_swap=False,
        rngs=rngs,
        **_common(cfg, max_len),
    )


def _sasrec_mm(cfg, data, rngs, *, loss, max_len):
    del loss
    modalities = tuple(m for m in MODALITIES if m in data.modalities)
    return CAMMSR(
        data.num_items,
        features=_features(data, modalities),
        experts=(concat_expert_name(modalities),),
        category_guidance=False,
        modality_swap=False,
        rngs=rngs,
        **_common(cfg, max_len),
    )


MODELS = {"cammsr": _cammsr, "sasrec": _sasrec, "sasrec_mm": _sasrec_mm}


def make_model(model_cfg, data, rngs: nnx.Rngs, *, loss_cfg=None, max_len: int = 50) -> CAMMSR:
    """``model_cfg.name`` (cammsr | sasrec | sasrec_mm) built for ``data``.

    ``loss_cfg`` holds ``category_weight``, ``swap_weight`` and ``temperature`` (CAMMSR only;
    None: :class:`CAMMSR`'s defaults); ``max_len`` is the Transformer's positional table.
    """
    name = model_cfg.name
    if name not in MODELS:
        raise ValueError(f"model.name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](model_cfg, data, rngs, loss=loss_cfg, max_len=max_len)


# --------------------------------------------------------------------------- report


def modality_shares(
    weights: np.ndarray, names: Sequence[str], item_category: np.ndarray, num_categories: int
) -> dict[str, np.ndarray]:
    """Per category, the mean gate weight on text-involving and on image-involving experts.

    Items ``1..I`` only (row 0 is padding). Returns ``{"text": [C], "image": [C], "count": [C]}``
    (``nan`` for an empty category); an expert over both modalities counts for both.
    """
    weights = np.asarray(weights, np.float64)[1:]
    cats = np.asarray(item_category)[1:]
    out: dict[str, np.ndarray] = {"count": np.bincount(cats, minlength=num_categories)}
    for m in MODALITIES:
        cols = [k for k, n in enumerate(names) if m in expert_sources(n)]
        per_item = weights[:, cols].sum(-1) if cols else np.zeros(len(cats))
        sums = np.bincount(cats, weights=per_item, minlength=num_categories)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[m] = sums / out["count"]
    return out


def text_share(shares: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per category, ``text / (text + image)`` of :func:`modality_shares` (``nan`` if empty)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return shares["text"] / (shares["text"] + shares["image"])


def plot_modality_weights(
    shares: Mapping[str, np.ndarray],
    path: str,
    *,
    truth: np.ndarray | None = None,
    title: str = "",
) -> str:
    """Per category: gate weight on text- vs image-involving experts, and the text share
    ``text / (text + image)`` beside the true text reliance (when known)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    num = len(shares["text"])
    x = np.arange(num)
    share = text_share(shares)
    fig = Figure(figsize=(max(10.0, 1.2 * num + 4), 3.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.bar(x - 0.2, shares["text"], 0.4, label="text-involving experts")
    left.bar(x + 0.2, shares["image"], 0.4, label="image-involving experts")
    left.set_xticks(x)
    left.set_xlabel("category")
    left.set_ylabel("mean gate weight")
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=8)
    right.bar(x - 0.2, share, 0.4, label="learned text share")
    if truth is not None:
        right.bar(x + 0.2, truth, 0.4, color="k", alpha=0.6, label="true text reliance")
        ok = np.isfinite(share)
        if ok.sum() >= 2 and np.std(share[ok]) > 0:
            corr = np.corrcoef(share[ok], np.asarray(truth)[ok])[0, 1]
            right.set_title(f"correlation {corr:.2f}", fontsize=10)
    right.set_xticks(x)
    right.set_xlabel("category")
    right.set_ylabel("text / (text + image)")
    right.set_ylim(0, 1)
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _report(config, workdir: str, data):
    def after(model: CAMMSR, results) -> dict[str, float]:
        del results
        names = model.expert_names
        if len(names) < 2:
            return {}
        weights = np.asarray(jax.device_get(model.gate_weights()))
        shares = modality_shares(weights, names, data.item_category, data.num_categories)
        truth = data.truth.get("text_reliance")
        extra: dict[str, float] = {}
        share = text_share(shares)
        if truth is not None and len(data.modalities) == 2:
            ok = np.isfinite(share)
            if ok.sum() >= 2 and np.std(share[ok]) > 0:
                extra["gate_text_reliance_corr"] = float(
                    np.corrcoef(share[ok], np.asarray(truth)[ok])[0, 1]
                )
        plot_modality_weights(
            shares,
            os.path.join(workdir, "plots", "modality_weights.png"),
            truth=None if truth is None else np.asarray(truth),
            title=f"{config.model.name}: modality weights per category",
        )
        return extra

    return after


def run(config, workdir: str) -> dict:
    """Registry entry: trains ``config.model.name`` (cammsr | sasrec | sasrec_mm)."""
    from jaxpapers.data import multimodal  # pylint: disable=g-import-not-at-top
    from jaxpapers.recsys import seqrec  # pylint: disable=g-import-not-at-top

    if config.model.name not in MODELS:
        raise ValueError(f"model.name must be one of {sorted(MODELS)}, got {config.model.name!r}")
    data = multimodal.load(config.data)
    max_len = int(config.split.history_len)

    def factory(model_cfg, data_, rngs):
        return make_model(model_cfg, data_, rngs, loss_cfg=config.loss, max_len=max_len)

    return seqrec.run(config, workdir, data, factory, after=_report(config, workdir, data))
