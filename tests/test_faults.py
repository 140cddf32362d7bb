"""Faults a cluster throws at a run: a second writer on its directory, and stop signals.

A second process on a run directory refuses in one line and nothing is mixed; SIGTERM, SIGINT or
SIGUSR1 stop a run after its current segment and a checkpoint, and the rerun resumes it to exactly
the CSVs of an uninterrupted run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from frugalrl.errors import EXIT_LOCKED, RunLockedError
from frugalrl.runs.lock import RunLock

# long enough that the first process still runs when the second arrives 3 s later
GRID = {
    "num_seeds": [2],
    "total_steps": [20000],
    "network": [{"hidden": [[64, 64]]}],
    "replay": [{"capacity": [5000], "batch_size": [64]}],
    "train": [{"learning_starts": [1000], "train_every": [1]}],
    "eval": [{"every": [5000], "episodes": [2]}],
    "checkpoint": [{"every": [5000]}],
}
CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv")


def start(config: Path, logs: Path, prefix: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """``frugal run`` of ``config`` in a process of its own, its XLA device count left to the CLI."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the CLI picks the count: the cores it may use, or the checkpoint's
    command = [*prefix, sys.executable, "-m", "frugalrl.cli", "run", str(config), "--logs", str(logs), "--no-progress"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lock")
    config = folder / "locked.json"
    config.write_text(json.dumps(GRID))
    process = start(config, folder / "alone")
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return config, {name: (folder / "alone" / "locked" / "1" / name).read_text() for name in CSVS}


# 0.5, 1 and 3 s after the first start (the slow suite): the same path as 0 s at other moments of its start
@pytest.mark.parametrize("offset", [0.0, *(pytest.param(offset, marks=pytest.mark.slow) for offset in (0.5, 1.0, 3.0))])
def test_a_second_writer_refuses_and_the_first_run_is_a_single_runs(offset, single_run, tmp_path):
    config, expected = single_run
    first = start(config, tmp_path)
    time.sleep(offset)
    second = start(config, tmp_path)
    outcomes = [(process.wait(timeout=600), process.stderr.read()) for process in (first, second)]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, EXIT_LOCKED], outcomes  # a status of its own: a sweep leaves the run to its holder
    refusal = next(err for code, err in outcomes if code == EXIT_LOCKED).strip().splitlines()
    assert len(refusal) == 1 and "is in use by another frugal run (PID" in refusal[0], refusal
    run_dir = tmp_path / "locked" / "1"
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


def test_a_lock_is_free_again_once_its_holder_is_gone(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from frugalrl.runs.lock import RunLock; from pathlib import Path; "
            f"lock = RunLock(Path({str(tmp_path)!r})); lock.acquire(); print('held', flush=True); "
            "import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"PID {holder.pid} on "):
        RunLock(tmp_path).acquire()
    holder.kill()  # as kill -9: the kernel releases the lock
    holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()  # a stale lock is taken over
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def rows(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


# a first SIGINT (Ctrl-C) and SIGUSR1 (Slurm's --signal) take SIGTERM's path: they stay in the slow suite
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, *(pytest.param(s, marks=pytest.mark.slow) for s in (signal.SIGINT, signal.SIGUSR1))]
)
def test_a_stop_signal_checkpoints_and_the_rerun_on_one_core_ends_as_an_uninterrupted_run(signum, single_run, tmp_path):
    """The rerun under `taskset -c 0` (a requeue onto a smaller node) keeps the two XLA devices its
    checkpoint recorded, and ends as the uninterrupted run did."""
    config, expected = single_run
    run_dir = tmp_path / "locked" / "1"
    process = start(config, tmp_path)
    deadline = time.time() + 300
    while rows(run_dir / "metrics.csv") < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # until the loop runs (stop signals are noted from then on)
    process.send_signal(signum)
    status, err = process.wait(timeout=600), process.stderr.read().strip().splitlines()
    name = signal.Signals(signum).name
    errors = [line for line in err if line.startswith("frugal: error")]
    assert status == 128 + signum and len(errors) == 1 and f"stopped by {name} at step" in err[-1], (status, err)
    stopped_at = int(err[-1].split("at step ")[1].split(",")[0])
    assert 0 < stopped_at < 20000 and (run_dir / "checkpoints" / str(stopped_at) / "COMMITTED").exists()
    resumed = start(config, tmp_path, prefix=["taskset", "-c", "0"] if shutil.which("taskset") else [])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


def test_resuming_on_another_device_layout_is_refused_with_the_fix(tmp_path):
    from frugalrl.config import resolve
    from frugalrl.errors import TrainingError
    from frugalrl.runs import checkpoint
    from frugalrl.train.run import run

    raw = {"num_seeds": 2, "total_steps": 2000, "network": {"hidden": [16]}, "train": {"learning_starts": 500}}
    cfg = resolve({**raw, "eval": {"every": 1000, "episodes": 1}, "checkpoint": {"every": 1000, "final": False}})
    run(cfg, tmp_path / "run", progress=False)
    meta_path = tmp_path / "run" / "checkpoints" / "1000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["xla_devices"] == 2 and meta["seed_devices"] == 2
    text = json.dumps({**meta, "xla_devices": 1, "seed_devices": 1})  # as if written on one core
    meta_path.write_text(text)
    (meta_path.parent / "COMMITTED").write_text(checkpoint._text_digest(text))  # a genuine one, not an edit
    with pytest.raises(TrainingError, match="xla_force_host_platform_device_count=1 "):
        run(cfg, tmp_path / "run", progress=False)


