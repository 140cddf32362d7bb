"""The ``frugal`` command: run | sweep | envs | keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2


def _error(message: str, code: int) -> int:
    print(f"frugal: error: {message}", file=sys.stderr)
    return code


def load_config(file: str, idx: int) -> dict[str, Any]:
    """Decode and validate config ``idx`` of a grid file; raises GridError / ConfigError."""
    from frugalrl.config import count_dict, decode, load_grid, resolve

    grid = load_grid(file)
    combination, run_index = decode(grid, idx)
    combination.update(config_idx=idx, num_combinations=count_dict(grid), run=run_index, experiment=Path(file).stem)
    return resolve(combination)


def cmd_run(args: argparse.Namespace) -> int:
    from frugalrl.devices import use_all_cores, use_compilation_cache

    use_all_cores()  # before anything touches JAX: loading a config builds the env
    use_compilation_cache()
    from frugalrl.config import ConfigError, GridError

    try:
        cfg = load_config(args.file, args.idx)
    except (GridError, ConfigError) as error:
        return _error(str(error), EXIT_CONFIG)
    run_path = Path(args.logs) / cfg["experiment"] / str(args.idx)
    from frugalrl.runs.checkpoint import CheckpointError
    from frugalrl.runs.rundir import RunDir
    from frugalrl.train.run import TrainingError, check_same_config, finished_summary, run

    try:
        if not args.fresh and RunDir(run_path).finished():
            saved = RunDir(run_path).saved_config()
            check_same_config(saved, cfg, run_path)
            print(f"{run_path} already finished (use --fresh to run it again)", file=sys.stderr)
            summary = finished_summary(saved, run_path)
        else:
            summary = run(cfg, run_path, fresh=args.fresh, progress=not args.no_progress)
            print(
                f"compile {summary.compile_seconds:.1f} s, run {summary.run_seconds:.1f} s "
                f"({cfg['num_seeds']} seeds x {cfg['total_steps']} steps)",
                file=sys.stderr,
            )
    except ConfigError as error:
        return _error(str(error), EXIT_CONFIG)
    except (TrainingError, CheckpointError) as error:
        return _error(str(error), 1)
    except KeyboardInterrupt:
        return _error(f"interrupted; rerun the same command to resume {run_path} from its last checkpoint", 130)
    print(summary.table())
    print(f"run directory: {summary.run_dir}")
    return 0


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
    if n > 1:
        print(f"run k of combination i is --idx i + k*{n}")
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    from frugalrl.envs import REGISTRY

    for name in sorted(REGISTRY, key=lambda n: (REGISTRY[n].family, n)):
        print(f"{REGISTRY[name].family:>16}  {name}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from frugalrl.config import describe

    for path, default, doc in describe():
        print(f"{path:<32} {default!r:<16} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frugal", description="frugalrl: efficient deep RL research in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train config index IDX of a grid file (resumes if interrupted)")
    p.add_argument("file", help="JSON config grid")
    p.add_argument("--idx", type=int, default=1, help="1-based config index; idx + k*N is run k (default 1)")
    p.add_argument("--logs", default="logs", help="root of run directories (default ./logs)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run in the same directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sweep", help="count (and list, and check) the combinations of a grid file")
    p.add_argument("file")
    p.add_argument("--list", action="store_true", help="print every index with its swept keys")
    p.add_argument("--check", action="store_true", help="validate every combination against the schema")
    p.set_defaults(func=cmd_sweep)
    sub.add_parser("envs", help="list registered environments").set_defaults(func=cmd_envs)
    sub.add_parser("keys", help="list every config key with its default").set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
