"""WBFP: weights, profiles, similarity and demonstration selection, by hand."""

import math

import numpy as np
import pytest

from jaxpapers.security.webshell import wbfp

# Two WebShells and two benign files (function -> call count).
FILES = [
    {"eval": 2, "base64_decode": 1},
    {"eval": 1, "system": 1},
    {"htmlspecialchars": 1, "base64_decode": 1},
    {"htmlspecialchars": 3},
]
LABELS = [1, 1, 0, 0]


def test_weights_match_hand_computed_log_ratios():
    w = wbfp.fit_weights(FILES, LABELS)
    # eval: (2+1)/(2+2) over (0+1)/(2+2); system: 2/4 over 1/4; base64_decode: equal.
    assert w == pytest.approx({"eval": math.log(3), "system": math.log(2)})
    signed = wbfp.fit_weights(FILES, LABELS, clip=False)
    assert signed["base64_decode"] == pytest.approx(0.0)
    assert signed["htmlspecialchars"] == pytest.approx(math.log(1 / 3))
    assert wbfp.fit_weights(FILES, LABELS, min_df=2) == pytest.approx({"eval": math.log(3)})


def test_weights_use_document_frequency_not_counts():
    many = [dict(FILES[0], eval=10_000), *FILES[1:]]
    assert wbfp.fit_weights(many, LABELS) == wbfp.fit_weights(FILES, LABELS)


def test_weights_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        wbfp.fit_weights(FILES[:2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        wbfp.fit_weights(FILES, [1, 1, 0])
    with pytest.raises(ValueError, match="0 .benign. or 1"):
        wbfp.fit_weights(FILES, [1, 2, 0, 0])


def test_profile_and_similarity():
    w = {"eval": math.log(3), "system": math.log(2)}
    p1 = wbfp.profile(FILES[0], w)
    assert p1 == pytest.approx({"eval": math.log(3) * (1 + math.log(2))})
    p2 = wbfp.profile(FILES[1], w)
    a, b = math.log(3), math.log(2)
    assert wbfp.similarity(p1, p2) == pytest.approx(a / math.hypot(a, b))
    empty = wbfp.profile(FILES[3], w)
    assert empty == {}
    assert wbfp.similarity(empty, {}) == 1.0
    assert wbfp.similarity(empty, p1) == 0.0
    dense = wbfp.similarity_matrix([p1, empty], [p1, p2, empty])
    expected = [[1.0, a / math.hypot(a, b), 0.0], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(dense, expected, atol=1e-12)


def test_select_demonstrations():
    sim = np.array([0.1, 0.9, 0.5, 0.9, 0.0])
    labels = [0, 1, 0, 1, 0]
    # Most similar last; the tie (1 and 3) keeps pool order before reversal.
    assert wbfp.select_demonstrations(sim, labels, 3) == [2, 3, 1]
    assert wbfp.select_demonstrations(sim, labels, 2, exclude=[1]) == [2, 3]
    assert wbfp.select_demonstrations(sim, labels, 2, balanced=True) == [2, 1]
    # Odd k: one of each label, then the next most similar; a short label is filled.
    assert wbfp.select_demonstrations(sim, labels, 3, balanced=True) == [2, 3, 1]
    assert wbfp.select_demonstrations(sim, [1, 1, 1, 1, 0], 4, balanced=True) == [4, 2, 3, 1]
    lasts = {
        labels[
            wbfp.select_demonstrations(
                sim, labels, 2, method="random", balanced=True, rng=np.random.default_rng(s)
            )[-1]
        ]
        for s in range(20)
    }
    assert lasts == {0, 1}
    assert wbfp.select_demonstrations(sim, labels, 2, method="none") == []
    r1 = wbfp.select_demonstrations(sim, labels, 3, method="random", rng=np.random.default_rng(0))
    r2 = wbfp.select_demonstrations(sim, labels, 3, method="random", rng=np.random.default_rng(0))
    assert r1 == r2 and len(set(r1)) == 3
    with pytest.raises(ValueError, match="unknown demonstration selection"):
        wbfp.select_demonstrations(sim, labels, 2, method="nearest")
    with pytest.raises(ValueError, match="needs an rng"):
        wbfp.select_demonstrations(sim, labels, 2, method="random")
