import numpy as np
import pytest

from jaxpapers.analytic import features
from jaxpapers.data import images


@pytest.fixture(scope="session")
def digits_pixels():
    """sklearn's digits as 64-d pixel features, 5 base classes + 5 one-class tasks."""
    data = images.digits(seed=0)
    return features.from_arrays(
        data.train_images.reshape(len(data.train_labels), -1),
        data.train_labels,
        data.test_images.reshape(len(data.test_labels), -1),
        data.test_labels,
        10,
        base_classes=5,
        num_phases=5,
        class_order_seed=1993,
    )


def synthetic_features(n=600, d=12, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 2
    labels = rng.integers(0, classes, n)
    x = centers[labels] + rng.normal(size=(n, d))
    return x.astype(np.float64), labels.astype(np.int32)
