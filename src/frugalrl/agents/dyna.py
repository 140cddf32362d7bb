"""Dyna-style DQN (Young et al. 2023): the Q-network learns only from transitions a model imagines.

Every update samples ``replay/batch_size`` real transitions. A learned model takes one optimizer
step on them; then, from each sampled observation, a rollout of ``model/rollout_length`` steps under
the current Q's exploring policy imagines batch_size x rollout_length transitions, and Q takes one
step on their weighted TD loss. Real data reaches Q only through the rollouts' start states and the
model's training: model data replaces replayed data, it is not mixed in (DESIGN principle 3: a data
source for the value agent, inside the same loop as every other DQN).

Models (``model/kind``):

- ``perfect``: the env's own dynamics (``step_env``, no auto-reset) from the state decoded from each
  stored observation; a transition after the rollout's first terminal has weight 0; the target
  ``r + gamma (1 - terminal) max Q_target(s')``.
- ``observation`` (the paper's "simple model"): three MLPs on (observation, one-hot action) for the
  reward (mean of a unit-variance Gaussian), the continuation (logit of P(not terminal)) and the
  next observation (a Bernoulli logit per bit). Imagined targets use soft termination,
  ``r + gamma c max Q_target(o')``, and each rollout step is weighted by the product of the earlier
  steps' continuation probabilities (1 in continuing tasks).
- ``latent``: an encoder q(z|o), a transition p(z'|z, a), reward and continuation heads on (z, a) and
  a decoder p(o|z); categorical latents (one-hot samples with straight-through gradients) or
  Gaussian ones; KL balancing between q(z'|o') and p(z'|z, a). Rollouts run in latent space and Q
  reads sampled latents, in the env as in imagination.

Rollouts act with the agent's exploring policy (softmax on Q / temperature, or epsilon-greedy at
``agent/epsilon_end``), as the original's rollouts act with its ``exploration_strat``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from frugalrl.agents.dqn import DQN, DQNState
from frugalrl.agents.losses import LossInputs
from frugalrl.agents.optim import make_optimizer
from frugalrl.envs import EnvSpec
from frugalrl.nets import MLP
from frugalrl.replay.fifo import Batch

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
MIN_STD = 1e-6


class DynaState(NamedTuple):
    params: Any  # Q
    target_params: Any
    opt_state: Any
    model_params: Any  # () for the perfect model
    model_opt_state: Any


def gaussian_nll(x: jax.Array, mean: jax.Array) -> jax.Array:
    """-log N(x; mean, 1), elementwise."""
    return 0.5 * (x - mean) ** 2 + HALF_LOG_2PI


def sample_bits(key: jax.Array, logits: jax.Array, with_logit: bool) -> jax.Array:
    """Bernoulli(sigmoid(logit)) samples, or the original's Bernoulli(p = logit) when ``with_logit``."""
    probability = jnp.clip(logits, 0.0, 1.0) if with_logit else jax.nn.sigmoid(logits)
    return (jax.random.uniform(key, logits.shape) < probability).astype(jnp.float32)


# -- networks -----------------------------------------------------------------------------------


class ObservationModel(nn.Module):
    """Reward mean, continuation logit and next-observation outputs of (observation, one-hot action)."""

    hidden: Sequence[int]
    activation: str
    obs_size: int
    weight_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, obs: jax.Array, action_one_hot: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = jnp.concatenate([obs.astype(jnp.float32), action_one_hot], axis=-1)
        make = lambda out, name: MLP(self.hidden, out, self.activation, self.weight_init, name=name)
        reward = make(1, "reward")(x)[..., 0]
        continuation = make(1, "continuation")(x)[..., 0]
        next_obs = make(self.obs_size, "next_observation")(x)
        return reward, continuation, next_obs


