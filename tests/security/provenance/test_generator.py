"""Tests of the audit-log generator: determinism, format, kernel consistency, ground truth.

The consistency checks replay the log with a small checker written here (independent of
the generator's own process table and of the audit parser): fds, forks, exits, lineage.
"""

import collections
import dataclasses
import hashlib
import posixpath
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.security.provenance import generator as gen

HEADER = re.compile(r"^type=([A-Z_]+) msg=audit\((\d+\.\d{3}):(\d+)\): ")
QUOTED_OK = re.compile(r'^"[!#-~]*"$')
HEX_OK = re.compile(r"^(?:[0-9A-F]{2})*$")
TEXT_FIELDS = ("comm", "exe", "name", "cwd", "proctitle")
FD_CALLS = {0, 1, 17, 18, 19, 20, 44, 45, 46, 47, 91}  # a0 is an fd that must be open
O_CLOEXEC = 0x80000


def decode(v: str) -> str:
    if v.startswith('"'):
        return v[1:-1]
    return bytes.fromhex(v).decode()


def fields(body: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in body.split(" ") if kv)


def sockaddr(hexv: str) -> str:
    b = bytes.fromhex(hexv)
    fam = b[0] | b[1] << 8
    if fam == 2:
        return f"{b[4]}.{b[5]}.{b[6]}.{b[7]}:{b[2] << 8 | b[3]}"
    assert fam == 1, hexv
    return "unix:" + b[2:].split(b"\0")[0].decode()


@dataclasses.dataclass
class Ev:
    ts: str
    serial: int
    records: list  # (type, body)


def group(lines: list[str]) -> list[Ev]:
    """Records grouped by serial, in order of the first record of each serial."""
    out: dict[int, Ev] = {}
    for line in lines:
        m = HEADER.match(line)
        assert m, line
        serial = int(m.group(3))
        ev = out.get(serial)
        if ev is None:
            ev = out[serial] = Ev(m.group(2), serial, [])
        assert ev.ts == m.group(2), "records of one event share the timestamp"
        ev.records.append((m.group(1), line[m.end() :]))
    return list(out.values())


@dataclasses.dataclass
class Info:
    pid: int
    nr: int
    ok: bool
    obj: str
    exe: str
    uid: int


