"""Tests for jaxpapers.data.ctr_files: streaming Criteo / Avazu readers."""

import collections
import datetime
import json
import logging
import math
import os

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from jaxpapers.data import ctr_files

# =============================================================================
# Low-level parsing helpers.
# =============================================================================


def _spans(strings):
    """Concatenates byte strings; returns (buffer, starts, ends)."""
    data = b"|".join(strings)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends, pos = [], [], 0
    for s in strings:
        starts.append(pos)
        ends.append(pos + len(s))
        pos += len(s) + 1
    return buf, np.array(starts, np.int64), np.array(ends, np.int64)


def test_parse_int_spans():
    strings = [
        b"0",
        b"7",
        b"-3",
        b"",
        b"123456789012345678",
        b"-",
        b"1-",
        b"12a",
        b" 1",
        b"1234567890123456789",
        b"--1",
        b"007",
    ]
    values, valid, empty = ctr_files._parse_int_spans(*_spans(strings))
    assert valid.tolist() == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert empty.tolist() == [s == b"" for s in strings]
    assert values[valid].tolist() == [0, 7, -3, 0, 123456789012345678, 7]


def test_criteo_bucket_matches_bars_formula():
    values = np.array([-5, -1, 0, 1, 2, 3, 4, 20, 100, 10**6, 2**40])
    expected = [v if v <= 2 else int(math.floor(math.log(v) ** 2)) for v in values.tolist()]
    assert ctr_files.criteo_bucket(values).tolist() == expected
    assert ctr_files.criteo_bucket(np.array([3, 20, 100])).tolist() == [1, 8, 21]


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(
    st.lists(
        st.binary(min_size=0, max_size=90).filter(lambda b: b"|" not in b), min_size=1, max_size=20
    )
)
def test_hash_spans_depends_only_on_content(strings):
    hashes = ctr_files._hash_spans(*_spans(strings))
    # Hashing each string alone (other padding widths) gives the same value.
    for s, h in zip(strings, hashes):
        assert ctr_files._hash_spans(*_spans([s]))[0] == h
    # Distinct strings get distinct hashes, equal strings equal hashes.
    by_string = {}
    for s, h in zip(strings, hashes.tolist()):
        assert by_string.setdefault(s, h) == h
    assert len(set(by_string.values())) == len(by_string)


def test_hash_distinguishes_trailing_zero_bytes_and_empty():
    hashes = ctr_files._hash_spans(
        *_spans([b"", b"\x00", b"a", b"a\x00", b"abcdefgh", b"abcdefgh\x00"])
    )
    assert len(set(hashes.tolist())) == 6


def test_split_assignment_fractions_and_determinism():
    rows = np.arange(200_000)
    split = ctr_files._assign_split(rows, 2018, (0.8, 0.1, 0.1))
    fractions = np.bincount(split, minlength=3) / rows.size
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.005)
    np.testing.assert_array_equal(split, ctr_files._assign_split(rows, 2018, (0.8, 0.1, 0.1)))
    other = ctr_files._assign_split(rows, 2019, (0.8, 0.1, 0.1))
    assert (other != split).mean() > 0.2
    # Prefix-stable: a row's split does not depend on the other rows.
    np.testing.assert_array_equal(
        ctr_files._assign_split(rows[1000:1010], 2018, (0.8, 0.1, 0.1)), split[1000:1010]
    )


@pytest.mark.parametrize("min_merge_size", [1, 7, 1 << 20])
def test_key_counter_matches_np_unique(monkeypatch, min_merge_size):
    monkeypatch.setattr(ctr_files._KeyCounter, "min_merge_size", min_merge_size)
    rng = np.random.default_rng(0)
    batches = [
        rng.integers(0, 50, size=rng.integers(0, 40)).astype(np.uint64) * np.uint64(2**58)
        for _ in range(30)
    ]
    counter = ctr_files._KeyCounter()
    for batch in batches:
        counter.add(batch)
    keys, counts = counter.result()
    expected_keys, expected_counts = np.unique(np.concatenate(batches), return_counts=True)
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_array_equal(counts, expected_counts)


def test_days_from_civil_weekday_matches_datetime():
    dates = [
        datetime.date(2014, 10, 21) + datetime.timedelta(days=d) for d in range(0, 3000, 37)
    ] + [datetime.date(2000, 2, 29), datetime.date(1970, 1, 1)]
    days = ctr_files._days_from_civil(
        np.array([d.year for d in dates]),
        np.array([d.month for d in dates]),
        np.array([d.day for d in dates]),
    )
    epoch = datetime.date(1970, 1, 1)
    assert days.tolist() == [(d - epoch).days for d in dates]
    assert ((days + 4) % 7).tolist() == [int(d.strftime("%w")) for d in dates]


