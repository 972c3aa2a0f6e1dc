"""Incremental provenance graph: node identity, edges with time, bounded memory.

Nodes are processes, files, sockets, pipes and memory files; every event adds
(at most) one directed edge ``subject → object`` (or ``object → subject`` when
information flows into the subject, see :data:`~.events.FLOW`) at its position
in the stream. Node identity:

* a **process** is a pid *instance*: ``fork`` creates a new node for the child
  (so a reused pid is a different node), ``execve`` keeps the node and updates
  its executable and command line (its ``epoch`` counts the images it ran); a
  pid seen without a fork (running before the log starts) gets a node lazily;
* an **object** is its type and name (``file:/etc/passwd``,
  ``socket:45.33.1.2:443``, ``pipe:...``, ``memfd:...``).

Information flows along an edge as :data:`~.events.FLOW` says, with three
exceptions (each a documented choice against dependency explosion, and the
same in streaming and batch mode since both take the flow code from here):

* a **failed** system call (``Event.ok`` false) moves no data: its flow code is
  0 (its rules still fire: an attempted credential read is a signal), and a
  failed ``execve`` leaves the process's image, command line and epoch as
  they were;
* **devices** (files under ``/dev/`` other than ``/dev/shm/`` and
  ``/dev/mqueue/``: terminals, ``/dev/null``, ``/dev/urandom``) take no labels
  from writes: what a process prints on a terminal is not what the next
  process reads from it (keyboard input), and ``/dev/null`` keeps nothing;
* **remote sockets** (any address but ``unix:`` and loopback) take no labels
  from sends: the data leaves the host and does not come back to the next
  local process that talks to the same server (a git server every CI job
  and every developer contacts would otherwise join them all).

Node ids are small ints handed out in order of first appearance. The graph
keeps what the detector needs to stay bounded on an unbounded log: exited
processes leave the pid map, and unlabelled object nodes can be evicted
least-recently-used beyond ``max_objects`` (an evicted object that reappears
gets a new id: it had no label, so nothing is lost). ``record=True`` also keeps
every edge in growing arrays (:meth:`edges`) — what the batch detector and the
pictures use, for logs that fit in memory.
"""

from __future__ import annotations

import array
import dataclasses
from collections import OrderedDict

import numpy as np

from jaxpapers.security.provenance.events import FLOW, OPS, Event

OP_CODE = {op: i for i, op in enumerate(OPS)}
# flow code: 0 none, 1 object → subject ("in"), 2 subject → object ("out")
_FLOW_CODE = {"": 0, "in": 1, "out": 2, "both": 3}
FLOW_CODE = {op: _FLOW_CODE[FLOW[op]] for op in OPS}


_LOCAL_PREFIXES = ("unix:", "127.", "[::1]:", "::1:")


def is_sink(obj_type: str, name: str) -> bool:
    """Whether an object takes no labels from writes (see the module docstring)."""
    if obj_type == "file":
        return name.startswith("/dev/") and not name.startswith(("/dev/shm/", "/dev/mqueue/"))
    if obj_type == "socket":
        return not name.startswith(_LOCAL_PREFIXES)
    return False


@dataclasses.dataclass
class NodeInfo:
    """What the graph knows about a node (for alerts and pictures)."""

    kind: str  # "process" or an object type
    name: str  # process: the executable; object: its name
    pid: int = -1
    cmdline: str = ""
    first_ts: float = 0.0


