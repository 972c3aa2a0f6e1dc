"""BFAD experiment: WebShell detection by an LLM shown the right code.

``run(config, workdir)`` (the registry entry ``bfad``):

1. **Data.** ``data.source = "generator"``: the embedded labelled corpus
   (:mod:`.corpus`, written to ``<workdir>/corpus/`` so it can be inspected);
   ``"dir"``: the user's ``webshell/`` and ``benign/`` trees at ``data.path``. A
   stratified split gives the training files (WBFP's weights, the demonstration pool
   and the baselines' training set) and the test files.
2. **Critical Function Filter** (:mod:`.critical`) over every file; per-file messages
   (binary, truncated, not UTF-8) go to ``file_notes.jsonl`` and the batch goes on.
3. **WBFP** (:mod:`.wbfp`): function weights fitted on the training files
   (``wbfp_weights.json``, ``plots/wbfp_weights.png``).
4. **Methods** (``method`` first, then each of ``compare``, in one process so the LLM
   is loaded once):

   ============== =====================================================================
   ``bfad``        extraction (:mod:`.extract`) + critical-function header + WBFP demos
   ``bfad_random`` the same with random demonstrations
   ``bfad_nodemo`` the same with no demonstrations
   ``plain``       the file from its start, cut to the same budget, no demonstrations
   ``token_cnn``   the sequence baseline (:mod:`.baselines`)
   ``ast_gnn``     the syntax-tree graph baseline (:mod:`.baselines`)
   ============== =====================================================================

   LLM predictions are appended to ``predictions/<method>.jsonl`` as they are made, so
   an interrupted run resumes where it stopped; the baselines checkpoint under
   ``<workdir>/<method>/``.
5. **Metrics** with WebShell as the positive class: ``accuracy``, ``precision``,
   ``recall``, ``f1`` for ``method`` as the final keys, and ``<m>/<metric>`` for every
   method run; ``plots/f1.png`` compares them. Scoring backends also give ``<m>/auc``,
   the ROC AUC of ``log p(yes) - log p(no)`` (how well the model ranks files, whatever
   the threshold).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

from jaxpapers.core import metrics as metrics_lib
from jaxpapers.security.webshell import corpus as corpus_lib
from jaxpapers.security.webshell import critical, extract, php, wbfp
from jaxpapers.security.webshell import prompt as prompt_lib
from jaxpapers.security.webshell.metrics import classification_metrics

LLM_METHODS = ("bfad", "bfad_random", "bfad_nodemo", "plain")
BASELINES = {"token_cnn": "token", "ast_gnn": "graph"}  # method -> baselines kind
METHODS = LLM_METHODS + tuple(BASELINES)
METRICS = ("accuracy", "precision", "recall", "f1")


def methods_of(config) -> list[str]:
    """``method`` then the comma-separated ``compare`` methods, validated."""
    names = [config.method] + [m.strip() for m in config.compare.split(",") if m.strip()]
    for m in names:
        if m not in METHODS:
            raise ValueError(f"unknown BFAD method {m!r}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def load_samples(config, workdir: str) -> list[corpus_lib.Sample]:
    data = config.data
    if data.source == "generator":
        samples = corpus_lib.generate(
            data.n, seed=data.seed, malicious_fraction=data.malicious_fraction
        )
        # A copy on disk to inspect, rewritten every run (it never feeds the run).
        root = os.path.join(workdir, "corpus")
        shutil.rmtree(root, ignore_errors=True)
        corpus_lib.write_corpus(samples, root)
        return samples
    if data.source == "dir":
        if not data.path:
            raise FileNotFoundError(
                "data.source='dir' needs --config.data.path=<root> holding a labelled corpus; "
                + corpus_lib.LAYOUT.format(extensions=corpus_lib.EXTENSIONS)
            )
        return corpus_lib.read_corpus(data.path, max_bytes=data.max_bytes)
    raise ValueError(f"unknown data.source {data.source!r}; choose generator or dir")


def deduplicate(samples: Sequence[corpus_lib.Sample]) -> tuple[list[corpus_lib.Sample], int]:
    """The first of each set of byte-identical files, and how many were dropped.

    Real WebShell corpora hold many copies of one file; a copy of a test file in the
    training pool would be shown to the LLM, labelled, as its most similar demonstration.
    Copies with different labels are all dropped (the label is ambiguous).
    """
    by_hash: dict[bytes, list[int]] = {}
    for i, s in enumerate(samples):
        by_hash.setdefault(hashlib.sha256(s.data).digest(), []).append(i)
    keep = []
    for group in by_hash.values():
        if len({samples[i].label for i in group}) == 1:
            keep.append(group[0])
    keep.sort()
    return [samples[i] for i in keep], len(samples) - len(keep)


def check_budget(config, max_prompt_tokens: int, count_tokens=extract.approx_tokens) -> None:
    """The prompt's parts must fit ``max_prompt_tokens`` (checked before any data is read)."""
    b = config.budget
    if min(b.query, b.demo) <= 0 or b.overhead < 0:
        raise ValueError(f"budgets must be positive, got {b.to_dict()}")
    if config.demos.k < 0:
        raise ValueError(f"demos.k must be >= 0, got {config.demos.k}")
    system = count_tokens(prompt_lib.SYSTEM)
    need = system + b.query + config.demos.k * (b.demo + b.overhead) + 2 * b.overhead
    if need > max_prompt_tokens:
        raise ValueError(
            f"the system prompt ({system}) + budget.query + demos.k * (budget.demo + "
            f"budget.overhead) + 2 * budget.overhead = {need} tokens exceeds "
            f"llm.max_prompt_tokens={max_prompt_tokens}"
        )


