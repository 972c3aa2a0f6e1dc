"""Streaming parser: DARPA Transparent Computing CDM records (JSON lines) → :class:`Event`.

:func:`parse_cdm` turns JSON lines of the Common Data Model (CDM18/19/20 style,
``{"datum": {"com.bbn.tc.schema.avro.cdm18.Subject": {...}}, "CDMVersion": "18"}``)
into the same :class:`~jaxpapers.security.provenance.events.Event` stream as
:mod:`.audit`; :func:`read_cdm` does it for files (plain or gzip), lazily.

Deliberate choices:

* **Record types.** The type is the last dotted component of the datum's single
  key, whatever the ``cdmNN`` namespace (a line without ``datum`` whose only key
  is dotted is read the same way). ``Subject``, ``Principal``, ``FileObject``,
  ``NetFlowObject``, ``UnnamedPipeObject``, ``MemoryObject`` and ``Event`` are
  read; all other records (``Host``, markers, ``SrcSinkObject``, ...) are counted
  as records and ignored.
* **Avro unions** appear wrapped (``{"string": "x"}``, ``{"long": 5}``,
  ``{"com.bbn.tc.schema.avro.cdm18.UUID": "..."}``, ``{"map": {...}}``) or bare;
  every value read is unwrapped generically: a one-key dict whose key is an Avro
  primitive/complex type name or a dotted schema name is replaced by its value.
* **Maps kept** (all least-recently-used bounded): subjects by uuid (``cid`` →
  pid, ``properties.map.ppid`` or the parent subject's pid → ppid,
  ``localPrincipal`` → uid via the principals' ``userId``, ``properties.map.name``
  → comm, ``properties.map.exe``/``path`` → exe, ``cmdLine`` → cmdline; dropped at
  ``EVENT_EXIT``), objects by uuid as ``(obj_type, name)``: files by
  ``baseObject.properties.map.path`` (or ``filename``; a file object without one
  takes the first ``predicateObjectPath`` an event gives it; an event's own path,
  when given, names the file for that event), net flows by the
  remote ``"ip:port"`` (``[v6]:port``, IPv4-mapped IPv6 as IPv4, as in
  :mod:`.audit`), unnamed pipes ``pipe:<uuid>``, memory objects ``memfd:<uuid>``
  (obj_type ``memfd``), and principals (uid). ``max_objects`` bounds objects and
  principals together, ``max_subjects`` the subjects.
* **Event mapping.** ``EVENT_FORK``/``EVENT_CLONE`` → ``fork`` (obj = the child
  subject's pid; when the child's ``Subject`` record has not been seen yet, the
  fork waits for it, at most ``max_pending`` of them, oldest dropped);
  ``EVENT_EXECUTE`` → ``execve`` (obj = ``predicateObjectPath`` or the file
  object's path; ``exe`` is the image before; cmdline from the event's
  ``properties.map.cmdLine``, else the subject's; the subject then takes the new
  image and command line); ``EVENT_READ``/``EVENT_WRITE`` → ``read``/``write``
  on files, pipes and memory, ``recv``/``send`` on net flows;
  ``EVENT_SENDTO``/``SENDMSG`` → ``send``, ``EVENT_RECVFROM``/``RECVMSG`` →
  ``recv`` (on a non-flow object: ``write``/``read``); ``EVENT_CONNECT`` →
  ``connect``; ``EVENT_ACCEPT`` → ``accept``; ``EVENT_UNLINK`` → ``unlink``;
  ``EVENT_MODIFY_FILE_ATTRIBUTES`` → ``chmod`` (arg = ``properties.map.mode``
  when present); ``EVENT_RENAME`` → ``rename`` (obj2 = ``predicateObject2Path``);
  ``EVENT_MMAP`` → ``mmap`` (CDM does not say whether the mapping is
  executable); ``EVENT_EXIT`` → ``exit``. Other event types are counted in
  ``ParseStats.skipped_syscalls``. ``timestampNanos`` → ``ts`` in seconds,
  ``sequence`` → ``seq`` (-1 absent). CDM has no failure flag: ``ok=True``.
* **Robustness.** Log content is data (``json.loads`` only). A line is malformed
  (counted by reason, skipped, never raised) when it is longer than
  ``max_line``, not JSON, not an object, has no record type or misses a field
  the record needs (``uuid``; an event's ``type``/``subject``/``timestampNanos``);
  so ``lines == records + malformed + blank``. An event whose subject or object
  is unknown is dropped and counted in ``ParseStats.dropped``. The summary is
  logged once at the end (INFO; WARNING beyond 1% malformed).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from jaxpapers.security.provenance.audit import ParseStats, read_lines
from jaxpapers.security.provenance.events import Event

_new_event = tuple.__new__

_AVRO_TAGS = frozenset(
    ("string", "long", "int", "boolean", "double", "float", "bytes", "array", "map", "null")
)

# CDM event type → op (then adjusted to the object's type by _ON_SOCKET / _ON_OTHER).
_EVENT_OPS = {
    "EVENT_FORK": "fork",
    "EVENT_CLONE": "fork",
    "EVENT_EXECUTE": "execve",
    "EVENT_READ": "read",
    "EVENT_WRITE": "write",
    "EVENT_SENDTO": "send",
    "EVENT_SENDMSG": "send",
    "EVENT_RECVFROM": "recv",
    "EVENT_RECVMSG": "recv",
    "EVENT_CONNECT": "connect",
    "EVENT_ACCEPT": "accept",
    "EVENT_UNLINK": "unlink",
    "EVENT_MODIFY_FILE_ATTRIBUTES": "chmod",
    "EVENT_RENAME": "rename",
    "EVENT_MMAP": "mmap",
    "EVENT_EXIT": "exit",
}
# read/write on a flow are recv/send; send/recv on a non-flow are write/read.
_ON_SOCKET = {"read": "recv", "write": "send"}
_ON_OTHER = {"send": "write", "recv": "read"}
_NO_TIME = -(1 << 64)  # "no timestampNanos" (outside the int64 range of real ones)
_KEPT = frozenset(
    ("Subject", "Principal", "FileObject", "NetFlowObject", "UnnamedPipeObject", "MemoryObject")
)


class _Bad(Exception):
    """A record that cannot be read; ``args[0]`` is the reason."""


def _u(v):
    """Unwraps Avro union values: ``{"long": 5}`` → 5, ``{"...UUID": "u"}`` → "u"."""
    while type(v) is dict and len(v) == 1:
        ((k, inner),) = v.items()
        if k in _AVRO_TAGS or "." in k:
            v = inner
        else:
            break
    return v


def _str(v) -> str:
    """An unwrapped value as text (``""`` for None / containers)."""
    v = _u(v)
    if v is None or isinstance(v, dict | list):
        return ""
    return v if isinstance(v, str) else str(v)


def _int(v, default: int = -1) -> int:
    """An unwrapped value as int (``default`` if absent or not a number)."""
    v = _u(v)
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return default
    if isinstance(v, float) and v == v and abs(v) < 1e30:
        return int(v)
    return default


def _props(rec: dict) -> dict:
    """``properties.map`` (or ``properties``) of a record as a dict."""
    p = _u(rec.get("properties"))
    return p if isinstance(p, dict) else {}


def _addr(ip: str, port: int) -> str:
    """``"ip:port"`` like :mod:`.audit` (``[v6]:port``; IPv4-mapped IPv6 as IPv4)."""
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    if ":" in ip:
        ip = "[" + ip + "]"
    return f"{ip}:{port}" if port >= 0 else ip


class _Subject:
    __slots__ = ("pid", "ppid", "uid", "exe", "comm", "cmdline")

    def __init__(self, pid, ppid, uid, exe, comm, cmdline):
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.exe = exe
        self.comm = comm
        self.cmdline = cmdline


class _Lru(OrderedDict):
    """An OrderedDict bounded to ``limit`` entries (least recently used out first)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.evicted = 0

    def put(self, key, value) -> None:
        if key in self:
            self.move_to_end(key)
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)
            self.evicted += 1

    def use(self, key):
        v = self.get(key)
        if v is not None:
            self.move_to_end(key)
        return v


