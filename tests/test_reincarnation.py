"""Reincarnating RL end to end on a tiny CartPole teacher: teacher loading, pretraining, lambda, lr."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.agents.distillation import normalized_score, qdagger_lambda, tied_learning_rate
from frugalrl.agents.optim import learning_rate
from frugalrl.config import ConfigError, resolve
from frugalrl.replay.fifo import capacity_of
from frugalrl.runs import checkpoint
from frugalrl.train.loop import acting_epsilon, init_carry, seed_keys
from frugalrl.train.run import run
from frugalrl.train.teacher import load_teacher

NETWORK = {"name": "mlp", "hidden": [16, 16]}
BASE = {
    "env": {"name": "CartPole-v1"},
    "network": NETWORK,
    "replay": {"capacity": 2000, "batch_size": 32},
    "train": {"learning_starts": 200, "train_every": 2},
    "agent": {"target_every": 200, "epsilon_decay_steps": 1000},
    "optimizer": {"lr": 1e-3},
}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "run"
    cfg = resolve(
        {
            **BASE,
            "total_steps": 3000,
            "num_seeds": 2,
            "eval": {"every": 0, "episodes": 2},
            "checkpoint": {"every": 0, "final": True},
        }
    )
    run(cfg, path, progress=False)
    return path


def student(teacher_dir, total_steps=1200, **sections):
    raw = {
        **BASE,
        "total_steps": total_steps,
        "num_seeds": 2,
        "teacher": {"run": str(teacher_dir), "seed_lane": 1},
        "distillation": {"coefficient": 3.0, "lr_low": 1e-4, "decay_period": 5000},
        "pretraining": {"steps": 200, "eval_every": 100, "target_every": 50},
        "agent": {"target_every": 200, "epsilon_start": 1.0, "epsilon_end": 0.01, "epsilon_decay_steps": 200},
        "eval": {"every": 400, "episodes": 3},
        "checkpoint": {"every": 400, "final": True},
    }
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section}
    return resolve(raw)


def final_carry(cfg, path, teacher, at=None):
    """The run's state at its last step (or at step ``at``), from its checkpoints."""
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    keys = seed_keys(cfg["seed"], 0, cfg["num_seeds"])
    shapes = jax.eval_shape(lambda k: init_carry(agent, env, env_params, spec, cfg, k, teacher.params), keys)
    carry, meta = checkpoint.restore_latest(path / "checkpoints", shapes, at=at)
    assert meta["step"] == (cfg["total_steps"] if at is None else at)
    return carry


def test_teacher_is_one_lane_of_the_runs_final_checkpoint(teacher_dir):
    cfg = student(teacher_dir)
    spec = envs.make(cfg["env"])[2]
    teacher = load_teacher(cfg, spec)
    assert teacher.checkpoint_step == 3000 and teacher.count == 3000
    assert capacity_of(teacher.replay) == 2000 and teacher.replay.reward.ndim == 1  # no seed axis
    other = load_teacher(student(teacher_dir, teacher={"seed_lane": 0}), spec)
    first = jax.tree.leaves(teacher.params)[0]
    assert not np.array_equal(first, jax.tree.leaves(other.params)[0])


def test_qdagger_pretrains_then_sets_lambda_and_lr_from_each_seeds_score(teacher_dir, tmp_path):
    cfg = student(teacher_dir)
    path = tmp_path / "student"
    run(cfg, path, progress=False)
    offline = pd.read_csv(path / "result_Offline.csv")
    assert sorted(set(offline["step"])) == [100, 200] and len(offline) == 4
    scores = json.loads((path / "reincarnation.json").read_text())
    assert scores["teacher"] > scores["random"]
    metrics = pd.read_csv(path / "metrics.csv")
    assert "distillation_loss" in metrics.columns
    # kickstarting (no pretraining) starts below the teacher, so lambda moves through (0, 1): replay
    # its rule over each seed's logged evaluations and compare with the state saved after each one
    cfg = student(teacher_dir, pretraining={"steps": 0, "eval_every": 0})
    path = tmp_path / "kickstarting"
    run(cfg, path, progress=False)
    scores = json.loads((path / "reincarnation.json").read_text())
    test = pd.read_csv(path / "result_Test.csv")
    teacher = load_teacher(cfg, envs.make(cfg["env"])[2])
    seen = []
    for at in (400, 800, 1200):
        carry = final_carry(cfg, path, teacher, at=at)
        for lane in range(2):
            lam = 1.0
            evaluations = test[(test["seed"] == lane) & (test["step"] <= at)]
            for step, score in evaluations[["step", "return"]].itertuples(index=False):
                lam = qdagger_lambda(lam, normalized_score(score, scores["random"], scores["teacher"]), step, 5000)
            assert float(carry.distill_lambda[lane]) == pytest.approx(lam, abs=1e-6)
            expected_lr = tied_learning_rate(lam, 1e-3, 1e-4)
            assert float(learning_rate(carry.agent.opt_state)[lane]) == pytest.approx(expected_lr, rel=1e-5)
            seen.append(lam)
    # the rule was exercised away from its corners: some seed was partly distilling at some point
    assert any(0 < lam < 1 for lam in seen)


