"""SAC and DDPG: losses and update order against a NumPy re-computation on a tiny batch; the
tanh-Gaussian log-probability; actions in [-1, 1] mapped onto the env's bounds; config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.agents.sac import tanh_gaussian_sample
from frugalrl.config import ConfigError, resolve
from frugalrl.envs.registry import unit_to_bounds
from frugalrl.replay.fifo import Batch

SAC_CFG = {
    "env": {"name": "Pendulum-v1"},
    "agent": {"name": "sac", "tau": 0.1},
    "network": {"hidden": [5, 5]},
    "optimizer": {"lr": 3e-4},
}


def dense_stack(layers: dict, x, count: int, index: int | None = None, xp=np):
    """Forward of flax Dense_0..Dense_{count-1} (ReLU between layers, linear last) in NumPy (float64
    parameters, see ``as64``) or, with ``xp=jnp``, in JAX, so ``jax.grad`` can differentiate it."""
    for i in range(count):
        kernel, bias = layers[f"Dense_{i}"]["kernel"], layers[f"Dense_{i}"]["bias"]
        if index is not None:
            kernel, bias = kernel[index], bias[index]
        x = x @ kernel + bias
        if i < count - 1:
            x = xp.maximum(x, 0.0)
    return x


def critics(params: dict, obs, action, count: int = 2, xp=np):
    layers = params["params"]["VmapCritic_0"]["OrthogonalMLP_0"]
    x = xp.concatenate([obs, action], axis=-1)
    return xp.stack([dense_stack(layers, x, 3, c, xp)[:, 0] for c in range(count)])


def actor(params: dict, obs, xp=np):
    p = params["params"]
    hidden = xp.maximum(dense_stack(p["OrthogonalMLP_0"], obs, 2, xp=xp), 0.0)
    mean = hidden @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    raw = hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    return mean, -10.0 + 0.5 * 12.0 * (1.0 + xp.tanh(raw))


def tanh_gaussian(mean, log_std, noise, xp=np):
    u = mean + xp.exp(log_std) * noise
    log_prob = -0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi) - xp.log(1.0 - xp.tanh(u) ** 2)
    return xp.tanh(u), log_prob.sum(-1)


def assert_first_adam_step(before, after, grads, lr: float = 3e-4) -> None:
    """Adam's first step moves each parameter by lr against its gradient's sign (where the gradient
    is not negligible): the parameters moved along the gradient of the loss written here."""
    moved = 0
    for b, a, g in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(grads), strict=True):
        g = np.asarray(g, np.float64)
        clear = np.abs(g) > 1e-4 * max(np.abs(g).max(), 1e-12)
        step = np.asarray(a, np.float64)[clear] - np.asarray(b, np.float64)[clear]
        np.testing.assert_array_equal(np.sign(step), -np.sign(g[clear]))
        np.testing.assert_allclose(np.abs(step), lr, rtol=0.02)
        moved += int(clear.sum())
    assert moved > 0


def tiny_batch() -> Batch:
    rng = np.random.default_rng(0)
    return Batch(
        obs=jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(4, 1)), jnp.float32),
        reward=jnp.asarray([0.5, -1.0, 2.0, 0.0], jnp.float32),
        discount=jnp.asarray([0.9, 0.9, 0.0, 0.9], jnp.float32),  # the third is terminal
        next_obs=jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
    )


def as64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def test_sac_update_matches_a_numpy_recomputation_in_the_reference_order():
    cfg = resolve(SAC_CFG)
    _, _, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    # a target critic apart from the critic, and alpha = 0.5, so every term shows
    state = state._replace(
        target_critic=jax.tree.map(lambda x: x + 0.1, state.target_critic),
        temperature={"params": {"log_alpha": jnp.log(jnp.float32(0.5))}},
    )
    batch, key = tiny_batch(), jax.random.PRNGKey(7)
    new, metrics = jax.jit(agent.update)(state, batch, key)
    next_key, actor_key = jax.random.split(key)
    noise_next = np.asarray(jax.random.normal(next_key, (4, 1)), np.float64)
    noise_now = np.asarray(jax.random.normal(actor_key, (4, 1)), np.float64)
    b = as64(batch._asdict())
    old, updated = as64(state._asdict()), as64(new._asdict())
    alpha = 0.5

    # critic: targets from the current actor at s' and the target critic, alpha before its step
    next_action, next_log_prob = tanh_gaussian(*actor(old["actor"], b["next_obs"]), noise_next)
    target_q = critics(old["target_critic"], b["next_obs"], next_action)
    y = b["reward"] + b["discount"] * (target_q.min(0) - alpha * next_log_prob)
    q = critics(old["critic"], b["obs"], b["action"])
    expected_critic_loss = ((q - y) ** 2).mean(axis=1).sum()
    np.testing.assert_allclose(metrics["critic_loss"], expected_critic_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["q1"], q[0].mean(), rtol=1e-5, atol=1e-6)

    # the critic moved along the gradient of that loss
    y32, obs32, action32 = (jnp.asarray(v, jnp.float32) for v in (y, b["obs"], b["action"]))
    critic_grads = jax.grad(lambda p: ((critics(p, obs32, action32, xp=jnp) - y32) ** 2).mean(axis=1).sum())(
        state.critic
    )
    assert_first_adam_step(state.critic, new.critic, critic_grads)

    # target critic: one Polyak step toward the updated critic
    for new_t, crit, old_t in zip(
        jax.tree.leaves(updated["target_critic"]),
        jax.tree.leaves(updated["critic"]),
        jax.tree.leaves(old["target_critic"]),
        strict=True,
    ):
        np.testing.assert_allclose(new_t, 0.1 * crit + 0.9 * old_t, rtol=1e-5, atol=1e-6)

    # actor: against the *updated* critic
    action, log_prob = tanh_gaussian(*actor(old["actor"], b["obs"]), noise_now)
    expected_actor_loss = np.mean(alpha * log_prob - critics(updated["critic"], b["obs"], action).min(0))
    with_old_critic = np.mean(alpha * log_prob - critics(old["critic"], b["obs"], action).min(0))
    np.testing.assert_allclose(metrics["actor_loss"], expected_actor_loss, rtol=1e-5)
    assert abs(expected_actor_loss - with_old_critic) > 1e-6  # the test can tell the two orders apart

    def reparameterised_actor_loss(p: dict) -> jax.Array:
        sampled, log_p = tanh_gaussian(*actor(p, obs32, xp=jnp), jnp.asarray(noise_now, jnp.float32), xp=jnp)
        return jnp.mean(alpha * log_p - critics(new.critic, obs32, sampled, xp=jnp).min(0))

    assert_first_adam_step(state.actor, new.actor, jax.grad(reparameterised_actor_loss)(state.actor))

    # temperature: alpha (entropy - target), target entropy -|A|/2, with the actor step's entropy
    entropy = -log_prob.mean()
    np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(metrics["temperature_loss"], alpha * (entropy + 0.5), rtol=1e-5)
    # Adam's first step moves log alpha by lr against the gradient's sign
    step = updated["temperature"]["params"]["log_alpha"] - old["temperature"]["params"]["log_alpha"]
    np.testing.assert_allclose(step, -3e-4 * np.sign(entropy + 0.5), rtol=1e-3)
    # every optimizer took exactly one step
    assert [int(s[0].count) for s in (new.critic_opt, new.actor_opt, new.temperature_opt)] == [1, 1, 1]


def test_ddpg_update_matches_a_numpy_recomputation():
    cfg = resolve({**SAC_CFG, "agent": {"name": "ddpg", "tau": 0.1}})
    _, _, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(1))
    state = state._replace(
        target_actor=jax.tree.map(lambda x: x - 0.05, state.target_actor),
        target_critic=jax.tree.map(lambda x: x + 0.1, state.target_critic),
    )
    batch = tiny_batch()
    new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(2))
    b, old, updated = as64(batch._asdict()), as64(state._asdict()), as64(new._asdict())

    def policy(params: dict, obs, xp=np):
        return xp.tanh(dense_stack(params["params"]["OrthogonalMLP_0"], obs, 3, xp=xp))

    y = (
        b["reward"]
        + b["discount"] * critics(old["target_critic"], b["next_obs"], policy(old["target_actor"], b["next_obs"]), 1)[0]
    )
    q = critics(old["critic"], b["obs"], b["action"], 1)[0]
    np.testing.assert_allclose(metrics["critic_loss"], ((q - y) ** 2).mean(), rtol=1e-5)
    expected_actor = -critics(updated["critic"], b["obs"], policy(old["actor"], b["obs"]), 1)[0].mean()
    np.testing.assert_allclose(metrics["actor_loss"], expected_actor, rtol=1e-5)
    y32, obs32, action32 = (jnp.asarray(v, jnp.float32) for v in (y, b["obs"], b["action"]))
    critic_grads = jax.grad(lambda p: ((critics(p, obs32, action32, 1, jnp)[0] - y32) ** 2).mean())(state.critic)
    assert_first_adam_step(state.critic, new.critic, critic_grads)
    actor_grads = jax.grad(lambda p: -critics(new.critic, obs32, policy(p, obs32, jnp), 1, jnp)[0].mean())(state.actor)
    assert_first_adam_step(state.actor, new.actor, actor_grads)
    for name in ("actor", "critic"):
        for new_t, net, old_t in zip(
            jax.tree.leaves(updated[f"target_{name}"]),
            jax.tree.leaves(updated[name]),
            jax.tree.leaves(old[f"target_{name}"]),
            strict=True,
        ):
            np.testing.assert_allclose(new_t, 0.1 * net + 0.9 * old_t, rtol=1e-5, atol=1e-6)


def test_tanh_gaussian_log_prob_is_the_density_of_the_squashed_sample():
    mean = jnp.array([[0.3, -1.2], [20.0, -25.0]], jnp.float32)
    log_std = jnp.array([[-0.5, 0.2], [-3.0, 1.0]], jnp.float32)
    action, log_prob = tanh_gaussian_sample(mean, log_std, jax.random.PRNGKey(3))
    assert np.all(np.isfinite(np.asarray(log_prob)))  # saturated tanh: still finite
    # first row: the change-of-variables density, computed independently in float64
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 2)), np.float64)[0]
    m, s = np.asarray(mean[0], np.float64), np.exp(np.asarray(log_std[0], np.float64))
    u = m + s * noise
    gaussian = -0.5 * ((u - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    a = np.tanh(u)
    np.testing.assert_allclose(action[0], a, rtol=1e-5)
    np.testing.assert_allclose(log_prob[0], np.sum(gaussian - np.log1p(-(a**2))), rtol=1e-4)


def test_log_std_stays_inside_its_bounds_and_evaluation_is_deterministic():
    cfg = resolve(SAC_CFG)
    _, _, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    big = jnp.array([[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4]], jnp.float32)
    _, log_std = agent.actor.apply(state.actor, big)
    assert np.all((np.asarray(log_std) >= -10.0) & (np.asarray(log_std) <= 2.0))
    obs = jnp.array([0.1, -0.2, 0.3], jnp.float32)
    greedy = [agent.evaluation_act(state, obs, jax.random.PRNGKey(k), 0.0) for k in range(3)]
    sampled = [agent.act(state, obs, jax.random.PRNGKey(k), 0.0) for k in range(3)]
    assert all(np.array_equal(greedy[0], g) for g in greedy)
    assert len({float(a[0]) for a in sampled}) == 3
    mean, _ = agent.actor.apply(state.actor, obs)
    np.testing.assert_allclose(greedy[0], np.tanh(mean), rtol=1e-6)
    uniform = jnp.stack([agent.act(state, obs, jax.random.PRNGKey(k), 1.0) for k in range(200)])
    assert float(uniform.min()) < -0.9 and float(uniform.max()) > 0.9  # the warm-up: uniform in [-1, 1]


def test_continuous_envs_take_actions_in_unit_range_mapped_onto_their_bounds():
    env, params, spec = envs.make({"name": "Pendulum-v1"})
    assert (spec.action_low, spec.action_high, spec.action_shape) == (-1.0, 1.0, (1,))
    _, state = env.reset(jax.random.PRNGKey(0), params)
    for action, torque in ((1.0, 2.0), (-1.0, -2.0), (0.25, 0.5), (3.0, 2.0)):
        _, after, *_ = env.step(jax.random.PRNGKey(1), state, jnp.array([action]), params)
        assert float(after.last_u) == pytest.approx(torque)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"agent": {"name": "sac", "tau": 1.0}}, "agent/tau"),
        ({"agent": {"name": "sac", "tau": 0.005, "n_step": 3}}, "agent/n_step"),
        ({"agent": {"name": "ddpg", "tau": 0.005}, "network": {"name": "minatar_cnn"}}, "network/name"),
        ({"agent": {"name": "sac", "tau": 0.005}, "replay": {"prioritized": True}}, "replay/prioritized"),
        (
            {"agent": {"name": "sac", "tau": 0.005}, "train": {"gradient_steps": 3}, "reset": {"every": 100}},
            "reset/every",
        ),
        ({"reset": {"every": 100, "schedule": "eval_steps"}, "eval": {"every": 0}}, "reset/schedule"),
        ({"agent": {"name": "sac", "tau": 0.005}, "sac": {"log_std_min": 2.0}}, "sac/log_std_min"),
    ],
)
def test_bad_continuous_and_reset_configs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"env": {"name": "Pendulum-v1"}, **override})


def test_sac_on_discrete_actions_is_refused_by_name():
    cfg = resolve({"env": {"name": "CartPole-v1"}, "agent": {"name": "sac", "tau": 0.005}})
    _, _, spec = envs.make(cfg["env"])
    with pytest.raises(ValueError, match="continuous actions; CartPole-v1"):
        make_agent(cfg, spec)


def test_orthogonal_init_with_its_gains_and_two_independent_critics():
    cfg = resolve({**SAC_CFG, "network": {"hidden": [8, 8]}})
    _, _, spec = envs.make(cfg["env"])
    state = make_agent(cfg, spec).init(jax.random.PRNGKey(4))

    def check(kernel: np.ndarray, gain: float) -> None:
        kernel = np.asarray(kernel, np.float64)
        gram = kernel.T @ kernel if kernel.shape[0] >= kernel.shape[1] else kernel @ kernel.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5)

    actor_params = state.actor["params"]
    for name in ("Dense_0", "Dense_1"):
        check(actor_params["OrthogonalMLP_0"][name]["kernel"], 2**0.5)
    check(actor_params["Dense_0"]["kernel"], 2**0.5)  # mean head
    check(actor_params["Dense_1"]["kernel"], 1.0)  # log-std head
    layers = state.critic["params"]["VmapCritic_0"]["OrthogonalMLP_0"]
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        for critic in range(2):
            check(layers[name]["kernel"][critic], 2**0.5)
        assert not np.allclose(layers[name]["kernel"][0], layers[name]["kernel"][1])
    biases = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path((state.actor, state.critic)) if "bias" in str(path)
    ]
    assert len(biases) == 7 and all(not np.any(np.asarray(b)) for b in biases)
    assert float(state.temperature["params"]["log_alpha"]) == 0.0  # alpha = 1


def test_ddpg_explores_with_gaussian_noise_and_evaluates_without():
    cfg = resolve({**SAC_CFG, "agent": {"name": "ddpg", "tau": 0.005}})
    _, _, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros(3, jnp.float32)  # zero biases: the actor outputs tanh(0) = 0 here
    assert float(agent.evaluation_act(state, obs, jax.random.PRNGKey(1), 0.0)[0]) == 0.0
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    noisy = np.asarray(jax.vmap(lambda key: agent.act(state, obs, key, 0.0))(keys))[:, 0]
    assert abs(noisy.mean()) < 0.02 and abs(noisy.std() - 0.2) < 0.01


def test_unit_actions_map_linearly_onto_any_bounds():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    action = np.array([[-1.0, -1.0], [0.0, 0.5], [1.0, 1.0], [7.0, -3.0]])
    expected = np.array([[-2.0, 0.0], [0.0, 7.5], [2.0, 10.0], [2.0, 0.0]])
    np.testing.assert_allclose(unit_to_bounds(action, low, high), expected)
    np.testing.assert_allclose(unit_to_bounds(jnp.asarray(action), jnp.asarray(low), jnp.asarray(high)), expected)
