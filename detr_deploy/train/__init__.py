"""Training of the small DETR: ``train(TrainConfig(...))``, or ``python -m detr_deploy.train``."""

from detr_deploy.train.config import TrainConfig
from detr_deploy.train.loop import train

__all__ = ["TrainConfig", "train"]
