"""Paired significance tests between two recommendation runs evaluated on the same examples.

The differences the multimodal papers claim (an ablation, a baseline) are often smaller than
the sampling noise of one test set: with 2000 leave-one-out users, NDCG@10 around 0.07 has a
standard error of about 0.005, and an AUC over 3000 rows about 0.009. Much of that noise is
shared by two models scored on the *same* users (a hard user is hard for both), so the
difference is measured far more precisely by pairing than by comparing two means each with its
own error bar. This module does that, from the per-example outputs every run writes at the
end of training (:func:`jaxpapers.core.train.save_outputs`: ``<workdir>/final_outputs/
<split>.npz``; ``rank`` and ``target`` per user for next-item runs, ``prob``, ``label`` and
``user`` per row for ranking runs).

* :func:`per_user` — HR@K / NDCG@K of each user from 0-based full-ranking ranks (their means
  are :func:`jaxpapers.recsys.metrics.hit_rate` / :func:`~jaxpapers.recsys.metrics.ndcg`).
* :func:`paired_difference` — mean of ``a - b`` over paired per-example values, its standard
  error ``std(a - b, ddof=1) / sqrt(n)``, the 95% interval and a two-sided p-value, both from
  the normal approximation (n is in the thousands here).
* :func:`paired_bootstrap` — for a statistic that is not a mean over examples (AUC): the
  examples are resampled *by group* (by user: a user's positive and its negatives stay
  together) with replacement, the same resample for both runs; the standard error is the
  standard deviation of the resampled differences, the interval their 2.5/97.5 percentiles, and
  the p-value twice the smaller tail mass at zero (at least ``1 / num_samples``).
* Several training seeds: give each side as a list of runs (seed ``i`` of ``a`` pairs with
  seed ``i`` of ``b``). Rank metrics average each user's value over the seeds, then pair;
  AUC and logloss average the per-seed differences, with one bootstrap draw of users applied
  to every seed (the users are the same; a ranking run's negatives may differ by seed).
* :func:`compare_runs` and the command line: ``python -m jaxpapers.recsys.significance
  --a=<workdir>[,<workdir>...] --b=<workdir>[,...] --metric=ndcg@10`` (or ``hr@K``, ``auc``,
  ``logloss``; ``--split=valid``). Paired runs must have scored the same examples in the same
  order (same data and split settings); that is checked (targets, labels, users) and a
  mismatch is an error.

A difference is "significant" here when the two-sided p-value is below 0.05. Several claims
tested at once inflate false positives; the caller decides whether to correct for that.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from jaxpapers.recsys import metrics as rec_metrics

__all__ = [
    "Comparison",
    "compare_outputs",
    "compare_runs",
    "paired_bootstrap",
    "paired_difference",
    "per_user",
]

RANK_METRICS = ("hr", "ndcg")
ROW_METRICS = ("auc", "logloss")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``a - b`` of one metric over the same examples.

    Attributes:
      metric: e.g. ``"ndcg@10"``.
      a, b: the metric of each run on all examples.
      difference: ``a - b``.
      stderr: standard error of the difference.
      ci_low, ci_high: 95% interval of the difference.
      p_value: two-sided p-value of "no difference".
      n: number of paired units (users).
      method: ``"paired"`` (per-example mean) or ``"bootstrap"`` (by user).
    """

    metric: str
    a: float
    b: float
    difference: float
    stderr: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def line(self, name_a: str = "a", name_b: str = "b") -> str:
        rel = f" ({100 * self.difference / self.b:+.1f}%)" if self.b else ""
        return (
            f"{self.metric}: {name_a} {self.a:.4f} - {name_b} {self.b:.4f} = "
            f"{self.difference:+.4f}{rel} ± {self.stderr:.4f} (95% CI [{self.ci_low:+.4f}, "
            f"{self.ci_high:+.4f}], p = {self.p_value:.3g}, n = {self.n}, {self.method})"
        )


def _normal_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def per_user(ranks: npt.ArrayLike, metric: str) -> np.ndarray:
    """``[U]`` per-user ``hr@K`` (0/1) or ``ndcg@K`` (``1/log2(rank+2)`` below K) from ranks."""
    name, k = _split_metric(metric, RANK_METRICS)
    return rec_metrics.hits(ranks, k) if name == "hr" else rec_metrics.ndcg_gains(ranks, k)


