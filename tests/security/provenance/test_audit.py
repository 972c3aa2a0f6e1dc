"""Audit-log parser: known answers per op, fd resolution, robustness, bounded state."""

import gzip
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.security.provenance.audit import ParseStats, parse_audit, read_audit
from jaxpapers.security.provenance.events import OBJ_TYPES, OPS, Event

TS = "1700000000.500"
AT_FDCWD = "ffffff9c"


def syscall(
    serial,
    nr,
    *,
    pid=100,
    ppid=1,
    exit=0,
    a0="3",
    a1="0",
    a2="0",
    items=0,
    ok=True,
    comm='"sh"',
    exe='"/bin/sh"',
    uid=1000,
    ts=TS,
):
    success = f"success={'yes' if ok else 'no'} exit={exit} " if exit is not None else ""
    return (
        f"type=SYSCALL msg=audit({ts}:{serial}): arch=c000003e syscall={nr} {success}"
        f"a0={a0} a1={a1} a2={a2} a3=0 items={items} ppid={ppid} pid={pid} auid=1000 uid={uid} "
        f"gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 "
        f"comm={comm} exe={exe} subj=unconfined key=(null)"
    )


def rec(rtype, serial, body="", ts=TS):
    return f"type={rtype} msg=audit({ts}:{serial}): {body}".rstrip()


def path(serial, item, name, nametype="NORMAL"):
    return rec(
        "PATH",
        serial,
        f"item={item} name={name} inode=5 dev=08:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 "
        f"nametype={nametype} cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
    )


def event(serial, nr, *extra, title="7368", eoe=True, **kw):
    """SYSCALL (items = number of PATH records), ``extra`` records, PROCTITLE, EOE."""
    items = sum(1 for e in extra if e.startswith("type=PATH"))
    lines = [syscall(serial, nr, items=items, **kw), *extra]
    if title is not None:
        lines.append(rec("PROCTITLE", serial, f"proctitle={title}"))
    if eoe:
        lines.append(rec("EOE", serial))
    return lines


def E(
    seq,
    op,
    obj_type,
    obj,
    *,
    pid=100,
    ppid=1,
    uid=1000,
    exe="/bin/sh",
    comm="sh",
    cmdline="sh",
    obj2="",
    arg="",
    ok=True,
):
    return Event(
        1700000000.5, seq, op, pid, ppid, uid, exe, comm, cmdline, obj_type, obj, obj2, arg, ok
    )


def parse(lines, **kw):
    stats = ParseStats()
    return list(parse_audit(lines, stats=stats, **kw)), stats


def counts_add_up(stats):
    return stats.lines == stats.records + stats.malformed + stats.blank


def cwd(serial, d):
    return rec("CWD", serial, f'cwd="{d}"')


def open_file(serial, name, fd=3, flags="0", cwd_dir="/home/alice", **kw):
    return event(
        serial,
        257,
        cwd(serial, cwd_dir),
        path(serial, 0, f'"{name}"'),
        exit=fd,
        a0=AT_FDCWD,
        a2=flags,
        **kw,
    )


# --- one known answer per op -------------------------------------------------------
def test_execve_of_the_brief_example_gives_every_field():
    log = """type=SYSCALL msg=audit(1700000000.123:4242): arch=c000003e syscall=59 success=yes exit=0 a0=55d1 a1=55d2 a2=55d3 a3=0 items=2 ppid=1200 pid=1234 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" subj=unconfined key="exec"
type=EXECVE msg=audit(1700000000.123:4242): argc=3 a0="curl" a1="-o" a2="/tmp/x"
type=CWD msg=audit(1700000000.123:4242): cwd="/home/alice"
type=PATH msg=audit(1700000000.123:4242): item=0 name="/usr/bin/curl" inode=1311 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0
type=PATH msg=audit(1700000000.123:4242): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=2 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0
type=PROCTITLE msg=audit(1700000000.123:4242): proctitle=6375726C002D6F002F746D702F78
type=EOE msg=audit(1700000000.123:4242):
"""
    events, stats = parse(log.splitlines(keepends=True))
    assert events == [
        Event(
            1700000000.123,
            4242,
            "execve",
            1234,
            1200,
            1000,
            "",
            "curl",
            "curl -o /tmp/x",
            "file",
            "/usr/bin/curl",
            "",
            "",
            True,
        )
    ]
    assert (stats.lines, stats.records, stats.malformed, stats.events) == (7, 7, 0, 1)


