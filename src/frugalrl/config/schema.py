"""Every config key: its default, its type and its check.

A run is fully described by one resolved config (DESIGN principle 1). ``resolve`` fills defaults
and raises ``ConfigError`` with one line naming the key for anything unknown, mistyped or
impossible.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from frugalrl.config.grid import flatten
from frugalrl.errors import ConfigError

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Field:
    """One config key: default, accepted type, allowed choices, extra check, documentation."""

    default: Any
    kind: type | tuple[type, ...]
    doc: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    nullable: bool = False
    item_kind: type | None = None  # for lists
    extra: dict[str, Any] = field(default_factory=dict)
    # a number that enters the program as data, so configs differing in it can share one program
    # (hyperparameter packing); the function gives the part of a value that still shapes the
    # program (``lambda v: v > 0`` where 0 switches a loss off), or None where nothing does
    vmappable: Callable[[Any], Any] | None = None


def any_value(value: Any) -> None:
    """For ``Field.vmappable``: every value of the key runs in the same program."""
    return None


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def unit_interval(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def open_unit_interval(value: Any) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


def minus_one_or_positive(value: Any) -> str | None:
    return None if value == -1 or value > 0 else "must be -1 (off) or > 0"


def positive_list(value: Any) -> str | None:
    return None if value and all(v > 0 for v in value) else "must be a non-empty list of positive ints"


SCHEMA: dict[str, Any] = {
    "seed": Field(0, int, "base seed; per-seed keys fold in the run index and the seed lane", check=non_negative),
    "generate_random_seed": Field(False, bool, "draw the seed at random when the run starts (recorded in config.json)"),
    "num_seeds": Field(1, int, "independent seeds trained together in one vmapped program", check=positive),
    "total_steps": Field(100_000, int, "environment steps per seed", check=positive),
    "env": {
        "name": Field("CartPole-v1", str, "registered environment id (frugal envs lists them)"),
        "max_episode_steps": Field(-1, int, "time limit; -1 keeps the environment's own", check=minus_one_or_positive),
        "params": Field({}, dict, "overrides of the environment's parameters"),
    },
    "network": {
        "name": Field("mlp", str, "Q-network torso", choices=("mlp", "minatar_cnn", "nature_cnn", "impala_cnn")),
        "conv_padding": Field(
            "valid", str, "nature_cnn's conv padding: valid (the paper) or same (Dopamine)", choices=("valid", "same")
        ),
        "input_scale": Field(
            1.0, float, "observations are multiplied by this first (1/255 for Atari frames)", check=positive
        ),
        "hidden": Field(
            [120, 84], list, "hidden layer sizes of the MLP / CNN head", item_kind=int, check=positive_list
        ),
        "activation": Field("relu", str, "hidden activation", choices=("relu", "tanh", "elu", "gelu")),
        "init": Field(
            "lecun_normal",
            str,
            "dense-layer weight init",
            choices=("lecun_normal", "kaiming_uniform", "xavier_uniform", "haiku_default"),
        ),
        "conv_init": Field(
            "lecun_normal",
            str,
            "conv-layer init; torch_default = PyTorch's Conv2d default (as Explorer and Tianshou)",
            choices=("lecun_normal", "torch_default"),
        ),
    },
    "agent": {
        "name": Field(
            "dqn",
            str,
            "agent: 'dqn' learns from transitions; 'recurrent_dqn' / 'sacd' from whole episodes with a 'sequence' "
            "torso; 'sac' / 'ddpg' for continuous actions in [-1, 1]",
            choices=("dqn", "recurrent_dqn", "sacd", "sac", "ddpg"),
        ),
        "gamma": Field(0.99, float, "discount", check=unit_interval),
        "n_step": Field(1, int, "n-step returns (cut at episode ends)", check=positive),
        "double": Field(False, bool, "double DQN target (online argmax, target value)"),
        "atoms": Field(
            0, int, "C51: atoms of the categorical return distribution; 0 = plain Q-values", check=non_negative
        ),
        "v_min": Field(-10.0, float, "C51: lowest support point"),
        "v_max": Field(10.0, float, "C51: highest support point"),
        "loss": Field("mse", str, "TD loss", choices=("mse", "huber")),
        "huber_delta": Field(1.0, float, "Huber threshold", check=positive),
        "target_every": Field(500, int, "target update period", check=positive),
        "target_unit": Field("env_steps", str, "unit of target_every", choices=("env_steps", "grad_steps")),
        "tau": Field(
            1.0,
            float,
            "target update rate: 1 = hard copy, < 1 = Polyak averaging",
            check=open_unit_interval,
        ),
        "epsilon_start": Field(1.0, float, "exploration epsilon at step 0", check=unit_interval, vmappable=any_value),
        "epsilon_end": Field(0.05, float, "final exploration epsilon", check=unit_interval, vmappable=any_value),
        "epsilon_decay_steps": Field(
            250_000, int, "env steps of the linear epsilon decay, counted from step 0", check=non_negative
        ),
        "bootstrap_truncation": Field(
            True, bool, "bootstrap through time-limit truncation (False treats it as terminal, as Explorer did)"
        ),
        "exploration": Field(
            "epsilon",
            str,
            "exploring policy: epsilon-greedy, or softmax (Boltzmann on Q / softmax_temperature; epsilon still "
            "mixes in uniform actions, so set it to 0 for pure softmax)",
            choices=("epsilon", "softmax"),
        ),
        "softmax_temperature": Field(
            1.0, float, "softmax exploration's temperature", check=positive, vmappable=any_value
        ),
    },
    "optimizer": {
        "name": Field(
            "adam",
            str,
            "optimizer; adamw_unscaled = Adam, then params shrink by weight_decay (the model-generalization code)",
            choices=("adam", "adamw_unscaled", "rmsprop"),
        ),
        "lr": Field(2.5e-4, float, "learning rate", check=positive, vmappable=any_value),
        "eps": Field(None, float, "epsilon; default 1e-8 (adam) / 1e-8 (rmsprop)", nullable=True, check=positive),
        "b1": Field(0.9, float, "Adam beta1", check=unit_interval),
        "b2": Field(0.999, float, "Adam beta2", check=unit_interval),
        "alpha": Field(0.99, float, "RMSprop smoothing constant (torch's alpha)", check=unit_interval),
        "centered": Field(False, bool, "centered RMSprop"),
        "max_grad_norm": Field(-1.0, float, "global-norm gradient clip; -1 = off", check=minus_one_or_positive),
        "weight_decay": Field(
            0.0, float, "adamw_unscaled: parameters shrink by this fraction every step", check=non_negative
        ),
    },
    "replay": {
        "capacity": Field(10_000, int, "transitions kept per seed (FIFO)", check=positive),
        "batch_size": Field(128, int, "transitions per gradient step", check=positive),
        "prioritized": Field(False, bool, "sample in proportion to priority (PER, as Dopamine's Rainbow)"),
        "priority_exponent": Field(
            0.5, float, "priority = (loss + 1e-10) ** this (Dopamine: sqrt of the loss)", check=positive
        ),
        "importance_exponent": Field(
            0.5, float, "importance weights (held * P) ** -this, over the batch's largest", check=non_negative
        ),
        "td_batch": Field(
            "sample",
            str,
            "TD batch: 'sample' batch_size transitions with replacement, or 'all' of the buffer (MeDQN(U))",
            choices=("sample", "all"),
        ),
    },
    "train": {
        "learning_starts": Field(10_000, int, "env steps before the first gradient step", check=non_negative),
        "random_steps": Field(0, int, "env steps of uniformly random actions at the start", check=non_negative),
        "train_every": Field(10, int, "env steps between updates", check=positive),
        "gradient_steps": Field(1, int, "TD batches per update (fresh batch each)", check=positive),
        "epochs_per_batch": Field(
            1,
            int,
            "optimizer steps on each TD batch with its targets fixed (MeDQN's consolidation epochs E)",
            check=positive,
        ),
        "priming_updates": Field(
            0,
            int,
            "the primacy-bias test (Nikishin et al. 2022): this many extra updates on the replay as it is at "
            "learning_starts, before the first regular ones",
            check=non_negative,
        ),
        "stale_obs_after_terminal": Field(
            False,
            bool,
            "quirk of the model-generalization code: after a terminal step the agent acts on that step's "
            "observation while the env has already reset, which stores one cross-episode transition per episode",
        ),
        "on_divergence": Field(
            "stop",
            str,
            "a seed whose loss becomes NaN or inf: 'stop' the run (recorded as FAILED), or 'drop' that seed "
            "(recorded in DROPPED; its later returns are written as NaN) and let the other seeds go on",
            choices=("stop", "drop"),
        ),
    },
    "sequence": {
        "model": Field(
            "lstm",
            str,
            "memory agents' sequence model ('markov': none, the memoryless control)",
            choices=("lstm", "gpt", "markov"),
        ),
        "hidden": Field(
            128, int, "LSTM width (a GPT's width is the token's: the sum of the embeddings)", check=positive
        ),
        "layers": Field(1, int, "LSTM layers or GPT blocks", check=positive),
        "heads": Field(1, int, "GPT attention heads", check=positive),
        "dropout": Field(
            0.1,
            float,
            "GPT dropout (embeddings, attention, residuals); on while training and exploring",
            check=unit_interval,
        ),
        "position_encoding": Field("sine", str, "GPT positions", choices=("sine", "learned")),
        "obs_encoder": Field(
            "mlp", str, "observation embedder: Dense+ReLU, or the small CNN for images", choices=("mlp", "cnn")
        ),
        "obs_embed": Field(32, int, "observation embedding size (the CNN's output size)", check=positive),
        "action_embed": Field(16, int, "previous-action embedding size; 0 = not fed", check=non_negative),
        "reward_embed": Field(0, int, "previous-reward embedding size; 0 = not fed", check=non_negative),
        "head_hidden": Field(
            [256, 256], list, "hidden widths of the Q and policy heads", item_kind=int, check=positive_list
        ),
    },
    "sacd": {
        "shared_encoder": Field(False, bool, "SAC-Discrete: one torso for actor and critic (one optimizer)"),
        "freeze_critic": Field(
            False, bool, "shared encoder: the actor loss reads Q from a frozen copy of the Q heads on detached states"
        ),
        "temperature": Field(0.1, float, "entropy temperature alpha (its start value if learned)", check=positive),
        "learn_temperature": Field(False, bool, "tune alpha toward target_entropy_ratio·log|A|"),
        "target_entropy_ratio": Field(0.98, float, "target entropy as a share of log|A|", check=unit_interval),
        "actor_lr": Field(
            None, float, "separate encoders: the actor's lr; null = optimizer/lr", nullable=True, check=positive
        ),
        "temperature_lr": Field(None, float, "lr of log alpha; null = optimizer/lr", nullable=True, check=positive),
    },
    "sac": {
        "critics": Field(2, int, "SAC: critics whose minimum gives the targets and the actor's Q", check=positive),
        "init_temperature": Field(1.0, float, "SAC: alpha at initialisation (and after each reset)", check=positive),
        "learn_temperature": Field(True, bool, "SAC: tune alpha toward target_entropy"),
        "target_entropy": Field(None, float, "SAC: target entropy; null = -|A|/2 (jaxrl's convention)", nullable=True),
        "log_std_min": Field(-10.0, float, "SAC: lower end of the squashed log-std"),
        "log_std_max": Field(2.0, float, "SAC: upper end of the squashed log-std"),
        "backup_entropy": Field(True, bool, "SAC: subtract alpha·log pi(a'|s') in the critic's target"),
        "actor_lr": Field(None, float, "SAC/DDPG: the actor's lr; null = optimizer/lr", nullable=True, check=positive),
        "temperature_lr": Field(
            None, float, "SAC: lr of log alpha; null = optimizer/lr", nullable=True, check=positive
        ),
    },
    "ddpg": {
        "exploration_noise": Field(
            0.2, float, "DDPG: std of the Gaussian noise added to the actor's action while training", check=non_negative
        ),
    },
    "model": {
        "kind": Field(
            "none",
            str,
            "Dyna: the Q-network learns only from model rollouts that start at replayed observations. "
            "'perfect' steps the env's own dynamics; 'observation' learns reward, continuation and next-observation "
            "heads (the paper's simple model); 'latent' learns a latent-space model and Q acts on its latents",
            choices=("none", "perfect", "observation", "latent"),
        ),
        "rollout_length": Field(10, int, "steps per rollout; replay/batch_size rollouts per update", check=positive),
        "lr": Field(2e-4, float, "the model's step size (the optimizer section's other settings)", check=positive),
        "hidden": Field(
            [200, 200, 200], list, "hidden widths of every model network", item_kind=int, check=positive_list
        ),
        "activation": Field("elu", str, "the model networks' activation", choices=("relu", "tanh", "elu", "gelu")),
        "reward_weight": Field(1.0, float, "weight of the reward NLL", check=non_negative),
        "termination_weight": Field(1.0, float, "weight of the continuation NLL", check=non_negative),
        "observation_weight": Field(
            1.0, float, "weight of the next-observation (latent: reconstruction) NLL", check=non_negative
        ),
        "binary_observations": Field(
            True, bool, "observation NLL: Bernoulli per bit (true) or a unit-variance Gaussian per entry"
        ),
        "sample_with_logit": Field(
            False,
            bool,
            "quirk of the original simple model: sample each next-observation bit with P = the logit itself "
            "(clipped to [0, 1]) instead of sigmoid(logit)",
        ),
        "latent": Field("categorical", str, "latent model's latents", choices=("categorical", "gaussian")),
        "latent_variables": Field(32, int, "latent variables (Gaussian: dimensions)", check=positive),
        "latent_classes": Field(32, int, "classes per categorical latent variable", check=positive),
        "kl_prior_weight": Field(0.8, float, "KL balancing: weight of KL(sg posterior || prior)", check=non_negative),
        "kl_posterior_weight": Field(
            0.2, float, "KL balancing: weight of KL(posterior || sg prior)", check=non_negative
        ),
        "posterior_entropy_weight": Field(
            0.0, float, "weight of KL(posterior || N(0, I) or uniform)", check=non_negative
        ),
        "min_std": Field(0.1, float, "Gaussian latents: added to the encoder's standard deviation", check=non_negative),
        "std_activation": Field(
            "sigmoid2", str, "Gaussian latents: std = 2 sigmoid(x / 2) or softplus(x)", choices=("sigmoid2", "softplus")
        ),
    },
    "reset": {
        "every": Field(
            0,
            int,
            "re-initialise the agent (every network, target, temperature and optimizer state; the replay is kept) "
            "every this many gradient updates; 0 = never (SR-SAC: 2,560,000)",
            check=non_negative,
        ),
        "schedule": Field(
            "env_steps",
            str,
            "'env_steps': at env steps that are multiples of every / replay ratio (the paper's rl_with_resets "
            "code); 'eval_steps': at the first evaluation after more than 'every' updates since the last reset "
            "(the parallel repo)",
            choices=("env_steps", "eval_steps"),
        ),
        "key": Field(
            "same",
            str,
            "'same': each seed re-initialises from its own initial key (identical initial parameters, as the "
            "parallel repo); 'fresh': a new key for every reset (as rl_with_resets)",
            choices=("same", "fresh"),
        ),
    },
    "episodic": {
        "train_episodes": Field(
            None,
            int,
            "memory agents: training episodes after the random ones (env steps = (random + train)·T); "
            "null = Memory-RL's budget table for the env and length",
            nullable=True,
            check=positive,
        ),
        "random_episodes": Field(10, int, "uniform-random episodes before learning", check=non_negative),
        "updates_per_step": Field(
            0.25, float, "gradient steps per env step: ceil(this·T) after each episode", check=positive
        ),
        "eval_every": Field(10, int, "training episodes between greedy evaluations", check=positive),
        "epsilon_fraction": Field(
            0.1, float, "epsilon decays linearly over this share of the training env steps", check=unit_interval
        ),
        "epsilon_end": Field(None, float, "final epsilon; null = 1/T", nullable=True, check=unit_interval),
        "min_episodes": Field(
            1000, int, "the episode replay holds max(replay/capacity // (T+1), this) episodes", check=positive
        ),
        "sequence_length": Field(
            0,
            int,
            "steps per training sequence (tokens = steps + 1): 0 = whole episodes; else windows from a zero state",
            check=non_negative,
        ),
    },
    "consolidation": {
        "source": Field(
            "off",
            str,
            "knowledge consolidation (MeDQN): states uniform in the seen observation box (MeDQN(U)), "
            "from the replay (MeDQN(R)), or off",
            choices=("off", "uniform", "replay"),
        ),
        "lambda_start": Field(0.01, float, "consolidation weight at step 0", check=non_negative, vmappable=any_value),
        "lambda_end": Field(
            1.0, float, "consolidation weight at the last step (linear)", check=non_negative, vmappable=any_value
        ),
        "batch_size": Field(
            None, int, "states per optimizer step; null = replay/batch_size", nullable=True, check=positive
        ),
    },
    "teacher": {
        "run": Field(
            None,
            str,
            "run directory of a frugalrl run whose last checkpoint is the teacher (reincarnation); null = none",
            nullable=True,
        ),
        "seed_lane": Field(0, int, "which of the teacher run's vmapped seeds is the teacher", check=non_negative),
        "dataset": Field(
            "replay",
            str,
            "teacher data: the replay buffer saved in its checkpoint, or fresh rollouts of the teacher",
            choices=("replay", "rollout"),
        ),
        "rollout_steps": Field(100_000, int, "env steps of teacher rollouts when dataset = rollout", check=positive),
        "rollout_epsilon_start": Field(
            1.0, float, "rollout epsilon at the first step (linear decay)", check=unit_interval
        ),
        "rollout_epsilon_end": Field(0.01, float, "rollout epsilon at the last step", check=unit_interval),
        "random_score": Field(
            None,
            float,
            "return of uniform random play, for normalised scores; null = measured at the start",
            nullable=True,
        ),
        "init_student": Field(False, bool, "start the student from the teacher's parameters (fine-tuning the teacher)"),
    },
    "distillation": {
        "coefficient": Field(
            0.0,
            float,
            "alpha: weight of the distillation loss (QDagger: 3); 0 = off",
            check=non_negative,
        ),
        "temperature": Field(0.1, float, "tau of softmax(Q / tau) for teacher and student", check=positive),
        "kind": Field(
            "policy",
            str,
            "KL to the teacher's softmax policy, MSE to its Q-values, both, or cross-entropy to its best action",
            choices=("policy", "value", "policy_and_value", "best_action"),
        ),
        "schedule": Field(
            "decay",
            str,
            "lambda: 'decay' = max(1 - normalised score, 0) after each evaluation, sticky at 0, 0 after "
            "decay_period; 'constant' = 1 throughout",
            choices=("decay", "constant"),
        ),
        "decay_period": Field(1_500_000, int, "online env steps after which lambda is 0 (t0)", check=positive),
        "lr_low": Field(
            None,
            float,
            "learning rate at lambda = 0, tied as lambda * optimizer/lr + (1 - lambda) * lr_low; null = constant lr",
            nullable=True,
            check=positive,
        ),
    },
    "rehearsal": {
        "fraction": Field(
            0.0,
            float,
            "share of each online TD batch drawn from the teacher data (rehearsal, DQfD); 0 = off",
            check=unit_interval,
        ),
        "regularizer_decay_period": Field(
            0,
            int,
            "online env steps over which pretraining/regularizer keeps acting on the teacher samples, its weight "
            "decaying linearly to 0 (DQfD); 0 = offline only",
            check=non_negative,
        ),
    },
    "jsrl": {
        "guide_prob": Field(
            0.0,
            float,
            "JSRL: probability that the teacher acts after the roll-in, at step 0; 0 = off",
            check=unit_interval,
        ),
        "decay_period": Field(
            2_500_000, int, "env steps over which that probability decays linearly to 0", check=positive
        ),
        "roll_in_guide": Field(False, bool, "the teacher (rather than the student) acts during each episode's roll-in"),
        "max_roll_in_steps": Field(
            100, int, "roll-in length drawn uniformly in 1..this per episode", check=non_negative
        ),
        "roll_in_decay": Field(
            0.8, float, "max_roll_in_steps is multiplied by this after each evaluation", check=unit_interval
        ),
    },
    "pretraining": {
        "steps": Field(
            0, int, "offline gradient steps on the teacher data before the online phase", check=non_negative
        ),
        "target_every": Field(2_000, int, "gradient steps between target syncs while pretraining", check=positive),
        "eval_every": Field(
            0, int, "gradient steps between evaluations while pretraining; 0 = only at the end", check=non_negative
        ),
        "td": Field(True, bool, "include the TD loss while pretraining (false = pure distillation)"),
        "lr": Field(
            None,
            float,
            "learning rate while pretraining; null = optimizer/lr (e.g. CQL: 1e-4, then 1e-5 online)",
            nullable=True,
            check=positive,
        ),
        "regularizer": Field(
            "none",
            str,
            "offline baseline loss on the teacher data: DQfD's large margin or CQL",
            choices=("none", "large_margin", "cql"),
        ),
        "regularizer_weight": Field(1.0, float, "weight of the regularizer", check=non_negative),
        "margin": Field(1.0, float, "large-margin m: the data's action must lead others by m", check=non_negative),
    },
    "eval": {
        "every": Field(50_000, int, "env steps between greedy evaluations; 0 = only at the end", check=non_negative),
        "episodes": Field(10, int, "evaluation episodes per seed", check=positive),
        "epsilon": Field(0.0, float, "epsilon during evaluation", check=unit_interval),
        "at_start": Field(
            False, bool, "also evaluate at online step 0 (after any pretraining): where a student starts from"
        ),
        "max_episode_steps": Field(
            27_000, int, "evaluation episodes end here if the env's own time limit is longer", check=positive
        ),
        "per_step": Field(
            False,
            bool,
            "report each evaluation's return divided by its step limit (min of eval/max_episode_steps and the "
            "env's): the reward rate of a continuing task",
        ),
    },
    "checkpoint": {
        "every": Field(100_000, int, "env steps between checkpoints; 0 = off", check=non_negative),
        "keep": Field(3, int, "complete checkpoints kept", check=positive),
        "final": Field(
            False, bool, "also checkpoint the last step (the final parameters and replay, e.g. of a teacher)"
        ),
    },
}

# Keys the sweep tooling adds to a decoded config; allowed, never required.
BOOKKEEPING = ("config_idx", "num_combinations", "run", "experiment", "frugalrl_version")


# Names researchers bring from CleanRL, Explorer and Dopamine configs -> our key.
ALIASES = {
    "learning_rate": "optimizer/lr",
    "lr": "optimizer/lr",
    "buffer_size": "replay/capacity",
    "memory_size": "replay/capacity",
    "discount": "agent/gamma",
    "gamma": "agent/gamma",
    "batch_size": "replay/batch_size",
    "train_frequency": "train/train_every",
    "network_update_steps": "train/train_every",
    "update_period": "train/train_every",
    "target_network_frequency": "agent/target_every",
    "target_network_update_steps": "agent/target_every",
    "target_update_period": "agent/target_every",
    "exploration_steps": "train/random_steps",
    "total_timesteps": "total_steps",
    "train_steps": "total_steps",
    "gradient_clip": "optimizer/max_grad_norm",
    "min_replay_history": "train/learning_starts",
    "hidden_layers": "network/hidden",
    "consod_start": "consolidation/lambda_start",
    "consod_end": "consolidation/lambda_end",
    "consod_epoch": "train/epochs_per_batch",
    "consod_batch_size": "consolidation/batch_size",
}


def _all_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in schema.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(_all_paths(value, f"{path}/"))
    return paths


def _did_you_mean(key: str, siblings: list[str], prefix: str) -> str:
    all_paths = _all_paths(SCHEMA)
    if key in ALIASES:
        return f"; did you mean '{ALIASES[key]}'?"
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    # the key may belong to another section, e.g. 'lr' at top level -> 'optimizer/lr'
    elsewhere = [p for p in all_paths if p.rsplit("/", 1)[-1] == key]
    if elsewhere:
        return f"; did you mean '{elsewhere[0]}'?"
    close = difflib.get_close_matches(key, [p.rsplit("/", 1)[-1] for p in all_paths], n=1, cutoff=0.75)
    if close:
        target = next(p for p in all_paths if p.rsplit("/", 1)[-1] == close[0])
        return f"; did you mean '{target}'?"
    return f"; valid keys here: {', '.join(siblings)}"


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
        list: "a list",
        dict: "an object",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# Step counters, sizes and the like are 32-bit on the device; a seed is folded into a 32-bit key
# (2**32 would give seed 0's key again).
INT_LIMIT = 2**31 - 1
SEED_LIMIT = 2**32 - 1


def _integer(path: str, value: Any, limit: int, what: str = "an integer") -> int:
    """An int (integral floats accepted, booleans refused) within +-limit."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config key '{path}' must be {what}, got {value!r}")
    if abs(value) > limit:
        reason = "seeds are folded into 32-bit keys" if limit == SEED_LIMIT else "counters and sizes are 32-bit"
        raise ConfigError(f"config key '{path}' must be at most {limit:,} ({reason}), got {value:,}")
    return value


