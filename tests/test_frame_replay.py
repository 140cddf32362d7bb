"""Frame-once replay: stacks rebuilt at sample time equal the stacks the agent acted on.

A reference written apart from the replay (a deque per episode, as Dopamine's and Tianshou's
frame stacks work) builds every observation and next observation of a random stream of episodes;
the replay, fed one frame per step, must rebuild exactly those stacks for every transition it
holds, whatever the episode lengths, how they ended, the capacity, and the padding.
"""

from __future__ import annotations

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from frugalrl.replay import fifo

K = 4


def reference_stream(episodes: list[tuple[int, str]], padding: str) -> list[dict]:
    """Per step: the frame acted on, its stack, the end flags, the next frame and the next stack."""
    steps, frame_id = [], 0

    def new_stack(first: int) -> deque:
        pad = first if padding == "repeat" else 0
        return deque([pad] * (K - 1) + [first], maxlen=K)

    frame_id += 1
    stack = new_stack(frame_id)
    for length, end in episodes:
        for t in range(length):
            frame_id += 1
            last = t == length - 1
            terminated, truncated = last and end == "terminated", last and end == "truncated"
            after = deque(stack, maxlen=K)
            after.append(frame_id)  # the frame the step ended in (a truncated step's final frame)
            step = dict(obs=list(stack), frame=stack[-1], terminated=terminated, truncated=truncated)
            step.update(final=frame_id, next_stack=list(after))
            if last:  # auto-reset: the next episode's first frame
                frame_id += 1
                stack = new_stack(frame_id)
            else:
                stack = after
            step["next_frame"] = stack[-1]
            steps.append(step)
    return steps


# compiled once per capacity and padding, not once per drawn stream's length
add_jit = jax.jit(fifo.add)
gather_all = jax.jit(lambda state, count, ages: fifo.gather(state, count, ages, n_step=1, bootstrap_truncation=True))
sample_obs_16 = jax.jit(lambda state, key, count: fifo.sample_obs(state, key, count, 16))


def fill(steps: list[dict], capacity: int, padding: str) -> fifo.ReplayState:
    state = fifo.init(jnp.zeros((1,), jnp.int32), jnp.zeros((), jnp.int32), capacity, 3, stack=K, padding=padding)
    for count, step in enumerate(steps):
        transition = fifo.Transition(
            jnp.array([step["frame"]], jnp.int32),
            jnp.int32(count),
            jnp.float32(0.0),
            jnp.bool_(step["terminated"]),
            jnp.bool_(step["truncated"]),
            jnp.array([step["final"]], jnp.int32),
        )
        state = add_jit(state, jnp.int32(count), transition, jnp.array([step["next_frame"]], jnp.int32))
    return state


# fill() gives the replay a time limit of 3 steps: an episode is truncated only after 3 steps or more
# (the contract that sizes its final-observation rows); one may terminate at any step
episodes_strategy = st.lists(
    st.one_of(st.tuples(st.integers(1, 9), st.just("terminated")), st.tuples(st.integers(3, 9), st.just("truncated"))),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(
    episodes=episodes_strategy,
    capacity=st.sampled_from([1, 2, 3, 5, 8, 13, 40]),
    padding=st.sampled_from(["zeros", "repeat"]),
)
def test_rebuilt_stacks_equal_the_stacks_acted_on_and_never_cross_an_episode(episodes, capacity, padding):
    steps = reference_stream(episodes, padding)
    state = fill(steps, capacity, padding)
    count = len(steps)
    held = min(count, capacity)
    # every age of the capacity (one program per capacity, not per count); the first `held` are kept
    batch = jax.tree.map(lambda x: np.asarray(x)[:held], gather_all(state, jnp.int32(count), jnp.arange(capacity)))
    kept = steps[count - held :]
    np.testing.assert_array_equal(batch.action, np.arange(count - held, count))
    obs = batch.obs[:, 0, :]  # [held, K]
    next_obs = batch.next_obs[:, 0, :]
    for i, step in enumerate(kept):
        assert obs[i].tolist() == step["obs"], (i, obs[i], step)
        if not step["terminated"]:  # a terminal transition's next observation is never used (discount 0)
            assert next_obs[i].tolist() == step["next_stack"], (i, next_obs[i], step)
    drawn = sample_obs_16(state, jax.random.PRNGKey(count), jnp.int32(count))
    assert {tuple(x) for x in np.asarray(drawn)[:, 0, :].tolist()} <= {tuple(s["obs"]) for s in kept}


@settings(max_examples=30, deadline=None)
@given(episodes=episodes_strategy, padding=st.sampled_from(["zeros", "repeat"]))
def test_push_frame_builds_the_reference_stacks(episodes, padding):
    steps = reference_stream(episodes, padding)
    stack = jnp.asarray(np.array(steps[0]["obs"], np.int32))[None]
    for step in steps:
        first = step["terminated"] or step["truncated"]
        stack = fifo.push_frame(stack, jnp.array([step["next_frame"]], jnp.int32), jnp.array(first), padding)
        expected = step["next_stack"] if not first else None
        if expected is None:
            pad = step["next_frame"] if padding == "repeat" else 0
            expected = [pad] * (K - 1) + [step["next_frame"]]
        assert np.asarray(stack)[0].tolist() == expected


def test_n_step_next_stacks_follow_the_last_step_of_the_return():
    steps = reference_stream([(12, "truncated"), (5, "terminated"), (9, "truncated")], "repeat")
    state = fill(steps, 40, "repeat")
    batch = fifo.gather(state, jnp.int32(len(steps)), jnp.arange(len(steps)), n_step=3, gamma=0.5)
    for i, row in enumerate(np.asarray(batch.next_obs)[:, 0, :].tolist()):
        last = i
        while last < i + 2 and not (steps[last]["terminated"] or steps[last]["truncated"]) and last + 1 < len(steps):
            last += 1
        if not steps[last]["terminated"]:
            assert row == steps[last]["next_stack"], (i, last)


def test_a_stacked_84x84_replay_costs_under_7_1_kb_per_transition():
    state = jax.eval_shape(
        lambda: fifo.init(jnp.zeros((84, 84), jnp.uint8), jnp.zeros((), jnp.int32), 100_000, 27_000, stack=4)
    )
    per_transition = fifo.memory_bytes(state)["bytes_per_transition"]
    assert 7056 < per_transition <= 7100, per_transition