# =============================================================================
# Criteo reader.
# =============================================================================

_HEX_A, _HEX_B, _HEX_C, _HEX_X = "68fd1e64", "80e26c9b", "0b153874", "a73ee510"


def _criteo_line(label, i1, i2, c1, ints_rest="5", cats_rest=_HEX_X):
    ints = [i1, i2] + [ints_rest] * 11
    cats = [c1] + [cats_rest] * 25
    return "\t".join([str(label)] + ints + cats)


# Rows of the hand-computed case (all rows go to train with fractions (1,0,0)).
#   I1 raw  -> bucket: "" ->0, "0"->0, "0"->0, "1"->1, "3"->1, "20"->8,
#                      "30"->11, "-1"->-1. Counts 0:3, 1:2, others 1.
#   I2 raw  -> bucket: "7"->3 (x4), "100"->21 (x2), ""->0, "2"->2.
#   C1: A x4, "" x2, B, C.
_HAND_ROWS = [
    (1, "", "7", _HEX_A),
    (0, "0", "7", _HEX_A),
    (0, "0", "7", _HEX_A),
    (1, "1", "7", ""),
    (0, "3", "100", ""),
    (0, "20", "100", _HEX_B),
    (0, "30", "", _HEX_C),
    (1, "-1", "2", _HEX_A),
]
# min_count=2; ids by decreasing frequency: I1 {0:1, 1:2}; I2 {3:1, 21:2};
# C1 {A:1, "":2}; constant fields -> 1.
_HAND_I1 = [1, 1, 1, 2, 2, 0, 0, 0]
_HAND_I2 = [1, 1, 1, 1, 2, 2, 0, 0]
_HAND_C1 = [1, 1, 1, 2, 2, 0, 0, 1]


