"""BFAD's baselines: featurisers, the TextCNN and GINE models, metrics, and tiny training runs."""

import dataclasses
import os

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpapers.core import metrics as metrics_lib
from jaxpapers.security.webshell import baselines as bl
from jaxpapers.security.webshell import php

THREE_STATEMENTS = b"<?php\n$a = 1;\necho $a;\nfoo();\n"

WEBSHELLS = [
    b"<?php system($_GET['cmd']); ?>",
    b"<?php @eval($_POST['x']); ?>",
    b"<?php passthru($_REQUEST['c']); ?>",
    b"<?php echo shell_exec($_GET['q']); ?>",
    b"<?php assert($_POST['a']); ?>",
    b"<?php exec($_COOKIE['z']); ?>",
    b"<?php $f = $_GET['f']; $f($_GET['a']); ?>",
    b"<?php eval(base64_decode($_POST['p'])); ?>",
]
BENIGN = [
    b'<?php echo "Hello, world"; ?>',
    b"<html><body><?php echo date('Y'); ?></body></html>",
    b'<?php $title = "Home"; echo "<h1>$title</h1>"; ?>',
    b"<?php function add($a, $b) { return $a + $b; } echo add(1, 2); ?>",
    b"<?php $items = [1, 2, 3]; foreach ($items as $i) { echo $i; } ?>",
    b'<?php class Greeter { public function hi() { return "hi"; } } ?>',
    b'<?php echo htmlspecialchars("a & b"); ?>',
    b'<?php $n = count([1, 2]); echo "n=$n"; ?>',
]


@dataclasses.dataclass
class _Sample:
    name: str
    data: bytes
    label: int
    family: str = "test"


def _samples() -> list[_Sample]:
    return [_Sample(f"shell{i}.php", d, 1) for i, d in enumerate(WEBSHELLS)] + [
        _Sample(f"page{i}.php", d, 0) for i, d in enumerate(BENIGN)
    ]


def _tiny_config(kind: str, **overrides):
    config = bl.default_config(kind)
    values = dict(
        epochs=12,
        batch_size=8,
        eval_batch_size=16,
        lr=1e-2,
        weight_decay=0.0,
        max_len=32,
        max_nodes=32,
        name_buckets=256,
        embed_dim=16,
        hidden=16,
        conv_widths=(2, 3),
        conv_channels=16,
        gnn_layers=2,
        dropout=0.0,
        log_every=3,
        eval_every_epochs=0,
        progress=False,
        rng_impl="rbg",
    )
    values.update(overrides)
    for k, v in values.items():
        setattr(config, k, v)
    return config


