"""The ``frugal`` command: run | sweep | status | analyze | plot | envs | keys | import-dopamine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from frugalrl.errors import EXIT_CONFIG, EXIT_IO, EXIT_LOCKED


def _error(message: str, code: int) -> int:
    print(f"frugal: error: {message}", file=sys.stderr)
    return code


def load_config(file: str, idx: int) -> dict[str, Any]:
    """Decode and validate config ``idx`` of a grid file; raises GridError / ConfigError."""
    from frugalrl.config import load_config as load

    return load(file, idx)


def cmd_run(args: argparse.Namespace) -> int:
    from frugalrl.runs.stops import die_with_parent, note_stops

    die_with_parent()  # a sweep's task: the run ends with the worker that started it
    stops: list[int] = []
    previous = note_stops(stops)  # from the first line: a signal while JAX starts is noted, not a crash
    try:
        return _run(args, stops)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(args: argparse.Namespace, stops: list[int]) -> int:
    from frugalrl.config.indices import parse_indices
    from frugalrl.devices import use_all_cores, use_compilation_cache
    from frugalrl.errors import GridError
    from frugalrl.runs.checkpoint import recorded_devices
    from frugalrl.runs.stops import signal_name

    try:
        indices = parse_indices(str(args.idx), limit=sys.maxsize)
    except GridError as error:
        return _error(str(error), EXIT_CONFIG)
    if len(indices) > 1:
        return _run_packed(args, indices, stops)
    args.idx = indices[0]
    # before anything touches JAX (loading a config builds the env): a run resumes on the device
    # layout its checkpoint was written with, whatever cores this process may use
    use_all_cores(recorded_devices(Path(args.logs) / Path(args.file).stem / str(args.idx) / "checkpoints"))
    use_compilation_cache()
    from frugalrl.errors import ConfigError, GridError

    try:
        cfg = load_config(args.file, args.idx)
    except (GridError, ConfigError) as error:
        return _error(str(error), EXIT_CONFIG)
    run_path = Path(args.logs) / cfg["experiment"] / str(args.idx)
    existing = next(folder for folder in (run_path, *run_path.parents) if folder.exists() or folder == Path("."))
    if existing.exists() and not existing.is_dir():
        return _error(f"--logs: {existing} is a file, not a folder", EXIT_CONFIG)
    from frugalrl.errors import CheckpointError, RunLockedError, RunStopped, TrainingError

    if stops:
        return _error(f"stopped by {signal_name(stops[0])} before the run started; nothing was written", 128 + stops[0])
    try:
        summary = _train(args, cfg, run_path, stops)
    except ConfigError as error:
        return _error(str(error), EXIT_CONFIG)
    except RunLockedError as error:
        return _error(str(error), EXIT_LOCKED)
    except (TrainingError, CheckpointError) as error:
        return _error(str(error), 1)
    except RunStopped as stop:
        message = (
            f"stopped by {stop.signal_name} at step {stop.step}, after a checkpoint; rerun the same command to resume"
        )
        return _error(f"{message} {run_path}", stop.exit_status)
    except KeyboardInterrupt:
        return _error(f"interrupted; rerun the same command to resume {run_path} from its last checkpoint", 130)
    except OSError as error:
        return _error(io_failure(error, run_path), EXIT_IO)
    print(summary.table())
    print(f"run directory: {summary.run_dir}")
    return 0


def _train(args: argparse.Namespace, cfg: dict[str, Any], run_path: Path, stops: list[int]) -> Any:
    """The run's summary: trained now, or read back if the run had finished (also when another
    process finished it while this one started)."""
    from frugalrl.config import check_same_config
    from frugalrl.errors import RunAlreadyFinished
    from frugalrl.runs.rundir import RunDir
    from frugalrl.train.run import run
    from frugalrl.train.session import finished_summary

    try:
        if args.fresh or not RunDir(run_path).finished():
            progress = not args.no_progress
            summary = run(
                cfg, run_path, fresh=args.fresh, retry=args.retry, progress=progress, stops=stops, unless_finished=True
            )
            seeds_steps = f"{cfg['num_seeds']} seeds x {summary.env_steps} steps"
            print(
                f"compile {summary.compile_seconds:.1f} s, run {summary.run_seconds:.1f} s ({seeds_steps})",
                file=sys.stderr,
            )
            return summary
    except RunAlreadyFinished:
        pass
    saved = RunDir(run_path).saved_config()
    check_same_config(saved, cfg, run_path)
    print(f"{run_path} already finished (use --fresh to run it again)", file=sys.stderr)
    return finished_summary(saved, run_path)


def _run_packed(args: argparse.Namespace, indices: list[int], stops: list[int]) -> int:
    """Several indices of one program (``frugal sweep FILE --plan``) trained as one packed program."""
    from frugalrl.devices import use_all_cores, use_compilation_cache
    from frugalrl.runs.checkpoint import recorded_devices

    use_all_cores(recorded_devices(Path(args.logs) / Path(args.file).stem / str(indices[0]) / "checkpoints"))
    use_compilation_cache()
    from frugalrl.config.packing import program_key
    from frugalrl.errors import CheckpointError, ConfigError, GridError, RunStopped, TrainingError
    from frugalrl.train.packed import run_packed, unpackable

    try:
        cfgs = [load_config(args.file, idx) for idx in indices]
    except (GridError, ConfigError) as error:
        return _error(str(error), EXIT_CONFIG)
    for idx, cfg in zip(indices, cfgs, strict=True):
        if program_key(cfg) != program_key(cfgs[0]):
            return _error(
                f"--idx {indices[0]} and {idx} differ in more than vmappable keys, so they cannot share a program; "
                f"'frugal sweep {args.file} --plan' lists the indices that can",
                EXIT_CONFIG,
            )
        if (why := unpackable(cfg)) is not None:
            return _error(f"--idx {idx} cannot be packed ({why}); run each index alone", EXIT_CONFIG)
    paths = [Path(args.logs) / cfg["experiment"] / str(idx) for idx, cfg in zip(indices, cfgs, strict=True)]
    try:
        outcome = run_packed(
            cfgs,
            paths,
            fresh=args.fresh,
            retry=args.retry,
            progress=not args.no_progress,
            stops=stops,
            layout=args.pack_layout,
        )
    except ConfigError as error:
        return _error(str(error), EXIT_CONFIG)
    except (TrainingError, CheckpointError) as error:
        return _error(str(error), 1)
    except RunStopped as stop:
        message = f"stopped by {stop.signal_name} at step {stop.step}, after a checkpoint; rerun to resume"
        return _error(message, stop.exit_status)
    except OSError as error:
        return _error(io_failure(error, paths[0]), EXIT_IO)
    return _packed_report(indices, paths, outcome)


def _packed_report(indices: list[int], paths: list[Path], outcome: dict[int, Any]) -> int:
    """One line per index of a packed program; the exit status: 1 if any failed, 75 if all were busy."""
    for position, (idx, path) in enumerate(zip(indices, paths, strict=True)):
        result = outcome.get(position, "not run")
        if isinstance(result, str):
            print(f"{idx}: {result.splitlines()[0]} ({path})")
        else:
            mean, std = float(result.final_returns.mean()), float(result.final_returns.std())
            print(f"{idx}: done, final greedy return {mean:.2f} ± {std:.2f} ({path})")
    texts = [result for result in outcome.values() if isinstance(result, str)]
    if any(text.startswith("failed") for text in texts):
        return 1
    return EXIT_LOCKED if texts and all(text.startswith("busy") for text in texts) else 0


def io_failure(error: OSError, run_path: Path) -> str:
    """One line for a failed read or write of a run directory."""
    where = error.filename or run_path
    reason = error.strerror or str(error).splitlines()[0]
    return f"cannot write {where}: {reason}; free space or make it writable, then rerun the same command to resume"


def cmd_sweep(args: argparse.Namespace) -> int:
    from frugalrl.config import ConfigError, GridError, count_dict, decode, flatten, load_grid, swept_keys

    try:
        grid = load_grid(args.file)
        n = count_dict(grid)
    except GridError as error:
        return _error(str(error), EXIT_CONFIG)
    print(f"Number of total combinations in {args.file}: {n}")
    if args.list or args.check:
        keys = swept_keys(grid)
        for idx in range(1, n + 1):
            combination, _ = decode(grid, idx)
            if args.check:
                try:
                    load_config(args.file, idx)
                except ConfigError as error:
                    return _error(f"config index {idx}: {error}", EXIT_CONFIG)
            if args.list:
                flat = flatten(combination)
                print(f"{idx:>5}  " + "  ".join(f"{key}={flat.get(key, '/')}" for key in keys))
        if args.check:
            print(f"all {n} combinations are valid configs")
    if n > 1 and not args.run:
        print(f"run k of combination i is --idx i + k*{n}")
    if args.plan:
        return _sweep_plan(args, grid, n)
    return _sweep_run(args, n) if args.run else 0


def _chosen(args: argparse.Namespace, size: int) -> list[int]:
    """The indices of --idx (GridError for a bad list), or every index of --runs runs."""
    from frugalrl.config import parse_indices

    return parse_indices(args.idx, size * args.runs) if args.idx is not None else list(range(1, size * args.runs + 1))


def _sweep_plan(args: argparse.Namespace, grid: dict[str, Any], size: int) -> int:
    """The programs the sweep's indices would share (hyperparameter packing's groups)."""
    from frugalrl.config import ConfigError, GridError, format_indices, swept_keys
    from frugalrl.config.packing import pack_groups

    try:
        indices = _chosen(args, size)
        groups = pack_groups(args.file, indices, swept_keys(grid))
    except (GridError, ConfigError) as error:
        return _error(str(error), EXIT_CONFIG)
    from frugalrl.train.packed import unpackable

    print(f"{len(indices)} runs in {len(groups)} programs (configs that differ only in vmappable keys share one)")
    for number, group in enumerate(groups, 1):
        varying = ", ".join(f"{key} {values}" for key, values in group.varying.items()) or "nothing"
        shared = " ".join(f"{key}={value}" for key, value in group.shared.items())
        alone = unpackable(load_config(args.file, group.indices[0])) if len(group.indices) > 1 else None
        print(f"program {number}: {len(group.indices)} runs, --idx {format_indices(group.indices)}")
        print(f"  varying {varying}; shared {shared or '-'}")
        if alone is not None:  # the same for every config of the program
            print(f"  not packed ({alone}): the sweep runs each of them alone")
    return 0


def _sweep_run(args: argparse.Namespace, size: int) -> int:
    from frugalrl.config import GridError, format_indices
    from frugalrl.sweep.engine import SweepEngineMissing, SweepPlan, SweepResourcesError, run_sweep

    if min(args.runs, args.cpus_per_run, args.max_pack) < 1 or args.gpus_per_run < 0 or args.retries < 0:
        return _error(
            "--runs, --cpus-per-run and --max-pack must be >= 1, --gpus-per-run and --retries >= 0", EXIT_CONFIG
        )
    try:
        indices = _chosen(args, size)
    except GridError as error:
        return _error(str(error), EXIT_CONFIG)
    plan = SweepPlan(
        Path(args.file),
        Path(args.logs),
        indices,
        args.cpus_per_run,
        args.gpus_per_run,
        args.address,
        args.retry,
        args.retries,
        pack=not args.no_pack,
        max_pack=args.max_pack,
        pack_layout=args.pack_layout,
    )
    bar = _SweepBar(not args.no_progress)
    try:
        report = run_sweep(plan, args.runs, bar.update)
    except (SweepEngineMissing, SweepResourcesError) as error:
        return _error(str(error), EXIT_CONFIG)
    finally:
        bar.close()
    for idx, why in sorted(report.skipped.items()):
        print(f"{idx}: skipped ({why})")
    failed = sorted(idx for idx, outcome in report.outcomes.items() if outcome.status != "done")
    for idx in failed:
        outcome = report.outcomes[idx]
        print(f"{idx}: {outcome.status}: {outcome.message}")
    rate = report.env_steps / report.seconds if report.seconds else 0.0
    print(
        f"{Path(args.file).stem}: {report.count('done')} runs finished, {len(failed)} not "
        f"({format_indices(failed) or 'none'}), {len(report.skipped)} skipped; "
        f"{report.seconds:.0f} s, {rate:,.0f} env steps/s over all runs"
    )
    for note in report.notes:
        print(f"not recorded: {note}")
    if report.stopped_by:
        name = signal.Signals(report.stopped_by).name
        message = f"stopped by {name}; the runs checkpointed: rerun the same command to resume"
        return _error(message, 128 + report.stopped_by)
    return 1 if failed else 0


class _SweepBar:
    """One bar for the whole sweep: runs done of those started, running, failed, env steps per second."""

    def __init__(self, show: bool) -> None:
        self.show, self.bar, self.started = show, None, 0.0

    def update(self, report: Any, pending: int, total: int) -> None:
        if not self.show:
            return
        import time

        from tqdm import tqdm

        if self.bar is None:
            self.bar, self.started = tqdm(total=total, unit="run", dynamic_ncols=True), time.perf_counter()
        self.bar.n = len(report.outcomes)
        rate = report.env_steps / max(time.perf_counter() - self.started, 1e-9)
        failed = sum(outcome.status != "done" for outcome in report.outcomes.values())
        self.bar.set_postfix_str(f"running {pending}, failed {failed}, {rate:,.0f} env steps/s", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_envs(args: argparse.Namespace) -> int:
    from frugalrl.envs import REGISTRY
    from frugalrl.envs.registry import LENGTH_FAMILIES, SUITE_FAMILIES

    for name in sorted(REGISTRY, key=lambda n: (REGISTRY[n].family, n)):
        print(f"{REGISTRY[name].family:>16}  {name}")
    for name in LENGTH_FAMILIES:
        print(f"{'memory':>16}  {name}  (any length >= 1)")
    for name in SUITE_FAMILIES:
        print(f"{'model_gen':>16}  {name}  ({'pipes >= 1' if name.startswith('PanFlute') else 'grid side >= 2'})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from frugalrl.config import describe

    for path, default, doc in describe():
        print(f"{path:<32} {default!r:<16} {doc}")
    return 0


def _sweep(args: argparse.Namespace) -> Any:
    from frugalrl.analysis import Sweep

    if args.runs < 1:
        raise ValueError(f"--runs must be >= 1, got {args.runs}")
    return Sweep(Path(args.file), Path(args.logs), args.runs)


STATE_HINTS = {
    "running": "held by a live run",
    "failed": "frugal run --retry resumes one; --fresh starts it over",
    "interrupted": "rerun resumes from the last checkpoint",
}


def cmd_status(args: argparse.Namespace) -> int:
    from frugalrl.analysis import RUN_STATES, dropped_seeds, run_states
    from frugalrl.config import GridError, format_indices

    try:
        sweep = _sweep(args)
        chosen = _chosen(args, sweep.size)  # --idx: the part of the grid a sweep ran
        states, other = run_states(sweep, chosen), sweep.mismatches(chosen)
    except (GridError, ValueError) as error:
        return _error(str(error), EXIT_CONFIG)
    by_state = {state: [idx for idx, (got, _) in states.items() if got == state] for state in RUN_STATES}
    counts = ", ".join(f"{len(by_state[state])} {state}" for state in RUN_STATES[1:] if by_state[state])
    print(
        f"{sweep.experiment}: {len(by_state['done'])} of {len(states)} runs finished"
        + (f" ({counts})" if counts else "")
        + f"; {sweep.size} combinations x {sweep.runs} runs"
    )
    for state in RUN_STATES:  # comma lists: what --idx and Slurm's --array read
        if by_state[state]:
            hint = f" ({STATE_HINTS[state]})" if state in STATE_HINTS else ""
            print(f"{state}: {format_indices(by_state[state])}{hint}")
        if state in ("running", "failed"):
            for idx in by_state[state]:
                print(f"  {idx}: {states[idx][1]}")
    unfinished = [idx for idx, (state, _) in states.items() if state not in ("done", "failed")]
    if unfinished:  # what a sweep would still run or wait for (failed runs wait for --retry)
        print(f"unfinished: {format_indices(unfinished)}")
    if other:
        print(f"holding another config than the grid's (analyze and plot refuse them): {format_indices(sorted(other))}")
        for idx, why in sorted(other.items()):
            print(f"  {idx}: {why.split(';')[0]}")
    dropped = dropped_seeds(sweep, chosen)
    if dropped:
        print("dropped seeds (train/on_divergence 'drop'; the other seeds went on):")
        for idx, seeds in sorted(dropped.items()):
            print(
                f"  {idx}: " + ", ".join(f"seed {seed} at step {record.get('step')}" for seed, record in seeds.items())
            )
    return 0


def _reference(args: argparse.Namespace) -> Any:
    from frugalrl.analysis import Reference

    return Reference.load(Path(args.normalize)) if args.normalize else None


def cmd_analyze(args: argparse.Namespace) -> int:
    from frugalrl.analysis import aggregate_table, results_name, results_table, summarise_time_and_memory
    from frugalrl.config import GridError

    try:
        sweep = _sweep(args)
        sweep.refuse_mismatches()
        reference = _reference(args)
        if args.at is not None and args.mode in ("Train", "both"):
            raise ValueError("--at picks an evaluation: give --mode Test or --mode Offline with it")
        print(summarise_time_and_memory(sweep))
        for mode in ("Train", "Test") if args.mode == "both" else (args.mode,):
            table = results_table(sweep, mode, args.last, args.at, reference)
            out = sweep.analysis_dir / results_name(mode, args.at)
            print(f"\n{mode}: {len(table)} combinations with results -> {out}")
            if not table.empty:
                print(table.head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if args.aggregate:
                by = [key.strip() for key in args.aggregate.split(",") if key.strip()]
                pooled = aggregate_table(sweep, by, mode, args.last, args.at, args.scale)
                print(f"\n{mode}, pooled over the other keys and seeds (IQM and mean, 95% stratified bootstrap):")
                print(pooled.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    except (GridError, ValueError) as error:
        return _error(str(error), EXIT_CONFIG)
    return 0


def _baseline(text: str) -> tuple[float, str]:
    """``VALUE`` or ``VALUE:LABEL`` of ``plot --baseline``."""
    value, _, label = text.partition(":")
    try:
        return float(value), label or "baseline"
    except ValueError:
        raise ValueError(f"a baseline is VALUE or VALUE:LABEL with a number for VALUE, got {text!r}") from None


def cmd_plot(args: argparse.Namespace) -> int:
    from frugalrl.analysis import Sweep, plot_curves
    from frugalrl.config import GridError

    series = []
    try:
        first = None
        for spec in args.specs:
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not parts[1].isdigit():
                raise ValueError(f"a curve is FILE:IDX or FILE:IDX:LABEL, got {spec!r}")
            sweep = Sweep(Path(parts[0]), Path(args.logs), args.runs)
            sweep.refuse_mismatches()
            first = first or sweep
            idx = int(parts[1])
            if not 1 <= idx <= sweep.size:
                raise ValueError(f"{parts[0]} has combinations 1..{sweep.size}, got {idx}")
            paths = [sweep.run_dir(i) for i in sweep.indices(idx)]
            paths = [path for path in paths if (path / f"result_{args.mode}.csv").exists()]
            if not paths:
                raise ValueError(f"no results for {spec} under {sweep.logs / sweep.experiment}")
            series.append((parts[2] if len(parts) == 3 else f"{sweep.experiment} {idx}", paths))
        path = first.analysis_dir / f"{args.name}.png"
        baselines = [_baseline(text) for text in args.baseline]
        out = plot_curves(
            series,
            path,
            args.mode,
            args.window,
            args.title,
            _reference(args),
            smooth=args.smooth,
            band=args.band,
            baselines=baselines,
        )
    except (GridError, ValueError) as error:
        return _error(str(error), EXIT_CONFIG)
    print(out)
    return 0


def cmd_import_dopamine(args: argparse.Namespace) -> int:
    from frugalrl.errors import DopamineFormatError
    from frugalrl.train.dopamine import import_dopamine_teacher

    try:
        meta = import_dopamine_teacher(
            Path(args.directory), args.checkpoint, Path(args.out), args.env, with_replay=not args.no_replay
        )
    except DopamineFormatError as error:
        return _error(str(error), 1)
    replay = meta["replay"]
    held = f"replay of {replay['capacity']} frames ({replay['add_count']} added)" if replay else "no replay"
    print(
        f'teacher written to {args.out}: {meta["num_actions"]} actions, {held}; use "teacher": {{"run": "{args.out}"}}'
    )
    return 0


NORMALIZE_HELP = (
    "teacher-normalised scores, (return - random) / (teacher - random), from a reincarnation.json or a "
    "student's run directory"
)


PACK_LAYOUT_HELP = (
    "packed lanes: exact (configs one after another per device: the bits of each run alone; "
    "the default on a CPU) or wide (one vmap over all lanes: faster on an accelerator, its default)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frugal", description="frugalrl: efficient deep RL research in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train config index IDX of a grid file (resumes if interrupted)")
    p.add_argument("file", help="JSON config grid")
    p.add_argument(
        "--idx",
        default="1",
        help="1-based config index; idx + k*N is run k (default 1); several of one program (e.g. 1-15) run packed",
    )
    p.add_argument("--logs", default="logs", help="root of run directories (default ./logs)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run in the same directory")
    p.add_argument("--retry", action="store_true", help="resume a run that failed from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pack-layout", choices=("exact", "wide"), help=PACK_LAYOUT_HELP)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sweep", help="count, list and check the combinations of a grid file; --run runs them on Ray")
    p.add_argument("file")
    p.add_argument("--list", action="store_true", help="print every index with its swept keys")
    p.add_argument("--check", action="store_true", help="validate every combination against the schema")
    p.add_argument("--run", action="store_true", help="run every unfinished index on Ray (local, or --address)")
    p.add_argument("--plan", action="store_true", help="print the programs hyperparameter packing would share")
    p.add_argument("--idx", help="with --run: indices to run, e.g. 1-180,361 (default: all of --runs runs)")
    p.add_argument("--runs", type=int, default=1, help="with --run: runs per combination (idx + k*N, k < runs)")
    p.add_argument("--logs", default="logs", help="root of run directories (default ./logs)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="cores (and XLA host devices) of each run")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs of each run (fractions share one)")
    p.add_argument("--address", help="a Ray cluster's HOST:PORT (default: RAY_ADDRESS, else Ray on this machine)")
    p.add_argument("--retry", action="store_true", help="also resume runs recorded as failed")
    p.add_argument("--retries", type=int, default=3, help="new attempts of a run whose worker was killed")
    p.add_argument("--no-pack", action="store_true", help="one program per index (no hyperparameter packing)")
    p.add_argument("--max-pack", type=int, default=32, help="configs packed into one program at most (default 32)")
    p.add_argument("--pack-layout", choices=("exact", "wide"), help=PACK_LAYOUT_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    for name, func, text in (
        ("status", cmd_status, "list the unfinished config indices of a sweep"),
        ("analyze", cmd_analyze, "time and memory summaries and the per-config results table of a sweep"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("file", help="JSON config grid")
        p.add_argument("--runs", type=int, default=1, help="runs per combination (idx + k*N, k < runs)")
        p.add_argument("--logs", default="logs", help="root of run directories (default ./logs)")
        p.set_defaults(func=func)
        if name == "status":
            p.add_argument("--idx", help="only these indices, e.g. 1-60,361 (default: all of --runs runs)")
        if name == "analyze":
            p.add_argument("--mode", choices=("Train", "Test", "Offline", "both"), default="both")
            p.add_argument("--last", type=int, help="returns averaged per seed (default 100 Train, 5 Test, 1 Offline)")
            p.add_argument("--at", type=int, help="score = the evaluation at this step (Test or Offline)")
            p.add_argument("--normalize", metavar="PATH", help=NORMALIZE_HELP)
            p.add_argument("--top", type=int, default=10, help="rows of the table to print")
            p.add_argument(
                "--aggregate",
                metavar="KEYS",
                help="also pool scores over every other swept key (e.g. the tasks) and the seeds, per value of "
                "these comma-separated keys: IQM and mean with 95%% stratified-bootstrap intervals",
            )
            p.add_argument("--scale", type=float, default=1.0, help="scores times this in --aggregate (DMC: 0.001)")
    p = sub.add_parser("plot", help="merged learning curves (mean ± standard error over seeds and runs)")
    p.add_argument("specs", nargs="+", metavar="FILE:IDX[:LABEL]", help="a combination of a grid file per curve")
    p.add_argument("--name", default="curves", help="file name under logs/{experiment of the first}/0/")
    p.add_argument("--mode", choices=("Train", "Test", "Offline"), default="Train")
    p.add_argument("--window", type=int, default=20, help="moving average of training returns")
    p.add_argument("--smooth", type=int, default=1, help="moving average of this many points of any curve")
    p.add_argument(
        "--band", choices=("se", "ci95"), default="se", help="± 1 standard error, or a 95%% interval (1.96 s.e.)"
    )
    p.add_argument("--normalize", metavar="PATH", help=NORMALIZE_HELP)
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="VALUE[:LABEL]",
        help="a horizontal line at this score (random play's, a paper's); may be given several times",
    )
    p.add_argument("--runs", type=int, default=1, help="runs per combination")
    p.add_argument("--logs", default="logs")
    p.add_argument("--title", default="")
    p.set_defaults(func=cmd_plot)
    sub.add_parser("envs", help="list registered environments").set_defaults(func=cmd_envs)
    sub.add_parser("keys", help="list every config key with its default").set_defaults(func=cmd_keys)
    p = sub.add_parser(
        "import-dopamine", help="make a teacher directory from a Dopamine JAX DQN checkpoint (e.g. DQN_400)"
    )
    p.add_argument("directory", help="Dopamine run directory (holding checkpoints/ckpt.N) or its checkpoints folder")
    p.add_argument("--checkpoint", type=int, required=True, help="checkpoint number N (DQN_400: 399)")
    p.add_argument("--env", required=True, help="environment the teacher played (recorded in teacher.json)")
    p.add_argument("--out", required=True, help="teacher directory to write")
    p.add_argument("--no-replay", action="store_true", help="parameters only")
    p.set_defaults(func=cmd_import_dopamine)
    return parser


def main(argv: list[str] | None = None) -> int:
    from frugalrl.devices import defer_plotting_imports

    args = build_parser().parse_args(argv)
    defer_plotting_imports()  # gymnax's import loads them; only analyze and plot draw (then they load)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # before a run holds its directory (importing JAX, reading the config)
        return _error("interrupted", 130)
    except BrokenPipeError:  # the reader went away (``frugal sweep FILE --list | head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
