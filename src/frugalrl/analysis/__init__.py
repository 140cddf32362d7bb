"""Sweep analysis like Explorer's: unfinished runs, time and memory, per-config results, merged curves.

A sweep is a grid file with ``N`` combinations; run ``k`` of combination ``i`` lives in
``logs/{experiment}/{i + k*N}/`` and holds ``num_seeds`` vmapped seeds (a ``seed`` column in its
CSVs). Every seed of every run of a combination counts as one independent sample, so the mean and
standard error of a combination are over all of them. Outputs go to ``logs/{experiment}/0/``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrl.config import check_same_config, count_dict, decode, flatten, load_grid, resolve, swept_keys
from frugalrl.errors import CheckpointError, ConfigError
from frugalrl.runs.lock import live_holder
from frugalrl.runs.rundir import FINISHED_PREFIX, RunDir

BANDS = {"se": 1.0, "ci95": 1.96}  # half-widths in standard errors of the mean over seeds
LAST_RETURNS = {"Train": 100, "Test": 5, "Offline": 1}  # Explorer's final-performance windows
MODES = tuple(LAST_RETURNS)  # Offline: evaluations during a reincarnated student's pretraining


@dataclass(frozen=True)
class Reference:
    """Random play's and a teacher's scores, for teacher-normalised returns (0 = random, 1 = teacher)."""

    random: float
    teacher: float

    @classmethod
    def load(cls, path: Path) -> Reference:
        """From a run's ``reincarnation.json`` (or the run directory holding one)."""
        file = path / "reincarnation.json" if path.is_dir() else path
        if not file.exists():
            raise ValueError(f"{file} not found: --normalize takes a reincarnation.json or a student's run directory")
        scores = json.loads(file.read_text())
        if not isinstance(scores, dict) or not {"teacher", "random"} <= scores.keys():
            raise ValueError(f"{file} does not hold a teacher's and random play's scores")
        if scores["teacher"] <= scores["random"]:
            raise ValueError(f"{file}: the teacher ({scores['teacher']}) scores no better than random play")
        return cls(float(scores["random"]), float(scores["teacher"]))

    def normalize(self, returns: Any) -> Any:
        return (returns - self.random) / (self.teacher - self.random)


@dataclass(frozen=True)
class Sweep:
    """A grid file and where its runs are."""

    file: Path
    logs: Path
    runs: int = 1

    @property
    def experiment(self) -> str:
        return self.file.stem

    @property
    def grid(self) -> dict[str, Any]:
        return load_grid(self.file)

    @property
    def size(self) -> int:
        return count_dict(self.grid)

    @property
    def analysis_dir(self) -> Path:
        return self.logs / self.experiment / "0"

    def run_dir(self, idx: int) -> Path:
        return self.logs / self.experiment / str(idx)

    def indices(self, combination: int) -> list[int]:
        """Config indices of the runs of a combination (1-based)."""
        return [combination + k * self.size for k in range(self.runs)]

    def all_indices(self) -> list[int]:
        """Every config index of the sweep: 1 .. runs*N."""
        return list(range(1, self.runs * self.size + 1))

    def mismatches(self, indices: Iterable[int] | None = None) -> dict[int, str]:
        """{index: why} for every run directory (of ``indices``, default all) whose saved config is
        not the grid's combination (another grid of the same file name wrote it, or the grid changed
        since)."""
        grid, found = self.grid, {}
        for idx in self.all_indices() if indices is None else indices:
            try:
                saved = RunDir(self.run_dir(idx)).saved_config()
            except CheckpointError as error:
                found[idx] = str(error)
                continue
            if saved is None:
                continue
            combination, run_index = decode(grid, idx)
            bookkeeping = dict(config_idx=idx, num_combinations=self.size, run=run_index, experiment=self.experiment)
            try:
                check_same_config(saved, resolve({**combination, **bookkeeping}), self.run_dir(idx))
            except ConfigError as error:
                found[idx] = str(error)
        return found

    def refuse_mismatches(self) -> None:
        """ValueError naming the first run directory that holds another config than the grid's."""
        if found := self.mismatches():
            idx, why = next(iter(found.items()))
            more = f" ({len(found)} run directories in all)" if len(found) > 1 else ""
            raise ValueError(f"{why.split(';')[0]}, not this grid's index {idx}{more}; its results are not this grid's")


def unfinished(sweep: Sweep) -> list[int]:
    """Every index in 1 .. runs*N whose log.txt is missing or does not end with 'Time elapsed'."""
    return [idx for idx in sweep.all_indices() if not RunDir(sweep.run_dir(idx)).finished()]


RUN_STATES = ("done", "running", "failed", "interrupted", "not started")


