#!/usr/bin/env bash
# The whole test suite on a fresh clone: install libtorch, the weights and the
# reference implementations the parity tests compare against, then test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/setup.sh --test)"
# The references are installed now: a parity test that cannot find one fails
# instead of skipping (core/tests/common: `skip`). CI=false keeps the skips.
export CI="${CI:-true}"
# The Slurm tests (tests/slurm.rs) need a cluster: when none answers, start a local one
# (as root; scripts/slurm-local.sh installs Debian's packages if missing).
if ! sinfo -h >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    # Stopped at the end only when this script started it.
    scripts/slurm-local.sh status >/dev/null 2>&1 || trap 'scripts/slurm-local.sh stop' EXIT
    eval "$(scripts/slurm-local.sh start)"
fi
cargo test --workspace "$@"

# ---- Python: build the extension of the package `furcate` (python/, a
# workspace member that `cargo test` leaves out: only pyo3 and python/ are
# compiled, every other unit is the one just built), install the package
# into the set-up's environment, run its tests (pytest; they also execute
# docs/notebooks/quickstart.ipynb and compare with the `furcate` binary).
scripts/python.sh --test
