"""Dyna DQN (agents/dyna.py): the models' losses, the rollouts' weights and targets, the Q step on
imagined data only, the original's optimizer and quirks, and runs that resume exactly."""

from __future__ import annotations

import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from gymnax.environments import environment, spaces

from frugalrl import envs
from frugalrl.agents import DynaDQN, make_agent
from frugalrl.agents.dyna import CategoricalLatent, GaussianLatent, LatentModel, sample_bits
from frugalrl.agents.optim import make_optimizer
from frugalrl.config import ConfigError, resolve
from frugalrl.envs.model_generalization import ProcMazeState
from frugalrl.replay.fifo import Batch
from frugalrl.train.run import run

GAMMA = 0.9


def dyna_cfg(kind: str, env: str = "ProcMaze-4", **model: object) -> dict:
    return resolve(
        {
            "env": {"name": env},
            "num_seeds": 2,
            "total_steps": 1200,
            "agent": {
                "name": "dqn",
                "gamma": GAMMA,
                "exploration": "softmax",
                "softmax_temperature": 0.5,
                "epsilon_start": 0.0,
                "epsilon_end": 0.0,
                "target_every": 20,
            },
            "network": {"hidden": [16], "activation": "elu"},
            "optimizer": {"name": "adamw_unscaled", "lr": 1e-3, "b2": 0.99, "eps": 1e-5, "weight_decay": 1e-6},
            "replay": {"capacity": 2000, "batch_size": 8},
            "train": {"learning_starts": 600, "train_every": 1, "gradient_steps": 1},
            "model": {"kind": kind, "hidden": [16], "rollout_length": 4, **model},
            "eval": {"every": 300, "episodes": 4, "max_episode_steps": 30},
            "checkpoint": {"every": 300, "keep": 10},
            "seed": 3,
        }
    )


def agent_of(cfg: dict) -> DynaDQN:
    _, _, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    assert isinstance(agent, DynaDQN)
    return agent


def real_batch(cfg: dict, n: int = 8, key: int = 0) -> Batch:
    """Transitions of a random policy in the config's env, with a terminal among them."""
    env, params, spec = envs.make(cfg["env"])
    keys = jax.random.split(jax.random.PRNGKey(key), n)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    action = jax.random.randint(jax.random.PRNGKey(key + 1), (n,), 0, spec.num_actions)
    next_obs, _, reward, terminated, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(keys, state, action, params)
    terminated = terminated.at[0].set(True)
    discount = jnp.where(terminated, 0.0, GAMMA)
    return Batch(obs.astype(jnp.uint8), action, reward, discount, next_obs.astype(jnp.uint8))


def test_adamw_unscaled_decays_without_the_learning_rate() -> None:
    """x <- x - lr m_hat / (sqrt(v_hat) + eps) - wd x, as the original's optimizers.py."""
    lr, wd, b1, b2, eps = 0.1, 0.01, 0.9, 0.99, 1e-5
    opt = make_optimizer(
        {"name": "adamw_unscaled", "lr": lr, "b1": b1, "b2": b2, "eps": eps, "weight_decay": wd, "max_grad_norm": -1}
    )
    x = jnp.array([1.0, -2.0])
    state = opt.init(x)
    m = v = np.zeros(2)
    expected = np.array([1.0, -2.0])
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.2, 0.3])], start=1):
        updates, state = opt.update(jnp.asarray(g), state, x)
        x = optax.apply_updates(x, updates)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        expected = expected - lr * m_hat / (np.sqrt(v_hat) + eps) - wd * expected
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-6)


def test_softmax_exploration_draws_in_proportion_to_exp_q_over_temperature() -> None:
    cfg = dyna_cfg("perfect")
    agent = agent_of(cfg).q_agent
    q = jnp.array([1.0, 0.5, 0.0, -1.0, 0.2])
    keys = jax.random.split(jax.random.PRNGKey(0), 40_000)
    actions = jax.vmap(lambda k: agent.policy_action(q, k, jnp.float32(0.0)))(keys)
    freq = np.bincount(np.asarray(actions), minlength=5) / actions.shape[0]
    np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(q / 0.5)), atol=0.01)
    # evaluation is greedy
    state = agent.init(jax.random.PRNGKey(1))
    obs = jnp.ones(agent.spec.obs_shape)
    greedy = jnp.argmax(agent.q.apply(state.params, obs))
    evals = jax.vmap(lambda k: agent.evaluation_act(state, obs, k, jnp.float32(0.0)))(keys[:200])
    assert (evals == greedy).all()