class ProvenanceGraph:
    """The incremental graph (see the module docstring).

    Args:
      record: keep every edge (``src, dst, op, ts, seq``) for :meth:`edges`.
      max_objects: unlabelled object nodes kept before LRU eviction.
      max_info: node descriptions kept (beyond it, only pinned nodes' are kept).
    """

    def __init__(
        self, *, record: bool = False, max_objects: int = 1 << 18, max_info: int = 1 << 20
    ):
        self.record = record
        self.max_objects = max_objects
        self.max_info = max_info
        self._next = 0
        self._pid: dict[int, int] = {}  # live pid -> node id
        self._epoch: dict[int, int] = {}  # process node -> exec count
        self._objects: OrderedDict[str, int] = OrderedDict()  # key -> node id (LRU)
        self.pinned: set[int] = set()  # nodes that must keep their id (labelled)
        self.sinks: set[int] = set()  # object nodes that take no labels from writes
        self.info: dict[int, NodeInfo] = {}
        self.nodes_created = 0
        self.processes_created = 0
        self.watch_pids: set[int] = set()  # count the process nodes of these pids
        self.watched_created = 0
        self.edges_seen = 0
        self._src = array.array("i")
        self._dst = array.array("i")
        self._op = array.array("b")
        self._ts = array.array("d")
        self._seq = array.array("q")
        self._ev = array.array("q")

    # -- nodes -------------------------------------------------------------------
    def _new(self, info: NodeInfo) -> int:
        node = self._next
        self._next += 1
        self.nodes_created += 1
        if len(self.info) < self.max_info:
            self.info[node] = info
        return node

    def _new_process(self, info: NodeInfo) -> int:
        self.processes_created += 1
        if info.pid in self.watch_pids:
            self.watched_created += 1
        return self._new(info)

    def describe(self, node: int) -> NodeInfo:
        return self.info.get(node) or NodeInfo("?", f"node {node}")

    def process(self, event: Event) -> int:
        """The node of ``event``'s subject process (created if the pid is new)."""
        node = self._pid.get(event.pid)
        if node is None:
            node = self._new_process(
                NodeInfo("process", event.exe, event.pid, event.cmdline, event.ts)
            )
            self._pid[event.pid] = node
            self._epoch[node] = 0
        return node

    def epoch(self, node: int) -> int:
        return self._epoch.get(node, 0)

    def object(self, event: Event) -> int:
        key = event.obj_type + ":" + event.obj
        node = self._objects.get(key)
        if node is None:
            node = self._new(NodeInfo(event.obj_type, event.obj, first_ts=event.ts))
            self._objects[key] = node
            if is_sink(event.obj_type, event.obj):
                self.sinks.add(node)
            if len(self._objects) > self.max_objects:
                self._evict()
        else:
            self._objects.move_to_end(key)
        return node

    def _evict(self) -> None:
        for _ in range(len(self._objects) // 8 + 1):
            key, node = next(iter(self._objects.items()))
            self._objects.move_to_end(key)
            if node not in self.pinned:
                del self._objects[key]
                self.info.pop(node, None)
                self.sinks.discard(node)

    def live_nodes(self) -> set[int]:
        """The nodes of the processes alive now."""
        return set(self._pid.values())

    @property
    def live_processes(self) -> int:
        return len(self._pid)

    @property
    def tracked_objects(self) -> int:
        return len(self._objects)

    # -- events ------------------------------------------------------------------
    def add(self, event: Event, index: int) -> tuple[int, int, int]:
        """Adds ``event`` (the ``index``-th of the stream).

        Returns:
          ``(subject, object, flow)``: node ids (object -1 when the event has
          none) and the flow code (0 none, 1 object → subject, 2 subject → object).
        """
        op = event.op
        subject = self.process(event)
        obj = -1
        if op == "fork":
            try:
                child_pid = int(event.obj)
            except ValueError:
                child_pid = -1
            if child_pid >= 0 and event.arg != "thread":
                info = self.describe(subject)
                obj = self._new_process(
                    NodeInfo("process", info.name, child_pid, info.cmdline, event.ts)
                )
                self._pid[child_pid] = obj
                self._epoch[obj] = 0
            elif child_pid >= 0:  # a thread shares its creator's node
                self._pid[child_pid] = subject
        elif op == "execve":
            obj = self.object(event)
            if event.ok:
                self._epoch[subject] = self._epoch.get(subject, 0) + 1
                info = self.info.get(subject)
                if info is not None:
                    info.name, info.cmdline = event.obj, event.cmdline or info.cmdline
        elif op == "exit":
            if self._pid.get(event.pid) == subject:
                del self._pid[event.pid]
            self._epoch.pop(subject, None)
        elif event.obj_type:
            obj = self.object(event)
        if obj < 0 or not event.ok:
            flow = 0
        else:
            flow = FLOW_CODE[op]
            if flow == 2 and obj in self.sinks:
                flow = 0
        self.edges_seen += 1
        if self.record and obj >= 0:
            src, dst = (obj, subject) if flow == 1 else (subject, obj)
            self._src.append(src)
            self._dst.append(dst)
            self._op.append(OP_CODE[op])
            self._ts.append(event.ts)
            self._seq.append(event.seq)
            self._ev.append(index)
        return subject, obj, flow

    def edges(self) -> dict[str, np.ndarray]:
        """The recorded edges (``record=True``): ``src, dst, op, ts, seq, event``."""
        if not self.record:
            raise ValueError("this graph was built with record=False; it keeps no edges")
        return {
            "src": np.frombuffer(self._src, np.int32).copy(),
            "dst": np.frombuffer(self._dst, np.int32).copy(),
            "op": np.frombuffer(self._op, np.int8).copy(),
            "ts": np.frombuffer(self._ts, np.float64).copy(),
            "seq": np.frombuffer(self._seq, np.int64).copy(),
            "event": np.frombuffer(self._ev, np.int64).copy(),
        }

    @property
    def num_nodes(self) -> int:
        return self._next
