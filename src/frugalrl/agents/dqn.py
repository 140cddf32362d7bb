"""DQN: online and target Q-networks, n-step TD targets, double DQN, MSE or Huber, or C51.

With ``agent/atoms`` > 0 the network outputs a categorical return distribution per action on a
fixed support of ``atoms`` points in [v_min, v_max] (C51, Bellemare et al. 2017); its Q-values
(acting, distillation, consolidation) are the distributions' means and the TD loss is the
cross-entropy to the target distribution projected onto the support.

Single-seed pure functions; the training loop vmaps them over seeds and owns every schedule
(when to update, when to sync the target), so the agent never branches on step counters.
Extra loss terms (consolidation, distillation) plug in through ``extra_losses``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.losses import LossInputs, LossTerm
from frugalrl.agents.optim import make_optimizer
from frugalrl.envs import EnvSpec
from frugalrl.nets import make_q_network
from frugalrl.replay.fifo import Batch


class DQNState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any


class QValues:
    """``apply(params, obs) -> Q`` of a network: its outputs, or the means of its C51 distributions."""

    def __init__(self, network: Any, num_actions: int, support: jax.Array | None) -> None:
        self.network, self.num_actions, self.support = network, num_actions, support

    def logits(self, params: Any, obs: jax.Array) -> jax.Array:
        """[..., actions, atoms] (C51 only)."""
        return self.split(self.network.apply(params, obs))

    def split(self, outputs: jax.Array) -> jax.Array:
        return outputs.reshape(outputs.shape[:-1] + (self.num_actions, -1))

    def from_outputs(self, outputs: jax.Array) -> jax.Array:
        """Q-values from the network's raw outputs."""
        if self.support is None:
            return outputs
        return jnp.sum(jax.nn.softmax(self.split(outputs), axis=-1) * self.support, axis=-1)

    def apply(self, params: Any, obs: jax.Array) -> jax.Array:
        return self.from_outputs(self.network.apply(params, obs))

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        return self.network.init(key, obs)


def project_onto_support(support: jax.Array, returns: jax.Array, probs: jax.Array) -> jax.Array:
    """Categorical projection: the mass ``probs`` [..., atoms] at points ``returns`` [..., atoms],
    clipped to the support's range and split between the two nearest support points."""
    v_min, v_max = support[0], support[-1]
    delta = support[1] - support[0]
    returns = jnp.clip(returns, v_min, v_max)
    # weight of source atom j on support point i: the hat function 1 - |Tz_j - z_i| / delta, clipped at 0
    weights = jnp.clip(1.0 - jnp.abs(returns[..., None, :] - support[:, None]) / delta, 0.0, 1.0)
    return jnp.sum(weights * probs[..., None, :], axis=-1)


