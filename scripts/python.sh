#!/usr/bin/env bash
# furcate's Python package: builds the extension `furcate._furcate` into this
# clone's target/ (sharing every crate the main build compiled: only the
# python/ crate and pyo3 are new) and installs `furcate` into the virtual
# environment of scripts/setup.sh (editable), so that
#   "$FURCATE_PYTHON" -c "import furcate"
# works afterwards.
#
# Usage:  scripts/python.sh [--test [PYTEST ARGS...]]
#   --test   then run the Python tests (python/tests, pytest), which also
#            execute docs/notebooks/quickstart.ipynb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
eval "$(scripts/setup.sh --python ${1:+--test})"
venv=$(dirname "$(dirname "$FURCATE_PYTHON")")
# maturin installs into the active environment; torch-sys and the build
# scripts find the same libtorch as the main build (LIBTORCH, from setup.sh).
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$repo/target"
start=$(date +%s)
(cd python && maturin develop --quiet 2>&1 | grep -v '^📦\|^🛠\|^🍹\|^🐍\|^🔗\|^📡' || true)
test -e python/furcate/_furcate*.so || { echo "furcate python: the extension was not built" >&2; exit 1; }
echo "furcate python: extension built and installed in $(( $(date +%s) - start )) s" >&2
if [ "${1:-}" = "--test" ]; then
  shift
  # This clone's package first (the shared environment may hold another clone's).
  PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" FURCATE_BIN="${FURCATE_BIN:-$repo/target/debug/furcate}" \
    "$FURCATE_PYTHON" -m pytest -q python/tests "$@"
fi
