"""Predictor: parity with the official SamPredictor on the same random weights, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_server.predictor import Predictor

TOL = 1e-3

# Prompts on the real image (original frame); the image is 481x321 (W x H).
PROMPTS = {
    "single_point": dict(point_coords=np.array([[250.0, 160.0]]), point_labels=np.array([1])),
    "fg_bg_points": dict(
        point_coords=np.array([[250.0, 160.0], [100.0, 80.0], [400.0, 300.0], [320.0, 40.0]]),
        point_labels=np.array([1, 0, 1, 0]),
    ),
    "box": dict(box=np.array([60.0, 30.0, 420.0, 300.0])),
    "box_and_points": dict(
        point_coords=np.array([[250.0, 160.0], [80.0, 50.0]]),
        point_labels=np.array([1, 0]),
        box=np.array([60.0, 30.0, 420.0, 300.0]),
    ),
    "edge_points": dict(point_coords=np.array([[0.0, 0.0], [481.0, 321.0]]), point_labels=np.array([1, 0])),
}


def _assert_close(ours, reference, what):
    masks, iou, low_res = ours
    ref_masks, ref_iou, ref_low_res = reference
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype, what
    assert np.abs(low_res - ref_low_res).max() < TOL, what
    assert np.abs(iou - ref_iou).max() < TOL, what
    if masks.dtype == bool:
        # Pixels whose logit is within float noise of 0 may flip; there are almost none.
        assert (masks != ref_masks).mean() < 1e-4, what
    else:
        assert np.abs(masks - ref_masks).max() < TOL, what


def test_image_embedding_matches_official(encoded_predictor, official_predictor, real_image):
    assert encoded_predictor.original_size == tuple(official_predictor.original_size) == real_image.shape[:2]
    assert encoded_predictor.input_size == tuple(official_predictor.input_size)
    reference = official_predictor.features
    assert encoded_predictor.embedding.shape == reference.shape == (1, 256, 64, 64)
    assert reference.abs().max() > 1  # random weights, yet a non-trivial embedding
    assert (encoded_predictor.embedding - reference).abs().max().item() < TOL


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_predict_matches_official(encoded_predictor, official_predictor, prompt, multimask):
    kwargs = dict(PROMPTS[prompt], multimask_output=multimask)
    ours = encoded_predictor.predict(**kwargs)
    reference = official_predictor.predict(**kwargs)
    _assert_close(ours, reference, prompt)
    assert ours[0].shape == (3 if multimask else 1, *encoded_predictor.original_size)
    assert ours[1].dtype == ours[2].dtype == np.float32
    assert 0 < ours[0].mean() < 1  # a mask that is neither empty nor full: the comparison means something


def test_predict_with_mask_input_and_logits_matches_official(encoded_predictor, official_predictor):
    first = official_predictor.predict(**PROMPTS["single_point"])
    previous = first[2][np.argmax(first[1])][None]  # 1x256x256
    kwargs = dict(
        point_coords=np.array([[250.0, 160.0], [120.0, 250.0]]),
        point_labels=np.array([1, 0]),
        mask_input=previous,
        multimask_output=False,
        return_logits=True,
    )
    _assert_close(encoded_predictor.predict(**kwargs), official_predictor.predict(**kwargs), "mask_input")
    mask_only = dict(mask_input=previous, multimask_output=True)
    _assert_close(encoded_predictor.predict(**mask_only), official_predictor.predict(**mask_only), "mask only")


def test_set_embedding_reproduces_set_image(encoded_predictor, our_vit_b, real_image):
    cached = Predictor(our_vit_b)
    cached.set_embedding(encoded_predictor.embedding[0].numpy().astype(np.float16), real_image.shape[:2])
    assert cached.input_size == encoded_predictor.input_size
    kwargs = PROMPTS["fg_bg_points"]
    masks, iou, low_res = cached.predict(**kwargs)
    ref_masks, ref_iou, ref_low_res = encoded_predictor.predict(**kwargs)
    # float16 storage of the embedding, as in the product's cache: small, bounded drift.
    assert np.abs(low_res - ref_low_res).max() < 0.05 * np.abs(ref_low_res).max()
    assert (masks != ref_masks).mean() < 0.01


def test_predict_batch_equals_looping_predict(encoded_predictor):
    rng = np.random.default_rng(0)
    height, width = encoded_predictor.original_size
    coords = rng.uniform([0, 0], [width, height], size=(3, 3, 2))
    labels = rng.integers(0, 2, size=(3, 3))
    corners = np.sort(rng.uniform([0, 0], [width, height], size=(3, 2, 2)), axis=1).reshape(3, 4)
    masks_in = rng.normal(size=(3, 1, 256, 256)).astype(np.float32)
    for kwargs in (
        dict(point_coords=coords, point_labels=labels),
        dict(point_coords=coords, point_labels=labels, boxes=corners, mask_input=masks_in),
    ):
        batched = encoded_predictor.predict_batch(**kwargs, return_logits=True)
        assert batched[0].shape == (3, 3, height, width)
        for i in range(3):
            single = encoded_predictor.predict(
                point_coords=kwargs["point_coords"][i] if "point_coords" in kwargs else None,
                point_labels=kwargs["point_labels"][i] if "point_labels" in kwargs else None,
                box=kwargs["boxes"][i] if "boxes" in kwargs else None,
                mask_input=kwargs["mask_input"][i] if "mask_input" in kwargs else None,
                return_logits=True,
            )
            for got, want in zip(batched, single):
                np.testing.assert_allclose(got[i], want, atol=1e-4)


def test_decode_broadcasts_the_embedding_and_equals_looping(encoded_predictor):
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(4, 4, 2, generator=generator) * 1024
    labels = torch.tensor([[1, 0, 2, 3], [1, 1, 0, -1], [1, -1, -1, -1], [2, 3, 1, -1]])
    with torch.inference_mode():
        low_res, iou = encoded_predictor.decode(coords, labels, None, multimask_output=True)
        assert low_res.shape == (4, 3, 256, 256) and iou.shape == (4, 3)
        for i in range(4):
            one_low_res, one_iou = encoded_predictor.decode(coords[i : i + 1], labels[i : i + 1], None, True)
            torch.testing.assert_close(low_res[i], one_low_res[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(iou[i], one_iou[0], atol=1e-4, rtol=0)
        single, _ = encoded_predictor.decode(coords, labels, torch.zeros(4, 1, 256, 256), multimask_output=False)
        assert single.shape == (4, 1, 256, 256)
        assert encoded_predictor.upscale(single).shape == (4, 1, *encoded_predictor.original_size)


def test_decode_records_gradients_for_training(encoded_predictor):
    coords = torch.tensor([[[500.0, 300.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, -1]])
    low_res, iou = encoded_predictor.decode(coords, labels, None, multimask_output=False)
    (low_res.mean() + iou.mean()).backward()
    grad = encoded_predictor.model.mask_decoder.iou_token.weight.grad
    encoded_predictor.model.zero_grad(set_to_none=True)
    assert grad is not None and grad.abs().sum() > 0


def test_half_precision_decoder_runs(our_vit_b, encoded_predictor):
    """Nothing in the prompt encoder/decoder path breaks under `.half()` (as on a GPU)."""
    from model_server.sam import build_sam

    model = build_sam("vit_t", seed=0)
    model.mask_decoder.load_state_dict(our_vit_b.mask_decoder.state_dict())
    model.prompt_encoder.load_state_dict(our_vit_b.prompt_encoder.state_dict())
    predictor = Predictor(model.half())
    predictor.set_embedding(encoded_predictor.embedding, encoded_predictor.original_size)
    masks, iou, low_res = predictor.predict(**PROMPTS["box_and_points"])
    _, ref_iou, ref_low_res = encoded_predictor.predict(**PROMPTS["box_and_points"])
    assert low_res.dtype == np.float32 and np.isfinite(low_res).all()
    assert np.abs(low_res - ref_low_res).max() < 0.1 * np.abs(ref_low_res).max()


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        ([[[0, 0, 0]]], "numpy"),
    ],
)
def test_set_image_rejects_bad_images(our_vit_b, image, message):
    with pytest.raises(ValueError, match=message):
        Predictor(our_vit_b).set_image(image)


def test_predict_before_set_image(our_vit_b):
    predictor = Predictor(our_vit_b)
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="set_image"):
        predictor.decode(torch.zeros(1, 1, 2), torch.ones(1, 1), None, True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(point_coords=np.array([[482.0, 10.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[10.0, -0.5]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([1, 0])), "does not match"),
        (dict(point_coords=np.array([[10.0, 10.0]])), "together"),
        (dict(point_coords=np.array([10.0, 10.0]), point_labels=np.array([1])), "shape"),
        (dict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([2])), "point_labels"),
        (dict(point_coords=np.array([[np.nan, 10.0]]), point_labels=np.array([1])), "NaN"),
        (dict(box=np.array([10.0, 10.0, 500.0, 20.0])), "outside"),
        (dict(box=np.array([50.0, 10.0, 20.0, 20.0])), "XYXY"),
        (dict(box=np.array([1.0, 2.0, 3.0])), "shape"),
        (dict(mask_input=np.zeros((256, 256))), "shape"),
    ],
)
def test_predict_rejects_bad_prompts(encoded_predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        encoded_predictor.predict(**kwargs)


def test_batched_forms_reject_bad_shapes(encoded_predictor):
    with pytest.raises(ValueError, match="batch size"):
        encoded_predictor.predict_batch(np.ones((2, 1, 2)), np.ones((2, 1)), boxes=np.array([[1.0, 1.0, 5.0, 5.0]]))
    with pytest.raises(ValueError, match="at least one"):
        encoded_predictor.predict_batch()
    with pytest.raises(ValueError, match="BxNx2"):
        encoded_predictor.decode(torch.zeros(2, 2), torch.ones(2, 2), None, True)
    with pytest.raises(ValueError, match="mask_input"):
        encoded_predictor.decode(torch.zeros(2, 1, 2), torch.ones(2, 1), torch.zeros(1, 1, 256, 256), True)


@pytest.mark.parametrize(
    "embedding, size, message",
    [
        (np.zeros((256, 32, 32), np.float32), (10, 10), "256x64x64"),
        (np.zeros((2, 256, 64, 64), np.float32), (10, 10), "256x64x64"),
        (np.zeros((256, 64, 64), np.int32), (10, 10), "floating"),
        (np.zeros((256, 64, 64), np.float16), (0, 10), "original_size"),
    ],
)
def test_set_embedding_rejects_bad_input(our_vit_b, embedding, size, message):
    with pytest.raises(ValueError, match=message):
        Predictor(our_vit_b).set_embedding(embedding, size)
