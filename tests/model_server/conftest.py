"""Fixtures for the model tests: the official package as oracle, seeded random weights, a real image.

Each expensive thing (official vit_b, our vit_b with the same weights, one image encoded by both)
is built once per session and shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_server.predictor import Predictor
from model_server.sam import Sam, build_sam
from tests.reference import official

IMAGE = "grabcut/images/106024.jpg"


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter non-trivial seeded values in place.

    The official init leaves position embeddings and relative-position tables at zero and norms at
    identity, which would let bugs in those paths pass unseen.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "rel_pos" in name or "pos_embed" in name:
                param.copy_(0.1 * noise)
            elif param.ndim == 1:
                param.add_(0.1 * noise)
    return model


@pytest.fixture(scope="session")
def sa():
    """The official `segment_anything` package (test-only oracle)."""
    return official()


@pytest.fixture(scope="session")
def official_vit_b(sa) -> torch.nn.Module:
    """The official vit_b with seeded random weights, eval mode."""
    torch.manual_seed(0)
    return randomize_(sa.sam_model_registry["vit_b"](), seed=1).eval()


@pytest.fixture(scope="session")
def our_vit_b(official_vit_b) -> Sam:
    """Our vit_b holding the official model's weights (loaded strictly)."""
    model = build_sam("vit_b", seed=0)
    model.load_state_dict(official_vit_b.state_dict(), strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def real_image(data_root: Path) -> np.ndarray:
    """A real photograph at its original size, HxWx3 uint8 RGB."""
    return np.asarray(Image.open(data_root / IMAGE).convert("RGB"))


@pytest.fixture(scope="session")
def official_predictor(sa, official_vit_b, real_image):
    predictor = sa.SamPredictor(official_vit_b)
    predictor.set_image(real_image)
    return predictor


@pytest.fixture(scope="session")
def encoded_predictor(our_vit_b, real_image) -> Predictor:
    """Our predictor with `real_image` set (the encoder has run once); tests must not change its image."""
    predictor = Predictor(our_vit_b)
    predictor.set_image(real_image)
    return predictor