def paired_difference(a: npt.ArrayLike, b: npt.ArrayLike, *, metric: str = "") -> Comparison:
    """Mean of ``a - b`` over paired per-example values, with its normal-theory error."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got {a.shape} and {b.shape}")
    n = len(a)
    if n < 2:
        raise ValueError(f"need at least 2 paired examples, got {n}")
    d = a - b
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se > 0:
        p = _normal_two_sided(diff / se)
    else:
        p = 1.0 if diff == 0 else 0.0
    return Comparison(
        metric, float(a.mean()), float(b.mean()), diff, se, diff - 1.96 * se, diff + 1.96 * se,
        p, n, "paired",
    )  # fmt: skip


def paired_bootstrap(
    statistic: Callable[[Mapping[str, np.ndarray]], float],
    a: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    b: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    groups: npt.ArrayLike | Sequence[npt.ArrayLike],
    *,
    num_samples: int = 1000,
    seed: int = 0,
    metric: str = "",
) -> Comparison:
    """``statistic(a) - statistic(b)`` with a bootstrap over groups shared by both runs.

    Each resample draws as many groups as there are distinct ones, with replacement, and
    takes all their rows, in both runs alike (the pairing). Several pairs of runs (one per
    training seed, each with its own rows) may be given as equal-length lists: the statistic
    is then the mean over the pairs of ``statistic(a_i) - statistic(b_i)``, and one resample
    draws the same groups (users) in every pair.

    Args:
      statistic: ``{name: per-row array} -> float`` (e.g. AUC of ``label`` and ``prob``).
      a, b: the two runs' per-row arrays (same rows, same order), or lists of them.
      groups: ``[N]`` group of each row (the user), or a list of them (one per pair).
      num_samples: bootstrap resamples.
      seed: resampling seed.
      metric: name for the result.
    """
    if isinstance(a, Mapping):
        a, b, groups = [a], [b], [groups]
    if not len(a) == len(b) == len(groups) >= 1:
        raise ValueError(
            f"a, b and groups must be lists of the same non-zero length, got {len(a)}, "
            f"{len(b)}, {len(groups)}"
        )
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    layouts = []
    for run_a, run_b, g in zip(a, b, groups):
        g = np.asarray(g)
        for run in (run_a, run_b):
            for k, v in run.items():
                if len(v) != len(g):
                    raise ValueError(f"{k!r} has {len(v)} rows but groups has {len(g)}")
        unique, inverse = np.unique(g, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(unique))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        layouts.append((unique, np.argsort(inverse, kind="stable"), counts, starts))
    universe = np.unique(np.concatenate([layout[0] for layout in layouts]))
    # Per pair: the local group index of each universe group (-1 where the pair lacks it).
    local = []
    for unique, *_ in layouts:
        index = np.full(len(universe), -1)
        index[np.searchsorted(universe, unique)] = np.arange(len(unique))
        local.append(index)

    full_a = np.array([statistic(r) for r in a], np.float64)
    full_b = np.array([statistic(r) for r in b], np.float64)
    rng = np.random.default_rng(seed)
    diffs = np.empty(num_samples)
    for s in range(num_samples):
        picked = rng.integers(0, len(universe), len(universe))
        total = 0.0
        for run_a, run_b, index, (_, order, counts, starts) in zip(a, b, local, layouts):
            at = index[picked]
            at = at[at >= 0]
            c = counts[at]
            ends = np.cumsum(c)
            rows = order[np.repeat(starts[at] - ends + c, c) + np.arange(ends[-1])]
            total += statistic({k: v[rows] for k, v in run_a.items()}) - statistic(
                {k: v[rows] for k, v in run_b.items()}
            )
        diffs[s] = total / len(a)
    stat_a, stat_b = float(full_a.mean()), float(full_b.mean())
    diff = float(np.mean(full_a - full_b))
    tail = min(np.mean(diffs <= 0.0), np.mean(diffs >= 0.0))
    p = min(1.0, max(2.0 * tail, 1.0 / num_samples))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Comparison(
        metric, stat_a, stat_b, diff, float(diffs.std(ddof=1)), float(low), float(high), p,
        len(universe), "bootstrap",
    )  # fmt: skip


def _split_metric(metric: str, names: tuple[str, ...]) -> tuple[str, int]:
    name, _, k = metric.partition("@")
    if name not in names or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must be one of {[f'{n}@K' for n in names]}, got {metric!r}")
    return name, int(k)


def _same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], keys) -> None:
    for k in keys:
        if k in a and k in b and not np.array_equal(a[k], b[k]):
            raise ValueError(
                f"the two runs did not score the same examples ({k!r} differs): compare runs "
                "with the same data, split and seed settings"
            )


Outputs = Mapping[str, np.ndarray]


def compare_outputs(
    a: Outputs | Sequence[Outputs],
    b: Outputs | Sequence[Outputs],
    metric: str,
    *,
    num_samples: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Compares two runs' per-example final outputs (see the module docstring).

    ``a`` and ``b`` may be equal-length lists (runs with different training seeds on the same
    data): rank metrics then average each user's value over the runs before pairing; AUC and
    logloss average the per-seed differences under one bootstrap over users.
    """
    a = [a] if isinstance(a, Mapping) else list(a)
    b = [b] if isinstance(b, Mapping) else list(b)
    if not a or len(a) != len(b):
        raise ValueError(
            f"need the same non-zero number of runs on each side, got {len(a)}, {len(b)}"
        )
    if metric in ROW_METRICS:
        for run in a + b:
            missing = {"prob", "label"} - set(run)
            if missing:
                raise ValueError(f"{metric} needs ranking outputs; missing {sorted(missing)}")
        for run_a, run_b in zip(a, b):
            _same(run_a, run_b, ("label", "user"))
            if len(run_a["prob"]) != len(run_b["prob"]):
                raise ValueError(
                    f"the runs have {len(run_a['prob'])} and {len(run_b['prob'])} rows"
                )
        fn = rec_metrics.auc if metric == "auc" else rec_metrics.logloss
        keep = ("label", "prob")
        return paired_bootstrap(
            lambda r: fn(r["label"], r["prob"]),
            [{k: r[k] for k in keep} for r in a],
            [{k: r[k] for k in keep} for r in b],
            [r.get("user", np.arange(len(r["prob"]))) for r in a],
            num_samples=num_samples,
            seed=seed,
            metric=metric,
        )
    for run in a + b:
        if "rank" not in run:
            raise ValueError(f"{metric} needs next-item ranks; the outputs have {sorted(run)}")
        if len(run["rank"]) != len(a[0]["rank"]):
            raise ValueError(f"the runs have {len(a[0]['rank'])} and {len(run['rank'])} users")
        _same(a[0], run, ("target",))
    values_a = np.mean([per_user(r["rank"], metric) for r in a], axis=0)
    values_b = np.mean([per_user(r["rank"], metric) for r in b], axis=0)
    return paired_difference(values_a, values_b, metric=metric)