def test_perfect_model_rollouts_follow_the_env_and_stop_weighting_after_the_first_terminal() -> None:
    cfg = dyna_cfg("perfect", rollout_length=6)
    agent = agent_of(cfg)
    env = agent.env
    wall = jnp.zeros((4, 4), bool)
    # standing on the goal: the first step is terminal
    on_goal = ProcMazeState(wall=wall, pos=jnp.array([1, 1]), goal=jnp.array([1, 1]), time=jnp.int32(0))
    away = ProcMazeState(wall=wall, pos=jnp.array([3, 3]), goal=jnp.array([0, 0]), time=jnp.int32(0))
    starts = jnp.stack([env.observation(on_goal), env.observation(away)]).astype(jnp.uint8)
    state = agent.init(jax.random.PRNGKey(0))
    batch, weight = jax.jit(agent.rollouts)(state.params, (), starts, jax.random.PRNGKey(1))
    steps = lambda x: np.asarray(x).reshape((6, 2) + np.asarray(x).shape[1:])  # [time, start, ...]
    obs, next_obs, discount, w = steps(batch.obs), steps(batch.next_obs), steps(batch.discount), steps(weight)
    np.testing.assert_array_equal(obs[1:], next_obs[:-1])  # one trajectory per start
    np.testing.assert_array_equal(obs[0], np.asarray(starts, np.float32))
    assert w[:, 0].tolist() == [1, 0, 0, 0, 0, 0] and discount[0, 0] == 0.0  # the terminal step keeps weight 1
    assert (steps(batch.reward) == -1.0).all()
    # from (3, 3) the goal at (0, 0) is 6 moves away (teleports aside): no terminal in 6 steps unless teleported
    teleported = [env.state_from_observation(jnp.asarray(o)).pos.tolist() == [0, 0] for o in obs[:, 1]]
    if not any(teleported):
        assert (w[:, 1] == 1).all() and np.allclose(discount[:, 1], GAMMA)


def test_observation_model_loss_matches_its_definition() -> None:
    cfg = dyna_cfg("observation", reward_weight=0.5, termination_weight=2.0, observation_weight=0.25)
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    batch = real_batch(cfg)
    terminal = (batch.discount == 0).astype(jnp.float32)
    loss, metrics = agent.observation_model_loss(state.model_params, batch, terminal, jax.random.PRNGKey(2))
    action = jax.nn.one_hot(batch.action, 5)
    reward, logit, next_logits = (
        np.asarray(x, np.float64) for x in agent.model.apply(state.model_params, batch.obs.astype(float), action)
    )
    sig = lambda x: 1 / (1 + np.exp(-x))
    r, t = np.asarray(batch.reward, np.float64), np.asarray(terminal, np.float64)
    o = np.asarray(batch.next_obs, np.float64)
    reward_nll = 0.5 * (r - reward) ** 2 + 0.5 * np.log(2 * np.pi)
    cont_nll = -((1 - t) * np.log(sig(logit)) + t * np.log(1 - sig(logit)))
    obs_nll = -np.sum(o * np.log(sig(next_logits)) + (1 - o) * np.log(1 - sig(next_logits)), axis=-1)
    expected = np.mean(0.5 * reward_nll + 2.0 * cont_nll + 0.25 * (1 - t) * obs_nll)
    assert t[0] == 1 and t.sum() < len(t)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["observation_nll"]), np.mean((1 - t) * obs_nll), rtol=1e-5)


