"""ATT&CK technique rules as data: loading, validation and static matching.

The rule table lives in ``attack_rules.toml`` beside this module (the format is
documented at its top); :func:`load_rules` reads it, or any file a user passes
(``--config.detect.rules=<path>``). A rule has a *static* part — conditions on
the event's own fields (op, subject executable and command line, object type,
name and address class, chmod mode) — and a *dynamic* part — labels the subject
or object must already carry. The static part is matched once per distinct
event shape (:meth:`RuleSet.static_matches`, cached by the detector); the
dynamic part is checked against the label state, in the streaming detector
with Python ints as bitmasks and in the batch detector with JAX arrays.

Labels are numbered ``0..L-1`` (:attr:`RuleSet.labels`); a label set is an
``int`` bitmask. ``tactic_of[l]`` is the label's tactic index, or -1 for the
internal tags (labels with an empty tactic), which flow like techniques but do
not count towards an alarm.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Sequence

from jaxpapers.security.provenance.events import OBJ_TYPES, OPS, Event

DEFAULT_RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attack_rules.toml")

_KEYS = {
    "technique",
    "tactic",
    "label",
    "name",
    "ops",
    "target",
    "subject_exe",
    "subject_cmdline",
    "object_type",
    "object",
    "object_not",
    "remote",
    "mode_exec",
    "subject_has",
    "object_has",
}
_TARGETS = {"subject": 1, "object": 2, "both": 3}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One compiled rule (see ``attack_rules.toml`` for the fields' meaning)."""

    index: int
    label: str
    technique: str
    tactic: str
    name: str
    ops: frozenset[str]
    target: int  # bit 1: subject, bit 2: object
    subject_exe: re.Pattern | None
    subject_cmdline: re.Pattern | None
    object_type: frozenset[str] | None
    object: re.Pattern | None
    object_not: re.Pattern | None
    remote: str  # "", "external" or "internal"
    mode_exec: bool
    subject_has: int  # bitmask (0: no condition)
    object_has: int


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# RFC 5737 documentation ranges are "private" to Python's ipaddress; the embedded
# generator uses them for public clients, so they count as external here.
_DOC_NETS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


def remote_class(obj: str) -> str:
    """``"external"``, ``"internal"`` or ``""`` (unparsable) for a socket name.

    Names are ``"ip:port"`` (``"[v6]:port"`` for IPv6) or ``"unix:<path>"``.
    Private, loopback, link-local, reserved and shared (CGNAT) addresses and unix
    sockets are internal; every other address (documentation ranges included) is
    external.
    """
    if obj.startswith("unix:"):
        return "internal"
    return _host_class(obj.rsplit(":", 1)[0].strip("[]") if ":" in obj else obj)


@functools.lru_cache(maxsize=1 << 16)  # hosts repeat across ports and connections
def _host_class(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv4Address) and any(address in n for n in _DOC_NETS):
        return "external"
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    ):
        return "internal"
    return "external"


def _mode_sets_exec(arg: str) -> bool:
    try:
        return bool(int(arg, 8) & 0o111)
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """A compiled rule table.

    Attributes:
      rules: the rules in file order.
      labels: label names; a label's index is its bit.
      tactic_of: per label, the index of its tactic in ``tactics`` (-1: internal tag).
      tactics: tactic names in kill-chain order.
      trusted: regex of subject executables no rule fires for.
      by_op: op -> indices of the rules that apply to it.
    """

    rules: tuple[Rule, ...]
    labels: tuple[str, ...]
    tactic_of: tuple[int, ...]
    tactics: tuple[str, ...]
    trusted: re.Pattern | None
    by_op: dict[str, tuple[int, ...]]

    @property
    def technique_mask(self) -> int:
        """Bitmask of the labels that are ATT&CK techniques (not internal tags)."""
        return sum(1 << i for i, t in enumerate(self.tactic_of) if t >= 0)

    def tactic_names(self, mask: int) -> list[str]:
        """The distinct tactics the labels in ``mask`` cover, in kill-chain order."""
        seen = {t for i, t in enumerate(self.tactic_of) if t >= 0 and mask >> i & 1}
        return [self.tactics[t] for t in sorted(seen)]

    def tactic_count(self, mask: int) -> int:
        """How many distinct tactics the labels in ``mask`` cover."""
        return len(self.tactic_names(mask))

    def names(self, mask: int) -> list[str]:
        """The label names in ``mask``."""
        return [name for i, name in enumerate(self.labels) if mask >> i & 1]

    def static_matches(self, event: Event) -> tuple[int, ...]:
        """Indices of the rules whose static conditions ``event`` satisfies."""
        indices = self.by_op.get(event.op)
        if not indices:
            return ()
        exe = event.exe
        if self.trusted is not None and exe and self.trusted.search(exe):
            return ()
        remote = None  # classified only when a rule asks
        out = []
        for i in indices:
            r = self.rules[i]
            if r.object_type is not None and event.obj_type not in r.object_type:
                continue
            if r.subject_exe is not None and not r.subject_exe.search(exe):
                continue
            if r.subject_cmdline is not None and not r.subject_cmdline.search(event.cmdline):
                continue
            if r.object is not None and not r.object.search(event.obj):
                continue
            if r.object_not is not None and r.object_not.search(event.obj):
                continue
            if r.remote:
                if remote is None:
                    remote = remote_class(event.obj) if event.obj_type == "socket" else ""
                if remote != r.remote:
                    continue
            if r.mode_exec and not _mode_sets_exec(event.arg):
                continue
            out.append(i)
        return tuple(out)


