"""Multimodal recommendation data: a synthetic generator with known structure, splits, readers.

One container, :class:`MultimodalData`, serves the three multimodal recommenders of issue 4
(CAMMSR, QARM, EM3) and their baselines. Item ids are ``1..num_items``; id 0 is padding
everywhere, so every per-item table has ``num_items + 1`` rows and row 0 is zeros. Each user is
one sequence of item ids in time order, with no repeated item.

Per item the container holds what the papers' models consume:

* ``item_category`` — one category per item (CAMMSR's category-guided gate and its auxiliary
  category-prediction loss; hard negatives for the ranking samples);
* ``image_tokens`` ``[I+1, P, D_img]`` and ``text_tokens`` ``[I+1, T]`` — raw content, the input
  of end-to-end content encoders (EM3's Fusion-Q-Former cross-attends over both);
* ``image_features`` / ``text_features`` ``[I+1, F]`` — pre-extracted "frozen encoder" outputs,
  the cached embeddings that QARM aligns and quantises and that the "pre-extracted features"
  baselines use.

Synthetic generator (:func:`synthetic_multimodal`)
    None of the three papers has public data or code, so the embedded data set is built to
    contain exactly the structure their mechanisms are meant to find, and every generating
    quantity is returned in ``truth``:

    * **Items.** ``C`` categories with uneven sizes (Dirichlet(2) proportions, at least one
      item each) and ids assigned at random, so the id says nothing about the category. Item
      ``i`` of category ``c`` has a text factor ``t_i = mu_t[c] + item_noise * e`` and an image
      factor ``v_i = mu_v[c] + item_noise * e'`` (all per-dimension std ``1/sqrt(d)``, so the
      factors have norm about 1), and an ID-only popularity bias
      ``b_i = -popularity_scale * log(rank_i)`` (Zipf, random ranks, centred) that no content
      explains — so ID embeddings still matter next to content.
    * **Modality reliance.** ``rho_c`` (``truth["text_reliance"]``) is ``linspace(0.1, 0.9)``
      shuffled over the categories: behaviour in category ``c`` follows the text factors with
      weight ``rho_c`` and the image factors with weight ``1 - rho_c``. This is what a
      category-guided modality gate (CAMMSR) should recover.
    * **Content from factors.** Image: ``P`` patch tokens, patch ``p = tanh(A_p v_i) + noise``,
      where ``A_p`` reads only a cyclic block of ``k = max(2, ceil(2d/P))`` latent dimensions,
      so every latent dimension is seen by a few patches and no patch sees them all: the
      information is spread over the patches (a pooled or attentive reader needs several).
      Text: a length ``uniform[ceil(T/2), T]`` (right-padded with 0), tokens drawn i.i.d. from
      ``softmax(W t_i / text_temperature + boost * [word belongs to category c_i])`` over ids
      ``1..text_vocab-1``; each category owns a few "category words".
    * **Frozen-encoder features.** ``image_features`` = (mean of the patches) through a fixed
      random projection, standardised, plus ``feature_noise`` Gaussian noise;
      ``text_features`` = the L2-normalised bag of words through a fixed random projection,
      standardised, plus noise. Both are informative but lossy (mean pooling of non-linear
      patches; a 512 -> 64 random projection of counts; noise), so a model that reads the raw
      tokens end to end can beat one that only sees the features.
    * **Users and behaviour.** User ``u`` has long-term preferences ``u_t``, ``u_v``
      (per-dimension std ``1/sqrt(d)``) and a category preference ``pi_u``
      (``favourite_mass`` spread over ``favourite_categories`` random favourites, the rest
      uniform). The length is ``uniform[min_len, max_len]``. The first category is drawn from
      ``pi_u``; afterwards the next category is drawn from
      ``markov_weight * K[current] + (1 - markov_weight) * pi_u`` with a sparse random
      transition matrix ``K`` (rows Dirichlet(0.3)), so the order of the categories carries
      signal. Within the chosen category the item is drawn (never repeating one the user
      already has) from ``softmax_i(sharpness * (rho_c <u_t + beta m_t, t_i> +
      (1 - rho_c) <u_v + beta m_v, v_i>) + b_i)``, where ``m_t``, ``m_v`` are an exponential
      moving average (decay ``history_decay``) of the factors of the user's previous items
      and ``beta = history_weight``. A sequence model can therefore beat a bag of items twice
      over: the category transition and the recency-weighted interest.
      Categories the user has exhausted get probability 0.
    * **Oracle.** For each user's last event (the leave-one-out test target) the generator
      ranks the realised item under the true next-item distribution over all items, and
      reports ``info["oracle_test_hr@10"]`` / ``["oracle_test_ndcg@10"]``: the ceiling any
      model can reach on the test split of this data (up to sampling noise).

    Everything is NumPy with separate, seeded streams (``SeedSequence(seed).spawn``) for the
    items, the content, the users and the behaviour, so the item catalogue does not change
    when only ``num_users`` changes. Sampling is vectorised over users: the loop runs over
    time steps and categories only, and draws by inverse CDF with one uniform per draw.
    The default (2000 users x ~24 events) takes about 0.5 s of CPU (BLAS kept single-threaded
    where threadpoolctl is installed: its many small matmuls only lose from threads).

Splits
    :func:`leave_one_out` — leave-one-out by time (SASRec's protocol): per user of sequence
    ``s`` (length ``n >= 3``) the test target is ``s[-1]`` with history ``s[:-1]``, the
    validation target ``s[-2]`` with history ``s[:-2]`` (both the last ``max_len`` items,
    left-padded), and the training part is ``s[:-2]``: one training row per user, inputs
    ``s[:-2][:-1]`` and targets ``s[:-2][1:]`` (last ``max_len`` positions, left-padded; the
    target is 0 exactly where the input is padding). **Rule for short users:** a user whose
    training part has fewer than 2 items (``n = 3``) yields no training row — there is no
    next-item pair in it — but keeps its validation and test rows.

    :func:`ranking_samples` — the CTR-style view for ranking models: every next-item event is
    a positive (training: each position ``k`` of the training part with ``k >= 1``, so the
    history is never empty; validation: ``s[-2]``; test: ``s[-1]``) with the items strictly
    before it as history, followed by ``num_negatives`` negatives with the same user and
    history. Negatives are items the user NEVER interacted with (whole sequence, held-out
    items included, so no split leaks into another through a negative); a
    ``hard_negative_fraction`` of them (rounded) comes from the positive's category, the rest
    uniformly from the catalogue. When the user has consumed every item of that category the
    hard ones fall back to uniform. Negatives of one positive are drawn independently (they
    may repeat). Rows are ordered event by event (users in order, time within a user), each
    positive followed by its negatives; the draw is deterministic for a seed.

Readers (``paper`` variants)
    :func:`load_movielens` reads TFDS ``movielens/1m-ratings`` offline (text-only: titles);
    :func:`load_amazon` reads Amazon review + metadata JSON lines with precomputed text / image
    features (layout in its docstring). Both sort each user's events by time (stable on ties,
    so the file order breaks them), keep the first of repeated (user, item) events, apply an
    iterative k-core filter (users with fewer than ``min_len`` events and items with fewer than
    ``item_min_count`` events removed until none is left), and re-index items ``1..I`` in sorted
    order of their raw ids and users ``0..U-1`` likewise. Title words (lower-cased
    ``[a-z0-9]+`` runs) become token ids ``1 + crc32(word) % (text_vocab - 1)``, a stable hash
    that needs no vocabulary file.

:func:`load` dispatches on a config's ``source``; :func:`from_sequences` builds a container
from plain sequences (hand-made test data, or a user's own logs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import inspect
import json
import logging
import math
import os
import pathlib
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "MultimodalData",
    "SeqSplits",
    "RankingSplit",
    "SOURCES",
    "synthetic_multimodal",
    "from_sequences",
    "leave_one_out",
    "ranking_samples",
    "load_movielens",
    "load_amazon",
    "load",
    "hash_title",
]

_LOG = logging.getLogger(__name__)

SOURCES = ("synthetic", "movielens", "amazon")
MODALITIES = ("text", "image")


# =============================================================================
# Containers.
# =============================================================================


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality
class MultimodalData:
    """Users' item sequences plus per-item category, raw content and pre-extracted features.

    Attributes:
        name: Data set name.
        num_users: Number of users (= ``len(sequences)``); user ``u`` is ``sequences[u]``.
        num_items: Number of items; ids ``1..num_items``, 0 is padding.
        num_categories: Number of categories ``C``.
        item_category: ``[num_items+1]`` int32 in ``[0, C)``; row 0 is 0 (ignored).
        image_tokens: ``[num_items+1, P, D_img]`` float32 patch tokens (row 0 zeros).
        text_tokens: ``[num_items+1, T]`` int32 in ``[0, text_vocab)``, 0 = pad (row 0 all pad).
        text_vocab: Text vocabulary size (token 0 is padding).
        image_features: ``[num_items+1, F_img]`` float32 pre-extracted feature (row 0 zeros).
        text_features: ``[num_items+1, F_txt]`` float32 pre-extracted feature (row 0 zeros).
        sequences: Per user, int32 item ids in time order, no repeats, length >= 3.
        modalities: The subset of ``("text", "image")`` actually present.
        truth: Synthetic data only: the generating quantities (``"text_reliance"`` [C], ...).
        info: JSON-serialisable summary (sizes, density, lengths, ...).
    """

    name: str
    num_users: int
    num_items: int
    num_categories: int
    item_category: np.ndarray
    image_tokens: np.ndarray
    text_tokens: np.ndarray
    text_vocab: int
    image_features: np.ndarray
    text_features: np.ndarray
    sequences: tuple[np.ndarray, ...]
    modalities: tuple[str, ...]
    truth: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = self.num_items + 1
        if self.num_users != len(self.sequences):
            raise ValueError(
                f"num_users={self.num_users} but there are {len(self.sequences)} sequences"
            )
        for field in ("item_category", "image_tokens", "text_tokens"):
            value = getattr(self, field)
            if value.shape[0] != rows:
                raise ValueError(
                    f"{field} must have num_items+1={rows} rows, got shape {value.shape}"
                )
        for field in ("image_features", "text_features"):
            value = getattr(self, field)
            if value.ndim != 2 or value.shape[0] != rows:
                raise ValueError(f"{field} must be [{rows}, F], got shape {value.shape}")
        if self.image_tokens.ndim != 3 or self.text_tokens.ndim != 2:
            raise ValueError(
                f"image_tokens must be [I+1, P, D] and text_tokens [I+1, T], got "
                f"{self.image_tokens.shape} and {self.text_tokens.shape}"
            )
        if self.num_items and not 0 <= self.item_category.min() <= self.item_category.max() < (
            self.num_categories
        ):
            raise ValueError(f"item_category must lie in [0, {self.num_categories})")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad:
            raise ValueError(f"unknown modalities {bad}; valid: {MODALITIES}")


@dataclasses.dataclass(frozen=True, eq=False)
class SeqSplits:
    """Leave-one-out by time (see the module docstring); every array int32, left-padded.

    Attributes:
        train_inputs: ``[N, L]`` inputs ``s[:-2][:-1]`` of each user with a training pair.
        train_targets: ``[N, L]`` the next item at every position, 0 where the input is pad.
        train_users: ``[N]`` the user of each training row.
        valid_history: ``[U, L]`` the training part ``s[:-2]`` (last L items).
        valid_target: ``[U]`` ``s[-2]``.
        test_history: ``[U, L]`` ``s[:-1]`` (includes the validation item).
        test_target: ``[U]`` ``s[-1]``.
        users: ``[U]`` the user of each valid / test row (all users, in order).
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    train_users: np.ndarray
    valid_history: np.ndarray
    valid_target: np.ndarray
    test_history: np.ndarray
    test_target: np.ndarray
    users: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RankingSplit:
    """CTR-style samples: (user, history, target item) -> click label.

    Attributes:
        user: ``[N]`` int32.
        history: ``[N, L]`` int32, left-padded, items strictly before the target's event.
        target: ``[N]`` int32 candidate item.
        label: ``[N]`` float32, 1 for the real next item, 0 for a sampled negative.
    """

    user: np.ndarray
    history: np.ndarray
    target: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


