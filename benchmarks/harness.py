"""Small timing utilities shared by the benchmarks.

Everything here measures; nothing asserts a speed. The pieces:

* :class:`Entry` — one timed thing: a blocking ``call()``, its FLOPs per call
  (optional) and the wall-clock samples collected so far.
* :func:`run_interleaved` — warms every entry up, then times them round-robin
  (one or a few calls of each per round, the order rotated every round, each
  block of calls bracketed by calls of the matmul reference), so that entries,
  peers and references see the same machine: on a shared CPU a background job
  slows the calls around it alike and the ratios stay meaningful
  (:func:`local_fraction`, :func:`paired_ratio`).
* :func:`stats` — median, quartiles and IQR of samples.
* :func:`compile_jax` — ``jax.jit(f).lower(*args).compile()`` with lowering and
  compilation timed apart from the steady state, plus XLA's cost analysis.
* :func:`jax_matmul_entry` / :func:`torch_matmul_entry` — the machine's own
  float32 matmul rate (``n x n @ n x n``, 2 n^3 FLOPs per call) in each
  framework, measured in the same run as everything it is compared with.
* :func:`profile_ops` with :func:`hlo_sources` — a ``jax.profiler`` trace of a
  compiled computation, parsed in-process (no TensorBoard needed), that splits
  wall time over XLA thunks and maps every thunk back to the Python functions
  that produced it.
* :class:`CpuMonitor` — how much CPU other processes took meanwhile.
* :func:`machine_info`, :func:`format_table`, :func:`write_json`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import glob
import importlib.metadata
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- statistics


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, IQR, min and count of ``samples`` (seconds or any unit)."""
    if not len(samples):
        return {
            "median": float("nan"),
            "q1": float("nan"),
            "q3": float("nan"),
            "iqr": float("nan"),
            "min": float("nan"),
            "n": 0,
        }
    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(a.min()),
        "n": int(a.size),
    }


# --------------------------------------------------------------------------- entries


@dataclasses.dataclass
class Entry:
    """One timed computation.

    Attributes:
      name: unique name (the key in the results).
      call: runs the computation once and returns only when it has finished
        (JAX: ``jax.block_until_ready`` on the outputs; torch on CPU is eager).
      flops: floating-point operations per call, if known (for rates).
      calls_per_round: how many timed calls this entry makes in each round.
      framework: ``"jax"`` or ``"torch"`` (which matmul rate it is compared with).
      info: anything else worth reporting (compile time, FLOP counts, ...).
      samples: seconds per call, filled by :func:`run_interleaved`.
      round_means: mean seconds per call in each round (for paired ratios).
      local_reference: for each sample, the mean time of the reference matmul
        calls made just before and just after this entry's calls in that round.
    """

    name: str
    call: Callable[[], Any]
    flops: float | None = None
    calls_per_round: int = 1
    framework: str = "jax"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    samples: list[float] = dataclasses.field(default_factory=list)
    round_means: list[float] = dataclasses.field(default_factory=list)
    local_reference: list[float] = dataclasses.field(default_factory=list)

    def time_once(self) -> float:
        t0 = time.perf_counter()
        self.call()
        return time.perf_counter() - t0

    def summary(self) -> dict[str, Any]:
        s = stats(self.samples)
        out: dict[str, Any] = {"seconds": s}
        if self.flops:
            out["flops_per_call"] = self.flops
            out["gflops_per_s"] = self.flops / s["median"] / 1e9 if s["n"] else float("nan")
        out.update(self.info)
        return out


