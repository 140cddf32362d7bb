"""Atari 2600 games on the host through ale-py's C++ vector environment, under one of two protocols.

ale-py (``pip install -e ".[atari]"``; its ROMs ship inside it) steps every env of a run in native
threads and does the per-frame work there: frame skip 4 with the max over the last two frames,
grayscale, the 84x84 resize, sticky actions, no-op starts and FIRE on reset. It returns one frame
per env step; the 4-frame stack is built on the device (``replay.fifo.push_frame``) by the same
rule the replay uses to rebuild stacks when it samples, so the frames the agent acts on and the
ones it learns from cannot disagree, and the replay stores each frame once.

Two protocols, chosen by ``env/params/protocol`` (by default from the name: ``ALE/<Game>-v5`` is
``dopamine``, ``<Game>NoFrameskip-v4`` is ``deepmind``):

- ``dopamine`` (Dopamine's Atari runner; QDagger): sticky actions 0.25, no no-op starts, no FIRE on
  reset, a life lost is not an episode end, rewards clipped to [-1, 1] for learning, episodes cut
  at 27,000 agent steps (108,000 frames), frames before an episode's first padded with zeros.
- ``deepmind`` (Tianshou's ``wrap_deepmind``; MeDQN's Atari code): no sticky actions, up to 30
  no-op starts, FIRE on reset where the game has it, a life lost ends a *training* episode (the
  game goes on; evaluation episodes are whole games), reward signs for learning, the stack filled
  with an episode's first frame, episodes cut at 27,000 agent steps.

Every training env is seeded with a seed of its own drawn from (seed, run, lane, seeding number)
at the start and again at the first game end after ``reseed_after`` steps; the games in between
start from unseeded resets (a seeded one reloads the ROM, ~20x slower). What an env does is then a
function of its last seed and the actions since, and a resumed run rebuilds each env by replaying
them (``train.atari.AtariLoop.replay_games``). Rows of the result CSVs are whole games with the
game's own (unclipped) score.

The same native envs can be stepped and reset from inside a jitted program through ale-py's XLA
calls (``AtariEnvs.device_step``, ``device_reset``), so a block of steps needs no Python between them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INSTALL_HINT = 'Atari games need ale-py: pip install -e ".[atari]"'
FRAME_SHAPE = (84, 84)
FRAME_SKIP = 4
STACK = 4
ATARI_PATTERN = re.compile(r"^(?P<ale>ALE/)?(?P<game>[A-Za-z]+?)(?P<noframeskip>NoFrameskip)?-v(?P<version>[045])$")


@dataclass(frozen=True)
class AtariParams:
    """An Atari protocol; each field can be overridden in ``env/params``."""

    protocol: str = "dopamine"
    sticky_actions: float = 0.25  # probability that the previous action repeats, per frame
    noop_max: int = 0  # up to this many no-op steps after a reset (uniform in 1..noop_max; 0: none)
    fire_reset: bool = False  # press FIRE after a reset in games that need it to start
    life_loss: bool = False  # training only: a life lost ends the learning episode (the game goes on)
    reward_clip: str = "clip"  # learning reward: "clip" to [-1, 1], "sign", or "none"
    padding: str = "zeros"  # stack slots before an episode's first frame: "zeros" or "repeat" the first
    full_action_space: bool = False  # all 18 actions instead of the game's minimal set
    max_steps_in_episode: int = 27_000  # agent steps (x4 frames); env/max_episode_steps overrides it
    # training envs get a new seed at the first game end after this many agent steps since their last
    # seeding (a seeded reset reloads the ROM: 68 ms against 3 ms); 0 = a seed for every game
    reseed_after: int = 40_000


PROTOCOLS = {
    "dopamine": AtariParams(),
    "deepmind": AtariParams(
        "deepmind",
        sticky_actions=0.0,
        noop_max=30,
        fire_reset=True,
        life_loss=True,
        reward_clip="sign",
        padding="repeat",
    ),
}
CHOICES = {"protocol": tuple(PROTOCOLS), "reward_clip": ("clip", "sign", "none"), "padding": ("zeros", "repeat")}
INT_LIMITS = {"noop_max": 10_000, "reseed_after": 1_000_000}  # the largest value each integer field takes


def parse_name(name: str) -> tuple[str, str] | None:
    """(ROM id, default protocol) of an Atari env id, or None when ``name`` is not one."""
    match = ATARI_PATTERN.match(name)
    if match is None:
        return None
    rom = re.sub(r"(?<!^)(?=[A-Z])", "_", match["game"]).lower()  # BattleZone -> battle_zone
    protocol = "deepmind" if match["noframeskip"] else "dopamine"
    return rom, protocol


def rom_exists(rom: str) -> bool:
    from ale_py import roms

    return roms.get_rom_path(rom) is not None


def atari_params(name: str, env_cfg: dict[str, Any]) -> AtariParams:
    """The protocol of ``env_cfg`` with its overrides; KeyError or ValueError naming a bad one."""
    parsed = parse_name(name)
    if parsed is None:
        raise KeyError(f"'{name}' is not an Atari env id (ALE/<Game>-v5 or <Game>NoFrameskip-v4)")
    overrides = dict(env_cfg.get("params", {}))
    protocol = overrides.pop("protocol", parsed[1])
    if protocol not in PROTOCOLS:
        raise ValueError(f"config key 'env/params/protocol' must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    params = PROTOCOLS[protocol]
    fields = {f.name: f for f in dataclasses.fields(params) if f.name not in ("protocol", "max_steps_in_episode")}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise KeyError(
            f"environment {name} has no parameter(s) {', '.join(unknown)}; its parameters are protocol, "
            f"{', '.join(sorted(fields))}"
        )
    for key, value in overrides.items():
        overrides[key] = _checked(key, value, getattr(params, key))
    if env_cfg.get("max_episode_steps", -1) > 0:
        overrides["max_steps_in_episode"] = env_cfg["max_episode_steps"]
    return dataclasses.replace(params, **overrides)


def _checked(key: str, value: Any, default: Any) -> Any:
    where = f"config key 'env/params/{key}'"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
    elif isinstance(default, str):
        if value not in CHOICES[key]:
            raise ValueError(f"{where} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    elif isinstance(default, int):
        top = INT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ValueError(f"{where} must be an integer in 0 .. {top}, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must be a probability in [0, 1], got {value!r}")
    return value


def clip_reward(reward: Any, how: str) -> Any:
    """The learning reward (NumPy or JAX arrays): the game's reward clipped, signed, or as it is."""
    if how == "clip":
        return reward.clip(-1.0, 1.0)
    if how == "sign":
        return (reward > 0).astype(reward.dtype) - (reward < 0).astype(reward.dtype)
    return reward


