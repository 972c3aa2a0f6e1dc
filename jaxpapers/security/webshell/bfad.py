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

import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from absl import logging

from jaxpapers.core import metrics as metrics_lib
from jaxpapers.security.webshell import corpus as corpus_lib
from jaxpapers.security.webshell import critical, extract, php, wbfp
from jaxpapers.security.webshell import prompt as prompt_lib

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
        root = os.path.join(workdir, "corpus")
        if not os.path.isdir(root):
            corpus_lib.write_corpus(samples, root)
        return samples
    if data.source == "dir":
        if not data.path:
            raise FileNotFoundError(
                "data.source='dir' needs --config.data.path=<root> holding a labelled corpus:\n"
                "  <root>/webshell/**/<file>.php   (WebShells)\n"
                "  <root>/benign/**/<file>.php     (benign PHP)"
            )
        return corpus_lib.read_corpus(data.path, max_bytes=data.max_bytes)
    raise ValueError(f"unknown data.source {data.source!r}; choose generator or dir")


def check_budget(config, max_prompt_tokens: int) -> None:
    """The prompt's parts must fit the backend's context."""
    b = config.budget
    if min(b.query, b.demo) <= 0 or b.overhead < 0:
        raise ValueError(f"budgets must be positive, got {b.to_dict()}")
    need = b.query + config.demos.k * (b.demo + b.overhead) + 2 * b.overhead
    if need > max_prompt_tokens:
        raise ValueError(
            f"budget.query + demos.k * (budget.demo + budget.overhead) + 2 * budget.overhead "
            f"= {need} tokens exceeds the backend's max_prompt_tokens={max_prompt_tokens}"
        )


