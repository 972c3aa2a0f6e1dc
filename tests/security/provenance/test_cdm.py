"""CDM parser: known answers per event type, union unwrapping, robustness, bounded maps."""

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.security.provenance.audit import ParseStats
from jaxpapers.security.provenance.cdm import parse_cdm, read_cdm
from jaxpapers.security.provenance.events import OBJ_TYPES, OPS, Event

NS = "com.bbn.tc.schema.avro.cdm18"
T0 = 1523627788_000_000_000


def line(rtype, body, ns=NS, version="18"):
    return json.dumps({"datum": {f"{ns}.{rtype}": body}, "CDMVersion": version, "source": "X"})


def ref(uuid, ns=NS):
    return {f"{ns}.UUID": uuid} if uuid else None


def principal(uuid, uid):
    return line(
        "Principal",
        {
            "uuid": uuid,
            "type": "PRINCIPAL_LOCAL",
            "userId": str(uid),
            "username": {"string": "alice"},
            "groupIds": ["1000"],
        },
    )


def subject(
    uuid, pid, *, parent=None, ppid=None, name="bash", cmd="bash", exe=None, principal_uuid="P1"
):
    props = {"name": name}
    if ppid is not None:
        props["ppid"] = str(ppid)
    if exe is not None:
        props["exe"] = exe
    return line(
        "Subject",
        {
            "uuid": uuid,
            "type": "SUBJECT_PROCESS",
            "cid": pid,
            "parentSubject": ref(parent),
            "hostId": "H",
            "localPrincipal": principal_uuid,
            "startTimestampNanos": T0,
            "cmdLine": {"string": cmd},
            "properties": {"map": props},
        },
    )


def file_obj(uuid, path=None):
    props = {"path": path} if path else {}
    return line(
        "FileObject",
        {
            "uuid": uuid,
            "type": "FILE_OBJECT_FILE",
            "baseObject": {"hostId": "H", "properties": {"map": props}},
        },
    )


def netflow(uuid, ip, port):
    return line(
        "NetFlowObject",
        {
            "uuid": uuid,
            "baseObject": {"hostId": "H"},
            "localAddress": "10.0.0.2",
            "localPort": 5000,
            "remoteAddress": ip,
            "remotePort": port,
            "ipProtocol": {"int": 6},
        },
    )


def pipe(uuid):
    return line(
        "UnnamedPipeObject",
        {
            "uuid": uuid,
            "baseObject": {"hostId": "H"},
            "sourceFileDescriptor": {"int": 3},
            "sinkFileDescriptor": {"int": 4},
        },
    )


def memory(uuid):
    return line(
        "MemoryObject", {"uuid": uuid, "baseObject": {"hostId": "H"}, "memoryAddress": 140000}
    )


def event(seq, etype, subj, obj=None, path=None, obj2=None, path2=None, props=None):
    return line(
        "Event",
        {
            "uuid": f"E{seq}",
            "sequence": {"long": seq},
            "type": etype,
            "threadId": {"int": 1},
            "subject": ref(subj),
            "predicateObject": ref(obj),
            "predicateObjectPath": {"string": path} if path else None,
            "predicateObject2": ref(obj2),
            "predicateObject2Path": {"string": path2} if path2 else None,
            "timestampNanos": T0 + seq * 1000,
            "name": None,
            "properties": {"map": props or {}},
        },
    )


def E(
    seq,
    op,
    obj_type,
    obj,
    *,
    pid=100,
    ppid=1,
    uid=1000,
    exe="/bin/bash",
    comm="bash",
    cmdline="bash",
    obj2="",
    arg="",
):
    return Event(
        (T0 + seq * 1000) / 1e9,
        seq,
        op,
        pid,
        ppid,
        uid,
        exe,
        comm,
        cmdline,
        obj_type,
        obj,
        obj2,
        arg,
        True,
    )


def parse(lines, **kw):
    stats = ParseStats()
    return list(parse_cdm(lines, stats=stats, **kw)), stats


