"""``frugal sweep FILE --run``: every unfinished index of a grid, as Ray tasks, each run exactly once.

Ray starts on this machine when no address is given (nothing to set up) or joins a cluster at
``--address`` / ``RAY_ADDRESS``. Each index is one task holding ``cpus_per_run`` cores (and
``gpus_per_run`` GPUs) that runs ``frugal run`` in a child process (``run_task``). What keeps the
sweep exact is the run directory itself: its lock (a second writer is refused, so a sweep started
twice runs each index once), its checkpoints (a task retried after its worker died resumes the
run), and its ``FAILED`` record (a run that failed with an error is not retried unless asked).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frugalrl.analysis import Sweep, run_state
from frugalrl.config import load_config
from frugalrl.errors import ConfigError, GridError
from frugalrl.runs.lock import live_holder
from frugalrl.runs.rundir import RunDir
from frugalrl.runs.stops import stop_requests
from frugalrl.sweep.run_task import RunOutcome, run_index

STOPPED_GRACE_S = 10.0  # how long a stopped program's runs may take to exit and free their locks


@dataclass(frozen=True)
class SweepPlan:
    """What to run and with what: indices of a grid file, resources per run, how often to retry."""

    file: Path
    logs: Path
    indices: list[int]
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0
    address: str | None = None
    retry_failed: bool = False  # resume runs recorded as failed (frugal run --retry)
    retries: int = 3  # new attempts of a run whose process or worker was killed
    pack: bool = True  # configs of one program run as one packed program (train/packed.py)
    max_pack: int = 32  # configs in one packed program at most
    pack_layout: str | None = None  # "exact" | "wide" (train/packed.py LaneLayout); None: by platform

    def run_flags(self) -> list[str]:
        """The arguments each task's ``frugal run`` gets beside its indices."""
        layout = ["--pack-layout", self.pack_layout] if self.pack_layout else []
        return (["--retry"] if self.retry_failed else []) + layout


@dataclass
class SweepReport:
    """How each index ended, and what was skipped before starting."""

    outcomes: dict[int, RunOutcome] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # {index: why}: done, running elsewhere, failed
    env_steps: int = 0  # of the runs finished by this sweep, all seeds
    seconds: float = 0.0
    stopped_by: int | None = None  # the signal that stopped the sweep (its runs checkpointed)
    notes: list[str] = field(default_factory=list)  # what the driver could not record

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes.values())


def to_run(sweep: Sweep, indices: list[int], retry_failed: bool) -> tuple[list[int], dict[int, str]]:
    """(indices to start, {index: why skipped}) from each run directory's state; a running one is
    started too: its task finds the lock held and waits for the holder (see ``_step``)."""
    start, skipped = [], {}
    for idx in indices:
        state, detail = run_state(sweep.run_dir(idx))
        if state == "done" or (state == "failed" and not retry_failed):
            skipped[idx] = f"{state}{': ' + detail if detail else ''}"
        else:
            start.append(idx)
    return start, skipped


def refuse_bad_configs(sweep: Sweep, indices: list[int]) -> dict[int, str]:
    """{index: error} of the indices whose config cannot describe a run; each is recorded as failed
    in its run directory (``frugal status`` shows it) and not started."""
    bad = {}
    for idx in indices:
        try:
            load_config(sweep.file, idx)
        except (ConfigError, GridError) as error:
            bad[idx] = str(error).splitlines()[0]
            RunDir(sweep.run_dir(idx)).path.mkdir(parents=True, exist_ok=True)
            RunDir(sweep.run_dir(idx)).mark_failed(bad[idx], None, [])
    return bad


def env_steps_of(sweep: Sweep, idx: int) -> int:
    cfg = load_config(sweep.file, idx)
    return int(cfg["total_steps"]) * int(cfg["num_seeds"])


def record_failure(sweep: Sweep, outcome: RunOutcome) -> None:
    """A run that failed without its own FAILED record (an error outside training) gets one."""
    run = RunDir(sweep.run_dir(outcome.idx))
    if run.failure() is None:
        run.path.mkdir(parents=True, exist_ok=True)
        run.mark_failed(outcome.message or "the run exited with an error and said nothing", None, [])


OnChange = Callable[[SweepReport, int, int], None]  # (report, runs pending, runs started in all)


