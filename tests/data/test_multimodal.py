"""Tests for jaxpapers.data.multimodal: generator, leave-one-out splits, ranking samples, readers."""

import dataclasses
import gzip
import json

import ml_collections
import numpy as np
import pytest

from jaxpapers.data import multimodal as mm

SMALL = dict(
    num_users=60,
    num_items=80,
    num_categories=4,
    min_len=4,
    max_len=10,
    latent_dim=8,
    num_patches=4,
    patch_dim=6,
    text_len=8,
    text_vocab=64,
    feature_dim=8,
)


@pytest.fixture(scope="module")
def small():
    return mm.synthetic_multimodal(**SMALL, seed=3)


@pytest.fixture(scope="module")
def medium():
    # Default catalogue, fewer users: enough events per category for behavioural checks.
    return mm.synthetic_multimodal(num_users=400, seed=1)


def _hand_data():
    # Items 1..8; categories: 1,2,3 -> 0; 4,5,6 -> 1; 7,8 -> 2.
    category = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2], np.int32)
    seqs = [[1, 2, 3, 4, 5], [6, 7, 8], [2, 4, 6, 8, 1, 3]]
    return mm.from_sequences(seqs, num_items=8, item_category=category, name="hand")


# ----------------------------------------------------------------------------- generator


def test_inverse_cdf_sampler_known_answers():
    weights = np.array([[0.0, 1.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0], [5.0, 0, 0, 0, 0]])
    u = np.array([[1e-15, 0.25, 0.2500001, 1.0]] * 3)
    np.testing.assert_array_equal(
        mm._sample_rows(weights, u), [[1, 1, 3, 3], [4, 4, 4, 4], [0, 0, 0, 0]]
    )
    # frequencies follow the weights; zero weights are never drawn
    rng = np.random.default_rng(0)
    draws = mm._sample_rows(weights[:1].repeat(4000, 0), mm._uniform_open(rng, 4000))
    counts = np.bincount(draws, minlength=5)
    assert counts[[0, 2, 4]].sum() == 0 and abs(counts[3] / 4000 - 0.75) < 0.03


def test_container_validates_shapes():
    good = _hand_data()
    with pytest.raises(ValueError, match="text_tokens must have num_items\\+1=9 rows"):
        dataclasses.replace(good, text_tokens=np.zeros((8, 1), np.int32))
    with pytest.raises(ValueError, match="num_users=2"):
        dataclasses.replace(good, num_users=2)
    with pytest.raises(ValueError, match="unknown modalities"):
        dataclasses.replace(good, modalities=("audio",))


def test_shapes_dtypes_padding_and_ranges(small):
    d, rows = small, SMALL["num_items"] + 1
    assert (d.num_users, d.num_items, d.num_categories) == (60, 80, 4)
    assert d.item_category.shape == (rows,) and d.item_category.dtype == np.int32
    assert d.image_tokens.shape == (rows, 4, 6) and d.image_tokens.dtype == np.float32
    assert d.text_tokens.shape == (rows, 8) and d.text_tokens.dtype == np.int32
    assert d.image_features.shape == d.text_features.shape == (rows, 8)
    assert d.image_features.dtype == d.text_features.dtype == np.float32
    for table in (d.image_tokens, d.text_tokens, d.image_features, d.text_features):
        assert not np.any(table[0])  # padding row
    assert d.item_category[0] == 0 and set(np.unique(d.item_category[1:])) == set(range(4))
    tokens = d.text_tokens[1:]
    assert tokens.min() >= 0 and tokens.max() < d.text_vocab
    # Right-padded: every item has >= ceil(T/2) real tokens, and after the first 0 only 0s.
    assert np.all(tokens[:, :4] >= 1)
    is_pad = tokens == 0
    assert np.all(np.cumsum(~is_pad[:, ::-1], axis=1)[:, ::-1][is_pad] == 0)
    assert d.modalities == ("text", "image")
    lengths = np.array([len(s) for s in d.sequences])
    assert lengths.min() >= 4 and lengths.max() <= 10
    for s in d.sequences:
        assert s.dtype == np.int32 and len(np.unique(s)) == len(s)
        assert s.min() >= 1 and s.max() <= 80
    info = json.loads(json.dumps(d.info))  # JSON-serialisable
    assert info["num_interactions"] == lengths.sum()
    assert info["mean_length"] == pytest.approx(lengths.mean())
    assert sum(info["category_sizes"]) == 80
    assert np.array_equal(np.bincount(d.item_category[1:]), info["category_sizes"])
    assert sorted(d.truth["text_reliance"]) == pytest.approx(np.linspace(0.1, 0.9, 4))


