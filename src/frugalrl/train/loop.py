"""The jitted training loop: segments of env steps, vmapped over seeds, with shared counters.

A segment is ``lax.scan`` over blocks; a block is ``train_every`` env steps for every seed, then
``gradient_steps`` updates for every seed (for blocks that start at or after ``learning_starts``),
then a target sync when one is due. Whether a segment learns is decided by the host, which
compiles a learning and a non-learning segment (DESIGN principle 4: loop structure, not a
branch on counters); only a segment that straddles ``learning_starts`` uses ``lax.cond``.
Per-seed work is ``vmap``-ed explicitly; the counters ``env_step`` and ``grad_step`` are plain
scalars shared by all seeds, so every remaining predicate is unbatched and ``lax.cond`` stays a
real branch instead of computing both sides.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.agents.consolidation import make_consolidation
from frugalrl.agents.distillation import batch_inputs
from frugalrl.agents.hparams import LaneHParams
from frugalrl.agents.jsrl import JumpStart
from frugalrl.agents.losses import LossInputs, RegularizerInputs
from frugalrl.agents.protocols import ValueAgent
from frugalrl.config.schema import first_learning_block
from frugalrl.config.sections import ReplaySection, TargetSection, TrainSection
from frugalrl.devices import rolled_threefry, seed_vmap
from frugalrl.envs import EnvSpec, to_storage
from frugalrl.replay import fifo, prioritized
from frugalrl.replay.sampler import BatchSampler
from frugalrl.train.resets import initial_reset_state, resetting

EVAL_STREAM = 0x5EED  # folded into each seed's key for evaluation, apart from training randomness


class Carry(NamedTuple):
    """Everything a run needs to continue: the checkpointed training state."""

    agent: Any  # agent state, leading axis = seed
    replay: fifo.ReplayState
    env_state: Any
    obs: jax.Array
    key: jax.Array  # [seeds, 2] per-seed RNG streams
    episode_return: jax.Array
    episode_length: jax.Array
    episodes: jax.Array  # finished training episodes per seed
    env_step: jax.Array  # [] shared: env steps taken by each seed
    grad_step: jax.Array  # [] shared: gradient steps taken by each seed
    source: Any = ()  # per-seed state of the consolidation-state source (MeDQN(U)'s observation bounds)
    teacher: Any = ()  # per-seed copy of the frozen teacher's parameters (distillation)
    distill_lambda: Any = ()  # [seeds] QDagger's lambda, set by the host after each evaluation
    jsrl: Any = ()  # JSRLState: per-seed roll-in lengths (JSRL's teacher-guided exploration)
    priorities: Any = ()  # per-seed prioritized-replay priorities (replay/prioritized)
    resets: Any = ()  # ResetState: resets so far and the grad_step of the last (reset/every)
    hparams: Any = ()  # LaneHParams of a packable config, alone or packed (train/flat.py); never checkpointed


class StepOut(NamedTuple):
    """Per env step and seed; the host reads finished episodes from it."""

    episode_return: jax.Array  # return so far, including this step
    finished_length: jax.Array  # the episode's length if it ended at this step, else 0


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise select on a shared scalar predicate.

    Used for the target sync instead of ``lax.cond``: a cond inside the scanned loop copies the
    whole (seed-batched) agent state every block (+415 us per block at 8 seeds on CPU), while a
    select costs one pass over the target parameters; leaves that the sync leaves as they are
    fold away (select(p, x, x) = x).
    """
    return jax.tree.map(lambda a, b: a if a is b else jnp.where(pred, a, b), on_true, on_false)


def seed_keys(seed: int, run: int, num_seeds: int) -> jax.Array:
    """One independent key per seed lane: fold in the run index, then the lane."""

    def keys() -> jax.Array:  # one program, not one per eager operation
        run_key = jax.random.fold_in(jax.random.PRNGKey(seed), run)
        return jax.vmap(lambda lane: jax.random.fold_in(run_key, lane))(jnp.arange(num_seeds))

    return jax.jit(keys)()


def evaluation_keys(keys: jax.Array, stream: int) -> Any:
    """jit(step -> [seeds] keys): each seed's evaluation key at an env step, apart from training's."""
    return jax.jit(lambda step: jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, stream), step))(keys))


def distilling(cfg: dict[str, Any]) -> bool:
    return cfg["distillation"]["coefficient"] > 0


