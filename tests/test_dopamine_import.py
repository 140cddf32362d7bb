"""Importing a Dopamine JAX DQN teacher: a small checkpoint in that format, written here, read safely."""

import dataclasses
import gzip
import io
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from frugalrl.cli import main
from frugalrl.config import resolve
from frugalrl.nets import make_q_network
from frugalrl.train.dopamine import (
    DOPAMINE_NETWORK,
    DopamineFormatError,
    import_dopamine_teacher,
    load_teacher_params,
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
    with np.load(out / "replay.npz", allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["observation"], replay["$store$_observation"])
        np.testing.assert_array_equal(saved["terminal"], replay["$store$_terminal"])
        assert int(saved["add_count"]) == CAPACITY + 7


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
    pretrain = resolve({**cfg, "pretraining": {"steps": 100}})
    with pytest.raises(ConfigError, match="frame-stacking replay"):
        load_teacher(pretrain, spec)


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
