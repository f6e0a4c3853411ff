"""Click-to-mask-drawn latency of the browser decoder, ours against the official demo's contract.

Measures, in headless Chromium on this machine, the time from a real click event (its
`event.timeStamp`) to the animation frame after the overlay's `putImageData`, over the same click
sequence for every graph, interleaved click by click so that load from other processes on the
machine hits all graphs alike. The image is large (a DAVIS frame upscaled to 4000 px wide) because
that is where full-resolution work hurts.

Graphs (all from the same seeded vit_t model, all run by onnxruntime-web 1.30 wasm with the same
runtime settings: SIMD, 2 threads under cross-origin isolation):

* ``official-int8``: the SAM demo's contract (model_server/export/writer.py `export_official_contract_onnx`,
  dynamic int8 as the demo ships it): the graph upsamples the chosen mask to the original size;
  the page thresholds every full-res logit into an original-size ImageData (the demo's drawing path).
* ``ours-*``: our contract (low-res logits of all four tokens) through the product's DecoderClient;
  the page upsamples only the shown token, at display resolution, straight into the overlay's
  ImageData (frontend/src/inference/upsample.ts). ``ours-fp32`` / ``ours-int8``: the one-graph
  decoder; ``ours-split`` / ``ours-split-int8``: the per-image + per-click decoder (all from
  model_server/export/, traced from the one folded decoder, model_server/decoding/). Only the float32 graphs pass the browser parity test
  (tests/browser/test_decoder_parity.py); int8 ones are here for comparison.

Click sequence: groups of four clicks on the object of the image (first a foreground click, then
refinements alternating background/foreground, each with the previous low-res logits as mask input),
the annotator's pattern; a first group per graph is warm-up and not counted.

Usage: .venv/bin/python benchmarks/click_latency.py [--clicks 100] [--variants official-int8,ours-int8]
Prints a markdown table: p50 and p95 per graph and the p50 ratio to ``official-int8``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "click_latency"))
import harness

DATA = harness.REPO.parent / "shared" / "data"
IMAGE = "davis345/images/042.jpg"  # 854x480, among the largest frames in the evaluation data
MASK = "davis345/masks/042__0.png"
LONG_SIDE = 4000
DISPLAY_WIDTH = 1280
GROUP = 4  # clicks per object: one fresh click, three refinements
REFERENCE = "official-int8"


def export_graphs(workdir: Path, names: list[str]) -> dict[str, dict[str, str]]:
    """Export every requested graph of one seeded vit_t model; returns harness variant specs."""
    from model_server.export.writer import export_decoder_onnx, export_official_contract_onnx, export_split_decoder
    from model_server.sam.build import build_sam

    model = build_sam("vit_t", seed=0)
    variants: dict[str, dict[str, str]] = {}
    for name in names:
        if name == "official-int8":
            export_official_contract_onnx(model, workdir / f"{name}.onnx", quantize=True)
            variants[name] = {"kind": "official", "decoderUrl": f"/data/{name}.onnx"}
        elif name in ("ours-fp32", "ours-int8"):
            export_decoder_onnx(model, workdir / f"{name}.onnx", quantize=name.endswith("int8"))
            variants[name] = {"kind": "ours", "decoderUrl": f"/data/{name}.onnx"}
        elif name.startswith("ours-split"):
            click, image = export_split_decoder(model, workdir, prefix=name, quantize=name.endswith("int8"))
            variants[name] = {
                "kind": "ours",
                "decoderUrl": f"/data/{click.name}",
                "imageGraphUrl": f"/data/{image.name}",
            }
        else:
            raise ValueError(f"unknown variant {name!r}")
    return variants


def prepare_image(workdir: Path) -> tuple[np.ndarray, dict]:
    """Upscale the test frame to LONG_SIDE px, embed it with the product's encoder; returns its mask."""
    from model_server.service.embedding_model import EmbeddingModel

    image = Image.open(DATA / IMAGE).convert("RGB")
    scale = LONG_SIDE / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    large = image.resize(size, Image.BICUBIC)
    large.save(workdir / "image.jpg", quality=90)
    mask = np.asarray(Image.open(DATA / MASK).convert("L").resize(size, Image.NEAREST)) > 127
    result = EmbeddingModel("vit_t", seed=0, device="cpu").embed([np.asarray(large)])[0]
    result.embedding.astype("<f2").tofile(workdir / "embedding.f16")
    return mask, {"originalSize": list(result.original_size), "inputSize": list(result.input_size)}


