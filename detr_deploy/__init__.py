"""detr_deploy: take a PyTorch DETR out of Python, measured.

Submodules (imported explicitly, so ``import detr_deploy`` stays light and torch-free):

* ``model``      DETR with the official checkpoint layout, plus small configurations
* ``checkpoint`` loading official / own checkpoints with clear mismatch errors
* ``deploy``     the in-graph image pipeline (uint8 RGB image in, detections out)
* ``export``     TorchScript export to an artefact (.pt + .json) and its command line
* ``images``     image decoding to uint8 RGB arrays
* ``paths``      repository locations
"""

__version__ = "0.1.0"