def test_execve_exe_is_the_image_before_and_the_table_takes_the_new_one():
    lines = event(1, 0, exit=1, a0="0")  # the shell is known: /bin/sh
    lines += event(
        2,
        59,
        rec("EXECVE", 2, 'argc=2 a0="python3" a1="x.py"'),
        cwd(2, "/srv"),
        path(2, 0, '"/usr/bin/python3"'),
        comm='"python3"',
        exe='"/usr/bin/python3.11"',
    )
    lines += open_file(
        3,
        "/etc/hosts",
        comm='"python3"',
        exe='"/usr/bin/python3.11"',
        title="707974686F6E3300782E7079",
    )
    events, stats = parse(lines)
    assert events == [
        E(
            2,
            "execve",
            "file",
            "/usr/bin/python3",
            exe="/bin/sh",
            comm="python3",
            cmdline="python3 x.py",
        ),
        E(
            3,
            "read",
            "file",
            "/etc/hosts",
            exe="/usr/bin/python3.11",
            comm="python3",
            cmdline="python3 x.py",
        ),
    ]
    assert stats.dropped == {"unresolved_fd": 1}  # read(0): stdin predates the log


def test_fork_clone_and_thread_clone():
    lines = event(1, 57, exit=101)  # fork
    lines += event(2, 56, exit=102, a0="1200011")  # clone as fork
    lines += event(3, 56, exit=103, a0="3d0f00")  # pthread_create
    lines += event(4, 56, exit=-11, a0="1200011", ok=False)  # failed: no child to name
    events, stats = parse(lines)
    assert events == [
        E(1, "fork", "process", "101"),
        E(2, "fork", "process", "102"),
        E(3, "fork", "process", "103", arg="thread"),
    ]
    assert stats.dropped == {"no_object": 1}


def test_exit_and_exit_group_end_the_process_but_a_thread_exit_does_not():
    lines = open_file(1, "/data/in")
    lines += event(2, 56, exit=103, a0="3d0f00")  # a thread
    lines += event(3, 60, exit=None)  # the thread exits (audit logs the tgid as pid)
    lines += event(4, 0, exit=10)  # the process still reads fd 3
    lines += event(5, 231, exit=None, a0="0")
    lines += event(6, 0, exit=10)  # state gone: fd 3 is unknown
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/data/in"),
        E(2, "fork", "process", "103", arg="thread"),
        E(4, "read", "file", "/data/in"),
        E(5, "exit", "", ""),
    ]
    assert stats.dropped == {"unresolved_fd": 1}


@pytest.mark.parametrize(
    "nr, flags, op",
    [
        (257, "0", "read"),  # O_RDONLY
        (257, "80000", "read"),  # O_RDONLY|O_CLOEXEC
        (257, "1", "write"),  # O_WRONLY
        (257, "2", "write"),  # O_RDWR
        (257, "200", "write"),  # O_RDONLY|O_TRUNC
        (257, "40", "write"),  # O_RDONLY|O_CREAT
        (2, "0", "read"),  # open: flags in a1
        (2, "241", "write"),
        (85, "0", "write"),  # creat
    ],
)
def test_open_access_mode_gives_read_or_write(nr, flags, op):
    a = {"a0": AT_FDCWD, "a2": flags} if nr == 257 else {"a0": "7ffd", "a1": flags}
    lines = event(1, nr, cwd(1, "/"), path(1, 0, '"/var/log/app.log"'), exit=3, **a)
    lines += event(2, 1 if op == "write" else 0, exit=5)
    events, _ = parse(lines)
    assert events == [E(1, op, "file", "/var/log/app.log"), E(2, op, "file", "/var/log/app.log")]


def test_open_with_create_names_the_created_item_not_the_parent():
    lines = event(
        1,
        257,
        cwd(1, "/home/alice"),
        path(1, 0, '"/tmp/"', "PARENT"),
        path(1, 1, '"/tmp/out.bin"', "CREATE"),
        exit=4,
        a0=AT_FDCWD,
        a2="241",
    )
    events, _ = parse(lines)
    assert events == [E(1, "write", "file", "/tmp/out.bin")]