def run_sweep(plan: SweepPlan, runs: int, on_change: OnChange | None = None) -> SweepReport:
    """Run the plan's unfinished indices on Ray and report how each ended."""
    sweep, report = Sweep(plan.file, plan.logs, runs), SweepReport()
    indices, report.skipped = to_run(sweep, plan.indices, plan.retry_failed)
    if not indices:
        return report
    started = time.perf_counter()
    with ray_session(plan.address):  # first: Ray forks its processes before JAX starts threads here
        for idx, error in refuse_bad_configs(sweep, indices).items():
            report.outcomes[idx] = RunOutcome(idx, "failed", error, 0)
        packs = plan_packs(sweep, [idx for idx in indices if idx not in report.outcomes], plan)
        _run_tasks(plan, sweep, packs, report, on_change)
    report.seconds = time.perf_counter() - started
    return report


def plan_packs(sweep: Sweep, indices: list[int], plan: SweepPlan) -> list[tuple[int, ...]]:
    """The tasks: indices of one program (``config/packing.py``), new or all checkpointed, packed
    together, ``plan.max_pack`` at most; every other index alone."""
    if not plan.pack:
        return [(idx,) for idx in indices]
    from frugalrl.config import load_grid, swept_keys
    from frugalrl.config.packing import pack_groups
    from frugalrl.runs.checkpoint import complete_steps
    from frugalrl.train.packed import unpackable

    packs: list[tuple[int, ...]] = []
    for group in pack_groups(sweep.file, indices, swept_keys(load_grid(sweep.file))):
        by_step: dict[Any, list[int]] = {}
        for idx in group.indices:
            if unpackable(load_config(sweep.file, idx)) is not None:
                packs.append((idx,))
                continue
            # new runs apart from checkpointed ones; these resume from the newest step they share
            by_step.setdefault(bool(complete_steps(RunDir(sweep.run_dir(idx)).checkpoints)), []).append(idx)
        for members in by_step.values():
            packs += [tuple(members[i : i + plan.max_pack]) for i in range(0, len(members), plan.max_pack)]
    return sorted(packs)


def _run_tasks(
    plan: SweepPlan, sweep: Sweep, packs: list[tuple[int, ...]], report: SweepReport, on_change: OnChange | None
) -> None:
    """Submit every task; resubmit a run stopped by a signal (it resumes) up to ``plan.retries``
    times, and one that another process holds ("busy") once that process lets go of it."""
    import ray

    check_resources(ray, plan)
    # retries are the driver's (a dead worker's task comes back as "stopped"), so --retries counts them all
    task = ray.remote(run_index).options(num_cpus=plan.cpus_per_run, num_gpus=plan.gpus_per_run, max_retries=0)
    file, logs, cwd = str(plan.file.resolve()), str(plan.logs.resolve()), os.getcwd()

    def submit(pack: tuple[int, ...], attempt: int) -> Any:
        ref = task.remote(file, list(pack), logs, cwd, plan.cpus_per_run, plan.gpus_per_run, plan.run_flags(), attempt)
        pending[ref] = (pack, attempt)

    pending: dict[Any, tuple[tuple[int, ...], int]] = {}
    waiting: dict[int, int] = {}
    for pack in packs:
        submit(pack, 0)
    total = sum(map(len, packs)) + len(report.outcomes)  # the bad configs are already counted
    with stop_requests() as stops:
        while (pending or waiting) and not stops:
            _step(ray, sweep, plan, pending, waiting, report, submit)
            if on_change is not None:
                on_change(report, sum(len(pack) for pack, _ in pending.values()) + len(waiting), total)
        if stops:  # each run checkpoints and exits; a later sweep resumes it
            report.stopped_by = stops[0]
            for ref in pending:
                ray.cancel(ref)
            for ref, (pack, attempt) in pending.items():
                outcome = _outcome(ray, ref, pack[0], attempt)
                for idx in pack:
                    _record(sweep, report, outcome._replace(idx=idx))
            for idx, attempt in waiting.items():
                report.outcomes[idx] = RunOutcome(idx, "busy", "held by another process", attempt)