class LatentModel(nn.Module):
    """Encoder, transition, reward and continuation heads, and decoder of a latent-space model."""

    hidden: Sequence[int]
    activation: str
    obs_size: int
    latent_outputs: int  # raw outputs of a latent distribution: logits, or mean and std
    weight_init: str = "lecun_normal"

    def setup(self) -> None:
        make = lambda out, name: MLP(self.hidden, out, self.activation, self.weight_init, name=name)
        self.encoder = make(self.latent_outputs, "encoder")
        self.transition = make(self.latent_outputs, "transition")
        self.reward = make(1, "reward")
        self.continuation = make(1, "continuation")
        self.decoder = make(self.obs_size, "decoder")

    def encode(self, obs: jax.Array) -> jax.Array:
        return self.encoder(obs.astype(jnp.float32))

    def predict(self, latent: jax.Array, action_one_hot: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(prior outputs of the next latent, reward mean, continuation logit)."""
        x = jnp.concatenate([latent, action_one_hot], axis=-1)
        return self.transition(x), self.reward(x)[..., 0], self.continuation(x)[..., 0]

    def decode(self, latent: jax.Array) -> jax.Array:
        return self.decoder(latent)

    def __call__(self, obs: jax.Array, latent: jax.Array, action_one_hot: jax.Array) -> tuple[jax.Array, ...]:
        return (self.encode(obs), *self.predict(latent, action_one_hot), self.decode(latent))


@dataclass(frozen=True)
class CategoricalLatent:
    """``variables`` categorical variables of ``classes`` classes; samples are flattened one-hots."""

    variables: int
    classes: int

    @property
    def outputs(self) -> int:
        return self.variables * self.classes

    @property
    def size(self) -> int:
        return self.variables * self.classes

    def log_probs(self, outputs: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(outputs.reshape(outputs.shape[:-1] + (self.variables, self.classes)), axis=-1)

    def sample(self, outputs: jax.Array, key: jax.Array, posterior: bool = False) -> jax.Array:
        """A one-hot sample with straight-through gradients: probs + sg(one_hot - probs).

        Drawn by inverting each variable's CDF with one uniform number: Gumbel-max would draw one per
        class, and on CPU the random bits of 32 x 32 latents per rollout step dominated the update.
        """
        probs = jnp.exp(self.log_probs(outputs))
        uniform = jax.random.uniform(key, probs.shape[:-1] + (1,))
        index = jnp.minimum(jnp.sum(jnp.cumsum(probs, axis=-1) < uniform, axis=-1), self.classes - 1)
        one_hot = jax.nn.one_hot(index, self.classes)
        return (probs + jax.lax.stop_gradient(one_hot - probs)).reshape(outputs.shape[:-1] + (self.size,))

    def kl(self, p_outputs: jax.Array, q_outputs: jax.Array, p_posterior: bool = False) -> jax.Array:
        """KL(p || q), summed over variables."""
        log_p, log_q = self.log_probs(p_outputs), self.log_probs(q_outputs)
        return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=(-2, -1))

    def kl_to_base(self, outputs: jax.Array) -> jax.Array:
        """KL(p || uniform)."""
        log_p = self.log_probs(outputs)
        return jnp.sum(jnp.exp(log_p) * (log_p + math.log(self.classes)), axis=(-2, -1))


@dataclass(frozen=True)
class GaussianLatent:
    """``variables`` independent Gaussians; std = activation(raw), at least 1e-6, plus ``min_std`` for
    the encoder's posterior."""

    variables: int
    std_activation: str
    min_std: float

    @property
    def outputs(self) -> int:
        return 2 * self.variables

    @property
    def size(self) -> int:
        return self.variables

    def moments(self, outputs: jax.Array, posterior: bool) -> tuple[jax.Array, jax.Array]:
        mean, raw = jnp.split(outputs, 2, axis=-1)
        std = 2.0 * jax.nn.sigmoid(raw / 2.0) if self.std_activation == "sigmoid2" else jax.nn.softplus(raw)
        std = jnp.maximum(std, MIN_STD)
        return mean, std + self.min_std if posterior else std

    def sample(self, outputs: jax.Array, key: jax.Array, posterior: bool = False) -> jax.Array:
        mean, std = self.moments(outputs, posterior)
        return mean + std * jax.random.normal(key, mean.shape)

    def kl(self, p_outputs: jax.Array, q_outputs: jax.Array, p_posterior: bool = False) -> jax.Array:
        """KL(p || q) where p is a posterior when ``p_posterior`` and q is the prior; summed over dimensions."""
        mean_p, std_p = self.moments(p_outputs, p_posterior)
        mean_q, std_q = self.moments(q_outputs, False)
        return jnp.sum(jnp.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / (2.0 * std_q**2) - 0.5, axis=-1)

    def kl_to_base(self, outputs: jax.Array) -> jax.Array:
        """KL(posterior || N(0, I))."""
        mean, std = self.moments(outputs, True)
        return jnp.sum(-jnp.log(std) + (std**2 + mean**2) / 2.0 - 0.5, axis=-1)


# -- the agent ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynaDQN:
    """A DQN whose TD batches are model rollouts; ``model/kind`` picks the model."""

    spec: EnvSpec
    cfg: dict[str, Any]

    def __post_init__(self) -> None:
        mcfg = self.cfg["model"]
        kind = mcfg["kind"]
        obs_size = math.prod(self.spec.obs_shape)
        init = self.cfg["network"]["init"]  # the model's networks are initialised as the Q-network
        q_spec = self.spec
        if kind == "latent":
            if mcfg["latent"] == "categorical":
                latent: Any = CategoricalLatent(mcfg["latent_variables"], mcfg["latent_classes"])
            else:
                latent = GaussianLatent(mcfg["latent_variables"], mcfg["std_activation"], mcfg["min_std"])
            object.__setattr__(self, "latent", latent)
            model = LatentModel(tuple(mcfg["hidden"]), mcfg["activation"], obs_size, latent.outputs, init)
            object.__setattr__(self, "model", model)
            q_spec = dataclasses.replace(self.spec, obs_shape=(latent.size,))
        elif kind == "observation":
            model = ObservationModel(tuple(mcfg["hidden"]), mcfg["activation"], obs_size, init)
            object.__setattr__(self, "model", model)
        elif kind == "perfect":
            from frugalrl.envs import make

            env, env_params, _ = make(self.cfg["env"])
            if not hasattr(env, "state_from_observation"):
                raise ValueError(
                    f"'model/kind': 'perfect' needs an environment whose observations decode to its state "
                    f"(state_from_observation): ProcMaze, ButtonGrid, PanFlute or OpenGrid, not {self.spec.name}"
                )
            object.__setattr__(self, "env", env)
            object.__setattr__(self, "env_params", env_params)
        else:
            raise ValueError(f"DynaDQN needs a model, got 'model/kind': '{kind}'")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "q_agent", DQN(q_spec, self.cfg))
        object.__setattr__(self, "q", self.q_agent.q)
        object.__setattr__(self, "model_optimizer", make_optimizer({**self.cfg["optimizer"], "lr": mcfg["lr"]}))

    # -- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> DynaState:
        q_key, model_key = jax.random.split(key)
        q_state = self.q_agent.init(q_key)
        if self.kind == "perfect":
            return DynaState(*q_state, (), ())
        obs = jnp.zeros((math.prod(self.spec.obs_shape),), jnp.float32)
        action = jnp.zeros((self.spec.num_actions,), jnp.float32)
        if self.kind == "observation":
            model_params = self.model.init(model_key, obs, action)
        else:
            model_params = self.model.init(model_key, obs, jnp.zeros((self.latent.size,), jnp.float32), action)
        return DynaState(*q_state, model_params, self.model_optimizer.init(model_params))

    @staticmethod
    def q_view(state: DynaState) -> DQNState:
        return DQNState(state.params, state.target_params, state.opt_state)

    def sync_target(self, state: DynaState) -> DynaState:
        return self.q_agent.sync_target(state)

    def epsilon(self, step: jax.Array) -> jax.Array:
        return self.q_agent.epsilon(step)

    # -- acting ------------------------------------------------------------------------------
    def flat(self, obs: jax.Array) -> jax.Array:
        return obs.reshape(obs.shape[: obs.ndim - len(self.spec.obs_shape)] + (-1,)).astype(jnp.float32)

    def q_input(self, state: DynaState, obs: jax.Array, key: jax.Array) -> jax.Array:
        """What Q reads: the observation, or a latent sampled from the encoder."""
        if self.kind != "latent":
            return obs
        outputs = self.model.apply(state.model_params, self.flat(obs), method=LatentModel.encode)
        return self.latent.sample(outputs, key, posterior=True)

    def act(self, state: DynaState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        latent_key, key = jax.random.split(key)
        return self.q_agent.act(self.q_view(state), self.q_input(state, obs, latent_key), key, epsilon)

    def evaluation_act(self, state: DynaState, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        latent_key, key = jax.random.split(key)
        return self.q_agent.evaluation_act(self.q_view(state), self.q_input(state, obs, latent_key), key, epsilon)

    def rollout_action(self, params: Any, q_input: jax.Array, key: jax.Array) -> jax.Array:
        epsilon = 0.0 if self.cfg["agent"]["exploration"] == "softmax" else self.cfg["agent"]["epsilon_end"]
        return self.q_agent.policy_action(self.q.apply(params, q_input), key, jnp.float32(epsilon))

    # -- model learning ----------------------------------------------------------------------
    def observation_model_loss(
        self, params: Any, batch: Batch, terminal: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Reward and continuation NLLs, plus the next observation's NLL on non-terminal steps; batch mean."""
        mcfg = self.cfg["model"]
        action = jax.nn.one_hot(batch.action, self.spec.num_actions)
        reward, continuation, next_out = self.model.apply(params, self.flat(batch.obs), action)
        next_obs = self.flat(batch.next_obs)
        reward_nll = gaussian_nll(batch.reward, reward)
        continuation_nll = optax.sigmoid_binary_cross_entropy(continuation, 1.0 - terminal)
        if mcfg["binary_observations"]:
            obs_nll = jnp.sum(optax.sigmoid_binary_cross_entropy(next_out, next_obs), axis=-1)
        else:
            obs_nll = jnp.sum(gaussian_nll(next_obs, next_out), axis=-1)
        obs_nll = jnp.where(terminal > 0, 0.0, obs_nll)  # nothing to predict after the end
        loss = jnp.mean(
            mcfg["reward_weight"] * reward_nll
            + mcfg["termination_weight"] * continuation_nll
            + mcfg["observation_weight"] * obs_nll
        )
        return loss, {
            "model_loss": loss,
            "reward_nll": reward_nll.mean(),
            "continuation_nll": continuation_nll.mean(),
            "observation_nll": obs_nll.mean(),
        }

    def latent_model_loss(
        self, params: Any, batch: Batch, terminal: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Reconstruction of the current observation, reward and continuation NLLs from (z, a), and KL
        balancing between the next observation's posterior and the transition's prior; batch mean.

        The KL terms are dropped on terminal steps as the reconstruction is, unless
        ``train/stale_obs_after_terminal`` is on: without the quirk our replay holds the next episode's
        first observation after a terminal step, where the original held the terminal step's own (as
        the quirk's replay does). Rollouts give the steps after a predicted terminal no weight.
        """
        mcfg, latent = self.cfg["model"], self.latent
        obs, next_obs = self.flat(batch.obs), self.flat(batch.next_obs)
        action = jax.nn.one_hot(batch.action, self.spec.num_actions)
        apply = lambda method, *args: self.model.apply(params, *args, method=method)
        posterior = apply(LatentModel.encode, obs)
        z = latent.sample(posterior, key, posterior=True)
        prior, reward, continuation = apply(LatentModel.predict, z, action)
        next_posterior = apply(LatentModel.encode, next_obs)
        recon = apply(LatentModel.decode, z)
        if mcfg["binary_observations"]:
            recon_nll = jnp.sum(optax.sigmoid_binary_cross_entropy(recon, obs), axis=-1)
        else:
            recon_nll = jnp.sum(gaussian_nll(obs, recon), axis=-1)
        alive = 1.0 - terminal
        recon_nll = alive * recon_nll
        reward_nll = gaussian_nll(batch.reward, reward)
        continuation_nll = optax.sigmoid_binary_cross_entropy(continuation, alive)
        sg = jax.lax.stop_gradient
        kl_mask = 1.0 if self.cfg["train"]["stale_obs_after_terminal"] else alive
        kl_prior = kl_mask * latent.kl(sg(next_posterior), prior, p_posterior=True)  # moves the prior
        kl_posterior = kl_mask * latent.kl(next_posterior, sg(prior), p_posterior=True)  # moves the posterior
        entropy = latent.kl_to_base(posterior)
        loss = jnp.mean(
            mcfg["kl_prior_weight"] * kl_prior
            + mcfg["kl_posterior_weight"] * kl_posterior
            + mcfg["posterior_entropy_weight"] * entropy
            + mcfg["reward_weight"] * reward_nll
            + mcfg["termination_weight"] * continuation_nll
            + mcfg["observation_weight"] * recon_nll
        )
        return loss, {
            "model_loss": loss,
            "reward_nll": reward_nll.mean(),
            "continuation_nll": continuation_nll.mean(),
            "observation_nll": recon_nll.mean(),
            "kl": kl_prior.mean(),
        }

    # -- rollouts ----------------------------------------------------------------------------
    def rollouts(self, q_params: Any, model_params: Any, start_obs: jax.Array, key: jax.Array) -> tuple[Batch, Any]:
        """Imagined transitions [rollout_length * starts] from ``start_obs`` [starts, ...], and their weights."""
        length, gamma = self.cfg["model"]["rollout_length"], self.cfg["agent"]["gamma"]
        continuing = self.spec.continuing
        start_key, key = jax.random.split(key)
        step_keys = jax.random.split(key, length)
        one_hot = lambda action: jax.nn.one_hot(action, self.spec.num_actions)

        if self.kind == "perfect":
            env, env_params = self.env, self.env_params
            env_step = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
            starts = jax.vmap(env.state_from_observation)(self.flat(start_obs))

            def perfect_step(carry: tuple[Any, jax.Array], key: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
                state, alive = carry
                act_key, env_key = jax.random.split(key)
                obs = jax.vmap(env.observation)(state)
                action = self.rollout_action(q_params, obs, act_key)
                env_keys = jax.random.split(env_key, action.shape[0])
                next_obs, state, reward, terminated, _ = env_step(env_keys, state, action, env_params)
                out = (obs, action, reward, gamma * (1.0 - terminated), next_obs, alive.astype(jnp.float32))
                return (state, alive & ~terminated), out

            alive = jnp.ones(start_obs.shape[0], bool)
            _, steps = jax.lax.scan(perfect_step, (starts, alive), step_keys)

        else:
            if self.kind == "latent":
                posterior = self.model.apply(model_params, self.flat(start_obs), method=LatentModel.encode)
                first = self.latent.sample(posterior, start_key, posterior=True)
            else:
                first = self.flat(start_obs)
            with_logit = self.cfg["model"]["sample_with_logit"]
            binary = self.cfg["model"]["binary_observations"]

            def learned_step(carry: tuple[jax.Array, ...], key: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
                x, previous_continuation, weight = carry
                weight = jnp.ones_like(weight) if continuing else weight * previous_continuation
                act_key, next_key = jax.random.split(key)
                action = self.rollout_action(q_params, x, act_key)
                if self.kind == "latent":
                    prior, reward, logit = self.model.apply(
                        model_params, x, one_hot(action), method=LatentModel.predict
                    )
                    next_x = self.latent.sample(prior, next_key)
                else:
                    reward, logit, next_out = self.model.apply(model_params, x, one_hot(action))
                    if binary:
                        next_x = sample_bits(next_key, next_out, with_logit)
                    else:
                        next_x = next_out + jax.random.normal(next_key, next_out.shape)
                continuation = jax.nn.sigmoid(logit)
                out = (x, action, reward, gamma * continuation, next_x, weight)
                return (next_x, continuation, weight), out

            ones = jnp.ones(start_obs.shape[0], jnp.float32)
            _, steps = jax.lax.scan(learned_step, (first, ones, ones), step_keys)

        steps = jax.lax.stop_gradient(steps)
        obs, action, reward, discount, next_obs, weight = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), steps)
        return Batch(obs, action.astype(jnp.int32), reward, discount, next_obs), weight

    # -- learning ----------------------------------------------------------------------------
    def td_target(self, state: DynaState, batch: Batch) -> None:
        """None: the TD batch is imagined inside ``update``, after the model's step."""
        return None

    def update(
        self,
        state: DynaState,
        batch: Batch,
        key: jax.Array,
        target: jax.Array | None = None,
        inputs: LossInputs | None = None,
    ) -> tuple[DynaState, dict[str, jax.Array]]:
        """One model step on the real ``batch`` (learned models), rollouts from its observations with
        the updated model, then one Q step on the rollouts' weighted TD loss."""
        model_key, rollout_key, q_key = jax.random.split(key, 3)
        model_params, model_opt_state, model_metrics = state.model_params, state.model_opt_state, {}
        if self.kind != "perfect":
            terminal = (batch.discount == 0.0).astype(jnp.float32)
            loss_fn = self.latent_model_loss if self.kind == "latent" else self.observation_model_loss
            grads, model_metrics = jax.grad(loss_fn, has_aux=True)(model_params, batch, terminal, model_key)
            updates, model_opt_state = self.model_optimizer.update(grads, model_opt_state, model_params)
            model_params = optax.apply_updates(model_params, updates)
        imagined, weights = self.rollouts(state.params, model_params, batch.obs, rollout_key)
        q_state, metrics = self.q_agent.update(self.q_view(state), imagined, q_key, None, LossInputs(weights))
        metrics.pop("td_per_example", None)
        metrics = {**metrics, **model_metrics, "rollout_weight": weights.mean()}
        if model_metrics:
            metrics["loss"] = metrics["loss"] + model_metrics["model_loss"]  # a NaN in either stops the run
        return DynaState(q_state.params, q_state.target_params, q_state.opt_state, model_params, model_opt_state), (
            metrics
        )
