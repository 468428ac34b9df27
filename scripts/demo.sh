#!/usr/bin/env bash
# The main job on a fresh clone: install libtorch and the pretrained weights
# when missing, build furcate, run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh)"
cargo build --release --quiet --bin furcate
exec target/release/furcate demo "$@"