def run_interleaved(
    entries: Sequence[Entry],
    rounds: int,
    *,
    warmup: int = 2,
    references: Mapping[str, Entry] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Warms each entry up, then times all of them round-robin for ``rounds`` rounds.

    With ``references`` (framework -> matmul entry), every block of an entry's
    calls is bracketed by one call of its framework's reference just before and
    one just after; their mean is that block's *local* reference time (see
    :func:`local_fraction`), so a rate can be compared with the machine's speed
    at that very moment. Reference calls also count as reference samples.
    The first warm-up call of each entry is recorded as ``info["first_call_s"]``
    (for JAX entries compiled ahead of time this is the first execution, not the
    compilation, which :func:`compile_jax` reports separately).
    """
    references = dict(references or {})
    refs = set(id(r) for r in references.values())
    for e in list(references.values()) + [e for e in entries if id(e) not in refs]:
        for i in range(max(warmup, 1)):
            dt = e.time_once()
            if i == 0:
                e.info.setdefault("first_call_s", dt)
    timed = [e for e in entries if id(e) not in refs]
    for r in range(rounds):
        for ref in references.values():  # a few plain reference calls per round
            ref.samples.extend(ref.time_once() for _ in range(ref.calls_per_round))
        for e in timed:
            ref = references.get(e.framework)
            before = ref.time_once() if ref else None
            times = [e.time_once() for _ in range(e.calls_per_round)]
            if ref:
                after = ref.time_once()
                ref.samples.extend([before, after])
                e.local_reference.extend([(before + after) / 2] * len(times))
            e.samples.extend(times)
            e.round_means.append(float(np.mean(times)))
        timed = timed[1:] + timed[:1]  # rotate, so no entry always follows the same one
        if log is not None:
            log(
                f"  round {r + 1}/{rounds}: "
                + ", ".join(
                    f"{e.name}={e.round_means[-1] * 1e3:.0f}ms" for e in entries if e.round_means
                )
            )


def local_fraction(entry: Entry, reference: Entry) -> dict[str, float]:
    """Per call: (entry FLOP/s) / (reference FLOP/s measured around it); median, IQR."""
    if not entry.flops or not entry.local_reference:
        return stats([])
    ratios = [
        (entry.flops / t) / (reference.flops / r)
        for t, r in zip(entry.samples, entry.local_reference)
    ]
    return stats(ratios)


def paired_ratio(numerator: Entry, denominator: Entry) -> dict[str, float]:
    """Per-round ratio ``numerator / denominator`` of mean call times (median, IQR).

    Both entries ran in the same rounds, so each round's ratio compares them
    under similar machine load.
    """
    n = min(len(numerator.round_means), len(denominator.round_means))
    ratios = [numerator.round_means[i] / denominator.round_means[i] for i in range(n)]
    return stats(ratios)


# --------------------------------------------------------------------------- JAX


def compile_jax(fn: Callable[..., Any], *args: Any, **jit_kwargs: Any):
    """Lowers and compiles ``fn`` (jitted here unless it already is) for ``args``.

    Returns:
      ``(compiled, info)`` where ``info`` holds ``lower_s``, ``compile_s`` and
      XLA's ``xla_flops`` / ``xla_bytes_accessed`` from ``cost_analysis()``.
    """
    import jax

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn, **jit_kwargs)
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    info = {"lower_s": t1 - t0, "compile_s": t2 - t1}
    info.update(xla_cost(compiled))
    return compiled, info


def xla_cost(compiled: Any) -> dict[str, float]:
    """``flops`` and ``bytes accessed`` from XLA's cost analysis (NaN if absent)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:
        cost = None
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per partition
        cost = cost[0] if cost else None
    cost = cost or {}
    return {
        "xla_flops": float(cost.get("flops", float("nan"))),
        "xla_bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
    }


def jax_matmul_entry(n: int = 2048, *, calls_per_round: int = 1, seed: int = 0) -> Entry:
    """The JAX/XLA float32 matmul rate: ``(n, n) @ (n, n)``, 2 n^3 FLOPs per call."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    compiled, info = compile_jax(jnp.matmul, a, b)

    def call():
        compiled(a, b).block_until_ready()

    info["shape"] = [n, n, n]
    return Entry(
        f"jax_matmul_{n}",
        call,
        flops=2.0 * n**3,
        calls_per_round=calls_per_round,
        framework="jax",
        info=info,
    )


def torch_matmul_entry(
    n: int = 2048, *, threads: int, calls_per_round: int = 1, seed: int = 0
) -> Entry:
    """The PyTorch float32 matmul rate with ``torch.set_num_threads(threads)``."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    a = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    b = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    out = torch.empty((n, n), dtype=torch.float32)

    def call():
        torch.matmul(a, b, out=out)

    return Entry(
        f"torch_matmul_{n}",
        call,
        flops=2.0 * n**3,
        calls_per_round=calls_per_round,
        framework="torch",
        info={"shape": [n, n, n], "threads": threads},
    )


# --------------------------------------------------------------------------- profiling


_TABLE_ROW = re.compile(r"^(\d+) (.*)$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(")


