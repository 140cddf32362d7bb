"""JAX environments on gymnax's v1 API and the registry that names them."""

from frugalrl.envs.registry import (
    REGISTRY,
    EnvSpec,
    available_envs,
    check_env_config,
    check_runnable,
    host_family,
    is_host_env,
    make,
    register,
    to_storage,
)

__all__ = [
    "REGISTRY",
    "EnvSpec",
    "available_envs",
    "check_env_config",
    "check_runnable",
    "host_family",
    "is_host_env",
    "make",
    "register",
    "to_storage",
]
