"""SAM (Segment Anything) modules, compatible with the official checkpoints."""

from .build import SAM_CONFIGS, available_models, build_sam
from .sam import Sam

__all__ = ["SAM_CONFIGS", "Sam", "available_models", "build_sam"]
