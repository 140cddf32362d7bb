"""A run's life, written once: the run session and the driver every training loop plugs into.

The session owns what every run does the same way: it checks the run directory against the
config, writes ``config.json`` and ``log.txt``, refuses buffers that will not fit, restores the
newest complete checkpoint, keeps the result CSVs (cut back to the checkpoint on resume), shows
a progress bar, times compilation apart from running (by phase), stops on a NaN loss with one
message, decides when a checkpoint is due, and writes the log's tail and the ``Summary``.

A loop (``flat``: JAX envs jitted end to end; ``host``: one host env per seed; ``episodic``:
whole episodes for memory agents) supplies only what differs: its state, one segment of
training, an evaluation, and what a checkpoint must hold besides its state (``Loop``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from frugalrl import __version__, envs
from frugalrl.config import check_same_config, flatten
from frugalrl.config.schema import EPISODIC_AGENTS
from frugalrl.devices import idle_devices_note, seed_mesh, unroll_threefry_on_cpu
from frugalrl.errors import ConfigError, DivergedError, RunAlreadyFinished, RunFailedError, RunStopped, TrainingError
from frugalrl.runs import checkpoint
from frugalrl.runs.lock import LOCK_NAME, RunLock
from frugalrl.runs.rundir import (
    FINISHED_PREFIX,
    CsvLog,
    RunDir,
    available_memory_bytes,
    counted,
    human_bytes,
    peak_memory_mb,
)
from frugalrl.runs.stops import stop_requests

NAN_ADVICE = (
    "lower 'optimizer/lr' or set 'optimizer/max_grad_norm'. Results and checkpoints up to the last checkpoint are kept."
)
PHASES = ("segments", "bookkeeping", "evaluation", "checkpoints")


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


class Loop(Protocol):
    """What a training loop supplies to ``RunSession.train``; the session does the rest."""

    train_columns: list[str]  # result_Train.csv's columns
    test_columns: list[str]  # result_Test.csv's columns
    total: int  # env steps per seed at the end of the run

    def prepare(self, session: RunSession) -> Any:
        """Announce and check memory; return the shapes of the state a checkpoint restores into."""

    def fresh(self) -> Any:
        """The state of a new run."""

    def resume(self, state: Any, meta: dict[str, Any]) -> Any:
        """The state restored from a checkpoint whose meta.json is ``meta``."""

    def start(self, state: Any, resumed: bool) -> Any:
        """Compile, and whatever comes before the first segment (pretraining, a starting evaluation)."""

    def advance(self, state: Any, step: int) -> tuple[Any, int]:
        """One segment from env step ``step``: write its episodes and metrics, return the new step."""

    def evaluation_due(self, step: int) -> bool: ...

    def evaluate(self, state: Any, step: int) -> tuple[Any, np.ndarray]:
        """Evaluate, write the rows, apply what follows an evaluation; the state and [seeds] returns."""

    def after_segment(self, state: Any, step: int) -> Any:
        """Whatever the schedule asks after a segment and its evaluation (resets)."""

    def checkpoint_meta(self, state: Any, step: int, due: int) -> dict[str, Any] | None:
        """What a checkpoint holds besides the state, or None when it must wait (host envs mid-episode)."""


def seeds_of(cfg: dict[str, Any]) -> list[int]:
    """The seed numbers of a run's lanes: run k of a config holds seeds k·n .. k·n + n − 1."""
    run_index, num_seeds = int(cfg.get("run", 0)), cfg["num_seeds"]
    return [run_index * num_seeds + lane for lane in range(num_seeds)]


def last_evaluation(run_path: Path, seeds: list[int]) -> np.ndarray:
    """[seeds] returns of the last evaluation in a run's result_Test.csv."""
    import pandas as pd

    frame = pd.read_csv(run_path / "result_Test.csv")
    last = frame[frame["step"] == frame["step"].max()].set_index("seed")
    return np.array([float(last.loc[s, "return"]) for s in seeds])


def finished_summary(cfg: dict[str, Any], run_path: Path) -> Summary:
    """The summary of a run that already finished (for a rerun of the same command)."""
    seeds = seeds_of(cfg)
    return Summary(run_path, last_evaluation(run_path, seeds), seeds, cfg["total_steps"], 0.0, 0.0, None)


