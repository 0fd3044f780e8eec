"""What one benchmark run has measured so far: the rows of each table, what it skipped and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List

__all__ = ["Record"]


@dataclass
class Record:
    """The rows of latency.csv, coldstart.csv and tuning.csv, the FLOPs per model and size,
    the GEMM peak per thread count, the skipped runtimes, and the progress bar (tqdm)."""

    progress: object
    skipped: List[dict] = field(default_factory=list)
    latency: List[dict] = field(default_factory=list)
    tuning: List[dict] = field(default_factory=list)
    cold: List[dict] = field(default_factory=list)
    flops: Dict[str, Dict[str, int]] = field(default_factory=dict)
    peak: Dict[int, float] = field(default_factory=dict)

    def skip(self, runtime: str, model: str, reason: str) -> None:
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # colour codes some exporters print
        if not any(s["runtime"] == runtime and s["model"] == model and s["reason"] == reason for s in self.skipped):
            self.skipped.append({"runtime": runtime, "model": model, "reason": reason})
            self.progress.write(f"  skipped {runtime} ({model}): {reason}")

    def step(self, text: str) -> None:
        self.progress.set_description(text[:60])
