"""BFAD's Critical Function Filter: which dangerous functions a PHP file calls, and how.

BFAD (COLM 2025) first finds the calls of a PHP script that fall in six malicious behaviour
categories (code execution, program execution, obfuscation, information gathering, network,
callbacks), with the user-input sources that reach them. This module does that statically:
the file is parsed with tree-sitter (:mod:`jaxpapers.security.webshell.php`) and **nothing in
it is ever executed or evaluated**.

How a file is analysed (:func:`analyse`)
-----------------------------------------
One iterative pre-order walk over the syntax tree (no recursion: 50k nested parentheses are
fine) records, in the same pass,

* *call sites* (function calls, ``eval``/``include``/``require`` constructs, backticks,
  ``new ReflectionFunction``, ``Closure::fromCallable``), each with its scope, its innermost
  enclosing statement (and that statement's block), function and class;
* *assignments* ``$v = e``, ``$v .= e``, ``$v[k] = e``, destructuring and ``foreach`` bindings,
  per scope (a function, method or closure body; arrow functions share their parent's scope);
* for every call site and assignment right-hand side, the variables it reads and whether it
  contains a user-input source. These summaries are built bottom-up with a stack of
  accumulators (one per open call/right-hand side), so the pass is linear in the tree size;
  a summary keeps at most ``MAX_READS`` variable names.

Variable names the walk cannot read (``${'_PO'.'ST'}``, ``$$k``, ``$GLOBALS[$k]``) are kept
aside and folded right after the walk, once every assignment is known (see below); each keeps
a link to its innermost open summary, and summaries link to the enclosing one of the same
scope, so a folded source marks the enclosing summaries (stopping at one already marked:
linear overall) before taint is propagated.

Then, per file: taint is propagated to a fixpoint over the assignments of each scope
(flow-insensitive, intra-procedural, with a worklist, linear in the number of
variable-to-assignment edges), and every call site is classified.

Resolving names without running code
------------------------------------
Dynamic callees (``$f(...)``, ``${'f'}(...)``, ``$$x(...)``, ``('sys'.'tem')(...)``), callable
arguments (``array_map('system', ...)``), ``preg_replace`` patterns and ``include`` operands
are *constant-folded* by a tiny evaluator over the syntax tree. It knows literals (strings
with PHP escapes, integers, arrays), ``.``, ``^ | &`` on strings (XOR obfuscation), ``+ - *``
on integers, string offsets and array subscripts, variables, the constant ``FILTER_CALLBACK``
(:data:`CONSTANTS`), and a whitelist of pure string
builders (:data:`PURE_FUNCTIONS`: ``strrev``, ``str_rot13``, ``base64_decode``, ``chr``,
``implode``, ``gzinflate`` with a capped output, ...). ``sprintf`` and anything with side
effects is deliberately absent. The evaluator uses an explicit stack, memoises per file,
caps every value at ``MAX_VALUE`` bytes (longer values are "unknown") and stops after
``FOLD_STEPS`` steps per file.

A variable's value at a use is the straight-line fold of the assignments to it in the same
scope that *end before the use* (``$f = 'sys'; $f .= 'tem'; $f()`` gives ``system``). This
choice is ours (the paper is silent): it is exact for the straight-line code typical of
obfuscated droppers and terminates by construction (every lookup goes strictly backwards).
Branches are not merged: after ``if (c) $f = 'a'; else $f = 'b';`` the value is ``'b'``.

Dynamic variable names are folded the same way: ``${'_PO'.'ST'}``, and ``${$k}``/``$$k`` after
``$k = '_GET'``, are the superglobals they name (user-input sources); a name that folds to an
ordinary variable is a read of it (``${'a'.'b'}`` reads ``$ab``). ``$GLOBALS['_POST']`` is
``$_POST`` too, with a literal or folded key.

Choices where the paper is silent
---------------------------------
* Categories are disjoint (one category per name; :func:`category_of`). Name *prefixes*
  ``curl_``, ``socket_``, ``stream_socket_``, ``ftp_``, ``ssh2_`` are network and ``posix_get``
  information gathering, besides the listed names.
* ``file_operations`` is **our addition** (file managers are a large WebShell family:
  uploads, writes, deletes, permission changes, directory listing).
* Conditional names (:data:`CONDITIONAL`) are critical only in context: ``include``/
  ``require`` (and ``_once``) when the operand is user input or folds to a stream wrapper or URL
  (``php://input``, ``data:``, ``http://``, ...); ``preg_replace``/``preg_filter`` when a
  pattern folds to one with the ``e`` modifier (``mb_ereg_replace`` when its option has ``e``);
  ``file_get_contents``/``fopen``/``file`` when the path folds to a URL (network).
* Callback-taking functions are critical (category ``callbacks``) only when the callable
  argument is present; the callable itself is resolved: a critical name gives a second call
  with ``how='callback'``; a callable that cannot be resolved (a variable, a call result, a
  subscript) gives ``dynamic_call``; closures and ``[$obj, 'method']`` arrays give nothing.
* The filter functions (:data:`FILTER_FUNCTIONS`) are conditional callbacks: ``filter_var($x,
  FILTER_CALLBACK, ['options' => 'assert'])`` (``filter_input`` likewise, with the filter
  third) is the call ``filter_var`` (category ``callbacks``) and its callable is the
  ``'options'`` value, resolved as above (here the code-execution call ``assert``). For
  ``filter_var_array``/``filter_input_array`` the callables are the ``'options'`` of the
  definitions whose ``'filter'`` folds to ``FILTER_CALLBACK`` (the first
  ``MAX_FILTER_DEFINITIONS``). The filter is folded (a variable holding ``FILTER_CALLBACK``,
  or ``1024``, counts); the options array is searched syntactically when it is a literal,
  else folded, and options that cannot be folded are an unresolved callable. Other filters,
  or ``FILTER_CALLBACK`` without an ``'options'`` entry (PHP then calls nothing), give nothing.
* ``call_user_func``/``call_user_func_array``/``forward_static_call*`` are code execution and
  also resolve their callable; ``new ReflectionFunction(x)`` is the code-execution call
  ``reflectionfunction`` and resolves ``x``.
* A callee that cannot be resolved (``$_GET['a']($_POST['b'])``, ``$f()`` with unknown ``$f``)
  is the code-execution call ``dynamic_call`` (``how='dynamic'``), even in benign code where
  ``$f`` is a callback parameter: the weighting of the profile step tells them apart.
* Backticks are the program-execution call ``backtick``.
* Method calls (``$pdo->exec()``, ``Foo::system()``) are never the function of the same name;
  they are counted apart in :attr:`Analysis.methods`.
* :attr:`Analysis.functions` counts every resolved function call (critical or not), plus the
  constructs ``eval``, ``include*``/``require*``, ``backtick``, callables resolved from callback
  arguments, and ``dynamic_call`` for unresolved callees (a strong profile feature).
* User input: ``$_GET``, ``$_POST``, ``$_REQUEST``, ``$_COOKIE``, ``$_FILES``, the legacy
  ``$HTTP_*_VARS``/``$HTTP_RAW_POST_DATA``, ``$_SERVER`` entries a client controls
  (``HTTP_*`` headers, ``QUERY_STRING``, ``REQUEST_URI``, ``PATH_INFO``, ``PHP_SELF``,
  ``PHP_AUTH_*``, ``CONTENT_TYPE``; ``$_SERVER`` with a computed key, or whole, counts),
  the same reached through a dynamic name that folds to theirs (``${'_PO'.'ST'}``, ``$$k``) or
  through ``$GLOBALS['_POST']``, ``php://input`` in a string literal, ``getallheaders()``,
  ``apache_request_headers()``, and ``filter_input()``/``filter_input_array()`` unless their
  type is ``INPUT_ENV``.
  A variable is tainted if any assignment to it in its scope reads a source or a tainted
  variable; after ``extract($_GET)``/``parse_str($_POST[x])`` or ``$$k = <tainted>``, every
  variable the scope never assigns is tainted too. Function parameters are not tainted
  (no inter-procedural analysis); a closure's ``use ($v)`` variable carries the taint of the
  outer ``$v`` (its value is not folded).
* Huge files: the walk stops after ``MAX_NODES`` syntax nodes with a note (a few seconds of
  work); what was seen before is kept.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import dataclasses
import os
import re
import urllib.parse
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import tree_sitter

from jaxpapers.security.webshell import php

# --------------------------------------------------------------------------------------------
# The function lists
# --------------------------------------------------------------------------------------------


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


CATEGORIES: dict[str, frozenset[str]] = {
    "code_execution": _names(
        """eval assert create_function call_user_func call_user_func_array forward_static_call
        forward_static_call_array reflectionfunction dynamic_call"""
    ),
    "program_execution": _names(
        "exec system passthru shell_exec popen proc_open pcntl_exec expect_popen backtick"
    ),
    "obfuscation": _names(
        """base64_decode gzinflate gzuncompress gzdecode bzdecompress str_rot13 strrev hex2bin
        convert_uudecode chr ord pack urldecode rawurldecode"""
    ),
    "information_gathering": _names(
        """phpinfo getenv posix_getpwuid posix_getuid posix_geteuid posix_getgid posix_uname
        php_uname phpversion getcwd disk_free_space disk_total_space ini_get ini_get_all
        get_current_user getmyuid getmygid getmypid getmyinode get_cfg_var gethostname
        sys_get_temp_dir get_loaded_extensions"""
    ),
    "network": _names(
        """fsockopen pfsockopen curl_init curl_exec curl_multi_exec stream_socket_client
        stream_socket_server socket_create socket_connect mail ftp_connect ssh2_connect"""
    ),
    "callbacks": _names(
        """array_map array_filter array_walk array_walk_recursive array_reduce usort uasort uksort
        register_shutdown_function register_tick_function preg_replace_callback
        preg_replace_callback_array mb_ereg_replace_callback iterator_apply set_error_handler
        set_exception_handler spl_autoload_register ob_start header_register_callback"""
    ),
    # Our addition (the paper has six categories): file-manager behaviour.
    "file_operations": _names(
        """move_uploaded_file file_put_contents fwrite fputs unlink chmod chown chgrp rename copy
        rmdir mkdir touch symlink link tempnam scandir opendir readdir glob readfile
        highlight_file show_source"""
    ),
}

PAPER_CATEGORIES = (
    "code_execution",
    "program_execution",
    "obfuscation",
    "information_gathering",
    "network",
    "callbacks",
)

CATEGORY_PREFIXES: dict[str, tuple[str, ...]] = {
    "network": ("curl_", "socket_", "stream_socket_", "ftp_", "ssh2_"),
    "information_gathering": ("posix_get",),
}

# Critical only in context (see the module docstring); name -> category when it is.
CONDITIONAL: dict[str, str] = {
    "include": "code_execution",
    "include_once": "code_execution",
    "require": "code_execution",
    "require_once": "code_execution",
    "preg_replace": "code_execution",
    "preg_filter": "code_execution",
    "mb_ereg_replace": "code_execution",
    "mb_eregi_replace": "code_execution",
    "file_get_contents": "network",
    "fopen": "network",
    "file": "network",
    "filter_var": "callbacks",
    "filter_var_array": "callbacks",
    "filter_input": "callbacks",
    "filter_input_array": "callbacks",
}

# The filter functions that call back with FILTER_CALLBACK: name -> (position of the filter
# argument, position of its options), or (None, position of an array of definitions
# ``key => ['filter' => FILTER_CALLBACK, 'options' => callable]``).
FILTER_FUNCTIONS: dict[str, tuple[int | None, int]] = {
    "filter_var": (1, 2),
    "filter_input": (2, 3),
    "filter_var_array": (None, 1),
    "filter_input_array": (None, 1),
}
MAX_FILTER_DEFINITIONS = 64  # entries of a definitions array searched for callbacks

# Position of the callable argument of functions that call back (negative: from the end).
CALLBACK_ARGS: dict[str, int] = {
    "call_user_func": 0,
    "call_user_func_array": 0,
    "forward_static_call": 0,
    "forward_static_call_array": 0,
    "array_map": 0,
    "array_filter": 1,
    "array_walk": 1,
    "array_walk_recursive": 1,
    "array_reduce": 1,
    "usort": 1,
    "uasort": 1,
    "uksort": 1,
    "register_shutdown_function": 0,
    "register_tick_function": 0,
    "preg_replace_callback": 1,
    "preg_replace_callback_array": 0,
    "mb_ereg_replace_callback": 1,
    "iterator_apply": 1,
    "set_error_handler": 0,
    "set_exception_handler": 0,
    "spl_autoload_register": 0,
    "ob_start": 0,
    "header_register_callback": 0,
}

USER_INPUT_SOURCES: frozenset[str] = _names(
    """$_GET $_POST $_REQUEST $_COOKIE $_FILES $_SERVER php://input getallheaders
    apache_request_headers filter_input filter_input_array"""
)
_SOURCE_VARS: dict[str, str] = {  # variable name -> the source it is
    "_GET": "$_GET",
    "_POST": "$_POST",
    "_REQUEST": "$_REQUEST",
    "_COOKIE": "$_COOKIE",
    "_FILES": "$_FILES",
    "HTTP_GET_VARS": "$_GET",
    "HTTP_POST_VARS": "$_POST",
    "HTTP_COOKIE_VARS": "$_COOKIE",
    "HTTP_POST_FILES": "$_FILES",
    "HTTP_RAW_POST_DATA": "php://input",
}
_SOURCE_FUNCTIONS = frozenset({"getallheaders", "apache_request_headers"})
_INPUT_FILTERS = frozenset({"filter_input", "filter_input_array"})  # sources unless INPUT_ENV
_SERVER_USER_KEYS = _names(
    """QUERY_STRING REQUEST_URI PATH_INFO ORIG_PATH_INFO PATH_TRANSLATED PHP_SELF PHP_AUTH_USER
    PHP_AUTH_PW PHP_AUTH_DIGEST CONTENT_TYPE ARGV"""
)
# Calls that create variables from their (tainted) argument.
_VARIABLE_IMPORTERS = frozenset(
    {"extract", "parse_str", "mb_parse_str", "import_request_variables"}
)
_WRAPPERS = (
    b"php://input",
    b"php://filter",
    b"data:",
    b"http://",
    b"https://",
    b"ftp://",
    b"ftps://",
    b"expect://",
    b"phar://",
    b"zip://",
)
_URL_SCHEMES = (b"http://", b"https://", b"ftp://", b"ftps://")

HOWS = ("direct", "construct", "variable", "assembled", "callback", "preg_e", "backtick", "dynamic")

MAX_NODES = 1_500_000  # syntax nodes walked per file (~5 s); beyond, the rest is not analysed
MAX_READS = 64  # variable names kept per call / right-hand side summary
MAX_VALUE = 4096  # bytes; longer folded strings are "unknown"
MAX_ARRAY = 1024  # elements; larger folded arrays are "unknown"
FOLD_STEPS = 200_000  # evaluator steps per file

_NAME_RE = re.compile(
    rb"\\?[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*(?:\\[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)*"
)


def category_of(name: str) -> str | None:
    """The category of an (already lowercased) function name, or None when not critical.

    Conditional names (:data:`CONDITIONAL`) return None: they are critical only in context.
    """
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    for category, prefixes in CATEGORY_PREFIXES.items():
        if name.startswith(prefixes):
            return category
    return None


def normalise_name(raw: str | bytes) -> str:
    """PHP function names are case-insensitive and may be written fully qualified (``\\EvAl``)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return raw.strip().lstrip("\\").lower()


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CriticalCall:
    """One critical call. ``name`` is the (lowercased) function; spans are byte offsets."""

    name: str
    category: str
    how: str
    start_byte: int
    end_byte: int
    line: int
    tainted: bool