def compare_runs(
    workdir_a: str | Sequence[str],
    workdir_b: str | Sequence[str],
    metric: str,
    *,
    split: str = "test",
    **kwargs,
) -> Comparison:
    """:func:`compare_outputs` of the final outputs for ``split`` of workdirs (or lists)."""
    from jaxpapers.core import train as train_lib  # pylint: disable=g-import-not-at-top

    def load(w):
        return [train_lib.load_outputs(x, split) for x in ([w] if isinstance(w, str) else w)]

    return compare_outputs(load(workdir_a), load(workdir_b), metric, **kwargs)


def main(argv) -> None:
    del argv
    from absl import flags  # pylint: disable=g-import-not-at-top

    f = flags.FLAGS
    for metric in f.metric:
        result = compare_runs(
            f.a, f.b, metric, split=f.split, num_samples=f.num_samples, seed=f.seed
        )
        print(result.line(f.name_a or "a", f.name_b or "b"))


if __name__ == "__main__":
    from absl import app, flags  # pylint: disable=g-import-not-at-top

    flags.DEFINE_list("a", None, "Workdir(s) of the first model (one per training seed).")
    flags.DEFINE_list("b", None, "Workdir(s) of the reference model, in the same seed order.")
    flags.DEFINE_list("metric", ["ndcg@10"], "hr@K, ndcg@K (next-item) or auc, logloss (ranking).")
    flags.DEFINE_string("split", "test", "Evaluation split.")
    flags.DEFINE_string("name_a", "", "Label of the first run in the output.")
    flags.DEFINE_string("name_b", "", "Label of the second run in the output.")
    flags.DEFINE_integer("num_samples", 1000, "Bootstrap resamples (auc, logloss).")
    flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
    flags.mark_flags_as_required(["a", "b"])
    app.run(main)