def first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None if ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def remove_unwritten(run_path: Path, created: Path) -> None:
    """Remove a run directory this process made and never wrote, and the folders above it that it
    made too, each only if empty: another run (of the same sweep) may be starting beside it."""
    shutil.rmtree(run_path, ignore_errors=True)
    folder = run_path.parent
    while folder == created or created in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): another run's folder
            return
        folder = folder.parent


def clear(run_path: Path) -> None:
    """Empty a run directory for ``--fresh``, all but its lock file (whose lock this process holds)."""
    for entry in run_path.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_config(cfg: dict[str, Any], rundir: RunDir, fresh: bool, retry: bool = False) -> dict[str, Any]:
    """The config the run directory will hold: checked against a saved one, its seed drawn or kept;
    a run that failed is refused unless retried (``retry``: resume it from its last checkpoint).
    Nothing is written here: ``--fresh`` empties the directory only once the run starts."""
    failure = None if fresh else rundir.failure()
    if failure is not None and not retry:
        raise RunFailedError(
            f"{rundir.path} failed at step {failure.get('step')} ({failure.get('error', '')}); rerun with --retry "
            "to resume it from its last checkpoint, or with --fresh to start over"
        )
    saved = None if fresh else rundir.saved_config()
    if saved is not None:
        check_same_config(saved, cfg, rundir.path)
        cfg = {**cfg, "seed": saved["seed"]}
    elif cfg["generate_random_seed"]:
        cfg = {**cfg, "seed": int(np.random.default_rng().integers(1_000_000))}
    return {**cfg, "frugalrl_version": __version__}


@dataclass(frozen=True)
class Need:
    """Memory a run needs for one of its parts, and the config key that sizes it."""

    what: str  # "the replay buffers"
    bytes: float
    key: str  # "replay/capacity"


def tree_bytes(tree: Any) -> float:
    """Bytes of a pytree of arrays or shapes."""
    return float(sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)))


def available_bytes() -> int | None:
    """Memory a run can use: an accelerator's own, else the host's available memory."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"])
    return available_memory_bytes()


def memory_needs(
    cfg: dict[str, Any], spec: envs.EnvSpec, shapes: Any, *, batch_rows: int, eval_rows: int, width: int
) -> list[Need]:
    """A lower bound of what a run holds: its state (``shapes``: replay, networks, optimizer and env
    states of every seed) and the working sets of one update (``batch_rows`` [seeds x rows] through
    layers summing to ``width`` units, forward and backward) and of one evaluation (``eval_rows``
    episodes in parallel). Enough to refuse an absurd size before anything is written."""
    replay = tree_bytes(shapes.replay)
    observation = math.prod(spec.obs_shape) * np.dtype(spec.obs_dtype).itemsize
    unit = 4  # float32 activations
    return [
        Need("the replay buffers", replay, "replay/capacity"),
        Need("the networks and optimizer states", tree_bytes(shapes) - replay, network_key(cfg)),
        Need("one update's batch", batch_rows * (2 * observation + 3 * unit * width), "replay/batch_size"),
        Need("one evaluation", eval_rows * (observation + 2 * unit * width), "eval/episodes"),
    ]


def network_key(cfg: dict[str, Any]) -> str:
    """The config key that sizes a run's networks."""
    if cfg["model"]["kind"] != "none":
        return "model/hidden"
    return "sequence/hidden" if cfg["agent"]["name"] in EPISODIC_AGENTS else "network/hidden"


def check_fits(cfg: dict[str, Any], needs: list[Need]) -> None:
    """ConfigError naming the key of the largest part when the parts together exceed 80% of the
    memory available: refused before anything is written or allocated."""
    available, total = available_bytes(), sum(need.bytes for need in needs)
    if available is None or total <= 0.8 * available:
        return
    largest = max(needs, key=lambda need: need.bytes)
    value = flatten(cfg).get(largest.key)
    seeds = cfg["num_seeds"]
    raise ConfigError(
        f"config key '{largest.key}' ({value}) asks for at least {human_bytes(largest.bytes)} for {largest.what} "
        f"({human_bytes(total)} for the whole run of {counted(seeds, 'seed')}), but "
        f"{human_bytes(available)} of memory is available; lower '{largest.key}' or 'num_seeds'"
    )


