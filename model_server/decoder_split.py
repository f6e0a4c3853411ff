"""The browser decoder split in two graphs: a per-image part run once, a per-click part run per click.

Why: in the first two-way block the image side enters three linear maps before any prompt touches it
(token→image keys ``k_proj(E + pe)`` and values ``v_proj(E)``, image→token queries
``q_proj(E + pe)``, each 4096x256 -> 4096x128). That is ~0.8 GFLOP of the ~3.5 GFLOP a click costs,
and it is the same for every click on the image. The per-image graph computes it once after the
embedding arrives; the per-click graph starts from it.

A dense mask prompt changes the image side (``E + dense``), but only through
``dense = conv1x1(h)`` where ``h`` is the 16-channel output of the mask encoder's second conv
stage. The maps are linear, so ``W (E + dense) = W E + (W C) h + W c``: with the 128x16 products
``W C`` folded into constants, a click with mask input costs 4096x16x128 per map instead of
4096x256x128. The "no mask" embedding is folded the same way. The result equals the one-graph
decoder (model_server/export.py) up to float rounding: tests/model_server/test_decoder_split.py.

Graphs (opset 17, ONNX IR <= 13 for onnxruntime-web 1.30):

* per-image ``<prefix>.image.onnx``: ``image_embeddings`` [1,256,64,64] float32 ->
  ``image_tokens`` [1,4096,256] (E in token layout), ``l0_keys`` [1,4096,128],
  ``l0_values`` [1,4096,128], ``l0_image_queries`` [1,4096,128];
* per-click ``<prefix>.click.onnx``: those four plus ``point_coords`` [1,N,2] (1024 frame),
  ``point_labels`` [1,N], ``mask_input`` [1,1,256,256], ``has_mask_input`` [1] ->
  ``low_res_masks`` [1,4,256,256], ``iou_predictions`` [1,4]: the same outputs as our one-graph
  contract, so the browser worker (frontend/src/inference/decoder.worker.ts) treats both alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from model_server.export import MAX_IR_VERSION, OPSET

IMAGE_OUTPUTS = ["image_tokens", "l0_keys", "l0_values", "l0_image_queries"]
CLICK_INPUTS = [*IMAGE_OUTPUTS, "point_coords", "point_labels", "mask_input", "has_mask_input"]
CLICK_OUTPUTS = ["low_res_masks", "iou_predictions"]


def _modules():
    """The two wrapper modules, defined lazily so that importing this file needs no torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from model_server.export import _torch_modules

    PromptDecoder, _ = _torch_modules()

    def heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)

    def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of an `Attention` module on already projected q, k, v (BxNx internal)."""
        out = F.scaled_dot_product_attention(heads(q, attn.num_heads), heads(k, attn.num_heads), heads(v, attn.num_heads))
        b, _, n, _ = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, n, -1))

    class ImagePart(nn.Module):
        """Embedding -> the prompt-independent projections of the first two-way block."""

        def __init__(self, sam: nn.Module) -> None:
            super().__init__()
            self.prompt = PromptDecoder(sam)
            block = sam.mask_decoder.transformer.layers[0]
            self.to_image = block.cross_attn_token_to_image
            self.to_token = block.cross_attn_image_to_token

        def forward(self, image_embeddings: torch.Tensor):
            tokens = image_embeddings.flatten(2).transpose(1, 2)  # 1 x 4096 x 256
            with_pe = tokens + self.prompt.dense_pe.flatten(2).transpose(1, 2)
            return (
                tokens,
                self.to_image.k_proj(with_pe),
                self.to_image.v_proj(tokens),
                self.to_token.q_proj(with_pe),
            )

    class ClickPart(nn.Module):
        """The rest of prompt encoder + mask decoder, from the per-image projections."""

        def __init__(self, sam: nn.Module) -> None:
            super().__init__()
            self.prompt = PromptDecoder(sam)
            decoder = sam.mask_decoder
            self.decoder = decoder
            block = decoder.transformer.layers[0]
            self.block = block
            down = self.prompt.mask_downscaling
            self.mask_stem = down[:-1]  # up to the 16-channel map h
            conv = down[-1]  # 1x1 conv: dense = C h + c
            c_weight = conv.weight.detach()[:, :, 0, 0]  # 256 x 16
            c_bias = conv.bias.detach()
            no_mask = self.prompt.no_mask.weight.detach()[0]  # 256
            with torch.no_grad():
                for name, linear in (
                    ("keys", block.cross_attn_token_to_image.k_proj),
                    ("values", block.cross_attn_token_to_image.v_proj),
                    ("queries", block.cross_attn_image_to_token.q_proj),
                ):
                    w = linear.weight.detach()  # 128 x 256
                    self.register_buffer(f"{name}_mask_w", (w @ c_weight).T.contiguous())  # 16 x 128
                    self.register_buffer(f"{name}_mask_b", w @ c_bias)
                    self.register_buffer(f"{name}_no_mask", w @ no_mask)
            self.register_buffer("no_mask_dense", no_mask)
            self.register_buffer("conv_weight", c_weight.T.contiguous())  # 16 x 256
            self.register_buffer("conv_bias", c_bias)

        def _dense_terms(self, mask_input: torch.Tensor, has_mask: torch.Tensor):
            h = self.mask_stem(mask_input).flatten(2).transpose(1, 2)  # 1 x 4096 x 16
            dense = has_mask * (h @ self.conv_weight + self.conv_bias) + (1 - has_mask) * self.no_mask_dense
            fix = {
                name: has_mask * (h @ getattr(self, f"{name}_mask_w") + getattr(self, f"{name}_mask_b"))
                + (1 - has_mask) * getattr(self, f"{name}_no_mask")
                for name in ("keys", "values", "queries")
            }
            return dense, fix

        def forward(self, image_tokens, l0_keys, l0_values, l0_image_queries, point_coords, point_labels, mask_input, has_mask_input):
            decoder, block, transformer = self.decoder, self.block, self.decoder.transformer
            sparse = self.prompt.embed_points(point_coords, point_labels)
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
            tokens = torch.cat([output_tokens[None], sparse], dim=1)
            key_pe = self.prompt.dense_pe.flatten(2).transpose(1, 2)
            dense, fix = self._dense_terms(mask_input, has_mask_input)
            keys = image_tokens + dense

            # First block, image side from the per-image projections.
            queries = block.norm1(block.self_attn(tokens, tokens, tokens))
            q = block.cross_attn_token_to_image.q_proj(queries + tokens)
            attn = attend(block.cross_attn_token_to_image, q, l0_keys + fix["keys"], l0_values + fix["values"])
            queries = block.norm2(queries + attn)
            queries = block.norm3(queries + block.mlp(queries))
            to_token = block.cross_attn_image_to_token
            q_tok = queries + tokens
            attn = attend(to_token, l0_image_queries + fix["queries"], to_token.k_proj(q_tok), to_token.v_proj(queries))
            keys = block.norm4(keys + attn)

            for layer in transformer.layers[1:]:
                queries, keys = layer(queries, keys, tokens, key_pe)
            final = transformer.final_attn_token_to_image
            queries = transformer.norm_final_attn(queries + final(queries + tokens, keys + key_pe, keys))

            upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(1, -1, 64, 64))
            weights = torch.stack([mlp(queries[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
            masks = (weights @ upscaled.flatten(2)).reshape(1, -1, *upscaled.shape[-2:])
            return masks, decoder.iou_prediction_head(queries[:, 0])

    return ImagePart, ClickPart


def _write(wrapper, args, path: Path, input_names, output_names, dynamic_axes, quantize: bool) -> Path:
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                wrapper.eval(), args, str(raw), dynamo=False, opset_version=OPSET, input_names=input_names,
                output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(raw), str(quantized), weight_type=QuantType.QUInt8)
            raw = quantized
        model = onnx.load(str(raw))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)
    partial = path.with_name(path.name + ".tmp")
    onnx.save(model, str(partial))
    os.replace(partial, path)  # a reader never sees a half-written graph
    return path


def export_split_decoder(model, out_dir: str | Path, prefix: str = "decoder", quantize: bool = False) -> tuple[Path, Path]:
    """Write ``<prefix>.click.onnx`` and ``<prefix>.image.onnx`` for `model` (a `Sam`) into `out_dir`.

    quantize: dynamic int8 (QUInt8 MatMul weights) of the per-click graph; the per-image graph, run
        once per image, stays float32.

    Returns:
        (per-click graph path, per-image graph path).
    """
    import torch

    ImagePart, ClickPart = _modules()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_part, click_part = ImagePart(model), ClickPart(model)
    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    with torch.no_grad():
        image_outputs = image_part(embedding)
    click_args = (
        *image_outputs,
        torch.randint(0, 1024, (1, 3, 2), generator=gen).float(),
        torch.tensor([[1.0, 0.0, -1.0]]),
        torch.randn(1, 1, 256, 256, generator=gen),
        torch.tensor([1.0]),
    )
    image_path = _write(image_part, (embedding,), out_dir / f"{prefix}.image.onnx", ["image_embeddings"], IMAGE_OUTPUTS, None, False)
    points = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    click_path = _write(click_part, click_args, out_dir / f"{prefix}.click.onnx", CLICK_INPUTS, CLICK_OUTPUTS, points, quantize)
    return click_path, image_path
