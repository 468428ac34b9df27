"""furcate: data-efficient quantitative metallography from Python.

A frozen ImageNet network turns each micrograph into features once (cached);
small heads, one per labelled property, are trained on them. This package is
a thin layer over furcate's Rust library (the extension ``furcate._furcate``):
the same configs, run folders and feature cache as the ``furcate`` command.

``import torch`` happens first, so that the extension shares the libtorch of
the ``torch`` wheel in this environment (one libtorch per process); tensors
cross between PyTorch and furcate without copies.

Every furcate error is raised as :class:`FurcateError`, carrying furcate's
message, which names the file, line or field it is about.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch  # noqa: F401  (first: the extension links the libtorch this loads)

from . import _furcate
from ._furcate import FurcateError

__all__ = [
    "FurcateError",
    "Run",
    "Extractor",
    "Features",
    "train",
    "open_run",
    "extract",
    "generate",
    "check",
    "check_report",
    "libtorch",
    "set_threads",
    "__version__",
]

__version__: str = _furcate.__version__

PathLike = Union[str, "os.PathLike[str]"]
Images = Union[PathLike, Iterable[PathLike]]


class _Bars:
    """Draws furcate's progress reports as tqdm bars (one per stage)."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bar: Any = None

    def start(self, stage: str, total: int) -> None:
        self.finish()
        self._bar = self._tqdm(total=total, desc=stage, leave=False)

    def advance(self, done: int, message: Optional[str]) -> None:
        if self._bar is not None:
            if message:
                self._bar.set_postfix_str(message, refresh=False)
            # update() redraws at most every `mininterval` seconds.
            self._bar.update(done - self._bar.n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _progress(progress: bool) -> Optional[_Bars]:
    """tqdm bars when asked for and tqdm is installed, else nothing."""
    if not progress:
        return None
    try:
        return _Bars()
    except ImportError:
        return None


def _paths(images: Images) -> List[str]:
    """One path or several, as strings."""
    if isinstance(images, (str, os.PathLike)):
        return [os.fspath(images)]
    return [os.fspath(p) for p in images]


class Run:
    """A finished run folder (written by :func:`train` or ``furcate train``),
    loaded for prediction and scoring."""

    def __init__(self, path: PathLike) -> None:
        self._run = _furcate.Run(os.fspath(path))

    @property
    def path(self) -> Path:
        """The run folder."""
        return Path(self._run.dir)

    @property
    def config(self) -> str:
        """The run's resolved configuration (TOML text)."""
        return self._run.config_toml

    @property
    def metrics(self) -> Dict[str, Any]:
        """``metrics.json``, read through furcate's typed results: per head its
        scores, the choices made (taps, weight decay), warnings, notes and the
        cross-validation."""
        return json.loads(self._run.metrics_json())

    @property
    def report_path(self) -> Optional[Path]:
        """``report.html`` of the run, or None when it was trained without a report."""
        p = self.path / "report.html"
        return p if p.exists() else None

    @property
    def plots(self) -> List[Path]:
        """The report's plots (PNG files in the run folder's ``plots/``)."""
        return sorted(self.path.glob("plots/*.png"))

    def predict(
        self, images: Images, probabilities: bool = False, progress: bool = False, tta: bool = False
    ) -> "pandas.DataFrame":  # noqa: F821
        """Predicts every head's property for images (files, or folders of
        images): one row per image, the columns of ``furcate predict``'s CSV
        (with ``probabilities``, every class's probability as
        ``<head>_p_<class>``; with ``tta``, each image averaged over the
        views of the run's ``[data] augment``, as ``--tta``)."""
        import pandas as pd

        csv = self._run.predict_csv(_paths(images), probabilities, _progress(progress), tta)
        return pd.read_csv(io.StringIO(csv))

    def evaluate(self, manifest: Optional[PathLike] = None, progress: bool = False) -> Dict[str, Any]:
        """Scores the run on its own test part, or on the labelled manifest
        ``manifest`` (``furcate eval --json``)."""
        m = None if manifest is None else os.fspath(manifest)
        return json.loads(self._run.evaluate_json(m, _progress(progress)))

    def __repr__(self) -> str:
        return f"furcate.Run({str(self.path)!r})"


def train(
    config: PathLike,
    out: Optional[PathLike] = None,
    folds: Optional[int] = None,
    resume: bool = False,
    *,
    force: bool = False,
    report: bool = True,
    wait: bool = False,
    progress: bool = True,
) -> Run:
    """Trains the heads the config (a TOML file) declares, evaluates them and
    writes the run folder ``out`` (default ``runs/<config name>``), as
    ``furcate train`` does; returns the run.

    ``folds`` cross-validates in K folds first; ``resume`` continues an
    interrupted run; ``force`` replaces an existing folder; ``wait`` waits for
    another process writing the same folder; ``report`` writes the plots and
    ``report.html``. Progress shows as tqdm bars when tqdm is installed.
    Python's other threads run while it trains.
    """
    o = None if out is None else os.fspath(out)
    path = _furcate.train(os.fspath(config), o, folds, resume, force, report, wait, _progress(progress))
    return Run(path)


def open_run(path: PathLike) -> Run:
    """Loads a finished run folder."""
    return Run(path)


class Features(Dict[str, Any]):
    """Features per tap (``numpy.ndarray``, ``float32``, ``[N, D_tap]``), in the
    extractor's tap order; ``names`` are the rows' images (a tiled config's
    tiles are ``<image>#<tile>``)."""

    names: List[str]

    def __init__(self, names: List[str], taps: Sequence[Any]) -> None:
        super().__init__(taps)
        self.names = names


def extract(
    config: PathLike,
    images: Optional[Images] = None,
    taps: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> Features:
    """The extractor's features of the config's images (or of ``images``:
    files or folders), through the feature cache, as ``furcate extract``
    computes them: a dict from tap name to a ``float32`` ``[N, D_tap]``
    array (only the taps ``taps`` when given). The arrays are views of the
    tensor furcate made: no copies."""
    imgs = None if images is None else _paths(images)
    names, blocks = _furcate.extract(os.fspath(config), imgs, None if taps is None else list(taps), _progress(progress))
    return Features(names, [(name, t.numpy()) for name, t in blocks])


class Extractor:
    """A config's frozen extractor, applied to image batches in memory.

    ``extractor(images)`` takes a ``torch.Tensor`` or ``numpy`` batch
    ``[N, C, size, size]`` (or ``[N, size, size]``, or one ``[size, size]``
    image) of floats in ``[0, 1]`` (``uint8`` is divided by 255) and returns
    the features ``[N, D]`` as a ``torch.Tensor`` (``float32``, CPU): every
    tap side by side, as ``furcate extract`` gives them. Float tensors and
    arrays are read in place, and the result is libtorch's own tensor: no
    copies either way. Images must already be at the extractor's ``size``
    (``furcate extract`` resizes files as the config's ``[data] fit`` says).
    """

    def __init__(self, config: PathLike) -> None:
        self._ex = _furcate.Extractor(os.fspath(config))

    @property
    def size(self) -> int:
        """Side of the square images it takes, in pixels."""
        return self._ex.size

    @property
    def dim(self) -> int:
        """Width of one feature vector."""
        return self._ex.dim

    @property
    def taps(self) -> List[str]:
        """Its taps, in feature order."""
        return self._ex.taps

    @property
    def weights_sha256(self) -> Optional[str]:
        """SHA-256 of its weights file, if any."""
        return self._ex.weights_sha256

    @staticmethod
    def _batch(images: Any) -> torch.Tensor:
        t = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        if t.dim() == 2:
            t = t[None, None]
        return t

    def __call__(self, images: Any) -> torch.Tensor:
        return self._ex(self._batch(images))

    def by_tap(self, images: Any) -> Dict[str, torch.Tensor]:
        """The features of a batch per tap: ``{tap: [N, D_tap]}``."""
        return dict(zip(self.taps, self._ex.taps_of(self._batch(images))))

    def __repr__(self) -> str:
        return f"furcate.Extractor(size={self.size}, dim={self.dim}, taps={self.taps})"


def generate(
    out: PathLike, config: Optional[PathLike] = None, seed: Optional[int] = None, force: bool = False
) -> Path:
    """Generates a synthetic data set (PNGs and ``manifest.csv``) in ``out``:
    the built-in ``configs/synthetic.toml`` (3500 images) or the generator
    config ``config``; ``seed`` replaces the config's seed. Returns the
    manifest's path."""
    c = None if config is None else os.fspath(config)
    _furcate.generate(os.fspath(out), c, seed, force)
    return Path(out) / "manifest.csv"


def check_report(config: PathLike) -> Dict[str, Any]:
    """``furcate check --json``: the config and its data checked without
    training (images, labels, duplicates, weights, cache size)."""
    return json.loads(_furcate.check_json(os.fspath(config)))


def check(config: PathLike) -> List[str]:
    """The problems that would stop ``train`` (each naming its file and
    line); empty when training would start."""
    return list(check_report(config)["errors"])


def libtorch() -> Dict[str, str]:
    """The libtorch this process runs on (read from ``/proc/self/maps``):
    ``version``, ``full_version``, ``dir``."""
    return json.loads(_furcate.libtorch_json())


def set_threads(n: Optional[int] = None) -> int:
    """Sets libtorch's and furcate's CPU threads (None: ``FURCATE_THREADS``,
    else the cores this process may use); returns the count."""
    return _furcate.set_threads(n)
