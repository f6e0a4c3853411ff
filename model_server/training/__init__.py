"""Retraining SAM on the masks a project collected: SAM's loss and a checkpointed, resumable,
cancellable training loop over cached image embeddings (`model_server.samples`), prompted by the
simulated annotator of `model_server.clicks`."""

from .config import TrainConfig, TrainResult
from .loop import train_decoder

__all__ = ["TrainConfig", "TrainResult", "train_decoder"]
