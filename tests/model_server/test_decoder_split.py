"""The split decoder (per-image graph + per-click graph) computes what the one-graph decoder computes.

Compared with onnxruntime (CPU) against `model_server.export.writer.export_decoder_onnx`'s graph and with
the torch `Predictor`, on seeded vit_t weights and random embeddings, for prompts with and without
mask input, with boxes and with several point counts (the per-click graph has a dynamic N).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from model_server.export.contract import CLICK_INPUTS, IMAGE_OUTPUTS, MAX_IR_VERSION, onnx_prompt
from model_server.export.runner import OnnxDecoder
from model_server.export.writer import export_decoder_onnx, export_split_decoder

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    from model_server.sam.build import build_sam

    out = tmp_path_factory.mktemp("split")
    model = build_sam("vit_t", seed=0)
    click, image = export_split_decoder(model, out, prefix="decoder")
    one = export_decoder_onnx(model, out / "one.onnx")
    return model, click, image, one


def _split_run(click, image, embedding, coords, labels, mask):
    image_session = ort.InferenceSession(str(image), providers=["CPUExecutionProvider"])
    click_session = ort.InferenceSession(str(click), providers=["CPUExecutionProvider"])
    feeds = dict(zip(IMAGE_OUTPUTS, image_session.run(IMAGE_OUTPUTS, {"image_embeddings": embedding[None]})))
    feeds.update(
        point_coords=coords,
        point_labels=labels,
        mask_input=np.zeros((1, 1, 256, 256), np.float32) if mask is None else mask.reshape(1, 1, 256, 256),
        has_mask_input=np.array([0.0 if mask is None else 1.0], np.float32),
    )
    low_res, iou = click_session.run(["low_res_masks", "iou_predictions"], feeds)
    return low_res[0], iou[0]


def test_graphs_have_the_browser_contract(graphs):
    _, click, image, _ = graphs
    for path in (click, image):
        assert onnx.load(str(path)).ir_version <= MAX_IR_VERSION  # onnxruntime-web 1.30 refuses IR 14
    session = ort.InferenceSession(str(click), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == CLICK_INPUTS
    assert [o.name for o in session.get_outputs()] == ["low_res_masks", "iou_predictions"]


@pytest.mark.parametrize("num_points", [1, 3, 8])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_box", [False, True])
def test_split_equals_one_graph(graphs, num_points, with_mask, with_box):
    _, click, image, one = graphs
    rng = np.random.default_rng(num_points * 4 + 2 * with_mask + with_box)
    embedding = rng.standard_normal((256, 64, 64)).astype(np.float32)
    coords, labels = onnx_prompt(
        rng.uniform(0, 1024, (num_points, 2)),
        rng.integers(0, 2, num_points),
        np.array([100.0, 200.0, 700.0, 900.0]) if with_box else None,
    )
    mask = (3 * rng.standard_normal((256, 256))).astype(np.float32) if with_mask else None
    low_res, iou = _split_run(click, image, embedding, coords, labels, mask)
    ref_low, ref_iou = OnnxDecoder(one)(embedding, coords[0], labels[0], mask)
    assert np.abs(ref_low).max() > 0.05  # the seeded model's logits are not all ~0: the check can fail
    np.testing.assert_allclose(low_res, ref_low, atol=1e-4)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-5)


def test_split_matches_the_torch_predictor(graphs):
    import torch

    from model_server.predictor import Predictor

    model, click, image, _ = graphs
    rng = np.random.default_rng(7)
    embedding = rng.standard_normal((256, 64, 64)).astype(np.float32)
    predictor = Predictor(model)
    predictor.set_embedding(torch.from_numpy(embedding), (480, 640))
    points, point_labels = np.array([[320.0, 240.0], [100.0, 50.0]]), np.array([1, 0])
    _, ref_iou, ref_low = predictor.predict(points, point_labels, multimask_output=True)
    coords, labels = onnx_prompt(points * 1024 / 640, point_labels)
    low_res, iou = _split_run(click, image, embedding, coords, labels, None)
    np.testing.assert_allclose(low_res[1:], ref_low, atol=1e-4)
    np.testing.assert_allclose(iou[1:], ref_iou, atol=1e-5)
