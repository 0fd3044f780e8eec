"""What tests prepend to a child interpreter's script to prove a code path never imports torch."""

BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this interpreter")
        return None

sys.meta_path.insert(0, NoTorch())
"""

# Runs a C++ Detector on one saved image in an interpreter where torch cannot be imported; prints JSON.
DETECT_WITHOUT_TORCH = (
    BLOCK_TORCH
    + """
import json, sys
import numpy as np
from detr_deploy.native.loader import load_detr_cpp
detr_cpp = load_detr_cpp(sys.argv[1])
detector = detr_cpp.Detector(sys.argv[2], num_threads=int(sys.argv[4]) if sys.argv[4] != "default" else None)
found = detector.detect(np.load(sys.argv[3]))
maps = open("/proc/self/maps").read()
print(json.dumps({"backend": detector.backend, "precision": detector.metadata.get("precision"),
                  "torch": "torch" in sys.modules,
                  "libtorch_so": any(line.endswith("/libtorch.so") for line in maps.splitlines()),
                  **{key: value.tolist() for key, value in found.items()}}))
"""
)


def detect_without_torch(module_path, package, image, folder, num_threads=None) -> dict:
    """``Detector(package).detect(image)`` in a child interpreter that blocks torch: its JSON report
    (backend, precision, whether torch or libtorch.so got loaded, and the detections as lists)."""
    import json
    import subprocess
    import sys

    import numpy as np

    image_path = folder / "image.npy"
    np.save(image_path, image)
    threads = "default" if num_threads is None else str(num_threads)
    arguments = [str(module_path), str(package), str(image_path), threads]
    command = [sys.executable, "-I", "-c", DETECT_WITHOUT_TORCH, *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
