"""BFAD's Context-Aware Code Extraction: budgets, ranking, slices, robustness (hypothesis)."""

import base64
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.security.webshell.critical import analyse, analyse_many
from jaxpapers.security.webshell.extract import SEPARATOR, approx_tokens, extract


def filler(n: int, tag: str = "pad") -> bytes:
    return b"".join(b"echo 'filler %s %d here';\n" % (tag.encode(), i) for i in range(n))


SHELL = (
    b"<?php\n"
    b"// a small file-manager shell with padding\n"
    b"class Panel extends Base {\n"
    b"    public function run($req) {\n"
    b"        $a = $_POST['cmd'];\n"
    + filler(30, "m1")
    + b"        $b = base64_decode($a);\n"
    + filler(30, "m2")
    + b"        $c = $b . ' 2>&1';\n"
    + filler(30, "m3")
    + b"        system($c);\n"
    b"    }\n"
    b"}\n"
    + filler(60, "top")
    + b"function info() {\n    phpinfo();\n}\n"
    + filler(60, "end")
    + b"$f = 'pass'.'thru';\n$f('id');\n"
)


def call_text(data: bytes, call) -> str:
    return data[call.start_byte : call.end_byte].decode()


def test_approx_tokens_known_answers():
    # func|tion|foo|x|retu|rn|1 = 7 word pieces; ( $ ) { ; } = 6 symbols
    assert approx_tokens("function foo($x) { return 1; }") == 13
    assert approx_tokens("") == 0 and approx_tokens("   \n\t") == 0
    assert approx_tokens("a" * 4000) == 1000  # long words are not one token


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987])
def test_budget_is_never_exceeded(budget):
    a = analyse(SHELL)
    for count in (approx_tokens, len, lambda s: len(s.encode()) // 3 + 1):
        for context in (0, 2):
            ex = extract(SHELL, a, budget=budget, count_tokens=count, context=context)
            assert ex.tokens == count(ex.text) <= budget
            assert sorted(ex.kept + ex.dropped, key=id) == sorted(a.calls, key=id)


def test_keeps_every_call_when_they_fit():
    a = analyse(SHELL)
    assert approx_tokens(SHELL.decode()) > 2000
    ex = extract(SHELL, a, budget=600)
    assert not ex.dropped and len(ex.kept) == len(a.calls) == 4
    for call in a.calls:
        assert call_text(SHELL, call) in ex.text
    assert "filler top 30" not in ex.text  # far from every call
    assert SEPARATOR in ex.text


def test_slice_brings_in_the_assignment_chain_and_signature():
    a = analyse(SHELL)
    ex = extract(SHELL, a, budget=150, context=0, weights={"system": 10.0})
    for line in ("$a = $_POST['cmd'];", "$b = base64_decode($a);", "$c = $b . ' 2>&1';"):
        assert line in ex.text
    assert "class Panel extends Base" in ex.text and "public function run($req)" in ex.text
    assert "filler m1" not in ex.text and "filler m2" not in ex.text  # no context asked
    # source order: the chain comes before the sink
    assert ex.text.index("$_POST") < ex.text.index("base64_decode(") < ex.text.index("system(")


def test_context_statements_come_with_the_call():
    src = b"<?php\n" + filler(50, "a") + b"system('id');\n" + filler(50, "b")
    ex = extract(src, budget=60, context=2)
    assert "filler a 48" in ex.text and "filler a 49" in ex.text and "filler b 1" in ex.text
    assert "filler a 47" not in ex.text and "filler b 2" not in ex.text
    assert "system('id');" in ex.text


def test_drops_the_lowest_weight_units_first():
    parts = [b"<?php\n"]
    funcs = ["system", "exec", "passthru", "phpinfo", "getenv", "base64_decode"]
    for i, fn in enumerate(funcs):
        parts.append(filler(20, f"g{i}") + f"{fn}('x{i}');\n".encode())
    src = b"".join(parts)
    weights = {"system": 9.0, "exec": 8.0, "passthru": 7.0, "phpinfo": 3.0, "getenv": 2.0}
    a = analyse(src)
    prev_kept: set[str] = set()
    for budget in (8, 16, 24, 40, 60, 400):
        ex = extract(src, a, budget=budget, weights=weights, context=0)
        kept = {c.name for c in ex.kept}
        dropped = {c.name for c in ex.dropped}
        if kept and dropped:
            assert min(weights.get(n, 1.0) for n in kept) >= max(
                weights.get(n, 1.0) for n in dropped
            )
        assert prev_kept <= kept  # a bigger budget never loses a call
        prev_kept = kept
    assert prev_kept == set(funcs)


def test_taint_bonus_breaks_ties():
    src = b"<?php\n" + filler(40) + b"exec('ls');\n" + filler(40) + b"exec($_GET['c']);\n"
    ex = extract(src, budget=20, context=0)
    assert [c.tainted for c in ex.kept] == [True]


def test_whole_file_when_it_fits_and_prefix_without_calls():
    small = b"<?php system($_GET['c']); echo 1;"
    ex = extract(small, budget=100)
    assert ex.text == small.decode() and not ex.truncated and len(ex.kept) == 1
    plain = b"<?php\n" + filler(100)
    ex = extract(plain, budget=50)
    assert ex.text.startswith("<?php\necho 'filler pad 0 here';") and ex.tokens <= 50
    assert ex.truncated and "bytes cut] */" in ex.text and ex.kept == ex.dropped == []


def test_stale_analysis_is_recomputed():
    a = analyse_many([SHELL])[0]
    assert a.index is None
    assert extract(SHELL, a, budget=150) == extract(SHELL, analyse(SHELL), budget=150)


def test_bad_arguments():
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="budget"):
            extract(SHELL, budget=bad)
    with pytest.raises(ValueError, match="context"):
        extract(SHELL, budget=10, context=-1)
    with pytest.raises(ValueError, match="weights"):
        extract(SHELL, budget=10, weights=[("system", 1.0)])
    with pytest.raises(ValueError, match="count_tokens"):
        extract(SHELL, budget=1, count_tokens=lambda s: len(s) + 2)