@dataclasses.dataclass(frozen=True)
class SourceUse:
    """One use of a user-input source (``kind`` is one of :data:`USER_INPUT_SOURCES`)."""

    kind: str
    start_byte: int
    end_byte: int
    line: int


@dataclasses.dataclass
class Analysis:
    """What :func:`analyse` found in one file.

    ``functions`` counts every function called (see the module docstring), ``methods`` the
    method names called (``$pdo->exec`` counts ``exec`` here, not as a function).
    ``index`` is the syntax tree and the data-flow facts that :mod:`.extract` reuses; it is
    ``None`` when dropped to save memory (``analyse_many(keep_index=False)``).
    """

    name: str
    calls: list[CriticalCall] = dataclasses.field(default_factory=list)
    sources: list[SourceUse] = dataclasses.field(default_factory=list)
    functions: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    methods: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None
    index: FileIndex | None = dataclasses.field(default=None, repr=False, compare=False)

    def categories(self) -> collections.Counter[str]:
        """Number of critical calls per category."""
        return collections.Counter(call.category for call in self.calls)

    @property
    def tainted_calls(self) -> list[CriticalCall]:
        return [call for call in self.calls if call.tainted]


# --------------------------------------------------------------------------------------------
# The one pass over the tree
# --------------------------------------------------------------------------------------------

_SCOPE_TYPES = frozenset({"function_definition", "method_declaration", "anonymous_function"})
_CLASS_TYPES = frozenset(
    {"class_declaration", "trait_declaration", "interface_declaration", "enum_declaration"}
)
STATEMENT_TYPES = _names(
    """break_statement class_declaration const_declaration continue_statement declare_statement
    do_statement echo_statement empty_statement enum_declaration exit_statement
    expression_statement for_statement foreach_statement function_definition
    function_static_declaration global_declaration goto_statement if_statement
    interface_declaration named_label_statement namespace_definition
    namespace_use_declaration return_statement switch_statement trait_declaration
    try_statement unset_statement while_statement method_declaration property_declaration"""
)
_INCLUDE_TYPES = {
    "include_expression": "include",
    "include_once_expression": "include_once",
    "require_expression": "require",
    "require_once_expression": "require_once",
}
_SITE_TYPES = frozenset(
    {"function_call_expression", "shell_command_expression", "object_creation_expression"}
    | set(_INCLUDE_TYPES)
)
_METHOD_CALL_TYPES = frozenset(
    {"member_call_expression", "nullsafe_member_call_expression", "scoped_call_expression"}
)
_ASSIGN_TYPES = frozenset(
    {"assignment_expression", "augmented_assignment_expression", "reference_assignment_expression"}
)
_STRING_TYPES = frozenset({"string", "encapsed_string", "heredoc", "nowdoc"})


@dataclasses.dataclass(eq=False)
class Site:
    """A call site and its context (innermost statement, its block, function, class)."""

    node: tree_sitter.Node
    scope: int
    stmt: tree_sitter.Node | None
    block: tree_sitter.Node | None
    func: tree_sitter.Node | None
    cls: tree_sitter.Node | None
    reads: set[str] = dataclasses.field(default_factory=set)
    has_source: bool = False


