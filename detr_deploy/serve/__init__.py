"""The pic2card detection service, ``python -m detr_deploy.serve``: HTTP in front of the model, without torch.

* ``settings``  the ``DETR_*`` configuration and the error every part answers with
* ``service``   the backends' common part, the embedded backend (``detr_cpp``), image decoding,
  the :class:`DetectionService` that turns a request into detections
* ``kserve``    the external backend: a client of a KServe v2 model server (Triton)
* ``app``       the FastAPI app (``POST /detect``, ``GET /health``, ``GET /metrics``, ``/docs``),
  its worker pool, limits and Prometheus metrics, and ``main``, which serves it with uvicorn

This folder is copied whole into the service's Docker image (``pic2card_notes/Dockerfile``), so
it imports only Python, numpy, Pillow, FastAPI, uvicorn, prometheus-client and the few
``detr_deploy`` modules the image also copies.
"""
