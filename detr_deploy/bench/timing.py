"""Timing done the honest way: warm-up, interleaved runs, medians and a spread."""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["time_interleaved", "summarise", "summarise_times"]


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


def summarise(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and 90th percentile of call times, in milliseconds."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    return {"median_ms": float(np.median(values) * 1e3), "p90_ms": float(np.percentile(values, 90) * 1e3)}


def summarise_times(times: Mapping[str, List[float]], baseline: str | None = None):
    """A pandas table: median and p90 in ms, and speed-up against ``baseline`` (default: first)."""
    import pandas as pd

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
    return pd.DataFrame(rows).set_index("runtime")