@dataclasses.dataclass(eq=False)
class Assignment:
    """``var`` gets a value from ``rhs`` (kind: set, concat, elem, other; wild: ``$$k = ...``)."""

    node: tree_sitter.Node
    var: str | None
    kind: str
    rhs: tree_sitter.Node | None
    key: tree_sitter.Node | None
    scope: int
    stmt: tree_sitter.Node | None
    block: tree_sitter.Node | None
    reads: set[str] = dataclasses.field(default_factory=set)
    has_source: bool = False


@dataclasses.dataclass
class FileIndex:
    """The tree and the data-flow facts of one file (shared with :mod:`.extract`)."""

    data: bytes
    tree: tree_sitter.Tree
    sites: list[Site]
    assignments: dict[tuple[int, str], list[Assignment]]  # sorted by end byte
    tainted: set[tuple[int, str]]
    wild_scopes: set[int]
    site_by_span: dict[tuple[int, int], Site] = dataclasses.field(default_factory=dict)
    complete: bool = True  # False when the walk stopped at MAX_NODES

    def is_tainted(self, scope: int, var: str) -> bool:
        if (scope, var) in self.tainted:
            return True
        return scope in self.wild_scopes and (scope, var) not in self.assignments


def _site(node, scope: int, stmts: list, funcs: list, classes: list) -> Site:
    """A call site in the innermost open statement, function and class of the walk."""
    stmt = stmts[-1] if stmts else None
    return Site(
        node,
        scope,
        stmt[1] if stmt else None,
        stmt[2] if stmt else None,
        funcs[-1][1] if funcs else None,
        classes[-1][1] if classes else None,
    )


class _Acc:
    """Accumulates the variables read / sources used under one open node."""

    __slots__ = ("depth", "scope", "owners", "reads", "has_source", "parent")

    def __init__(self, depth: int, scope: int, owners: list[Any], parent: _Acc | None = None):
        self.depth, self.scope, self.owners = depth, scope, owners
        self.reads: set[str] = set()
        self.has_source = False
        self.parent = parent  # the enclosing accumulator of the same scope (it gets our facts)


@dataclasses.dataclass(eq=False)
class _Late:
    """A variable use resolved after the walk: its name folds from ``name_node`` (a dynamic name
    such as ``${'_PO'.'ST'}`` or ``$$k``), else it is ``name`` (``$GLOBALS`` with a computed
    key); ``acc`` is the innermost open summary of its scope, if any."""

    name_node: tree_sitter.Node | None
    name: str
    node: tree_sitter.Node
    parent: tree_sitter.Node | None
    grand: tree_sitter.Node | None
    scope: int
    acc: _Acc | None


def _base_of_subscript(
    node: tree_sitter.Node, parent: tree_sitter.Node | None
) -> tree_sitter.Node | None:
    """The key node when ``node`` is the array of the subscript ``parent`` (``node[key]``)."""
    if (
        parent is None
        or parent.type != "subscript_expression"
        or parent.named_child_count < 2
        or parent.named_children[0].id != node.id
    ):
        return None
    return parent.named_children[1]


def _filters_user_input(node: tree_sitter.Node, data: bytes) -> bool:
    """``filter_input(type, ...)`` / ``filter_input_array(type, ...)`` reads the request unless
    ``type`` is ``INPUT_ENV`` (the process environment)."""
    args = call_arguments(node)
    first = args[0] if args else None
    if first is None or first.type not in ("name", "qualified_name"):
        return True
    return data[first.start_byte : first.end_byte].lstrip(b"\\").strip() != b"INPUT_ENV"


def _var_name(node: tree_sitter.Node, data: bytes) -> str:
    return data[node.start_byte + 1 : node.end_byte].decode("utf-8", errors="replace")


def _literal_key(node: tree_sitter.Node | None, data: bytes) -> bytes | None:
    """The text of a plain string literal (no interpolation), else None."""
    if node is None or node.type not in ("string", "encapsed_string"):
        return None
    if any(c.type not in ("string_content",) for c in node.named_children):
        return None
    raw = data[node.start_byte : node.end_byte]
    start = min((i for i in (raw.find(b"'"), raw.find(b'"')) if i >= 0), default=-1)
    return raw[start + 1 : -1] if start >= 0 else None


# Subtrees the walk does not enter: nothing inside them matters (their own node is seen).
_PRUNED = frozenset(
    {"variable_name", "name", "string", "comment", "integer", "float", "text", "cast_type"}
)


def _is_literal(node: tree_sitter.Node | None) -> bool:
    """A string literal without interpolation (escapes allowed)."""
    return (
        node is not None
        and node.type in ("string", "encapsed_string")
        and all(c.type in ("string_content", "escape_sequence") for c in node.named_children)
    )