def test_socket_connect_send_recv_resolve_through_the_fd():
    sa = "saddr=020001BB5DB8D8220000000000000000"  # AF_INET 93.184.216.34:443
    lines = event(1, 41, exit=4, a0="2", a1="1")  # socket: state only
    lines += event(2, 42, rec("SOCKADDR", 2, sa), exit=0, a0="4")
    lines += event(3, 1, exit=100, a0="4")  # write on a socket
    lines += event(4, 44, exit=100, a0="4")  # sendto without an address
    lines += event(5, 0, exit=50, a0="4")  # read on a socket
    lines += event(6, 47, exit=50, a0="4")  # recvmsg
    events, stats = parse(lines)
    peer = "93.184.216.34:443"
    assert events == [
        E(2, "connect", "socket", peer),
        E(3, "send", "socket", peer),
        E(4, "send", "socket", peer),
        E(5, "recv", "socket", peer),
        E(6, "recv", "socket", peer),
    ]
    assert stats.skipped_syscalls == {}


def test_nonblocking_connect_in_progress_is_failed_but_binds_the_fd():
    sa = "saddr=0200005011223344" + "0" * 16  # 17.34.51.68:80
    lines = event(1, 42, rec("SOCKADDR", 1, sa), exit=-115, a0="5", ok=False)
    lines += event(2, 1, exit=10, a0="5")
    events, _ = parse(lines)
    assert events == [
        E(1, "connect", "socket", "17.34.51.68:80", ok=False),
        E(2, "send", "socket", "17.34.51.68:80"),
    ]


def test_sendto_and_recvfrom_use_the_logged_address():
    udp = "saddr=02000035080808080000000000000000"  # 8.8.8.8:53
    lines = event(1, 44, rec("SOCKADDR", 1, udp), exit=40, a0="6")
    lines += event(2, 45, rec("SOCKADDR", 2, udp), exit=90, a0="6")
    events, _ = parse(lines)
    assert events == [E(1, "send", "socket", "8.8.8.8:53"), E(2, "recv", "socket", "8.8.8.8:53")]


def test_accept_binds_the_new_fd_to_the_peer():
    peer = "saddr=0200C7380A0000070000000000000000"  # 10.0.0.7:51000
    lines = event(1, 288, rec("SOCKADDR", 1, peer), exit=5, a0="3", a1="7ffc", a2="800")
    lines += event(2, 0, exit=20, a0="5")
    lines += event(3, 43, exit=-11, a0="3", ok=False)  # EAGAIN: no peer, no object
    events, stats = parse(lines)
    assert events == [
        E(1, "accept", "socket", "10.0.0.7:51000"),
        E(2, "recv", "socket", "10.0.0.7:51000"),
    ]
    assert stats.dropped == {"no_object": 1}


@pytest.mark.parametrize(
    "saddr, name",
    [
        ("0A0001BB00000000" + "20010DB8000000000000000000000001" + "00000000", "[2001:db8::1]:443"),
        (
            "0A000050" + "00000000" + "00000000000000000000FFFFC0A80101" + "00000000",
            "192.168.1.1:80",
        ),
        ("01002F72756E2F646F636B65722E736F636B00", "unix:/run/docker.sock"),
        ("0100006162737472616374", "unix:@abstract"),
        ("1000000039300000" + "00000000", "netlink:12345"),
    ],
)
def test_socket_address_families_are_named(saddr, name):
    events, _ = parse(event(1, 42, rec("SOCKADDR", 1, f"saddr={saddr}"), a0="4"))
    assert events == [E(1, "connect", "socket", name)]


def test_pipe2_then_fork_links_writer_and_reader():
    lines = event(1, 293, rec("FD_PAIR", 1, "fd0=3 fd1=4"), exit=0, a0="7ffc")
    lines += event(2, 56, exit=101, a0="1200011")
    lines += event(3, 1, pid=101, ppid=100, exit=5, a0="4")  # child writes the pipe
    lines += event(4, 0, exit=5, a0="3")  # parent reads it
    events, _ = parse(lines)
    assert events == [
        E(2, "fork", "process", "101"),
        E(3, "write", "pipe", "pipe:100:3:4", pid=101, ppid=100),
        E(4, "read", "pipe", "pipe:100:3:4"),
    ]


def test_fork_child_inherits_a_copy_of_the_fd_table():
    lines = open_file(1, "secret.txt")
    lines += event(2, 57, exit=101)
    lines += event(3, 3, exit=0, a0="3")  # the parent closes its fd 3 ...
    lines += event(4, 0, pid=101, ppid=100, exit=10, a0="3")  # ... the child's copy remains
    lines += event(5, 0, exit=10, a0="3")
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/home/alice/secret.txt"),
        E(2, "fork", "process", "101"),
        E(4, "read", "file", "/home/alice/secret.txt", pid=101, ppid=100),
    ]
    assert stats.dropped == {"unresolved_fd": 1}


