#!/usr/bin/env bash
# benchmarks/sweep.py on an accelerator in one command: a sample of a grid's programs, their runs one
# `frugal run` process per index against the same runs packed wide (one `frugal run --idx A-B` per
# program; no Ray). Written for the GPU machine of the device tool, whose image holds JAX with CUDA,
# flax, optax, orbax-checkpoint, pandas, matplotlib and tqdm but not gymnax and its needs.
#
# Here, once: those wheels, for the image's Python 3.12 (.whl is ignored):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform any -d .whl gymnax==1.0.1 gymnasium==1.3.0 \
#     farama-notifications six==1.17.0
# There (carry .whl; about 5 minutes on an H100 for 4 programs of the MeDQN MountainCar grid):
#   bash benchmarks/device_sweep.sh configs/merl/MERL_mc_medqn.json 4
# The JSON it prints (also $OUT/sweep_device.json when OUT is set) goes to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
grid=${1:-configs/merl/MERL_mc_medqn.json}
programs=${2:-4}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
git log -1 --format='commit %h %cd' 2>/dev/null || true
python3 benchmarks/sweep.py "$grid" --sample "$programs" --repeats 1 --packed-sample --pack-layout wide --no-ray |
  tee "${OUT:-/tmp}/sweep_device.json"
