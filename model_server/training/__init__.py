"""Retraining SAM on the masks a project collected: simulated interactive prompts, SAM's loss, and
a checkpointed, resumable, cancellable training loop over cached image embeddings."""

from .dataset import TrainingSample, embed_samples, load_image_and_masks, read_manifest
from .loop import TrainConfig, TrainResult, train_decoder

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingSample",
    "embed_samples",
    "load_image_and_masks",
    "read_manifest",
    "train_decoder",
]
