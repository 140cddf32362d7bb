"""Reincarnating RL on the host side (QDagger and its baselines, Agarwal et al. 2022), end to end.

1. The teacher: a frozen Q-network and its data (``teacher.load_teacher``), named in the log.
2. Reference scores: the teacher's greedy score and uniform random play's, measured once at the
   start (kept in ``reincarnation.json`` so a resumed run normalises as the uninterrupted one did).
3. Offline pretraining on the teacher's data before any env step (``pretraining/steps``), its
   evaluations in ``result_Offline.csv``.
4. Online, after each evaluation: QDagger's λ from each seed's teacher-normalised score (and the
   learning rate tied to it), and JSRL's shorter roll-ins.

The offline phase's jitted step (``make_pretrain``) is here too. The parts that run inside the
online segments are the agents': the distillation loss term and the λ rule in
``agents.distillation``, the teacher's actions in JSRL's roll-ins in ``agents.jsrl``, and
rehearsal batches in ``replay.sampler``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl.agents import make_agent
from frugalrl.agents.distillation import normalized_score, qdagger_lambda, tied_learning_rate
from frugalrl.agents.losses import DistillationInputs, LossInputs
from frugalrl.agents.optim import set_learning_rate
from frugalrl.agents.protocols import ValueAgent
from frugalrl.devices import seed_vmap
from frugalrl.envs import EnvSpec
from frugalrl.errors import ConfigError
from frugalrl.replay.sampler import BatchSampler
from frugalrl.runs.rundir import TEST_COLUMNS, CsvLog, evaluation_rows
from frugalrl.train.loop import (
    distilling,
    jump_starting,
    make_evaluate,
    repeat,
    tree_select,
    unrolled_updates,
)
from frugalrl.train.teacher import Teacher, load_teacher

if TYPE_CHECKING:
    from frugalrl.train.flat import FlatLoop

PRETRAIN_STREAM = 0x0FF1  # offline pretraining's sampling keys
REFERENCE_STREAM = 0x5C0E  # the teacher's and random play's reference evaluations


@dataclass
class Reincarnation:
    """A run with a teacher: its reference scores and what it does between segments."""

    cfg: dict[str, Any]
    teacher: Teacher
    scores: dict[str, float] | None = None  # the teacher's and random play's, set by ``start``
    log: Any = None  # the run's log, set by ``start``

    @classmethod
    def for_config(cls, cfg: dict[str, Any], spec: EnvSpec) -> Reincarnation | None:
        """The run's teacher, or None when the config names none."""
        if cfg["teacher"]["run"] is None:
            return None
        teacher = load_teacher(cfg, spec)
        if cfg["teacher"]["init_student"] and teacher.cfg["network"] != cfg["network"]:
            raise ConfigError(
                "config key 'teacher/init_student' needs the student's 'network' to equal the teacher's: "
                f"{teacher.cfg['network']} vs {cfg['network']}"
            )
        return cls(cfg, teacher)

    def teacher_params(self) -> Any:
        return self.teacher.params

    def teacher_q(self) -> Any:
        return self.teacher.agent.q

    def rehearsal_data(self) -> tuple[Any, ...]:
        """The teacher's replay, when rehearsal mixes it into the student's batches."""
        return (self.teacher.replay,) if self.cfg["rehearsal"]["fraction"] > 0 else ()

    def announce_teacher(self, session: Any) -> None:
        t = self.cfg["teacher"]
        session.announce(
            f"teacher: {t['run']} (seed lane {t['seed_lane']}, checkpoint at step {self.teacher.checkpoint_step}); "
            f"teacher data: {self.teacher.count} transitions ({t['dataset']})"
        )

    def start(self, loop: FlatLoop, carry: Any, resumed: bool) -> Any:
        """Reference scores (measured, or read back on resume) and, in a new run, offline pretraining."""
        session = loop.session
        self.log = session.log
        path = session.path / "reincarnation.json"
        if resumed and path.exists():
            # a resumed run keeps the scores it started with (exact resume), from the same teacher
            self.scores = json.loads(path.read_text())
            if self.scores.get("teacher_checkpoint_step") != self.teacher.checkpoint_step:
                raise ConfigError(
                    f"config key 'teacher/run': the teacher's newest checkpoint is now at step "
                    f"{self.teacher.checkpoint_step}, this run started from the one at step "
                    f"{self.scores.get('teacher_checkpoint_step')}; rerun with --fresh to start over"
                )
        else:
            self.scores = reference_scores(self.teacher, loop, carry)
            self.scores["teacher_checkpoint_step"] = self.teacher.checkpoint_step
            path.write_text(json.dumps(self.scores, indent=1))
        session.announce(f"teacher score {self.scores['teacher']:.2f}, random score {self.scores['random']:.2f}")
        if self.scores["teacher"] <= self.scores["random"]:
            session.warn(
                "warning: the teacher scores no better than random play, so teacher-normalised scores (and "
                "QDagger's lambda) are meaningless; pick another 'teacher/seed_lane' or a better teacher"
            )
        if self.cfg["pretraining"]["steps"] and not resumed:
            began, compiled_before = time.perf_counter(), session.compile_seconds
            carry = pretrain_offline(self, loop, carry)
            compile_seconds = session.compile_seconds - compiled_before
            took = time.perf_counter() - began - compile_seconds
            session.log.info("pretraining took %.2f s (compile %.2f s)", took, compile_seconds)
            carry = jax.device_put(carry, loop.carry_sharding)  # as the compiled segments expect it
        return carry

    def after_evaluation(self, carry: Any, step: int, returns: np.ndarray) -> Any:
        """QDagger's λ (and the tied lr) from the evaluation; JSRL's shorter roll-ins."""
        if distilling(self.cfg) and self.cfg["distillation"]["schedule"] == "decay":
            carry = self.update_lambda(carry, step, returns)
        if jump_starting(self.cfg):  # JSRL's curriculum: shorter roll-ins after each evaluation
            shrunk = (np.asarray(carry.jsrl.max_roll_in) * self.cfg["jsrl"]["roll_in_decay"]).astype(np.int32)
            max_roll_in = jax.device_put(shrunk, carry.jsrl.max_roll_in.sharding)
            carry = carry._replace(jsrl=carry.jsrl._replace(max_roll_in=max_roll_in))
        return carry

    def update_lambda(self, carry: Any, at: int, returns: np.ndarray) -> Any:
        """QDagger: lambda (and the tied lr) of each seed from its evaluation score."""
        cfg, scores = self.cfg, self.scores
        lam = np.asarray(carry.distill_lambda, np.float64)
        normalized = [normalized_score(float(r), scores["random"], scores["teacher"]) for r in returns]
        decay = cfg["distillation"]["decay_period"]
        new = np.array(
            [qdagger_lambda(float(old), score, at, decay) for old, score in zip(lam, normalized, strict=True)],
            np.float32,
        )
        self.log.info("step %d: normalised scores %s -> lambda %s", at, np.round(normalized, 3).tolist(), new.tolist())
        carry = carry._replace(distill_lambda=jax.device_put(new, carry.distill_lambda.sharding))
        if cfg["distillation"]["lr_low"] is not None:
            lr = tied_learning_rate(new, cfg["optimizer"]["lr"], cfg["distillation"]["lr_low"]).astype(np.float32)
            opt_state = set_learning_rate(carry.agent.opt_state, jax.device_put(lr, carry.distill_lambda.sharding))
            carry = carry._replace(agent=carry.agent._replace(opt_state=opt_state))
        return carry