class Replay:
    """Replays kernel events: per-pid fd tables, fork parents, liveness; collects errors."""

    def __init__(self, events: list[Ev], truth: gen.Truth):
        self.errors: list[str] = []
        self.procs: dict[int, dict] = {}
        for p in truth.initial_processes:
            self.procs[p.pid] = dict(
                fds={fd: (name, False) for fd, name in p.fds.items()},
                ppid=p.ppid,
                parent=p.ppid,
                alive=True,
                seen=True,
            )
        self.parent: dict[int, int] = {}
        self.times: dict[int, list[float]] = collections.defaultdict(list)
        self.info: dict[int, Info] = {}
        self.user_serials: set[int] = set()
        self.n_syscalls = self.n_eoe = 0
        for ev in events:
            self.event(ev)

    def err(self, ev: Ev, msg: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(f"serial {ev.serial}: {msg}")

    def event(self, ev: Ev) -> None:
        types = [t for t, _ in ev.records]
        if "SYSCALL" not in types:
            assert len(ev.records) == 1 and types[0].startswith(
                ("USER_", "CRED_", "LOGIN", "SERV")
            ), types
            self.user_serials.add(ev.serial)
            return
        self.n_syscalls += 1
        self.n_eoe += "EOE" in types
        if types[-1] != "EOE" and "EOE" in types:
            self.err(ev, "EOE is not the last record")
        f = fields(dict(ev.records)["SYSCALL"])
        nr, pid, ppid = int(f["syscall"]), int(f["pid"]), int(f["ppid"])
        ok = f.get("success", "yes") == "yes"
        ret = int(f["exit"]) if "exit" in f else None
        a = [int(f[f"a{i}"], 16) for i in range(4)]
        paths = [fields(b) for t, b in ev.records if t == "PATH"]
        if int(f["items"]) != len(paths) or [int(p["item"]) for p in paths] != list(
            range(len(paths))
        ):
            self.err(ev, f"items={f['items']} but PATH items {[p['item'] for p in paths]}")
        cwd = decode(fields(dict(ev.records)["CWD"])["cwd"]) if "CWD" in types else ""
        proc = self.procs.get(pid)
        if proc is None:
            self.err(ev, f"pid {pid} used before it was created")
            proc = self.procs[pid] = dict(fds={}, ppid=ppid, parent=ppid, alive=True, seen=True)
        if not proc["alive"]:
            self.err(ev, f"pid {pid} used after exit_group")
        if not proc["seen"]:
            proc["seen"] = True
            parent = self.procs[proc["parent"]]
            if ppid != proc["parent"] and not (ppid == 1 and not parent["alive"]):
                self.err(ev, f"pid {pid}: first ppid {ppid}, forked by {proc['parent']}")
            proc["ppid"] = ppid
        elif ppid != proc["ppid"]:
            parent = self.procs.get(proc["ppid"])
            if not (ppid == 1 and parent is not None and not parent["alive"]):
                self.err(ev, f"pid {pid}: ppid changed {proc['ppid']} -> {ppid}")
            proc["ppid"] = ppid
        self.times[pid].append(float(ev.ts))
        fds = proc["fds"]

        def use(fd: int) -> str:
            if fd not in fds:
                self.err(ev, f"pid {pid} syscall {nr} uses fd {fd} that is not open")
                return "?"
            return fds[fd][0]

        def path_of(p: dict) -> str:
            name = decode(p["name"])
            return posixpath.normpath(name if name.startswith("/") else cwd + "/" + name)

        rec = dict(ev.records)
        obj = ""
        if not ok:
            obj = path_of(paths[-1]) if paths else ""
        elif nr in (56, 57, 58, 435):
            if not a[0] & 0x10000:  # not CLONE_THREAD
                self.procs[ret] = dict(fds=dict(fds), ppid=pid, parent=pid, alive=True, seen=False)
                self.parent[ret] = pid
            obj = str(ret)
        elif nr in (59, 322):
            proc["fds"] = {k: v for k, v in fds.items() if not v[1]}
            obj = path_of(paths[0])
        elif nr in (2, 257):
            flags = a[2] if nr == 257 else a[1]
            obj = path_of(paths[-1])
            fds[ret] = (obj, bool(flags & O_CLOEXEC))
        elif nr == 41:
            fds[ret] = ("socket", bool(a[1] & O_CLOEXEC))
        elif nr == 42:
            use(a[0])
            obj = sockaddr(fields(rec["SOCKADDR"])["saddr"])
            fds[a[0]] = (obj, fds.get(a[0], ("", False))[1])
        elif nr in (43, 288):
            use(a[0])
            obj = sockaddr(fields(rec["SOCKADDR"])["saddr"])
            fds[ret] = (obj, bool(a[3] & O_CLOEXEC))
        elif nr in (22, 293):
            pair = fields(rec["FD_PAIR"])
            for k in ("fd0", "fd1"):
                fds[int(pair[k])] = (f"pipe:{ev.serial}", bool(a[1] & O_CLOEXEC))
        elif nr in (33, 292):
            fds[a[1]] = (use(a[0]), False)
        elif nr == 319:
            fds[ret] = ("memfd", bool(a[1] & 1))
        elif nr == 3:
            obj = use(a[0])
            fds.pop(a[0], None)
        elif nr in FD_CALLS:
            obj = use(a[0])
        elif nr == 9:
            obj = use(int(fields(rec["MMAP"])["fd"]))
        elif nr in (268, 90, 87, 263):
            obj = path_of(paths[-1])
        elif nr in (82, 264, 316):
            obj = path_of([p for p in paths if p["nametype"] == "CREATE"][-1])
        elif nr == 231:
            proc["alive"] = False
        elif nr != 60:
            self.err(ev, f"unexpected syscall {nr}")
        self.info[ev.serial] = Info(pid, nr, ok, obj, decode(f["exe"]), int(f["uid"]))


@pytest.fixture(scope="module")
def tiny():
    t = time.perf_counter()
    lines, truth = gen.generate(gen.HostConfig.tiny(), 0)
    lines = list(lines)
    seconds = time.perf_counter() - t
    events = group(lines)
    return lines, truth, events, Replay(events, truth), seconds


# --- determinism and speed ----------------------------------------------------------
def digest(config, seed) -> str:
    lines, _ = gen.generate(config, seed)
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def test_deterministic_and_fast(tiny):
    lines, truth, _, _, seconds = tiny
    assert seconds < 2.0, f"tiny preset took {seconds:.2f} s"
    h = hashlib.sha256("\n".join(lines).encode() + b"\n").hexdigest()
    assert digest(gen.HostConfig.tiny(), 0) == h
    assert digest(gen.HostConfig.tiny(), 1) != h
    _, truth_again = gen.generate(gen.HostConfig.tiny(), 0)
    assert truth_again == truth


def test_preset_sizes(tiny):
    lines, truth, *_ = tiny
    assert 12_000 <= len(lines) <= 32_000
    assert truth.n_lines == len(lines)
    assert {a.kind for a in truth.attacks} == {"web_exploit", "fileless", "rat"}
    d = gen.HostConfig.default()
    assert d.duration_s >= 2 * 3600 and len(d.attacks) == 3
    assert {a.kind for a in d.attacks} == {"web_exploit", "fileless", "rat"}


def test_write_log_matches_generate(tmp_path):
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(), duration_s=90.0, attacks=(gen.AttackSpec("rat", 5.0),)
    )
    path = tmp_path / "audit.log"
    truth = gen.write_log(path, cfg, 7)
    lines, truth2 = gen.generate(cfg, 7)
    assert path.read_text().splitlines() == list(lines)
    assert truth == truth2 == gen.Truth.load(f"{path}.truth.json")
    assert gen.Truth.from_json(truth.to_json()) == truth
    assert truth.n_lines == len(path.read_text().splitlines())


