"""Run one resolved config: the host side of the loop.

Builds env, agent and the jitted segment; shards the seed axis over the local devices (one per
CPU core, see ``frugalrl.devices``); runs segments under a progress bar; writes results,
evaluations and checkpoints; resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from frugalrl import __version__, envs
from frugalrl.agents import make_agent
from frugalrl.agents.distillation import normalized_score, qdagger_lambda, tied_learning_rate
from frugalrl.agents.optim import set_learning_rate
from frugalrl.config.schema import EPISODIC_AGENTS, ConfigError, reset_period_env_steps
from frugalrl.devices import rolled_threefry, unroll_threefry_on_cpu
from frugalrl.replay import fifo
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import (
    FINISHED_PREFIX,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
    CsvLog,
    RunDir,
    available_memory_bytes,
    checkpoint_rows,
    evaluation_rows,
    peak_memory_mb,
)
from frugalrl.train.loop import (
    agent_init_keys,
    distilling,
    first_learning_step,
    init_carry,
    jump_starting,
    make_evaluate,
    make_pretrain,
    make_segment,
    seed_keys,
)
from frugalrl.train.resets import make_reinit, reset_if_due, reset_schedule, resetting

MAX_SEGMENT_STEPS = 50_000
MIN_SEGMENT_STEPS = 2_000
EVAL_STREAM = 0x5EED  # folded into each seed's key for evaluation, apart from training randomness
PRETRAIN_STREAM = 0x0FF1  # offline pretraining's sampling keys
REFERENCE_STREAM = 0x5C0E  # the teacher's and random play's reference evaluations


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a buffer that does not fit); the message says why."""


@dataclass
class Summary:
    run_dir: Path
    final_returns: np.ndarray  # [seeds] mean greedy return of the final evaluation
    seeds: list[int]
    env_steps: int
    compile_seconds: float
    run_seconds: float
    resumed_from: int | None

    def table(self) -> str:
        lines = [f"{'seed':>6}  {'final greedy return':>20}"]
        lines += [f"{s:>6}  {r:>20.2f}" for s, r in zip(self.seeds, self.final_returns, strict=True)]
        mean, std = float(np.mean(self.final_returns)), float(np.std(self.final_returns))
        lines.append(f"{'mean':>6}  {mean:>13.2f} ± {std:.2f} (std over {len(self.seeds)} seeds)")
        return "\n".join(lines)


def refuse_if_too_big(needed: float, what: str, knobs: str) -> None:
    """TrainingError before allocating when ``needed`` bytes exceed 80% of the available memory."""
    available = available_memory_bytes()
    if available is not None and needed > 0.8 * available:
        raise TrainingError(
            f"{what} need {needed / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB of memory is available; "
            f"lower {knobs}"
        )


def human_bytes(count: float) -> str:
    """1536 -> '1.50 KiB'."""
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} B" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    return f"{count:.2f} GiB"


def segment_steps(cfg: dict[str, Any]) -> int:
    """Env steps per jitted call: divides the total and every eval/checkpoint period, and if it can
    without becoming tiny, the step where learning starts (so no segment needs a branch)."""
    k = cfg["train"]["train_every"]
    periods = [cfg["total_steps"]] + [p for p in (cfg["eval"]["every"], cfg["checkpoint"]["every"]) if p > 0]
    if resetting(cfg) and cfg["reset"]["schedule"] == "env_steps":
        periods.append(reset_period_env_steps(cfg))
    seg = math.gcd(*periods)
    learning_from = first_learning_step(cfg)
    if 0 < learning_from < cfg["total_steps"] and math.gcd(seg, learning_from) >= min(seg, MIN_SEGMENT_STEPS):
        seg = math.gcd(seg, learning_from)
    seg_blocks, limit = seg // k, max(MAX_SEGMENT_STEPS // k, 1)
    return k * max(d for d in range(1, min(seg_blocks, limit) + 1) if seg_blocks % d == 0)


def learning_mode(cfg: dict[str, Any], start: int, seg: int) -> str:
    learning_from = first_learning_step(cfg)
    return "always" if start >= learning_from else "never" if start + seg <= learning_from else "mixed"