def run_state(run_dir: Path) -> tuple[str, str]:
    """(state, detail) of a run directory: done; running (held by a live process, named in the
    detail); failed (the FAILED record's first line); interrupted (started, resumes when run
    again); not started."""
    run = RunDir(run_dir)
    if run.finished():
        return "done", ""
    if holder := live_holder(run_dir):
        return "running", holder
    if (record := run.failure()) is not None:
        first_line = str(record.get("error", "")).splitlines()[:1]
        return "failed", f"step {record.get('step')}, seeds {record.get('seeds')}: {''.join(first_line)}"
    if (run_dir / "log.txt").exists() or (run_dir / "checkpoints").exists():
        return "interrupted", ""
    return "not started", ""


def run_states(sweep: Sweep, indices: Iterable[int] | None = None) -> dict[int, tuple[str, str]]:
    """{index: (state, detail)} for every index of ``indices`` (default 1 .. runs*N; see ``run_state``)."""
    return {idx: run_state(sweep.run_dir(idx)) for idx in (sweep.all_indices() if indices is None else indices)}


def dropped_seeds(sweep: Sweep, indices: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """{index: {seed: its DROPPED record}} of every run of the sweep (or of ``indices``) that dropped seeds."""
    chosen = sweep.all_indices() if indices is None else indices
    records = {idx: RunDir(sweep.run_dir(idx)).dropped() for idx in chosen}
    return {idx: record for idx, record in records.items() if record}


def failures(sweep: Sweep) -> dict[int, dict[str, Any]]:
    """{index: its FAILED record (error, step, seeds)} of every run of the sweep that failed."""
    records = {idx: RunDir(sweep.run_dir(idx)).failure() for idx in sweep.all_indices()}
    return {idx: record for idx, record in records.items() if record is not None}


_MEMORY = re.compile(r"Memory usage: ([0-9.]+) MB")
_TIME = re.compile(re.escape(FINISHED_PREFIX) + r" ([0-9.]+) minutes")


def time_and_memory(sweep: Sweep) -> pd.DataFrame:
    """Peak memory (MB) and wall time (minutes) of every finished run, from the end of its log.txt."""
    rows = []
    for idx in sweep.all_indices():
        run = RunDir(sweep.run_dir(idx))
        if not run.finished():
            continue
        tail = run.log_path.read_text().strip().splitlines()[-2:]
        memory, minutes = _MEMORY.search(tail[0]), _TIME.search(tail[-1])
        rows.append(
            {
                "config_idx": idx,
                "memory_mb": float(memory.group(1)) if memory else math.nan,
                "minutes": float(minutes.group(1)) if minutes else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["config_idx", "memory_mb", "minutes"])


def summarise_time_and_memory(sweep: Sweep) -> str:
    """Max / mean / min of memory and time, and histograms of both in the analysis folder."""
    frame = time_and_memory(sweep)
    if frame.empty:
        return f"{sweep.experiment}: no finished runs under {sweep.logs / sweep.experiment}"
    lines = []
    for column, label, unit, name in (
        ("memory_mb", "Memory usage", "MB", "memory_info.png"),
        ("minutes", "Time elapsed", "minutes", "time_info.png"),
    ):
        values = frame[column].dropna()
        lines.append(
            f"{label} over {len(values)} runs: max {values.max():.2f} {unit}, mean {values.mean():.2f} {unit}, "
            f"min {values.min():.2f} {unit}"
        )
        _histogram(values, f"{label} ({unit})", sweep.analysis_dir / name)
    return "\n".join(lines)


def _histogram(values: pd.Series, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=min(20, max(len(values), 1)))
    ax.set_xlabel(label)
    ax.set_ylabel("runs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _result_file(run_path: Path, mode: str) -> Path:
    return run_path / f"result_{mode}.csv"


def seed_scores(run_path: Path, mode: str, last: int, at: int | None = None) -> pd.Series:
    """Per seed: mean of the last ``last`` returns (training episodes or evaluations), or the
    evaluation at step ``at``."""
    frame = pd.read_csv(_result_file(run_path, mode))
    if at is not None:
        if mode == "Train":
            raise ValueError("a score at a step is an evaluation's: use mode Test or Offline")
        frame = frame[frame["step"] == at]
        if frame.empty:
            raise ValueError(f"{_result_file(run_path, mode)} has no evaluation at step {at}")
        return frame.groupby("seed")["return"].mean()
    order = ["step", "episode"] if mode == "Train" else ["step"]
    frame = frame.sort_values(order)
    return frame.groupby("seed")["return"].apply(lambda r: r.iloc[-last:].mean())


def results_name(mode: str, at: int | None = None) -> str:
    """File name of a results table under ``logs/{exp}/0/``."""
    return f"results_{mode}" + (f"_at{at}" if at is not None else "") + ".csv"


def results_table(
    sweep: Sweep,
    mode: str = "Train",
    last: int | None = None,
    at: int | None = None,
    reference: Reference | None = None,
) -> pd.DataFrame:
    """One row per combination: mean and standard error over every seed of every finished run.

    Standard error = std (ddof 0, as Explorer) / sqrt(n). Scores are the mean of the last ``last``
    returns, or the evaluation at step ``at``; with a ``reference`` they are teacher-normalised too.
    Columns for each swept key, rows sorted by mean (descending) then standard error. Written to
    ``logs/{exp}/0/results_{mode}[_at{at}].csv``.
    """
    if mode not in LAST_RETURNS:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    last = last or LAST_RETURNS[mode]
    grid = sweep.grid
    keys = swept_keys(grid)
    rows = []
    for combination in range(1, sweep.size + 1):
        scores, env, agent = [], None, None
        for idx in sweep.indices(combination):
            run_path = sweep.run_dir(idx)
            if not (RunDir(run_path).finished() and _result_file(run_path, mode).exists()):
                continue
            per_seed = seed_scores(run_path, mode, last, at)
            scores.extend(per_seed.tolist())
            saved = json.loads((run_path / "config.json").read_text())
            env, agent = saved["env"]["name"], _agent_label(saved)
        if not scores:
            continue
        values = np.asarray(scores, dtype=float)
        flat = flatten(decode(grid, combination)[0])
        normalized = {}
        if reference is not None:
            scaled = reference.normalize(values)
            normalized = {"normalized_mean": scaled.mean(), "normalized_se": scaled.std() / math.sqrt(len(values))}
        rows.append(
            {
                "env": env,
                "agent": agent,
                "config_idx": combination,
                "return_mean": values.mean(),
                "return_se": values.std() / math.sqrt(len(values)),
                **normalized,
                "seeds": len(values),
                **{key: _cell(flat.get(key, "/")) for key in keys},
            }
        )
    extra = ["normalized_mean", "normalized_se"] if reference is not None else []
    columns = ["env", "agent", "config_idx", "return_mean", "return_se", *extra, "seeds", *keys]
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values(["return_mean", "return_se"], ascending=[False, True], kind="stable")
    sweep.analysis_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(sweep.analysis_dir / results_name(mode, at), index=False)
    return table


def interquartile_mean(values: Any) -> float:
    """The mean of the middle half: ``int(n / 4)`` values cut from each end (scipy's trim_mean(x, 0.25))."""
    ordered = np.sort(np.asarray(values, dtype=float).ravel())
    cut = int(0.25 * len(ordered))
    return float(ordered[cut : len(ordered) - cut].mean())


def aggregate_table(
    sweep: Sweep,
    by: list[str],
    mode: str = "Test",
    last: int | None = None,
    at: int | None = None,
    scale: float = 1.0,
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Scores pooled over every swept key but ``by`` (e.g. the tasks) and over seeds: one row per value
    of ``by`` with the IQM, the mean, and 95% stratified-bootstrap intervals of both (rliable's
    protocol: seeds resampled within each combination). Scores are multiplied by ``scale`` (SR-SAC:
    return / 1000 at 500k steps). Written to ``logs/{exp}/0/aggregate_{mode}[_at{at}].csv``.
    """
    if mode not in LAST_RETURNS:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    last = last or LAST_RETURNS[mode]
    keys = swept_keys(sweep.grid)
    unknown = [key for key in by if key not in keys]
    if unknown:
        raise ValueError(
            f"--aggregate names keys the grid does not sweep: {', '.join(unknown)} (it sweeps {', '.join(keys)})"
        )
    groups: dict[tuple[Any, ...], list[np.ndarray]] = {}
    for combination in range(1, sweep.size + 1):
        flat = flatten(decode(sweep.grid, combination)[0])
        scores = [
            seed_scores(sweep.run_dir(idx), mode, last, at).to_numpy(float)
            for idx in sweep.indices(combination)
            if RunDir(sweep.run_dir(idx)).finished() and _result_file(sweep.run_dir(idx), mode).exists()
        ]
        if scores:
            groups.setdefault(tuple(_cell(flat[key]) for key in by), []).append(scale * np.concatenate(scores))
    rng = np.random.default_rng(seed)
    rows = []
    for group, strata in groups.items():
        pooled = np.concatenate(strata)
        boot = [np.concatenate([rng.choice(s, len(s)) for s in strata]) for _ in range(reps)]
        iqms, means = [interquartile_mean(b) for b in boot], [b.mean() for b in boot]
        rows.append(
            {
                **dict(zip(by, group, strict=True)),
                "iqm": interquartile_mean(pooled),
                "iqm_low": np.percentile(iqms, 2.5),
                "iqm_high": np.percentile(iqms, 97.5),
                "mean": pooled.mean(),
                "mean_low": np.percentile(means, 2.5),
                "mean_high": np.percentile(means, 97.5),
                "combinations": len(strata),
                "scores": len(pooled),
            }
        )
    table = pd.DataFrame(
        rows, columns=[*by, "iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high", "combinations", "scores"]
    )
    sweep.analysis_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(sweep.analysis_dir / results_name(mode, at).replace("results_", "aggregate_"), index=False)
    return table


def _agent_label(cfg: dict[str, Any]) -> str:
    source = cfg.get("consolidation", {}).get("source", "off")
    label = {"uniform": "MeDQN(U)", "replay": "MeDQN(R)"}.get(source, cfg["agent"]["name"].upper())
    if cfg.get("distillation", {}).get("coefficient", 0.0) > 0:
        label += "+distillation"
    return label


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def learning_curve(
    run_paths: list[Path],
    mode: str = "Train",
    window: int = 20,
    points: int | None = None,
    reference: Reference | None = None,
    smooth: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(steps, mean, standard error, n) of the return over every seed of the given runs.

    Each seed's curve (for Train, the moving average of ``window`` episode returns; for any mode,
    then the moving average of ``smooth`` points, as the model-generalization code's plot_metric.py
    smooths its evaluations; teacher-normalised with a ``reference``) is resampled by linear
    interpolation onto a common grid of steps from the latest first step to the earliest last step,
    with as many points as the shortest curve (at most 500) unless ``points`` is given.
    """
    curves = []
    for run_path in run_paths:
        frame = pd.read_csv(_result_file(run_path, mode))
        for _, seed_frame in frame.groupby("seed"):
            seed_frame = seed_frame.sort_values("step")
            y = seed_frame["return"].to_numpy(float)
            if mode == "Train" and window > 1:
                y = pd.Series(y).rolling(window, min_periods=1).mean().to_numpy()
            if smooth > 1:
                y = pd.Series(y).rolling(smooth, min_periods=1).mean().to_numpy()
            if reference is not None:
                y = reference.normalize(y)
            curves.append((seed_frame["step"].to_numpy(float), y))
    if not curves:
        raise ValueError("no results to plot")
    start, stop = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    n = points or max(2, min(500, min(len(c[0]) for c in curves)))
    grid = np.linspace(start, stop, n) if stop > start else np.array([start])
    stacked = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean = stacked.mean(0)
    se = stacked.std(0) / math.sqrt(len(curves))
    return grid, mean, se, len(curves)


def plot_curves(
    series: list[tuple[str, list[Path]]],
    path: Path,
    mode: str = "Train",
    window: int = 20,
    title: str = "",
    reference: Reference | None = None,
    smooth: int = 1,
    band: str = "se",
    baselines: list[tuple[float, str]] | None = None,
) -> Path:
    """Overlay merged curves, one per (label, run directories): the mean over seeds with a band of
    ± one standard error (``band`` "se") or a normal 95% interval, ± 1.96 standard errors ("ci95").

    With a ``reference`` the returns are teacher-normalised and the teacher's level is drawn at 1.
    ``smooth``: moving average of that many points of each seed's curve first. ``baselines``:
    (value, label) levels drawn as horizontal lines (random play's score, a paper's number).
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, run_paths in series:
        steps, mean, se, n = learning_curve(run_paths, mode, window, reference=reference, smooth=smooth)
        half = BANDS[band] * se
        (line,) = ax.plot(steps, mean, label=f"{label} (n={n})", marker="." if len(steps) < 30 else None)
        ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel("gradient steps of pretraining" if mode == "Offline" else "env steps")
    what = {"Train": f"training return (moving average of {window})"}.get(mode, "greedy return")
    if smooth > 1:
        what += f", smoothed over {smooth}"
    ax.text(
        0.99,
        0.01,
        {"se": "band: ± 1 s.e.", "ci95": "band: 95% interval"}[band],
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color="grey",
    )
    for (value, label), style in zip(baselines or [], ("--", ":", "-.") * 4, strict=False):
        ax.axhline(value, color="dimgrey", linestyle=style, linewidth=1, label=f"{label} ({value:.4g})")
    if reference is not None:
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label=f"teacher ({reference.teacher:.4g})")
        ax.axhline(0.0, color="grey", linestyle=":", linewidth=1, label=f"random ({reference.random:.4g})")
        what = f"teacher-normalised {what}"
    ax.set_ylabel(what)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


__all__ = [
    "MODES",
    "RUN_STATES",
    "Reference",
    "Sweep",
    "learning_curve",
    "plot_curves",
    "results_name",
    "results_table",
    "run_state",
    "run_states",
    "seed_scores",
    "summarise_time_and_memory",
    "time_and_memory",
    "unfinished",
]