def test_clone_files_shares_the_fd_table():
    lines = event(1, 56, exit=101, a0="400")  # CLONE_FILES without CLONE_THREAD
    lines += open_file(2, "/etc/motd", pid=101, ppid=100)
    lines += event(3, 0, exit=10, a0="3")  # the parent sees the child's fd
    events, _ = parse(lines)
    assert events[-1] == E(3, "read", "file", "/etc/motd")


def test_dup2_copies_and_close_removes():
    lines = open_file(1, "/tmp/log", flags="441")  # O_WRONLY|O_CREAT|O_APPEND
    lines += event(2, 33, exit=1, a0="3", a1="1")  # dup2(3, 1)
    lines += event(3, 3, exit=0, a0="3")  # close(3)
    lines += event(4, 1, exit=6, a0="1")  # write(1) → the file
    lines += event(5, 1, exit=6, a0="3")  # write(3): closed
    lines += event(6, 292, exit=7, a0="1", a1="7")  # dup3(1, 7)
    lines += event(7, 72, exit=8, a0="7", a1="406")  # fcntl(7, F_DUPFD_CLOEXEC)
    lines += event(8, 1, exit=6, a0="8")
    events, stats = parse(lines)
    assert events == [
        E(1, "write", "file", "/tmp/log"),
        E(4, "write", "file", "/tmp/log"),
        E(8, "write", "file", "/tmp/log"),
    ]
    assert stats.dropped == {"unresolved_fd": 1}


def hexed(text):
    return text.encode().hex().upper()


def test_memfd_create_write_and_execve_through_proc_self_fd():
    memfd_exe = hexed("/memfd:x (deleted)")  # the kernel hex-encodes values with spaces
    lines = event(1, 319, exit=3, a0="7ffd", a1="1")
    lines += event(2, 1, exit=4096, a0="3")
    lines += event(
        3,
        59,
        rec("EXECVE", 3, 'argc=2 a0="payload" a1="-d"'),
        cwd(3, "/tmp"),
        path(3, 0, '"/proc/self/fd/3"'),
        exe=memfd_exe,
        comm='"3"',
    )
    lines += event(4, 322, exit=0, a0="3", exe=memfd_exe, comm='"3"')  # fexecve
    events, _ = parse(lines)
    assert events == [
        E(1, "memfd", "memfd", "memfd:100:3"),
        E(2, "write", "memfd", "memfd:100:3"),
        E(3, "execve", "memfd", "memfd:100:3", comm="3", cmdline="payload -d"),
        E(4, "execve", "memfd", "memfd:100:3", comm="3", exe="/memfd:x (deleted)", cmdline="sh"),
    ]


def test_execve_of_an_unnamed_memfd_image_uses_its_name():
    lines = event(1, 59, exe=hexed("/memfd:stage2 (deleted)"), comm='"stage2"')
    events, _ = parse(lines)
    assert events == [E(1, "execve", "memfd", "memfd:stage2", exe="", comm="stage2")]


def test_mmap_with_prot_exec_of_an_fd():
    lines = open_file(1, "/usr/lib/libevil.so", flags="80000")
    lines += event(2, 9, rec("MMAP", 2, "fd=3 flags=0x812"), exit=0, a0="0", a1="2000", a2="5")
    lines += event(3, 9, rec("MMAP", 3, "fd=3 flags=0x2"), exit=0, a0="0", a1="2000", a2="1")
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/usr/lib/libevil.so"),
        E(2, "mmap", "file", "/usr/lib/libevil.so"),
    ]
    assert stats.dropped == {}


def test_unlink_and_unlinkat_name_the_deleted_item():
    lines = event(
        1,
        263,
        cwd(1, "/root"),
        path(1, 0, '"/tmp/"', "PARENT"),
        path(1, 1, '"/tmp/dropper"', "DELETE"),
        a0=AT_FDCWD,
    )
    lines += event(
        2,
        87,
        cwd(2, "/var/tmp"),
        path(2, 0, '"/var/tmp/"', "PARENT"),
        path(2, 1, '"x.sh"', "DELETE"),
        a0="7ffd",
    )
    events, _ = parse(lines)
    assert events == [
        E(1, "unlink", "file", "/tmp/dropper"),
        E(2, "unlink", "file", "/var/tmp/x.sh"),
    ]


