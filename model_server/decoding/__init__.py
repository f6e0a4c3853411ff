"""The folded SAM decoder: the one inference form of the prompt encoder + mask decoder (see decoder.py)."""

from .decoder import FoldedDecoder, ImageSide, MaskPrompt, Transformed

__all__ = ["FoldedDecoder", "ImageSide", "MaskPrompt", "Transformed"]
