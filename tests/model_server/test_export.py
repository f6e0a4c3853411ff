"""ONNX decoder graphs against the torch decoder, under onnxruntime on the CPU.

The decoder is the same for every variant, so one small seeded model serves all tests; the
image embedding is the seeded untrained vit_t's embedding of a real GrabCut image.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_server.export.contract import MAX_IR_VERSION, onnx_prompt
from model_server.export.runner import OnnxDecoder
from model_server.export.writer import export_decoder_onnx, export_official_contract_onnx
from model_server.predictor import Predictor
from model_server.sam.build import build_sam
from model_server.transforms import postprocess_masks, preprocess_shape

# int8 tolerance. Measured on this seeded untrained model (30 random prompts): max |diff| 0.053 for
# max |logit| 0.49 (11%), thresholded-mask IoU >= 0.957, predicted IoU within 0.005.
INT8_MAX_REL_LOGIT = 0.2  # of the largest |fp32 logit| of the prompt
INT8_MIN_MASK_IOU = 0.9


@pytest.fixture(scope="module")
def predictor(data_root) -> Predictor:
    from PIL import Image

    predictor = Predictor(build_sam("vit_t", seed=0))
    image = np.asarray(Image.open(data_root / "grabcut" / "images" / "106024.jpg").convert("RGB"))
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def embedding(predictor) -> np.ndarray:
    """1x256x64x64 float32."""
    return predictor.embedding.float().cpu().numpy()


@pytest.fixture(scope="module")
def graphs(predictor, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("onnx")
    model = predictor.model
    return {
        "fp32": str(export_decoder_onnx(model, root / "decoder.onnx")),
        "int8": str(export_decoder_onnx(model, root / "decoder_int8.onnx", quantize=True)),
        "official": str(export_official_contract_onnx(model, root / "official.onnx")),
    }


@pytest.fixture(scope="module")
def decoder(graphs) -> OnnxDecoder:
    return OnnxDecoder(graphs["fp32"])


def _prompt(num_points: int, box: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random clicks (1024 frame) inside the image's 1024x768 area, alternating fg/bg, first fg."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform([0, 0], [1023, 767], size=(num_points, 2))
    labels = (np.arange(num_points) % 2 == 0).astype(np.int64)
    box_1024 = np.array([200.0, 150.0, 700.0, 600.0]) if box else None
    return coords, labels, box_1024


def _torch_decode(predictor, coords, labels, box, mask_input):
    """The graph's inputs, and all four tokens from `Predictor.decode` (token 0, then tokens 1-3)."""
    point_coords, point_labels = onnx_prompt(coords, labels, box)
    mask = None if mask_input is None else torch.from_numpy(mask_input).reshape(1, 1, 256, 256)
    with torch.no_grad():
        outs = [
            predictor.decode(torch.from_numpy(point_coords), torch.from_numpy(point_labels), mask, multimask)
            for multimask in (False, True)
        ]
    low_res = torch.cat([outs[0][0], outs[1][0]], dim=1)[0].float().numpy()
    iou = torch.cat([outs[0][1], outs[1][1]], dim=1)[0].float().numpy()
    return point_coords, point_labels, low_res, iou


