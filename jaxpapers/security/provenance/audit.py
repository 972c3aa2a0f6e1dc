"""Streaming parser: raw Linux audit logs (``/var/log/audit/audit.log``) → :class:`Event`.

:func:`parse_audit` turns an iterable of log lines into a stream of
:class:`~jaxpapers.security.provenance.events.Event` (one per system call that
matters for provenance, mapped as the table in :mod:`.events` says);
:func:`read_audit` does the same for files (plain or gzip), lazily.
:class:`ParseStats` counts what happened (lines, records, malformed lines by
reason, events, dropped events by reason, bounded-state high-water marks).

Input format: one record per line, ``type=T msg=audit(<sec.msec>:<serial>): k=v ...``
(an optional ``node=<host> `` prefix is removed). Records of one system call
share ``<sec.msec>:<serial>`` (the *key*); ``EOE`` ends the event. Only the raw
format is read (not ``ausearch -i`` output). Record types read: ``SYSCALL``,
``PATH``, ``CWD``, ``EXECVE``, ``PROCTITLE``, ``SOCKADDR``, ``FD_PAIR``, ``MMAP``
and ``EOE``; all other records are counted and ignored.

Deliberate choices:

* **Streaming, bounded memory.** Records are grouped by key in a dict of open
  groups. A group is emitted at its ``EOE``; or, for logs without ``EOE``, when a
  record of a *different* key arrives right after it and it is complete: it has
  its ``SYSCALL``, ``items=N`` ``PATH`` records, and its ``PROCTITLE`` (the
  kernel's last record) if the log has any ``PROCTITLE`` at all — so records of
  two serials can interleave. Beyond ``max_open_events`` open groups the oldest
  is emitted as it is (``ParseStats.evicted_groups``); at the end all are. The
  keys of the last 1024 groups emitted early are remembered so that a straggling
  record of one is ignored (``ParseStats.late_records``) instead of opening a
  group that can never complete. One group keeps at most 64 ``PATH`` records
  and ``4 * max_line`` characters of ``PATH``/``EXECVE`` records (more are
  malformed ``group_too_large``). Per-process state is dropped at
  ``exit_group`` (and at ``exit`` of the last known thread) and evicted
  least-recently-used beyond ``max_processes``; an fd table keeps at most 65536
  fds (oldest dropped first). Nothing is kept per line.
* **Speed.** Lines are cut with ``str`` methods only (no regex). A ``SYSCALL``
  record is split at its ``ppid=`` field: the subject part from there (``ppid pid auid uid
  ... comm exe [subj] key``) is the same for every call of a process, so it is
  parsed and fully checked (a field without ``=`` or a repeated key, also one
  of the head's, is malformed) once per distinct text and cached (4096
  entries of at most 2048 characters); the head (``arch syscall success exit a0 a1 a2 a3 items``) is read by
  position once its anchors ``syscall=``, ``success=`` and ``items=`` are where
  the kernel puts them (a field added or missing moves them; the other keys of
  the head are not compared). A record in another layout (no ``success``, an
  extra ``per=``, another order) goes through a general ``key=value`` split,
  where a repeated key is malformed.
  Only the fields used are converted; ``a1``/``a2`` lazily, by the few calls
  that use them (bad hex there drops the event: ``dropped["bad_value"]``).
  ``PROCTITLE`` is decoded once per process and title, not once per event.
  Events are built with ``tuple.__new__``; ``lines``/``records`` are added to
  :class:`ParseStats` when the stream ends.
* **Process state** resolves fd-based calls: a per-pid fd table filled by
  ``open``/``openat``/``creat`` (file), ``socket`` (a socket whose peer is not
  yet known), ``connect`` (``SOCKADDR`` → ``"ip:port"``; also bound when a
  non-blocking connect returns ``-EINPROGRESS``, the connection being under way),
  ``accept``/``accept4`` (the new fd → the peer), ``pipe``/``pipe2``/
  ``socketpair`` (``FD_PAIR`` → one ``pipe:<pid>:<fd0>:<fd1>`` object),
  ``memfd_create`` (``memfd:<pid>:<fd>``: audit does not log the name),
  ``dup``/``dup2``/``dup3``/``fcntl(F_DUPFD[_CLOEXEC])`` (copy), ``close`` and
  ``close_range`` (remove). ``fork``/``vfork``/``clone``/``clone3`` children get a
  copy of the parent's table, or share it for ``clone(CLONE_FILES)``; a
  ``CLONE_THREAD`` clone (audit logs the thread-group id as ``pid=``) creates no
  process: its ``fork`` event has ``arg="thread"`` and the thread's ``exit``
  only decrements a thread count (no ``exit`` event: the process lives on).
  ``execve`` keeps the fd table (close-on-exec flags are not logged). The
  process's ``exe``/``comm`` are taken from every ``SYSCALL`` record, its cwd
  from ``CWD`` records and ``chdir``/``fchdir``, its command line from ``EXECVE``
  (full argv) and ``PROCTITLE`` (truncated by the kernel to 128 bytes: a title
  that is a prefix of the known argv keeps the full argv).
* **Mapping.** ``read``/``pread64``/``readv``/``preadv[2]`` and the ``write``
  family on an fd → ``read``/``write`` on a file, pipe or memfd, ``recv``/
  ``send`` on a socket; ``open``/``openat`` → ``read`` for ``O_RDONLY`` without
  ``O_CREAT``/``O_TRUNC``, else ``write`` (``creat`` → ``write``; ``openat2``
  only fills the fd table: its flags are behind a pointer); ``sendto``/
  ``sendmsg``/``sendmmsg`` → ``send`` and ``recvfrom``/``recvmsg``/``recvmmsg``
  → ``recv`` on the ``SOCKADDR`` address if logged, else the fd's socket (on a
  non-socket fd: ``write``/``read``); ``execve``/``execveat`` → ``execve`` (obj:
  ``PATH`` item 0 resolved, else the new ``exe``; ``/proc/self/fd/N``,
  ``/proc/<pid>/fd/N``, ``/dev/fd/N`` and ``execveat(fd, "")`` resolve through
  the fd table; a ``/memfd:NAME (deleted)`` image is ``memfd:NAME``); ``unlink``/
  ``unlinkat``/``rmdir`` → ``unlink``; ``chmod``/``fchmod``/``fchmodat`` →
  ``chmod`` (``arg`` = octal permission bits); ``rename``/``renameat``/
  ``renameat2`` → ``rename`` (first ``DELETE`` item → obj, last ``CREATE`` item →
  obj2); ``mmap`` with ``PROT_EXEC`` of an fd (from the ``MMAP`` record) →
  ``mmap``; ``exit``/``exit_group`` → ``exit``. Paths are made absolute against
  the dirfd (``*at`` calls) or the cwd and normalised; ``(deleted)`` is
  stripped from names taken from ``exe``. Sockets are named ``ip:port``
  (``[v6]:port``; IPv4-mapped IPv6 as IPv4), ``unix:<path>`` (``unix:@name``
  abstract), ``netlink:<pid>``, else ``af<family>``.
* **Failures.** ``success=no`` events are emitted with ``ok=False`` and change no
  state (except the ``EINPROGRESS`` connect above). An event whose object cannot
  be named (an fd opened before the log started, a failed ``open`` of a missing
  file with only its ``PARENT`` item, a failed ``fork``) is dropped and counted in
  ``ParseStats.dropped`` by reason. Syscalls with no mapping and no state effect
  are counted in ``ParseStats.skipped_syscalls``.
* **Robustness.** Log content is data: no ``eval``, shell or format strings from
  input. A line is malformed (counted by reason, skipped, never raised) when it
  is longer than ``max_line``, has no ``type=``/``msg=audit(ts:serial):``
  header, a non-numeric or non-finite time/serial, a field without ``=``, a
  repeated key, a non-numeric number, an unterminated quote or a missing
  required field; so ``lines == records + malformed + blank``. Unquoted values
  of text fields that are even-length uppercase hex are decoded (UTF-8,
  ``errors="replace"``; NULs → spaces in argv/proctitle); ``(null)`` and ``?``
  are unknown (``""``). At the end the summary is logged at INFO, and a WARNING
  when more than 1% of the lines were malformed.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import posixpath
import socket
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from functools import partial

from absl import logging

from jaxpapers.security.provenance.events import Event

_new_event = tuple.__new__

# --- syscall numbers (x86_64) and what they do ----------------------------------
_READ = {0, 17, 19, 295, 327}  # read pread64 readv preadv preadv2
_WRITE = {1, 18, 20, 296, 328}  # write pwrite64 writev pwritev pwritev2
_SEND = {44, 46, 307}  # sendto sendmsg sendmmsg
_RECV = {45, 47, 299}  # recvfrom recvmsg recvmmsg
_OPEN, _OPENAT, _CREAT, _OPENAT2 = 2, 257, 85, 437
_EXECVE, _EXECVEAT = 59, 322
_CLONE, _CLONE3, _FORK, _VFORK = 56, 435, 57, 58
_EXIT, _EXIT_GROUP = 60, 231
_CONNECT, _ACCEPT, _ACCEPT4, _SOCKET = 42, 43, 288, 41
_PIPE, _PIPE2, _SOCKETPAIR = 22, 293, 53
_MEMFD = 319
_DUP, _DUP2, _DUP3, _FCNTL = 32, 33, 292, 72
_CLOSE, _CLOSE_RANGE = 3, 436
_UNLINK, _UNLINKAT, _RMDIR = 87, 263, 84
_CHMOD, _FCHMOD, _FCHMODAT = 90, 91, 268
_RENAME, _RENAMEAT, _RENAMEAT2 = 82, 264, 316
_MMAP = 9
_CHDIR, _FCHDIR = 80, 81

_AT_FDCWD = -100
_CLONE_FILES, _CLONE_THREAD = 0x400, 0x10000
_O_ACCMODE, _O_CREAT, _O_TRUNC = 3, 0x40, 0x200
_PROT_EXEC = 4
_F_DUPFD, _F_DUPFD_CLOEXEC = 0, 1030
_EINPROGRESS = -115
_MAX_FDS = 65536
_MAX_RECENT = 1024
_IMAGE_TYPES = ("file", "memfd")  # what an fd can hold that execve runs
_MAX_PATHS = 64  # PATH records kept per event (real calls have at most ~5)
_MAX_SKIP_KEYS = 512

# Record types that take part in an event (others are counted and ignored).
_USED = frozenset(
    ("SYSCALL", "PATH", "CWD", "EXECVE", "PROCTITLE", "SOCKADDR", "FD_PAIR", "MMAP", "EOE")
)
_HEX = frozenset("0123456789ABCDEF")
_SYSCALL_TAIL = ("subj=", "key=")


class _Malformed(Exception):
    """A line that cannot be read; ``args[0]`` is the reason."""


@dataclasses.dataclass
class ParseStats:
    """What a parse saw; shared by :func:`parse_audit` and :func:`.cdm.parse_cdm`.

    ``lines`` and ``records`` are added when a stream ends (they are counted in
    local variables while it runs, for speed); everything else is live.

    Attributes:
      lines: input lines (``== records + malformed + blank``).
      records: well-formed records (audit) or JSON records (CDM).
      blank: empty lines.
      malformed: malformed lines, skipped; ``malformed_by_reason`` splits them.
      events: events yielded; ``failed_events`` of them have ``ok=False``.
      groups: system-call events assembled (audit) / event records read (CDM).
      skipped_syscalls: syscalls (audit: the number as text) or CDM event types
        that have no mapping, with counts.
      dropped: events not yielded, by reason (``unresolved_fd``: an fd opened
        before the log started; ``no_object``: no object could be named;
        ``no_syscall``: records without their ``SYSCALL``; CDM: ``unknown_subject``
        ...).
      late_records: records of an already emitted event (audit).
      evicted_groups: open events emitted early because more than
        ``max_open_events`` were open (audit).
      evicted_processes: process states evicted least-recently-used.
      evicted_objects: CDM objects evicted least-recently-used.
      open_groups_max, processes_max, objects_max: high-water marks of the
        bounded state (open events, process states, CDM objects).
    """

    lines: int = 0
    records: int = 0
    blank: int = 0
    malformed: int = 0
    malformed_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    events: int = 0
    failed_events: int = 0
    groups: int = 0
    skipped_syscalls: dict[str, int] = dataclasses.field(default_factory=dict)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    late_records: int = 0
    evicted_groups: int = 0
    evicted_processes: int = 0
    evicted_objects: int = 0
    open_groups_max: int = 0
    processes_max: int = 0
    objects_max: int = 0

    def bad(self, reason: str) -> None:
        """Counts one malformed line with ``reason``."""
        self.malformed += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1

    def drop(self, reason: str) -> None:
        """Counts one event not yielded, with ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def skip(self, what: str) -> None:
        """Counts one unmapped syscall / event type (bounded number of keys)."""
        counts = self.skipped_syscalls
        if what not in counts and len(counts) >= _MAX_SKIP_KEYS:
            what = "other"
        counts[what] = counts.get(what, 0) + 1

    @property
    def malformed_fraction(self) -> float:
        """Malformed lines / lines (0 for no lines)."""
        return self.malformed / self.lines if self.lines else 0.0

    def summary(self) -> str:
        """One line for the log."""

        def top(counts: dict, n: int = 5) -> str:
            items = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
            return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"

        return (
            f"{self.lines} lines, {self.records} records, {self.events} events "
            f"({self.failed_events} failed), {self.malformed} malformed "
            f"({100 * self.malformed_fraction:.2f}%) {top(self.malformed_by_reason)}, "
            f"dropped {top(self.dropped)}, skipped {sum(self.skipped_syscalls.values())} "
            f"{top(self.skipped_syscalls)}, late records {self.late_records}, evicted "
            f"{self.evicted_groups} open events / {self.evicted_processes} processes / "
            f"{self.evicted_objects} objects, max {self.open_groups_max} open events / "
            f"{self.processes_max} processes / {self.objects_max} objects"
        )

    def log(self, what: str) -> None:
        """Logs the summary (INFO) and a WARNING if more than 1% was malformed."""
        logging.info("%s: %s", what, self.summary())
        if self.malformed_fraction > 0.01:
            logging.warning(
                "%s: %d of %d lines (%.1f%%) were malformed: %s",
                what,
                self.malformed,
                self.lines,
                100 * self.malformed_fraction,
                self.malformed_by_reason,
            )