def test_chmod_fchmodat_fchmod_give_the_octal_mode():
    lines = event(1, 90, cwd(1, "/"), path(1, 0, '"/tmp/x"'), a0="7ffd", a1="1ed")
    lines += event(
        2, 268, cwd(2, "/home/alice"), path(2, 0, '"run.sh"'), a0=AT_FDCWD, a1="7ffd", a2="9c0"
    )  # 04700: setuid kept
    lines += open_file(3, "/srv/key", flags="2")
    lines += event(4, 91, a0="3", a1="1a4")
    events, _ = parse(lines)
    assert events == [
        E(1, "chmod", "file", "/tmp/x", arg="755"),
        E(2, "chmod", "file", "/home/alice/run.sh", arg="4700"),
        E(3, "write", "file", "/srv/key"),
        E(4, "chmod", "file", "/srv/key", arg="644"),
    ]


def test_rename_old_name_is_obj_and_new_name_obj2():
    lines = event(
        1,
        316,
        cwd(1, "/home/alice"),
        path(1, 0, '"/home/alice/"', "PARENT"),
        path(1, 1, '"/tmp/"', "PARENT"),
        path(1, 2, '"a.txt"', "DELETE"),
        path(1, 3, '"/tmp/b.txt"', "CREATE"),
        a0=AT_FDCWD,
        a1="7ffd",
        a2=AT_FDCWD,
    )
    lines += event(
        2,
        82,
        cwd(2, "/etc"),
        path(2, 0, '"/etc/"', "PARENT"),
        path(2, 1, '"/etc/"', "PARENT"),
        path(2, 2, '"passwd+"', "DELETE"),
        path(2, 3, '"passwd"', "DELETE"),
        path(2, 4, '"passwd"', "CREATE"),
        a0="7ffd",
        a1="7ffe",
    )  # over an existing file
    events, _ = parse(lines)
    assert events == [
        E(1, "rename", "file", "/home/alice/a.txt", obj2="/tmp/b.txt"),
        E(2, "rename", "file", "/etc/passwd+", obj2="/etc/passwd"),
    ]


def test_openat_relative_to_a_directory_fd():
    lines = event(
        1, 257, cwd(1, "/"), path(1, 0, '"/opt/app"'), exit=5, a0=AT_FDCWD, a2="10000"
    )  # O_DIRECTORY
    lines += event(2, 257, cwd(2, "/"), path(2, 0, '"conf/app.ini"'), exit=6, a0="5", a2="0")
    events, _ = parse(lines)
    assert events[-1] == E(2, "read", "file", "/opt/app/conf/app.ini")


# --- decoding -------------------------------------------------------------------------
def test_hex_encoded_comm_exe_name_and_proctitle_decode():
    comm = hexed("my prog")
    exe = hexed("/opt/my prog/bin")
    name = hexed("/tmp/ünï côdé.txt")
    title = b"my prog\x00--flag\x00a b".hex().upper()
    lines = event(
        1, 257, cwd(1, "/"), path(1, 0, name), exit=3, a0=AT_FDCWD, comm=comm, exe=exe, title=title
    )
    events, _ = parse(lines)
    assert events == [
        E(
            1,
            "read",
            "file",
            "/tmp/ünï côdé.txt",
            comm="my prog",
            exe="/opt/my prog/bin",
            cmdline="my prog --flag a b",
        )
    ]


def test_hex_encoded_cwd_and_execve_arguments_and_unknown_values():
    d = hexed("/home/a b")
    arg = hexed("hello world")
    lines = event(
        1,
        59,
        rec("EXECVE", 1, f'argc=3 a0="echo" a1={arg} a2="!"'),
        rec("CWD", 1, f"cwd={d}"),
        path(1, 0, '"./echo"'),
        comm="(null)",
        exe="?",
    )
    events, _ = parse(lines)
    assert events == [
        E(1, "execve", "file", "/home/a b/echo", exe="", comm="", cmdline="echo hello world !")
    ]


def test_execve_long_argument_split_over_records():
    big = "A" * 30
    lines = event(
        1,
        59,
        rec("EXECVE", 1, 'argc=2 a0="cat" a1_len=30'),
        rec("EXECVE", 1, f"a1[0]={hexed(big[:12])}"),
        rec("EXECVE", 1, f"a1[1]={hexed(big[12:])}"),
        path(1, 0, '"/bin/cat"'),
    )
    events, _ = parse(lines)
    assert events[0].cmdline == "cat " + big


