"""The README's headline numbers are generated from the committed benchmark run."""

import csv
import json

import pytest

from detr_deploy.bench import readme

LATENCY_FIELDS = ["model", "runtime", "label", "height", "width", "threads", "batch", "median_ms", "ratio_to_eager"]


def _write_run(folder, latency_rows, deployment):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.json").write_text(
        json.dumps(
            {
                "command": "python -m detr_deploy.bench",
                "created": "2026-01-01 00:00:00 UTC",
                "machine": {"cpu": "Test CPU", "usable_cores": 2, "versions": {"torch": "9.9"}},
            }
        )
    )
    with (folder / "latency.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, LATENCY_FIELDS)
        writer.writeheader()
        writer.writerows(latency_rows)
    with (folder / "sizes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "item", "bytes", "note"])
        for runtime, size in deployment.items():
            writer.writerow(["deployment", runtime, size, ""])


def _row(runtime, height, width, threads, batch, median):
    return {
        "model": "demo",
        "runtime": runtime,
        "label": runtime.upper(),
        "height": height,
        "width": width,
        "threads": threads,
        "batch": batch,
        "median_ms": median,
        "ratio_to_eager": 100.0 / median,
    }


def test_committed_readme_matches_committed_benchmark_run():
    assert readme.main(["--check"]) == 0, "run: python -m detr_deploy.bench.readme"


def test_headline_picks_largest_input_most_threads_batch_one_sorted_by_latency(tmp_path):
    rows = [
        _row("eager", 800, 1066, 2, 1, 100.0),
        _row("fast", 800, 1066, 2, 1, 50.0),
        _row("fast", 384, 512, 2, 1, 5.0),  # smaller input: left out
        _row("fast", 800, 1066, 1, 1, 70.0),  # fewer threads: left out
        _row("fast", 800, 1066, 2, 4, 40.0),  # batch 4: left out
    ]
    _write_run(tmp_path, rows, {"eager": 5_000_000_000, "fast": 250_000_000})
    block = readme.headline_markdown(tmp_path)
    table = [line for line in block.splitlines() if line.startswith("| ") and "ms |" in line]
    assert table == [
        "| FAST | 50 ms | 2.00x | 250 MB |",
        "| EAGER | 100 ms | 1.00x | 5,000 MB |",
    ]
    assert "800x1066 input, 2 threads" in block and "Test CPU" in block


def test_headline_prefers_the_sweep_size_when_the_run_names_it(tmp_path):
    rows = [
        _row("eager", 800, 1066, 2, 1, 100.0),
        _row("eager", 512, 683, 2, 1, 40.0),
        _row("fast", 512, 683, 2, 1, 20.0),
    ]
    _write_run(tmp_path, rows, {})
    run = json.loads((tmp_path / "benchmark.json").read_text())
    (tmp_path / "benchmark.json").write_text(json.dumps({**run, "settings": {"sweep_size": [512, 683]}}))
    block = readme.headline_markdown(tmp_path)
    assert "512x683 input" in block and "| FAST | 20 ms | 5.00x | n/a |" in block


def test_replace_block_needs_markers():
    with pytest.raises(ValueError, match="markers"):
        readme.replace_block("no markers here", "x")
    text = f"a\n{readme.START_MARKER}\nold\n{readme.END_MARKER}\nb"
    assert readme.replace_block(text, "new\n") == f"a\n{readme.START_MARKER}\nnew\n{readme.END_MARKER}\nb"


def test_readme_quotes_the_recorded_quality_of_the_demo_model():
    """The README's demo-model paragraph gives both recorded numbers: synthetic held-out and real cards."""
    from detr_deploy.paths import MODELS_DIR, REPO_ROOT

    metrics = json.loads((MODELS_DIR / "demo_metrics.json").read_text())
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## The demo model") :]
    section = section[: section.index("\n## ", 1)]
    for quoted in (metrics["heldout"]["map50"], metrics["real_val"]["map50"]):
        assert f"{quoted:.3f}" in section, (quoted, section)
