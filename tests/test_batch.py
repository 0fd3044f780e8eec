"""Batch detection on Ray (``python -m detr_deploy.batch``) and the cluster manifests of pic2card_notes/k8s.

One local Ray cluster serves the whole module (started by the first test that needs it, shut down at the
end). The Ray runs must give the serial C++ detector's detections bit for bit (same thread count, same
sums), resume from an interrupted results file, turn unreadable images into error lines and read list
files. Without Ray the command says how to install it; the Ray tests are skipped then.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from detr_deploy.batch.cli import build_parser, main
from detr_deploy.batch.inputs import InputError, resolve_inputs
from detr_deploy.images import read_image
from detr_deploy.paths import MODELS_DIR, REPO_ROOT, SAMPLES_DIR

from torch_free import BLOCK_TORCH

SAMPLES = SAMPLES_DIR / "images"
SAMPLE_PATHS = sorted(os.path.abspath(path) for path in SAMPLES.glob("*.jpg"))
MODEL = MODELS_DIR / "demo.pt"
K8S_DIR = REPO_ROOT / "pic2card_notes" / "k8s"
RAY_INSTALLED = importlib.util.find_spec("ray") is not None
# Ray Data reads its own deprecated settings when it copies its context
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
needs_ray = pytest.mark.skipif(
    not RAY_INSTALLED, reason="Ray is an optional extra, not installed: pip install -r requirements-scale.txt"
)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from detr_deploy.batch.pipeline import start_ray

    started = start_ray()
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def serial_detections(detr_cpp):
    """source -> (image shape, Detector.detect's output), one image after the other, one thread like each actor."""
    import torch

    threads = torch.get_num_threads()
    try:
        detector = detr_cpp.Detector(str(MODEL), num_threads=1)  # process-wide: restored below
        class_names = list(detector.class_names)
        results = {}
        for path in SAMPLE_PATHS:
            image = read_image(path)
            results[path] = (image.shape, detector.detect(image))
        return results, class_names
    finally:
        torch.set_num_threads(threads)


def run_batch(capsys, *arguments) -> str:
    """Run the command in this process (it joins the module's Ray session); returns its summary line."""
    assert main([str(argument) for argument in arguments] + ["--no-progress"]) == 0
    return capsys.readouterr().out.strip()


def read_records(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_ray
def test_two_actors_give_the_serial_detections_exactly(ray_session, serial_detections, tmp_path, capsys):
    expected, class_names = serial_detections
    out = tmp_path / "results.jsonl"
    summary = run_batch(capsys, SAMPLES, "--out", out, "--actors", 2, "--threads-per-actor", 1, "--batch-size", 2)
    assert summary.startswith("images 8, errors 0, skipped 0, ")
    assert "images/s" in summary
    records = read_records(out)
    assert sorted(record["source"] for record in records) == SAMPLE_PATHS
    found = 0
    for record in records:
        shape, detections = expected[record["source"]]
        assert (record["height"], record["width"]) == shape[:2]
        boxes = np.array([d["box"] for d in record["detections"]], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d["score"] for d in record["detections"]], dtype=np.float32)
        labels = np.array([d["label"] for d in record["detections"]], dtype=np.int64)
        np.testing.assert_array_equal(boxes, detections["boxes"])
        np.testing.assert_array_equal(scores, detections["scores"])
        np.testing.assert_array_equal(labels, detections["labels"])
        assert [d["class_name"] for d in record["detections"]] == [class_names[label] for label in labels]
        found += len(labels)
    assert found > 0  # the demo model finds elements on its sample cards


@needs_ray
def test_a_rerun_skips_what_is_done_and_appends(ray_session, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    done = [{"source": path, "width": 1, "height": 1, "detections": []} for path in SAMPLE_PATHS[:3]]
    kept = "".join(json.dumps(record) + "\n" for record in done)
    out.write_text(kept + '{"source": "' + SAMPLE_PATHS[3] + '", "wid')  # an interrupted run's last line
    assert run_batch(capsys, SAMPLES, "--out", out, "--actors", 1).startswith("images 5, errors 0, skipped 3, ")
    text = out.read_text()
    assert text.startswith(kept)  # appended, the earlier lines untouched
    records = read_records(out)
    assert sorted(record["source"] for record in records) == SAMPLE_PATHS  # each once, the cut-off one redone
    assert run_batch(capsys, SAMPLES, "--out", out).startswith("images 0, errors 0, skipped 8, ")
    assert out.read_text() == text


@needs_ray
def test_a_list_file_and_unreadable_images_give_error_lines(ray_session, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "cards.txt"
    listing.write_text(f"# cards to run\n\n{SAMPLE_PATHS[0]}\n../images/broken.jpg\nmissing.png\n")
    summary = run_batch(capsys, listing, "--out", tmp_path / "results.jsonl", "--actors", 1)
    assert summary.startswith("images 3, errors 2, skipped 0, ")
    records: Dict[str, dict] = {record["source"]: record for record in read_records(tmp_path / "results.jsonl")}
    assert set(records) == {
        SAMPLE_PATHS[0],
        str(tmp_path / "images" / "broken.jpg"),
        str(tmp_path / "lists" / "missing.png"),
    }
    assert records[SAMPLE_PATHS[0]]["detections"]
    assert set(records[str(tmp_path / "images" / "broken.jpg")]) == {"source", "error"}
    assert "not an image" in records[str(tmp_path / "images" / "broken.jpg")]["error"]
    assert records[str(tmp_path / "lists" / "missing.png")]["error"].startswith("FileNotFoundError")


def test_inputs_are_folders_globs_and_lists_each_image_once(tmp_path):
    assert resolve_inputs([str(SAMPLES)]) == SAMPLE_PATHS  # the annotation files beside them are left out
    pattern = str(SAMPLES / "card_0000[01].*")
    assert resolve_inputs([pattern, SAMPLE_PATHS[0]]) == SAMPLE_PATHS[:2]
    with pytest.raises(InputError, match="no such file or folder"):
        resolve_inputs([str(tmp_path / "nowhere")])
    with pytest.raises(InputError, match="matches no image files"):
        resolve_inputs([str(tmp_path / "*.png")])
    with pytest.raises(InputError, match="neither an image nor a list"):
        resolve_inputs([str(SAMPLES / "card_00000.xml")])


@needs_ray
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{tmp}/nowhere"], "no such file or folder"),
        (["{tmp}/empty"], "no input images"),
        (["{samples}", "--actors", "0"], "expected a positive integer"),
        (["{samples}", "--score-threshold", "1.5"], "expected a number in [0, 1)"),
        (["{samples}", "--actors", "512"], "needs more CPUs than the local cluster has"),
        (["{samples}", "--model", "{tmp}/missing.pt"], "no such file"),
        (["{samples}", "--model", "{tmp}/empty"], "no such file"),
        (["{samples}", "--model", "{samples}/card_00000.xml"], "not a TorchScript artefact"),
        (["{samples}", "--out", "{tmp}/no/folder.jsonl"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_an_error_line(arguments, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "empty").mkdir()
    arguments = [argument.format(tmp=tmp_path, samples=SAMPLES) for argument in arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "results.jsonl")]
    with pytest.raises(SystemExit) as exit:
        main(arguments)
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "error: " in error and message in error
    assert not (tmp_path / "results.jsonl").exists()


# the same import blocker, for Ray
BLOCK_RAY = BLOCK_TORCH.replace("NoTorch", "NoRay").replace("torch", "ray")


def test_without_ray_the_package_imports_and_the_command_says_how_to_install(tmp_path):
    modules = sorted(
        "detr_deploy.batch" + ("" if path.stem == "__init__" else "." + path.stem)
        for path in (REPO_ROOT / "detr_deploy" / "batch").glob("*.py")
        if path.stem != "__main__"
    )
    script = (
        BLOCK_TORCH
        + BLOCK_RAY
        + "import importlib, runpy\n"
        + f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        + f"sys.argv = ['detr_deploy.batch', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'out.jsonl')!r}]\n"
        + "runpy.run_module('detr_deploy.batch', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error: Ray is not installed" in result.stderr
    assert "pip install -r requirements-scale.txt" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_what_an_actor_runs_needs_no_torch():
    script = (
        BLOCK_TORCH
        + "from detr_deploy.batch.predictor import DetectionPredictor, DetectorSettings\n"
        + f"predictor = DetectionPredictor(DetectorSettings({str(MODEL)!r}, num_threads=1))\n"
        + f"result = predictor({{'source': [{SAMPLE_PATHS[0]!r}]}})\n"
        + "assert not result['failed'][0], result\n"
        + "print(result['line'][0])\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == SAMPLE_PATHS[0]


def scale_pins() -> List[str]:
    lines = (REPO_ROOT / "requirements-scale.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_scale_extra_pins_what_requirements_scale_pins():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["scale"] == scale_pins()
    assert scale_pins()[0].startswith("ray[data]==")


# --- the manifests of pic2card_notes/k8s -------------------------------------------------------------------


def load_manifests() -> Dict[str, dict]:
    """kind -> the one document of that kind across pic2card_notes/k8s/*.yaml."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests")
    documents = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in documents, f"{path.name}: a second {document['kind']}"
            for key in ("apiVersion", "kind", "metadata", "spec"):
                assert key in document, f"{path.name}: {document.get('kind')} without {key}"
            assert document["metadata"]["name"], path.name
            documents[document["kind"]] = document
    return documents


def check_pod_template(template: dict) -> List[dict]:
    containers = template["spec"]["containers"]
    assert containers and all(container["name"] and container["image"] for container in containers)
    return containers


def cpus(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_the_manifests_have_what_their_resources_require():
    manifests = load_manifests()
    assert {"RayJob", "InferenceService", "Deployment", "Service", "HorizontalPodAutoscaler"} <= set(manifests)
    assert manifests["RayJob"]["apiVersion"] == "ray.io/v1"
    assert manifests["InferenceService"]["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifests["Deployment"]["apiVersion"] == "apps/v1"
    assert manifests["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


def test_the_rayjob_runs_this_command_on_a_cluster_of_this_ray():
    job = load_manifests()["RayJob"]["spec"]
    cluster = job["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    check_pod_template(head["template"])
    assert head["rayStartParams"].get("num-cpus") == "0"  # actors run on workers, the head keeps the driver
    worker_cpus = 0.0
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = check_pod_template(group["template"])
        assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]
        worker_cpus += group["replicas"] * cpus(container["resources"]["limits"]["cpu"])
    ray_version = scale_pins()[0].split("==")[1]
    assert cluster["rayVersion"] == ray_version
    for template in [head["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]:
        assert f":{ray_version}-" in template["spec"]["containers"][0]["image"]  # built FROM rayproject/ray
    command = shlex.split(job["entrypoint"])
    assert command[:3] == ["python", "-m", "detr_deploy.batch"]
    args = build_parser().parse_args(command[3:])  # the flags exist and parse
    assert args.actors * args.threads_per_actor <= worker_cpus


def test_the_inference_service_serves_the_model_repository_over_kserve_v2():
    predictor = load_manifests()["InferenceService"]["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "triton"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]


def test_the_embedded_service_deployment_sits_behind_a_service_and_an_autoscaler():
    from detr_deploy.serve.settings import ENVIRONMENT_VARIABLES

    manifests = load_manifests()
    deployment, service, autoscaler = (manifests[kind] for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = check_pod_template(deployment["spec"]["template"])
    assert {variable["name"] for variable in container["env"]} <= set(ENVIRONMENT_VARIABLES)
    ports = {port["containerPort"] for port in container["ports"]}
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]


def test_throughput_rows_hold_median_and_range_of_each_rate():
    from detr_deploy.batch.results import Summary
    from detr_deploy.batch.throughput import csv_row, machine_description

    # 10 images in 2 s with the first 2 after 0.5 s: 5 images/s end to end, 8 / 1.5 s steady
    runs = [
        Summary(images=10, seconds=seconds, first_result_seconds=0.5, first_batch_images=2) for seconds in (2, 4, 1)
    ]
    row = csv_row("ray", 2, 1, runs, True)
    assert (row["images_per_s_median"], row["images_per_s_min"], row["images_per_s_max"]) == (5.0, 2.5, 10.0)
    assert row["steady_images_per_s_median"] == round(8 / 1.5, 3) and row["first_result_s_max"] == 0.5
    assert row["runs"] == 3 and row["same_as_serial"] is True
    assert csv_row("serial", 0, 1, runs[:1], None)["same_as_serial"] == ""
    machine = machine_description()
    assert machine["cpus"] >= 1 and set(machine["vector_isa"]) <= {"avx2", "avx512f", "avx512_vnni", "amx_tile"}
