"""Training data: synthetic Adaptive Cards (rendered on the fly or pre-rendered) and labelled folders.

Every sample is resized exactly as the exported :class:`~detr_deploy.model.pipeline.DetectionPipeline`
resizes its input (shorter side ``min_size``, longer side at most ``max_size``, antialiased
bilinear), so that the model trains at the resolution it is deployed at. A sample is::

    {"image": uint8 [3, h, w], "boxes": float32 [N, 4] (cx, cy, w, h) normalised to the image,
     "labels": int64 [N] class indices, "size": (h, w), "orig_size": (H, W), "image_id": int}

Sources:

* :class:`SyntheticCards` renders ``detr_deploy.data.cards.render_card(card_seed(seed, i))``
  on the fly (endless variety, CPU-bound);
* :class:`LabelledFolder` reads a COCO JSON (or a folder with ``annotations.json`` and
  ``images/``) or a folder of images with Pascal VOC XMLs beside them;
* :func:`render_cache` pre-renders many cards with a process pool into one packed uint8
  array (``.npy``, memory-mappable) that :class:`TensorBatcher` assembles batches from
  directly on the GPU, with the augmentation done there too: the GPU never waits for PIL.

:func:`collate` pads a list of samples to the largest one and returns the padding mask
(``True`` on padding) the model expects.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from detr_deploy.data.classes import CLASS_NAMES, card_seed
from detr_deploy.model.box_ops import box_xyxy_to_cxcywh
from detr_deploy.model.pipeline import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "class_names",
    "card_seed",
    "target_size",
    "resize_image",
    "Augment",
    "SyntheticCards",
    "LabelledFolder",
    "CardDataset",
    "collate",
    "normalize",
    "render_cache",
    "is_cache",
    "load_cache",
    "read_labelled",
    "worker_init",
    "TensorBatcher",
]

PathLike = Union[str, os.PathLike]


def class_names() -> List[str]:
    """The card classes (:data:`detr_deploy.data.classes.CLASS_NAMES`) as a new list."""
    return list(CLASS_NAMES)


def target_size(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """(h, w) after resizing: the rule of ``DetectionPipeline.resized_size``, to the letter."""
    short_side = float(min(height, width))
    long_side = float(max(height, width))
    size = float(min_size)
    if long_side / short_side * size > max_size:
        size = float(round(max_size * short_side / long_side))
    size = max(size, 1.0)
    if width < height:
        return int(size * height / width), int(size)
    return int(size), int(size * width / height)


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> Tensor:
    """uint8 [H, W, 3] -> uint8 [3, h, w], antialiased bilinear as in the deployed pipeline."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float()
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels, size=list(size), mode="bilinear", align_corners=False, antialias=True)
    return pixels[0].round_().clamp_(0, 255).to(torch.uint8)


def _normalised_boxes(boxes_xyxy: np.ndarray, width: int, height: int) -> Tensor:
    boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = (boxes / scale).clamp(0.0, 1.0)
    return box_xyxy_to_cxcywh(boxes)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# ------------------------------------------------------------------------------ augmentation