# --- value decoding -------------------------------------------------------------
def _raw_bytes(v: str) -> bytes | None:
    """An audit text value as bytes: quoted, or bare uppercase hex; None if unknown."""
    if v[:1] == '"':
        if len(v) >= 2 and v[-1] == '"':
            return v[1:-1].encode("utf-8", "surrogatepass")
        raise _Malformed("unterminated_quote")
    if not v or v == "(null)" or v == "?":
        return None
    if not len(v) & 1 and _HEX.issuperset(v):
        return bytes.fromhex(v)
    return v.encode("utf-8", "surrogatepass")


def _text(v: str) -> str:
    """Decodes an audit text value (quoted, hex or bare); ``""`` when unknown."""
    if v[:1] == '"':
        if len(v) >= 2 and v[-1] == '"':
            return v[1:-1]
        raise _Malformed("unterminated_quote")
    if not v or v == "(null)" or v == "?":
        return ""
    if not len(v) & 1 and _HEX.issuperset(v):
        return bytes.fromhex(v).decode("utf-8", "replace")
    return v


def _argv_text(b: bytes) -> str:
    """argv bytes (NUL-separated) → one line: NULs become spaces."""
    return b.replace(b"\x00", b" ").rstrip(b" ").decode("utf-8", "replace")


def _fd(a: int) -> int:
    """A syscall argument register holding an ``int`` fd → the fd (sign-extended)."""
    a &= 0xFFFFFFFF
    return a - 0x100000000 if a & 0x80000000 else a