@dataclass(frozen=True)
class DQN:
    """A DQN built from a resolved config: holds the static pieces, all state is explicit."""

    spec: EnvSpec
    cfg: dict[str, Any]
    extra_losses: tuple[LossTerm, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.spec.discrete:
            raise ValueError(f"DQN needs discrete actions; {self.spec.name} has continuous actions")
        atoms = self.cfg["agent"]["atoms"]
        outputs = self.spec.num_actions * max(atoms, 1)
        object.__setattr__(self, "network", make_q_network(self.cfg["network"], self.spec.obs_shape, outputs))
        support = None
        if atoms:
            support = jnp.linspace(self.cfg["agent"]["v_min"], self.cfg["agent"]["v_max"], atoms, dtype=jnp.float32)
        object.__setattr__(self, "support", support)
        object.__setattr__(self, "q", QValues(self.network, self.spec.num_actions, support))
        # QDagger's lr follows lambda; a pretraining lr of its own switches back after pretraining
        tied_lr = self.cfg["distillation"]["lr_low"] is not None or self.cfg["pretraining"]["lr"] is not None
        object.__setattr__(self, "optimizer", make_optimizer(self.cfg["optimizer"], adjustable_lr=tied_lr))

    def with_lr(self, lr: jax.Array) -> DQN:
        """This agent with the learning rate ``lr`` (a packed program's lane value; the optimizer's
        state keeps its layout, so a packed run checkpoints as it would alone)."""
        tied_lr = self.cfg["distillation"]["lr_low"] is not None or self.cfg["pretraining"]["lr"] is not None
        if tied_lr:
            raise ValueError("a learning rate tied to QDagger's lambda lives in the optimizer state: not packable")
        lane = copy.copy(self)
        object.__setattr__(lane, "optimizer", make_optimizer({**self.cfg["optimizer"], "lr": lr}))
        return lane

    # -- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> DQNState:
        obs = jnp.zeros(self.spec.obs_shape, jnp.float32)
        params = self.network.init(key, obs)
        return DQNState(params, params, self.optimizer.init(params))

    # -- acting ------------------------------------------------------------------------------
    def epsilon(self, step: jax.Array, start: Any = None, delta: Any = None) -> jax.Array:
        """Linear decay from epsilon_start to epsilon_end over epsilon_decay_steps, from step 0;
        ``start`` and ``delta`` (end - start): a packed program's per-lane values instead."""
        a = self.cfg["agent"]
        if start is None:
            start, delta = a["epsilon_start"], a["epsilon_end"] - a["epsilon_start"]
        duration = max(a["epsilon_decay_steps"], 1)
        frac = jnp.clip(step / duration, 0.0, 1.0)
        return start + frac * delta

    def policy_action(
        self, q_values: jax.Array, key: jax.Array, epsilon: jax.Array, temperature: Any = None
    ) -> jax.Array:
        """The exploring policy on Q-values: epsilon-greedy, or a Boltzmann draw on Q / temperature
        (``agent/exploration`` softmax) that a uniform action still replaces with probability ``epsilon``;
        ``temperature``: a packed program's lane value instead of the config's."""
        if self.cfg["agent"]["exploration"] == "softmax":
            key, pick_key = jax.random.split(key)
            if temperature is None:
                temperature = self.cfg["agent"]["softmax_temperature"]
            choice = jax.random.categorical(pick_key, q_values / temperature, axis=-1)
            return self.uniform_or(choice, key, epsilon)
        return self.uniform_or(jnp.argmax(q_values, axis=-1), key, epsilon)

    def uniform_or(self, action: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """``action``, or a uniformly random action with probability ``epsilon``."""
        # one draw gives both the coin and the random action: acting is on the env-step hot path
        coin, pick = jax.random.uniform(key, (2,) + action.shape)
        random_action = jnp.minimum((pick * self.spec.num_actions).astype(jnp.int32), self.spec.num_actions - 1)
        return jnp.where(coin < epsilon, random_action, action).astype(jnp.int32)

    def act(
        self, state: DQNState, obs: jax.Array, key: jax.Array, epsilon: jax.Array, temperature: Any = None
    ) -> jax.Array:
        """The exploring action for one observation (epsilon-greedy or softmax, ``agent/exploration``)."""
        return self.policy_action(self.q.apply(state.params, obs), key, epsilon, temperature)

    def evaluation_act(self, state: DQNState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """Greedy, or uniform with the evaluation's epsilon (softmax exploration is for training only)."""
        return self.uniform_or(jnp.argmax(self.q.apply(state.params, obs), axis=-1), key, epsilon)

    # -- learning ----------------------------------------------------------------------------
    def td_target(self, state: DQNState, batch: Batch) -> jax.Array:
        """r_n + gamma^k * Q_target(s', a*), a* = argmax of the target (or online, double DQN).

        C51: the target network's distribution of (s', a*), shifted by r_n and scaled by gamma^k,
        projected onto the support: [batch, atoms].
        """
        if self.support is not None:
            next_probs = jax.nn.softmax(self.q.logits(state.target_params, batch.next_obs), axis=-1)
            next_q_target = jnp.sum(next_probs * self.support, axis=-1)
        else:
            next_q_target = self.network.apply(state.target_params, batch.next_obs)
        if self.cfg["agent"]["double"]:
            next_action = jnp.argmax(self.q.apply(state.params, batch.next_obs), axis=-1)
        else:
            next_action = jnp.argmax(next_q_target, axis=-1)
        if self.support is not None:
            probs = jnp.take_along_axis(next_probs, next_action[..., None, None], axis=-2)[..., 0, :]
            returns = batch.reward[..., None] + batch.discount[..., None] * self.support
            return jax.lax.stop_gradient(project_onto_support(self.support, returns, probs))
        next_value = jnp.take_along_axis(next_q_target, next_action[..., None], axis=-1)[..., 0]
        return jax.lax.stop_gradient(batch.reward + batch.discount * next_value)

    def td_loss(
        self,
        params: Any,
        batch: Batch,
        target: jax.Array,
        outputs: jax.Array | None = None,
        weights: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """TD loss of the taken actions: the batch mean, or weighted by ``weights`` (prioritized
        replay's importance weights), with the per-example losses in ``metrics["td_per_example"]``.
        ``outputs``: the network's outputs on ``batch.obs`` if already computed."""
        outputs = self.network.apply(params, batch.obs) if outputs is None else outputs
        action = batch.action[..., None].astype(jnp.int32)
        if self.support is not None:
            logits = self.q.split(outputs)
            taken = jnp.take_along_axis(logits, action[..., None], axis=-2)[..., 0, :]
            per_example = -jnp.sum(target * jax.nn.log_softmax(taken, axis=-1), axis=-1)
            q_taken = jnp.sum(jax.nn.softmax(taken, axis=-1) * self.support, axis=-1)
        else:
            q_taken = jnp.take_along_axis(outputs, action, axis=-1)[..., 0]
            error = q_taken - target
            if self.cfg["agent"]["loss"] == "huber":
                per_example = optax.huber_loss(error, delta=self.cfg["agent"]["huber_delta"])
            else:
                per_example = error**2
        loss = jnp.mean(per_example) if weights is None else jnp.mean(weights * per_example)
        return loss, {"td_loss": loss, "q_mean": q_taken.mean(), "td_per_example": per_example}

    def update(
        self,
        state: DQNState,
        batch: Batch,
        key: jax.Array,
        target: jax.Array | None = None,
        inputs: LossInputs | None = None,
    ) -> tuple[DQNState, dict[str, jax.Array]]:
        """One gradient step on TD loss plus any extra loss terms.

        ``target``: TD targets fixed by the caller, for several optimizer steps on one batch
        (computed here when None); ``inputs``: the importance weights and the extra loss terms' inputs.
        """
        if target is None:
            target = self.td_target(state, batch)
        inputs = LossInputs() if inputs is None else inputs

        def total_loss(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            outputs = self.network.apply(params, batch.obs)
            q = self.q.from_outputs(outputs)  # terms on the TD batch reuse its Q
            loss, metrics = self.td_loss(params, batch, target, outputs, inputs.sample_weights)
            if inputs.td_weight is not None:  # pure distillation pretraining switches TD off
                loss = inputs.td_weight * loss
            for term in self.extra_losses:
                extra, extra_metrics = term(params, state.target_params, q, batch, inputs, key)
                loss = loss + extra
                metrics = {**metrics, **extra_metrics}
            return loss, {**metrics, "loss": loss}

        grads, metrics = jax.grad(total_loss, has_aux=True)(state.params)
        per_example = metrics.pop("td_per_example")
        if inputs.sample_weights is not None:  # prioritized replay: the new priorities come from these
            metrics["td_per_example"] = per_example
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
