"""frugalrl: efficient deep RL research in JAX (MeDQN, QDagger, memory agents, SR-SAC, Dyna-DQN)."""

__version__ = "0.1.0"
