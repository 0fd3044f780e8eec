"""Batch detection over many images on a Ray cluster: ``python -m detr_deploy.batch INPUT... --out results.jsonl``.

Ray Data streams image *paths* through a fixed pool of actors; each actor holds one ``detr_cpp.Detector``
and decodes, detects and serialises its batch, so only paths and small JSON lines travel between
processes. The driver appends one JSON line per image to the output file as results arrive, which
makes an interrupted run resumable: a rerun skips every source already in the file.

Modules: :mod:`~detr_deploy.batch.cli` (the command), :mod:`~detr_deploy.batch.inputs` (which images),
:mod:`~detr_deploy.batch.results` (the JSON lines, the resume set, the summary),
:mod:`~detr_deploy.batch.predictor` (what each actor runs), :mod:`~detr_deploy.batch.pipeline` (Ray),
:mod:`~detr_deploy.batch.throughput` (the measurement in pic2card_notes/scaling.md).

Ray is an optional extra (``pip install -r requirements-scale.txt``): only
:mod:`~detr_deploy.batch.pipeline` imports it, inside its functions, so the rest imports without it.
Like ``serve/`` and ``native/``, nothing here imports torch.
"""
