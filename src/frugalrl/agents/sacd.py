"""Recurrent SAC-Discrete of Memory-RL (after Christodoulou 2019 and pomdp-baselines).

Two Q heads and a categorical actor over sequence torsos, trained on whole episodes:

    y_t = r_t + γ (1 − d_t) Σ_a π(a|h_{t+1}) [min(Q1', Q2')(h_{t+1}, a) − α log π(a|h_{t+1})]
    L_Q = masked mean (Q_i(h_t, a_t) − y_t)²,   L_π = masked mean Σ_a π(a|h_t) [α log π(a|h_t) − min(Q1, Q2)(h_t, a)]

``separate`` (default): actor and critic each own embedder and sequence model, with their own Adam;
the target is a full copy of the critic. ``shared_encoder``: one torso feeds both Q heads and the
policy head, the loss is 0.5·(L_Q1 + L_Q2) + L_π under one Adam, and the target copies only the Q
heads (target values use the online torso's hidden states). ``freeze_critic`` (shared only): the
actor loss reads Q from a frozen copy of the Q heads on detached hidden states, so it cannot move the
Q heads or push the torso through them; it still trains the torso through the policy logits.
The temperature is fixed (α = 0.1 in the paper) unless ``learn_temperature``. Exploration samples
π (GPT dropout on); evaluation takes the argmax of the logits without dropout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.optim import make_optimizer
from frugalrl.agents.recurrent_dqn import map_sequences
from frugalrl.envs import EnvSpec
from frugalrl.nets.sequence import RlkitHead, SequenceNetwork, initial_memory, make_sequence_network
from frugalrl.replay.episodes import Episode


class SACDState(NamedTuple):
    params: Any  # separate: {"actor", "critic"}; shared: one tree
    target_params: Any  # separate: the critic's copy; shared: the Q heads' copy
    opt_state: Any
    log_alpha: jax.Array
    alpha_opt_state: Any


class TwinQHead(nn.Module):
    """Two Q heads on the same hidden state: [..., 2, A]."""

    hidden: tuple[int, ...]
    num_actions: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        q1 = RlkitHead(self.hidden, self.num_actions, name="q1")(h)
        q2 = RlkitHead(self.hidden, self.num_actions, name="q2")(h)
        return jnp.stack([q1, q2], axis=-2)


class ActorCriticHeads(nn.Module):
    """Q1, Q2 and the policy logits on one hidden state: [..., 3, A]."""

    hidden: tuple[int, ...]
    num_actions: int

    def setup(self) -> None:
        self.critic = TwinQHead(self.hidden, self.num_actions)
        self.policy = RlkitHead(self.hidden, self.num_actions, last_init=1e-3)

    def __call__(self, h: jax.Array) -> jax.Array:
        return jnp.concatenate([self.critic(h), self.policy(h)[..., None, :]], axis=-2)

    def critic_only(self, h: jax.Array) -> jax.Array:
        return self.critic(h)


def _with_head(network: SequenceNetwork, head: nn.Module) -> SequenceNetwork:
    return SequenceNetwork(network.embedder.clone(), network.core.clone(), head)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


@dataclass(frozen=True)
class SACD:
    """The static pieces of a recurrent SAC-Discrete; all state is explicit."""

    spec: EnvSpec
    cfg: dict[str, Any]
    max_length: int

    def __post_init__(self) -> None:
        if not self.spec.discrete:
            raise ValueError(f"SAC-Discrete needs discrete actions; {self.spec.name} has continuous actions")
        seq, actions = self.cfg["sequence"], self.spec.num_actions
        hidden = tuple(seq["head_hidden"])
        base = make_sequence_network(seq, self.spec.obs_shape, actions, actions, self.max_length)
        shared = self.cfg["sacd"]["shared_encoder"]
        if shared:
            nets = {"shared": _with_head(base, ActorCriticHeads(hidden, actions))}
        else:
            nets = {
                "actor": _with_head(base, RlkitHead(hidden, actions, last_init=1e-3)),
                "critic": _with_head(base, TwinQHead(hidden, actions)),
            }
        object.__setattr__(self, "nets", nets)
        object.__setattr__(self, "shared", shared)
        object.__setattr__(self, "dropout", seq["model"] == "gpt" and seq["dropout"] > 0)
        opt = self.cfg["optimizer"]
        actor_lr = self.cfg["sacd"]["actor_lr"] or opt["lr"]
        if shared and actor_lr != opt["lr"]:
            raise ValueError(
                "a shared encoder has one optimizer: leave 'sacd/actor_lr' null or equal to 'optimizer/lr'"
            )
        object.__setattr__(self, "critic_optimizer", make_optimizer(opt))
        object.__setattr__(self, "actor_optimizer", make_optimizer({**opt, "lr": actor_lr}))
        alpha_lr = self.cfg["sacd"]["temperature_lr"] or opt["lr"]
        object.__setattr__(self, "alpha_optimizer", optax.adam(alpha_lr))

    # -- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> SACDState:
        obs = jnp.zeros((self.max_length, *self.spec.obs_shape), jnp.float32)
        prev_action, prev_reward = jnp.full((self.max_length,), -1, jnp.int32), jnp.zeros(self.max_length)
        log_alpha = jnp.log(jnp.asarray(self.cfg["sacd"]["temperature"], jnp.float32))
        if self.shared:
            params = self.nets["shared"].init(key, obs, prev_action, prev_reward)
            target = params["params"]["head"]["critic"]
            opt_state = self.critic_optimizer.init(params)
        else:
            actor_key, critic_key = jax.random.split(key)
            params = {
                "actor": self.nets["actor"].init(actor_key, obs, prev_action, prev_reward),
                "critic": self.nets["critic"].init(critic_key, obs, prev_action, prev_reward),
            }
            target = params["critic"]
            opt_state = {
                "actor": self.actor_optimizer.init(params["actor"]),
                "critic": self.critic_optimizer.init(params["critic"]),
            }
        return SACDState(params, target, opt_state, log_alpha, self.alpha_optimizer.init(log_alpha))

    def initial_memory(self) -> Any:
        return initial_memory(self.cfg["sequence"], self.max_length)

    @property
    def metric_names(self) -> tuple[str, ...]:
        names = ("actor_loss", "alpha", "entropy", "grad_norm", "loss", "q_mean")
        return names if self.shared else (*names, "actor_grad_norm")

    def acting_params(self, state: SACDState) -> Any:
        return state.params if self.shared else state.params["actor"]

    # -- acting ------------------------------------------------------------------------------
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
        """(memory, action): a sample of π while exploring (``epsilon`` unused), else its argmax."""
        net = self.nets["shared"] if self.shared else self.nets["actor"]
        net_key, sample_key = jax.random.split(key)
        deterministic = not (explore and self.dropout)
        rngs = None if deterministic else {"dropout": net_key}
        memory, out = net.apply(
            params, memory, obs, prev_action, prev_reward, deterministic, rngs=rngs, method=net.step
        )
        logits = out[2] if self.shared else out
        action = jax.random.categorical(sample_key, logits) if explore else jnp.argmax(logits)
        return memory, action.astype(jnp.int32)

    # -- learning ----------------------------------------------------------------------------
    def _sequences(self, net: SequenceNetwork, params: Any, batch: Episode, key: jax.Array, method: str) -> jax.Array:
        return map_sequences(net, params, batch, key, self.dropout, method)

    def _policy_terms(self, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
        probs = jax.nn.softmax(logits, axis=-1)
        return probs, jnp.log(jnp.clip(probs, 1e-8, 1.0))

    def _target(self, batch: Episode, next_q: jax.Array, next_logits: jax.Array, alpha: jax.Array) -> jax.Array:
        probs, log_probs = self._policy_terms(next_logits)
        soft_value = (probs * (next_q.min(-2) - alpha * log_probs)).sum(-1)
        not_done = 1.0 - batch.terminated.astype(jnp.float32)
        return jax.lax.stop_gradient(batch.reward + self.cfg["agent"]["gamma"] * not_done * soft_value)

    def _critic_loss(self, q: jax.Array, batch: Episode, target: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Sum over the two heads of the masked MSE, and the mean Q of the taken actions."""
        taken = jnp.take_along_axis(q, batch.action[..., None, None], axis=-1)[..., 0]  # [B, W, 2]
        mask = batch.valid.astype(jnp.float32)
        losses = [_masked_mean(jnp.square(taken[..., i] - target), mask) for i in range(2)]
        return losses[0] + losses[1], _masked_mean(taken.mean(-1), mask)

    def _actor_loss(self, logits: jax.Array, q: jax.Array, batch: Episode, alpha: jax.Array) -> tuple[jax.Array, Any]:
        probs, log_probs = self._policy_terms(logits)
        per_step = (probs * (alpha * log_probs - q.min(-2))).sum(-1)
        mask = batch.valid.astype(jnp.float32)
        entropy = _masked_mean(-(probs * log_probs).sum(-1), mask)
        return _masked_mean(per_step, mask), (entropy, jax.lax.stop_gradient(probs), jax.lax.stop_gradient(log_probs))

    def _alpha_step(self, state: SACDState, probs: jax.Array, log_probs: jax.Array, mask: jax.Array) -> Any:
        if not self.cfg["sacd"]["learn_temperature"]:
            return state.log_alpha, state.alpha_opt_state
        target_entropy = self.cfg["sacd"]["target_entropy_ratio"] * jnp.log(float(self.spec.num_actions))

        def loss(log_alpha: jax.Array) -> jax.Array:
            return _masked_mean((probs * (-jnp.exp(log_alpha) * (log_probs + target_entropy))).sum(-1), mask)

        grad = jax.grad(loss)(state.log_alpha)
        updates, alpha_opt_state = self.alpha_optimizer.update(grad, state.alpha_opt_state, state.log_alpha)
        return optax.apply_updates(state.log_alpha, updates), alpha_opt_state

    def _polyak(self, target: Any, online: Any) -> Any:
        tau = self.cfg["agent"]["tau"]
        return jax.tree.map(lambda t, p: (1.0 - tau) * t + tau * p, target, online)

    def update(self, state: SACDState, batch: Episode, key: jax.Array) -> tuple[SACDState, dict[str, jax.Array]]:
        return (self._update_shared if self.shared else self._update_separate)(state, batch, key)

    def _update_separate(self, state: SACDState, batch: Episode, key: jax.Array) -> Any:
        actor, critic = self.nets["actor"], self.nets["critic"]
        alpha = jnp.exp(state.log_alpha)
        keys = jax.random.split(key, 4)
        next_logits = self._sequences(actor, state.params["actor"], batch, keys[0], "__call__")[:, 1:]
        next_q = self._sequences(critic, state.target_params, batch, keys[1], "__call__")[:, 1:]
        target = self._target(batch, next_q, next_logits, alpha)

        def critic_loss(params: Any) -> Any:
            q = self._sequences(critic, params, batch, keys[2], "__call__")[:, :-1]
            return self._critic_loss(q, batch, target)

        (loss, q_mean), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.params["critic"])
        updates, critic_opt = self.critic_optimizer.update(
            critic_grads, state.opt_state["critic"], state.params["critic"]
        )
        critic_params = optax.apply_updates(state.params["critic"], updates)
        q_now = jax.lax.stop_gradient(self._sequences(critic, critic_params, batch, keys[3], "__call__")[:, :-1])

        def actor_loss(params: Any) -> Any:
            logits = self._sequences(actor, params, batch, keys[0], "__call__")[:, :-1]
            return self._actor_loss(logits, q_now, batch, alpha)

        (a_loss, (entropy, probs, log_probs)), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.params["actor"]
        )
        updates, actor_opt = self.actor_optimizer.update(actor_grads, state.opt_state["actor"], state.params["actor"])
        actor_params = optax.apply_updates(state.params["actor"], updates)
        log_alpha, alpha_opt = self._alpha_step(state, probs, log_probs, batch.valid.astype(jnp.float32))
        new = SACDState(
            {"actor": actor_params, "critic": critic_params},
            self._polyak(state.target_params, critic_params),
            {"actor": actor_opt, "critic": critic_opt},
            log_alpha,
            alpha_opt,
        )
        metrics = {
            "loss": loss,
            "q_mean": q_mean,
            "actor_loss": a_loss,
            "entropy": entropy,
            "alpha": alpha,
            "grad_norm": optax.tree.norm(critic_grads),
            "actor_grad_norm": optax.tree.norm(actor_grads),
        }
        return new, metrics

    def shared_loss(self, params: Any, target_critic: Any, batch: Episode, key: jax.Array, alpha: jax.Array) -> Any:
        """Shared encoder: (0.5·(L_Q1 + L_Q2) + L_π, (L_Q, mean Q, L_π, (entropy, π, log π)))."""
        net = self.nets["shared"]

        def heads(p: Any, h: jax.Array) -> jax.Array:
            return net.apply(p, h, method=lambda module, x: module.head(x))

        def critic(p: Any, h: jax.Array) -> jax.Array:  # the Q heads alone: [..., 2, A]
            return net.apply(p, h, method=lambda module, x: module.head.critic_only(x))

        def with_critic(p: Any, critic: Any) -> Any:
            return {"params": {**p["params"], "head": {**p["params"]["head"], "critic": critic}}}

        hidden = self._sequences(net, params, batch, key, "hidden")  # [B, W+1, H]
        out = heads(params, hidden)
        q, logits = out[..., :2, :], out[..., 2, :]
        next_q = critic(with_critic(params, target_critic), jax.lax.stop_gradient(hidden[:, 1:]))
        target = self._target(batch, next_q, jax.lax.stop_gradient(logits[:, 1:]), alpha)
        critic_loss, q_mean = self._critic_loss(q[:, :-1], batch, target)
        if self.cfg["sacd"]["freeze_critic"]:  # Q through a frozen copy of the heads, on detached states
            q_actor = critic(jax.lax.stop_gradient(params), jax.lax.stop_gradient(hidden[:, :-1]))
        else:
            q_actor = q[:, :-1]
        a_loss, aux = self._actor_loss(logits[:, :-1], q_actor, batch, alpha)
        return 0.5 * critic_loss + a_loss, (critic_loss, q_mean, a_loss, aux)

    def _update_shared(self, state: SACDState, batch: Episode, key: jax.Array) -> Any:
        alpha = jnp.exp(state.log_alpha)
        loss_fn = lambda p: self.shared_loss(p, state.target_params, batch, key, alpha)  # noqa: E731
        (_, (loss, q_mean, a_loss, (entropy, probs, log_probs))), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = self.critic_optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        log_alpha, alpha_opt = self._alpha_step(state, probs, log_probs, batch.valid.astype(jnp.float32))
        target = self._polyak(state.target_params, params["params"]["head"]["critic"])
        metrics = {
            "loss": loss,
            "q_mean": q_mean,
            "actor_loss": a_loss,
            "entropy": entropy,
            "alpha": alpha,
            "grad_norm": optax.tree.norm(grads),
        }
        return SACDState(params, target, opt_state, log_alpha, alpha_opt), metrics


__all__ = ["SACD", "SACDState", "TwinQHead", "ActorCriticHeads"]
