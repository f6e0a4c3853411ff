"""`python -m model_server embed` / `export-onnx` on real images, and their answers to bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from model_server.__main__ import UNTRAINED_SEED, main
from model_server.predictor import Predictor
from model_server.sam.build import build_sam
from model_server.service.embed import load_rgb
from model_server.service.embedding_file import load_embedding, save_embedding

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(data_root) -> list[Path]:
    return sorted((data_root / "grabcut" / "images").glob("*.jpg"))[:2]


def test_embed_two_images_matches_predictor(images, tmp_path, capsys):
    out = tmp_path / "emb"
    assert main(["embed", *map(str, images), "--model", "vit_t", "--out", str(out), "--batch-size", "2"]) == 0
    assert "UNTRAINED" in capsys.readouterr().err  # the user is told the weights are random

    predictor = Predictor(build_sam("vit_t", seed=UNTRAINED_SEED))
    for image_path in images:
        embedding, original_size, input_size = load_embedding(out / f"{image_path.stem}.npz")
        assert embedding.dtype == np.float16 and embedding.shape == (256, 64, 64)
        rgb = load_rgb(image_path)
        assert original_size == rgb.shape[:2]
        assert max(input_size) == 1024
        predictor.set_image(rgb)
        assert predictor.input_size == input_size
        expected = predictor.embedding[0].float().numpy()
        # float16 storage: relative precision 2**-11 on each value.
        np.testing.assert_allclose(embedding.astype(np.float32), expected, rtol=2e-3, atol=1e-3)


def test_embed_applies_exif_orientation(images, tmp_path):
    """A photo stored sideways with an EXIF rotation is embedded the way it is displayed."""
    upright = Image.open(images[0]).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", which undoes ROTATE_90 (counter-clockwise)
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)
    assert load_rgb(path).shape == np.asarray(upright).shape


def test_embedding_file_validation(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_embedding(tmp_path / "a.npz", np.zeros((256, 32, 32), np.float32), (10, 10), (10, 10))
    with pytest.raises(ValueError, match="original_size"):
        save_embedding(tmp_path / "a.npz", np.zeros((256, 64, 64), np.float32), (0, 10), (10, 10))
    np.savez(tmp_path / "wrong.npz", embedding=np.zeros((256, 64, 64), np.float32))
    with pytest.raises(ValueError, match="keys"):
        load_embedding(tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable embedding file"):
        load_embedding(tmp_path / "junk.npz")


@pytest.mark.parametrize(
    "make_args",
    [
        lambda tmp, img: ["embed", str(tmp / "missing.jpg"), "--out", str(tmp / "o")],
        lambda tmp, img: ["embed", str(REPO / "pyproject.toml"), "--out", str(tmp / "o")],
        lambda tmp, img: ["embed", str(img), "--out", str(tmp / "o"), "--checkpoint", str(tmp / "no.pth")],
        lambda tmp, img: ["export-onnx", "--out", str(tmp / "x.onnx"), "--checkpoint", str(REPO / "README.md")],
    ],
    ids=["missing-image", "not-an-image", "missing-checkpoint", "not-a-checkpoint"],
)
def test_bad_input_exits_2_with_a_message(images, tmp_path, make_args):
    result = subprocess.run(
        [sys.executable, "-m", "model_server", *make_args(tmp_path, images[0])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_export_onnx_cli(tmp_path):
    out = tmp_path / "decoder.onnx"
    assert main(["export-onnx", "--model", "vit_t", "--out", str(out), "--official-contract"]) == 0
    model = onnx.load(str(out))
    assert model.ir_version <= 13
    assert [o.name for o in model.graph.output] == ["masks", "iou_predictions", "low_res_masks"]
