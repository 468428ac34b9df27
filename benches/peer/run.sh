#!/usr/bin/env bash
# furcate beside the Python peer, one table (benches/peer/compare.py):
#   benches/peer/run.sh [CONFIG] [compare.py options: --test 0.1 0.95 --seeds 0 1 2 --out runs/peer --manifest M]
# Installs scikit-learn into the test set-up's Python when missing, builds
# the release binary, generates data/synthetic when the config's data is
# missing. Take its figures with nothing else running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
eval "$(scripts/setup.sh --test)"
"$FURCATE_PYTHON" -c "import sklearn" 2>/dev/null || "$FURCATE_PYTHON" -m pip install -q scikit-learn >&2
cargo build --release --quiet --bin furcate
config="configs/default.toml"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then config="$1"; shift; fi
[ -f data/synthetic/manifest.csv ] || target/release/furcate --quiet generate --out data/synthetic
exec "$FURCATE_PYTHON" benches/peer/compare.py --furcate target/release/furcate --config "$config" --out runs/peer "$@"
