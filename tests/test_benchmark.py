"""The measurement helpers of chapter 04: FLOP counting, size accounting, statistics, the
artefact cache's key, cold-start children, and tiny end-to-end runs of the benchmark. No test
asserts a speed: timings depend on the machine."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from detr_deploy.bench import artefacts, coldstart, sizes, tuning
from detr_deploy.bench.artefacts import Artefacts
from detr_deploy.bench.flops import conv2d_flops, count_flops, detr_flops, gemm_peak_gflops, linear_flops
from detr_deploy.bench.inputs import decode, make_image
from detr_deploy.bench.report import (
    CAVEATS,
    decision_table,
    goals,
    load_results,
    markdown_table,
    tie_group,
    variant_label,
    within_noise,
)
from detr_deploy.bench.run import add_ratios, machine_info, run_benchmark
from detr_deploy.bench.runtimes import RUNTIMES, Context
from detr_deploy.bench.settings import MODELS, ModelSpec, Settings
from detr_deploy.bench.timing import summarise
from detr_deploy.model.detr import detr_small
from detr_deploy.paths import MODELS_DIR, REPO_ROOT

from torch_free import BLOCK_TORCH

# ---------------------------------------------------------------------------- FLOPs


def test_conv_and_linear_flops_match_the_hand_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    # conv: 2 FLOPs x batch 2 x 8 out channels x 16x16 outputs x (3 channels x 3x3 taps) = 221184
    # linear: 2 FLOPs x 2 rows x 2048 inputs x 10 outputs = 81920
    assert conv2d_flops(3, 8, (3, 3), (16, 16), batch=2) == 221_184
    assert linear_flops(2048, 10, rows=2) == 81_920
    total, per_op = count_flops(model, torch.zeros(2, 3, 32, 32), by_operator=True)
    assert total == 221_184 + 81_920
    assert per_op == {"convolution": 221_184, "addmm": 81_920}


def test_grouped_conv_hand_count():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    counted = count_flops(conv, torch.zeros(1, 8, 10, 10))
    assert counted == conv2d_flops(8, 8, (3, 3), (10, 10), groups=4) == 2 * 8 * 100 * 2 * 9


def test_attention_flops_are_counted_with_a_padding_mask():
    # CPU attention with a mask runs one fused kernel; it must not count as zero
    attention = nn.MultiheadAttention(64, 8, batch_first=True).eval()
    x = torch.zeros(1, 100, 64)
    mask = torch.zeros(1, 100, dtype=torch.bool)
    projections = 4 * linear_flops(64, 64, rows=100)  # q, k, v in; output out
    scores_and_mixing = 2 * (2 * 8 * 100 * 100 * 8)  # per head: QK^T and AV, head dim 8
    counted = count_flops(lambda t: attention(t, t, t, key_padding_mask=mask, need_weights=False), x)
    assert counted == projections + scores_and_mixing


def test_detr_flops_on_meta_equals_counting_on_real_tensors():
    model = detr_small(seed=0)
    real = count_flops(model, torch.zeros(1, 3, 96, 128))
    assert detr_flops(model, 96, 128) == real > 0
    assert detr_flops(model, 96, 128, batch=2) == 2 * real


def test_gemm_peak_is_a_positive_rate_and_restores_threads():
    before = torch.get_num_threads()
    rate = gemm_peak_gflops(threads=1, size=128, repeats=2, min_seconds=0.01)
    assert math.isfinite(rate) and rate > 0
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------- sizes


def _write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_tree_size_counts_files_once_and_ignores_symlinks(tmp_path):
    _write(tmp_path / "a.bin", 1000)
    _write(tmp_path / "sub" / "b.bin", 2345)
    os.link(tmp_path / "a.bin", tmp_path / "sub" / "a_hardlink.bin")  # same inode: counted once
    os.symlink(tmp_path / "sub" / "b.bin", tmp_path / "b_link.bin")  # a link: its target counts where it is
    assert sizes.tree_size(tmp_path) == 3345
    assert sizes.tree_size(tmp_path / "a.bin") == 1000
    assert sizes.files_size([tmp_path / "a.bin", tmp_path / "missing.bin"]) == 1000
    with pytest.raises(FileNotFoundError, match="no such file"):
        sizes.tree_size(tmp_path / "nothing")


def test_library_sizes_largest_first(tmp_path):
    _write(tmp_path / "libsmall.so", 10)
    _write(tmp_path / "libbig.so", 300)
    _write(tmp_path / "nested" / "libignored.so", 999)  # only files directly in the folder
    assert list(sizes.library_sizes(tmp_path).items()) == [("libbig.so", 300), ("libsmall.so", 10)]


def _fake_distribution(site: Path, name: str, files: dict, requires=()) -> None:
    """A minimal installed distribution: files + .dist-info with METADATA and RECORD."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    record = []
    for relative, size in files.items():
        _write(site / relative, size)
        record.append(f"{relative},,{size}")
    record += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_distribution_size_and_requirement_closure(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _fake_distribution(
        site,
        "fake-top",
        {"fake_top/__init__.py": 100, "fake_top/lib.so": 5000},
        requires=["fake-mid[gpu]", 'fake-never; extra == "other"', "fake-absent"],
    )
    _fake_distribution(site, "fake-mid", {"fake_mid/core.py": 700}, requires=['fake-leaf; extra == "gpu"'])
    _fake_distribution(site, "fake-leaf", {"fake_leaf/blob.bin": 12345})
    _fake_distribution(site, "fake-never", {"fake_never/x.py": 1})
    monkeypatch.syspath_prepend(str(site))
    metadata_bytes = lambda name: sum(  # noqa: E731
        p.stat().st_size for p in (site / f"{name}-1.0.dist-info").iterdir()
    )
    assert sizes.distribution_size("fake-leaf") == 12345 + metadata_bytes("fake_leaf")
    assert sizes.distribution_size("fake-top") == 5100 + metadata_bytes("fake_top")
    # the extra [gpu] is followed, the "other" extra is not, a missing requirement is skipped
    assert sizes.requirement_closure("fake-top") == ["fake-top", "fake-mid", "fake-leaf"]
    assert sizes.optional_distribution_size("fake-absent") is None
    with pytest.raises(Exception, match="not installed"):
        sizes.distribution_size("fake-absent")


@pytest.mark.skipif(shutil.which("strip") is None or shutil.which("cc") is None, reason="needs strip and a C compiler")
def test_strip_savings_measures_a_copy(tmp_path):
    import subprocess

    source = tmp_path / "hello.c"
    source.write_text("int helper(int x) { return x + 1; }\nint main(void) { return helper(-1); }\n")
    binary = tmp_path / "hello"
    subprocess.run(["cc", "-g", "-o", str(binary), str(source)], check=True)
    before = binary.stat().st_size
    ((name, (measured_before, after)),) = sizes.strip_savings([binary]).items()
    assert name == "hello" and measured_before == before
    assert 0 < after < before  # debug info and symbols gone from the copy
    assert binary.stat().st_size == before  # the original is untouched


def test_model_size_row_counts_parameters_and_bytes():
    row = sizes.model_size_row("tiny", nn.Linear(10, 5))
    assert row["params"] == 55
    assert (row["fp16_bytes"], row["fp32_bytes"], row["fp64_bytes"]) == (110, 220, 440)


def test_efficientdet_rows_are_cited():
    rows = sizes.cited_rows()
    assert [row["model"] for row in rows] == [f"EfficientDet-D{i}" for i in range(8)]
    assert all(row["source"].startswith("cited: Tan, Pang, Le") for row in rows)
    assert rows[0]["params"] == 3_900_000 and rows[0]["fp32_bytes"] == 15_600_000


def _fake_wheel(folder: Path, name: str, version: str, requires=(), payload: int = 3000) -> Path:
    """A pure-Python wheel with one module of ``payload`` bytes (pip installs it offline)."""
    import zipfile

    package = name.replace("-", "_")
    info = f"{package}-{version}.dist-info"
    files = {
        f"{package}_payload/__init__.py": "x = 1\n" + "#" * payload + "\n",
        f"{info}/METADATA": "\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
            + [f"Requires-Dist: {requirement}" for requirement in requires]
        )
        + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    wheel = folder / f"{package}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_cpu_wheel_rows_measure_the_installed_wheel(tmp_path):
    wheel = _fake_wheel(tmp_path, "faketorch", "9.9.0+cpu", requires=["packaging", 'absent-extra; extra == "x"'])
    assert sizes.wheel_version(wheel) == "9.9.0+cpu"
    assert sizes.wheel_requirements(wheel) == ["packaging"]  # the extra's requirement is not followed
    installed = sizes.installed_wheel_size(wheel)
    assert installed > 3000  # the module, its compiled copy and the dist-info
    rows, reason = sizes.cpu_torch_wheel_rows({"packaging": 700, "numpy": 10, "pillow": 5}, wheel=wheel)
    assert reason is None
    by_category = {row["category"]: row for row in rows}
    assert by_category["package"]["item"] == "torch 9.9.0+cpu (CPU-only wheel), installed"  # named as torch
    assert by_category["package"]["bytes"] == installed
    assert by_category["package_group"]["bytes"] == installed + 700  # packaging at the size given
    assert by_category["deployment"]["bytes"] == installed + 700 + 15  # + numpy + pillow


def test_cpu_wheel_rows_say_why_when_there_is_no_wheel(tmp_path, monkeypatch):
    monkeypatch.delenv(sizes.CPU_WHEEL_ENV, raising=False)
    monkeypatch.setattr(sizes, "CPU_WHEEL_DIRS", (tmp_path,))
    assert sizes.find_cpu_torch_wheel() is None
    rows, reason = sizes.cpu_torch_wheel_rows({})
    assert rows == [] and "no CPU-only torch wheel" in reason and str(tmp_path) in reason


# ---------------------------------------------------------------------------- the decision table


def _hand_made_results():
    """Five runtimes at one size; the expected verdicts are worked out by hand in the test."""
    import pandas as pd

    latency = pd.DataFrame(
        [
            {"model": "m", "runtime": name, "height": 8, "width": 8, "threads": 2, "batch": 1}
            | {"median_ms": median, "p90_ms": p90, "includes_decode": name != "cli"}
            for name, median, p90 in [
                ("eager", 100.0, 105.0),  # noise band 5%
                ("torchscript", 104.0, 106.0),  # 1.9%
                ("openvino", 109.0, 120.0),  # 10.1%
                ("onnxruntime", 125.0, 126.0),  # 0.8%
                ("cli", 90.0, 91.0),  # fastest, but it does not decode: never compared
            ]
        ]
    )
    shipped = {"eager": 5_000e6, "torchscript": 4_900e6, "openvino": 280e6, "onnxruntime": 170e6}
    sizes_table = pd.DataFrame(
        [{"category": "deployment", "item": name, "bytes": int(size), "note": ""} for name, size in shipped.items()]
    )
    runtimes = {
        "eager": {"torch_in_python": True, "cpp_api": False},
        "torchscript": {"torch_in_python": True, "cpp_api": False},
        "openvino": {"torch_in_python": False, "cpp_api": True},
        "onnxruntime": {"torch_in_python": False, "cpp_api": True},
        "cli": {"torch_in_python": False, "cpp_api": True},
    }
    info = {"settings": {"sweep_size": [8, 8], "threads": [1, 2]}, "runtimes": runtimes}
    return {"info": info, "latency": latency, "sizes": sizes_table}


def test_decision_table_calls_a_margin_inside_the_noise_a_tie():
    table = decision_table(_hand_made_results(), "m").set_index("goal")
    # eager 100 is fastest; torchscript 104 <= 100 x 1.05 (eager's band) ties; openvino 109 <=
    # 100 x 1.101 ties through its own band; onnxruntime 125 is outside both bands
    latency = table.loc["lowest latency"]
    assert latency.verdict == "tie: eager, torchscript, openvino"
    assert (latency.winner, latency.runner_up, latency.margin, latency.noise) == ("eager", "torchscript", 1.04, 1.05)
    # without torch: openvino 109 against onnxruntime 125 = 1.15x, more than openvino's 10.1%: a winner
    no_torch = table.loc["no torch in Python"]
    assert (no_torch.verdict, no_torch.margin, no_torch.noise) == ("openvino", 1.15, 1.1)
    assert table.loc["C++ application", "verdict"] == "openvino"  # cli does not decode: left out
    # sizes are exact: the smaller wins at any margin, and no noise applies
    image = table.loc["smallest image"]
    assert (image.verdict, image.runner_up, image.margin, image.noise) == ("onnxruntime", "openvino", 1.65, 1.0)
    # the caveats travel with the rows that name the runtime
    assert CAVEATS["openvino"] in latency.caveats and CAVEATS["openvino"] in image.caveats
    assert "cpp_aotinductor" not in latency.caveats


def test_within_noise_uses_the_larger_band_of_the_two():
    fast = {"median_ms": 100.0, "p90_ms": 101.0}  # 1%
    assert within_noise(fast, {"median_ms": 101.0, "p90_ms": 101.0})  # 1.01 <= 1%
    assert not within_noise(fast, {"median_ms": 103.0, "p90_ms": 104.0})  # 1.03 > max(1%, 0.97%)
    assert within_noise(fast, {"median_ms": 103.0, "p90_ms": 110.0})  # its own band, 6.8%, covers it
    assert within_noise(fast, {"median_ms": 100.0, "p90_ms": float("nan")})  # equal medians always tie


def test_tie_group_and_goals_on_the_hand_made_table():
    results = _hand_made_results()
    rows = results["latency"]
    assert tie_group(rows[rows.runtime.isin(["openvino", "onnxruntime"])]) == ["openvino"]
    assert tie_group(rows.iloc[:0]) == []
    # the goals' C++ path: none in this table, so its comparisons are None
    assert goals(results, "m")["cpp_vs_alternative"] is None


def test_goals_count_a_cpp_path_inside_the_noise_as_no_slower():
    results = _hand_made_results()
    results["latency"].loc[results["latency"].runtime == "torchscript", "runtime"] = "cpp_torchscript"
    # cpp_torchscript 104 (1.9%) against openvino 109 (10.1%): faster by 1.05x, inside the noise
    result = goals(results, "m")
    assert (result["best_cpp"], result["best_alternative"], result["cpp_vs_alternative"]) == (
        "cpp_torchscript",
        "openvino",
        "tie",
    )
    assert result["no_slower_than_alternatives"] is True


def test_markdown_table_and_variant_labels():
    import pandas as pd

    frame = pd.DataFrame([{"a": "x|y", "b": None}, {"a": 1.5, "b": float("nan")}])
    assert markdown_table(frame).splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | - |", "| 1.5 | - |"]
    assert variant_label("C++ module: profiling executor (torch's default; before)") == (
        "C++ module: profiling executor (torch's default)"
    )
    assert variant_label("C++ module: call 1 after loading, profiling executor (before)") == (
        "C++ module: call 1 after loading, profiling executor"
    )


# ---------------------------------------------------------------------------- benchmark helpers


def test_summarise_median_and_p90():
    stats = summarise([0.010, 0.020, 0.030, 0.040, 0.100])
    assert stats["median_ms"] == pytest.approx(30.0)
    assert stats["p90_ms"] == pytest.approx(76.0)  # linear interpolation between 40 and 100
    with pytest.raises(ValueError):
        summarise([])


def test_ratios_are_to_eager_in_the_same_group():
    rows = [{"runtime": "eager", "median_ms": 100.0}, {"runtime": "x", "median_ms": 50.0}]
    add_ratios(rows)
    assert [row["ratio_to_eager"] for row in rows] == [1.0, 2.0]


def test_registry_entries_are_complete():
    assert "eager" in RUNTIMES
    for name, runtime in RUNTIMES.items():
        assert runtime.name == name and runtime.label
        assert runtime.child in coldstart.CHILDREN
        assert runtime.artefact in (None, *artefacts.SUFFIX)
        assert runtime.artefact is None or runtime.artefact in artefacts.EXPORTERS


def test_make_image_has_the_requested_size():
    image = decode(make_image(48, 80))
    assert image.shape == (48, 80, 3) and image.dtype == np.uint8


def test_machine_info_names_the_machine():
    info = machine_info([1, 2])
    assert info["cpu"] and info["logical_cores"] >= 1 and info["threads_used"] == [1, 2]
    assert info["versions"]["torch"] == torch.__version__.split("+")[0]


# ---------------------------------------------------------------------------- the artefact cache's key


@pytest.fixture(scope="module")
def keyed_model():
    model = detr_small(seed=0).eval()
    return ModelSpec("small", lambda: model, 0.5, "random"), model


def test_key_sources_are_the_modules_the_exporter_reaches(keyed_model):
    _, model = keyed_model
    model_modules = {"detr_deploy.model.detr", "detr_deploy.model.pipeline", "detr_deploy.model.box_ops"}
    assert {"detr_deploy.export.torchscript", *model_modules} <= set(Artefacts.sources("torchscript", model))
    assert {"detr_deploy.export.aoti", "detr_deploy.export.program", *model_modules} <= set(
        Artefacts.sources("aoti", model)
    )
    assert {"detr_deploy.export.openvino", "detr_deploy.export.onnx"} <= set(Artefacts.sources("openvino", model))


def test_key_sources_follow_lazy_and_relative_imports():
    module = types.ModuleType("detr_deploy.bench.example")
    module.__package__ = "detr_deploy.bench"
    source = b"import os\n\ndef later():\n    from detr_deploy.model import box_ops\n    from . import timing\n"
    assert set(artefacts._imported_names(module, source)) == {
        "detr_deploy.model",
        "detr_deploy.model.box_ops",
        "detr_deploy.bench",
        "detr_deploy.bench.timing",
    }


def test_key_changes_when_a_source_the_export_runs_changes(keyed_model, monkeypatch, tmp_path):
    spec, model = keyed_model
    cache = Artefacts(cache_dir=tmp_path)
    before = cache.key("torchscript", spec, model, (64, 96))
    assert cache.key("torchscript", spec, model, (64, 96)) == before  # stable while nothing changes
    assert cache.key("torchscript", spec, model, (64, 128)) != before
    read = artefacts.read_source

    def edited(module):
        return read(module) + (b"\n# edited\n" if module.__name__ == "detr_deploy.model.pipeline" else b"")

    monkeypatch.setattr(artefacts, "read_source", edited)
    assert cache.key("torchscript", spec, model, (64, 96)) != before


def test_key_fails_loudly_without_a_source(keyed_model, monkeypatch, tmp_path):
    spec, model = keyed_model
    monkeypatch.setattr(artefacts.inspect, "getsourcefile", lambda module: None)
    with pytest.raises(RuntimeError, match="no source file for detr_deploy"):
        Artefacts(cache_dir=tmp_path).key("torchscript", spec, model, (64, 96))


# ---------------------------------------------------------------------------- child processes


def test_launcher_reports_the_childs_time_and_memory():
    sample = coldstart.spawn([sys.executable, "-c", "print('no timestamps')"])
    assert sample["cold_start_s"] > 0 and sample["peak_rss_mb"] > 1 and sample["torch_imported"] is False
    failed = coldstart.spawn([sys.executable, "-c", "raise SystemExit('refused')"])
    assert failed == {"error": "refused"}


def test_interop_child_times_the_torchscript_row(small_artefact, tmp_path):
    image = tmp_path / "card.jpg"
    image.write_bytes(make_image(64, 96))
    command = [
        sys.executable,
        "-m",
        tuning.MODULE,
        "--interop",
        "1",
        "--threads",
        "1",
        "--model",
        str(small_artefact),
        "--image",
        str(image),
        "--warmup",
        "1",
        "--repeats",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < stats["median_ms"] <= stats["p90_ms"]


# ---------------------------------------------------------------------------- tiny runs


TORCH_FREE = ["cpp_torchscript", "onnxruntime", "openvino"]  # their cold-start children must not import torch
# 64x96, one thread, one round: checks what is written, not how fast
TINY = Settings(
    mode="test",
    models=("demo",),
    sizes=((64, 96),),
    sweep_size=(64, 96),
    threads=(1,),
    batches=(1,),
    repeats=1,
    warmup=1,
    cold_runs=1,
    tuning=False,
    aoti="cached",
)


def test_tiny_run_writes_every_table(tmp_path):
    settings = replace(TINY, batches=(1, 2))
    result = run_benchmark(settings, tmp_path, runtimes=["eager", "torchscript"], cli=False, do_sizes=False)
    tables = load_results(tmp_path)
    latency = tables["latency"]
    assert {
        "model",
        "runtime",
        "height",
        "width",
        "threads",
        "batch",
        "median_ms",
        "p90_ms",
        "ratio_to_eager",
        "fraction_of_peak",
    } <= set(latency.columns)
    assert set(latency["runtime"]) == {"eager", "torchscript"}
    assert set(latency["batch"]) == {1, 2}
    assert (latency.loc[latency.runtime == "eager", "ratio_to_eager"] == 1.0).all()
    cold = tables["coldstart"]
    assert set(cold["runtime"]) == {"eager", "torchscript"} and (cold["peak_rss_mb"] > 50).all()
    assert result["machine"]["threads_used"] == [1]
    assert json.loads((tmp_path / "benchmark.json").read_text())["flops"]["demo"]["64x96"] > 0
    assert tables["sizes"].empty


def test_tiny_tuning_run_has_the_before_rows(tmp_path):
    """Section 5 of chapter 04 reads these rows by name: the profiling-executor "before" row in
    the interleaved group, and the first three calls of a fresh Detector with and without it."""
    settings = replace(TINY, tuning=True, interop=False)
    run_benchmark(settings, tmp_path, runtimes=["eager"], cli=False, do_sizes=False)
    rows = load_results(tmp_path)["tuning"].set_index("variant")
    assert rows.loc["C++ module: profiling executor (torch's default; before)", "interleaved"]
    for name in ("profiling executor (before)", "no profiling executor"):
        first = rows.loc[[f"C++ module: call {call} after loading, {name}" for call in (1, 2, 3)]]
        assert (first.median_ms > 0).all() and (first.runs == 1).all() and not first.interleaved.any()
    assert (rows.median_ms > 0).all()


@pytest.fixture(scope="module")
def torch_free_run(tmp_path_factory):
    """A tiny run of the torch-free runtimes (their exports are cached under build/benchmark)."""
    out = tmp_path_factory.mktemp("torch_free_run")
    return run_benchmark(TINY, out, runtimes=TORCH_FREE, cli=False, do_sizes=False), load_results(out)


def test_torch_free_runtimes_cold_start_without_torch(torch_free_run):
    info, tables = torch_free_run
    assert info["skipped"] == []
    cold = tables["coldstart"].set_index("runtime")
    assert set(cold.index) == {"eager", *TORCH_FREE}
    assert cold.loc["eager", "torch_imported"] and not cold.loc[TORCH_FREE, "torch_imported"].any()
    assert (cold[["interpreter_s", "imports_s", "load_s", "first_detect_s"]] > 0).all().all()


@pytest.mark.parametrize("name", TORCH_FREE)
def test_torch_free_children_run_with_torch_blocked(torch_free_run, name, tmp_path):
    """The benchmark's own command line for the child, run in an interpreter where importing torch fails."""
    spec = MODELS["demo"]
    context = Context(spec, spec.build().eval(), (64, 96), 1, TINY, Artefacts())
    image = tmp_path / "card.jpg"
    image.write_bytes(make_image(64, 96))
    command = coldstart.child_command(context, name, image, MODELS_DIR / "demo_weights.pth")
    assert command[1:3] == ["-m", coldstart.MODULE]
    run_child = f"import runpy\nrunpy.run_module({coldstart.MODULE!r}, run_name='__main__', alter_sys=True)\n"
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + run_child, *command[3:]], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    phases = json.loads(result.stdout.strip().splitlines()[-1])
    assert phases["torch_imported"] is False
    assert phases["started"] <= phases["imported"] <= phases["loaded"] <= phases["first"]
