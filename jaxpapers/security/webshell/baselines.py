"""BFAD's traditional baselines: a token-sequence TextCNN and an AST graph network (Flax NNX).

The BFAD paper (COLM 2025) compares LLM detectors with sequence-based and graph-based
WebShell detectors. Both are rebuilt here over tree-sitter's PHP syntax tree
(:mod:`jaxpapers.security.webshell.php`) and trained with the core loop
(:func:`jaxpapers.core.train.train_and_evaluate`: ``jax.jit`` over ``nnx.split``/``merge``
state with donation, NaN guard, ``metrics.jsonl``/TensorBoard, orbax checkpoints, so a run
on the same ``workdir`` resumes).

Featurisation (pure functions of a file's bytes; nothing is executed, every walk is
iterative):

* **Vocabulary without fitting.** Node types come from the grammar
  (``php.language().node_kind_count``; a node's ``kind_id`` is its public symbol, so
  aliased symbols share an id). Identifier and string *values* go into a fixed hashed
  vocabulary, so no corpus-fitted vocabulary is stored and unseen files map to known ids.
* **Value buckets** (:func:`value_id`). A ``name`` leaf (function, class, constant and
  variable names — ``$_GET`` is ``$`` + ``name``) is lowercased (ASCII, as PHP's
  case-insensitive function names; variables are case-sensitive in PHP, lowercasing them
  too is a deliberate simplification) and hashed with CRC-32 (stable across processes,
  unlike ``hash``) into ``name_buckets`` buckets. A string literal piece
  (``string_content``, ``nowdoc_string``) becomes its *shape*: a length bucket
  (``floor(log4(len))``, capped at 7: <4, <16, ..., >=16384 bytes) times a flag for
  encoded-looking payloads (:func:`looks_encoded`: >=20 bytes of only base64/base64url
  characters mixing at least two of upper/lower/digits, or >=32 hex digits, or a byte
  entropy >= 5 bits over its first 4096 bytes). The text of strings is deliberately not
  hashed: payload bytes are unique per sample, their shape is what generalises.
* **Sequence** (:func:`featurize_tokens`): one token per leaf of the full tree, in source
  order (anonymous tokens such as ``(`` and ``echo`` included): value leaves give their
  value token, other leaves their node type. Ids: 0 = padding, 1 = gap, then the node
  types, then the value buckets (:func:`token_vocab_size`). A file longer than
  ``max_len`` keeps its **head and tail** around a gap token (head = ``ceil((max_len-1)/2)``
  tokens, tail = the rest): WebShells put their payload at the top (one-liners, droppers)
  or at the end of a long benign-looking or encoded file, and both ends are read without
  walking the middle (the tail is read by a reverse walk), so a 5 MB file costs no more
  than a short one after parsing. Real tokens come first; ``token_mask`` marks them.
* **Graph** (:func:`featurize_graph`): the named AST nodes in BFS order from the root,
  cut to ``max_nodes`` (a parent always precedes its children, so every kept non-root
  node keeps its parent edge). Node features: ``node_kind`` (node type id) and
  ``node_value`` (0 = none, else ``1 + value_id``; names and string pieces). Directed
  edges with types: 0 child->parent, 1 parent->child, 2 next sibling, 3 previous sibling
  (siblings among the named children of one node), padded to ``4 * max_nodes`` edges
  (enough: at most ``n-1`` parent links and ``n-1`` sibling links). Padding nodes and
  edges point at node 0 with mask 0.
* Files that cannot be analysed (binary, unreadable; :func:`php.read_source`'s
  ``skipped``) are left out with a logged message naming the file and the reason, and
  counted (``num_skipped``) in the results; they are not counted in the metrics.

Models (binary logit, WebShell = 1):

* :class:`TokenCNN` — the TextCNN (Kim 2014) used by sequence WebShell detectors:
  embedding (padding positions zeroed) -> one 1-D convolution per width, each window
  starting at a token and running right over zero padding -> ReLU -> max over the windows
  that start at real tokens -> dropout -> MLP. Because padded positions are zero and never
  start a counted window, the logit does not depend on what is in the padding nor on how
  much padding there is (tested).
* :class:`ASTGNN` — a GINE network (GIN, Xu et al. 2019, with edge features as in Hu et
  al. 2020): ``h_i <- MLP((1 + eps) h_i + sum_j ReLU(h_j + e_type(j->i)))`` with a learned
  ``eps`` per layer, messages summed with ``jax.ops.segment_sum`` over the edge list (the
  batch flattened into one graph), then a readout concatenating the masked mean and max of
  the last layer's node states -> dropout -> MLP. Sum aggregation keeps GIN's
  injectivity; the mean/max readout keeps file size from dominating the logit. The model is
  invariant to the order of the nodes (tested).

Training (:func:`train_baseline`): binary cross-entropy on the logit, AdamW, batches from
:func:`jaxpapers.data.pipeline.train_batches` (full batches, a fresh seeded order per
epoch), evaluation of every example once; metrics (:func:`~jaxpapers.security.webshell.metrics.classification_metrics`,
WebShell positive, a logit > 0 predicts WebShell) on the test split.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tree_sitter
from absl import logging
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import train as train_lib
from jaxpapers.data import pipeline
from jaxpapers.security.webshell import php
from jaxpapers.security.webshell.metrics import classification_metrics

KINDS = ("token", "graph")
PAD = 0
GAP = 1
NAME_BUCKETS = 2048
LENGTH_BUCKETS = 8
STRING_SHAPES = 2 * LENGTH_BUCKETS
NUM_EDGE_TYPES = 4
EDGE_UP, EDGE_DOWN, EDGE_NEXT, EDGE_PREV = range(NUM_EDGE_TYPES)
MIN_ENCODED_LEN = 20
MIN_HEX_LEN = 32
ENTROPY_BITS = 5.0
ENTROPY_SAMPLE = 4096

_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UPPER = frozenset(range(ord("A"), ord("Z") + 1))
_LOWER = frozenset(range(ord("a"), ord("z") + 1))
_DIGIT = frozenset(range(ord("0"), ord("9") + 1))
_STRING_KINDS = frozenset({"string_content", "nowdoc_string"})


class SampleLike(Protocol):
    """What the baselines read from a sample (``corpus.Sample`` fits)."""

    data: bytes
    label: int


# --------------------------------------------------------------------------- vocabulary


def num_node_kinds() -> int:
    """Number of node types (named and anonymous) of the PHP grammar."""
    return int(php.language().node_kind_count)


def _check_buckets(name_buckets: int) -> None:
    if not isinstance(name_buckets, int | np.integer) or name_buckets <= 0:
        raise ValueError(f"name_buckets must be a positive int, got {name_buckets!r}")


def value_vocab_size(name_buckets: int = NAME_BUCKETS) -> int:
    """Number of value ids: ``name_buckets`` hashed names + the string shapes."""
    _check_buckets(name_buckets)
    return name_buckets + STRING_SHAPES


def token_vocab_size(name_buckets: int = NAME_BUCKETS) -> int:
    """Sequence vocabulary: padding, gap, node types, value ids."""
    return 2 + num_node_kinds() + value_vocab_size(name_buckets)


@dataclasses.dataclass(frozen=True)
class _KindTable:
    """Grammar facts read once: which kind ids carry a value."""

    name_id: int
    string_ids: frozenset[int]


def _kind_table() -> _KindTable:
    lang = php.language()
    names = [lang.node_kind_for_id(i) for i in range(lang.node_kind_count)]
    return _KindTable(
        name_id=names.index("name"),
        string_ids=frozenset(i for i, n in enumerate(names) if n in _STRING_KINDS),
    )


@functools.cache
def _kinds() -> _KindTable:
    return _kind_table()


def length_bucket(n: int) -> int:
    """``floor(log4(n))`` capped at ``LENGTH_BUCKETS - 1`` (0 for n < 4).

    >>> [length_bucket(n) for n in (0, 3, 4, 15, 16, 64, 10**9)]
    [0, 0, 1, 1, 2, 3, 7]
    """
    if n < 0:
        raise ValueError(f"a length must be >= 0, got {n}")
    return min(LENGTH_BUCKETS - 1, max(0, (n.bit_length() - 1) // 2))


def byte_entropy(data: bytes) -> float:
    """Shannon entropy of the byte distribution, in bits per byte (0 for empty)."""
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, np.uint8), minlength=256)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())


def looks_encoded(data: bytes) -> bool:
    """Heuristic flag for base64/hex/high-entropy payloads in a string literal.

    >>> looks_encoded(b"ZWNobyAnaGVsbG8gd29ybGQnOw==")
    True
    >>> looks_encoded(b"Hello and welcome to my homepage")
    False
    """
    n = len(data)
    if n >= MIN_ENCODED_LEN:
        chars = set(data)
        classes = bool(chars & _UPPER) + bool(chars & _LOWER) + bool(chars & _DIGIT)
        if chars <= _B64 and classes >= 2:
            return True
        if n >= MIN_HEX_LEN and chars <= _HEX:
            return True
    return byte_entropy(data[:ENTROPY_SAMPLE]) >= ENTROPY_BITS


def string_shape(data: bytes) -> int:
    """Shape id of a string piece: ``2 * length_bucket + looks_encoded``."""
    return 2 * length_bucket(len(data)) + int(looks_encoded(data))


def name_bucket(name: bytes, name_buckets: int = NAME_BUCKETS) -> int:
    """CRC-32 bucket of an ASCII-lowercased name (stable across runs and processes)."""
    return zlib.crc32(name.lower()) % name_buckets


def value_id(node: tree_sitter.Node, data: bytes, name_buckets: int = NAME_BUCKETS) -> int | None:
    """The value id of a ``name`` or string-piece node, else ``None``.

    Names take ids ``0 .. name_buckets-1``; string shapes follow.
    """
    kinds = _kinds()
    kind = node.kind_id
    if kind == kinds.name_id:
        return name_bucket(data[node.start_byte : node.end_byte], name_buckets)
    if kind in kinds.string_ids:
        return name_buckets + string_shape(data[node.start_byte : node.end_byte])
    return None


# --------------------------------------------------------------------------- sequence


def _leaf_token(node: tree_sitter.Node, data: bytes, name_buckets: int, value_base: int) -> int:
    v = value_id(node, data, name_buckets)
    return 2 + node.kind_id if v is None else value_base + v


def _leaves_forward(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    for node, _ in php.walk(root, named_only=False):
        if node.child_count == 0:
            yield node


def _leaves_backward(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Leaves from last to first (explicit stack; a child list is read only when reached)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.child_count == 0:
            yield node
        else:
            stack.extend(node.children)  # the last child is popped first


def _take(it: Iterator[tree_sitter.Node], n: int) -> list[tree_sitter.Node]:
    out = []
    for node in it:
        if len(out) == n:
            break
        out.append(node)
    return out


def head_tail_sizes(max_len: int) -> tuple[int, int]:
    """Tokens kept from the head and the tail of a file longer than ``max_len``.

    >>> head_tail_sizes(8)
    (4, 3)
    """
    if max_len < 3:
        raise ValueError(f"max_len must be >= 3 (head, gap token, tail), got {max_len}")
    head = math.ceil((max_len - 1) / 2)
    return head, max_len - 1 - head


def featurize_tokens(
    data: bytes, *, max_len: int, name_buckets: int = NAME_BUCKETS
) -> dict[str, np.ndarray]:
    """Leaf-token ids of ``data``: ``tokens`` (int32) and ``token_mask`` (float32), ``(max_len,)``."""
    head_n, tail_n = head_tail_sizes(max_len)
    _check_buckets(name_buckets)
    root = php.parse(data).root_node
    base = 2 + num_node_kinds()
    leaves = _take(_leaves_forward(root), max_len + 1)
    if len(leaves) <= max_len:
        ids = [_leaf_token(n, data, name_buckets, base) for n in leaves]
    else:
        tail = _take(_leaves_backward(root), tail_n)[::-1]
        ids = [_leaf_token(n, data, name_buckets, base) for n in leaves[:head_n]]
        ids += [GAP] + [_leaf_token(n, data, name_buckets, base) for n in tail]
    tokens = np.full(max_len, PAD, np.int32)
    tokens[: len(ids)] = ids
    mask = np.zeros(max_len, np.float32)
    mask[: len(ids)] = 1.0
    return {"tokens": tokens, "token_mask": mask}


# --------------------------------------------------------------------------- graph


def max_edges(max_nodes: int) -> int:
    """Static edge capacity of a graph of ``max_nodes`` nodes."""
    return NUM_EDGE_TYPES * max_nodes


def featurize_graph(
    data: bytes, *, max_nodes: int, name_buckets: int = NAME_BUCKETS
) -> dict[str, np.ndarray]:
    """Named-AST graph of ``data`` padded to static shapes.

    Returns ``node_kind``, ``node_value`` (int32) and ``node_mask`` (float32) of shape
    ``(max_nodes,)``; ``senders``, ``receivers``, ``edge_type`` (int32) and ``edge_mask``
    (float32) of shape ``(4 * max_nodes,)``. Node 0 is the root; nodes are in BFS order.
    """
    if not isinstance(max_nodes, int | np.integer) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
    _check_buckets(name_buckets)
    root = php.parse(data).root_node
    kinds, values = [root.kind_id], [_node_value(root, data, name_buckets)]
    edges: list[tuple[int, int, int]] = []
    queue = deque([(root, 0)])
    while queue and len(kinds) < max_nodes:
        node, index = queue.popleft()
        previous = None
        for child in _named_children(node):
            if len(kinds) == max_nodes:
                break
            c = len(kinds)
            kinds.append(child.kind_id)
            values.append(_node_value(child, data, name_buckets))
            edges += [(c, index, EDGE_UP), (index, c, EDGE_DOWN)]
            if previous is not None:
                edges += [(previous, c, EDGE_NEXT), (c, previous, EDGE_PREV)]
            previous = c
            queue.append((child, c))
    n, e = len(kinds), len(edges)
    out = {
        "node_kind": np.zeros(max_nodes, np.int32),
        "node_value": np.zeros(max_nodes, np.int32),
        "node_mask": np.zeros(max_nodes, np.float32),
        "senders": np.zeros(max_edges(max_nodes), np.int32),
        "receivers": np.zeros(max_edges(max_nodes), np.int32),
        "edge_type": np.zeros(max_edges(max_nodes), np.int32),
        "edge_mask": np.zeros(max_edges(max_nodes), np.float32),
    }
    out["node_kind"][:n] = kinds
    out["node_value"][:n] = values
    out["node_mask"][:n] = 1.0
    if e:
        out["senders"][:e], out["receivers"][:e], out["edge_type"][:e] = zip(*edges)
        out["edge_mask"][:e] = 1.0
    return out


def _named_children(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Named children, read lazily with a cursor (a 200k-statement file is one wide node)."""
    cursor = node.walk()
    if not cursor.goto_first_child():
        return
    while True:
        if cursor.node.is_named:
            yield cursor.node
        if not cursor.goto_next_sibling():
            return