def test_deterministic_for_a_seed_and_different_across_seeds(small):
    again = mm.synthetic_multimodal(**SMALL, seed=3)
    other = mm.synthetic_multimodal(**SMALL, seed=4)
    for field in ("item_category", "image_tokens", "text_tokens", "image_features"):
        assert np.array_equal(getattr(small, field), getattr(again, field))
        assert not np.array_equal(getattr(small, field), getattr(other, field))
    assert all(np.array_equal(a, b) for a, b in zip(small.sequences, again.sequences, strict=True))
    assert any(
        not np.array_equal(a, b) for a, b in zip(small.sequences, other.sequences, strict=True)
    )
    # Separate streams: the catalogue does not depend on the number of users.
    more_users = mm.synthetic_multimodal(**{**SMALL, "num_users": 7}, seed=3)
    assert np.array_equal(small.text_tokens, more_users.text_tokens)
    assert np.array_equal(small.image_tokens, more_users.image_tokens)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="min_len"):
        mm.synthetic_multimodal(**{**SMALL, "min_len": 3})
    with pytest.raises(ValueError, match="max_len"):
        mm.synthetic_multimodal(**{**SMALL, "max_len": 100})
    with pytest.raises(ValueError, match="markov_weight"):
        mm.synthetic_multimodal(**SMALL, markov_weight=1.5)


def test_text_reliance_is_what_behaviour_shows(medium):
    # In category c the chosen items align with the user's text preference (beyond the
    # category centroid) in proportion to rho_c and with the image preference in proportion
    # to 1 - rho_c.
    d, truth = medium, medium.truth
    flat, _, lengths = mm._flatten(d.sequences)
    users = np.repeat(np.arange(d.num_users), lengths)
    cat = d.item_category[flat]
    text_offset = truth["item_text_factor"][flat] - truth["text_centroids"][cat]
    image_offset = truth["item_image_factor"][flat] - truth["image_centroids"][cat]
    text_align = np.einsum("nd,nd->n", truth["user_text_pref"][users], text_offset)
    image_align = np.einsum("nd,nd->n", truth["user_image_pref"][users], image_offset)
    c_range = range(d.num_categories)
    text_mean = np.array([text_align[cat == c].mean() for c in c_range])
    image_mean = np.array([image_align[cat == c].mean() for c in c_range])
    rho = truth["text_reliance"]
    assert np.corrcoef(rho, text_mean - image_mean)[0, 1] > 0.9
    assert np.corrcoef(rho, text_mean)[0, 1] > 0.8
    assert np.corrcoef(rho, image_mean)[0, 1] < -0.8
    hi, lo = np.argmax(rho), np.argmin(rho)
    assert text_mean[hi] > image_mean[hi] and image_mean[lo] > text_mean[lo]


def test_order_and_popularity_follow_the_truth(medium):
    d, truth = medium, medium.truth
    flat, _, lengths = mm._flatten(d.sequences)
    users = np.repeat(np.arange(d.num_users), lengths)
    cat = d.item_category[flat]
    same_user = users[:-1] == users[1:]
    counts = np.zeros((d.num_categories,) * 2)
    np.add.at(counts, (cat[:-1][same_user], cat[1:][same_user]), 1.0)
    empirical = counts / counts.sum(1, keepdims=True)
    assert np.corrcoef(empirical.ravel(), truth["category_transition"].ravel())[0, 1] > 0.8
    item_counts = np.bincount(flat, minlength=d.num_items + 1)[1:]
    assert np.corrcoef(np.log1p(item_counts), truth["item_popularity"][1:])[0, 1] > 0.2