def jump_starting(cfg: dict[str, Any]) -> bool:
    """JSRL: the teacher acts in part of the training steps."""
    return cfg["jsrl"]["guide_prob"] > 0 or cfg["jsrl"]["roll_in_guide"]


def needs_teacher_in_loop(cfg: dict[str, Any]) -> bool:
    return distilling(cfg) or jump_starting(cfg)


def agent_init_keys(keys: jax.Array) -> jax.Array:
    """Each seed's key for ``agent.init``, as ``init_carry`` derives it (resets with the same key reuse it)."""
    return jax.vmap(lambda key: jax.random.split(key, 3)[0])(keys)


def init_carry(
    agent: ValueAgent,
    env: Any,
    env_params: Any,
    spec: EnvSpec,
    cfg: dict[str, Any],
    keys: jax.Array,
    teacher_params: Any = None,
) -> Carry:
    """Fresh state for all seeds from their keys (and the teacher's parameters, when there is one)."""

    def one(key: jax.Array) -> tuple[Any, ...]:
        init_key, reset_key, loop_key = jax.random.split(key, 3)  # init_key: see agent_init_keys
        obs, env_state = env.reset(reset_key, env_params)
        action = jnp.zeros(spec.action_shape, jnp.int32 if spec.discrete else jnp.float32)
        replay = fifo.init(to_storage(obs, spec), action, cfg["replay"]["capacity"], spec.max_episode_steps)
        return agent.init(init_key), replay, env_state, obs, loop_key

    # lax.map, not vmap: the same values, and it compiles one seed's init (SAC's orthogonal inits: 21 -> 9 s);
    # rolled threefry: it runs once, so unrolled rounds would only cost compile time
    with rolled_threefry():
        agent_state, replay, env_state, obs, loop_key = jax.jit(lambda keys: jax.lax.map(one, keys))(keys)
    seeds = keys.shape[0]
    consolidation = make_consolidation(cfg, spec)
    source_state = jax.vmap(lambda _: consolidation.init())(keys) if consolidation is not None else ()
    carry = Carry(
        agent_state,
        replay,
        env_state,
        obs,
        loop_key,
        jnp.zeros(seeds, jnp.float32),
        jnp.zeros(seeds, jnp.int32),
        jnp.zeros(seeds, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        source_state,
    )
    carry = with_teacher(carry, cfg, teacher_params)
    if cfg["replay"]["prioritized"]:
        carry = carry._replace(priorities=jax.vmap(lambda _: prioritized.init(cfg["replay"]["capacity"]))(keys))
    if resetting(cfg):
        carry = carry._replace(resets=initial_reset_state())
    if jump_starting(cfg):
        carry = carry._replace(jsrl=jax.vmap(JumpStart.from_config(cfg, None).init)(keys))
    return carry  # leaves can share a buffer (params and target params): the caller places it (devices.placed)


def with_teacher(carry: Any, cfg: dict[str, Any], teacher_params: Any) -> Any:
    """A new carry (``Carry`` or the host loops' ``HostCarry``) given the teacher's parameters: the
    student's start (``teacher/init_student``), and a copy per seed for distillation or JSRL."""
    if teacher_params is None:
        return carry
    seeds = carry.key.shape[0]
    per_seed = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + x.shape), tree)  # noqa: E731
    if cfg["teacher"]["init_student"]:
        start = per_seed(teacher_params)
        carry = carry._replace(agent=carry.agent._replace(params=start, target_params=start))
    if needs_teacher_in_loop(cfg):
        carry = carry._replace(teacher=per_seed(teacher_params), distill_lambda=jnp.ones(seeds, jnp.float32))
    return carry


def acting_epsilon(agent: ValueAgent, cfg: dict[str, Any], steps: jax.Array, hparams: Any = ()) -> jax.Array:
    """Epsilon at env steps ``steps``: 1 during the random warm-up, then the agent's schedule;
    [steps], or [steps, lanes] from a packed program's ``LaneHParams``.

    The schedule also counts offline pretraining's gradient steps, as the reincarnation code's
    global step counter did: a student pretrained for at least ``epsilon_decay_steps`` starts
    the online phase at ``epsilon_end``.
    """
    counted_steps = steps + cfg["pretraining"]["steps"]
    if isinstance(hparams, LaneHParams):
        steps, counted_steps = steps[:, None], counted_steps[:, None]
        scheduled = agent.epsilon(counted_steps, hparams.epsilon_start, hparams.epsilon_delta)
    else:
        scheduled = agent.epsilon(counted_steps)
    return jnp.where(steps < cfg["train"]["random_steps"], 1.0, scheduled)


