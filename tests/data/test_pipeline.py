import numpy as np
import pytest

from jaxpapers.data import pipeline


def test_scheduled_epochs_alternate_whole_epochs():
    low = {"x": np.arange(6, dtype=np.float32)}  # 3 batches of 2
    high = {"x": 100 + np.arange(4, dtype=np.float32)}  # 2 batches of 2
    ds = pipeline.scheduled_epochs(
        {"low": low, "high": high}, 2, epochs=["low", "high", "low", "high", "high"], seed=3
    )
    batches = [ds[i] for i in range(len(ds))]
    assert len(batches) == 3 + 2 + 3 + 2 + 2
    tags = [int(b["source"][0]) for b in batches]
    assert tags == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1]
    for b in batches:  # every row of a batch comes from the tagged source
        assert np.all((b["x"] >= 100) == (b["source"] == 1))

    def epoch_rows(first, n):
        return sorted(np.concatenate([batches[i]["x"] for i in range(first, first + n)]))

    # Each epoch visits every row of its source once; successive epochs reshuffle.
    assert epoch_rows(0, 3) == epoch_rows(5, 3) == list(range(6))
    assert epoch_rows(3, 2) == epoch_rows(8, 2) == epoch_rows(10, 2) == [100, 101, 102, 103]
    orders = [np.concatenate([batches[i]["x"] for i in range(s, s + 2)]) for s in (3, 8, 10)]
    assert any(not np.array_equal(orders[0], o) for o in orders[1:])
    # Deterministic: a fresh dataset (a resumed run) gives the same batches.
    again = pipeline.scheduled_epochs(
        {"low": low, "high": high}, 2, epochs=["low", "high", "low", "high", "high"], seed=3
    )
    for i in (0, 4, 11):
        np.testing.assert_array_equal(again[i]["x"], batches[i]["x"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": []}, "at least one"),
        ({"epochs": ["mid"]}, "unknown sources"),
        ({"epochs": ["low"], "batch_size": 0}, "positive"),
        ({"epochs": ["low"], "batch_size": 7}, "larger than source"),
    ],
)
def test_scheduled_epochs_errors(kwargs, match):
    kwargs = {"batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipeline.scheduled_epochs(
            {"low": {"x": np.zeros(6)}, "high": {"x": np.zeros(4)}}, seed=0, **kwargs
        )
