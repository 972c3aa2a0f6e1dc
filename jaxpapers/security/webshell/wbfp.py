"""Weighted Behavioral Function Profiling (WBFP): function weights, file profiles and
the choice of in-context demonstrations.

BFAD weights every function by how much more often it appears in malicious than in
benign code, profiles each file by the weighted functions it calls, and shows the LLM
the labelled training files whose profiles are most similar to the file in question.
The paper gives the idea, not the formulas; ours are:

* **Weight** of function ``f`` (fitted on a labelled training corpus by
  :func:`fit_weights`): the smoothed log ratio of its document frequencies,

  .. math:: w_f = \\max\\Big(0,\\ \\log \\frac{(m_f + \\alpha) / (M + 2\\alpha)}
                                          {(b_f + \\alpha) / (B + 2\\alpha)}\\Big)

  where ``m_f`` of the ``M`` malicious files and ``b_f`` of the ``B`` benign files call
  ``f`` (``alpha = 1``, Laplace). Document frequency, not raw counts, so one file that
  calls ``chr`` 10,000 times does not dominate. Functions used more by benign code get
  weight 0 rather than a negative one (``clip=False`` keeps the sign): a profile is a
  description of *suspicious behaviour*, and similarity should be driven by it.
  Functions seen fewer than ``min_df`` times in the whole corpus get no weight.
* **Profile** of a file: ``p_f = w_f (1 + log c_f)`` for each function it calls
  ``c_f > 0`` times (sublinear in the count), as a sparse dict.
* **Similarity**: cosine of two profiles; two empty profiles (nothing suspicious in
  either) have similarity 1, an empty and a non-empty one 0 — so a file with no
  suspicious calls is shown files that also have none.
* **Selection** (:func:`select_demonstrations`): the ``k`` most similar training files
  (ties broken by index, so deterministic), optionally ``balanced`` — the ``k/2`` most
  similar of each label. ``random`` and ``none`` are the comparisons the paper makes.

Everything here is NumPy/Python on small sparse dicts; the expensive parts of BFAD are
parsing (:mod:`.critical`) and the LLM.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

SELECTIONS = ("wbfp", "random", "none")

Profile = dict[str, float]


def fit_weights(
    functions: Sequence[Mapping[str, int]],
    labels: Sequence[int],
    *,
    alpha: float = 1.0,
    min_df: int = 1,
    clip: bool = True,
) -> dict[str, float]:
    """Function weights from per-file call counts and labels (1 = malicious).

    Args:
      functions: per training file, the functions it calls and how often.
      labels: per file, 1 for a WebShell and 0 for benign code.
      alpha: Laplace smoothing of the document frequencies (> 0).
      min_df: functions called by fewer files than this get no weight.
      clip: drop non-positive weights (functions not more malicious than benign).
    """
    if len(functions) != len(labels):
        raise ValueError(f"{len(functions)} files but {len(labels)} labels")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    labels = [int(y) for y in labels]
    if any(y not in (0, 1) for y in labels):
        raise ValueError("labels must be 0 (benign) or 1 (WebShell)")
    n_mal = sum(labels)
    n_ben = len(labels) - n_mal
    if n_mal == 0 or n_ben == 0:
        raise ValueError(
            f"WBFP needs both classes in its training corpus (got {n_mal} malicious, "
            f"{n_ben} benign)"
        )
    df_mal: Counter[str] = Counter()
    df_ben: Counter[str] = Counter()
    for counts, y in zip(functions, labels):
        present = [f for f, c in counts.items() if c > 0]
        (df_mal if y else df_ben).update(present)
    weights = {}
    for f in set(df_mal) | set(df_ben):
        if df_mal[f] + df_ben[f] < min_df:
            continue
        p_mal = (df_mal[f] + alpha) / (n_mal + 2 * alpha)
        p_ben = (df_ben[f] + alpha) / (n_ben + 2 * alpha)
        w = math.log(p_mal / p_ben)
        if w > 0 or not clip:
            weights[f] = w
    return weights


def profile(counts: Mapping[str, int], weights: Mapping[str, float]) -> Profile:
    """The weighted function profile of one file (sparse)."""
    return {
        f: weights[f] * (1.0 + math.log(c)) for f, c in counts.items() if c > 0 and f in weights
    }


def similarity(a: Profile, b: Profile) -> float:
    """Cosine similarity of two profiles (1 for two empty profiles, 0 for one)."""
    return float(similarity_matrix([a], [b])[0, 0])


def similarity_matrix(queries: Sequence[Profile], pool: Sequence[Profile]) -> np.ndarray:
    """``[len(queries), len(pool)]`` cosine similarities (dense; vocabulary from both);
    two empty profiles have similarity 1, an empty and a non-empty one 0."""
    vocab = sorted({f for p in (*queries, *pool) for f in p})
    index = {f: i for i, f in enumerate(vocab)}

    def dense(profiles: Sequence[Profile]) -> np.ndarray:
        x = np.zeros((len(profiles), len(vocab)))
        for row, p in enumerate(profiles):
            for f, v in p.items():
                x[row, index[f]] = v
        return x

    q, p = dense(queries), dense(pool)
    qn, pn = np.linalg.norm(q, axis=1), np.linalg.norm(p, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = (q @ p.T) / np.outer(qn, pn)
    both_empty = (qn[:, None] == 0) & (pn[None, :] == 0)
    sim = np.where(both_empty, 1.0, np.nan_to_num(sim, nan=0.0))
    return sim


def select_demonstrations(
    sim: np.ndarray,
    pool_labels: Sequence[int],
    k: int,
    *,
    method: str = "wbfp",
    balanced: bool = False,
    rng: np.random.Generator | None = None,
    exclude: Iterable[int] = (),
) -> list[int]:
    """Indices into the pool of the demonstrations for one query, most similar last.

    Args:
      sim: ``[len(pool)]`` similarities of the query to the pool (ignored for
        ``random``/``none``).
      pool_labels: the pool's labels.
      k: number of demonstrations.
      method: ``wbfp`` (most similar), ``random`` or ``none``.
      balanced: take ``k // 2`` per label (``wbfp`` and ``random``).
      rng: for ``random``.
      exclude: pool indices never chosen (the query itself when it is in the pool).

    The most similar demonstration comes last, nearest to the query in the prompt.
    """
    if method not in SELECTIONS:
        raise ValueError(f"unknown demonstration selection {method!r}; choose from {SELECTIONS}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if method == "none" or k == 0:
        return []
    sim = np.asarray(sim, dtype=np.float64)
    labels = np.asarray(pool_labels)
    if sim.shape != labels.shape:
        raise ValueError(f"sim has shape {sim.shape} but the pool has {labels.shape[0]} labels")
    allowed = np.ones(len(labels), bool)
    allowed[list(exclude)] = False
    if method == "random":
        if rng is None:
            raise ValueError("random selection needs an rng")
        order = rng.permutation(len(labels))
    else:
        # Most similar first; a stable sort keeps ties in pool order.
        order = np.argsort(-sim, kind="stable")
    order = order[allowed[order]]
    if balanced:
        # k // 2 of each label, the rest (odd k, or a label short of files) from the order.
        picked = [j for y in (0, 1) for j in order[labels[order] == y][: k // 2]]
        taken = set(picked)
        picked += [j for j in order if j not in taken][: k - len(picked)]
        chosen = np.asarray(picked, dtype=int)
        if method == "wbfp":
            chosen = chosen[np.argsort(-sim[chosen], kind="stable")]
        else:  # no label always nearest the query
            chosen = rng.permutation(chosen)
    else:
        chosen = order[:k]
    return [int(i) for i in chosen[::-1]]


def top_weights(weights: Mapping[str, float], n: int = 20) -> list[tuple[str, float]]:
    """The ``n`` heaviest functions (for reports and plots)."""
    return sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
