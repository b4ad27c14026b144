#!/usr/bin/env bash
# One command for the lent GPU machine (see ../shared/gpu.md): install the
# carried wheels (.whl/, git-ignored; prepared with the pip download line of
# gpu.md) into /tmp/site, then run benchmarks/gpu_check.py with its defaults
# (under 5 minutes on one H200). Extra arguments go to gpu_check.py.
# From the project root:  bash benchmarks/gpu_run.sh [--channels-last ...]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/gpu_check.py "$@" 2>&1 | grep -v "Loading weights"