def _write_lines(path, lines, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def test_criteo_hand_computed_encoding(tmp_path):
    lines = [_criteo_line(*row) for row in _HAND_ROWS]
    _write_lines(tmp_path / "train.txt", lines)
    ds = ctr_files.load_criteo(tmp_path, min_count=2, split_fractions=(1, 0, 0))
    assert ds.name == "criteo"
    assert ds.field_names == ctr_files.CRITEO_FIELD_NAMES
    assert ds.num_fields == 39
    assert ds.vocab_sizes == (3, 3) + (2,) * 11 + (3,) + (2,) * 25
    x = np.asarray(ds.train.features)
    assert x.dtype == np.int32 and x.shape == (8, 39)
    assert x[:, 0].tolist() == _HAND_I1
    assert x[:, 1].tolist() == _HAND_I2
    assert (x[:, 2:13] == 1).all()
    assert x[:, 13].tolist() == _HAND_C1
    assert (x[:, 14:] == 1).all()
    assert ds.train.labels.tolist() == [1, 0, 0, 1, 0, 0, 0, 1]
    assert ds.train.labels.dtype == np.float32
    assert len(ds.valid) == len(ds.test) == 0
    assert ds.info["ctr"]["train"] == pytest.approx(3 / 8)
    assert ds.info["malformed_lines"] == 0
    assert ds.info["distinct_train_values"]["I1"] == 5
    assert ds.info["distinct_train_values"]["C1"] == 4


def test_criteo_min_count_uses_train_split_only(tmp_path):
    # Rare value R appears twice in total but only once in train: OOV.
    lines, n = [], 400
    rows = np.arange(n)
    split = ctr_files._assign_split(rows, 5, (0.5, 0.25, 0.25))
    train_rows = np.flatnonzero(split == 0)
    other_rows = np.flatnonzero(split != 0)
    rare_rows = {int(train_rows[0]), int(other_rows[0])}
    twice_in_train = {int(train_rows[1]), int(train_rows[2])}
    for r in range(n):
        c1 = "deadbeef" if r in rare_rows else "cafebabe" if r in twice_in_train else _HEX_A
        lines.append(_criteo_line(r % 2, "1", "2", c1))
    _write_lines(tmp_path / "train.txt", lines)
    ds = ctr_files.load_criteo(
        tmp_path, min_count=2, split_seed=5, split_fractions=(0.5, 0.25, 0.25)
    )
    assert [len(ds.train), len(ds.valid), len(ds.test)] == np.bincount(split, minlength=3).tolist()
    assert ds.vocab_sizes[13] == 3  # _HEX_A -> 1, cafebabe -> 2, OOV.
    row_to_split_pos = {}
    counters = collections.Counter()
    for r in range(n):
        row_to_split_pos[r] = (int(split[r]), counters[int(split[r])])
        counters[int(split[r])] += 1
    for r in rare_rows:
        s, pos = row_to_split_pos[r]
        assert ds.split(("train", "valid", "test")[s]).features[pos, 13] == 0
    for r in twice_in_train:
        s, pos = row_to_split_pos[r]
        assert ds.train.features[pos, 13] == 2
    # Labels follow the rows (row r has label r % 2) in file order.
    for name, s in (("train", 0), ("valid", 1), ("test", 2)):
        expected = (np.flatnonzero(split == s) % 2).astype(np.float32)
        np.testing.assert_array_equal(ds.split(name).labels, expected)


def _random_criteo_lines(rng, n):
    hexes = [f"{v:08x}" for v in rng.integers(0, 2**32, size=30)]
    lines = []
    for _ in range(n):
        label = str(rng.integers(0, 2))
        ints = []
        for _ in range(13):
            u = rng.random()
            ints.append(
                ""
                if u < 0.15
                else str(int(rng.integers(-2, 3)))
                if u < 0.4
                else str(int(rng.zipf(1.5)))
            )
        cats = []
        for _ in range(26):
            u = rng.random()
            cats.append("" if u < 0.1 else hexes[min(int(rng.zipf(1.3)), 30) - 1])
        lines.append("\t".join([label] + ints + cats))
    return lines


def _reference_check(ds, lines, raw_fields, split, min_count):
    """Checks the encoding against a dict-based reference, up to id ties.

    raw_fields(line) -> list of per-field raw tokens (already bucketed).
    """
    tokens = [raw_fields(line) for line in lines]
    train_counts = [collections.Counter() for _ in range(ds.num_fields)]
    for toks, s in zip(tokens, split):
        if s == 0:
            for f, t in enumerate(toks):
                train_counts[f][t] += 1
    position = np.zeros(3, dtype=int)
    mapping = [dict() for _ in range(ds.num_fields)]
    for toks, s in zip(tokens, split):
        row = ds.split(("train", "valid", "test")[s]).features[position[s]]
        position[s] += 1
        for f, t in enumerate(toks):
            if train_counts[f][t] < min_count:
                assert row[f] == 0, (f, t)
            else:
                assert mapping[f].setdefault(t, int(row[f])) == row[f]
    assert position.tolist() == [len(ds.train), len(ds.valid), len(ds.test)]
    for f in range(ds.num_fields):
        kept = {t: c for t, c in train_counts[f].items() if c >= min_count}
        assert set(mapping[f]) <= set(kept)
        ids = sorted(mapping[f].values())
        assert len(set(ids)) == len(ids)  # injective
        assert ds.vocab_sizes[f] == len(kept) + 1
        # Ids 1..K ordered by non-increasing train frequency.
        by_id = sorted((i, kept[t]) for t, i in mapping[f].items())
        counts_in_id_order = [c for _, c in by_id]
        assert counts_in_id_order == sorted(counts_in_id_order, reverse=True)
        assert all(1 <= i < ds.vocab_sizes[f] for i in ids)


def _criteo_tokens(line):
    cols = line.split("\t")
    ints = []
    for v in cols[1:14]:
        v = int(v) if v else 0
        ints.append(v if v <= 2 else int(math.floor(math.log(v) ** 2)))
    return ints + cols[14:]


def test_criteo_matches_reference_on_random_file(tmp_path):
    rng = np.random.default_rng(0)
    lines = _random_criteo_lines(rng, 600)
    _write_lines(tmp_path / "train.txt", lines)
    ds = ctr_files.load_criteo(tmp_path, min_count=3)
    split = ctr_files._assign_split(np.arange(600), 2018, (0.8, 0.1, 0.1))
    _reference_check(ds, lines, _criteo_tokens, split, min_count=3)
    for name, s in (("train", 0), ("valid", 1), ("test", 2)):
        expected = [float(line[0]) for line, sp in zip(lines, split) if sp == s]
        assert ds.split(name).labels.tolist() == expected
    assert ds.info["num_lines"] == 600
    assert 440 <= len(ds.train) <= 520


def test_criteo_tiny_chunks_give_identical_output(tmp_path):
    rng = np.random.default_rng(1)
    lines = _random_criteo_lines(rng, 300)
    lines[17] = "bad line"  # malformed lines are handled across chunks too
    # CRLF line endings and no final newline.
    (tmp_path / "train.txt").write_bytes("\r\n".join(lines).encode())
    big = ctr_files.load_criteo(tmp_path, min_count=2, cache_dir=tmp_path / "a")
    small = ctr_files.load_criteo(tmp_path, min_count=2, cache_dir=tmp_path / "b", chunk_bytes=37)
    assert big.vocab_sizes == small.vocab_sizes
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(big.split(name).features, small.split(name).features)
        np.testing.assert_array_equal(big.split(name).labels, small.split(name).labels)
    assert big.info["malformed_lines"] == small.info["malformed_lines"] == 1
    assert big.info["num_lines"] == 300
    # CRLF: the "\r" was not glued onto the last categorical field.
    lf = tmp_path / "lf"
    _write_lines(lf / "train.txt", lines)
    plain = ctr_files.load_criteo(lf, min_count=2)
    np.testing.assert_array_equal(plain.train.features, big.train.features)


def test_criteo_malformed_lines_are_counted_and_warned(tmp_path, caplog):
    good = [_criteo_line(*row) for row in _HAND_ROWS]
    bad_columns = "\t".join(["1"] + ["5"] * 10)
    bad_label = _criteo_line(2, "1", "2", _HEX_A)
    bad_label_text = _criteo_line("x", "1", "2", _HEX_A)
    bad_int = _criteo_line(0, "1.5", "2", _HEX_A)
    bad_int2 = _criteo_line(0, "1", "abc", _HEX_A)
    lines = (
        good[:3]
        + [bad_columns]
        + good[3:5]
        + [bad_label, ""]
        + good[5:]
        + [bad_int, bad_label_text, bad_int2]
    )
    _write_lines(tmp_path / "train.txt", lines)
    with caplog.at_level(logging.WARNING, logger="jaxpapers.data.ctr"):
        ds = ctr_files.load_criteo(tmp_path, min_count=2, split_fractions=(1, 0, 0))
    info = ds.info
    assert info["malformed_lines"] == 6
    assert info["malformed_by_reason"] == {
        "wrong_column_count": 2,
        "bad_label": 2,
        "bad_integer_feature": 2,
        "bad_hour": 0,
    }
    assert info["first_malformed_line_numbers"] == [4, 7, 8, 12, 13, 14]
    assert info["num_lines"] == 14
    # The good rows are exactly the hand-computed case.
    assert np.asarray(ds.train.features)[:, 0].tolist() == _HAND_I1
    assert np.asarray(ds.train.features)[:, 13].tolist() == _HAND_C1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "6 malformed" in message
    assert "[4, 7, 8, 12, 13, 14]" in message


def test_criteo_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        ctr_files.load_criteo(tmp_path / "nowhere")
    message = str(excinfo.value)
    assert str(tmp_path / "nowhere" / "train.txt") in message
    assert str(tmp_path / "nowhere" / "criteo" / "train.txt") in message
    assert "dac.tar.gz" in message
    assert "Display Advertising Challenge" in message
    assert "--config.data.data_dir=<dir>" in message


def test_criteo_accepts_nested_directory_and_max_rows(tmp_path):
    rng = np.random.default_rng(2)
    lines = _random_criteo_lines(rng, 200)
    _write_lines(tmp_path / "criteo" / "train.txt", lines)
    _write_lines(tmp_path / "first" / "train.txt", lines[:75])
    limited = ctr_files.load_criteo(tmp_path, min_count=2, max_rows=75, chunk_bytes=500)
    truncated = ctr_files.load_criteo(tmp_path / "first", min_count=2)
    assert limited.info["num_lines"] == 75
    assert limited.vocab_sizes == truncated.vocab_sizes
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(limited.split(name).features, truncated.split(name).features)


def test_criteo_cache_is_reused_and_keyed_by_settings(tmp_path, monkeypatch):
    lines = [_criteo_line(*row) for row in _HAND_ROWS]
    _write_lines(tmp_path / "train.txt", lines)
    first = ctr_files.load_criteo(tmp_path, min_count=2, split_fractions=(1, 0, 0))
    cache = tmp_path / "jaxpapers_cache"
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 1 and built[0].startswith("criteo_")
    manifest = json.loads((cache / built[0] / "manifest.json").read_text())
    assert manifest["settings"]["min_count"] == 2
    assert isinstance(first.train.features, np.memmap)

    def must_not_parse(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(ctr_files, "_build_cache", must_not_parse)
    again = ctr_files.load_criteo(tmp_path, min_count=2, split_fractions=(1, 0, 0))
    np.testing.assert_array_equal(again.train.features, first.train.features)
    assert again.vocab_sizes == first.vocab_sizes
    # Different settings -> a different cache entry (so it must be built).
    with pytest.raises(AssertionError, match="reused"):
        ctr_files.load_criteo(tmp_path, min_count=3, split_fractions=(1, 0, 0))


def test_criteo_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    _write_lines(tmp_path / "train.txt", [_criteo_line(*row) for row in _HAND_ROWS])
    real_build = ctr_files._build_cache

    def build_then_crash(*args, **kwargs):
        real_build(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ctr_files, "_build_cache", build_then_crash)
    with pytest.raises(KeyboardInterrupt):
        ctr_files.load_criteo(tmp_path, min_count=2)
    cache = tmp_path / "jaxpapers_cache"
    assert list(cache.iterdir()) == []  # no final dir, no temp leftovers
    monkeypatch.setattr(ctr_files, "_build_cache", real_build)
    ds = ctr_files.load_criteo(tmp_path, min_count=2)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split_fractions=(0.8, 0.1)), "split_fractions"),
        (dict(split_fractions=(0.8, 0.3, -0.1)), "split_fractions"),
        (dict(min_count=0), "min_count"),
        (dict(max_rows=0), "max_rows"),
    ],
)
def test_reader_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ctr_files.load_criteo(tmp_path, **kwargs)


