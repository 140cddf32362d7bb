import os
import shutil
import tempfile

import pytest

# Two host devices, as the CLI sets up on a 2-core machine, so tests exercise seeds split over devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# Compiled programs go to a cache of this test run only (never the user's), shared by xdist's workers
# and by every `frugal` process the tests start: a test that runs the same config twice (alone and
# killed, rerun, resume) compiles it once. Cached programs give the bits a fresh compile gives
# (test_run's cache test). The controller makes the folder before its workers start; they inherit it.
# FRUGAL_TEST_XLA_CACHE set before pytest starts names a folder of the caller's, kept afterwards.
_RUN_CACHE_ENV = "FRUGAL_TEST_XLA_CACHE"
_CACHE_MADE_HERE = _RUN_CACHE_ENV not in os.environ  # in the controller (xdist's workers inherit it)
if _CACHE_MADE_HERE:
    os.environ[_RUN_CACHE_ENV] = tempfile.mkdtemp(prefix="frugalrl-test-xla-")
os.environ["FRUGAL_XLA_CACHE"] = os.environ[_RUN_CACHE_ENV]


def pytest_configure(config: pytest.Config) -> None:
    from frugalrl.devices import use_compilation_cache

    use_compilation_cache()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_MADE_HERE:  # the controller (or a run without xdist) made it
        shutil.rmtree(os.environ[_RUN_CACHE_ENV], ignore_errors=True)


DOPAMINE_FIXTURE = os.path.join(os.path.dirname(__file__), "data", "dopamine_fixture")


def dopamine_written_run(folder):
    """tests/data/dopamine_fixture (a checkpoint and replay written by dopamine-rl itself) copied
    into ``folder`` as Dopamine leaves a run: its checkpoint unzipped. Returns the run's path."""
    import gzip
    from pathlib import Path

    source = Path(folder) / "dopamine_run"
    shutil.copytree(DOPAMINE_FIXTURE, source)
    packed = source / "checkpoints" / "ckpt.3.gz"
    with gzip.open(packed, "rb") as raw, open(packed.with_suffix(""), "wb") as out:
        shutil.copyfileobj(raw, out)
    packed.unlink()
    return source
