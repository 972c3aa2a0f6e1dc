"""BFAD's Critical Function Filter: categories, obfuscated callees, taint, robustness."""

import collections

import pytest

from jaxpapers.security.webshell import php
from jaxpapers.security.webshell.critical import (
    CATEGORIES,
    CONDITIONAL,
    HOWS,
    PAPER_CATEGORIES,
    USER_INPUT_SOURCES,
    analyse,
    analyse_many,
    category_of,
)


def found(code: bytes) -> set[tuple[str, str, str, bool]]:
    """(name, category, how, tainted) of every critical call in ``<?php code``."""
    a = analyse(b"<?php " + code)
    return {(c.name, c.category, c.how, c.tainted) for c in a.calls}


def names(code: bytes) -> set[str]:
    return {c[0] for c in found(code)}


# ---------------------------------------------------------------------------- the lists


def test_categories_are_disjoint_lowercase_and_cover_the_paper():
    assert set(PAPER_CATEGORIES) <= set(CATEGORIES)
    seen: dict[str, str] = {}
    for category, members in CATEGORIES.items():
        for name in members:
            assert name == name.lower() and name not in seen, (name, category, seen.get(name))
            seen[name] = category
    assert not set(CONDITIONAL) & set(seen)
    for name in ("eval", "assert", "create_function", "call_user_func", "system", "exec"):
        assert category_of(name) in ("code_execution", "program_execution")
    assert category_of("curl_setopt") == "network"  # prefix rule
    assert category_of("strlen") is None and category_of("include") is None
    assert {"$_GET", "$_POST", "$_REQUEST", "$_COOKIE", "php://input"} <= USER_INPUT_SOURCES