def test_oracle_beats_popularity_on_the_test_events(medium):
    d = medium
    splits = mm.leave_one_out(d, 50)
    popularity = np.bincount(np.concatenate(d.sequences), minlength=d.num_items + 1).astype(float)
    popularity[0] = -np.inf
    scores = np.tile(popularity, (d.num_users, 1))
    np.put_along_axis(scores, splits.test_history.astype(np.int64), -np.inf, axis=1)
    target = scores[np.arange(d.num_users), splits.test_target]
    pop_hr = float(((scores > target[:, None]).sum(1) < 10).mean())
    ranks = d.truth["oracle_test_rank"]
    assert d.info["oracle_test_hr@10"] == pytest.approx((ranks < 10).mean())
    assert d.info["oracle_test_hr@10"] > pop_hr + 0.1


def test_features_are_informative_but_lossy(medium):
    # Linear read-out of the image factor: raw patches beat the pre-extracted feature, which
    # still explains most of it.
    def r2(x, y):
        x = np.c_[x[1:], np.ones(len(x) - 1)]
        w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]), x.T @ y[1:])
        return 1 - ((y[1:] - x @ w) ** 2).sum() / ((y[1:] - y[1:].mean(0)) ** 2).sum()

    d = medium
    patches = d.image_tokens.reshape(d.num_items + 1, -1)
    raw, feature = (
        r2(patches, d.truth["item_image_factor"]),
        r2(d.image_features, d.truth["item_image_factor"]),
    )
    assert 0.5 < feature < raw - 0.05
    assert r2(d.text_features, d.truth["item_text_factor"]) > 0.2


# ----------------------------------------------------------------------------- splits


def test_leave_one_out_by_hand():
    s = mm.leave_one_out(_hand_data(), 3)
    np.testing.assert_array_equal(s.train_users, [0, 2])
    np.testing.assert_array_equal(s.train_inputs, [[0, 1, 2], [2, 4, 6]])
    np.testing.assert_array_equal(s.train_targets, [[0, 2, 3], [4, 6, 8]])
    np.testing.assert_array_equal(s.valid_history, [[1, 2, 3], [0, 0, 6], [4, 6, 8]])
    np.testing.assert_array_equal(s.valid_target, [4, 7, 1])
    np.testing.assert_array_equal(s.test_history, [[2, 3, 4], [0, 6, 7], [6, 8, 1]])
    np.testing.assert_array_equal(s.test_target, [5, 8, 3])
    np.testing.assert_array_equal(s.users, [0, 1, 2])
    for array in (s.train_inputs, s.train_targets, s.valid_history, s.test_history):
        assert array.dtype == np.int32
    wide = mm.leave_one_out(_hand_data(), 5)
    np.testing.assert_array_equal(wide.train_inputs, [[0, 0, 0, 1, 2], [0, 0, 2, 4, 6]])


def test_sequences_shorter_than_three_are_rejected():
    with pytest.raises(ValueError, match=">= 3"):
        mm.from_sequences([[1, 2, 3], [4, 5]], num_items=5)
    with pytest.raises(ValueError, match="repeats"):
        mm.from_sequences([[1, 2, 1]], num_items=5)


def test_leave_one_out_never_leaks(small):
    s = mm.leave_one_out(small, 6)
    train_rows = {int(u): r for r, u in enumerate(s.train_users)}
    for u, seq in enumerate(small.sequences):
        valid, test = s.valid_target[u], s.test_target[u]
        assert (valid, test) == (seq[-2], seq[-1])
        hist = s.test_history[u]
        np.testing.assert_array_equal(hist[hist > 0], seq[:-1][-6:])
        hist = s.valid_history[u]
        np.testing.assert_array_equal(hist[hist > 0], seq[:-2][-6:])
        assert valid not in s.valid_history[u] and test not in s.test_history[u]
        r = train_rows[u]  # min_len 4: every user has a training pair
        for array in (s.train_inputs[r], s.train_targets[r]):
            assert valid not in array and test not in array
        inputs, targets = s.train_inputs[r], s.train_targets[r]
        np.testing.assert_array_equal(inputs == 0, targets == 0)
        # target at each position is the item right after the input in the sequence
        where = {int(item): k for k, item in enumerate(seq)}
        for a, b in zip(inputs[inputs > 0], targets[targets > 0], strict=True):
            assert where[int(b)] == where[int(a)] + 1


