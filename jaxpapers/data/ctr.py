"""Click-through-rate (CTR) datasets: a synthetic generator and Criteo / Avazu.

Every dataset is returned as a :class:`CTRDataset`: a few categorical fields
per impression, each already mapped to dense integer ids, plus a binary click
label, split into train / valid / test. Id 0 of every field is reserved for
out-of-vocabulary (OOV), rare or missing values, so a model can use one
embedding table of ``vocab_sizes[f]`` rows per field.

Synthetic data (:func:`synthetic_ctr`)
    The embedded default for the FGCNN paper (Liu et al., 2019, "Feature
    Generation by Convolutional Neural Network for Click-Through Rate
    Prediction"). FGCNN runs a CNN over *neighbouring* fields to generate new
    features and then an IPNN (inner products of all field pairs + an MLP)
    classifies. The generator therefore plants three kinds of signal in a
    known logit: first-order effects (what logistic regression captures),
    low-rank *global* pairwise interactions between all fields (what
    FM / inner-product models capture), and *local* non-linear interactions
    among consecutive fields, tanh units over windows of neighbouring fields
    (what a CNN with tanh over neighbouring field embeddings computes).
    Because the true click probability is known, every split carries the
    Bayes-optimal ``oracle_prob`` and ``info`` reports the oracle test AUC /
    logloss, plus the AUC of the additive ("first-order") and second-order
    parts of the true logit, so a model's gap to the optimum, and which kind
    of signal it misses, is visible. The pairwise factors are centred under
    the value distribution, so the pairwise term has no main effects at all.

The raw Criteo / Avazu readers live in :mod:`jaxpapers.data.ctr_files` and
return the same containers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from jaxpapers.recsys import metrics

__all__ = ["CTRSplit", "CTRDataset", "synthetic_ctr", "SPLIT_NAMES"]

_LOG = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")


# =============================================================================
# Containers.
# =============================================================================


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: identity equality
class CTRSplit:
    """One split of a CTR dataset.

    Attributes:
        features: (n, num_fields) int32 ids; may be an ``np.memmap``.
        labels: (n,) float32 clicks in {0., 1.}.
        oracle_prob: (n,) float32 true click probability (synthetic data
            only), else None.
    """

    features: np.ndarray
    labels: np.ndarray
    oracle_prob: np.ndarray | None = None

    def __post_init__(self):
        if self.features.ndim != 2:
            raise ValueError(f"features must be 2-D, got shape {self.features.shape}.")
        if self.labels.shape != (self.features.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.features.shape[0]},), got {self.labels.shape}."
            )
        if self.oracle_prob is not None and self.oracle_prob.shape != self.labels.shape:
            raise ValueError(
                f"oracle_prob must have shape {self.labels.shape}, got {self.oracle_prob.shape}."
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class CTRDataset:
    """A categorical CTR dataset with fixed train / valid / test splits.

    Attributes:
        name: Dataset name, e.g. ``"synthetic"``, ``"criteo"``, ``"avazu"``.
        field_names: One name per field (column of ``features``).
        vocab_sizes: Per field; valid ids are 0..vocab_sizes[f]-1 and id 0 is
            reserved for OOV / rare / missing values.
        train: Training split.
        valid: Validation split.
        test: Test split.
        info: JSON-serialisable facts about the data (CTR per split, oracle
            metrics for synthetic data, malformed-line counts for raw files,
            preprocessing settings, ...).
    """

    name: str
    field_names: tuple[str, ...]
    vocab_sizes: tuple[int, ...]
    train: CTRSplit
    valid: CTRSplit
    test: CTRSplit
    info: dict

    def __post_init__(self):
        if len(self.field_names) != len(self.vocab_sizes):
            raise ValueError(
                f"{len(self.field_names)} field names but {len(self.vocab_sizes)} vocab sizes."
            )
        for split_name in SPLIT_NAMES:
            split = getattr(self, split_name)
            if split.features.shape[1] != len(self.vocab_sizes):
                raise ValueError(
                    f"{split_name}.features has {split.features.shape[1]} "
                    f"columns, expected {len(self.vocab_sizes)} fields."
                )

    @property
    def num_fields(self) -> int:
        return len(self.vocab_sizes)

    def split(self, name: str) -> CTRSplit:
        """Returns the split called ``name`` ("train", "valid" or "test")."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"Unknown split {name!r}; use one of {SPLIT_NAMES}.")
        return getattr(self, name)


# =============================================================================
# Synthetic data.
# =============================================================================

