"""Teachers for reincarnating RL: a frozen Q-network with its own network config, plus its data.

A teacher comes from a frugalrl run directory (``teacher/run``): its saved ``config.json`` builds
the teacher's own agent (network, preprocessing), its newest complete checkpoint gives the
parameters of one seed lane and that lane's replay buffer (the teacher dataset). A teacher
directory's files that are symbolic links leading out of it are refused. With
``teacher/dataset = rollout`` the dataset is made fresh instead, by running the teacher in the
student's environment with epsilon decaying linearly from ``rollout_epsilon_start`` to
``rollout_epsilon_end`` (for teachers whose buffer was not kept).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.agents.protocols import ValueAgent
from frugalrl.config import ConfigError, resolve
from frugalrl.envs import EnvSpec
from frugalrl.replay import fifo
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import RunDir
from frugalrl.train.dopamine import check_teacher_links, frame_replay, load_teacher_params, load_teacher_replay
from frugalrl.train.loop import init_carry, make_segment, needs_teacher_in_loop, seed_keys


@dataclass(frozen=True)
class Teacher:
    agent: ValueAgent  # the teacher's own agent (its network and acting), built from its config
    params: Any  # frozen Q-network parameters, no seed axis
    replay: fifo.ReplayState | None  # the teacher dataset, no seed axis (None: parameters only)
    count: int  # transitions written into ``replay``
    cfg: dict[str, Any]  # the teacher run's config
    checkpoint_step: int  # env step of the teacher checkpoint


def _teacher_config(run_dir: Path) -> dict[str, Any]:
    saved = RunDir(run_dir).saved_config()
    if saved is None:
        raise ConfigError(f"config key 'teacher/run': {run_dir} holds no frugalrl run (no config.json)")
    try:
        return resolve(saved)
    except ConfigError as error:
        raise ConfigError(
            f"config key 'teacher/run': the teacher's config.json in {run_dir} is invalid: {error}"
        ) from None


def load_teacher(cfg: dict[str, Any], spec: EnvSpec) -> Teacher:
    """The teacher named by ``cfg['teacher']`` for a student acting in an env described by ``spec``."""
    tcfg = cfg["teacher"]
    run_dir = Path(tcfg["run"])
    check_teacher_links(run_dir)  # config.json, checkpoints/, teacher.json...: none may lead outside run_dir
    if (run_dir / "teacher.json").exists():
        return _imported_teacher(cfg, spec, run_dir)
    teacher_cfg = _teacher_config(run_dir)
    env, env_params, teacher_spec = envs.make(teacher_cfg["env"])
    if teacher_spec.obs_shape != spec.obs_shape or teacher_spec.num_actions != spec.num_actions:
        raise ConfigError(
            f"config key 'teacher/run': the teacher acted in {teacher_spec.name} (observations "
            f"{teacher_spec.obs_shape}, {teacher_spec.num_actions} actions) but the student's env {spec.name} has "
            f"observations {spec.obs_shape} and {spec.num_actions} actions"
        )
    lane, num_seeds = tcfg["seed_lane"], teacher_cfg["num_seeds"]
    if lane >= num_seeds:
        raise ConfigError(
            f"config key 'teacher/seed_lane' ({lane}) must be < the teacher run's num_seeds ({num_seeds})"
        )
    if needs_teacher_in_loop(teacher_cfg):
        raise ConfigError(
            f"config key 'teacher/run': {run_dir} was itself trained with a teacher in its loop "
            "(distillation or JSRL); a teacher of that kind is not supported yet"
        )
    agent = make_agent(teacher_cfg, teacher_spec)
    keys = seed_keys(teacher_cfg["seed"], int(teacher_cfg.get("run", 0)), num_seeds)
    shapes = jax.eval_shape(lambda k: init_carry(agent, env, env_params, teacher_spec, teacher_cfg, k), keys)
    restored = checkpoint.restore_latest(RunDir(run_dir).checkpoints, shapes)
    if restored is None:
        raise ConfigError(
            f"config key 'teacher/run': {run_dir} has no checkpoint; train the teacher with 'checkpoint/final': true "
            "(keeps the final parameters and replay), or set 'teacher/dataset': 'rollout'"
        )
    carry, meta = restored
    params = jax.tree.map(lambda x: jnp.asarray(x[lane]), carry.agent.params)
    replay = jax.tree.map(lambda x: jnp.asarray(x[lane]), carry.replay)
    count = int(carry.env_step)
    if tcfg["dataset"] == "rollout":
        rollout_key = jax.random.fold_in(jax.random.PRNGKey(cfg["seed"]), int(cfg.get("run", 0)))
        replay, count = teacher_rollouts(teacher_cfg["network"], params, cfg, spec, rollout_key)
    return Teacher(agent, params, replay, count, teacher_cfg, int(meta["step"]))


def _imported_teacher(cfg: dict[str, Any], spec: EnvSpec, directory: Path) -> Teacher:
    """A teacher directory written by ``frugal import-dopamine``: its parameters and, when pretraining
    or rehearsal needs it, its replay as a frame-once replay (``dopamine.frame_replay``)."""
    params, meta = load_teacher_params(directory)
    teacher_cfg = resolve({"env": cfg["env"], "network": meta["network"]})
    if meta["num_actions"] != spec.num_actions:
        raise ConfigError(
            f"config key 'teacher/run': the imported teacher has {meta['num_actions']} actions, "
            f"the student's env {spec.name} has {spec.num_actions}"
        )
    agent = make_agent(teacher_cfg, spec)
    try:
        jax.eval_shape(agent.q.apply, params, jnp.zeros(spec.obs_shape, spec.obs_dtype))
    except Exception as error:
        raise ConfigError(
            f"config key 'teacher/run': the imported teacher's network does not take the student's observations "
            f"{spec.obs_shape} ({type(error).__name__})"
        ) from None
    params = jax.tree.map(jnp.asarray, params)
    if cfg["teacher"]["dataset"] == "rollout":
        rollout_key = jax.random.fold_in(jax.random.PRNGKey(cfg["seed"]), int(cfg.get("run", 0)))
        replay, count = teacher_rollouts(teacher_cfg["network"], params, cfg, spec, rollout_key)
    elif cfg["pretraining"]["steps"] > 0 or cfg["rehearsal"]["fraction"] > 0:
        arrays = load_teacher_replay(directory)
        if arrays is None:
            raise ConfigError(
                f"config key 'teacher/run': {directory} was imported without its replay, which "
                "'pretraining/steps' and 'rehearsal/fraction' need; import it with its replay or set "
                "'teacher/dataset': 'rollout'"
            )
        if len(spec.obs_shape) != 3 or spec.obs_shape[-1] != 4 or spec.obs_dtype != np.uint8:
            raise ConfigError(
                f"config key 'teacher/run': the imported Dopamine replay holds 84x84 frames stacked by 4; the "
                f"student's env {spec.name} has observations {spec.obs_shape}"
            )
        replay, count = frame_replay(arrays, stack=4, max_episode_steps=spec.max_episode_steps)
    else:
        replay, count = None, 0
    return Teacher(agent, params, replay, count, teacher_cfg, int(meta.get("training_steps", -1)))


def teacher_rollouts(
    network_cfg: dict[str, Any], params: Any, cfg: dict[str, Any], spec: EnvSpec, key: jax.Array
) -> tuple[fifo.ReplayState, int]:
    """A replay buffer of ``rollout_steps`` transitions of the teacher acting in the student's env."""
    tcfg = cfg["teacher"]
    steps = tcfg["rollout_steps"]
    rollout_cfg = copy.deepcopy(cfg)
    rollout_cfg["network"] = copy.deepcopy(network_cfg)
    rollout_cfg["agent"].update(
        epsilon_start=tcfg["rollout_epsilon_start"], epsilon_end=tcfg["rollout_epsilon_end"], epsilon_decay_steps=steps
    )
    rollout_cfg["replay"]["capacity"] = steps
    rollout_cfg["train"].update(train_every=1, random_steps=0, epochs_per_batch=1)
    rollout_cfg["consolidation"]["source"] = "off"
    rollout_cfg["distillation"].update(coefficient=0.0, lr_low=None)
    rollout_cfg["pretraining"]["steps"] = 0  # the rollout's epsilon counts its own steps only
    rollout_cfg["jsrl"].update(guide_prob=0.0, roll_in_guide=False)
    agent = make_agent(rollout_cfg, spec)
    env, env_params, _ = envs.make(cfg["env"])
    carry = init_carry(agent, env, env_params, spec, rollout_cfg, key[None])
    acting = jax.tree.map(lambda x: x[None], params)
    carry = carry._replace(agent=carry.agent._replace(params=acting, target_params=acting))
    segment = jax.jit(make_segment(agent, env, env_params, spec, rollout_cfg, steps, learning="never"))
    carry, _ = segment(carry)
    return jax.tree.map(lambda x: x[0], carry.replay), steps