@dataclasses.dataclass(frozen=True)
class OpSource:
    """Where one HLO instruction came from."""

    op_name: str  # JAX's name stack, e.g. "jit(step)/transpose(jvp())/dot_general"
    functions: tuple[str, ...]  # Python functions on the stack, innermost first
    inferred_from: str = ""  # an operand/user it was attributed through (no metadata)


def hlo_sources(hlo_text: str) -> dict[str, OpSource]:
    """Maps each instruction of a compiled module's text to its source stack.

    Reads the ``FileNames``/``FunctionNames``/``FileLocations``/``StackFrames``
    tables that ``compiled.as_text()`` prints and every instruction's
    ``metadata={op_name=... stack_frame_id=...}``. An instruction without
    metadata (copies, iotas XLA created) takes it from a fused computation it
    calls, else from its first user, else from its first operand that has it.
    """
    lines = hlo_text.splitlines()
    tables: dict[str, dict[int, str]] = {}
    current = None
    for line in lines:
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current = tables.setdefault(line, {})
            continue
        if current is not None:
            m = _TABLE_ROW.match(line)
            if m:
                current[int(m.group(1))] = m.group(2)
                continue
            current = None
    functions = {k: v.strip('"') for k, v in tables.get("FunctionNames", {}).items()}
    location_fn = {}
    for k, v in tables.get("FileLocations", {}).items():
        m = re.search(r"function_name_id=(\d+)", v)
        location_fn[k] = functions.get(int(m.group(1)), "?") if m else "?"
    frames = {}
    for k, v in tables.get("StackFrames", {}).items():
        loc = re.search(r"file_location_id=(\d+)", v)
        parent = re.search(r"parent_frame_id=(\d+)", v)
        frames[k] = (int(loc.group(1)) if loc else 0, int(parent.group(1)) if parent else 0)
    # Some printers write parent ids one too high (the root then names itself).
    shift = 1 if any(k == p for k, (_, p) in frames.items()) else 0

    def stack(frame_id: int) -> tuple[str, ...]:
        out, seen = [], set()
        while frame_id in frames and frame_id not in seen:
            seen.add(frame_id)
            loc, parent = frames[frame_id]
            out.append(location_fn.get(loc, "?"))
            frame_id = parent - shift
        return tuple(out)

    own: dict[str, OpSource] = {}
    calls: dict[str, str] = {}
    operands: dict[str, list[str]] = {}
    users: dict[str, list[str]] = collections.defaultdict(list)
    computation_meta: dict[str, OpSource] = {}
    computation = None
    for line in lines:
        c = _COMPUTATION.match(line)
        if c:
            computation = c.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, rest = m.group(1), m.group(2)
        op = re.search(r'op_name="([^"]*)"', rest)
        frame = re.search(r"stack_frame_id=(\d+)", rest)
        src = OpSource(op.group(1), stack(int(frame.group(1))) if frame else ()) if op else None
        if src is not None and computation is not None:
            computation_meta.setdefault(computation, src)
        if src is not None:
            own[name] = src
        callee = re.search(r"calls=%([\w.\-]+)", rest)
        if callee:
            calls[name] = callee.group(1)
        args = [
            a
            for a in re.findall(r"%([\w.\-]+)", rest.split(", metadata=")[0])
            if a != name and (not callee or a != callee.group(1))
        ]
        operands[name] = args
        for a in args:
            users[a].append(name)

    out: dict[str, OpSource] = dict(own)
    for name in operands:
        if name in out:
            continue
        if name in calls and calls[name] in computation_meta:
            out[name] = computation_meta[calls[name]]
    for _ in range(4):  # propagate through chains of metadata-less instructions
        for name in operands:
            if name in out:
                continue
            for other in users.get(name, []) + operands[name]:
                if other in out:
                    src = out[other]
                    out[name] = OpSource(src.op_name, src.functions, inferred_from=other)
                    break
    return out


def hlo_op_counts(
    hlo_text: str,
    opcodes: Sequence[str] = (
        "dot",
        "convolution",
        "gather",
        "scatter",
        "select-and-scatter",
        "reduce-window",
        "copy",
    ),
) -> dict[str, int]:
    """How many instructions of each opcode a compiled module holds (fusions included)."""
    counts = {}
    for op in opcodes:
        counts[op] = len(re.findall(r"\s" + re.escape(op) + r"\(", hlo_text))
    return counts