def test_student_starts_at_epsilon_end_after_pretraining_and_can_start_from_the_teacher(teacher_dir, tmp_path):
    cfg = student(teacher_dir)
    spec = envs.make(cfg["env"])[2]
    agent = make_agent(cfg, spec)
    assert float(acting_epsilon(agent, cfg, jnp.array(0))) == pytest.approx(0.01)
    plain = student(teacher_dir, pretraining={"steps": 0, "eval_every": 0}, distillation={"lr_low": None})
    assert float(acting_epsilon(make_agent(plain, spec), plain, jnp.array(0))) == pytest.approx(1.0)
    # fine-tuning the teacher: every seed starts from the teacher's parameters
    tune = student(
        teacher_dir,
        teacher={"init_student": True},
        distillation={"coefficient": 0.0, "lr_low": None},
        pretraining={"steps": 0, "eval_every": 0},
    )
    teacher = load_teacher(tune, spec)
    env, env_params, _ = envs.make(tune["env"])
    carry = init_carry(make_agent(tune, spec), env, env_params, spec, tune, seed_keys(0, 0, 2), teacher.params)
    for ours, theirs in zip(jax.tree.leaves(carry.agent.params), jax.tree.leaves(teacher.params), strict=True):
        np.testing.assert_array_equal(ours[1], theirs)


def test_an_evaluation_at_start_records_where_the_student_starts_and_changes_nothing_else(teacher_dir, tmp_path):
    results = {}
    for at_start in (False, True):
        path = tmp_path / str(at_start)
        run(student(teacher_dir, total_steps=800, eval={"at_start": at_start}), path, progress=False)
        results[at_start] = {name: pd.read_csv(path / name) for name in ("result_Train.csv", "result_Test.csv")}
    pd.testing.assert_frame_equal(results[False]["result_Train.csv"], results[True]["result_Train.csv"])
    test = results[True]["result_Test.csv"]
    assert test["step"].tolist() == [0, 0, 400, 400, 800, 800]
    pd.testing.assert_frame_equal(test.iloc[2:].reset_index(drop=True), results[False]["result_Test.csv"])


def test_teacher_rollouts_fill_a_buffer_by_acting_with_the_teacher(teacher_dir):
    cfg = student(teacher_dir, teacher={"dataset": "rollout", "rollout_steps": 600, "rollout_epsilon_end": 0.0})
    spec = envs.make(cfg["env"])[2]
    teacher = load_teacher(cfg, spec)
    assert teacher.count == 600 and capacity_of(teacher.replay) == 600
    # transition t sits in slot t: the last 100 actions are the teacher's greedy ones (epsilon ~0 by then)
    greedy = jnp.argmax(teacher.agent.network.apply(teacher.params, teacher.replay.obs[500:600]), axis=-1)
    assert float(jnp.mean(greedy == teacher.replay.action[500:600])) > 0.95
    early = jnp.argmax(teacher.agent.network.apply(teacher.params, teacher.replay.obs[:100]), axis=-1)
    assert float(jnp.mean(early == teacher.replay.action[:100])) < 0.8  # epsilon near 1 at the start


def test_teacher_errors_are_clear(teacher_dir, tmp_path):
    spec = envs.make({"name": "CartPole-v1", "max_episode_steps": -1, "params": {}})[2]
    with pytest.raises(ConfigError, match="holds no frugalrl run"):
        load_teacher(student(tmp_path / "nothing"), spec)
    with pytest.raises(ConfigError, match="holds no frugalrl run"):  # and the student leaves nothing behind
        run(student(tmp_path / "nothing"), tmp_path / "student", progress=False)
    assert not (tmp_path / "student").exists()
    with pytest.raises(ConfigError, match="seed_lane' \\(5\\) must be < the teacher run's num_seeds \\(2\\)"):
        load_teacher(student(teacher_dir, teacher={"seed_lane": 5}), spec)
    mountain = student(teacher_dir, env={"name": "MountainCar-v0"})
    with pytest.raises(ConfigError, match="teacher acted in CartPole-v1"):
        load_teacher(mountain, envs.make(mountain["env"])[2])
    with pytest.raises(ConfigError, match="'teacher/run' must name"):
        resolve({"distillation": {"coefficient": 3.0}})
    no_checkpoint = tmp_path / "no_checkpoint"
    run(resolve({**BASE, "total_steps": 400, "eval": {"every": 0, "episodes": 1}}), no_checkpoint, progress=False)
    with pytest.raises(ConfigError, match="has no checkpoint"):
        load_teacher(student(no_checkpoint, teacher={"seed_lane": 0}), spec)


