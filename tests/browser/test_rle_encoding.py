"""The browser's COCO RLE (frontend/src/editor/rle.ts) against pycocotools, byte for byte.

rle.ts is compiled with the frontend's own TypeScript and run by Node over masks chosen to hit the
format's corners: empty, full, a first column that starts with foreground, single pixels, long runs
(multi-character numbers, negative deltas), and random blobs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [np.zeros((7, 5), np.uint8), np.ones((7, 5), np.uint8)]
    first = np.zeros((6, 4), np.uint8)
    first[0, 0] = 1
    out.append(first)
    last = np.zeros((6, 4), np.uint8)
    last[-1, -1] = 1
    out.append(last)
    big = np.zeros((300, 700), np.uint8)
    big[10:290, 5:20] = 1
    big[:, 600:] = 1
    out.append(big)
    for _ in range(5):
        h, w = rng.integers(1, 80, size=2)
        out.append((rng.random((h, w)) < rng.random()).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tsc = FRONTEND / "node_modules" / ".bin" / "tsc"
    node = shutil.which("node")
    if node is None or not tsc.exists():
        pytest.skip("node or the frontend's TypeScript (npm ci in frontend/) is missing")
    out = tmp_path_factory.mktemp("rle_js")
    subprocess.run(
        [
            str(tsc),
            "--outDir",
            str(out),
            "--module",
            "esnext",
            "--target",
            "es2022",
            "--skipLibCheck",
            str(FRONTEND / "src" / "editor" / "rle.ts"),
        ],
        check=True,
    )
    return next(out.rglob("rle.js"))


def run_node(compiled: Path, masks: list[np.ndarray]) -> list[dict]:
    payload = [{"h": int(m.shape[0]), "w": int(m.shape[1]), "data": m.flatten().tolist()} for m in masks]
    script = (
        f"import {{ encodeRle, decodeRle }} from {json.dumps(compiled.as_uri())};\n"
        "let input = ''; process.stdin.on('data', (d) => (input += d)); process.stdin.on('end', () => {\n"
        "  const out = JSON.parse(input).map(({ h, w, data }) => {\n"
        "    const rle = encodeRle(Uint8Array.from(data), h, w);\n"
        "    return { rle, roundTrip: Array.from(decodeRle(rle)) };\n"
        "  });\n"
        "  process.stdout.write(JSON.stringify(out));\n"
        "});\n"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_typescript_rle_matches_pycocotools(compiled):
    masks = cases()
    results = run_node(compiled, masks)
    for mask, result in zip(masks, results, strict=True):
        expected = mask_util.encode(np.asfortranarray(mask))
        assert result["rle"]["size"] == list(mask.shape)
        assert result["rle"]["counts"] == expected["counts"].decode("ascii"), mask.shape
        assert np.array_equal(np.array(result["roundTrip"], np.uint8).reshape(mask.shape), mask)