class Learning(NamedTuple):
    """What a block's updates change (seed axis first; ``grad_step`` shared)."""

    agent: Any  # the agent's state
    key: jax.Array
    grad_step: jax.Array
    priorities: Any  # prioritized replay's priorities, () without it


class BlockData(NamedTuple):
    """What a block's updates read (seed axis first; ``count``, env steps so far, shared)."""

    replay: fifo.ReplayState
    count: jax.Array
    consolidation: Any = ()  # MeDQN's per-seed state (its observation box)
    teacher: Any = ()  # per-seed teacher parameters (distillation)
    distill_lambda: Any = ()  # [seeds] QDagger's lambda
    rehearsal: Any = None  # the teacher's replay (no seed axis), when rehearsal mixes it in
    hparams: Any = ()  # LaneHParams of a packable config, () otherwise


PIXEL_TORSOS = ("nature_cnn", "impala_cnn")


def unrolled_updates(cfg: dict[str, Any]) -> bool:
    """Whether a host loop's updates run as straight-line code, one seed after another: for the
    pixel CNNs on a CPU, where XLA runs a convolution's kernel gradient about 10x slower inside a
    loop (``lax.scan``) than outside one, and about 4x slower batched over seeds (BENCHMARKS.md, Atari)."""
    return cfg["network"]["name"] in PIXEL_TORSOS and jax.default_backend() == "cpu"


def repeat(step: Any, state: Any, xs: Any, length: int, unrolled: bool) -> tuple[Any, Any]:
    """``lax.scan(step, state, xs, length)``, or the same as straight-line code when ``unrolled``."""
    if not unrolled:
        return jax.lax.scan(step, state, xs, length=length)
    outputs = []
    for i in range(length):
        state, output = step(state, None if xs is None else jax.tree.map(lambda x, i=i: x[i], xs))
        outputs.append(output)
    return state, jax.tree.map(lambda *steps: jnp.stack(steps), *outputs)


