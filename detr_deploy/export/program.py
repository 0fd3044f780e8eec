"""The ``torch.export`` program of the pipeline, which the AOTInductor, ONNX and OpenVINO exports share.

:class:`ExportablePipeline` is :class:`~detr_deploy.model.pipeline.DetectionPipeline` with the
signature ``torch.export`` needs (uint8 RGB image in, boxes/scores/labels out, pre- and
post-processing inside the graph). Height and width are dynamic (``torch.export.Dim``,
2 ... ``max_input_side``); the score threshold is a 0-d float32 tensor input, so it can be
chosen per call as with TorchScript. The export's guards bound the sizes the compiled graphs
handle: :func:`guards_hold`, :func:`min_resized_side`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detr_deploy.export.artefact import make_pipeline, pipeline_metadata
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.native.runners import FORMAT_VERSION, MIN_SIDE

__all__ = [
    "DEFAULT_EXAMPLE_SIZE",
    "PIPELINE_DEFAULTS",
    "ExportablePipeline",
    "dynamic_shapes",
    "export_program",
    "fixed_input_size",
    "guards_hold",
    "min_resized_side",
    "program_metadata",
    "as_pipeline",
]

DEFAULT_EXAMPLE_SIZE = (480, 640)
PIPELINE_DEFAULTS = dict(min_size=800, max_size=1333, score_threshold=0.5, top_k=0)


class ExportablePipeline(nn.Module):
    """``forward(image uint8 [H, W, 3], score_threshold float32 []) -> (boxes, scores, labels)``.

    The pipeline's ``forward`` takes the threshold as an ``Optional[float]``; ``torch.export``
    would bake a Python float into the graph as a constant, so here it is a 0-d tensor input.
    """

    def __init__(self, pipeline: DetectionPipeline, topk_order: bool = False) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.topk_order = topk_order  # for ONNX: see DetectionPipeline.postprocess

    def forward(self, image: Tensor, score_threshold: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        pipeline = self.pipeline
        pixels = pipeline.preprocess(image).unsqueeze(0)
        out = pipeline.model(pixels)
        return pipeline.postprocess(
            out["pred_logits"][0],
            out["pred_boxes"][0],
            image.shape[0],
            image.shape[1],
            score_threshold,
            self.topk_order,
        )


def as_pipeline(model: nn.Module, settings: dict) -> Tuple[DetectionPipeline, nn.Module]:
    """(pipeline, DETR) from a DETR plus pipeline settings (None: the default), or from a
    ready pipeline (then no settings)."""
    settings = {key: value for key, value in settings.items() if value is not None}
    if isinstance(model, DetectionPipeline):
        if settings:
            raise ValueError("pass pipeline settings (min_size, ...) with a DETR model, not with a DetectionPipeline")
        return model.eval(), model.model
    if not hasattr(model, "config"):
        raise TypeError(f"expected a detr_deploy DETR or DetectionPipeline, got {type(model).__name__}")
    return make_pipeline(model, **dict(PIPELINE_DEFAULTS, **settings)), model


def example_inputs(pipeline: DetectionPipeline, example_size: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """The (image, threshold) the export traces with."""
    height, width = (int(side) for side in example_size)
    # a non-square example: a square one would let the exporter assume H == W
    image = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return image, torch.tensor(pipeline.score_threshold, dtype=torch.float32)


def dynamic_shapes(pipeline: DetectionPipeline) -> dict:
    """Height and width symbolic in [:data:`MIN_SIDE`, ``max_input_side``]; the threshold has no dimensions."""
    side = pipeline.max_input_side
    return {
        "image": {
            0: torch.export.Dim("height", min=MIN_SIDE, max=side),
            1: torch.export.Dim("width", min=MIN_SIDE, max=side),
        },
        "score_threshold": None,
    }


def export_program(
    model: nn.Module,
    *,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    topk_order: bool = False,
    **settings,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of the pipeline around ``model`` (a DETR + ``min_size=...``
    settings, or a :class:`DetectionPipeline`). ``dynamic``: height and width are symbolic
    (:func:`dynamic_shapes`); otherwise the graph is fixed at ``example_size``."""
    pipeline, _ = as_pipeline(model, settings)
    if example_size[0] == example_size[1]:
        raise ValueError("use a non-square example_size: with H == W the export may tie the two sizes together")
    wrapper = ExportablePipeline(pipeline, topk_order=topk_order).eval()
    with torch.no_grad():
        return torch.export.export(
            wrapper,
            example_inputs(pipeline, example_size),
            dynamic_shapes=dynamic_shapes(pipeline) if dynamic else None,
        )


