"""Criteo and Avazu CTR logs: streaming readers into :class:`~jaxpapers.data.ctr.CTRDataset`.

Criteo / Avazu (:func:`load_criteo`, :func:`load_avazu`)
    The raw Kaggle files, preprocessed like the open benchmark BARS /
    FuxiCTR ``Criteo_x4`` / ``Avazu_x4`` settings (integer features
    log-bucketed, values rarer than ``min_count`` in the training split
    mapped to OOV, ``hour`` expanded into hour-of-day / weekday / weekend).
    The files are several GB (Criteo: 45M rows, 11 GB), so the readers:

    * stream the file in byte chunks and never hold it in memory;
    * parse with vectorised NumPy (no per-line Python): delimiters are located
      with ``np.flatnonzero``, each field's bytes are read as 8-byte words
      through an unaligned ``uint64`` view of the buffer, integers are
      parsed as a right-aligned digit matrix times place values, and
      categorical strings are reduced to 64-bit hashes by mixing their
      zero-padded little-endian words with the splitmix64 finaliser (the
      hash depends only on the string, never on chunking or padding width).
      Progress (bytes read) is shown with tqdm on stderr. Value frequencies
      are then counted
      with ``np.unique`` over the hashes and merged across chunks, so memory
      is O(number of distinct values) with no Python dict of strings. With
      64-bit hashes the chance of any collision among the ~33M distinct
      Criteo values is about 3e-5;
    * make two passes: pass 1 counts train-split frequencies, pass 2 encodes
      every chunk with ``np.searchsorted`` into the kept keys and writes
      ``.npy`` files through ``np.lib.format.open_memmap``;
    * cache the result under ``<cache_dir>/<name>_<settings hash>/`` with a
      JSON manifest. The cache is built in a temporary sibling directory and
      renamed into place at the end, so an interrupted run never leaves a
      half-written cache; later calls just memory-map the arrays;
    * count malformed lines (wrong column count, bad label, non-numeric
      integer feature, bad ``hour``), skip them, log a warning with the
      first line numbers, and record the counts in ``info``.

    Kept values get ids 1..K in order of decreasing training frequency (ties
    broken by an arbitrary but fixed order of the value hashes), so id 1 is
    the most frequent value of a field.

    The train / valid / test split is a deterministic function of the
    physical row index and ``split_seed`` (a splitmix64 hash of the index
    turned into a uniform number in [0, 1)), which works in one streaming
    pass. It has the same 8:1:1 proportions as BARS ``x4`` but is *not* the
    exact x4 split, which is defined by a released index file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tqdm

from jaxpapers.data.ctr import SPLIT_NAMES, CTRDataset, CTRSplit, _check_positive_int

__all__ = ["load_criteo", "load_avazu", "criteo_bucket", "CRITEO_FIELD_NAMES", "AVAZU_FIELD_NAMES"]

_LOG = logging.getLogger(__name__)

# =============================================================================
# Hashing helpers (raw readers: split assignment and string hashing).
# =============================================================================

_MIX_C1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STRING_SEED = np.uint64(0x243F6A8885A308D3)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche mix of uint64 values."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _MIX_C1
        x = x ^ (x >> np.uint64(27))
        x = x * _MIX_C2
        x = x ^ (x >> np.uint64(31))
    return x


def _uniform_from_index(index: np.ndarray, seed: int) -> np.ndarray:
    """Maps integer row indices to reproducible uniforms in [0, 1)."""
    with np.errstate(over="ignore"):
        salt = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN)
        h = _mix64(np.asarray(index, dtype=np.uint64) * _GOLDEN + salt)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


def _assign_split(
    index: np.ndarray, seed: int, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Returns 0 (train), 1 (valid) or 2 (test) for every row index."""
    u = _uniform_from_index(index, seed)
    cut1 = fractions[0]
    cut2 = fractions[0] + fractions[1]
    return (u >= cut1).astype(np.int8) + (u >= cut2).astype(np.int8)


# =============================================================================
# Raw Criteo / Avazu readers: vectorised parsing of delimited text.
# =============================================================================

