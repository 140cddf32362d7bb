"""Write tests/data/dopamine_fixture/ with Dopamine's own code: a JAX DQN checkpoint and a replay.

The reincarnation teachers (gs://rl_checkpoints/DQN_400) are Dopamine JAX DQN agents whose replay
is Dopamine's ``OutOfGraphReplayBuffer``. This script, run once in an environment of its own with
dopamine-rl installed, lets that code write both, so the importer's test checks frugalrl against
Dopamine itself rather than against our reading of its format:

    python3 -m venv .venv-dopamine && .venv-dopamine/bin/pip install dopamine-rl==4.1.2
    .venv-dopamine/bin/python scripts/make_dopamine_fixture.py tests/data/dopamine_fixture

It writes ``checkpoints/ckpt.N`` (``JaxDQNAgent.bundle_and_checkpoint`` saved by Dopamine's
``Checkpointer``), the replay files (``OutOfGraphReplayBuffer.save`` after episodes of distinct
frames that wrap around its capacity), and ``expected.npz``: Q-values Dopamine's network computes
on a few stacks, and for every index Dopamine would sample, the stack, next stack, action,
reward and terminal flag its buffer returns.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ACTIONS, CAPACITY, ITERATION, STACK = 6, 160, 3, 4


def frame(number: int, rng: np.random.Generator) -> np.ndarray:
    """A frame that says which it is: its number in the first pixels, a little noise elsewhere."""
    image = np.zeros((84, 84), np.uint8)
    image[0, 0], image[0, 1] = number % 251 + 1, number // 251 + 1
    image[10:20, 10:20] = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    return image


def small_to_store(params: object, rng: np.random.Generator) -> object:
    """The agent's parameters made cheap to keep in a repository: multiples of 1/64, and the large
    dense layer 99% zeros. Still a Nature CNN computing varied Q-values, which is all the test needs."""
    import jax

    def shrink(path: tuple, value: object) -> np.ndarray:
        array = np.round(np.asarray(value, np.float32) * 64) / 64
        if array.size > 1_000_000:
            array = np.where(rng.random(array.shape) < 0.01, array + 1 / 64, 0.0).astype(np.float32)
        return jax.numpy.asarray(array)

    return jax.tree_util.tree_map_with_path(shrink, params)


def write_replay(folder: Path, rng: np.random.Generator) -> object:
    from dopamine.tf.replay_memory.circular_replay_buffer import OutOfGraphReplayBuffer

    replay = OutOfGraphReplayBuffer(
        observation_shape=(84, 84), stack_size=STACK, replay_capacity=CAPACITY, batch_size=8, update_horizon=1
    )
    number = 0
    while replay.add_count < CAPACITY + 57:  # wraps around: the oldest episodes are overwritten
        length = int(rng.integers(3, 30))
        for step in range(length):
            number += 1
            terminal = step == length - 1 and rng.random() < 0.8  # some episodes end without a terminal
            replay.add(frame(number, rng), int(rng.integers(ACTIONS)), float(rng.normal()), terminal)
    replay.save(str(folder), ITERATION)
    return replay


def expected_transitions(replay: object) -> dict[str, np.ndarray]:
    valid = [i for i in range(CAPACITY) if replay.is_valid_transition(i)]
    stacks = np.stack([replay.get_observation_stack(i) for i in valid])
    next_stacks = np.stack([replay.get_observation_stack((i + 1) % CAPACITY) for i in valid])
    store = replay._store  # noqa: SLF001 - the arrays the buffer saved
    return {
        "valid": np.array(valid),
        "stacks": stacks,
        "next_stacks": next_stacks,
        "actions": store["action"][valid],
        "rewards": store["reward"][valid],
        "terminals": store["terminal"][valid],
    }


def stub_baselines() -> None:
    """dopamine's atari_lib imports OpenAI baselines' Atari wrappers (not on PyPI) at import time;
    nothing here uses them, so an empty stand-in module lets the agent import."""
    import types

    for name in ("baselines", "baselines.common", "baselines.common.atari_wrappers"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["baselines"].common = sys.modules["baselines.common"]
    sys.modules["baselines.common"].atari_wrappers = sys.modules["baselines.common.atari_wrappers"]


def main(out: Path) -> None:
    stub_baselines()
    import jax
    from dopamine.discrete_domains.checkpointer import Checkpointer
    from dopamine.jax.agents.dqn.dqn_agent import JaxDQNAgent

    rng = np.random.default_rng(7)
    if out.exists():
        shutil.rmtree(out)
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True)
    import gin

    # the agent's own (new-style) replay, unused here, takes its sizes from gin only
    gin.bind_parameter("ReplayBuffer.batch_size", 32)
    gin.bind_parameter("ReplayBuffer.max_capacity", 1000)
    agent = JaxDQNAgent(num_actions=ACTIONS, seed=11)
    agent.online_params = agent.target_network_params = small_to_store(agent.online_params, rng)
    with tempfile.TemporaryDirectory() as scratch:  # the agent's own replay saves here, unused
        bundle = agent.bundle_and_checkpoint(scratch, ITERATION)
    bundle["current_iteration"] = ITERATION
    Checkpointer(str(checkpoints)).save_checkpoint(ITERATION, bundle)
    checkpoint = checkpoints / f"ckpt.{ITERATION}"  # kept gzipped in the repository; the test unzips it
    with open(checkpoint, "rb") as raw, gzip.open(f"{checkpoint}.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    checkpoint.unlink()
    replay = write_replay(checkpoints, rng)
    inputs = rng.integers(0, 256, (3, 84, 84, STACK), dtype=np.uint8)
    q_values = np.stack([np.asarray(agent.network_def.apply(agent.online_params, x).q_values) for x in inputs])
    np.savez_compressed(
        out / "expected.npz",
        q_inputs=inputs,
        q_values=q_values,
        jax_version=jax.__version__,
        **expected_transitions(replay),
    )
    print(f"wrote {out}: {len(list(checkpoints.iterdir()))} files, add_count {replay.add_count}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
