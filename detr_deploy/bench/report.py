"""Reading a benchmark run for chapter 04: the tables, the headline rows, who wins which goal."""

from __future__ import annotations

import json
from pathlib import Path

from detr_deploy.paths import relative

__all__ = ["TABLES", "load_results", "headline", "decision_table", "goals"]

TABLES = ("latency", "coldstart", "tuning", "sizes", "models")


def load_results(folder) -> dict:
    """Read a benchmark folder: {"info": benchmark.json, "latency": DataFrame, ...}; tables
    the run did not write are empty DataFrames."""
    import pandas as pd

    folder = Path(folder)
    info_path = folder / "benchmark.json"
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{relative(info_path)} not found: run python -m detr_deploy.bench --out {relative(folder)}"
        )
    result = {"info": json.loads(info_path.read_text())}
    for name in TABLES:
        path = folder / f"{name}.csv"
        try:
            result[name] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        except pd.errors.EmptyDataError:
            result[name] = pd.DataFrame()
    return result


def headline(results: dict, model: str):
    """Latency rows at the sweep size, all cores, batch 1, for ``model``: the table every
    comparison in chapter 04 starts from (fastest first)."""
    info, latency = results["info"], results["latency"]
    height, width = info["settings"]["sweep_size"]
    threads = max(info["settings"]["threads"])
    rows = latency[
        (latency.model == model)
        & (latency.height == height)
        & (latency.width == width)
        & (latency.threads == threads)
        & (latency.batch == 1)
    ]
    return rows.sort_values("median_ms").reset_index(drop=True)


def _best(rows, names):
    chosen = rows[rows.runtime.isin(list(names)) & rows.includes_decode.astype(bool)].sort_values("median_ms")
    return chosen.iloc[0] if len(chosen) else None


def decision_table(results: dict, model: str):
    """Which runtime wins for each goal on this machine, by how much, for ``model``.

    Goals: smallest image (bytes a service ships), lowest latency, no torch in the Python
    process, usable from a C++ application. Latency compares end-to-end rows (decode
    included) at the sweep size; "margin" is the runner-up's value over the winner's.
    """
    import pandas as pd

    runtimes = results["info"]["runtimes"]
    rows = headline(results, model)
    measured = list(rows.runtime)
    sizes_table = results["sizes"]
    table = []

    def latency_goal(goal, names):
        ranked = rows[rows.runtime.isin(list(names)) & rows.includes_decode.astype(bool)].sort_values("median_ms")
        if ranked.empty:
            table.append(
                {
                    "goal": goal,
                    "winner": None,
                    "measure": "median ms",
                    "value": None,
                    "runner_up": None,
                    "runner_up_value": None,
                    "margin": None,
                }
            )
            return
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        table.append(
            {
                "goal": goal,
                "winner": first.runtime,
                "measure": "median ms",
                "value": first.median_ms,
                "runner_up": None if second is None else second.runtime,
                "runner_up_value": None if second is None else second.median_ms,
                "margin": None if second is None else round(second.median_ms / first.median_ms, 2),
            }
        )

    # smallest image: what each measured runtime ships
    if not sizes_table.empty:
        shipped = sizes_table[(sizes_table.category == "deployment") & sizes_table.item.isin(measured)]
        shipped = shipped.sort_values("bytes")
    else:
        shipped = sizes_table
    if len(shipped):
        first, second = shipped.iloc[0], (shipped.iloc[1] if len(shipped) > 1 else None)
        table.append(
            {
                "goal": "smallest image",
                "winner": first["item"],
                "measure": "MB shipped",
                "value": round(first["bytes"] / 1e6, 1),
                "runner_up": None if second is None else second["item"],
                "runner_up_value": None if second is None else round(second["bytes"] / 1e6, 1),
                "margin": None if second is None else round(second["bytes"] / first["bytes"], 2),
            }
        )
    else:
        table.append(
            {
                "goal": "smallest image",
                "winner": None,
                "measure": "MB shipped",
                "value": None,
                "runner_up": None,
                "runner_up_value": None,
                "margin": None,
            }
        )
    latency_goal("lowest latency", measured)
    latency_goal("no torch in Python", [n for n in measured if not runtimes.get(n, {}).get("torch_in_python", True)])
    latency_goal("C++ application", [n for n in measured if runtimes.get(n, {}).get("cpp_api", False)])
    return pd.DataFrame(table)


def goals(results: dict, model: str) -> dict:
    """The libtorch path's two targets, from the headline rows of ``model``:
    the best C++ path at least 1.3x faster than eager end to end, and no slower than the
    best of ONNX Runtime and OpenVINO (None when those were not measured)."""
    rows = headline(results, model)
    eager = _best(rows, ["eager"])
    cpp = _best(rows, ["cpp_torchscript", "cpp_aotinductor"])
    other = _best(rows, ["onnxruntime", "openvino"])
    speedup = None if eager is None or cpp is None else round(eager.median_ms / cpp.median_ms, 2)
    versus = None if other is None or cpp is None else round(other.median_ms / cpp.median_ms, 2)
    return {
        "model": model,
        "best_cpp": None if cpp is None else cpp.runtime,
        "speedup_vs_eager": speedup,
        "faster_than_eager_1.3x": None if speedup is None else bool(speedup >= 1.3),
        "best_alternative": None if other is None else other.runtime,
        "cpp_vs_best_alternative": versus,
        "no_slower_than_alternatives": None if versus is None else bool(versus >= 1.0),
    }