def test_relative_paths_resolve_against_cwd_and_normalise():
    lines = event(
        1, 257, cwd(1, "/home/alice/src"), path(1, 0, '"../data/./x.csv"'), exit=3, a0=AT_FDCWD
    )
    lines += event(2, 257, cwd(2, "/"), path(2, 0, '"//etc//passwd"'), exit=4, a0=AT_FDCWD)
    events, _ = parse(lines)
    assert [e.obj for e in events] == ["/home/alice/data/x.csv", "/etc/passwd"]


def test_enriched_format_node_prefix_and_a_non_canonical_layout_parse_alike():
    plain = open_file(1, "/etc/hosts")
    enriched = [
        "node=web01 "
        + line.replace("key=(null)", 'key=(null)\x1dARCH=x86_64 SYSCALL=openat UID="alice"')
        for line in plain
    ]
    reordered = [
        line.replace("arch=c000003e syscall=257", "syscall=257 arch=c000003e") for line in plain
    ]
    expected, _ = parse(plain)
    assert expected == [E(1, "read", "file", "/etc/hosts")]
    assert parse(enriched)[0] == expected
    assert parse(reordered)[0] == expected


# --- grouping ---------------------------------------------------------------------------
def _two_events():
    a = open_file(11, "/etc/shadow", pid=300)
    b = event(
        12, 42, rec("SOCKADDR", 12, "saddr=020001BB5DB8D8220000000000000000"), pid=200, a0="4"
    )
    return a, b


def test_interleaved_records_of_two_serials():
    warm = event(10, 1, a0="1")  # a PROCTITLE has been seen
    a, b = _two_events()
    sequential, _ = parse(warm + a + b)
    assert len(sequential) == 2
    # A: SYSCALL CWD PATH PROCTITLE EOE; B: SYSCALL SOCKADDR PROCTITLE EOE
    mixed = warm + [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4]]
    events, stats = parse(mixed)
    assert sorted(events, key=lambda e: e.seq) == sequential
    assert stats.late_records == 0 and stats.dropped == {"unresolved_fd": 1}


def test_log_without_eoe_records():
    a, b = _two_events()
    no_eoe = [line for line in a + b + open_file(13, "/x") if not line.startswith("type=EOE")]
    with_eoe, _ = parse(a + b + open_file(13, "/x"))
    events, stats = parse(no_eoe)
    assert events == with_eoe and len(events) == 3
    assert stats.evicted_groups == 0


def test_log_without_eoe_or_proctitle_emits_on_the_next_serial():
    lines = event(
        1, 257, cwd(1, "/"), path(1, 0, '"/a"'), exit=3, a0=AT_FDCWD, title=None, eoe=False
    )
    lines += event(2, 0, exit=1, title=None, eoe=False)
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/a", cmdline=""),
        E(2, "read", "file", "/a", cmdline=""),
    ]
    assert stats.open_groups_max == 1


def test_failed_syscall_is_ok_false_and_changes_no_state():
    lines = event(1, 257, cwd(1, "/"), path(1, 0, '"/etc/shadow"'), exit=-13, a0=AT_FDCWD, ok=False)
    lines += event(2, 0, exit=10, a0="3")
    lines += event(3, 59, path(3, 0, '"/usr/bin/nope"'), exit=-2, ok=False)  # failed execve
    lines += event(4, 1, exit=1, a0="1")
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/etc/shadow", ok=False),
        E(3, "execve", "file", "/usr/bin/nope", ok=False),
    ]
    assert stats.failed_events == 2 and stats.dropped == {"unresolved_fd": 2}


def test_exit_group_drops_the_process_state():
    lines = open_file(1, "/a")
    lines += event(2, 231, exit=None)
    lines += event(3, 59, path(3, 0, '"/bin/ls"'), exe='"/bin/ls"', comm='"ls"')  # pid reused
    lines += event(4, 0, exit=1, a0="3", exe='"/bin/ls"', comm='"ls"')
    events, stats = parse(lines)
    assert events == [
        E(1, "read", "file", "/a"),
        E(2, "exit", "", ""),
        E(3, "execve", "file", "/bin/ls", exe="", comm="ls"),  # exe before: unknown again
    ]
    assert stats.dropped == {"unresolved_fd": 1}


