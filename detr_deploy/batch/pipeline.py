"""The Ray side of a batch run: start or join a cluster, stream paths through an actor pool, append results.

Ray is imported inside the functions, so this module (and the package) imports without it;
:func:`import_ray` turns its absence into :class:`RayMissingError` with the install command.

Memory stays bounded: the dataset holds paths, not pixels; each actor decodes one image at a time;
Ray Data's streaming executor holds back new batches while results wait for the driver, which
writes every result batch to the file (and flushes) as soon as it arrives.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from detr_deploy.batch.predictor import DetectionPredictor, DetectorSettings
from detr_deploy.batch.results import Summary
from detr_deploy.machine import usable_cpus

__all__ = [
    "RAY_INSTALL_HINT",
    "RayMissingError",
    "cluster_cpus",
    "import_ray",
    "run_on_ray",
    "start_ray",
]

RAY_INSTALL_HINT = "pip install -r requirements-scale.txt (or pip install -e '.[scale]')"
# Only paths and JSON lines go through the object store; Ray spills to disk beyond this.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


class RayMissingError(ImportError):
    """Ray (with Ray Data) is not installed."""


def import_ray():
    """``ray`` with ``ray.data`` imported; RayMissingError with the install command when it is absent."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's part this package needs)
    except ImportError as error:
        raise RayMissingError(f"Ray is not installed ({error}): {RAY_INSTALL_HINT}") from None
    return ray


def start_ray(address: Optional[str] = None) -> bool:
    """Join the cluster at ``address``, or start a local one sized to this machine: no dashboard,
    warnings only, a small object store. Returns False (and does nothing) when Ray is already
    initialised in this process, True when the caller should ``ray.shutdown()`` at the end."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Ray's notice that the new local cluster uses token authentication (its default) is news to nobody here
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        ray.init(
            address="local",  # a new cluster even where RAY_ADDRESS names another
            num_cpus=usable_cpus(),
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            logging_level=logging.WARNING,
        )
    return True


def cluster_cpus() -> int:
    """CPUs the connected cluster has now (an autoscaling cluster may add more)."""
    return int(import_ray().cluster_resources().get("CPU", 0))


def quiet_ray_data(ray) -> None:
    """No Ray Data progress bars or execution banners: the run draws its own bar."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def run_on_ray(
    sources: Sequence[str],
    out_path: Union[str, os.PathLike],
    settings: DetectorSettings,
    actors: int,
    batch_size: int,
    progress: bool = True,
) -> Summary:
    """Detect on every source with ``actors`` actors, each loading a detector with ``settings`` and reserving
    ``settings.num_threads`` CPUs; append one JSON line per source to ``out_path`` in the order results arrive.

    Ray must be initialised (:func:`start_ray`). ``seconds`` in the summary run from building the
    dataset to the last line written: actor start and model loading included, cluster start not.
    """
    ray = import_ray()
    from tqdm import tqdm

    quiet_ray_data(ray)
    summary = Summary()
    # fewer images than actors x batch size: smaller batches, so that every actor gets some
    batch_size = max(1, min(batch_size, math.ceil(len(sources) / actors)))
    start = time.perf_counter()
    # one block per batch: actors receive batches as blocks are ready, and progress moves per batch
    dataset = ray.data.from_items(
        [{"source": source} for source in sources], override_num_blocks=math.ceil(len(sources) / batch_size)
    )
    results = dataset.map_batches(
        DetectionPredictor,
        fn_constructor_args=(settings,),
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=settings.num_threads,
        batch_size=batch_size,
        batch_format="numpy",
        udf_modifying_row_count=False,
    )
    with (
        Path(out_path).open("a", encoding="utf-8") as out,
        tqdm(total=len(sources), unit="img", file=sys.stderr, disable=not progress, smoothing=0.1) as bar,
    ):
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            lines = batch["line"]
            out.write("".join(f"{line}\n" for line in lines))
            out.flush()
            if summary.first_result_seconds is None:
                summary.first_result_seconds, summary.first_batch_images = time.perf_counter() - start, len(lines)
            summary.images += len(lines)
            summary.errors += int(batch["failed"].sum())
            bar.update(len(lines))
            bar.set_postfix(errors=summary.errors, refresh=False)
    summary.seconds = time.perf_counter() - start
    return summary