def test_a_jsrl_teacher_takes_the_actions_it_is_given(teacher_dir, tmp_path):
    always = student(
        teacher_dir,
        distillation={"coefficient": 0.0, "lr_low": None},
        pretraining={"steps": 0, "eval_every": 0},
        jsrl={"guide_prob": 1.0, "decay_period": 10**9, "max_roll_in_steps": 0},
    )
    run(always, tmp_path / "always", progress=False)
    teacher = load_teacher(always, envs.make(always["env"])[2])
    carry = final_carry(always, tmp_path / "always", teacher)
    # every training action of both seeds was the teacher's greedy action (the student never acted)
    for lane in range(2):
        written = always["total_steps"]
        obs = carry.replay.obs[lane, :written]
        greedy = jnp.argmax(teacher.agent.network.apply(teacher.params, obs), axis=-1)
        np.testing.assert_array_equal(greedy, carry.replay.action[lane, :written])


def test_a_resumed_qdagger_jsrl_run_ends_exactly_as_an_uninterrupted_one_and_its_roll_ins_shrink(teacher_dir, tmp_path):
    import shutil

    cfg = student(teacher_dir, jsrl={"guide_prob": 0.5, "max_roll_in_steps": 20}, checkpoint={"keep": 5})
    run(cfg, tmp_path / "whole", progress=False)
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")  # the same run (reruns are bit-identical: test_run)
    for step in (800, 1200):  # as if killed right after the checkpoint at step 400
        shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(step))
    run(cfg, tmp_path / "cut", progress=False)
    for name in ("result_Train.csv", "result_Test.csv", "result_Offline.csv", "reincarnation.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    teacher = load_teacher(cfg, envs.make(cfg["env"])[2])
    whole, cut = final_carry(cfg, tmp_path / "whole", teacher), final_carry(cfg, tmp_path / "cut", teacher)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(cut), strict=True):
        np.testing.assert_array_equal(a, b)
    # the roll-in's maximum shrinks by roll_in_decay (0.8) after each of the 3 evaluations
    np.testing.assert_array_equal(whole.jsrl.max_roll_in, [9, 9])  # 20 -> 16 -> 12 -> 9
    assert np.all((whole.jsrl.roll_in >= 1) & (whole.jsrl.roll_in <= 20))


def test_a_pretraining_learning_rate_of_its_own_hands_over_to_the_online_one(teacher_dir, tmp_path):
    cfg = student(
        teacher_dir,
        total_steps=400,
        distillation={"coefficient": 0.0, "lr_low": None},
        pretraining={"regularizer": "cql", "lr": 5e-4},
        eval={"every": 400},
        checkpoint={"every": 0},
    )
    run(cfg, tmp_path / "cql", progress=False)
    carry = final_carry(cfg, tmp_path / "cql", load_teacher(cfg, envs.make(cfg["env"])[2]))
    np.testing.assert_allclose(learning_rate(carry.agent.opt_state), 1e-3)
    assert "cql_loss" not in pd.read_csv(tmp_path / "cql" / "metrics.csv").columns  # offline only


def test_rehearsal_mixes_teacher_data_into_online_batches_with_dqfds_margin(teacher_dir, tmp_path):
    cfg = student(
        teacher_dir,
        total_steps=800,
        distillation={"coefficient": 0.0, "lr_low": None},
        pretraining={"regularizer": "large_margin", "steps": 100, "eval_every": 0},
        rehearsal={"fraction": 0.25, "regularizer_decay_period": 400},
    )
    run(cfg, tmp_path / "dqfd", progress=False)
    metrics = pd.read_csv(tmp_path / "dqfd" / "metrics.csv")
    assert np.isfinite(metrics["large_margin_loss"]).all() and (metrics["large_margin_loss"] > 0).any()
    with pytest.raises(ConfigError, match="'teacher/run' must name"):
        resolve({"rehearsal": {"fraction": 0.5}})