def counts_add_up(stats):
    return stats.lines == stats.records + stats.malformed + stats.blank


def _world():
    return [
        principal("P1", 1000),
        subject("S1", 100, ppid=1, exe="/bin/bash"),
        subject("S2", 101, parent="S1", exe="/bin/bash"),
        file_obj("F1", "/etc/passwd"),
        file_obj("F2"),  # no path: events give it
        netflow("N1", "93.184.216.34", 443),
        pipe("Q1"),
        memory("M1"),
    ]


def test_each_event_type_gives_the_expected_event():
    lines = _world() + [
        event(1, "EVENT_FORK", "S1", "S2"),
        event(
            2,
            "EVENT_EXECUTE",
            "S2",
            "F9",
            path="/usr/bin/curl",
            props={"cmdLine": "curl -o /tmp/x"},
        ),
        event(3, "EVENT_READ", "S1", "F1"),
        event(4, "EVENT_WRITE", "S1", "Q1"),
        event(5, "EVENT_READ", "S1", "Q1"),
        event(6, "EVENT_CONNECT", "S2", "N1"),
        event(7, "EVENT_WRITE", "S2", "N1"),
        event(8, "EVENT_READ", "S2", "N1"),
        event(9, "EVENT_SENDTO", "S2", "N1"),
        event(10, "EVENT_RECVFROM", "S2", "N1"),
        event(11, "EVENT_SENDMSG", "S2", "N1"),
        event(12, "EVENT_RECVMSG", "S2", "N1"),
        event(13, "EVENT_ACCEPT", "S1", "N1"),
        event(14, "EVENT_UNLINK", "S1", "F2", path="/tmp/x"),
        event(15, "EVENT_MODIFY_FILE_ATTRIBUTES", "S1", "F1", props={"mode": "755"}),
        event(16, "EVENT_RENAME", "S1", "F2", path="/tmp/a", obj2="F3", path2="/tmp/b"),
        event(17, "EVENT_MMAP", "S1", "M1"),
        event(18, "EVENT_WRITE", "S1", "M1"),
        event(19, "EVENT_READ", "S1", "F2"),  # the path F2 was first given
        event(20, "EVENT_OPEN", "S1", "F1"),  # not mapped
        event(21, "EVENT_EXIT", "S2"),
        event(22, "EVENT_READ", "S2", "F1"),  # S2 is gone
    ]
    events, stats = parse(lines)
    child = {"pid": 101, "ppid": 100}
    curl = {**child, "exe": "/usr/bin/curl", "cmdline": "curl -o /tmp/x"}
    peer = "93.184.216.34:443"
    assert events == [
        E(1, "fork", "process", "101"),
        E(2, "execve", "file", "/usr/bin/curl", **child, cmdline="curl -o /tmp/x"),
        E(3, "read", "file", "/etc/passwd"),
        E(4, "write", "pipe", "pipe:Q1"),
        E(5, "read", "pipe", "pipe:Q1"),
        E(6, "connect", "socket", peer, **curl),
        E(7, "send", "socket", peer, **curl),
        E(8, "recv", "socket", peer, **curl),
        E(9, "send", "socket", peer, **curl),
        E(10, "recv", "socket", peer, **curl),
        E(11, "send", "socket", peer, **curl),
        E(12, "recv", "socket", peer, **curl),
        E(13, "accept", "socket", peer),
        E(14, "unlink", "file", "/tmp/x"),
        E(15, "chmod", "file", "/etc/passwd", arg="755"),
        E(16, "rename", "file", "/tmp/a", obj2="/tmp/b"),
        E(17, "mmap", "memfd", "memfd:M1"),
        E(18, "write", "memfd", "memfd:M1"),
        E(19, "read", "file", "/tmp/x"),
        E(21, "exit", "", "", **curl),
    ]
    assert stats.skipped_syscalls == {"EVENT_OPEN": 1}
    assert stats.dropped == {"unknown_subject": 1}
    assert stats.records == len(lines) and counts_add_up(stats)