# --- format -------------------------------------------------------------------------
def test_format(tiny):
    lines, truth, events, rp, _ = tiny
    for line in lines:
        assert HEADER.match(line), line
    serials = [e.serial for e in events]
    assert serials == sorted(serials) and len(set(serials)) == len(serials)
    ts = [float(e.ts) for e in events]
    assert ts == sorted(ts)
    assert truth.n_events == rp.n_syscalls
    assert truth.n_user_records == len(rp.user_serials) > 0
    assert rp.n_eoe > 0.99 * rp.n_syscalls
    assert not rp.errors, rp.errors  # includes items= vs PATH records
    # every text value is either a quoted printable string or uppercase hex
    for line in lines:
        body = line[HEADER.match(line).end() :]
        if line.startswith(("type=USER_", "type=CRED_", "type=LOGIN", "type=SERVICE")):
            continue
        for k, v in fields(body).items():
            if k in TEXT_FIELDS or (line.startswith("type=EXECVE") and re.fullmatch(r"a\d+", k)):
                assert QUOTED_OK.match(v) or HEX_OK.match(v), (k, v, line)


def test_hex_fields_decode(tiny):
    _, _, events, _, _ = tiny
    names = set()
    n_exec = 0
    for ev in events:
        rec = collections.defaultdict(list)
        for t, b in ev.records:
            rec[t].append(b)
        for b in rec["PATH"]:
            v = fields(b)["name"]
            names.add(decode(v))
            if " " in decode(v) or not decode(v).isascii():
                assert not v.startswith('"')
        if rec["EXECVE"]:
            n_exec += 1
            e = fields(rec["EXECVE"][0])
            argv = [decode(e[f"a{i}"]) for i in range(int(e["argc"]))]
            title = fields(rec["PROCTITLE"][0])["proctitle"]
            assert HEX_OK.match(title)
            assert bytes.fromhex(title) == "\0".join(argv).encode()[:128]
    assert n_exec > 50
    assert any(" " in n for n in names) and any(not n.isascii() for n in names)
    assert "/var/www/html/img/team photo.jpg" in names or "meeting notes.txt" in names
    assert (
        gen.encode_value("a b") == "612062" and gen.encode_value("/etc/passwd") == '"/etc/passwd"'
    )
    assert gen.encode_value('say "hi"') == b'say "hi"'.hex().upper()
    assert (
        bytes.fromhex(gen.proctitle_hex(["a" * 100, "b" * 100]))
        == ("a" * 100 + "\0" + "b" * 27).encode()
    )
    assert gen.sockaddr_hex("45.1.2.3", 443) == "020001BB2D0102030000000000000000"