@pytest.mark.parametrize(
    "env_name,kind", [("ProcMaze-4", "observation"), ("PanFlute-5", "observation"), ("ProcMaze-4", "latent")]
)
def test_learned_model_rollouts_use_soft_termination(env_name: str, kind: str) -> None:
    """Weights are the products of the earlier steps' continuation probabilities (1 in continuing
    tasks), discounts gamma * c, rewards the model's means; latent rollouts start from a posterior
    sample of the observation and stay in latent space."""
    cfg = dyna_cfg(kind, env=env_name, rollout_length=5, latent_variables=4, latent_classes=3)
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(4))
    batch = real_batch(cfg, n=3)
    key = jax.random.PRNGKey(5)
    imagined, weight = jax.jit(agent.rollouts)(state.params, state.model_params, batch.obs, key)
    steps = lambda x: np.asarray(x).reshape((5, 3) + np.asarray(x).shape[1:])
    obs, action, next_obs = steps(imagined.obs), steps(imagined.action), steps(imagined.next_obs)
    np.testing.assert_array_equal(obs[1:], next_obs[:-1])
    assert set(np.unique(next_obs)) <= {0.0, 1.0}
    if kind == "latent":
        assert obs.shape[-1] == 12 and (obs.reshape(5, 3, 4, 3).sum(-1) == 1).all()  # one-hot latents
        posterior = agent.model.apply(state.model_params, batch.obs.astype(jnp.float32), method=LatentModel.encode)
        first = agent.latent.sample(posterior, jax.random.split(key)[0], posterior=True)
        np.testing.assert_array_equal(obs[0], np.asarray(first))
        reward, logit = agent.model.apply(
            state.model_params, jnp.asarray(obs), jax.nn.one_hot(action, 5), method=LatentModel.predict
        )[1:]
    else:
        reward, logit, _ = agent.model.apply(state.model_params, jnp.asarray(obs), jax.nn.one_hot(action, 5))
    continuation = 1 / (1 + np.exp(-np.asarray(logit, np.float64)))
    np.testing.assert_allclose(steps(imagined.reward), np.asarray(reward), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(steps(imagined.discount), GAMMA * continuation, rtol=1e-5)
    if env_name == "PanFlute-5":
        assert (steps(weight) == 1.0).all()
    else:
        expected = np.concatenate([np.ones((1, 3)), np.cumprod(continuation[:-1], axis=0)])
        np.testing.assert_allclose(steps(weight), expected, rtol=1e-5)


def test_the_q_step_learns_from_rollouts_only() -> None:
    """The TD loss of an update is the weighted loss on the rollouts from the batch's observations,
    whatever the batch's own rewards and next observations say."""
    cfg = dyna_cfg("perfect")
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    state = state._replace(target_params=jax.tree.map(lambda x: x * 0.5, state.params))
    batch = real_batch(cfg)
    key = jax.random.PRNGKey(7)
    _, rollout_key, _ = jax.random.split(key, 3)
    imagined, weight = jax.jit(agent.rollouts)(state.params, (), batch.obs, rollout_key)
    q = agent.q.apply(state.params, imagined.obs)[jnp.arange(imagined.action.shape[0]), imagined.action]
    target = imagined.reward + imagined.discount * agent.q.apply(state.target_params, imagined.next_obs).max(-1)
    expected = float(jnp.mean(weight * (q - target) ** 2))
    garbled = batch._replace(reward=batch.reward + 100.0, next_obs=1 - batch.next_obs)
    for real in (batch, garbled):
        new_state, metrics = jax.jit(agent.update)(state, real, key)
        np.testing.assert_allclose(float(metrics["td_loss"]), expected, rtol=1e-5)
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new_state.params, state.params))


@pytest.mark.parametrize("kind", ["observation", "latent"])
def test_learned_models_step_before_the_rollouts_they_feed(kind: str) -> None:
    """Update order: one model step on the real batch, then rollouts with the updated model and the
    current Q, then the Q step on their weighted TD loss."""
    cfg = dyna_cfg(kind, latent_variables=4, latent_classes=3)
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    batch = real_batch(cfg)
    key = jax.random.PRNGKey(9)
    model_key, rollout_key, _ = jax.random.split(key, 3)
    terminal = (batch.discount == 0).astype(jnp.float32)
    loss_fn = agent.latent_model_loss if kind == "latent" else agent.observation_model_loss
    grads = jax.grad(lambda p: loss_fn(p, batch, terminal, model_key)[0])(state.model_params)
    updates, _ = agent.model_optimizer.update(grads, state.model_opt_state, state.model_params)
    stepped = optax.apply_updates(state.model_params, updates)

    def td_loss(model_params):
        imagined, weight = jax.jit(agent.rollouts)(state.params, model_params, batch.obs, rollout_key)
        q = agent.q.apply(state.params, imagined.obs)[jnp.arange(imagined.action.shape[0]), imagined.action]
        target = imagined.reward + imagined.discount * agent.q.apply(state.target_params, imagined.next_obs).max(-1)
        return float(jnp.mean(weight * (q - target) ** 2))

    new_state, metrics = jax.jit(agent.update)(state, batch, key)
    np.testing.assert_allclose(float(metrics["td_loss"]), td_loss(stepped), rtol=1e-4)
    assert abs(td_loss(stepped) - td_loss(state.model_params)) > 1e-6  # the order is visible
    leaves = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b)), new_state.model_params, stepped))
    assert all(leaves)


