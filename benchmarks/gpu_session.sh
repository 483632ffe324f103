#!/usr/bin/env bash
# Everything a session with a lent GPU should run, in one go; outputs land in ${OUT:-gpu-results}/.
# Copy the printed tables into benchmarks/RESULTS.md with the device named (nvidia-smi -L).
set -euo pipefail
out="${OUT:-gpu-results}"
mkdir -p "$out"
nvidia-smi -L | tee "$out/device.txt"
pip install -q -e ".[test,xformers]" || pip install -q -e ".[test]"  # xformers is optional
python -m pytest -m gpu -rs -q 2>&1 | tee "$out/gpu-tests.txt"
for preset in base large; do
  python benchmarks/encoder_throughput.py --device cuda --dtype bf16 --preset "$preset" \
    --batch-size 64 --steps 20 --warmup 5 2>&1 | tee "$out/encoder-$preset.txt"
done
