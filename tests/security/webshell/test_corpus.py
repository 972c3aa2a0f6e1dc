"""Tests of the embedded PHP corpus: the generator, the split, the on-disk reader and writer.

The obfuscation check decodes every obfuscated WebShell with a small deobfuscator written
here (regular expressions over the PHP text plus Python's base64/zlib/codecs), independent
of the generator's encoder, so the layers are shown to be real.
"""

from __future__ import annotations

import base64
import codecs
import collections
import logging
import os
import re
import zlib

import numpy as np
import pytest

from jaxpapers.security.webshell import corpus, php

N = 600

# ---------------------------------------------------------------------------------------------
# An independent deobfuscator for the generator's layered forms.

DECODERS = {
    "base64_decode": lambda b: base64.b64decode(b, validate=True),
    "gzinflate": lambda b: zlib.decompress(b, -15),
    "gzuncompress": zlib.decompress,
    "str_rot13": lambda b: codecs.encode(b.decode("latin-1"), "rot13").encode("latin-1"),
    "strrev": lambda b: b[::-1],
    "hex2bin": lambda b: bytes.fromhex(b.decode("ascii")),
}
TERM = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|chr\(\d+\)|\$\w+"
EXPR = rf"(?:{TERM})(?:\s*\.\s*(?:{TERM}))*"
CALL = re.compile(rf"(?:eval|assert)\s*\(\s*((?:\w+\s*\(\s*)+)({EXPR})\s*\)", re.I | re.S)
SINK = re.compile(
    r"\b(eval|assert|system|shell_exec|passthru|exec|popen|proc_open)\s*\([^;]*?"
    r"\$_(GET|POST|REQUEST|COOKIE)",
    re.I,
)


def php_value(expr: str, text: str) -> bytes:
    """The value of a concatenation of literals / chr() / variables assigned such in ``text``."""
    out = b""
    for m in re.finditer(TERM, expr):
        t = m.group(0)
        if t.startswith("'"):
            out += re.sub(r"\\([\\'])", r"\1", t[1:-1]).encode("latin-1")
        elif t.startswith('"'):
            body = t[1:-1]
            assert re.fullmatch(r"(?:\\x[0-9a-f]{2})*", body), body[:40]
            out += bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", body))
        elif t.startswith("chr("):
            out += bytes([int(t[4:-1])])
        else:
            a = re.search(re.escape(t) + rf"\s*=\s*({EXPR})\s*;", text)
            assert a, f"no assignment of {t}"
            out += php_value(a.group(1), text)
    return out


def peel(text: str) -> tuple[str, list[str]]:
    """Decodes eval(decoder(...)) levels until a sink on request input is visible."""
    used: list[str] = []
    for _ in range(5):
        if SINK.search(text):
            return text, used
        m = CALL.search(text)
        assert m, f"no decodable eval/assert in: {text[:300]!r}"
        names = [n.strip().lower() for n in m.group(1).split("(") if n.strip()]
        data = php_value(m.group(2), text)
        for name in reversed(names):
            data = DECODERS[name](data)
        used += names
        text = data.decode("utf-8")
    raise AssertionError(f"no sink after 5 levels: {text[:300]!r}")


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> list[corpus.Sample]:
    return corpus.generate(N, seed=0)


def text(s: corpus.Sample) -> str:
    return s.data.decode("utf-8", errors="replace")


def test_families_table():
    fams = corpus.families()
    names = [f.name for f in fams]
    assert len(names) == len(set(names))
    for label in (0, 1):
        weights = [f.weight for f in fams if f.label == label]
        assert sum(weights) == pytest.approx(1.0)
    assert {f.label for f in fams} == {0, 1}
    assert next(f for f in fams if f.name == "huge_obfuscated").weight == 0


def test_deterministic_and_unique_names():
    a = corpus.generate(150, seed=3)
    b = corpus.generate(150, seed=3)
    c = corpus.generate(150, seed=4)
    assert a == b
    assert a != c
    assert len({s.name for s in a}) == len(a)
    assert sum(x.data != y.data for x, y in zip(a, c)) > 100


