"""furcate's Python package against its command line, and the libtorch it shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import furcate
from furcate import _furcate

from conftest import REPO, run_cli

LIBS = ("libtorch_cpu.so", "libtorch.so", "libc10.so", "libtorch_python.so")


def test_train_predict_round_trip_equals_the_cli(run, work, cli):
    # The test part's predictions the run wrote at training (predictions.csv) ...
    written = pd.read_csv(run.path / "predictions.csv")
    files = [str(work / "data" / f) for f in written["file"]]
    # ... equal what the loaded run predicts from Python for the same images,
    ours = run.predict(files)
    assert len(ours) == len(written) > 0
    predicted = [c for c in ours.columns if c not in ("file", "split") and c in written.columns]
    assert predicted, (list(ours.columns), list(written.columns))
    for c in predicted:
        assert ours[c].tolist() == written[c].tolist(), c
    # ... and what `furcate predict` prints, to the last digit.
    out = work / "cli_predictions.csv"
    run_cli(cli, "predict", run.path, *files, "--out", out, cwd=work)
    pd.testing.assert_frame_equal(ours, pd.read_csv(out))
    with_p = run.predict(files, probabilities=True)
    run_cli(cli, "predict", run.path, *files, "--probabilities", "--out", out, cwd=work)
    pd.testing.assert_frame_equal(with_p, pd.read_csv(out))
    assert any("_p_" in c for c in with_p.columns)


def test_run_metrics_evaluate_and_report(run, work):
    m = run.metrics
    assert m == furcate.open_run(run.path).metrics
    ev = run.evaluate()
    assert isinstance(ev, dict) and ev
    # Scoring the test part again gives the scores training wrote.
    import json

    assert json.dumps(ev, sort_keys=True) == json.dumps(run.evaluate(), sort_keys=True)
    assert run.report_path is not None and run.report_path.name == "report.html"
    assert run.plots, "the report's plots"
    assert "efficientnet_lite0" in run.config


def test_extract_equals_the_cli_and_extractor_matches(work, cli):
    from safetensors.numpy import load_file

    cfg = work / "run.toml"
    feats = furcate.extract(cfg, progress=False)
    assert list(feats) == ["stem", "stage2"]
    assert all(a.dtype == np.float32 for a in feats.values())
    out = work / "features.safetensors"
    run_cli(cli, "extract", cfg, "--out", out, cwd=work)
    theirs = load_file(str(out))["features"]
    ours = np.concatenate([feats["stem"], feats["stage2"]], axis=1)
    np.testing.assert_array_equal(ours, theirs)
    assert len(feats.names) == theirs.shape[0] == 20
    assert list(furcate.extract(cfg, taps=["stage2"], progress=False)) == ["stage2"]

    # The in-memory extractor on the same pixels (8-bit PNGs at the extractor's size).
    from PIL import Image

    ex = furcate.Extractor(cfg)
    assert (ex.size, ex.taps, ex.dim) == (64, ["stem", "stage2"], theirs.shape[1])
    paths = [work / "data" / n for n in feats.names]
    pixels = np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])
    got = ex(pixels)  # uint8 [N, H, W] numpy
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert got.shape == theirs.shape
    assert float((got - torch.from_numpy(theirs)).abs().max()) <= 1e-6
    by_tap = ex.by_tap(torch.from_numpy(pixels).float().div(255).unsqueeze(1))
    assert torch.allclose(torch.cat(list(by_tap.values()), 1), got, atol=1e-6)


def test_extract_names_a_tap_it_lacks(work):
    with pytest.raises(furcate.FurcateError, match=r"no tap named \"head\".*stem, stage2"):
        furcate.extract(work / "run.toml", taps=["head"], progress=False)


def test_bad_config_raises_naming_its_line(work, tmp_path):
    bad = tmp_path / "bad.toml"
    text = (work / "run.toml").read_text().replace("epochs = 100", "epochs = 100\nlearning_rat = 0.1")
    text = text.replace('manifest = "data/manifest.csv"', f'manifest = "{work}/data/manifest.csv"')
    bad.write_text(text)
    line = text.splitlines().index("learning_rat = 0.1") + 1
    with pytest.raises(furcate.FurcateError) as e:
        furcate.train(bad, out=tmp_path / "run", progress=False)
    msg = str(e.value)
    assert str(bad) in msg and f"line {line}" in msg and "learning_rat" in msg, msg
    problems = furcate.check(bad)
    assert problems and any(f"line {line}" in p for p in problems), problems
    assert furcate.check(work / "run.toml") == []
    with pytest.raises(furcate.FurcateError, match="not a furcate run folder"):
        furcate.open_run(tmp_path)


def test_tensors_cross_without_copies(work):
    t = torch.rand(5, 7)
    assert _furcate.data_ptr(t) == t.data_ptr()
    back = _furcate.roundtrip(t)
    assert back.data_ptr() == t.data_ptr()
    back[0, 0] = 42.0
    assert t[0, 0] == 42.0
    view = t[1:, 2:]  # strides and offsets survive
    assert _furcate.data_ptr(view) == view.data_ptr()
    # The extractor reads a float batch in place and hands back libtorch's own tensor.
    ex = furcate.Extractor(work / "run.toml")
    images = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    batch = torch.from_numpy(images)
    assert _furcate.data_ptr(batch) == images.ctypes.data
    out = ex(images)
    assert _furcate.data_ptr(out) == out.data_ptr()
    # extract()'s arrays are views of the tensor furcate made.
    feats = furcate.extract(work / "run.toml", progress=False)
    assert not feats["stage2"].flags.owndata


def test_import_after_torch_was_used():
    code = (
        "import torch\n"
        "x = torch.nn.Conv2d(1, 4, 3)(torch.rand(2, 1, 16, 16)).sum()\n"
        "x.backward()\n"
        "import furcate\n"
        "from furcate import _furcate\n"
        "t = torch.arange(6.0)\n"
        "assert _furcate.roundtrip(t).data_ptr() == t.data_ptr()\n"
        "assert furcate.libtorch()['version'] == torch.__version__.split('+')[0]\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_one_libtorch_in_the_process(run):
    """Every libtorch library is mapped once, from the torch wheel's own folder."""
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    ext = Path(_furcate.__file__).resolve()
    assert str(ext) in paths, "the extension is loaded"
    for lib in LIBS:
        copies = {p for p in paths if os.path.basename(p) == lib}
        assert copies == {str(torch_lib / lib)}, (lib, copies)
    assert Path(furcate.libtorch()["dir"]).resolve() == torch_lib.parent


def test_quickstart_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "docs" / "notebooks" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the report's plots show inline"
