"""Environment registry: gymnax classic control and MinAtar by name, plus frugalrl's own envs.

Every environment follows gymnax's v1 ``Environment`` API (``step`` returns ``terminated`` and
``truncated`` separately, auto-resets, and puts the pre-reset observation in
``info["final_observation"]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

from frugalrl.errors import ConfigError


@dataclass(frozen=True)
class EnvSpec:
    """What agents and replay buffers need to know about an environment."""

    name: str
    obs_shape: tuple[int, ...]
    obs_dtype: Any  # dtype the replay stores observations in
    num_actions: int | None  # None for continuous actions
    action_shape: tuple[int, ...]
    action_low: float | None
    action_high: float | None
    max_episode_steps: int
    continuing: bool = False  # never terminates (ButtonGrid, PanFlute): model rollouts keep full weight

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None


@dataclass(frozen=True)
class EnvEntry:
    factory: Callable[[], Any]
    binary_obs: bool = False  # observations are 0/1 planes: store them as uint8
    family: str = "other"
    unavailable: str | None = None  # why configs naming it parse but cannot run yet


# Atari names as the original code used them (ALE/<Game>-v5, <Game>NoFrameskip-v4): host envs in
# ale-py (envs/atari.py), with the protocol the name implies unless env/params says otherwise.
ATARI_GAMES = frozenset(
    """Adventure AirRaid Alien Amidar Assault Asterix Asteroids Atlantis BankHeist BattleZone BeamRider Berzerk
    Bowling Boxing Breakout Carnival Centipede ChopperCommand CrazyClimber Defender DemonAttack DoubleDunk
    ElevatorAction Enduro FishingDerby Freeway Frostbite Gopher Gravitar Hero IceHockey Jamesbond JourneyEscape
    Kangaroo Krull KungFuMaster MontezumaRevenge MsPacman NameThisGame Phoenix Pitfall Pong Pooyan PrivateEye Qbert
    Riverraid RoadRunner Robotank Seaquest Skiing Solaris SpaceInvaders StarGunner Surround Tennis TimePilot
    Tutankham UpNDown Venture VideoPinball WizardOfWor YarsRevenge Zaxxon""".split()
)


def _atari_entry(name: str) -> EnvEntry | None:
    from frugalrl.envs.atari import ATARI_PATTERN, INSTALL_HINT, parse_name, rom_exists

    match = ATARI_PATTERN.match(name)
    if match is None or match["game"] not in ATARI_GAMES:
        return None
    try:
        import ale_py  # noqa: F401
    except ImportError:
        return EnvEntry(lambda: None, family="atari", unavailable=INSTALL_HINT)
    rom = parse_name(name)[0]
    if not rom_exists(rom):
        return EnvEntry(lambda: None, family="atari", unavailable=f"the installed ale-py ships no ROM '{rom}'")
    return EnvEntry(lambda: None, family="atari")


_CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0")
_MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar")

REGISTRY: dict[str, EnvEntry] = {}


def register(name: str, factory: Callable[[], Any], *, binary_obs: bool = False, family: str = "frugalrl") -> None:
    """Add an environment whose factory returns a gymnax ``Environment``."""
    if name in REGISTRY:
        raise ValueError(f"environment {name} is already registered")
    REGISTRY[name] = EnvEntry(factory, binary_obs, family)


def unit_to_bounds(action: Any, low: Any, high: Any) -> Any:
    """Map actions in [-1, 1] (clipped there first) linearly onto [low, high]; NumPy or JAX arrays."""
    return low + 0.5 * (action.clip(-1.0, 1.0) + 1.0) * (high - low)


class UnitBoxActions:
    """A continuous-action env seen with actions in [-1, 1], mapped linearly onto its own bounds.

    SAC's and DDPG's policies act in [-1, 1] (a tanh), as the original's DMC wrapper rescaled every
    task to; this wrapper does the same for gymnax's Pendulum-v1 ([-2, 2]) and the like.
    """

    def __init__(self, env: Any) -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def action_space(self, params: Any = None) -> Any:
        space = self._env.action_space(params)
        return gymnax.environments.spaces.Box(-1.0, 1.0, space.shape, space.dtype)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any = None) -> tuple[Any, ...]:
        space = self._env.action_space(params)
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
        return self._env.step(key, state, unit_to_bounds(jnp.asarray(action), low, high), params)


def _gymnax_factory(name: str) -> Callable[[], Any]:
    def factory() -> Any:
        env = gymnax.make(name)[0]
        return env if hasattr(env.action_space(env.default_params), "n") else UnitBoxActions(env)

    return factory


for _name in _CLASSIC:
    register(_name, _gymnax_factory(_name), family="classic_control")
for _name in _MINATAR:
    register(_name, _gymnax_factory(_name), binary_obs=True, family="minatar")


def _v0_factory(game: str) -> Callable[[], Any]:
    from frugalrl.envs.minatar import MinAtarV0

    return lambda: MinAtarV0(game)


for _game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"):
    # the original MinAtar / gym-games v0: all 6 actions, sticky actions 0.1, no time limit
    register(f"{_game}-MinAtar-v0", _v0_factory(_game), binary_obs=True, family="minatar")
for _name in gymnax.registered_envs:
    if _name not in REGISTRY:
        register(_name, _gymnax_factory(_name), family="gymnax")


# families named with a length, like the original ids (T-{L}-v0, passive-visual-{D}-v0, SR-{D}-v0)
_LENGTH_PATTERN = re.compile(r"^(?P<family>PassiveTMaze|ActiveTMaze|PassiveVisualMatch|KeyToDoor)-(?P<length>[0-9]+)$")
LENGTH_FAMILIES = ("PassiveTMaze-{L}", "ActiveTMaze-{L}", "PassiveVisualMatch-{D}", "KeyToDoor-{D}")


def _length_entry(name: str) -> EnvEntry | None:
    match = _LENGTH_PATTERN.match(name)
    if match is None:
        return None
    family, length = match["family"], int(match["length"])
    if length < 1:
        raise KeyError(f"environment '{name}': the length after '-' must be >= 1")
    if family in ("PassiveVisualMatch", "KeyToDoor"):
        from frugalrl.envs.tvt import TVTTask

        task = "visual_match" if family == "PassiveVisualMatch" else "key_to_door"
        return EnvEntry(lambda: TVTTask(task, length), family="memory")
    from frugalrl.envs.tmaze import TMaze

    return EnvEntry(lambda: TMaze(length, active=family == "ActiveTMaze"), family="memory")


# the model-generalization suite, named with its size: grid side, or number of pipes
_SUITE_PATTERN = re.compile(r"^(?P<family>ProcMaze|ButtonGrid|PanFlute|OpenGrid)-(?P<size>[0-9]+)$")
SUITE_FAMILIES = ("ProcMaze-{G}", "ButtonGrid-{G}", "PanFlute-{P}", "OpenGrid-{G}")


def _suite_entry(name: str) -> EnvEntry | None:
    match = _SUITE_PATTERN.match(name)
    if match is None:
        return None
    from frugalrl.envs import model_generalization as suite

    family, size = match["family"], int(match["size"])
    smallest = 1 if family == "PanFlute" else 2
    if size < smallest:
        raise KeyError(f"environment '{name}': the size after '-' must be >= {smallest}")
    factory = {
        "ProcMaze": lambda: suite.ProcMaze(size),
        "ButtonGrid": lambda: suite.ButtonGrid(size, num_buttons=min(3, size * size)),
        "PanFlute": lambda: suite.PanFlute(size),
        "OpenGrid": lambda: suite.OpenGrid(size),
    }[family]
    return EnvEntry(factory, binary_obs=True, family="model_generalization")


def host_family(name: str) -> str | None:
    """'atari' or 'dmc' for an env stepped on the host (train/atari.py, train/host.py), else None."""
    from frugalrl.envs.dmc import DMC_PATTERN

    if name in REGISTRY:
        return None
    if _atari_entry(name) is not None:
        return "atari"
    return "dmc" if DMC_PATTERN.match(name) is not None else None


def is_host_env(name: str) -> bool:
    """Atari games and DeepMind Control tasks (``domain-task``): stepped on the host, one env per seed."""
    return host_family(name) is not None


def _dmc_entry(name: str) -> EnvEntry | None:
    if host_family(name) != "dmc":
        return None
    from frugalrl.envs.dmc import INSTALL_HINT, split_name

    try:
        split_name(name)
    except KeyError as error:
        if INSTALL_HINT not in str(error):
            raise
        return EnvEntry(lambda: None, family="dmc", unavailable=INSTALL_HINT)  # parses; cannot run here
    return EnvEntry(lambda: None, family="dmc")


def available_envs() -> list[str]:
    return sorted(REGISTRY) + list(LENGTH_FAMILIES) + list(SUITE_FAMILIES)


def _entry(name: str) -> EnvEntry:
    if name not in REGISTRY and (atari := _atari_entry(name)) is not None:
        return atari
    if name not in REGISTRY and (sized := _length_entry(name)) is not None:
        return sized
    if name not in REGISTRY and (suite := _suite_entry(name)) is not None:
        return suite
    if name not in REGISTRY and (dmc := _dmc_entry(name)) is not None:
        return dmc
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else "; `frugal envs` lists them"
        raise KeyError(f"unknown environment '{name}'{hint}")
    return REGISTRY[name]


def _typed_param(env_name: str, name: str, default: Any, value: Any) -> Any:
    """An override checked against the type of the parameter's default (ConfigError naming it)."""
    key = f"config key 'env/params/{name}' of {env_name}"
    default_array = np.asarray(default)
    if default_array.dtype == np.bool_:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value if default_array.ndim == 0 and not hasattr(default, "shape") else jnp.asarray(value)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        array = None
    numeric = array is not None and not isinstance(value, bool) and np.all(np.isfinite(array))
    if not numeric or array.shape != default_array.shape:
        shape = f" of shape {default_array.shape}" if default_array.ndim else ""
        raise ConfigError(f"{key} must be a finite number{shape}, got {value!r}")
    if default_array.dtype.kind in "iu":
        if not np.all(array == np.round(array)) or np.any(np.abs(array) > 2**31 - 1):
            raise ConfigError(f"{key} must be a 32-bit integer, got {value!r}")
        array = array.astype(np.int64)
    if not hasattr(default, "shape"):  # a Python scalar stays one
        return int(array) if default_array.dtype.kind in "iu" else float(array)
    return jnp.asarray(array, dtype=default_array.dtype)


