"""The flat loop: JAX envs jitted end to end, seeds vmapped and split over the local devices.

A segment (``loop.make_segment``) is ``lax.scan`` over blocks of ``train_every`` env steps and
their updates; the host runs segments, writes the episodes that ended and the mean update
metrics, evaluates every ``eval/every`` steps, and applies what the schedule asks between
segments (resets; QDagger's λ and JSRL's roll-ins, in ``reincarnation``). Everything else of a
run's life is the ``RunSession``'s.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.agents.hparams import lane_hparams
from frugalrl.config.schema import first_learning_block, reset_period_env_steps
from frugalrl.devices import placed, rolled_threefry, seed_axis_spec
from frugalrl.replay import fifo
from frugalrl.runs.rundir import TEST_COLUMNS, TRAIN_COLUMNS, counted, evaluation_rows
from frugalrl.train import reincarnation
from frugalrl.train.loop import (
    EVAL_STREAM,
    agent_init_keys,
    evaluation_keys,
    init_carry,
    make_evaluate,
    make_segment,
    seed_keys,
)
from frugalrl.train.resets import make_reinit, reset_if_due, reset_schedule, resetting
from frugalrl.train.session import RunSession, check_fits, human_bytes, memory_needs

MAX_SEGMENT_STEPS = 50_000
MIN_SEGMENT_STEPS = 2_000


def segment_steps(cfg: dict[str, Any]) -> int:
    """Env steps per jitted call: divides the total and every eval/checkpoint period, and if it can
    without becoming tiny, the step where learning starts (so no segment needs a branch)."""
    k = cfg["train"]["train_every"]
    periods = [cfg["total_steps"]] + [p for p in (cfg["eval"]["every"], cfg["checkpoint"]["every"]) if p > 0]
    if resetting(cfg) and cfg["reset"]["schedule"] == "env_steps":
        periods.append(reset_period_env_steps(cfg))
    seg = math.gcd(*periods)
    learning_from = first_learning_block(cfg)
    if 0 < learning_from < cfg["total_steps"] and math.gcd(seg, learning_from) >= min(seg, MIN_SEGMENT_STEPS):
        seg = math.gcd(seg, learning_from)
    seg_blocks, limit = seg // k, max(MAX_SEGMENT_STEPS // k, 1)
    return k * max(d for d in range(1, min(seg_blocks, limit) + 1) if seg_blocks % d == 0)


def unpackable(cfg: dict[str, Any]) -> str | None:
    """Why a config's vmappable hyperparameters stay constants of its programs (it runs alone even
    beside configs of its program), or None: they are data, and it can be packed."""
    if cfg["agent"]["name"] != "dqn":
        return f"agent {cfg['agent']['name']}: only DQN's flat loop is packed"
    if envs.host_family(cfg["env"]["name"]) is not None:
        return f"{cfg['env']['name']} is stepped on the host"
    if cfg["model"]["kind"] != "none":
        return "model-based agents are not packed"
    if cfg["teacher"]["run"] is not None or cfg["pretraining"]["steps"] or cfg["pretraining"]["lr"] is not None:
        return "runs with a teacher or pretraining are not packed"
    if resetting(cfg):
        return "runs with resets are not packed"
    return None


def learning_mode(cfg: dict[str, Any], start: int, seg: int) -> str:
    learning_from = first_learning_block(cfg)
    return "always" if start >= learning_from else "never" if start + seg <= learning_from else "mixed"


class FlatLoop:
    """The ``Loop`` of a run whose env is a JAX env (classic control, MinAtar, the T-Mazes' kin...)."""

    train_columns, test_columns = TRAIN_COLUMNS, TEST_COLUMNS

    def __init__(self, cfg: dict[str, Any]) -> None:
        # env, agent and teacher before the run directory is written: a bad teacher leaves nothing behind
        self.cfg = cfg
        self.env, self.env_params, self.spec = envs.make(cfg["env"])
        self.agent = make_agent(cfg, self.spec)
        self.keys = seed_keys(cfg["seed"], int(cfg.get("run", 0)), cfg["num_seeds"])
        self.reincarnation = reincarnation.Reincarnation.for_config(cfg, self.spec)
        self.total, self.seg = cfg["total_steps"], segment_steps(cfg)
        self.compiled_segments: dict[str, Any] = {}
        # The vmappable hyperparameters as data, as in a packed program, not as constants: the runs
        # of a grid that differ only in them then compile to the same programs, and the compile cache
        # serves every run after the first (the same bits: tests/test_packed.py).
        self.hparams = lane_hparams([cfg], cfg["num_seeds"]) if unpackable(cfg) is None else ()

    def _init(self, keys: jax.Array) -> Any:
        teacher_params = self.reincarnation.teacher_params() if self.reincarnation else None
        carry = init_carry(self.agent, self.env, self.env_params, self.spec, self.cfg, keys, teacher_params)
        return carry._replace(hparams=self.hparams)

    def prepare(self, session: RunSession) -> Any:
        self.session, num_seeds = session, self.cfg["num_seeds"]
        if self.reincarnation:
            self.reincarnation.announce_teacher(session)
        shapes = jax.eval_shape(self._init, self.keys)
        memory = fifo.memory_bytes(shapes.replay, num_seeds)
        total_bytes = memory["total_bytes"]
        session.announce(
            f"replay: {memory['bytes_per_transition']:.1f} bytes per transition, "
            f"{human_bytes(total_bytes / num_seeds)} per seed, "
            f"{human_bytes(total_bytes)} for {counted(num_seeds, 'seed')}"
        )
        cfg, spec = self.cfg, self.spec
        width = math.prod(spec.obs_shape) + sum(cfg["network"]["hidden"]) + (spec.num_actions or 1)
        if cfg["model"]["kind"] != "none":  # every rollout step passes the model's networks
            width += sum(cfg["model"]["hidden"]) * cfg["model"]["rollout_length"]
        rows, episodes = cfg["replay"]["batch_size"] * max(cfg["agent"]["atoms"], 1), cfg["eval"]["episodes"]
        needs = memory_needs(
            cfg, spec, shapes, batch_rows=num_seeds * rows, eval_rows=num_seeds * episodes, width=width
        )
        check_fits(cfg, needs)
        self.mesh = session.mesh()
        self.carry_specs = jax.tree.map(seed_axis_spec, shapes)
        self.carry_sharding = jax.tree.map(lambda s: NamedSharding(self.mesh, s), self.carry_specs)
        return shapes._replace(hparams=())  # a config's hyperparameters come from its config, never a checkpoint

    def fresh(self) -> Any:
        return placed(self._init(self.keys), self.carry_sharding)

    def resume(self, carry: Any, meta: dict[str, Any]) -> Any:
        return jax.device_put(carry._replace(hparams=self.hparams), self.carry_sharding)

    def start(self, carry: Any, resumed: bool) -> Any:
        session, cfg = self.session, self.cfg
        evaluate = jax.shard_map(
            self.per_device(make_evaluate(self.agent, self.env, self.env_params, self.spec, cfg), 0),
            mesh=self.mesh,
            in_specs=(PartitionSpec("seed"), PartitionSpec("seed")),
            out_specs=PartitionSpec("seed"),
            check_vma=False,
        )
        self.eval_keys_for = evaluation_keys(self.keys, EVAL_STREAM)
        with rolled_threefry():  # a few evaluations per run: compile time matters more than loop speed
            self.compiled_eval = session.compile(
                "the evaluation", lambda: jax.jit(evaluate).lower(carry.agent, self.eval_keys_for(0))
            )
        if self.reincarnation:
            carry = self.reincarnation.start(self, carry, resumed)
        if resetting(cfg):
            self.reinit = jax.jit(make_reinit(self.agent, cfg))
            self.init_keys = agent_init_keys(self.keys)
            planned = reset_schedule(cfg, self.total - 1)
            shown = ", ".join(map(str, planned[:8])) + (", ..." if len(planned) > 8 else "")
            session.announce(
                f"resets ({cfg['reset']['schedule']} schedule): {len(planned)} at env steps {shown or 'none'}"
            )
        if cfg["eval"]["at_start"] and not resumed:
            self.evaluate_returns(carry.agent, 0)  # a starting point only: lambda and JSRL's roll-ins start from theirs
        return carry

    def per_device(self, fn: Any, lane_axes: Any) -> Any:
        """What each device runs of ``fn`` (a function of its share of the lanes; ``lane_axes``: the
        lane axis of each of its outputs): ``fn`` itself, one program over all its lanes."""
        return fn

    def compiled_segment(self, mode: str, carry: Any) -> Any:
        """(the segment for this learning mode, compiled on first use; the extra arguments it takes)."""
        if mode not in self.compiled_segments:
            rehearsal = self.reincarnation.rehearsal_data() if self.reincarnation else ()
            body = make_segment(
                self.agent,
                self.env,
                self.env_params,
                self.spec,
                self.cfg,
                self.seg // self.cfg["train"]["train_every"],
                learning=mode,
                teacher_q=self.reincarnation.teacher_q() if self.reincarnation else None,
                rehearsal_count=self.reincarnation.teacher.count if self.reincarnation else 0,
            )
            body = self.per_device(body, (0, (2, 1)))  # lanes: the carry's axis 0, the steps' 2, the metrics' 1
            # the teacher's replay, when rehearsal mixes it in: one copy, replicated over the seed devices
            in_specs = (self.carry_specs,) + tuple(jax.tree.map(lambda _: PartitionSpec(), data) for data in rehearsal)
            out_specs = (self.carry_specs, (PartitionSpec(None, None, "seed"), PartitionSpec(None, "seed")))
            sharded = jax.shard_map(body, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
            seeds, devices = self.cfg["num_seeds"], self.mesh.size
            what = f"the {mode}-learning segment ({self.seg} env steps x {seeds} seeds, {devices} device(s))"
            self.compiled_segments[mode] = (
                self.session.compile(what, lambda: jax.jit(sharded, donate_argnums=0).lower(carry, *rehearsal)),
                rehearsal,
            )
        return self.compiled_segments[mode]

    def advance(self, carry: Any, step: int) -> tuple[Any, int]:
        segment, rehearsal = self.compiled_segment(learning_mode(self.cfg, step, self.seg), carry)
        with self.session.phase("segments"):
            carry, (steps_out, metrics) = segment(carry, *rehearsal)
            jax.block_until_ready(steps_out)
        with self.session.phase("bookkeeping"):
            self.write_episodes(carry, steps_out, step)
            self.write_metrics(metrics, step + self.seg)
            self.session.flush()
        return carry, step + self.seg

    def write_episodes(self, carry: Any, steps_out: Any, step: int) -> None:
        """One result_Train.csv row per episode that ended in the segment from ``step``."""
        num_seeds, seeds = self.cfg["num_seeds"], self.session.seeds
        finished_length = np.asarray(steps_out.finished_length).reshape(-1, num_seeds)
        ep_return = np.asarray(steps_out.episode_return).reshape(-1, num_seeds)
        done = finished_length > 0
        # episode number = episodes finished before this segment + running count within it
        episode_number = (np.asarray(carry.episodes) - done.sum(0)) + np.cumsum(done, axis=0)
        env_name, agent_name = self.cfg["env"]["name"], self.cfg["agent"]["name"]
        self.session.write_episodes(
            [
                env_name,
                agent_name,
                seeds[s],
                int(episode_number[t, s]),
                step + t + 1,
                float(ep_return[t, s]),
                int(finished_length[t, s]),
            ]
            for t, s in zip(*np.nonzero(done), strict=True)
        )

    def write_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """The mean of each update metric over the segment's learning blocks, one row per seed."""
        k = self.cfg["train"]["train_every"]
        metrics = {name: np.asarray(value) for name, value in metrics.items()}
        # from the schedule, not from NaN markers: a loss that is NaN for every seed must still count
        learned = step - self.seg + k * np.arange(self.seg // k) >= first_learning_block(self.cfg)
        if learned.any():
            finite = np.isfinite(metrics["loss"][learned]).all(axis=0)
            self.session.check_finite(finite, step, since=step - self.seg)
            self.session.write_metrics(step, sorted(metrics), {n: v[learned].mean(0) for n, v in metrics.items()})

    def evaluation_due(self, step: int) -> bool:
        every = self.cfg["eval"]["every"]
        return bool(every and step % every == 0) or step == self.total

    def greedy_returns(self, agent_state: Any, keys: jax.Array) -> np.ndarray:
        """[seeds, episodes] greedy returns of ``agent_state`` (one key per seed)."""
        return np.asarray(self.compiled_eval(agent_state, keys))

    def reference_returns(self, agent: Any, agent_state: Any, epsilon: float | None = None) -> np.ndarray:
        """[seeds, episodes] returns of another agent (a teacher) or at another epsilon (random play)."""
        return reincarnation.flat_reference_returns(self, agent, agent_state, epsilon)

    def offline_returns(self, agent_state: Any, done: int) -> np.ndarray:
        """[seeds, episodes] greedy returns after ``done`` offline pretraining steps."""
        if not hasattr(self, "offline_keys"):
            self.offline_keys = evaluation_keys(self.keys, reincarnation.PRETRAIN_STREAM + 1)
        return self.greedy_returns(agent_state, self.offline_keys(done))

    def evaluate_returns(self, agent_state: Any, at: int) -> np.ndarray:
        """[seeds] mean greedy returns at env step ``at``, their rows written to result_Test.csv."""
        returns = self.greedy_returns(agent_state, self.eval_keys_for(at))
        cfg, session = self.cfg, self.session
        session.write_evaluations(evaluation_rows(cfg["env"]["name"], cfg["agent"]["name"], session.seeds, at, returns))
        session.note_evaluation(at, returns)
        return returns.mean(1)

    def evaluate(self, carry: Any, step: int) -> tuple[Any, np.ndarray]:
        returns = self.evaluate_returns(carry.agent, step)
        if self.reincarnation:
            carry = self.reincarnation.after_evaluation(carry, step, returns)
        return carry, returns

    def after_segment(self, carry: Any, step: int) -> Any:
        if not resetting(self.cfg):
            return carry
        carry = reset_if_due(carry, self.cfg, step, self.reinit, self.init_keys, self.session.log)
        return jax.device_put(carry, self.carry_sharding)

    def checkpoint_meta(self, carry: Any, step: int, due: int) -> dict[str, Any]:
        return {}


__all__ = ["FlatLoop", "learning_mode", "segment_steps", "unpackable"]