def test_unknown_syscalls_and_records_are_counted():
    lines = event(1, 4, path(1, 0, '"/etc"'))  # stat
    lines += [rec("USER_LOGIN", 2, "pid=1 uid=0 msg='op=login acct=\"root\" res=success'")]
    events, stats = parse(lines)
    assert events == [] and stats.skipped_syscalls == {"4": 1}
    assert stats.records == 5 and counts_add_up(stats)


# --- robustness -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, reason",
    [
        ("x" * 70000, "too_long"),
        ("garbage", "no_type"),
        ("type=SYSCALL something", "bad_header"),
        ("type=SYSCALL msg=audit(abc:1): arch=1", "bad_header"),
        ("type=SYSCALL msg=audit(nan:1): arch=1", "bad_header"),
        ("type=SYSCALL msg=audit(" + "0" * 80 + "1.5:1): arch=1", "bad_header"),
        ("type=PATH msg=audit(1.5:-1): item=0", "bad_header"),
        (syscall(1, 0).replace("pid=100", "pid=abc"), "bad_value"),
        (syscall(1, 0).replace('comm="sh"', 'comm="sh'), "unterminated_quote"),
        (syscall(1, 0) + " pid=5 pid=6", "duplicate_key"),
        ("type=SYSCALL msg=audit(1.0:1): arch=c000003e pid=1", "missing_field"),
        (rec("PATH", 1, 'item=0 name="/a" nametype=NORMAL nametype=CREATE'), "duplicate_key"),
        (rec("SOCKADDR", 1, "saddr=ZZ"), "bad_hex"),
        (rec("CWD", 1, 'cwd="'), "unterminated_quote"),
        (rec("FD_PAIR", 1, "fd0=3"), "bad_value"),
        (rec("EXECVE", 1, "argc=1 a0"), "bad_field"),
    ],
)
def test_malformed_lines_are_counted_by_reason(line, reason):
    events, stats = parse([line, *open_file(2, "/ok")])
    assert events == [E(2, "read", "file", "/ok")]
    assert stats.malformed_by_reason == {reason: 1} and counts_add_up(stats)


def test_lone_surrogates_in_str_input_are_replaced_not_raised():
    lines = open_file(1, "/a\ud800", title='"sh\udc00"', comm='"s\ud800"')
    lines += event(2, 59, rec("EXECVE", 2, 'argc=1 a0="x\ud800"'), path(2, 0, '"/bin/x"'))
    events, stats = parse(lines)
    assert [e.op for e in events] == ["read", "execve"]
    assert events[0].cmdline == "sh\ufffd\ufffd\ufffd" and events[1].cmdline.startswith("x")
    assert stats.malformed == 0


def test_bounds_below_one_are_refused_at_once():
    with pytest.raises(ValueError):
        parse_audit([], max_open_events=0)
    with pytest.raises(ValueError):
        parse_audit([], max_processes=0)


def test_bytes_lines_and_blank_lines():
    lines = [line.encode() + b"\n" for line in open_file(1, "/a")] + [b"\n", "   ", b"\xff\xfe"]
    events, stats = parse(lines)
    assert events == [E(1, "read", "file", "/a")]
    assert (stats.blank, stats.malformed) == (2, 1) and counts_add_up(stats)


def test_summary_is_logged_and_a_warning_when_over_one_percent_malformed(caplog):
    with caplog.at_level(logging.INFO):
        parse(open_file(1, "/a"))
    assert any("audit:" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert not any(r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        parse(open_file(1, "/a") + ["junk"])
    assert any(
        "malformed" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


def _valid_log():
    lines = []
    lines += open_file(1, "/etc/passwd")
    lines += event(2, 56, exit=101, a0="1200011")
    lines += event(3, 0, pid=101, ppid=100, exit=5)
    lines += event(4, 42, rec("SOCKADDR", 4, "saddr=020001BB5DB8D8220000000000000000"), a0="3")
    lines += event(5, 90, cwd(5, "/"), path(5, 0, '"/tmp/x"'), a0="7ffd", a1="1ed")
    lines += event(6, 231, pid=101, ppid=100, exit=None)
    return lines


_LINE_TEXT = st.text(st.characters(codec="utf-8"), max_size=120)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=150), _LINE_TEXT), max_size=30))
def test_random_garbage_never_raises_and_counts_add_up(lines):
    events, stats = parse(lines)
    assert counts_add_up(stats)
    assert all(e.op in OPS and e.obj_type in OBJ_TYPES for e in events)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_truncated_log_keeps_the_events_of_complete_prefix(data):
    lines = _valid_log()
    text = "\n".join(lines) + "\n"
    cut = data.draw(st.integers(0, len(text)))
    truncated = text[:cut].splitlines(keepends=True)
    full_lines = sum(1 for line in truncated if line.endswith("\n"))
    complete = [i for i in range(full_lines) if lines[i].startswith("type=EOE")]
    prefix = lines[: complete[-1] + 1] if complete else []
    expected, _ = parse(prefix)
    events, stats = parse(truncated)
    assert events[: len(expected)] == expected
    assert counts_add_up(stats)