class Augment:
    """Training-time augmentation of a uint8 [3, h, w] tensor (boxes are normalised, so the
    photometric changes and an isotropic rescale leave them unchanged).

    * ``scale_jitter``: the resize target is multiplied by a factor in ``[1 - s, 1 + s]``
      (small elements get seen at several sizes);
    * ``jpeg``: ``(probability, min_quality, max_quality)`` of a JPEG round trip before
      resizing (off by default: ``render_card`` already compresses every card);
    * brightness / contrast / saturation jitter, channel permutation, greyscale.
    """

    def __init__(
        self,
        scale_jitter: float = 0.1,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.3,
        channel_swap: float = 0.2,
        grayscale: float = 0.1,
        jpeg: Tuple[float, int, int] = (0.0, 60, 95),
        seed: Optional[int] = None,
    ) -> None:
        self.scale_jitter = scale_jitter
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.channel_swap = channel_swap
        self.grayscale = grayscale
        self.jpeg = jpeg
        self.rng = random.Random(seed)

    def scale(self) -> float:
        return 1.0 + self.rng.uniform(-self.scale_jitter, self.scale_jitter) if self.scale_jitter else 1.0

    def before_resize(self, image: Image.Image) -> Image.Image:
        probability, low, high = self.jpeg
        if probability > 0 and self.rng.random() < probability:
            return _jpeg(image, self.rng.randint(low, high))
        return image

    def photometric(self, image: Tensor) -> Tensor:
        """uint8 [3, h, w] -> uint8 [3, h, w]."""
        pixels = image.float()
        if self.brightness:
            pixels = pixels * (1.0 + self.rng.uniform(-self.brightness, self.brightness))
        if self.contrast:
            mean = pixels.mean()
            pixels = (pixels - mean) * (1.0 + self.rng.uniform(-self.contrast, self.contrast)) + mean
        gray = (0.299 * pixels[0] + 0.587 * pixels[1] + 0.114 * pixels[2])[None]
        if self.grayscale and self.rng.random() < self.grayscale:
            pixels = gray.expand(3, -1, -1)
        elif self.saturation:
            pixels = (pixels - gray) * (1.0 + self.rng.uniform(-self.saturation, self.saturation)) + gray
        if self.channel_swap and self.rng.random() < self.channel_swap:
            order = [0, 1, 2]
            self.rng.shuffle(order)
            pixels = pixels[order]
        return pixels.round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------ sources
RenderFn = Callable[[int], Tuple[Image.Image, List[dict]]]


def _default_renderer() -> RenderFn:
    from detr_deploy.data.cards import render_card  # fonts and pictures load only once cards are rendered

    return render_card


