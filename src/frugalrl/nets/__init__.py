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
}


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
        act, kernel_init = ACTIVATIONS[self.activation], INITS[self.weight_init]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=kernel_init)(x))
        return nn.Dense(self.out, kernel_init=kernel_init)(x)


class MinAtarCNN(nn.Module):
    """The MinAtar network: conv 16 3x3 stride 1 (valid) + ReLU, dense hidden + ReLU, linear."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        x = nn.relu(nn.Conv(16, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = x.reshape(batch_shape + (-1,))
        act, kernel_init = ACTIVATIONS[self.activation], INITS[self.weight_init]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=kernel_init)(x))
        return nn.Dense(self.out, kernel_init=kernel_init)(x)


TORSOS: dict[str, type[nn.Module]] = {"mlp": MLP, "minatar_cnn": MinAtarCNN}


def make_q_network(network_cfg: dict[str, Any], obs_shape: tuple[int, ...], num_actions: int) -> nn.Module:
    """A Q-network mapping observations [..., *obs_shape] to Q-values [..., num_actions]."""
    common = dict(
        hidden=tuple(network_cfg["hidden"]),
        out=num_actions,
        activation=network_cfg["activation"],
        weight_init=network_cfg["init"],
    )
    if network_cfg["name"] == "mlp":
        return MLP(obs_ndim=len(obs_shape), **common)
    if len(obs_shape) != 3:
        raise ValueError(f"network 'minatar_cnn' needs image observations (H, W, C), got shape {obs_shape}")
    return MinAtarCNN(**common)


__all__ = ["MLP", "MinAtarCNN", "make_q_network", "ACTIVATIONS", "INITS", "TORSOS"]