def make_learner(
    agent: ValueAgent,
    spec: EnvSpec,
    cfg: dict[str, Any],
    teacher_q: Any = None,
    rehearsal_count: int = 0,
    unrolled: bool = False,
):
    """``learn(Learning, BlockData) -> (Learning, metrics)``: one block's updates for every seed.

    ``gradient_steps`` TD batches (plus ``train/priming_updates`` in the first learning block),
    each sampled by the config's ``BatchSampler`` and used for ``epochs_per_batch`` optimizer
    steps, then the target sync when one is due. Used by the flat and the host loop alike; the
    host loop's may be ``unrolled`` (``unrolled_updates``).
    """
    train, target = TrainSection.of(cfg), TargetSection.of(cfg)
    k, m, priming = train.train_every, train.gradient_steps, train.priming_updates
    period, unit, learning_from = target.target_every, target.target_unit, first_learning_block(cfg)
    td_batch = make_td_batch(agent, spec, cfg, teacher_q, rehearsal_count, unrolled)
    sync = agent.sync_target  # elementwise, so it applies to seed-batched state as it is

    def learn(state: Learning, data: BlockData) -> tuple[Learning, Any]:
        count = data.count
        if unit == "env_steps" and period % k:
            # a sync due inside the block (Explorer checks every env step, after its updates) comes
            # before this block's update; one due at its last step comes after it, below
            inside = (count // period > (count - k) // period) & (count % period != 0)
            state = state._replace(agent=tree_select(inside, sync(state.agent), state.agent))
        one = lambda state, _: td_batch(state, data)  # noqa: E731
        if priming:  # once, in the first learning block, before its regular updates
            prime = lambda state: jax.lax.scan(one, state, None, length=priming)[0]  # noqa: E731
            state = jax.lax.cond(count - k == learning_from, prime, lambda state: state, state)
        state, metrics = repeat(one, state, None, m, unrolled)
        if unit == "env_steps":
            state = state._replace(agent=tree_select(count % period == 0, sync(state.agent), state.agent))
        return state, jax.tree.map(lambda x: x.mean(0), metrics)

    return learn


def make_td_batch(
    agent: ValueAgent, spec: EnvSpec, cfg: dict[str, Any], teacher_q: Any, rehearsal_count: int, unrolled: bool = False
):
    """``td_batch(Learning, BlockData) -> (Learning, metrics)``: a fresh TD batch, its targets
    computed once, then ``epochs_per_batch`` optimizer steps on it (MeDQN draws fresh
    consolidation states for each), then prioritized replay's new priorities."""
    sampler = BatchSampler.from_config(cfg, rehearsal_count)
    consolidation = make_consolidation(cfg, spec)
    epochs, alpha = TrainSection.of(cfg).epochs_per_batch, cfg["distillation"]["coefficient"]
    distill = distilling(cfg) and teacher_q is not None
    regularizer_period = cfg["rehearsal"]["regularizer_decay_period"]
    target = TargetSection.of(cfg)
    period, by_grad_steps = target.target_every, target.target_unit == "grad_steps"
    sample = jax.vmap(sampler.sample, in_axes=(0, 0, None, 0, None))
    reprioritize = jax.vmap(sampler.reprioritize, in_axes=(0, 0, None, 0, 0))
    td_target, update = seed_vmap(agent.td_target, unrolled=unrolled), seed_vmap(agent.update, unrolled=unrolled)
    consolidation_inputs = jax.vmap(consolidation.inputs, in_axes=(0, 0, None, 0, 0)) if consolidation else None
    # a packed program: each lane's own learning rate (the agent rebuilt with it, inside the vmap)
    lane_update = jax.vmap(lambda lr, *args: agent.with_lr(lr).update(*args))
    split2, split3 = jax.vmap(jax.random.split), jax.vmap(lambda key: jax.random.split(key, 3))

    def fixed_inputs(sample: Any, data: BlockData) -> LossInputs:
        """The loss inputs every epoch on this batch shares."""
        inputs = LossInputs(sample_weights=sample.weights)
        if sample.from_teacher is not None:  # rehearsal: the teacher's share of the batch
            scale = None
            if regularizer_period:
                seeds = sample.from_teacher.shape[0]
                scale = jnp.full(seeds, jnp.clip(1.0 - data.count / regularizer_period, 0.0, 1.0))
            inputs = inputs._replace(regularizer=RegularizerInputs(sample.from_teacher, scale))
        if distill:  # the teacher's Q on the TD batch, once for all its epochs
            distillation = batch_inputs(teacher_q, data.teacher, sample.batch.obs, data.distill_lambda, alpha, unrolled)
            inputs = inputs._replace(distillation=distillation)
        return inputs

    def td_batch(state: Learning, data: BlockData) -> tuple[Learning, Any]:
        hp = data.hparams
        keys = split3(state.key)
        drawn = sample(data.replay, keys[:, 1], data.count, state.priorities, data.rehearsal)
        target, inputs = td_target(state.agent, drawn.batch), fixed_inputs(drawn, data)

        def optimizer_step(inner: tuple[Any, jax.Array], epoch_key: jax.Array) -> tuple[tuple[Any, jax.Array], Any]:
            agent_state, grad_step = inner
            step_inputs = inputs
            if consolidation is not None:
                draw_keys = split2(epoch_key)
                epoch_key = draw_keys[:, 1]
                schedule = (hp.lambda_start, hp.lambda_delta) if hp else None
                states = consolidation_inputs(data.consolidation, data.replay, data.count, draw_keys[:, 0], schedule)
                step_inputs = inputs._replace(consolidation=states)
            if hp:
                agent_state, metrics = lane_update(hp.lr, agent_state, drawn.batch, epoch_key, target, step_inputs)
            else:
                agent_state, metrics = update(agent_state, drawn.batch, epoch_key, target, step_inputs)
            grad_step = grad_step + 1
            if by_grad_steps:
                agent_state = tree_select(grad_step % period == 0, agent.sync_target(agent_state), agent_state)
            return (agent_state, grad_step), metrics

        if epochs == 1 and consolidation is None:
            epoch_keys = keys[:, 2][None]  # plain DQN: the update key itself
        else:
            epoch_keys = jnp.swapaxes(jax.vmap(lambda key: jax.random.split(key, epochs))(keys[:, 2]), 0, 1)
        (agent_state, grad_step), metrics = repeat(
            optimizer_step, (state.agent, state.grad_step), epoch_keys, epoch_keys.shape[0], unrolled
        )
        priorities = state.priorities
        if sampler.kind == "prioritized":  # the sampled transitions' new priorities, from the last epoch's losses
            losses = metrics.pop("td_per_example")[-1]
            priorities = reprioritize(priorities, data.replay, data.count, drawn, losses)
        state = Learning(agent_state, keys[:, 0], grad_step, priorities)
        return state, jax.tree.map(lambda x: x.mean(0), metrics)

    return td_batch


def make_acting(agent: ValueAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any], teacher_q: Any):
    """``act_for_block(Carry) -> (Carry, StepOut)``: ``train_every`` env steps for every seed, their
    transitions written into the replay in one write; MeDQN's box widens to the observations acted in."""
    train = TrainSection.of(cfg)
    k, stale_obs = train.train_every, train.stale_obs_after_terminal
    consolidation = make_consolidation(cfg, spec)
    jump_start = JumpStart.from_config(cfg, teacher_q) if jump_starting(cfg) and teacher_q is not None else None
    act_shared = jax.vmap(agent.act, in_axes=(0, 0, 0, None))  # one epsilon for every seed
    act_per_lane = jax.vmap(agent.act)  # a packed program's lanes (DQN): each its own epsilon, temperature
    env_step_fn = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    add_block = jax.vmap(fifo.add_block, in_axes=(0, None, 1, 0))
    on_add = jax.vmap(prioritized.on_add, in_axes=(0, None, None)) if ReplaySection.of(cfg).prioritized else None
    observe = jax.vmap(consolidation.observe, in_axes=(0, 1)) if consolidation else None  # [time, seed, ...]
    if jump_start is not None:
        guide_act = jax.vmap(jump_start.act, in_axes=(0, 0, 0, 0, 0, 0, None))
        next_roll_in = jax.vmap(jump_start.after_step)

    def env_step(c: Carry, inputs: tuple[jax.Array, ...]) -> tuple[Carry, tuple[StepOut, Any]]:
        act_key, env_key, epsilon, guide = inputs
        if isinstance(c.hparams, LaneHParams):
            action = act_per_lane(c.agent, c.obs, act_key, epsilon, c.hparams.softmax_temperature)
        else:
            action = act_shared(c.agent, c.obs, act_key, epsilon)
        if jump_start is not None:  # the teacher acts in the roll-in (if it guides it), then with probability guide
            action, draw_keys = guide_act(c.teacher, c.jsrl, c.obs, action, c.episode_length, act_key, guide)
        next_obs, env_state, reward, terminated, truncated, info = env_step_fn(env_key, c.env_state, action, env_params)
        final_obs = to_storage(info["final_observation"], spec)
        transition = fifo.Transition(to_storage(c.obs, spec), action, reward, terminated, truncated, final_obs)
        done = terminated | truncated
        episode_return, episode_length = c.episode_return + reward, c.episode_length + 1
        if stale_obs:  # the original's quirk: the next action still sees the terminal step's observation
            terminal = terminated.reshape((-1,) + (1,) * (next_obs.ndim - 1))
            next_obs = jnp.where(terminal, info["final_observation"], next_obs)
        c = c._replace(
            env_state=env_state,
            obs=next_obs,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
        )
        if jump_start is not None:  # a new episode draws its roll-in length
            c = c._replace(jsrl=next_roll_in(c.jsrl, done, draw_keys))
        return c, (StepOut(episode_return, jnp.where(done, episode_length, 0)), transition)

    def act_for_block(c: Carry) -> tuple[Carry, StepOut]:
        # keys and epsilons for the block up front, vectorised: on CPU each small op inside the
        # step loop costs far more than its arithmetic
        keys = jax.vmap(lambda key: jax.random.split(key, 2 * k + 1))(c.key)
        step_keys = jnp.swapaxes(keys[:, 1:], 0, 1).reshape(k, 2, -1, keys.shape[-1])
        steps = c.env_step + jnp.arange(k)
        guide = jump_start.guide_probability(steps) if jump_start is not None else jnp.zeros(k)
        first = c.env_step
        # unroll=1: unrolling the env step multiplies compile time (18 s vs 3 s at 10) for no gain
        inputs = (step_keys[:, 0], step_keys[:, 1], acting_epsilon(agent, cfg, steps, c.hparams), guide)
        c, (out, transitions) = jax.lax.scan(env_step, c._replace(key=keys[:, 0]), inputs)
        replay = add_block(c.replay, first, transitions, to_storage(c.obs, spec))
        if on_add is not None:
            c = c._replace(priorities=on_add(c.priorities, first, k))
        episodes = c.episodes + jnp.sum(out.finished_length > 0, axis=0, dtype=c.episodes.dtype)
        source_state = observe(c.source, transitions.obs) if observe is not None else c.source
        return c._replace(replay=replay, env_step=first + k, episodes=episodes, source=source_state), out

    return act_for_block


