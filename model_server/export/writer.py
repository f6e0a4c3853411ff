"""Trace the decoder graphs (model_server/export/graphs.py) of a `Sam` into ONNX files.

The `Sam` is ours or any module with the official attribute structure (`prompt_encoder.pe_layer`,
`point_embeddings`, `not_a_point_embed`, `mask_downscaling`, `no_mask_embed`;
`mask_decoder.transformer`, `iou_token`, `mask_tokens`, `output_upscaling`,
`output_hypernetworks_mlps`, `iou_prediction_head`).

Exporter choice: the TorchScript-based exporter (``dynamo=False``). Tracing with ``dynamic_axes``
gives ``N`` as a symbolic dimension, exports fast and writes exactly opset 17. Tried with
torch 2.13 on the vit_t decoder: the dynamo exporter (``dynamic_shapes`` with a ``torch.export.Dim``)
also gives a working dynamic-N graph, and a tidier one (363 nodes against 887, most of the
difference being Shape/Gather/Cast bookkeeping that onnxruntime folds at load), but it emits opset
18 and its down-conversion to 17 fails in onnx's version converter (an ``axes`` input it cannot
turn into an attribute), and it took ~90 s against ~20 s on the shared development machine.

Optional int8 dynamic quantisation (`onnxruntime.quantization.quantize_dynamic`, QUInt8 weights,
standard-domain ops only: DynamicQuantizeLinear/MatMulInteger, which onnxruntime-web runs). The
one graph shrinks from 20.6 MB to 8.8 MB. Measured on the seeded untrained vit_t over 30 random
prompts (1-10 points, with/without box and mask input, real-image embedding): max |int8 - fp32|
logit 0.053 where max |logit| is 0.49 (about 11% of the range), IoU of the thresholded masks
>= 0.957, predicted IoU within 0.005. Untrained weights give small logits, so re-measure with a
trained checkpoint before relying on these numbers; tests/model_server/test_export.py asserts
|diff| <= 0.2 * max |logit| and mask IoU >= 0.9.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from ..sam import Sam
from .contract import (
    CLICK_INPUTS,
    CLICK_OUTPUTS,
    IMAGE_OUTPUTS,
    INPUT_NAMES,
    LOW_RES,
    MAX_IR_VERSION,
    MODEL_SIZE,
    OFFICIAL_OUTPUT_NAMES,
    OPSET,
    OUTPUT_NAMES,
    POINT_AXES,
)
from .graphs import ClickGraph, ImageGraph, OfficialContract, OneGraph


def write_onnx(
    wrapper: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    quantize: bool,
) -> Path:
    """Trace `wrapper` on `args` into an ONNX file the browser runtime accepts (opset 17, IR ≤ 13),
    optionally int8 (dynamic quantisation), checked, and written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                wrapper.eval(),
                args,
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        if quantize:
            quantized = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(raw), str(quantized), weight_type=QuantType.QUInt8)
            raw = quantized
        model = onnx.load(str(raw))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)
    tmp_out = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp_out))
    os.replace(tmp_out, path)  # a reader never sees a half-written graph
    return path


def _prompt_inputs(generator: torch.Generator, num_points: int = 3) -> tuple[torch.Tensor, ...]:
    """Example prompt inputs to trace with (the values do not matter, N is dynamic)."""
    return (
        torch.randint(0, MODEL_SIZE, (1, num_points, 2), generator=generator).float(),
        torch.tensor([[1.0] * (num_points - 1) + [-1.0]]),
        torch.randn(1, 1, LOW_RES, LOW_RES, generator=generator),
        torch.tensor([1.0]),
    )


def _embedding(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(1, 256, 64, 64, generator=generator)


def export_decoder_onnx(model: Sam, path: str | Path, quantize: bool = False) -> Path:
    """Write our contract's one graph (model_server/export/contract.py) for `model` to `path`."""
    gen = torch.Generator().manual_seed(0)
    args = (_embedding(gen), *_prompt_inputs(gen))
    return write_onnx(OneGraph(model), args, path, INPUT_NAMES, OUTPUT_NAMES, POINT_AXES, quantize)


def export_official_contract_onnx(model: Sam, path: str | Path, quantize: bool = False) -> Path:
    """Write the official demo's contract (model_server/export/contract.py) for `model` to `path`."""
    gen = torch.Generator().manual_seed(0)
    args = (_embedding(gen), *_prompt_inputs(gen), torch.tensor([480.0, 640.0]))
    names = [*INPUT_NAMES, "orig_im_size"]
    return write_onnx(OfficialContract(model), args, path, names, OFFICIAL_OUTPUT_NAMES, POINT_AXES, quantize)


def export_split_decoder(
    model: Sam, out_dir: str | Path, prefix: str = "decoder", quantize: bool = False
) -> tuple[Path, Path]:
    """Write ``<prefix>.click.onnx`` and ``<prefix>.image.onnx`` for `model` into `out_dir`.

    quantize: dynamic int8 (QUInt8 MatMul weights) of the per-click graph; the per-image graph, run
        once per image, stays float32.

    Returns:
        (per-click graph path, per-image graph path).
    """
    out_dir = Path(out_dir)
    image_graph, click_graph = ImageGraph(model), ClickGraph(model)
    gen = torch.Generator().manual_seed(0)
    embedding = _embedding(gen)
    with torch.no_grad():
        side = tuple(image_graph(embedding))
    image_path = write_onnx(
        image_graph, (embedding,), out_dir / f"{prefix}.image.onnx", ["image_embeddings"], IMAGE_OUTPUTS, None, False
    )
    click_args = (*side, *_prompt_inputs(gen))
    click_path = write_onnx(
        click_graph, click_args, out_dir / f"{prefix}.click.onnx", CLICK_INPUTS, CLICK_OUTPUTS, POINT_AXES, quantize
    )
    return click_path, image_path