def seed_mesh(num_seeds: int) -> Mesh:
    """The local devices the seeds are split over: as many as divide num_seeds evenly."""
    devices = jax.local_devices()
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return Mesh(np.array(devices[:count]), ("seed",))


def run_mesh(num_seeds: int, log: Any, say: Any) -> Mesh:
    """``seed_mesh``, saying in the run's log and on screen when some devices are left idle."""
    mesh = seed_mesh(num_seeds)
    if note := idle_devices_note(num_seeds, mesh):
        log.warning(note)
        say(note)
    return mesh


def idle_devices_note(num_seeds: int, mesh: Mesh) -> str | None:
    """A hint when the seeds cannot be split over every local device (each shard must be equal)."""
    available, used = len(jax.local_devices()), mesh.devices.size
    if used == available:
        return None
    if num_seeds < available:
        return (
            f"{num_seeds} seed(s) on {available} devices: {available - used} sit idle; with large networks, "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_seeds} lets each seed's matrix products use "
            "more cores (BENCHMARKS.md, SAC)"
        )
    better = sorted({num_seeds + (-num_seeds) % available, max(available, num_seeds - num_seeds % available)})
    return (
        f"{num_seeds} seeds split evenly over {used} of {available} devices, so {available - used} sit idle; "
        f"num_seeds {' or '.join(map(str, better))} would use them all"
    )


def _leaf_spec(leaf: Any) -> PartitionSpec:
    return PartitionSpec("seed") if np.ndim(leaf) > 0 else PartitionSpec()


def check_same_config(saved: dict[str, Any], cfg: dict[str, Any], run_path: Path) -> None:
    """Refuse to resume or report a run directory that holds another config (bookkeeping keys aside)."""
    from frugalrl.config import describe, flatten

    ignore = {"config_idx", "num_combinations", "run", "experiment", "frugalrl_version"}
    if cfg.get("generate_random_seed"):
        ignore.add("seed")
    old, new = flatten(saved), flatten(cfg)
    # a key added to the schema after the run was saved keeps the old behaviour at its default
    defaults = {path: default for path, default, _ in describe()}
    for key in sorted(set(old) | set(new)):
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        if key not in ignore and old.get(key, "<absent>") != new.get(key, "<absent>"):
            raise ConfigError(
                f"{run_path} holds a run of a different config ('{key}': {old.get(key, '<absent>')!r} -> "
                f"{new.get(key, '<absent>')!r}); rerun with --fresh to replace it, or use another --logs directory"
            )


