"""Shared fixtures: one tiny generated data set, one trained run (session scope)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SYNTH = """\
size = 64
images_per_class = 5
seed = 3
volume_fractions = [0.2, 0.4]
jitter = 0.0

[[morphologies]]
name = "fine_isotropic"
sigma_x = 1.5
sigma_y = 1.5
sigma_z = 1.5
plane = "xy"

[[morphologies]]
name = "elongated_x"
sigma_x = 7.0
sigma_y = 2.0
sigma_z = 2.0
plane = "xy"
"""

RUN = """\
[data]
manifest = "data/manifest.csv"
feature_cache = "cache"

[extractor]
type = "efficientnet_lite0"
weights = "cache:efficientnet_lite0.safetensors"
size = 64
taps = ["stem", "stage2"]

[[heads]]
type = "classification"
name = "morphology"
taps = ["stage2"]

[[heads]]
type = "regression"
name = "volume_fraction"
bounds = [0.0, 1.0]
taps = ["stem"]

[training]
optimizer = "lbfgs"
weight_decay = 0.001
epochs = 100
test_fraction = 0.3
validation_fraction = 0.0
seed = 0
"""


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `synth.toml`, the generated set `data/`, and `run.toml`."""
    import furcate

    d = tmp_path_factory.mktemp("furcate")
    (d / "synth.toml").write_text(SYNTH)
    furcate.generate(d / "data", config=d / "synth.toml")
    (d / "run.toml").write_text(RUN)
    return d


@pytest.fixture(scope="session")
def run(work: Path):
    """The run trained from Python on the tiny set."""
    import furcate

    return furcate.train(work / "run.toml", out=work / "runs" / "py", progress=False)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `furcate` binary (FURCATE_BIN, else target/debug/furcate, built by `cargo test`)."""
    exe = Path(os.environ.get("FURCATE_BIN", REPO / "target" / "debug" / "furcate"))
    if not exe.exists():
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"no furcate binary at {exe} (build it first: cargo build)")
        pytest.skip(f"SKIPPED: no furcate binary at {exe}")
    return exe


def run_cli(exe: Path, *args: object, cwd: Path) -> str:
    """Runs the CLI quietly, returning stdout; fails the test with its stderr."""
    p = subprocess.run([str(exe), "-q", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout
