"""Recurrent double DQN of Memory-RL (Ni et al. 2023): a sequence torso trained on whole episodes.

Token ``t`` is (a_{t-1}, r_{t-1}, o_t) with a zero action and reward at ``t = 0``. One pass of the
online network over the ``T+1`` tokens of a sampled sequence gives Q(h_t, ·) for t = 0..T: the first
T predict Q(h_t, a_t), the last T pick a* = argmax Q(h_{t+1}, ·) (double DQN); a pass of the target
network gives y_t = r_t + γ (1 − d_t) Q_target(h_{t+1}, a*). The loss is the masked mean of the
squared (or Huber) error over every valid step of the batch; the target follows by Polyak averaging
after every gradient step. GPT dropout is on in every training pass (the target's too, as in the
original, whose target copy stays in train mode) and while exploring; evaluation turns it off.

One deliberate economy: the argmax for the target reuses the online pass that makes the predictions
(under stop_gradient) instead of a third pass; for an LSTM it is the same numbers, for a GPT it
shares that pass's dropout mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.optim import make_optimizer
from frugalrl.envs import EnvSpec
from frugalrl.nets.sequence import initial_memory, make_sequence_network
from frugalrl.replay.episodes import Episode


class RecurrentDQNState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any


def previous_tokens(action: jax.Array, reward: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Actions/rewards [..., W] -> the previous action (-1 first) and reward (0 first) of W+1 tokens."""
    pad = [(0, 0)] * (action.ndim - 1) + [(1, 0)]
    return jnp.pad(action, pad, constant_values=-1), jnp.pad(reward, pad)


def map_sequences(
    net: Any, params: Any, batch: Episode, key: jax.Array, dropout: bool, method: str = "__call__"
) -> jax.Array:
    """A whole-sequence method of a sequence network over every sequence of a batch [B, W+1, ...],
    with a dropout key of its own per sequence when ``dropout``."""
    prev_action, prev_reward = previous_tokens(batch.action, batch.reward)
    keys = jax.random.split(key, batch.action.shape[0])

    def one(obs: jax.Array, a: jax.Array, r: jax.Array, k: jax.Array) -> jax.Array:
        rngs = {"dropout": k} if dropout else None
        return net.apply(params, obs, a, r, not dropout, rngs=rngs, method=getattr(net, method))

    return jax.vmap(one)(batch.obs, prev_action, prev_reward, keys)


@dataclass(frozen=True)
class RecurrentDQN:
    """The static pieces of a recurrent DQN; all state is explicit."""

    spec: EnvSpec
    cfg: dict[str, Any]
    max_length: int  # tokens per training sequence (T+1 for whole episodes)

    def __post_init__(self) -> None:
        if not self.spec.discrete:
            raise ValueError(f"recurrent DQN needs discrete actions; {self.spec.name} has continuous actions")
        network = make_sequence_network(
            self.cfg["sequence"], self.spec.obs_shape, self.spec.num_actions, self.spec.num_actions, self.max_length
        )
        object.__setattr__(self, "network", network)
        object.__setattr__(self, "optimizer", make_optimizer(self.cfg["optimizer"]))
        object.__setattr__(
            self, "dropout", self.cfg["sequence"]["model"] == "gpt" and self.cfg["sequence"]["dropout"] > 0
        )

    def init(self, key: jax.Array) -> RecurrentDQNState:
        obs = jnp.zeros((self.max_length, *self.spec.obs_shape), jnp.float32)
        prev_action = jnp.full((self.max_length,), -1, jnp.int32)
        params = self.network.init(key, obs, prev_action, jnp.zeros(self.max_length))
        return RecurrentDQNState(params, params, self.optimizer.init(params))

    def initial_memory(self) -> Any:
        return initial_memory(self.cfg["sequence"], self.max_length)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("grad_norm", "loss", "q_mean")

    def acting_params(self, state: RecurrentDQNState) -> Any:
        return state.params

    # -- acting ------------------------------------------------------------------------------
    def q_step(
        self,
        params: Any,
        memory: Any,
        obs: jax.Array,
        prev_action: jax.Array,
        prev_reward: jax.Array,
        key: jax.Array,
        explore: bool,
    ) -> tuple[Any, jax.Array]:
        """Advance the memory by one token and return Q(h_t, ·); dropout only while exploring."""
        deterministic = not (explore and self.dropout)
        rngs = None if deterministic else {"dropout": key}
        return self.network.apply(
            params, memory, obs, prev_action, prev_reward, deterministic, rngs=rngs, method=self.network.step
        )

    def act(
        self,
        params: Any,
        memory: Any,
        obs: jax.Array,
        prev_action: jax.Array,
        prev_reward: jax.Array,
        key: jax.Array,
        epsilon: jax.Array,
        explore: bool = True,
    ) -> tuple[Any, jax.Array]:
        """(memory, ε-greedy action); with ``explore`` False, greedy and without dropout."""
        net_key, coin_key, pick_key = jax.random.split(key, 3)
        memory, q = self.q_step(params, memory, obs, prev_action, prev_reward, net_key, explore)
        greedy = jnp.argmax(q).astype(jnp.int32)
        if not explore:
            return memory, greedy
        random_action = jax.random.randint(pick_key, (), 0, self.spec.num_actions)
        return memory, jnp.where(jax.random.uniform(coin_key) < epsilon, random_action, greedy)

    # -- learning ----------------------------------------------------------------------------
    def _q_sequences(self, params: Any, batch: Episode, key: jax.Array) -> jax.Array:
        """Q(h_t, ·) [B, W+1, A] for every token of every sequence (dropout on for GPT)."""
        return map_sequences(self.network, params, batch, key, self.dropout)

    def loss(self, params: Any, target_params: Any, batch: Episode, key: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
        agent = self.cfg["agent"]
        online_key, target_key = jax.random.split(key)
        q_all = self._q_sequences(params, batch, online_key)
        q_taken = jnp.take_along_axis(q_all[:, :-1], batch.action[..., None], axis=-1)[..., 0]
        next_online = jax.lax.stop_gradient(q_all[:, 1:])
        next_target = jax.lax.stop_gradient(self._q_sequences(target_params, batch, target_key)[:, 1:])
        if agent["double"]:
            best = jnp.argmax(next_online, axis=-1)
            next_value = jnp.take_along_axis(next_target, best[..., None], axis=-1)[..., 0]
        else:
            next_value = next_target.max(-1)
        target = batch.reward + agent["gamma"] * (1.0 - batch.terminated.astype(jnp.float32)) * next_value
        error = q_taken - target
        if agent["loss"] == "huber":
            per_step = optax.huber_loss(q_taken, target, delta=agent["huber_delta"])
        else:
            per_step = jnp.square(error)
        mask = batch.valid.astype(jnp.float32)
        loss = (per_step * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        q_mean = (q_taken * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        return loss, {"loss": loss, "q_mean": q_mean}

    def update(
        self, state: RecurrentDQNState, batch: Episode, key: jax.Array
    ) -> tuple[RecurrentDQNState, dict[str, Any]]:
        """One gradient step, then the Polyak target update."""
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, state.target_params, batch, key)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        tau = self.cfg["agent"]["tau"]
        target = jax.tree.map(lambda t, p: (1.0 - tau) * t + tau * p, state.target_params, params)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return RecurrentDQNState(params, target, opt_state), metrics


__all__ = ["RecurrentDQN", "RecurrentDQNState", "map_sequences", "previous_tokens"]