class Shower:
    """What each method shows of a file, cached per (file, budget, method kind).

    BFAD's shown text is the critical-function header plus the extraction, together
    within the budget (the extraction gets what the header leaves), so BFAD and plain
    prompting show the same number of tokens of each file.
    """

    def __init__(self, samples, analyses, weights, count_tokens, *, context: int, max_bytes: int):
        self.samples, self.analyses, self.weights = samples, analyses, weights
        self.count_tokens, self.context, self.max_bytes = count_tokens, context, max_bytes
        self._cache: dict[tuple[int, int, bool], prompt_lib.Shown] = {}

    def __call__(self, i: int, budget: int, *, bfad: bool) -> prompt_lib.Shown:
        key = (i, budget, bfad)
        if key not in self._cache:
            sample, analysis = self.samples[i], self.analyses[i]
            source = php.read_source(sample.data, name=sample.name, max_bytes=self.max_bytes)
            if bfad:
                header = prompt_lib.critical_header(analysis.calls)
                room = max(1, budget - self.count_tokens(header))
                ex = extract.extract(
                    source,
                    analysis,
                    budget=room,
                    count_tokens=self.count_tokens,
                    weights=self.weights,
                    context=self.context,
                )
                shown = prompt_lib.Shown(ex.text, header)
            else:
                ex = extract.head(source, budget=budget, count_tokens=self.count_tokens)
                shown = prompt_lib.Shown(ex.text)
            self._cache[key] = shown
        return self._cache[key]


def fingerprint(config, method: str) -> dict:
    """What a stored prediction depends on; a resumed run must match it."""
    return {
        "method": method,
        "seed": config.seed,
        "data": config.data.to_dict(),
        "budget": config.budget.to_dict(),
        "extract": config.extract.to_dict(),
        "demos": config.demos.to_dict(),
        "llm": {k: v for k, v in config.llm.to_dict().items() if k not in ("batch_size",)},
    }


def _load_predictions(path: str, expected: dict) -> dict[str, dict]:
    """Stored predictions of ``path`` (a torn last line is ignored), checked against
    the fingerprint in its first line."""
    done: dict[str, dict] = {}
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows = []
    for n, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:  # an interrupted write: drop it from the file too
                logging.warning("%s: dropping a torn last line", path)
                with open(path, "w", encoding="utf-8") as f:
                    f.write("".join(line + "\n" for line in lines[:-1]))
                continue
            raise ValueError(f"{path}:{n + 1} is not JSON; remove the file to start over") from None
    if rows and rows[0].get("fingerprint") != expected:
        raise ValueError(
            f"{path} holds predictions made with another configuration "
            f"(stored {rows[0].get('fingerprint')}, now {expected}); use a new --workdir "
            "or delete that file"
        )
    for row in rows[1:]:
        done[row["name"]] = row
    return done


