"""Reading a benchmark run for chapter 04: the tables, the headline rows, who wins which goal.

Timing noise: every latency row records the median and the 90th percentile (p90) of its timed
rounds, and nothing finer. A row's *noise band* is how far its p90 lies above its median,
``(p90 - median) / median``. Two runtimes **tie** when the slower median is within the larger
noise band of the two above the faster one: the difference is no larger than the spread
either of them showed in its own rounds. Sizes are exact byte counts and have no noise.
"""

from __future__ import annotations

import json
from pathlib import Path

from detr_deploy.paths import relative

__all__ = [
    "TABLES",
    "CAVEATS",
    "load_results",
    "headline",
    "noise_band",
    "within_noise",
    "tie_group",
    "compare",
    "decision_table",
    "markdown_table",
    "goals",
    "variant_label",
]

TABLES = ("latency", "coldstart", "tuning", "sizes", "models")

# What a reader must know about a runtime before choosing it, beside its numbers (chapter 02b).
CAVEATS = {
    "openvino": (
        "its antialiased resize weighs the source pixels differently from torch's, so on images the "
        "pipeline shrinks its boxes and scores differ from the other runtimes' beyond float rounding (chapter 02b)"
    ),
    "cpp_aotinductor": (
        "the package loads only on CPUs with every instruction set of the CPU that compiled it: "
        "build it on the kind of machine that serves it (chapter 02b)"
    ),
}


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


def noise_band(row) -> float:
    """``(p90 - median) / median`` of a latency row (0 where the row has no p90)."""
    median, p90 = float(row["median_ms"]), row.get("p90_ms")
    if p90 is None or p90 != p90 or median <= 0:  # missing or NaN
        return 0.0
    return max(0.0, float(p90) / median - 1.0)


def within_noise(faster, slower) -> bool:
    """True when ``slower``'s median is within the larger noise band of the two rows above
    ``faster``'s: the two runtimes tie."""
    band = max(noise_band(faster), noise_band(slower))
    return float(slower["median_ms"]) <= float(faster["median_ms"]) * (1.0 + band)


def tie_group(ranked) -> list:
    """The runtimes of ``ranked`` (latency rows) that tie with the fastest of them, fastest first;
    a single name when the fastest wins outside the noise, [] for no rows."""
    if len(ranked) == 0:
        return []
    ranked = ranked.sort_values("median_ms")
    first = ranked.iloc[0]
    return [row.runtime for _, row in ranked.iterrows() if within_noise(first, row)]


def compare(rows, first: str, second: str) -> dict:
    """``first`` against ``second`` among latency ``rows``: which is faster, the ratio of their
    medians (slower over faster), the noise band that applies, and whether they tie."""
    a = rows[rows.runtime == first].iloc[0]
    b = rows[rows.runtime == second].iloc[0]
    faster, slower = (a, b) if a.median_ms <= b.median_ms else (b, a)
    return {
        "faster": faster.runtime,
        "slower": slower.runtime,
        "ratio": float(slower.median_ms) / float(faster.median_ms),
        "noise": max(noise_band(faster), noise_band(slower)),
        "tie": within_noise(faster, slower),
    }


def _caveats(names) -> str:
    return "; ".join(f"{name}: {CAVEATS[name]}" for name in dict.fromkeys(names) if name in CAVEATS)