def test_a_diverged_run_is_recorded_failed_shown_by_status_and_retried_only_when_asked(tmp_path, capsys):
    from frugalrl.cli import main

    grid = {**GRID, "total_steps": [2000], "optimizer": [{"lr": [1e38]}], "train": [{"learning_starts": [200]}]}
    config = tmp_path / "diverges.json"
    config.write_text(
        json.dumps({**grid, "eval": [{"every": [1000], "episodes": [1]}], "checkpoint": [{"every": [1000]}]})
    )
    logs = tmp_path / "logs"
    assert main(["run", str(config), "--logs", str(logs), "--no-progress"]) == 1
    assert "became NaN or inf" in capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads((logs / "diverges" / "1" / "FAILED").read_text())
    assert record["step"] > 0 and record["seeds"] and "became NaN or inf" in record["error"]
    assert main(["status", str(config), "--logs", str(logs)]) == 0
    shown = capsys.readouterr().out
    assert "0 of 1 runs finished" in shown and "failed: 1 " in shown and "unfinished" not in shown
    assert main(["run", str(config), "--logs", str(logs), "--no-progress"]) == 1  # a requeue does not loop
    refusal = capsys.readouterr().err.strip().splitlines()
    assert len(refusal) == 1 and f"failed at step {record['step']}" in refusal[0] and "--retry" in refusal[0]
    assert main(["run", str(config), "--logs", str(logs), "--no-progress", "--retry"]) == 1  # runs, and fails again
    assert "became NaN or inf" in capsys.readouterr().err.strip().splitlines()[-1]


def test_with_on_divergence_drop_a_diverged_seed_is_dropped_and_the_others_go_on(tmp_path):
    """Seed 1's parameters are made NaN in the checkpoint at step 1000; resumed with 'drop', seed 1 is
    dropped (its later returns NaN, recorded in DROPPED) and seed 0 ends exactly as without the fault."""
    import jax
    import jax.numpy as jnp
    import pandas as pd

    from frugalrl import envs
    from frugalrl.agents import make_agent
    from frugalrl.config import resolve
    from frugalrl.runs import checkpoint
    from frugalrl.train.loop import init_carry, seed_keys
    from frugalrl.train.run import run

    raw = {
        "num_seeds": 2,
        "total_steps": 3000,
        "network": {"hidden": [16]},
        "train": {"learning_starts": 500, "on_divergence": "drop"},
        "eval": {"every": 1000, "episodes": 2},
        "checkpoint": {"every": 1000, "keep": 5},
    }
    cfg = resolve(raw)
    run(cfg, tmp_path / "clean", progress=False)
    run(cfg, tmp_path / "faulty", progress=False)
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    shapes = jax.eval_shape(lambda k: init_carry(agent, env, env_params, spec, cfg, k), seed_keys(0, 0, 2))
    folder = tmp_path / "faulty" / "checkpoints"
    carry, meta = checkpoint.restore_latest(folder, shapes, at=1000)
    poisoned = jax.tree.map(lambda x: jnp.asarray(x).at[1].set(jnp.nan), carry.agent.params)
    carry = carry._replace(agent=carry.agent._replace(params=poisoned))
    for later in (2000, 3000):
        (folder / str(later) / "COMMITTED").unlink(missing_ok=True)  # resume from the poisoned one
    checkpoint.save(folder, 1000, carry, {k: v for k, v in meta.items() if k not in ("step", "checksum")}, 5)
    summary = run(cfg, tmp_path / "faulty", progress=False)
    dropped = json.loads((tmp_path / "faulty" / "DROPPED").read_text())
    # found at the end of the segment it diverged in (segments of 1000 steps here)
    assert list(dropped) == ["1"] and dropped["1"]["step"] == 2000 and "became NaN or inf" in dropped["1"]["error"]
    assert np.isnan(summary.final_returns[1]) and not np.isnan(summary.final_returns[0])
    for name in ("result_Train.csv", "result_Test.csv"):
        clean, faulty = (pd.read_csv(tmp_path / run_name / name) for run_name in ("clean", "faulty"))
        seed_0 = [frame[frame.seed == 0].reset_index(drop=True) for frame in (clean, faulty)]
        pd.testing.assert_frame_equal(*seed_0, check_dtype=False)  # NaN makes the faulty column float
        later = faulty[(faulty.seed == 1) & (faulty.step > (2000 if name == "result_Train.csv" else 1999))]
        assert len(later) > 0 and later["return"].isna().all()


