"""DDPG for continuous actions in [-1, 1], as the high-replay-ratio code (SR-DDPG) runs it.

One critic, a deterministic tanh actor, target copies of both moved by Polyak averaging after
every update, Gaussian exploration noise (sigma 0.2) clipped to [-1, 1]; no policy delay and no
target-policy smoothing (so not TD3). One update: the critic step toward
r + discount * Q_target(s', actor_target(s')), then the actor step against the updated critic,
then the Polyak steps of both targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.optim import make_optimizer
from frugalrl.agents.sac import uniform_or
from frugalrl.envs import EnvSpec
from frugalrl.nets.actor_critic import CriticEnsemble, DeterministicActor
from frugalrl.replay.fifo import Batch


class DDPGState(NamedTuple):
    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any
    actor_opt: Any
    critic_opt: Any


def deterministic_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """r + discount * Q_target(s', actor_target(s')); discount = gamma * (1 - terminated)."""
    return reward + discount * next_q


@dataclass(frozen=True)
class DDPG:
    spec: EnvSpec
    cfg: dict[str, Any]

    def __post_init__(self) -> None:
        if self.spec.discrete:
            raise ValueError(f"DDPG needs continuous actions; {self.spec.name} has discrete actions")
        net = self.cfg["network"]
        action_dim = math.prod(self.spec.action_shape)
        hidden, activation = tuple(net["hidden"]), net["activation"]
        object.__setattr__(self, "action_dim", action_dim)
        object.__setattr__(self, "actor", DeterministicActor(hidden, action_dim, activation))
        object.__setattr__(self, "critic", CriticEnsemble(hidden, 1, activation))
        opt = self.cfg["optimizer"]
        object.__setattr__(self, "critic_optimizer", make_optimizer(opt))
        actor_lr = self.cfg["sac"]["actor_lr"] or opt["lr"]
        object.__setattr__(self, "actor_optimizer", make_optimizer({**opt, "lr": actor_lr}))

    def init(self, key: jax.Array) -> DDPGState:
        """Fresh parameters and optimizer states; each target starts equal to its network."""
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros(self.spec.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        return DDPGState(
            actor, critic, actor, critic, self.actor_optimizer.init(actor), self.critic_optimizer.init(critic)
        )

    def epsilon(self, step: jax.Array) -> jax.Array:
        """No uniform actions after the warm-up: Gaussian noise explores."""
        return jnp.zeros(jnp.shape(step), jnp.float32)

    def act(self, state: DDPGState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """clip(actor(s) + N(0, sigma^2), -1, 1), or a uniform action with probability ``epsilon``."""
        noise_key, uniform_key = jax.random.split(key)
        action = self.actor.apply(state.actor, obs)
        noise = self.cfg["ddpg"]["exploration_noise"] * jax.random.normal(noise_key, action.shape)
        action = jnp.clip(action + noise, -1.0, 1.0).reshape(self.spec.action_shape)
        return uniform_or(action, uniform_key, epsilon)

    def evaluation_act(self, state: DDPGState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """The actor's action without noise (or a uniform action with probability ``epsilon``)."""
        return uniform_or(self.actor.apply(state.actor, obs).reshape(self.spec.action_shape), key, epsilon)

    def td_target(self, state: DDPGState, batch: Batch) -> None:
        return None  # computed in ``update``, with the targets it moves

    def sync_target(self, state: DDPGState) -> DDPGState:
        return state  # the targets take their Polyak steps inside every update

    def update(
        self,
        state: DDPGState,
        batch: Batch,
        key: jax.Array,
        target: None = None,
        inputs: Any = None,
    ) -> tuple[DDPGState, dict[str, jax.Array]]:
        """One gradient step of critic then actor, then the Polyak steps of both targets."""
        action = batch.action.reshape(batch.action.shape[0], self.action_dim)
        next_action = self.actor.apply(state.target_actor, batch.next_obs)
        next_q = self.critic.apply(state.target_critic, batch.next_obs, next_action)[0]
        y = jax.lax.stop_gradient(deterministic_target(batch.reward, batch.discount, next_q))

        def critic_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            q = self.critic.apply(params, batch.obs, action)[0]
            return jnp.mean((q - y) ** 2), q

        (c_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic)
        updates, critic_opt = self.critic_optimizer.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, updates)

        def actor_objective(params: Any) -> jax.Array:
            return -jnp.mean(self.critic.apply(critic, batch.obs, self.actor.apply(params, batch.obs))[0])

        a_loss, grads = jax.value_and_grad(actor_objective)(state.actor)
        updates, actor_opt = self.actor_optimizer.update(grads, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, updates)

        tau = self.cfg["agent"]["tau"]
        target_actor = optax.incremental_update(actor, state.target_actor, tau)
        target_critic = optax.incremental_update(critic, state.target_critic, tau)
        metrics = {"critic_loss": c_loss, "q": q.mean(), "actor_loss": a_loss, "loss": c_loss + a_loss}
        return DDPGState(actor, critic, target_actor, target_critic, actor_opt, critic_opt), metrics
