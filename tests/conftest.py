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