def _sockaddr(b: bytes) -> str:
    """A ``struct sockaddr`` → the object name (``""`` if unusable)."""
    if len(b) < 2:
        return ""
    family = b[0] | (b[1] << 8)
    if family == 2 and len(b) >= 8:  # AF_INET
        return f"{b[4]}.{b[5]}.{b[6]}.{b[7]}:{(b[2] << 8) | b[3]}"
    if family == 10 and len(b) >= 24:  # AF_INET6
        port = (b[2] << 8) | b[3]
        addr = b[8:24]
        if addr[:12] == b"\x00" * 10 + b"\xff\xff":
            return f"{addr[12]}.{addr[13]}.{addr[14]}.{addr[15]}:{port}"
        return f"[{socket.inet_ntop(socket.AF_INET6, addr)}]:{port}"
    if family == 1:  # AF_UNIX
        path = b[2:]
        if path[:1] == b"\x00":
            return "unix:@" + path[1:].split(b"\x00", 1)[0].decode("utf-8", "replace")
        return "unix:" + path.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if family == 16 and len(b) >= 8:  # AF_NETLINK: nl_pid
        return f"netlink:{int.from_bytes(b[4:8], 'little')}"
    if family == 0:  # AF_UNSPEC (disconnect)
        return ""
    return f"af{family}"


def _resolve(name: str, base: str) -> str:
    """``name`` made absolute against directory ``base`` (if known) and normalised."""
    if not name:
        return ""
    if name[0] != "/":
        if not base:
            return name
        name = base + name if base[-1] == "/" else base + "/" + name
    if "/." in name or "//" in name or (name[-1] == "/" and len(name) > 1):
        name = posixpath.normpath(name)
        if name[:2] == "//":
            name = "/" + name.lstrip("/")
    return name


def _strip_deleted(path: str) -> str:
    return path[:-10] if path.endswith(" (deleted)") else path


# --- record parsers (raise _Malformed / ValueError) ------------------------------
def _fields(body: str) -> dict[str, str]:
    """General ``k=v`` split of a record body; a repeated key is malformed."""
    out: dict[str, str] = {}
    for tok in body.split(" "):
        if not tok:
            continue
        k, sep, v = tok.partition("=")
        if not sep or not k:
            raise _Malformed("bad_field")
        if k in out:
            raise _Malformed("duplicate_key")
        out[k] = v
    return out


_HEAD_KEYS = frozenset(("arch", "syscall", "success", "exit", "a0", "a1", "a2", "a3", "items"))


def _subject(tail: str) -> tuple[int, int, int, str, str] | None:
    """The subject part of a SYSCALL body (from ``ppid=`` on) → ``(ppid, pid, uid, comm, exe)``.

    Read once per distinct text (the caller caches it), so it is checked fully: a
    field without ``=`` or a repeated key (also one of the head's) is malformed;
    None when ``ppid``/``pid``/``uid``/``comm``/``exe`` are missing.
    """
    cut = tail.find("\x1d")  # enriched (interpreted) fields follow a GS byte
    f = _fields(tail[:cut] if cut >= 0 else tail)
    if not _HEAD_KEYS.isdisjoint(f):
        raise _Malformed("duplicate_key")
    if "ppid" not in f or "pid" not in f or "uid" not in f or "comm" not in f or "exe" not in f:
        return None
    return int(f["ppid"]), int(f["pid"]), int(f["uid"]), _text(f["comm"]), _text(f["exe"])


# whole-field lookups for the most common values of the SYSCALL head (a miss
# falls back to slicing and int(): same result)
_NR_FIELD = {f"syscall={i}": i for i in range(512)}
_A0_FIELD = {f"a0={i:x}": i for i in range(4096)}
_EXIT_FIELD = {f"exit={i}": i for i in range(-133, 4096)}


