"""Benchmarks of the analytic family: Gram accumulation, ACU unlearning, AFCL aggregation.

Every figure is measured in one process run beside the machine's own matmul
rate (JAX, float32 2048³ and the float64 equivalent, timed in the same
interleaved rounds) or beside its reference computation:

* ``gram_accumulation_{f32,f64}`` — ``linalg.gram_update`` of a 4096 x 2048 chunk
  (XᵀX and XᵀY for 100 classes): its FLOP/s as a fraction of the matmul rate of
  the same dtype. Target: >= 70%.
* ``acu_unlearn_100`` vs ``acu_retrain`` — forgetting 100 samples from a learner
  that has seen N = 20,000 samples of d = 2,048 features (float64, ACU's
  ``rls_downdate``) vs retraining ridge from scratch on the 19,900 retained
  samples (Gram + Cholesky solve). Target: >= 100x faster, same weights.
* ``afcl_aggregation`` — one AFCL round over the same 12,000 rows split among
  1 ... 1000 Dirichlet(0.1) clients (d = 1024): client statistics summed with
  ``federated_sum`` on the ``clients`` mesh, then the server's solve; the padded
  rows (each client's last block), the server solve alone and the server
  state's size are reported beside each time.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from benchmarks import harness


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _matmul_entry(n: int, dtype) -> harness.Entry:
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype)
    compiled, info = harness.compile_jax(jnp.matmul, a, b)
    name = f"jax_matmul_{n}_{jnp.dtype(dtype).name}"
    return harness.Entry(
        name,
        lambda: compiled(a, b).block_until_ready(),
        flops=2.0 * n**3,
        info={**info, "shape": [n, n, n]},
    )


def gram_entries(dtype, rows: int = 4096, d: int = 2048, c: int = 100) -> harness.Entry:
    import jax
    import jax.numpy as jnp

    from jaxpapers import linalg

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((rows, d)), dtype)
    y = jax.nn.one_hot(jnp.asarray(rng.integers(0, c, rows)), c, dtype=dtype)
    stats = linalg.gram_init(d, c, dtype)
    compiled, info = harness.compile_jax(linalg.gram_update, stats, x, y)
    flops = 2.0 * rows * d * d + 2.0 * rows * d * c
    name = f"gram_accumulation_{jnp.dtype(dtype).name}"
    return harness.Entry(
        name,
        lambda: jax.block_until_ready(compiled(stats, x, y)),
        flops=flops,
        info={**info, "rows": rows, "d": d, "classes": c},
    )


def acu_entries(n: int = 20_000, d: int = 2048, c: int = 100, forget: int = 100):
    import jax
    import jax.numpy as jnp

    from jaxpapers import linalg

    rng = np.random.default_rng(2)
    x = jnp.asarray(np.maximum(rng.standard_normal((n, d)), 0.0))  # ReLU-buffer-like features
    labels = rng.integers(0, c, n)
    y = jax.nn.one_hot(jnp.asarray(labels), c, dtype=jnp.float64)
    gamma = 1.0
    state = linalg.rls_from_stats(linalg.gram_stats(x, y), gamma)
    rows = np.sort(rng.choice(n, forget, replace=False))
    keep = np.setdiff1d(np.arange(n), rows)
    xu, yu, xk, yk = x[rows], y[rows], x[keep], y[keep]

    def retrain(xk, yk):
        s = linalg.gram_stats(xk, yk)
        return linalg.ridge_solve(s.xtx, s.xty, gamma)

    down, down_info = harness.compile_jax(linalg.rls_downdate, state, xu, yu)
    full, full_info = harness.compile_jax(retrain, xk, yk)
    unlearned = down(state, xu, yu)
    retrained = full(xk, yk)
    gap = float(jnp.max(jnp.abs(unlearned.w - retrained)) / jnp.max(jnp.abs(retrained)))
    unlearn_flops = 4.0 * forget * d * d + 2.0 * d * d * c
    retrain_flops = 2.0 * len(keep) * d * d + d**3 / 3.0
    return [
        harness.Entry(
            "acu_unlearn_100",
            lambda: jax.block_until_ready(down(state, xu, yu)),
            flops=unlearn_flops,
            framework="jax64",
            info={**down_info, "n": n, "d": d, "forget": forget, "gap_to_retrain": gap},
        ),
        harness.Entry(
            "acu_retrain",
            lambda: jax.block_until_ready(full(xk, yk)),
            flops=retrain_flops,
            framework="jax64",
            info={**full_info, "n_retained": len(keep), "d": d},
        ),
    ]


def afcl_entries(
    clients=(1, 10, 100, 1000), rows: int = 12_000, d: int = 1024, c: int = 10, block_size: int = 32
):
    import jax
    import jax.numpy as jnp

    from jaxpapers import federated, linalg
    from jaxpapers.analytic import afcl

    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((rows, d)), 0.0).astype(np.float64)
    labels = rng.integers(0, c, rows).astype(np.int32)
    mesh = federated.clients_mesh()
    algorithm = afcl.afcl(d, c, 1.0, dtype=jnp.float64)
    entries = []
    for k in clients:
        parts = federated.dirichlet(labels, k, 0.1, min_size=0, seed=k)
        blocks = federated.pack(x, labels, parts, block_size=block_size)
        server0 = algorithm.init()

        def round_(blocks=blocks, server0=server0):
            server, _ = algorithm.apply(server0, blocks, mesh, None)
            return jax.block_until_ready(afcl.weights(server, 1.0))

        state_bytes = sum(a.nbytes for a in jax.tree.leaves(server0))
        padded = int(blocks.mask.size - blocks.mask.sum())
        processed = int(blocks.mask.size)
        entries.append(
            harness.Entry(
                f"afcl_round_{k}_clients",
                round_,
                flops=2.0 * rows * d * d,
                framework="jax64",
                info={
                    "clients": k,
                    "blocks": blocks.num_blocks,
                    "padded_rows": padded,
                    "processed_rows": processed,
                    "server_state_bytes": state_bytes,
                },
            )
        )
    stats = algorithm.init().stats
    stats = linalg.GramStats(stats.xtx + jnp.eye(d), stats.xty, stats.count)
    solve, solve_info = harness.compile_jax(linalg.ridge_solve, stats.xtx, stats.xty, 1.0)
    entries.append(
        harness.Entry(
            "afcl_server_solve",
            lambda: jax.block_until_ready(solve(stats.xtx, stats.xty, 1.0)),
            framework="jax64",
            info={**solve_info, "d": d},
        )
    )
    return entries


def run(*, rounds: int = 5, only=()) -> tuple[dict[str, Any], str]:
    import jax
    import jax.numpy as jnp

    tables, results = [], {"machine": harness.machine_info()}
    with jax.enable_x64(True):
        _log("compiling the matmul references")
        ref32 = _matmul_entry(2048, jnp.float32)
        ref64 = _matmul_entry(2048, jnp.float64)
        ref64.framework = "jax64"
        entries = []
        if not only or "gram" in only:
            g32, g64 = gram_entries(jnp.float32), gram_entries(jnp.float64)
            g64.framework = "jax64"
            entries += [g32, g64]
        if not only or "acu" in only:
            _log("building ACU's learner (N=20k, d=2048, float64)")
            entries += acu_entries()
        if not only or "afcl" in only:
            _log("packing AFCL clients")
            entries += afcl_entries()
        _log(f"{rounds} interleaved rounds")
        harness.run_interleaved(
            entries, rounds, references={"jax": ref32, "jax64": ref64}, log=_log
        )

    by_name = {e.name: e for e in entries}
    rows = []
    for e in [ref32, ref64, *entries]:
        s = harness.stats(e.samples)
        ref = ref64 if e.framework == "jax64" else ref32
        frac = harness.local_fraction(e, ref) if e.flops and e not in (ref32, ref64) else None
        rate = e.flops / s["median"] / 1e9 if e.flops else None
        if "processed_rows" in e.info:
            e.info["us_per_processed_row"] = s["median"] * 1e6 / e.info["processed_rows"]
        rows.append(
            [
                e.name,
                f"{s['median'] * 1e3:.2f} [{s['q1'] * 1e3:.2f}-{s['q3'] * 1e3:.2f}]",
                f"{rate:.1f}" if rate else "",
                f"{100 * frac['median']:.0f}%" if frac else "",
                ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in e.info.items()
                    if k
                    in (
                        "gap_to_retrain",
                        "clients",
                        "padded_rows",
                        "us_per_processed_row",
                        "server_state_bytes",
                        "n",
                        "d",
                        "forget",
                        "rows",
                    )
                ),
            ]
        )
        results[e.name] = {**e.summary(), "of_matmul_rate": frac}
    tables.append(
        harness.format_table(
            ["entry", "ms median [q1-q3]", "GFLOP/s", "of matmul rate (same dtype)", "notes"], rows
        )
    )
    if "acu_unlearn_100" in by_name:
        speedup = (
            harness.stats(by_name["acu_retrain"].samples)["median"]
            / harness.stats(by_name["acu_unlearn_100"].samples)["median"]
        )
        paired = harness.paired_ratio(by_name["acu_retrain"], by_name["acu_unlearn_100"])
        results["acu_speedup"] = {"median_ratio": speedup, "per_round": paired}
        tables.append(
            f"ACU: unlearning 100 of 20,000 samples is {speedup:.0f}x faster than retraining "
            f"(per round {paired['q1']:.0f}-{paired['q3']:.0f}x); weight gap "
            f"{by_name['acu_unlearn_100'].info['gap_to_retrain']:.2e}"
        )
    return results, "\n\n".join(tables)
