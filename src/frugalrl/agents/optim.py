"""Optimizers from the config's ``optimizer`` section."""

from __future__ import annotations

from typing import Any

import optax


def make_optimizer(opt_cfg: dict[str, Any]) -> optax.GradientTransformation:
    """Adam or (centered) RMSprop with torch's conventions, optionally after global-norm clipping.

    RMSprop follows torch: ``alpha`` is the smoothing constant and ``eps`` is added outside the
    square root, which is what the MeDQN MinAtar settings (alpha 0.95, eps 0.01, centered) assume.
    """
    eps = opt_cfg["eps"] if opt_cfg["eps"] is not None else 1e-8
    if opt_cfg["name"] == "adam":
        base = optax.adam(opt_cfg["lr"], b1=opt_cfg["b1"], b2=opt_cfg["b2"], eps=eps)
    else:
        base = optax.rmsprop(
            opt_cfg["lr"], decay=opt_cfg["alpha"], eps=eps, centered=opt_cfg["centered"], eps_in_sqrt=False
        )
    if opt_cfg["max_grad_norm"] > 0:
        return optax.chain(optax.clip_by_global_norm(opt_cfg["max_grad_norm"]), base)
    return base