def _parse_syscall(body: str, cache: dict) -> tuple:
    """A SYSCALL body → ``(nr, ok, ret, a0, a1, a2, items, ppid, pid, uid, comm, exe)``.

    ``a0`` is the low 32 bits sign-extended (the fd, or clone's flags); ``a1``/``a2``
    stay hex text (converted by the few handlers that use them); ``ret`` is None
    when the record has no ``exit=`` (``exit_group``). The subject part (from
    ``ppid=`` to the end) repeats for every call of a process, so its parse is
    cached in ``cache`` (parts up to 2048 characters; cleared at 4096 entries).
    """
    t = body.split(" ", 9)
    if len(t) == 10 and t[8][:6] == "items=":
        # arch syscall success exit a0 a1 a2 a3 items | ppid ...
        tail = t[9]
        subj = cache.get(tail)
        if subj is None:
            subj = _subject(tail)
            if subj is not None and len(tail) <= 2048:
                if len(cache) >= 4096:
                    cache.clear()
                cache[tail] = subj
        # Anchors: a field added or missing anywhere in the head moves one of them.
        # The common small values are looked up whole (no slice, no int()).
        if subj is not None and t[2][:8] == "success=":
            nr = _NR_FIELD.get(t[1])
            if nr is None and t[1][:8] == "syscall=":
                nr = int(t[1][8:])
            if nr is not None:
                a0 = _A0_FIELD.get(t[4])
                if a0 is None:
                    a0 = _fd(int(t[4][3:], 16))
                ret = _EXIT_FIELD.get(t[3])
                items = t[8]
                return (
                    nr,
                    t[2] != "success=no",
                    int(t[3][5:]) if ret is None else ret,
                    a0,
                    t[5][3:],
                    t[6][3:],
                    0 if items == "items=0" else int(items[6:]),
                ) + subj
    cut = body.find("\x1d")  # enriched (interpreted) fields follow a GS byte
    if cut >= 0:
        body = body[:cut].rstrip(" ")
    f = _fields(body)
    try:
        nr, pid = int(f["syscall"]), int(f["pid"])
    except KeyError:
        raise _Malformed("missing_field") from None
    ret = f.get("exit")
    return (
        nr,
        f.get("success") != "no",
        int(ret) if ret is not None else None,
        _fd(int(f.get("a0", "0"), 16)),
        f.get("a1", "0"),
        f.get("a2", "0"),
        int(f.get("items", "0")),
        int(f.get("ppid", "-1")),
        pid,
        int(f.get("uid", "-1")),
        _text(f.get("comm", "")),
        _text(f.get("exe", "")),
    )


_ITEMS = {f"item={i}": i for i in range(16)}


def _parse_path(body: str) -> tuple[int, str, str]:
    """A PATH body → ``(item, name, nametype)``.

    Fast path for the kernel's order (``item name ... nametype ...``); otherwise
    a general split. A repeated ``name``/``nametype`` is malformed.
    """
    t = body.split(" ", 2)
    if len(t) == 3 and t[1][:5] == "name=":
        item = _ITEMS.get(t[0])
        if item is None:
            if t[0][:5] != "item=":
                raise _Malformed("missing_field")
            item = int(t[0][5:])
        name = t[1][5:]
        if name[:1] == '"' and name[-1:] == '"' and len(name) >= 2:
            name = name[1:-1]
        else:
            name = _text(name)
        rest = t[2]
        k = rest.find("nametype=")
        if k < 0:
            nametype = ""
        else:
            if k and rest[k - 1] != " ":
                raise _Malformed("bad_field")
            k += 9
            e = rest.find(" ", k)
            nametype = rest[k:e] if e >= 0 else rest[k:]
            if rest.find(" nametype=", k) >= 0:
                raise _Malformed("duplicate_key")
        if rest.startswith("name=") or rest.find(" name=") >= 0:
            raise _Malformed("duplicate_key")
        return item, name, nametype
    f = _fields(body)
    if "item" not in f or "name" not in f:
        raise _Malformed("missing_field")
    return int(f["item"]), _text(f["name"]), f.get("nametype", "")


def _one(body: str, key: str) -> str:
    """The value of a one-field record (``cwd=...``, ``proctitle=...``)."""
    if not body.startswith(key) or " " in body:
        f = _fields(body)
        k = key[:-1]
        if k not in f:
            raise _Malformed("missing_field")
        return f[k]
    return body[len(key) :]


def _parse_execve(body: str, args: dict[int, object]) -> int:
    """Adds an EXECVE body's arguments to ``args``; returns ``argc`` (-1 if absent).

    ``aN=v`` → ``args[N] = bytes``; long arguments come as ``aN[i]=chunk`` over
    several records: ``args[N] = {i: bytes}``.
    """
    argc = -1
    for k, v in _fields(body).items():
        if k == "argc":
            argc = int(v)
        elif k[:1] == "a":
            if k.endswith("_len"):
                continue
            b = _raw_bytes(v) or b""
            br = k.find("[")
            if br < 0:
                args[int(k[1:])] = b
            else:
                if k[-1] != "]":
                    raise _Malformed("bad_field")
                chunks = args.setdefault(int(k[1:br]), {})
                if not isinstance(chunks, dict):
                    raise _Malformed("duplicate_key")
                chunks[int(k[br + 1 : -1])] = b
    return argc


def _merge_args(into: dict[int, object], args: dict[int, object]) -> None:
    """Merges one EXECVE record's arguments into those of earlier records."""
    for i, a in args.items():
        old = into.get(i)
        if isinstance(a, dict) and isinstance(old, dict):
            old.update(a)
        else:
            into[i] = a


def _ts_seq(key: str) -> tuple[float, int] | None:
    """``"<sec.msec>:<serial>"`` → ``(ts, serial)``; None if malformed."""
    ts_s, colon, seq_s = key.partition(":")
    try:
        ts = float(ts_s)
        seq = int(seq_s)
    except ValueError:
        return None
    if not colon or not 0.0 <= ts < 1e12 or seq < 0 or len(key) > 64:
        return None
    return ts, seq


def _argv(argc: int, args: dict[int, object]) -> str:
    """The EXECVE argv joined by spaces."""
    n = argc if argc >= 0 else (max(args) + 1 if args else 0)
    parts = []
    for i in range(min(n, len(args))):
        a = args.get(i)
        if a is None:
            continue
        if isinstance(a, dict):
            a = b"".join(a[j] for j in sorted(a))
        parts.append(_argv_text(a))
    return " ".join(parts)


# --- state ----------------------------------------------------------------------
class _Group:
    """The records of one system call seen so far."""

    __slots__ = (
        "ts", "seq", "sc", "paths", "cwd", "argc", "args", "saddr", "fdpair", "title",
        "mmap_fd", "size",
    )  # fmt: skip

    def __init__(self, ts: float, seq: int):
        self.ts = ts
        self.seq = seq
        self.sc: tuple | None = None  # the parsed SYSCALL
        self.paths: tuple[tuple[int, str, str], ...] = ()  # (item, name, nametype)
        self.cwd = ""
        self.argc = -1
        self.args: dict[int, object] | None = None
        self.saddr: bytes | None = None
        self.fdpair: tuple[int, int] | None = None
        self.title: str | None = None  # the raw PROCTITLE value
        self.mmap_fd = -1
        self.size = 0


