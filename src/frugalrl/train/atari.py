"""The Atari loop: ale-py's vector env stepped from inside jitted programs, one env per seed.

ale-py's XLA calls step and reset the same native envs as its Python API, so one jitted call plays
a whole block of env steps with no Python between them (``make_game_step``): each step steps
every seed's game with the actions the device chose, reads life losses and game ends, resets the
games that ended (now and then with a new seed), puts the acted-in frame into the frame-once
replay and the next frame onto each seed's stack, and chooses the next actions. The steps between
two updates run in one ``lax.while_loop`` (the acting block); the step that ends a block of
``train_every`` steps is a program of its own, because XLA's CPU convolution gradients are ~10x
slower inside a loop (docs/notes/atari.md). A block stops after a step where a game ended, so the
host writes that game's row (its real score). Learning sees clipped rewards and, under the
deepmind protocol, a life lost as a terminal step.

Checkpoints can be taken at any step. Each lane's env is seeded (from seed, run, lane and seeding
number) at the start and again at the first game end after ``reseed_after`` steps (a seeded reset
reloads the ROM); the games in between start from unseeded resets. What an env does is a function
of its last seed and the actions since, so a checkpoint keeps those actions and a resumed run
replays them into fresh envs (``replay_games``) before going on, ending exactly as an
uninterrupted run. Evaluations run ``eval/episodes`` whole games per seed at once on envs of their
own, re-seeded before each, with the same protocol (never a life-loss end).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl.agents import make_agent
from frugalrl.agents.protocols import ValueAgent
from frugalrl.config.schema import first_learning_block
from frugalrl.devices import placed
from frugalrl.envs import EnvSpec
from frugalrl.envs.atari import FRAME_SHAPE, STACK, AtariEnvs, AtariParams, atari_params, clip_reward, parse_name
from frugalrl.errors import TrainingError
from frugalrl.replay import fifo
from frugalrl.runs.rundir import counted, evaluation_rows
from frugalrl.train.host import (
    EVAL_SEED,
    HostCarry,
    HostLoop,
    env_seed,
    host_copy,
    init_host_carry,
    make_first_action,
    make_host_step,
)
from frugalrl.train.loop import seed_keys, with_teacher
from frugalrl.train.reincarnation import PRETRAIN_STREAM, REFERENCE_STREAM, Reincarnation
from frugalrl.train.resets import make_reinit, resetting
from frugalrl.train.session import RunSession, check_fits, human_bytes, memory_needs

GAME_SEED = 0x6A3E  # mixed into the training games' reset seeds
SEGMENT_STEPS = 256  # env steps per ``advance``: how often the progress bar and a stop signal are seen


def atari_spec(name: str, params: AtariParams, num_actions: int) -> EnvSpec:
    """The agent's view: stacks of 4 84x84 uint8 frames, the game's action set."""
    return EnvSpec(
        name, (*FRAME_SHAPE, STACK), np.dtype(np.uint8), num_actions, (), None, None, params.max_steps_in_episode
    )


def game_seeds(cfg: dict[str, Any], seedings: np.ndarray) -> np.ndarray:
    """The seed of each lane's ``seedings[lane]``-th seeding of its env (31-bit, as ALE takes them)."""
    return np.array([env_seed(cfg, lane, GAME_SEED, int(n)) % 2**31 for lane, n in enumerate(seedings)], np.int64)


def empty_frame_replay(spec: EnvSpec, params: AtariParams) -> Any:
    """``capacity -> one seed's empty replay``: 84x84 frames stored once, stacked when sampled."""
    frame, action = jnp.zeros(FRAME_SHAPE, jnp.uint8), jnp.zeros((), jnp.int32)
    return lambda capacity: fifo.init(
        frame, action, capacity, spec.max_episode_steps, stack=STACK, padding=params.padding
    )


def make_atari_observation(params: AtariParams) -> Any:
    """``observe`` for ``make_host_step``: inputs (frame, final_frame, reward, terminated, truncated,
    first) per seed; the stored transition holds the acted-in frame and the learning reward."""

    def observe(c: HostCarry, frame, final_frame, reward, terminated, truncated, first) -> tuple[Any, ...]:
        learning_reward = clip_reward(reward, params.reward_clip)
        transition = fifo.Transition(c.obs[..., -1], c.action, learning_reward, terminated, truncated, final_frame)
        return transition, frame, fifo.push_frame(c.obs, frame, first, params.padding)

    return observe


