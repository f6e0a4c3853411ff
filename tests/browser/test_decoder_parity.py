"""The browser's decoder gives the Python predictor's masks for the same clicks.

Real headless Chromium (the system's /usr/bin/chromium) runs the product's Web Worker
(frontend/src/inference/, built by Vite into the harness page of benchmarks/click_latency/) with
onnxruntime-web wasm on the decoder ONNX of a seeded vit_t model, cross-origin isolated (2 wasm
threads). Both sides get the same float16 embedding of a real GrabCut image (what the backend
serves), so the comparison isolates the decoder, the prompt transform and the mask upsampling.

Tolerances (float32 graphs against torch float32): low-res logits within 1e-3 absolute (observed
<= 6e-7; the logits of the seeded model span about +-0.4), IoU predictions within 1e-4, and the
mask the browser upsamples itself (upsample.ts) at the original size has IoU >= 0.99 with the
predictor's mask (observed 1.0000). Dynamic-int8 graphs do NOT meet this bar on seeded weights
(measured mask IoU 0.978-0.997, logits off by up to 9e-3), so only float32 graphs are tested and
shipped: the one-graph decoder and the split one (model_server/export/), both traced from the folded
decoder (model_server/decoding/) that the predictor runs.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "click_latency"))
import harness  # noqa: E402  (shared with benchmarks/click_latency.py)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGE = "grabcut/images/124080.jpg"
MASK = "grabcut/masks/124080__0.png"
LOGIT_TOL = 1e-3
IOU_PRED_TOL = 1e-4
MIN_MASK_IOU = 0.99


@pytest.fixture(scope="module")
def setup(data_root, tmp_path_factory):
    if not harness.CHROMIUM.exists():
        pytest.skip(f"{harness.CHROMIUM} not found: browser tests need the system's Chromium")
    import torch

    from model_server.export.writer import export_decoder_onnx, export_split_decoder
    from model_server.predictor import Predictor
    from model_server.sam.build import build_sam

    site = harness.build_harness(tmp_path_factory.mktemp("harness") / "site")
    data = site / "data"
    model = build_sam("vit_t", seed=0)
    export_decoder_onnx(model, data / "decoder.onnx")
    split_click, split_image = export_split_decoder(model, data, prefix="split")

    image = np.asarray(Image.open(data_root / IMAGE).convert("RGB"))
    object_mask = np.asarray(Image.open(data_root / MASK).convert("L")) > 127
    predictor = Predictor(model)
    with torch.no_grad():
        predictor.set_image(image)
    embedding = predictor.embedding.cpu().numpy().astype("<f2")  # what the backend stores and serves
    embedding.tofile(data / "embedding.f16")
    predictor.set_embedding(embedding, image.shape[:2])
    variants = [
        {"name": "one-graph", "kind": "ours", "decoderUrl": "/data/decoder.onnx"},
        {
            "name": "split",
            "kind": "ours",
            "decoderUrl": f"/data/{split_click.name}",
            "imageGraphUrl": f"/data/{split_image.name}",
        },
    ]
    with harness.serve(site) as url, harness.open_page(url) as page:
        info = page.evaluate(
            "o => h7.init(o)",
            {
                "variants": variants,
                "embeddingUrl": "/data/embedding.f16",
                "originalSize": list(predictor.original_size),
                "inputSize": list(predictor.input_size),
            },
        )
        yield page, predictor, object_mask, info


def _prompts(object_mask: np.ndarray) -> dict[str, dict]:
    """Click sequences from the object's ground truth: interior point, a background point, its box."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(object_mask)
    fy, fx = np.unravel_index(np.argmax(depth), depth.shape)
    outside = distance_transform_edt(~object_mask)
    by, bx = np.unravel_index(np.argmax(outside), outside.shape)
    ys, xs = np.nonzero(object_mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    fg = {"x": float(fx), "y": float(fy), "label": 1}
    bg = {"x": float(bx), "y": float(by), "label": 0}
    return {
        "one point": {"points": [fg], "multimask": True},
        "fg + bg points": {"points": [fg, bg], "multimask": False},
        "box": {"points": [], "box": box, "multimask": False},
        "box + bg point": {"points": [bg], "box": box, "multimask": False},
        "point with mask input": {"points": [fg, bg], "mask_from": "one point", "multimask": False},
    }


def _browser_decode(page, variant: str, prompt: dict, mask_input: np.ndarray | None):
    request = {"points": prompt["points"]}
    if "box" in prompt:
        request["box"] = prompt["box"]
    if mask_input is not None:
        request["maskInputBase64"] = base64.b64encode(mask_input.astype("<f4").tobytes()).decode()
    result = page.evaluate("a => h7.decode(...a)", [variant, request])
    low_res = np.frombuffer(base64.b64decode(result["lowRes"]), "<f4").reshape(4, 256, 256)
    return low_res, np.array(result["iou"], dtype=np.float32)


def _browser_mask(page, token: int, shape: tuple[int, int]) -> np.ndarray:
    mask = np.frombuffer(base64.b64decode(page.evaluate("t => h7.upsample(t)", token)), np.uint8)
    return mask.reshape(shape).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("variant", ["one-graph", "split"])
def test_browser_decoder_matches_python_predictor(setup, variant):
    page, predictor, object_mask, info = setup
    assert info["crossOriginIsolated"] is True  # the page got COOP/COEP: wasm threads are on
    assert info["threads"][variant] == 2
    previous: dict[str, np.ndarray] = {}
    for name, prompt in _prompts(object_mask).items():
        mask_input = previous[prompt["mask_from"]][None] if "mask_from" in prompt else None
        points = prompt["points"]
        masks, iou, low_res = predictor.predict(
            point_coords=np.array([[p["x"], p["y"]] for p in points]) if points else None,
            point_labels=np.array([p["label"] for p in points]) if points else None,
            box=np.array(prompt["box"]) if "box" in prompt else None,
            mask_input=mask_input,
            multimask_output=prompt["multimask"],
        )
        tokens = [1, 2, 3] if prompt["multimask"] else [0]
        browser_low, browser_iou = _browser_decode(page, variant, prompt, mask_input)
        np.testing.assert_allclose(browser_low[tokens], low_res, atol=LOGIT_TOL, err_msg=f"{name}: low-res logits")
        np.testing.assert_allclose(browser_iou[tokens], iou, atol=IOU_PRED_TOL, err_msg=f"{name}: IoU predictions")
        for i, token in enumerate(tokens):
            browser_mask = _browser_mask(page, token, object_mask.shape)
            assert masks[i].any(), f"{name}: degenerate reference mask (empty), the comparison would prove nothing"
            assert _iou(browser_mask, masks[i]) >= MIN_MASK_IOU, (
                f"{name}, token {token}: mask IoU {_iou(browser_mask, masks[i]):.4f}"
            )
        previous[name] = low_res[int(np.argmax(iou))]


def test_superseded_hover_previews_are_dropped(setup):
    """Hovers queued behind a running decode are dropped once anything newer arrives; clicks never."""
    page, _, _, _ = setup
    outcomes = page.evaluate("a => h7.burst(...a)", ["split", {"x": 10, "y": 10, "label": 1}])
    # The first hover starts at once; the two queued behind it are superseded (by each other and by
    # the click); the click and the hover after it run.
    assert outcomes == ["done", "superseded", "superseded", "done", "done"]
