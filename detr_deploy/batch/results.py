"""The results file: one JSON line per image, what a rerun skips, and the closing summary.

A line is either ``{"source", "width", "height", "detections": [{"box", "score", "label", "class_name"}]}``
(boxes ``[x0, y0, x1, y1]`` in input pixels, sorted by score, as the detection service answers) or
``{"source", "error"}`` for an image that could not be read or run. Floats are written as Python's
shortest repr of the float32 value, so parsing a line and casting back to float32 gives the detector's
numbers bit for bit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Set, Union

import numpy as np

__all__ = ["Summary", "detection_record", "error_record", "sources_already_done", "to_json_line"]


def detection_record(
    source: str, width: int, height: int, detections: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> Dict:
    """The result line of an image the detector ran on; ``detections`` is what ``Detector.detect`` returns."""
    found = [
        {
            "box": [float(value) for value in box],
            "score": float(score),
            "label": int(label),
            "class_name": class_names[label] if 0 <= label < len(class_names) else None,
        }
        for box, score, label in zip(detections["boxes"], detections["scores"], detections["labels"].tolist())
    ]
    return {"source": source, "width": int(width), "height": int(height), "detections": found}


def error_record(source: str, error: BaseException) -> Dict:
    return {"source": source, "error": f"{type(error).__name__}: {error}"}


def to_json_line(record: Mapping) -> str:
    return json.dumps(record, allow_nan=False)


def sources_already_done(path: Union[str, os.PathLike]) -> Set[str]:
    """The sources the results file at ``path`` already holds (none when it does not exist).

    A last line without its newline is what an interrupted run leaves: it is cut off here so that
    appending starts on a fresh line, and its image runs again. Other lines that do not parse are
    left in place and not counted as done.
    """
    path = Path(path)
    if not path.is_file():
        return set()
    with path.open("rb+") as file:
        content = file.read()
        if content and not content.endswith(b"\n"):
            file.truncate(content.rfind(b"\n") + 1)
            content = content[: content.rfind(b"\n") + 1]
    done: Set[str] = set()
    for line in content.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("source"), str):
            done.add(record["source"])
    return done


@dataclass
class Summary:
    """What a run did: images it wrote a line for, how many of those are errors, how many it skipped.

    ``first_result_seconds`` is the start-up cost (workers starting, models loading, the first batch);
    ``first_batch_images`` the images that arrived with it: the rate after it is the steady one.
    """

    images: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    first_result_seconds: Optional[float] = None
    first_batch_images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_second(self) -> Optional[float]:
        """The rate once the first result is in; None with fewer than two result batches."""
        if self.first_result_seconds is None or self.images <= self.first_batch_images:
            return None
        return (self.images - self.first_batch_images) / (self.seconds - self.first_result_seconds)

    def line(self) -> str:
        first = "" if self.first_result_seconds is None else f" (first result after {self.first_result_seconds:.2f} s)"
        return (
            f"images {self.images}, errors {self.errors}, skipped {self.skipped}, "
            f"{self.seconds:.2f} s, {self.images_per_second:.2f} images/s{first}"
        )