def first_stacks(frames: Any, params: AtariParams) -> jax.Array:
    """[seeds, 84, 84, 4] stacks of games that just started in ``frames``."""
    frames = jnp.asarray(frames)
    empty = jnp.zeros(frames.shape + (STACK,), jnp.uint8)
    return fifo.push_frame(empty, frames, jnp.ones(frames.shape[0], bool), params.padding)


def make_atari_policy(agent: ValueAgent) -> Any:
    """jit((agent_states [seeds], stacks [seeds, episodes, ...], keys, epsilon) -> (keys, actions))."""
    act = jax.vmap(
        lambda state, obs, key, epsilon: jax.vmap(agent.evaluation_act, in_axes=(None, 0, 0, None))(
            state, obs, jax.random.split(key, obs.shape[0]), epsilon
        ),
        in_axes=(0, 0, 0, None),
    )

    def policy(state: Any, obs: jax.Array, key: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
        keys = jax.vmap(jax.random.split)(key)
        return keys[:, 0], act(state, obs, keys[:, 1], epsilon)

    return jax.jit(policy)


class GameScores(NamedTuple):
    """Evaluation games played at once: their scores and which of them the step cap cut short."""

    returns: np.ndarray  # [seeds, episodes] score of each game (per step when eval/per_step)
    unfinished: np.ndarray  # [seeds, episodes] still running at the cap, scored as they stood


def evaluate_games(
    policy: Any, agent_state: Any, envs: AtariEnvs, cfg: dict[str, Any], at: int, stream: int = 0
) -> GameScores:
    """Whole games played at once, each from a seed of (seed, lane, step, episode); ``stream``
    keeps other evaluations (a teacher's, offline pretraining's) apart."""
    seeds, episodes = cfg["num_seeds"], cfg["eval"]["episodes"]
    max_steps = min(envs.params.max_steps_in_episode, cfg["eval"]["max_episode_steps"])
    entropy = (EVAL_SEED, stream, at)
    reset_seeds = [env_seed(cfg, lane, *entropy, e) % 2**31 for lane in range(seeds) for e in range(episodes)]
    frames, _ = envs.reset(np.array(reset_seeds))
    stacks = np.asarray(first_stacks(frames, envs.params))
    key = jax.vmap(lambda lane: jax.random.PRNGKey(env_seed(cfg, 0, *entropy) % 2**31 + lane))(jnp.arange(seeds))
    returns, done = np.zeros(seeds * episodes), np.zeros(seeds * episodes, bool)
    epsilon = float(cfg["eval"]["epsilon"])
    for _ in range(max_steps):
        key, actions = policy(agent_state, stacks.reshape(seeds, episodes, *stacks.shape[1:]), key, epsilon)
        frames, reward, over, truncated, _ = envs.step(host_copy(actions).reshape(-1))
        returns += np.where(done, 0.0, reward)
        done |= over | truncated
        if done.all():
            break
        stacks = np.concatenate([stacks[..., 1:], frames[..., None]], axis=-1)
    returns = returns.reshape(seeds, episodes)
    returns = returns / max_steps if cfg["eval"]["per_step"] else returns
    return GameScores(returns, ~done.reshape(seeds, episodes))


class Games(NamedTuple):
    """The training games on the device, beside the carry (a checkpoint keeps them as meta)."""

    handle: jax.Array  # ale-py's vector env, as its XLA calls know it
    lives: jax.Array  # [seeds] lives left in each game
    score: jax.Array  # [seeds] the game's real score so far
    length: jax.Array  # [seeds] agent steps played in the game
    record: jax.Array  # [seeds, capacity] uint8: each lane's actions since its env's last seeding
    recorded: jax.Array  # [seeds] how many
    next_seed: jax.Array  # [seeds] the seed of each lane's next seeding
    ended: jax.Array  # [seeds] a game ended at the last step ...
    final_score: jax.Array  # [seeds] ... with this score
    final_length: jax.Array  # [seeds] ... and this many steps
    reseeded: jax.Array  # [seeds] ... and the next one started from ``next_seed``


def record_capacity(params: AtariParams) -> int:
    """Actions a lane can play between two seedings: ``reseed_after`` and then a whole game."""
    return params.reseed_after + params.max_steps_in_episode + 1


def new_games(
    envs: AtariEnvs, lives: Any, scores: Any, lengths: Any, record: np.ndarray, recorded: Any, next_seeds: Any
) -> Games:
    """The device's ``Games`` for games in progress on ``envs`` (host values)."""
    n = len(record)
    return Games(
        envs.handle(),
        jnp.asarray(lives, jnp.int32),
        jnp.asarray(scores, jnp.float32),
        jnp.asarray(lengths, jnp.int32),
        jnp.asarray(record, jnp.uint8),
        jnp.asarray(recorded, jnp.int32),
        jnp.asarray(next_seeds, jnp.int32),
        jnp.zeros(n, bool),
        jnp.zeros(n, jnp.float32),
        jnp.zeros(n, jnp.int32),
        jnp.zeros(n, bool),
    )


DeviceStep = Callable[..., tuple[HostCarry, Any]]  # (carry, frame, final_frame, reward, terminated, truncated, first)
GameStep = Callable[[Games, HostCarry], tuple[Games, HostCarry, Any]]


def make_game_step(envs: AtariEnvs, device_step: DeviceStep) -> GameStep:
    """(games, carry) -> (games, carry, metrics): one agent step of every seed's game from inside a
    program, the ended games reset (with a new seed once ``reseed_after`` steps have passed since
    the last), then ``device_step`` (store / update / act)."""
    params = envs.params

    def game_step(g: Games, c: HostCarry) -> tuple[Games, HostCarry, Any]:
        handle, frames, reward, over, truncated, lives = envs.device_step(g.handle, c.action)
        lanes = jnp.arange(frames.shape[0])
        record = g.record.at[lanes, jnp.minimum(g.recorded, g.record.shape[1] - 1)].set(c.action.astype(jnp.uint8))
        recorded, score, length = g.recorded + 1, g.score + reward, g.length + 1
        life_lost = (lives < g.lives) & ~over if params.life_loss else jnp.zeros_like(over)
        ended = over | truncated
        reseeded = ended & (recorded >= params.reseed_after)
        handle, reset_frames, reset_lives = envs.device_reset(handle, jnp.where(reseeded, g.next_seed, -1), ended)
        next_frames = jnp.where(ended[:, None, None], reset_frames, frames)
        terminated = over | life_lost
        c, metrics = device_step(c, next_frames, frames, reward, terminated, truncated, terminated | truncated)
        g = Games(
            handle,
            jnp.where(ended, reset_lives, lives),
            jnp.where(ended, 0.0, score),
            jnp.where(ended, 0, length),
            record,
            jnp.where(reseeded, 0, recorded),
            g.next_seed,
            ended,
            score,
            length,
            reseeded,
        )
        return g, c, metrics

    return game_step


def make_acting_block(game_step: GameStep) -> Callable[..., tuple[Games, HostCarry, jax.Array]]:
    """(games, carry, length) -> (games, carry, steps played): up to ``length`` acting steps in one
    ``lax.while_loop``, stopping after a step where a game ended (its row is the host's to write)."""

    def block(g: Games, c: HostCarry, length: jax.Array) -> tuple[Games, HostCarry, jax.Array]:
        def more(state: tuple[Games, HostCarry, jax.Array]) -> jax.Array:
            g, _, played = state
            return (played < length) & ~g.ended.any()

        def play(state: tuple[Games, HostCarry, jax.Array]) -> tuple[Games, HostCarry, jax.Array]:
            g, c, played = state
            g, c, _ = game_step(g, c)
            return g, c, played + 1

        return jax.lax.while_loop(more, play, (g._replace(ended=jnp.zeros_like(g.ended)), c, jnp.zeros((), jnp.int32)))

    return block


def encode_actions(actions: np.ndarray) -> str:
    return base64.b64encode(np.asarray(actions, np.uint8).tobytes()).decode("ascii")


def decode_actions(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.uint8).astype(np.int32)


class AtariLoop(HostLoop):
    """The ``Loop`` of an Atari run: every seed's game in one ale-py vector env, frames stacked on the device."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg, num_seeds, name = cfg, cfg["num_seeds"], cfg["env"]["name"]
        self.rom = parse_name(name)[0]
        self.params = atari_params(name, cfg["env"])
        threads = min(num_seeds, os.cpu_count() or 1)
        self.train_envs = AtariEnvs(self.rom, self.params, num_seeds, threads)
        self.spec = atari_spec(name, self.params, self.train_envs.num_actions)
        self.agent = make_agent(cfg, self.spec)
        self.keys = seed_keys(cfg["seed"], int(cfg.get("run", 0)), num_seeds)
        self.total = cfg["total_steps"]
        self.games = np.zeros(num_seeds, np.int64)  # games finished per lane
        self.seedings = np.zeros(num_seeds, np.int64)  # the seeding each lane's env plays from
        self.game_state: Games | None = None  # the games in progress, on the device
        self.pending_metrics: list[Any] = []
        self.empty_replay = empty_frame_replay(self.spec, self.params)
        self.reincarnation = Reincarnation.for_config(cfg, self.spec)  # before anything is written
        self.carry_sharding = None  # one device: the host steps every seed's game anyway

    def first_carry(self, keys: jax.Array, frames: Any) -> HostCarry:
        stacks = first_stacks(frames, self.params)
        carry = init_host_carry(self.agent, self.spec, self.cfg, keys, stacks, self.empty_replay)
        if self.reincarnation is not None:
            carry = with_teacher(carry, self.cfg, self.reincarnation.teacher_params())
        return carry  # leaves can share a buffer (params and target params): fresh places it

    def prepare(self, session: RunSession) -> Any:
        self.session, cfg, num_seeds = session, self.cfg, self.cfg["num_seeds"]
        if self.reincarnation:
            self.reincarnation.announce_teacher(session)
        frames = jnp.zeros((num_seeds, *FRAME_SHAPE), jnp.uint8)
        shapes = jax.eval_shape(self.first_carry, self.keys, frames)
        memory = fifo.memory_bytes(shapes.replay, num_seeds)
        session.announce(
            f"replay: {memory['bytes_per_transition']:.1f} bytes per transition (84x84 frames stored once, stacked "
            f"when sampled), {human_bytes(memory['total_bytes'] / num_seeds)} per seed, "
            f"{human_bytes(memory['total_bytes'])} for {counted(num_seeds, 'seed')}; {cfg['env']['name']} "
            f"({self.params.protocol} protocol, {self.spec.num_actions} actions) in ale-py, one env per seed"
        )
        width = 32 * 20 * 20 + 64 * 9 * 9 * 2 + sum(cfg["network"]["hidden"])  # Nature CNN activations
        rows = num_seeds * cfg["replay"]["batch_size"]
        eval_rows = num_seeds * cfg["eval"]["episodes"]
        check_fits(cfg, memory_needs(cfg, self.spec, shapes, batch_rows=rows, eval_rows=eval_rows, width=width))
        return shapes

    def fresh(self) -> HostCarry:
        frames, lives = self.train_envs.reset(game_seeds(self.cfg, self.seedings))
        record = np.zeros((len(self.games), record_capacity(self.params)), np.uint8)
        zeros = np.zeros(len(self.games))
        next_seeds = game_seeds(self.cfg, self.seedings + 1)
        self.game_state = new_games(self.train_envs, lives, zeros, zeros, record, zeros, next_seeds)
        carry = placed(self.first_carry(self.keys, frames))
        return jax.jit(make_first_action(self.agent, self.cfg))(carry)

    def resume(self, carry: HostCarry, meta: dict[str, Any]) -> HostCarry:
        if "seedings" not in meta:
            raise TrainingError(
                "this checkpoint was written by an earlier Atari loop (a seed for every game); rerun with --fresh"
            )
        self.games, self.seedings = (np.asarray(meta[key], np.int64) for key in ("games", "seedings"))
        frames = self.replay_games([decode_actions(text) for text in meta["actions_since_seeding"]])
        if not np.array_equal(frames, np.asarray(carry.obs)[..., -1]):
            raise TrainingError("the replayed games do not end where the checkpoint did; rerun with --fresh")
        return carry

    def replay_games(self, histories: list[np.ndarray]) -> np.ndarray:
        """Rebuild every lane's env from its last seed and the actions since; the frames they end on.

        A game that ends on the way starts again from an unseeded reset, as it did. All envs step
        together, so a lane with a shorter history starts later: at step ``longest - len(history)``,
        by a seeded reset of that lane alone."""
        envs, num_seeds = self.train_envs, self.cfg["num_seeds"]
        lengths = np.array([len(h) for h in histories])
        longest, seeds = int(lengths.max()), game_seeds(self.cfg, self.seedings)
        start = longest - lengths
        frames, lives = envs.reset(seeds)
        scores, steps, ends = np.zeros(num_seeds), np.zeros(num_seeds, np.int64), 0
        unseeded = np.full(num_seeds, -1)
        for t in range(longest + 1):
            starting = (start == t) & (t > 0)
            if starting.any():
                reset_frames, reset_lives = envs.reset(seeds[starting], starting)
                frames[starting], lives[starting] = reset_frames[starting], reset_lives[starting]
            if t == longest:
                break
            playing = start <= t
            actions = np.array([histories[lane][t - start[lane]] if playing[lane] else 0 for lane in range(num_seeds)])
            frames, reward, over, truncated, step_lives = envs.step(actions)
            scores, steps = scores + np.where(playing, reward, 0.0), steps + playing
            lives = np.where(playing, step_lives, lives)
            ended = playing & (over | truncated)
            if ended.any():  # its next game, from an unseeded reset as in the run
                reset_frames, reset_lives = envs.reset(unseeded[ended], ended)
                frames[ended], lives[ended] = reset_frames[ended], reset_lives[ended]
                scores[ended], steps[ended], ends = 0.0, 0, ends + int(ended.sum())
        record = np.zeros((num_seeds, record_capacity(self.params)), np.uint8)
        for lane, history in enumerate(histories):
            record[lane, : len(history)] = history
        next_seeds = game_seeds(self.cfg, self.seedings + 1)
        self.game_state = new_games(envs, lives, scores, steps, record, lengths, next_seeds)
        self.session.log.info(
            "rebuilt the training envs from their last seeds: %s replayed (the most in one lane), %s on the way",
            counted(longest, "action"),
            counted(ends, "game end"),
        )
        return frames

    def start(self, carry: HostCarry, resumed: bool) -> HostCarry:
        session, cfg, num_seeds = self.session, self.cfg, self.cfg["num_seeds"]
        observe = make_atari_observation(self.params)
        teacher_q = self.reincarnation.teacher_q() if self.reincarnation else None
        acting, learning = (
            make_game_step(self.train_envs, make_host_step(self.agent, self.spec, cfg, learn, observe, teacher_q))
            for learn in (False, True)
        )
        games, seeds = self.game_state, counted(num_seeds, "seed")
        self.acting_block = session.compile(
            f"the acting block ({seeds})",
            lambda: jax.jit(make_acting_block(acting), donate_argnums=(0, 1)).lower(games, carry, 1),
        )
        self.learning_step = session.compile(
            f"the learning step ({seeds})", lambda: jax.jit(learning, donate_argnums=(0, 1)).lower(games, carry)
        )
        self.first_action = jax.jit(make_first_action(self.agent, cfg))
        episodes = cfg["eval"]["episodes"]
        threads = min(num_seeds * episodes, os.cpu_count() or 1)
        self.eval_envs = AtariEnvs(self.rom, self.params, num_seeds * episodes, threads)
        stacks = jnp.zeros((num_seeds, episodes, *self.spec.obs_shape), jnp.uint8)
        policy = make_atari_policy(self.agent)
        self.policy = session.compile(
            "the evaluation policy", lambda: policy.lower(carry.agent, stacks, carry.key, float(cfg["eval"]["epsilon"]))
        )
        self.reinit = jax.jit(make_reinit(self.agent, cfg)) if resetting(cfg) else None
        self.learning_from = first_learning_block(cfg)
        if self.reincarnation:
            carry = self.reincarnation.start(self, carry, resumed)
        if cfg["eval"]["at_start"] and not resumed:
            self.evaluate_returns(carry.agent, 0)  # a starting point only: lambda starts from its own
        return carry

    def reference_returns(self, agent: ValueAgent, agent_state: Any, epsilon: float | None = None) -> np.ndarray:
        """[seeds, episodes] scores of another agent (a teacher) or at another epsilon (random play)."""
        cfg = self.cfg if epsilon is None else {**self.cfg, "eval": {**self.cfg["eval"], "epsilon": epsilon}}
        policy = make_atari_policy(agent)
        return evaluate_games(policy, agent_state, self.eval_envs, cfg, 0, stream=REFERENCE_STREAM).returns

    def offline_returns(self, agent_state: Any, done: int) -> np.ndarray:
        """[seeds, episodes] scores after ``done`` offline pretraining steps."""
        return evaluate_games(self.policy, agent_state, self.eval_envs, self.cfg, done, stream=PRETRAIN_STREAM).returns

    def advance(self, carry: HostCarry, step: int) -> tuple[HostCarry, int]:
        """Env steps up to the next evaluation, checkpoint or ``SEGMENT_STEPS`` boundary."""
        cfg = self.cfg
        boundaries = [self.total, (step // SEGMENT_STEPS + 1) * SEGMENT_STEPS]
        for every in (cfg["eval"]["every"], cfg["checkpoint"]["every"]):
            if every:
                boundaries.append((step // every + 1) * every)
        end = min(boundaries)
        with self.session.phase("segments"):
            while step < end:
                carry, step = self.play(carry, step, end)
        with self.session.phase("bookkeeping"):
            self.session.flush()
        return carry, step

    def next_learning_step(self, step: int) -> int:
        """The first env step after ``step`` that ends a learning block (``HostLoop.device_step``'s rule)."""
        k = self.cfg["train"]["train_every"]
        return max(-(-(step + 1) // k) * k, self.learning_from + k)

    def play(self, carry: HostCarry, step: int, end: int) -> tuple[HostCarry, int]:
        """The learning step if it comes next, else the acting steps up to it (or ``end``); either
        stops after a step where a game ended, whose row is then written."""
        learning_at = self.next_learning_step(step)
        if learning_at == step + 1:
            self.game_state, carry, metrics = self.learning_step(self.game_state, carry)
            self.pending_metrics.append(metrics)
            played = 1
        else:
            length = min(end, learning_at - 1) - step
            self.game_state, carry, played = self.acting_block(self.game_state, carry, length)
        ended, reseeded, played = jax.device_get((self.game_state.ended, self.game_state.reseeded, played))
        step += int(played)
        if ended.any():
            self.end_games(ended, reseeded, step)
        return carry, step

    def end_games(self, ended: np.ndarray, reseeded: np.ndarray, step: int) -> None:
        """Write the rows of the games that ended at ``step`` (their real scores); a lane whose env
        took its next seed gets the one after."""
        g = self.game_state
        scores, lengths = jax.device_get((g.final_score, g.final_length))
        for lane in np.flatnonzero(ended):
            self.games[lane] += 1
            self.write_row(lane, step, int(self.games[lane]), float(scores[lane]), int(lengths[lane]))
        if reseeded.any():
            self.seedings += reseeded
            self.game_state = g._replace(next_seed=jnp.asarray(game_seeds(self.cfg, self.seedings + 1), jnp.int32))

    def evaluate_returns(self, agent_state: Any, at: int) -> np.ndarray:
        """[seeds] mean scores at env step ``at``, their rows written to result_Test.csv."""
        cfg, session = self.cfg, self.session
        returns, unfinished = evaluate_games(self.policy, agent_state, self.eval_envs, cfg, at)
        session.write_evaluations(evaluation_rows(cfg["env"]["name"], cfg["agent"]["name"], session.seeds, at, returns))
        session.note_evaluation(at, returns)
        if unfinished.any():  # e.g. a greedy Breakout agent that never presses FIRE after a lost life
            cap = min(self.eval_envs.params.max_steps_in_episode, cfg["eval"]["max_episode_steps"])
            per_seed = unfinished.sum(1).tolist()
            session.log.warning(
                f"step {at}: {unfinished.sum()} of {unfinished.size} evaluation games (per seed: {per_seed}) were"
                f" still running at the {cap}-step cap (eval/max_episode_steps) and count with the score they had"
            )
        return returns.mean(1)

    def evaluate(self, carry: HostCarry, step: int) -> tuple[HostCarry, np.ndarray]:
        returns = self.evaluate_returns(carry.agent, step)
        self.write_metrics(step)
        if self.reincarnation:  # QDagger's lambda (and the tied learning rate) from this evaluation
            carry = self.reincarnation.after_evaluation(carry, step, returns)
        return carry, returns

    def checkpoint_meta(self, carry: HostCarry, step: int, due: int) -> dict[str, Any]:
        """Any step will do: each lane's seeding number and its actions since rebuild its env."""
        self.write_metrics(step)  # so a resumed run's next row averages the same updates
        record, recorded = jax.device_get((self.game_state.record, self.game_state.recorded))
        histories = [encode_actions(record[lane, : recorded[lane]]) for lane in range(len(self.games))]
        return {"games": self.games.tolist(), "seedings": self.seedings.tolist(), "actions_since_seeding": histories}


__all__ = [
    "AtariLoop",
    "GameScores",
    "Games",
    "atari_spec",
    "evaluate_games",
    "game_seeds",
    "make_acting_block",
    "make_atari_observation",
    "make_game_step",
]