class _Walker:
    """The single pass (see the module docstring)."""

    def __init__(self, data: bytes, tree: tree_sitter.Tree, max_nodes: int):
        self.data, self.tree, self.max_nodes = data, tree, max_nodes
        self.sites: list[Site] = []
        self.asgs: list[Assignment] = []
        self.sources: list[SourceUse] = []
        self.methods: collections.Counter[str] = collections.Counter()
        self.importer_scopes: set[int] = set()
        self.links: list[tuple[tuple[int, str], tuple[int, str]]] = []  # closure use clauses
        self.complete = True
        self.errors = 0
        self.late: list[_Late] = []  # variable names to fold once the assignments are known
        self._accs: list[_Acc] = []
        self._pending: dict[int, list[Any]] = {}

    # -- accumulators --
    def _close_acc(self) -> None:
        acc = self._accs.pop()
        for owner in acc.owners:
            owner.reads = acc.reads
            owner.has_source = acc.has_source
        if self._accs and self._accs[-1].scope == acc.scope:
            parent = self._accs[-1]
            parent.has_source |= acc.has_source
            room = MAX_READS - len(parent.reads)
            if room >= len(acc.reads):
                parent.reads |= acc.reads
            elif room > 0:
                parent.reads.update(sorted(acc.reads - parent.reads)[:room])

    def _read(self, name: str, scope: int) -> None:
        if self._accs and self._accs[-1].scope == scope:
            reads = self._accs[-1].reads
            if len(reads) < MAX_READS:
                reads.add(name)

    def _open_acc(self, depth: int, scope: int, owners: list[Any]) -> None:
        accs = self._accs
        parent = accs[-1] if accs and accs[-1].scope == scope else None
        accs.append(_Acc(depth, scope, owners, parent))

    def _top_acc(self, scope: int) -> _Acc | None:
        return self._accs[-1] if self._accs and self._accs[-1].scope == scope else None

    def _source(self, kind: str, node: tree_sitter.Node, scope: int) -> None:
        self.sources.append(
            SourceUse(kind, node.start_byte, node.end_byte, node.start_point[0] + 1)
        )
        if self._accs and self._accs[-1].scope == scope:
            self._accs[-1].has_source = True

    # -- the walk --
    def run(self) -> None:
        data = self.data
        path: list[tree_sitter.Node | None] = []
        scopes: list[tuple[int, int]] = [(-1, 0)]  # (depth, scope id); 0 = the file
        stmts: list[tuple[int, tree_sitter.Node, tree_sitter.Node | None]] = []
        funcs: list[tuple[int, tree_sitter.Node]] = []
        classes: list[tuple[int, tree_sitter.Node]] = []
        accs = self._accs
        next_scope = 1
        walk = php.walk(self.tree.root_node, skip=_PRUNED)
        for count, (node, depth) in enumerate(walk):
            t = node.type
            if count >= self.max_nodes:
                self.complete = False
                break
            while accs and accs[-1].depth >= depth:
                self._close_acc()
            while scopes[-1][0] >= depth:
                scopes.pop()
            while stmts and stmts[-1][0] >= depth:
                stmts.pop()
            while funcs and funcs[-1][0] >= depth:
                funcs.pop()
            while classes and classes[-1][0] >= depth:
                classes.pop()
            if len(path) > depth:
                del path[depth:]
            while len(path) < depth:
                path.append(None)
            path.append(node)
            parent = path[depth - 1] if depth else None
            scope = scopes[-1][1]

            owners = self._pending.pop(node.id, None)
            if t in _SITE_TYPES:
                site = _site(node, scope, stmts, funcs, classes)
                self.sites.append(site)
                owners = [*(owners or ()), site]
            if owners:
                self._open_acc(depth, scope, owners)

            if t == "variable_name":
                grand = path[depth - 2] if depth >= 2 else None
                self._variable(_var_name(node, data), node, parent, grand, scope)
            elif t in _STRING_TYPES:
                if (
                    node.end_byte - node.start_byte >= 11
                    and b"php://input" in data[node.start_byte : node.end_byte].lower()
                ):
                    self._source("php://input", node, scope)
            elif t == "dynamic_variable_name" and node.named_child_count:
                inner = node.named_children[0]
                lit = _literal_key(inner, data)
                if lit is None and inner.type == "name":  # "${x}" in a string
                    lit = data[inner.start_byte : inner.end_byte]
                grand = path[depth - 2] if depth >= 2 else None
                if lit is not None:
                    name = lit.decode("utf-8", errors="replace")
                    self._variable(name, node, parent, grand, scope)
                else:  # ${'_PO'.'ST'}, $$k: folded after the walk
                    self.late.append(
                        _Late(inner, "", node, parent, grand, scope, self._top_acc(scope))
                    )
            elif t == "function_call_expression":
                fn = node.child_by_field_name("function")
                if fn is not None and fn.type in ("name", "qualified_name"):
                    name = normalise_name(data[fn.start_byte : fn.end_byte])
                    if name in _SOURCE_FUNCTIONS or (
                        name in _INPUT_FILTERS and _filters_user_input(node, data)
                    ):
                        self._source(name, node, scope)
                    elif name in _VARIABLE_IMPORTERS:
                        self.importer_scopes.add(scope)
            elif t in _METHOD_CALL_TYPES:
                name_node = node.child_by_field_name("name")
                if name_node is not None:
                    self.methods[
                        normalise_name(data[name_node.start_byte : name_node.end_byte])
                    ] += 1
                scope_node = node.child_by_field_name("scope")
                if (
                    t == "scoped_call_expression"
                    and scope_node is not None
                    and name_node is not None
                    and normalise_name(data[scope_node.start_byte : scope_node.end_byte])
                    == "closure"
                    and normalise_name(data[name_node.start_byte : name_node.end_byte])
                    == "fromcallable"
                ):
                    site = _site(node, scope, stmts, funcs, classes)
                    self.sites.append(site)
                    self._open_acc(depth, scope, [site])
            elif t in _ASSIGN_TYPES:
                self._assignment(node, t, scope, stmts)
            elif t == "foreach_statement":
                self._foreach(node, scope, [(depth, node, parent)])
            elif t == "ERROR":
                self.errors += 1

            if t in STATEMENT_TYPES:
                stmts.append((depth, node, parent))
            if t in _SCOPE_TYPES:
                if t == "anonymous_function":
                    self._use_clause(node, scope, next_scope)
                scopes.append((depth, next_scope))
                next_scope += 1
                funcs.append((depth, node))
            elif t in _CLASS_TYPES:
                classes.append((depth, node))
        while accs:
            self._close_acc()

    def _use_clause(self, node: tree_sitter.Node, outer: int, inner: int) -> None:
        """``function () use ($a, &$b)``: the closure's $a, $b carry the outer ones' taint."""
        for child in node.named_children:
            if child.type == "anonymous_function_use_clause":
                for var in self._bound_variables(child):
                    self.links.append(((outer, var), (inner, var)))

    def _variable(
        self,
        name: str,
        node: tree_sitter.Node,
        parent: tree_sitter.Node | None,
        grand: tree_sitter.Node | None,
        scope: int,
    ) -> None:
        """A use of the variable ``name`` (plain or a literal dynamic name): source or read."""
        if name not in _SOURCE_VARS and name not in ("_SERVER", "GLOBALS"):
            self._read(name, scope)
            return
        if name == "GLOBALS":
            self._read(name, scope)
            key = _base_of_subscript(node, parent)
            if key is not None and _literal_key(key, self.data) is None:  # $GLOBALS[$k]
                self.late.append(
                    _Late(None, name, node, parent, grand, scope, self._top_acc(scope))
                )
                return
        found = self._source_kind(name, node, parent, grand, lambda k: _literal_key(k, self.data))
        if found is not None:
            self._source(found[0], found[1], scope)

    def _source_kind(
        self,
        name: str,
        node: tree_sitter.Node,
        parent: tree_sitter.Node | None,
        grand: tree_sitter.Node | None,
        key_of: Callable[[tree_sitter.Node], bytes | None],
    ) -> tuple[str, tree_sitter.Node] | None:
        """The source (and its node) that a use of the variable ``name`` at ``node`` is.

        ``$GLOBALS['_POST']`` is ``$_POST`` (``key_of`` gives a subscript key's bytes, or None
        when unknown); ``$_SERVER`` counts only with a client-controlled key.
        """
        for _ in range(3):  # $GLOBALS['GLOBALS']['_GET'] at most
            if name in _SOURCE_VARS:
                return _SOURCE_VARS[name], node
            if name == "_SERVER":
                return ("$_SERVER", node) if self._server_is_user(node, parent) else None
            key = _base_of_subscript(node, parent) if name == "GLOBALS" else None
            value = key_of(key) if key is not None else None
            if value is None:
                return None
            name = value.decode("utf-8", errors="replace")
            node, parent, grand = parent, grand, None
        return None

    def resolve_late(self, folder: Folder) -> None:
        """Folds the dynamic variable names and ``$GLOBALS`` keys the walk could not read.

        A name that folds to a superglobal marks the use as that source (and every enclosing
        call / right-hand-side summary of the scope as reading a source); another name is a read
        of that variable. Marking stops at a summary already marked, so this is linear.
        """
        data = self.data
        added = False
        for late in self.late:
            if late.name_node is not None:
                folded = _as_bytes(folder.fold(late.name_node, late.scope))
                if not folded:
                    continue
                name = folded.decode("utf-8", errors="replace")
            else:
                name = late.name

            def key_of(k: tree_sitter.Node, scope: int = late.scope) -> bytes | None:
                lit = _literal_key(k, data)
                return lit if lit is not None else _as_bytes(folder.fold(k, scope))

            found = self._source_kind(name, late.node, late.parent, late.grand, key_of)
            acc = late.acc
            if found is not None:
                kind, node = found
                self.sources.append(
                    SourceUse(kind, node.start_byte, node.end_byte, node.start_point[0] + 1)
                )
                added = True
                while acc is not None and not acc.has_source:
                    acc.has_source = True
                    for owner in acc.owners:
                        owner.has_source = True
                    acc = acc.parent
            elif late.name_node is not None and name not in _SOURCE_VARS and name != "_SERVER":
                while acc is not None and name not in acc.reads and len(acc.reads) < MAX_READS:
                    acc.reads.add(name)  # shared with the owners of acc
                    acc = acc.parent
        if added:
            self.sources.sort(key=lambda u: u.start_byte)

    def _server_is_user(self, node: tree_sitter.Node, parent: tree_sitter.Node | None) -> bool:
        if parent is None or parent.type != "subscript_expression" or parent.named_child_count < 2:
            return True  # the whole array, or a form we do not know: conservative
        if parent.named_children[0].id != node.id:
            return True
        key = _literal_key(parent.named_children[1], self.data)
        if key is None:
            return True  # computed key
        key_s = key.decode("utf-8", errors="replace").upper()
        return key_s.startswith("HTTP_") or key_s in _SERVER_USER_KEYS

    def _new_asg(self, node, var, kind, rhs, key, scope, stmts) -> Assignment:
        stmt = stmts[-1] if stmts else None
        asg = Assignment(
            node, var, kind, rhs, key, scope, stmt[1] if stmt else None, stmt[2] if stmt else None
        )
        self.asgs.append(asg)
        if rhs is not None:
            self._pending.setdefault(rhs.id, []).append(asg)
        return asg

    def _assignment(self, node: tree_sitter.Node, t: str, scope: int, stmts) -> None:
        left = node.child_by_field_name("left")
        right = node.child_by_field_name("right")
        if left is None or right is None:
            return
        if t == "assignment_expression":
            kind = "set"
        elif t == "augmented_assignment_expression":
            op = node.child_by_field_name("operator")
            kind = "concat" if op is not None and op.type == ".=" else "other"
        else:
            kind = "other"
        lt = left.type
        if lt == "variable_name":
            self._new_asg(node, _var_name(left, self.data), kind, right, None, scope, stmts)
        elif lt == "subscript_expression":
            base, key, depth = left, None, 0
            while base.type == "subscript_expression" and base.named_child_count and depth < 64:
                if depth == 0 and base.named_child_count > 1:
                    key = base.named_children[1]
                base, depth = base.named_children[0], depth + 1
            if base.type == "variable_name":
                sub_kind = "elem" if kind == "set" and depth == 1 else "other"
                self._new_asg(node, _var_name(base, self.data), sub_kind, right, key, scope, stmts)
        elif lt == "dynamic_variable_name":
            lit = _literal_key(
                left.named_children[0] if left.named_child_count else None, self.data
            )
            if lit is not None:
                self._new_asg(
                    node, lit.decode("utf-8", errors="replace"), kind, right, None, scope, stmts
                )
            else:
                self._new_asg(node, None, "wild", right, None, scope, stmts)
        elif lt in ("list_literal", "array_creation_expression"):
            for var in self._bound_variables(left):
                self._new_asg(node, var, "other", right, None, scope, stmts)

    def _bound_variables(self, node: tree_sitter.Node, limit: int = 256) -> list[str]:
        out: list[str] = []
        for sub, _ in php.walk(node):
            if sub.type == "variable_name":
                out.append(_var_name(sub, self.data))
                if len(out) >= limit:
                    break
        return out

    def _foreach(self, node: tree_sitter.Node, scope: int, stmts) -> None:
        """``foreach (iterable as $k => $v)``: the foreach itself is the defining statement."""
        named = node.named_children
        if len(named) < 2:
            return
        iterable, binding = named[0], named[1]
        body = node.child_by_field_name("body")
        if binding.type == "compound_statement" or (body is not None and binding.id == body.id):
            return
        for var in self._bound_variables(binding):
            self._new_asg(node, var, "other", iterable, None, scope, stmts)


