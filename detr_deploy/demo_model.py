"""The shipped demo model's pipeline settings, read from its artefact's sidecar (torch-free).

``data/models/demo.json`` is the one place the demo model's resize and default score threshold are
defined: every artefact of the demo model (TorchScript, AOTInductor, ONNX, OpenVINO, Triton) and the
benchmark take them from here, so each carries the same default threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Union

from detr_deploy.paths import MODELS_DIR

DEMO_SIDECAR = "demo.json"


def demo_settings(models_dir: Optional[Union[str, Path]] = None) -> Dict[str, Union[int, float]]:
    """``{"min_size", "max_size", "score_threshold"}`` of the demo model, from ``MODELS_DIR/demo.json``."""
    path = Path(models_dir or MODELS_DIR) / DEMO_SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the demo model's sidecar is missing (it is part of the repository)")
    info = json.loads(path.read_text())
    return {
        "min_size": int(info["preprocess"]["min_size"]),
        "max_size": int(info["preprocess"]["max_size"]),
        "score_threshold": float(info["score_threshold"]),
    }
