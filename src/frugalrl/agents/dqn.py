"""DQN: online and target Q-networks, n-step TD targets, double DQN, MSE or Huber.

Single-seed pure functions; the training loop vmaps them over seeds and owns every schedule
(when to update, when to sync the target), so the agent never branches on step counters.
Extra loss terms (consolidation, distillation) plug in through ``extra_losses``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.optim import make_optimizer
from frugalrl.envs import EnvSpec
from frugalrl.nets import make_q_network
from frugalrl.replay.fifo import Batch


class DQNState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any


# (params, target_params, aux, key) -> (loss, metrics): added to the TD loss. ``aux`` holds the
# term's inputs that the loop prepares (e.g. consolidation states and their weight).
LossTerm = Callable[[Any, Any, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclass(frozen=True)
class DQN:
    """A DQN built from a resolved config: holds the static pieces, all state is explicit."""

    spec: EnvSpec
    cfg: dict[str, Any]
    extra_losses: tuple[LossTerm, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.spec.discrete:
            raise ValueError(f"DQN needs discrete actions; {self.spec.name} has continuous actions")
        object.__setattr__(
            self, "network", make_q_network(self.cfg["network"], self.spec.obs_shape, self.spec.num_actions)
        )
        tied_lr = self.cfg["distillation"]["lr_low"] is not None  # QDagger: lr follows lambda
        object.__setattr__(self, "optimizer", make_optimizer(self.cfg["optimizer"], adjustable_lr=tied_lr))

    # -- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> DQNState:
        obs = jnp.zeros(self.spec.obs_shape, jnp.float32)
        params = self.network.init(key, obs)
        return DQNState(params, params, self.optimizer.init(params))

    # -- acting ------------------------------------------------------------------------------
    def epsilon(self, step: jax.Array) -> jax.Array:
        """Linear decay from epsilon_start to epsilon_end over epsilon_decay_steps, from step 0."""
        a = self.cfg["agent"]
        duration = max(a["epsilon_decay_steps"], 1)
        frac = jnp.clip(step / duration, 0.0, 1.0)
        return a["epsilon_start"] + frac * (a["epsilon_end"] - a["epsilon_start"])

    def act(self, state: DQNState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """Epsilon-greedy action for one observation."""
        greedy = jnp.argmax(self.network.apply(state.params, obs), axis=-1)
        # one draw gives both the coin and the random action: acting is on the env-step hot path
        coin, pick = jax.random.uniform(key, (2,) + greedy.shape)
        random_action = jnp.minimum((pick * self.spec.num_actions).astype(jnp.int32), self.spec.num_actions - 1)
        return jnp.where(coin < epsilon, random_action, greedy).astype(jnp.int32)

    # -- learning ----------------------------------------------------------------------------
    def td_target(self, state: DQNState, batch: Batch) -> jax.Array:
        """r_n + gamma^k * Q_target(s', a*), a* = argmax of the target (or online, double DQN)."""
        next_q_target = self.network.apply(state.target_params, batch.next_obs)
        if self.cfg["agent"]["double"]:
            next_action = jnp.argmax(self.network.apply(state.params, batch.next_obs), axis=-1)
        else:
            next_action = jnp.argmax(next_q_target, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, next_action[..., None], axis=-1)[..., 0]
        return jax.lax.stop_gradient(batch.reward + batch.discount * next_value)

    def td_loss(
        self, params: Any, batch: Batch, target: jax.Array, q: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """TD loss of the taken actions; ``q``: the online Q on ``batch.obs`` when already computed."""
        q = self.network.apply(params, batch.obs) if q is None else q
        q_taken = jnp.take_along_axis(q, batch.action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        error = q_taken - target
        if self.cfg["agent"]["loss"] == "huber":
            loss = optax.huber_loss(error, delta=self.cfg["agent"]["huber_delta"]).mean()
        else:
            loss = jnp.mean(error**2)
        return loss, {"td_loss": loss, "q_mean": q_taken.mean()}

    def update(
        self,
        state: DQNState,
        batch: Batch,
        key: jax.Array,
        target: jax.Array | None = None,
        aux: dict[str, jax.Array] | None = None,
    ) -> tuple[DQNState, dict[str, jax.Array]]:
        """One gradient step on TD loss plus any extra loss terms.

        ``target``: TD targets fixed by the caller, for several optimizer steps on one batch
        (computed here when None); ``aux``: the extra loss terms' inputs.
        """
        if target is None:
            target = self.td_target(state, batch)

        def total_loss(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            q = self.network.apply(params, batch.obs)
            loss, metrics = self.td_loss(params, batch, target, q)
            if aux and "td_weight" in aux:  # pure distillation pretraining switches TD off
                loss = aux["td_weight"] * loss
            term_inputs = {
                **(aux or {}),
                "batch_q": q,
                "batch_action": batch.action,
            }  # terms on the TD batch reuse its Q
            for term in self.extra_losses:
                extra, extra_metrics = term(params, state.target_params, term_inputs, key)
                loss = loss + extra
                metrics = {**metrics, **extra_metrics}
            return loss, {**metrics, "loss": loss}

        grads, metrics = jax.grad(total_loss, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return DQNState(params, state.target_params, opt_state), metrics

    def sync_target(self, state: DQNState) -> DQNState:
        """Hard copy (tau = 1) or Polyak step toward the online parameters.

        Elementwise, so the loop applies it to seed-batched state without vmap; leaves it does not
        touch keep their identity and cost nothing in the loop's select.
        """
        tau = self.cfg["agent"]["tau"]
        if tau == 1.0:
            return state._replace(target_params=state.params)
        return state._replace(target_params=optax.incremental_update(state.params, state.target_params, tau))