def make_segment(
    agent: ValueAgent,
    env: Any,
    env_params: Any,
    spec: EnvSpec,
    cfg: dict[str, Any],
    num_blocks: int,
    learning: str = "mixed",
    teacher_q: Any = None,
    rehearsal_count: int = 0,
):
    """A function Carry -> (Carry, outputs) running ``num_blocks`` blocks; jit it with donation.

    ``learning``: "always" (every block updates), "never" (none does) or "mixed" (a block updates
    when it starts at or after ``first_learning_block``, through ``lax.cond``).
    ``teacher_q``: the teacher's Q-function (``apply(params, obs)``), when the config uses a teacher;
    ``rehearsal_count``: transitions written into the teacher data that rehearsal samples from.
    """
    act_for_block = make_acting(agent, env, env_params, spec, cfg, teacher_q)
    learn = make_learner(agent, spec, cfg, teacher_q, rehearsal_count)
    learning_from = first_learning_block(cfg)

    def skip(state: Learning, data: BlockData) -> tuple[Learning, Any]:
        metric_shapes = jax.eval_shape(learn, state, data)[1]
        return state, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), metric_shapes)

    branch = {
        "always": lambda start, state, data: learn(state, data),
        "never": lambda start, state, data: skip(state, data),
        "mixed": lambda start, state, data: jax.lax.cond(start >= learning_from, learn, skip, state, data),
    }[learning]

    def block(c: Carry, teacher_data: Any) -> tuple[Carry, tuple[StepOut, Any]]:
        start = c.env_step
        c, steps = act_for_block(c)
        state = Learning(c.agent, c.key, c.grad_step, c.priorities)
        data = BlockData(c.replay, c.env_step, c.source, c.teacher, c.distill_lambda, teacher_data, c.hparams)
        state, metrics = branch(start, state, data)
        c = c._replace(agent=state.agent, key=state.key, grad_step=state.grad_step, priorities=state.priorities)
        return c, (steps, metrics)

    def segment(c: Carry, teacher_data: Any = None) -> tuple[Carry, tuple[StepOut, Any]]:
        """``teacher_data``: the teacher's replay (no seed axis), when rehearsal mixes it in."""
        return jax.lax.scan(lambda c, _: block(c, teacher_data), c, None, length=num_blocks)

    return segment


