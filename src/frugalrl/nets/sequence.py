"""Sequence torsos of memory agents (Ni et al. 2023): token embedders, LSTM, GPT-2, a Markov control.

At step ``t`` the sequence model reads one token built from (previous action, previous reward,
observation ``o_t``), each through its own ``Dense + ReLU`` embedder (size 0 drops the part) and
concatenated in that order; at ``t = 0`` the previous action (index -1: a zero one-hot) and reward
are zero. Training runs a whole sequence from a zero state (``__call__``); acting advances one token
at a time (``step``) with a carried memory: the LSTM's ``(c, h)`` or the transformer's key/value
cache. Both paths share parameters and give the same outputs (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from frugalrl.nets import _uniform_fan_in_bias, conv_layer

SEQUENCE_MODELS = ("lstm", "gpt", "markov")
POSITION_ENCODINGS = ("sine", "learned")
OBS_ENCODERS = ("mlp", "cnn")
GPT_INIT = nn.initializers.normal(0.02)


def _torch_dense(features: int, fan_in: int) -> nn.Dense:
    """PyTorch's default Linear init: weights and biases U(±1/sqrt(fan_in))."""
    return nn.Dense(
        features,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=_uniform_fan_in_bias(fan_in),
    )


class ImageEncoder(nn.Module):
    """Memory-RL's small CNN: /255, conv 8 k2, conv 16 k2 (ReLU), flatten, linear ``features``."""

    features: int = 100

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.astype(jnp.float32) / 255.0
        channels = x.shape[-1]
        x = nn.relu(conv_layer(8, 2, 1, channels, "torch_default")(x))
        x = nn.relu(conv_layer(16, 2, 1, 8, "torch_default")(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        return _torch_dense(self.features, x.shape[-1])(x)


class TokenEmbedder(nn.Module):
    """(previous action, previous reward, observation) -> one token per step."""

    num_actions: int
    action_embed: int
    reward_embed: int
    obs_embed: int
    obs_encoder: str = "mlp"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array, prev_action: jax.Array, prev_reward: jax.Array) -> jax.Array:
        parts = []
        if self.action_embed:
            one_hot = jax.nn.one_hot(prev_action, self.num_actions)  # index -1 -> zeros
            parts.append(nn.relu(_torch_dense(self.action_embed, self.num_actions)(one_hot)))
        if self.reward_embed:
            parts.append(nn.relu(_torch_dense(self.reward_embed, 1)(prev_reward[..., None])))
        if self.obs_encoder == "cnn":
            parts.append(ImageEncoder(self.obs_embed)(obs))
        else:
            flat = obs.astype(jnp.float32).reshape(obs.shape[: obs.ndim - self.obs_ndim] + (-1,))
            parts.append(nn.relu(_torch_dense(self.obs_embed, flat.shape[-1])(flat)))
        return jnp.concatenate(parts, axis=-1)


class LSTMLayer(nn.Module):
    """One ``torch.nn.LSTM`` layer in PyTorch's layout, run over a time-major sequence.

    Memory-RL initialises each stacked ``[4h, in]`` gate matrix (gates i, f, g, o) orthogonally as
    one matrix and both biases ``b_ih`` and ``b_hh`` to zero; per-gate orthogonal blocks (Flax's
    cells) would start every gate at twice the scale, and one bias would learn at half the rate.
    Both projections stay inside the recurrence: hoisting the input projection of the whole sequence
    out of the scan (as cuDNN does) made forward + backward 1.9x slower on XLA's CPU backend.
    """

    features: int

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], xs: jax.Array) -> tuple[Any, jax.Array]:
        width = 4 * self.features
        w_ih = self.param("w_ih", nn.initializers.orthogonal(), (xs.shape[-1], width))
        w_hh = self.param("w_hh", nn.initializers.orthogonal(), (self.features, width))
        b_ih = self.param("b_ih", nn.initializers.zeros, (width,))
        b_hh = self.param("b_hh", nn.initializers.zeros, (width,))
        bias = b_ih + b_hh

        def step(state: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[Any, jax.Array]:
            c, h = state
            i, f, g, o = jnp.split(x @ w_ih + h @ w_hh + bias, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        return jax.lax.scan(step, carry, xs)


class LSTMCore(nn.Module):
    """One or more LSTM layers (PyTorch layout, orthogonal weights, zero biases) from a zero state."""

    hidden: int = 128
    layers: int = 1

    def setup(self) -> None:
        self.cells = [LSTMLayer(self.hidden, name=f"lstm_{i}") for i in range(self.layers)]

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        for cell in self.cells:
            zeros = jnp.zeros(x.shape[1:-1] + (self.hidden,), x.dtype)
            _, x = cell((zeros, zeros), x)
        return x

    def step(self, memory: Any, x: jax.Array, deterministic: bool = True) -> tuple[Any, jax.Array]:
        new = []
        for cell, state in zip(self.cells, memory, strict=True):
            state, out = cell(state, x[None])
            new.append(state)
            x = out[0]
        return tuple(new), x


def sine_positions(length: int, width: int) -> jax.Array:
    """The sinusoidal position table [length, width] of 'Attention is all you need'."""
    position = jnp.arange(length, dtype=jnp.float32)[:, None]
    rate = jnp.exp(jnp.arange(0, width, 2, dtype=jnp.float32) * (-math.log(10000.0) / width))
    table = jnp.zeros((length, width), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(position * rate))
    return table.at[:, 1::2].set(jnp.cos(position * rate[: width // 2]))


def gelu_new(x: jax.Array) -> jax.Array:
    """GPT-2's tanh approximation of GELU."""
    return nn.gelu(x, approximate=True)


class GPTBlock(nn.Module):
    """A pre-LayerNorm GPT-2 block: causal self-attention and a 4x MLP, each with a residual."""

    width: int
    heads: int
    dropout: float

    def setup(self) -> None:
        self.ln_attention = nn.LayerNorm(epsilon=1e-5)
        self.qkv = nn.Dense(3 * self.width, kernel_init=GPT_INIT)
        self.attention_out = nn.Dense(self.width, kernel_init=GPT_INIT)
        self.ln_mlp = nn.LayerNorm(epsilon=1e-5)
        self.mlp_in = nn.Dense(4 * self.width, kernel_init=GPT_INIT)
        self.mlp_out = nn.Dense(self.width, kernel_init=GPT_INIT)
        self.drop = nn.Dropout(self.dropout)

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[:-1] + (self.heads, self.width // self.heads))

    def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        """q [..., Tq, h, d], k/v [..., Tk, h, d], mask [Tq, Tk] -> [..., Tq, width]."""
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1])
        scores = jnp.where(mask, scores, -1e4)  # GPT-2's masking value
        weights = self.drop(jax.nn.softmax(scores, axis=-1), deterministic=deterministic)
        out = jnp.einsum("...hqk,...khd->...qhd", weights, v)
        return out.reshape(out.shape[:-2] + (self.width,))

    def _mlp(self, x: jax.Array, deterministic: bool) -> jax.Array:
        h = self.mlp_out(gelu_new(self.mlp_in(self.ln_mlp(x))))
        return x + self.drop(h, deterministic=deterministic)

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """x [..., T, width], causal."""
        q, k, v = jnp.split(self.qkv(self.ln_attention(x)), 3, axis=-1)
        length = x.shape[-2]
        mask = jnp.tril(jnp.ones((length, length), bool))
        h = self.attention_out(self._attend(self._heads(q), self._heads(k), self._heads(v), mask, deterministic))
        return self._mlp(x + self.drop(h, deterministic=deterministic), deterministic)

    def step(self, cache: tuple[jax.Array, jax.Array], t: jax.Array, x: jax.Array, deterministic: bool = True) -> Any:
        """One token x [width] at position t, attending over the cached keys/values [Tmax, width]."""
        q, k, v = jnp.split(self.qkv(self.ln_attention(x)), 3, axis=-1)
        keys = jax.lax.dynamic_update_slice(cache[0], k[None], (t, 0))
        values = jax.lax.dynamic_update_slice(cache[1], v[None], (t, 0))
        mask = (jnp.arange(keys.shape[0]) <= t)[None, :]
        attended = self._attend(self._heads(q[None]), self._heads(keys), self._heads(values), mask, deterministic)
        x = x + self.drop(self.attention_out(attended[0]), deterministic=deterministic)
        return (keys, values), self._mlp(x, deterministic)


class GPTMemory(NamedTuple):
    keys: jax.Array  # [layers, Tmax, width]
    values: jax.Array  # [layers, Tmax, width]
    t: jax.Array  # position of the next token


class GPTCore(nn.Module):
    """GPT-2 without token tables: positions added to the tokens, dropout, blocks, final LayerNorm."""

    width: int
    layers: int = 1
    heads: int = 1
    dropout: float = 0.1
    position_encoding: str = "sine"
    max_length: int = 1024

    def setup(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"GPT width {self.width} must be divisible by its {self.heads} heads")
        if self.position_encoding == "learned":
            # a torch nn.Embedding outside GPT-2's own init: N(0, 1)
            self.positions = self.param("positions", nn.initializers.normal(1.0), (self.max_length, self.width))
        else:
            self.positions = sine_positions(self.max_length, self.width)
        self.blocks = [GPTBlock(self.width, self.heads, self.dropout) for _ in range(self.layers)]
        self.drop = nn.Dropout(self.dropout)
        self.ln_final = nn.LayerNorm(epsilon=1e-5)

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        length = x.shape[-2]
        if length > self.max_length:
            raise ValueError(f"a sequence of {length} tokens is longer than the GPT's {self.max_length} positions")
        x = self.drop(x + self.positions[:length], deterministic=deterministic)
        for block in self.blocks:
            x = block(x, deterministic)
        return self.ln_final(x)

    def step(self, memory: GPTMemory, x: jax.Array, deterministic: bool = True) -> tuple[GPTMemory, jax.Array]:
        t = jnp.minimum(memory.t, self.max_length - 1)  # the config refuses windows shorter than an episode
        x = self.drop(x + self.positions[t], deterministic=deterministic)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            (k, v), x = block.step((memory.keys[i], memory.values[i]), t, x, deterministic)
            keys.append(k)
            values.append(v)
        return GPTMemory(jnp.stack(keys), jnp.stack(values), memory.t + 1), self.ln_final(x)


class MarkovCore(nn.Module):
    """No memory: the token itself is the state (the memoryless control)."""

    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        return x

    def step(self, memory: Any, x: jax.Array, deterministic: bool = True) -> tuple[Any, jax.Array]:
        return memory, x


def _rlkit_hidden_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    # rlkit's fanin_init reads size[0] of torch's (out, in) weight: the bound is 1/sqrt(out)
    bound = 1.0 / math.sqrt(shape[1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _uniform(bound: float) -> Callable[..., jax.Array]:
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class RlkitHead(nn.Module):
    """Memory-RL's MLP head: ReLU hidden layers (rlkit init, biases 0.1), last layer U(±last_init)."""

    hidden: Sequence[int]
    out: int
    last_init: float = 3e-3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=_rlkit_hidden_init, bias_init=nn.initializers.constant(0.1))(x))
        return nn.Dense(self.out, kernel_init=_uniform(self.last_init), bias_init=_uniform(self.last_init))(x)


class SequenceNetwork(nn.Module):
    """Token embedder + sequence core + MLP head: outputs [..., T, out] for a whole sequence.

    ``__call__`` takes observations [T, *obs], previous actions [T] (-1 at the start) and previous
    rewards [T]; ``step`` takes one of each and the carried memory.
    """

    embedder: TokenEmbedder
    core: nn.Module
    head: RlkitHead

    def __call__(
        self, obs: jax.Array, prev_action: jax.Array, prev_reward: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        return self.head(self.core(self.embedder(obs, prev_action, prev_reward), deterministic))

    def hidden(
        self, obs: jax.Array, prev_action: jax.Array, prev_reward: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        return self.core(self.embedder(obs, prev_action, prev_reward), deterministic)

    def step(
        self, memory: Any, obs: jax.Array, prev_action: jax.Array, prev_reward: jax.Array, deterministic: bool = True
    ) -> tuple[Any, jax.Array]:
        memory, h = self.core.step(memory, self.embedder(obs, prev_action, prev_reward), deterministic)
        return memory, self.head(h)


def token_width(seq_cfg: dict[str, Any]) -> int:
    return seq_cfg["action_embed"] + seq_cfg["reward_embed"] + seq_cfg["obs_embed"]


def make_sequence_network(
    seq_cfg: dict[str, Any], obs_shape: tuple[int, ...], num_actions: int, out: int, max_length: int
) -> SequenceNetwork:
    """The network of the config's ``sequence`` section; ``max_length`` = tokens per training sequence."""
    embedder = TokenEmbedder(
        num_actions,
        seq_cfg["action_embed"],
        seq_cfg["reward_embed"],
        seq_cfg["obs_embed"],
        seq_cfg["obs_encoder"],
        len(obs_shape),
    )
    model = seq_cfg["model"]
    if model == "lstm":
        core: nn.Module = LSTMCore(seq_cfg["hidden"], seq_cfg["layers"])
    elif model == "gpt":  # its width is the token's: GPT-2's n_embd = the concatenated embeddings
        core = GPTCore(
            token_width(seq_cfg),
            seq_cfg["layers"],
            seq_cfg["heads"],
            seq_cfg["dropout"],
            seq_cfg["position_encoding"],
            max_length,
        )
    else:
        core = MarkovCore()
    return SequenceNetwork(embedder, core, RlkitHead(tuple(seq_cfg["head_hidden"]), out))


def initial_memory(seq_cfg: dict[str, Any], max_length: int) -> Any:
    """The zero memory an episode starts from (one seed, unbatched)."""
    model = seq_cfg["model"]
    if model == "lstm":
        zeros = jnp.zeros((seq_cfg["hidden"],), jnp.float32)
        return tuple((zeros, zeros) for _ in range(seq_cfg["layers"]))
    if model == "gpt":
        shape = (seq_cfg["layers"], max_length, token_width(seq_cfg))
        return GPTMemory(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.asarray(0, jnp.int32))
    return jnp.zeros((), jnp.float32)


__all__ = [
    "GPTCore",
    "GPTMemory",
    "LSTMCore",
    "LSTMLayer",
    "MarkovCore",
    "OBS_ENCODERS",
    "POSITION_ENCODINGS",
    "SEQUENCE_MODELS",
    "SequenceNetwork",
    "TokenEmbedder",
    "initial_memory",
    "make_sequence_network",
    "sine_positions",
    "token_width",
]
