"""Memory agents: episode replay, whole-episode collection, the masked recurrent TD loss, the loop."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from frugalrl import envs
from frugalrl.agents.recurrent_dqn import previous_tokens
from frugalrl.config import ConfigError, resolve
from frugalrl.replay import episodes as episode_replay
from frugalrl.train import episodic
from frugalrl.train.run import run


def memory_cfg(length=5, model="lstm", **sections):
    raw = {
        "env": {"name": f"PassiveTMaze-{length}"},
        "num_seeds": 2,
        "agent": {"name": "recurrent_dqn", "double": True, "tau": 0.005, "loss": "mse"},
        "optimizer": {"lr": 3e-4},
        "sequence": {"model": model, "hidden": 32, "obs_embed": 16, "action_embed": 16, "head_hidden": [32, 32]},
        "episodic": {"train_episodes": 40, "random_episodes": 4, "eval_every": 10, "min_episodes": 50},
        "replay": {"batch_size": 8, "capacity": 100},
        "eval": {"episodes": 4},
        "checkpoint": {"every": 0, "final": True},
    }
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section}
    return resolve(raw)


def test_episode_replay_keeps_whole_episodes_oldest_out_and_samples_windows():
    replay = episode_replay.init((2,), jnp.float32, length=4, episodes=3)
    for i in range(5):  # slots: episodes 3, 4, 2
        episode = episode_replay.Episode(
            obs=jnp.full((5, 2), i, jnp.float32),
            action=jnp.full((4,), i),
            reward=jnp.arange(4, dtype=jnp.float32) + 10 * i,
            terminated=jnp.array([False, False, False, True]),
            valid=jnp.ones(4, bool),
        )
        replay = episode_replay.add(replay, episode)
    assert int(replay.count) == 5
    np.testing.assert_array_equal(replay.action[:, 0], [3, 4, 2])
    batch = episode_replay.sample(replay, jax.random.PRNGKey(0), 64)
    assert batch.obs.shape == (64, 5, 2) and set(np.asarray(batch.action[:, 0]).tolist()) == {2, 3, 4}
    windows = episode_replay.sample(replay, jax.random.PRNGKey(1), 64, window=2)
    assert windows.obs.shape == (64, 3, 2) and windows.reward.shape == (64, 2)
    # a window is two consecutive steps of one episode
    rewards = np.asarray(windows.reward)
    np.testing.assert_array_equal(rewards[:, 1] - rewards[:, 0], 1.0)
    assert set((rewards[:, 0] % 10).astype(int).tolist()) == {0, 1, 2}
    assert episode_replay.episode_capacity(1_000_000, 50, 1000) == 19607
    assert episode_replay.episode_capacity(1_000, 50, 1000) == 1000


def test_previous_tokens_start_from_a_zero_action_and_reward():
    action, reward = jnp.array([[2, 0, 1]]), jnp.array([[0.5, -1.0, 2.0]])
    prev_action, prev_reward = previous_tokens(action, reward)
    np.testing.assert_array_equal(prev_action, [[-1, 2, 0, 1]])
    np.testing.assert_array_equal(prev_reward, [[0.0, 0.5, -1.0, 2.0]])


def test_a_collected_episode_is_the_whole_maze_episode_with_its_final_observation():
    cfg = memory_cfg(length=6)
    env, env_params, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    collect = jax.jit(episodic.make_collect(agent, env, env_params, spec, cfg), static_argnums=3)
    params = agent.init(jax.random.PRNGKey(0)).params
    episode, stats, steps = collect(params, jax.random.PRNGKey(1), jnp.asarray(0.0), "explore")
    assert episode.obs.shape == (8, 2) and episode.action.shape == (7,)
    assert bool(episode.valid.all()) and bool(episode.terminated[-1]) and not bool(episode.terminated[:-1].any())
    assert float(episode.obs[0, 0]) == 0.0 and abs(float(episode.obs[0, 1])) == 1.0  # the cue at the start
    assert float(episode.obs[-1, 0]) == 1.0 or float(episode.obs[-1, 0]) == 0.0
    assert float(stats.episode_return) == pytest.approx(float(episode.reward.sum()))
    assert int(stats.length) == 7 and float(steps) == 7.0
    # greedy acting does not advance the exploration clock
    _, _, steps = collect(params, jax.random.PRNGKey(1), jnp.asarray(3.0), "greedy")
    assert float(steps) == 3.0


def test_padding_steps_do_not_change_the_loss():
    cfg = memory_cfg(length=4)
    _, _, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    batch = episode_replay.Episode(
        obs=jax.random.normal(key, (3, 6, 2)),
        action=jax.random.randint(key, (3, 5), 0, 4),
        reward=jax.random.normal(jax.random.PRNGKey(2), (3, 5)),
        terminated=jnp.zeros((3, 5), bool).at[:, 2].set(True),
        valid=jnp.ones((3, 5), bool).at[:, 3:].set(False),
    )
    loss, _ = agent.loss(state.params, state.target_params, batch, key)
    garbage = batch._replace(reward=batch.reward.at[:, 3:].set(1e6), action=batch.action.at[:, 3:].set(0))
    other, _ = agent.loss(state.params, state.target_params, garbage, key)
    assert float(loss) == pytest.approx(float(other))
    assert float(loss) > 0


def test_epsilon_goes_from_one_to_one_over_T_across_a_tenth_of_the_training_steps():
    cfg = memory_cfg(length=9, episodic={"train_episodes": 100})
    schedule = episodic.epsilon_schedule(cfg, 10)
    assert float(schedule(0.0)) == 1.0
    assert float(schedule(50.0)) == pytest.approx(1.0 - 0.5 * 0.9)
    assert float(schedule(100.0)) == pytest.approx(0.1) and float(schedule(1e6)) == pytest.approx(0.1)
    assert episodic.updates_after(11, 0.25, warmup=False) == 3 and episodic.updates_after(110, 0.25, warmup=True) == 27


def test_memory_runs_log_episodes_and_evaluations_and_resume_exactly(tmp_path):
    cfg = memory_cfg(length=5, checkpoint={"every": 120, "final": True, "keep": 3})
    full = tmp_path / "full"
    summary = run(cfg, full, progress=False)
    assert summary.env_steps == 44 * 6
    train = pd.read_csv(full / "result_Train.csv")
    assert len(train) == 2 * 44 and set(train["length"]) == {6} and train["step"].max() == 264
    test = pd.read_csv(full / "result_Test.csv")
    # every 10 episodes counting the 4 random ones (as the original), and at the end
    assert sorted(set(test["step"])) == [60, 120, 180, 240, 264]
    assert {"success", "return_std"} <= set(test.columns)
    # interrupted after the checkpoint at step 120 (episode 20): drop everything after it and rerun
    part = tmp_path / "part"
    shutil.copytree(full, part)  # the same run (reruns are bit-identical: test_run)
    from frugalrl.runs import checkpoint

    for step in checkpoint.complete_steps(part / "checkpoints"):
        if step > 120:
            shutil.rmtree(part / "checkpoints" / str(step))
    (part / "log.txt").write_text("")
    resumed = run(cfg, part, progress=False)
    assert resumed.resumed_from == 120
    for name in ("result_Train.csv", "result_Test.csv", "metrics.csv"):
        assert (part / name).read_text() == (full / name).read_text(), name


def test_memory_config_errors_are_clear():
    with pytest.raises(ConfigError, match="sequence/heads"):
        memory_cfg(model="gpt", sequence={"heads": 3})
    with pytest.raises(ConfigError, match="'agent/n_step' is not available"):
        memory_cfg(agent={"n_step": 3})
    with pytest.raises(ConfigError, match="sequence/model"):
        memory_cfg(model="rnn")


def test_the_budget_table_gives_the_papers_episodes_when_none_are_set():
    with pytest.raises(ConfigError, match="covers lengths 50, 100"):
        memory_cfg(length=5, episodic={"train_episodes": None})
    cfg = memory_cfg(length=50, episodic={"train_episodes": None})
    assert episodic.train_episodes(cfg) == 20000 and episodic.total_episodes(cfg) == 20004
    active = resolve({**cfg, "env": {"name": "ActiveTMaze-250"}})
    assert episodic.train_episodes(active) == 32000


def sacd_cfg(**sacd):
    return memory_cfg(agent={"name": "sacd"}, sacd=sacd)


def random_batch(length=6, size=3):
    key = jax.random.PRNGKey(7)
    return episode_replay.Episode(
        obs=jax.random.normal(key, (size, length + 1, 2)),
        action=jax.random.randint(key, (size, length), 0, 4),
        reward=jax.random.normal(jax.random.PRNGKey(8), (size, length)),
        terminated=jnp.zeros((size, length), bool).at[:, -1].set(True),
        valid=jnp.ones((size, length), bool),
    )


def _norm(tree):
    return float(sum(jnp.abs(leaf).sum() for leaf in jax.tree.leaves(tree)))


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_critic_keeps_the_actor_loss_off_the_q_heads_but_not_off_the_encoder(freeze):
    cfg = sacd_cfg(shared_encoder=True, freeze_critic=freeze)
    _, _, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    batch = random_batch()
    actor_loss = lambda p: agent.shared_loss(p, state.target_params, batch, jax.random.PRNGKey(1), 0.1)[1][2]  # noqa: E731
    grads = jax.grad(actor_loss)(state.params)["params"]
    assert (_norm(grads["head"]["critic"]) == 0.0) == freeze
    assert _norm(grads["core"]) > 0 and _norm(grads["head"]["policy"]) > 0


@pytest.mark.parametrize("sacd", [{}, {"shared_encoder": True, "freeze_critic": True}, {"learn_temperature": True}])
def test_sacd_updates_move_the_critic_toward_its_target_and_keep_alpha_fixed_unless_learned(sacd):
    cfg = sacd_cfg(**sacd)
    _, _, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    state = agent.init(jax.random.PRNGKey(0))
    batch = random_batch()
    update = jax.jit(agent.update)
    first = None
    for i in range(30):
        state, metrics = update(state, batch, jax.random.PRNGKey(i))
        first = first if first is not None else float(metrics["loss"])
    assert float(metrics["loss"]) < first
    alpha = float(jnp.exp(state.log_alpha))
    assert (alpha == pytest.approx(0.1)) != sacd.get("learn_temperature", False)
    assert set(metrics) == set(agent.metric_names)


@pytest.mark.slow  # a whole SAC-D run; its losses and updates are covered by the tests above
def test_a_sacd_run_samples_its_policy_and_logs_its_losses(tmp_path):
    cfg = sacd_cfg(shared_encoder=True, freeze_critic=True)
    cfg = resolve({**cfg, "episodic": {**cfg["episodic"], "train_episodes": 10}})
    run(cfg, tmp_path / "sacd", progress=False)
    metrics = pd.read_csv(tmp_path / "sacd" / "metrics.csv")
    assert {"actor_loss", "entropy", "alpha"} <= set(metrics.columns) and np.isfinite(metrics["loss"]).all()
    with pytest.raises(ConfigError, match="freeze_critic' needs 'sacd/shared_encoder'"):
        sacd_cfg(freeze_critic=True)
