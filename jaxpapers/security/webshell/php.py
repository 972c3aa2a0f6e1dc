"""Safe reading and parsing of PHP source with tree-sitter's PHP grammar.

Nothing here (or anywhere in :mod:`jaxpapers.security.webshell`) executes or
evaluates the code it analyses: sources are bytes handed to tree-sitter, a
parser generated from a grammar, and every walk over the tree is iterative, so
pathological nesting cannot exhaust Python's stack.

* :func:`read_source` turns a path or bytes into a :class:`PhpSource`: binary
  files (without a PHP open tag: :func:`looks_binary`) are refused with a message, files over ``max_bytes`` are cut to their
  first ``max_bytes`` (with a note), and bytes that are not UTF-8 are kept as
  they are (tree-sitter works on bytes; text shown to people is decoded with
  replacement characters).
* :func:`parse` gives the tree; tree-sitter recovers from broken code with
  ``ERROR`` nodes rather than failing, so every file yields a tree.
* :func:`walk` is a pre-order iterator over a (sub)tree with its depth, and
  :func:`text` the source text of a node.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Collection, Iterator

import tree_sitter
import tree_sitter_php

MAX_BYTES = 16 << 20  # a 1.38M-token WebShell is ~5 MB
_TEXT_CONTROL = frozenset(b"\t\n\r\f\b\x1b")
_PHP_TAG = re.compile(rb"<\?(?:php|=)", re.IGNORECASE)


@functools.cache
def language() -> tree_sitter.Language:
    """The PHP grammar (with inline HTML), shared by every parser."""
    return tree_sitter.Language(tree_sitter_php.language_php())


def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(language())


@dataclasses.dataclass
class PhpSource:
    """One file's bytes, or why it was skipped.

    ``skipped`` is a message when the file cannot be analysed at all (binary,
    unreadable); ``notes`` are per-file messages for files that were analysed
    with a caveat (truncated, not UTF-8).
    """

    name: str
    data: bytes
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None


def looks_binary(data: bytes, sample: int = 8192) -> bool:
    """No PHP open tag anywhere, and NUL bytes or over 30% control bytes in the first
    ``sample`` bytes.

    A file with a ``<?php`` or ``<?=`` tag is always analysed: WebShells carry raw
    ``gzdeflate`` bytes in string literals, and image files with PHP appended (polyglots)
    are a WebShell family of their own.
    """
    head = data[:sample]
    if not head or _PHP_TAG.search(data):
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROL)
    return control > 0.3 * len(head)


def read_source(
    source: str | os.PathLike | bytes, *, name: str | None = None, max_bytes: int = MAX_BYTES
) -> PhpSource:
    """Reads a file (or wraps bytes) for analysis; never raises for bad content."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if isinstance(source, bytes | bytearray):
        data, name = bytes(source), name or "<bytes>"
    else:
        name = name or os.fspath(source)
        try:
            with open(source, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            return PhpSource(name, b"", skipped=f"unreadable: {e}")
    out = PhpSource(name, data)
    if len(data) > max_bytes:
        out.data = data[:max_bytes]
        out.notes.append(f"truncated to its first {max_bytes} bytes")
    if looks_binary(out.data):
        out.skipped = "binary file (NUL or control bytes), not PHP source"
        return out
    try:
        out.data.decode("utf-8")
    except UnicodeDecodeError:
        out.notes.append("not valid UTF-8; analysed as bytes")
    return out


def parse(data: bytes) -> tree_sitter.Tree:
    """The tree of ``data`` (broken code gives ERROR/MISSING nodes, never an exception)."""
    return parser().parse(data)


def text(node: tree_sitter.Node, data: bytes) -> str:
    """The source text of ``node`` (undecodable bytes replaced)."""
    return data[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def walk(
    node: tree_sitter.Node, *, named_only: bool = True, skip: Collection[str] = ()
) -> Iterator[tuple[tree_sitter.Node, int]]:
    """Pre-order ``(node, depth)`` over ``node``'s subtree, without recursion.

    Nodes whose type is in ``skip`` are yielded but not entered.
    """
    cursor = node.walk()
    depth = 0
    while True:
        current = cursor.node
        if not named_only or current.is_named:
            yield current, depth
        if (not skip or current.type not in skip) and cursor.goto_first_child():
            depth += 1
            continue
        while depth == 0 or not cursor.goto_next_sibling():
            if depth == 0 or not cursor.goto_parent():
                return
            depth -= 1