# =============================================================================
# Avazu reader.
# =============================================================================

_AVAZU_HEADER = ",".join(
    (
        "id",
        "click",
        "hour",
        "C1",
        "banner_pos",
        "site_id",
        "site_domain",
        "site_category",
        "app_id",
        "app_domain",
        "app_category",
        "device_id",
        "device_ip",
        "device_model",
        "device_type",
        "device_conn_type",
        "C14",
        "C15",
        "C16",
        "C17",
        "C18",
        "C19",
        "C20",
        "C21",
    )
)


def _avazu_line(row_id, click, hour, site_id="1fbe01fe", rest="1005"):
    cats = ["1005", "0", site_id] + [rest] * 18
    return ",".join([str(row_id), str(click), str(hour)] + cats)


def test_avazu_hand_computed_encoding(tmp_path):
    # 2014-10-21 is a Tuesday (%w 2); 10-25 Saturday (6); 10-26 Sunday (0).
    hours = [14102100, 14102100, 14102523, 14102605, 14102605, 14102605, 14102113]
    sites = ["aaaa", "aaaa", "bbbb", "aaaa", "", "", "cccc"]
    clicks = [0, 1, 0, 0, 1, 0, 0]
    lines = [_AVAZU_HEADER] + [
        _avazu_line(10**19 + i, c, h, s) for i, (c, h, s) in enumerate(zip(clicks, hours, sites))
    ]
    _write_lines(tmp_path / "train.csv", lines)
    ds = ctr_files.load_avazu(tmp_path, split_fractions=(1, 0, 0))  # min_count=2
    assert ds.name == "avazu"
    assert ds.field_names == ctr_files.AVAZU_FIELD_NAMES
    assert ds.num_fields == 24
    assert ds.field_names[0] == "hour"
    assert ds.field_names[-2:] == ("weekday", "weekend")
    x = np.asarray(ds.train.features)
    # hour of day: 00 x2, 23 x1, 05 x3, 13 x1 -> 05:1, 00:2, others OOV.
    assert x[:, 0].tolist() == [2, 2, 0, 1, 1, 1, 0]
    # site_id (field 3): aaaa x3 -> 1, "" x2 -> 2, bbbb / cccc rare -> 0.
    assert ds.field_names[3] == "site_id"
    assert x[:, 3].tolist() == [1, 1, 0, 1, 2, 2, 0]
    # weekday %w: Tue(2) x3, Sat(6) x1, Sun(0) x3 -> tie between 2 and 0.
    weekday = x[:, -2].tolist()
    assert weekday[0] == weekday[1] == weekday[6] != weekday[3]
    assert weekday[3] == weekday[4] == weekday[5]
    assert weekday[2] == 0  # Saturday seen once -> OOV
    assert sorted({weekday[0], weekday[3]}) == [1, 2]
    # weekend: 0 (Tue) x3, 1 (Sat, Sun) x4 -> 1:1, 0:2.
    assert x[:, -1].tolist() == [2, 2, 1, 1, 1, 1, 2]
    assert ds.vocab_sizes[0] == 3 and ds.vocab_sizes[-1] == 3
    assert (x[:, 1] == 1).all() and (x[:, 2] == 1).all()
    assert ds.train.labels.tolist() == clicks