def profile_ops(call: Callable[[], Any], steps: int = 3) -> dict[str, Any]:
    """Traces ``steps`` calls with ``jax.profiler`` and splits their wall time over thunks.

    XLA:CPU runs a compiled program as a sequence of *thunks* (one per fusion,
    dot, convolution, copy ...), some asynchronously (their work continues in the
    thread pool after the thunk returns; the trace marks the completion with an
    ``end: <name>`` event). Each thunk instance spans from its start to its
    completion; wherever ``m`` thunks are in flight at once, each is charged
    ``1/m`` of that time. The charges add up to the traced busy time.

    Returns:
      ``{"ms_per_step": {thunk: ms}, "busy_ms_per_step": float,
      "wall_ms_per_step": float}``.
    """
    import jax
    from jax.profiler import ProfileData

    logdir = tempfile.mkdtemp(prefix="bench_trace_")
    try:
        jax.profiler.start_trace(logdir)
        t0 = time.perf_counter()
        try:
            for _ in range(steps):
                call()
        finally:
            wall = time.perf_counter() - t0
            jax.profiler.stop_trace()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            return {
                "ms_per_step": {},
                "busy_ms_per_step": 0.0,
                "wall_ms_per_step": wall * 1e3 / steps,
            }
        data = ProfileData.from_file(max(paths, key=os.path.getmtime))
        starts: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        ends: dict[str, list[int]] = collections.defaultdict(list)
        for plane in data.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_XLA"):
                    continue
                for e in line.events:
                    name = e.name
                    if name.startswith(("ThreadpoolListener", "ThunkExecutor", "SlinkyThreadPool")):
                        continue
                    if name.startswith("end: "):
                        ends[name[5:]].append(int(e.start_ns))
                    else:
                        starts[name].append((int(e.start_ns), int(e.start_ns + e.duration_ns)))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    intervals: list[tuple[int, int, str]] = []
    for name, spans in starts.items():
        spans.sort()
        done = sorted(ends.get(name, []))
        j = 0
        for i, (begin, finish) in enumerate(spans):
            next_begin = spans[i + 1][0] if i + 1 < len(spans) else None
            while j < len(done) and done[j] < begin:
                j += 1
            # This instance's completion marker: the first one after its start and
            # not after the next instance's start.
            if j < len(done) and (next_begin is None or done[j] <= next_begin):
                finish = max(finish, done[j])
                j += 1
            intervals.append((begin, finish, name))
    points = []
    for begin, finish, name in intervals:
        points.append((begin, 1, name))
        points.append((finish, -1, name))
    points.sort(key=lambda p: (p[0], p[1]))
    charge: dict[str, float] = collections.defaultdict(float)
    active: collections.Counter = collections.Counter()
    busy, last = 0.0, None
    for t, kind, name in points:
        if last is not None and active:
            dt = t - last
            n = sum(active.values())
            for k, c in active.items():
                charge[k] += dt * c / n
            busy += dt
        last = t
        if kind > 0:
            active[name] += 1
        else:
            active[name] -= 1
            if active[name] <= 0:
                del active[name]
    scale = 1e-6 / steps
    return {
        "ms_per_step": {k: v * scale for k, v in charge.items()},
        "busy_ms_per_step": busy * scale,
        "wall_ms_per_step": wall * 1e3 / steps,
    }


