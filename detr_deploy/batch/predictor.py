"""What each Ray actor runs: one ``detr_cpp.Detector``, and a batch of image paths in, their result lines out.

The class is a plain callable (``map_batches`` instantiates it once per actor), so the serial baseline
calls the very same code in-process, without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from detr_deploy.batch.results import detection_record, error_record, to_json_line
from detr_deploy.images import read_image
from detr_deploy.native.loader import load_detr_cpp

__all__ = ["DetectionPredictor", "DetectorSettings"]


@dataclass(frozen=True)
class DetectorSettings:
    """What every actor loads: the artefact, libtorch's threads (the CPUs an actor reserves), the detection
    threshold (None: the model's) and where ``detr_cpp`` is (None: see ``load_detr_cpp``)."""

    model_path: str
    num_threads: int = 1
    score_threshold: Optional[float] = None
    runtime: Optional[str] = None


class DetectionPredictor:
    """``{"source": paths}`` -> ``{"line": one JSON result line per path, "failed": whether it is an error line}``.

    ``num_threads`` are libtorch's intra-op threads, a process-wide setting: in an actor (its own
    process) they are the actor's; in-process they change the caller's too. Images are decoded here,
    in the actor, so only their paths cross process boundaries, and one image is in memory at a time.
    """

    def __init__(self, settings: DetectorSettings) -> None:
        detr_cpp = load_detr_cpp(runtime=settings.runtime)
        self.detector = detr_cpp.Detector(settings.model_path, num_threads=settings.num_threads)
        self.class_names = list(self.detector.class_names)
        self.score_threshold = settings.score_threshold

    def result_line(self, source: str) -> Tuple[str, bool]:
        """One image's line and whether it is an error line: its detections, or the error that stopped it."""
        try:
            image = read_image(source)
            detections = self.detector.detect(image, score_threshold=self.score_threshold)
            record = detection_record(source, image.shape[1], image.shape[0], detections, self.class_names)
        except Exception as error:  # any failure of one image is that image's result, not the batch's
            return to_json_line(error_record(source, error)), True
        return to_json_line(record), False

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        sources = [str(source) for source in batch["source"]]
        lines, failed = zip(*(self.result_line(source) for source in sources)) if sources else ((), ())
        return {
            "line": np.array(lines, dtype=object),
            "failed": np.array(failed, dtype=bool),
        }
