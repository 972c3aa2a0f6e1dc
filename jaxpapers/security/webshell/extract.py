"""BFAD's Context-Aware Code Extraction: the most behaviour-indicative code within a budget.

WebShells reach 1.38M tokens; an LLM sees a few thousand. BFAD keeps the code around the
critical calls found by the Critical Function Filter (:mod:`.critical`). :func:`extract`
builds one *unit* per call site, ranks the units by behavioural weight and packs the best
into the token budget.

A unit (per call site, from the facts :func:`.critical.analyse` recorded in one pass)
--------------------------------------------------------------------------------------
* **core**: the innermost statement containing the call. When that statement is a control
  statement (``if``/``while``/``foreach``/``function``/``class`` ...), the call sits in its
  header, and the core is only the source lines of the call inside it, not the whole body.
* **signature**: the enclosing function's, method's or closure's header (up to its body) and
  the enclosing class's header (``class A extends B``).
* **slice**: the backward data-flow slice: the statements of every assignment (same scope,
  flow-insensitive, so branches and loops are covered) to a variable the call reads, then to
  the variables those assignments read, transitively, back to the user-input sources;
  at most ``MAX_SLICE`` assignments, nearest dependencies first.
* **context**: ``context`` statements before and after the core in the same block
  (comments and inline HTML do not count).

Units whose cores overlap (several calls in one statement, a call inside a closure inside
another call's statement) are merged. Context and slice statements shared by several units
are emitted once and paid once: costs are *marginal* (only the text not already chosen).

Ranking and packing (choices where the paper is silent)
--------------------------------------------------------
* Weight of a unit: the sum over its critical calls of the call's weight: 1 when no
  ``weights`` are given, else ``weights.get(name, UNWEIGHTED)`` (the WBFP function weights,
  from the caller; WBFP leaves out functions not more frequent in malicious code, so such
  calls get the small :data:`UNWEIGHTED` and rank below every weighted one), times
  ``1 + TAINT_BONUS`` (1.5) for calls fed by user input. Ties: tainted first, then source
  order.
* Greedy, best first. A unit that does not fit is degraded level by level: without context,
  without slice, then the core alone (with nothing else of the unit). A unit whose core alone
  is longer than the whole budget (5 MB obfuscated one-liners) is **cut by characters**
  around its heaviest call, with ``/* [N bytes cut] */`` markers, to fit what is left (if at
  least ``max(16, budget / 8)`` tokens are left, or nothing was chosen yet). Otherwise the
  unit is dropped: the lowest-weight units are the ones dropped.
* The kept spans are emitted in source order; spans separated only by whitespace are joined
  with it, others with ``\\n// ...\\n``.
* If the whole file fits the budget it is returned whole (``whole_if_fits``): extraction
  exists for files that do not fit. With no critical call, the start of the file is cut to
  the budget (with a marker).
* ``truncated`` is True when anything was left out or cut: a dropped call, a degraded unit,
  or a character cut.

The budget is never exceeded as measured by ``count_tokens``: packing uses per-piece
estimates, then the rendered text is counted once; if over (token counts are not exactly
additive), the last-chosen units are removed, and as a last resort the text is cut to a
prefix that measures within the budget. ``count_tokens`` is never called on huge strings:
text longer than ``budget * MAX_CHARS_PER_TOKEN`` characters is taken to be over budget
without counting (this assumes no token is longer than 32 characters; a tokenizer with
longer tokens only makes extraction cut more than needed, never exceed), and character cuts
search the cut length with a few counts (interpolation + bisection).

The default :func:`approx_tokens` is a fast regex count: every run of up to 4 word characters
is one token (``function`` is 2), every other non-space character is one token, whitespace
is free. It over-counts GPT-style BPE on code a little, which is the safe direction.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping

import tree_sitter

from jaxpapers.security.webshell import php
from jaxpapers.security.webshell.critical import (
    Analysis,
    CriticalCall,
    FileIndex,
    Site,
    analyse,
    as_source,
)

SEPARATOR = "\n// ...\n"
TAINT_BONUS = 0.5
UNWEIGHTED = 0.05  # weight of a critical call whose function the given weights leave out
MAX_SLICE = 24
MAX_CHARS_PER_TOKEN = 32
_MAX_GAP = 256  # whitespace gaps up to this many bytes are kept verbatim between spans
_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")
_CONTROL_TYPES = frozenset(
    """if_statement while_statement do_statement for_statement foreach_statement
    switch_statement try_statement function_definition method_declaration class_declaration
    interface_declaration trait_declaration enum_declaration namespace_definition
    declare_statement""".split()
)
_NOT_CONTEXT = frozenset({"comment", "php_tag", "php_end_tag", "text_interpolation", "text"})

Span = tuple[int, int]


def approx_tokens(text: str) -> int:
    """A fast token count: runs of <= 4 word characters and single other non-space characters."""
    return len(_TOKEN_RE.findall(text))


@dataclasses.dataclass
class Extraction:
    """The extracted text, its token count, and which critical calls made it in."""

    text: str
    tokens: int
    kept: list[CriticalCall]
    dropped: list[CriticalCall]
    truncated: bool


@dataclasses.dataclass
class _Unit:
    calls: list[CriticalCall]
    levels: list[list[Span]]  # best first: full, no context, no slice, core alone
    core: list[Span]
    weight: float = 0.0
    tainted: bool = False


@dataclasses.dataclass
class _Item:
    """One chosen piece of output: a source span, or a cut region with its own text."""

    start: int
    end: int
    text: str | None = None  # set for character cuts
    window: Span | None = None  # the source bytes a cut keeps


# --------------------------------------------------------------------------------------------
# Spans
# --------------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _merge(spans: list[Span]) -> list[Span]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _bridge(spans: list[Span], data: bytes) -> list[Span]:
    """Merged spans joined across short whitespace-only gaps (rendered verbatim, for free)."""
    out: list[Span] = []
    for s, e in spans:
        if out and s - out[-1][1] <= _MAX_GAP and not data[out[-1][1] : s].strip():
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


def _subtract(spans: list[Span], chosen: list[Span]) -> list[Span]:
    """Parts of ``spans`` (merged) not covered by ``chosen`` (merged, sorted)."""
    out = []
    starts = [s for s, _ in chosen]
    for s, e in spans:
        i = max(bisect.bisect_right(starts, s) - 1, 0)
        cur = s
        while i < len(chosen) and chosen[i][0] < e:
            cs, ce = chosen[i]
            if ce > cur:
                if cs > cur:
                    out.append((cur, cs))
                cur = max(cur, ce)
            i += 1
        if cur < e:
            out.append((cur, e))
    return out


def _line_span(data: bytes, outer: Span, inner: Span) -> Span:
    """The source lines of ``inner`` clipped to ``outer``."""
    start = data.rfind(b"\n", outer[0], inner[0]) + 1
    end = data.find(b"\n", inner[1], outer[1])
    return (max(start, outer[0]), outer[1] if end < 0 else end)


class _Spans:
    """Span helpers over one file's index (caches block children)."""

    def __init__(self, index: FileIndex, context: int):
        self.index, self.data, self.context = index, index.data, context
        self._children: dict[int, tuple[list[tree_sitter.Node], list[int]]] = {}

    def statement(self, stmt: tree_sitter.Node | None, node: tree_sitter.Node) -> Span:
        if stmt is None:
            return (node.start_byte, node.end_byte)
        outer = (stmt.start_byte, stmt.end_byte)
        if stmt.type in _CONTROL_TYPES:
            return _line_span(self.data, outer, (node.start_byte, node.end_byte))
        return outer

    def signature(self, site: Site) -> list[Span]:
        out = []
        for owner in (site.cls, site.func):
            if owner is None:
                continue
            body = owner.child_by_field_name("body")
            end = body.start_byte if body is not None else owner.end_byte
            while end > owner.start_byte and self.data[end - 1] in b" \t\r\n":
                end -= 1
            out.append((owner.start_byte, end))
        return out

    def siblings(self, stmt: tree_sitter.Node | None, block: tree_sitter.Node | None) -> list[Span]:
        if stmt is None or block is None or self.context == 0:
            return []
        cached = self._children.get(block.id)
        if cached is None:
            kids = [c for c in block.named_children if c.type not in _NOT_CONTEXT]
            cached = (kids, [c.start_byte for c in kids])
            self._children[block.id] = cached
        kids, starts = cached
        i = bisect.bisect_left(starts, stmt.start_byte)
        if i >= len(kids) or kids[i].start_byte != stmt.start_byte:
            return []
        lo, hi = max(0, i - self.context), min(len(kids), i + self.context + 1)
        return [(k.start_byte, k.end_byte) for j, k in enumerate(kids[lo:hi], lo) if j != i]

    def backward_slice(self, site: Site) -> list[Span]:
        index, scope = self.index, site.scope
        seen_vars: set[str] = set()
        queue = collections.deque(sorted(site.reads))
        spans: list[Span] = []
        seen_asg: set[int] = set()
        while queue and len(seen_asg) < MAX_SLICE:
            var = queue.popleft()
            if var in seen_vars:
                continue
            seen_vars.add(var)
            for asg in index.assignments.get((scope, var), ()):
                if id(asg) in seen_asg or len(seen_asg) >= MAX_SLICE:
                    continue
                seen_asg.add(id(asg))
                spans.append(self.statement(asg.stmt, asg.node))
                queue.extend(v for v in sorted(asg.reads) if v not in seen_vars)
        return spans


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