def _random_avazu_lines(rng, n):
    sites = [f"{v:08x}" for v in rng.integers(0, 2**32, size=20)]
    lines = [_AVAZU_HEADER]
    for _ in range(n):
        day = int(rng.integers(21, 31))
        hour = 14100000 + day * 100 + int(rng.integers(0, 24))
        cats = [str(rng.choice([1005, 1002, 1010])), str(rng.integers(0, 3))]
        cats += [
            sites[min(int(rng.zipf(1.4)), 20) - 1] if rng.random() > 0.05 else "" for _ in range(11)
        ]
        cats += [str(int(rng.zipf(1.6))) for _ in range(8)]
        lines.append(
            ",".join([str(rng.integers(0, 2**63)), str(rng.integers(0, 2)), str(hour)] + cats)
        )
    return lines


def _avazu_tokens(line):
    cols = line.split(",")
    hour = cols[2]
    date = datetime.date(2000 + int(hour[:2]), int(hour[2:4]), int(hour[4:6]))
    weekday = int(date.strftime("%w"))
    return [int(hour[6:8])] + cols[3:] + [weekday, int(weekday in (0, 6))]


def test_avazu_matches_reference_and_is_chunk_invariant(tmp_path):
    rng = np.random.default_rng(3)
    lines = _random_avazu_lines(rng, 500)
    _write_lines(tmp_path / "avazu" / "train", lines)
    ds = ctr_files.load_avazu(tmp_path, split_seed=11)
    split = ctr_files._assign_split(np.arange(500), 11, (0.8, 0.1, 0.1))
    _reference_check(ds, lines[1:], _avazu_tokens, split, min_count=2)
    tiny = ctr_files.load_avazu(
        tmp_path, split_seed=11, chunk_bytes=50, cache_dir=tmp_path / "other_cache"
    )
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds.split(name).features, tiny.split(name).features)
        np.testing.assert_array_equal(ds.split(name).labels, tiny.split(name).labels)