def _numpy_model(kind: str, config, seed: int = 0) -> nnx.Module:
    """A model with NumPy-drawn weights (no compiled random initialiser)."""
    abstract = nnx.eval_shape(lambda: bl.build_model(kind, config, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def fill(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        if np.issubdtype(x.dtype, np.floating):
            return (0.3 * rng.standard_normal(x.shape)).astype(x.dtype)
        return np.zeros(x.shape, x.dtype)

    model = nnx.merge(graphdef, jax.tree.map(fill, state))
    model.eval()
    return model


# --------------------------------------------------------------------------- metrics


def test_classification_metrics_hand_computed():
    # tp=2 fp=1 fn=2 tn=2
    m = bl.classification_metrics([1, 1, 1, 0, 0, 0, 1], [1, 0, 1, 0, 1, 0, 0])
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert m["f1"] == pytest.approx(4 / 7)


def test_classification_metrics_zero_division_and_errors():
    # No positive predictions and no positive labels: precision/recall/f1 have 0 denominators.
    assert bl.classification_metrics([0, 0, 0], [0, 0, 0]) == {
        "accuracy": 1.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert bl.classification_metrics([], []) == dict.fromkeys(
        ("accuracy", "precision", "recall", "f1"), 0.0
    )
    assert bl.classification_metrics([1, 1], [0, 0])["precision"] == 0.0
    with pytest.raises(ValueError, match="labels 0"):
        bl.classification_metrics([0, 2], [0, 1])
    with pytest.raises(ValueError, match="one length"):
        bl.classification_metrics([0, 1], [0])


# --------------------------------------------------------------------------- values


def test_value_ids_names_and_string_shapes():
    assert bl.name_bucket(b"System", 256) == bl.name_bucket(b"system", 256)
    assert bl.name_bucket(b"system", 2**20) != bl.name_bucket(b"passthru", 2**20)
    assert [bl.length_bucket(n) for n in (0, 3, 4, 15, 16, 63, 64, 10**9)] == [
        0, 0, 1, 1, 2, 2, 3, 7,
    ]  # fmt: skip
    assert bl.looks_encoded(b"ZWNobyAnaGVsbG8gd29ybGQnOw==")
    assert bl.looks_encoded(b"6563686f202268656c6c6f223b0a0a")  # 30 hex chars, mixed classes
    assert bl.looks_encoded(bytes(range(256)))  # entropy 8 bits
    assert not bl.looks_encoded(b"Hello and welcome to my homepage")
    assert not bl.looks_encoded(b"abcdefghijklmnopqrstuvwxyz")  # one character class
    # In files: SYSTEM() and system() give the same token; a base64 literal gets the flag.
    a = bl.featurize_tokens(b"<?php system('x');", max_len=16)["tokens"]
    b = bl.featurize_tokens(b"<?php SYSTEM('x');", max_len=16)["tokens"]
    np.testing.assert_array_equal(a, b)
    base = 2 + bl.num_node_kinds() + bl.NAME_BUCKETS
    enc = bl.featurize_tokens(b"<?php $p = 'ZWNobyAnaGVsbG8gd29ybGQnOw==';", max_len=16)
    plain = bl.featurize_tokens(b"<?php $p = 'Hello and welcome here';", max_len=16)
    shape_enc = 2 * bl.length_bucket(28) + 1
    shape_plain = 2 * bl.length_bucket(22)
    assert base + shape_enc in enc["tokens"] and base + shape_plain in plain["tokens"]


# --------------------------------------------------------------------------- sequence


def test_featurize_tokens_known_answer_and_mask():
    f = bl.featurize_tokens(b"<?php echo $a;", max_len=10)
    lang = php.language()
    kinds = [
        lang.node_kind_for_id(int(t) - 2) for t in f["tokens"][:5] if t < 2 + bl.num_node_kinds()
    ]
    # php_tag, echo, $, name(a) -> value token, ;
    assert kinds == ["php_tag", "echo", "$", ";"]
    name_token = 2 + bl.num_node_kinds() + bl.name_bucket(b"a")
    assert f["tokens"][3] == name_token
    np.testing.assert_array_equal(f["token_mask"], [1] * 5 + [0] * 5)
    assert (f["tokens"][5:] == bl.PAD).all()
    assert f["tokens"].dtype == np.int32 and f["tokens"].shape == (10,)
    again = bl.featurize_tokens(b"<?php echo $a;", max_len=10)
    np.testing.assert_array_equal(f["tokens"], again["tokens"])


_STATEMENTS = st.sampled_from(
    [
        "$a = 1;",
        "echo $b;",
        "foo($x, 'str');",
        "if ($c) { bar(); }",
        '$d = "x $e y";',
        "?>html<?php ",
        "/* c */",
        "system($_GET['q']);",
        "function f() { return 2; }",
        "$g = array(1, 2);",
        "{ {",
        ")(",
    ]
)


@settings(max_examples=30, deadline=None)
@given(st.lists(_STATEMENTS, max_size=30), st.integers(3, 40))
def test_token_cut_keeps_head_gap_tail(statements, max_len):
    """A long file keeps exactly its first and last leaves around one gap token."""
    data = ("<?php " + "\n".join(statements)).encode()
    full = bl.featurize_tokens(data, max_len=4096)
    n = int(full["token_mask"].sum())
    ids = full["tokens"][:n]
    cut = bl.featurize_tokens(data, max_len=max_len)
    assert cut["tokens"].shape == (max_len,) and cut["token_mask"].shape == (max_len,)
    m = int(cut["token_mask"].sum())
    np.testing.assert_array_equal(cut["token_mask"], [1] * m + [0] * (max_len - m))
    if n <= max_len:
        assert m == n
        np.testing.assert_array_equal(cut["tokens"][:n], ids)
    else:
        head, tail = bl.head_tail_sizes(max_len)
        assert m == max_len
        expected = np.concatenate([ids[:head], [bl.GAP], ids[n - tail :]])
        np.testing.assert_array_equal(cut["tokens"], expected)


def test_token_cut_on_a_long_file_reads_the_end():
    lines = [f"$v{i} = {i};" for i in range(3000)] + ["eval($_POST['last']);"]
    data = ("<?php\n" + "\n".join(lines)).encode()
    f = bl.featurize_tokens(data, max_len=21)
    tail = bl.featurize_tokens(b"<?php eval($_POST['last']);", max_len=64)
    t = int(tail["token_mask"].sum())
    # The last 10 tokens are the last statement's last 10 leaves.
    np.testing.assert_array_equal(f["tokens"][-10:], tail["tokens"][t - 10 : t])
    assert f["tokens"][10] == bl.GAP


# --------------------------------------------------------------------------- graph


def _kind_names(g):
    lang = php.language()
    n = int(g["node_mask"].sum())
    return [lang.node_kind_for_id(int(k)) for k in g["node_kind"][:n]]


def _edges(g, edge_type=None):
    e = int(g["edge_mask"].sum())
    return {
        (int(s), int(r))
        for s, r, t in zip(g["senders"][:e], g["receivers"][:e], g["edge_type"][:e])
        if edge_type is None or t == edge_type
    }


def test_graph_three_statements_known_answer():
    g = bl.featurize_graph(THREE_STATEMENTS, max_nodes=32)
    assert _kind_names(g) == [
        "program",  # 0
        "php_tag",  # 1
        "expression_statement",  # 2  $a = 1;
        "echo_statement",  # 3
        "expression_statement",  # 4  foo();
        "assignment_expression",  # 5
        "variable_name",  # 6  $a (echo)
        "function_call_expression",  # 7
        "variable_name",  # 8  $a (assignment)
        "integer",  # 9
        "name",  # 10 a
        "name",  # 11 foo
        "arguments",  # 12
        "name",  # 13 a
    ]
    parent_child = {(0, 1), (0, 2), (0, 3), (0, 4), (2, 5), (3, 6), (4, 7), (5, 8), (5, 9),
                    (6, 10), (7, 11), (7, 12), (8, 13)}  # fmt: skip
    assert _edges(g, bl.EDGE_DOWN) == parent_child
    assert _edges(g, bl.EDGE_UP) == {(c, p) for p, c in parent_child}
    siblings = {(1, 2), (2, 3), (3, 4), (8, 9), (11, 12)}
    assert _edges(g, bl.EDGE_NEXT) == siblings
    assert _edges(g, bl.EDGE_PREV) == {(b, a) for a, b in siblings}
    assert int(g["edge_mask"].sum()) == 2 * 13 + 2 * 5
    # Value features: names hashed (+1), others 0; the two `a`s share a bucket.
    assert g["node_value"][10] == g["node_value"][13] == 1 + bl.name_bucket(b"a")
    assert g["node_value"][11] == 1 + bl.name_bucket(b"foo")
    assert (g["node_value"][:10] == 0).all() and g["node_value"][12] == 0
    assert (g["node_mask"][14:] == 0).all() and g["node_mask"].shape == (32,)
    assert g["senders"].shape == (bl.max_edges(32),)


@pytest.mark.parametrize("max_nodes", [1, 2, 5, 13])
def test_graph_cap_keeps_a_bfs_prefix(max_nodes):
    full = bl.featurize_graph(THREE_STATEMENTS, max_nodes=32)
    g = bl.featurize_graph(THREE_STATEMENTS, max_nodes=max_nodes)
    assert int(g["node_mask"].sum()) == max_nodes
    assert _kind_names(g) == _kind_names(full)[:max_nodes]
    assert _edges(g) == {(s, r) for s, r in _edges(full) if s < max_nodes and r < max_nodes}
    again = bl.featurize_graph(THREE_STATEMENTS, max_nodes=max_nodes)
    for k in g:
        np.testing.assert_array_equal(g[k], again[k])


# --------------------------------------------------------------------------- samples


def test_featurize_samples_skips_binary_files_with_a_message():
    samples = [_Sample("ok.php", WEBSHELLS[0], 1), _Sample("blob.bin", b"\x00\x01PK", 0)]
    arrays, skipped = bl.featurize_samples("graph", samples, _tiny_config("graph"))
    assert len(arrays["label"]) == 1 and arrays["label"][0] == 1.0
    assert len(skipped) == 1 and "blob.bin" in skipped[0] and "binary" in skipped[0]
    with pytest.raises(ValueError, match="no analysable"):
        bl.featurize_samples("token", samples[1:], _tiny_config("token"))
    with pytest.raises(ValueError, match="label must be"):
        bl.featurize_samples("token", [_Sample("x", b"<?php", 3)], _tiny_config("token"))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="one of"):
        bl.default_config("lstm")
    with pytest.raises(ValueError, match="max_len must be >= 3"):
        bl.featurize_tokens(b"<?php", max_len=2)
    with pytest.raises(ValueError, match="max_nodes"):
        bl.featurize_graph(b"<?php", max_nodes=0)
    with pytest.raises(ValueError, match="config.lr"):
        bl.check_config(_tiny_config("token", lr=0.0))
    with pytest.raises(ValueError, match="lacks"):
        bl.check_config(object())


# --------------------------------------------------------------------------- models


def test_gnn_is_invariant_to_node_order():
    config = _tiny_config("graph", max_nodes=24)
    model = _numpy_model("graph", config)
    graphs = [bl.featurize("graph", d, config) for d in (THREE_STATEMENTS, WEBSHELLS[6])]
    batch = {k: np.stack([g[k] for g in graphs]) for k in graphs[0]}
    rng = np.random.default_rng(1)
    permuted = {k: v.copy() for k, v in batch.items()}
    for b in range(2):
        perm = rng.permutation(24)  # new position i holds old node perm[i]
        inverse = np.argsort(perm)
        for k in ("node_kind", "node_value", "node_mask"):
            permuted[k][b] = batch[k][b][perm]
        for k in ("senders", "receivers"):
            permuted[k][b] = inverse[batch[k][b]]
        edge_perm = rng.permutation(batch["senders"].shape[1])  # edge order too
        for k in ("senders", "receivers", "edge_type", "edge_mask"):
            permuted[k][b] = permuted[k][b][edge_perm]
    graphdef, state = nnx.split(model)
    a = bl._forward("graph", graphdef, state, batch)
    b = bl._forward("graph", graphdef, state, permuted)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert abs(float(a[0]) - float(a[1])) > 1e-4  # the two files are told apart


def test_token_cnn_ignores_padding():
    config = _tiny_config("token")
    model = _numpy_model("token", config)
    short = bl.featurize_tokens(WEBSHELLS[0], max_len=16, name_buckets=256)
    long = bl.featurize_tokens(WEBSHELLS[0], max_len=40, name_buckets=256)
    n = int(short["token_mask"].sum())
    assert n < 16
    noisy = {k: v.copy() for k, v in long.items()}
    noisy["tokens"][n:] = np.random.default_rng(0).integers(1, 700, size=40 - n)
    other = bl.featurize_tokens(BENIGN[1], max_len=40, name_buckets=256)
    logits = bl.predict_logits("token", model, {k: v[None] for k, v in short.items()})
    many = bl.predict_logits("token", model, {k: np.stack([long[k], noisy[k], other[k]])
                                              for k in long})  # fmt: skip
    np.testing.assert_allclose(many[:2], [logits[0]] * 2, rtol=1e-5, atol=1e-5)
    assert abs(many[2] - many[0]) > 1e-4  # real content does change the logit


# --------------------------------------------------------------------------- training


# Small models keep compilation (most of the time here) short. The graph model's run costs
# ~4 s more compilation than the token model's (same training code, make_task); it is slow
# to keep the fast suite well under its budget.
@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("token", dict(conv_widths=(3,))),
        pytest.param("graph", dict(gnn_layers=1), marks=pytest.mark.slow),
    ],
)
def test_training_separates_a_trivial_corpus(kind, overrides, tmp_path, mesh1):
    samples = _samples()
    workdir = str(tmp_path / kind)
    config = _tiny_config(kind, epochs=25, **overrides)
    final = bl.train_baseline(
        kind, samples, None, samples, config=config, workdir=workdir, mesh=mesh1
    )
    assert final["accuracy"] == 1.0 and final["f1"] == 1.0
    assert final["num_steps"] == 50 and final["num_skipped"] == 0 and final["num_params"] > 0
    events = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train_losses = [e["loss"] for e in events if e["split"] == "train"]
    assert len(train_losses) == 17  # every 3 steps and the last
    assert train_losses[-1] < 0.2 * train_losses[0]
    assert final["loss"] < 0.1
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "50"))


@pytest.mark.slow
def test_resumed_training_matches_an_uninterrupted_run_on_8_devices(tmp_path, mesh8):
    """A run stopped after 4 epochs and continued to 8 ends like one run of 8 epochs."""
    samples = _samples()
    config = _tiny_config("graph", epochs=8, gnn_layers=1, eval_every_epochs=2)
    full = bl.train_baseline(
        "graph", samples, samples[::2], samples, config=config, workdir=str(tmp_path / "a"),
        mesh=mesh8,
    )  # fmt: skip
    work = str(tmp_path / "b")
    first = _tiny_config("graph", epochs=4, gnn_layers=1, eval_every_epochs=2)
    bl.train_baseline("graph", samples, samples[::2], samples, config=first, workdir=work,
                      mesh=mesh8)  # fmt: skip
    resumed = bl.train_baseline(
        "graph", samples, samples[::2], samples, config=config, workdir=work, mesh=mesh8
    )
    assert resumed.keys() == full.keys() and "valid_f1" in full
    for k, v in full.items():
        assert resumed[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