def test_latent_model_reconstructs_the_current_observation() -> None:
    cfg = dyna_cfg(
        "latent",
        latent_variables=4,
        latent_classes=3,
        reward_weight=0.0,
        termination_weight=0.0,
        kl_prior_weight=0.0,
        kl_posterior_weight=0.0,
    )
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    batch = real_batch(cfg)
    terminal = (batch.discount == 0).astype(jnp.float32)
    key = jax.random.PRNGKey(3)
    loss, _ = agent.latent_model_loss(state.model_params, batch, terminal, key)
    obs = batch.obs.astype(jnp.float32)
    z = agent.latent.sample(agent.model.apply(state.model_params, obs, method=LatentModel.encode), key, posterior=True)
    logits = np.asarray(agent.model.apply(state.model_params, z, method=LatentModel.decode), np.float64)
    o = np.asarray(obs, np.float64)
    nll = -np.sum(o * np.log(1 / (1 + np.exp(-logits))) + (1 - o) * np.log(1 - 1 / (1 + np.exp(-logits))), -1)
    np.testing.assert_allclose(float(loss), np.mean((1 - np.asarray(terminal)) * nll), rtol=1e-5)


def test_shipped_configs_hold_the_readme_tuning() -> None:
    """Spot checks of §B7's table: ProcMaze low-data regime, every agent."""
    from frugalrl.cli import load_config

    expected = [  # kind, latent, Q step size, temperature, batch
        ("none", None, 2.5e-5, 1.6, 320),
        ("perfect", None, 4e-4, 0.4, 32),
        ("observation", None, 2.5e-5, 0.4, 32),
        ("latent", "categorical", 1e-4, 0.8, 32),
        ("latent", "gaussian", 3.125e-6, 0.8, 32),
    ]
    for idx, (kind, latent, lr, temperature, batch) in enumerate(expected, start=1):
        cfg = load_config("configs/model_based/procmaze_low.json", idx)
        assert (cfg["model"]["kind"], cfg["optimizer"]["lr"], cfg["replay"]["batch_size"]) == (kind, lr, batch)
        assert cfg["agent"]["softmax_temperature"] == temperature and cfg["num_seeds"] == 30
        assert latent is None or cfg["model"]["latent"] == latent
        assert (cfg["train"]["gradient_steps"], cfg["agent"]["target_every"], cfg["total_steps"]) == (10, 10, 100_000)
        assert cfg["train"]["stale_obs_after_terminal"] == (kind != "perfect")  # the original's buffers
    high = load_config("configs/model_based/buttongrid_high.json", 4)
    assert (high["optimizer"]["lr"], high["agent"]["softmax_temperature"], high["eval"]["per_step"]) == (
        1e-4,
        0.05,
        True,
    )