class RunSession:
    """One run's directory, logs, timing and checkpoints; ``train(loop)`` runs it to the end."""

    def __init__(
        self,
        cfg: dict[str, Any],
        run_path: Path,
        *,
        fresh: bool = False,
        retry: bool = False,
        progress: bool = True,
        echo: Any = None,
        stops: list[int] | None = None,
        unless_finished: bool = False,
    ) -> None:
        """``unless_finished``: RunAlreadyFinished if the run turns out finished once its lock is held
        (the CLI looked before; another process may have finished it since)."""
        self.say: Callable[[str], None] = echo or (lambda text: print(text, file=sys.stderr))
        self.began = time.perf_counter()
        self.rundir = RunDir(run_path)
        self.path = run_path
        self.progress = progress
        self.compile_seconds = 0.0
        self.phase_seconds = dict.fromkeys(PHASES, 0.0)
        self.rows: dict[str, int | None] = {"train": None, "test": None, "metrics": None}
        self.digests: dict[str, str] = {}  # of the CSVs' kept rows, as the restored checkpoint recorded them
        self.elapsed_before, self.resumed_from = 0.0, None
        self.log: Any = None
        self.train_log: CsvLog | None = None
        self.test_log: CsvLog | None = None
        self.metrics_log: CsvLog | None = None
        self.seed_devices = 1  # devices the seeds are split over (the host loop keeps them on one)
        self.dropped: dict[int, dict[str, Any]] = {}  # seed -> step and error (train/on_divergence 'drop')
        self.fresh, self.retry = fresh, retry
        self.notes: list[tuple[str, str]] = []  # (level, message) said before log.txt exists
        self.stops: list[int] = [] if stops is None else stops  # stop signals received (stop_requests)
        envs.check_runnable(cfg)  # before any run directory exists
        self.created = first_missing(run_path)  # removed again by close() if the run never starts
        self.lock = RunLock(run_path)  # one writer per run directory, from here to close()
        try:
            self.lock.acquire()
            if unless_finished and not fresh and self.rundir.finished():  # finished since the caller looked
                raise RunAlreadyFinished(str(run_path))
            self.cfg = prepare_config(cfg, self.rundir, fresh, retry)
        except BaseException:
            self.close()
            raise
        self.seeds = seeds_of(self.cfg)
        self.num_seeds = self.cfg["num_seeds"]
        unroll_threefry_on_cpu()

    # -- the run directory and its log ------------------------------------------------------
    def start(self) -> None:
        """The first write: empty the directory for ``--fresh`` (or drop the FAILED record of a
        ``--retry``), write config.json and open log.txt with the run's header and what was said."""
        if self.fresh:
            clear(self.path)
        elif self.retry and self.rundir.failed_path.exists():
            self.rundir.failed_path.unlink()
        self.rundir.write_config(self.cfg)
        self.log = self.rundir.logger()
        sys.unraisablehook = functools.partial(_log_unraisable, self.log)
        self.log.info("frugalrl %s, jax %s, devices %s", __version__, jax.__version__, jax.local_devices())
        self.log.info("config %s", json.dumps(self.cfg, sort_keys=True))
        self.log.info("XLA compilation cache: %s", jax.config.jax_compilation_cache_dir or "off")
        for level, message in self.notes:
            getattr(self.log, level)(message)
            self.say(message)
        self.notes = []

    def announce(self, message: str) -> None:
        """In log.txt and on screen (held back until the run starts)."""
        self._note("info", message)

    def warn(self, message: str) -> None:
        self._note("warning", message)

    def _note(self, level: str, message: str) -> None:
        if self.log is None:
            self.notes.append((level, message))
            return
        getattr(self.log, level)(message)
        self.say(message)

    def mesh(self) -> Mesh:
        """The devices the seeds are split over, saying when some are left idle."""
        mesh = seed_mesh(self.num_seeds)
        if note := idle_devices_note(self.num_seeds, mesh):
            self.warn(note)
        self.seed_devices = mesh.size
        return mesh

    # -- timing -----------------------------------------------------------------------------
    def compile(self, what: str, lower: Callable[[], Any]) -> Any:
        """``lower().compile()``, its time counted as compile time (never as run time) and logged."""
        began = time.perf_counter()
        compiled = lower().compile()
        self.note_compile(what, time.perf_counter() - began)
        return compiled

    def note_compile(self, what: str, took: float) -> None:
        self.compile_seconds += took
        self.log.info("compiled %s in %.2f s", what, took)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of the run (segments, bookkeeping, evaluation, checkpoints)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] += time.perf_counter() - began

    # -- CSVs -------------------------------------------------------------------------------
    def open_logs(self, train_columns: list[str], test_columns: list[str]) -> None:
        """The result CSVs: new, or cut back to the rows the restored checkpoint recorded."""
        self.train_log = CsvLog(self.path / "result_Train.csv", train_columns)
        self.test_log = CsvLog(self.path / "result_Test.csv", test_columns)
        logs = {"train": self.train_log, "test": self.test_log}
        if self.rows.get("metrics") is not None:  # its columns are the header the run wrote
            path = self.path / "metrics.csv"
            header = path.read_text().splitlines()[0].split(",") if path.exists() else []
            logs["metrics"] = self.metrics_log = CsvLog(path, header)
        for name, log in logs.items():  # every file checked before any is cut back
            log.verify(self.rows[name], self.digests.get(name))
        for name, log in logs.items():
            log.open(self.rows[name], self.digests.get(name))

    def write_metrics(self, step: int, names: Iterable[str], means: dict[str, np.ndarray]) -> None:
        """One metrics.csv row per seed at ``step``: ``means[name]`` is [seeds]."""
        if self.metrics_log is None:
            self.metrics_log = CsvLog(self.path / "metrics.csv", ["seed", "step", *names])
            self.metrics_log.open(None)
        columns = self.metrics_log.columns[2:]
        self.metrics_log.write(
            [self.seeds[s], step] + [float(means[n][s]) for n in columns] for s in range(self.num_seeds)
        )

    def flush(self) -> None:
        for handle in (self.train_log, self.test_log, self.metrics_log):
            if handle is not None:
                handle.flush()

    def close_logs(self) -> None:
        for handle in (self.train_log, self.test_log, self.metrics_log):
            if handle is not None:
                handle.close()

    def check_finite(self, finite: np.ndarray, step: int, since: int | None = None, what: str = "loss") -> None:
        """Stop on seeds whose ``what`` was NaN or inf (``finite``: [seeds] bool), found at env step
        ``step`` (in the segment from ``since``, when given): DivergedError, or with
        ``train/on_divergence`` 'drop' those seeds are dropped while any other goes on."""
        newly = ~finite & ~self.dropped_lanes()
        if not newly.any():
            return
        bad = [self.seeds[s] for s in np.nonzero(newly)[0]]
        span = f"before step {step}" if since is None else f"between steps {since} and {step}"
        message = f"the {what} of seed(s) {bad} became NaN or inf {span}; {NAN_ADVICE}"
        if self.cfg["train"]["on_divergence"] != "drop" or len(self.dropped) + len(bad) == self.num_seeds:
            raise DivergedError(message, step, sorted({*self.dropped, *bad}))
        for seed in bad:
            self.dropped[seed] = {"step": step, "error": message}
        self.rundir.write_dropped(self.dropped)
        self.warn(f"dropped seed(s) {bad} at step {step} (their returns are NaN from here on): {message}")

    def note_evaluation(self, at: int, returns: np.ndarray) -> None:
        """log.txt's line for an evaluation at env step ``at`` (``returns``: [seeds, episodes])."""
        self.log.info("step %d: greedy return %.2f ± %.2f over seeds", at, returns.mean(), returns.mean(1).std())

    def dropped_lanes(self) -> np.ndarray:
        """[seeds] True for the lanes of dropped seeds."""
        return np.array([seed in self.dropped for seed in self.seeds])

    def write_episodes(self, rows: Iterable[list[Any]]) -> None:
        """result_Train.csv rows (TRAIN_COLUMNS first); a dropped seed's return is written as NaN."""
        self.train_log.write(self._dropped_as_nan(rows, (5,)))

    def write_evaluations(self, rows: Iterable[list[Any]]) -> None:
        """result_Test.csv rows (TEST_COLUMNS first); a dropped seed's return and its std are NaN."""
        self.test_log.write(self._dropped_as_nan(rows, (4, 5)))

    def _dropped_as_nan(self, rows: Iterable[list[Any]], columns: tuple[int, ...]) -> Iterable[list[Any]]:
        if not self.dropped:
            return rows
        return ([math.nan if i in columns and row[2] in self.dropped else v for i, v in enumerate(row)] for row in rows)

    # -- checkpoints ------------------------------------------------------------------------
    def restore(self, shapes: Any, at: int | None = None) -> tuple[Any, dict[str, Any]] | None:
        """The newest complete checkpoint's state and meta, or None for a new run; ``at``: the one of
        that step (a packed program's common step), the newer ones then removed like the CSV rows
        after it: they belong to a start that is being redone."""
        directory = self.rundir.checkpoints
        restored = checkpoint.restore_latest(directory, shapes, at=at, warn=self.warn)
        if restored is not None:
            meta = restored[1]
            self.check_layout(meta)
            for newer in [step for step in checkpoint.complete_steps(directory) if step > int(meta["step"])]:
                shutil.rmtree(directory / str(newer))
                self.log.info("removed the checkpoint at step %d: resuming from step %s", newer, meta["step"])
            if int(meta["step"]) == checkpoint.complete_steps(directory)[-1]:
                checkpoint.prune(directory, self.cfg["checkpoint"]["keep"])
            self.digests = meta.get("digests", {})
            self.dropped = {int(seed): record for seed, record in meta.get("dropped", {}).items()}
            self.rundir.write_dropped(self.dropped)  # as it was at the checkpoint
            self.rows, self.elapsed_before, self.resumed_from = meta["rows"], meta["elapsed_seconds"], int(meta["step"])
            self.log.info("resuming from the checkpoint at step %d", self.resumed_from)
            self.say(f"resuming {self.path} from step {self.resumed_from}")
        return restored

    def check_layout(self, meta: dict[str, Any]) -> None:
        """Refuse to resume on another split of the seeds over devices: the results would mix two layouts."""
        saved, devices = meta.get("seed_devices"), meta.get("xla_devices")
        if saved is not None and saved != self.seed_devices:
            raise TrainingError(
                f"{self.path} was checkpointed with its seeds split over {saved} XLA device(s) ({devices} in all); "
                f"this process splits them over {self.seed_devices}, and resuming would mix two device layouts in "
                f"one run. Rerun with XLA_FLAGS=--xla_force_host_platform_device_count={devices} (frugal run sets "
                "it from the checkpoint unless XLA_FLAGS names a count), or with --fresh"
            )

    def checkpoint_due(self, before: int, step: int, total: int) -> bool:
        """A periodic checkpoint when ``checkpoint/every`` divides a step in (before, step] short of the
        total; at the total, the final one when ``checkpoint/final``."""
        every, final = self.cfg["checkpoint"]["every"], self.cfg["checkpoint"]["final"]
        if step >= total:
            return bool(final)
        return bool(every) and step // every > before // every

    def save(self, step: int, state: Any, extra: dict[str, Any]) -> None:
        """A checkpoint of ``state`` at ``step``: the CSVs' row counts and the elapsed time go with it."""
        self.flush()
        if hasattr(state, "hparams"):  # a flat run's hyperparameters come from its config, never a checkpoint
            state = state._replace(hparams=())
        logs = {"train": self.train_log, "test": self.test_log, "metrics": self.metrics_log}
        rows = {name: log.rows if log else None for name, log in logs.items()}
        digests = {name: log.digest for name, log in logs.items() if log}
        meta = {
            "rows": rows,
            "digests": digests,  # each CSV's kept rows: a resumed run refuses files changed since
            "elapsed_seconds": self.elapsed_before + time.perf_counter() - self.began,
            "xla_devices": len(jax.local_devices()),  # the layout a resumed run must have (check_layout)
            "seed_devices": self.seed_devices,
            "dropped": {str(seed): record for seed, record in self.dropped.items()},
            **extra,
        }
        checkpoint.save(self.rundir.checkpoints, step, state, meta, self.cfg["checkpoint"]["keep"])
        self.log.info("step %d: checkpoint", step)

    # -- the run ----------------------------------------------------------------------------
    def train(self, loop: Loop) -> Summary:
        """Run ``loop`` from a new state or the newest checkpoint to its last env step. A stop signal
        from here on (during compilation and pretraining too) ends the run after its next checkpoint."""
        with stop_requests(self.stops):
            return self._train(loop)

    def _train(self, loop: Loop) -> Summary:
        shapes = loop.prepare(self)  # sizes checked against memory before anything is written
        self.start()
        restored = self.restore(shapes)
        state = loop.fresh() if restored is None else loop.resume(*restored)
        step, final_returns = self.resumed_from or 0, None
        compile_before, run_began = self.compile_seconds, time.perf_counter()
        try:
            self.open_logs(loop.train_columns, loop.test_columns)
            if step < loop.total:  # a run resumed at its end has nothing to compile or run
                state = loop.start(state, resumed=restored is not None)
                compile_before, run_began = self.compile_seconds, time.perf_counter()
                state, final_returns = self._segments(loop, state, step)
                jax.block_until_ready(state)
        except DivergedError as error:  # recorded, so that a requeue does not loop on it
            self.rundir.mark_failed(str(error), error.step, error.seeds)
            self.log.error("FAILED at step %d: %s", error.step, error)
            raise
        finally:
            self.close_logs()
        # what compiled during the loop (a segment of a new length) is compile time, not run time
        run_seconds = time.perf_counter() - run_began - (self.compile_seconds - compile_before)
        if final_returns is None:  # resumed at the end: read the last evaluation back
            final_returns = last_evaluation(self.path, self.seeds)
        return self.finish(final_returns, loop.total, run_seconds)

    def _segments(self, loop: Loop, state: Any, step: int) -> tuple[Any, np.ndarray | None]:
        """Segments to the end, or, once a stop signal came, to the next checkpoint (taken at once)."""
        bar = progress_bar(loop.total, step, self.num_seeds, enabled=self.progress)
        final_returns, due = None, None
        try:
            stops = self.stops
            while step < loop.total:
                before = step
                state, step = loop.advance(state, step)
                if loop.evaluation_due(step):
                    with self.phase("evaluation"):
                        state, final_returns = loop.evaluate(state, step)
                        if self.dropped:
                            final_returns = np.where(self.dropped_lanes(), np.nan, final_returns)
                        self.flush()
                    bar.set_postfix_str(f"greedy return {final_returns.mean():.4g}", refresh=False)
                state = loop.after_segment(state, step)
                if due is None and (self.checkpoint_due(before, step, loop.total) or stops):
                    due = step
                if due is not None:
                    due = self._checkpoint(loop, state, step, due)
                bar.update(step - before)
                if stops and due is None and step < loop.total:
                    name = signal.Signals(stops[0]).name
                    self.log.info("step %d: stopped by %s after a checkpoint", step, name)
                    raise RunStopped(name, step, 128 + stops[0])
        finally:
            bar.close()
        return state, final_returns

    def _checkpoint(self, loop: Loop, state: Any, step: int, due: int) -> int | None:
        """Save the checkpoint due since ``due`` if the loop is ready; None once saved, else ``due``."""
        with self.phase("checkpoints"):
            extra = loop.checkpoint_meta(state, step, due)
            if extra is None:
                return due
            self.save(step, state, extra)
            return None

    def close(self) -> None:
        """Release the run directory (the kernel does it too if this process dies); one this run made
        but never wrote a config into (a refused teacher, say) is removed: nothing left behind."""
        self.close_logs()
        if self.lock.held and self.created is not None and not self.rundir.config_path.exists():
            remove_unwritten(self.path, self.created)
        self.lock.release()

    def finish(self, final_returns: np.ndarray, total: int, run_seconds: float) -> Summary:
        """The log's tail (timing, memory, the 'Time elapsed' line that marks it finished) and the Summary."""
        done = total - (self.resumed_from or 0)
        self.log.info(
            "compile %.2f s, run %.2f s (%.0f env steps/s per seed, %.0f over all seeds)",
            self.compile_seconds,
            run_seconds,
            done / max(run_seconds, 1e-9),
            self.num_seeds * done / max(run_seconds, 1e-9),
        )
        self.log.info("run time by phase: %s", ", ".join(f"{n} {s:.2f} s" for n, s in self.phase_seconds.items()))
        self.log.info("Memory usage: %.2f MB", peak_memory_mb())
        elapsed = self.elapsed_before + time.perf_counter() - self.began
        self.log.info("%s %.2f minutes", FINISHED_PREFIX, elapsed / 60)
        return Summary(
            self.path, final_returns, self.seeds, total, self.compile_seconds, run_seconds, self.resumed_from
        )


def _log_unraisable(log: logging.Logger, unraisable: Any) -> None:
    """Errors Python can only ignore (a callback of orbax's into its closed event loop after a failed
    write, one per pending array): a line in log.txt each, not a traceback each on the screen."""
    try:
        log.info("ignored in a background callback: %s: %s", type(unraisable.exc_value).__name__, unraisable.exc_value)
    except OSError:  # log.txt cannot be written either (a full disk): the run already said why it stopped
        pass


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix_str(self, text: str, refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, initial: int, num_seeds: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        desc=f"{counted(num_seeds, 'seed')}",
        file=sys.stderr,
    )


__all__ = [
    "Loop",
    "RunSession",
    "Summary",
    "finished_summary",
    "human_bytes",
    "last_evaluation",
    "seeds_of",
]