# =============================================================================
# Validation and small helpers.
# =============================================================================


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float = math.inf) -> float:
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


def _sample_rows(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from each row of non-negative ``weights`` [n, K].

    ``uniforms`` is [n] or [n, m] in (0, 1]; returns indices of the same shape: the first
    index whose normalised cumulative weight reaches u. An index of weight 0 is never returned:
    its cumulative weight equals its predecessor's (bit for bit, also after the shifts below),
    and u is clipped to >= 1e-9 so a leading zero-weight index (cumulative 0) never reaches
    it; the last positive index has cumulative exactly 1 (x / x). All rows are searched in one
    ``searchsorted`` by shifting row r's CDF by 2r (the gap keeps rounding from crossing rows).
    """
    n, k = weights.shape
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    cdf /= cdf[:, -1:]
    offsets = 2.0 * np.arange(n, dtype=np.float64)[:, None]
    u = np.clip(uniforms.reshape(n, -1), 1e-9, 1.0)
    idx = np.searchsorted((cdf + offsets).ravel(), u + offsets, side="left")
    idx -= (np.arange(n) * k)[:, None]
    return np.clip(idx, 0, k - 1).reshape(uniforms.shape)


def _uniform_open(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniforms in (0, 1]."""
    return 1.0 - rng.random(shape)


def _standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std() + 1e-12)


def _flatten(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all items concatenated, start offset per user, length per user)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    starts = np.zeros(len(sequences), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    flat = (
        np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences])
        if len(sequences)
        else np.zeros(0, np.int32)
    )
    return flat, starts, lengths


def _window_before(
    flat: np.ndarray, lower: np.ndarray, position: np.ndarray, length: int
) -> np.ndarray:
    """``[n, length]`` left-padded items ``flat[max(lower, p - length) : p]`` per row.

    ``position`` is exclusive; positions below ``lower`` (the user's start) are padding (0).
    """
    out = np.zeros((len(position), length), np.int32)
    offsets = np.arange(length)[None, :] - length
    chunk = 1 << 16  # bounds the int64 index temporaries for millions of rows
    for lo in range(0, len(position), chunk):
        idx = position[lo : lo + chunk, None] + offsets
        valid = idx >= lower[lo : lo + chunk, None]
        out[lo : lo + chunk] = np.where(valid, flat[np.clip(idx, 0, max(len(flat) - 1, 0))], 0)
    return out


# =============================================================================
# Synthetic generator.
# =============================================================================


def _category_sizes(rng: np.random.Generator, num_items: int, num_categories: int) -> np.ndarray:
    share = rng.dirichlet(np.full(num_categories, 2.0))
    return 1 + rng.multinomial(num_items - num_categories, share)