def decision_table(results: dict, model: str):
    """Which runtime wins for each goal on this machine, by how much, for ``model``.

    Goals: smallest image (bytes a service ships), lowest latency, no torch in the Python
    process, usable from a C++ application. Latency compares end-to-end rows (decode
    included) at the sweep size. Columns: ``verdict`` (the winner, or "tie: a, b, ..." for the
    runtimes whose medians lie within the noise of the fastest, see the module docstring),
    ``winner`` (the smallest value), ``runner_up`` and ``margin`` (the runner-up's value over
    the winner's), ``noise`` (1 + the noise band between winner and runner-up, comparable
    with ``margin``; 1.0 for sizes) and ``caveats`` for the runtimes the row names.
    """
    import pandas as pd

    runtimes = results["info"]["runtimes"]
    rows = headline(results, model)
    measured = list(rows.runtime)
    sizes_table = results["sizes"]
    table = []
    empty = {"verdict": None, "winner": None, "value": None, "runner_up": None, "runner_up_value": None}
    empty |= {"margin": None, "noise": None, "caveats": ""}

    def latency_goal(goal, names):
        ranked = rows[rows.runtime.isin(list(names)) & rows.includes_decode.astype(bool)].sort_values("median_ms")
        if ranked.empty:
            table.append({"goal": goal, "measure": "median ms", **empty})
            return
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        tied = tie_group(ranked)
        verdict = first.runtime if len(tied) == 1 else "tie: " + ", ".join(tied)
        named = tied + ([] if second is None else [second.runtime])
        table.append(
            {
                "goal": goal,
                "measure": "median ms",
                "verdict": verdict,
                "winner": first.runtime,
                "value": first.median_ms,
                "runner_up": None if second is None else second.runtime,
                "runner_up_value": None if second is None else second.median_ms,
                "margin": None if second is None else round(second.median_ms / first.median_ms, 2),
                "noise": None if second is None else round(1 + max(noise_band(first), noise_band(second)), 2),
                "caveats": _caveats(named),
            }
        )

    # smallest image: what each measured runtime ships (exact byte counts: no noise)
    if not sizes_table.empty:
        shipped = sizes_table[(sizes_table.category == "deployment") & sizes_table.item.isin(measured)]
        shipped = shipped.sort_values("bytes")
    else:
        shipped = sizes_table
    if len(shipped):
        first, second = shipped.iloc[0], (shipped.iloc[1] if len(shipped) > 1 else None)
        tied = [first["item"]] + ([second["item"]] if second is not None and second["bytes"] == first["bytes"] else [])
        table.append(
            {
                "goal": "smallest image",
                "measure": "MB shipped",
                "verdict": first["item"] if len(tied) == 1 else "tie: " + ", ".join(tied),
                "winner": first["item"],
                "value": round(first["bytes"] / 1e6, 1),
                "runner_up": None if second is None else second["item"],
                "runner_up_value": None if second is None else round(second["bytes"] / 1e6, 1),
                "margin": None if second is None else round(second["bytes"] / first["bytes"], 2),
                "noise": None if second is None else 1.0,
                "caveats": _caveats([first["item"]] + ([] if second is None else [second["item"]])),
            }
        )
    else:
        table.append({"goal": "smallest image", "measure": "MB shipped", **empty})
    latency_goal("lowest latency", measured)
    latency_goal("no torch in Python", [n for n in measured if not runtimes.get(n, {}).get("torch_in_python", True)])
    latency_goal("C++ application", [n for n in measured if runtimes.get(n, {}).get("cpp_api", False)])
    return pd.DataFrame(table)


def markdown_table(frame) -> str:
    """A DataFrame as a Markdown table (index dropped; None and NaN shown as "-")."""

    def cell(value):
        if value is None or (isinstance(value, float) and value != value):
            return "-"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def goals(results: dict, model: str) -> dict:
    """The libtorch path's two targets, from the headline rows of ``model``:
    the best C++ path at least 1.3x faster than eager end to end, and no slower than the
    best of ONNX Runtime and OpenVINO (None when those were not measured). A C++ path whose
    median is within the noise of the best alternative's counts as no slower (a tie:
    ``cpp_vs_alternative`` says "tie", "faster" or "slower")."""
    rows = headline(results, model)
    eager = _best(rows, ["eager"])
    cpp = _best(rows, ["cpp_torchscript", "cpp_aotinductor"])
    other = _best(rows, ["onnxruntime", "openvino"])
    speedup = None if eager is None or cpp is None else round(eager.median_ms / cpp.median_ms, 2)
    versus = None if other is None or cpp is None else round(other.median_ms / cpp.median_ms, 2)
    verdict = None
    if versus is not None:
        if cpp.median_ms <= other.median_ms:
            verdict = "tie" if within_noise(cpp, other) else "faster"
        else:
            verdict = "tie" if within_noise(other, cpp) else "slower"
    return {
        "model": model,
        "best_cpp": None if cpp is None else cpp.runtime,
        "speedup_vs_eager": speedup,
        "faster_than_eager_1.3x": None if speedup is None else bool(speedup >= 1.3),
        "best_alternative": None if other is None else other.runtime,
        "cpp_vs_best_alternative": versus,
        "cpp_vs_alternative": verdict,
        "no_slower_than_alternatives": None if verdict is None else verdict != "slower",
    }


def variant_label(variant: str) -> str:
    """A tuning.csv variant as chapter 04 shows it: the options named as options."""
    return variant.replace("(torch's default; before)", "(torch's default)").replace(
        "profiling executor (before)", "profiling executor"
    )