class AtariEnvs:
    """``n`` envs of one game stepped together in ale-py's threads; each reset with a seed of its own.

    ``step`` returns the games' own rewards and ``game_over`` (the game ended) and ``truncated``
    (cut at ``max_steps_in_episode``), and the lives left; an env whose game ended is reset only by
    ``reset(mask, seeds)`` (so the next game starts from a seed the caller chose).
    """

    def __init__(self, rom: str, params: AtariParams, n: int, threads: int = 0) -> None:
        try:
            from ale_py.vector_env import AtariVectorEnv
        except ImportError as error:
            raise KeyError(f"{INSTALL_HINT} ({error})") from None
        self.params, self.n = params, n
        self.vector = AtariVectorEnv(
            rom,
            num_envs=n,
            num_threads=threads,
            stack_num=1,
            frameskip=FRAME_SKIP,
            maxpool=True,
            grayscale=True,
            img_height=FRAME_SHAPE[0],
            img_width=FRAME_SHAPE[1],
            noop_max=params.noop_max,
            use_fire_reset=params.fire_reset,
            repeat_action_probability=params.sticky_actions,
            full_action_space=params.full_action_space,
            max_num_frames_per_episode=params.max_steps_in_episode * FRAME_SKIP,
            episodic_life=False,  # life losses are the loop's to read (training only)
            reward_clipping=False,  # learning clips; the CSVs keep the game's score
            autoreset_mode="NextStep",
        )
        self.num_actions = int(self.vector.single_action_space.n)

    def reset(self, seeds: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frames [n, 84, 84], lives [n]) after resetting every env (or those in ``mask``) with ``seeds``
        (one per env reset; -1: no new seed, the env's own random state goes on)."""
        options = None if mask is None else {"reset_mask": np.asarray(mask, bool)}
        obs, info = self.vector.reset(seed=np.asarray(seeds, np.int64), options=options)
        self.reset_frames = info["episode_frame_number"]  # frames played by the reset (no-ops, FIRE)
        return obs[:, 0], info["lives"]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """(frames, rewards float32, game_over, truncated, lives) after one agent step of every env."""
        obs, reward, terminated, truncated, info = self.vector.step(np.asarray(actions, np.int32))
        return obs[:, 0], reward.astype(np.float32), terminated, truncated & ~terminated, info["lives"]

    def handle(self) -> jax.Array:
        """The vector env as the device calls know it (``device_step``, ``device_reset``)."""
        register_device_calls()
        return jnp.frombuffer(self.vector.ale.handle(), dtype=jnp.uint8)

    def device_step(self, handle: jax.Array, actions: jax.Array) -> tuple[jax.Array, ...]:
        """``step`` from inside a jitted program: (handle, frames, rewards, game_over, truncated, lives).

        ale-py's XLA call steps the same native env as ``step`` (its threads, its state), so a
        program can play many steps with no Python between them; the returned handle orders the
        calls."""
        n, flag, count = self.n, jax.ShapeDtypeStruct((self.n,), jnp.bool_), jax.ShapeDtypeStruct((self.n,), jnp.int32)
        call = jax.ffi.ffi_call(
            "atari_vector_xla_step",
            (jax.ShapeDtypeStruct(handle.shape, jnp.uint8), jax.ShapeDtypeStruct((n, 1, *FRAME_SHAPE), jnp.uint8))
            + (count, flag, flag, count, count, count, count),
            has_side_effect=True,
        )
        handle, obs, reward, over, truncated, _, lives, _, _ = call(
            handle, actions.astype(jnp.int32), jnp.ones(n, jnp.float32)
        )
        return handle, obs[:, 0], reward.astype(jnp.float32), over, truncated & ~over, lives

    def device_reset(self, handle: jax.Array, seeds: jax.Array, mask: jax.Array) -> tuple[jax.Array, ...]:
        """``reset(seeds[mask], mask)`` from inside a jitted program: (handle, frames, lives); the
        frames and lives of envs outside ``mask`` are not theirs (use them where ``mask`` only). A
        seed of -1 resets without seeding (the env's own random state goes on).

        ale-py's call takes the indices of the envs to reset, so its shape depends on how many:
        one branch per count, the no-reset branch calling nothing."""
        n = self.n
        order = jnp.nonzero(mask, size=n, fill_value=0)[0].astype(jnp.int32)
        shapes = (
            jax.ShapeDtypeStruct(handle.shape, jnp.uint8),
            jax.ShapeDtypeStruct((n, 1, *FRAME_SHAPE), jnp.uint8),
        ) + (jax.ShapeDtypeStruct((n,), jnp.int32),) * 4
        call = jax.ffi.ffi_call("atari_vector_xla_reset", shapes, has_side_effect=True)

        def none(handle: jax.Array) -> tuple[jax.Array, ...]:
            return handle, jnp.zeros((n, *FRAME_SHAPE), jnp.uint8), jnp.zeros(n, jnp.int32)

        def first(count: int) -> Any:
            def reset(handle: jax.Array) -> tuple[jax.Array, ...]:
                handle, obs, _, lives, _, _ = call(handle, order[:count], seeds[order[:count]].astype(jnp.int32))
                return handle, obs[:, 0], lives

            return reset

        return jax.lax.switch(mask.sum(), [none] + [first(count) for count in range(1, n + 1)], handle)

    def close(self) -> None:
        self.vector.close()


@functools.cache
def register_device_calls() -> None:
    """Tell XLA's CPU backend about ale-py's step and reset calls (once per process)."""
    from ale_py import _ale_py

    jax.ffi.register_ffi_target("atari_vector_xla_reset", _ale_py.VectorXLAReset(), platform="cpu")
    jax.ffi.register_ffi_target("atari_vector_xla_step", _ale_py.VectorXLAStep(), platform="cpu")


def num_actions(rom: str, params: AtariParams) -> int:
    """The size of the action set an agent chooses from (minimal unless ``full_action_space``)."""
    if params.full_action_space:
        return 18
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)  # no banner on stderr
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(rom))
    return len(ale.getMinimalActionSet())


__all__ = [
    "ATARI_PATTERN",
    "FRAME_SHAPE",
    "INSTALL_HINT",
    "PROTOCOLS",
    "STACK",
    "AtariEnvs",
    "AtariParams",
    "atari_params",
    "clip_reward",
    "num_actions",
    "parse_name",
    "rom_exists",
]