def test_binary_source_gives_empty_text():
    ex = extract(b"\x00\x01\x02" * 100, budget=50)
    assert ex.text == "" and ex.tokens == 0 and ex.kept == []


def test_huge_one_line_obfuscated_file():
    payload = base64.b64encode(os.urandom(3_700_000))  # ~5 MB on one line
    src = (
        b"<?php $k='ba'.'se64_decode'; @eval(gzinflate($k('"
        + payload
        + b"'))); system($_GET['c']);"
    )
    assert len(src) > 4_900_000
    t = time.perf_counter()
    a = analyse(src)
    ex = extract(src, a, budget=512)
    assert time.perf_counter() - t < 5.0
    assert ex.tokens == approx_tokens(ex.text) <= 512
    assert {c.name for c in ex.kept} >= {"eval", "system"}
    assert "bytes cut] */" in ex.text and "@eval(gzinflate($k('" in ex.text
    assert ex.truncated


def test_deep_nesting_and_non_utf8():
    deep = b"<?php $x = " + b"(" * 50_000 + b"1" + b")" * 50_000 + b"; system($x);"
    ex = extract(deep, budget=30)
    assert "system($x);" in ex.text and ex.tokens <= 30
    bad = b"<?php $a = '\xff\xfe'; system('\xc3\x28' . $_GET[1]); // \xe2\x82" + filler(50)
    ex = extract(bad, budget=20)
    assert ex.tokens <= 20 and "\ufffd" in ex.text and [c.name for c in ex.kept] == ["system"]


# ---------------------------------------------------------------------------- properties

TOKENS = [
    "$a",
    "$f",
    "$_GET",
    "$_POST['c']",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ";",
    ".",
    "=",
    ".=",
    ",",
    "'sys'",
    "'tem'",
    '"ev"',
    "system",
    "eval",
    "assert",
    "`",
    '"',
    "'",
    "function",
    "class",
    "if",
    "foreach",
    "as",
    "=>",
    "strrev",
    "base64_decode",
    "chr(115)",
    "$$",
    "${",
    "@",
    "<<<EOT\n",
    "\nEOT;\n",
    "?>",
    "<?php",
    "array_map",
    "new",
    "ReflectionFunction",
    "\\",
    "/*",
    "*/",
    "//",
    "\n",
    " ",
    "->",
    "::",
    "include",
    "preg_replace",
    "'/x/e'",
    "0x1F",
    "use",
    "fn",
    "return",
    "implode",
    "\xff",
    "\u00e9",
]
SAMPLES = [
    SHELL,
    b"<?php $f='sys'.'tem'; $f($_GET['c']); $g = strrev('tressa'); $g($_POST['x']);",
    b"<?php foreach ($_GET as $k => $v) { $$k = $v; } array_map('system', [$cmd]);"
    b" $h = function () use ($cmd) { echo `$cmd`; }; preg_replace('/.*/e', $_POST['p'], '');",
]


def check(data: bytes, budget: int) -> None:
    a = analyse(data)
    for c in a.calls:
        assert 0 <= c.start_byte < c.end_byte <= len(data)
    ex = extract(data, a, budget=budget, context=1)
    assert ex.tokens == approx_tokens(ex.text) <= budget
    assert len(ex.kept) + len(ex.dropped) == len(a.calls)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 300))
def test_random_bytes_never_raise(data, budget):
    check(data, budget)
    check(b"<?php " + data, budget)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=300), st.integers(1, 300))
def test_token_soups_never_raise(tokens, budget):
    check(("<?php " + " ".join(tokens)).encode("utf-8"), budget)
    check(("<?php " + "".join(tokens)).encode("utf-8"), budget)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(data)))
        j = draw(st.integers(i, min(len(data), i + 200)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete":
            del data[i:j]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=40))
        else:
            k = draw(st.integers(0, len(data)))
            data[k:k] = data[i:j]
    return bytes(data)


@settings(max_examples=100, deadline=None)
@given(mutated(), st.integers(1, 400))
def test_mutated_samples_never_raise(data, budget):
    check(data, budget)
