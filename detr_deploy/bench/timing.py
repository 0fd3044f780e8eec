"""Timing done the honest way: warm-up, interleaved runs, medians and a spread.

The loop and the per-runtime rows are :mod:`detr_deploy.timing`'s, which the int8 measurement
(``quantize/``) shares; this module adds the benchmark's summaries. ``time_interleaved`` stays
importable from here (chapters 01 and 02, scripts/libtorch_options.py).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import numpy as np

from detr_deploy.timing import summary_rows, time_interleaved

__all__ = ["time_interleaved", "summarise", "summarise_times"]


def summarise(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and 90th percentile of call times, in milliseconds."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    return {"median_ms": float(np.median(values) * 1e3), "p90_ms": float(np.percentile(values, 90) * 1e3)}


def summarise_times(times: Mapping[str, List[float]], baseline: str | None = None):
    """A pandas table: median and p90 in ms, and speed-up against ``baseline`` (default: first)."""
    import pandas as pd

    return pd.DataFrame(summary_rows(times, baseline)).set_index("runtime")