class _Proc:
    """What is known about one process (thread group)."""

    __slots__ = ("exe", "comm", "cmdline", "cwd", "fds", "threads", "title_raw", "title_cmd")

    def __init__(self, exe: str, comm: str, cmdline: str, cwd: str, fds: dict):
        self.exe = exe
        self.comm = comm
        self.cmdline = cmdline
        self.cwd = cwd
        self.fds = fds  # fd -> (obj_type, obj)
        self.threads = 0
        self.title_raw: str | None = None
        self.title_cmd = ""


def _set_fd(fds: dict, fd: int, entry: tuple[str, str]) -> None:
    if fd in fds:
        del fds[fd]  # re-insert: the table stays in age order for the bound
    elif len(fds) >= _MAX_FDS:
        del fds[next(iter(fds))]
    fds[fd] = entry


class _Tracker:
    """Per-process state and the mapping of one assembled system call to an Event."""

    def __init__(self, stats: ParseStats, max_processes: int):
        self.stats = stats
        self.max_processes = max_processes
        self.procs: OrderedDict[int, _Proc] = OrderedDict()
        h: dict[int, object] = {}
        for nr in _READ:
            h[nr] = self._rw_read
        for nr in _WRITE:
            h[nr] = self._rw_write
        for nr in _SEND:
            h[nr] = self._send
        for nr in _RECV:
            h[nr] = self._recv
        for nr in (_OPEN, _OPENAT, _CREAT, _OPENAT2):
            h[nr] = self._open
        for nr in (_EXECVE, _EXECVEAT):
            h[nr] = self._execve
        for nr in (_CLONE, _CLONE3, _FORK, _VFORK):
            h[nr] = self._fork
        for nr in (_EXIT, _EXIT_GROUP):
            h[nr] = self._exit
        for nr in (_PIPE, _PIPE2, _SOCKETPAIR):
            h[nr] = self._pipe
        for nr in (_DUP, _DUP2, _DUP3, _FCNTL):
            h[nr] = self._dup
        for nr in (_CLOSE, _CLOSE_RANGE):
            h[nr] = self._close
        for nr in (_UNLINK, _UNLINKAT, _RMDIR):
            h[nr] = self._unlink
        for nr in (_CHMOD, _FCHMOD, _FCHMODAT):
            h[nr] = self._chmod
        for nr in (_RENAME, _RENAMEAT, _RENAMEAT2):
            h[nr] = self._rename
        for nr in (_CHDIR, _FCHDIR):
            h[nr] = self._chdir
        h[_CONNECT] = self._connect
        h[_ACCEPT] = h[_ACCEPT4] = self._accept
        h[_SOCKET] = self._socket
        h[_MEMFD] = self._memfd
        h[_MMAP] = self._mmap
        self.handlers = h

    # -- process table -----------------------------------------------------------
    def _add_proc(self, pid: int, proc: _Proc) -> None:
        procs = self.procs
        procs.pop(pid, None)
        procs[pid] = proc
        if len(procs) > self.max_processes:
            procs.popitem(last=False)
            self.stats.evicted_processes += 1
        if len(procs) > self.stats.processes_max:
            self.stats.processes_max = len(procs)

    def emit(self, g: _Group) -> Event | None:
        """The Event of an assembled system call (None if it maps to none)."""
        stats = self.stats
        sc = g.sc
        if sc is None:
            stats.drop("no_syscall")
            return None
        stats.groups += 1
        handler = self.handlers.get(sc[0])
        if handler is None:
            stats.skip(str(sc[0]))
            return None
        pid = sc[8]
        proc = self.procs.get(pid)
        if proc is None:
            new_image = sc[0] in (_EXECVE, _EXECVEAT) and sc[1]
            proc = _Proc("" if new_image else sc[11], sc[10], "", g.cwd, {})
            self._add_proc(pid, proc)
        else:
            self.procs.move_to_end(pid)
            if g.cwd:
                proc.cwd = g.cwd
        try:
            ev = handler(g, sc, proc)
        except ValueError:  # a1/a2 are converted lazily
            stats.drop("bad_value")
            return None
        if ev is not None:
            stats.events += 1
            if not ev[13]:
                stats.failed_events += 1
        return ev

    def _event(self, g, sc, proc, op, otype, obj, obj2="", arg=""):
        """Builds the Event of a non-execve call and records the subject's exe/comm."""
        exe = sc[11]
        comm = sc[10]
        if exe:
            proc.exe = exe
        else:
            exe = proc.exe
        if comm:
            proc.comm = comm
        else:
            comm = proc.comm
        raw = g.title
        if raw is None:
            cmd = proc.cmdline
        elif raw == proc.title_raw:
            cmd = proc.title_cmd
        else:
            t = _argv_text(_raw_bytes(raw) or b"")
            known = proc.cmdline
            cmd = known if known and known.startswith(t) else t
            if not known:
                proc.cmdline = t
            proc.title_raw = raw
            proc.title_cmd = cmd
        return _new_event(
            Event,
            (g.ts, g.seq, op, sc[8], sc[7], sc[9], exe, comm, cmd, otype, obj, obj2, arg, sc[1]),
        )

    def _base(self, proc: _Proc, dirfd: int) -> str:
        """The directory that a ``*at`` call's relative path is resolved against."""
        if dirfd != _AT_FDCWD:
            ent = proc.fds.get(dirfd)
            if ent is not None and ent[0] == "file":
                return ent[1]
        return proc.cwd

    @staticmethod
    def _pick(paths, prefer: str) -> str:
        """The name of the first ``prefer`` item, else of the first non-PARENT item."""
        fallback = None
        for _, name, nametype in paths:
            if nametype == prefer:
                return name
            if fallback is None and nametype != "PARENT":
                fallback = name
        return fallback or ""

    # -- handlers: (group, syscall, process) -> Event | None -----------------------
    def _on_fd(self, g, sc, proc, op_file, op_sock):
        ent = proc.fds.get(sc[3])
        if ent is None or not ent[1]:
            self.stats.drop("unresolved_fd")
            return None
        if ent[0] == "socket":
            return self._event(g, sc, proc, op_sock, "socket", ent[1])
        return self._event(g, sc, proc, op_file, ent[0], ent[1])

    def _rw_read(self, g, sc, proc):
        ent = proc.fds.get(sc[3])
        if ent is None or not ent[1]:
            self.stats.drop("unresolved_fd")
            return None
        if ent[0] == "socket":
            return self._event(g, sc, proc, "recv", "socket", ent[1])
        return self._event(g, sc, proc, "read", ent[0], ent[1])

    def _rw_write(self, g, sc, proc):
        ent = proc.fds.get(sc[3])
        if ent is None or not ent[1]:
            self.stats.drop("unresolved_fd")
            return None
        if ent[0] == "socket":
            return self._event(g, sc, proc, "send", "socket", ent[1])
        return self._event(g, sc, proc, "write", ent[0], ent[1])

    def _sock_io(self, g, sc, proc, op_sock, op_file):
        if g.saddr is not None:
            addr = _sockaddr(g.saddr)
            if addr:
                return self._event(g, sc, proc, op_sock, "socket", addr)
        return self._on_fd(g, sc, proc, op_file, op_sock)

    def _send(self, g, sc, proc):
        return self._sock_io(g, sc, proc, "send", "write")

    def _recv(self, g, sc, proc):
        return self._sock_io(g, sc, proc, "recv", "read")

    def _open(self, g, sc, proc):
        nr, ok, ret = sc[0], sc[1], sc[2]
        name = self._pick(g.paths, "CREATE")
        if not name:
            self.stats.drop("no_object")
            return None
        base = proc.cwd if nr in (_OPEN, _CREAT) else self._base(proc, sc[3])
        path = _resolve(name, base)
        if ok and ret is not None and ret >= 0:
            _set_fd(proc.fds, ret, ("file", path))
        if nr == _OPENAT2:
            return None
        if nr == _CREAT:
            op = "write"
        else:
            flags = int(sc[4] if nr == _OPEN else sc[5], 16)
            ro = not flags & _O_ACCMODE and not flags & (_O_CREAT | _O_TRUNC)
            op = "read" if ro else "write"
        return self._event(g, sc, proc, op, "file", path)

    def _image(self, g, sc, proc) -> tuple[str, str]:
        """The (obj_type, obj) of an execve's new image."""
        name = ""
        for item, n, _ in g.paths:
            if item == 0:
                name = n
                break
        fds = proc.fds
        if sc[0] == _EXECVEAT:
            if not name or name.startswith("/memfd:"):
                ent = fds.get(sc[3])
                if ent is not None and ent[0] in _IMAGE_TYPES:
                    return ent
            base = self._base(proc, sc[3])
        else:
            base = proc.cwd
        path = _resolve(name, base)
        for prefix in ("/proc/self/fd/", "/dev/fd/", f"/proc/{sc[8]}/fd/"):
            if path.startswith(prefix):
                num = path[len(prefix) :]
                if num.isdigit():
                    ent = fds.get(int(num))
                    if ent is not None and ent[0] in _IMAGE_TYPES:
                        return ent
                break
        if not path and sc[1]:
            path = _strip_deleted(sc[11])
        if path.startswith("/memfd:"):
            return "memfd", "memfd:" + _strip_deleted(path[7:])
        return "file", path

    def _execve(self, g, sc, proc):
        otype, obj = self._image(g, sc, proc)
        if not obj:
            self.stats.drop("no_object")
            return None
        ok = sc[1]
        if g.args is not None:
            cmd = _argv(g.argc, g.args)
        elif g.title is not None:
            cmd = _argv_text(_raw_bytes(g.title) or b"")
        else:
            cmd = ""
        exe, comm = sc[11], sc[10]
        before = proc.exe if ok else (exe or proc.exe)
        ev = _new_event(
            Event,
            (
                g.ts,
                g.seq,
                "execve",
                sc[8],
                sc[7],
                sc[9],
                before,
                comm or proc.comm,
                cmd,
                otype,
                obj,
                "",
                "",
                ok,
            ),
        )
        if ok:
            proc.exe = exe or _strip_deleted(obj)
            if comm:
                proc.comm = comm
            proc.cmdline = cmd
            proc.title_raw = None
        return ev

    def _fork(self, g, sc, proc):
        nr, ok, ret = sc[0], sc[1], sc[2]
        if not ok or ret is None or ret <= 0:
            self.stats.drop("no_object")
            return None
        flags = sc[3] if nr == _CLONE else 0
        if flags & _CLONE_THREAD:
            ev = self._event(g, sc, proc, "fork", "process", str(ret), arg="thread")
            proc.threads += 1
            return ev
        ev = self._event(g, sc, proc, "fork", "process", str(ret))
        fds = proc.fds if flags & _CLONE_FILES else dict(proc.fds)
        child = _Proc(proc.exe, proc.comm, proc.cmdline, proc.cwd, fds)
        child.title_raw, child.title_cmd = proc.title_raw, proc.title_cmd
        self._add_proc(ret, child)
        return ev

    def _exit(self, g, sc, proc):
        pid = sc[8]
        if sc[0] == _EXIT and proc.threads > 0:
            proc.threads -= 1  # a thread ends; the process lives on
            return None
        ev = self._event(g, sc, proc, "exit", "", "")
        self.procs.pop(pid, None)
        return ev

    def _connect(self, g, sc, proc):
        fd = sc[3]
        addr = _sockaddr(g.saddr) if g.saddr is not None else ""
        if addr:
            if sc[1] or sc[2] == _EINPROGRESS:
                _set_fd(proc.fds, fd, ("socket", addr))
        else:
            ent = proc.fds.get(fd)
            if ent is None or ent[0] != "socket" or not ent[1]:
                self.stats.drop("no_object")
                return None
            addr = ent[1]
        return self._event(g, sc, proc, "connect", "socket", addr)

    def _accept(self, g, sc, proc):
        ok, ret = sc[1], sc[2]
        addr = _sockaddr(g.saddr) if g.saddr is not None else ""
        if ok and ret is not None and ret >= 0:
            _set_fd(proc.fds, ret, ("socket", addr))
        if not addr:
            self.stats.drop("no_object")
            return None
        return self._event(g, sc, proc, "accept", "socket", addr)

    def _socket(self, g, sc, proc):
        if sc[1] and sc[2] is not None and sc[2] >= 0:
            _set_fd(proc.fds, sc[2], ("socket", ""))
        return None

    def _pipe(self, g, sc, proc):
        if sc[1] and g.fdpair is not None:
            fd0, fd1 = g.fdpair
            ent = ("pipe", f"pipe:{sc[8]}:{fd0}:{fd1}")
            _set_fd(proc.fds, fd0, ent)
            _set_fd(proc.fds, fd1, ent)
        return None

    def _memfd(self, g, sc, proc):
        ret = sc[2]
        if not sc[1] or ret is None or ret < 0:
            self.stats.drop("no_object")
            return None
        name = f"memfd:{sc[8]}:{ret}"
        _set_fd(proc.fds, ret, ("memfd", name))
        return self._event(g, sc, proc, "memfd", "memfd", name)

    def _dup(self, g, sc, proc):
        nr, ok, ret = sc[0], sc[1], sc[2]
        if not ok or ret is None or ret < 0:
            return None
        if nr == _FCNTL and int(sc[4], 16) not in (_F_DUPFD, _F_DUPFD_CLOEXEC):
            return None
        fds = proc.fds
        ent = fds.get(sc[3])
        if ent is None:
            fds.pop(ret, None)
        else:
            _set_fd(fds, ret, ent)
        return None

    def _close(self, g, sc, proc):
        if not sc[1]:
            return None
        fds = proc.fds
        lo = sc[3]
        if sc[0] == _CLOSE:
            fds.pop(lo, None)
        else:
            hi = int(sc[4], 16) & 0xFFFFFFFF
            for fd in [fd for fd in fds if lo <= fd <= hi]:
                del fds[fd]
        return None

    def _unlink(self, g, sc, proc):
        name = self._pick(g.paths, "DELETE")
        if not name:
            self.stats.drop("no_object")
            return None
        base = self._base(proc, sc[3]) if sc[0] == _UNLINKAT else proc.cwd
        return self._event(g, sc, proc, "unlink", "file", _resolve(name, base))

    def _chmod(self, g, sc, proc):
        nr = sc[0]
        if nr == _FCHMOD:
            ent = proc.fds.get(sc[3])
            if ent is None or ent[0] == "socket":
                self.stats.drop("unresolved_fd")
                return None
            otype, obj, mode = ent[0], ent[1], int(sc[4], 16)
        else:
            name = self._pick(g.paths, "NORMAL")
            if not name:
                self.stats.drop("no_object")
                return None
            if nr == _CHMOD:
                obj, mode = _resolve(name, proc.cwd), int(sc[4], 16)
            else:
                obj, mode = _resolve(name, self._base(proc, sc[3])), int(sc[5], 16)
            otype = "file"
        return self._event(g, sc, proc, "chmod", otype, obj, arg=format(mode & 0o7777, "o"))

    def _rename(self, g, sc, proc):
        old = new = ""
        others = []
        for _, name, nametype in g.paths:
            if nametype == "DELETE":
                old = old or name
            elif nametype == "CREATE":
                new = name
            elif nametype != "PARENT":
                others.append(name)
        if not old and others:
            old = others.pop(0)
        if not new and others:
            new = others[0]
        if not old:
            self.stats.drop("no_object")
            return None
        if sc[0] == _RENAME:
            base_old = base_new = proc.cwd
        else:
            base_old = self._base(proc, sc[3])
            base_new = self._base(proc, _fd(int(sc[5], 16)))
        return self._event(
            g, sc, proc, "rename", "file", _resolve(old, base_old), _resolve(new, base_new)
        )

    def _mmap(self, g, sc, proc):
        if not int(sc[5], 16) & _PROT_EXEC or g.mmap_fd < 0:
            return None
        ent = proc.fds.get(g.mmap_fd)
        if ent is None or ent[0] == "socket":
            self.stats.drop("unresolved_fd")
            return None
        return self._event(g, sc, proc, "mmap", ent[0], ent[1])

    def _chdir(self, g, sc, proc):
        if not sc[1]:
            return None
        if sc[0] == _CHDIR:
            name = self._pick(g.paths, "NORMAL")
            if name:
                proc.cwd = _resolve(name, proc.cwd)
        else:
            ent = proc.fds.get(sc[3])
            if ent is not None and ent[0] == "file":
                proc.cwd = ent[1]
        return None


