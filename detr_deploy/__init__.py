"""detr_deploy: take a PyTorch DETR out of Python, measured.

Subpackages (imported explicitly, so ``import detr_deploy`` stays light and torch-free):

* ``model``   DETR with the official checkpoint layout, checkpoint loading, the in-graph image pipeline
* ``data``    the card classes, COCO/VOC annotations, training data, the synthetic card generator
* ``train``   Hungarian matcher, losses, the training loop (``python -m detr_deploy.train``)
* ``export``  TorchScript, AOTInductor, ONNX and OpenVINO artefacts (``python -m detr_deploy.export``),
  the Triton model repository
* ``native``  building and importing the C++ module ``detr_cpp``, the slim runtime folder, the
  ONNX Runtime / OpenVINO runners; no torch in Python
* ``batch``   batch detection over many images on Ray (``python -m detr_deploy.batch``); no torch in Python
* ``serve``   the detection service (``python -m detr_deploy.serve``); no torch in Python
* ``bench``   the benchmark behind chapter 04 (``python -m detr_deploy.bench``)

and the modules ``evaluate`` (COCO mAP and matching), ``plotting`` (figures), ``cli`` (the shared
``--model`` / ``--checkpoint`` arguments), ``images`` (decoding), ``machine`` (CPUs and instruction sets)
and ``paths`` (repository locations).
CONTRIBUTING.md says what may import what.
"""

__version__ = "0.1.0"
