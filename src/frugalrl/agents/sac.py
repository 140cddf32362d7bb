"""SAC for continuous actions in [-1, 1], as the high-replay-ratio code (jaxrl) runs it.

A double critic with the min, a tanh-squashed Gaussian actor with a state-dependent log-std,
a learned temperature with target entropy -|A|/2, orthogonal init, Adam everywhere. One update
is, in this order: the critic step (targets from the current actor at s' and the target critic),
the Polyak step of the target critic, the actor step (against the just-updated critic, with the
temperature before its own step), then the temperature step (with the actor step's entropy).

Single-seed pure functions; the loop vmaps them over seeds, runs ``updates_per_step`` of them
per env step inside one jitted call, and owns resets (``frugalrl.train.resets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from frugalrl.agents.optim import make_optimizer
from frugalrl.envs import EnvSpec
from frugalrl.nets.actor_critic import CriticEnsemble, TanhGaussianActor, Temperature
from frugalrl.replay.fifo import Batch

LOG_TWO = float(np.float32(math.log(2.0)))  # log 2 rounded to float32, as jnp.log(2.0) gives it


class SACState(NamedTuple):
    actor: Any
    critic: Any
    target_critic: Any
    temperature: Any
    actor_opt: Any
    critic_opt: Any
    temperature_opt: Any


def tanh_log_det(pre_tanh: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2), written as 2 (log 2 - u - softplus(-2u)) so it stays finite for large |u|."""
    return 2.0 * (LOG_TWO - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))


def tanh_gaussian_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A reparameterised action tanh(mean + std * noise) and its log-probability (tanh Jacobian included)."""
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    pre_tanh = mean + jnp.exp(log_std) * noise
    gaussian = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_prob = jnp.sum(gaussian - tanh_log_det(pre_tanh), axis=-1)
    return jnp.tanh(pre_tanh), log_prob


def uniform_or(action: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
    """``action``, or with probability ``epsilon`` a uniform random action in [-1, 1] (the warm-up)."""
    coin_key, action_key = jax.random.split(key)
    random_action = jax.random.uniform(action_key, action.shape, action.dtype, -1.0, 1.0)
    return jnp.where(jax.random.uniform(coin_key) < epsilon, random_action, action)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Sum over the critics of each one's mean squared error to the shared target (no 1/2)."""
    return jnp.sum(jnp.mean((q - target) ** 2, axis=-1))


def soft_target(
    reward: jax.Array, discount: jax.Array, next_q: jax.Array, next_log_prob: jax.Array, alpha: jax.Array
) -> jax.Array:
    """r + discount * (min over critics of Q_target(s', a') - alpha * log pi(a'|s')); discount: gamma or 0."""
    return reward + discount * (jnp.min(next_q, axis=0) - alpha * next_log_prob)


def actor_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array) -> jax.Array:
    """mean(alpha * log pi(a|s) - min over critics of Q(s, a)), a reparameterised from pi."""
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0))


def temperature_loss(alpha: jax.Array, entropy: jax.Array, target_entropy: float) -> jax.Array:
    """alpha * (entropy - target entropy): alpha grows while the policy's entropy is below the target."""
    return alpha * (entropy - target_entropy)


