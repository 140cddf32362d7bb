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