@pytest.mark.parametrize("n,frac", [(600, 0.5), (101, 0.3), (10, 1.0), (7, 0.0)])
def test_label_balance_is_exact(n, frac):
    s = corpus.generate(n, seed=1, malicious_fraction=frac)
    labels = {f.name: f.label for f in corpus.families()}
    assert len(s) == n
    assert sum(x.label for x in s) == round(n * frac)
    for x in s:
        assert x.label == labels[x.family]
        assert x.name.startswith(f"{corpus.LABEL_DIRS[x.label]}/{x.family}/")


def test_every_family_appears_in_proportion(samples):
    counts = collections.Counter(s.family for s in samples)
    for f in corpus.families():
        if f.weight == 0:
            assert counts[f.name] == 0
            continue
        expected = N / 2 * f.weight
        assert abs(counts[f.name] - expected) <= 1, (f.name, counts[f.name], expected)


def test_every_family_appears_at_moderate_n():
    fams = {s.family for s in corpus.generate(60, seed=7)}
    assert fams == {f.name for f in corpus.families() if f.weight > 0}


def test_encode_layers_known_answers():
    assert corpus.encode_layers("abc", ["base64"]) == ("YWJj", ["base64_decode"])
    assert corpus.encode_layers("abc", ["strrev"]) == ("cba", ["strrev"])
    assert corpus.encode_layers("abc", ["hex"]) == ("616263", ["hex2bin"])
    assert corpus.encode_layers("abc", ["rot13"]) == ("nop", ["str_rot13"])
    enc, calls = corpus.encode_layers("abc", ["gzdeflate", "strrev"])
    assert calls == ["gzinflate", "base64_decode", "strrev"]
    assert zlib.decompress(base64.b64decode(enc[::-1]), -15) == b"abc"
    with pytest.raises(ValueError, match="layer names"):
        corpus.encode_layers("abc", ["rot47"])
    with pytest.raises(ValueError, match="layer names"):
        corpus.encode_layers("abc", [])


def test_obfuscated_layers_really_decode(samples):
    obf = [s for s in samples if s.family == "obfuscated"]
    assert len(obf) >= 50
    used_all: collections.Counter = collections.Counter()
    depths = collections.Counter()
    for s in obf:
        raw = text(s)
        assert not SINK.search(raw), s.name  # the sink is only visible after decoding
        decoded, used = peel(raw)
        assert used, s.name
        assert SINK.search(decoded)
        used_all.update(used)
        depths[len(used) - used.count("gzinflate") - used.count("gzuncompress")] += 1
    assert set(used_all) == set(DECODERS)  # every decoder is exercised
    assert max(depths) == 4 and min(depths) == 1  # 1-4 layers (gz*+base64 is one layer)
    raws = "".join(text(s) for s in obf)
    assert "chr(" in raws and "\\x" in raws  # the literal forms are exercised too


def test_hidden_snippets_layers_decode(samples):
    hidden = [s for s in samples if s.family == "hidden_in_benign"]
    for s in hidden:
        raw = text(s)
        assert len(s.data) > 1000, s.name  # a large benign host around a few lines
        if not SINK.search(raw) and CALL.search(raw):
            decoded, _ = peel(raw)
            assert SINK.search(decoded)


CRITICAL_IN_BENIGN = (
    r"\bbase64_decode\(", r"\bexec\(", r"\bshell_exec\(", r"\bpassthru\(", r"\bproc_open\(",
    r"\bcurl_exec\(", r"\barray_map\(", r"\barray_filter\(", r"\busort\(",
    r"\bregister_shutdown_function\(", r"\bpreg_replace_callback\(", r"\bcall_user_func(_array)?\(",
    r"\binclude\b", r"\bserialize\(", r"\bunserialize\(", r"\bmove_uploaded_file\(",
    r"\bfsockopen\(", r"\bphp_uname\(", r"\bgetenv\(", r"\$_POST\b", r"\$_GET\b", r"\bunlink\(",
    r"\bescapeshellarg\(", r"\bgzcompress\(", r"\bfile_put_contents\(", r"\bassert\(",
)  # fmt: skip


def test_benign_uses_critical_functions(samples):
    benign = [text(s) for s in samples if s.label == 0]
    for pat in CRITICAL_IN_BENIGN:
        hits = sum(bool(re.search(pat, t)) for t in benign)
        assert hits >= 1, pat