# ---------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    "code, expected",
    [
        # direct, mixed case, fully qualified
        (b"SyStEm('id');", ("system", "program_execution", "direct", False)),
        (b"\\system('id');", ("system", "program_execution", "direct", False)),
        (b"\\EvAl($_POST['x']);", ("eval", "code_execution", "construct", True)),
        (b"passthru($_GET['c']);", ("passthru", "program_execution", "direct", True)),
        (b"$p = proc_open('sh', $d, $pipes);", ("proc_open", "program_execution", "direct", False)),
        # assembled variable functions
        (b"$f='sys'.'tem'; $f($_GET[c]);", ("system", "program_execution", "assembled", True)),
        (b"$f = 'sys'; $f .= 'tem'; $f('x');", ("system", "program_execution", "assembled", False)),
        (
            b"$a = strrev('tressa'); $a($_POST['x']);",
            ("assert", "code_execution", "assembled", True),
        ),
        (
            b"$m = base64_decode('c3lzdGVt'); $m('id');",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$f = chr(115).chr(121).chr(115).chr(116).chr(101).chr(109); $f('ls');",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$g = implode('', ['ex','ec']); $g('y');",
            ("exec", "program_execution", "assembled", False),
        ),
        (
            b"$h = join('', array('pass','thru')); $h(1);",
            ("passthru", "program_execution", "assembled", False),
        ),
        (b"$r = str_rot13('flfgrz'); $r(1);", ("system", "program_execution", "assembled", False)),
        (
            b"$a = gzinflate(base64_decode('K64sLknNBQA=')); $a('id');",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$s = 'abcdefghijklmnopqrstuvwxyz'; $f = $s[18].$s[24].$s[18].$s[19].$s[4].$s[12]; $f(1);",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$x = 'AAAAAA' ^ \"\\x32\\x38\\x32\\x35\\x24\\x2c\"; $x('id');",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$s = str_replace('X', '', 'sXyXsXtXeXm'); $s(1);",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$v = hex2bin('73797374656d'); $v(4);",
            ("system", "program_execution", "assembled", False),
        ),
        (
            b"$a = ['s','y','s']; $a[] = 'tem'; $f = implode($a); $f(1);",
            ("system", "program_execution", "assembled", False),
        ),
        (b"('sys'.'tem')('id');", ("system", "program_execution", "assembled", False)),
        # plain variable functions
        (b"$f = 'system'; $f($_GET[1]);", ("system", "program_execution", "variable", True)),
        (
            b"$f = \"\\x73\\x79\\163tem\"; $f('id');",
            ("system", "program_execution", "variable", False),
        ),
        (
            b"${'f'} = 'shell_exec'; ${'f'}('id');",
            ("shell_exec", "program_execution", "variable", False),
        ),
        (b"$f = 'system'; $k = 'f'; $$k(2);", ("system", "program_execution", "assembled", False)),
        # unresolvable callee
        (b"$_GET['a']($_POST['b']);", ("dynamic_call", "code_execution", "dynamic", True)),
        (
            b"function run($f, $x) { return $f($x); }",
            ("dynamic_call", "code_execution", "dynamic", False),
        ),
        # constructs
        (b"echo `ls $dir`;", ("backtick", "program_execution", "backtick", False)),
        (b"$x = $_GET['d']; echo `cat $x`;", ("backtick", "program_execution", "backtick", True)),
        (b"include $_GET['f'];", ("include", "code_execution", "construct", True)),
        (b"require_once('php://input');", ("require_once", "code_execution", "construct", True)),
        (
            b"include 'data://text/plain;base64,PD9waHA=';",
            ("include", "code_execution", "construct", False),
        ),
        # preg_replace with the e modifier
        (
            b"preg_replace('/.*/e', $_POST['c'], 'x');",
            ("preg_replace", "code_execution", "preg_e", True),
        ),
        (
            b"preg_replace(\"#x#ie\", 'a', 'b');",
            ("preg_replace", "code_execution", "preg_e", False),
        ),
        (
            b"preg_replace(array('/a/', '~b~e'), 'x', 'y');",
            ("preg_replace", "code_execution", "preg_e", False),
        ),
        (
            b"mb_ereg_replace('.*', $_POST['c'], 'x', 'e');",
            ("mb_ereg_replace", "code_execution", "preg_e", True),
        ),
        # callbacks with critical names
        (b"array_map('system', $_GET);", ("system", "program_execution", "callback", True)),
        (b"array_map('system', $_GET);", ("array_map", "callbacks", "direct", True)),
        (b"call_user_func('assert', $_POST['x']);", ("assert", "code_execution", "callback", True)),
        (
            b"call_user_func('assert', $_POST['x']);",
            ("call_user_func", "code_execution", "direct", True),
        ),
        (b"array_filter($arr, 'SYSTEM');", ("system", "program_execution", "callback", False)),
        (
            b"register_shutdown_function(strrev('metsys'), 'id');",
            ("system", "program_execution", "callback", False),
        ),
        (b"usort($a, $cmp);", ("dynamic_call", "code_execution", "dynamic", False)),
        (
            b"new ReflectionFunction('system');",
            ("reflectionfunction", "code_execution", "direct", False),
        ),
        (
            b"new \\ReflectionFunction('system');",
            ("system", "program_execution", "callback", False),
        ),
        (
            b"$x = Closure::fromCallable('system');",
            ("system", "program_execution", "callback", False),
        ),
        # the other categories
        (b"$h = base64_decode($data);", ("base64_decode", "obfuscation", "direct", False)),
        (b"phpinfo();", ("phpinfo", "information_gathering", "direct", False)),
        (b"echo php_uname();", ("php_uname", "information_gathering", "direct", False)),
        (b"$s = fsockopen($_POST['h'], 80);", ("fsockopen", "network", "direct", True)),
        (b"curl_exec($ch);", ("curl_exec", "network", "direct", False)),
        (
            b"$x = file_get_contents('http://evil/x');",
            ("file_get_contents", "network", "direct", False),
        ),
        (
            b"move_uploaded_file($_FILES['f']['tmp_name'], $p);",
            ("move_uploaded_file", "file_operations", "direct", True),
        ),
        (
            b"$g = create_function('', $_POST['x']);",
            ("create_function", "code_execution", "direct", True),
        ),
    ],
)
def test_detects(code, expected):
    assert expected in found(code), sorted(found(code))


@pytest.mark.parametrize(
    "code",
    [
        b"$pdo->exec('DELETE FROM t'); $db?->system(1); Foo::passthru(2);",  # methods, not functions
        b"?><html><body><h1>Hello</h1><?php echo htmlspecialchars($title); ?></body></html>",
        b"function add($a, $b) { return $a + $b; } $x = add(1, 2); echo strlen('system');",
        b"$f = 'system'; $f = 'strlen'; $f(1);",  # the last assignment wins (straight line)
        b"preg_replace('/a/i', 'x', 'y'); include 'lib/x.php'; require __DIR__ . '/y.php';",
        b"$x = file_get_contents('config.json'); ob_start(); echo 'exec';",
        b"usort($a, function ($x, $y) { return $x <=> $y; }); array_map('trim', $a);",
        b"$c = 'exec'; // system('x');\n /* passthru($y) */ echo \"system\";",
    ],
)
def test_benign_code_has_no_execution(code):
    calls = found(code)
    assert not {c for c in calls if c[1] in ("program_execution", "code_execution")}, calls