def _largest_fitting(
    make: Callable[[int], str], n_max: int, limit: int, count: Callable[[str], int]
) -> tuple[int, str] | None:
    """The largest ``n <= n_max`` (searched, not exhaustive) with ``count(make(n)) <= limit``.

    Only measured texts are returned, so the result always fits; None if ``make(0)`` does not.
    """
    text = make(n_max)
    c_hi = count(text)
    if c_hi <= limit:
        return n_max, text
    lo, lo_text = 0, make(0)
    c_lo = count(lo_text)
    if c_lo > limit:
        return None
    hi = n_max
    for step in range(40):
        if hi - lo <= max(1, lo // 200):
            break
        if step % 2 == 0 and c_hi > c_lo:
            guess = lo + int((hi - lo) * (limit - c_lo) / (c_hi - c_lo))
        else:
            guess = (lo + hi) // 2
        guess = min(max(guess, lo + 1), hi - 1)
        t = make(guess)
        c = count(t)
        if c <= limit:
            lo, lo_text, c_lo = guess, t, c
        else:
            hi, c_hi = guess, c
    return lo, lo_text


class _Packer:
    def __init__(self, data: bytes, budget: int, count: Callable[[str], int]):
        self.data, self.budget, self.count = data, budget, count
        self.sep_cost = count(SEPARATOR)
        self.used = 0
        self.raw: list[Span] = []  # merged, sorted chosen source spans
        self.cuts: list[_Item] = []
        self._cache: dict[Span, float] = {}

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def piece_cost(self, span: Span) -> float:
        cost = self._cache.get(span)
        if cost is None:
            s, e = span
            if e - s > self.budget * MAX_CHARS_PER_TOKEN:
                cost = math.inf
            else:
                cost = self.count(_decode(self.data[s:e]))
            self._cache[span] = cost
        return cost

    def covered(self) -> list[Span]:
        if not self.cuts:
            return self.raw
        return _merge(self.raw + [(c.start, c.end) for c in self.cuts])

    def marginal(self, spans: list[Span]) -> tuple[float, list[Span]]:
        pieces = _subtract(_merge(spans), self.covered())
        return sum(self.piece_cost(p) + self.sep_cost for p in pieces), pieces

    def take(self, cost: float, pieces: list[Span]) -> None:
        self.used += int(cost)
        self.raw = _merge(self.raw + pieces)

    def cut(self, core: Span, anchor: Span, limit: int) -> _Item | None:
        """The core cut by characters around ``anchor`` to fit ``limit`` tokens (with markers)."""
        s, e = core
        a0, a1 = max(anchor[0], s), min(anchor[1], e)
        data = self.data

        def window(n: int) -> Span:
            # a third of the spare room before the call (an eighth of n for a huge call)
            spare = (n - (a1 - a0)) // 3 if a1 - a0 < n else n // 8
            a = max(s, a0 - spare)
            b = min(e, a + n)
            return max(s, b - n), b

        def make(n: int) -> str:
            a, b = window(n)
            head = f"/* [{a - s} bytes cut] */ " if a > s else ""
            tail = f" /* [{e - b} bytes cut] */" if b < e else ""
            return head + _decode(data[a:b]) + tail

        found = _largest_fitting(make, min(e - s, limit * MAX_CHARS_PER_TOKEN), limit, self.count)
        if found is None:
            return None
        n, text = found
        item = _Item(s, e, text, window(n))
        self.cuts.append(item)
        self.used += self.count(text) + self.sep_cost
        return item


def _render(data: bytes, raw: list[Span], cuts: list[_Item]) -> tuple[str, list[Span]]:
    """Text of the chosen spans in source order, and the source windows it shows."""
    items = [_Item(s, e) for s, e in raw]
    for cut in cuts:  # a cut region replaces the raw spans inside it
        items = [
            it for it in items if it.end <= cut.start or it.start >= cut.end or it.text is not None
        ]
        items.append(cut)
    items.sort(key=lambda it: it.start)
    parts: list[str] = []
    shown: list[Span] = []
    prev_end: int | None = None
    for it in items:
        start = it.start if prev_end is None else max(it.start, prev_end)
        if start >= it.end and it.text is None:
            continue
        if prev_end is not None:
            gap = data[prev_end:start]
            parts.append(_decode(gap) if len(gap) <= _MAX_GAP and not gap.strip() else SEPARATOR)
        if it.text is not None:
            parts.append(it.text)
            shown.append(it.window or (it.start, it.end))
        else:
            parts.append(_decode(data[start : it.end]))
            shown.append((start, it.end))
        prev_end = max(it.end, prev_end or 0)
    return "".join(parts), shown


def _in_shown(call: CriticalCall, shown: list[Span]) -> bool:
    return any(s <= call.start_byte < e for s, e in shown)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _build_units(
    analysis: Analysis, index: FileIndex, context: int, weights: Mapping[str, float]
) -> list[_Unit]:
    spans = _Spans(index, context)
    by_site: dict[Span, list[CriticalCall]] = collections.defaultdict(list)
    for call in analysis.calls:
        by_site[(call.start_byte, call.end_byte)].append(call)
    units: list[_Unit] = []
    for key, calls in by_site.items():
        site = index.site_by_span.get(key)
        if site is None:  # a call the index does not know (stale analysis): the call alone
            units.append(_Unit(calls, [[key] for _ in range(4)], [key]))
            continue
        core = spans.statement(site.stmt, site.node)
        sig = spans.signature(site)
        sl = spans.backward_slice(site)
        ctx = spans.siblings(site.stmt, site.block)
        levels = [[core, *sig, *sl, *ctx], [core, *sig, *sl], [core, *sig], [core]]
        units.append(_Unit(calls, levels, [core]))
    # merge units whose cores overlap (sweep over sorted cores; lists extended in place)
    units.sort(key=lambda u: u.core[0])
    merged: list[_Unit] = []
    core_end = -1
    for u in units:
        if merged and u.core[0][0] < core_end:
            last = merged[-1]
            last.calls.extend(u.calls)
            for mine, theirs in zip(last.levels, u.levels):
                mine.extend(theirs)
            last.core.extend(u.core)
        else:
            merged.append(u)
        core_end = max(core_end, u.core[0][1])
    data = index.data
    for u in merged:
        u.levels = [_bridge(_merge(level), data) for level in u.levels]
        u.core = _merge(u.core)
        u.weight = sum(
            _weight(weights, c.name) * (1.0 + TAINT_BONUS if c.tainted else 1.0) for c in u.calls
        )
        u.tainted = any(c.tainted for c in u.calls)
    merged.sort(key=lambda u: (-u.weight, not u.tainted, u.core[0][0]))
    return merged


def _weight(weights: Mapping[str, float] | None, name: str) -> float:
    """A call's behavioural weight: 1 without weights; else its WBFP weight, or
    :data:`UNWEIGHTED` for a critical function the weights leave out (WBFP drops the
    functions that are not more frequent in malicious code, so they rank last)."""
    if not weights:
        return 1.0
    return float(weights.get(name, UNWEIGHTED))


def _check_args(budget: int, context: int, count_tokens, weights) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int (tokens), got {budget!r}")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be a non-negative int (statements), got {context!r}")
    if not callable(count_tokens):
        raise ValueError(f"count_tokens must be callable str -> int, got {count_tokens!r}")
    if weights is not None and not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a mapping name -> weight or None, got {weights!r}")