class _CdmState:
    """The uuid maps and the mapping of one CDM record to Events."""

    def __init__(self, stats: ParseStats, max_subjects: int, max_objects: int, max_pending: int):
        self.stats = stats
        self.subjects = _Lru(max_subjects)
        self.objects = _Lru(max_objects)  # uuid -> (obj_type, name) | ("principal", uid)
        self.pending = _Lru(max_pending)  # child uuid -> fork Event waiting for its pid

    def record(self, rtype: str, rec: dict) -> Event | None:
        """Reads one record; returns the Event it completes (raises _Bad if malformed)."""
        if rtype == "Event":
            return self._event(rec)
        if rtype not in _KEPT:
            return None
        uuid = _str(rec.get("uuid"))
        if not uuid:
            raise _Bad("missing_field")
        objects = self.objects
        if rtype == "Subject":
            waiting = self._subject(uuid, rec)
            if waiting is not None:
                self.stats.events += 1
            return waiting
        elif rtype == "FileObject":
            base = _u(rec.get("baseObject"))
            props = _props(base) if isinstance(base, dict) else {}
            path = _str(props.get("path")) or _str(props.get("filename"))
            objects.put(uuid, ("file", path))
        elif rtype == "NetFlowObject":
            ip = _str(rec.get("remoteAddress"))
            objects.put(uuid, ("socket", _addr(ip, _int(rec.get("remotePort"))) if ip else ""))
        elif rtype == "UnnamedPipeObject":
            objects.put(uuid, ("pipe", "pipe:" + uuid))
        elif rtype == "MemoryObject":
            objects.put(uuid, ("memfd", "memfd:" + uuid))
        else:  # Principal
            objects.put(uuid, ("principal", _int(rec.get("userId"))))
        stats = self.stats
        stats.evicted_objects = objects.evicted
        if len(objects) > stats.objects_max:
            stats.objects_max = len(objects)
        return None

    def _subject(self, uuid: str, rec: dict) -> Event | None:
        props = _props(rec)
        ppid = _int(props.get("ppid"))
        parent = self.subjects.get(_str(rec.get("parentSubject")))
        if ppid < 0 and parent is not None:
            ppid = parent.pid
        principal = self.objects.get(_str(rec.get("localPrincipal")))
        uid = principal[1] if principal is not None and principal[0] == "principal" else -1
        if uid < 0 and parent is not None:
            uid = parent.uid
        exe = _str(props.get("exe")) or _str(props.get("path"))
        comm = _str(props.get("name"))
        subj = _Subject(_int(rec.get("cid")), ppid, uid, exe, comm, _str(rec.get("cmdLine")))
        self.subjects.put(uuid, subj)
        stats = self.stats
        stats.evicted_processes = self.subjects.evicted
        if len(self.subjects) > stats.processes_max:
            stats.processes_max = len(self.subjects)
        waiting = self.pending.pop(uuid, None)
        if waiting is not None and subj.pid >= 0:
            return waiting._replace(obj=str(subj.pid))
        return None

    def _object(self, rec: dict, which: str = "predicateObject") -> tuple[str, str] | None:
        """The (obj_type, name) of an event's object.

        A file is named by the event's path when it gives one (the path used by
        this call; a file object's own path may predate a rename), else by the
        object's path; an unknown object with a path is a file.
        """
        uuid = _str(rec.get(which))
        path = _str(rec.get(which + "Path"))
        ent = self.objects.use(uuid) if uuid else None
        if ent is not None and ent[0] != "principal":
            if ent[0] != "file":
                return ent if ent[1] else None
            if path:
                if not ent[1]:
                    self.objects.put(uuid, ("file", path))
                return "file", path
            return ent if ent[1] else None
        if path:
            return "file", path
        return None

    def _event(self, rec: dict) -> Event | None:
        stats = self.stats
        etype = _str(rec.get("type"))
        subject = _str(rec.get("subject"))
        nanos = _int(rec.get("timestampNanos"), default=_NO_TIME)
        if not etype or not subject or nanos == _NO_TIME:
            raise _Bad("missing_field")
        if not -(1 << 63) <= nanos < 1 << 63:
            raise _Bad("bad_value")
        stats.groups += 1
        op = _EVENT_OPS.get(etype)
        if op is None:
            stats.skip(etype)
            return None
        subj = self.subjects.use(subject)
        if subj is None:
            stats.drop("unknown_subject")
            return None
        ts = nanos / 1e9
        seq = _int(rec.get("sequence"))
        exe, cmdline, obj2, arg = subj.exe, subj.cmdline, "", ""
        if op == "fork":
            child_uuid = _str(rec.get("predicateObject"))
            child = self.subjects.get(child_uuid) if child_uuid else None
            otype, obj = "process", str(child.pid) if child is not None else ""
        elif op == "exit":
            otype, obj = "", ""
            self.subjects.pop(subject, None)
        else:
            ent = self._object(rec)
            if ent is None:
                stats.drop("unknown_object")
                return None
            otype, obj = ent
            if op == "execve":
                props = _props(rec)
                cmdline = _str(props.get("cmdLine")) or _str(props.get("cmdline")) or cmdline
                subj.exe, subj.cmdline = obj, cmdline
            elif otype == "socket":
                op = _ON_SOCKET.get(op, op)
            else:
                op = _ON_OTHER.get(op, op)
                if op == "rename":
                    new = self._object(rec, "predicateObject2")
                    obj2 = new[1] if new is not None else ""
                elif op == "chmod":
                    mode = _props(rec).get("mode")
                    arg = _str(mode)
        ev = _new_event(
            Event,
            (ts, seq, op, subj.pid, subj.ppid, subj.uid, exe, subj.comm, cmdline, otype, obj)
            + (obj2, arg, True),
        )
        if op == "fork" and not obj:
            if child_uuid:
                self.pending.put(child_uuid, ev)
            else:
                stats.drop("unknown_object")
            return None
        stats.events += 1
        return ev