def _compile(pattern, where: str) -> re.Pattern | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: a regex must be a string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{where}: bad regex {pattern!r}: {e}") from None


def load_rules(path: str | None = None, *, text: str | None = None) -> RuleSet:
    """Loads and validates a rule table (the shipped one by default).

    Args:
      path: a TOML file in the ``attack_rules.toml`` format.
      text: the TOML text itself (instead of ``path``).

    Returns:
      The compiled :class:`RuleSet`.

    Raises:
      ValueError: naming the rule and the field for an unknown key, op, object
        type, target or tactic, a bad regex, or a condition on an undefined label.
    """
    if text is None:
        path = path or DEFAULT_RULES
        if not os.path.exists(path):
            raise FileNotFoundError(f"rule table {path!r} does not exist")
        with open(path, "rb") as f:
            text = f.read().decode()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"rule table {path or '<text>'}: {e}") from None
    tactics = tuple(data.get("tactics", {}).get("order", ()))
    if not tactics:
        raise ValueError("rule table needs [tactics] order = [...]")
    raw = data.get("rule", [])
    if not raw:
        raise ValueError("rule table has no [[rule]] entries")
    labels: list[str] = []
    tactic_of: list[int] = []
    for n, r in enumerate(raw):
        where = f"rule {n} ({r.get('name', '?')})"
        unknown = set(r) - _KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(_KEYS)}")
        label = r.get("label") or r.get("technique")
        if not label:
            raise ValueError(f"{where}: needs `technique` or `label`")
        tactic = r.get("tactic", "")
        if tactic and tactic not in tactics:
            raise ValueError(f"{where}: unknown tactic {tactic!r}; valid: {list(tactics)}")
        t = tactics.index(tactic) if tactic else -1
        if label in labels:
            if tactic_of[labels.index(label)] != t:
                raise ValueError(f"{where}: label {label!r} given two different tactics")
        else:
            labels.append(label)
            tactic_of.append(t)
    index = {name: i for i, name in enumerate(labels)}

    def mask(names, where):
        out = 0
        for name in names or ():
            if name not in index:
                raise ValueError(f"{where}: condition on undefined label {name!r}")
            out |= 1 << index[name]
        return out

    rules = []
    for n, r in enumerate(raw):
        where = f"rule {n} ({r.get('name', '?')})"
        ops = r.get("ops")
        if not ops or any(op not in OPS for op in ops):
            raise ValueError(f"{where}: ops must be a non-empty subset of {OPS}; got {ops!r}")
        target = r.get("target", "subject")
        if target not in _TARGETS:
            raise ValueError(f"{where}: target must be one of {sorted(_TARGETS)}; got {target!r}")
        otypes = r.get("object_type")
        if otypes is not None and any(t not in OBJ_TYPES for t in otypes):
            raise ValueError(f"{where}: object_type must be a subset of {OBJ_TYPES}")
        remote = r.get("remote", "")
        if remote not in ("", "external", "internal"):
            raise ValueError(f"{where}: remote must be 'external' or 'internal'; got {remote!r}")
        label = r.get("label") or r["technique"]
        rules.append(
            Rule(
                index=n,
                label=label,
                technique=r.get("technique", ""),
                tactic=r.get("tactic", ""),
                name=r.get("name", label),
                ops=frozenset(ops),
                target=_TARGETS[target],
                subject_exe=_compile(r.get("subject_exe"), f"{where}.subject_exe"),
                subject_cmdline=_compile(r.get("subject_cmdline"), f"{where}.subject_cmdline"),
                object_type=frozenset(otypes) if otypes is not None else None,
                object=_compile(r.get("object"), f"{where}.object"),
                object_not=_compile(r.get("object_not"), f"{where}.object_not"),
                remote=remote,
                mode_exec=bool(r.get("mode_exec", False)),
                subject_has=mask(r.get("subject_has"), f"{where}.subject_has"),
                object_has=mask(r.get("object_has"), f"{where}.object_has"),
            )
        )
    by_op: dict[str, list[int]] = {}
    for rule in rules:
        for op in rule.ops:
            by_op.setdefault(op, []).append(rule.index)
    trusted = _compile(data.get("trusted", {}).get("exe"), "[trusted].exe")
    return RuleSet(
        rules=tuple(rules),
        labels=tuple(labels),
        tactic_of=tuple(tactic_of),
        tactics=tactics,
        trusted=trusted,
        by_op={op: tuple(v) for op, v in by_op.items()},
    )


def label_index(rules: RuleSet, names: Sequence[str]) -> int:
    """The bitmask of the named labels (``ValueError`` for an unknown one)."""
    out = 0
    for name in names:
        if name not in rules.labels:
            raise ValueError(f"unknown label {name!r}; known: {list(rules.labels)}")
        out |= 1 << rules.labels.index(name)
    return out
