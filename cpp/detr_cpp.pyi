"""Type stubs for the C++ module ``detr_cpp`` (cpp/detr_cpp.cpp), so editors and type checkers see its API.

The runtime folder ships this file beside the module. tests/test_cpp.py checks that it names exactly what
the built module exposes.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, bytes, os.PathLike]

class Detections(TypedDict):
    boxes: npt.NDArray[np.float32]  # [N, 4] x0 y0 x1 y1 in input pixels
    scores: npt.NDArray[np.float32]  # [N], descending
    labels: npt.NDArray[np.int64]  # [N], indices into Detector.class_names

class Detector:
    """A loaded DETR artefact: a TorchScript .pt or an AOTInductor .pt2 (python -m detr_deploy.export)."""

    def __init__(
        self,
        model_path: PathLike,
        num_threads: Optional[int] = None,
        optimize: bool = True,
        profiling_executor: bool = False,
        require_sidecar: bool = False,
    ) -> None:
        """Checks the file against its sidecar's sha256, the metadata against the model and that no weight
        is NaN or inf; num_threads in 1..max_num_threads(). ValueError / FileNotFoundError when it fails."""
    def detect(self, image: npt.NDArray[np.uint8], score_threshold: Optional[float] = None) -> Detections:
        """One uint8 RGB image [H, W, 3]; the GIL is released while the model runs."""
    def detect_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], score_threshold: Optional[float] = None
    ) -> List[Detections]:
        """Several images of any sizes in one forward pass; one result per image."""
    @property
    def class_names(self) -> List[str]: ...
    @property
    def metadata(self) -> Dict[str, Any]: ...
    @property
    def model_path(self) -> str: ...
    @property
    def sha256(self) -> str:
        """The model file's sha256 (64 hex digits), computed at load."""
    @property
    def verified(self) -> bool:
        """True when the sidecar recorded that sha256; False: no sidecar, integrity unchecked."""
    @property
    def backend(self) -> str:
        """ "torchscript" or "aotinductor"."""
    @property
    def optimized(self) -> bool: ...
    @property
    def max_side(self) -> int: ...
    @property
    def score_threshold(self) -> float: ...

def read_metadata(model_path: PathLike) -> Dict[str, Any]:
    """An artefact's metadata.json as a dict, checked, without loading the model."""

def sha256_file(path: PathLike) -> str:
    """A file's sha256 as 64 hex digits (what Detector checks against the sidecar)."""

def libtorch_version() -> str: ...
def get_num_threads() -> int: ...
def max_num_threads() -> int:
    """The largest num_threads a Detector accepts (4 x the CPUs)."""