def test_methods_are_counted_apart():
    a = analyse(b"<?php $pdo->exec('x'); $o?->system(); Foo::passthru(); exec('id');")
    assert a.methods == collections.Counter({"exec": 1, "system": 1, "passthru": 1})
    assert [c.name for c in a.calls] == ["exec"]  # only the function call


def test_functions_counts_every_call_lowercased_including_resolved_ones():
    a = analyse(
        b"<?php StrLen('x'); strlen('y'); $f = 'Sys'.'Tem'; $f(1); array_map('TRIM', $a);"
        b" eval('1'); include 'a.php'; echo `id`; $g($x);"
    )
    assert a.functions == collections.Counter(
        {
            "strlen": 2,
            "system": 1,
            "array_map": 1,
            "trim": 1,
            "eval": 1,
            "include": 1,
            "backtick": 1,
            "dynamic_call": 1,
        }
    )


def test_spans_lines_and_categories_helper():
    src = b"<?php\n$a = 1;\n  system($_GET['c']);\nphpinfo();\n"
    a = analyse(src)
    by_name = {c.name: c for c in a.calls}
    call = by_name["system"]
    assert src[call.start_byte : call.end_byte] == b"system($_GET['c'])"
    assert call.line == 3 and by_name["phpinfo"].line == 4
    assert a.categories() == collections.Counter(
        {"program_execution": 1, "information_gathering": 1}
    )
    assert [(s.kind, src[s.start_byte : s.end_byte]) for s in a.sources] == [("$_GET", b"$_GET")]


def test_every_call_is_consistent():
    a = analyse(
        b"<?php $f = 'sys'.'tem'; $f($_GET[1]); include $_POST['x']; array_map('exec', $a);"
        b" preg_replace('/x/e', 'y', 'z'); echo `id`; $_GET[1](); curl_init();"
    )
    assert len(a.calls) >= 8
    for c in a.calls:
        assert c.how in HOWS
        assert category_of(c.name) == c.category or CONDITIONAL.get(c.name) == c.category


# ---------------------------------------------------------------------------- taint


@pytest.mark.parametrize(
    "code, tainted",
    [
        (b"$a = $_POST['a']; $b = $a . 'x'; $c = trim($b); exec($c);", True),
        (b"$a = 'ls'; $b = $a . ' -la'; exec($b);", False),
        (b"$c = $_GET['c']; function f() { exec($c); }", False),  # other scope
        (b"function f() { $c = $_GET['c']; $g = function () use ($c) { exec($c); }; }", True),
        (b"$k = $_REQUEST; exec($k['x']);", True),
        (b"exec($_SERVER['HTTP_USER_AGENT']);", True),
        (b"exec($_SERVER['DOCUMENT_ROOT']);", False),
        (b"exec($_SERVER[$key]);", True),
        (b"exec(file_get_contents('php://input'));", True),
        (b"$h = getallheaders(); exec($h['X-Cmd']);", True),
        (b"extract($_REQUEST); exec($cmd);", True),
        (b"foreach ($_GET as $k => $v) { $$k = $v; } exec($cmd);", True),
        (b"foreach ($_POST as $v) { exec($v); }", True),
        (b"[$a, $b] = explode(',', $_COOKIE['x']); exec($b);", True),
        (b"$arr['k'] = $_GET['x']; exec($arr['k']);", True),
        (b"$x = $HTTP_RAW_POST_DATA; exec($x);", True),
        (b"exec($x = 'ls');", False),
        # flow-insensitive: a later assignment still taints
        (b"while (1) { exec($c); $c = $_GET['c']; }", True),
    ],
)
def test_taint(code, tainted):
    calls = [c for c in analyse(b"<?php " + code).calls if c.name == "exec"]
    assert calls and all(c.tainted == tainted for c in calls), calls


# ---------------------------------------------------------------------------- robustness


def test_binary_and_unreadable_sources_give_empty_analyses_with_notes(tmp_path):
    a = analyse(b"\x00\x01\x02PK\x03\x04" * 50)
    assert a.skipped and not a.calls and not a.functions
    assert any("binary" in n for n in a.notes)
    missing = tmp_path / "nope.php"
    b = analyse(str(missing))
    assert b.skipped and any("unreadable" in n for n in b.notes)


def test_analyse_many_never_stops_on_a_bad_item(tmp_path):
    good = tmp_path / "a.php"
    good.write_bytes(b"<?php system($_GET['c']);")
    results = analyse_many([good, 12345, b"\x00\x00", php.read_source(b"<?php eval($x);")])
    assert len(results) == 4
    assert [c.name for c in results[0].calls] == ["system"]
    assert results[1].skipped and "TypeError" in results[1].notes[0]
    assert results[2].skipped
    assert [c.name for c in results[3].calls] == ["eval"]
    assert all(r.index is None for r in results)  # trees dropped by default