def make_evaluate(agent: ValueAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]):
    """A function (agent_states[seeds], keys[seeds]) -> returns [seeds, episodes] of whole episodes."""
    episodes, epsilon = cfg["eval"]["episodes"], cfg["eval"]["epsilon"]
    max_steps = min(spec.max_episode_steps, cfg["eval"]["max_episode_steps"])
    reset = jax.vmap(jax.vmap(env.reset, in_axes=(0, None)), in_axes=(0, None))
    step = jax.vmap(jax.vmap(env.step, in_axes=(0, 0, 0, None)), in_axes=(0, 0, 0, None))
    act = jax.vmap(jax.vmap(agent.evaluation_act, in_axes=(None, 0, 0, None)), in_axes=(0, 0, 0, None))
    split_all = jax.vmap(jax.vmap(lambda key: jax.random.split(key, 3)))

    def evaluate(agent_state: Any, keys: jax.Array) -> jax.Array:
        keys = jax.vmap(lambda key: jax.random.split(key, episodes))(keys)  # [seeds, episodes, 2]
        keys = split_all(keys)
        obs, env_state = reset(keys[..., 1, :], env_params)
        seeds = keys.shape[0]
        zeros = jnp.zeros((seeds, episodes), jnp.float32)
        state = (0, obs, env_state, keys[..., 0, :], zeros, jnp.zeros((seeds, episodes), bool))

        def cond(s: tuple[Any, ...]) -> jax.Array:
            t, *_, done = s
            return (t < max_steps) & ~jnp.all(done)

        def body(s: tuple[Any, ...]) -> tuple[Any, ...]:
            t, obs, env_state, key, total, done = s
            keys = split_all(key)
            action = act(agent_state, obs, keys[..., 1, :], epsilon)
            obs, env_state, reward, terminated, truncated, _ = step(keys[..., 2, :], env_state, action, env_params)
            total = total + jnp.where(done, 0.0, reward)
            return t + 1, obs, env_state, keys[..., 0, :], total, done | terminated | truncated

        totals = jax.lax.while_loop(cond, body, state)[4]
        return totals / max_steps if cfg["eval"]["per_step"] else totals

    return evaluate