def _propagate_taint(
    asgs: list[Assignment],
    sites: list[Site],
    importer_scopes: set[int],
    links: list[tuple[tuple[int, str], tuple[int, str]]] = (),
) -> tuple[set[tuple[int, str]], set[int]]:
    """Flow-insensitive taint per scope, to a fixpoint (worklist); ``links`` carry taint from
    an outer variable to a closure's ``use`` variable."""
    readers: dict[tuple[int, str], list[Assignment]] = collections.defaultdict(list)
    linked: dict[tuple[int, str], list[tuple[int, str]]] = collections.defaultdict(list)
    for outer, inner in links:
        linked[outer].append(inner)
    assigned: set[tuple[int, str]] = set()
    for asg in asgs:
        for var in asg.reads:
            readers[(asg.scope, var)].append(asg)
        if asg.var is not None:
            assigned.add((asg.scope, asg.var))
    tainted: set[tuple[int, str]] = set()
    work: list[tuple[int, str]] = []

    def taint(key: tuple[int, str]) -> None:
        if key not in tainted:
            tainted.add(key)
            work.append(key)

    def run() -> None:
        while work:
            key = work.pop()
            for asg in readers.get(key, ()):
                if asg.var is not None:
                    taint((asg.scope, asg.var))
            for inner in linked.get(key, ()):
                taint(inner)

    for asg in asgs:
        if asg.has_source and asg.var is not None:
            taint((asg.scope, asg.var))
    run()
    # Scopes where user input can name variables: extract($_GET), parse_str(...), $$k = $v.
    importer_sites = {
        s.scope
        for s in sites
        if s.scope in importer_scopes and s.node.type == "function_call_expression" and s.has_source
    }
    wild: set[int] = set()
    while True:
        new = set(importer_sites)
        for asg in asgs:
            if asg.kind == "wild" and (
                asg.has_source or any((asg.scope, v) in tainted for v in asg.reads)
            ):
                new.add(asg.scope)
        new -= wild
        if not new:
            break
        wild |= new
        for owner in [*asgs, *sites]:
            if owner.scope in new:
                for var in owner.reads:
                    if (owner.scope, var) not in assigned:
                        taint((owner.scope, var))
        run()
    return tainted, wild


# --------------------------------------------------------------------------------------------
# The constant folder (a tiny evaluator for pure string builders; it never runs PHP)
# --------------------------------------------------------------------------------------------


class _Closure:
    """Marker value: a closure / arrow function (a callable that is not a name)."""


CLOSURE = _Closure()
Value = bytes | int | dict | _Closure | None


def _as_bytes(v: Value) -> bytes | None:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        return b"1" if v else b""
    if isinstance(v, int):
        return str(v).encode()
    return None


def _as_int(v: Value) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, bytes):
        m = re.match(rb"\s*([+-]?\d{1,18})", v)
        return int(m.group(1)) if m else 0
    return None


def _parse_int(raw: bytes) -> int | None:
    s = raw.replace(b"_", b"").lower()
    try:
        if s.startswith(b"0x"):
            return int(s[2:], 16)
        if s.startswith(b"0b"):
            return int(s[2:], 2)
        if s.startswith(b"0o"):
            return int(s[2:], 8)
        if len(s) > 1 and s.startswith(b"0"):
            return int(s[1:], 8)
        return int(s)
    except ValueError:
        return None


_SIMPLE_ESCAPES = {
    ord("n"): b"\n",
    ord("t"): b"\t",
    ord("r"): b"\r",
    ord("v"): b"\v",
    ord("e"): b"\x1b",
    ord("f"): b"\f",
    ord("\\"): b"\\",
    ord("$"): b"$",
    ord('"'): b'"',
}


def _unescape_double(esc: bytes) -> bytes:
    """One escape sequence of a double-quoted string or heredoc."""
    if len(esc) < 2 or esc[0] != ord("\\"):
        return esc
    c = esc[1]
    if c in _SIMPLE_ESCAPES and len(esc) == 2:
        return _SIMPLE_ESCAPES[c]
    body = esc[1:]
    try:
        if body[:1] in (b"x", b"X") and len(body) > 1:
            return bytes([int(body[1:3], 16)])
        if body[:1].isdigit():
            return bytes([int(body[:3], 8) & 0xFF])
        if body[:2] == b"u{" and body.endswith(b"}"):
            return chr(int(body[2:-1], 16)).encode("utf-8")
    except (ValueError, OverflowError):
        pass
    return esc


def _unescape_single(raw: bytes) -> bytes:
    return re.sub(rb"\\([\\'])", rb"\1", raw)


def _rot13(s: bytes) -> bytes:
    return s.translate(_ROT13)


_ROT13 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def _b64decode(s: bytes) -> bytes:
    s = re.sub(rb"[^A-Za-z0-9+/]", b"", s)
    if len(s) % 4 == 1:
        s = s[:-1]
    return base64.b64decode(s + b"=" * (-len(s) % 4))


def _inflate(wbits: int) -> Callable[[bytes], bytes | None]:
    def run(s: bytes) -> bytes | None:
        d = zlib.decompressobj(wbits)
        out = d.decompress(s, MAX_VALUE + 1)
        return None if len(out) > MAX_VALUE else out

    return run


def _substr(s: bytes, start: int, length: int | None = None) -> bytes:
    n = len(s)
    if start < 0:
        start = max(n + start, 0)
    if start > n:
        return b""
    if length is None:
        return s[start:]
    end = n + length if length < 0 else start + length
    return s[start : max(end, start)]


def _uudecode(s: bytes) -> bytes:
    out = bytearray()
    for line in s.split(b"\n"):
        if not line or line[:1] in (b"`", b" "):
            break
        out += binascii.a2b_uu(line)
    return bytes(out)


def _strtr(s: bytes, a: Value, b: Value = None) -> bytes | None:
    if isinstance(a, bytes) and isinstance(b, bytes):
        n = min(len(a), len(b))
        return s.translate(bytes.maketrans(a[:n], b[:n])) if n else s
    if isinstance(a, dict) and b is None:
        pairs = [(_as_bytes(k), _as_bytes(v)) for k, v in a.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        pairs = sorted(((k, v) for k, v in pairs if k), key=lambda kv: -len(kv[0]))
        if len(s) * max(len(pairs), 1) > 1 << 20:  # keep the naive scan cheap
            return None
        out, i = bytearray(), 0
        while i < len(s):
            for k, v in pairs:
                if s.startswith(k, i):
                    out += v
                    i += len(k)
                    break
            else:
                out.append(s[i])
                i += 1
        return bytes(out)
    return None


def _str_replace(search: Value, replace: Value, subject: Value) -> bytes | None:
    if not isinstance(subject, bytes):
        subject = _as_bytes(subject)
        if subject is None:
            return None
    if isinstance(search, dict):
        searches = [_as_bytes(v) for v in search.values()]
        if isinstance(replace, dict):
            reps = [_as_bytes(v) for v in replace.values()]
            reps += [b""] * (len(searches) - len(reps))
        else:
            reps = [_as_bytes(replace)] * len(searches)
    else:
        searches, reps = [_as_bytes(search)], [_as_bytes(replace)]
    for a, b in zip(searches, reps):
        if a is None or b is None:
            return None
        if a:
            subject = subject.replace(a, b)
            if len(subject) > MAX_VALUE:
                return None
    return subject


def _implode(*args: Value) -> bytes | None:
    if len(args) == 1:
        glue, arr = b"", args[0]
    elif len(args) == 2:
        glue, arr = (args[0], args[1]) if isinstance(args[1], dict) else (args[1], args[0])
    else:
        return None
    glue = _as_bytes(glue)
    if glue is None or not isinstance(arr, dict):
        return None
    parts = [_as_bytes(v) for v in arr.values()]
    if any(p is None for p in parts):
        return None
    return glue.join(parts)


def _pack(fmt: Value, *args: Value) -> bytes | None:
    if fmt in (b"H*", b"h*") and len(args) == 1 and isinstance(args[0], bytes):
        hexs = args[0]
        if fmt == b"h*":
            hexs = bytes(b for pair in zip(hexs[1::2], hexs[::2]) for b in pair)
        return binascii.unhexlify(hexs + (b"0" if len(hexs) % 2 else b""))
    if fmt in (b"A*", b"a*") and len(args) == 1:
        return _as_bytes(args[0])
    if fmt == b"C*":
        ints = [_as_int(a) for a in args]
        return None if any(i is None for i in ints) else bytes(i & 0xFF for i in ints)
    return None


def _trim(which: str) -> Callable[..., bytes | None]:
    def run(s: Value, chars: Value = b" \t\n\r\0\x0b") -> bytes | None:
        s, chars = _as_bytes(s), _as_bytes(chars)
        if s is None or chars is None or b".." in chars:
            return None
        return {"both": s.strip, "left": s.lstrip, "right": s.rstrip}[which](chars)

    return run


def _bytes_fn(f: Callable[[bytes], Value]) -> Callable[..., Value]:
    def run(*args: Value) -> Value:
        if len(args) != 1:
            return None
        s = _as_bytes(args[0])
        return None if s is None else f(s)

    return run


def _chr(*args: Value) -> bytes | None:
    n = _as_int(args[0]) if len(args) == 1 else None
    return None if n is None else bytes([n % 256])


def _ord(*args: Value) -> int | None:
    s = _as_bytes(args[0]) if len(args) == 1 else None
    return None if s is None else (s[0] if s else 0)


def _substr_call(*args: Value) -> bytes | None:
    if not 2 <= len(args) <= 3:
        return None
    s, start = _as_bytes(args[0]), _as_int(args[1])
    length = _as_int(args[2]) if len(args) == 3 and args[2] is not None else None
    if s is None or start is None or (len(args) == 3 and length is None):
        return None
    return _substr(s, start, length)


def _str_repeat(*args: Value) -> bytes | None:
    if len(args) != 2:
        return None
    s, n = _as_bytes(args[0]), _as_int(args[1])
    if s is None or n is None or n < 0 or len(s) * n > MAX_VALUE:
        return None
    return s * n


def _str_split(*args: Value) -> dict | None:
    s = _as_bytes(args[0]) if args else None
    n = _as_int(args[1]) if len(args) == 2 else 1
    if s is None or n is None or n < 1 or len(s) // n > MAX_ARRAY:
        return None
    return {i: s[j : j + n] for i, j in enumerate(range(0, max(len(s), 1), n))}


PURE_FUNCTIONS: dict[str, Callable[..., Value]] = {
    "strrev": _bytes_fn(lambda s: s[::-1]),
    "str_rot13": _bytes_fn(_rot13),
    "base64_decode": lambda *a: _bytes_fn(_b64decode)(a[0]) if 1 <= len(a) <= 2 else None,
    "base64_encode": _bytes_fn(base64.b64encode),
    "strtolower": _bytes_fn(bytes.lower),
    "strtoupper": _bytes_fn(bytes.upper),
    "ucfirst": _bytes_fn(lambda s: s[:1].upper() + s[1:]),
    "lcfirst": _bytes_fn(lambda s: s[:1].lower() + s[1:]),
    "trim": _trim("both"),
    "ltrim": _trim("left"),
    "rtrim": _trim("right"),
    "chop": _trim("right"),
    "str_replace": lambda *a: _str_replace(*a) if len(a) == 3 else None,
    "substr": _substr_call,
    "str_repeat": _str_repeat,
    "hex2bin": _bytes_fn(binascii.unhexlify),
    "bin2hex": _bytes_fn(binascii.hexlify),
    "urldecode": _bytes_fn(lambda s: urllib.parse.unquote_to_bytes(s.replace(b"+", b" "))),
    "rawurldecode": _bytes_fn(urllib.parse.unquote_to_bytes),
    "chr": _chr,
    "ord": _ord,
    "implode": _implode,
    "join": _implode,
    "strval": _bytes_fn(lambda s: s),
    "convert_uudecode": _bytes_fn(_uudecode),
    "gzinflate": lambda *a: _bytes_fn(_inflate(-15))(a[0]) if a else None,
    "gzuncompress": lambda *a: _bytes_fn(_inflate(15))(a[0]) if a else None,
    "gzdecode": lambda *a: _bytes_fn(_inflate(31))(a[0]) if a else None,
    "pack": lambda *a: _pack(*a) if a else None,
    "strtr": lambda *a: (
        _strtr(_as_bytes(a[0]), *a[1:])
        if 2 <= len(a) <= 3 and _as_bytes(a[0]) is not None
        else None
    ),
    "str_split": _str_split,
}
_FOLD_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    binascii.Error,
    zlib.error,
)

