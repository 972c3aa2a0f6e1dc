r"""Runs the benchmarks, prints the tables and writes the results as JSON.

  python -m benchmarks.run [--suite=ctr,analytic,aptshield,robust,physics,webshell,multimodal,
                                   multiphysics]
                           [--only=ipnn_train_step,deepctr_torch_pnn_train_step,...]
                           [--batch=1024] [--iters=10] [--breakdown_iters=5]
                           [--out=benchmarks/results/ctr.json] [--xla_flags=...]
                           [--wait_for_idle=SECONDS]

Entries: ``ipnn_train_step``, ``deepctr_torch_pnn_train_step``,
``deepctr_torch_pnn_fused_adam_train_step``, ``fgcnn_train_step``,
``torch_fgcnn_port_train_step``, ``ipnn_breakdown``, ``fgcnn_breakdown``
(default: all). The JAX and PyTorch matmul references
always run. Progress goes to stderr, the tables to stdout.

Suite ``analytic``: entries ``gram``, ``acu``, ``afcl``. Suite ``aptshield``
(not in the default list: it writes a 234 MB log first): entries ``streaming``
and ``batch``; ``--aptshield_memory_gb=N`` adds the bounded-memory run on an
N GB log; ``--aptshield_dir`` is where the logs are written (and reused).

Suite ``robust`` (not in the default list: a batch-128 PGD-10 through ResNet-18 takes
tens of seconds per call on a 2-core CPU): entries ``jax_resnet18_fwd_bwd``,
``jax_pgd10``, ``jax_pgd10_rolled``, ``torch_resnet18_fwd_bwd``,
``torchattacks_pgd10``; ``--iters`` interleaved rounds, ``--robust_batch`` (128)
examples. Smoke run: ``--suite=robust --robust_batch=8 --iters=1``.

Suite ``physics`` (not in the default list; issue 5, stretch bending): entries
``generator_hf``, ``generator_lf`` (the generator's batched solve, ``--physics_gen_batch``
samples, 512), ``ladeep_infer``, ``mlp_infer``, ``transformer_infer`` (jitted eval-mode
forward, ``--physics_batch``, 256), ``ladeep_train``, ``mlp_train``, ``transformer_train``
(the library's train step, ``--physics_train_batch``, 32); ``--iters`` interleaved rounds.
Reports the HF solve time per sample over LaDEEP's inference time per sample. Smoke run:
``--suite=physics --physics_batch=8 --physics_train_batch=8 --physics_gen_batch=8 --iters=1``.

Suite ``multimodal`` (not in the default list; issue 4): train steps of ``sasrec_train``,
``torch_sasrec_train`` (a PyTorch SASRec of the same shape, when torch is installed),
``cammsr_train``, ``qarm_train``, ``em3_train``, ``em3_pre_extracted_train`` at
``--multimodal_batch`` (256) x ``--multimodal_len`` (50), ``--iters`` interleaved rounds, and
``em3_memory`` (XLA memory analysis of EM3's step with LoRA vs full fine-tuning);
``--wait_for_idle`` also waits again after compiling, before the timed rounds. Smoke run:
``--suite=multimodal --multimodal_batch=8 --multimodal_len=10 --iters=1``.

Suite ``multiphysics`` (not in the default list; issue 6, multi-solid contact and FSI):
``contact_generator`` (the contact FEM solve of ``--multiphysics_gen_batch`` scenes, 32),
``fsi_generator`` (the LBM/IB simulator, ``--multiphysics_fsi_trajectories`` (12) x
``--multiphysics_fsi_frames`` (5) recorded frames, warm-up removed), ``unisoma_infer``,
``transolver_contact_infer``, ``fisale_infer``, ``transolver_fsi_infer`` (jitted forward,
``--multiphysics_batch``, 32), ``unisoma_train``, ``transolver_contact_train``, ``fisale_train``,
``transolver_fsi_train`` (the library's train step at the configs' batch, 8 / 16, or
``--multiphysics_train_batch``), ``torch_transolver_contact_train`` and ``torch_unisoma_infer``
(PyTorch ports of the implicit baseline's train step and Unisoma's forward, when torch is
installed); ``--iters`` interleaved rounds; ``--wait_for_idle``
also waits again after compiling. Reports simulator seconds per sample over inference seconds
per sample. Smoke run: ``--suite=multiphysics --multiphysics_batch=2
--multiphysics_train_batch=2 --multiphysics_gen_batch=2 --multiphysics_fsi_trajectories=1
--multiphysics_fsi_frames=1 --iters=1 --matmul_n=256``.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ctr.json")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", default="", help="comma-separated entries to run (default: all)")
    p.add_argument("--batch", type=int, default=1024, help="examples per step")
    p.add_argument(
        "--iters",
        type=int,
        default=10,
        help="timed calls of each train step (interleaved rounds) in the main phase",
    )
    p.add_argument(
        "--breakdown_iters", type=int, default=5, help="interleaved rounds in the breakdown phases"
    )
    p.add_argument(
        "--matmul_n",
        type=int,
        default=2048,
        help="size n of the n x n x n float32 matmul reference",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads (default: the cores this process may use)",
    )
    p.add_argument(
        "--profile_steps",
        type=int,
        default=3,
        help="train steps traced with jax.profiler per breakdown",
    )
    p.add_argument(
        "--suite",
        default="ctr,analytic",
        help="benchmark suites to run: ctr, analytic, aptshield, robust, physics, webshell, "
        "multimodal and/or multiphysics",
    )
    p.add_argument(
        "--multiphysics_batch",
        type=int,
        default=32,
        help="inference batch of the multiphysics suite (Unisoma, Fisale, the baselines)",
    )
    p.add_argument(
        "--multiphysics_train_batch",
        type=int,
        default=0,
        help="train batch of the multiphysics suite (0: the configs' own, Unisoma 8, Fisale 16)",
    )
    p.add_argument(
        "--multiphysics_gen_batch",
        type=int,
        default=32,
        help="scenes per call of the multiphysics suite's contact generator",
    )
    p.add_argument(
        "--multiphysics_fsi_trajectories",
        type=int,
        default=12,
        help="trajectories per call of the multiphysics suite's FSI generator",
    )
    p.add_argument(
        "--multiphysics_fsi_frames",
        type=int,
        default=5,
        help="recorded frames per call of the multiphysics suite's FSI generator",
    )
    p.add_argument(
        "--multimodal_batch",
        type=int,
        default=256,
        help="batch of the multimodal suite's train steps",
    )
    p.add_argument(
        "--multimodal_len",
        type=int,
        default=50,
        help="sequence (history) length of the multimodal suite",
    )
    p.add_argument(
        "--webshell_files",
        type=int,
        default=200,
        help="corpus files per call of the webshell suite's filter/extraction entries",
    )
    p.add_argument(
        "--robust_batch",
        type=int,
        default=128,
        help="batch of the robust suite (PGD-10 through ResNet-18)",
    )
    p.add_argument(
        "--physics_batch",
        type=int,
        default=256,
        help="inference batch of the physics suite (LaDEEP and the baselines)",
    )
    p.add_argument(
        "--physics_train_batch",
        type=int,
        default=32,
        help="train batch of the physics suite",
    )
    p.add_argument(
        "--physics_gen_batch",
        type=int,
        default=512,
        help="samples per call of the physics suite's generator solve (HF and LF)",
    )
    p.add_argument(
        "--aptshield_dir",
        default="",
        help="where the aptshield suite writes its simulated logs (default: "
        "$TMPDIR/jaxpapers_bench/aptshield)",
    )
    p.add_argument(
        "--aptshield_memory_caps",
        type=int,
        default=0,
        help="max_objects and max_cache of the memory run (0: the detector's defaults)",
    )
    p.add_argument(
        "--aptshield_memory_gb",
        type=float,
        default=0.0,
        help="also stream a log of about this many GB and sample memory (0: skip)",
    )
    p.add_argument(
        "--out", default="", help="JSON output (one suite only; default results/<suite>.json)"
    )
    p.add_argument(
        "--wait_for_idle",
        type=float,
        default=0,
        help="first wait up to this many seconds until other processes use under 5%% "
        "of the CPU (0: start at once)",
    )
    p.add_argument(
        "--xla_flags",
        default="",
        help="appended to XLA_FLAGS before JAX starts (recorded in the JSON)",
    )
    args = p.parse_args(argv)
    for name in (
        "batch",
        "iters",
        "breakdown_iters",
        "matmul_n",
        "profile_steps",
        "robust_batch",
        "physics_batch",
        "physics_train_batch",
        "physics_gen_batch",
        "webshell_files",
        "multimodal_batch",
        "multimodal_len",
        "multiphysics_batch",
        "multiphysics_gen_batch",
        "multiphysics_fsi_trajectories",
        "multiphysics_fsi_frames",
    ):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.multiphysics_train_batch < 0:
        p.error("--multiphysics_train_batch must be >= 0 (0: the configs' own)")
    return args


def _write(results: dict, tables: str, header: str, out: str) -> None:
    from benchmarks import harness  # pylint: disable=g-import-not-at-top

    harness.write_json(out, results)
    report = os.path.splitext(out)[0] + ".md"
    with open(report, "w", encoding="utf-8") as f:
        f.write(f"`{results['command']}`\n\n{header}\n\n{tables}\n")
    print(f"\nwrote {out} and {report}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), args.xla_flags]
        ).strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # after XLA_FLAGS is set: JAX reads it on import
    from benchmarks import (  # pylint: disable=g-import-not-at-top
        analytic,
        aptshield,
        ctr,
        harness,
        multimodal,
        multiphysics,
        physics,
        robust,
        webshell,
    )

    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    known = {
        "ctr",
        "analytic",
        "aptshield",
        "robust",
        "physics",
        "webshell",
        "multimodal",
        "multiphysics",
    }
    if not set(suites) <= known:
        print(
            "error: --suite takes ctr, analytic, aptshield, robust, physics, webshell, "
            f"multimodal and/or multiphysics, got {args.suite!r}",
            file=sys.stderr,
        )
        return 2
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    command = " ".join(["python -m benchmarks.run"] + list(sys.argv[1:] if argv is None else argv))
    idle = None
    if args.wait_for_idle > 0:
        idle = harness.wait_for_idle(args.wait_for_idle, log=ctr._log)
    results_dir = os.path.dirname(DEFAULT_OUT)
    for suite in suites:
        try:
            if suite == "ctr":
                results, tables = ctr.run(
                    batch=args.batch,
                    iters=args.iters,
                    breakdown_iters=args.breakdown_iters,
                    only=only,
                    matmul_n=args.matmul_n,
                    threads=args.threads or None,
                    profile_steps=args.profile_steps,
                )
            elif suite == "analytic":
                results, tables = analytic.run(rounds=args.breakdown_iters, only=only)
            elif suite == "robust":
                results, tables = robust.run(
                    batch=args.robust_batch,
                    rounds=args.iters,
                    only=only,
                    matmul_n=args.matmul_n,
                    threads=args.threads or None,
                )
            elif suite == "physics":
                results, tables = physics.run(
                    batch=args.physics_batch,
                    train_batch=args.physics_train_batch,
                    gen_batch=args.physics_gen_batch,
                    rounds=args.iters,
                    only=only,
                    matmul_n=args.matmul_n,
                )
            elif suite == "webshell":
                results, tables = webshell.run(
                    files=args.webshell_files,
                    rounds=args.iters,
                    only=only,
                    matmul_n=args.matmul_n,
                )
            elif suite == "multimodal":
                results, tables = multimodal.run(
                    batch=args.multimodal_batch,
                    length=args.multimodal_len,
                    rounds=args.iters,
                    only=only,
                    matmul_n=args.matmul_n,
                    threads=args.threads or None,
                    wait_for_idle=args.wait_for_idle,
                )
            elif suite == "multiphysics":
                results, tables = multiphysics.run(
                    batch=args.multiphysics_batch,
                    train_batch=args.multiphysics_train_batch,
                    gen_batch=args.multiphysics_gen_batch,
                    fsi_trajectories=args.multiphysics_fsi_trajectories,
                    fsi_frames=args.multiphysics_fsi_frames,
                    rounds=args.iters,
                    only=only,
                    matmul_n=args.matmul_n,
                    threads=args.threads or None,
                    wait_for_idle=args.wait_for_idle,
                )
            else:
                results, tables = aptshield.run(
                    rounds=args.breakdown_iters,
                    only=only,
                    directory=args.aptshield_dir or aptshield.DEFAULT_DIR,
                    memory_gb=args.aptshield_memory_gb,
                    memory_caps=args.aptshield_memory_caps or None,
                )
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if idle is not None:
            results.setdefault("contention", {})["before_start"] = idle
        results["command"] = command
        m = results["machine"]
        v = m["versions"]
        header = (
            f"{m['cpu_model']} ({m['cores']} cores, {m['memory_gib']} GiB), {m['date_utc']}; "
            f"jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, torch {v['torch']}, "
            f"deepctr-torch {v['deepctr-torch']}"
            + (f", torchattacks {v['torchattacks']}" if "torchattacks" in v else "")
            + f"; load average {m['load_average_at_start']}"
        )
        print(header)
        print()
        print(tables)
        out = (
            args.out
            if (args.out and len(suites) == 1)
            else os.path.join(results_dir, f"{suite}.json")
        )
        _write(results, tables, header, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
