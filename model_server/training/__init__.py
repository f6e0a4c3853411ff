"""Retraining SAM on the masks a project collected: SAM's loss and a checkpointed, resumable,
cancellable training round (decoder only on cached embeddings, or with the image encoder on the
images, one process or several under torchrun), prompted by the simulated annotator of
`model_server.clicks`."""

from .config import ENCODER_MODES, TrainConfig, TrainResult
from .image_samples import ImageSample, embed_image_samples, image_samples
from .loop import train_round

# The round's earlier name (it trained only the decoder side), kept for the model service's callers.
train_decoder = train_round

__all__ = [
    "ENCODER_MODES",
    "ImageSample",
    "TrainConfig",
    "TrainResult",
    "embed_image_samples",
    "image_samples",
    "train_decoder",
    "train_round",
]