def parse_cdm(
    lines: Iterable[str | bytes],
    *,
    stats: ParseStats | None = None,
    max_subjects: int = 1_000_000,
    max_objects: int = 2_000_000,
    max_pending: int = 4096,
    max_line: int = 1 << 20,
) -> Iterator[Event]:
    """Parses CDM JSON lines into Events, streaming (see the module docstring).

    Args:
      lines: JSON lines (``str`` or ``bytes``), one record each.
      stats: counts are added to it (a fresh one if None).
      max_subjects: subjects kept (least-recently-used evicted beyond).
      max_objects: objects and principals kept (least-recently-used evicted beyond).
      max_pending: forks kept waiting for their child's ``Subject`` record.
      max_line: longer lines are malformed (``too_long``).

    Yields:
      Events, in record order (a fork waiting for its child when the child appears).
    """
    st = stats if stats is not None else ParseStats()
    state = _CdmState(st, max_subjects, max_objects, max_pending)
    loads = json.loads
    n_lines = n_records = 0
    try:
        for line in lines:
            n_lines += 1
            if not isinstance(line, str | bytes | bytearray):
                st.bad("not_text")
                continue
            if len(line) > max_line:
                st.bad("too_long")
                continue
            if not line.strip():
                st.blank += 1
                continue
            try:
                obj = loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                st.bad("bad_json")
                continue
            if type(obj) is not dict:
                st.bad("not_object")
                continue
            datum = obj.get("datum", obj)
            if type(datum) is not dict or len(datum) != 1:
                st.bad("no_record_type")
                continue
            ((key, rec),) = datum.items()
            rtype = key.rpartition(".")[2]
            if "." not in key or type(rec) is not dict:
                st.bad("no_record_type")
                continue
            try:
                ev = state.record(rtype, rec)
            except _Bad as e:
                st.bad(e.args[0])
                continue
            n_records += 1
            if ev is not None:
                yield ev
    finally:
        st.lines += n_lines
        st.records += n_records
        lost = len(state.pending) + state.pending.evicted
        if lost:
            st.dropped["fork_without_child"] = st.dropped.get("fork_without_child", 0) + lost
        st.log("cdm")


def read_cdm(paths, **kwargs) -> Iterator[Event]:
    """Events of one or more CDM JSON-lines files (plain or gzip), lazily.

    Args:
      paths: a path or a sequence of paths, parsed as one stream in the order given.
      **kwargs: :func:`parse_cdm`'s keyword arguments.

    Returns:
      An iterator of Events (files are opened as it reaches them).
    """
    max_line = kwargs.get("max_line", 1 << 20)
    return parse_cdm(read_lines(paths, max_line), **kwargs)
