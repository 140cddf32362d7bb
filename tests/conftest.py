import os
import shutil
import tempfile

import pytest

# Two host devices, as the CLI sets up on a 2-core machine, so tests exercise seeds split over devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# Compiled programs go to a cache of this test session only (never the user's): a test that runs the
# same config twice (rerun, resume) compiles it once. Subprocesses the tests start get "off" unless
# a test sets its own (the cache test does).
_SESSION_CACHE = tempfile.mkdtemp(prefix="frugalrl-test-xla-")
os.environ["FRUGAL_XLA_CACHE"] = "off"


def pytest_configure(config: pytest.Config) -> None:
    from frugalrl.devices import CACHE_ENV, use_compilation_cache

    os.environ[CACHE_ENV] = _SESSION_CACHE
    use_compilation_cache()
    os.environ[CACHE_ENV] = "off"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


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
