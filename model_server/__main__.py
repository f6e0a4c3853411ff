"""`python -m model_server <command>`: the model's command line.

A small argparse dispatcher: each subcommand has one `_add_<name>` function that declares its
arguments and one `_run_<name>` function that does the work (heavy imports happen there, so
`--help` is instant). Bad input (missing files, non-images, unknown model names, bad checkpoints)
exits with status 2 and a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_NAMES = ("vit_h", "vit_l", "vit_b", "vit_t")
UNTRAINED_SEED = 0


def _load_model(name: str, checkpoint: Path | None):
    """The named model: from `checkpoint`, or the seeded untrained one (and say so on stderr)."""
    from .sam.build import build_sam

    if checkpoint is None:
        print(
            f"note: no --checkpoint given: using the UNTRAINED {name} model (random weights, seed "
            f"{UNTRAINED_SEED}); its outputs are meaningless for annotation",
            file=sys.stderr,
        )
        return build_sam(name, seed=UNTRAINED_SEED)
    if not checkpoint.is_file():
        raise ValueError(f"checkpoint {checkpoint}: no such file")
    return build_sam(name, checkpoint=checkpoint)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODEL_NAMES, default="vit_t", help="SAM variant (default vit_t)")
    parser.add_argument("--checkpoint", type=Path, help="state dict to load strictly (default: untrained)")


def _add_embed(commands) -> None:
    parser = commands.add_parser("embed", help="write float16 image embeddings, one .npz per image")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    _add_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (<stem>.npz per image)")
    parser.add_argument("--batch-size", type=int, default=1, help="images encoded together (default 1)")
    parser.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> None:
    from .service.embed import check_image_files, embed_files

    check_image_files(args.images)  # before the model is built: bad input fails in a second
    model = _load_model(args.model, args.checkpoint)

    def report(done: int, total: int) -> None:
        print(f"embedded {done}/{total}", file=sys.stderr)

    for path in embed_files(model, args.images, args.out, args.batch_size, on_progress=report):
        print(path)


def _add_export_onnx(commands) -> None:
    parser = commands.add_parser("export-onnx", help="export the prompt encoder + mask decoder to ONNX")
    _add_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the weights")
    parser.add_argument(
        "--official-contract",
        action="store_true",
        help="the official demo's graph (full-resolution masks inside), for comparison only",
    )
    parser.set_defaults(run=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> None:
    from .export.writer import export_decoder_onnx, export_official_contract_onnx

    model = _load_model(args.model, args.checkpoint)
    export = export_official_contract_onnx if args.official_contract else export_decoder_onnx
    print(export(model, args.out, quantize=args.quantize))


def _add_serve(commands) -> None:
    parser = commands.add_parser("serve", help="run the HTTP model service (every model operation, micro-batching)")
    parser.add_argument(
        "--storage", required=True, help="the object store shared with the backend: a folder, file:///path or s3://..."
    )
    parser.add_argument("--model", choices=MODEL_NAMES, help="serve this architecture only (default: any)")
    parser.add_argument("--checkpoint", type=Path, help="serve these local weights only (needs --model)")
    parser.add_argument("--cache-dir", type=Path, help="local folder for checkpoints read from storage")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-batch", type=int, default=8, help="most images per encoder forward")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="longest wait for a batch to fill")
    parser.add_argument(
        "--train-processes",
        type=int,
        help="processes of a retraining round, one per GPU: more than 1 trains with DDP under torchrun "
        "(default: the number of CUDA devices, 1 on a CPU)",
    )
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    from .service.server import serve

    serve(args)


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train", help="run a training job (training.distributed.write_job) in N processes via torchrun"
    )
    parser.add_argument("job", type=Path, help="job folder holding job.pt")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="processes, one per GPU (default 1)")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from .training.distributed import JOB_FILE, launch

    if not (args.job / JOB_FILE).is_file():
        raise ValueError(f"{args.job}: no {JOB_FILE} (write one with model_server.training.distributed.write_job)")
    _, result = launch(args.job, args.nproc_per_node)
    print(f"trained {result.steps_done} steps; model in {args.job}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_embed(commands)
    _add_export_onnx(commands)
    _add_serve(commands)
    _add_train(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:  # bad input or an unwritable --out
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
