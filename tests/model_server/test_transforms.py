"""Transforms between the original and the model frame agree with the official ResizeLongestSide."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model_server import transforms

SIZES = [(321, 481), (481, 321), (1024, 1024), (7, 3000), (1500, 1499), (1, 1)]


@pytest.fixture(scope="module")
def resize(sa):
    return sa.utils.transforms.ResizeLongestSide(1024)


@pytest.mark.parametrize("size", SIZES)
def test_preprocess_shape(resize, size):
    expected = resize.get_preprocess_shape(*size, 1024)
    assert transforms.preprocess_shape(*size) == expected
    assert max(expected) == 1024


@pytest.mark.parametrize("size", [(321, 481), (60, 20)])
def test_resize_matches_official(resize, size):
    image = np.random.default_rng(0).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    ours = transforms.resize_longest_side(image)
    assert ours.dtype == np.uint8 and ours.flags.writeable
    np.testing.assert_array_equal(ours, resize.apply_image(image))


@pytest.mark.parametrize("size", SIZES)
def test_coords_and_boxes_match_official(resize, size):
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, 1, size=(5, 2)) * [size[1], size[0]]
    boxes = rng.uniform(0, 1, size=(3, 4)) * [size[1], size[0], size[1], size[0]]
    np.testing.assert_allclose(transforms.apply_coords(coords, size), resize.apply_coords(coords, size))
    np.testing.assert_allclose(transforms.apply_boxes(boxes, size), resize.apply_boxes(boxes, size))
    as_tensor = transforms.apply_coords(torch.as_tensor(coords, dtype=torch.float32), size)
    assert as_tensor.dtype == torch.float32
    np.testing.assert_allclose(as_tensor.numpy(), resize.apply_coords(coords, size), rtol=1e-6)


def test_normalize_and_pad():
    pixels = torch.full((1, 3, 10, 20), 255.0)
    mean, std = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0])
    out = transforms.normalize_and_pad(pixels, mean, std, size=32)
    assert out.shape == (1, 3, 32, 32)
    assert out[0, :, :10, :20].flatten(1)[:, 0].tolist() == [127.0, 126.5, 126.0]
    assert out[..., 10:, :].abs().sum() == 0 and out[..., 20:].abs().sum() == 0


@pytest.mark.parametrize("original", [(321, 481), (900, 200)])
def test_postprocess_matches_official(sa, original):
    low_res = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    input_size = transforms.preprocess_shape(*original)
    fake_sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))
    expected = sa.modeling.Sam.postprocess_masks(fake_sam, low_res, input_size, original)
    ours = transforms.postprocess_masks(low_res, input_size, original)
    assert ours.shape == (2, 3, *original)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