@pytest.mark.parametrize("num_points", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("with_mask", [False, True])
def test_parity_with_torch_decoder(predictor, embedding, decoder, num_points, with_mask):
    coords, labels, _ = _prompt(num_points, box=False, seed=num_points)
    mask_input = None
    if with_mask:
        mask_input = np.random.default_rng(1).normal(0, 5, (256, 256)).astype(np.float32)
    point_coords, point_labels, expected_masks, expected_iou = _torch_decode(
        predictor, coords, labels, None, mask_input
    )
    low_res, iou = decoder(embedding, point_coords, point_labels, mask_input)
    assert low_res.shape == (4, 256, 256) and iou.shape == (4,)
    np.testing.assert_allclose(low_res, expected_masks, atol=1e-3, rtol=0)
    np.testing.assert_allclose(iou, expected_iou, atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_points", [0, 2])
def test_parity_with_box(predictor, embedding, decoder, num_points):
    coords, labels, box = _prompt(num_points, box=True, seed=7)
    point_coords, point_labels, expected_masks, expected_iou = _torch_decode(predictor, coords, labels, box, None)
    assert point_labels[0, -1] == 3 and -1 not in point_labels  # corners replace the padding point
    low_res, iou = decoder(embedding, point_coords, point_labels)
    np.testing.assert_allclose(low_res, expected_masks, atol=1e-3, rtol=0)
    np.testing.assert_allclose(iou, expected_iou, atol=1e-4, rtol=0)


def test_mask_input_changes_the_output(embedding, decoder):
    """has_mask_input really switches the dense prompt (parity alone would not catch a no-op)."""
    coords, labels = onnx_prompt(np.array([[400.0, 300.0]]), np.array([1]))
    plain, _ = decoder(embedding, coords, labels)
    masked, _ = decoder(embedding, coords, labels, np.full((256, 256), 10.0, np.float32))
    assert np.abs(plain - masked).max() > 1e-2


@pytest.mark.parametrize("name", ["fp32", "int8", "official"])
def test_graphs_load_in_onnxruntime_web_versions(graphs, name):
    """IR version <= 13 (onnxruntime-web 1.30 refuses 14), opset 17, and a dynamic point count."""
    model = onnx.load(graphs[name])
    assert model.ir_version <= MAX_IR_VERSION
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17
    onnx.checker.check_model(model)
    inputs = {i.name: i for i in model.graph.input}
    num_points = inputs["point_coords"].type.tensor_type.shape.dim[1]
    assert num_points.dim_param and not num_points.HasField("dim_value")


def test_int8_within_tolerance(graphs, embedding, decoder):
    quantized = OnnxDecoder(graphs["int8"])
    worst_rel, worst_iou = 0.0, 1.0
    for num_points in (1, 3, 6):
        coords, labels, _ = _prompt(num_points, box=False, seed=num_points)
        point_coords, point_labels = onnx_prompt(coords, labels)
        full, full_iou = decoder(embedding, point_coords, point_labels)
        small, small_iou = quantized(embedding, point_coords, point_labels)
        worst_rel = max(worst_rel, float(np.abs(full - small).max() / np.abs(full).max()))
        fg_full, fg_small = full > 0, small > 0
        union = (fg_full | fg_small).sum(axis=(1, 2))
        mask_iou = np.where(union > 0, (fg_full & fg_small).sum(axis=(1, 2)) / np.maximum(union, 1), 1.0)
        worst_iou = min(worst_iou, float(mask_iou.min()))
        np.testing.assert_allclose(small_iou, full_iou, atol=0.02)
    assert worst_rel <= INT8_MAX_REL_LOGIT, worst_rel
    assert worst_iou >= INT8_MIN_MASK_IOU, worst_iou


@pytest.mark.parametrize("num_clicks", [1, 3])
@pytest.mark.parametrize("orig_size", [(480, 640), (700, 300)])
def test_official_contract_matches_ours(graphs, embedding, decoder, num_clicks, orig_size):
    coords, labels, _ = _prompt(num_clicks, box=False, seed=3)
    point_coords, point_labels = onnx_prompt(coords, labels)
    ours, ours_iou = decoder(embedding, point_coords, point_labels)
    session = ort.InferenceSession(graphs["official"], providers=["CPUExecutionProvider"])
    masks, iou, low_res = session.run(
        None,
        {
            "image_embeddings": embedding,
            "point_coords": point_coords,
            "point_labels": point_labels,
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(orig_size, np.float32),
        },
    )
    # The demo's selection: one click (+ padding) is ambiguous -> best multimask token; else token 0.
    token = 1 + int(np.argmax(ours_iou[1:])) if num_clicks == 1 else 0
    assert masks.shape == (1, 1, *orig_size) and low_res.shape == (1, 1, 256, 256)
    np.testing.assert_allclose(low_res[0, 0], ours[token], atol=1e-5, rtol=0)
    np.testing.assert_allclose(iou[0, 0], ours_iou[token], atol=1e-6, rtol=0)
    # Full resolution inside the graph agrees with the product's own post-processing.
    expected = postprocess_masks(torch.from_numpy(ours[token])[None, None], preprocess_shape(*orig_size), orig_size)[
        0, 0
    ].numpy()
    np.testing.assert_allclose(masks[0, 0], expected, atol=1e-4, rtol=0)


def test_runner_rejects_bad_prompts(embedding, decoder):
    with pytest.raises(ValueError, match="points"):
        decoder(embedding, np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        onnx_prompt(np.zeros((2, 2)), np.zeros(3))
    coords, labels = onnx_prompt(np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match="embedding"):
        decoder(embedding[:, :128], coords, labels)
    with pytest.raises(ValueError, match="mask_input"):
        decoder(embedding, coords, labels, np.zeros((128, 128), np.float32))
