"""Type stubs of the extension module ``furcate._furcate`` (Rust, pyo3).

Use the package ``furcate`` instead: it wraps these with paths, numpy,
pandas and tqdm."""

from typing import Any, List, Optional, Tuple

import torch

__version__: str

class FurcateError(Exception):
    """A furcate error: its message names the file, line or field it is about."""

class Run:
    """A finished run folder, loaded for scoring and prediction."""

    def __init__(self, path: str) -> None: ...
    @property
    def dir(self) -> str: ...
    @property
    def config_toml(self) -> str: ...
    def metrics_json(self) -> str: ...
    def predict_csv(
        self, images: List[str], probabilities: bool = False, progress: Optional[Any] = None, tta: bool = False
    ) -> str: ...
    def evaluate_json(self, manifest: Optional[str] = None, progress: Optional[Any] = None) -> str: ...

class Extractor:
    """A frozen extractor built from a config's ``[extractor]`` table."""

    def __init__(self, config: str) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def taps(self) -> List[str]: ...
    @property
    def weights_sha256(self) -> Optional[str]: ...
    def taps_of(self, images: torch.Tensor) -> List[torch.Tensor]: ...
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

def train(
    config: str,
    out: Optional[str] = None,
    folds: Optional[int] = None,
    resume: bool = False,
    force: bool = False,
    report: bool = True,
    wait: bool = False,
    progress: Optional[Any] = None,
) -> str: ...
def extract(
    config: str,
    images: Optional[List[str]] = None,
    taps: Optional[List[str]] = None,
    progress: Optional[Any] = None,
) -> Tuple[List[str], List[Tuple[str, torch.Tensor]]]: ...
def generate(out: str, config: Optional[str] = None, seed: Optional[int] = None, force: bool = False) -> int: ...
def check_json(config: str) -> str: ...
def libtorch_json() -> str: ...
def set_threads(n: Optional[int] = None) -> int: ...
def data_ptr(tensor: torch.Tensor) -> int:
    """The address of a tensor's data as libtorch sees it on the Rust side."""

def roundtrip(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor it is given, back through libtorch on the Rust side."""
