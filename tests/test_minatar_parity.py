"""Our ``*-MinAtar-v0`` games against the original ``minatar`` package, step by step.

Both are stepped with the same actions (sticky actions off here; they are tested in test_envs).
Where a game draws random numbers every step (Asterix, Seaquest spawns), the original's state is
copied into ours before each step without a spawn, so every other rule is compared exactly; the
spawn and shooting rules we correct are tested from constructed states.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from minatar.environments import asterix as original_asterix
from minatar.environments import breakout as original_breakout
from minatar.environments import freeway as original_freeway
from minatar.environments import seaquest as original_seaquest
from minatar.environments import space_invaders as original_space_invaders

from frugalrl.envs.minatar import MinAtarV0
from frugalrl.envs.minatar import seaquest as gymnax_seaquest

MAX_ENTITIES = 100  # gymnax's Seaquest entity buffers


def ours(game):
    env = MinAtarV0(game)
    params = env.default_params.replace(sticky_action_prob=0.0)
    return env, params, jax.jit(env.step_env)


def same_step(obs, reward, terminated, original, original_reward, original_terminal, skip_channels=()):
    keep = [c for c in range(obs.shape[-1]) if c not in skip_channels]
    same_obs = np.array_equal(np.asarray(obs).astype(bool)[..., keep], original.state()[..., keep])
    return same_obs and float(reward) == original_reward and bool(terminated) == bool(original_terminal)


def lockstep(game, original_env, sync, episodes, policy, resync_on_reward=False, max_len=6000):
    """Step ours and the original from the same reset; ``sync`` copies the original's random draws."""
    env, params, step = ours(game)
    rng = np.random.RandomState(0)
    key = jax.random.PRNGKey(0)
    lengths = []
    for episode in range(episodes):
        original = original_env()
        original.random = np.random.RandomState(episode)
        original.reset()
        _, state = env.reset_env(jax.random.PRNGKey(episode), params)
        state = state.replace(game=sync(original, state.game))
        for t in range(1, max_len + 1):
            action = policy(rng, original)
            reward, terminal = original.act(action)
            key, step_key = jax.random.split(key)
            obs, state, our_reward, terminated, _ = step(step_key, state, action, params)
            if resync_on_reward and reward > 0:  # Freeway redraws its cars after a crossing
                state = state.replace(game=sync(original, state.game))
                obs = env.get_obs(state)
            assert same_step(obs, our_reward, terminated, original, reward, terminal), (game, episode, t)
            if terminal:
                break
        lengths.append(t)
    return lengths


def test_breakout_matches_the_original():
    def sync(original, game):
        return game.replace(
            ball_x=jnp.array(original.ball_x), ball_dir=jnp.array(original.ball_dir), last_x=jnp.array(original.last_x)
        )

    def follow_the_ball(rng, original):  # long episodes, so bricks run out and are refilled
        if rng.rand() < 0.02:
            return rng.randint(6)
        target = original.ball_x + (1 if original.ball_dir in (1, 2) else -1)  # where the ball goes next
        return 1 if original.pos > target else 3 if original.pos < target else 0

    lengths = lockstep("Breakout", original_breakout.Env, sync, episodes=6, policy=follow_the_ball)
    assert sum(lengths) > 1500 and max(lengths) > 500  # long enough to clear and refill the bricks


def test_space_invaders_matches_the_original():
    def dodge_and_fire(rng, original):  # survives long enough to clear waves (and ramp up)
        if rng.rand() < 0.3:
            return rng.randint(6)
        if original.e_bullet_map[8, original.pos] or original.e_bullet_map[7, original.pos]:
            return rng.choice([1, 3])
        return 5

    lengths = lockstep("SpaceInvaders", original_space_invaders.Env, lambda o, g: g, episodes=8, policy=dodge_and_fire)
    assert sum(lengths) > 800


def test_freeway_terminates_on_its_2501st_step_as_the_original():
    def sync(original, game):
        return game.replace(cars=jnp.array(original.cars, dtype=jnp.int32))

    # mostly "up", so the chicken crosses and the cars are redrawn several times
    lengths = lockstep(
        "Freeway",
        original_freeway.Env,
        sync,
        episodes=1,
        policy=lambda rng, _: rng.choice([0, 2, 2, 2, 4, 1]),
        resync_on_reward=True,
    )
    assert lengths == [2501]


def asterix_state(original, template):
    entities = np.zeros((8, 5), np.int32)
    for slot, entity in enumerate(original.entities):
        if entity is not None:
            entities[slot] = [int(v) for v in entity] + [1]
    as_int = jnp.int32
    return template.replace(
        player_x=as_int(original.player_x),
        player_y=as_int(original.player_y),
        spawn_speed=as_int(original.spawn_speed),
        spawn_timer=as_int(original.spawn_timer),
        move_speed=as_int(original.move_speed),
        move_timer=as_int(original.move_timer),
        ramp_timer=as_int(original.ramp_timer),
        ramp_index=as_int(original.ramp_index),
        entities=jnp.array(entities),
    )


def padded(entities, width):
    array = np.zeros((MAX_ENTITIES, width), np.int32)
    for row, entity in enumerate(entities):
        array[row] = [int(v) for v in entity]
    return jnp.array(array), jnp.int32(len(entities))


