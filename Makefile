# frugalrl: `make demo` and `make test` each set everything up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# DQN on CartPole-v1 with CleanRL's hyperparameters, 8 seeds vmapped in one process.
demo: $(STAMP)
	$(BIN)/frugal run configs/dqn_classic.json --idx 1

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples
	$(BIN)/lint-imports

# Speed against stable-baselines3 and SBX; installs them into a separate venv (.venv-bench).
# torch is pinned to the CPU build of 2.13 that this machine holds (unpinned, pip takes a CUDA build of several GB).
bench: $(STAMP)
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet --upgrade pip
	.venv-bench/bin/python -m pip install --quiet torch==2.13.0 stable-baselines3 sbx-rl gymnasium
	$(BIN)/python benchmarks/dqn_cartpole.py --peer-python .venv-bench/bin/python

clean:
	rm -rf $(VENV) .venv-bench logs