def reference_scores(teacher: Teacher, loop: Any, carry: Any) -> dict[str, float]:
    """The teacher's score (evaluated once, as the student will be) and uniform random play's,
    each from ``loop.reference_returns`` (the flat loop's or the Atari loop's evaluation)."""
    num_seeds = loop.keys.shape[0]
    per_seed = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds,) + x.shape), teacher.params)
    teacher_state = teacher.agent.init(jax.random.PRNGKey(0))._replace(params=per_seed, target_params=per_seed)
    teacher_state = teacher_state._replace(opt_state=())
    # means as XLA sums them (not NumPy's pairwise float32 sum): the scores earlier runs recorded
    teacher_returns = loop.reference_returns(teacher.agent, teacher_state)
    random_score = loop.cfg["teacher"]["random_score"]
    if random_score is None:
        random_score = float(jnp.mean(loop.reference_returns(loop.agent, carry.agent, epsilon=1.0)))
    return {"teacher": float(jnp.mean(teacher_returns)), "random": float(random_score)}


def flat_reference_returns(loop: FlatLoop, agent: ValueAgent, agent_state: Any, epsilon: float | None) -> np.ndarray:
    """[seeds, episodes] returns of ``agent`` in the flat loop's env, from the reference stream's keys."""
    cfg = loop.cfg if epsilon is None else {**loop.cfg, "eval": {**loop.cfg["eval"], "epsilon": epsilon}}
    reference_keys = jax.vmap(lambda key: jax.random.fold_in(key, REFERENCE_STREAM))(loop.keys)
    evaluate = make_evaluate(agent, loop.env, loop.env_params, loop.spec, cfg)
    return np.asarray(jax.jit(evaluate)(agent_state, reference_keys))


