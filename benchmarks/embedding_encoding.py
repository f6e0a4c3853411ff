"""What the browser's decoder loses when the embedding travels as per-channel int8 instead of float16.

For each image of the shared data (grabcut by default), the product's encoder (untrained vit_t,
seed 0: the model that exists here; random weights, so the masks are not objects, but the decoder's
arithmetic is the same as with trained ones) embeds it; the embedding goes through each wire
encoding of backend/embeddings/encoding.py and back; the split decoder graphs the browser runs
(model_server/export, float32, onnxruntime on the CPU here: the same graph and arithmetic as
onnxruntime-web's wasm backend) decode the same click sequence from every version: four clicks per
image (a foreground click deep inside the ground-truth object, then background / foreground /
background refinements, each with the previous low-res logits of its own encoding as mask input).
Each mask is the shown token (best of 1-3 for the first click, token 0 after) upsampled to the
original size as the page does (bilinear, cropped to the input size) and thresholded at 0; its IoU
against the float16 mask of the same click is reported.

Decode time in the browser: the product's own decoders (frontend/src/inference/float16.ts, int8.ts),
compiled by tsc and imported into headless Chromium, converting one real embedding of each encoding
to float32 (median of 30 runs after 5 warm-ups).

Usage: .venv/bin/python benchmarks/embedding_encoding.py [--images 20] [--dataset grabcut]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from model_server.api import WIRE_FLOAT16, WIRE_INT8  # noqa: E402
from model_server.service.wire import decode_int8, encode  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CHROMIUM = Path("/usr/bin/chromium")
TOLERANCE = 0.99  # mean IoU vs float16 at or above which int8 ships


def load_items(dataset: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import csv

    rows = list(csv.DictReader((DATA / dataset / "manifest.csv").open()))
    seen: set[str] = set()
    items = []
    for row in rows:
        if row["image"] in seen:
            continue
        seen.add(row["image"])
        rgb = np.asarray(Image.open(DATA / dataset / row["image"]).convert("RGB"))
        mask = np.asarray(Image.open(DATA / dataset / row["mask"]).convert("L")) > 127
        items.append((rgb, mask))
        if len(items) == count:
            break
    return items


def clicks(mask: np.ndarray, rng: np.random.Generator) -> list[tuple[float, float, int]]:
    from scipy.ndimage import distance_transform_edt

    inside = np.unravel_index(np.argmax(distance_transform_edt(mask)), mask.shape)
    plan = [(float(inside[1]), float(inside[0]), 1)]
    fg, bg = np.argwhere(mask), np.argwhere(~mask)
    for label in (0, 1, 0):
        y, x = (fg if label else bg)[rng.integers(len(fg if label else bg))]
        plan.append((float(x), float(y), label))
    return plan


class Decoder:
    """The browser's split decoder (per-image graph, per-click graph) in onnxruntime."""

    def __init__(self, workdir: Path) -> None:
        import onnxruntime as ort

        from model_server.export.writer import export_split_decoder
        from model_server.sam.build import build_sam

        click, image = export_split_decoder(build_sam("vit_t", seed=0), workdir, prefix="decoder")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.click = ort.InferenceSession(str(click), options, providers=["CPUExecutionProvider"])
        self.image = ort.InferenceSession(str(image), options, providers=["CPUExecutionProvider"])

    def masks(self, embedding: np.ndarray, plan, original: tuple[int, int], inner: tuple[int, int]) -> list[np.ndarray]:
        names = [o.name for o in self.image.get_outputs()]
        side = dict(zip(names, self.image.run(None, {"image_embeddings": embedding.reshape(1, 256, 64, 64)})))
        sy, sx = inner[0] / original[0], inner[1] / original[1]
        points: list[tuple[float, float, int]] = []
        previous: np.ndarray | None = None
        out = []
        for x, y, label in plan:
            points.append((x * sx, y * sy, label))
            coords = np.array([[p[0], p[1]] for p in points] + [[0, 0]], np.float32)[None]
            labels = np.array([p[2] for p in points] + [-1], np.float32)[None]
            feeds = {
                **{n: side[n] for n in side if n in {i.name for i in self.click.get_inputs()}},
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": previous if previous is not None else np.zeros((1, 1, 256, 256), np.float32),
                "has_mask_input": np.array([1 if previous is not None else 0], np.float32),
            }
            low, iou = self.click.run(["low_res_masks", "iou_predictions"], feeds)
            token = 1 + int(np.argmax(iou[0, 1:])) if len(points) == 1 else 0
            logits = low[0, token]
            previous = logits[None, None].astype(np.float32)
            out.append(upsample(logits, original, inner))
        return out