def test_interleaving_and_missing_eoe():
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(),
        duration_s=60.0,
        attacks=(),
        interleave_fraction=0.5,
        missing_eoe_fraction=0.05,
    )
    lines, truth = gen.generate(cfg, 3)
    lines = list(lines)
    serial_of = [int(HEADER.match(x).group(3)) for x in lines]
    runs = sum(1 for a, b in zip(serial_of, serial_of[1:]) if a != b)
    interleaved = runs - len(set(serial_of)) + 1  # extra switches between serials
    assert interleaved > 50
    # one process's events never overlap: each ends before the next one starts
    span: dict[int, list[int]] = {}
    for k, s in enumerate(serial_of):
        span.setdefault(s, [k, k])[1] = k
    pid_of = {
        int(HEADER.match(x).group(3)): int(fields(x[HEADER.match(x).end() :])["pid"])
        for x in lines
        if x.startswith("type=SYSCALL")
    }
    last_end: dict[int, int] = {}
    for s in sorted(pid_of, key=lambda s: span[s][0]):
        pid = pid_of[s]
        assert last_end.get(pid, -1) < span[s][0], f"events of pid {pid} overlap at serial {s}"
        last_end[pid] = span[s][1]
    events = group(lines)
    rp = Replay(events, truth)
    assert not rp.errors, rp.errors
    assert 0.9 * rp.n_syscalls < rp.n_eoe < 0.99 * rp.n_syscalls
    assert truth.n_lines == len(lines)


# --- consistency ----------------------------------------------------------------------
def test_consistency_tiny(tiny):
    _, truth, _, rp, _ = tiny
    assert not rp.errors, rp.errors
    assert [p.pid for p in truth.initial_processes] == [1]  # boot: only systemd pre-exists
    assert len(rp.parent) + 1 == truth.n_processes
    # pids increase with creation
    children = list(rp.parent)
    assert children == sorted(children)


def test_consistency_without_boot():
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(),
        duration_s=120.0,
        boot=False,
        attacks=(gen.AttackSpec("fileless", 20.0),),
    )
    lines, truth = gen.generate(cfg, 5)
    assert len(truth.initial_processes) > 8
    workers = [p for p in truth.initial_processes if p.comm == "nginx" and p.uid == 33]
    assert workers and all("file:/var/log/nginx/access.log" in p.fds.values() for p in workers)
    rp = Replay(group(list(lines)), truth)
    assert not rp.errors, rp.errors


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["web_exploit", "fileless", "rat"]))
def test_consistency_any_seed(seed, kind):
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(), duration_s=240.0, web_rps=0.3, attacks=(gen.AttackSpec(kind, 10.0),)
    )
    lines, truth = gen.generate(cfg, seed)
    rp = Replay(group(list(lines)), truth)
    assert not rp.errors, rp.errors
    check_truth(truth, rp)


def test_config_validation():
    with pytest.raises(ValueError):
        gen.HostConfig(attacks=(gen.AttackSpec("worm", 10.0),))
    with pytest.raises(ValueError):
        gen.HostConfig(attacks=(gen.AttackSpec("rat", 10.0, variant="cron"),))
    with pytest.raises(ValueError):
        gen.HostConfig(duration_s=100.0, attacks=(gen.AttackSpec("rat", 100.0),))
    with pytest.raises(ValueError):
        gen.HostConfig(interleave_fraction=1.5)


