#!/usr/bin/env bash
# The whole test suite on a fresh clone: install libtorch, the weights and the
# reference implementations the parity tests compare against, then test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh --test)"
# The references are installed now: a parity test that cannot find one fails
# instead of skipping (core/tests/common: `skip`). CI=false keeps the skips.
export CI="${CI:-true}"
# The Python extension (python/, a cdylib) is built here too, with the same
# features and units as everything else; pyo3 configures for this Python.
export PYO3_PYTHON="$FURCATE_PYTHON"
cargo test --workspace "$@"

# ---- Python: build the package `furcate` (python/) into the same target/,
# install it into the set-up's environment, run its tests (pytest, which
# also execute docs/notebooks/quickstart.ipynb). They compare against the
# `furcate` binary `cargo test` just built.
scripts/python.sh --test
