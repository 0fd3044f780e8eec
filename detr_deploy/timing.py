"""Timing done the honest way: warm-up, interleaved runs, medians with a spread (numpy only, no torch).

The main benchmark (``bench/``) and the int8 measurement (``quantize/``) both time with these, so
their numbers are measured and summarised the same way.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

__all__ = ["time_interleaved", "summary_rows"]


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> Dict[str, List[float]]:
    """Run every candidate ``warmup`` times, then ``repeats`` rounds of one call each, in turn.

    Interleaving spreads background noise (other processes, frequency changes) over all
    candidates instead of penalising whichever ran during a busy moment.
    Returns seconds per call for each candidate, in call order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for function in candidates.values():
        for _ in range(warmup):
            function()
    times: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, function in candidates.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def summary_rows(times: Mapping[str, List[float]], baseline: Optional[str] = None) -> List[dict]:
    """One row per candidate of :func:`time_interleaved`'s ``times``: median and 90th percentile in
    ms, runs, and speed-up against ``baseline`` (default: the first candidate)."""
    baseline = baseline or next(iter(times))
    base_median = float(np.median(times[baseline]))
    rows = []
    for name, seconds in times.items():
        median = float(np.median(seconds))
        rows.append(
            {
                "runtime": name,
                "median_ms": round(median * 1e3, 1),
                "p90_ms": round(float(np.percentile(seconds, 90)) * 1e3, 1),
                "runs": len(seconds),
                f"speed-up vs {baseline}": round(base_median / median, 2),
            }
        )
    return rows