def make_pretrain(
    agent: ValueAgent, teacher_q: Any, cfg: dict[str, Any], num_steps: int, count: int, unrolled: bool = False
):
    """Offline pretraining on the teacher's data (QDagger's phase before any env step).

    Returns ``(agent_state[seeds], teacher[seeds], replay, keys[seeds], grad_step) ->
    (agent_state, keys, grad_step, metrics)`` running ``num_steps`` gradient steps: each samples a
    uniform batch from the teacher's replay ``replay`` (one buffer shared by all seeds, ``count``
    transitions written), takes the TD loss (unless ``pretraining/td`` is off) plus
    ``distillation/coefficient`` times the distillation loss at lambda = 1, and syncs the target
    every ``pretraining/target_every`` gradient steps. ``agent`` must not hold loss terms that
    need the online loop's inputs (consolidation). ``unrolled``: as straight-line code, one seed
    after another (``loop.unrolled_updates``; then ``num_steps`` should be small).
    """
    pcfg = cfg["pretraining"]
    alpha, period = cfg["distillation"]["coefficient"], pcfg["target_every"]
    sampler = dataclasses.replace(BatchSampler.from_config(cfg), kind="uniform")
    sample = jax.vmap(lambda replay, key: sampler.sample(replay, key, count).batch, in_axes=(None, 0))
    td_target, update = seed_vmap(agent.td_target, unrolled=unrolled), seed_vmap(agent.update, unrolled=unrolled)
    teacher_q_values = seed_vmap(teacher_q.apply, unrolled=unrolled)
    split3 = jax.vmap(lambda key: jax.random.split(key, 3))

    def pretrain(agent_state: Any, teacher: Any, replay: Any, key: jax.Array, grad_step: jax.Array) -> tuple[Any, ...]:
        seeds = key.shape[0]

        def step(inner: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], Any]:
            agent_state, key, grad_step = inner
            keys = split3(key)
            batch = sample(replay, keys[:, 1])
            target = td_target(agent_state, batch)
            inputs = LossInputs(td_weight=jnp.full(seeds, 1.0 if pcfg["td"] else 0.0))
            if alpha > 0:
                teacher_values = teacher_q_values(teacher, batch.obs)
                inputs = inputs._replace(distillation=DistillationInputs(teacher_values, jnp.full(seeds, alpha)))
            agent_state, metrics = update(agent_state, batch, keys[:, 2], target, inputs)
            grad_step = grad_step + 1
            # a hard copy, as the reference's pretraining did, whatever agent/tau says for online learning
            synced = agent_state._replace(target_params=agent_state.params)
            agent_state = tree_select(grad_step % period == 0, synced, agent_state)
            return (agent_state, keys[:, 0], grad_step), metrics

        (agent_state, key, grad_step), metrics = repeat(step, (agent_state, key, grad_step), None, num_steps, unrolled)
        return agent_state, key, grad_step, jax.tree.map(lambda x: x.mean(0), metrics)

    return pretrain


