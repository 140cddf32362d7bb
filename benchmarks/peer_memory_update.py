"""The PyTorch peer of benchmarks/memory_tmaze.py: one recurrent double-DQN update as Memory-RL does it.

The same model and update, written for torch: per-part Linear+ReLU embedders of (previous action,
observation), an LSTM-128 or a 1-layer 1-head pre-LayerNorm GPT of width 128 with dropout 0.1, an
MLP(256, 256) Q head; a batch of 64 random Passive T-Maze L=50 episodes (52 tokens); an online pass
with gradients, a no-grad online pass for the argmax and a no-grad target pass (as the original), a
masked MSE, Adam 3e-4 and a Polyak target update. Prints a JSON line with the median seconds per update.

    .venv-bench/bin/python benchmarks/peer_memory_update.py --model lstm --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time

import torch
from torch import nn

T, BATCH, ACTIONS, OBS = 51, 64, 4, 2


class Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, W]
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        length = x.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        weights = self.drop(torch.softmax(scores.masked_fill(~mask, -1e4), dim=-1))
        x = x + self.drop(self.proj(weights @ v))
        return x + self.drop(self.mlp(self.ln2(x)))


class Critic(nn.Module):
    def __init__(self, model: str) -> None:
        super().__init__()
        action_embed, obs_embed = (16, 32) if model == "lstm" else (64, 64)
        width = action_embed + obs_embed
        self.action_embed = nn.Sequential(nn.Linear(ACTIONS, action_embed), nn.ReLU())
        self.obs_embed = nn.Sequential(nn.Linear(OBS, obs_embed), nn.ReLU())
        self.model = model
        if model == "lstm":
            self.core = nn.LSTM(width, 128)
            hidden = 128
        else:
            self.core = Block(width, 0.1)
            self.ln = nn.LayerNorm(width)
            self.drop = nn.Dropout(0.1)
            position = torch.arange(T + 1).unsqueeze(1)
            rate = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
            table = torch.zeros(T + 1, width)
            table[:, 0::2], table[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
            self.register_buffer("positions", table)
            hidden = width
        self.head = nn.Sequential(
            nn.Linear(hidden, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, ACTIONS)
        )

    def forward(self, prev_action: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:  # time-major [L, B, ·]
        x = torch.cat([self.action_embed(prev_action), self.obs_embed(obs)], dim=-1)
        if self.model == "lstm":
            h, _ = self.core(x)
        else:
            h = self.ln(self.core(self.drop(x.transpose(0, 1) + self.positions[: x.shape[0]]))).transpose(0, 1)
        return self.head(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("lstm", "gpt"), default="lstm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    critic = Critic(args.model)
    target = copy.deepcopy(critic)
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-4)
    obs = torch.randn(T + 1, BATCH, OBS)
    actions = torch.randint(0, ACTIONS, (T, BATCH))
    prev_action = torch.cat([torch.zeros(1, BATCH, ACTIONS), nn.functional.one_hot(actions, ACTIONS).float()])
    rewards, dones = torch.randn(T, BATCH, 1), torch.zeros(T, BATCH, 1)
    dones[-1] = 1.0
    masks = torch.ones(T, BATCH, 1)

    def update() -> None:
        q = critic(prev_action, obs)
        q_taken = q[:-1].gather(-1, actions.unsqueeze(-1))
        with torch.no_grad():
            best = critic(prev_action, obs)[1:].argmax(-1, keepdim=True)
            next_q = target(prev_action, obs)[1:].gather(-1, best)
            y = rewards + 0.99 * (1 - dones) * next_q
        loss = ((q_taken - y) ** 2 * masks).sum() / masks.sum().clamp(min=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for t, p in zip(target.parameters(), critic.parameters(), strict=True):
                t.mul_(0.995).add_(0.005 * p)

    update()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.updates):
            update()
        times.append((time.perf_counter() - start) / args.updates)
    print(json.dumps({"model": args.model, "seconds_per_update": statistics.median(times)}))


if __name__ == "__main__":
    main()
