"""Optimizers from the config's ``optimizer`` section."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def adam_unscaled_decay(
    learning_rate: float, b1: float, b2: float, eps: float, weight_decay: float
) -> optax.GradientTransformation:
    """Adam with decoupled weight decay that the learning rate does not scale:
    x <- x - lr * m_hat / (sqrt(v_hat) + eps) - weight_decay * x (the model-generalization code's AdamW)."""
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.scale(-learning_rate),
        optax.add_decayed_weights(-weight_decay),
    )


def make_optimizer(opt_cfg: dict[str, Any], adjustable_lr: bool = False) -> optax.GradientTransformation:
    """Adam, Adam with unscaled decoupled weight decay, or (centered) RMSprop with torch's
    conventions, optionally after global-norm clipping.

    RMSprop follows torch: ``alpha`` is the smoothing constant and ``eps`` is added outside the
    square root, which is what the MeDQN MinAtar settings (alpha 0.95, eps 0.01, centered) assume.
    ``adjustable_lr`` keeps the learning rate in the optimizer state (``optax.inject_hyperparams``),
    so ``set_learning_rate`` can change it between updates without recompiling (QDagger's tied lr).
    """
    eps = opt_cfg["eps"] if opt_cfg["eps"] is not None else 1e-8
    if opt_cfg["name"] == "adamw_unscaled":
        make = optax.inject_hyperparams(adam_unscaled_decay) if adjustable_lr else adam_unscaled_decay
        base = make(opt_cfg["lr"], b1=opt_cfg["b1"], b2=opt_cfg["b2"], eps=eps, weight_decay=opt_cfg["weight_decay"])
    elif opt_cfg["name"] == "adam":
        make = optax.inject_hyperparams(optax.adam) if adjustable_lr else optax.adam
        base = make(opt_cfg["lr"], b1=opt_cfg["b1"], b2=opt_cfg["b2"], eps=eps)
    else:
        make = (
            optax.inject_hyperparams(optax.rmsprop, static_args=("centered", "eps_in_sqrt"))
            if adjustable_lr
            else optax.rmsprop
        )
        base = make(opt_cfg["lr"], decay=opt_cfg["alpha"], eps=eps, centered=opt_cfg["centered"], eps_in_sqrt=False)
    if opt_cfg["max_grad_norm"] > 0:
        return optax.chain(optax.clip_by_global_norm(opt_cfg["max_grad_norm"]), base)
    return base


def _is_injected(node: Any) -> bool:
    return isinstance(node, optax.InjectStatefulHyperparamsState)


def set_learning_rate(opt_state: Any, lr: jax.Array | float) -> Any:
    """The optimizer state with its learning rate replaced (needs ``adjustable_lr``); ``lr`` may be per seed."""
    found = []

    def replace(node: Any) -> Any:
        if not _is_injected(node):
            return node
        found.append(node)
        old = node.hyperparams["learning_rate"]
        return node._replace(
            hyperparams={**node.hyperparams, "learning_rate": jnp.broadcast_to(lr, old.shape).astype(old.dtype)}
        )

    opt_state = jax.tree.map(replace, opt_state, is_leaf=_is_injected)
    if not found:
        raise ValueError("this optimizer keeps a fixed learning rate; build it with adjustable_lr=True")
    return opt_state


def learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate held in an adjustable optimizer's state."""
    nodes = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_injected) if _is_injected(n)]
    if not nodes:
        raise ValueError("this optimizer keeps a fixed learning rate")
    return nodes[0].hyperparams["learning_rate"]