def upsample(logits: np.ndarray, original: tuple[int, int], inner: tuple[int, int]) -> np.ndarray:
    frame = np.asarray(Image.fromarray(logits.astype(np.float32), mode="F").resize((1024, 1024), Image.BILINEAR))
    cropped = Image.fromarray(np.ascontiguousarray(frame[: inner[0], : inner[1]]), mode="F")
    return np.asarray(cropped.resize((original[1], original[0]), Image.BILINEAR)) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log: the table is the output."""


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def browser_decode_ms(workdir: Path, bodies: dict[str, bytes]) -> dict[str, float]:
    """Median ms of the product's float16 and int8 decoders in headless Chromium, per encoding."""
    tsc = REPO / "frontend" / "node_modules" / ".bin" / "tsc"
    sources = [REPO / "frontend/src/inference/float16.ts", REPO / "frontend/src/inference/int8.ts"]
    site = workdir / "site"
    subprocess.run(
        [str(tsc), "--outDir", str(site), "--target", "es2022", "--module", "es2022", *map(str, sources)],
        check=True,
        timeout=300,
    )
    for name, body in bodies.items():
        (site / f"{name}.bin").write_bytes(body)
    (site / "index.html").write_text("<!doctype html><title>decode</title>")
    from playwright.sync_api import sync_playwright

    script = """async ([name, module, fn]) => {
        const m = await import(module);
        const body = await (await fetch(`/${name}.bin`)).arrayBuffer();
        const times = [];
        for (let i = 0; i < 35; i++) {
            const t = performance.now();
            m[fn](body);
            if (i >= 5) times.push(performance.now() - t);
        }
        times.sort((a, b) => a - b);
        return times[times.length >> 1];
    }"""
    modules = {
        WIRE_FLOAT16: ("/float16.js", "float16ToFloat32"),
        WIRE_INT8: ("/int8.js", "int8ToFloat32"),
    }
    with serve(site) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url + "/index.html")
        result = {name: page.evaluate(script, [name, *modules[name]]) for name in bodies}
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--dataset", default="grabcut", choices=["grabcut", "davis345"])
    args = parser.parse_args()
    from model_server.service.embedding_model import EmbeddingModel

    start = time.time()
    items = load_items(args.dataset, args.images)
    model = EmbeddingModel("vit_t", seed=0, device="cpu")
    rng = np.random.default_rng(0)
    ious: list[float] = []
    first: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        decoder = Decoder(Path(tmp))
        bodies: dict[str, bytes] = {}
        for rgb, mask in items:
            result = model.embed([rgb])[0]
            f16 = result.embedding.astype("<f2").tobytes()
            int8 = encode(result.embedding, WIRE_INT8)
            bodies = {WIRE_FLOAT16: f16, WIRE_INT8: int8}
            plan = clicks(mask, rng)
            reference = decoder.masks(
                np.frombuffer(f16, "<f2").astype(np.float32), plan, result.original_size, result.input_size
            )
            candidate = decoder.masks(decode_int8(int8), plan, result.original_size, result.input_size)
            scores = [iou(a, b) for a, b in zip(reference, candidate)]
            ious += scores
            first.append(scores[0])
        decode_ms = browser_decode_ms(Path(tmp), bodies)
    mean = float(np.mean(ious))
    print(
        "| encoding | bytes per image | decode to float32 in Chromium (ms, median) | mask IoU vs float16: mean | min | first click mean |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| float16 | {len(bodies['float16']):,} | {decode_ms['float16']:.1f} | 1 | 1 | 1 |")
    print(
        f"| int8-per-channel | {len(bodies['int8-per-channel']):,} | {decode_ms['int8-per-channel']:.1f} | "
        f"{mean:.4f} | {min(ious):.4f} | {np.mean(first):.4f} |"
    )
    verdict = "ships" if mean >= TOLERANCE else "stays float16"
    print(
        f"\n{len(items)} {args.dataset} images x 4 clicks, untrained vit_t (seed 0), split decoder float32 in "
        f"onnxruntime; tolerance mean IoU >= {TOLERANCE}: int8 {verdict}; {time.time() - start:.0f} s."
    )


if __name__ == "__main__":
    main()