def _build(method, i, show, pool, pool_labels, sim_row, config):
    """The conversation for test file ``i`` (demonstrations dropped, most dissimilar
    first, while it is over ``llm.max_prompt_tokens``)."""
    selection = {"bfad": "wbfp", "bfad_random": "random"}.get(method, "none")
    picks = wbfp.select_demonstrations(
        sim_row if sim_row is not None else np.zeros(len(pool)),
        pool_labels,
        config.demos.k,
        method=selection,
        balanced=config.demos.balanced,
        rng=np.random.default_rng([config.seed, i]),
    )
    demos = [(show(pool[j], config.budget.demo, bfad=True), pool_labels[j]) for j in picks]
    query = show(i, config.budget.query, bfad=method != "plain")
    while True:
        messages = prompt_lib.conversation(query, demos)
        # budget.overhead per user turn and once for the system turn, as check_budget
        turns = 2 + len(demos)
        size = sum(show.count_tokens(m["content"]) for m in messages)
        size += turns * config.budget.overhead
        if size <= config.llm.max_prompt_tokens or not demos:
            return messages
        demos = demos[1:]


def run_llm_method(
    method: str,
    backend,
    show: Shower,
    train_idx: Sequence[int],
    test_idx: Sequence[int],
    config,
    workdir: str,
) -> dict[str, float]:
    """Classifies the test files with ``backend``; resumes from ``predictions/``.

    A batch the backend fails on is retried file by file; a file that still fails gets
    an ``error`` row (predicted benign, counted in ``errors``) and the run goes on.
    """
    samples = show.samples
    path = os.path.join(workdir, "predictions", f"{method}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    expected = fingerprint(config, method)
    done = _load_predictions(path, expected)
    pool = list(train_idx)
    pool_labels = [samples[i].label for i in pool]
    profiles = None
    if method == "bfad":
        profiles = [wbfp.profile(a.functions, show.weights) for a in show.analyses]
        pool_profiles = [profiles[i] for i in pool]
    todo = [i for i in test_idx if samples[i].name not in done]
    if done:
        logging.info("%s: %d predictions restored, %d to go", method, len(done), len(todo))
    start, batch = time.perf_counter(), max(1, config.llm.batch_size)
    with open(path, "a", encoding="utf-8") as out:
        if not done:
            out.write(json.dumps({"fingerprint": expected}) + "\n")
        for b in range(0, len(todo), batch):
            chunk = todo[b : b + batch]
            sims = (
                wbfp.similarity_matrix([profiles[i] for i in chunk], pool_profiles)
                if profiles is not None
                else [None] * len(chunk)
            )
            conversations = [
                _build(method, i, show, pool, pool_labels, sim, config)
                for i, sim in zip(chunk, sims)
            ]
            try:
                verdicts = backend.classify(conversations)
            except Exception as e:  # noqa: BLE001 -- one bad file never stops the run
                logging.warning("%s: batch failed (%s); retrying file by file", method, e)
                verdicts = []
                for i, messages in zip(chunk, conversations):
                    try:
                        verdicts.extend(backend.classify([messages]))
                    except Exception as e1:  # noqa: BLE001
                        logging.warning("%s: %s failed: %s", method, samples[i].name, e1)
                        verdicts.append(None)
            for i, v in zip(chunk, verdicts):
                row = {"name": samples[i].name, "label": samples[i].label}
                if v is None:
                    row.update(pred=0, score=None, text="", error=True)
                else:
                    score = None if np.isnan(v.score) else v.score
                    row.update(pred=v.label, score=score, text=v.text)
                    if v.unparsed:
                        row["unparsed"] = True
                done[row["name"]] = row
                out.write(json.dumps(row) + "\n")
            out.flush()
            n = b + len(chunk)
            rate = n / (time.perf_counter() - start)
            logging.info(
                "%s: %d/%d test files, %.2f files/s, ETA %.0f s",
                method,
                n,
                len(todo),
                rate,
                (len(todo) - n) / max(rate, 1e-9),
            )
    rows = [done[samples[i].name] for i in test_idx]
    y = [r["label"] for r in rows]
    result = classification_metrics(y, [r["pred"] for r in rows])
    result["errors"] = sum(1 for r in rows if r.get("error"))
    result["unparsed"] = sum(1 for r in rows if r.get("unparsed"))
    scores = [r["score"] for r in rows]
    if all(v is not None for v in scores) and len(set(y)) == 2:
        # Threshold-free: how well log p(yes) - log p(no) ranks WebShells above benign files.
        from sklearn.metrics import roc_auc_score

        result["auc"] = float(roc_auc_score(y, scores))
    return result


def run(config, workdir: str) -> dict:
    """Registry entry (see the module docstring)."""
    os.makedirs(workdir, exist_ok=True)
    methods = methods_of(config)
    if any(m in LLM_METHODS for m in methods):
        check_budget(config, config.llm.max_prompt_tokens)
    samples, duplicates = deduplicate(load_samples(config, workdir))
    labels = [s.label for s in samples]
    if len(set(labels)) < 2:
        raise ValueError("the corpus needs both WebShells and benign files")
    index = {s.name: i for i, s in enumerate(samples)}
    train, test = corpus_lib.split(
        samples, (1.0 - config.data.test_fraction, config.data.test_fraction), seed=config.seed
    )
    train_idx = [index[s.name] for s in train]
    test_idx = [index[s.name] for s in test]
    logging.info(
        "corpus: %d files (%d train, %d test; %d duplicate files dropped)",
        len(samples),
        len(train),
        len(test),
        duplicates,
    )

    start = time.perf_counter()
    analyses = critical.analyse_many(
        php.read_source(s.data, name=s.name, max_bytes=config.data.max_bytes) for s in samples
    )
    logging.info(
        "critical function filter: %.0f files/s", len(samples) / (time.perf_counter() - start)
    )
    with open(os.path.join(workdir, "file_notes.jsonl"), "w", encoding="utf-8") as f:
        for s, a in zip(samples, analyses):
            if a.notes:
                f.write(json.dumps({"name": s.name, "notes": list(a.notes)}) + "\n")
    weights = wbfp.fit_weights(
        [analyses[i].functions for i in train_idx],
        [labels[i] for i in train_idx],
        min_df=config.demos.min_df,
    )
    with open(os.path.join(workdir, "wbfp_weights.json"), "w", encoding="utf-8") as f:
        json.dump(dict(wbfp.top_weights(weights, len(weights))), f, indent=1)

    results: dict[str, dict[str, float]] = {}
    show = None
    for method in methods:
        logging.info("method %s", method)
        if method in LLM_METHODS:
            if show is None:
                from jaxpapers.security.webshell import backends

                backend = backends.make(config.llm)
                show = Shower(
                    samples,
                    analyses,
                    weights,
                    backend.count_tokens,
                    context=config.extract.context,
                    max_bytes=config.data.max_bytes,
                )
            results[method] = run_llm_method(
                method, backend, show, train_idx, test_idx, config, workdir
            )
        else:
            from jaxpapers.security.webshell import baselines

            kind = BASELINES[method]
            baseline_config = baselines.default_config(kind)
            baseline_config.update(config.baselines.to_dict())
            baseline_config.seed = config.seed
            from jaxpapers.core import mesh as mesh_lib

            results[method] = baselines.train_baseline(
                kind,
                train,
                None,
                test,
                config=baseline_config,
                workdir=os.path.join(workdir, method),
                mesh=mesh_lib.mesh_from_config(config.mesh),
            )
        logging.info("%s: %s", method, json.dumps(results[method]))

    final = {k: float(v) for k, v in results[methods[0]].items() if k in METRICS}
    extra = ("auc", "errors", "unparsed", "num_skipped")
    for m, r in results.items():
        final.update({f"{m}/{k}": float(r[k]) for k in (*METRICS, *extra) if k in r})
    final["test_files"] = len(test_idx)
    final["duplicates_dropped"] = duplicates
    writer = metrics_lib.MetricWriter(workdir)
    writer.write(0, "test", final)
    writer.close()
    from jaxpapers.security.webshell import plots

    plots.f1_bars(results, os.path.join(workdir, "plots", "f1.png"))
    plots.weight_bars(wbfp.top_weights(weights), os.path.join(workdir, "plots", "wbfp_weights.png"))
    return final