def _params(env: Any, env_cfg: dict[str, Any]) -> Any:
    params = env.default_params
    overrides = dict(env_cfg.get("params", {}))
    if env_cfg.get("max_episode_steps", -1) > 0:
        overrides["max_steps_in_episode"] = env_cfg["max_episode_steps"]
    if getattr(env, "fixed_episode_length", False) and "max_steps_in_episode" in overrides:
        raise KeyError(
            f"environment {env_cfg['name']} has no parameter max_steps_in_episode to change: its episodes always "
            f"last {params.max_steps_in_episode} steps (the length is part of its name)"
        )
    fields = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise KeyError(
            f"environment {env_cfg['name']} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters are {', '.join(sorted(fields))}"
        )
    typed = {name: _typed_param(env_cfg["name"], name, getattr(params, name), v) for name, v in overrides.items()}
    return params.replace(**typed) if typed else params


def make(env_cfg: dict[str, Any]) -> tuple[Any, Any, EnvSpec]:
    """Build (env, params, spec) from the config's ``env`` section."""
    entry = _entry(env_cfg["name"])
    env = entry.factory()
    params = _params(env, env_cfg)
    obs, _ = jax.eval_shape(lambda: env.reset(jax.random.PRNGKey(0), params))  # traced: nothing compiles
    space = env.action_space(params)
    discrete = hasattr(space, "n")
    obs_dtype = np.uint8 if entry.binary_obs else np.dtype(obs.dtype)
    spec = EnvSpec(
        name=env_cfg["name"],
        obs_shape=tuple(obs.shape),
        obs_dtype=np.dtype(obs_dtype),
        num_actions=int(space.n) if discrete else None,
        action_shape=() if discrete else tuple(space.shape),
        action_low=None if discrete else float(np.min(space.low)),
        action_high=None if discrete else float(np.max(space.high)),
        max_episode_steps=int(params.max_steps_in_episode),
        continuing=bool(getattr(env, "continuing", False)),
    )
    return env, params, spec