# --- truth ------------------------------------------------------------------------------
def check_truth(truth: gen.Truth, rp: Replay) -> None:
    attack_pids = truth.attack_pids()
    for child, parent in rp.parent.items():
        if child not in attack_pids:
            assert parent not in attack_pids, f"benign {child} forked by attack pid {parent}"
    for a in truth.attacks:
        assert a.completed, a.id
        pids, entry = set(a.pids), set(a.entry_pids)
        assert pids and entry and not entry & attack_pids
        ips = set(a.attacker_ips)
        assert all(ip.startswith(("45.", "185.")) for ip in ips)
        for pid in pids:
            assert rp.times[pid], f"{a.id}: pid {pid} never appears"
            assert a.start_ts - 1e-3 <= min(rp.times[pid]) and max(rp.times[pid]) <= a.end_ts + 1e-3
            assert rp.parent[pid] in pids | entry
        for child, parent in rp.parent.items():
            if parent in pids:
                assert child in pids
        # steps point at events of the right process
        for s in a.steps:
            if s.serial in rp.info:
                assert rp.info[s.serial].pid == s.pid, (a.id, s)
            else:
                assert s.serial in rp.user_serials, (a.id, s)
            assert a.start_ts - 1e-3 <= s.ts <= a.end_ts + 1e-3
        assert [s.ts for s in a.steps] == sorted(s.ts for s in a.steps)
        mine = [i for i in rp.info.values() if i.pid in pids and i.ok]
        ip_of = lambda obj: obj.rsplit(":", 1)[0]  # noqa: E731
        assert any(i.nr == 42 and ip_of(i.obj) in ips for i in mine), "connect to the attacker"
        assert any(i.nr in (44, 1) and ip_of(i.obj) in ips for i in mine), "send to the attacker"
        assert any(i.nr == 45 and ip_of(i.obj) in ips for i in mine), "recv from the attacker"
        # only attack and entry processes talk to attacker addresses
        for i in rp.info.values():
            if i.obj and ip_of(i.obj) in ips:
                assert i.pid in pids | entry, i
        written = {i.obj for i in mine if i.nr == 257 and i.obj in a.files_written}
        execs = [i for i in mine if i.nr == 59]
        if a.kind == "fileless":
            assert any(i.exe.startswith("/memfd:") for i in mine)
            assert any(i.nr == 319 for i in mine) and not written - {"/home/deploy/.bash_history"}
        else:
            drop = next(s for s in a.steps if s.name == "drop_file")
            dropped = rp.info[drop.serial].obj
            assert dropped in written
            assert any(i.nr == 268 and i.obj == dropped for i in mine), "chmod +x of the drop"
            assert any(i.obj == dropped for i in execs), "execve of the drop"
            assert a.persistence in a.files_written
            assert any(i.obj == a.persistence and i.nr in (257, 82) for i in mine), (
                "persistence write"
            )


def test_truth_tiny(tiny):
    _, truth, _, rp, _ = tiny
    check_truth(truth, rp)
    by_kind = {a.kind: a for a in truth.attacks}
    names = {k: [s.name for s in a.steps] for k, a in by_kind.items()}
    for step in (
        "exploit_request",
        "command_injection",
        "download",
        "drop_file",
        "chmod",
        "execute",
        "persistence",
        "read_sensitive",
        "archive",
        "exfiltrate",
    ):
        assert step in names["web_exploit"]
    for step in (
        "download",
        "pipe_to_shell",
        "shell_from_pipe",
        "memfd_create",
        "memfd_execute",
        "recon",
        "c2_connect",
    ):
        assert step in names["fileless"]
    for step in ("download", "drop_file", "chmod", "execute", "persistence", "beacon", "command"):
        assert step in names["rat"]
    # attacks are interleaved with benign activity
    attack_pids = truth.attack_pids()
    for a in truth.attacks:
        inside = sum(
            1
            for pid, ts in rp.times.items()
            if pid not in attack_pids
            for t in ts
            if a.start_ts <= t <= a.end_ts
        )
        assert inside > 50, a.id
    # the fileless pipe: curl writes into the pipe bash reads from
    fl = by_kind["fileless"]
    pipe_step = next(s for s in fl.steps if s.name == "pipe_to_shell")
    pipe_obj = rp.info[pipe_step.serial].obj
    assert pipe_obj.startswith("pipe:")
    assert any(
        i.nr == 0 and i.obj == pipe_obj and i.pid in fl.pids and i.pid != pipe_step.pid
        for i in rp.info.values()
    )