def _patch_maps(
    rng: np.random.Generator, num_patches: int, patch_dim: int, latent_dim: int, factor_var: float
) -> np.ndarray:
    """``[P, D_img, d]`` maps; patch p reads a cyclic block of k latent dims (info is spread)."""
    k = min(latent_dim, max(2, math.ceil(2 * latent_dim / num_patches)))
    perm = rng.permutation(latent_dim)
    mask = np.zeros((num_patches, latent_dim))
    for p in range(num_patches):
        mask[p, perm[(p * k + np.arange(k)) % latent_dim]] = 1.0
    # Pre-activation std about 1: k dims of variance factor_var each.
    scale = 1.0 / math.sqrt(k * factor_var)
    maps = rng.standard_normal((num_patches, patch_dim, latent_dim)) * scale
    return maps * mask[:, None, :]


def _text_tokens(
    rng: np.random.Generator,
    text_factor: np.ndarray,
    category: np.ndarray,
    num_categories: int,
    text_len: int,
    text_vocab: int,
    temperature: float,
    category_boost: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[I, T]`` (>= 1, right-padded with 0) and the category-word table ``[C, w]``."""
    num_items, dim = text_factor.shape
    words = text_vocab - 1  # ids 1..text_vocab-1
    emb = rng.standard_normal((words, dim)) / math.sqrt(dim * text_factor.var(0).mean() + 1e-12)
    per_category = max(1, words // (4 * num_categories))
    owned = rng.permutation(words)[: per_category * num_categories].reshape(num_categories, -1)
    logits = text_factor @ emb.T / temperature
    logits[np.arange(num_items)[:, None], owned[category]] += category_boost
    probs = np.exp(logits - logits.max(1, keepdims=True))
    tokens = 1 + _sample_rows(probs, _uniform_open(rng, (num_items, text_len)))
    lengths = rng.integers(max(1, math.ceil(text_len / 2)), text_len + 1, num_items)
    tokens[np.arange(text_len)[None, :] >= lengths[:, None]] = 0
    return tokens.astype(np.int32), owned + 1


def _bag_of_words(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """L2-normalised counts ``[n, vocab]`` of the non-pad tokens."""
    rows = np.repeat(np.arange(len(tokens)), tokens.shape[1])
    counts = np.zeros((len(tokens), vocab))
    np.add.at(counts, (rows, tokens.ravel()), 1.0)
    counts[:, 0] = 0.0
    return counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)


def synthetic_multimodal(
    *,
    num_users: int = 2000,
    num_items: int = 1500,
    num_categories: int = 8,
    min_len: int = 8,
    max_len: int = 40,
    latent_dim: int = 16,
    num_patches: int = 16,
    patch_dim: int = 32,
    text_len: int = 16,
    text_vocab: int = 512,
    feature_dim: int = 64,
    seed: int = 0,
    item_noise: float = 0.8,
    sharpness: float = 10.0,
    history_weight: float = 1.0,
    history_decay: float = 0.5,
    markov_weight: float = 0.5,
    favourite_categories: int = 2,
    favourite_mass: float = 0.7,
    popularity_scale: float = 0.5,
    content_noise: float = 0.1,
    feature_noise: float = 0.5,
    text_temperature: float = 0.5,
    category_word_boost: float = 2.0,
) -> MultimodalData:
    """Synthetic users, items, categories and content with known structure (module docstring).

    Args:
        num_users: Number of users.
        num_items: Number of items (>= num_categories and >= max_len).
        num_categories: Number of categories C.
        min_len: Shortest sequence (>= 4).
        max_len: Longest sequence (>= min_len).
        latent_dim: Dimension d of the text and image latent factors.
        num_patches: Image patch tokens per item P.
        patch_dim: Dimension of a patch token D_img.
        text_len: Text tokens per item T (the actual length is uniform in [ceil(T/2), T]).
        text_vocab: Text vocabulary size (id 0 is padding).
        feature_dim: Dimension F of the pre-extracted features.
        seed: Random seed.
        item_noise: Std of an item's factor around its category centroid (relative to the
            centroids' spread, which is 1).
        sharpness: Scale of the content part of the within-category choice logit.
        history_weight: beta, weight of the moving average of recent items in the query.
        history_decay: Decay of that moving average (0: only the last item).
        markov_weight: Weight of the category transition matrix vs the user's category
            preference when drawing the next category.
        favourite_categories: Number of favourite categories per user.
        favourite_mass: Share of the category preference on the favourites.
        popularity_scale: Zipf exponent of the ID-only popularity bias.
        content_noise: Std of the noise on the patch tokens.
        feature_noise: Std of the noise on the (standardised) pre-extracted features.
        text_temperature: Temperature of the word distribution (lower: more informative).
        category_word_boost: Logit boost of a category's own words.

    Returns:
        A :class:`MultimodalData` with ``truth`` holding ``text_reliance`` [C],
        ``item_text_factor`` / ``item_image_factor`` [I+1, d], ``item_popularity`` [I+1],
        ``text_centroids`` / ``image_centroids`` [C, d], ``user_text_pref`` /
        ``user_image_pref`` [U, d], ``user_category_pref`` [U, C], ``category_transition``
        [C, C], ``category_words`` [C, w], ``patch_maps`` [P, D_img, d] and the scalar knobs.
    """
    num_users = _check_int("num_users", num_users, 1)
    num_categories = _check_int("num_categories", num_categories, 1)
    num_items = _check_int("num_items", num_items, num_categories)
    min_len = _check_int("min_len", min_len, 4)
    max_len = _check_int("max_len", max_len, min_len)
    if max_len > num_items:
        raise ValueError(f"max_len={max_len} exceeds num_items={num_items} (no repeats)")
    latent_dim = _check_int("latent_dim", latent_dim, 1)
    num_patches = _check_int("num_patches", num_patches, 1)
    patch_dim = _check_int("patch_dim", patch_dim, 1)
    text_len = _check_int("text_len", text_len, 1)
    text_vocab = _check_int("text_vocab", text_vocab, 2)
    feature_dim = _check_int("feature_dim", feature_dim, 1)
    seed = _check_int("seed", seed, 0)
    favourite_categories = _check_int("favourite_categories", favourite_categories, 1)
    favourite_categories = min(favourite_categories, num_categories)
    history_decay = _check_float("history_decay", history_decay, 0.0, 1.0)
    markov_weight = _check_float("markov_weight", markov_weight, 0.0, 1.0)
    favourite_mass = _check_float("favourite_mass", favourite_mass, 0.0, 1.0)
    for name, value in [
        ("item_noise", item_noise),
        ("sharpness", sharpness),
        ("history_weight", history_weight),
        ("popularity_scale", popularity_scale),
        ("content_noise", content_noise),
        ("feature_noise", feature_noise),
        ("category_word_boost", category_word_boost),
    ]:
        _check_float(name, value, 0.0)
    if text_temperature <= 0:
        raise ValueError(f"text_temperature must be > 0, got {text_temperature}")

    rng_items, rng_content, rng_users, rng_behaviour = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    d, c_num, i_num = latent_dim, num_categories, num_items

    # --- items ---------------------------------------------------------------------------
    sizes = _category_sizes(rng_items, i_num, c_num)
    category = rng_items.permutation(np.repeat(np.arange(c_num), sizes)).astype(np.int32)
    rho = rng_items.permutation(np.linspace(0.1, 0.9, c_num) if c_num > 1 else np.array([0.5]))
    text_centroids = rng_items.standard_normal((c_num, d)) / math.sqrt(d)
    image_centroids = rng_items.standard_normal((c_num, d)) / math.sqrt(d)
    text_factor = text_centroids[category] + item_noise * rng_items.standard_normal(
        (i_num, d)
    ) / math.sqrt(d)
    image_factor = image_centroids[category] + item_noise * rng_items.standard_normal(
        (i_num, d)
    ) / math.sqrt(d)
    popularity = -popularity_scale * np.log(rng_items.permutation(i_num) + 1.0)
    popularity -= popularity.mean()
    transition = rng_items.dirichlet(np.full(c_num, 0.3), size=c_num)

    # --- content -------------------------------------------------------------------------
    factor_var = (1.0 + item_noise**2) / d
    maps = _patch_maps(rng_content, num_patches, patch_dim, d, factor_var)
    patches = np.tanh(np.einsum("pod,id->ipo", maps, image_factor))
    patches += content_noise * rng_content.standard_normal(patches.shape)
    tokens, category_words = _text_tokens(
        rng_content,
        text_factor,
        category,
        c_num,
        text_len,
        text_vocab,
        text_temperature,
        category_word_boost,
    )
    image_proj = rng_content.standard_normal((patch_dim, feature_dim))
    image_feat = _standardize(patches.mean(1) @ image_proj)
    image_feat += feature_noise * rng_content.standard_normal(image_feat.shape)
    text_proj = rng_content.standard_normal((text_vocab, feature_dim))
    text_feat = _standardize(_bag_of_words(tokens, text_vocab) @ text_proj)
    text_feat += feature_noise * rng_content.standard_normal(text_feat.shape)

    # --- users ---------------------------------------------------------------------------
    user_text = rng_users.standard_normal((num_users, d)) / math.sqrt(d)
    user_image = rng_users.standard_normal((num_users, d)) / math.sqrt(d)
    favourites = np.argsort(rng_users.random((num_users, c_num)), axis=1)[:, :favourite_categories]
    category_pref = np.full((num_users, c_num), (1.0 - favourite_mass) / c_num)
    np.add.at(
        category_pref,
        (np.repeat(np.arange(num_users), favourite_categories), favourites.ravel()),
        favourite_mass / favourite_categories,
    )
    lengths = rng_users.integers(min_len, max_len + 1, num_users)

    # --- behaviour -----------------------------------------------------------------------
    with _single_threaded_blas():
        sequences, oracle_ranks = _simulate(
            rng_behaviour,
            category=category,
            sizes=sizes,
            rho=rho,
            text_factor=text_factor,
            image_factor=image_factor,
            popularity=popularity,
            transition=transition,
            user_text=user_text,
            user_image=user_image,
            category_pref=category_pref,
            lengths=lengths,
            sharpness=sharpness,
            history_weight=history_weight,
            history_decay=history_decay,
            markov_weight=markov_weight,
        )

    def pad_rows(x: np.ndarray, dtype) -> np.ndarray:
        return np.concatenate([np.zeros((1,) + x.shape[1:], x.dtype), x]).astype(dtype)

    num_events = int(lengths.sum())
    hits = oracle_ranks < 10
    info = {
        "name": "synthetic_multimodal",
        "source": "synthetic",
        "seed": seed,
        "num_users": num_users,
        "num_items": i_num,
        "num_categories": c_num,
        "num_interactions": num_events,
        "density": num_events / (num_users * i_num),
        "mean_length": float(lengths.mean()),
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
        "category_sizes": [int(s) for s in sizes],
        "items_seen": int(len(np.unique(np.concatenate(sequences)))),
        "modalities": list(MODALITIES),
        "oracle_test_hr@10": float(hits.mean()),
        "oracle_test_ndcg@10": float(np.where(hits, 1.0 / np.log2(oracle_ranks + 2.0), 0).mean()),
    }
    truth = {
        "text_reliance": rho,
        "item_text_factor": pad_rows(text_factor, np.float32),
        "item_image_factor": pad_rows(image_factor, np.float32),
        "item_popularity": pad_rows(popularity, np.float32),
        "text_centroids": text_centroids.astype(np.float32),
        "image_centroids": image_centroids.astype(np.float32),
        "user_text_pref": user_text.astype(np.float32),
        "user_image_pref": user_image.astype(np.float32),
        "user_category_pref": category_pref,
        "category_transition": transition,
        "category_words": category_words.astype(np.int32),
        "patch_maps": maps.astype(np.float32),
        "oracle_test_rank": oracle_ranks,
        "sharpness": float(sharpness),
        "history_weight": float(history_weight),
        "history_decay": float(history_decay),
        "markov_weight": float(markov_weight),
    }
    return MultimodalData(
        name="synthetic_multimodal",
        num_users=num_users,
        num_items=i_num,
        num_categories=c_num,
        item_category=np.concatenate([[0], category]).astype(np.int32),
        image_tokens=pad_rows(patches, np.float32),
        text_tokens=pad_rows(tokens, np.int32),
        text_vocab=text_vocab,
        image_features=pad_rows(image_feat, np.float32),
        text_features=pad_rows(text_feat, np.float32),
        sequences=tuple(sequences),
        modalities=MODALITIES,
        truth=truth,
        info=info,
    )


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limits BLAS to one thread where ``threadpoolctl`` is installed (optional).

    The simulation makes hundreds of small matmuls ([~250, d] x [d, ~200]); BLAS threads only
    add synchronisation there: on a busy 2-core machine the default generation took 2.5 s
    wall with threads and 0.55 s without.
    """
    try:
        import threadpoolctl  # pylint: disable=g-import-not-at-top
    except ImportError:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1, user_api="blas")