def group_profile(
    profile: Mapping[str, Any],
    sources: Mapping[str, OpSource],
    categorize: Callable[[str, OpSource | None], str],
    top: int = 15,
) -> dict[str, Any]:
    """Sums a :func:`profile_ops` result by category; lists the ``top`` thunks."""
    per_op = profile["ms_per_step"]
    groups: dict[str, float] = collections.defaultdict(float)
    rows = []
    for name, ms in per_op.items():
        src = sources.get(name)
        cat = categorize(name, src)
        groups[cat] += ms
        rows.append(
            {
                "thunk": name,
                "ms": ms,
                "category": cat,
                "op_name": src.op_name if src else "",
                "via": src.inferred_from if src else "",
            }
        )
    rows.sort(key=lambda r: -r["ms"])
    total = sum(groups.values()) or 1.0
    ordered = dict(sorted(groups.items(), key=lambda kv: -kv[1]))
    return {
        "busy_ms_per_step": profile["busy_ms_per_step"],
        "wall_ms_per_step": profile["wall_ms_per_step"],
        "categories_ms": ordered,
        "categories_share": {k: v / total for k, v in ordered.items()},
        "top_thunks": rows[:top],
    }


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def usable_cores() -> int:
    """CPU cores this process may run on (affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, date and load of this machine."""
    mem_gib = None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        pass
    versions = {
        d: package_version(d)
        for d in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "deepctr-torch")
    }
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": usable_cores(),
        "os_cpu_count": os.cpu_count(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


class CpuMonitor:
    """How much of the machine's CPU time went to *other* processes over an interval.

    Reads the aggregate busy time of all CPUs from ``/proc/stat`` (user, nice,
    system, irq, softirq and steal) and this process's own CPU time from
    ``os.times()``; ``foreign_cpu_share`` is the rest, as a fraction of
    ``elapsed x cores``. Near 0 on an idle machine; a shared or oversubscribed
    machine shows up here, and every timing taken meanwhile is suspect (a
    barrier-synchronised thread pool such as PyTorch's OpenMP suffers far more
    from a busy core than a work-stealing one).
    """

    def __init__(self):
        self._start = self._read()

    @staticmethod
    def _read():
        busy = None
        try:
            with open("/proc/stat", encoding="utf-8") as f:
                fields = f.readline().split()
            if fields and fields[0] == "cpu":
                v = [int(x) for x in fields[1:9]]
                busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            pass
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system

    def read(self) -> dict[str, float | None]:
        """Figures since construction (the monitor keeps running)."""
        t1, busy1, own1 = self._read()
        t0, busy0, own0 = self._start
        elapsed, own = t1 - t0, own1 - own0
        out: dict[str, float | None] = {
            "elapsed_s": elapsed,
            "own_cpu_s": own,
            "all_cpu_busy_s": None,
            "foreign_cpu_share": None,
        }
        if busy0 is not None and busy1 is not None and elapsed > 0:
            out["all_cpu_busy_s"] = busy1 - busy0
            foreign = max(0.0, (busy1 - busy0) - own)
            out["foreign_cpu_share"] = foreign / (elapsed * usable_cores())
        return out


def wait_for_idle(
    timeout_s: float,
    *,
    window_s: float = 5.0,
    threshold: float = 0.05,
    log: Callable[[str], None] | None = None,
) -> dict[str, float | None]:
    """Waits (up to ``timeout_s``) until other processes use < ``threshold`` of the CPU.

    Returns the last window's :meth:`CpuMonitor.read` (plus ``waited_s``).
    """
    t0 = time.perf_counter()
    while True:
        m = CpuMonitor()
        time.sleep(window_s)
        last = m.read()
        share = last["foreign_cpu_share"]
        waited = time.perf_counter() - t0
        if share is None or share < threshold or waited >= timeout_s:
            last["waited_s"] = waited
            return last
        if log is not None:
            log(f"waiting for an idle machine: other processes use {100 * share:.0f}% of the CPU")


# --------------------------------------------------------------------------- output


class TrainCall:
    """One train step per call over a pool of device batches; the donated state carries over
    from call to call, as in a training run (one batch: pass ``[batch]``)."""

    def __init__(self, compiled, state, batches: Sequence[Any]):
        self.compiled, self.state, self.batches = compiled, state, batches
        self.calls = 0
        self.metrics, self.finite = None, None

    def __call__(self):
        import jax

        batch = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        self.state, self.metrics, self.finite = self.compiled(self.state, batch)
        jax.block_until_ready((self.state, self.metrics, self.finite))

    def last(self) -> dict[str, Any]:
        return {"last_loss": float(self.metrics["loss"]), "last_step_finite": bool(self.finite)}


def ms_quartiles(s: Mapping[str, float], digits: int = 1) -> str:
    """``"median [q1-q3]"`` in milliseconds from :func:`stats` seconds."""
    return f"{s['median'] * 1e3:.{digits}f} [{s['q1'] * 1e3:.{digits}f}-{s['q3'] * 1e3:.{digits}f}]"


def contention_note(c: Mapping[str, Any]) -> str:
    """How much CPU other processes used during a phase (from :class:`CpuMonitor`)."""
    share = c.get("foreign_cpu_share")
    if share is None:
        return "CPU use of other processes unknown"
    note = "" if share < 0.05 else " -- THE MACHINE WAS BUSY: figures are unreliable"
    return f"other processes used {100 * share:.0f}% of the CPU meanwhile{note}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text (and Markdown-compatible) table."""
    rows = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically (``path.tmp`` then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_jsonable(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