# --- the stream -----------------------------------------------------------------
def parse_audit(
    lines: Iterable[str | bytes],
    *,
    stats: ParseStats | None = None,
    max_open_events: int = 4096,
    max_processes: int = 1_000_000,
    max_line: int = 65536,
) -> Iterator[Event]:
    """Parses raw audit log lines into Events, streaming (see the module docstring).

    Args:
      lines: log lines (``str``; ``bytes`` are decoded as UTF-8 with replacement),
        with or without their newline.
      stats: counts are added to it (a fresh one if None).
      max_open_events: events being assembled at once; beyond it the oldest is
        emitted as it is.
      max_processes: process states kept (least-recently-used evicted beyond).
      max_line: longer lines (counting a newline) are malformed (``too_long``).

    Returns:
      An iterator of Events, in the order their system calls were assembled.

    Raises:
      ValueError: a bound below 1.
    """
    if max_open_events < 1 or max_processes < 1 or max_line < 1:
        raise ValueError("max_open_events, max_processes and max_line must be >= 1")
    st = stats if stats is not None else ParseStats()
    return _parse(lines, st, max_open_events, max_processes, max_line)


def _parse(
    lines: Iterable[str | bytes],
    st: ParseStats,
    max_open_events: int,
    max_processes: int,
    max_line: int,
) -> Iterator[Event]:
    """The generator behind :func:`parse_audit`."""
    tracker = _Tracker(st, max_processes)
    emit = tracker.emit
    bad = st.bad
    groups: dict[str, _Group] = {}
    recent: dict[str, None] = {}  # keys of groups emitted before their EOE
    subjects: dict[str, tuple] = {}  # SYSCALL subject parts already read
    group_budget = 4 * max_line
    seen_title = False
    last_key = ""
    last_g: _Group | None = None  # the group of last_key, while it is open
    n_lines = n_records = 0
    used = _USED
    try:
        for n_lines, line in enumerate(lines, 1):  # noqa: B007 (read in `finally`)
            if type(line) is not str:
                if not isinstance(line, bytes | bytearray):
                    bad("not_text")
                    continue
                line = bytes(line).decode("utf-8", "replace")
            if len(line) > max_line:
                bad("too_long")
                continue
            if line.startswith("type=SYSCALL msg=audit("):
                # Fast header: the most common record (same cut as the general one).
                end = line.find("):", 23)
                if end < 0:
                    bad("bad_header")
                    continue
                rtype, key, body = "SYSCALL", line[23:end], line[end + 2 :]
            else:
                if line.startswith("type=EOE msg=audit(") and last_g is not None:
                    # Fast path: the EOE of the event being assembled.
                    at = 19 + len(last_key)
                    if line.startswith(last_key, 19) and line.startswith("):", at):
                        del groups[last_key]
                        g, last_g = last_g, None
                        n_records += 1
                        ev = emit(g)
                        if ev is not None:
                            yield ev
                        continue
                elif line.startswith("type=PROCTITLE msg=audit(") and last_g is not None:
                    # Fast path: the plain hex title of the event being assembled (a
                    # quoted or unusual one takes the general path below).
                    at = 25 + len(last_key)
                    if line.startswith(last_key, 25) and line.startswith("): proctitle=", at):
                        title = line[at + 13 :].rstrip()
                        if title and title[0] != '"' and " " not in title:
                            last_g.title = title
                            seen_title = True
                            n_records += 1
                            continue
                if not line.startswith("type="):
                    if line.startswith("node="):
                        line = line.partition(" ")[2]
                    if not line.startswith("type="):
                        if not line or line.isspace():
                            st.blank += 1
                        else:
                            bad("no_type")
                        continue
                head, _, rest = line.partition(" msg=audit(")
                key, sep, body = rest.partition("):")
                if not sep:
                    bad("bad_header")
                    continue
                rtype = head[5:]
                if rtype not in used:
                    if _ts_seq(key) is None:
                        bad("bad_header")
                    else:
                        n_records += 1
                    continue

            # A new key: the previous event may be complete (logs without EOE).
            if key != last_key:
                prev = last_g
                if (
                    prev is not None
                    and prev.sc is not None
                    and len(prev.paths) >= prev.sc[6]
                    and (prev.title is not None or not seen_title)
                ):
                    del groups[last_key]
                    recent[last_key] = None
                    if len(recent) > _MAX_RECENT:
                        del recent[next(iter(recent))]
                    ev = emit(prev)
                    if ev is not None:
                        yield ev
                last_key = key
                g = last_g = groups.get(key)
            else:
                g = last_g  # the same key's group, while it is open
            fresh = g is None
            if fresh:
                if rtype == "EOE":
                    if recent:
                        recent.pop(key, None)
                    if _ts_seq(key) is None:
                        bad("bad_header")
                    else:
                        n_records += 1
                    continue
                if key in recent:
                    st.late_records += 1
                    n_records += 1
                    continue
                ts_s, colon, seq_s = key.partition(":")
                try:
                    ts = float(ts_s)
                    seq = int(seq_s)
                except ValueError:
                    ts = -1.0
                if not colon or not 0.0 <= ts < 1e12 or seq < 0 or len(key) > 64:
                    bad("bad_header")
                    continue
                g = last_g = groups[key] = _Group(ts, seq)
                if len(groups) > max_open_events:
                    old = groups.pop(next(iter(groups)))
                    st.evicted_groups += 1
                    ev = emit(old)
                    if ev is not None:
                        yield ev
                if len(groups) > st.open_groups_max:
                    st.open_groups_max = len(groups)
            elif rtype == "EOE":
                del groups[key]
                last_g = None
                n_records += 1
                ev = emit(g)
                if ev is not None:
                    yield ev
                continue

            body = body.strip()
            try:
                if rtype == "SYSCALL":
                    if g.sc is not None:
                        raise _Malformed("duplicate_record")
                    g.sc = _parse_syscall(body, subjects)
                    n_records += 1
                    continue
                if rtype == "PROCTITLE":
                    title = body[10:]
                    if body[:10] != "proctitle=" or " " in title:
                        title = _one(body, "proctitle=")
                    if title[:1] == '"' and (len(title) < 2 or title[-1] != '"'):
                        raise _Malformed("unterminated_quote")
                    g.title = title
                    seen_title = True
                elif rtype == "PATH":
                    # PATH and EXECVE records accumulate: bound what one group keeps.
                    size = g.size = g.size + len(body)
                    if size > group_budget or len(g.paths) >= _MAX_PATHS:
                        raise _Malformed("group_too_large")
                    g.paths += (_parse_path(body),)
                elif rtype == "CWD":
                    if (
                        body[:5] == 'cwd="'
                        and body[-1] == '"'
                        and len(body) > 5
                        and " " not in body
                    ):
                        g.cwd = body[5:-1]
                    else:
                        g.cwd = _text(_one(body, "cwd="))
                elif rtype == "EXECVE":
                    size = g.size = g.size + len(body)
                    if size > group_budget:
                        raise _Malformed("group_too_large")
                    args: dict[int, object] = {}
                    argc = _parse_execve(body, args)
                    if argc >= 0:
                        g.argc = argc
                    if g.args is None:
                        g.args = args
                    else:
                        _merge_args(g.args, args)
                elif rtype == "SOCKADDR":
                    v = _one(body.split("\x1d", 1)[0].split(" ", 1)[0], "saddr=")
                    if len(v) & 1 or not _HEX.issuperset(v):
                        raise _Malformed("bad_hex")
                    g.saddr = bytes.fromhex(v)
                elif rtype == "FD_PAIR":
                    f = _fields(body)
                    g.fdpair = (int(f["fd0"]), int(f["fd1"]))
                else:  # MMAP
                    g.mmap_fd = _fd(int(_fields(body)["fd"]))
            except _Malformed as e:
                bad(e.args[0])
            except (ValueError, KeyError, OverflowError):
                bad("bad_value")
            else:
                n_records += 1
                continue
            if fresh:  # do not keep a group opened by a malformed record
                groups.pop(key, None)
                last_g = None
        for key in list(groups):
            ev = emit(groups.pop(key))
            if ev is not None:
                yield ev
    finally:
        st.lines += n_lines
        st.records += n_records
        st.log("audit")