def fixed_input_size(program: torch.export.ExportedProgram) -> Optional[Tuple[int, int]]:
    """The (height, width) a program was exported for, or None if both are dynamic."""
    name = program.graph_signature.user_inputs[0]
    image = next(node for node in program.graph.nodes if node.op == "placeholder" and node.name == name)
    height, width = image.meta["val"].shape[:2]
    if isinstance(height, torch.SymInt) or isinstance(width, torch.SymInt):
        return None
    return int(height), int(width)


class _Size:
    """Stands in for ``image`` when evaluating the export's guard expressions."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (height, width, 3)

    def size(self):
        return self.shape


def guards_hold(program: torch.export.ExportedProgram, height: int, width: int) -> bool:
    """Whether an image of ``height`` x ``width`` satisfies every guard of the export.

    ``torch.export`` assumes that no intermediate size is 0 or 1 (the 0/1 specialisation):
    the guards say so, e.g. that the backbone's feature map has both sides >= 2. The eager
    module checks them on each call; the AOTInductor, ONNX and OpenVINO graphs do not, and
    would compute garbage (or fail) outside them."""
    scope = {"L": {"image": _Size(height, width)}, "torch": torch}
    return all(eval(code, scope) for code in _compiled_guards(program))  # noqa: S307 - torch's own code


def _compiled_guards(program: torch.export.ExportedProgram) -> list:
    # torch.export has no public way to evaluate its guards without running the model
    cached = getattr(program, "_detr_compiled_guards", None)
    if cached is None:
        cached = [compile(code, "<export guard>", "eval") for code in getattr(program, "_guards_code", [])]
        program._detr_compiled_guards = cached
    return cached


def min_resized_side(program: torch.export.ExportedProgram, pipeline: DetectionPipeline) -> int:
    """The smallest resized shorter side for which the export's guards hold.

    The shorter side is resized to min(min_size, round(max_size * short / long)), so it
    drops below min_size only for elongated images; an image (r, max_size) resizes to
    exactly (r, max_size). The guards are evaluated for every r up to min_size, in both
    orientations, and then on random sizes as a check that this one number captures them.
    """
    if not getattr(program, "_guards_code", None):
        return 1
    smallest = MIN_SIDE
    for side in range(MIN_SIDE, pipeline.min_size + 1):
        if not (guards_hold(program, side, pipeline.max_size) and guards_hold(program, pipeline.max_size, side)):
            smallest = side + 1
    rng = np.random.default_rng(0)
    limit = min(pipeline.max_input_side, 4 * pipeline.max_size)
    for height, width in rng.integers(MIN_SIDE, limit + 1, size=(300, 2)):
        resized = min(pipeline.resized_size(int(height), int(width)))
        if resized >= smallest and not guards_hold(program, int(height), int(width)):
            raise RuntimeError(
                f"the export's guards fail for a {height}x{width} image (resized shorter side "
                f"{resized} >= {smallest}): they are not a bound on the resized size alone"
            )
    return smallest


def program_metadata(pipeline: DetectionPipeline, fmt: str, program: torch.export.ExportedProgram) -> dict:
    """The metadata of an artefact made from ``program``: the pipeline's, with the export's size limits."""
    metadata = pipeline_metadata(pipeline, pipeline.model, fmt, FORMAT_VERSION, "torch.export")
    metadata["input"]["min_side"] = MIN_SIDE
    fixed = fixed_input_size(program)
    if fixed is None:
        # images so elongated that their shorter side would be resized below this are refused
        metadata["input"]["min_resized_side"] = min_resized_side(program, pipeline)
    else:
        metadata["traced_input_size"] = list(fixed)
    metadata["inputs"] = {"image": "uint8 [H, W, 3] RGB", "score_threshold": "float32 [] (0-d)"}
    return metadata
