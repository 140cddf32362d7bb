"""Sweep analysis: unfinished indices, time and memory, per-config table, merged curves."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from frugalrl.analysis import Reference, Sweep, learning_curve, results_table, time_and_memory, unfinished
from frugalrl.cli import main
from frugalrl.config import resolve

GRID = {"optimizer/lr": [1e-3, 1e-4], "train/train_every": [1, 2], "num_seeds": [2]}  # N = 4


def fake_run(logs, idx, seed_returns, minutes=1.5, memory=300.0, finished=True):
    """A run directory as `frugal run` leaves it, with made-up returns per seed."""
    from frugalrl.config import decode

    combination, run = decode(GRID, idx)
    cfg = resolve(combination)
    path = logs / "grid" / str(idx)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({**cfg, "config_idx": idx, "run": run}))
    rows, test_rows = [], []
    for lane, returns in enumerate(seed_returns):
        for episode, value in enumerate(returns):
            rows.append(["CartPole-v1", "dqn", run * 2 + lane, episode + 1, 100 * (episode + 1), value, 100])
        test_rows.append(["CartPole-v1", "dqn", run * 2 + lane, 100 * len(returns), returns[-1], 0.0, 10])
    pd.DataFrame(rows, columns=["env", "agent", "seed", "episode", "step", "return", "length"]).to_csv(
        path / "result_Train.csv", index=False
    )
    pd.DataFrame(test_rows, columns=["env", "agent", "seed", "step", "return", "return_std", "episodes"]).to_csv(
        path / "result_Test.csv", index=False
    )
    lines = ["2026-11-21 - INFO: started"]
    if finished:
        lines += [f"INFO: Memory usage: {memory} MB", f"INFO: Time elapsed: {minutes} minutes"]
    (path / "log.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sweep(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    logs = tmp_path / "logs"
    fake_run(logs, 1, [[1, 2, 3], [3, 4, 5]], minutes=1.0, memory=100.0)  # combination 1, run 0
    fake_run(logs, 5, [[5, 6, 7], [7, 8, 9]], minutes=3.0, memory=300.0)  # combination 1, run 1
    fake_run(logs, 2, [[10, 10, 10], [20, 20, 20]])  # combination 2, run 0
    fake_run(logs, 3, [[0, 0, 0], [0, 0, 0]], finished=False)  # killed: ignored
    return Sweep(tmp_path / "grid.json", logs, runs=2)


def test_unfinished_lists_missing_and_killed_runs(sweep, capsys):
    assert unfinished(sweep) == [3, 4, 6, 7, 8]
    assert main(["status", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs)]) == 0
    out = capsys.readouterr().out
    assert "3 of 8 runs finished" in out and "unfinished: 3-4,6-8" in out


def test_status_of_some_indices_counts_and_lists_only_those(sweep, capsys):
    """What a sweep of ``--idx 2-4,7`` left: the other indices are neither counted nor listed."""
    args = ["status", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs)]
    assert main([*args, "--idx", "2-4,7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("grid: 1 of 4 runs finished (1 interrupted, 2 not started)")
    assert "done: 2" in out and "not started: 4,7" in out and "unfinished: 3-4,7" in out
    assert main([*args, "--idx", "9"]) == 2  # past 2 runs x 4 combinations
    assert "goes past 8" in capsys.readouterr().err


def test_status_tells_done_running_failed_interrupted_and_not_started_apart(sweep, capsys):
    from frugalrl.runs.lock import RunLock
    from frugalrl.runs.rundir import RunDir

    held = RunLock(sweep.run_dir(4))
    held.acquire()  # index 4 is running: its lock is held (here by this process)
    try:
        RunDir(sweep.run_dir(6)).path.mkdir(parents=True)
        RunDir(sweep.run_dir(6)).mark_failed("the loss of seed(s) [1] became NaN at step 300\nmore", 300, [1])
        assert main(["status", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs)]) == 0
    finally:
        held.release()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("grid: 3 of 8 runs finished (1 running, 1 failed, 1 interrupted, 2 not started)")
    assert "done: 1-2,5" in out and "running: 4 (held by a live run)" in out
    assert any(line.startswith("  4: PID ") for line in out)
    assert "  6: step 300, seeds [1]: the loss of seed(s) [1] became NaN at step 300" in out
    assert "interrupted: 3 (rerun resumes from the last checkpoint)" in out and "not started: 7-8" in out
    assert main(["status", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs)]) == 0
    assert "running" not in capsys.readouterr().out  # the lock was released: 4 is interrupted now


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", [3]), ("1-3,7", [1, 2, 3, 7]), (" 9-10, 2 5 ", [2, 5, 9, 10]), ("4,2-4", [2, 3, 4])],
)
def test_index_lists_read_ranges_and_commas_and_write_them_back(text, expected):
    from frugalrl.config import format_indices, parse_indices

    assert parse_indices(text, limit=10) == expected
    assert parse_indices(format_indices(expected), limit=10) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("1-x", "neither an index nor a range"),
        ("0", "start at 1"),
        ("5-3", "runs upwards"),
        ("3-11", "goes past 10"),
    ],
)
def test_a_bad_index_list_is_refused_in_one_line(text, message):
    from frugalrl.config import GridError, parse_indices

    with pytest.raises(GridError, match=message):
        parse_indices(text, limit=10)


def test_table_averages_the_last_returns_of_every_seed_of_every_run(sweep):
    table = results_table(sweep, "Train", last=2).set_index("config_idx")
    seeds = np.array([2.5, 4.5, 6.5, 8.5])  # last two returns of each seed of runs 1 and 5
    assert table.loc[1, "return_mean"] == pytest.approx(seeds.mean())
    assert table.loc[1, "return_se"] == pytest.approx(seeds.std() / math.sqrt(4))
    assert table.loc[1, "seeds"] == 4 and table.loc[2, "seeds"] == 2
    assert list(table.index) == [2, 1]  # sorted by mean, best first
    assert table.loc[1, "optimizer/lr"] == 1e-3 and table.loc[2, "optimizer/lr"] == 1e-4
    assert (sweep.analysis_dir / "results_Train.csv").exists()
    test = results_table(sweep, "Test").set_index("config_idx")
    assert test.loc[1, "return_mean"] == pytest.approx(np.mean([3, 5, 7, 9]))


def test_time_memory_summary_and_histograms(sweep, capsys):
    frame = time_and_memory(sweep).set_index("config_idx")
    assert frame.loc[1, "minutes"] == 1.0 and frame.loc[5, "memory_mb"] == 300.0 and 3 not in frame.index
    assert main(["analyze", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs)]) == 0
    out = capsys.readouterr().out
    assert "Memory usage over 3 runs: max 300.00 MB" in out and "Time elapsed over 3 runs" in out
    assert (sweep.analysis_dir / "memory_info.png").stat().st_size > 0
    assert (sweep.analysis_dir / "time_info.png").stat().st_size > 0


def test_merged_curve_resamples_every_seed_to_a_common_grid(sweep, capsys):
    steps, mean, se, n = learning_curve([sweep.run_dir(1), sweep.run_dir(5)], "Train", window=1, points=3)
    assert n == 4
    np.testing.assert_allclose(steps, [100, 200, 300])
    np.testing.assert_allclose(mean, [4, 5, 6])
    np.testing.assert_allclose(se, np.std([1, 3, 5, 7]) / 2)
    code = main(["plot", f"{sweep.file}:1:fast", f"{sweep.file}:2", "--name", "cmp", "--logs", str(sweep.logs)])
    assert code == 0 and (sweep.analysis_dir / "cmp.png").stat().st_size > 0
    assert main(["plot", f"{sweep.file}:9", "--logs", str(sweep.logs)]) == 2
    assert "has combinations 1..4" in capsys.readouterr().err
    # plot_metric.py's view: each seed's curve smoothed first, then a 95% band
    _, smoothed, _, _ = learning_curve([sweep.run_dir(1), sweep.run_dir(5)], "Train", window=1, points=3, smooth=2)
    np.testing.assert_allclose(smoothed, [4, 4.5, 5.5])
    args = ["plot", f"{sweep.file}:1", "--smooth", "2", "--band", "ci95", "--name", "ci", "--logs", str(sweep.logs)]
    assert main(args) == 0 and (sweep.analysis_dir / "ci.png").stat().st_size > 0
    # reference levels (random play's score) as horizontal lines; a bad one refused in one line
    args = ["plot", f"{sweep.file}:1", "--baseline=-20.2:random play", "--baseline", "3", "--logs", str(sweep.logs)]
    assert main([*args, "--name", "levels"]) == 0
    assert main(["plot", f"{sweep.file}:1", "--name", "plain", "--logs", str(sweep.logs)]) == 0
    assert (sweep.analysis_dir / "levels.png").read_bytes() != (sweep.analysis_dir / "plain.png").read_bytes()
    assert main([*args, "--baseline", "high:paper"]) == 2
    assert "a baseline is VALUE or VALUE:LABEL" in capsys.readouterr().err


def test_scores_at_a_step_and_teacher_normalised_tables_and_curves(sweep, tmp_path, capsys):
    reference = tmp_path / "reincarnation.json"
    reference.write_text(json.dumps({"teacher": 9.0, "random": 1.0, "teacher_checkpoint_step": 10}))
    table = results_table(sweep, "Test", at=300, reference=Reference.load(reference)).set_index("config_idx")
    assert table.loc[2, "return_mean"] == pytest.approx(15.0)
    assert table.loc[2, "normalized_mean"] == pytest.approx((15.0 - 1.0) / 8.0)
    assert table.loc[2, "normalized_se"] == pytest.approx(5.0 / math.sqrt(2) / 8.0)
    assert (sweep.analysis_dir / "results_Test_at300.csv").exists()
    with pytest.raises(ValueError, match="no evaluation at step 7"):
        results_table(sweep, "Test", at=7)
    steps, mean, _, n = learning_curve([sweep.run_dir(1)], "Train", window=1, reference=Reference.load(reference))
    assert n == 2 and mean[0] == pytest.approx(((1 + 3) / 2 - 1.0) / 8.0)
    args = ["--runs", "2", "--logs", str(sweep.logs), "--normalize", str(reference)]
    assert main(["analyze", str(sweep.file), "--mode", "Test", "--at", "300", *args]) == 0
    assert "normalized_mean" in capsys.readouterr().out
    assert main(["plot", f"{sweep.file}:1", "--mode", "Test", "--name", "norm", *args]) == 0
    assert (sweep.analysis_dir / "norm.png").stat().st_size > 0
    # bad references and a score at a step of training episodes are refused with a message
    reference.write_text(json.dumps({"teacher": 1.0, "random": 1.0}))
    assert main(["analyze", str(sweep.file), "--mode", "Test", *args]) != 0
    assert "no better than random" in capsys.readouterr().err
    assert main(["analyze", str(sweep.file), "--at", "300", "--runs", "2", "--logs", str(sweep.logs)]) != 0
    assert "--at picks an evaluation" in capsys.readouterr().err


def test_aggregate_pools_the_other_keys_and_seeds_with_iqm_and_bootstrap_intervals(sweep, capsys):
    from frugalrl.analysis import aggregate_table, interquartile_mean

    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5  # two cut from each end
    table = aggregate_table(sweep, ["optimizer/lr"], mode="Test", scale=0.1, reps=500).set_index("optimizer/lr")
    # lr 1e-3: runs 1 and 5 (last evaluations 3, 5, 7, 9); lr 1e-4: run 2 (10, 20)
    assert table.loc[1e-3, "scores"] == 4 and table.loc[1e-3, "iqm"] == pytest.approx(0.6)
    assert table.loc[1e-4, "iqm"] == pytest.approx(1.5) and table.loc[1e-4, "mean"] == pytest.approx(1.5)
    for lr in (1e-3, 1e-4):
        row = table.loc[lr]
        assert row.iqm_low <= row.iqm <= row.iqm_high and row.mean_low <= row["mean"] <= row.mean_high
    assert table.loc[1e-3, "iqm_low"] < table.loc[1e-3, "iqm_high"]  # resampling moves it
    with pytest.raises(ValueError, match="does not sweep: agent/tau"):
        aggregate_table(sweep, ["agent/tau"])
    args = ["analyze", str(sweep.file), "--runs", "2", "--logs", str(sweep.logs), "--mode", "Test"]
    assert main([*args, "--aggregate", "optimizer/lr", "--scale", "0.1"]) == 0
    assert "95% stratified bootstrap" in capsys.readouterr().out