def check_env_config(cfg: dict[str, Any]) -> None:
    """Raise ConfigError for an unknown env name or parameter, without building jitted code."""
    try:
        entry = _entry(cfg["env"]["name"])
        if entry.family == "dmc" and (cfg["env"]["params"] or cfg["env"]["max_episode_steps"] != -1):
            raise KeyError(f"environment {cfg['env']['name']} takes no parameters here (its time limit is the suite's)")
        if entry.family == "atari":
            from frugalrl.envs.atari import atari_params

            atari_params(cfg["env"]["name"], cfg["env"])
        elif entry.unavailable is None and entry.family != "dmc":
            _params(entry.factory(), cfg["env"])
    except ValueError as error:  # names its key already
        raise ConfigError(str(error)) from None
    except KeyError as error:
        key = "env/params" if "parameter" in str(error) else "env/name"
        raise ConfigError(f"config key '{key}': {error.args[0]}") from None


def check_runnable(cfg: dict[str, Any]) -> None:
    """Raise ConfigError when the config's environment parses but cannot be built yet (Atari)."""
    entry = _entry(cfg["env"]["name"])
    if entry.unavailable is not None:
        raise ConfigError(f"config key 'env/name': '{cfg['env']['name']}': {entry.unavailable}")


def to_storage(obs: jax.Array, spec: EnvSpec) -> jax.Array:
    """Cast an observation to the dtype the replay keeps (uint8 for binary planes)."""
    return obs.astype(spec.obs_dtype) if obs.dtype != spec.obs_dtype else obs
