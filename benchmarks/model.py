"""Model speed: ours against the official `segment-anything` package, same weights, same run.

    python benchmarks/model.py [--quick]

Prints a markdown table with three parts:

1. Encoder seconds per image (`set_image` on a real GrabCut image, resize + normalise + encoder):
   our vit_t and vit_b against the official package's encoder of the same configuration carrying
   the same (seeded, untrained) weights. torch threads = 2, the CPU budget of a small install.
2. Decoder milliseconds per click under onnxruntime CPU (2 threads, as the browser's two wasm
   threads): our graph (low-res outputs, all four tokens) against the official demo's contract
   (full-resolution masks inside the graph) exported by us and by the official package's own
   `SamOnnxModel`, float32 and int8, 1-3 clicks, p50/p95 over many calls.
3. Decoding 64 single-point prompts on one image: our batched `Predictor.decode` (one call,
   low-res logits) and `Predictor.predict_batch`, against the official `SamPredictor.predict`
   looped 64 times (full-resolution masks, the official way to do it); also the trainable `sam/`
   modules batched in one call (what `decode` ran before the folded decoder, commit 8d07ac5), so
   that a change of the folded decoder is compared with it in the same run.

Speed is the comparison within this run; the shared 2-core machine makes absolute numbers noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_server.export.contract import onnx_prompt  # noqa: E402
from model_server.export.writer import export_decoder_onnx, export_official_contract_onnx  # noqa: E402
from model_server.predictor import Predictor  # noqa: E402
from model_server.sam.build import SAM_CONFIGS, build_sam  # noqa: E402
from model_server.service.embed import load_rgb  # noqa: E402
from model_server.transforms import apply_coords  # noqa: E402
from tests.reference import official  # noqa: E402

IMAGE = REPO.parent / "shared" / "data" / "grabcut" / "images" / "106024.jpg"
THREADS = 2


def official_model(name: str, weights: dict[str, torch.Tensor]):
    """The official Sam with our configuration `name`, carrying `weights` (strictly loaded)."""
    from segment_anything.build_sam import _build_sam

    config = SAM_CONFIGS[name]
    model = _build_sam(config["embed_dim"], config["depth"], config["num_heads"], list(config["global_attn_indexes"]))
    model.load_state_dict(weights, strict=True)
    return model.eval()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved (a, b, a, b, ...) so that load from
    other processes on the shared machine hits every contender alike; `warmup` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(times, q))


def bench_encoders(image: np.ndarray, quick: bool) -> list[str]:
    sa = official()
    rows = []
    for name, repeats, warmup in (("vit_t", 2 if quick else 3, 1), ("vit_b", 1 if quick else 2, 0)):
        ours = build_sam(name, seed=0)
        theirs = official_model(name, ours.state_dict())
        predictor, reference = Predictor(ours), sa.SamPredictor(theirs)
        with torch.inference_mode():
            times = interleaved(
                {
                    "ours": lambda p=predictor: p.set_image(image),
                    "official": lambda r=reference: r.set_image(image),
                },
                repeats,
                warmup,
            )
        t_ours, t_ref = min(times["ours"]), min(times["official"])
        rows.append(
            f"| encoder {name}, `set_image` (s/image, best of {repeats}) | {t_ours:.2f} | {t_ref:.2f} "
            f"| {t_ref / t_ours:.2f}x |"
        )
    return rows


def official_package_onnx(model, path: Path, quantize: bool) -> Path:
    """The official package's own SamOnnxModel export (return_single_mask, as its demo ships)."""
    from segment_anything.utils.onnx import SamOnnxModel

    wrapper = SamOnnxModel(model, return_single_mask=True).eval()
    args = (
        torch.randn(1, 256, 64, 64),
        torch.randint(0, 1024, (1, 3, 2)).float(),
        torch.tensor([[1.0, 0.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.tensor([1.0]),
        torch.tensor([480.0, 640.0]),
    )
    raw = path.with_suffix(".raw.onnx") if quantize else path
    torch.onnx.export(
        wrapper,
        args,
        str(raw),
        dynamo=False,
        opset_version=17,
        input_names=[
            "image_embeddings",
            "point_coords",
            "point_labels",
            "mask_input",
            "has_mask_input",
            "orig_im_size",
        ],
        output_names=["masks", "iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
    )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(raw), str(path), weight_type=QuantType.QUInt8)
    return path


def bench_onnx(model, embedding: np.ndarray, image_size: tuple[int, int], quick: bool) -> list[str]:
    import onnxruntime as ort

    official()  # the package's SamOnnxModel needs the torchvision stub
    theirs = official_model("vit_t", model.state_dict())
    calls = 20 if quick else 100
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for quantize, tag in ((False, "fp32"), (True, "int8")):
            graphs[f"ours, low-res, all 4 tokens ({tag})"] = (
                export_decoder_onnx(model, Path(tmp) / f"ours_{tag}.onnx", quantize),
                False,
            )
            graphs[f"official contract, ours ({tag})"] = (
                export_official_contract_onnx(model, Path(tmp) / f"oc_{tag}.onnx", quantize),
                True,
            )
            graphs[f"official contract, official SamOnnxModel ({tag})"] = (
                official_package_onnx(theirs, Path(tmp) / f"pkg_{tag}.onnx", quantize),
                True,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        sessions = {
            label: (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), full_res)
            for label, (path, full_res) in graphs.items()
        }
        cells: dict[str, list[str]] = {label: [] for label in graphs}
        for clicks in (1, 2, 3):
            coords, labels = onnx_prompt(
                rng.uniform([0, 0], [1023, 767], (clicks, 2)), (np.arange(clicks) % 2 == 0).astype(int)
            )
            feed = {
                "image_embeddings": embedding,
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
            }
            full_feed = {**feed, "orig_im_size": np.array(image_size, np.float32)}
            calls_by_graph = {
                label: (lambda s=session, f=(full_feed if full_res else feed): s.run(None, f))
                for label, (session, full_res) in sessions.items()
            }
            for label, times in interleaved(calls_by_graph, calls, warmup=3).items():
                cells[label].append(f"{1e3 * pct(times, 50):.1f} / {1e3 * pct(times, 95):.1f}")
    return [f"| {label} | " + " | ".join(row) + " |" for label, row in cells.items()]


def bench_batched_decode(model, image: np.ndarray, quick: bool) -> list[str]:
    sa = official()
    theirs = official_model("vit_t", model.state_dict())
    predictor, reference = Predictor(model), sa.SamPredictor(theirs)
    with torch.inference_mode():
        predictor.set_image(image)
        reference.set_image(image)
    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [w - 1, h - 1], (64, 2))
    # decode takes the model frame with the padding point already appended: 64x2x2 and 64x2.
    clicks = torch.as_tensor(apply_coords(points, (h, w)), dtype=torch.float32)[:, None]
    coords_1024 = torch.cat([clicks, torch.zeros(64, 1, 2)], dim=1)
    labels = torch.tensor([[1.0, -1.0]]).repeat(64, 1)
    repeats = 2 if quick else 3

    def ours_decode():
        predictor.decode(coords_1024, labels, None, multimask_output=True)

    def modules_decode():
        # 8d07ac5's `Predictor.decode`: the trainable `sam/` modules, all prompts in one call.
        encoder = model.prompt_encoder
        sparse, dense = encoder(coords_1024, labels, None)
        model.mask_decoder(predictor.embedding, encoder.get_dense_pe(), sparse, dense, True)

    def ours_predict_batch():
        predictor.predict_batch(point_coords=points[:, None], point_labels=np.ones((64, 1)))

    def official_loop():
        for point in points:
            reference.predict(point_coords=point[None], point_labels=np.array([1]), multimask_output=True)

    with torch.inference_mode():
        times = interleaved(
            {"decode": ours_decode, "batch": ours_predict_batch, "modules": modules_decode, "loop": official_loop},
            repeats,
        )
    t_decode, t_batch, t_modules, t_loop = (statistics.median(times[k]) for k in ("decode", "batch", "modules", "loop"))
    return [
        f"| 64 prompts: ours `Predictor.decode` batched, low-res (ms, median of {repeats}) "
        f"| {1e3 * t_decode:.0f} | {1e3 * t_loop:.0f} | {t_loop / t_decode:.1f}x |",
        f"| 64 prompts: ours `Predictor.predict_batch`, full-res (ms, median of {repeats}) "
        f"| {1e3 * t_batch:.0f} | {1e3 * t_loop:.0f} | {t_loop / t_batch:.1f}x |",
        f"| 64 prompts: the `sam/` modules batched, low-res (8d07ac5's `decode`; ms, median of {repeats}) "
        f"| {1e3 * t_modules:.0f} | {1e3 * t_loop:.0f} | {t_loop / t_modules:.1f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument(
        "--parts", default="encoders,batched,onnx", help="comma-separated subset of encoders,batched,onnx"
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    image = load_rgb(IMAGE)
    model = build_sam("vit_t", seed=0)
    predictor = Predictor(model)
    with torch.inference_mode():
        predictor.set_image(image)
    embedding = predictor.embedding.float().cpu().numpy()

    print(
        f"Image {IMAGE.name} ({image.shape[1]}x{image.shape[0]}), torch threads {THREADS}, "
        f"onnxruntime threads {THREADS}, seeded untrained weights shared by ours and the official.\n"
    )
    print("| measurement | ours | official | official / ours |")
    print("|---|---|---|---|")
    parts = set(args.parts.split(","))
    if "encoders" in parts:
        for row in bench_encoders(image, args.quick):
            print(row, flush=True)
    if "batched" in parts:
        for row in bench_batched_decode(model, image, args.quick):
            print(row, flush=True)
    if "onnx" not in parts:
        return
    print("\nDecoder under onnxruntime CPU, ms per call p50 / p95:\n")
    print("| graph | 1 click | 2 clicks | 3 clicks |")
    print("|---|---|---|---|", flush=True)
    for row in bench_onnx(model, embedding, image.shape[:2], args.quick):
        print(row)


if __name__ == "__main__":
    main()
