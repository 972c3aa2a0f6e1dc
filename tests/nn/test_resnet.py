import jax.numpy as jnp
import pytest
from flax import nnx

from jaxpapers.nn import resnet


@pytest.mark.parametrize(
    "name,size,channels,dim",
    [
        ("convnet", 8, 1, 128),
        ("resnet20", 32, 3, 64),
        pytest.param("resnet18", 64, 3, 512, marks=pytest.mark.slow),
    ],
)
def test_backbones_give_pooled_features_and_logits(name, size, channels, dim):
    model = resnet.make(name, 7, in_channels=channels, image_size=size, rngs=nnx.Rngs(0))
    x = jnp.ones((2, size, size, channels))
    assert model.features(x).shape == (2, dim)
    assert model(x).shape == (2, 7)


def test_resnet32_depth_and_errors():
    model = resnet.ResNet("resnet32", 10, rngs=nnx.Rngs(0))
    assert len(model.blocks) == 15  # 6n + 2 = 32 with n = 5
    with pytest.raises(ValueError, match="depth must be one of"):
        resnet.ResNet("resnet33", 10, rngs=nnx.Rngs(0))