# The constants the folder knows (PHP constant names are case-sensitive).
CONSTANTS: dict[bytes, int] = {b"FILTER_CALLBACK": 1024}
FILTER_CALLBACK = CONSTANTS[b"FILTER_CALLBACK"]

# Plans: ("v", value) or ("d", [tasks], combine(values) -> plan).
_Task = tuple


class Folder:
    """Constant-folds expressions of one file (see the module docstring). Never runs code."""

    def __init__(self, data: bytes, assignments: dict[tuple[int, str], list[Assignment]]):
        self.data = data
        self.assignments = assignments
        self.ends = {k: [a.node.end_byte for a in v] for k, v in assignments.items()}
        self.memo: dict[Any, Value] = {}
        self.steps = 0
        self.exhausted = False

    # public
    def fold(self, node: tree_sitter.Node | None, scope: int) -> Value:
        if node is None:
            return None
        return self._run(("n", node, scope))

    def assignment_used(self, node: tree_sitter.Node, scope: int) -> Assignment | None:
        """The assignment whose value a use of a plain variable reads (straight-line)."""
        if node.type == "variable_name":
            name = _var_name(node, self.data)
        elif node.type == "dynamic_variable_name" and node.named_child_count:
            lit = _literal_key(node.named_children[0], self.data)
            if lit is None:
                return None
            name = lit.decode("utf-8", errors="replace")
        else:
            return None
        key = (scope, name)
        i = bisect.bisect_right(self.ends.get(key, ()), node.start_byte) - 1
        return self.assignments[key][i] if i >= 0 else None

    # machinery
    @staticmethod
    def _key(task: _Task) -> Any:
        return ("n", task[1].id) if task[0] == "n" else task

    def _run(self, root: _Task) -> Value:
        memo, key = self.memo, self._key
        rk = key(root)
        if rk in memo:
            return memo[rk]
        if self.exhausted:
            return None
        stack: list[list[Any]] = [[root, None]]
        expanding: set[Any] = set()
        while stack:
            frame = stack[-1]
            task, plan = frame
            k = key(task)
            if k in memo:
                stack.pop()
                expanding.discard(k)
                continue
            self.steps += 1
            if self.steps > FOLD_STEPS:
                self.exhausted = True
                return None
            try:
                if plan is None:
                    plan = self._plan(task)
                else:
                    plan = plan[2]([memo.get(key(d)) for d in plan[1]])
            except _FOLD_ERRORS:
                plan = ("v", None)
            if plan[0] == "v":
                memo[k] = _cap(plan[1])
                stack.pop()
                expanding.discard(k)
                continue
            frame[1] = plan
            expanding.add(k)
            for dep in plan[1]:
                dk = key(dep)
                if dk in memo:
                    continue
                if dk in expanding:  # a cycle (should not happen: lookups go backwards)
                    memo[dk] = None
                    continue
                stack.append([dep, None])
        return memo.get(rk)

    def _plan(self, task: _Task) -> tuple:
        if task[0] == "a":
            return self._plan_assignment(task)
        _, node, scope = task
        t = node.type
        data = self.data
        if t == "string":
            if node.end_byte - node.start_byte > MAX_VALUE + 3:
                return ("v", None)
            raw = data[node.start_byte : node.end_byte]
            q = raw.find(b"'")
            if q < 0 or q > 1:
                return self._plan_parts(node, scope)
            return ("v", _unescape_single(raw[q + 1 : -1]))
        if t in ("encapsed_string", "heredoc", "nowdoc"):
            if node.end_byte - node.start_byte > 4 * MAX_VALUE:
                return ("v", None)
            if t in ("heredoc", "nowdoc"):
                body = node.child_by_field_name("value")
                return self._plan_parts(body, scope) if body is not None else ("v", b"")
            return self._plan_parts(node, scope)
        if t == "integer":
            return ("v", _parse_int(data[node.start_byte : node.end_byte]))
        if t in ("name", "qualified_name"):  # a constant
            return ("v", CONSTANTS.get(data[node.start_byte : node.end_byte].lstrip(b"\\")))
        if t == "boolean":
            return ("v", data[node.start_byte : node.end_byte].lower() == b"true")
        if t in ("parenthesized_expression", "cast_expression"):
            inner = node.child_by_field_name("value") if t == "cast_expression" else None
            if t == "cast_expression":
                ct = node.child_by_field_name("type")
                if ct is None or data[ct.start_byte : ct.end_byte].strip().lower() != b"string":
                    return ("v", None)
            inner = inner or (node.named_children[0] if node.named_child_count else None)
            if inner is None:
                return ("v", None)
            return ("d", [("n", inner, scope)], lambda v: ("v", v[0]))
        if t == "binary_expression":
            return self._plan_binary(node, scope)
        if t == "unary_op_expression":
            op = node.child_by_field_name("operator")
            arg = node.named_children[-1] if node.named_child_count else None
            if op is None or arg is None or op.type not in ("-", "+"):
                return ("v", None)
            sign = -1 if op.type == "-" else 1
            return (
                "d",
                [("n", arg, scope)],
                lambda v: ("v", None if not isinstance(v[0], int) else sign * v[0]),
            )
        if t == "assignment_expression":
            right = node.child_by_field_name("right")
            return ("d", [("n", right, scope)], lambda v: ("v", v[0])) if right else ("v", None)
        if t == "conditional_expression":
            a, b = node.child_by_field_name("body"), node.child_by_field_name("alternative")
            if a is None or b is None:
                return ("v", None)
            return (
                "d",
                [("n", a, scope), ("n", b, scope)],
                lambda v: ("v", v[0] if v[0] == v[1] else None),
            )
        if t in ("anonymous_function", "arrow_function"):
            return ("v", CLOSURE)
        if t == "array_creation_expression":
            return self._plan_array(node, scope)
        if t == "subscript_expression":
            kids = node.named_children
            if len(kids) != 2:
                return ("v", None)
            return (
                "d",
                [("n", kids[0], scope), ("n", kids[1], scope)],
                lambda v: ("v", _subscript(v[0], v[1])),
            )
        if t == "variable_name":
            return self._plan_variable(_var_name(node, data), node.start_byte, scope)
        if t == "dynamic_variable_name":
            inner = node.named_children[0] if node.named_child_count else None
            if inner is None:
                return ("v", None)
            if inner.type == "name":
                name = data[inner.start_byte : inner.end_byte].decode("utf-8", errors="replace")
                return self._plan_variable(name, node.start_byte, scope)
            pos = node.start_byte

            def then(v: list[Value]) -> tuple:
                name = _as_bytes(v[0])
                if not name:
                    return ("v", None)
                return self._plan_variable(name.decode("utf-8", errors="replace"), pos, scope)

            return ("d", [("n", inner, scope)], then)
        if t == "function_call_expression":
            return self._plan_call(node, scope)
        return ("v", None)

    def _plan_parts(self, node: tree_sitter.Node, scope: int) -> tuple:
        parts: list[bytes | _Task] = []
        data = self.data
        for child in node.named_children:
            ct = child.type
            if ct in ("string_content", "nowdoc_string", "string_value"):
                parts.append(data[child.start_byte : child.end_byte])
            elif ct == "escape_sequence":
                parts.append(_unescape_double(data[child.start_byte : child.end_byte]))
            elif ct == "text_interpolation":
                return ("v", None)
            else:
                parts.append(("n", child, scope))
        deps = [p for p in parts if not isinstance(p, bytes)]

        def combine(v: list[Value]) -> tuple:
            it = iter(v)
            out = []
            for p in parts:
                b = p if isinstance(p, bytes) else _as_bytes(next(it))
                if b is None:
                    return ("v", None)
                out.append(b)
            return ("v", b"".join(out))

        return ("d", deps, combine) if deps else combine([])

    def _plan_binary(self, node: tree_sitter.Node, scope: int) -> tuple:
        op_node = node.child_by_field_name("operator")
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if op_node is None or left is None or right is None:
            return ("v", None)
        op = op_node.type
        if op not in (".", "+", "-", "*", "^", "|", "&"):
            return ("v", None)

        def combine(v: list[Value]) -> tuple:
            a, b = v
            if op == ".":
                a, b = _as_bytes(a), _as_bytes(b)
                return ("v", None if a is None or b is None else a + b)
            if isinstance(a, bytes) and isinstance(b, bytes) and op in "^|&":
                f = {"^": lambda x, y: x ^ y, "|": lambda x, y: x | y, "&": lambda x, y: x & y}[op]
                if op == "|":
                    n = max(len(a), len(b))
                    a, b = a.ljust(n, b"\0"), b.ljust(n, b"\0")
                return ("v", bytes(f(x, y) for x, y in zip(a, b)))
            x, y = _as_int(a), _as_int(b)
            if x is None or y is None:
                return ("v", None)
            r = {"+": x + y, "-": x - y, "*": x * y, "^": x ^ y, "|": x | y, "&": x & y}[op]
            return ("v", r if abs(r) < 1 << 63 else None)

        return ("d", [("n", left, scope), ("n", right, scope)], combine)

    def _plan_array(self, node: tree_sitter.Node, scope: int) -> tuple:
        entries: list[tuple[_Task | None, _Task]] = []
        for el in node.named_children:
            if el.type != "array_element_initializer":
                continue
            kids = el.named_children
            if len(kids) == 1 and kids[0].type not in ("variadic_unpacking", "by_ref"):
                entries.append((None, ("n", kids[0], scope)))
            elif len(kids) == 2:
                entries.append((("n", kids[0], scope), ("n", kids[1], scope)))
            else:
                return ("v", None)
            if len(entries) > MAX_ARRAY:
                return ("v", None)
        deps = [t for k, v in entries for t in ((k, v) if k is not None else (v,))]

        def combine(vals: list[Value]) -> tuple:
            it = iter(vals)
            out: dict = {}
            for k, _ in entries:
                key = next(it) if k is not None else None
                val = next(it)
                if not _dict_set(out, key, val, auto=k is None):
                    return ("v", None)
            return ("v", out)

        return ("d", deps, combine)

    def _plan_variable(self, name: str, pos: int, scope: int) -> tuple:
        key = (scope, name)
        i = bisect.bisect_right(self.ends.get(key, ()), pos) - 1
        if i < 0:
            return ("v", None)
        return ("d", [("a", scope, name, i)], lambda v: ("v", v[0]))

    def _plan_assignment(self, task: _Task) -> tuple:
        _, scope, name, i = task
        asg = self.assignments[(scope, name)][i]
        if asg.rhs is None or asg.kind in ("other", "wild"):
            return ("v", None)
        rhs = ("n", asg.rhs, scope)
        if asg.kind == "set":
            return ("d", [rhs], lambda v: ("v", v[0]))
        prev = [("a", scope, name, i - 1)] if i > 0 else []
        if asg.kind == "concat":

            def concat(v: list[Value]) -> tuple:
                before = _as_bytes(v[0]) if prev else b""
                after = _as_bytes(v[-1])
                return ("v", None if before is None or after is None else before + after)

            return ("d", [*prev, rhs], concat)
        key = [("n", asg.key, scope)] if asg.key is not None else []

        def elem(v: list[Value]) -> tuple:
            base = v[0] if prev else {}
            if not isinstance(base, dict):
                return ("v", None)
            out = dict(base)
            k = v[len(prev)] if key else None
            return ("v", out if _dict_set(out, k, v[-1], auto=not key) else None)

        return ("d", [*prev, *key, rhs], elem)

    def _plan_call(self, node: tree_sitter.Node, scope: int) -> tuple:
        fn = node.child_by_field_name("function")
        if fn is None or fn.type not in ("name", "qualified_name"):
            return ("v", None)
        name = normalise_name(self.data[fn.start_byte : fn.end_byte])
        impl = PURE_FUNCTIONS.get(name)
        args = call_arguments(node)
        if impl is None or args is None:
            return ("v", None)
        return ("d", [("n", a, scope) for a in args], lambda v: ("v", impl(*v)))