def click_plan(mask: np.ndarray, clicks: int, seed: int = 0) -> list[tuple[int, int, int, bool]]:
    """(x, y) in display CSS pixels, label, fresh: groups of GROUP clicks on the object and around it."""
    rng = np.random.default_rng(seed)
    step = mask.shape[1] / DISPLAY_WIDTH
    inside, outside = np.argwhere(mask), np.argwhere(~mask)
    plan = []
    for i in range(clicks):
        k = i % GROUP
        label = 1 if k % 2 == 0 else 0
        y, x = (inside if label else outside)[rng.integers(len(inside if label else outside))]
        plan.append((int(x / step), int(y / step), label, k == 0))
    return plan


def run(clicks: int, names: list[str]) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        site = harness.build_harness(Path(tmp) / "site")
        data = site / "data"
        variants = export_graphs(data, names)
        mask, sizes = prepare_image(data)
        plan = click_plan(mask, clicks + GROUP)  # the first group is warm-up
        with harness.serve(site) as url, harness.open_page(url) as page:
            info = page.evaluate(
                "o => h7.init(o)",
                {
                    "variants": [{"name": n, **v} for n, v in variants.items()],
                    "embeddingUrl": "/data/embedding.f16",
                    "imageUrl": "/data/image.jpg",
                    "displayWidth": DISPLAY_WIDTH,
                    **sizes,
                },
            )
            print(
                f"cross-origin isolated: {info['crossOriginIsolated']}; wasm threads: {info['threads']}",
                file=sys.stderr,
            )
            done = 0
            for i, (x, y, label, fresh) in enumerate(plan):
                order = names if i % 2 == 0 else names[::-1]  # alternate who goes first
                for name in order:
                    page.evaluate("a => h7.arm(...a)", [name, label, fresh])
                    page.mouse.click(x, y)
                    done += 1
                    page.wait_for_function(f"h7.measured() >= {done}", timeout=60_000)
            if page.errors:
                raise RuntimeError(f"page errors: {page.errors}")
            results = page.evaluate("h7.results()")
    return {n: {k: v[GROUP:] for k, v in r.items()} for n, r in results.items()}


def table(results: dict[str, dict[str, list[float]]]) -> str:
    ref = float(np.percentile(results[REFERENCE]["latencies"], 50)) if REFERENCE in results else None
    lines = [
        "| graph | clicks | p50 click→drawn (ms) | p95 click→drawn (ms) | p50 decode in worker (ms) | p50 / official-int8 p50 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        p50, p95 = np.percentile(r["latencies"], [50, 95])
        ratio = f"{p50 / ref:.2f}" if ref else "n/a"
        lines.append(
            f"| {name} | {len(r['latencies'])} | {p50:.1f} | {p95:.1f} | {np.percentile(r['decodeMs'], 50):.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=100, help="measured clicks per graph")
    parser.add_argument(
        "--variants",
        default="official-int8,ours-fp32,ours-split",
        help="comma-separated graphs: official-int8, ours-fp32, ours-int8, ours-split, ours-split-int8",
    )
    args = parser.parse_args()
    if not harness.CHROMIUM.exists():
        sys.exit(f"{harness.CHROMIUM} not found: the benchmark needs the system's Chromium")
    names = args.variants.split(",")
    start = time.time()
    load_before = os.getloadavg()[0]
    results = run(args.clicks, names)
    print(table(results))
    print(
        f"\n{args.clicks} clicks per graph on a {LONG_SIDE}px-wide image ({IMAGE} upscaled), display {DISPLAY_WIDTH}px; "
        f"headless Chromium, onnxruntime-web wasm; load average {load_before:.1f} → {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores; {time.time() - start:.0f} s."
    )


if __name__ == "__main__":
    main()