def _simulate(
    rng: np.random.Generator,
    *,
    category: np.ndarray,
    sizes: np.ndarray,
    rho: np.ndarray,
    text_factor: np.ndarray,
    image_factor: np.ndarray,
    popularity: np.ndarray,
    transition: np.ndarray,
    user_text: np.ndarray,
    user_image: np.ndarray,
    category_pref: np.ndarray,
    lengths: np.ndarray,
    sharpness: float,
    history_weight: float,
    history_decay: float,
    markov_weight: float,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Draws every user's sequence (0-based items); returns 1-based sequences, oracle ranks."""
    num_users, d = user_text.shape
    num_categories = len(sizes)
    members = [np.flatnonzero(category == c) for c in range(num_categories)]
    # consumed[c][u, j]: user u already has the j-th item of category c (row gathers only).
    consumed = [np.zeros((num_users, len(m)), dtype=bool) for m in members]
    used_per_category = np.zeros((num_users, num_categories), dtype=np.int64)
    ema_text = np.zeros((num_users, d))
    ema_image = np.zeros((num_users, d))
    current = np.zeros(num_users, dtype=np.int64)
    out = np.zeros((num_users, int(lengths.max())), dtype=np.int64)
    oracle = np.zeros(num_users, dtype=np.int64)
    item_rho = rho[category]

    for step in range(int(lengths.max())):
        active = np.flatnonzero(lengths > step)
        if step == 0:
            cat_probs = category_pref[active].copy()
        else:
            cat_probs = (
                markov_weight * transition[current[active]]
                + (1.0 - markov_weight) * category_pref[active]
            )
        available = used_per_category[active] < sizes[None, :]
        cat_probs = np.where(available, cat_probs + 1e-12, 0.0)
        cat_probs /= cat_probs.sum(1, keepdims=True)
        chosen_cat = _sample_rows(cat_probs, _uniform_open(rng, len(active)))
        query_text = user_text[active] + history_weight * ema_text[active]
        query_image = user_image[active] + history_weight * ema_image[active]
        chosen = np.zeros(len(active), dtype=np.int64)
        chosen_local = np.zeros(len(active), dtype=np.int64)
        for c in range(num_categories):
            rows = np.flatnonzero(chosen_cat == c)
            if not len(rows):
                continue
            items = members[c]
            logits = (
                sharpness
                * (
                    rho[c] * (query_text[rows] @ text_factor[items].T)
                    + (1.0 - rho[c]) * (query_image[rows] @ image_factor[items].T)
                )
                + popularity[items]
            )
            logits = np.where(consumed[c][active[rows]], -np.inf, logits)
            weights = np.exp(logits - logits.max(1, keepdims=True))
            local = _sample_rows(weights, _uniform_open(rng, len(rows)))
            chosen[rows] = items[local]
            chosen_local[rows] = local

        last = lengths[active] == step + 1
        if last.any():  # the test event: rank the realised item under the true distribution
            rows = np.flatnonzero(last)
            logits = (
                sharpness
                * (
                    item_rho * (query_text[rows] @ text_factor.T)
                    + (1.0 - item_rho) * (query_image[rows] @ image_factor.T)
                )
                + popularity
            )
            logp = np.empty_like(logits)
            for c in range(num_categories):
                part = np.where(consumed[c][active[rows]], -np.inf, logits[:, members[c]])
                peak = part.max(1, keepdims=True)
                with np.errstate(divide="ignore"):
                    lse = peak + np.log(
                        np.exp(part - np.where(np.isfinite(peak), peak, 0)).sum(1, keepdims=True)
                    )
                    logp[:, members[c]] = part - lse + np.log(cat_probs[rows, c])[:, None]
            logp = np.nan_to_num(logp, nan=-np.inf)
            mine = logp[np.arange(len(rows)), chosen[rows]]
            oracle[active[rows]] = (logp > mine[:, None]).sum(1)

        users = active
        for c in range(num_categories):
            picked = chosen_cat == c
            consumed[c][users[picked], chosen_local[picked]] = True
        used_per_category[users, chosen_cat] += 1
        current[users] = chosen_cat
        out[users, step] = chosen
        ema_text[users] = (
            history_decay * ema_text[users] + (1 - history_decay) * text_factor[chosen]
        )
        ema_image[users] = (
            history_decay * ema_image[users] + (1 - history_decay) * image_factor[chosen]
        )

    sequences = [(out[u, : lengths[u]] + 1).astype(np.int32) for u in range(num_users)]
    return sequences, oracle


# =============================================================================
# Containers from plain sequences.
# =============================================================================


def _check_sequences(
    sequences: Sequence[np.ndarray], num_items: int, min_length: int
) -> tuple[np.ndarray, ...]:
    out = tuple(np.asarray(s, dtype=np.int32) for s in sequences)
    if not out:
        raise ValueError("no sequences")
    flat, starts, lengths = _flatten(out)
    if lengths.min() < min_length:
        user = int(np.argmin(lengths))
        raise ValueError(
            f"every sequence needs >= {min_length} items; user {user} has {lengths[user]}"
        )
    if flat.min() < 1 or flat.max() > num_items:
        raise ValueError(f"item ids must lie in 1..{num_items}; found {flat.min()}..{flat.max()}")
    users = np.repeat(np.arange(len(out)), lengths)
    keys = users.astype(np.int64) * (num_items + 1) + flat
    if len(np.unique(keys)) != len(keys):
        raise ValueError("a sequence repeats an item; sequences must not repeat items")
    return out


def from_sequences(
    sequences: Sequence[Sequence[int]],
    *,
    num_items: int,
    item_category: np.ndarray | None = None,
    num_categories: int | None = None,
    name: str = "custom",
    text_len: int = 1,
    text_vocab: int = 2,
    feature_dim: int = 1,
) -> MultimodalData:
    """A content-free :class:`MultimodalData` from item sequences (ids 1..num_items).

    Content tables are zeros (``modalities=()``); categories default to all 0. Sequences must
    have >= 3 items and no repeats. Meant for hand-made test data and ID-only experiments.
    """
    seqs = _check_sequences(sequences, num_items, 3)
    if item_category is None:
        item_category = np.zeros(num_items + 1, np.int32)
    item_category = np.asarray(item_category, np.int32)
    if num_categories is None:
        num_categories = int(item_category.max()) + 1
    rows = num_items + 1
    lengths = np.array([len(s) for s in seqs])
    return MultimodalData(
        name=name,
        num_users=len(seqs),
        num_items=num_items,
        num_categories=num_categories,
        item_category=item_category,
        image_tokens=np.zeros((rows, 1, 1), np.float32),
        text_tokens=np.zeros((rows, text_len), np.int32),
        text_vocab=text_vocab,
        image_features=np.zeros((rows, feature_dim), np.float32),
        text_features=np.zeros((rows, feature_dim), np.float32),
        sequences=seqs,
        modalities=(),
        info=_summary(name, "custom", seqs, num_items, num_categories, (), lengths),
    )


def _summary(
    name: str,
    source: str,
    sequences: Sequence[np.ndarray],
    num_items: int,
    num_categories: int,
    modalities: Sequence[str],
    lengths: np.ndarray,
) -> dict:
    events = int(lengths.sum())
    return {
        "name": name,
        "source": source,
        "num_users": len(sequences),
        "num_items": int(num_items),
        "num_categories": int(num_categories),
        "num_interactions": events,
        "density": events / max(1, len(sequences) * num_items),
        "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
        "min_length": int(lengths.min()) if len(lengths) else 0,
        "max_length": int(lengths.max()) if len(lengths) else 0,
        "modalities": list(modalities),
    }


# =============================================================================
# Splits.
# =============================================================================


def leave_one_out(data: MultimodalData, max_len: int) -> SeqSplits:
    """Leave-one-out by time with SASRec-style training rows (see the module docstring).

    Args:
        data: Every sequence must have >= 3 items.
        max_len: History / training window L; longer sequences keep their last L positions.

    Returns:
        A :class:`SeqSplits`; users whose training part has < 2 items have no training row.
    """
    max_len = _check_int("max_len", max_len, 1)
    flat, starts, lengths = _flatten(data.sequences)
    if len(lengths) == 0 or lengths.min() < 3:
        raise ValueError("leave_one_out needs >= 3 items per user (train, valid, test)")
    ends = starts + lengths
    users = np.arange(len(lengths), dtype=np.int32)
    has_pair = lengths - 2 >= 2
    tr_start, tr_end = starts[has_pair], ends[has_pair] - 2  # the training part flat[s:e]
    return SeqSplits(
        train_inputs=_window_before(flat, tr_start, tr_end - 1, max_len),
        train_targets=_window_before(flat, tr_start + 1, tr_end, max_len),
        train_users=users[has_pair],
        valid_history=_window_before(flat, starts, ends - 2, max_len),
        valid_target=flat[ends - 2].astype(np.int32),
        test_history=_window_before(flat, starts, ends - 1, max_len),
        test_target=flat[ends - 1].astype(np.int32),
        users=users,
    )


def _draw_negatives(
    rng: np.random.Generator,
    users: np.ndarray,
    categories: np.ndarray,
    hard: np.ndarray,
    *,
    owned_keys: np.ndarray,
    num_items: int,
    by_category: np.ndarray,
    category_start: np.ndarray,
    category_size: np.ndarray,
    max_rounds: int = 64,
) -> np.ndarray:
    """One never-interacted item per row; ``hard`` rows from ``categories``, others uniform.

    Rejection sampling, vectorised: redraw only the rejected rows. Rows still rejected after
    ``max_rounds`` (a user owning nearly all candidates) are drawn exactly from the complement.
    """
    n = len(users)
    stride = np.int64(num_items + 1)

    def draw(rows: np.ndarray) -> np.ndarray:
        u = rng.random(len(rows))
        uniform = 1 + np.minimum((u * num_items).astype(np.int64), num_items - 1)
        c = categories[rows]
        offset = np.minimum((u * category_size[c]).astype(np.int64), category_size[c] - 1)
        in_category = by_category[category_start[c] + offset]
        return np.where(hard[rows], in_category, uniform)

    def owned(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users[rows].astype(np.int64) * stride + items
        pos = np.minimum(np.searchsorted(owned_keys, keys), len(owned_keys) - 1)
        return owned_keys[pos] == keys

    out = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    for _ in range(max_rounds):
        if not len(pending):
            break
        out[pending] = draw(pending)
        pending = pending[owned(pending, out[pending])]
    for row in pending:  # exact fallback
        pool = (
            by_category[
                category_start[categories[row]] : category_start[categories[row]]
                + category_size[categories[row]]
            ]
            if hard[row]
            else np.arange(1, num_items + 1)
        )
        lo = np.searchsorted(owned_keys, users[row] * stride)
        hi = np.searchsorted(owned_keys, (users[row] + 1) * stride)
        pool = np.setdiff1d(pool, owned_keys[lo:hi] - users[row] * stride)
        if not len(pool):
            raise ValueError(f"user {users[row]} has interacted with every item: no negative")
        out[row] = pool[rng.integers(len(pool))]
    return out.astype(np.int32)


def ranking_samples(
    data: MultimodalData,
    max_len: int,
    *,
    num_negatives: int = 1,
    hard_negative_fraction: float = 0.5,
    seed: int = 0,
    max_train_per_user: int | None = None,
) -> dict[str, RankingSplit]:
    """Positives and sampled negatives for ranking (CTR) models, leave-one-out by time.

    Args:
        data: Every sequence must have >= 3 items.
        max_len: History length L (the last L items strictly before the event).
        num_negatives: Negatives per positive (>= 0).
        hard_negative_fraction: Share of them drawn from the positive's category, in [0, 1]
            (the count is ``round(num_negatives * fraction)``).
        seed: Seed of the negative draws (each split has its own stream).
        max_train_per_user: If set, only each user's last this many training events are used.

    Returns:
        ``{"train", "valid", "test"}`` -> :class:`RankingSplit`; rows event by event (users in
        order, time within a user), each positive followed by its negatives.
    """
    max_len = _check_int("max_len", max_len, 1)
    num_negatives = _check_int("num_negatives", num_negatives, 0)
    hard_negative_fraction = _check_float(
        "hard_negative_fraction", hard_negative_fraction, 0.0, 1.0
    )
    seed = _check_int("seed", seed, 0)
    flat, starts, lengths = _flatten(data.sequences)
    if len(lengths) == 0 or lengths.min() < 3:
        raise ValueError("ranking_samples needs >= 3 items per user (train, valid, test)")
    num_items = data.num_items
    users = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    step = np.arange(len(flat)) - np.repeat(starts, lengths)  # position within the user
    user_len = lengths[users]
    train_lo = np.ones_like(step)
    if max_train_per_user is not None:
        keep = _check_int("max_train_per_user", max_train_per_user, 1)
        train_lo = np.maximum(1, user_len - 2 - keep)
    positions = {
        "train": np.flatnonzero((step >= train_lo) & (step < user_len - 2)),
        "valid": np.flatnonzero(step == user_len - 2),
        "test": np.flatnonzero(step == user_len - 1),
    }
    owned_keys = np.sort(users * (num_items + 1) + flat)
    item_cat = np.asarray(data.item_category, np.int64)
    by_category = (1 + np.argsort(item_cat[1:], kind="stable")).astype(np.int64)
    category_size = np.bincount(item_cat[1:], minlength=data.num_categories)
    category_start = np.concatenate([[0], np.cumsum(category_size)[:-1]])
    owned_per_category = np.bincount(
        users * data.num_categories + item_cat[flat], minlength=len(lengths) * data.num_categories
    ).reshape(len(lengths), data.num_categories)
    num_hard = int(round(num_negatives * hard_negative_fraction))

    out = {}
    streams = np.random.SeedSequence(seed).spawn(len(positions))
    for (split, pos), stream in zip(positions.items(), streams, strict=True):
        rng = np.random.default_rng(stream)
        n = len(pos)
        pos_users = users[pos]
        history = _window_before(flat, starts[pos_users], pos, max_len)
        targets = np.empty((n, 1 + num_negatives), np.int32)
        targets[:, 0] = flat[pos]
        if num_negatives:
            rows = np.repeat(np.arange(n), num_negatives)
            cats = item_cat[flat[pos]][rows]
            want_hard = np.tile(np.arange(num_negatives) < num_hard, n)
            room = owned_per_category[pos_users[rows], cats] < category_size[cats]
            targets[:, 1:] = _draw_negatives(
                rng,
                pos_users[rows],
                cats,
                want_hard & room,
                owned_keys=owned_keys,
                num_items=num_items,
                by_category=by_category,
                category_start=category_start,
                category_size=category_size,
            ).reshape(n, num_negatives)
        label = np.zeros((n, 1 + num_negatives), np.float32)
        label[:, 0] = 1.0
        out[split] = RankingSplit(
            user=np.repeat(pos_users, 1 + num_negatives).astype(np.int32),
            history=np.repeat(history, 1 + num_negatives, axis=0),
            target=targets.ravel(),
            label=label.ravel(),
        )
    return out


# =============================================================================
# Readers: shared event processing.
# =============================================================================

_WORD = re.compile(r"[a-z0-9]+")


def hash_title(title: str | bytes, text_vocab: int) -> list[int]:
    """Token ids ``1 + crc32(word) % (text_vocab - 1)`` of a title's lower-cased words."""
    if isinstance(title, bytes):
        title = title.decode("utf-8", errors="replace")
    return [1 + zlib.crc32(w.encode()) % (text_vocab - 1) for w in _WORD.findall(title.lower())]


def _title_tokens(
    titles: Sequence[str | bytes], text_len: int, text_vocab: int
) -> tuple[np.ndarray, list[list[int]]]:
    """Hashed tokens ``[I+1, T]`` (row 0 pad, truncated to T) and every title's full id list."""
    tokens = np.zeros((len(titles) + 1, text_len), np.int32)
    words = []
    for i, title in enumerate(titles, start=1):
        ids = hash_title(title, text_vocab)
        tokens[i, : min(len(ids), text_len)] = ids[:text_len]
        words.append(ids)
    return tokens, words


def _projected_bag_of_words(
    words: Sequence[Sequence[int]], text_vocab: int, feature_dim: int, seed: int
) -> np.ndarray:
    """``[I+1, F]``: each L2-normalised bag of words through a fixed N(0, 1/F) projection.

    Computed item by item from the id lists, so no dense ``[I, vocab]`` count matrix exists.
    """
    proj = np.random.default_rng(seed).standard_normal((text_vocab, feature_dim))
    proj /= math.sqrt(feature_dim)
    out = np.zeros((len(words) + 1, feature_dim), np.float32)
    for i, ids in enumerate(words, start=1):
        if ids:
            unique, counts = np.unique(np.asarray(ids), return_counts=True)
            out[i] = counts @ proj[unique] / np.linalg.norm(counts)
    return out


def _k_core(
    user_code: np.ndarray, item_code: np.ndarray, min_len: int, item_min_count: int
) -> np.ndarray:
    """Boolean mask of the events that survive the iterative user / item k-core filter."""
    keep = np.ones(len(user_code), dtype=bool)
    while True:
        users_ok = np.bincount(user_code[keep], minlength=user_code.max() + 1) >= min_len
        items_ok = np.bincount(item_code[keep], minlength=item_code.max() + 1) >= item_min_count
        new = keep & users_ok[user_code] & items_ok[item_code]
        if new.sum() == keep.sum():
            return new
        keep = new


def _events_to_sequences(
    user_keys: np.ndarray,
    item_keys: np.ndarray,
    times: np.ndarray,
    *,
    min_len: int,
    item_min_count: int,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """(sequences of ids 1..I, raw item key of each id 1..I, raw user key per user).

    Events are sorted by (user, time), stable (file order breaks ties); repeated (user, item)
    events keep the first; then the k-core filter; then items and users are re-indexed in
    sorted order of their raw keys.
    """
    if len(user_keys) == 0:
        raise ValueError("no interactions found")
    user_vocab, user_code = np.unique(user_keys, return_inverse=True)
    item_vocab, item_code = np.unique(item_keys, return_inverse=True)
    order = np.lexsort((np.asarray(times, np.float64), user_code))
    user_code, item_code = user_code[order], item_code[order]
    pair = user_code.astype(np.int64) * len(item_vocab) + item_code
    _, first = np.unique(pair, return_index=True)
    first.sort()
    user_code, item_code = user_code[first], item_code[first]
    keep = _k_core(user_code, item_code, min_len, item_min_count)
    user_code, item_code = user_code[keep], item_code[keep]
    if not len(user_code):
        raise ValueError(
            f"no user is left after the k-core filter (min_len={min_len}, "
            f"item_min_count={item_min_count})"
        )
    kept_items, item_id = np.unique(item_code, return_inverse=True)
    kept_users, user_id = np.unique(user_code, return_inverse=True)
    bounds = np.flatnonzero(np.diff(user_id)) + 1  # user_id is sorted (lexsort above)
    sequences = tuple(s.astype(np.int32) + 1 for s in np.split(item_id, bounds))
    return sequences, item_vocab[kept_items], user_vocab[kept_users]


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return _as_str(value.item())
    return str(value)


# =============================================================================
# MovieLens (TFDS).
# =============================================================================


def _read_all(source: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, list]:
    """Every record's ``fields``, in batches where the source supports ``__getitems__``."""
    out: dict[str, list] = {f: [] for f in fields}
    n = len(source)
    batch = 65536
    getitems = getattr(source, "__getitems__", None)
    for lo in range(0, n, batch):
        idx = list(range(lo, min(n, lo + batch)))
        records = getitems(idx) if getitems is not None else [source[i] for i in idx]
        for record in records:
            for f in fields:
                out[f].append(record[f])
    return out


def load_movielens(
    data_dir: str | os.PathLike | None,
    *,
    name: str = "movielens/1m-ratings",
    min_len: int = 5,
    item_min_count: int | None = None,
    text_len: int = 16,
    text_vocab: int = 8192,
    feature_dim: int = 64,
    seed: int = 0,
) -> MultimodalData:
    """MovieLens ratings from TFDS as implicit-feedback sequences (text modality only).

    Every rating is an interaction; a user's sequence is ordered by ``timestamp`` (stable on
    ties). Category = the movie's first genre (index of TFDS's genre ``ClassLabel``; movies
    without a genre share one extra category). Text = hashed title words; ``text_features`` =
    the L2-normalised title bag of words through a fixed random projection (seeded). There
    is no image: ``image_tokens`` are zeros ``[I+1, 1, 1]`` and ``image_features`` zeros
    ``[I+1, feature_dim]``; ``modalities == ("text",)``.

    Args:
        data_dir: TFDS data directory (``None`` or ``""``: TFDS's default).
        name: TFDS name of a MovieLens ratings config.
        min_len: k-core threshold on users (>= 3).
        item_min_count: k-core threshold on items (default ``min_len``).
        text_len: Title tokens kept per item.
        text_vocab: Hash vocabulary size (id 0 is padding).
        feature_dim: Dimension of ``text_features``.
        seed: Seed of the random projection.

    Raises:
        FileNotFoundError: the data set is not prepared under ``data_dir`` (says how to).
    """
    from jaxpapers.data import tfds as jp_tfds  # pylint: disable=g-import-not-at-top

    min_len = _check_int("min_len", min_len, 3)
    item_min_count = _check_int(
        "item_min_count", min_len if item_min_count is None else item_min_count, 1
    )
    try:  # registers the builder class (not imported eagerly by tensorflow_datasets 4.9)
        import tensorflow_datasets.structured.movielens  # noqa: F401  pylint: disable=g-import-not-at-top
    except ImportError:  # pragma: no cover - TFDS layout changed; the wrapper still tries
        pass
    # Not prepared -> FileNotFoundError naming the directory and the `tfds build` command.
    source = jp_tfds.data_source(name, split="train", data_dir=data_dir or None)
    fields = ("user_id", "movie_id", "timestamp", "movie_title", "movie_genres")
    records = _read_all(source, fields)
    user_keys = np.array([_as_str(v) for v in records["user_id"]])
    item_keys = np.array([_as_str(v) for v in records["movie_id"]])
    times = np.array([float(np.asarray(t)) for t in records["timestamp"]])
    sequences, items, _ = _events_to_sequences(
        user_keys, item_keys, times, min_len=min_len, item_min_count=item_min_count
    )
    title_of: dict[str, str] = {}
    genre_of: dict[str, int] = {}
    for key, title, genres in zip(
        item_keys, records["movie_title"], records["movie_genres"], strict=True
    ):
        if key not in title_of:
            title_of[key] = _as_str(title)
            genres = np.asarray(genres).ravel()
            genre_of[key] = int(genres[0]) if len(genres) else -1
    raw_genre = np.array([genre_of[k] for k in items])
    genre_values, category = np.unique(raw_genre, return_inverse=True)
    tokens, words = _title_tokens([title_of[k] for k in items], text_len, text_vocab)
    text_features = _projected_bag_of_words(words, text_vocab, feature_dim, seed)
    num_items = len(items)
    names = _genre_names(source)
    category_names = [
        "none" if g < 0 else (names[g] if names and g < len(names) else str(g))
        for g in genre_values
    ]
    lengths = np.array([len(s) for s in sequences])
    info = _summary(name, "movielens", sequences, num_items, len(genre_values), ("text",), lengths)
    info["category_names"] = category_names
    return MultimodalData(
        name=name,
        num_users=len(sequences),
        num_items=num_items,
        num_categories=len(genre_values),
        item_category=np.concatenate([[0], category]).astype(np.int32),
        image_tokens=np.zeros((num_items + 1, 1, 1), np.float32),
        text_tokens=tokens,
        text_vocab=text_vocab,
        image_features=np.zeros((num_items + 1, feature_dim), np.float32),
        text_features=text_features,
        sequences=sequences,
        modalities=("text",),
        info=info,
    )


def _genre_names(source: Any) -> list[str] | None:
    try:
        return list(source.dataset_info.features["movie_genres"].feature.names)
    except Exception:  # pylint: disable=broad-except  (mock sources carry no dataset_info)
        return None


# =============================================================================
# Amazon reviews + metadata + precomputed features.
# =============================================================================

AMAZON_LAYOUT = """\
data_dir/
  reviews.jsonl[.gz]     one JSON object per line: user_id | reviewerID,
                         parent_asin | asin, timestamp | unixReviewTime
  meta.jsonl[.gz]        one JSON object per item: parent_asin | asin, title,
                         main_category and/or categories (or category)
  item_ids.txt           one item id (parent_asin / asin) per line
  text_features.npy      [len(item_ids), F_text] float, row r = item_ids.txt line r
                         (e.g. a sentence encoder over the title / description)
  image_features.npy     [len(item_ids), F_image] float, same rows (e.g. CLIP image embeddings)
(Amazon Reviews 2018 or 2023 files of one category, renamed; the two .npy files are computed
once, elsewhere, by the encoders of your choice.)"""


def _find(data_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _json_lines(path: pathlib.Path) -> Iterable[tuple[int, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error


def _pick(record: dict, keys: Sequence[str], path: pathlib.Path, number: int) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    raise ValueError(f"{path}:{number}: needs one of the keys {list(keys)}")


def _amazon_category(record: dict, level: int | None) -> str:
    """main_category, else the ``level``-th entry of categories / category (see load_amazon)."""

    def path_of(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and isinstance(value[0], list):
            return [str(v) for v in value[0]]  # 2014 format: list of category paths
        if isinstance(value, list):
            return [str(v) for v in value]
        return []

    path = path_of(record.get("categories")) or path_of(record.get("category"))
    main = record.get("main_category") or ""
    if level is None:
        return main or (path[0] if path else "unknown")
    return path[min(level, len(path) - 1)] if path else (main or "unknown")


def load_amazon(
    data_dir: str | os.PathLike,
    *,
    min_len: int = 5,
    item_min_count: int | None = None,
    category_level: int | None = None,
    text_len: int = 32,
    text_vocab: int = 8192,
    name: str = "amazon",
) -> MultimodalData:
    """Amazon review sequences with title tokens and precomputed text / image features.

    Expected layout::

        data_dir/
          reviews.jsonl[.gz]     one JSON object per line: user_id | reviewerID,
                                 parent_asin | asin, timestamp | unixReviewTime
          meta.jsonl[.gz]        one JSON object per item: parent_asin | asin, title,
                                 main_category and/or categories (or category)
          item_ids.txt           one item id (parent_asin / asin) per line
          text_features.npy      [len(item_ids), F_text], row r = item_ids.txt line r
          image_features.npy     [len(item_ids), F_image], same rows

    Each review is an interaction (time unit irrelevant: only the order is used). Category:
    with ``category_level=None``, ``main_category``, else the first entry of ``categories``
    (``category``); with an int, that level of the category path (clipped to its last entry),
    else ``main_category``; items with neither are "unknown". Items without metadata have
    empty titles; items missing from ``item_ids.txt`` get zero features. ``image_tokens`` is
    the image feature as a single token ``[I+1, 1, F_image]``. The two feature files may have
    different widths (``F_text != F_image``); the feature arrays are memory-mapped and only
    the kept items' rows are read.

    Raises:
        FileNotFoundError: naming every missing file, with the layout above.
        ValueError: a malformed line (file and line number), or mismatched feature rows.
    """
    min_len = _check_int("min_len", min_len, 3)
    item_min_count = _check_int(
        "item_min_count", min_len if item_min_count is None else item_min_count, 1
    )
    if not data_dir:
        raise ValueError(f"load_amazon needs data_dir (--config.data.data_dir):\n{AMAZON_LAYOUT}")
    root = pathlib.Path(data_dir)
    reviews, meta = _find(root, "reviews.jsonl"), _find(root, "meta.jsonl")
    missing = [
        name
        for name, found in [("reviews.jsonl[.gz]", reviews), ("meta.jsonl[.gz]", meta)]
        if found is None
    ]
    missing += [
        f
        for f in ("item_ids.txt", "text_features.npy", "image_features.npy")
        if not (root / f).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"Amazon data incomplete in {os.fspath(root)!r}: missing {', '.join(missing)}. "
            f"jaxpapers never downloads data; expected layout:\n{AMAZON_LAYOUT}"
        )
    assert reviews is not None and meta is not None

    users, items, times = [], [], []
    for number, record in _json_lines(reviews):
        users.append(str(_pick(record, ("user_id", "reviewerID"), reviews, number)))
        items.append(str(_pick(record, ("parent_asin", "asin"), reviews, number)))
        times.append(float(_pick(record, ("timestamp", "unixReviewTime"), reviews, number)))
    sequences, item_keys, _ = _events_to_sequences(
        np.array(users),
        np.array(items),
        np.array(times),
        min_len=min_len,
        item_min_count=item_min_count,
    )
    wanted = {k: i for i, k in enumerate(item_keys.tolist(), start=1)}
    titles = [""] * len(item_keys)
    categories = ["unknown"] * len(item_keys)
    for number, record in _json_lines(meta):
        key = str(_pick(record, ("parent_asin", "asin"), meta, number))
        if key in wanted:
            titles[wanted[key] - 1] = _as_str(record.get("title") or "")
            categories[wanted[key] - 1] = _amazon_category(record, category_level)
    category_names, category = np.unique(np.array(categories), return_inverse=True)
    tokens, _ = _title_tokens(titles, text_len, text_vocab)

    ids = (root / "item_ids.txt").read_text(encoding="utf-8").split()
    feature_rows = {"text_features.npy": None, "image_features.npy": None}
    for file in feature_rows:
        array = np.load(root / file, mmap_mode="r")
        if array.ndim != 2 or array.shape[0] != len(ids):
            raise ValueError(
                f"{root / file} must be [len(item_ids.txt)={len(ids)}, F], got {array.shape}"
            )
        feature_rows[file] = array
    row_of = {k: r for r, k in enumerate(ids)}
    present = np.array([k in row_of for k in item_keys.tolist()])
    src = np.array([row_of.get(k, 0) for k in item_keys.tolist()], dtype=np.int64)
    num_items = len(item_keys)

    def table(array: np.ndarray) -> np.ndarray:
        out = np.zeros((num_items + 1, array.shape[1]), np.float32)
        if present.any():
            out[1:][present] = np.asarray(array[src[present]], np.float32)
        return out

    text_features = table(feature_rows["text_features.npy"])
    image_features = table(feature_rows["image_features.npy"])
    lengths = np.array([len(s) for s in sequences])
    info = _summary(name, "amazon", sequences, num_items, len(category_names), MODALITIES, lengths)
    info["category_names"] = [str(c) for c in category_names]
    info["items_with_features"] = int(present.sum())
    return MultimodalData(
        name=name,
        num_users=len(sequences),
        num_items=num_items,
        num_categories=len(category_names),
        item_category=np.concatenate([[0], category]).astype(np.int32),
        image_tokens=image_features[:, None, :].copy(),
        text_tokens=tokens,
        text_vocab=text_vocab,
        image_features=image_features,
        text_features=text_features,
        sequences=sequences,
        modalities=MODALITIES,
        info=info,
    )


# =============================================================================
# Dispatch on a config.
# =============================================================================


def _keyword_names(fn) -> set[str]:
    return {
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def load(cfg: Any) -> MultimodalData:
    """The data set named by ``cfg.source`` (a ConfigDict or a mapping).

    ``"synthetic"`` calls :func:`synthetic_multimodal`, ``"movielens"``
    :func:`load_movielens`, ``"amazon"`` :func:`load_amazon`; every other key of ``cfg`` whose
    name is a keyword argument of that function is passed on (so synthetic keys are the
    generator's keyword names); keys that are not (e.g. ``data_dir`` for synthetic data) are
    ignored, since one data block serves all sources.
    """
    values = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    source = values.pop("source", None)
    functions = {
        "synthetic": synthetic_multimodal,
        "movielens": load_movielens,
        "amazon": load_amazon,
    }
    if source not in functions:
        raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
    fn = functions[source]
    kwargs = {k: v for k, v in values.items() if k in _keyword_names(fn)}
    if source != "synthetic":
        data_dir = kwargs.pop("data_dir", None)
        return fn(data_dir, **kwargs)
    return fn(**kwargs)
