import os

# Two host devices, as the CLI sets up on a 2-core machine, so tests exercise seeds split over devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# Tests compile from scratch and never write to the user's cache (the one cache test sets its own).
os.environ["FRUGAL_XLA_CACHE"] = "off"