def test_other_cdm_versions_and_bare_union_values():
    ns = "com.bbn.tc.schema.avro.cdm20"
    lines = [
        line("Principal", {"uuid": "P1", "userId": 0}, ns, "20"),
        line(
            "Subject",
            {
                "uuid": "S1",
                "cid": {"int": 7},
                "localPrincipal": {f"{ns}.UUID": "P1"},
                "cmdLine": "sshd -D",
                "properties": {"ppid": "1", "name": "sshd"},
            },
            ns,
            "20",
        ),
        line(
            "NetFlowObject",
            {
                "uuid": "N1",
                "remoteAddress": {"string": "::ffff:1.2.3.4"},
                "remotePort": {"int": 22},
            },
            ns,
            "20",
        ),
        line(
            "NetFlowObject",
            {"uuid": "N2", "remoteAddress": "2001:db8::5", "remotePort": 8443},
            ns,
            "20",
        ),
        line(
            "Event",
            {
                "uuid": "E1",
                "sequence": 5,
                "type": "EVENT_ACCEPT",
                "subject": "S1",
                "predicateObject": "N1",
                "timestampNanos": T0,
            },
            ns,
            "20",
        ),
        line(
            "Event",
            {
                "uuid": "E2",
                "sequence": {"long": 6},
                "type": "EVENT_CONNECT",
                "subject": "S1",
                "predicateObject": "N2",
                "timestampNanos": {"long": T0},
            },
            ns,
            "20",
        ),
        # no "datum" wrapper: the only key is the record type
        json.dumps({f"{ns}.Event": {"type": "EVENT_EXIT", "subject": "S1", "timestampNanos": T0}}),
    ]
    events, stats = parse(lines)
    sshd = {"pid": 7, "ppid": 1, "uid": 0, "exe": "", "comm": "sshd", "cmdline": "sshd -D"}
    assert events == [
        Event(T0 / 1e9, 5, "accept", obj_type="socket", obj="1.2.3.4:22", **sshd),
        Event(T0 / 1e9, 6, "connect", obj_type="socket", obj="[2001:db8::5]:8443", **sshd),
        Event(T0 / 1e9, -1, "exit", obj_type="", obj="", **sshd),
    ]
    assert stats.malformed == 0


def test_fork_before_the_child_subject_waits_for_it():
    lines = [
        principal("P1", 1000),
        subject("S1", 100, ppid=1, exe="/bin/bash"),
        event(1, "EVENT_CLONE", "S1", "S2"),
        event(2, "EVENT_FORK", "S1", "S3"),  # S3 never appears
        subject("S2", 101, parent="S1"),
    ]
    events, stats = parse(lines)
    assert events == [E(1, "fork", "process", "101")]
    assert stats.dropped == {"fork_without_child": 1}


