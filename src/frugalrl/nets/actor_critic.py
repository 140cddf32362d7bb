"""Actor and critic networks for continuous actions in [-1, 1] (SAC, DDPG), as jaxrl builds them.

Every dense layer has an orthogonal init with gain sqrt(2) and zero biases, output layers
included; only the Gaussian actor's log-std head uses gain 1. ReLU after every hidden layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from frugalrl.nets import ACTIVATIONS

ROOT_TWO = 2.0**0.5


def _dense(features: int, gain: float = ROOT_TWO) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(gain))


class OrthogonalMLP(nn.Module):
    """Hidden layers with the activation after each; a linear output layer unless ``out`` is 0."""

    hidden: Sequence[int]
    out: int = 0
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(_dense(width)(x))
        return _dense(self.out)(x) if self.out else x


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenated observation and action."""

    hidden: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return OrthogonalMLP(self.hidden, 1, self.activation)(x)[..., 0]


class CriticEnsemble(nn.Module):
    """``count`` independent critics (SAC's double critic: 2), evaluated as one batched call: [count, ...]."""

    hidden: Sequence[int]
    count: int = 2
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.count,
        )
        return ensemble(self.hidden, self.activation)(obs, action)


class TanhGaussianActor(nn.Module):
    """The mean and the log-std of a Gaussian that a tanh squashes into [-1, 1].

    The raw log-std goes through ``min + (max - min) * (1 + tanh(x)) / 2``, so it stays inside
    [log_std_min, log_std_max] with a smooth gradient (jaxrl's state-dependent std).
    """

    hidden: Sequence[int]
    action_dim: int
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = OrthogonalMLP(self.hidden, 0, self.activation)(obs)
        mean = _dense(self.action_dim)(x)
        raw = _dense(self.action_dim, gain=1.0)(x)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (1.0 + jnp.tanh(raw))
        return mean, log_std


class DeterministicActor(nn.Module):
    """DDPG's policy: tanh of a linear output."""

    hidden: Sequence[int]
    action_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(OrthogonalMLP(self.hidden, self.action_dim, self.activation)(obs))


class Temperature(nn.Module):
    """SAC's entropy temperature alpha = exp(log alpha), one learned scalar."""

    initial: float = 1.0

    @nn.compact
    def __call__(self) -> jax.Array:
        log_alpha = self.param("log_alpha", lambda _: jnp.full((), jnp.log(self.initial), jnp.float32))
        return jnp.exp(log_alpha)