def test_no_single_keyword_separates(samples):
    y = np.array([s.label for s in samples])
    texts = [text(s) for s in samples]
    keywords = [*CRITICAL_IN_BENIGN, r"\beval\(", r"\bsystem\(", r"\bstrrev\(", r"\$_REQUEST\b"]
    for pat in keywords:
        has = np.array([bool(re.search(pat, t)) for t in texts])
        acc = max((has == y).mean(), (has != y).mean())
        assert acc < 0.72, (pat, acc)


def test_well_formed_php(samples):
    benign_errors = [
        s.name for s in samples if s.label == 0 and php.parse(s.data).root_node.has_error
    ]
    assert benign_errors == []
    shells = [s for s in samples if s.label == 1]
    ok = sum(not php.parse(s.data).root_node.has_error for s in shells)
    assert ok >= 0.95 * len(shells)


def test_sizes(samples):
    sizes = np.array([len(s.data) for s in samples])
    assert ((sizes >= 200) & (sizes <= 20_000)).mean() > 0.75
    lines = [s.data.count(b"\n") for s in samples if s.label == 0]
    assert min(lines) < 10 and max(lines) > 200  # a few lines to several hundred


def test_network_hosts_are_documentation_addresses(samples):
    for s in samples:
        for ip in re.findall(rb"\b\d{1,3}(?:\.\d{1,3}){3}\b", s.data):
            assert ip.startswith(
                (b"203.0.113.", b"198.51.100.", b"192.0.2.", b"127.", b"0.0.0.0")
            ), (
                s.name,
                ip,
            )
    rev = [text(s) for s in samples if s.family == "reverse_shell"]
    assert all(re.search(r"203\.0\.113\.|198\.51\.100\.", t) for t in rev)


def test_huge_samples():
    s = corpus.generate(
        40, seed=2, malicious_fraction=0.5, huge_fraction=0.05, huge_bytes=(120_000, 160_000)
    )
    huge = [x for x in s if x.family == "huge_obfuscated"]
    assert len(huge) == 2 and sum(x.label for x in s) == 20
    for x in huge:
        assert 60_000 <= len(x.data) <= 320_000, len(x.data)
        decoded, used = peel(text(x))
        assert used and SINK.search(decoded)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"n": 2.5},
        {"n": 10, "malicious_fraction": 1.5},
        {"n": 10, "huge_fraction": 0.6, "malicious_fraction": 0.5},
        {"n": 10, "huge_bytes": (10, 5)},
    ],
)
def test_generate_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        corpus.generate(**kwargs, seed=0)


def test_split_stratified_disjoint_deterministic(samples):
    for fractions in [(0.6, 0.4), (0.5, 0.25, 0.25)]:
        parts = corpus.split(samples, fractions, seed=0)
        assert parts == corpus.split(samples, fractions, seed=0)
        names = [s.name for p in parts for s in p]
        assert sorted(names) == sorted(s.name for s in samples)  # disjoint, complete
        for label in (0, 1):
            n_label = sum(s.label == label for s in samples)
            for p, f in zip(parts, fractions):
                assert abs(sum(s.label == label for s in p) - n_label * f) <= 1
        fam = collections.Counter(s.family for s in samples)
        for p, f in zip(parts, fractions):
            got = collections.Counter(s.family for s in p)
            for name, k in fam.items():
                assert abs(got[name] - k * f) <= 2, (name, got[name], k * f)
        index = {s.name: i for i, s in enumerate(samples)}
        for p in parts:  # input order kept
            assert [index[s.name] for s in p] == sorted(index[s.name] for s in p)
    assert corpus.split(samples, seed=1) != corpus.split(samples, seed=0)


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (1.2, -0.2), (), (0.0, 1.0)])
def test_split_rejects_bad_fractions(samples, fractions):
    with pytest.raises(ValueError, match="fractions"):
        corpus.split(samples, fractions, seed=0)