@settings(max_examples=60, deadline=None)
@given(st.permutations(_valid_log()))
def test_shuffled_records_never_raise_and_counts_add_up(lines):
    events, stats = parse(lines)
    assert counts_add_up(stats) and stats.malformed == 0
    assert all(e.op in OPS and e.obj_type in OBJ_TYPES for e in events)
    assert len(events) <= 6


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_mutated_key_value_pairs_never_raise(data):
    lines = _valid_log()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        tokens = lines[i].split(" ")
        j = data.draw(st.integers(0, len(tokens) - 1))
        kind = data.draw(st.sampled_from(["value", "drop", "duplicate", "key", "quote"]))
        key, _, value = tokens[j].partition("=")
        if kind == "value":
            tokens[j] = key + "=" + data.draw(_LINE_TEXT).replace("\n", "")
        elif kind == "drop":
            del tokens[j]
        elif kind == "duplicate":
            tokens.append(tokens[j])
        elif kind == "key":
            tokens[j] = data.draw(st.text(max_size=8)) + "=" + value
        else:
            tokens[j] = key + '="' + value
        lines[i] = " ".join(tokens)
    events, stats = parse(lines)
    assert counts_add_up(stats)
    assert all(isinstance(e, Event) and e.op in OPS for e in events)


# --- bounded memory --------------------------------------------------------------------
def _churn(n_procs):
    """Many short-lived processes: fork, open+read, read, read, exit_group (5 events each)."""
    serial = 0
    for i in range(n_procs):
        child = 1000 + i % 30000
        serial += 1
        yield from event(serial, 56, exit=child, a0="1200011")
        serial += 1
        yield from open_file(serial, f"/data/{i % 100}", pid=child, ppid=100)
        for _ in range(2):
            serial += 1
            yield from event(serial, 0, pid=child, ppid=100, exit=10)
        serial += 1
        yield from event(serial, 231, pid=child, ppid=100, exit=None)


def test_state_stays_bounded_over_200k_events_of_short_lived_processes():
    events = 0
    stats = ParseStats()
    for _ in parse_audit(_churn(40_000), stats=stats):
        events += 1
    assert events == stats.events == 200_000
    assert stats.processes_max <= 2 and stats.open_groups_max <= 1
    assert stats.malformed == 0 and counts_add_up(stats)


def test_open_events_and_processes_are_evicted_beyond_their_bounds():
    def never_complete(n):  # no EOE, a missing PATH: no group ever completes
        for i in range(n):
            yield syscall(i + 1, 257, pid=10_000 + i, exit=3, a0=AT_FDCWD, items=1)
            yield rec("PROCTITLE", i + 1, "proctitle=7368")

    stats = ParseStats()
    events = list(
        parse_audit(never_complete(5000), stats=stats, max_open_events=64, max_processes=500)
    )
    assert events == []
    assert stats.open_groups_max == 64 and stats.evicted_groups == 5000 - 64
    assert stats.processes_max == 500 and stats.evicted_processes == 5000 - 500
    assert stats.dropped == {"no_object": 5000}


# --- files ------------------------------------------------------------------------------
def test_read_audit_reads_plain_and_gzip_files_and_skips_an_oversized_line(tmp_path):
    first = "\n".join(open_file(1, "/a")) + "\n" + "y" * 200_000 + "\n"
    second = "\n".join(event(2, 0, exit=1)) + "\n"
    (tmp_path / "audit.log.1").write_text(first)
    with gzip.open(tmp_path / "audit.log.gz", "wt") as f:
        f.write(second)
    stats = ParseStats()
    events = list(read_audit([tmp_path / "audit.log.1", tmp_path / "audit.log.gz"], stats=stats))
    assert events == [E(1, "read", "file", "/a"), E(2, "read", "file", "/a")]
    assert stats.malformed_by_reason == {"too_long": 1} and stats.lines == 9