def test_avazu_malformed_lines(tmp_path, caplog):
    lines = [
        _AVAZU_HEADER,
        _avazu_line(1, 0, 14102100),
        _avazu_line(2, 1, 14103000),
        _avazu_line(3, 1, 14022900),  # 2014-02-29 does not exist
        _avazu_line(4, 0, 14102124),  # hour 24
        _avazu_line(5, 0, 1410210),  # 7 digits
        _avazu_line(6, 3, 14102100),  # label 3
        _avazu_line(7, 0, 14102100) + ",extra",
        _avazu_line(8, 0, 16022900),
    ]  # 2016 is a leap year: fine
    _write_lines(tmp_path / "train.csv", lines)
    with caplog.at_level(logging.WARNING, logger="jaxpapers.data.ctr"):
        ds = ctr_files.load_avazu(tmp_path, split_fractions=(1, 0, 0), min_count=1)
    assert len(ds.train) == 3
    assert ds.info["malformed_by_reason"]["bad_hour"] == 3
    assert ds.info["malformed_by_reason"]["bad_label"] == 1
    assert ds.info["malformed_by_reason"]["wrong_column_count"] == 1
    # Line numbers count the header as line 1.
    assert ds.info["first_malformed_line_numbers"] == [4, 5, 6, 7, 8]
    assert any("5 malformed" in r.getMessage() for r in caplog.records)


def test_avazu_rejects_wrong_header(tmp_path):
    _write_lines(tmp_path / "train.csv", ["id,hour,C1", _avazu_line(1, 0, 14102100)])
    with pytest.raises(ValueError, match="unexpected header"):
        ctr_files.load_avazu(tmp_path)


def test_avazu_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        ctr_files.load_avazu(tmp_path)
    message = str(excinfo.value)
    for candidate in (
        "train.csv",
        "train",
        os.path.join("avazu", "train.csv"),
        os.path.join("avazu", "train"),
    ):
        assert str(tmp_path / candidate) in message
    assert "avazu-ctr-prediction" in message
    assert "train.gz" in message
    assert "--config.data.data_dir=<dir>" in message