def test_bad_arguments():
    with pytest.raises(TypeError, match="PhpSource, bytes or a path"):
        analyse(3.5)
    with pytest.raises(ValueError, match="max_nodes"):
        analyse(b"<?php", max_nodes=0)


def test_deep_nesting_and_node_budget():
    deep = b"<?php $x = " + b"(" * 50_000 + b"1" + b")" * 50_000 + b"; system($x);"
    a = analyse(deep)
    assert [c.name for c in a.calls] == ["system"]
    nested = b"<?php $f = " + b"strrev(" * 2001 + b"'metsys'" + b")" * 2001 + b"; $f(1);"
    assert "system" in {c.name for c in analyse(nested).calls}  # an odd count of strrev
    brackets = b"<?php $y = " + b"[" * 50_000 + b"]" * 50_000 + b"; eval($_POST[1]);"
    assert [(c.name, c.tainted) for c in analyse(brackets).calls] == [("eval", True)]
    cut = analyse(b"<?php " + b"strlen(1);" * 200 + b"system(1);", max_nodes=100)
    assert not cut.index.complete and any("stopped after 100" in n for n in cut.notes)
    assert "system" not in cut.functions


def test_non_utf8_source():
    a = analyse(b"<?php $a = '\xff\xfe'; system('\xc3\x28' . $_GET[1]); // \xe2\x82")
    assert [(c.name, c.tainted) for c in a.calls] == [("system", True)]
    assert any("UTF-8" in n for n in a.notes)


def test_folding_is_capped():
    # a huge literal is "unknown", never decoded whole; a zip bomb stays capped
    big = b"<?php $f = base64_decode('" + b"QUFB" * 200_000 + b"'); $f(1);"
    assert {c.name for c in analyse(big).calls} == {"base64_decode", "dynamic_call"}
    rep = b"<?php $f = str_repeat('a', 100000000); $f(1);"
    assert "dynamic_call" in {c.name for c in analyse(rep).calls}


# ---------------------------------------------------------------------------- obfuscated sources


def exec_taint(code: bytes) -> list[bool]:
    """The taint of every ``exec``/``eval``/``system`` call in ``<?php code``."""
    a = analyse(b"<?php " + code)
    out = [c.tainted for c in a.calls if c.name in ("exec", "eval", "system")]
    assert out, a.calls
    return out


@pytest.mark.parametrize(
    "code, tainted",
    [
        # dynamic names that fold to a superglobal
        (b"eval(${'_PO'.'ST'}['c']);", True),
        (b"eval(${'_PO'.'STX'}['c']);", False),
        (b"exec(${'_GET'}['c']);", True),
        (b"$k = '_GET'; exec(${$k}['c']);", True),
        (b"$k = '_GE'; $k .= 'T'; exec($$k['c']);", True),
        (b"$k = '_GET'; $k = 'cfg'; exec($$k['c']);", False),  # the last assignment wins
        (b"$k = 'name'; exec(${$k});", False),
        (b"exec($$k);", False),  # unknown name
        (b"$k = strrev('TSOP_'); $c = ${$k}['x']; system($c);", True),
        (b"function f() { $k = '_POST'; $a = [1, ${$k}['x']]; exec($a[1]); }", True),
        (b"$k = '_POST'; function f() { exec(${$k}['x']); }", False),  # other scope
        (b"extract(${'_RE'.'QUEST'}); exec($cmd);", True),
        (b"$s = '_SER'.'VER'; exec(${$s}['HTTP_X_CMD']);", True),
        (b"$s = '_SER'.'VER'; exec(${$s}['DOCUMENT_ROOT']);", False),
        # a dynamic name that folds to an ordinary variable reads it
        (b"$ab = $_GET[1]; exec(${'a'.'b'});", True),
        (b"$ab = 'ls'; exec(${'a'.'b'});", False),
        # $GLOBALS
        (b"exec($GLOBALS['_POST']['x']);", True),
        (b'exec($GLOBALS["_GET"]["x"]);', True),
        (b"$c = $GLOBALS['_COOKIE']; exec($c['x']);", True),
        (b"$k = '_CO'.'OKIE'; exec($GLOBALS[$k]['x']);", True),
        (b"exec(${'GLOBALS'}['_FILES']['f']['name']);", True),
        (b"exec($GLOBALS['_SERVER']['HTTP_X_CMD']);", True),
        (b"exec($GLOBALS['_SERVER']['DOCUMENT_ROOT']);", False),
        (b"exec($GLOBALS['config']['cmd']);", False),
        (b"$k = 'cfg'; exec($GLOBALS[$k]['cmd']);", False),
        # filter_input reads the request (not the environment)
        (b"$c = filter_input(INPUT_GET, 'c'); system($c);", True),
        (b"$c = filter_input(INPUT_ENV, 'c'); system($c);", False),
    ],
)
def test_obfuscated_sources(code, tainted):
    assert exec_taint(code) == [tainted]