@pytest.mark.parametrize("variant", ["cron", "bashrc", "systemd"])
def test_web_exploit_variants(variant):
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(),
        duration_s=200.0,
        web_rps=0.3,
        attacks=(gen.AttackSpec("web_exploit", 5.0, variant),),
    )
    lines, truth = gen.generate(cfg, 11)
    rp = Replay(group(list(lines)), truth)
    assert not rp.errors, rp.errors
    check_truth(truth, rp)
    (a,) = truth.attacks
    assert a.variant == variant
    steps = [s.name for s in a.steps]
    assert ("privilege_escalation" in steps) == (variant != "bashrc")
    assert {
        "cron": "/etc/cron.d/",
        "bashrc": "/var/www/.bashrc",
        "systemd": "/etc/systemd/system/",
    }[variant] in a.persistence
    shadow = [
        i for i in rp.info.values() if i.pid in a.pids and i.obj == "/etc/shadow" and i.nr == 257
    ]
    assert shadow and all(i.ok == (variant != "bashrc") for i in shadow)


def test_nginx_restart_and_log_rotation():
    """``sudo systemctl restart nginx`` replaces the workers; logrotate makes them reopen logs."""
    cfg = dataclasses.replace(
        gen.HostConfig.tiny(),
        duration_s=240.0,
        ssh_per_hour=90.0,
        attacks=(),
        logrotate_period_s=100.0,
    )
    lines, truth = gen.generate(cfg, 3)
    lines = list(lines)
    assert sum("type=SERVICE_STOP" in x and "unit=nginx" in x for x in lines) == 1
    rp = Replay(group(lines), truth)
    assert not rp.errors, rp.errors
    masters = [i.pid for i in rp.info.values() if i.nr == 59 and i.exe == "/usr/sbin/nginx"]
    assert len(masters) == 2  # started at boot and by systemctl
    accepting = {i.pid for i in rp.info.values() if i.nr == 288 and i.exe == "/usr/sbin/nginx"}
    old = {p for p in accepting if p < masters[1]}
    new = accepting - old
    assert old and new  # old workers served before the restart, new ones after
    assert all(not rp.procs[p]["alive"] for p in old)
    # after each rotation of access.log, the master and each worker reopen it
    serials = sorted(rp.info)
    rotations = [
        s
        for s in serials
        if rp.info[s].nr == 82 and rp.info[s].obj == "/var/log/nginx/access.log.1"
    ]
    assert len(rotations) >= 2
    for k, s0 in enumerate(rotations):
        s1 = rotations[k + 1] if k + 1 < len(rotations) else serials[-1] + 1
        reopened = {
            rp.info[s].pid
            for s in serials
            if s0 < s < s1
            and rp.info[s].nr == 257
            and rp.info[s].exe == "/usr/sbin/nginx"
            and rp.info[s].obj == "/var/log/nginx/access.log"
        }
        assert len(reopened) == 1 + cfg.nginx_workers


def test_no_activity_still_boots():
    cfg = gen.HostConfig(
        duration_s=60.0,
        web_rps=0,
        ssh_per_hour=0,
        cron_php_period_s=0,
        logrotate_period_s=0,
        backup_period_s=0,
        apt_period_s=0,
        ci_poll_s=0,
        attacks=(),
    )
    lines, truth = gen.generate(cfg, 0)
    lines = list(lines)
    assert truth.n_lines == len(lines) > 0 and truth.attacks == []
    rp = Replay(group(lines), truth)
    assert not rp.errors, rp.errors
    assert {"/usr/sbin/nginx", "/usr/sbin/sshd", "/usr/sbin/cron"} <= {
        i.exe for i in rp.info.values() if i.nr == 59
    }