def _step(
    ray: Any, sweep: Sweep, plan: SweepPlan, pending: dict, waiting: dict, report: SweepReport, submit: Any
) -> None:
    """One look at the tasks: resubmit what may go on, record what ended."""
    for idx in list(waiting):
        if live_holder(sweep.run_dir(idx)) is None:  # its holder ended: finished, or to resume
            submit((idx,), waiting.pop(idx))
    ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0) if pending else ([], [])
    if not pending:
        time.sleep(1.0)
    for ref in ready:
        pack, attempt = pending.pop(ref)
        outcome = _outcome(ray, ref, pack[0], attempt)
        if len(pack) > 1:
            _settle_pack(sweep, plan, pack, outcome, waiting, report, submit)
        elif outcome.status == "busy":
            waiting[pack[0]] = attempt
        elif outcome.status == "stopped" and attempt < plan.retries:
            submit(pack, attempt + 1)
        else:
            _record(sweep, report, outcome)


def _settle_pack(
    sweep: Sweep,
    plan: SweepPlan,
    pack: tuple[int, ...],
    outcome: RunOutcome,
    waiting: dict,
    report: SweepReport,
    submit: Any,
) -> None:
    """After a packed program's task: each run as its directory says. Finished and failed runs are
    recorded, one another process holds is waited for; the rest (the program was stopped, or could
    not run them) go on: packed again if it was stopped, else each alone."""
    if outcome.status == "stopped":  # a killed worker's run is killed with it: let its locks go first
        deadline = time.monotonic() + STOPPED_GRACE_S
        while any(live_holder(sweep.run_dir(idx)) for idx in pack) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = []
    for idx in pack:
        state, detail = run_state(sweep.run_dir(idx))
        if state == "done":
            _record(sweep, report, outcome._replace(idx=idx, status="done", message=""))
        elif state == "failed":
            _record(sweep, report, outcome._replace(idx=idx, status="failed", message=detail))
        elif state == "running":
            waiting[idx] = outcome.attempt
        else:
            left.append(idx)
    if outcome.status == "stopped" and outcome.attempt < plan.retries and len(left) > 1:
        submit(tuple(left), outcome.attempt + 1)
        return
    for idx in left:  # alone, each on its own merits (a run that fails alone is recorded then)
        submit((idx,), outcome.attempt + 1 if outcome.status == "stopped" else outcome.attempt)


def _record(sweep: Sweep, report: SweepReport, outcome: RunOutcome) -> None:
    """Keep an index's last outcome: a failure gets its FAILED record, a finished run its steps."""
    report.outcomes[outcome.idx] = outcome
    try:
        if outcome.status == "failed":
            record_failure(sweep, outcome)
        if outcome.status == "done":
            report.env_steps += env_steps_of(sweep, outcome.idx)
    except (OSError, ConfigError, GridError) as error:  # a full disk, a grid edited mid-sweep: go on
        report.notes.append(f"{outcome.idx}: {str(error).splitlines()[0]}")


def check_resources(ray: Any, plan: SweepPlan) -> None:
    """SweepResourcesError if no node of the cluster can hold one run (its task would wait forever)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    fits = [n for n in nodes if n.get("CPU", 0) >= plan.cpus_per_run and n.get("GPU", 0) >= plan.gpus_per_run]
    if not fits:
        most = max((n.get("CPU", 0) for n in nodes), default=0)
        gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        raise SweepResourcesError(
            f"no node has --cpus-per-run {plan.cpus_per_run} CPUs and --gpus-per-run {plan.gpus_per_run} GPUs "
            f"(the largest has {most:g} CPUs, {gpus:g} GPUs)"
        )


def _outcome(ray: Any, ref: Any, idx: int, attempt: int) -> RunOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:  # its worker died more often than Ray retries a task
        return RunOutcome(idx, "stopped", str(error).strip().splitlines()[0], attempt)


class SweepEngineMissing(RuntimeError):
    """Ray is not installed, or its cluster cannot be reached."""


class SweepResourcesError(RuntimeError):
    """No node of the cluster can hold one run."""


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the sweep: the cluster at ``address`` (or ``RAY_ADDRESS``), else one started on this
    machine for the sweep and stopped after it."""
    try:
        import ray
    except ImportError:
        raise SweepEngineMissing("sweeps run on Ray: pip install 'frugalrl[sweep]' (or pip install ray)") from None
    # "local": a new Ray for the sweep, never a cluster `ray start` left recorded on this machine
    where = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=where, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as error:
        raise SweepEngineMissing(f"cannot reach the Ray cluster at {where}: {str(error).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


__all__ = ["SweepEngineMissing", "SweepPlan", "SweepReport", "SweepResourcesError", "run_sweep", "to_run"]