def pretrain_offline(reincarnation: Reincarnation, loop: Any, carry: Any) -> Any:
    """QDagger's offline phase on the teacher data; evaluations (``loop.offline_returns``) go to
    ``result_Offline.csv``.

    Runs before any env step and is not checkpointed on its own: a run killed while pretraining
    redoes it (deterministically) when resumed. Unrolled updates (``loop.unrolled_updates``) run
    one jitted gradient step per call, from a host loop.
    """
    cfg, session, teacher = loop.cfg, loop.session, reincarnation.teacher
    pcfg = cfg["pretraining"]
    steps = pcfg["steps"]
    chunk = pcfg["eval_every"] or steps
    unrolled = unrolled_updates(cfg)
    per_call = 1 if unrolled else chunk
    offline_agent = make_agent(cfg, loop.spec, offline=True)
    pretrain = jax.jit(make_pretrain(offline_agent, teacher.agent.q, cfg, per_call, teacher.count, unrolled))
    key = jax.vmap(lambda key: jax.random.fold_in(key, PRETRAIN_STREAM))(loop.keys)
    grad_step = jnp.zeros((), jnp.int32)
    compiled = session.compile(
        "offline pretraining", lambda: pretrain.lower(carry.agent, carry.teacher, teacher.replay, key, grad_step)
    )
    offline_log = CsvLog(session.path / "result_Offline.csv", TEST_COLUMNS)
    offline_log.open(None)
    agent_state = carry.agent
    if pcfg["lr"] is not None:
        agent_state = agent_state._replace(opt_state=set_learning_rate(agent_state.opt_state, pcfg["lr"]))
    try:
        for done in range(chunk, steps + 1, chunk):
            for _ in range(chunk // per_call):
                agent_state, key, grad_step, metrics = compiled(
                    agent_state, carry.teacher, teacher.replay, key, grad_step
                )
            returns = loop.offline_returns(agent_state, done)
            offline_log.write(evaluation_rows(cfg["env"]["name"], cfg["agent"]["name"], session.seeds, done, returns))
            offline_log.flush()
            mean = float(returns.mean())
            extra = ""
            if reincarnation.scores is not None:
                score = normalized_score(mean, reincarnation.scores["random"], reincarnation.scores["teacher"])
                extra = f", teacher-normalised {score:.3f}"
            td_loss = float(np.mean(metrics["td_loss"]))
            session.announce(f"pretraining step {done}: greedy return {mean:.2f}{extra}, td loss {td_loss:.4f}")
    finally:
        offline_log.close()
    # the online phase starts from a target equal to the pretrained online network (a hard copy,
    # into buffers of its own: the segments donate the carry, and donation needs unaliased leaves)
    agent_state = agent_state._replace(target_params=jax.tree.map(jnp.copy, agent_state.params))
    if pcfg["lr"] is not None:  # the online phase starts at optimizer/lr (lambda = 1)
        agent_state = agent_state._replace(opt_state=set_learning_rate(agent_state.opt_state, cfg["optimizer"]["lr"]))
    return carry._replace(agent=agent_state)


__all__ = [
    "PRETRAIN_STREAM",
    "REFERENCE_STREAM",
    "Reincarnation",
    "make_pretrain",
    "pretrain_offline",
    "reference_scores",
]