def test_sampling_bits_with_the_logit_reproduces_the_original_quirk() -> None:
    logits = jnp.array([-1.0, 2.0, 0.3, 0.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    quirk = np.asarray(jax.vmap(lambda k: sample_bits(k, logits, True))(keys)).mean(0)
    fixed = np.asarray(jax.vmap(lambda k: sample_bits(k, logits, False))(keys)).mean(0)
    np.testing.assert_allclose(quirk, [0.0, 1.0, 0.3, 0.0], atol=0.01)
    np.testing.assert_allclose(fixed, np.asarray(jax.nn.sigmoid(logits)), atol=0.01)


def test_latents_straight_through_samples_and_kl() -> None:
    cat = CategoricalLatent(2, 3)
    logits = jnp.array([0.5, -1.0, 2.0, 0.0, 0.0, 0.0])
    z = cat.sample(logits, jax.random.PRNGKey(0))
    assert sorted(np.asarray(z).tolist()) == [0, 0, 0, 0, 1, 1]  # one one-hot per variable
    # the gradient flows through the probabilities
    weights = jnp.arange(6.0)
    grad = jax.grad(lambda x: jnp.sum(weights * cat.sample(x, jax.random.PRNGKey(0))))(logits)
    probs = lambda x: jax.nn.softmax(x.reshape(2, 3), -1).ravel()
    np.testing.assert_allclose(grad, jax.grad(lambda x: jnp.sum(weights * probs(x)))(logits), rtol=1e-5)
    p, q = np.asarray(probs(logits)).reshape(2, 3), np.full((2, 3), 1 / 3)
    np.testing.assert_allclose(float(cat.kl(logits, jnp.zeros(6))), np.sum(p * np.log(p / q)), rtol=1e-5)
    np.testing.assert_allclose(float(cat.kl_to_base(logits)), np.sum(p * np.log(p / q)), rtol=1e-5)
    gauss = GaussianLatent(1, "softplus", 0.0)
    unit_std = np.log(np.e - 1)  # softplus(x) = 1
    outputs = lambda mean: jnp.array([mean, unit_std], jnp.float32)
    np.testing.assert_allclose(float(gauss.kl(outputs(1.0), outputs(0.0))), 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(gauss.kl_to_base(outputs(0.0))), 0.0, atol=1e-6)
    sig2 = GaussianLatent(1, "sigmoid2", 0.1)
    mean, std = sig2.moments(jnp.array([0.0, 0.0]), posterior=True)
    assert float(std[0]) == pytest.approx(1.1)  # 2 sigmoid(0) + min_std


def test_kl_balancing_moves_prior_and_posterior_with_their_own_terms() -> None:
    """KL(sg posterior || prior) trains the transition; KL(posterior || sg prior) trains the encoder."""
    base = dyna_cfg("latent")
    batch = real_batch(base)
    terminal = (batch.discount == 0).astype(jnp.float32)

    def grads(**weights):
        cfg = dyna_cfg("latent", reward_weight=0.0, termination_weight=0.0, observation_weight=0.0, **weights)
        agent = agent_of(cfg)
        state = agent.init(jax.random.PRNGKey(0))
        loss = lambda p: agent.latent_model_loss(p, batch, terminal, jax.random.PRNGKey(1))[0]
        g = jax.jit(jax.grad(loss))(state.model_params)
        return {name: float(optax.tree.norm(sub)) for name, sub in g["params"].items()}

    prior_only = grads(kl_prior_weight=1.0, kl_posterior_weight=0.0)
    posterior_only = grads(kl_prior_weight=0.0, kl_posterior_weight=1.0)
    assert prior_only["transition"] > 0 and prior_only["decoder"] == 0 and prior_only["reward"] == 0
    assert posterior_only["transition"] == 0 and posterior_only["encoder"] > 0


def test_latent_agent_acts_on_sampled_latents() -> None:
    cfg = dyna_cfg("latent", latent_variables=4, latent_classes=3)
    agent = agent_of(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    assert agent.q_agent.spec.obs_shape == (12,)
    kernel = flax.traverse_util.flatten_dict(state.params)[("params", "Dense_0", "kernel")]
    assert kernel.shape[0] == 12  # Q reads the 4 x 3 one-hot latent
    obs = real_batch(cfg).obs[0]
    z = agent.q_input(state, obs, jax.random.PRNGKey(2))
    assert np.asarray(z).reshape(4, 3).sum(-1).tolist() == [1, 1, 1, 1]
    assert 0 <= int(agent.act(state, obs, jax.random.PRNGKey(3), jnp.float32(0.0))) < 5
    encoded = agent.model.apply(state.model_params, obs.astype(jnp.float32), method=LatentModel.encode)
    assert encoded.shape == (12,)


def test_model_configs_are_checked() -> None:
    with pytest.raises(ConfigError, match="model/kind"):
        resolve({"env": {"name": "Pendulum-v1"}, "agent": {"name": "sac", "tau": 0.005}, "model": {"kind": "perfect"}})
    with pytest.raises(ConfigError, match="agent/n_step"):
        resolve({"env": {"name": "ProcMaze-4"}, "agent": {"n_step": 3}, "model": {"kind": "observation"}})
    with pytest.raises(ConfigError, match="stale_obs_after_terminal"):
        resolve(
            {"env": {"name": "ProcMaze-4"}, "train": {"stale_obs_after_terminal": True}, "model": {"kind": "perfect"}}
        )
    with pytest.raises(ValueError, match="state_from_observation"):
        agent_of(resolve({"env": {"name": "CartPole-v1"}, "model": {"kind": "perfect"}}))


def test_per_step_evaluation_reports_the_reward_rate(tmp_path) -> None:
    from frugalrl.train.loop import make_evaluate, seed_keys

    cfg = dyna_cfg("observation", env="PanFlute-5")
    env, params, spec = envs.make(cfg["env"])
    agent = agent_of(cfg)
    states = jax.vmap(agent.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    keys = seed_keys(0, 0, 2)
    totals = make_evaluate(agent, env, params, spec, cfg)(states, keys)
    rates = make_evaluate(agent, env, params, spec, {**cfg, "eval": {**cfg["eval"], "per_step": True}})(states, keys)
    np.testing.assert_allclose(np.asarray(rates) * 30, np.asarray(totals), rtol=1e-6)


def test_dyna_runs_resume_exactly(tmp_path) -> None:
    cfg = dyna_cfg("latent", latent_variables=4, latent_classes=4)
    cfg = {**cfg, "train": {**cfg["train"], "stale_obs_after_terminal": True}}
    run(cfg, tmp_path / "ref", progress=False)
    shutil.copytree(tmp_path / "ref", tmp_path / "b")
    from frugalrl.runs import checkpoint

    for step in checkpoint.complete_steps(tmp_path / "b" / "checkpoints"):
        if step != 900:
            shutil.rmtree(tmp_path / "b" / "checkpoints" / str(step))
    assert run(cfg, tmp_path / "b", progress=False).resumed_from == 900
    for name in ("result_Test.csv", "result_Train.csv", "metrics.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "ref" / name))
    metrics = pd.read_csv(tmp_path / "ref" / "metrics.csv")
    assert {"model_loss", "td_loss", "rollout_weight"} <= set(metrics.columns)


class CountingProbe(environment.Environment):
    """Observation = steps since reset; terminates at 3; resets to 0."""

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=100)

    def reset_env(self, key, params):
        return jnp.zeros(1), environment.EnvState(time=jnp.int32(0))

    def step_env(self, key, state, action, params):
        time = state.time + 1
        return jnp.full(1, time, jnp.float32), environment.EnvState(time=time), jnp.float32(0), time >= 3, {}

    def action_space(self, params=None):
        return spaces.Discrete(2)


@pytest.mark.parametrize("stale", [False, True])
def test_stale_observation_quirk_acts_on_the_terminal_observation(stale: bool) -> None:
    from frugalrl.envs.registry import REGISTRY, register
    from frugalrl.train.loop import init_carry, make_segment, seed_keys

    if "CountingProbe-v0" not in REGISTRY:
        register("CountingProbe-v0", CountingProbe)
    cfg = resolve(
        {
            "env": {"name": "CountingProbe-v0"},
            "num_seeds": 1,
            "train": {"train_every": 1, "stale_obs_after_terminal": stale},
            "replay": {"capacity": 50},
        }
    )
    env, params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    carry = init_carry(agent, env, params, spec, cfg, seed_keys(0, 0, 1))
    carry, _ = jax.jit(make_segment(agent, env, params, spec, cfg, 8, learning="never"))(carry)
    stored = np.asarray(carry.replay.obs[0, :8, 0]).tolist()
    ends = np.asarray(carry.replay.ends[0, :8]).tolist()
    if stale:  # after the terminal step (obs 2 -> 3) the agent acts on 3 in the reset env
        assert stored == [0, 1, 2, 3, 1, 2, 3, 1]
    else:
        assert stored == [0, 1, 2, 0, 1, 2, 0, 1]
    assert ends == [0, 0, 1, 0, 0, 1, 0, 0]
