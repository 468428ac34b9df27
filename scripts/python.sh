#!/usr/bin/env bash
# furcate's Python package: builds the extension `furcate._furcate` (the
# workspace member python/, a cdylib) with the very features and units
# `cargo test --workspace` builds (only pyo3 and python/ itself are new),
# puts it into python/furcate/, and makes the set-up's virtual environment
# import this clone's `furcate` (a .pth file, like an editable install), so
# that  "$FURCATE_PYTHON" -c "import furcate"  works afterwards.
# (`pip install ./python --no-build-isolation` builds a wheel with maturin
# instead: see the user guide, docs/src/python.md.)
#
# Usage:  scripts/python.sh [--test [PYTEST ARGS...]]
#   --test   then run the Python tests (python/tests, pytest), which also
#            execute docs/notebooks/quickstart.ipynb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
eval "$(scripts/setup.sh --python ${1:+--test})"
export PYO3_PYTHON="$FURCATE_PYTHON"
start=$(date +%s)
# `--lib --tests`: the libraries (this cdylib too) with the feature set of
# `cargo test --workspace`, so that every unit but pyo3 and python/ is reused.
cargo build --workspace --lib --tests --quiet
suffix=$("$FURCATE_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
ext="python/furcate/_furcate$suffix"
cp target/debug/lib_furcate.so "$ext.tmp" && mv -f "$ext.tmp" "$ext"
site=$("$FURCATE_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$repo/python" > "$site/furcate-dev.pth"
echo "furcate python: $ext built in $(( $(date +%s) - start )) s; $FURCATE_PYTHON imports furcate from $repo/python" >&2
if [ "${1:-}" = "--test" ]; then
  shift
  # This clone's package first (the shared environment may point at another clone's).
  PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" FURCATE_BIN="${FURCATE_BIN:-$repo/target/debug/furcate}" \
    "$FURCATE_PYTHON" -m pytest -q python/tests "$@"
fi