def run(
    cfg: dict[str, Any], run_path: Path, *, fresh: bool = False, progress: bool = True, echo: Any = None
) -> Summary:
    """Train (or resume, or report a finished) run of a resolved config in ``run_path``."""
    say = echo or (lambda text: print(text, file=sys.stderr))
    began = time.perf_counter()
    envs.check_runnable(cfg)  # before any run directory exists
    unroll_threefry_on_cpu()
    rundir = RunDir(run_path)
    if fresh and run_path.exists():
        shutil.rmtree(run_path)
    saved = rundir.saved_config()
    if saved is not None:
        check_same_config(saved, cfg, run_path)
        cfg = {**cfg, "seed": saved["seed"]}
    elif cfg["generate_random_seed"]:
        cfg = {**cfg, "seed": int(np.random.default_rng().integers(1_000_000))}
    cfg = {**cfg, "frugalrl_version": __version__}
    if cfg["agent"]["name"] in EPISODIC_AGENTS:  # memory agents learn from whole episodes
        from frugalrl.train.episodic import run_episodic

        return run_episodic(cfg, rundir, progress=progress, say=say, began=began)
    if envs.is_host_env(cfg["env"]["name"]):  # the DeepMind Control Suite: one host env per seed
        from frugalrl.train.host import run_host

        return run_host(cfg, rundir, progress=progress, say=say, began=began)
    # env, agent and teacher before the run directory is written: a bad teacher leaves nothing behind
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    num_seeds, total = cfg["num_seeds"], cfg["total_steps"]
    run_index = int(cfg.get("run", 0))
    seeds = [run_index * num_seeds + lane for lane in range(num_seeds)]
    keys = seed_keys(cfg["seed"], run_index, num_seeds)
    teacher = None
    if cfg["teacher"]["run"] is not None:
        from frugalrl.train.teacher import load_teacher  # late import: teacher imports this module's neighbours

        teacher = load_teacher(cfg, spec)
        if cfg["teacher"]["init_student"] and teacher.cfg["network"] != cfg["network"]:
            raise ConfigError(
                "config key 'teacher/init_student' needs the student's 'network' to equal the teacher's: "
                f"{teacher.cfg['network']} vs {cfg['network']}"
            )
    teacher_params = teacher.params if teacher is not None else None
    teacher_q = teacher.agent.q if teacher is not None else None
    rundir.write_config(cfg)
    log = rundir.logger()
    if teacher is not None:
        message = (
            f"teacher: {cfg['teacher']['run']} (seed lane {cfg['teacher']['seed_lane']}, checkpoint at step "
            f"{teacher.checkpoint_step}); teacher data: {teacher.count} transitions ({cfg['teacher']['dataset']})"
        )
        log.info(message)
        say(message)

    # memory: shapes first, refuse before allocating
    shapes = jax.eval_shape(lambda k: init_carry(agent, env, env_params, spec, cfg, k, teacher_params), keys)
    memory = fifo.memory_bytes(shapes.replay, num_seeds)
    replay_bytes, per_transition = memory["total_bytes"], memory["bytes_per_transition"]
    log.info("frugalrl %s, jax %s, devices %s", __version__, jax.__version__, jax.local_devices())
    log.info("config %s", json.dumps(cfg, sort_keys=True))
    log.info("XLA compilation cache: %s", jax.config.jax_compilation_cache_dir or "off")
    message = (
        f"replay: {per_transition:.1f} bytes per transition, {human_bytes(replay_bytes / num_seeds)} per seed, "
        f"{human_bytes(replay_bytes)} for {num_seeds} seeds"
    )
    log.info(message)
    say(message)
    refuse_if_too_big(replay_bytes, "the replay buffers", "'replay/capacity' or 'num_seeds'")

    mesh = run_mesh(num_seeds, log, say)
    carry_specs = jax.tree.map(_leaf_spec, shapes)
    carry_sharding = jax.tree.map(lambda s: NamedSharding(mesh, s), carry_specs)

    train_log = CsvLog(run_path / "result_Train.csv", TRAIN_COLUMNS)
    test_log = CsvLog(run_path / "result_Test.csv", TEST_COLUMNS)
    metric_names = None
    restored = checkpoint.restore_latest(rundir.checkpoints, shapes)
    if restored is None:
        carry = init_carry(agent, env, env_params, spec, cfg, keys, teacher_params)
        rows, elapsed_before, resumed_from = {"train": None, "test": None, "metrics": None}, 0.0, None
    else:
        carry, meta = restored
        rows, elapsed_before, resumed_from = meta["rows"], meta["elapsed_seconds"], int(meta["step"])
        log.info("resuming from the checkpoint at step %d", resumed_from)
        say(f"resuming {run_path} from step {resumed_from}")
    carry = jax.device_put(carry, carry_sharding)
    train_log.open(rows["train"])
    test_log.open(rows["test"])

    seg = segment_steps(cfg)
    k = cfg["train"]["train_every"]
    step_spec = PartitionSpec(None, None, "seed")
    compiled_segments: dict[str, Any] = {}
    rehearsing = cfg["rehearsal"]["fraction"] > 0
    segment_extra = (teacher.replay,) if rehearsing else ()
    compile_seconds = 0.0

    def compiled_segment(mode: str, carry: Any) -> Any:
        """The segment for this learning mode, compiled on first use (its time logged apart)."""
        nonlocal compile_seconds
        if mode not in compiled_segments:
            begin = time.perf_counter()
            count = teacher.count if teacher is not None else 0
            body = make_segment(
                agent, env, env_params, spec, cfg, seg // k, learning=mode, teacher_q=teacher_q, rehearsal_count=count
            )
            in_specs: tuple[Any, ...] = (carry_specs,)
            if rehearsing:  # the teacher's replay: one copy, replicated over the seed devices
                in_specs += (jax.tree.map(lambda _: PartitionSpec(), teacher.replay),)
            sharded = jax.shard_map(
                body,
                mesh=mesh,
                in_specs=in_specs,
                out_specs=(carry_specs, (step_spec, PartitionSpec(None, "seed"))),
                check_vma=False,
            )
            lowered = jax.jit(sharded, donate_argnums=0).lower(carry, *segment_extra)
            compiled_segments[mode] = lowered.compile()
            took = time.perf_counter() - begin
            compile_seconds += took
            log.info(
                "compiled the %s-learning segment (%d env steps x %d seeds, %d device(s)) in %.2f s",
                mode,
                seg,
                num_seeds,
                mesh.size,
                took,
            )
        return compiled_segments[mode]

    evaluate = jax.shard_map(
        make_evaluate(agent, env, env_params, spec, cfg),
        mesh=mesh,
        in_specs=(PartitionSpec("seed"), PartitionSpec("seed")),
        out_specs=PartitionSpec("seed"),
        check_vma=False,
    )
    eval_keys_for = jax.jit(
        lambda step: jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, EVAL_STREAM), step))(keys)
    )

    start = time.perf_counter()
    with rolled_threefry():  # a few evaluations per run: compile time matters more than loop speed
        compiled_eval = jax.jit(evaluate).lower(carry.agent, eval_keys_for(0)).compile()
    compile_seconds += time.perf_counter() - start

    metrics_log = None
    env_name, agent_name = cfg["env"]["name"], cfg["agent"]["name"]
    step = int(carry.env_step)
    final_returns = None

    def evaluate_now(at: int) -> np.ndarray:
        returns = np.asarray(compiled_eval(carry.agent, eval_keys_for(at)))
        test_log.write(evaluation_rows(env_name, agent_name, seeds, at, returns))
        test_log.flush()
        log.info("step %d: greedy return %.2f ± %.2f over seeds", at, returns.mean(), returns.mean(1).std())
        return returns.mean(1)

    scores = None
    scores_path = run_path / "reincarnation.json"
    if teacher is not None and restored is not None and scores_path.exists():
        # a resumed run keeps the scores it started with (exact resume), from the same teacher
        scores = json.loads(scores_path.read_text())
        if scores.get("teacher_checkpoint_step") != teacher.checkpoint_step:
            raise ConfigError(
                f"config key 'teacher/run': the teacher's newest checkpoint is now at step {teacher.checkpoint_step}, "
                f"this run started from the one at step {scores.get('teacher_checkpoint_step')}; "
                "rerun with --fresh to start over"
            )
    elif teacher is not None:
        scores = reference_scores(teacher, agent, carry, env, env_params, spec, cfg, keys, mesh)
        scores["teacher_checkpoint_step"] = teacher.checkpoint_step
        scores_path.write_text(json.dumps(scores, indent=1))
    if scores is not None:
        log.info("teacher score %.2f, random score %.2f", scores["teacher"], scores["random"])
        say(f"teacher score {scores['teacher']:.2f}, random score {scores['random']:.2f}")
        if scores["teacher"] <= scores["random"]:
            warning = (
                "warning: the teacher scores no better than random play, so teacher-normalised scores (and "
                "QDagger's lambda) are meaningless; pick another 'teacher/seed_lane' or a better teacher"
            )
            log.warning(warning)
            say(warning)
    if cfg["pretraining"]["steps"] and restored is None:
        tick = time.perf_counter()
        carry, pretrain_compile = pretrain_offline(
            carry, teacher, agent, env, env_params, spec, cfg, keys, run_path, compiled_eval, seeds, scores, say, log
        )
        carry = jax.device_put(carry, carry_sharding)  # as the compiled segments expect it
        compile_seconds += pretrain_compile
        phase_pretraining = time.perf_counter() - tick - pretrain_compile
        log.info("pretraining took %.2f s (compile %.2f s)", phase_pretraining, pretrain_compile)

    def update_lambda(carry: Any, at: int, returns: np.ndarray) -> Any:
        """QDagger: lambda (and the tied lr) of each seed from its evaluation score."""
        lam = np.asarray(carry.distill_lambda, np.float64)
        normalized = [normalized_score(float(r), scores["random"], scores["teacher"]) for r in returns]
        new = np.array(
            [
                qdagger_lambda(float(old), score, at, cfg["distillation"]["decay_period"])
                for old, score in zip(lam, normalized, strict=True)
            ],
            np.float32,
        )
        log.info("step %d: normalised scores %s -> lambda %s", at, np.round(normalized, 3).tolist(), new.tolist())
        carry = carry._replace(distill_lambda=jax.device_put(new, carry.distill_lambda.sharding))
        if cfg["distillation"]["lr_low"] is not None:
            lr = tied_learning_rate(new, cfg["optimizer"]["lr"], cfg["distillation"]["lr_low"]).astype(np.float32)
            opt_state = set_learning_rate(carry.agent.opt_state, jax.device_put(lr, carry.distill_lambda.sharding))
            carry = carry._replace(agent=carry.agent._replace(opt_state=opt_state))
        return carry

    if resetting(cfg):
        reinit = jax.jit(make_reinit(agent, cfg))
        init_keys = agent_init_keys(keys)
        planned = reset_schedule(cfg, total - 1)
        shown = ", ".join(map(str, planned[:8])) + (", ..." if len(planned) > 8 else "")
        message = f"resets ({cfg['reset']['schedule']} schedule): {len(planned)} at env steps {shown or 'none'}"
        log.info(message)
        say(message)

    if cfg["eval"]["at_start"] and restored is None:
        evaluate_now(0)  # a starting point only: lambda and JSRL's roll-ins start from their initial values
    bar = _progress(total, step, num_seeds, enabled=progress)
    run_start = time.perf_counter()
    compile_before_run = compile_seconds
    phase = dict.fromkeys(("segments", "bookkeeping", "evaluation", "checkpoints"), 0.0)
    try:
        while step < total:
            segment = compiled_segment(learning_mode(cfg, step, seg), carry)
            tick = time.perf_counter()
            carry, (steps_out, metrics) = segment(carry, *segment_extra)
            jax.block_until_ready(steps_out)
            phase["segments"] += time.perf_counter() - tick
            tick = time.perf_counter()
            finished_length = np.asarray(steps_out.finished_length).reshape(-1, num_seeds)
            ep_return = np.asarray(steps_out.episode_return).reshape(-1, num_seeds)
            done = finished_length > 0
            # episode number = episodes finished before this segment + running count within it
            episode_number = (np.asarray(carry.episodes) - done.sum(0)) + np.cumsum(done, axis=0)
            t_idx, s_idx = np.nonzero(done)
            train_log.write(
                [
                    env_name,
                    agent_name,
                    seeds[s],
                    int(episode_number[t, s]),
                    step + t + 1,
                    float(ep_return[t, s]),
                    int(finished_length[t, s]),
                ]
                for t, s in zip(t_idx, s_idx, strict=True)
            )
            step += seg
            metrics = {name: np.asarray(value) for name, value in metrics.items()}
            # from the schedule, not from NaN markers: a loss that is NaN for every seed must still count
            block_starts = step - seg + k * np.arange(seg // k)
            learned = block_starts >= first_learning_step(cfg)
            if learned.any():
                bad = ~np.isfinite(metrics["loss"][learned]).all(axis=0)
                if bad.any():
                    raise TrainingError(
                        f"the loss of seed(s) {[seeds[s] for s in np.nonzero(bad)[0]]} became NaN or inf between "
                        f"steps {step - seg} and {step}; lower 'optimizer/lr' or set 'optimizer/max_grad_norm'. "
                        "Results and checkpoints up to the last checkpoint are kept."
                    )
                if metrics_log is None:
                    metric_names = sorted(metrics)
                    metrics_log = CsvLog(run_path / "metrics.csv", ["seed", "step"] + metric_names)
                    metrics_log.open(rows["metrics"])
                means = {n: metrics[n][learned].mean(0) for n in metric_names}
                metrics_log.write(
                    [seeds[s], step] + [float(means[n][s]) for n in metric_names] for s in range(num_seeds)
                )
            train_log.flush()
            if metrics_log is not None:
                metrics_log.flush()
            phase["bookkeeping"] += time.perf_counter() - tick
            tick = time.perf_counter()
            if (cfg["eval"]["every"] and step % cfg["eval"]["every"] == 0) or step == total:
                final_returns = evaluate_now(step)
                if distilling(cfg) and cfg["distillation"]["schedule"] == "decay":
                    carry = update_lambda(carry, step, final_returns)
                if jump_starting(cfg):  # JSRL's curriculum: shorter roll-ins after each evaluation
                    shrunk = (np.asarray(carry.jsrl.max_roll_in) * cfg["jsrl"]["roll_in_decay"]).astype(np.int32)
                    max_roll_in = jax.device_put(shrunk, carry.jsrl.max_roll_in.sharding)
                    carry = carry._replace(jsrl=carry.jsrl._replace(max_roll_in=max_roll_in))
                bar.set_postfix_str(f"greedy return {final_returns.mean():.1f}", refresh=False)
            phase["evaluation"] += time.perf_counter() - tick
            if resetting(cfg):
                carry = jax.device_put(reset_if_due(carry, cfg, step, reinit, init_keys, log), carry_sharding)
            tick = time.perf_counter()
            periodic = cfg["checkpoint"]["every"] and step % cfg["checkpoint"]["every"] == 0 and step < total
            if periodic or (cfg["checkpoint"]["final"] and step == total):
                checkpoint.save(
                    rundir.checkpoints,
                    step,
                    carry,
                    {
                        "rows": checkpoint_rows(train_log, test_log, metrics_log),
                        "elapsed_seconds": elapsed_before + time.perf_counter() - began,
                    },
                    cfg["checkpoint"]["keep"],
                )
            phase["checkpoints"] += time.perf_counter() - tick
            bar.update(seg)
    finally:
        bar.close()
        for handle in (train_log, test_log, metrics_log):
            if handle is not None:
                handle.close()
    jax.block_until_ready(carry)
    # segments compiled during the loop are compile time, not run time
    run_seconds = time.perf_counter() - run_start - (compile_seconds - compile_before_run)
    if final_returns is None:  # resumed at the end: read the last evaluation back
        final_returns = _last_eval(run_path, seeds)
    log.info(
        "compile %.2f s, run %.2f s (%.0f env steps/s per seed, %.0f over all seeds)",
        compile_seconds,
        run_seconds,
        (total - (resumed_from or 0)) / max(run_seconds, 1e-9),
        num_seeds * (total - (resumed_from or 0)) / max(run_seconds, 1e-9),
    )
    log.info("run time by phase: %s", ", ".join(f"{name} {secs:.2f} s" for name, secs in phase.items()))
    log.info("Memory usage: %.2f MB", peak_memory_mb())
    log.info("%s %.2f minutes", FINISHED_PREFIX, (elapsed_before + time.perf_counter() - began) / 60)
    return Summary(run_path, final_returns, seeds, total, compile_seconds, run_seconds, resumed_from)


def reference_scores(
    teacher: Any,
    agent: Any,
    carry: Any,
    env: Any,
    env_params: Any,
    spec: Any,
    cfg: dict[str, Any],
    keys: jax.Array,
    mesh: Mesh,
) -> dict[str, float]:
    """The teacher's score (evaluated once, as the student will be) and uniform random play's."""
    num_seeds = keys.shape[0]
    reference_keys = jax.vmap(lambda key: jax.random.fold_in(key, REFERENCE_STREAM))(keys)
    per_seed = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds,) + x.shape), teacher.params)
    teacher_state = teacher.agent.init(jax.random.PRNGKey(0))._replace(params=per_seed, target_params=per_seed)
    teacher_state = teacher_state._replace(opt_state=())
    teacher_returns = jax.jit(make_evaluate(teacher.agent, env, env_params, spec, cfg))(teacher_state, reference_keys)
    random_score = cfg["teacher"]["random_score"]
    if random_score is None:
        random_cfg = {**cfg, "eval": {**cfg["eval"], "epsilon": 1.0}}
        random_returns = jax.jit(make_evaluate(agent, env, env_params, spec, random_cfg))(carry.agent, reference_keys)
        random_score = float(np.mean(random_returns))
    return {"teacher": float(np.mean(teacher_returns)), "random": float(random_score)}