CRITEO_FIELD_NAMES = tuple([f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
_AVAZU_CATEGORICAL = (
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
_AVAZU_HEADER = ("id", "click", "hour") + _AVAZU_CATEGORICAL
AVAZU_FIELD_NAMES = ("hour",) + _AVAZU_CATEGORICAL + ("weekday", "weekend")

_CACHE_FORMAT_VERSION = 1
_DEFAULT_CHUNK_BYTES = 32 << 20
# Strings longer than this are hashed one row at a time (never in practice).
_MAX_VECTOR_STRING_BYTES = 64
# Integers with more characters than this are rejected (int64 overflow).
_MAX_INT_CHARS = 18
# Place values for up to 24 right-aligned byte columns; the leading
# columns beyond 18 digits are always zero, so their place value is moot.
_POWERS_OF_TEN = np.concatenate(
    [10 ** np.arange(_MAX_INT_CHARS + 1, dtype=np.int64), np.zeros(8, dtype=np.int64)]
)
# Zero bytes around every chunk buffer (>= the widest vectorised read).
_BUFFER_PADDING = 72
_MAX_REPORTED_LINES = 10

# Per-line status codes.
_OK, _WRONG_COLUMNS, _BAD_LABEL, _BAD_INTEGER, _BAD_HOUR = 0, 1, 2, 3, 4
_MALFORMED_REASONS = {
    _WRONG_COLUMNS: "wrong_column_count",
    _BAD_LABEL: "bad_label",
    _BAD_INTEGER: "bad_integer_feature",
    _BAD_HOUR: "bad_hour",
}

_SPLIT_RULE = (
    "row i (0-based data line) goes to train if u(i) < f_train, to valid if "
    "u(i) < f_train + f_valid, else to test, where u(i) is a splitmix64 hash "
    "of (i, split_seed) mapped to [0, 1). Same 8:1:1 proportions as BARS x4, "
    "but not the exact x4 split (that one comes from a released index file)."
)


def _line_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) offsets of the lines in ``buf``, without '\\n' / '\\r'."""
    newlines = np.flatnonzero(buf == 10)
    if buf.size and buf[-1] != 10:
        newlines = np.append(newlines, buf.size)
    ends = newlines.astype(np.int64)
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        carriage = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        ends = ends - carriage
    return starts, ends


def _column_spans(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, delimiter: int, num_columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits lines into columns.

    Returns:
        good: (n_lines,) bool, lines with exactly ``num_columns`` columns.
        col_starts, col_ends: (n_good, num_columns) byte offsets.
    """
    delims = np.flatnonzero(buf == delimiter)
    # Delimiters are sorted, so each line owns a contiguous index range.
    first = np.searchsorted(delims, starts)
    last = np.searchsorted(delims, ends)
    good = (last - first == num_columns - 1) & (ends > starts)
    inner = delims[first[good][:, None] + np.arange(num_columns - 1, dtype=np.int64)[None, :]]
    col_starts = np.empty((inner.shape[0], num_columns), dtype=np.int64)
    col_ends = np.empty_like(col_starts)
    col_starts[:, 0] = starts[good]
    col_starts[:, 1:] = inner + 1
    col_ends[:, :-1] = inner
    col_ends[:, -1] = ends[good]
    return good, col_starts, col_ends


def _low_bytes_mask(num_bytes: np.ndarray) -> np.ndarray:
    """uint64 masks keeping the ``num_bytes`` (0..8) least significant bytes."""
    num_bytes = np.clip(num_bytes, 0, 8).astype(np.uint64)
    full = num_bytes == 8
    shift = np.uint64(8) * np.where(full, np.uint64(0), num_bytes)
    partial = (np.uint64(1) << shift) - np.uint64(1)
    return np.where(full, ~np.uint64(0), partial)


def _span_words(
    buf: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    num_words: int,
    align_right: bool = False,
) -> np.ndarray:
    """Each span's bytes as (n, num_words) little-endian uint64 words.

    Spans must satisfy lengths <= 8 * num_words. Left-aligned (default): the
    span starts at byte 0 of word 0 and is zero padded after its end. With
    ``align_right`` it ends at the last byte of the last word and is zero
    padded before its start, so byte columns have fixed place values.

    The words are read with a 1-D gather from an *unaligned* uint64 view of
    the buffer (stride 1 byte), which is much faster than gathering an
    (n, width) byte matrix. ``_parse_chunk`` pads its buffer on both sides
    with ``_BUFFER_PADDING`` zero bytes so that no copy is needed; other
    callers' buffers are padded on the fly.
    """
    width = 8 * num_words
    out = np.zeros((starts.size, num_words), dtype="<u8")
    if starts.size == 0:
        return out
    first = starts + lengths - width if align_right else starts
    shift = max(0, -int(first.min()))
    if shift or buf.size < int(first.max()) + width:
        buf = np.concatenate(
            [np.zeros(shift, dtype=np.uint8), buf, np.zeros(width, dtype=np.uint8)]
        )
        first = first + shift
    buf = np.ascontiguousarray(buf)
    words = np.ndarray(shape=(buf.size - 7,), dtype="<u8", buffer=buf, strides=(1,))
    for j in range(num_words):
        if align_right:
            # Bytes of word j before the span's start are foreign.
            foreign = width - lengths - 8 * j
            mask = ~_low_bytes_mask(foreign)
        else:
            mask = _low_bytes_mask(lengths - 8 * j)
        out[:, j] = words[first + 8 * j] & mask
    return out


def _hash_fixed_width(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int
) -> np.ndarray:
    """Hashes spans of at most ``width`` bytes (``width`` a multiple of 8)."""
    words = _span_words(buf, starts, lengths, width // 8)
    h = _mix64(lengths.astype(np.uint64) ^ _STRING_SEED)
    for j in range(width // 8):
        active = lengths > 8 * j
        mixed = _mix64((h ^ words[:, j]) + _GOLDEN)
        h = np.where(active, mixed, h)
    return h


def _hash_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hashes of the byte strings buf[starts[i]:ends[i]].

    The hash depends only on the bytes (and length), not on the padding width
    used to vectorise, so chunking never changes it.
    """
    lengths = ends - starts
    out = np.empty(lengths.shape, dtype=np.uint64)
    if lengths.size == 0:
        return out
    short = lengths <= _MAX_VECTOR_STRING_BYTES
    max_short = int(lengths[short].max()) if short.any() else 0
    width = max(8, -(-max_short // 8) * 8)
    out[short] = _hash_fixed_width(buf, starts[short], lengths[short], width)
    for row in np.flatnonzero(~short):  # pathological long fields
        row_width = -(-int(lengths[row]) // 8) * 8
        out[row] = _hash_fixed_width(buf, starts[row : row + 1], lengths[row : row + 1], row_width)[
            0
        ]
    return out


def _parse_int_spans(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parses optionally negative decimal integers.

    The spans are gathered *right-aligned* into an (n, width) byte matrix
    (width a multiple of 8), so column j has the same place value
    10^(width - 1 - j) in every row and the value is one matrix-vector
    product.

    Returns:
        values: int64 (0 where empty or invalid).
        valid: bool, the span is empty or a well-formed integer.
        empty: bool, the span is empty.
    """
    lengths = ends - starts
    empty = lengths == 0
    if lengths.size == 0:
        return (np.zeros(0, np.int64), np.ones(0, bool), empty)
    too_long = lengths > _MAX_INT_CHARS
    clipped = np.minimum(lengths, _MAX_INT_CHARS)
    width = 8 * max(1, -(-int(clipped.max()) // 8))
    raw = _span_words(buf, ends - clipped, clipped, width // 8, align_right=True).view(
        np.uint8
    )  # (n, width)
    first_col = width - clipped  # column of each span's first character
    first_char = np.take_along_axis(raw, np.minimum(first_col, width - 1)[:, None], axis=1)[:, 0]
    negative = (lengths > 1) & (first_char == ord("-"))
    neg_rows = np.flatnonzero(negative)
    raw[neg_rows, first_col[neg_rows]] = 0  # drop the sign
    digits = raw - np.uint8(ord("0"))  # padding / non-digits wrap to > 9
    is_digit = digits <= 9
    # Every non-sign character of the span must be a digit.
    num_digits = np.count_nonzero(is_digit, axis=1)
    valid = (num_digits == clipped - negative) & ~too_long
    digits *= is_digit
    values = digits.astype(np.int64) @ _POWERS_OF_TEN[width - 1 :: -1]
    values = np.where(negative, -values, values)
    values = np.where(valid, values, 0)
    return values, valid | empty, empty


def _parse_label(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (labels uint8, ok) for a 0/1 label column."""
    values, valid, empty = _parse_int_spans(buf, starts, ends)
    ok = valid & ~empty & ((values == 0) | (values == 1))
    return np.where(ok, values, 0).astype(np.uint8), ok


def criteo_bucket(values: np.ndarray) -> np.ndarray:
    """BARS/FuxiCTR integer bucketing: floor(ln(v)^2) if v > 2, else v."""
    values = np.asarray(values, dtype=np.int64)
    out = values.copy()
    big = values > 2
    out[big] = np.floor(np.log(values[big].astype(np.float64)) ** 2).astype(np.int64)
    return out


def _parse_criteo(
    buf: np.ndarray, col_starts: np.ndarray, col_ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """label, I1..I13, C1..C26 -> (labels, keys (n, 39) uint64, status)."""
    n = col_starts.shape[0]
    labels, label_ok = _parse_label(buf, col_starts[:, 0], col_ends[:, 0])
    keys = np.empty((n, len(CRITEO_FIELD_NAMES)), dtype=np.uint64)
    ints_ok = np.ones(n, dtype=bool)
    for f in range(13):
        values, valid, _ = _parse_int_spans(buf, col_starts[:, 1 + f], col_ends[:, 1 + f])
        ints_ok &= valid
        # Empty -> na_value 0 -> bucket(0) = 0, exactly like BARS.
        keys[:, f] = criteo_bucket(values).view(np.uint64)
    for f in range(13, 39):
        keys[:, f] = _hash_spans(buf, col_starts[:, 1 + f], col_ends[:, 1 + f])
    status = np.where(~label_ok, _BAD_LABEL, np.where(~ints_ok, _BAD_INTEGER, _OK)).astype(np.int8)
    return labels, keys, status


_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (years >= 1)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    shifted_month = np.where(month > 2, month - 3, month + 9)
    day_of_year = (153 * shifted_month + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _parse_avazu_hour(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """YYMMDDHH -> (hour of day, weekday (Sunday = 0, as %w), weekend, ok)."""
    values, valid, empty = _parse_int_spans(buf, starts, ends)
    ok = valid & ~empty & (ends - starts == 8) & (values >= 0)
    year = 2000 + values // 1_000_000
    month = (values // 10_000) % 100
    day = (values // 100) % 100
    hour = values % 100
    month_ok = (month >= 1) & (month <= 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month - 1, 0, 11)] + ((month == 2) & leap)
    ok &= month_ok & (day >= 1) & (day <= month_days) & (hour <= 23)
    days = _days_from_civil(year, np.where(ok, month, 1), np.where(ok, day, 1))
    weekday = (days + 4) % 7  # 1970-01-01 was a Thursday (%w = 4).
    weekend = (weekday == 0) | (weekday == 6)
    return hour, weekday, weekend.astype(np.int64), ok


def _parse_avazu(
    buf: np.ndarray, col_starts: np.ndarray, col_ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """id, click, hour, 21 categoricals -> (labels, keys (n, 24), status)."""
    n = col_starts.shape[0]
    labels, label_ok = _parse_label(buf, col_starts[:, 1], col_ends[:, 1])
    hour, weekday, weekend, hour_ok = _parse_avazu_hour(buf, col_starts[:, 2], col_ends[:, 2])
    keys = np.empty((n, len(AVAZU_FIELD_NAMES)), dtype=np.uint64)
    keys[:, 0] = hour.view(np.uint64)
    for f in range(len(_AVAZU_CATEGORICAL)):
        keys[:, 1 + f] = _hash_spans(buf, col_starts[:, 3 + f], col_ends[:, 3 + f])
    keys[:, -2] = weekday.view(np.uint64)
    keys[:, -1] = weekend.view(np.uint64)
    status = np.where(~label_ok, _BAD_LABEL, np.where(~hour_ok, _BAD_HOUR, _OK)).astype(np.int8)
    return labels, keys, status


# =============================================================================
# Raw readers: streaming driver, vocabulary, cache.
# =============================================================================


@dataclasses.dataclass(frozen=True)
class _RawFormat:
    """Static description of a raw CTR file format."""

    name: str
    candidates: tuple[str, ...]  # paths relative to data_dir, in order
    delimiter: int
    header: tuple[str, ...] | None  # expected header line, if any
    num_columns: int
    field_names: tuple[str, ...]
    parse: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    how_to_get: str


_CRITEO = _RawFormat(
    name="criteo",
    candidates=("train.txt", os.path.join("criteo", "train.txt")),
    delimiter=ord("\t"),
    header=None,
    num_columns=40,
    field_names=CRITEO_FIELD_NAMES,
    parse=_parse_criteo,
    how_to_get=(
        "Download the Criteo 'Display Advertising Challenge' data from Kaggle "
        "(dac.tar.gz, https://www.kaggle.com/c/criteo-display-ad-challenge), "
        "extract train.txt from it (tar -xzf dac.tar.gz train.txt)"
    ),
)

_AVAZU = _RawFormat(
    name="avazu",
    candidates=(
        "train.csv",
        "train",
        os.path.join("avazu", "train.csv"),
        os.path.join("avazu", "train"),
    ),
    delimiter=ord(","),
    header=_AVAZU_HEADER,
    num_columns=len(_AVAZU_HEADER),
    field_names=AVAZU_FIELD_NAMES,
    parse=_parse_avazu,
    how_to_get=(
        "Download train.gz of the Kaggle 'avazu-ctr-prediction' competition "
        "(https://www.kaggle.com/c/avazu-ctr-prediction), decompress it to "
        "train.csv (gunzip -c train.gz > train.csv)"
    ),
)


def _find_source(fmt: _RawFormat, data_dir: str | os.PathLike) -> pathlib.Path:
    root = pathlib.Path(data_dir).expanduser()
    tried = [root / c for c in fmt.candidates]
    for path in tried:
        if path.is_file():
            return path
    tried_text = "\n".join(f"  {p}" for p in tried)
    raise FileNotFoundError(
        f"{fmt.name}: raw data file not found. Tried:\n{tried_text}\n"
        f"{fmt.how_to_get}, put it at one of the paths above and pass "
        f"--config.data.data_dir=<dir> (here data_dir={str(root)!r})."
    )


def _read_header(fmt: _RawFormat, path: pathlib.Path) -> int:
    """Validates the header line, if any; returns its length in bytes."""
    if fmt.header is None:
        return 0
    with open(path, "rb") as f:
        line = f.readline()
    names = tuple(line.rstrip(b"\r\n").decode("utf-8", "replace").split(","))
    if names != fmt.header:
        raise ValueError(
            f"{path}: unexpected header {names!r}; expected the Kaggle "
            f"{fmt.name} training file header {fmt.header!r}."
        )
    return len(line)


def _iter_chunks(
    path: pathlib.Path, *, skip_bytes: int, chunk_bytes: int, max_rows: int | None, desc: str
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Yields (buffer, line starts, line ends, index of its first line).

    Chunks hold whole lines only; at most ``max_rows`` lines are produced.
    """
    total = os.path.getsize(path) - skip_bytes
    rows_done = 0
    with (
        open(path, "rb") as f,
        tqdm.tqdm(
            total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, mininterval=1.0
        ) as progress,
    ):
        f.seek(skip_bytes)
        carry = b""
        while max_rows is None or rows_done < max_rows:
            block = f.read(chunk_bytes)
            progress.update(len(block))
            data = carry + block
            if block:
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                carry, data = data[cut + 1 :], data[: cut + 1]
            if not data:
                break
            buf = np.frombuffer(data, dtype=np.uint8)
            starts, ends = _line_spans(buf)
            if max_rows is not None and rows_done + starts.size > max_rows:
                keep = max_rows - rows_done
                buf = buf[: starts[keep]]  # drop the lines after the limit
                starts, ends = starts[:keep], ends[:keep]
            yield buf, starts, ends, rows_done
            rows_done += starts.size
            if not block:
                break


@dataclasses.dataclass
class _Chunk:
    labels: np.ndarray  # (n_lines,) uint8
    keys: np.ndarray  # (n_lines, num_fields) uint64, 0 on bad lines
    status: np.ndarray  # (n_lines,) int8, 0 = ok
    split: np.ndarray  # (n_lines,) int8 in {0, 1, 2}
    first_row: int


def _parse_chunk(
    fmt: _RawFormat,
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    first_row: int,
    split_seed: int,
    split_fractions: tuple[float, float, float],
) -> _Chunk:
    n = starts.size
    good, col_starts, col_ends = _column_spans(buf, starts, ends, fmt.delimiter, fmt.num_columns)
    # Zero padding on both sides lets _span_words read whole 8-byte words
    # around every span without bounds checks or copies.
    pad = _BUFFER_PADDING
    padded = np.zeros(buf.size + 2 * pad, dtype=np.uint8)
    padded[pad : pad + buf.size] = buf
    labels = np.zeros(n, dtype=np.uint8)
    keys = np.zeros((n, len(fmt.field_names)), dtype=np.uint64)
    status = np.full(n, _WRONG_COLUMNS, dtype=np.int8)
    good_labels, good_keys, good_status = fmt.parse(padded, col_starts + pad, col_ends + pad)
    labels[good] = good_labels
    keys[good] = good_keys
    status[good] = good_status
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    split = _assign_split(rows, split_seed, split_fractions)
    return _Chunk(labels, keys, status, split, first_row)


class _KeyCounter:
    """Exact counts of uint64 keys, merged lazily with geometric buffering.

    Chunk-level ``np.unique`` results are buffered and merged into the sorted
    totals only when the buffer is as large as the totals, so the total cost
    is O(N log N) and peak memory about twice the number of distinct keys.
    """

    min_merge_size = 1 << 20  # never merge fewer pending keys than this

    def __init__(self):
        self._keys = np.zeros(0, dtype=np.uint64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, keys: np.ndarray) -> None:
        if keys.size == 0:
            return
        uniq, counts = np.unique(keys, return_counts=True)
        self._pending.append((uniq, counts.astype(np.int64)))
        self._pending_size += uniq.size
        if self._pending_size >= max(self._keys.size, self.min_merge_size):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [k for k, _ in self._pending])
        counts = np.concatenate([self._counts] + [c for _, c in self._pending])
        self._pending, self._pending_size = [], 0
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        first = np.ones(keys.size, dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        self._keys = keys[starts]
        self._counts = np.add.reduceat(counts, starts) if keys.size else counts

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct keys and their counts."""
        self._merge()
        return self._keys, self._counts


@dataclasses.dataclass(frozen=True)
class _Vocab:
    """Kept keys of one field, sorted, with their ids (1..K)."""

    keys: np.ndarray  # sorted uint64
    ids: np.ndarray  # int32, ids[i] is the id of keys[i]

    @property
    def size(self) -> int:
        return int(self.keys.size) + 1  # + the OOV id 0

    def encode(self, keys: np.ndarray) -> np.ndarray:
        if self.keys.size == 0:
            return np.zeros(keys.shape, dtype=np.int32)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, self.keys.size - 1)
        found = self.keys[pos] == keys
        return np.where(found, self.ids[pos], 0).astype(np.int32)


def _build_vocab(keys: np.ndarray, counts: np.ndarray, min_count: int) -> _Vocab:
    """Keeps keys seen >= min_count times; ids by decreasing frequency."""
    kept = counts >= min_count
    kept_keys, kept_counts = keys[kept], counts[kept]
    # Rank by (-count, key): lexsort sorts by the last key first.
    rank_order = np.lexsort((kept_keys, -kept_counts))
    ids = np.empty(kept_keys.size, dtype=np.int32)
    ids[rank_order] = np.arange(1, kept_keys.size + 1, dtype=np.int32)
    return _Vocab(kept_keys, ids)


def _settings_hash(settings: dict) -> str:
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _array_paths(directory: pathlib.Path, split: str) -> tuple[pathlib.Path, pathlib.Path]:
    return (directory / f"{split}_features.npy", directory / f"{split}_labels.npy")


def _build_cache(
    fmt: _RawFormat, source: pathlib.Path, out_dir: pathlib.Path, settings: dict, chunk_bytes: int
) -> None:
    """Two streaming passes over ``source``; writes arrays + manifest."""
    min_count = settings["min_count"]
    split_seed = settings["split_seed"]
    fractions = tuple(settings["split_fractions"])
    max_rows = settings["max_rows"]
    header_bytes = _read_header(fmt, source)
    header_lines = 1 if fmt.header is not None else 0
    num_fields = len(fmt.field_names)

    def chunks(pass_name: str) -> Iterator[_Chunk]:
        for buf, starts, ends, first_row in _iter_chunks(
            source,
            skip_bytes=header_bytes,
            chunk_bytes=chunk_bytes,
            max_rows=max_rows,
            desc=f"{fmt.name} {pass_name}",
        ):
            yield _parse_chunk(fmt, buf, starts, ends, first_row, split_seed, fractions)

    # Pass 1: split sizes, clicks, malformed lines, train value counts.
    counters = [_KeyCounter() for _ in range(num_fields)]
    rows_per_split = np.zeros(3, dtype=np.int64)
    clicks_per_split = np.zeros(3, dtype=np.int64)
    malformed = {reason: 0 for reason in _MALFORMED_REASONS.values()}
    first_bad_lines: list[int] = []
    num_lines = 0
    for chunk in chunks("pass 1/2 (counting)"):
        n = chunk.status.size
        num_lines += n
        ok = chunk.status == _OK
        bad = np.flatnonzero(~ok)
        if bad.size:
            for code, reason in _MALFORMED_REASONS.items():
                malformed[reason] += int(np.sum(chunk.status == code))
            room = _MAX_REPORTED_LINES - len(first_bad_lines)
            # 1-based line numbers in the file (the header is line 1).
            first_bad_lines.extend((chunk.first_row + bad[:room] + 1 + header_lines).tolist())
        for s in range(3):
            in_split = ok & (chunk.split == s)
            rows_per_split[s] += int(in_split.sum())
            clicks_per_split[s] += int(chunk.labels[in_split].sum())
        train = ok & (chunk.split == 0)
        train_keys = chunk.keys[train]
        for f in range(num_fields):
            counters[f].add(train_keys[:, f])

    num_malformed = sum(malformed.values())
    if num_malformed:
        _LOG.warning(
            "%s: skipped %d malformed line(s) of %d in %s (%s); first line numbers: %s",
            fmt.name,
            num_malformed,
            num_lines,
            source,
            ", ".join(f"{k}={v}" for k, v in malformed.items() if v),
            first_bad_lines,
        )

    vocabs, distinct = [], []
    for counter in counters:
        keys, counts = counter.result()
        distinct.append(int(keys.size))
        vocabs.append(_build_vocab(keys, counts, min_count))
    del counters

    # Pass 2: encode and write every split into .npy memmaps.
    features, labels = [], []
    for s, split_name in enumerate(SPLIT_NAMES):
        feature_path, label_path = _array_paths(out_dir, split_name)
        features.append(
            np.lib.format.open_memmap(
                feature_path, mode="w+", dtype=np.int32, shape=(int(rows_per_split[s]), num_fields)
            )
        )
        labels.append(
            np.lib.format.open_memmap(
                label_path, mode="w+", dtype=np.float32, shape=(int(rows_per_split[s]),)
            )
        )
    cursor = np.zeros(3, dtype=np.int64)
    for chunk in chunks("pass 2/2 (encoding)"):
        ok = chunk.status == _OK
        encoded = np.empty((chunk.status.size, num_fields), dtype=np.int32)
        for f, vocab in enumerate(vocabs):
            encoded[:, f] = vocab.encode(chunk.keys[:, f])
        for s in range(3):
            rows = ok & (chunk.split == s)
            m = int(rows.sum())
            features[s][cursor[s] : cursor[s] + m] = encoded[rows]
            labels[s][cursor[s] : cursor[s] + m] = chunk.labels[rows]
            cursor[s] += m
    if not np.array_equal(cursor, rows_per_split):
        raise RuntimeError(
            f"{source} changed while it was being read (pass 1 counted "
            f"{rows_per_split.tolist()} rows per split, pass 2 "
            f"{cursor.tolist()})."
        )
    for array in features + labels:
        array.flush()
    del features, labels

    info = {
        "source": str(source),
        "source_bytes": settings["source_bytes"],
        "preprocessing": (
            "BARS/FuxiCTR x4 style: ids 1..K by decreasing train frequency "
            "for values seen >= min_count times in train, 0 otherwise"
        ),
        "min_count": min_count,
        "split_seed": split_seed,
        "split_fractions": list(fractions),
        "split_rule": _SPLIT_RULE,
        "max_rows": max_rows,
        "num_lines": num_lines,
        "num_rows": {name: int(rows_per_split[s]) for s, name in enumerate(SPLIT_NAMES)},
        "ctr": {
            name: (float(clicks_per_split[s] / rows_per_split[s]) if rows_per_split[s] else None)
            for s, name in enumerate(SPLIT_NAMES)
        },
        "malformed_lines": num_malformed,
        "malformed_by_reason": malformed,
        "first_malformed_line_numbers": first_bad_lines,
        "distinct_train_values": dict(zip(fmt.field_names, distinct)),
    }
    manifest = {
        "format_version": _CACHE_FORMAT_VERSION,
        "name": fmt.name,
        "settings": settings,
        "field_names": list(fmt.field_names),
        "vocab_sizes": [v.size for v in vocabs],
        "info": info,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _load_cache(directory: pathlib.Path) -> CTRDataset:
    manifest = json.loads((directory / "manifest.json").read_text())
    if manifest.get("format_version") != _CACHE_FORMAT_VERSION:
        raise ValueError(
            f"{directory}: unsupported cache format version {manifest.get('format_version')}."
        )
    splits = {}
    for split_name in SPLIT_NAMES:
        feature_path, label_path = _array_paths(directory, split_name)
        features = np.load(feature_path, mmap_mode="r")
        labels = np.load(label_path, mmap_mode="r")
        expected = manifest["info"]["num_rows"][split_name]
        if features.shape != (expected, len(manifest["field_names"])):
            raise ValueError(
                f"{feature_path} has shape {features.shape}, the manifest "
                f"expects ({expected}, {len(manifest['field_names'])}); "
                f"delete {directory} to rebuild it."
            )
        splits[split_name] = CTRSplit(features, labels)
    info = dict(manifest["info"], cache_dir=str(directory))
    return CTRDataset(
        name=manifest["name"],
        field_names=tuple(manifest["field_names"]),
        vocab_sizes=tuple(manifest["vocab_sizes"]),
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        info=info,
    )


def _validate_reader_args(
    min_count: int,
    split_seed: int,
    split_fractions: Sequence[float],
    max_rows: int | None,
    chunk_bytes: int,
) -> tuple[float, float, float]:
    _check_positive_int("min_count", min_count, 1)
    _check_positive_int("split_seed", split_seed, 0)
    if max_rows is not None:
        _check_positive_int("max_rows", max_rows, 1)
    _check_positive_int("chunk_bytes", chunk_bytes, 1)
    fractions = tuple(float(x) for x in split_fractions)
    if (
        len(fractions) != 3
        or any(not 0.0 <= x <= 1.0 for x in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9)
    ):
        raise ValueError(
            "split_fractions must be three numbers in [0, 1] summing to 1 "
            f"(train, valid, test), got {tuple(split_fractions)}."
        )
    return fractions  # type: ignore[return-value]


def _load_raw(
    fmt: _RawFormat,
    data_dir: str | os.PathLike,
    *,
    min_count: int,
    split_seed: int,
    split_fractions: Sequence[float],
    max_rows: int | None,
    cache_dir: str | os.PathLike | None,
    chunk_bytes: int,
) -> CTRDataset:
    fractions = _validate_reader_args(min_count, split_seed, split_fractions, max_rows, chunk_bytes)
    source = _find_source(fmt, data_dir)
    stat = source.stat()
    settings = {
        "format": fmt.name,
        "format_version": _CACHE_FORMAT_VERSION,
        "min_count": min_count,
        "split_seed": split_seed,
        "split_fractions": list(fractions),
        "max_rows": max_rows,
        "source_bytes": stat.st_size,
        "source_mtime": int(stat.st_mtime),
    }
    root = (
        pathlib.Path(cache_dir).expanduser()
        if cache_dir is not None
        else pathlib.Path(data_dir).expanduser() / "jaxpapers_cache"
    )
    final = root / f"{fmt.name}_{_settings_hash(settings)}"
    if (final / "manifest.json").is_file():
        _LOG.info("%s: using cached arrays in %s", fmt.name, final)
        return _load_cache(final)

    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        _LOG.info("%s: preprocessing %s into %s", fmt.name, source, final)
        _build_cache(fmt, source, tmp, settings, chunk_bytes)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first (the target exists); use it.
            if not (final / "manifest.json").is_file():
                raise
            _LOG.info("%s: %s was built concurrently; using it.", fmt.name, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _load_cache(final)


def load_criteo(
    data_dir: str | os.PathLike,
    *,
    min_count: int = 10,
    split_seed: int = 2018,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_rows: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
) -> CTRDataset:
    """Criteo Display Advertising Challenge (Kaggle ``train.txt``).

    The file is tab-separated without header: label, I1..I13 (integers, may
    be empty or negative), C1..C26 (hex strings, may be empty). Following
    BARS/FuxiCTR ``Criteo_x4``: empty integers become 0, every integer v is
    bucketed to floor(ln(v)^2) if v > 2 else v and treated as categorical,
    empty categoricals are their own "" value, and per field the values seen
    fewer than ``min_count`` times in the *train* split map to id 0; kept
    values get ids 1..K by decreasing train frequency. The 39 fields are
    ``CRITEO_FIELD_NAMES`` (I1..I13, C1..C26).

    Args:
        data_dir: Directory with ``train.txt`` (or ``criteo/train.txt``).
        min_count: Frequency threshold for keeping a value (BARS: 10).
        split_seed: Seed of the hash-based train/valid/test assignment.
        split_fractions: (train, valid, test) fractions, summing to 1.
        max_rows: Read only the first ``max_rows`` lines (quick experiments).
        cache_dir: Root of the preprocessed-array cache; the arrays go to
            ``<cache_dir>/criteo_<settings hash>/``. Defaults to
            ``<data_dir>/jaxpapers_cache``.
        chunk_bytes: Bytes read per chunk (bounds the parsing memory).

    Returns:
        A CTRDataset whose feature / label arrays are read-only memmaps.

    Raises:
        FileNotFoundError: if ``train.txt`` is missing (the message lists the
            paths tried and where to download the data).
    """
    return _load_raw(
        _CRITEO,
        data_dir,
        min_count=min_count,
        split_seed=split_seed,
        split_fractions=split_fractions,
        max_rows=max_rows,
        cache_dir=cache_dir,
        chunk_bytes=chunk_bytes,
    )


def load_avazu(
    data_dir: str | os.PathLike,
    *,
    min_count: int = 2,
    split_seed: int = 2018,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_rows: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
) -> CTRDataset:
    """Avazu CTR prediction (Kaggle ``train.csv``).

    The file is comma-separated with header ``id,click,hour,C1,banner_pos,
    site_id,...,C21``. Following BARS/FuxiCTR ``Avazu_x4``: ``id`` is dropped,
    ``click`` is the label, ``hour`` (YYMMDDHH) becomes three fields
    hour-of-day, weekday (0 = Sunday) and weekend (Saturday/Sunday), and all
    other columns are categorical strings. Field order: ``AVAZU_FIELD_NAMES``
    = (hour, C1, banner_pos, ..., C21, weekday, weekend), 24 fields. Values
    seen fewer than ``min_count`` times in the train split map to id 0.

    Args:
        data_dir: Directory with ``train.csv`` (or ``train``,
            ``avazu/train.csv``, ``avazu/train``).
        min_count: Frequency threshold for keeping a value (BARS: 2).
        split_seed: Seed of the hash-based train/valid/test assignment.
        split_fractions: (train, valid, test) fractions, summing to 1.
        max_rows: Read only the first ``max_rows`` data lines.
        cache_dir: Root of the preprocessed-array cache; the arrays go to
            ``<cache_dir>/avazu_<settings hash>/``. Defaults to
            ``<data_dir>/jaxpapers_cache``.
        chunk_bytes: Bytes read per chunk (bounds the parsing memory).

    Returns:
        A CTRDataset whose feature / label arrays are read-only memmaps.

    Raises:
        FileNotFoundError: if the file is missing (the message lists the paths
            tried and where to download the data).
        ValueError: if the header is not the Kaggle training header.
    """
    return _load_raw(
        _AVAZU,
        data_dir,
        min_count=min_count,
        split_seed=split_seed,
        split_fractions=split_fractions,
        max_rows=max_rows,
        cache_dir=cache_dir,
        chunk_bytes=chunk_bytes,
    )