@dataclass(frozen=True)
class SAC:
    """SAC built from a resolved config: the static pieces; all state is explicit (``SACState``)."""

    spec: EnvSpec
    cfg: dict[str, Any]

    def __post_init__(self) -> None:
        if self.spec.discrete:
            raise ValueError(f"SAC needs continuous actions; {self.spec.name} has discrete actions")
        net, sac = self.cfg["network"], self.cfg["sac"]
        action_dim = math.prod(self.spec.action_shape)
        hidden, activation = tuple(net["hidden"]), net["activation"]
        setattr_ = object.__setattr__
        setattr_(self, "action_dim", action_dim)
        setattr_(
            self,
            "actor",
            TanhGaussianActor(hidden, action_dim, sac["log_std_min"], sac["log_std_max"], activation),
        )
        setattr_(self, "critic", CriticEnsemble(hidden, sac["critics"], activation))
        setattr_(self, "temperature", Temperature(sac["init_temperature"]))
        target = sac["target_entropy"]
        setattr_(self, "target_entropy", -action_dim / 2 if target is None else float(target))
        opt = self.cfg["optimizer"]
        setattr_(self, "critic_optimizer", make_optimizer(opt))
        setattr_(self, "actor_optimizer", make_optimizer({**opt, "lr": sac["actor_lr"] or opt["lr"]}))
        setattr_(self, "temperature_optimizer", make_optimizer({**opt, "lr": sac["temperature_lr"] or opt["lr"]}))

    # -- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> SACState:
        """Fresh parameters and optimizer states; the target critic starts equal to the critic."""
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros(self.spec.obs_shape, jnp.float32)
        action = jnp.zeros((self.action_dim,), jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, action)
        temperature = self.temperature.init(key)
        return SACState(
            actor,
            critic,
            critic,
            temperature,
            self.actor_optimizer.init(actor),
            self.critic_optimizer.init(critic),
            self.temperature_optimizer.init(temperature),
        )

    # -- acting ------------------------------------------------------------------------------
    def epsilon(self, step: jax.Array) -> jax.Array:
        """No uniform actions after the warm-up: the policy's own noise explores."""
        return jnp.zeros(jnp.shape(step), jnp.float32)

    def act(self, state: SACState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """A sample of the policy (temperature 1), or a uniform action with probability ``epsilon``."""
        policy_key, uniform_key = jax.random.split(key)
        mean, log_std = self.actor.apply(state.actor, obs)
        action, _ = tanh_gaussian_sample(mean, log_std, policy_key)
        return uniform_or(action.reshape(self.spec.action_shape), uniform_key, epsilon)

    def evaluation_act(self, state: SACState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """The deterministic policy tanh(mean) (or a uniform action with probability ``epsilon``)."""
        mean, _ = self.actor.apply(state.actor, obs)
        return uniform_or(jnp.tanh(mean).reshape(self.spec.action_shape), key, epsilon)

    # -- learning ----------------------------------------------------------------------------
    def td_target(self, state: SACState, batch: Batch) -> None:
        """None: SAC's targets need fresh actor samples, so ``update`` computes them."""
        return None

    def sync_target(self, state: SACState) -> SACState:
        """Nothing: the target critic takes its Polyak step inside every update."""
        return state

    def update(
        self,
        state: SACState,
        batch: Batch,
        key: jax.Array,
        target: None = None,
        inputs: Any = None,
    ) -> tuple[SACState, dict[str, jax.Array]]:
        """One gradient step of critic, target critic, actor and temperature, in that order."""
        next_key, actor_key = jax.random.split(key)
        action = batch.action.reshape(batch.action.shape[0], self.action_dim)
        alpha = self.temperature.apply(state.temperature)

        # 1. critic
        next_mean, next_log_std = self.actor.apply(state.actor, batch.next_obs)
        next_action, next_log_prob = tanh_gaussian_sample(next_mean, next_log_std, next_key)
        next_q = self.critic.apply(state.target_critic, batch.next_obs, next_action)
        if not self.cfg["sac"]["backup_entropy"]:
            next_log_prob = jnp.zeros_like(next_log_prob)
        y = jax.lax.stop_gradient(soft_target(batch.reward, batch.discount, next_q, next_log_prob, alpha))

        def critic_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            q = self.critic.apply(params, batch.obs, action)
            return critic_loss(q, y), q

        (c_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic)
        updates, critic_opt = self.critic_optimizer.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, updates)

        # 2. target critic
        target_critic = optax.incremental_update(critic, state.target_critic, self.cfg["agent"]["tau"])

        # 3. actor, against the updated critic
        def actor_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            mean, log_std = self.actor.apply(params, batch.obs)
            sampled, log_prob = tanh_gaussian_sample(mean, log_std, actor_key)
            return actor_loss(self.critic.apply(critic, batch.obs, sampled), log_prob, alpha), log_prob

        (a_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(state.actor)
        updates, actor_opt = self.actor_optimizer.update(grads, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, updates)
        entropy = -jnp.mean(log_prob)

        # 4. temperature, with the actor step's entropy
        temperature, temperature_opt = state.temperature, state.temperature_opt
        t_loss = temperature_loss(alpha, entropy, self.target_entropy)
        if self.cfg["sac"]["learn_temperature"]:

            def temperature_objective(params: Any) -> jax.Array:
                return temperature_loss(self.temperature.apply(params), entropy, self.target_entropy)

            grads = jax.grad(temperature_objective)(state.temperature)
            updates, temperature_opt = self.temperature_optimizer.update(grads, temperature_opt, temperature)
            temperature = optax.apply_updates(temperature, updates)

        metrics = {
            "critic_loss": c_loss,
            "q1": q[0].mean(),
            "q2": q[-1].mean(),
            "actor_loss": a_loss,
            "entropy": entropy,
            "temperature": alpha,
            "temperature_loss": t_loss,
            "loss": c_loss + a_loss + t_loss,  # for the loop's NaN check: finite iff all three are
        }
        new_state = SACState(actor, critic, target_critic, temperature, actor_opt, critic_opt, temperature_opt)
        return new_state, metrics