def seaquest_state(original, template):
    f_bullets, f_bullet_count = padded(original.f_bullets, 3)
    e_bullets, e_bullet_count = padded(original.e_bullets, 3)
    e_fish, e_fish_count = padded(original.e_fish, 4)
    e_subs, e_subs_count = padded(original.e_subs, 5)
    divers, divers_count = padded(original.divers, 4)
    as_int = jnp.int32
    return template.replace(
        oxygen=as_int(original.oxygen),
        sub_x=as_int(original.sub_x),
        sub_y=as_int(original.sub_y),
        sub_or=jnp.array(bool(original.sub_or)),
        f_bullets=f_bullets,
        f_bullet_count=f_bullet_count,
        e_bullets=e_bullets,
        e_bullet_count=e_bullet_count,
        e_fish=e_fish,
        e_fish_count=e_fish_count,
        e_subs=e_subs,
        e_subs_count=e_subs_count,
        divers=divers,
        divers_count=divers_count,
        diver_count=as_int(original.diver_count),
        e_spawn_speed=as_int(original.e_spawn_speed),
        e_spawn_timer=as_int(original.e_spawn_timer),
        d_spawn_timer=as_int(original.d_spawn_timer),
        move_speed=as_int(original.move_speed),
        ramp_index=as_int(original.ramp_index),
        shot_timer=as_int(original.shot_timer),
        surface=jnp.array(bool(original.surface)),
    )


@pytest.mark.parametrize(
    "game,original_env,convert,spawns,steps",
    [
        ("Asterix", original_asterix.Env, asterix_state, lambda o: o.spawn_timer == 0, 3000),
        ("Seaquest", original_seaquest.Env, seaquest_state, lambda o: 0 in (o.e_spawn_timer, o.d_spawn_timer), 3000),
    ],
)
def test_every_rule_but_spawning_matches_from_the_originals_state(game, original_env, convert, spawns, steps):
    env, params, step = ours(game)
    _, template = env.reset_env(jax.random.PRNGKey(0), params)
    original = original_env()
    original.random = np.random.RandomState(1)
    rng = np.random.RandomState(0)
    compared = terminals = 0
    for t in range(steps):
        if original.terminal:
            original.reset()
        action = 5 if game == "Seaquest" and rng.rand() < 0.3 else rng.randint(6)
        state = template.replace(game=convert(original, template.game))
        check = not spawns(original)
        reward, terminal = original.act(action)
        if check:
            obs, _, our_reward, terminated, _ = step(jax.random.PRNGKey(t), state, action, params)
            # Surfacing without divers ends Seaquest: gymnax refills the oxygen gauge of that final
            # observation, the original does not; nothing after it is used.
            skip = (7,) if game == "Seaquest" and terminal else ()
            assert same_step(obs, our_reward, terminated, original, reward, terminal, skip), (game, t)
            compared += 1
            terminals += bool(terminal)
    assert compared > steps // 2 and terminals >= 3


def test_asterix_spawns_into_the_free_slot_and_never_over_a_live_entity():
    env, params, step = ours("Asterix")
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    # entities far from the player (row 5), none due to move this step
    full = jnp.array([[0, row, 1, 0, 1] for row in range(1, 9)], jnp.int32)
    game = state.game.replace(spawn_timer=jnp.int32(0), move_timer=jnp.int32(3), player_x=jnp.int32(9))
    one_free = full.at[3].set(0)
    for seed in range(20):
        key = jax.random.PRNGKey(seed)
        _, after, _, _, _ = step(key, state.replace(game=game.replace(entities=one_free)), 0, params)
        assert after.game.entities[3, 4] == 1 and after.game.entities[3, 1] == 4
        others = np.delete(np.asarray(after.game.entities), 3, axis=0)
        np.testing.assert_array_equal(others, np.delete(np.asarray(full), 3, axis=0))
        _, after, _, _, _ = step(key, state.replace(game=game.replace(entities=full)), 0, params)
        np.testing.assert_array_equal(after.game.entities, full)  # nothing spawns, nothing is deleted
        assert after.game.spawn_timer == game.spawn_speed - 1  # restarted, then counted down


def test_seaquest_sub_shot_down_on_its_shooting_step_still_fires():
    original = original_seaquest.Env()
    original.random = np.random.RandomState(0)
    original.reset()
    original.sub_x, original.sub_y = 5, 5
    original.e_spawn_timer = original.d_spawn_timer = 10
    original.f_bullets = [[3, 3, True]]  # moves to x=4 ...
    original.e_subs = [[5, 3, False, 0, 0]]  # ... where this sub moves, shot timer due
    env, params, step = ours("Seaquest")
    _, template = env.reset_env(jax.random.PRNGKey(0), params)
    state = template.replace(game=seaquest_state(original, template.game))
    reward, terminal = original.act(0)
    obs, after, our_reward, terminated, _ = step(jax.random.PRNGKey(0), state, 0, params)
    assert reward == 1 and original.e_bullets == [[3, 3, False]] and original.e_subs == []
    assert same_step(obs, our_reward, terminated, original, reward, terminal)
    assert int(after.game.e_bullet_count) == 1 and int(after.game.e_subs_count) == 0
    # gymnax's own step drops the dying sub's shot
    plain = gymnax_seaquest.MinSeaquest(use_minimal_action_set=False)
    _, plain_after, _, _, _ = plain.step_env(jax.random.PRNGKey(0), state.game, 0, params.game)
    assert int(plain_after.e_bullet_count) == 0
