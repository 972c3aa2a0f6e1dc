"""One event model for Linux audit logs and DARPA TC CDM records.

Both parsers (:mod:`.audit`, :mod:`.cdm`) turn their input into a stream of
:class:`Event` — one per system call that matters for provenance — and the
graph, reduction and detection code never sees the source format.

An event is a *subject* (the process ``pid`` running ``exe``) acting on an
*object* (``obj_type``/``obj``) with an operation ``op`` from :data:`OPS`.
Fields are plain ``str``/``int``/``float`` so that an event costs one tuple and
the streaming path stays fast; missing values are ``""`` or ``-1``.

Operations (the information-flow direction used by detection is in
:data:`FLOW`):

=============  ==============================================  =================
``op``         system calls (audit) / CDM event types          ``obj_type``
=============  ==============================================  =================
``fork``       fork, vfork, clone, clone3 / EVENT_FORK, CLONE   ``process`` (obj = child pid)
``execve``     execve, execveat / EVENT_EXECUTE                 ``file`` or ``memfd`` (obj = image path)
``exit``       exit, exit_group / EVENT_EXIT                    ``""``
``read``       read, pread64, readv, open/openat O_RDONLY, ... ``file``, ``pipe``, ``memfd``
``write``      write, pwrite64, writev, open/openat for write   ``file``, ``pipe``, ``memfd``
``connect``    connect / EVENT_CONNECT                          ``socket`` (obj = "ip:port")
``accept``     accept, accept4 / EVENT_ACCEPT                   ``socket`` (obj = peer "ip:port")
``send``       sendto, sendmsg, write on a socket / SENDTO ...  ``socket``
``recv``       recvfrom, recvmsg, read on a socket / RECVFROM   ``socket``
``unlink``     unlink, unlinkat / EVENT_UNLINK                  ``file``
``chmod``      chmod, fchmod, fchmodat / MODIFY_FILE_ATTRIBUTES ``file`` (arg = octal mode)
``rename``     rename, renameat(2) / EVENT_RENAME               ``file`` (obj2 = new path)
``memfd``      memfd_create / (CDM: MemoryObject creation)      ``memfd`` (obj = "memfd:<name>")
``mmap``       mmap with PROT_EXEC of a file / EVENT_MMAP       ``file`` or ``memfd``
=============  ==============================================  =================

Object naming (the graph's node keys): files by absolute normalised path;
sockets by ``"ip:port"`` of the remote end (``"unix:<path>"`` for AF_UNIX);
pipes by ``"pipe:<id>"`` (audit: ``pipe:<pid>:<fd0>:<fd1>`` from the creating
call's ``FD_PAIR``, since audit logs no pipe inode; CDM: the object UUID);
memfds by ``"memfd:<name>"`` (audit: ``memfd:<pid>:<fd>``); processes are
identified by the graph (a node per fork instance), not by name.
"""

from __future__ import annotations

from typing import NamedTuple

OPS = (
    "fork",
    "execve",
    "exit",
    "read",
    "write",
    "connect",
    "accept",
    "send",
    "recv",
    "unlink",
    "chmod",
    "rename",
    "memfd",
    "mmap",
)

OBJ_TYPES = ("", "file", "socket", "pipe", "process", "memfd")

# Direction of information flow for each op: "in" = object → subject (the process
# learns from the object), "out" = subject → object, "both", or "" (no data flow;
# the event can still match a rule).
FLOW = {
    "fork": "out",  # parent → child
    "execve": "in",  # the image → the process
    "exit": "",
    "read": "in",
    "write": "out",
    "connect": "",
    "accept": "",
    "send": "out",
    "recv": "in",
    "unlink": "",
    "chmod": "out",
    "rename": "out",
    "memfd": "out",
    "mmap": "in",
}


class Event(NamedTuple):
    """One provenance event: process ``pid`` does ``op`` on object ``obj``.

    Attributes:
      ts: time in seconds since the epoch (audit ``msg=audit(ts:serial)``).
      seq: the audit serial number (CDM: sequence), for ordering within a second.
      op: one of :data:`OPS`.
      pid, ppid, uid: the subject process, its parent and its (real) user id; -1 unknown.
      exe: the subject's executable path *before* the event (for ``execve`` the
        new image is ``obj``).
      comm: the subject's command name (audit ``comm``), ``""`` unknown.
      cmdline: the subject's command line (audit PROCTITLE / EXECVE argv joined
        by spaces; for ``execve`` the new argv), ``""`` unknown.
      obj_type: one of :data:`OBJ_TYPES`.
      obj: the object's name (see the module docstring).
      obj2: a second object (``rename``'s new path), else ``""``.
      arg: an operation argument as text (``chmod`` mode in octal, e.g. ``"755"``;
        ``fork``: ``"thread"`` for a CLONE_THREAD clone), else ``""``.
      ok: whether the system call succeeded.
    """

    ts: float
    seq: int
    op: str
    pid: int
    ppid: int
    uid: int
    exe: str
    comm: str
    cmdline: str
    obj_type: str
    obj: str
    obj2: str = ""
    arg: str = ""
    ok: bool = True