def test_status_lists_the_seeds_a_run_dropped(tmp_path, capsys):
    from frugalrl.cli import main
    from frugalrl.runs.rundir import RunDir

    config = tmp_path / "grid.json"
    config.write_text(json.dumps({"optimizer": [{"lr": [1e-3, 1e-4]}]}))
    RunDir(tmp_path / "logs" / "grid" / "2").path.mkdir(parents=True)
    RunDir(tmp_path / "logs" / "grid" / "2").write_dropped({3: {"step": 4000, "error": "the loss of seed(s) [3] ..."}})
    assert main(["status", str(config), "--logs", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "0 of 2 runs finished" in out and "unfinished: 1-2" in out and "  2: seed 3 at step 4000" in out


SMALL = {
    "num_seeds": 2,
    "total_steps": 3000,
    "network": {"hidden": [16]},
    "replay": {"capacity": 1000},
    "train": {"learning_starts": 500},
    "eval": {"every": 1000, "episodes": 2},
    "checkpoint": {"every": 1000, "keep": 5},
}


@pytest.fixture
def ran(tmp_path):
    """A finished small run whose checkpoints at steps 1000 and 2000 a rerun resumes from."""
    from frugalrl.config import resolve
    from frugalrl.train.run import run

    run(resolve(SMALL), tmp_path / "run", progress=False)
    return tmp_path / "run"


def rerun(path: Path, echo=None, **changes):
    from frugalrl.config import resolve
    from frugalrl.train.run import run

    return run(resolve({**SMALL, **changes}), path, progress=False, echo=echo)


@pytest.mark.parametrize("name", ["result_Train.csv", "result_Test.csv", "metrics.csv"])
def test_a_deleted_or_edited_result_csv_is_refused_naming_it(ran, name):
    from frugalrl.errors import CheckpointError

    original = (ran / name).read_bytes()
    before = {csv: (ran / csv).read_bytes() for csv in CSVS}
    (ran / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing, but the checkpoint holds"):
        rerun(ran)
    assert all((ran / csv).read_bytes() == before[csv] for csv in CSVS if csv != name)  # refused, nothing cut
    lines = original.splitlines(keepends=True)
    lines[1] = lines[1].replace(b",", b",9", 1)  # an edit in a row the checkpoint keeps
    (ran / name).write_bytes(b"".join(lines))
    with pytest.raises(CheckpointError, match=f"{name} was changed after its checkpoint"):
        rerun(ran)
    (ran / name).write_bytes(original)
    assert rerun(ran).resumed_from == 2000  # as it was: resumes


def test_an_edited_meta_json_is_passed_over_with_a_warning_on_screen(ran):
    meta_path = ran / "checkpoints" / "2000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "rows": {**meta["rows"], "train": 1}}))
    said = []
    summary = rerun(ran, echo=said.append)
    assert summary.resumed_from == 1000
    assert any("2000 is unusable" in line and "meta.json does not match" in line for line in said), said


def test_a_checkpoint_of_other_shapes_is_refused_even_without_config_json(ran):
    from frugalrl.errors import CheckpointError

    (ran / "config.json").unlink()  # nothing left to compare the config with but the arrays
    with pytest.raises(
        CheckpointError, match=r"array replay/obs is \(2, 1005, 4\) float32, the config builds \(2, 504"
    ):
        rerun(ran, replay={"capacity": 500})


def test_shipped_configs_have_experiment_names_that_cannot_clash():
    stems = [path.stem for path in (Path(__file__).resolve().parent.parent / "configs").rglob("*.json")]
    assert len(stems) > 50 and len(stems) == len(set(stems)), sorted(s for s in stems if stems.count(s) > 1)


def test_analyze_refuses_a_run_directory_written_by_another_grid_of_the_same_name(tmp_path, capsys):
    from frugalrl.cli import main

    grid = {
        "total_steps": [1000],
        "network": [{"hidden": [[16]]}],
        "train": [{"learning_starts": [200]}],
        "eval": [{"every": [500], "episodes": [1]}],
        "checkpoint": [{"every": [0]}],
    }
    for folder, lr in (("a", 2.5e-4), ("b", 0.01)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.json").write_text(json.dumps({**grid, "optimizer": [{"lr": [lr]}]}))
    logs = str(tmp_path / "logs")
    assert main(["run", str(tmp_path / "a" / "same.json"), "--logs", logs, "--no-progress"]) == 0
    assert main(["analyze", str(tmp_path / "a" / "same.json"), "--logs", logs]) == 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "b" / "same.json"), "--logs", logs]) == 2
    refusal = capsys.readouterr().err.strip().splitlines()
    assert len(refusal) == 1 and "'optimizer/lr': 0.00025 -> 0.01" in refusal[0] and "index 1" in refusal[0]
    assert main(["status", str(tmp_path / "b" / "same.json"), "--logs", logs]) == 0
    assert "holding another config than the grid's (analyze and plot refuse them): 1" in capsys.readouterr().out
    assert main(["plot", f"{tmp_path / 'b' / 'same.json'}:1", "--logs", logs]) == 2
    assert "'optimizer/lr': 0.00025 -> 0.01" in capsys.readouterr().err
