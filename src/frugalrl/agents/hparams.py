"""Per-lane hyperparameters: the vmappable values a program takes as data instead of constants.

A packed program (``train/packed.py``) runs several configs of one sweep that differ only in
keys the schema marks ``vmappable``; their lanes sit side by side on the seed axis and each lane
reads its config's values from a ``LaneHParams``. A packable config run alone carries its own
(``train/flat.py``), so the configs of one program compile to the same programs alone too.
Differences such as ``lambda_end - lambda_start`` are taken on the host in float64 and stored as
float32, exactly the constants a program folds in otherwise, so a lane computes what the same
config computes with constants. A config that cannot be packed carries ``()`` and its programs
hold the constants.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

PACKED_KEYS = (
    "optimizer/lr",
    "agent/epsilon_start",
    "agent/epsilon_end",
    "agent/softmax_temperature",
    "consolidation/lambda_start",
    "consolidation/lambda_end",
)


class LaneHParams(NamedTuple):
    """[lanes] float32 each."""

    lr: jax.Array
    epsilon_start: jax.Array
    epsilon_delta: jax.Array  # epsilon_end - epsilon_start
    softmax_temperature: jax.Array
    lambda_start: jax.Array
    lambda_delta: jax.Array  # lambda_end - lambda_start


def lane_hparams(cfgs: list[dict[str, Any]], lanes_per_config: int) -> LaneHParams:
    """The per-lane values of ``cfgs``' lanes, config after config, ``lanes_per_config`` each."""

    def per_lane(value: Any) -> np.ndarray:
        values = np.repeat(np.array([value(cfg) for cfg in cfgs], np.float64), lanes_per_config)
        return values.astype(np.float32)

    return LaneHParams(
        lr=per_lane(lambda c: c["optimizer"]["lr"]),
        epsilon_start=per_lane(lambda c: c["agent"]["epsilon_start"]),
        epsilon_delta=per_lane(lambda c: c["agent"]["epsilon_end"] - c["agent"]["epsilon_start"]),
        softmax_temperature=per_lane(lambda c: c["agent"]["softmax_temperature"]),
        lambda_start=per_lane(lambda c: c["consolidation"]["lambda_start"]),
        lambda_delta=per_lane(lambda c: c["consolidation"]["lambda_end"] - c["consolidation"]["lambda_start"]),
    )


__all__ = ["PACKED_KEYS", "LaneHParams", "lane_hparams"]