_SYNTH_CHUNK_ROWS = 1 << 16
_CALIBRATION_ROWS = 200_000
# SeedSequence stream ids: model parameters, bias calibration, the splits.
_STREAM_MODEL, _STREAM_CALIBRATION = 0, 1
_STREAM_SPLIT = {"train": 2, "valid": 3, "test": 4}


@dataclasses.dataclass(frozen=True)
class _SyntheticModel:
    """Parameters of the synthetic generative model (see synthetic_ctr)."""

    sample_ids: tuple[np.ndarray, ...]  # per field: ids in sampling order
    sample_cdf: tuple[np.ndarray, ...]  # per field: cumulative probabilities
    first: tuple[np.ndarray, ...]  # per field: (V,) weights w_f
    pair: tuple[np.ndarray, ...]  # per field: (V, k) factors u_f
    local: tuple[tuple[np.ndarray, ...], ...]  # per window: (V,) factors c
    local_width: int
    local_gain: float
    first_coef: float
    pair_coef: float
    local_coef: float  # includes 1 / sqrt(E[tanh(gain Z)^2])
    local_slope: float  # E[sech(gain Z)^2], see _tanh_moments
    bias: float = 0.0


def _tanh_moments(gain: float) -> tuple[float, float]:
    """Gaussian moments of t -> tanh(t) for t = gain * Z, Z ~ N(0, 1).

    Returns:
        rms: sqrt(E[tanh(t)^2]).
        slope: E[sech(t)^2] = E[t tanh(t)] / E[t^2] (Stein's lemma), the
            coefficient of the best linear approximation tanh(t) ~ slope * t.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    t = gain * nodes
    rms = math.sqrt(weights @ np.tanh(t) ** 2)
    slope = float(weights @ np.cosh(t) ** -2)
    return rms, slope


def _standardize(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Centres/scales ``values`` (rows = ids) to mean 0, var 1 under probs."""
    mean = probs @ values
    centred = values - mean
    var = probs @ (centred * centred)
    return centred / np.sqrt(np.maximum(var, 1e-12))


def _value_distribution(
    rng: np.random.Generator, vocab: int, zipf_exponent: float, missing_prob: float
) -> np.ndarray:
    """Zipf-like probabilities over ids 0..vocab-1 (id 0 = missing)."""
    ranks = np.arange(1, vocab, dtype=np.float64)
    zipf = ranks**-zipf_exponent
    zipf *= (1.0 - missing_prob) / zipf.sum()
    probs = np.zeros(vocab, dtype=np.float64)
    probs[0] = missing_prob
    probs[1 + rng.permutation(vocab - 1)] = zipf
    return probs


def _build_synthetic_model(
    seed: int,
    num_fields: int,
    vocab_min: int,
    vocab_max: int,
    zipf_exponent: float,
    missing_prob: float,
    first_order_scale: float,
    pairwise_scale: float,
    local_scale: float,
    local_width: int,
    local_gain: float,
    interaction_rank: int,
) -> _SyntheticModel:
    """Draws vocabularies, value distributions and all logit parameters."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_MODEL, 0]))
    log_vocab = rng.uniform(math.log(vocab_min), math.log(vocab_max), size=num_fields)
    vocabs = np.clip(np.round(np.exp(log_vocab)).astype(np.int64), vocab_min, vocab_max)
    sample_ids, sample_cdf, probs_list = [], [], []
    first, pair = [], []
    for vocab in vocabs:
        probs = _value_distribution(rng, int(vocab), zipf_exponent, missing_prob)
        order = np.argsort(-probs, kind="stable")
        cdf = np.cumsum(probs[order])
        cdf[-1] = 1.0
        sample_ids.append(order.astype(np.int32))
        sample_cdf.append(cdf)
        probs_list.append(probs)
        first.append(_standardize(rng.standard_normal(int(vocab)), probs))
        pair.append(_standardize(rng.standard_normal((int(vocab), interaction_rank)), probs))
    num_windows = num_fields - local_width + 1
    local = []
    for start in range(num_windows):
        local.append(
            tuple(
                _standardize(rng.standard_normal(int(vocabs[f])), probs_list[f])
                for f in range(start, start + local_width)
            )
        )
    num_pairs = num_fields * (num_fields - 1) // 2
    tanh_rms, tanh_slope = _tanh_moments(local_gain)
    return _SyntheticModel(
        sample_ids=tuple(sample_ids),
        sample_cdf=tuple(sample_cdf),
        first=tuple(first),
        pair=tuple(pair),
        local=tuple(local),
        local_width=local_width,
        local_gain=local_gain,
        first_coef=first_order_scale / math.sqrt(num_fields),
        pair_coef=pairwise_scale / math.sqrt(num_pairs * interaction_rank),
        local_coef=local_scale / (math.sqrt(num_windows) * tanh_rms),
        local_slope=tanh_slope,
    )


def _sample_features(model: _SyntheticModel, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draws (n, num_fields) int32 ids by inverse-CDF sampling."""
    num_fields = len(model.sample_ids)
    out = np.empty((n, num_fields), dtype=np.int32)
    uniforms = rng.random((num_fields, n))
    for f in range(num_fields):
        pos = np.searchsorted(model.sample_cdf[f], uniforms[f], side="right")
        np.minimum(pos, len(model.sample_cdf[f]) - 1, out=pos)
        out[:, f] = model.sample_ids[f][pos]
    return out