def _cap(v: Value) -> Value:
    if isinstance(v, bytes) and len(v) > MAX_VALUE:
        return None
    if isinstance(v, dict) and len(v) > MAX_ARRAY:
        return None
    return v


def _dict_set(out: dict, key: Value, val: Value, *, auto: bool) -> bool:
    if auto:
        ints = [k for k in out if isinstance(k, int)]
        out[max(ints) + 1 if ints else 0] = val
        return True
    if isinstance(key, bytes) and re.fullmatch(rb"-?[1-9]\d{0,17}|0", key):
        key = int(key)
    if not isinstance(key, bytes | int):
        return False
    out[key] = val
    return True


def _subscript(base: Value, index: Value) -> Value:
    if isinstance(base, dict):
        if isinstance(index, bytes) and re.fullmatch(rb"-?[1-9]\d{0,17}|0", index):
            index = int(index)
        return base.get(index) if isinstance(index, bytes | int) else None
    if isinstance(base, bytes):
        i = _as_int(index)
        if i is None:
            return None
        if i < 0:
            i += len(base)
        return base[i : i + 1] if 0 <= i < len(base) else None
    return None


def call_arguments(node: tree_sitter.Node) -> list[tree_sitter.Node] | None:
    """The positional argument expressions of a call; None when there are spreads/named args."""
    args = node.child_by_field_name("arguments")
    if args is None:
        args = next((c for c in node.named_children if c.type == "arguments"), None)
    if args is None:
        return []
    out = []
    for a in args.named_children:
        if a.type == "variadic_placeholder":
            continue
        if a.type != "argument" or a.child_by_field_name("name") is not None:
            return None
        kids = a.named_children
        if len(kids) != 1 or kids[0].type == "variadic_unpacking":
            return None
        out.append(kids[0])
    return out


# --------------------------------------------------------------------------------------------
# Classifying call sites
# --------------------------------------------------------------------------------------------

_DYNAMIC_CALLABLE_TYPES = _names(
    """variable_name dynamic_variable_name subscript_expression function_call_expression
    binary_expression parenthesized_expression encapsed_string conditional_expression"""
)


def _valid_name(value: Value) -> str | None:
    b = _as_bytes(value) if not isinstance(value, int) else None
    if b is None or len(b) > 256:
        return None
    b = b.strip()
    if not _NAME_RE.fullmatch(b):
        return None
    return normalise_name(b)


def _has_e_modifier(pattern: bytes) -> bool:
    p = pattern.lstrip()
    if len(p) < 2:
        return False
    d = p[:1]
    if d.isalnum() or d == b"\\":
        return False
    close = {b"(": b")", b"[": b"]", b"{": b"}", b"<": b">"}.get(d, d)
    j = p.rfind(close)
    return j > 0 and b"e" in p[j + 1 :]


