"""Process-level set-up: the unrolled threefry lowering gives the same bits without a loop; a run defers gymnax's
plotting imports."""

import subprocess
import sys

import jax
import numpy as np

from frugalrl.devices import rolled_threefry, unroll_threefry_on_cpu

DRAW = "jax.jit(lambda k: jax.random.uniform(jax.random.split(k)[1], (5,)))(jax.random.PRNGKey(3))"


def test_unrolled_threefry_gives_the_same_bits_with_no_loop():
    default = subprocess.run(
        [sys.executable, "-c", f"import jax; print(list(map(float, {DRAW})))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert unroll_threefry_on_cpu()
    draw = jax.jit(lambda k: jax.random.uniform(k, (5,)))
    text = draw.lower(jax.random.PRNGKey(0)).compile().as_text()
    assert " while(" not in text  # the op, not the test's name in the metadata
    ours = eval(DRAW, {"jax": jax})
    np.testing.assert_array_equal(np.asarray(ours, np.float32), np.array(eval(default.strip()), np.float32))


def test_rolled_threefry_lowers_a_loop_inside_only_and_keeps_the_bits():
    assert unroll_threefry_on_cpu()

    def compiled(n: int):  # a fresh function each time: jit's caches cannot hand back another lowering
        return (
            jax.jit(lambda k: jax.random.uniform(jax.random.split(k)[1], (n,))).lower(jax.random.PRNGKey(0)).compile()
        )

    unrolled = compiled(7)
    with rolled_threefry():
        rolled = compiled(7)
    after = compiled(7)
    assert " while(" in rolled.as_text()
    assert " while(" not in unrolled.as_text() and " while(" not in after.as_text()
    key = jax.random.PRNGKey(11)
    np.testing.assert_array_equal(np.asarray(rolled(key)), np.asarray(unrolled(key)))


def test_idle_devices_note_names_seed_counts_that_use_every_device() -> None:
    from frugalrl.devices import idle_devices_note, seed_mesh

    devices = len(jax.local_devices())
    assert devices == 2  # conftest asks for two host devices
    assert seed_mesh(5).devices.size == 1
    note = idle_devices_note(5, seed_mesh(5))
    assert note is not None and "1 of 2 devices" in note and "4 or 6" in note
    assert "device_count=1" in idle_devices_note(1, seed_mesh(1))
    assert idle_devices_note(6, seed_mesh(6)) is None


def test_a_run_process_imports_gymnax_without_its_plotting_libraries_yet_they_work_when_used():
    """gymnax imports seaborn and pyplot for render functions; a run defers them (~1.9 s of its start)."""
    script = """
import sys
from frugalrl.devices import defer_plotting_imports
defer_plotting_imports()
import gymnax
from gymnax.environments.misc import pong
assert "scipy.stats" not in sys.modules and "pandas" not in sys.modules, "seaborn was loaded"
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
figure, _ = plt.subplots()
assert len(sns.color_palette("cubehelix", 3)) == 3 and pong.sns.color_palette is sns.color_palette
assert "scipy.stats" in sys.modules and type(sys.modules["seaborn"]).__name__ == "module"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_placing_a_carry_compiles_nothing_and_gives_each_leaf_a_buffer_of_its_own():
    """A run's start places its carry on the seed devices: eager copies and moves of device arrays
    compiled a program per leaf shape (31 for a DQN carry). The placed leaves are the segment's to
    donate: params and target params that start as one array must not share a buffer after."""
    import jax.monitoring
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from frugalrl.devices import placed

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _, **__: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
    )
    params = jnp.arange(2 * 7 * 5, dtype=jnp.float32).reshape(2, 7, 5) + 0.5  # a shape no other test compiles
    carry = {"params": params, "target": params, "count": jnp.zeros((), jnp.int32)}
    split = NamedSharding(Mesh(np.array(jax.devices()[:2]), ("seed",)), PartitionSpec("seed"))
    layout = {"params": split, "target": split, "count": NamedSharding(split.mesh, PartitionSpec())}
    before = len(compiles)
    on_devices = placed(carry, layout)
    assert len(compiles) == before
    assert on_devices["params"].sharding == split and len(on_devices["params"].addressable_shards) == 2

    def buffers(array: jax.Array) -> set[int]:
        return {shard.data.unsafe_buffer_pointer() for shard in array.addressable_shards}

    assert not buffers(on_devices["params"]) & buffers(on_devices["target"])
    alone = placed(carry)  # no layout: the default device
    assert alone["params"].devices() == {jax.devices()[0]}
    assert alone["params"].unsafe_buffer_pointer() != alone["target"].unsafe_buffer_pointer()
    trained = jax.jit(lambda p: p * 0 - 1, donate_argnums=0)(on_devices["params"])
    assert on_devices["params"].is_deleted() and float(trained[1, 6, 4]) == -1.0  # donated, written over
    np.testing.assert_array_equal(np.asarray(on_devices["target"]), np.asarray(params))
