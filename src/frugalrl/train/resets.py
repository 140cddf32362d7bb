"""Resets (SR-SAC, the primacy bias): re-initialise the whole agent, keep the replay.

A reset re-creates every network, target, temperature and optimizer state from the seed's
initial key (``reset/key`` 'same', as the parallel repo: bit-identical to the start) or from a
fresh key per reset ('fresh', as rl_with_resets). The replay buffer, the env states and every
counter but the updates-since-reset one stay as they are.

The schedule depends only on counters all seeds share, so the host decides it between jitted
segments (DESIGN principle 4). ``reset/every`` counts gradient updates; two schedules:

- 'env_steps' (the paper's rl_with_resets code): at env steps that are multiples of
  every / replay ratio, where replay ratio = gradient_steps / train_every.
- 'eval_steps' (the parallel repo): at an evaluation step (after that evaluation), when more
  than ``every`` updates were made since the last reset.

A reset that would fall on the last env step is skipped: nothing learns after it, and the final
checkpoint keeps the trained agent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.agents.protocols import ValueAgent
from frugalrl.config.schema import first_learning_block, reset_period_env_steps
from frugalrl.devices import placed


class ResetState(NamedTuple):
    """Shared by all seeds (scalars), checkpointed with the rest of the loop's carry."""

    count: jax.Array  # resets so far
    grad_step_at_reset: jax.Array  # the loop's grad_step at the last reset (0 before any)


def initial_reset_state() -> ResetState:
    return ResetState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def resetting(cfg: dict[str, Any]) -> bool:
    return cfg["reset"]["every"] > 0


def updates_made(cfg: dict[str, Any], env_steps: int) -> int:
    """Gradient updates each seed has made after ``env_steps`` env steps (the loop's grad_step)."""
    train = cfg["train"]
    learned_blocks = max(0, env_steps - first_learning_block(cfg)) // train["train_every"]
    return learned_blocks * train["gradient_steps"]


def reset_due(cfg: dict[str, Any], step: int, updates_since_reset: int) -> bool:
    """Whether the agent is reset after env step ``step`` (and that step's evaluation)."""
    reset = cfg["reset"]
    if not reset["every"] or step >= cfg["total_steps"]:
        return False
    if reset["schedule"] == "env_steps":
        return step % reset_period_env_steps(cfg) == 0
    every_eval = cfg["eval"]["every"]
    return step % every_eval == 0 and updates_since_reset > reset["every"]


def reset_schedule(cfg: dict[str, Any], horizon: int | None = None) -> list[int]:
    """Every env step at which a run of ``cfg`` resets, up to ``horizon`` (default: total_steps)."""
    horizon = cfg["total_steps"] if horizon is None else horizon
    cfg = {**cfg, "total_steps": horizon + 1}  # a reset at the horizon itself is listed
    if not cfg["reset"]["every"]:
        return []
    if cfg["reset"]["schedule"] == "env_steps":
        period = reset_period_env_steps(cfg)
        return list(range(period, horizon + 1, period))
    steps, last = [], 0
    every_eval = cfg["eval"]["every"]
    for step in range(every_eval, horizon + 1, every_eval):
        if reset_due(cfg, step, updates_made(cfg, step) - last):
            steps.append(step)
            last = updates_made(cfg, step)
    return steps


def reset_keys(init_keys: jax.Array, count: jax.Array, cfg: dict[str, Any]) -> jax.Array:
    """The per-seed keys the ``count``-th reset (1-based) initialises from."""
    if cfg["reset"]["key"] == "same":
        return init_keys
    return jax.vmap(lambda key: jax.random.fold_in(key, count))(init_keys)


def make_reinit(agent: ValueAgent, cfg: dict[str, Any]):
    """A function (init_keys[seeds], count) -> fresh agent states [seeds], jitted by the caller."""
    return lambda init_keys, count: jax.lax.map(agent.init, reset_keys(init_keys, count, cfg))  # as init_carry


def reset_agent(carry: Any, fresh_agent: Any, grad_step: int) -> Any:
    """The loop's carry with ``fresh_agent`` in place of the agent and one more reset counted;
    the replay, env states, keys and every other counter stay as they are."""
    count = int(carry.resets.count) + 1
    # from host ints, and a buffer per leaf (a target starts equal to its network): segments donate
    # them; laid out as the agent it replaces, so that placing the carry moves nothing
    resets = ResetState(jnp.asarray(count, jnp.int32), jnp.asarray(grad_step, jnp.int32))
    layout = jax.tree.map(lambda leaf: leaf.sharding, carry.agent)
    return carry._replace(agent=placed(fresh_agent, layout), resets=resets)


def reset_if_due(carry: Any, cfg: dict[str, Any], step: int, reinit: Any, init_keys: jax.Array, log: Any) -> Any:
    """The carry after env step ``step``: with a freshly initialised agent when the schedule says so.

    ``reinit`` is ``jit(make_reinit(agent, cfg))``; it runs on one device and the caller places the
    result (jitting the init straight onto the seed devices deadlocked XLA's CPU runtime).
    """
    grad_step = int(carry.grad_step)
    since = grad_step - int(carry.resets.grad_step_at_reset)
    if not reset_due(cfg, step, since):
        return carry
    count = int(carry.resets.count) + 1
    log.info("step %d: reset %d, after %d updates since the last", step, count, since)
    return reset_agent(carry, reinit(init_keys, jnp.asarray(count, jnp.int32)), grad_step)