def _number(path: str, value: Any) -> float:
    """A finite float (ints accepted, booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise ConfigError(
            f"config key '{path}' must be a finite number, got an integer of {value.bit_length()} bits"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"config key '{path}' must be a finite number, got {value}")
    return value


def _coerce(path: str, spec: Field, value: Any) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"config key '{path}' must be {_type_name(spec.kind)}, got null")
    if spec.kind is int:  # JSON writes 1e6 as a float: integral floats are accepted
        value = _integer(path, value, SEED_LIMIT if path == "seed" else INT_LIMIT)
    elif spec.kind is float:
        value = _number(path, value)
    elif spec.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
    elif not isinstance(value, spec.kind):
        hint = " (in a grid file a list value is a list of alternatives: write [[...]])" if spec.kind is list else ""
        raise ConfigError(f"config key '{path}' must be {_type_name(spec.kind)}, got {value!r}{hint}")
    if spec.item_kind is not None:
        if spec.item_kind is not int:  # the schema's lists hold ints only
            raise AssertionError(f"unsupported list item kind of '{path}'")
        value = [_integer(path, item, INT_LIMIT, "a list of integers") for item in value]
    if spec.choices is not None and value not in spec.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"config key '{path}' must be one of {', '.join(map(str, spec.choices))}, got {value!r}{hint}"
        )
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(f"config key '{path}' {problem}, got {value!r}")
    return value


def _resolve_section(schema: dict[str, Any], raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in raw:
        if key not in schema and not (prefix == "" and key in BOOKKEEPING):
            raise ConfigError(f"unknown config key '{prefix}{key}'{_did_you_mean(key, list(schema), prefix)}")
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, dict):
            value = raw.get(key, {})
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key '{path}' must be an object of its own keys ({', '.join(spec)}), got {value!r}"
                )
            out[key] = _resolve_section(spec, value, f"{path}/")
        else:
            out[key] = _coerce(path, spec, copy.deepcopy(raw[key]) if key in raw else copy.deepcopy(spec.default))
    if prefix == "":
        for key in BOOKKEEPING:
            if key in raw:
                out[key] = raw[key]
    return out


def first_learning_block(cfg: dict[str, Any]) -> int:
    """Env step at which the first learning block starts: blocks starting at >= learning_starts learn.

    With CleanRL's settings (learning_starts 10k, train_every 10, 500k steps) this gives exactly
    its 49,000 updates.
    """
    k = cfg["train"]["train_every"]
    return -(-cfg["train"]["learning_starts"] // k) * k


EPISODIC_AGENTS = ("recurrent_dqn", "sacd")  # agents that learn from whole episodes (train/episodic.py)
CONTINUOUS_AGENTS = ("sac", "ddpg")  # actor-critic agents for continuous actions in [-1, 1]


def plain_td_extras(cfg: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    """(key, in use) for the value-agent extras that agents with their own update (SAC, DDPG, Dyna) refuse."""
    return (
        ("agent/n_step", cfg["agent"]["n_step"] != 1),
        ("agent/atoms", cfg["agent"]["atoms"] > 0),
        ("replay/prioritized", cfg["replay"]["prioritized"]),
        ("replay/td_batch", cfg["replay"]["td_batch"] != "sample"),
        ("train/epochs_per_batch", cfg["train"]["epochs_per_batch"] != 1),
        ("consolidation/source", cfg["consolidation"]["source"] != "off"),
        ("distillation/coefficient", cfg["distillation"]["coefficient"] > 0),
        ("teacher/run", cfg["teacher"]["run"] is not None),
        ("jsrl/guide_prob", cfg["jsrl"]["guide_prob"] > 0 or cfg["jsrl"]["roll_in_guide"]),
        ("pretraining/steps", cfg["pretraining"]["steps"] > 0),
    )


def _continuous_checks(cfg: dict[str, Any]) -> None:
    """SAC and DDPG: a Polyak target, an MLP, one-step targets, and none of the value-agent extras."""
    name = cfg["agent"]["name"]
    if cfg["agent"]["tau"] >= 1.0:
        raise ConfigError(
            f"config key 'agent/tau' must be < 1 for {name}: its targets take a Polyak step after every update "
            "(the paper: 0.005)"
        )
    if cfg["network"]["name"] != "mlp":
        raise ConfigError(f"config key 'network/name' must be 'mlp' for {name} (state observations)")
    unsupported = plain_td_extras(cfg)
    if cfg["sac"]["log_std_min"] >= cfg["sac"]["log_std_max"]:
        raise ConfigError(
            f"config key 'sac/log_std_min' ({cfg['sac']['log_std_min']}) must be below 'sac/log_std_max' "
            f"({cfg['sac']['log_std_max']})"
        )
    for path, bad in unsupported:
        if bad:
            raise ConfigError(
                f"config key '{path}' is not supported with 'agent/name': '{name}'; leave it at its default"
            )


def reset_period_env_steps(cfg: dict[str, Any]) -> int:
    """Env steps between resets on the 'env_steps' schedule: every / (gradient_steps / train_every)."""
    train = cfg["train"]
    return cfg["reset"]["every"] // train["gradient_steps"] * train["train_every"]


def _reset_checks(cfg: dict[str, Any]) -> None:
    reset, train = cfg["reset"], cfg["train"]
    if not reset["every"]:
        return
    if cfg["agent"]["name"] in EPISODIC_AGENTS:
        raise ConfigError("config key 'reset/every': resets are not available for the memory agents yet")
    if reset["every"] % train["gradient_steps"]:
        raise ConfigError(
            f"config key 'reset/every' ({reset['every']}) must be a multiple of 'train/gradient_steps' "
            f"({train['gradient_steps']}): resets fall between updates"
        )
    if reset["schedule"] == "eval_steps" and cfg["eval"]["every"] == 0:
        raise ConfigError("config key 'reset/schedule' 'eval_steps' checks for resets at evaluations: set 'eval/every'")


def _episodic_checks(cfg: dict[str, Any]) -> None:
    """Memory agents learn from whole episodes; the transition-based parts do not apply to them yet."""
    unsupported = [
        ("consolidation/source", cfg["consolidation"]["source"] != "off"),
        ("distillation/coefficient", cfg["distillation"]["coefficient"] > 0),
        ("teacher/run", cfg["teacher"]["run"] is not None),
        ("pretraining/steps", cfg["pretraining"]["steps"] > 0),
        ("rehearsal/fraction", cfg["rehearsal"]["fraction"] > 0),
        ("replay/prioritized", cfg["replay"]["prioritized"]),
        ("agent/n_step", cfg["agent"]["n_step"] != 1),
        ("agent/atoms", cfg["agent"]["atoms"] > 0),
        ("jsrl/guide_prob", cfg["jsrl"]["guide_prob"] > 0),
        ("train/priming_updates", cfg["train"]["priming_updates"] > 0),
    ]
    for key, used in unsupported:
        if used:
            raise ConfigError(f"config key '{key}' is not available with 'agent/name': '{cfg['agent']['name']}' (yet)")
    if cfg["episodic"]["train_episodes"] is None:
        from frugalrl.envs.memory_budget import budget_episodes

        try:
            budget_episodes(cfg["env"]["name"])
        except KeyError as error:
            raise ConfigError(f"config key 'episodic/train_episodes': {error.args[0]}") from None
    seq = cfg["sequence"]
    if seq["model"] == "gpt" and cfg["episodic"]["sequence_length"] > 0:
        raise ConfigError(
            "config key 'episodic/sequence_length': windows shorter than an episode are LSTM-only for now (a GPT "
            "acting past its training window needs the original's sliding-window recompute); use 0 (whole episodes)"
        )
    if seq["model"] == "gpt":
        width = seq["obs_embed"] + seq["action_embed"] + seq["reward_embed"]
        if width % seq["heads"]:
            raise ConfigError(
                f"config key 'sequence/heads' ({seq['heads']}) must divide the GPT's width, the token size {width} "
                "(obs_embed + action_embed + reward_embed)"
            )


def _model_checks(cfg: dict[str, Any]) -> None:
    """Dyna agents: a DQN on MLP observations, trained only on its model's rollouts."""
    kind = cfg["model"]["kind"]
    if cfg["agent"]["name"] != "dqn":
        raise ConfigError(f"config key 'model/kind' ('{kind}') needs 'agent/name': 'dqn'")
    if cfg["network"]["name"] != "mlp":
        raise ConfigError(f"config key 'network/name' must be 'mlp' with 'model/kind': '{kind}'")
    unsupported = plain_td_extras(cfg)
    for path, bad in unsupported:
        if bad:
            raise ConfigError(f"config key '{path}' is not supported with 'model/kind': '{kind}'; leave its default")
    if kind == "perfect" and cfg["train"]["stale_obs_after_terminal"]:
        raise ConfigError(
            "config key 'train/stale_obs_after_terminal' does not apply to 'model/kind': 'perfect': the original's "
            "perfect model stored true env states, which the quirk never touched; set it to false"
        )