def _open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Opens a log file as text (gzip if it starts with the gzip magic)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _paths(path_or_paths) -> list:
    if isinstance(path_or_paths, str | bytes | os.PathLike):
        return [path_or_paths]
    return list(path_or_paths)


def read_lines(path_or_paths, max_line: int = 65536) -> Iterator[str]:
    """Lazily yields the lines of one or more text files (plain or gzip), in order.

    Lines longer than ``max_line`` are yielded truncated to ``max_line + 2``
    characters (still too long for the parsers) without reading them whole.
    """
    limit = max_line + 2
    for path in _paths(path_or_paths):
        with _open_text(path) as f:
            # one generator from file to parser (a line costs one hop), each line
            # read at most `limit` characters at a time: a longer one is yielded
            # once as its first `limit` characters (too long for the parsers) and
            # the rest of it is skipped without being kept
            readline = partial(f.readline, limit)
            for line in iter(readline, ""):
                yield line
                if len(line) == limit and line[-1] != "\n":
                    for rest in iter(readline, ""):
                        if rest[-1] == "\n":
                            break


def read_audit(path_or_paths, **kwargs) -> Iterator[Event]:
    """Events of one or more audit log files (plain or ``.gz``), lazily.

    Files are opened as the iterator reaches them (a missing one raises then);
    a bad keyword argument raises at once.

    Args:
      path_or_paths: a path or a sequence of paths, parsed as one stream in the
        order given (pass rotated logs oldest first: ``audit.log.2, audit.log.1,
        audit.log``) so process state carries over.
      **kwargs: :func:`parse_audit`'s keyword arguments.

    Returns:
      An iterator of Events.
    """
    max_line = kwargs.get("max_line", 65536)
    return parse_audit(read_lines(path_or_paths, max_line), **kwargs)
