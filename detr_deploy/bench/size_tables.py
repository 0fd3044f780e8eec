"""sizes.csv and models.csv of a run: what each runtime installs, and the models' parameter counts.

sizes.csv rows, by category: ``package`` (installed distributions: torch and everything pip
installs for it, and the alternatives), ``package_group`` (sums), ``torch_lib`` (torch/lib by
library), ``runtime_folder`` (the slim folder of :mod:`detr_deploy.native.runtime_folder`),
``strip`` (what stripping each library saves), ``artefact`` (what this run exported) and
``deployment`` (what a service installs per runtime). A CPU-only torch wheel, where one is found
(:func:`detr_deploy.bench.sizes.find_cpu_torch_wheel`), adds a ``package``, a ``package_group``
and a ``deployment`` row named after its version; without one the run records why it is missing.
The measuring tools are in :mod:`detr_deploy.bench.sizes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple

from detr_deploy.bench import sizes as size_tools
from detr_deploy.bench.artefacts import Artefacts
from detr_deploy.bench.runtimes import RUNTIMES
from detr_deploy.bench.settings import CACHE_DIR, demo_model
from detr_deploy.paths import MODELS_DIR, relative

if TYPE_CHECKING:
    from detr_deploy.bench.record import Record

__all__ = ["size_rows", "model_rows"]


def size_rows(record: "Record", artefacts: Artefacts, models: Dict[str, object]) -> Tuple[List[dict], List[dict]]:
    """sizes.csv and models.csv rows (see the module docstring); ``models``: the run's built models by name."""
    import torch

    rows: List[dict] = []

    def add(category, item, size, note=""):
        rows.append({"category": category, "item": item, "bytes": int(size), "note": note})

    # 1. installed packages: what `pip install torch` brings, and the alternatives
    record.step("sizes: installed packages")
    closure = size_tools.requirement_closure("torch")
    cuda = [name for name in closure if name.startswith(("nvidia-", "cuda-", "triton"))]
    for name in closure + ["torchvision", "numpy", "pillow", "opencv-python-headless", "onnxruntime", "openvino"]:
        size = size_tools.optional_distribution_size(name)
        if size is None:
            add("package", name, 0, "not installed here")
        else:
            note = (
                "CUDA, pulled in by the default torch wheel"
                if name in cuda
                else ("pulled in by torch" if name in closure and name != "torch" else "")
            )
            add("package", name, size, note)
    sizes_by_name = {row["item"]: row["bytes"] for row in rows if row["category"] == "package"}
    add("package_group", "torch with everything pip installs for it", sum(sizes_by_name[n] for n in closure))
    add("package_group", "of which CUDA libraries (nvidia-*, cuda-*, triton)", sum(sizes_by_name[n] for n in cuda))

    # 2. torch/lib by library
    torch_lib = Path(torch.__file__).parent / "lib"
    for name, size in size_tools.library_sizes(torch_lib).items():
        add("torch_lib", name, size)
    add("package_group", "torch/lib total", size_tools.tree_size(torch_lib))

    # 3. the slim runtime folder, unstripped, and what stripping each library saves
    record.step("sizes: runtime folder + strip")
    folder_bytes = None
    try:
        from detr_deploy.native import runtime_folder

        demo_pt = MODELS_DIR / "demo.pt"
        folder = runtime_folder.assemble(CACHE_DIR / "runtime", demo_pt, strip=False, quiet=True)
        for name, size in folder.files.items():
            add("runtime_folder", name, size, "unstripped copy")
        folder_bytes = folder.total_bytes
        add("package_group", "runtime folder (module + libtorch libraries it needs + demo model)", folder_bytes)
        libraries = [folder.path / "lib" / name for name in folder.libraries] + [folder.module]
        stripped_total = 0
        for name, (before, after) in size_tools.strip_savings(libraries).items():
            add("strip", name, before - after, f"strip --strip-unneeded: {before} -> {after} bytes")
            stripped_total += before - after
        add("package_group", "runtime folder, libraries stripped", folder_bytes - stripped_total)
        needed = set(folder.libraries)
        unused = sum(size for name, size in size_tools.library_sizes(torch_lib).items() if name not in needed)
        add("package_group", "torch/lib libraries the module does not need", unused)
        cuda_needed = sum(
            info["size_bytes"] for name, info in folder.libraries.items() if name.startswith(("libcu", "libnv"))
        )
        add(
            "package_group",
            "CUDA libraries in the runtime folder (linked by the CUDA build of libtorch_cpu)",
            cuda_needed,
            "a CPU-only torch build would not need them",
        )
    except Exception as error:  # no compiler, no strip: record and go on
        record.skip("runtime_folder", "demo", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")

    # 4. artefacts: whatever this run exported
    for (kind, model_name, size), path in sorted(artefacts.made.items(), key=lambda item: str(item[0])):
        measured = size_tools.tree_size(path.parent) - size_tools.tree_size(path.parent / "done.json")
        add("artefact", f"{model_name} {kind} ({size[0]}x{size[1]})", measured, relative(path).split("/")[-1])

    # 5. what each runtime ships (numpy and Pillow for every Python row)
    common = sizes_by_name.get("numpy", 0) + sizes_by_name.get("pillow", 0)
    for runtime in list(RUNTIMES.values()):
        total, parts = common, ["numpy", "pillow"]
        for item in runtime.ships:
            if item == "runtime_folder":
                if folder_bytes is None:
                    total = None
                    break
                model_files = sum(
                    r["bytes"]
                    for r in rows
                    if r["category"] == "runtime_folder" and r["item"] in ("model.pt", "model.json")
                )
                total += folder_bytes - model_files - sum(r["bytes"] for r in rows if r["category"] == "strip")
                parts.append("runtime folder (stripped, model excluded like every row)")
            elif item == "torch":
                total += sum(sizes_by_name[n] for n in closure)
                parts.append("torch + its dependencies")
            else:
                if not sizes_by_name.get(item):
                    total = None
                    break
                total += sizes_by_name[item]
                parts.append(item)
        if total is not None:
            add("deployment", runtime.name, total, " + ".join(parts))

    # 6. the CPU-only torch wheel, installed in a scratch folder (where one is at hand): the
    # default wheel above is a CUDA build, so every size comparison also has this row
    record.step("sizes: CPU-only torch wheel")
    cpu_rows, reason = size_tools.cpu_torch_wheel_rows(sizes_by_name, timed_torch=torch.__version__.split("+")[0])
    if reason is not None:
        record.skip("cpu_torch_wheel", "-", reason)
    rows += cpu_rows

    # models.csv
    record.step("sizes: model table")
    models_table = model_rows(models)
    record.progress.update(1)
    return rows, models_table


def model_rows(models: Dict[str, object]) -> List[dict]:
    """models.csv: DETR variants and other detectors counted here, EfficientDet cited."""
    import torch
    import torchvision.models.detection as detection

    from detr_deploy.model.detr import detr_resnet50, detr_resnet50_dc5, detr_resnet101

    rows = []
    untrained = dict(weights=None, weights_backbone=None)
    builders = {
        "DETR-R50": lambda: models.get("detr_resnet50") or detr_resnet50(seed=0),
        "DETR-R101": lambda: detr_resnet101(seed=0),
        "DETR-R50-DC5": lambda: detr_resnet50_dc5(seed=0),
        "demo (this repository)": lambda: models.get("demo") or demo_model(),
        "Faster R-CNN R50-FPN (torchvision)": lambda: detection.fasterrcnn_resnet50_fpn(**untrained),
        "RetinaNet R50-FPN (torchvision)": lambda: detection.retinanet_resnet50_fpn(**untrained),
        "SSDlite320 MobileNetV3-L (torchvision)": lambda: detection.ssdlite320_mobilenet_v3_large(**untrained),
    }
    torch.manual_seed(0)
    for name, build in builders.items():
        model = build()
        source = "counted (random weights)" if "demo" not in name else "counted"
        rows.append(size_tools.model_size_row(name, model, source))
        del model
    return rows + size_tools.cited_rows()