def extract(
    source: php.PhpSource | bytes | str | os.PathLike,
    analysis: Analysis | None = None,
    *,
    budget: int,
    count_tokens: Callable[[str], int] = approx_tokens,
    weights: Mapping[str, float] | None = None,
    context: int = 2,
    whole_if_fits: bool = True,
) -> Extraction:
    """Keeps the most behaviour-indicative code of ``source`` within ``budget`` tokens.

    ``analysis`` is :func:`.critical.analyse`'s result for the same source (computed when
    None; re-computed when it lacks its index). See the module docstring for the method.
    """
    _check_args(budget, context, count_tokens, weights)
    src = as_source(source)
    empty = count_tokens("")
    if empty > budget:
        raise ValueError(f"budget {budget} is below count_tokens('') = {empty}")
    if analysis is None:
        analysis = analyse(src)
    calls = list(analysis.calls)
    if not src.ok:
        return Extraction("", empty, [], calls, bool(calls))
    data = src.data
    limit_chars = budget * MAX_CHARS_PER_TOKEN

    if whole_if_fits and len(data) <= limit_chars:
        text = _decode(data)
        tokens = count_tokens(text)
        if tokens <= budget:
            return Extraction(text, tokens, calls, [], False)

    if not calls or analysis.skipped:  # nothing critical (or the analysis failed)
        return _prefix(data, budget, count_tokens, calls)

    index = analysis.index
    if index is None or index.data != data:
        index = analyse(src).index
    if index is None:  # cannot happen for an ok source; keep extraction total anyway
        return _prefix(data, budget, count_tokens, calls)

    units = _build_units(analysis, index, context, weights or {})
    packer = _Packer(data, budget, count_tokens)
    order: list[tuple[_Unit, list[Span] | None, _Item | None]] = []
    oversize = [u for u in units if packer.marginal(u.core)[0] > budget]
    fitting = [u for u in units if all(u is not o for o in oversize)]
    taken: set[int] = set()
    degraded = False

    def fit_pass(reserve: int) -> None:
        nonlocal degraded
        for unit in fitting:
            if packer.remaining - reserve <= packer.sep_cost:
                return
            if id(unit) in taken:
                continue
            for level, spans in enumerate(unit.levels):
                cost, pieces = packer.marginal(spans)
                if cost <= packer.remaining - reserve:
                    packer.take(cost, pieces)
                    order.append((unit, pieces, None))
                    taken.add(id(unit))
                    degraded |= level > 0
                    break

    # units that fit first, keeping half the budget for the cuts of oversize units (if any);
    # then the cuts, sharing what is left by rank; then whatever still fits
    fit_pass(budget // 2 if oversize else 0)
    cut_floor = min(budget, max(16, budget // 8))
    for i, unit in enumerate(oversize):
        share = packer.remaining // (len(oversize) - i) - packer.sep_cost
        if share < cut_floor and order:
            continue
        anchor = max(unit.calls, key=lambda c: _weight(weights, c.name))
        core = next((s for s in unit.core if s[0] <= anchor.start_byte < s[1]), unit.core[0])
        item = packer.cut(core, (anchor.start_byte, anchor.end_byte), share)
        if item is not None:
            order.append((unit, None, item))
        degraded = True
    fit_pass(0)

    # Exact check. Token counts are not exactly additive: while over, drop the last-chosen
    # unit; a sole unit still over is cut by characters to the whole budget.
    while True:
        raw = _merge([p for _, pieces, _ in order if pieces for p in pieces])
        cuts = [item for _, _, item in order if item is not None]
        text, shown = _render(data, raw, cuts)
        tokens = count_tokens(text)
        if tokens <= budget:
            break
        degraded = True
        if len(order) > 1:
            order.pop()
            continue
        unit = order[0][0]
        anchor = unit.calls[0]
        core = next((s for s in unit.core if s[0] <= anchor.start_byte < s[1]), unit.core[0])
        item = _Packer(data, budget, count_tokens).cut(
            core, (anchor.start_byte, anchor.end_byte), budget
        )
        if item is None:
            text, shown, tokens = "", [], empty
            break
        order = [(unit, None, item)]
    kept = [c for c in calls if _in_shown(c, shown)]
    dropped = [c for c in calls if not _in_shown(c, shown)]
    return Extraction(text, tokens, kept, dropped, degraded or bool(dropped))


def head(
    source: php.PhpSource | bytes,
    *,
    budget: int,
    count_tokens: Callable[[str], int] = approx_tokens,
) -> Extraction:
    """The start of the file cut to ``budget`` tokens, with a marker when cut (what plain
    prompting shows of a file)."""
    _check_args(budget, 0, count_tokens, None)
    if isinstance(source, php.PhpSource) and not source.ok:
        return Extraction("", count_tokens(""), [], [], False)
    data = source.data if isinstance(source, php.PhpSource) else bytes(source)
    return _prefix(data, budget, count_tokens, [])


def _prefix(
    data: bytes, budget: int, count_tokens: Callable[[str], int], calls: list[CriticalCall]
) -> Extraction:
    """The start of the file cut to the budget, with a marker when cut."""
    n_total = len(data)

    def make(n: int) -> str:
        tail = f"\n/* [{n_total - n} bytes cut] */" if n < n_total else ""
        return _decode(data[:n]) + tail

    found = _largest_fitting(make, min(n_total, budget * MAX_CHARS_PER_TOKEN), budget, count_tokens)
    if found is None:
        return Extraction("", count_tokens(""), [], calls, True)
    n, text = found
    kept = [c for c in calls if c.start_byte < n]
    dropped = [c for c in calls if c.start_byte >= n]
    return Extraction(text, count_tokens(text), kept, dropped, n < n_total)