def _cross_checks(cfg: dict[str, Any]) -> None:
    if cfg["model"]["kind"] != "none":
        _model_checks(cfg)
    if cfg["agent"]["name"] in CONTINUOUS_AGENTS:
        _continuous_checks(cfg)
    _reset_checks(cfg)
    if cfg["agent"]["name"] in EPISODIC_AGENTS:
        _episodic_checks(cfg)
        if cfg["eval"]["per_step"]:
            raise ConfigError("config key 'eval/per_step' is for transition agents; memory tasks are episodic")
    elif cfg["sacd"]["shared_encoder"] or cfg["sacd"]["freeze_critic"]:
        raise ConfigError("config keys 'sacd/*' belong to 'agent/name': 'sacd'")
    if cfg["sacd"]["freeze_critic"] and not cfg["sacd"]["shared_encoder"]:
        raise ConfigError(
            "config key 'sacd/freeze_critic' needs 'sacd/shared_encoder': true (separate critics are never "
            "moved by the actor loss)"
        )
    train, total = cfg["train"], cfg["total_steps"]
    k = train["train_every"]
    if train["priming_updates"]:
        from frugalrl.envs.registry import is_host_env  # late import: envs import jax

        if is_host_env(cfg["env"]["name"]):
            raise ConfigError("config key 'train/priming_updates' is not available for host (DMC) environments yet")
    for path, value in (
        ("total_steps", total),
        ("eval/every", cfg["eval"]["every"]),
        ("checkpoint/every", cfg["checkpoint"]["every"]),
    ):
        if value % k:
            raise ConfigError(
                f"config key '{path}' ({value}) must be a multiple of 'train/train_every' ({k}) so that "
                "evaluations and checkpoints fall between updates"
            )
    updates = total // k * train["gradient_steps"] * train["epochs_per_batch"] + train["priming_updates"]
    if updates > INT_LIMIT:
        raise ConfigError(
            f"config key 'train/gradient_steps' ({train['gradient_steps']}) gives {updates:,} updates per seed with "
            f"'total_steps' {total:,}, 'train/train_every' {k} and 'train/epochs_per_batch' "
            f"{train['epochs_per_batch']}: more than the 32-bit update counter holds ({INT_LIMIT:,})"
        )
    replay = cfg["replay"]
    if replay["prioritized"] and replay["td_batch"] == "all":
        raise ConfigError("config key 'replay/prioritized' samples the TD batch: it needs 'replay/td_batch': 'sample'")
    if replay["td_batch"] == "all":
        if replay["batch_size"] != replay["capacity"]:
            raise ConfigError(
                f"config key 'replay/batch_size' ({replay['batch_size']}) must equal 'replay/capacity' "
                f"({replay['capacity']}) when 'replay/td_batch' is 'all' (the TD batch is the whole buffer)"
            )
        if first_learning_block(cfg) + train["train_every"] < replay["capacity"]:
            raise ConfigError(
                f"config key 'train/learning_starts' ({train['learning_starts']}) must be >= 'replay/capacity' "
                f"({replay['capacity']}) when 'replay/td_batch' is 'all': the buffer must be full when learning starts"
            )
    teacher, distill, pretrain = cfg["teacher"], cfg["distillation"], cfg["pretraining"]
    uses = [
        name
        for name, used in (
            ("'distillation/coefficient' > 0", distill["coefficient"] > 0),
            ("'pretraining/steps' > 0", pretrain["steps"] > 0),
            ("'teacher/init_student'", teacher["init_student"]),
            ("JSRL is on", cfg["jsrl"]["guide_prob"] > 0 or cfg["jsrl"]["roll_in_guide"]),
        )
        if used
    ]
    if uses and teacher["run"] is None:
        raise ConfigError(f"config key 'teacher/run' must name the teacher's run directory when {uses[0]}")
    if distill["coefficient"] > 0 and distill["schedule"] == "decay" and cfg["eval"]["every"] == 0:
        raise ConfigError(
            "config key 'eval/every' must be > 0 when 'distillation/schedule' is 'decay': lambda follows evaluations"
        )
    if distill["lr_low"] is not None and distill["schedule"] == "constant":
        raise ConfigError(
            "config key 'distillation/lr_low' needs 'distillation/schedule': 'decay' (lambda stays 1 otherwise)"
        )
    rehearsal = cfg["rehearsal"]
    if rehearsal["fraction"] > 0 and teacher["run"] is None:
        raise ConfigError("config key 'rehearsal/fraction' mixes in teacher data: 'teacher/run' must name the teacher")
    if rehearsal["fraction"] > 0 and round(rehearsal["fraction"] * cfg["replay"]["batch_size"]) < 1:
        raise ConfigError("config key 'rehearsal/fraction' gives no teacher sample in a batch of 'replay/batch_size'")
    if rehearsal["regularizer_decay_period"] and (rehearsal["fraction"] == 0 or pretrain["regularizer"] == "none"):
        raise ConfigError(
            "config key 'rehearsal/regularizer_decay_period' needs 'rehearsal/fraction' > 0 and a regularizer"
        )
    if rehearsal["fraction"] > 0 and (cfg["replay"]["prioritized"] or cfg["replay"]["td_batch"] == "all"):
        raise ConfigError(
            "config key 'rehearsal/fraction' needs uniform sampled TD batches ('replay/td_batch': 'sample')"
        )
    if pretrain["regularizer"] != "none" and pretrain["steps"] == 0 and not rehearsal["regularizer_decay_period"]:
        raise ConfigError("config key 'pretraining/regularizer' acts while pretraining: set 'pretraining/steps' > 0")
    if pretrain["steps"] > 0 and cfg["train"]["random_steps"] > 0:
        raise ConfigError(
            "config key 'train/random_steps' must be 0 after pretraining: a pretrained student acts from its first step"
        )
    if distill["lr_low"] is not None and distill["coefficient"] == 0:
        raise ConfigError(
            "config key 'distillation/lr_low' ties the lr to lambda: it needs 'distillation/coefficient' > 0"
        )
    if pretrain["eval_every"] and pretrain["steps"] % pretrain["eval_every"]:
        raise ConfigError(
            f"config key 'pretraining/steps' ({pretrain['steps']}) must be a multiple of 'pretraining/eval_every' "
            f"({pretrain['eval_every']})"
        )
    if not pretrain["td"] and distill["coefficient"] == 0 and pretrain["regularizer"] == "none" and pretrain["steps"]:
        raise ConfigError(
            "config key 'pretraining/td' is false with no distillation and no regularizer: nothing to pretrain"
        )
    agent = cfg["agent"]
    if agent["atoms"] == 1 or (agent["atoms"] and agent["v_max"] <= agent["v_min"]):
        raise ConfigError(
            f"config key 'agent/atoms' ({agent['atoms']}) needs at least 2 atoms on a support with "
            f"'agent/v_max' ({agent['v_max']}) > 'agent/v_min' ({agent['v_min']})"
        )
    if cfg["replay"]["capacity"] < cfg["agent"]["n_step"]:
        raise ConfigError(
            f"config key 'replay/capacity' ({cfg['replay']['capacity']}) must be >= "
            f"'agent/n_step' ({cfg['agent']['n_step']})"
        )


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate a decoded config; ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be an object of keys, got {type(raw).__name__}")
    cfg = _resolve_section(SCHEMA, raw, "")
    _cross_checks(cfg)
    from frugalrl.envs import check_env_config  # late import: envs import jax

    check_env_config(cfg)
    return cfg


def vmappable_keys() -> dict[str, Callable[[Any], Any]]:
    """{path: the part of a value that shapes the program} of every key marked ``vmappable``."""
    found = {}

    def walk(schema: dict[str, Any], prefix: str) -> None:
        for key, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, f"{prefix}{key}/")
            elif spec.vmappable is not None:
                found[f"{prefix}{key}"] = spec.vmappable

    walk(SCHEMA, "")
    return found


def describe() -> list[tuple[str, Any, str]]:
    """(path, default, doc) for every key, for `frugal keys`."""
    rows = []

    def walk(schema: dict[str, Any], prefix: str) -> None:
        for key, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, f"{prefix}{key}/")
            else:
                rows.append((f"{prefix}{key}", spec.default, spec.doc))

    walk(SCHEMA, "")
    return rows


__all__ = ["ConfigError", "Field", "SCHEMA", "resolve", "describe", "flatten", "vmappable_keys"]
