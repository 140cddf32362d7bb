"""Q-network torsos: shapes, and the PyTorch-default conv init the original MinAtar/Atari nets used."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.config import resolve
from frugalrl.nets import make_q_network


def network(name, conv_init, hidden):
    return resolve({"network": {"name": name, "hidden": hidden, "conv_init": conv_init}})["network"]


def test_nature_cnn_maps_stacked_frames_to_q_values():
    net = make_q_network(network("nature_cnn", "lecun_normal", [512]), (84, 84, 4), 18)
    frames = jnp.zeros((2, 3, 84, 84, 4), jnp.uint8)  # any leading batch dims
    params = net.init(jax.random.PRNGKey(0), frames[0, 0])
    assert net.apply(params, frames).shape == (2, 3, 18)
    kernels = [p["kernel"].shape for name, p in sorted(params["params"].items()) if name.startswith("Conv")]
    assert kernels == [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64)]
    # 84 -> 20 -> 9 -> 7: the dense layer sees 7*7*64 features
    assert params["params"]["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)


@pytest.mark.parametrize("name,shape", [("minatar_cnn", (10, 10, 6)), ("nature_cnn", (84, 84, 4))])
def test_torch_default_conv_init_is_uniform_within_one_over_root_fan_in(name, shape):
    net = make_q_network(network(name, "torch_default", [64]), shape, 6)
    params = net.init(jax.random.PRNGKey(1), jnp.zeros(shape))["params"]
    for layer in (p for key, p in params.items() if key.startswith("Conv")):
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        bound = 1 / np.sqrt(np.prod(kernel.shape[:3]))
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert np.abs(bias).max() > 0  # torch draws conv biases too; flax's default is zeros
        # a uniform on [-b, b] has variance b^2 / 3
        assert kernel.var() == pytest.approx(bound**2 / 3, rel=0.15)
    lecun = make_q_network(network(name, "lecun_normal", [64]), shape, 6)
    conv = lecun.init(jax.random.PRNGKey(1), jnp.zeros(shape))["params"]["Conv_0"]
    assert not np.any(conv["bias"]) and np.abs(conv["kernel"]).max() > 1 / np.sqrt(np.prod(conv["kernel"].shape[:3]))


def test_image_torso_refuses_flat_observations():
    with pytest.raises(ValueError, match="needs image observations"):
        make_q_network(network("nature_cnn", "lecun_normal", [512]), (4,), 2)


def test_impala_cnn_shapes_and_input_scale():
    cfg = resolve({"network": {"name": "impala_cnn", "hidden": [256], "input_scale": 1 / 255}})["network"]
    net = make_q_network(cfg, (84, 84, 4), 6)
    frames = jax.random.randint(jax.random.PRNGKey(0), (5, 84, 84, 4), 0, 256).astype(jnp.uint8)
    params = net.init(jax.random.PRNGKey(1), frames[0])
    assert net.apply(params, frames).shape == (5, 6)
    # 84 -> 42 -> 21 -> 11 after three stride-2 pools: the dense layer sees 11*11*32 features
    assert params["params"]["torso"]["Dense_0"]["kernel"].shape == (11 * 11 * 32, 256)
    convs = [k for k in jax.tree_util.tree_flatten_with_path(params)[0] if "kernel" in str(k[0][-1])]
    assert len(convs) == 3 * (1 + 2 * 2) + 2  # per stack: 1 conv + 2 residual blocks of 2 convs; 2 dense
    # the scale is applied inside: raw frames equal pre-scaled ones through the unscaled torso
    unscaled = make_q_network({**cfg, "input_scale": 1.0}, (84, 84, 4), 6)
    inner = {"params": params["params"]["torso"]}
    np.testing.assert_allclose(
        net.apply(params, frames), unscaled.apply(inner, frames.astype(jnp.float32) / 255), rtol=1e-5, atol=1e-6
    )
