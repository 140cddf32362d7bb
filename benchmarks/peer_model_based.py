"""Peer for benchmarks/model_based.py: the model-generalization code's design, written for this benchmark.

The original (kenjyoung/Model_Generalization_Code_supplement, dm-haiku, 2022-era JAX) cannot be
installed from a package registry, so this file re-creates its structure in plain JAX, from the
reference notes (sr_sac_model_based.md §B4-B6), without its code: per-seed state stacked on a leading
axis; one function that scans ``steps`` env steps of act -> env step -> reset on terminal -> store ->
target copy -> ``updates`` update iterations, ``jit(vmap(...))`` over seeds with shared step
counters; a replay buffer in the carried state that stores observation and next observation as float
arrays (``buffer_size`` rows each) with its own key; per-sample losses vmapped and averaged; the
original's AdamW in the jax.example_libraries style (state = (x, m, v), step index shared).
The environment is frugalrl's ProcMaze (``reset_env``/``step_env``), so both sides step the same env.

Agents: ``er`` (batch 320), ``perfect`` (32 stored env states x 10-step rollouts through the true
dynamics), ``simple`` (reward, continuation and next-observation MLPs; 32 x 10 imagined steps).

    python benchmarks/peer_model_based.py --agent er --seeds 10 --steps 20 --updates 10
prints one JSON line: {"env_steps_per_s": ..., "updates_per_s": ...} (seed-summed, compile excluded).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import jax
import jax.numpy as jnp

from frugalrl.envs.model_generalization import ProcMaze

GAMMA, TEMPERATURE, TARGET_EVERY = 0.9, 0.4, 10
LR, B1, B2, EPS, WD = 1e-4, 0.9, 0.99, 1e-5, 1e-6


def mlp_init(key: jax.Array, sizes: list[int]) -> list[dict[str, jax.Array]]:
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        key, sub = jax.random.split(key)
        std = 1.0 / math.sqrt(fan_in) / 0.87962566103423978  # truncated normal with unit fan-in variance
        w = std * jax.random.truncated_normal(sub, -2.0, 2.0, (fan_in, fan_out))
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    return layers


def mlp(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.elu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def adamw_init(x):
    zeros = jax.tree.map(jnp.zeros_like, x)
    return x, zeros, zeros


def adamw_update(i, g, state):
    x, m, v = state
    m = jax.tree.map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
    v = jax.tree.map(lambda v, g: B2 * v + (1 - B2) * g**2, v, g)
    t = i + 1
    x = jax.tree.map(lambda x, m, v: x - LR * (m / (1 - B1**t)) / (jnp.sqrt(v / (1 - B2**t)) + EPS) - WD * x, x, m, v)
    return x, m, v


def build(agent: str, buffer_size: int, hidden: list[int], updates: int, steps: int):
    env = ProcMaze(4)
    params0 = env.default_params
    obs_size, actions = env.observation_size, 5
    q_sizes = [obs_size, *hidden, actions]
    model_sizes = [obs_size + actions, *hidden]
    batch = 320 if agent == "er" else 32

    def init(key):
        keys = jax.random.split(key, 6)
        obs, state = env.reset_env(keys[0], params0)
        q = mlp_init(keys[1], q_sizes)
        model = ()
        if agent == "simple":
            model = {
                "reward": mlp_init(keys[2], [*model_sizes, 1]),
                "continuation": mlp_init(keys[3], [*model_sizes, 1]),
                "next_obs": mlp_init(keys[4], [*model_sizes, obs_size]),
            }
        if agent == "perfect":  # stores true env states
            buffer = {"state": jax.tree.map(lambda x: jnp.zeros((buffer_size,) + x.shape, x.dtype), state)}
        else:
            buffer = {
                "obs": jnp.zeros((buffer_size, obs_size)),
                "action": jnp.zeros(buffer_size, jnp.int32),
                "reward": jnp.zeros(buffer_size),
                "next_obs": jnp.zeros((buffer_size, obs_size)),
                "terminal": jnp.zeros(buffer_size, bool),
            }
        buffer.update(pointer=jnp.int32(0), size=jnp.int32(0), key=keys[5])
        return state, adamw_init(q), q, adamw_init(model), buffer

    def add(buffer, **fields):
        p = buffer["pointer"]
        new = dict(buffer)
        for name, value in fields.items():
            new[name] = jax.tree.map(lambda store, v: store.at[p].set(v), buffer[name], value)
        new["pointer"] = (p + 1) % buffer_size
        new["size"] = jnp.minimum(buffer["size"] + 1, buffer_size)
        return new

    def sample(buffer, n):
        key, sub = jax.random.split(buffer["key"])
        idx = jax.random.randint(sub, (n,), 0, jnp.maximum(buffer["size"], 1))
        picked = {
            k: jax.tree.map(lambda x: x[idx], v) for k, v in buffer.items() if k not in ("pointer", "size", "key")
        }
        return {**buffer, "key": key}, picked

    def softmax_action(q_params, obs, key):
        return jax.random.categorical(key, mlp(q_params, obs) / TEMPERATURE)

    def q_sample_loss(q, target, obs, action, reward, next_obs, discount, weight):
        error = mlp(q, obs)[action] - (reward + discount * jnp.max(mlp(target, next_obs)))
        return weight * error**2

    batch_q_loss = lambda q, target, *data: jnp.mean(
        jax.vmap(q_sample_loss, in_axes=(None, None, 0, 0, 0, 0, 0, 0))(q, target, *data)
    )

    def model_sample_loss(model, obs, action, reward, next_obs, terminal):
        x = jnp.concatenate([obs, jax.nn.one_hot(action, actions)])
        r = mlp(model["reward"], x)[0]
        c = mlp(model["continuation"], x)[0]
        logits = mlp(model["next_obs"], x)
        obs_nll = -jnp.sum(next_obs * jax.nn.log_sigmoid(logits) + (1 - next_obs) * jax.nn.log_sigmoid(-logits))
        cont_nll = -jnp.where(terminal, jax.nn.log_sigmoid(-c), jax.nn.log_sigmoid(c))
        return 0.5 * (reward - r) ** 2 + cont_nll + jnp.where(terminal, 0.0, obs_nll)

    batch_model_loss = lambda model, *data: jnp.mean(
        jax.vmap(model_sample_loss, in_axes=(None, 0, 0, 0, 0, 0))(model, *data)
    )

    def rollout_perfect(q, state, key):
        def step(carry, key):
            state, alive = carry
            k1, k2 = jax.random.split(key)
            obs = env.observation(state)
            action = softmax_action(q, obs, k1)
            next_obs, state, reward, terminal, _ = env.step_env(k2, state, action, params0)
            out = (obs, action, reward, next_obs, GAMMA * (1.0 - terminal), alive.astype(jnp.float32))
            return (state, alive & ~terminal), out

        return jax.lax.scan(step, (state, jnp.bool_(True)), jax.random.split(key, 10))[1]

    def rollout_simple(q, model, obs, key):
        def step(carry, key):
            obs, c_prev, weight = carry
            weight = weight * c_prev
            k1, k2 = jax.random.split(key)
            action = softmax_action(q, obs, k1)
            x = jnp.concatenate([obs, jax.nn.one_hot(action, actions)])
            reward = mlp(model["reward"], x)[0]
            c = jax.nn.sigmoid(mlp(model["continuation"], x)[0])
            next_obs = jax.random.bernoulli(k2, jax.nn.sigmoid(mlp(model["next_obs"], x))).astype(jnp.float32)
            return (next_obs, c, weight), (obs, action, reward, next_obs, GAMMA * c, weight)

        return jax.lax.scan(step, (obs, 1.0, 1.0), jax.random.split(key, 10))[1]

    def one_update(carry, _):
        q_opt, target, model_opt, buffer, opt_t, key = carry
        buffer, data = sample(buffer, batch)
        key, k1, k2 = jax.random.split(key, 3)
        q = q_opt[0]
        if agent == "er":
            discount = GAMMA * (1.0 - data["terminal"])
            imagined = (data["obs"], data["action"], data["reward"], data["next_obs"], discount, jnp.ones(batch))
        elif agent == "perfect":
            rolled = jax.vmap(rollout_perfect, in_axes=(None, 0, 0))(q, data["state"], jax.random.split(k2, batch))
            imagined = tuple(x.reshape((batch * 10,) + x.shape[2:]) for x in rolled)
        else:
            grads = jax.grad(batch_model_loss)(
                model_opt[0], data["obs"], data["action"], data["reward"], data["next_obs"], data["terminal"]
            )
            model_opt = adamw_update(opt_t, grads, model_opt)
            rolled = jax.vmap(rollout_simple, in_axes=(None, None, 0, 0))(
                q, model_opt[0], data["obs"], jax.random.split(k2, batch)
            )
            imagined = tuple(x.reshape((batch * 10,) + x.shape[2:]) for x in rolled)
        grads = jax.grad(batch_q_loss)(q, target, *imagined)
        q_opt = adamw_update(opt_t, grads, q_opt)
        return (q_opt, target, model_opt, buffer, opt_t + 1, key), None

    def interaction(env_state, q_opt, target, model_opt, buffer, opt_t, t, key):
        def step(carry, _):
            env_state, q_opt, target, model_opt, buffer, opt_t, t, key = carry
            key, k_act, k_env, k_reset, k_update = jax.random.split(key, 5)
            obs = env.observation(env_state)
            action = softmax_action(q_opt[0], obs, k_act)
            next_obs, next_state, reward, terminal, _ = env.step_env(k_env, env_state, action, params0)
            if agent == "perfect":
                buffer = add(buffer, state=env_state)
            else:
                buffer = add(buffer, obs=obs, action=action, reward=reward, next_obs=next_obs, terminal=terminal)
            fresh = env.reset_env(k_reset, params0)[1]
            env_state = jax.tree.map(lambda a, b: jnp.where(terminal, a, b), fresh, next_state)
            target = jax.tree.map(lambda a, b: jnp.where(t % TARGET_EVERY == 0, a, b), q_opt[0], target)
            (q_opt, target, model_opt, buffer, opt_t, _), _ = jax.lax.scan(
                one_update, (q_opt, target, model_opt, buffer, opt_t, k_update), None, length=updates
            )
            return (env_state, q_opt, target, model_opt, buffer, opt_t, t + 1, key), None

        carry = (env_state, q_opt, target, model_opt, buffer, opt_t, t, key)
        return jax.lax.scan(step, carry, None, length=steps)[0]

    in_axes = (0, 0, 0, 0, 0, None, None, 0)
    loop = jax.jit(jax.vmap(interaction, in_axes=in_axes, out_axes=in_axes))
    return init, loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", choices=("er", "perfect", "simple"), required=True)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 200, 200])
    parser.add_argument("--fill", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    init, loop = build(args.agent, args.buffer_size, args.hidden, args.updates, args.steps)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    env_state, q_opt, target, model_opt, buffer = jax.jit(jax.vmap(init))(keys)
    # fill the buffers without learning: a loop with 0 updates
    _, fill_loop = build(args.agent, args.buffer_size, args.hidden, 0, args.fill)
    state = fill_loop(env_state, q_opt, target, model_opt, buffer, 0, 0, keys)
    state = loop(*state[:5], 0, args.fill, state[7])  # compile and warm up
    jax.block_until_ready(state)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        state = loop(*state[:5], 0, args.fill, state[7])
        jax.block_until_ready(state)
        rates.append(args.seeds * args.steps / (time.perf_counter() - start))
    steps_per_s = statistics.median(rates)
    print(json.dumps({"env_steps_per_s": steps_per_s, "updates_per_s": steps_per_s * args.updates, "runs": rates}))


if __name__ == "__main__":
    main()