def test_folded_sources_are_listed_with_their_spans():
    src = b"<?php $k = '_GET'; eval(${'_PO'.'ST'}['c'] . $$k['d'] . $GLOBALS['_COOKIE']['e']);"
    a = analyse(src)
    assert [(s.kind, src[s.start_byte : s.end_byte]) for s in a.sources] == [
        ("$_POST", b"${'_PO'.'ST'}"),
        ("$_GET", b"$$k"),
        ("$_COOKIE", b"$GLOBALS['_COOKIE']"),
    ]


# ---------------------------------------------------------------------------- FILTER_CALLBACK


@pytest.mark.parametrize(
    "code, expected",
    [
        (
            b"filter_var($_GET['c'], FILTER_CALLBACK, ['options' => 'assert']);",
            {
                ("filter_var", "callbacks", "direct", True),
                ("assert", "code_execution", "callback", True),
            },
        ),
        (
            b"filter_var($x, \\FILTER_CALLBACK, array('options' => 'sys'.'tem'));",
            {
                ("filter_var", "callbacks", "direct", False),
                ("system", "program_execution", "callback", False),
            },
        ),
        (
            b"$f = FILTER_CALLBACK; $o = ['options' => 'ass'.'ert']; filter_var($x, $f, $o);",
            {
                ("filter_var", "callbacks", "direct", False),
                ("assert", "code_execution", "callback", False),
            },
        ),
        (
            b"filter_var($x, 1024, ['options' => 'passthru']);",
            {
                ("filter_var", "callbacks", "direct", False),
                ("passthru", "program_execution", "callback", False),
            },
        ),
        (
            b"filter_input(INPUT_GET, 'c', FILTER_CALLBACK, ['options' => 'system']);",
            {
                ("filter_input", "callbacks", "direct", True),
                ("system", "program_execution", "callback", True),
            },
        ),
        (
            b"filter_var_array($_POST, ['c' => ['filter' => FILTER_CALLBACK, 'options' => 'exec']]);",
            {
                ("filter_var_array", "callbacks", "direct", True),
                ("exec", "program_execution", "callback", True),
            },
        ),
        (
            b"$d = ['c' => ['filter' => FILTER_CALLBACK, 'options' => 'assert']];"
            b" filter_input_array(INPUT_POST, $d);",
            {
                ("filter_input_array", "callbacks", "direct", True),
                ("assert", "code_execution", "callback", True),
            },
        ),
        (  # an unresolvable callable
            b"filter_var($x, FILTER_CALLBACK, ['options' => $_GET['f']]);",
            {
                ("filter_var", "callbacks", "direct", True),
                ("dynamic_call", "code_execution", "dynamic", True),
            },
        ),
        # benign counterparts: a harmless callable, a closure, other filters, no options
        (
            b"filter_var($x, FILTER_CALLBACK, ['options' => 'strtoupper']);",
            {("filter_var", "callbacks", "direct", False)},
        ),
        (
            b"filter_var($x, FILTER_CALLBACK, ['options' => fn ($v) => trim($v)]);",
            {("filter_var", "callbacks", "direct", False)},
        ),
        (
            b"filter_var($e, FILTER_VALIDATE_EMAIL);"
            b" filter_var($n, FILTER_VALIDATE_INT, ['options' => ['min_range' => 1]]);"
            b" filter_var($s, FILTER_DEFAULT, ['options' => 'system']);"
            b" filter_var_array($d, ['a' => ['filter' => FILTER_VALIDATE_INT, 'options' => 'exec']]);",
            set(),
        ),
        (b"filter_var($x, FILTER_CALLBACK); filter_var_array($d, FILTER_CALLBACK);", set()),
    ],
)
def test_filter_callback(code, expected):
    assert found(code) == expected


def test_filter_callback_counts_the_callable():
    a = analyse(b"<?php filter_var($x, FILTER_CALLBACK, ['options' => 'assert']); filter_var($y);")
    assert a.functions == collections.Counter({"filter_var": 2, "assert": 1})
