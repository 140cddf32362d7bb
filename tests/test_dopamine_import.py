"""Importing a Dopamine JAX DQN teacher: a small checkpoint in that format, written here, read safely."""

import dataclasses
import gzip
import io
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from conftest import dopamine_written_run
from frugalrl.cli import main
from frugalrl.config import resolve
from frugalrl.nets import make_q_network
from frugalrl.train.dopamine import (
    DOPAMINE_NETWORK,
    DopamineFormatError,
    import_dopamine_teacher,
    load_teacher_params,
    load_teacher_replay,
    read_checkpoint,
)

ACTIONS, CAPACITY, NUMBER = 6, 40, 399


def dopamine_params(seed, names=("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")):
    shapes = [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64), (11 * 11 * 64, 512), (512, ACTIONS)]
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(shapes))
    return {
        name: {
            "kernel": 0.05 * jax.random.normal(keys[2 * i], shape),
            "bias": 0.05 * jax.random.normal(keys[2 * i + 1], shape[-1:]),
        }
        for i, (name, shape) in enumerate(zip(names, shapes, strict=True))
    }


def dopamine_q(params, frames):
    """Dopamine's NatureDQNNetwork written out with lax: /255, SAME convs, flatten, two dense layers."""
    x = frames.astype(jnp.float32) / 255.0
    for name, stride in (("Conv_0", 4), ("Conv_1", 2), ("Conv_2", 1)):
        x = jax.lax.conv_general_dilated(
            x, params[name]["kernel"], (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = jax.nn.relu(x + params[name]["bias"])
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return x @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def write_run(directory, params, online=None):
    """A Dopamine run directory: checkpoints/ckpt.N as the JAX DQN agent + runner bundle it, replay files."""
    folder = directory / "checkpoints"
    folder.mkdir(parents=True)
    online = FrozenDict({"params": params}) if online is None else online
    adam = optax.adam(1e-4).init(params)
    bundle = {
        "state": np.zeros((84, 84, 4)),
        "training_steps": 100_000_000,
        "online_params": online,
        "target_params": online,
        "optimizer_state": adam,
        "current_iteration": NUMBER,
        "logs": {"iteration_399": {"train_episode_returns": [np.float64(12.0), 15.0]}},
    }
    with open(folder / f"ckpt.{NUMBER}", "wb") as handle:
        pickle.dump(bundle, handle)
    (folder / f"sentinel_checkpoint_complete.{NUMBER}").write_text("done")
    rng = np.random.default_rng(0)
    replay = {
        "$store$_observation": rng.integers(0, 256, (CAPACITY, 84, 84), dtype=np.uint8),
        "$store$_action": rng.integers(0, ACTIONS, CAPACITY).astype(np.int32),
        "$store$_reward": rng.normal(size=CAPACITY).astype(np.float32),
        "$store$_terminal": (rng.random(CAPACITY) < 0.05).astype(np.uint8),
        "add_count": np.array(CAPACITY + 7, np.int64),
        "invalid_range": np.arange(7, dtype=np.int64),
    }
    for name, array in replay.items():
        write_npy_gz(folder / f"{name}_ckpt.{NUMBER}.gz", array)
    return replay


def write_npy_gz(path, array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    with gzip.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def test_imported_teacher_computes_dopamines_q_values_and_keeps_the_replay(tmp_path):
    params = dopamine_params(0)
    replay = write_run(tmp_path / "run", params)
    out = tmp_path / "teacher"
    command = ["import-dopamine", str(tmp_path / "run"), "--checkpoint", "399", "--env", "Pong", "--out", str(out)]
    assert main(command) == 0
    ours, meta = load_teacher_params(out)
    assert meta["num_actions"] == ACTIONS and meta["training_steps"] == 100_000_000
    net = make_q_network(resolve({"network": DOPAMINE_NETWORK})["network"], (84, 84, 4), ACTIONS)
    frames = jax.random.randint(jax.random.PRNGKey(1), (3, 84, 84, 4), 0, 256).astype(jnp.uint8)
    np.testing.assert_allclose(net.apply(ours, frames), dopamine_q(params, frames), rtol=1e-4, atol=1e-4)
    saved = load_teacher_replay(out)
    assert isinstance(saved["observation"], np.memmap)  # read from disk as it is used, not loaded whole
    for name in ("observation", "action", "reward", "terminal"):
        np.testing.assert_array_equal(saved[name], replay[f"$store$_{name}"])
    np.testing.assert_array_equal(saved["invalid_range"], replay["invalid_range"])
    assert int(saved["add_count"]) == CAPACITY + 7
    assert meta["replay"] == {"capacity": CAPACITY, "add_count": CAPACITY + 7, "stack": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "teacher"]  # no staging folder left


def test_pre_linen_checkpoints_with_plain_numpy_params_import_too(tmp_path):
    params = dopamine_params(2, names=("Conv_0", "Conv_1", "Conv_2", "Dense_3", "Dense_4"))
    numpy_params = jax.tree.map(np.asarray, params)
    write_run(tmp_path / "run", params, online=numpy_params)
    import_dopamine_teacher(tmp_path / "run", NUMBER, tmp_path / "teacher", "Pong", with_replay=False)
    ours, meta = load_teacher_params(tmp_path / "teacher")
    assert meta["replay"] is None
    np.testing.assert_array_equal(ours["params"]["torso"]["Dense_1"]["kernel"], numpy_params["Dense_4"]["kernel"])


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    with open(folder / f"ckpt.{NUMBER}", "wb") as handle:
        pickle.dump({"online_params": RunsAShellCommand(marker)}, handle)
    with pytest.raises(DopamineFormatError, match=r"refusing to unpickle (posix|os)\.system"):
        read_checkpoint(tmp_path / "run", NUMBER)
    assert not marker.exists()


def test_malformed_files_get_clear_errors(tmp_path):
    params = dopamine_params(3)
    write_run(tmp_path / "run", params)
    ckpt = tmp_path / "run" / "checkpoints" / f"ckpt.{NUMBER}"
    whole = ckpt.read_bytes()
    ckpt.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DopamineFormatError, match="not a readable pickle"):
        read_checkpoint(tmp_path / "run", NUMBER)
    # a network of the wrong shape
    bad = dict(params, Dense_0={"kernel": jnp.zeros((3136, 512)), "bias": jnp.zeros(512)})
    with open(ckpt, "wb") as handle:
        pickle.dump({"online_params": FrozenDict({"params": bad})}, handle)
    expected = r"Dense_0 has a kernel of shape \(3136, 512\), expected \(7744, 512\)"
    with pytest.raises(DopamineFormatError, match=expected):
        import_dopamine_teacher(tmp_path / "run", NUMBER, tmp_path / "t1", "Pong")
    with open(ckpt, "wb") as handle:
        pickle.dump({"something": 1}, handle)
    with pytest.raises(DopamineFormatError, match="holds no 'online_params'"):
        read_checkpoint(tmp_path / "run", NUMBER)
    # a replay file holding pickled objects
    with open(ckpt, "wb") as handle:
        pickle.dump({"online_params": FrozenDict({"params": params})}, handle)
    write_npy_gz(tmp_path / "run" / "checkpoints" / f"$store$_reward_ckpt.{NUMBER}.gz", np.array([{}] * 3), True)
    with pytest.raises(DopamineFormatError, match="only plain numeric arrays"):
        import_dopamine_teacher(tmp_path / "run", NUMBER, tmp_path / "t2", "Pong")
    with pytest.raises(DopamineFormatError, match="no Dopamine checkpoint ckpt.7"):
        read_checkpoint(tmp_path / "run", 7)
    assert main(["import-dopamine", str(tmp_path / "run"), "--checkpoint", "7", "--env", "Pong", "--out", "x"]) == 1


def test_an_imported_teacher_serves_as_a_students_teacher(tmp_path):
    from frugalrl.config import ConfigError
    from frugalrl.envs import EnvSpec
    from frugalrl.train.teacher import load_teacher

    params = dopamine_params(4)
    write_run(tmp_path / "run", params)
    import_dopamine_teacher(tmp_path / "run", NUMBER, tmp_path / "teacher", "Pong")
    spec = EnvSpec("PongNoFrameskip-v4", (84, 84, 4), np.uint8, ACTIONS, (), None, None, 27_000)
    cfg = resolve({"teacher": {"run": str(tmp_path / "teacher")}, "distillation": {"coefficient": 3.0}})
    teacher = load_teacher(cfg, spec)
    frames = jax.random.randint(jax.random.PRNGKey(5), (2, 84, 84, 4), 0, 256).astype(jnp.uint8)
    np.testing.assert_allclose(
        teacher.agent.network.apply(teacher.params, frames), dopamine_q(params, frames), rtol=1e-4, atol=1e-4
    )
    assert teacher.replay is None and teacher.checkpoint_step == 100_000_000
    with pytest.raises(ConfigError, match="has 6 actions, the student's env .* has 4"):
        load_teacher(cfg, dataclasses.replace(spec, num_actions=4))
    pretrain = load_teacher(resolve({**cfg, "pretraining": {"steps": 100}}), spec)  # its replay as a dataset
    from frugalrl.replay import fifo

    assert fifo.stack_size(pretrain.replay) == 4 and 0 < pretrain.count < CAPACITY
    with pytest.raises(ConfigError, match="does not take the student's observations \\(10, 10, 4\\)"):
        load_teacher(resolve({**cfg, "pretraining": {"steps": 100}}), dataclasses.replace(spec, obs_shape=(10, 10, 4)))


@pytest.mark.parametrize(
    "array",
    [
        np.array([1, "a"], dtype=object),  # pointers to Python objects
        np.zeros(2, dtype=[("f0", "f8"), ("f1", "i4")]),  # structured: a pickle can forge its fields and flags
        np.array(["abc"]),  # strings are not parameters either
    ],
)
def test_only_plain_numeric_arrays_are_built_from_a_checkpoint(tmp_path, array):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    with open(folder / f"ckpt.{NUMBER}", "wb") as handle:
        pickle.dump({"online_params": {"params": {"Conv_0": {"kernel": array}}}}, handle)
    with pytest.raises(DopamineFormatError, match="plain numeric"):
        read_checkpoint(tmp_path / "run", NUMBER)


class ForgedShape:
    """Pickles as numpy does for an ndarray, but claims 600 floats while carrying 6."""

    def __reduce__(self):
        state = (1, (200, 3), np.dtype("f4"), False, bytes(24))
        return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)


def test_an_array_whose_bytes_do_not_match_its_shape_is_refused(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    with open(folder / f"ckpt.{NUMBER}", "wb") as handle:
        pickle.dump({"online_params": ForgedShape()}, handle)
    with pytest.raises(DopamineFormatError, match=r"shape \(200, 3\) float32 holds 24 bytes"):
        read_checkpoint(tmp_path / "run", NUMBER)


def write_gz(path, data):
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(data)


def npy_header(shape, descr="|u1"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def import_command(tmp_path, out):
    return ["import-dopamine", str(tmp_path / "run"), "--checkpoint", str(NUMBER), "--env", "Pong", "--out", str(out)]


def refused_in_one_line(tmp_path, capsys, expected):
    """`frugal import-dopamine` of tmp_path/run fails with one line matching ``expected``, writing nothing."""
    out = tmp_path / "teacher"
    capsys.readouterr()
    assert main(import_command(tmp_path, out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("frugal: error:") and err.count("\n") == 1, err
    assert re.search(expected, err), err
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    return err


def test_a_forged_header_claiming_exbibytes_is_refused_in_one_line_without_allocating(tmp_path, capsys):
    write_run(tmp_path / "run", dopamine_params(6))
    observation = tmp_path / "run" / "checkpoints" / f"$store$_observation_ckpt.{NUMBER}.gz"
    write_gz(observation, npy_header((10**15, 84, 84)) + bytes(64))
    err = refused_in_one_line(tmp_path, capsys, r"claims a uint8 array of shape \(1000000000000000, 84, 84\), 6\.1 EiB")
    assert str(observation) in err and "64.0 GiB a replay array may hold" in err


def test_a_replay_larger_than_the_free_disk_space_is_refused_before_copying(tmp_path, capsys, monkeypatch):
    import shutil

    write_run(tmp_path / "run", dopamine_params(6))
    usage = shutil.disk_usage(tmp_path)
    for free, expected in (
        (
            100_000,
            r"observation_ckpt\.399\.gz: its \.npy header claims a uint8 array of shape \(40, 84, 84\), 275\.6 KiB",
        ),
        (282_300, r"the replay of ckpt\.399 in .*/run is 276\.0 KiB"),  # each array fits, not all of them
    ):
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: usage._replace(free=free))
        err = refused_in_one_line(tmp_path, capsys, expected)
        assert f"more than the {free / 1024:.1f} KiB free where the teacher is written ({tmp_path / 'teacher'})" in err


def test_cut_short_corrupt_or_overlong_replay_files_are_refused_in_one_line(tmp_path, capsys):
    replay = write_run(tmp_path / "run", dopamine_params(7))
    folder = tmp_path / "run" / "checkpoints"
    frames = replay["$store$_observation"]
    whole = npy_header(frames.shape) + frames.tobytes()
    write_gz(folder / f"$store$_observation_ckpt.{NUMBER}.gz", whole[:-100])
    refused_in_one_line(tmp_path, capsys, r"is cut short: it holds 275\.5 KiB of the 275\.6 KiB its header claims")
    write_gz(folder / f"$store$_observation_ckpt.{NUMBER}.gz", whole + b"\0")
    refused_in_one_line(tmp_path, capsys, "holds more bytes than its header claims")
    write_gz(folder / f"$store$_observation_ckpt.{NUMBER}.gz", whole)
    gz = folder / f"$store$_observation_ckpt.{NUMBER}.gz"
    gz.write_bytes(gz.read_bytes()[:-5000])  # the gzip stream itself cut
    refused_in_one_line(tmp_path, capsys, r"is not a whole gzipped \.npy file \(EOFError")
    write_npy_gz(gz, frames[:30])  # headers are checked against each other before any array is copied
    refused_in_one_line(tmp_path, capsys, r"do not form a buffer of single uint8 frames")


def test_files_linking_out_of_the_dopamine_directory_are_refused(tmp_path, capsys):
    write_run(tmp_path / "run", dopamine_params(8))
    (tmp_path / "elsewhere").mkdir()
    for name in (f"$store$_reward_ckpt.{NUMBER}.gz", f"ckpt.{NUMBER}"):
        source = tmp_path / "run" / "checkpoints" / name
        moved = tmp_path / "elsewhere" / name
        source.rename(moved)
        source.symlink_to(moved)
        err = refused_in_one_line(tmp_path, capsys, "leads outside the Dopamine directory")
        assert str(source) in err
        source.unlink()
        moved.rename(source)
    assert main(import_command(tmp_path, tmp_path / "teacher")) == 0


def test_a_teacher_directory_whose_files_link_outside_it_is_refused(tmp_path):
    from frugalrl.config import ConfigError
    from frugalrl.envs import EnvSpec
    from frugalrl.train.teacher import load_teacher

    write_run(tmp_path / "run", dopamine_params(9))
    teacher = tmp_path / "teacher"
    import_dopamine_teacher(tmp_path / "run", NUMBER, teacher, "Pong")
    spec = EnvSpec("PongNoFrameskip-v4", (84, 84, 4), np.uint8, ACTIONS, (), None, None, 27_000)
    cfg = resolve({"teacher": {"run": str(teacher)}, "distillation": {"coefficient": 3.0}})
    (tmp_path / "kept").mkdir()
    (teacher / "params.npz").rename(tmp_path / "kept" / "params.npz")
    (teacher / "params.npz").symlink_to(tmp_path / "kept" / "params.npz")
    expected = r"^config key 'teacher/run': .*params\.npz leads outside the teacher directory"
    with pytest.raises(ConfigError, match=expected):
        load_teacher(cfg, spec)
    with pytest.raises(ConfigError, match=expected):
        load_teacher_params(teacher)
    (teacher / "params.npz").unlink()
    (tmp_path / "kept" / "params.npz").rename(teacher / "inner.npz")
    (teacher / "params.npz").symlink_to("inner.npz")  # a link that stays inside is followed
    assert load_teacher(cfg, spec).checkpoint_step == 100_000_000
    frames = teacher / "replay" / "observation.npy"
    frames.rename(tmp_path / "kept" / "observation.npy")
    frames.symlink_to(tmp_path / "kept" / "observation.npy")
    with pytest.raises(ConfigError, match=r"^config key 'teacher/run': .*observation\.npy leads outside"):
        load_teacher_replay(teacher)
    run = tmp_path / "frugal_run"  # a frugalrl run as the teacher: config.json and checkpoints/ alike
    run.mkdir()
    (run / "config.json").symlink_to(tmp_path / "kept" / "observation.npy")
    run_cfg = resolve({"teacher": {"run": str(run)}, "distillation": {"coefficient": 3.0}})
    with pytest.raises(ConfigError, match=r"^config key 'teacher/run': .*config\.json leads outside"):
        load_teacher(run_cfg, spec)


def test_an_earlier_teacher_is_replaced_and_other_directories_are_left_alone(tmp_path, capsys):
    write_run(tmp_path / "run", dopamine_params(10))
    out = tmp_path / "teacher"
    import_dopamine_teacher(tmp_path / "run", NUMBER, out, "Pong")
    import_dopamine_teacher(tmp_path / "run", NUMBER, out, "Pong", with_replay=False)
    assert load_teacher_params(out)[1]["replay"] is None and not (out / "replay").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "teacher"]
    (out / "teacher.json").unlink()
    with pytest.raises(DopamineFormatError, match="holds files and no teacher.json"):
        import_dopamine_teacher(tmp_path / "run", NUMBER, out, "Pong")
    assert (out / "params.npz").exists()


FRAME = 84 * 84
# A child that imports the module, reads a replay (if told to) and prints its own peak resident memory:
# VmHWM, the high-water mark of its own address space (ru_maxrss would count the forked parent's, pytest's).
PEAK_RSS = """
import sys
from pathlib import Path
from frugalrl.train.dopamine import read_replay
if len(sys.argv) > 1:
    replay = read_replay(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
    print(replay["observation"].shape[0])
status = Path("/proc/self/status").read_text()
print(next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def write_large_replay(folder, gzipped_bytes):
    """Replay files whose frames (values 0-15: gzip level 1 keeps ~58% of them) gzip to about
    ``gzipped_bytes``, written 1000 frames at a time; returns the number of frames."""
    folder.mkdir(parents=True)
    capacity = int(gzipped_bytes / (0.58 * FRAME))
    rng = np.random.default_rng(0)
    with gzip.open(folder / f"$store$_observation_ckpt.{NUMBER}.gz", "wb", compresslevel=1) as handle:
        handle.write(npy_header((capacity, 84, 84)))
        for start in range(0, capacity, 1000):
            handle.write(rng.integers(0, 16, (min(1000, capacity - start), FRAME), dtype=np.uint8).tobytes())
    small = {
        "$store$_action": np.zeros(capacity, np.int32),
        "$store$_reward": np.zeros(capacity, np.float32),
        "$store$_terminal": np.zeros(capacity, np.uint8),
        "add_count": np.array(capacity, np.int64),
        "invalid_range": np.arange(4, dtype=np.int64),
    }
    for name, array in small.items():
        write_npy_gz(folder / f"{name}_ckpt.{NUMBER}.gz", array)
    return capacity


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory read from Linux's /proc")
@pytest.mark.parametrize("gzipped_mb", [20, pytest.param(100, marks=pytest.mark.slow)])
def test_the_replay_is_streamed_in_bounded_memory(tmp_path, gzipped_mb):
    capacity = write_large_replay(tmp_path / "run", gzipped_mb << 20)
    gzipped = (tmp_path / "run" / f"$store$_observation_ckpt.{NUMBER}.gz").stat().st_size
    child = [sys.executable, "-c", PEAK_RSS]
    baseline = int(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
    done = subprocess.run(
        [*child, tmp_path / "run", str(NUMBER), tmp_path / "replay"], capture_output=True, text=True, check=True
    )
    frames, peak = map(int, done.stdout.split())
    array = capacity * FRAME
    print(
        f"observation file {gzipped / 2**20:.1f} MiB gzipped, {array / 2**20:.1f} MiB of frames: peak RSS of the "
        f"import {peak / 2**20:.1f} MiB, of the bare import of the module {baseline / 2**20:.1f} MiB"
    )
    assert frames == capacity and (tmp_path / "replay" / "observation.npy").stat().st_size == array + 128
    assert peak - baseline < array / 2


FIXTURE = Path(__file__).parent / "data" / "dopamine_fixture"


@pytest.fixture(scope="module")
def dopamine_written(tmp_path_factory):
    """tests/data/dopamine_fixture (written by dopamine-rl itself) imported as a teacher."""
    source = dopamine_written_run(tmp_path_factory.mktemp("dopamine"))
    teacher = source.parent / "teacher"
    import_dopamine_teacher(source, 3, teacher, "Pong")
    return teacher, np.load(FIXTURE / "expected.npz")


def test_a_teacher_written_by_dopamine_computes_dopamines_q_values(dopamine_written):
    teacher, expected = dopamine_written
    params, meta = load_teacher_params(teacher)
    network = make_q_network(DOPAMINE_NETWORK, (84, 84, 4), meta["num_actions"])
    q_values = network.apply(params, jnp.asarray(expected["q_inputs"]))
    np.testing.assert_allclose(q_values, expected["q_values"].reshape(q_values.shape), rtol=1e-4, atol=1e-4)
    assert float(np.abs(expected["q_values"]).max()) > 0.01  # not a network of zeros


def test_dopamines_replay_becomes_frame_stacks_equal_to_the_ones_dopamine_samples(dopamine_written):
    from frugalrl.replay import fifo
    from frugalrl.train.dopamine import frame_replay

    teacher, expected = dopamine_written
    replay, count = frame_replay(load_teacher_replay(teacher))
    held = int(fifo.size(replay, jnp.int32(count)))
    batch = fifo.gather(replay, jnp.int32(count), jnp.arange(held), n_step=1, gamma=0.99)
    number = lambda stack: tuple(int(a) + 256 * int(b) for a, b in zip(stack[0, 0], stack[0, 1], strict=True))  # noqa: E731
    ours = {number(np.asarray(obs)): i for i, obs in enumerate(batch.obs)}
    assert len(ours) == held
    for k in range(len(expected["valid"])):
        stack = expected["stacks"][k]
        i = ours.get(number(stack))
        assert i is not None, f"Dopamine's index {expected['valid'][k]} is missing"
        np.testing.assert_array_equal(np.asarray(batch.obs[i]), stack)
        assert int(batch.action[i]) == int(expected["actions"][k])
        assert float(batch.reward[i]) == pytest.approx(float(expected["rewards"][k]))
        assert (float(batch.discount[i]) == 0.0) == bool(expected["terminals"][k])
        if not expected["terminals"][k]:
            np.testing.assert_array_equal(np.asarray(batch.next_obs[i]), expected["next_stacks"][k])
    assert held == len(expected["valid"])  # the transitions Dopamine samples, and no others