def test_a_file_object_path_and_unknown_objects():
    lines = [
        principal("P1", 1000),
        subject("S1", 100, ppid=1, exe="/bin/bash"),
        file_obj("F1", "/old/name"),
        event(1, "EVENT_WRITE", "S1", "F1"),
        event(2, "EVENT_WRITE", "S1", "F1", path="/new/name"),  # the event's path wins
        event(3, "EVENT_READ", "S1", "F404"),  # unknown, no path
        event(4, "EVENT_READ", "S1", "F404", path="/etc/hosts"),  # unknown with a path
        event(5, "EVENT_READ", "S404", "F1"),
    ]
    events, stats = parse(lines)
    assert events == [
        E(1, "write", "file", "/old/name"),
        E(2, "write", "file", "/new/name"),
        E(4, "read", "file", "/etc/hosts"),
    ]
    assert stats.dropped == {"unknown_object": 1, "unknown_subject": 1}


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{not json", "bad_json"),
        ("[1, 2, 3]", "not_object"),
        ('{"datum": {"a.Subject": {}, "b.Event": {}}}', "no_record_type"),
        ('{"datum": {"Subject": {"uuid": "x"}}}', "no_record_type"),
        ('{"datum": {"a.b.Subject": 5}}', "no_record_type"),
        ('{"datum": {"a.b.Subject": {"cid": 5}}}', "missing_field"),
        ('{"datum": {"a.b.Event": {"type": "EVENT_READ", "timestampNanos": 1}}}', "missing_field"),
        ("[" * 100_000 + "]" * 100_000, "bad_json"),
        ("x" * ((1 << 20) + 1), "too_long"),
    ],
)
def test_malformed_lines_are_counted_by_reason(text, reason):
    lines = [*_world(), text, event(3, "EVENT_READ", "S1", "F1"), "", "  "]
    events, stats = parse(lines)
    assert events == [E(3, "read", "file", "/etc/passwd")]
    assert stats.malformed_by_reason == {reason: 1}
    assert stats.blank == 2 and counts_add_up(stats)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "uuid",
                    "type",
                    "subject",
                    "predicateObject",
                    "cid",
                    "timestampNanos",
                    "string",
                    "long",
                    "map",
                    "properties",
                    "a.UUID",
                    "remoteAddress",
                    "remotePort",
                    "datum",
                    "x.y.Event",
                    "x.y.Subject",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=80), st.binary(max_size=80), _JSON.map(json.dumps)), max_size=20
    )
)
def test_random_lines_never_raise_and_counts_add_up(lines):
    events, stats = parse(_world() + lines)
    assert counts_add_up(stats)
    assert all(e.op in OPS and e.obj_type in OBJ_TYPES for e in events)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["Subject", "Event", "FileObject", "NetFlowObject", "Principal"]),
    st.dictionaries(
        st.sampled_from(
            [
                "uuid",
                "type",
                "subject",
                "predicateObject",
                "cid",
                "timestampNanos",
                "sequence",
                "properties",
                "cmdLine",
                "remoteAddress",
                "remotePort",
                "userId",
                "baseObject",
                "parentSubject",
                "localPrincipal",
                "predicateObjectPath",
            ]
        ),
        _JSON,
        max_size=8,
    ),
)
def test_records_with_random_field_values_never_raise(rtype, body):
    events, stats = parse(_world() + [line(rtype, body), event(3, "EVENT_READ", "S1", "F1")])
    assert counts_add_up(stats)
    assert all(e.op in OPS and e.obj_type in OBJ_TYPES for e in events)


def test_subject_and_object_maps_are_bounded():
    lines = [principal("P1", 1000)]
    for i in range(300):
        lines.append(subject(f"S{i}", 1000 + i, ppid=1))
        lines.append(file_obj(f"F{i}", f"/f/{i}"))
        lines.append(event(i, "EVENT_READ", f"S{i}", f"F{i}"))
    events, stats = parse(lines, max_subjects=20, max_objects=30)
    assert len(events) == 300 and events[-1].obj == "/f/299"
    assert stats.processes_max == 20 and stats.evicted_processes == 280
    assert stats.objects_max == 30 and stats.evicted_objects == 301 - 30


def test_exit_drops_the_subject():
    lines = [*_world(), event(1, "EVENT_EXIT", "S1"), event(2, "EVENT_READ", "S1", "F1")]
    events, stats = parse(lines)
    assert [e.op for e in events] == ["exit"]
    assert stats.dropped == {"unknown_subject": 1}


def test_read_cdm_reads_plain_and_gzip_files(tmp_path):
    (tmp_path / "a.json").write_text("\n".join(_world()) + "\n")
    with gzip.open(tmp_path / "b.json.gz", "wt") as f:
        f.write(event(3, "EVENT_READ", "S1", "F1") + "\n{bad\n")
    stats = ParseStats()
    events = list(read_cdm([tmp_path / "a.json", tmp_path / "b.json.gz"], stats=stats))
    assert events == [E(3, "read", "file", "/etc/passwd")]
    assert stats.malformed_by_reason == {"bad_json": 1} and counts_add_up(stats)