def pretrain_offline(
    carry: Any,
    teacher: Any,
    agent: Any,
    env: Any,
    env_params: Any,
    spec: Any,
    cfg: dict[str, Any],
    keys: jax.Array,
    run_path: Path,
    compiled_eval: Any,
    seeds: list[int],
    scores: dict[str, float] | None,
    say: Any,
    log: Any,
) -> tuple[Any, float]:
    """QDagger's offline phase on the teacher data; evaluations go to ``result_Offline.csv``.

    Runs before any env step and is not checkpointed on its own: a run killed while pretraining
    redoes it (deterministically) when resumed.
    """
    pcfg = cfg["pretraining"]
    steps = pcfg["steps"]
    chunk = pcfg["eval_every"] or steps
    offline_agent = make_agent(cfg, spec, offline=True)
    begin = time.perf_counter()
    pretrain = jax.jit(make_pretrain(offline_agent, teacher.agent.q, cfg, chunk, teacher.count))
    key = jax.vmap(lambda key: jax.random.fold_in(key, PRETRAIN_STREAM))(keys)
    grad_step = jnp.zeros((), jnp.int32)
    compiled = pretrain.lower(carry.agent, carry.teacher, teacher.replay, key, grad_step).compile()
    compile_seconds = time.perf_counter() - begin
    offline_log = CsvLog(run_path / "result_Offline.csv", TEST_COLUMNS)
    offline_log.open(None)
    env_name, agent_name = cfg["env"]["name"], cfg["agent"]["name"]
    agent_state = carry.agent
    if pcfg["lr"] is not None:
        agent_state = agent_state._replace(opt_state=set_learning_rate(agent_state.opt_state, pcfg["lr"]))
    try:
        for done in range(chunk, steps + 1, chunk):
            agent_state, key, grad_step, metrics = compiled(agent_state, carry.teacher, teacher.replay, key, grad_step)
            returns = np.asarray(compiled_eval(agent_state, _offline_eval_keys(keys, done)))
            offline_log.write(evaluation_rows(env_name, agent_name, seeds, done, returns))
            offline_log.flush()
            mean = float(returns.mean())
            extra = ""
            if scores is not None:
                extra = f", teacher-normalised {normalized_score(mean, scores['random'], scores['teacher']):.3f}"
            td_loss = float(np.mean(metrics["td_loss"]))
            message = f"pretraining step {done}: greedy return {mean:.2f}{extra}, td loss {td_loss:.4f}"
            log.info(message)
            say(message)
    finally:
        offline_log.close()
    # the online phase starts from a target equal to the pretrained online network (a hard copy,
    # into buffers of its own: the segments donate the carry, and donation needs unaliased leaves)
    agent_state = agent_state._replace(target_params=jax.tree.map(jnp.copy, agent_state.params))
    if pcfg["lr"] is not None:  # the online phase starts at optimizer/lr (lambda = 1)
        agent_state = agent_state._replace(opt_state=set_learning_rate(agent_state.opt_state, cfg["optimizer"]["lr"]))
    return carry._replace(agent=agent_state), compile_seconds


def _offline_eval_keys(keys: jax.Array, at: int) -> jax.Array:
    return jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, PRETRAIN_STREAM + 1), at))(keys)


def _last_eval(run_path: Path, seeds: list[int]) -> np.ndarray:
    import pandas as pd

    frame = pd.read_csv(run_path / "result_Test.csv")
    last = frame[frame["step"] == frame["step"].max()].set_index("seed")
    return np.array([float(last.loc[s, "return"]) for s in seeds])


def finished_summary(cfg: dict[str, Any], run_path: Path) -> Summary:
    """The summary of a run that already finished (for a rerun of the same command)."""
    seeds = [int(cfg.get("run", 0)) * cfg["num_seeds"] + lane for lane in range(cfg["num_seeds"])]
    return Summary(run_path, _last_eval(run_path, seeds), seeds, cfg["total_steps"], 0.0, 0.0, None)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix_str(self, text: str, refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, num_seeds: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        desc=f"{num_seeds} seed{'s' if num_seeds > 1 else ''}",
        file=sys.stderr,
    )


__all__ = ["run", "Summary", "TrainingError", "finished_summary", "segment_steps"]