def head(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    """The start of ``text`` cut to ``budget`` tokens (what plain prompting shows)."""
    cut = text[: budget * 8]
    while cut and count_tokens(cut) > budget:
        cut = cut[: int(len(cut) * 0.85)]
    return cut


class _Shower:
    """What each method shows of a file, cached per (file, budget)."""

    def __init__(self, samples, analyses, weights, count_tokens, context: int):
        self.samples, self.analyses, self.weights = samples, analyses, weights
        self.count_tokens, self.context = count_tokens, context
        self._cache: dict[tuple[int, int, bool], prompt_lib.Shown] = {}

    def __call__(self, i: int, budget: int, *, bfad: bool) -> prompt_lib.Shown:
        key = (i, budget, bfad)
        if key not in self._cache:
            sample, analysis = self.samples[i], self.analyses[i]
            if bfad:
                ex = extract.extract(
                    sample.data,
                    analysis,
                    budget=budget,
                    count_tokens=self.count_tokens,
                    weights=self.weights,
                    context=self.context,
                )
                shown = prompt_lib.Shown(ex.text, prompt_lib.critical_header(analysis.calls))
            else:
                text = sample.data.decode("utf-8", errors="replace")
                shown = prompt_lib.Shown(head(text, budget, self.count_tokens))
            self._cache[key] = shown
        return self._cache[key]


def _load_predictions(path: str) -> dict[str, dict]:
    done = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    done[row["name"]] = row
    return done


def run_llm_method(
    method: str,
    backend,
    samples: Sequence[corpus_lib.Sample],
    analyses: Sequence,
    train_idx: Sequence[int],
    test_idx: Sequence[int],
    weights: dict[str, float],
    config,
    workdir: str,
) -> dict[str, float]:
    """Classifies the test files with ``backend``; resumes from ``predictions/``."""
    path = os.path.join(workdir, "predictions", f"{method}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    done = _load_predictions(path)
    show = _Shower(samples, analyses, weights, backend.count_tokens, config.extract.context)
    bfad = method != "plain"
    selection = {"bfad": "wbfp", "bfad_random": "random"}.get(method, "none")
    pool = list(train_idx)
    pool_labels = [samples[i].label for i in pool]
    if selection == "wbfp":
        profiles = [wbfp.profile(a.functions, weights) for a in analyses]
        sim = wbfp.similarity_matrix([profiles[i] for i in test_idx], [profiles[i] for i in pool])
    todo = [(row, i) for row, i in enumerate(test_idx) if samples[i].name not in done]
    if done:
        logging.info("%s: %d predictions restored, %d to go", method, len(done), len(todo))
    start, batch = time.perf_counter(), max(1, config.llm.batch_size)
    with open(path, "a", encoding="utf-8") as out:
        for b in range(0, len(todo), batch):
            chunk = todo[b : b + batch]
            conversations = []
            for row, i in chunk:
                rng = np.random.default_rng([config.seed, i])
                picks = wbfp.select_demonstrations(
                    sim[row] if selection == "wbfp" else np.zeros(len(pool)),
                    pool_labels,
                    config.demos.k,
                    method=selection,
                    balanced=config.demos.balanced,
                    rng=rng,
                )
                demos = [
                    (show(pool[j], config.budget.demo, bfad=True), pool_labels[j]) for j in picks
                ]
                query = show(i, config.budget.query, bfad=bfad)
                conversations.append(prompt_lib.conversation(query, demos))
            verdicts = backend.classify(conversations)
            for (_, i), v in zip(chunk, verdicts):
                row = {
                    "name": samples[i].name,
                    "label": samples[i].label,
                    "pred": v.label,
                    "score": None if np.isnan(v.score) else v.score,
                    "text": v.text,
                }
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
    names = [samples[i].name for i in test_idx]
    from jaxpapers.security.webshell import baselines

    y = [done[n]["label"] for n in names]
    result = baselines.classification_metrics(y, [done[n]["pred"] for n in names])
    scores = [done[n]["score"] for n in names]
    if all(v is not None for v in scores) and len(set(y)) == 2:
        # Threshold-free: how well log p(yes) - log p(no) ranks WebShells above benign files.
        from sklearn.metrics import roc_auc_score

        result["auc"] = float(roc_auc_score(y, scores))
    return result


def run(config, workdir: str) -> dict:
    """Registry entry (see the module docstring)."""
    os.makedirs(workdir, exist_ok=True)
    methods = methods_of(config)
    samples = load_samples(config, workdir)
    labels = [s.label for s in samples]
    if len(set(labels)) < 2:
        raise ValueError("the corpus needs both WebShells and benign files")
    index = {s.name: i for i, s in enumerate(samples)}
    train, test = corpus_lib.split(
        samples, (1.0 - config.data.test_fraction, config.data.test_fraction), seed=config.seed
    )
    train_idx = [index[s.name] for s in train]
    test_idx = [index[s.name] for s in test]
    logging.info("corpus: %d files (%d train, %d test)", len(samples), len(train), len(test))

    start = time.perf_counter()
    analyses = critical.analyse_many(
        php.read_source(s.data, name=s.name, max_bytes=config.data.max_bytes) for s in samples
    )
    analyse_seconds = time.perf_counter() - start
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
    backend = None
    for method in methods:
        logging.info("method %s", method)
        if method in LLM_METHODS:
            if backend is None:
                from jaxpapers.security.webshell import backends

                backend = backends.make(config.llm)
                check_budget(config, backend.max_prompt_tokens)
            results[method] = run_llm_method(
                method, backend, samples, analyses, train_idx, test_idx, weights, config, workdir
            )
        else:
            from jaxpapers.security.webshell import baselines

            kind = BASELINES[method]
            baseline_config = baselines.default_config(kind)
            baseline_config.update(config.baselines.to_dict())
            baseline_config.seed = config.seed
            results[method] = baselines.train_baseline(
                kind,
                train,
                None,
                test,
                config=baseline_config,
                workdir=os.path.join(workdir, method),
            )
        logging.info("%s: %s", method, json.dumps(results[method]))

    final = {k: float(v) for k, v in results[methods[0]].items() if k in METRICS}
    for m, r in results.items():
        final.update({f"{m}/{k}": float(r[k]) for k in (*METRICS, "auc") if k in r})
    final["test_files"] = len(test_idx)
    final["analyse_files_per_second"] = len(samples) / max(analyse_seconds, 1e-9)
    writer = metrics_lib.MetricWriter(workdir)
    writer.write(0, "test", final)
    writer.close()
    from jaxpapers.security.webshell import plots

    plots.f1_bars(results, os.path.join(workdir, "plots", "f1.png"))
    plots.weight_bars(wbfp.top_weights(weights), os.path.join(workdir, "plots", "wbfp_weights.png"))
    return final