def _logit_parts(
    model: _SyntheticModel, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logit terms of the rows ``x``, float64.

    Returns:
        first: first-order term.
        pair: global pairwise (FM) term.
        local: local tanh term.
        local_linear: the linear (additive) part of ``local``,
            local_coef * sum_i slope * t_i, where t_i is the tanh argument of
            window i (exact projection if the t_i were Gaussian).
    """
    n, num_fields = x.shape
    first = np.zeros(n)
    k = model.pair[0].shape[1]
    total = np.zeros((n, k))
    sq_norms = np.zeros(n)
    for f in range(num_fields):
        first += model.first[f][x[:, f]]
        u = model.pair[f][x[:, f]]
        total += u
        sq_norms += np.einsum("nk,nk->n", u, u)
    pair = 0.5 * (np.einsum("nk,nk->n", total, total) - sq_norms)
    local = np.zeros(n)
    arguments = np.zeros(n)
    window_scale = model.local_gain / math.sqrt(model.local_width)
    for start, factors in enumerate(model.local):
        t = factors[0][x[:, start]].copy()
        for j in range(1, model.local_width):
            t += factors[j][x[:, start + j]]
        t *= window_scale
        local += np.tanh(t)
        arguments += t
    return (
        model.first_coef * first,
        model.pair_coef * pair,
        model.local_coef * local,
        model.local_coef * model.local_slope * arguments,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _solve_bias(rest: np.ndarray, target_ctr: float) -> float:
    """Bisection for b such that mean(sigmoid(b + rest)) == target_ctr."""
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + rest).mean() < target_ctr:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _generate_split(
    model: _SyntheticModel, seed: int, stream: int, n: int
) -> tuple[CTRSplit, np.ndarray, np.ndarray]:
    """Generates one split chunk by chunk.

    Returns:
        The split and, for diagnostics, float32 logits of the additive oracle
        (bias + first order + linear part of local) and of the second-order
        oracle (additive oracle + pairwise term).
    """
    num_fields = len(model.sample_ids)
    features = np.empty((n, num_fields), dtype=np.int32)
    labels = np.empty(n, dtype=np.float32)
    oracle = np.empty(n, dtype=np.float32)
    additive_logit = np.empty(n, dtype=np.float32)
    pairwise_logit = np.empty(n, dtype=np.float32)
    for chunk, begin in enumerate(range(0, n, _SYNTH_CHUNK_ROWS)):
        end = min(n, begin + _SYNTH_CHUNK_ROWS)
        rng = np.random.default_rng(np.random.SeedSequence([seed, stream, chunk]))
        x = _sample_features(model, rng, end - begin)
        first, pair, local, local_linear = _logit_parts(model, x)
        prob = _sigmoid(model.bias + first + pair + local)
        features[begin:end] = x
        labels[begin:end] = rng.random(end - begin) < prob
        oracle[begin:end] = prob
        additive_logit[begin:end] = model.bias + first + local_linear
        pairwise_logit[begin:end] = model.bias + first + local_linear + pair
    return CTRSplit(features, labels, oracle), additive_logit, pairwise_logit


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


def synthetic_ctr(
    *,
    num_train: int = 2_000_000,
    num_valid: int = 100_000,
    num_test: int = 200_000,
    num_fields: int = 16,
    vocab_min: int = 10,
    vocab_max: int = 100,
    zipf_exponent: float = 1.1,
    missing_prob: float = 0.01,
    first_order_scale: float = 1.0,
    pairwise_scale: float = 0.8,
    local_scale: float = 1.1,
    local_width: int = 3,
    local_gain: float = 1.5,
    interaction_rank: int = 4,
    target_ctr: float = 0.25,
    seed: int = 0,
) -> CTRDataset:
    """Synthetic categorical CTR data with a known click probability.

    Generative model. Fields f = 0..F-1 are independent. Field f has
    vocabulary size V_f, drawn log-uniformly in [vocab_min, vocab_max]. Id 0
    ("missing") has probability ``missing_prob``; ids 1..V_f-1 are a random
    permutation of Zipf ranks r = 1..V_f-1 with probability proportional to
    r^-zipf_exponent. Every per-value parameter below (w_f[v], each of the k
    columns of u_f[v], c_{i,j}[v]) is drawn i.i.d. N(0, 1) and then
    *standardised under the value distribution p_f* (weighted mean 0,
    weighted variance 1). The click logit of a row x = (x_0, ..., x_{F-1})
    is::

        z(x) = b
             + first_order_scale / sqrt(F) * sum_f w_f[x_f]
             + pairwise_scale / sqrt(P k) * sum_{f<g} <u_f[x_f], u_g[x_g]>
             + local_scale / (sqrt(W) rho) * sum_{i=0}^{W-1} tanh(
                   local_gain / sqrt(L) * sum_{j=0}^{L-1} c_{i,j}[x_{i+j}])

    with P = F(F-1)/2 field pairs, k = ``interaction_rank``, L =
    ``local_width``, W = F - L + 1 sliding windows of L consecutive fields
    (each window has its own factor tables c_{i,j}), and
    rho = sqrt(E[tanh(local_gain Z)^2]), Z ~ N(0, 1), a constant computed by
    quadrature. Labels are y ~ Bernoulli(sigmoid(z)).

    * First-order term: std exactly ``first_order_scale``.
    * Global pairwise term: a rank-k FM over *all* field pairs (what FM /
      IPNN inner products represent exactly). Because the u's are centred
      under p, it has zero main effects and std exactly ``pairwise_scale``.
    * Local term: one tanh unit per window of neighbouring fields, i.e.
      exactly what one channel of a width-L convolution with tanh over
      adjacent field embeddings computes (FGCNN's feature generator). Its std
      is approximately ``local_scale`` (exact if the tanh arguments t_i were
      Gaussian). tanh(t) = s t + r(t) splits into a linear part, slope
      s = E[sech(gain Z)^2] (a linear model can learn it, and it gives
      gradient descent a foothold), and an
      odd non-linear residual r, i.e. 3rd- and higher-order interactions
      inside the window with no pairwise part, which only models with
      higher-order capacity (CNN / MLP) can capture.
    * The bias b is solved by bisection so that the mean click probability
      on an independent calibration sample of 200,000 rows is
      ``target_ctr``.

    The three terms are mutually uncorrelated. Diagnostics in ``info`` (on
    the test split): ``oracle_auc`` uses z itself (Bayes optimal);
    ``first_order_oracle_auc`` uses the additive part b + first-order term +
    s * local_coef * sum_i t_i (about the best a model without interactions,
    e.g. logistic regression, can do); ``pairwise_oracle_auc`` adds the
    pairwise term (about the best for a purely second-order model such as
    FM). Defaults (FGCNN's ``default`` config): 16 fields with 10..100
    values each and ``local_gain`` 1.5. With gain 3 and 10..500 values the
    last ~0.02 of oracle AUC (saturated 3rd-order window terms, rare values)
    was out of reach of every model trained from scratch in CPU-minutes
    (IPNN, FM, even the true structure from a random start), so the defaults
    keep the interactions learnable: at 2M train / 200k test rows (seed 0)
    the oracle test AUC is 0.851 and the first-order oracle 0.798.

    Generation is deterministic for a given ``seed`` (bit-identical arrays),
    the three splits are independent draws from the same model, and rows are
    produced in chunks of 65,536 so peak memory is the output arrays plus a
    few tens of MB (2M x 20 takes a few seconds).

    Args:
        num_train: Number of training rows.
        num_valid: Number of validation rows.
        num_test: Number of test rows (>= 2 so that test AUC is defined).
        num_fields: Number of categorical fields F (>= local_width, >= 2).
        vocab_min: Smallest vocabulary size (>= 2, includes the missing id 0).
        vocab_max: Largest vocabulary size.
        zipf_exponent: Skew of the value distribution (> 0).
        missing_prob: Probability that a field is missing (id 0), in [0, 1).
        first_order_scale: Std of the first-order logit term.
        pairwise_scale: Std of the global pairwise (FM) logit term.
        local_scale: (Approximate) std of the local neighbouring-field term.
        local_width: Number of consecutive fields per local window (>= 2).
        local_gain: Gain inside the tanh (> 0); larger is more saturated,
            i.e. a larger non-linear share of the local term.
        interaction_rank: Rank k of the pairwise factors.
        target_ctr: Mean click probability, in (0, 1).
        seed: Random seed (non-negative int).

    Returns:
        A CTRDataset with ``oracle_prob`` set on every split and ``info``
        holding, on the test split, ``oracle_auc`` / ``oracle_logloss``
        (Bayes optimal), ``first_order_oracle_auc`` /
        ``first_order_oracle_logloss`` and ``pairwise_oracle_auc`` (see
        above), plus ``ctr`` per split, ``bias`` and all parameters.
    """
    _check_positive_int("num_train", num_train, 1)
    _check_positive_int("num_valid", num_valid, 1)
    _check_positive_int("num_test", num_test, 2)
    _check_positive_int("num_fields", num_fields, 2)
    _check_positive_int("vocab_min", vocab_min, 2)
    _check_positive_int("vocab_max", vocab_max, vocab_min)
    _check_positive_int("local_width", local_width, 2)
    _check_positive_int("interaction_rank", interaction_rank, 1)
    _check_positive_int("seed", seed, 0)
    if local_width > num_fields:
        raise ValueError(f"local_width ({local_width}) must be <= num_fields ({num_fields}).")
    if not zipf_exponent > 0:
        raise ValueError(f"zipf_exponent must be > 0, got {zipf_exponent}.")
    if not 0.0 <= missing_prob < 1.0:
        raise ValueError(f"missing_prob must be in [0, 1), got {missing_prob}.")
    for name, value in (
        ("first_order_scale", first_order_scale),
        ("pairwise_scale", pairwise_scale),
        ("local_scale", local_scale),
    ):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if not local_gain > 0:
        raise ValueError(f"local_gain must be > 0, got {local_gain}.")
    if not 0.0 < target_ctr < 1.0:
        raise ValueError(f"target_ctr must be in (0, 1), got {target_ctr}.")

    params = dict(
        num_train=num_train,
        num_valid=num_valid,
        num_test=num_test,
        num_fields=num_fields,
        vocab_min=vocab_min,
        vocab_max=vocab_max,
        zipf_exponent=zipf_exponent,
        missing_prob=missing_prob,
        first_order_scale=first_order_scale,
        pairwise_scale=pairwise_scale,
        local_scale=local_scale,
        local_width=local_width,
        local_gain=local_gain,
        interaction_rank=interaction_rank,
        target_ctr=target_ctr,
        seed=seed,
    )
    model = _build_synthetic_model(
        seed,
        num_fields,
        vocab_min,
        vocab_max,
        zipf_exponent,
        missing_prob,
        first_order_scale,
        pairwise_scale,
        local_scale,
        local_width,
        local_gain,
        interaction_rank,
    )

    calib_rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_CALIBRATION, 0]))
    calib_x = _sample_features(model, calib_rng, _CALIBRATION_ROWS)
    first, pair, local, _ = _logit_parts(model, calib_x)
    bias = _solve_bias(first + pair + local, target_ctr)
    model = dataclasses.replace(model, bias=bias)

    splits = {}
    for name, n in (("train", num_train), ("valid", num_valid), ("test", num_test)):
        splits[name], additive, pairwise = _generate_split(model, seed, _STREAM_SPLIT[name], n)
        if name == "test":
            additive_logit, pairwise_logit = additive, pairwise
        del additive, pairwise
    test = splits["test"]

    info: dict[str, Any] = {"generator": "synthetic_ctr", "params": params, "bias": float(bias)}
    info["ctr"] = {name: float(s.labels.mean()) for name, s in splits.items()}
    if 0.0 < info["ctr"]["test"] < 1.0:
        info["oracle_auc"] = metrics.auc(test.labels, test.oracle_prob)
        info["first_order_oracle_auc"] = metrics.auc(test.labels, additive_logit)
        info["pairwise_oracle_auc"] = metrics.auc(test.labels, pairwise_logit)
    else:
        info["oracle_auc"] = info["first_order_oracle_auc"] = None
        info["pairwise_oracle_auc"] = None
    info["oracle_logloss"] = metrics.logloss(test.labels, test.oracle_prob)
    info["first_order_oracle_logloss"] = metrics.logloss(
        test.labels, _sigmoid(additive_logit.astype(np.float64))
    )
    return CTRDataset(
        name="synthetic",
        field_names=tuple(f"f{f:02d}" for f in range(num_fields)),
        vocab_sizes=tuple(len(w) for w in model.first),
        train=splits["train"],
        valid=splits["valid"],
        test=test,
        info=info,
    )
