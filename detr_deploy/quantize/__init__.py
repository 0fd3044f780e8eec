"""int8 for the C++ path: PT2E static quantization compiled by AOTInductor (:mod:`.pt2e`), the
OpenVINO (NNCF) and ONNX Runtime int8 peers (:mod:`.peers`), the accuracy and speed tables
(:mod:`.measure`) and the README's int8 block (:mod:`.readme`). Command line:
``python -m detr_deploy.quantize --help`` (``python -m detr_deploy.export --int8`` makes one package);
chapter 02c walks through it. Needs the optional extras (``requirements-runtimes.txt``: torchao, nncf)."""