def _node_value(node: tree_sitter.Node, data: bytes, name_buckets: int) -> int:
    v = value_id(node, data, name_buckets)
    return 0 if v is None else 1 + v


# --------------------------------------------------------------------------- samples


def featurize(kind: str, data: bytes, config: Any) -> dict[str, np.ndarray]:
    """:func:`featurize_tokens` or :func:`featurize_graph` with ``config``'s sizes."""
    _check_kind(kind)
    buckets = int(config.name_buckets)
    if kind == "token":
        return featurize_tokens(data, max_len=int(config.max_len), name_buckets=buckets)
    return featurize_graph(data, max_nodes=int(config.max_nodes), name_buckets=buckets)


def featurize_samples(
    kind: str, samples: Sequence[SampleLike], config: Any, *, split: str = "data"
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Stacked features plus ``label`` (float32) of the analysable samples.

    Returns ``(arrays, skipped)`` where ``skipped`` holds one message per sample left out
    (binary or unreadable), each also logged.
    """
    rows: list[dict[str, np.ndarray]] = []
    labels: list[float] = []
    skipped: list[str] = []
    for i, sample in enumerate(samples):
        label = int(sample.label)
        if label not in (0, 1):
            raise ValueError(
                f"{split} sample {i}: label must be 0 (benign) or 1 (WebShell), "
                f"got {sample.label!r}"
            )
        name = getattr(sample, "name", None) or f"{split}[{i}]"
        source = php.read_source(bytes(sample.data), name=name)
        if not source.ok:
            message = f"{name}: {source.skipped}"
            logging.warning("baselines: skipping %s", message)
            skipped.append(message)
            continue
        rows.append(featurize(kind, source.data, config))
        labels.append(float(label))
    if not rows:
        raise ValueError(f"no analysable {split} samples ({len(skipped)} skipped: {skipped[:3]})")
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    arrays["label"] = np.asarray(labels, np.float32)
    return arrays, skipped


# --------------------------------------------------------------------------- models


def _mlp_head(in_features: int, hidden: int, rngs: nnx.Rngs) -> tuple[nnx.Linear, nnx.Linear]:
    return nnx.Linear(in_features, hidden, rngs=rngs), nnx.Linear(hidden, 1, rngs=rngs)


class TokenCNN(nnx.Module):
    """TextCNN over leaf tokens: ``(tokens, token_mask) (B, L)`` -> logit ``(B,)``."""

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 32,
        widths: Sequence[int] = (3, 4, 5),
        channels: int = 64,
        hidden: int = 64,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if not widths or min(widths) < 1:
            raise ValueError(f"conv widths must be positive, got {list(widths)}")
        for name, v in (
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("channels", channels),
            ("hidden", hidden),
        ):
            if v < 1:
                raise ValueError(f"TokenCNN {name} must be positive, got {v}")
        self.widths = tuple(int(w) for w in widths)
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.convs = nnx.List(
            [
                nnx.Conv(embed_dim, channels, kernel_size=(w,), padding=((0, w - 1),), rngs=rngs)
                for w in self.widths
            ]
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc, self.out = _mlp_head(channels * len(self.widths), hidden, rngs)

    def __call__(self, tokens: jax.Array, token_mask: jax.Array) -> jax.Array:
        mask = token_mask.astype(jnp.float32)
        x = self.embed(tokens) * mask[..., None]
        valid = mask[..., None] > 0
        pooled = []
        for conv in self.convs:
            h = jax.nn.relu(conv(x))
            h = jnp.max(jnp.where(valid, h, -jnp.inf), axis=1)
            pooled.append(jnp.where(jnp.isfinite(h), h, 0.0))  # an empty file pools to 0
        z = self.dropout(jnp.concatenate(pooled, axis=-1))
        return self.out(jax.nn.relu(self.fc(z)))[..., 0]


class GINELayer(nnx.Module):
    """``h <- MLP((1 + eps) h + sum over in-edges ReLU(h_src + e_type))`` (masked edges)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.edge_embed = nnx.Embed(NUM_EDGE_TYPES, dim, rngs=rngs)
        self.eps = nnx.Param(jnp.zeros(()))
        self.fc1 = nnx.Linear(dim, dim, rngs=rngs)
        self.fc2 = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(
        self,
        h: jax.Array,
        senders: jax.Array,
        receivers: jax.Array,
        edge_type: jax.Array,
        edge_mask: jax.Array,
    ) -> jax.Array:
        """``h`` is ``(N, D)`` of a flattened batch; edges index into it."""
        messages = jax.nn.relu(h[senders] + self.edge_embed(edge_type)) * edge_mask[:, None]
        aggregated = jax.ops.segment_sum(messages, receivers, num_segments=h.shape[0])
        return self.fc2(jax.nn.relu(self.fc1((1.0 + self.eps[...]) * h + aggregated)))


class ASTGNN(nnx.Module):
    """GINE over the named AST: graph arrays ``(B, ...)`` -> logit ``(B,)``."""

    def __init__(
        self,
        num_kinds: int,
        num_values: int,
        *,
        embed_dim: int = 32,
        layers: int = 3,
        hidden: int = 64,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        for name, v in (
            ("num_kinds", num_kinds),
            ("num_values", num_values),
            ("embed_dim", embed_dim),
            ("layers", layers),
            ("hidden", hidden),
        ):
            if v < 1:
                raise ValueError(f"ASTGNN {name} must be positive, got {v}")
        self.kind_embed = nnx.Embed(num_kinds, embed_dim, rngs=rngs)
        self.value_embed = nnx.Embed(num_values + 1, embed_dim, rngs=rngs)  # 0 = no value
        self.layers = nnx.List([GINELayer(embed_dim, rngs=rngs) for _ in range(layers)])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc, self.out = _mlp_head(2 * embed_dim, hidden, rngs)

    def __call__(
        self,
        node_kind: jax.Array,
        node_value: jax.Array,
        node_mask: jax.Array,
        senders: jax.Array,
        receivers: jax.Array,
        edge_type: jax.Array,
        edge_mask: jax.Array,
    ) -> jax.Array:
        batch, n = node_kind.shape
        mask = node_mask.astype(jnp.float32)
        h = (self.kind_embed(node_kind) + self.value_embed(node_value)) * mask[..., None]
        h = h.reshape(batch * n, -1)
        offsets = (jnp.arange(batch, dtype=senders.dtype) * n)[:, None]
        flat = [
            (senders + offsets).reshape(-1),
            (receivers + offsets).reshape(-1),
            edge_type.reshape(-1),
            edge_mask.astype(jnp.float32).reshape(-1),
        ]
        for i, layer in enumerate(self.layers):
            h = layer(h, *flat)
            if i + 1 < len(self.layers):
                h = jax.nn.relu(h)
        h = h.reshape(batch, n, -1)
        count = jnp.maximum(mask.sum(1, keepdims=True), 1.0)
        mean = (h * mask[..., None]).sum(1) / count
        peak = jnp.max(jnp.where(mask[..., None] > 0, h, -jnp.inf), axis=1)
        peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
        z = self.dropout(jnp.concatenate([mean, peak], axis=-1))
        return self.out(jax.nn.relu(self.fc(z)))[..., 0]


TOKEN_INPUTS = ("tokens", "token_mask")
GRAPH_INPUTS = (
    "node_kind",
    "node_value",
    "node_mask",
    "senders",
    "receivers",
    "edge_type",
    "edge_mask",
)


def model_inputs(kind: str) -> tuple[str, ...]:
    """Batch keys a model of ``kind`` takes, in call order."""
    _check_kind(kind)
    return TOKEN_INPUTS if kind == "token" else GRAPH_INPUTS


def build_model(kind: str, config: Any, rngs: nnx.Rngs) -> nnx.Module:
    """A :class:`TokenCNN` (``kind="token"``) or :class:`ASTGNN` (``"graph"``) for ``config``.

    Inputs must be featurised with the same ``config.name_buckets`` (:func:`featurize`):
    ids beyond the tables are not checked inside ``jit``.
    """
    _check_kind(kind)
    buckets = int(config.name_buckets)
    if kind == "token":
        return TokenCNN(
            token_vocab_size(buckets),
            embed_dim=int(config.embed_dim),
            widths=tuple(int(w) for w in config.conv_widths),
            channels=int(config.conv_channels),
            hidden=int(config.hidden),
            dropout=float(config.dropout),
            rngs=rngs,
        )
    return ASTGNN(
        num_node_kinds(),
        value_vocab_size(buckets),
        embed_dim=int(config.embed_dim),
        layers=int(config.gnn_layers),
        hidden=int(config.hidden),
        dropout=float(config.dropout),
        rngs=rngs,
    )


def apply_model(kind: str, model: nnx.Module, batch: Mapping[str, Any]) -> jax.Array:
    """The model's logits on a batch dict holding :func:`model_inputs` keys."""
    return model(*(batch[k] for k in model_inputs(kind)))


# --------------------------------------------------------------------------- metrics


def summarize(outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Host-side split summary: metrics at logit > 0, mean BCE loss, example count."""
    logits = np.asarray(outputs["logit"], np.float64)
    labels = np.asarray(outputs["label"], np.float64)
    out = classification_metrics(labels.astype(np.int64), (logits > 0).astype(np.int64))
    bce = np.logaddexp(0.0, logits) - labels * logits
    out["loss"] = float(bce.mean()) if bce.size else 0.0
    out["num_examples"] = int(labels.size)
    return out


# --------------------------------------------------------------------------- config


_CONFIG_KEYS = (
    "epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "max_len", "max_nodes",
    "name_buckets", "embed_dim", "hidden", "conv_widths", "conv_channels", "gnn_layers",
    "dropout", "seed", "log_every", "checkpoint_every", "eval_every_epochs", "progress",
    "rng_impl",
)  # fmt: skip


def default_config(kind: str) -> ml_collections.ConfigDict:
    """Locked config of a baseline (``kind``: ``"token"`` or ``"graph"``).

    Sizes are small (a laptop CPU trains either on a few thousand files in minutes); both
    featuriser sizes are present in both so one config can drive both baselines.
    """
    _check_kind(kind)
    config = ml_collections.ConfigDict(
        {
            "epochs": 10,
            "batch_size": 32,
            "eval_batch_size": 64,
            "lr": 1e-3 if kind == "token" else 2e-3,
            "weight_decay": 1e-4,
            "max_len": 512,  # token sequence length (head + gap + tail)
            "max_nodes": 512,  # AST nodes kept (BFS from the root)
            "name_buckets": NAME_BUCKETS,
            "embed_dim": 32,
            "hidden": 64,
            "conv_widths": (3, 4, 5),  # token model
            "conv_channels": 64,  # token model
            "gnn_layers": 3,  # graph model
            "dropout": 0.1,
            "seed": 0,
            "log_every": 50,
            "checkpoint_every": 500,
            "eval_every_epochs": 1,  # 0: evaluate only at the end
            "progress": True,
            "rng_impl": "",  # "" = JAX's default PRNG; "rbg" compiles faster on CPU
        }
    )
    config.lock()
    return config


def check_config(config: Any) -> None:
    """Raises ValueError naming missing or invalid keys (ConfigDict or dataclass)."""
    missing = [k for k in _CONFIG_KEYS if not hasattr(config, k)]
    if missing:
        raise ValueError(f"baseline config lacks {missing}; see default_config() for all keys")
    for key in (
        "epochs",
        "batch_size",
        "eval_batch_size",
        "max_nodes",
        "name_buckets",
        "embed_dim",
        "hidden",
        "conv_channels",
        "gnn_layers",
        "log_every",
        "checkpoint_every",
    ):
        if int(getattr(config, key)) <= 0:
            raise ValueError(f"config.{key} must be positive, got {getattr(config, key)}")
    head_tail_sizes(int(config.max_len))
    if float(config.lr) <= 0:
        raise ValueError(f"config.lr must be positive, got {config.lr}")
    if not 0.0 <= float(config.dropout) < 1.0:
        raise ValueError(f"config.dropout must be in [0, 1), got {config.dropout}")
    if int(config.eval_every_epochs) < 0:
        raise ValueError(f"config.eval_every_epochs must be >= 0, got {config.eval_every_epochs}")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"baseline kind must be one of {KINDS}, got {kind!r}")


# --------------------------------------------------------------------------- training


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def make_task(
    kind: str,
    config: Any,
    arrays: Mapping[str, Mapping[str, np.ndarray]],
) -> tuple[train_lib.Task, int]:
    """``(task, steps per epoch)`` for the core trainer from featurised ``split -> arrays``."""
    n_train = len(arrays["train"]["label"])
    batch_size = int(config.batch_size)
    per_epoch = n_train // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"config.batch_size={batch_size} exceeds the {n_train} analysable training samples"
        )

    def loss_fn(model, batch):
        logits = apply_model(kind, model, batch)
        loss = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
        accuracy = jnp.mean((logits > 0) == (batch["label"] > 0.5))
        return loss, {"accuracy": accuracy}

    def eval_fn(model, batch):
        return {"logit": apply_model(kind, model, batch), "label": batch["label"]}

    task = train_lib.Task(
        init_model=lambda rngs: build_model(kind, config, rngs),
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        summarize=summarize,
        optimizer=optax.adamw(float(config.lr), weight_decay=float(config.weight_decay)),
        train_data=pipeline.train_batches(
            arrays["train"], batch_size, num_epochs=int(config.epochs), seed=int(config.seed)
        ),
        eval_data={
            split: pipeline.eval_batches(a, int(config.eval_batch_size))
            for split, a in arrays.items()
            if split != "train"
        },
        rng_impl=str(config.rng_impl) or None,
    )
    return task, per_epoch


def train_baseline(
    kind: str,
    train_samples: Sequence[SampleLike],
    valid_samples: Sequence[SampleLike] | None,
    test_samples: Sequence[SampleLike],
    *,
    config: Any = None,
    workdir: str,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """Trains the ``kind`` baseline (``"token"`` or ``"graph"``) and scores the test samples.

    ``valid_samples`` may be None (or empty): no validation split is evaluated. Runs
    resume from the checkpoints in ``workdir``. ``mesh`` defaults to one device.

    Returns:
      ``accuracy``, ``precision``, ``recall``, ``f1`` (WebShell positive) and ``loss`` on
      the test samples; ``valid_<metric>`` when a validation split is given;
      ``num_params``, ``num_steps`` and ``num_skipped`` (files left out, all splits).
    """
    _check_kind(kind)
    config = default_config(kind) if config is None else config
    check_config(config)
    splits = {"train": train_samples, "test": test_samples}
    if valid_samples:
        splits["valid"] = valid_samples
    arrays, skipped = {}, []
    for split, samples in splits.items():
        arrays[split], dropped = featurize_samples(kind, samples, config, split=split)
        skipped += dropped
    logging.info(
        "baseline %s: %s analysable samples, %d skipped",
        kind, {s: len(a["label"]) for s, a in arrays.items()}, len(skipped),
    )  # fmt: skip
    task, per_epoch = make_task(kind, config, arrays)
    steps = per_epoch * int(config.epochs)
    has_valid = "valid" in arrays
    eval_every = per_epoch * int(config.eval_every_epochs) if has_valid else 0
    loop = train_lib.LoopConfig(
        num_steps=steps,
        log_every=min(int(config.log_every), steps),
        eval_every=eval_every,
        eval_splits=("valid",) if has_valid else (),
        final_splits=("valid", "test") if has_valid else ("test",),
        checkpoint_every=int(config.checkpoint_every),
        seed=int(config.seed),
        progress=bool(config.progress),
    )
    mesh = mesh or mesh_lib.make_mesh(("data", "model"), (1, 1))
    results = train_lib.train_and_evaluate(task, loop, workdir=workdir, mesh=mesh)
    keys = ("accuracy", "precision", "recall", "f1", "loss")
    final: dict[str, float] = {k: results["test"][k] for k in keys}
    if has_valid:
        final.update({f"valid_{k}": results["valid"][k] for k in keys})
    setup_ = train_lib.task_setup(task, mesh, seed=int(config.seed))
    params = nnx.filter_state(setup_.abstract_state["model"], nnx.Param)
    final["num_params"] = int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))
    final["num_steps"] = steps
    final["num_skipped"] = len(skipped)
    return final


def predict_logits(
    kind: str, model: nnx.Module, arrays: Mapping[str, np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Eval-mode logits of a trained model on featurised ``arrays`` (jitted, batched)."""
    model.eval()
    graphdef, state = nnx.split(model)
    n = len(next(iter(arrays.values())))
    keys = model_inputs(kind)
    out = []
    for start in range(0, n, batch_size):
        batch = {k: arrays[k][start : start + batch_size] for k in keys}
        out.append(np.asarray(_forward(kind, graphdef, state, batch)))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(kind: str, graphdef: Any, state: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
    return apply_model(kind, nnx.merge(graphdef, state), batch)
