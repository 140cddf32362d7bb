"""Flax (linen) networks: torsos and Q-value heads, chosen by the config's ``network`` section."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
}

INITS: dict[str, Callable[..., Any]] = {
    "lecun_normal": nn.initializers.lecun_normal(),
    # torch's kaiming_uniform_ with its default a=0 (the gain of ReLU): U(-sqrt(6/fan_in), +)
    "kaiming_uniform": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
    "xavier_uniform": nn.initializers.xavier_uniform(),
    # haiku's Linear default: a normal of std 1/sqrt(fan_in) truncated at 2 std, not rescaled, so the
    # weights' std is 0.8796/sqrt(fan_in) (flax's lecun_normal rescales to exactly 1/sqrt(fan_in))
    "haiku_default": nn.initializers.variance_scaling(0.87962566103423978**2, "fan_in", "truncated_normal"),
}

# Conv-layer inits. "torch_default" is PyTorch's Conv2d default (kaiming_uniform_ with a=sqrt(5)):
# weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); Explorer's MinAtar and Tianshou's Atari
# networks keep it for their conv layers.
CONV_INITS = ("lecun_normal", "torch_default")


def _uniform_fan_in_bias(fan_in: int) -> Callable[..., jax.Array]:
    bound = 1.0 / fan_in**0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def conv_layer(features: int, kernel: int, stride: int, in_channels: int, init: str, padding: str = "VALID") -> nn.Conv:
    """A square conv (VALID padding unless told) with the named init (``CONV_INITS``)."""
    if init == "lecun_normal":
        return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding)
    fan_in = kernel * kernel * in_channels
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=_uniform_fan_in_bias(fan_in),
    )


def _dense_head(x: jax.Array, hidden: Sequence[int], out: int, activation: str, weight_init: str) -> jax.Array:
    act, kernel_init = ACTIVATIONS[activation], INITS[weight_init]
    for width in hidden:
        x = act(nn.Dense(width, kernel_init=kernel_init)(x))
    return nn.Dense(out, kernel_init=kernel_init)(x)


class MLP(nn.Module):
    """Dense layers with an activation after each; a linear output layer of ``out`` units."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    weight_init: str = "lecun_normal"
    obs_ndim: int = 1  # trailing dims that form one observation; flattened

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        x = x.reshape(x.shape[: x.ndim - self.obs_ndim] + (-1,))
        return _dense_head(x, self.hidden, self.out, self.activation, self.weight_init)


class ConvNet(nn.Module):
    """Convs (features, kernel, stride) with ReLU, then a dense hidden head and a linear output.

    ``MINATAR_CONVS``: the MinAtar network (conv 16 3x3/1, valid). ``NATURE_CONVS``: the DQN (Nature
    2015) network, VALID-padded as in the paper (84 -> 20 -> 9 -> 7) or SAME-padded as in Dopamine
    (84 -> 21 -> 11 -> 11). Inputs are taken as stored unless ``network/input_scale`` says otherwise
    (the MeDQN code fed raw 0-255 frames; Dopamine divides by 255).
    """

    hidden: Sequence[int]
    out: int
    convs: Sequence[tuple[int, int, int]]
    activation: str = "relu"
    weight_init: str = "lecun_normal"
    conv_init: str = "lecun_normal"
    padding: str = "VALID"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        for features, kernel, stride in self.convs:
            x = nn.relu(conv_layer(features, kernel, stride, x.shape[-1], self.conv_init, self.padding)(x))
        x = x.reshape(batch_shape + (-1,))
        return _dense_head(x, self.hidden, self.out, self.activation, self.weight_init)


MINATAR_CONVS = ((16, 3, 1),)
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


class ResidualBlock(nn.Module):
    """relu, conv 3x3, relu, conv 3x3, plus the input (IMPALA)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        y = nn.Conv(channels, (3, 3), padding="SAME")(nn.relu(x))
        y = nn.Conv(channels, (3, 3), padding="SAME")(nn.relu(y))
        return x + y


class ImpalaCNN(nn.Module):
    """The IMPALA encoder (Espeholt et al. 2018): per stack, conv 3x3, max-pool 3x3 stride 2 and two
    residual blocks; stacks of 16, 32, 32 channels; then relu, a dense hidden layer and a linear output."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    weight_init: str = "lecun_normal"
    conv_init: str = "lecun_normal"
    stacks: Sequence[int] = (16, 32, 32)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        for channels in self.stacks:
            x = nn.Conv(channels, (3, 3), padding="SAME")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = ResidualBlock()(x)
            x = ResidualBlock()(x)
        x = nn.relu(x).reshape(batch_shape + (-1,))
        return _dense_head(x, self.hidden, self.out, self.activation, self.weight_init)


class Scaled(nn.Module):
    """Multiplies inputs by ``scale`` (e.g. 1/255 for Atari frames) before the torso."""

    torso: nn.Module
    scale: float

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.torso(x.astype(jnp.float32) * self.scale)


TORSOS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "minatar_cnn": ConvNet,
    "nature_cnn": ConvNet,
    "impala_cnn": ImpalaCNN,
}


def make_q_network(network_cfg: dict[str, Any], obs_shape: tuple[int, ...], num_actions: int) -> nn.Module:
    """A Q-network mapping observations [..., *obs_shape] to Q-values [..., num_actions]."""
    common = dict(
        hidden=tuple(network_cfg["hidden"]),
        out=num_actions,
        activation=network_cfg["activation"],
        weight_init=network_cfg["init"],
    )
    name, scale = network_cfg["name"], network_cfg["input_scale"]
    if name == "mlp":
        torso = MLP(obs_ndim=len(obs_shape), **common)
    elif len(obs_shape) != 3:
        raise ValueError(f"network '{name}' needs image observations (H, W, C), got shape {obs_shape}")
    elif name == "impala_cnn":
        if network_cfg["conv_init"] != "lecun_normal":
            raise ValueError("network 'impala_cnn' has no conv_init option; leave 'network/conv_init' at lecun_normal")
        torso = ImpalaCNN(**common)
    elif name == "nature_cnn":
        padding = network_cfg["conv_padding"].upper()
        torso = ConvNet(convs=NATURE_CONVS, conv_init=network_cfg["conv_init"], padding=padding, **common)
    else:
        torso = ConvNet(convs=MINATAR_CONVS, conv_init=network_cfg["conv_init"], **common)
    return torso if scale == 1.0 else Scaled(torso, scale)


__all__ = [
    "MLP",
    "ConvNet",
    "MINATAR_CONVS",
    "NATURE_CONVS",
    "ImpalaCNN",
    "make_q_network",
    "conv_layer",
    "ACTIVATIONS",
    "INITS",
    "CONV_INITS",
    "TORSOS",
]
