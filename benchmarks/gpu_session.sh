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
# Issue 11: the CUDA attention path for packed NaFlex batches (sdpa's varlen flash kernel on one row vs
# masked rows vs xformers' one row)
python benchmarks/naflex_packing.py --device cuda --dtype bf16 --model small base --samples 1024 \
  --max-tokens 16384 --seq-lens 256 576 1024 --rounds 3 2>&1 | tee "$out/naflex-packing.txt"
# Issue 13: the in-process engine's memory with step-by-step log-probs on the VLM quickstart's export
# (its LM has 512 positions: prompt + new tokens must fit)
glmkit fit --config recipes/quickstart/vlm_tiny.yaml --trainer.accelerator=gpu --trainer.enable_progress_bar=false \
  > "$out/vlm-quickstart.txt" 2>&1 && python benchmarks/rollout_logprobs.py --device cuda --tokens 128 384 --rows 512 \
  2>&1 | tee "$out/rollout-logprobs.txt"