def test_ranking_samples_by_hand():
    out = mm.ranking_samples(_hand_data(), 3, num_negatives=2, hard_negative_fraction=0.5)
    train = out["train"]
    # positives: user 0 at steps 1, 2 (targets 2, 3); user 2 at steps 1..3 (4, 6, 8)
    np.testing.assert_array_equal(train.label, [1, 0, 0] * 5)
    np.testing.assert_array_equal(train.target[::3], [2, 3, 4, 6, 8])
    np.testing.assert_array_equal(train.user[::3], [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(
        train.history[::3], [[0, 0, 1], [0, 1, 2], [0, 0, 2], [0, 2, 4], [2, 4, 6]]
    )
    np.testing.assert_array_equal(out["valid"].target[::3], [4, 7, 1])
    np.testing.assert_array_equal(out["test"].target[::3], [5, 8, 3])
    np.testing.assert_array_equal(out["test"].history[::3], [[2, 3, 4], [0, 6, 7], [6, 8, 1]])
    for split in out.values():
        np.testing.assert_array_equal(split.history[1::3], split.history[::3])
        np.testing.assert_array_equal(split.user[2::3], split.user[::3])
        assert split.label.dtype == np.float32 and split.target.dtype == np.int32
    # user 0 owns 1..5: its only never-seen items are 6, 7, 8. The hard negative of target 2
    # (category 0: items 1..3, all owned) falls back to uniform.
    assert set(train.target[:6][train.label[:6] == 0]) <= {6, 7, 8}
    # user 2 owns {1, 2, 3, 4, 6, 8}: never-seen are 5 and 7; hard ones share the category.
    neg = train.target[6:].reshape(3, 3)[:, 1:]
    assert set(neg.ravel()) <= {5, 7}
    np.testing.assert_array_equal(neg[:, 0], [5, 5, 7])  # categories of 4, 6, 8: 1, 1, 2


def test_negatives_are_never_interacted_and_hard_ones_share_the_category(small):
    out = mm.ranking_samples(small, 5, num_negatives=4, hard_negative_fraction=0.5, seed=7)
    owned = [set(s.tolist()) for s in small.sequences]
    cat = small.item_category
    for name, split in out.items():
        n = len(split) // 5
        targets = split.target.reshape(n, 5)
        users = split.user.reshape(n, 5)[:, 0]
        assert np.all(split.label.reshape(n, 5) == [1, 0, 0, 0, 0])
        for u, row in zip(users, targets, strict=True):
            assert row[0] in owned[u] and not owned[u] & set(row[1:].tolist())
        same = cat[targets[:, 1:]] == cat[targets[:, :1]]
        assert same[:, :2].all(), name
        assert same[:, 2:].mean() < 0.7, name  # uniform ones mostly are not
    # histories are exactly the last items strictly before the positive
    train = out["train"]
    for r in range(0, len(train), 5 * 7):
        seq = small.sequences[train.user[r]]
        k = int(np.flatnonzero(seq == train.target[r])[0])
        hist = train.history[r]
        np.testing.assert_array_equal(hist[hist > 0], seq[:k][-5:])
    # deterministic for a seed, different for another
    again = mm.ranking_samples(small, 5, num_negatives=4, hard_negative_fraction=0.5, seed=7)
    other = mm.ranking_samples(small, 5, num_negatives=4, hard_negative_fraction=0.5, seed=8)
    assert np.array_equal(out["train"].target, again["train"].target)
    assert not np.array_equal(out["train"].target, other["train"].target)


def test_ranking_exact_fallback_and_limits():
    # user 0 owns 1..5 of 6 items: the only negative is 6 whichever path draws it.
    data = mm.from_sequences([[1, 2, 3, 4, 5], [6, 1, 2]], num_items=6)
    out = mm.ranking_samples(data, 4, num_negatives=3, hard_negative_fraction=1.0)
    rows = out["train"].user == 0
    assert set(out["train"].target[rows & (out["train"].label == 0)]) == {6}
    limited = mm.ranking_samples(data, 4, num_negatives=0, max_train_per_user=1)
    np.testing.assert_array_equal(limited["train"].target, [3])
    with pytest.raises(ValueError, match="hard_negative_fraction"):
        mm.ranking_samples(data, 4, hard_negative_fraction=2.0)
    full = mm.from_sequences([[1, 2, 3]], num_items=3)
    with pytest.raises(ValueError, match="every item"):
        mm.ranking_samples(full, 2, num_negatives=1)


# ----------------------------------------------------------------------------- readers


def _write_jsonl(path, records, compress=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _amazon_files(tmp_path):
    reviews = []
    # u1: 4 reviews (b, a, c, d by time; a repeated later -> dropped). u2: 4 reviews with a
    # tie at t=5 (file order keeps c before a). u3: 2 reviews -> removed by min_len=3, which
    # leaves item z with one review -> removed too.
    for user, item, t in [
        ("u1", "a", 20), ("u1", "b", 10), ("u1", "c", 30), ("u1", "d", 40), ("u1", "a", 50),
        ("u2", "c", 5), ("u2", "a", 5), ("u2", "d", 1), ("u2", "b", 9),
        ("u3", "z", 1), ("u3", "a", 2),
    ]:  # fmt: skip
        reviews.append({"user_id": user, "parent_asin": item, "timestamp": t})
    reviews.append({"reviewerID": "u4", "asin": "b", "unixReviewTime": 3})  # 2018 keys
    reviews += [{"reviewerID": "u4", "asin": x, "unixReviewTime": 4} for x in ("c", "d")]
    _write_jsonl(tmp_path / "reviews.jsonl", reviews)
    meta = [
        {"parent_asin": "a", "title": "Red Shoes", "main_category": "Fashion"},
        {"parent_asin": "b", "title": "Blue Kettle 2000", "categories": ["Home", "Kitchen"]},
        {"asin": "c", "title": "red lamp", "category": ["Home", "Lighting"]},
        {"parent_asin": "z", "title": "Zed", "main_category": "Toys"},
    ]  # d has no metadata
    _write_jsonl(tmp_path / "meta.jsonl.gz", meta, compress=True)
    (tmp_path / "item_ids.txt").write_text("z\nc\na\nb\n")  # d has no features
    text = np.arange(8, dtype=np.float32).reshape(4, 2)
    image = -np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "text_features.npy", text)
    np.save(tmp_path / "image_features.npy", image)
    return text, image


def test_load_amazon_reads_the_layout(tmp_path):
    text, image = _amazon_files(tmp_path)
    d = mm.load_amazon(tmp_path, min_len=3, item_min_count=2, text_len=4, text_vocab=97)
    # items re-indexed in sorted order: a=1, b=2, c=3, d=4
    assert d.num_items == 4 and d.num_users == 3
    seqs = [s.tolist() for s in d.sequences]
    assert seqs == [[2, 1, 3, 4], [4, 3, 1, 2], [2, 3, 4]]
    np.testing.assert_array_equal(d.text_features[1:], [text[2], text[3], text[1], [0, 0]])
    np.testing.assert_array_equal(d.image_features[1:], [image[2], image[3], image[1], [0] * 3])
    assert d.image_tokens.shape == (5, 1, 3)
    np.testing.assert_array_equal(d.image_tokens[:, 0], d.image_features)
    assert d.modalities == ("text", "image")
    names = d.info["category_names"]
    # default: main_category, else the first entry of categories / category
    assert [names[c] for c in d.item_category[1:]] == ["Fashion", "Home", "Home", "unknown"]
    ids = mm.hash_title("Blue Kettle 2000", 97)
    assert len(ids) == 3 and d.text_tokens[2, :3].tolist() == ids and d.text_tokens[2, 3] == 0
    assert d.text_tokens[1, :2].tolist() == mm.hash_title("red shoes", 97)
    assert d.text_tokens[1, 0] == d.text_tokens[3, 0]  # "red" hashes the same everywhere
    assert not d.text_tokens[4].any()  # no metadata -> no title
    json.dumps(d.info)
    deeper = mm.load_amazon(tmp_path, min_len=3, item_min_count=2, category_level=1)
    names = deeper.info["category_names"]
    assert [names[c] for c in deeper.item_category[1:]] == [
        "Fashion", "Kitchen", "Lighting", "unknown",
    ]  # fmt: skip


def test_load_amazon_names_every_missing_file(tmp_path):
    (tmp_path / "item_ids.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError) as excinfo:
        mm.load_amazon(tmp_path)
    message = str(excinfo.value)
    for name in ("reviews.jsonl", "meta.jsonl", "text_features.npy", "image_features.npy"):
        assert name in message
    assert "missing item_ids.txt" not in message and str(tmp_path) in message


def test_load_amazon_bad_lines(tmp_path):
    _amazon_files(tmp_path)
    _write_jsonl(tmp_path / "reviews.jsonl", [{"user_id": "u", "timestamp": 1}])
    with pytest.raises(ValueError, match=r"reviews.jsonl:1.*parent_asin"):
        mm.load_amazon(tmp_path)
    _amazon_files(tmp_path)
    np.save(tmp_path / "image_features.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="image_features.npy must be"):
        mm.load_amazon(tmp_path, min_len=3, item_min_count=2)


def test_load_movielens_through_mocked_tfds(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rows = []
    for user, movie, t, genres in [
        (b"7", b"20", 3, [4, 1]), (b"7", b"10", 1, [2]), (b"7", b"30", 2, []),
        (b"5", b"30", 9, []), (b"5", b"20", 8, [4, 1]), (b"5", b"10", 8, [2]),
        (b"9", b"10", 1, [2]),
    ]:  # fmt: skip
        title = {b"10": b"Toy Story (1995)", b"20": b"Heat (1995)", b"30": b"Toy Soldiers"}
        rows.append(
            {
                "user_id": user,
                "movie_id": movie,
                "timestamp": np.int64(t),
                "movie_title": title[movie],
                "movie_genres": np.array(genres, np.int64),
                "user_rating": np.float32(4.0),
            }
        )
    with tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: rows):
        d = mm.load_movielens(
            tmp_path, min_len=3, item_min_count=1, text_len=3, text_vocab=50, feature_dim=2048
        )
    # users "5" and "7" (sorted); user "9" has one rating. Items "10", "20", "30" -> 1, 2, 3.
    assert [s.tolist() for s in d.sequences] == [[2, 1, 3], [1, 3, 2]]  # 8-tie keeps file order
    assert d.modalities == ("text",)
    assert d.image_tokens.shape == (4, 1, 1) and not d.image_tokens.any()
    assert d.image_features.shape == (4, 2048) and not d.image_features.any()
    # categories: first genre 2, 4, none -> sorted unique (-1, 2, 4) -> 1, 2, 0
    np.testing.assert_array_equal(d.item_category, [0, 1, 2, 0])
    assert d.num_categories == 3 and d.info["category_names"][0] == "none"
    assert d.text_tokens[1].tolist() == mm.hash_title("toy story 1995", 50)
    assert d.text_tokens[1, 0] == d.text_tokens[3, 0]  # "toy"
    assert d.text_features.shape == (4, 2048) and not d.text_features[0].any()
    # text_features: a fixed random projection of the normalised title bag of words, so with a
    # wide projection cosines approximate the bag-of-words cosines (1/sqrt(6), 1/sqrt(6), 0).
    f = d.text_features / np.linalg.norm(d.text_features[1:], axis=1).mean()
    np.testing.assert_allclose(
        [f[1] @ f[2], f[1] @ f[3], f[2] @ f[3]], [6**-0.5, 6**-0.5, 0.0], atol=0.1
    )


def test_load_movielens_says_where_to_put_the_data(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as excinfo:
        mm.load_movielens(tmp_path)
    message = str(excinfo.value)
    assert "movielens/1m-ratings" in message and str(tmp_path) in message
    assert "tfds build movielens/1m-ratings" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing downloaded


def test_load_dispatches_on_source(tmp_path):
    cfg = ml_collections.ConfigDict(
        {"source": "synthetic", "data_dir": "", "seed": 3, "history_len": 7, **SMALL}
    )
    d = mm.load(cfg)
    ref = mm.synthetic_multimodal(**SMALL, seed=3)
    assert np.array_equal(d.text_tokens, ref.text_tokens)
    assert all(np.array_equal(a, b) for a, b in zip(d.sequences, ref.sequences, strict=True))
    with pytest.raises(ValueError, match="synthetic.*movielens.*amazon"):
        mm.load({"source": "criteo"})
    with pytest.raises(FileNotFoundError, match="reviews.jsonl"):
        mm.load({"source": "amazon", "data_dir": str(tmp_path), "min_len": 5, "num_users": 3})