def test_write_read_round_trip(tmp_path, samples):
    subset = samples[:80]
    extra = [
        corpus.Sample("/abs/elsewhere/shell.phtml", b"<?php system($_GET['c']);", 1, "webshell"),
        corpus.Sample("notes", b"<?php echo 1;", 0, "misc"),
    ]
    written = corpus.write_corpus(subset + extra, tmp_path)
    assert len(written) == 82
    back = corpus.read_corpus(tmp_path)
    assert sorted(back, key=lambda s: s.name) == sorted(
        subset
        + [
            corpus.Sample("webshell/shell.phtml", extra[0].data, 1, "webshell"),
            corpus.Sample("benign/misc/notes.php", extra[1].data, 0, "misc"),
        ],
        key=lambda s: s.name,
    )


def test_write_corpus_rejects_collisions_and_unsafe_families(tmp_path):
    a = corpus.Sample("x/a.php", b"1", 0, "fam")
    b = corpus.Sample("y/a.php", b"2", 0, "fam")
    with pytest.raises(ValueError, match="both map"):
        corpus.write_corpus([a, b], tmp_path)
    with pytest.raises(ValueError, match="safe directory"):
        corpus.write_corpus([corpus.Sample("a.php", b"", 1, "../up")], tmp_path)
    with pytest.raises(ValueError, match="label"):
        corpus.write_corpus([corpus.Sample("a.php", b"", 2, "fam")], tmp_path)
    assert not os.listdir(tmp_path)


def test_read_corpus_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)not a directory.*webshell/.*benign/"):
        corpus.read_corpus(tmp_path / "missing")
    (tmp_path / "webshell").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing subdirectory benign/.*<family>"):
        corpus.read_corpus(tmp_path)
    (tmp_path / "benign").mkdir()
    assert corpus.read_corpus(tmp_path) == []
    with pytest.raises(ValueError, match="extensions"):
        corpus.read_corpus(tmp_path, extensions=("php",))


def test_read_corpus_families_skips_and_limits(tmp_path, caplog):
    (tmp_path / "webshell" / "b374k" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "benign" / "wordpress").mkdir(parents=True)
    (tmp_path / "webshell" / "b374k" / "deep" / "er" / "x.PHP").write_bytes(
        b"<?php eval($_POST[1]);"
    )
    (tmp_path / "webshell" / "top.php5").write_bytes(b"<?php system($_GET['c']);")
    (tmp_path / "webshell" / "pic.jpg").write_bytes(b"\xff\xd8\xff")  # not a PHP extension
    # An image with PHP appended is a WebShell (analysed); one without a PHP tag is binary.
    (tmp_path / "webshell" / "poly.php").write_bytes(b"GIF89a\x00\x00<?php eval($_POST[1]);")
    (tmp_path / "webshell" / "blob.php").write_bytes(b"\x89PNG\x00\x00\x01\x02\x03")
    (tmp_path / "benign" / "wordpress" / "index.php").write_bytes(b"<?php\n// Silence is golden.\n")
    (tmp_path / "benign" / "big.inc").write_bytes(b"<?php echo 1;" + b"/*x*/" * 100)
    (tmp_path / "benign" / "wordpress" / "gone.php").symlink_to(tmp_path / "nowhere.php")
    (tmp_path / "benign" / "loop").symlink_to(tmp_path / "benign", target_is_directory=True)
    with caplog.at_level(logging.INFO, logger=corpus.__name__):
        got = corpus.read_corpus(tmp_path, max_bytes=64)
    by_name = {s.name: s for s in got}
    assert sorted(by_name) == [
        "benign/big.inc",
        "benign/wordpress/index.php",
        "webshell/b374k/deep/er/x.PHP",
        "webshell/poly.php",
        "webshell/top.php5",
    ]
    assert by_name["webshell/b374k/deep/er/x.PHP"].family == "b374k"
    assert by_name["webshell/top.php5"].family == "webshell"
    assert by_name["benign/wordpress/index.php"] == corpus.Sample(
        "benign/wordpress/index.php", b"<?php\n// Silence is golden.\n", 0, "wordpress"
    )
    assert len(by_name["benign/big.inc"].data) == 64
    log = caplog.text
    assert "gone.php" in log and "unreadable" in log
    assert "blob.php" in log and "binary" in log and "poly.php" not in log
    assert "truncated" in log
    assert "loop" in log
    kept = corpus.read_corpus(tmp_path, keep_binary=True)
    assert "webshell/blob.php" in {s.name for s in kept}