class SyntheticCards:
    """Cards ``render(card_seed(seed, first_index + i))`` for ``i < num_cards``."""

    def __init__(
        self,
        num_cards: int,
        seed: int = 0,
        render: Optional[RenderFn] = None,
        names: Optional[Sequence[str]] = None,
        first_index: int = 0,
    ) -> None:
        self.num_cards = int(num_cards)
        self.seed = int(seed)
        self.first_index = int(first_index)
        self.render = render
        self.names = list(names) if names is not None else class_names()

    def __len__(self) -> int:
        return self.num_cards

    def get(self, index: int) -> Tuple[Image.Image, np.ndarray, np.ndarray]:
        """-> (PIL RGB image, boxes xyxy pixels float32 [N, 4], labels int64 [N])."""
        if self.render is None:
            self.render = _default_renderer()
        image, annotations = self.render(card_seed(self.seed, self.first_index + index))
        boxes = np.asarray([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray([int(a["category_id"]) for a in annotations], dtype=np.int64)
        return image.convert("RGB"), boxes, labels


def _find_annotation_file(path: Path) -> Optional[Path]:
    if path.is_file() and path.suffix.lower() == ".json":
        return path
    if path.is_dir() and (path / "annotations.json").is_file():
        return path / "annotations.json"
    return None


def read_labelled(path: PathLike, names: Sequence[str], warn=None) -> List[Tuple[Path, np.ndarray, np.ndarray]]:
    """Read a COCO JSON / folder with annotations.json / folder of images + VOC XMLs.

    Returns ``(image_path, boxes xyxy float32 [N, 4], labels int64 [N])`` per image. Classes
    are matched by name; unknown labels are skipped and reported once each via ``warn``
    (default: stderr).
    """
    path = Path(path)
    warn = warn or (lambda message: print(message, file=sys.stderr))
    names = list(names)
    annotation_file = _find_annotation_file(path)
    records: List[Tuple[Path, np.ndarray, np.ndarray]] = []
    unknown: Dict[str, int] = {}
    if annotation_file is not None:
        document = json.loads(annotation_file.read_text(encoding="utf-8"))
        category_names = {c["id"]: str(c["name"]) for c in document.get("categories", [])}
        per_image: Dict[object, list] = {image["id"]: [] for image in document["images"]}
        for ann in document["annotations"]:
            if ann.get("iscrowd", 0):
                continue
            name = category_names.get(ann["category_id"], str(ann["category_id"]))
            if name not in names:
                unknown[name] = unknown.get(name, 0) + 1
                continue
            x, y, w, h = ann["bbox"]
            per_image[ann["image_id"]].append(([x, y, x + w, y + h], names.index(name)))
        root = annotation_file.parent
        for image in document["images"]:
            items = per_image[image["id"]]
            boxes = np.asarray([b for b, _ in items], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray([label for _, label in items], dtype=np.int64)
            file_path = root / image["file_name"]
            if not file_path.is_file() and (root / "images" / image["file_name"]).is_file():
                file_path = root / "images" / image["file_name"]
            records.append((file_path, boxes, labels))
    elif path.is_dir():
        from detr_deploy.data.annotations import read_voc

        xmls = sorted(path.glob("*.xml")) or sorted(path.glob("**/*.xml"))
        if not xmls:
            raise FileNotFoundError(f"{path}: no annotations.json and no Pascal VOC *.xml files")
        for xml in xmls:
            image_path, _, _, boxes, labels, unknown_names = read_voc(xml, names)
            for name in unknown_names:
                unknown[name] = unknown.get(name, 0) + 1
            records.append((image_path, boxes, labels))
    else:
        raise FileNotFoundError(f"{path}: expected a COCO .json, a folder with annotations.json, or a VOC folder")
    for name, count in sorted(unknown.items()):
        warn(f"warning: {path}: skipped {count} box(es) with unknown label {name!r} (known: {', '.join(names)})")
    return records


class LabelledFolder:
    """Images and boxes from disk (COCO or VOC, see :func:`read_labelled`)."""

    def __init__(self, path: PathLike, names: Optional[Sequence[str]] = None) -> None:
        self.names = list(names) if names is not None else class_names()
        self.records = read_labelled(path, self.names)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> Tuple[Image.Image, np.ndarray, np.ndarray]:
        image_path, boxes, labels = self.records[index]
        with Image.open(image_path) as image:
            return image.convert("RGB"), boxes.copy(), labels.copy()


class CardDataset(Dataset):
    """A torch Dataset over a source (:class:`SyntheticCards` / :class:`LabelledFolder`)."""

    def __init__(self, source, min_size: int, max_size: int, augment: Optional[Augment] = None) -> None:
        self.source = source
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Dict[str, object]:
        image, boxes, labels = self.source.get(index)
        width, height = image.size
        factor = self.augment.scale() if self.augment is not None else 1.0
        size = target_size(height, width, max(1, round(self.min_size * factor)), max(1, round(self.max_size * factor)))
        if self.augment is not None:
            image = self.augment.before_resize(image)
        pixels = resize_image(np.asarray(image), size)
        if self.augment is not None:
            pixels = self.augment.photometric(pixels)
        return {
            "image": pixels,
            "boxes": _normalised_boxes(boxes, width, height),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
            "size": tuple(size),
            "orig_size": (height, width),
            "image_id": int(index),
        }


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's augmentation its own random stream.

    Workers ignore SIGINT and SIGTERM: Ctrl-C or a stop signal sent to the whole process group
    reaches the training process, which saves a checkpoint and ends cleanly (a killed worker
    would abort it instead); the workers end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    if getattr(dataset, "augment", None) is not None:
        dataset.augment.rng.seed(info.seed % (2**32))


def collate(samples: Sequence[Dict[str, object]]) -> Tuple[Tensor, Tensor, List[Dict[str, Tensor]]]:
    """-> (uint8 images [B, 3, H, W] zero-padded, mask bool [B, H, W] True on padding, targets)."""
    height = max(s["image"].shape[1] for s in samples)
    width = max(s["image"].shape[2] for s in samples)
    images = torch.zeros((len(samples), 3, height, width), dtype=torch.uint8)
    mask = torch.ones((len(samples), height, width), dtype=torch.bool)
    targets = []
    for index, sample in enumerate(samples):
        h, w = sample["image"].shape[1:]
        images[index, :, :h, :w] = sample["image"]
        mask[index, :h, :w] = False
        targets.append(
            {
                "boxes": sample["boxes"],
                "labels": sample["labels"],
                "image_id": torch.tensor(sample["image_id"]),
                "size": torch.tensor(sample["size"]),
            }
        )
    return images, mask, targets


def normalize(images: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """uint8 [B, 3, H, W] -> float ImageNet-normalised (padding set to 0 after normalising)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    pixels = (images.float() / 255.0 - mean) / std
    if mask is not None:
        pixels = pixels.masked_fill(mask[:, None], 0.0)
    return pixels


# ------------------------------------------------------------------------------ pre-rendered cache
_WORKER_STATE: Dict[str, object] = {}


def _render_worker_init(source, min_size: int, max_size: int, jpeg: Tuple[float, int, int], seed: int) -> None:
    torch.set_num_threads(1)
    _WORKER_STATE.update(source=source, min_size=min_size, max_size=max_size, jpeg=jpeg, seed=seed)


def _render_one(index: int):
    source = _WORKER_STATE["source"]
    image, boxes, labels = source.get(index)
    width, height = image.size
    probability, low, high = _WORKER_STATE["jpeg"]
    rng = random.Random(card_seed(_WORKER_STATE["seed"], index))
    if probability > 0 and rng.random() < probability:
        image = _jpeg(image, rng.randint(low, high))
    size = target_size(height, width, _WORKER_STATE["min_size"], _WORKER_STATE["max_size"])
    pixels = resize_image(np.asarray(image), size).permute(1, 2, 0).numpy()
    return index, pixels, _normalised_boxes(boxes, width, height).numpy(), labels


def render_cache(
    out_path: PathLike,
    source,
    min_size: int,
    max_size: int,
    workers: int = 0,
    jpeg: Tuple[float, int, int] = (0.0, 60, 95),
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Render every item of ``source`` at the training resolution into the folder ``out_path``.

    Files: ``pixels.npy`` uint8 [total] (every resized image's HWC bytes, one after the
    other), ``meta.npz`` with ``sizes`` [N, 2] (h, w), ``pixel_offsets`` [N+1], ``boxes``
    [M, 4] cxcywh normalised, ``labels`` [M], ``offsets`` [N+1] (box ranges), ``min_size``,
    ``max_size``. ``workers`` processes render in parallel (0 = all CPUs). Cards from
    :func:`detr_deploy.data.cards.render_card` are already JPEG-compressed, hence ``jpeg`` off.
    """
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    count = len(source)
    workers = workers or os.cpu_count() or 1
    results: List[Optional[tuple]] = [None] * count
    start = time.time()
    init_args = (source, min_size, max_size, jpeg, seed)
    if workers > 1 and count > 1:
        context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with context.Pool(workers, initializer=_render_worker_init, initargs=init_args) as pool:
            for done, result in enumerate(pool.imap_unordered(_render_one, range(count), chunksize=8), 1):
                results[result[0]] = result
                if progress and (done % 2000 == 0 or done == count):
                    print(f"rendered {done}/{count} cards ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    else:
        _render_worker_init(*init_args)
        for index in range(count):
            results[index] = _render_one(index)
    sizes = np.asarray([r[1].shape[:2] for r in results], dtype=np.int64).reshape(-1, 2)
    pixel_offsets = np.zeros(count + 1, dtype=np.int64)
    pixel_offsets[1:] = np.cumsum(sizes[:, 0] * sizes[:, 1] * 3)
    pixels = np.lib.format.open_memmap(out / "pixels.npy", mode="w+", dtype=np.uint8, shape=(int(pixel_offsets[-1]),))
    offsets = np.zeros(count + 1, dtype=np.int64)
    for index, result in enumerate(results):
        pixels[pixel_offsets[index] : pixel_offsets[index + 1]] = result[1].reshape(-1)
        offsets[index + 1] = offsets[index] + len(result[3])
        results[index] = (None, None, result[2], result[3])  # free the pixels early
    pixels.flush()
    del pixels
    boxes = (
        np.concatenate([r[2] for r in results]).reshape(-1, 4).astype(np.float32)
        if count
        else np.zeros((0, 4), np.float32)
    )
    labels = np.concatenate([r[3] for r in results]).reshape(-1).astype(np.int64) if count else np.zeros(0, np.int64)
    np.savez(
        out / "meta.npz",
        sizes=sizes,
        pixel_offsets=pixel_offsets,
        boxes=boxes,
        labels=labels,
        offsets=offsets,
        min_size=min_size,
        max_size=max_size,
    )
    return out


def _cache_paths(path: PathLike) -> List[Path]:
    return [Path(p) for p in str(path).split(",") if p]


def is_cache(path: PathLike) -> bool:
    """True for a folder written by :func:`render_cache` (or a comma-separated list of them)."""
    paths = _cache_paths(path)
    return bool(paths) and all((p / "pixels.npy").is_file() and (p / "meta.npz").is_file() for p in paths)


def load_cache(path: PathLike, mmap: bool = True) -> Dict[str, np.ndarray]:
    """Read a folder written by :func:`render_cache` (pixels memory-mapped by default);
    ``"a,b"`` concatenates several caches rendered at the same resolution."""
    parts = []
    for folder in _cache_paths(path):
        with np.load(folder / "meta.npz") as meta:
            cache = {key: meta[key] for key in meta.files}
        cache["pixels"] = np.load(folder / "pixels.npy", mmap_mode="r" if mmap else None)
        cache["min_size"] = int(cache["min_size"])
        cache["max_size"] = int(cache["max_size"])
        parts.append(cache)
    if not parts:
        raise FileNotFoundError(f"no render cache at {path!r}")
    if len(parts) == 1:
        return parts[0]
    if len({(c["min_size"], c["max_size"]) for c in parts}) != 1:
        raise ValueError(f"caches {path!r} were rendered at different resolutions")
    merged = {
        "min_size": parts[0]["min_size"],
        "max_size": parts[0]["max_size"],
        "sizes": np.concatenate([c["sizes"] for c in parts]),
        "boxes": np.concatenate([c["boxes"] for c in parts]),
        "labels": np.concatenate([c["labels"] for c in parts]),
        "pixels": np.concatenate([np.asarray(c["pixels"]) for c in parts]),
    }
    pixel_offsets, offsets = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
    for c in parts:
        pixel_offsets.append(c["pixel_offsets"][1:] + pixel_offsets[-1][-1])
        offsets.append(c["offsets"][1:] + offsets[-1][-1])
    merged["pixel_offsets"] = np.concatenate(pixel_offsets)
    merged["offsets"] = np.concatenate(offsets)
    return merged


def _resize_batch(pixels: Tensor, mask: Tensor, scale: float) -> Tuple[Tensor, Tensor]:
    height, width = pixels.shape[-2:]
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    pixels = F.interpolate(pixels, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    mask = F.interpolate(mask[:, None].float(), size=(new_h, new_w), mode="nearest")[:, 0] > 0.5
    return pixels, mask


class TensorBatcher:
    """Batches from a pre-rendered cache held in (GPU) memory, augmented there.

    ``resolution_scale`` rescales every batch (e.g. 0.75 trains a 384/640 cache at
    288/480). Each training batch comes from one of ``aspect_groups`` groups of similar
    aspect ratio (picked in proportion to its size; a fresh permutation of a group each time
    it is used up); with ``augment``: per-image brightness / contrast / saturation
    jitter, greyscale and channel permutation, and per batch an isotropic rescale by one of
    ``1 - s, 1, 1 + s`` (boxes are normalised, so they do not change; the mask is resized).
    :meth:`batches` iterates once over the cache in order (validation).
    """

    def __init__(
        self,
        cache: Dict[str, np.ndarray],
        batch_size: int,
        device,
        augment: bool = True,
        scale_jitter: float = 0.1,
        resolution_scale: float = 1.0,
        seed: int = 0,
        aspect_groups: int = 6,
    ) -> None:
        self.device = torch.device(device)
        with warnings.catch_warnings():  # a read-only memmap: it is only ever read
            warnings.simplefilter("ignore", UserWarning)
            pixels = torch.from_numpy(cache["pixels"])
        self.pixels = pixels.to(self.device)
        self.sizes_cpu = torch.as_tensor(cache["sizes"]).long()
        self.pixel_offsets = cache["pixel_offsets"].tolist()
        self.boxes = torch.as_tensor(cache["boxes"]).float().to(self.device)
        self.labels = torch.as_tensor(cache["labels"]).long().to(self.device)
        self.offsets = cache["offsets"].tolist()
        self.batch_size = int(batch_size)
        self.augment = augment
        self.scale_jitter = scale_jitter
        self.resolution_scale = float(resolution_scale)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.count = len(self.sizes_cpu)
        # aspect-ratio groups: a batch is padded to its largest height and width, so mixing
        # tall and wide cards would waste about half of every batch on padding
        aspect = (self.sizes_cpu[:, 0].float() / self.sizes_cpu[:, 1].float()).numpy()
        self.by_aspect = np.argsort(aspect, kind="stable")
        groups = max(1, min(aspect_groups, self.count // max(self.batch_size, 1)))
        self.groups = [torch.as_tensor(g.copy()) for g in np.array_split(self.by_aspect, groups)]
        self.orders = [g[torch.randperm(len(g), generator=self.generator)] for g in self.groups]
        self.positions = [0] * len(self.groups)
        self.images_drawn = 0

    @property
    def epoch(self) -> int:
        return self.images_drawn // max(self.count, 1)

    def __len__(self) -> int:
        return self.count

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "orders": self.orders,
            "positions": self.positions,
            "images_drawn": self.images_drawn,
            "count": self.count,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if state.get("count") == self.count and len(state.get("orders", [])) == len(self.orders):
            self.orders, self.positions = list(state["orders"]), [int(p) for p in state["positions"]]
            self.images_drawn = int(state["images_drawn"])

    def _next_indices(self) -> List[int]:
        sizes = torch.tensor([float(len(g)) for g in self.groups])
        group = int(torch.multinomial(sizes, 1, generator=self.generator))
        chosen: List[int] = []
        while len(chosen) < self.batch_size:
            if self.positions[group] >= len(self.orders[group]):
                members = self.groups[group]
                self.orders[group] = members[torch.randperm(len(members), generator=self.generator)]
                self.positions[group] = 0
            start = self.positions[group]
            take = self.orders[group][start : start + self.batch_size - len(chosen)].tolist()
            self.positions[group] += len(take)
            chosen.extend(take)
        self.images_drawn += len(chosen)
        return chosen

    def _assemble(self, indices: Sequence[int]) -> Tuple[Tensor, Tensor]:
        sizes = self.sizes_cpu[list(indices)]
        height, width = int(sizes[:, 0].max()), int(sizes[:, 1].max())
        batch = torch.zeros((len(indices), height, width, 3), dtype=torch.uint8, device=self.device)
        mask = torch.ones((len(indices), height, width), dtype=torch.bool, device=self.device)
        for row, index in enumerate(indices):
            h, w = int(self.sizes_cpu[index, 0]), int(self.sizes_cpu[index, 1])
            batch[row, :h, :w] = self.pixels[self.pixel_offsets[index] : self.pixel_offsets[index + 1]].view(h, w, 3)
            mask[row, :h, :w] = False
        return batch.permute(0, 3, 1, 2).float(), mask

    def _targets(self, indices: Sequence[int]) -> List[Dict[str, Tensor]]:
        targets = []
        for i in indices:
            start, stop = self.offsets[i], self.offsets[i + 1]
            h, w = int(self.sizes_cpu[i, 0]), int(self.sizes_cpu[i, 1])
            targets.append(
                {
                    "boxes": self.boxes[start:stop],
                    "labels": self.labels[start:stop],
                    "image_id": torch.tensor(i),
                    "size": torch.tensor([round(h * self.resolution_scale), round(w * self.resolution_scale)]),
                }
            )
        return targets

    def _finish(self, pixels: Tensor, mask: Tensor, scale: float) -> Tuple[Tensor, Tensor]:
        if abs(scale - 1.0) > 1e-6:
            pixels, mask = _resize_batch(pixels, mask, scale)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        return ((pixels / 255.0 - mean) / std).masked_fill(mask[:, None], 0.0), mask

    def batch(self) -> Tuple[Tensor, Tensor, List[Dict[str, Tensor]]]:
        """-> (float images [B, 3, H, W] normalised, mask [B, H, W], targets on the device)."""
        indices = self._next_indices()
        pixels, mask = self._assemble(indices)
        scale = self.resolution_scale
        if self.augment:
            count = len(indices)
            rand = torch.rand((count, 6), generator=self.generator).to(self.device)
            choice = int(torch.randint(3, (1,), generator=self.generator))
            scale *= (1.0 - self.scale_jitter, 1.0, 1.0 + self.scale_jitter)[choice]
            pixels = pixels * (1.0 + (rand[:, 0] * 2 - 1) * 0.2).view(-1, 1, 1, 1)
            mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
            pixels = (pixels - mean) * (1.0 + (rand[:, 1] * 2 - 1) * 0.2).view(-1, 1, 1, 1) + mean
            gray = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2])[:, None]
            saturation = 1.0 + (rand[:, 2] * 2 - 1) * 0.3
            saturation = torch.where(rand[:, 3] < 0.1, torch.zeros_like(saturation), saturation)
            pixels = (pixels - gray) * saturation.view(-1, 1, 1, 1) + gray
            permutation = [(2, 1, 0), (1, 0, 2), (0, 2, 1), (1, 2, 0), (2, 0, 1)][
                int(torch.randint(5, (1,), generator=self.generator))
            ]
            pixels = torch.where((rand[:, 4] < 0.2).view(-1, 1, 1, 1), pixels[:, list(permutation)], pixels)
            pixels = pixels.clamp(0, 255)
        pixels, mask = self._finish(pixels, mask, scale)
        return pixels, mask, self._targets(indices)

    def batches(self, batch_size: Optional[int] = None):
        """Every cached image once (grouped by aspect ratio), without augmentation."""
        size = batch_size or self.batch_size
        order = self.by_aspect.tolist()
        for start in range(0, self.count, size):
            indices = order[start : start + size]
            pixels, mask = self._assemble(indices)
            pixels, mask = self._finish(pixels, mask, self.resolution_scale)
            yield pixels, mask, self._targets(indices)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m detr_deploy.data.datasets OUT --num N --seed S [--start K] [--min-size --max-size --workers]``:
    pre-render synthetic cards ``card_seed(S, K..K+N-1)`` into a cache folder."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.data.datasets", description="Pre-render synthetic cards at the training resolution."
    )
    parser.add_argument("out")
    parser.add_argument("--num", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--start", type=int, default=0, help="index of the first card of the stream")
    parser.add_argument("--min-size", type=int, default=384)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = all CPUs)")
    parser.add_argument(
        "--variant",
        default="full",
        help="generator variant: full, no_capture, one_font or wide "
        "(detr_deploy.data.cards.variants)",
    )
    args = parser.parse_args(argv)
    from detr_deploy.data.cards.variants import variant_renderer

    try:
        render = variant_renderer(args.variant)
    except ValueError as error:
        parser.error(str(error))
    start = time.time()
    render_cache(
        args.out,
        SyntheticCards(args.num, args.seed, render=render, first_index=args.start),
        args.min_size,
        args.max_size,
        workers=args.workers,
    )
    cache = load_cache(args.out)
    print(
        f"{args.out}: {args.num} {args.variant} cards (seed {args.seed}, from index {args.start}) at {args.min_size}/{args.max_size}, "
        f"{cache['pixels'].nbytes / 1e9:.2f} GB, {len(cache['labels'])} boxes, {time.time() - start:.1f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