class _Classifier:
    def __init__(self, index: FileIndex, folder: Folder):
        self.index, self.folder, self.data = index, folder, index.data
        self.calls: list[CriticalCall] = []
        self.functions: collections.Counter[str] = collections.Counter()

    def add(self, site: Site, name: str, category: str, how: str, tainted: bool) -> None:
        node = site.node
        self.calls.append(
            CriticalCall(
                name,
                category,
                how,
                node.start_byte,
                node.end_byte,
                node.start_point[0] + 1,
                tainted,
            )
        )

    def site_tainted(self, site: Site) -> bool:
        return site.has_source or any(self.index.is_tainted(site.scope, v) for v in site.reads)

    def run(self) -> None:
        for site in self.index.sites:
            t = site.node.type
            if t == "function_call_expression":
                self._function_call(site)
            elif t in _INCLUDE_TYPES:
                self._include(site, _INCLUDE_TYPES[t])
            elif t == "shell_command_expression":
                self.functions["backtick"] += 1
                self.add(site, "backtick", "program_execution", "backtick", self.site_tainted(site))
            elif t == "object_creation_expression":
                cls = site.node.named_children[0] if site.node.named_child_count else None
                if cls is not None and cls.type in ("name", "qualified_name"):
                    if (
                        normalise_name(self.data[cls.start_byte : cls.end_byte])
                        == "reflectionfunction"
                    ):
                        self.add(
                            site,
                            "reflectionfunction",
                            "code_execution",
                            "direct",
                            self.site_tainted(site),
                        )
                        self._callback(site, 0)
            elif t == "scoped_call_expression":  # Closure::fromCallable
                self._callback(site, 0)

    def _function_call(self, site: Site) -> None:
        node, data = site.node, self.data
        fn = node.child_by_field_name("function")
        if fn is None:
            return
        tainted = self.site_tainted(site)
        if fn.type in ("name", "qualified_name", "relative_name"):
            name = normalise_name(data[fn.start_byte : fn.end_byte])
            how = "construct" if name == "eval" else "direct"
        else:
            value = self.folder.fold(fn, site.scope)
            if value is CLOSURE or isinstance(value, dict):
                return
            name = _valid_name(value)
            if name is None:
                self.functions["dynamic_call"] += 1
                self.add(site, "dynamic_call", "code_execution", "dynamic", tainted)
                return
            asg = self.folder.assignment_used(fn, site.scope)
            plain = asg is not None and asg.kind == "set" and _is_literal(asg.rhs)
            how = "variable" if plain else "assembled"
        self.functions[name] += 1
        if name in FILTER_FUNCTIONS:
            self._filter(site, name, how, tainted)
            return
        if name in CONDITIONAL:
            self._conditional(site, name, tainted)
            return
        category = category_of(name)
        if name in CALLBACK_ARGS:
            args = call_arguments(node)
            idx = CALLBACK_ARGS[name]
            present = args is None or len(args) > idx
            if category is not None and (present or category != "callbacks"):
                self.add(site, name, category, how, tainted)
            self._callback(site, idx)
        elif category is not None:
            self.add(site, name, category, how, tainted)

    def _conditional(self, site: Site, name: str, tainted: bool) -> None:
        args = call_arguments(site.node) or []
        if name in ("preg_replace", "preg_filter"):
            pattern = self.folder.fold(args[0], site.scope) if args else None
            patterns = pattern.values() if isinstance(pattern, dict) else [pattern]
            if any(isinstance(p, bytes) and _has_e_modifier(p) for p in patterns):
                self.add(site, name, CONDITIONAL[name], "preg_e", tainted)
        elif name in ("mb_ereg_replace", "mb_eregi_replace"):
            option = self.folder.fold(args[3], site.scope) if len(args) > 3 else None
            if isinstance(option, bytes) and b"e" in option:
                self.add(site, name, CONDITIONAL[name], "preg_e", tainted)
        else:  # file_get_contents / fopen / file of a URL
            path = self.folder.fold(args[0], site.scope) if args else None
            if isinstance(path, bytes) and path.strip().lower().startswith(_URL_SCHEMES):
                self.add(site, name, CONDITIONAL[name], "direct", tainted)

    def _filter(self, site: Site, name: str, how: str, tainted: bool) -> None:
        """``filter_var($x, FILTER_CALLBACK, ['options' => cb])`` and friends call ``cb``."""
        args = call_arguments(site.node)
        if not args:
            return
        filter_at, options_at = FILTER_FUNCTIONS[name]
        if len(args) <= options_at:
            return
        if filter_at is not None:
            if _as_int(self.folder.fold(args[filter_at], site.scope)) != FILTER_CALLBACK:
                return
            callables = self._entry(args[options_at], b"options", site.scope)
        else:
            callables = self._definitions(args[options_at], site.scope)
        if not callables:
            return
        self.add(site, name, "callbacks", how, tainted)
        for value, node in callables:
            self._callable_value(site, value, node)

    def _entry(
        self, node: tree_sitter.Node, key: bytes, scope: int
    ) -> list[tuple[Value, tree_sitter.Node]]:
        """``[(value, node)]`` of the entry ``key`` of the array ``node``, ``[]`` without one.

        A literal array is searched syntactically (the value keeps its own node, so an
        unresolvable callable there is seen as such); otherwise the array is folded, and an
        array that cannot be folded gives an unknown value.
        """
        if node.type == "array_creation_expression":
            for el in node.named_children:
                if el.type == "array_element_initializer" and el.named_child_count == 2:
                    k, v = el.named_children
                    if _as_bytes(self.folder.fold(k, scope)) == key:
                        return [(self.folder.fold(v, scope), v)]
            return []
        value = self.folder.fold(node, scope)
        if isinstance(value, dict):
            return [(value[key], node)] if key in value else []
        return [(None, node)] if value is None else []

    def _definitions(
        self, node: tree_sitter.Node, scope: int
    ) -> list[tuple[Value, tree_sitter.Node]]:
        """The callables of the FILTER_CALLBACK entries of a ``filter_*_array`` definition."""
        out: list[tuple[Value, tree_sitter.Node]] = []
        if node.type == "array_creation_expression":
            specs = [
                el.named_children[-1]
                for el in node.named_children[:MAX_FILTER_DEFINITIONS]
                if el.type == "array_element_initializer" and el.named_child_count in (1, 2)
            ]
            for spec in specs:
                f = self._entry(spec, b"filter", scope)
                if f and _as_int(f[0][0]) == FILTER_CALLBACK:
                    out += self._entry(spec, b"options", scope)
            return out
        value = self.folder.fold(node, scope)
        if isinstance(value, dict):
            for spec in list(value.values())[:MAX_FILTER_DEFINITIONS]:
                if isinstance(spec, dict) and _as_int(spec.get(b"filter")) == FILTER_CALLBACK:
                    if b"options" in spec:
                        out.append((spec[b"options"], node))
        return out

    def _include(self, site: Site, name: str) -> None:
        self.functions[name] += 1
        operand = site.node.named_children[0] if site.node.named_child_count else None
        tainted = self.site_tainted(site)
        value = self.folder.fold(operand, site.scope) if operand is not None else None
        wrapper = isinstance(value, bytes) and any(w in value.lower() for w in _WRAPPERS)
        if tainted or wrapper:
            self.add(site, name, CONDITIONAL[name], "construct", tainted)

    def _callback(self, site: Site, idx: int) -> None:
        args = call_arguments(site.node)
        if not args or len(args) <= idx:
            return
        arg = args[idx]
        value = self.folder.fold(arg, site.scope)
        if value is CLOSURE or isinstance(value, dict):
            if isinstance(value, dict):  # preg_replace_callback_array: pattern => callable
                for v in list(value.values())[:16]:
                    self._callable_value(site, v, arg)
            return
        self._callable_value(site, value, arg)

    def _callable_value(self, site: Site, value: Value, arg: tree_sitter.Node) -> None:
        if value is CLOSURE or isinstance(value, dict):
            return
        tainted = self.site_tainted(site)
        name = _valid_name(value)
        if name is not None:
            self.functions[name] += 1
            category = category_of(name)
            if category is not None:
                self.add(site, name, category, "callback", tainted)
        elif value is None and arg.type in _DYNAMIC_CALLABLE_TYPES:
            self.functions["dynamic_call"] += 1
            self.add(site, "dynamic_call", "code_execution", "dynamic", tainted)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def as_source(source: php.PhpSource | bytes | str | os.PathLike) -> php.PhpSource:
    """A :class:`~jaxpapers.security.webshell.php.PhpSource` from a source, bytes or a path."""
    if isinstance(source, php.PhpSource):
        return source
    if isinstance(source, bytes | bytearray | str | os.PathLike):
        return php.read_source(source)
    raise TypeError(f"analyse expects a PhpSource, bytes or a path, got {type(source).__name__}")


def analyse(
    source: php.PhpSource | bytes | str | os.PathLike, *, max_nodes: int = MAX_NODES
) -> Analysis:
    """Runs the Critical Function Filter on one file (see the module docstring).

    Binary or unreadable sources give an empty :class:`Analysis` whose ``notes`` say why.
    """
    if max_nodes <= 0:
        raise ValueError(f"max_nodes must be positive, got {max_nodes}")
    src = as_source(source)
    out = Analysis(name=src.name, notes=list(src.notes))
    if not src.ok:
        out.skipped = src.skipped
        out.notes.append(f"skipped: {src.skipped}")
        return out
    data = src.data
    tree = php.parse(data)
    walker = _Walker(data, tree, max_nodes)
    walker.run()
    assignments: dict[tuple[int, str], list[Assignment]] = collections.defaultdict(list)
    for asg in walker.asgs:
        if asg.var is not None:
            assignments[(asg.scope, asg.var)].append(asg)
    for lst in assignments.values():
        lst.sort(key=lambda a: a.node.end_byte)
    folder = Folder(data, dict(assignments))
    walker.resolve_late(folder)  # before taint: folded names can be sources
    tainted, wild = _propagate_taint(
        walker.asgs, walker.sites, walker.importer_scopes, walker.links
    )
    index = FileIndex(data, tree, walker.sites, folder.assignments, tainted, wild)
    index.complete = walker.complete
    index.site_by_span = {(s.node.start_byte, s.node.end_byte): s for s in walker.sites}
    classifier = _Classifier(index, folder)
    classifier.run()
    out.calls = classifier.calls
    out.sources = walker.sources
    out.functions = classifier.functions
    out.methods = walker.methods
    out.index = index
    if not walker.complete:
        out.notes.append(
            f"stopped after {max_nodes} syntax nodes: the rest of the file was not analysed"
        )
    if walker.errors:
        out.notes.append(f"{walker.errors} syntax error region(s); analysed what parsed")
    if folder.exhausted:
        out.notes.append("constant folding budget exhausted: some names left unresolved")
    return out


def analyse_many(
    sources: Iterable[php.PhpSource | bytes | str | os.PathLike], *, keep_index: bool = False
) -> list[Analysis]:
    """:func:`analyse` over many files; a file that fails gives an Analysis with a note.

    ``keep_index=False`` (the default) drops each syntax tree to keep memory flat;
    :func:`jaxpapers.security.webshell.extract.extract` re-analyses when it needs one.
    """
    out = []
    for i, source in enumerate(sources):
        name = getattr(source, "name", None) or (
            os.fspath(source) if isinstance(source, str | os.PathLike) else f"<item {i}>"
        )
        try:
            result = analyse(source)
        except Exception as e:  # noqa: BLE001 -- one bad file never stops a corpus run
            result = Analysis(name=name, notes=[f"analysis failed: {type(e).__name__}: {e}"])
            result.skipped = "analysis failed"
        if not keep_index:
            result.index = None
        out.append(result)
    return out
