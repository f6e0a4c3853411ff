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
4096x256x128. The "no mask" embedding is folded the same way.
The per-click graph then avoids the other large image-side projections too: in the later blocks'
attentions between N tokens and 4096 image positions, the 4096-row projections (256 -> 128 in,
128 -> 256 out) are folded into the N tokens' side per head (`token_to_image`, `image_to_token`:
4096 x 256 x 8N instead of 4096 x 256 x 128 multiply-adds, a gain while N < 16, i.e. up to about
ten clicks), and the graph keeps every large tensor channels-last so that it needs no large
transposes. The first transposed convolution of the upscaling (4096x256x256 multiply-adds) is
carried through the two LayerNorms as low-rank updates of a per-image product (`upscale_maps`).
Together this roughly halves the work of a click.

The result equals the one-graph decoder (model_server/export.py) up to float rounding (1e-6 on
logits): tests/model_server/test_decoder_split.py, and in the browser
tests/browser/test_decoder_parity.py.

Graphs (opset 17, ONNX IR <= 13 for onnxruntime-web 1.30):

* per-image ``<prefix>.image.onnx``: ``image_embeddings`` [1,256,64,64] float32 ->
  ``image_tokens`` [1,4096,256] (E in token layout), ``l0_keys`` [1,4096,128],
  ``l0_values`` [1,4096,128], ``l0_image_queries`` [1,4096,128], ``upscale_base`` [1,4096,256]
  (E through the first upscaling product, see `upscale_maps`);
* per-click ``<prefix>.click.onnx``: those five plus ``point_coords`` [1,N,2] (1024 frame),
  ``point_labels`` [1,N], ``mask_input`` [1,1,256,256], ``has_mask_input`` [1] ->
  ``low_res_masks`` [1,4,256,256], ``iou_predictions`` [1,4]: the same outputs as our one-graph
  contract, so the browser worker (frontend/src/inference/decoder.worker.ts) treats both alike.
"""

from __future__ import annotations

from pathlib import Path

from model_server.export import write_onnx

IMAGE_OUTPUTS = ["image_tokens", "l0_keys", "l0_values", "l0_image_queries", "upscale_base"]
CLICK_INPUTS = [*IMAGE_OUTPUTS, "point_coords", "point_labels", "mask_input", "has_mask_input"]
CLICK_OUTPUTS = ["low_res_masks", "iou_predictions"]


def _modules():
    """The two wrapper modules, defined lazily so that importing this file needs no torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from model_server.export import decoder_torch_modules

    PromptDecoder, _ = decoder_torch_modules()

    def heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)

    def attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of an `Attention` module on already projected q, k, v (BxNx internal)."""
        out = F.scaled_dot_product_attention(
            heads(q, attn.num_heads), heads(k, attn.num_heads), heads(v, attn.num_heads)
        )
        b, _, n, _ = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, n, -1))

    def token_to_image(
        attn: nn.Module, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """`attn(queries, keys, values)` for N tokens attending to the 4096 image positions, with the
        key and value projections folded into the tokens' side (1xNx256, 1x4096x256, 1x4096x256).

        Per head h: scores = (q_h W_kh) K^T (k_proj's bias adds a constant per row: softmax ignores
        it) and out_h = (P_h V) W_vh^T + b_vh (softmax rows sum to 1). The image side then costs
        2 x 4096 x 256 x 8N multiply-adds instead of projecting 4096 rows twice (2 x 4096 x 256 x 128).
        """
        h, n = attn.num_heads, queries.shape[1]
        q = attn.q_proj(queries)[0]  # N x 128
        d = q.shape[-1] // h
        w_k = attn.k_proj.weight.reshape(h, d, -1)  # h x d x 256
        q_abs = (q.reshape(n, h, d).transpose(0, 1) @ w_k).reshape(h * n, -1) * d**-0.5  # hN x 256
        probs = torch.softmax(keys[0] @ q_abs.T, dim=0)  # 4096 x hN
        mixed = (probs.T @ values[0]).reshape(h, n, -1)  # h x N x 256
        w_v = attn.v_proj.weight.reshape(h, d, -1)  # h x d x 256
        out = (mixed @ w_v.transpose(1, 2)).transpose(0, 1).reshape(1, n, -1) + attn.v_proj.bias
        return attn.out_proj(out)

    def image_to_token(attn: nn.Module, image: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        """`attn(image, keys, values)` for the 4096 image positions attending to N tokens, with the
        query and output projections folded into the tokens' side (1x4096x256, 1xNx256, 1xNx256).

        Per head h: scores = X (W_qh^T k_h^T) + b_qh k_h^T and out = sum_h P_h (v_h W_oh^T) + b_o: two
        4096 x 256 x 8N products instead of projecting 4096 rows in and out (2 x 4096 x 256 x 128).
        Returns the factors (P 4096 x 8N, V_out 8N x 256) of out = P V_out + b_o.
        """
        h, n = attn.num_heads, keys.shape[1]
        k, v = attn.k_proj(keys)[0], attn.v_proj(values)[0]  # N x 128 each
        d = k.shape[-1] // h
        k_heads = k.reshape(n, h, d).transpose(0, 1) * d**-0.5  # h x N x d
        w_q = attn.q_proj.weight.reshape(h, d, -1)  # h x d x 256
        k_abs = (w_q.transpose(1, 2) @ k_heads.transpose(1, 2)).transpose(0, 1).reshape(-1, h * n)  # 256 x hN
        k_bias = (k_heads @ attn.q_proj.bias.reshape(h, d, 1)).reshape(1, h * n)
        scores = (image[0] @ k_abs + k_bias).reshape(-1, h, n)
        probs = torch.softmax(scores, dim=-1).reshape(-1, h * n)  # 4096 x hN
        w_o = attn.out_proj.weight.reshape(-1, h, d).transpose(0, 1)  # h x 256 x d
        v_out = (v.reshape(n, h, d).transpose(0, 1) @ w_o.transpose(1, 2)).reshape(h * n, -1)  # hN x 256
        return probs, v_out

    def layer_norm(z: torch.Tensor, norm: nn.LayerNorm):
        """`norm(z)` for 4096 x C rows, also returning the rows' mean and 1/std (4096 x 1 each)."""
        mean = z.mean(-1, keepdim=True)
        centred = z - mean
        inv_std = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + norm.eps)
        return centred * inv_std * norm.weight + norm.bias, mean, inv_std

    def upscale_maps(sam: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The first upscaling product folded through the two norm4 scales: (G2, G12), 256 x 256 each.

        U = keys2 W + b with keys2 = LN2(z1), keys1 = LN1(z0) and z0 = E + (low-rank terms): per row,
        keys2 W = inv1 (z1 G2 - mean1 * colsum(G2)) + beta2 W, G2 = diag(gamma2) W, and likewise
        keys1 G2 through G12 = diag(gamma1) G2; so E G12, once per image, replaces a 4096x256x256
        product per click by 4096 x (16 + 16N) x 256 ones.
        """
        up1 = sam.mask_decoder.output_upscaling[0]
        first, second = sam.mask_decoder.transformer.layers
        with torch.no_grad():
            w = up1.weight.detach().permute(0, 2, 3, 1).reshape(up1.in_channels, -1)  # in x (dy, dx, out)
            g2 = second.norm4.weight.detach()[:, None] * w
            return g2, first.norm4.weight.detach()[:, None] * g2

    class ImagePart(nn.Module):
        """Embedding -> the prompt-independent projections of the first two-way block."""

        def __init__(self, sam: nn.Module) -> None:
            super().__init__()
            self.prompt = PromptDecoder(sam)
            block = sam.mask_decoder.transformer.layers[0]
            self.to_image = block.cross_attn_token_to_image
            self.to_token = block.cross_attn_image_to_token
            self.register_buffer("upscale_map", upscale_maps(sam)[1])

        def forward(self, image_embeddings: torch.Tensor):
            tokens = image_embeddings.flatten(2).transpose(1, 2)  # 1 x 4096 x 256
            with_pe = tokens + self.prompt.dense_pe.flatten(2).transpose(1, 2)
            return (
                tokens,
                self.to_image.k_proj(with_pe),
                self.to_image.v_proj(tokens),
                self.to_token.q_proj(with_pe),
                tokens @ self.upscale_map,
            )

    class ClickPart(nn.Module):
        """The rest of prompt encoder + mask decoder, from the per-image projections.

        Written for onnxruntime-web's wasm kernels: every large tensor stays in token layout
        (4096 x C, channels last), so the graph has no large transposes; attention heads are handled
        with block-diagonal token matrices (8N columns) instead of reshaping 4096-row tensors; the
        two transposed convolutions of the upscaling are matrix products whose output pixels are
        put in raster order only at the end, on the 4x256x256 logits.
        """

        def __init__(self, sam: nn.Module) -> None:
            super().__init__()
            self.prompt = PromptDecoder(sam)
            self.decoder = decoder = sam.mask_decoder
            self.block = block = decoder.transformer.layers[0]
            down = self.prompt.mask_downscaling
            self.mask_stem = down[:-1]  # up to the 16-channel map h
            conv = down[-1]  # 1x1 conv: dense = C h + c
            c_weight = conv.weight.detach()[:, :, 0, 0]  # 256 x 16
            c_bias = conv.bias.detach()
            no_mask = self.prompt.no_mask.weight.detach()[0]  # 256
            up1, norm, _, up2, _ = decoder.output_upscaling
            self.norm_eps = norm.eps
            heads = block.cross_attn_token_to_image.num_heads
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
                self.register_buffer("dense_w", c_weight.T.contiguous())  # 16 x 256
                self.register_buffer("dense_mask_b", c_bias)
                self.register_buffer("dense_no_mask", no_mask)
                self.register_buffer("head_eye", torch.eye(heads).reshape(heads, 1, heads, 1))
                # ConvTranspose2d(k=2, s=2) weight in x out x 2 x 2 -> in x (dy, dx, out).
                w = up1.weight.detach().permute(0, 2, 3, 1).reshape(up1.in_channels, -1)  # in x (dy, dx, out)
                g2, g12 = upscale_maps(sam)
                first, second = decoder.transformer.layers
                self.register_buffer("g2", g2.contiguous())
                self.register_buffer("g12", g12.contiguous())
                self.register_buffer("g2_colsum", g2.sum(0))
                self.register_buffer("g12_colsum", g12.sum(0))
                self.register_buffer("dense_g12_w", (c_weight.T @ g12).contiguous())  # 16 x 256
                self.register_buffer("dense_g12_mask_b", c_bias @ g12)
                self.register_buffer("dense_g12_no_mask", no_mask @ g12)
                self.register_buffer("out0_g12", first.cross_attn_image_to_token.out_proj.bias.detach() @ g12)
                self.register_buffer("out1_g2", second.cross_attn_image_to_token.out_proj.bias.detach() @ g2)
                self.register_buffer("beta1_g2", first.norm4.bias.detach() @ g2)
                self.register_buffer("up1_b", second.norm4.bias.detach() @ w + up1.bias.detach().repeat(4))
                self.register_buffer("norm_w", norm.weight.detach().clone())
                self.register_buffer("norm_b", norm.bias.detach().clone())
                self.register_buffer(
                    "up2_w", up2.weight.detach().permute(0, 2, 3, 1).reshape(up2.in_channels, -1).contiguous()
                )
                self.register_buffer("up2_b", up2.bias.detach().repeat(4))
                # Flat index of each (token, row, column) of the 4x256x256 logits in the products' order.
                order = torch.arange(64 * 64 * 16 * 4).reshape(64, 64, 2, 2, 2, 2, 4)
                self.register_buffer("raster_order", order.permute(6, 0, 2, 4, 1, 3, 5).reshape(-1).contiguous())

        def _block_diagonal(self, x: torch.Tensor, scale: float) -> torch.Tensor:
            """N x (heads*d) -> (heads*d) x (heads*N): head h's d x N block on the diagonal, zeros elsewhere."""
            heads, n = self.head_eye.shape[0], x.shape[0]
            blocks = (x.T * scale).reshape(heads, -1, 1, n) * self.head_eye  # heads x d x heads x N
            return blocks.reshape(x.shape[1], -1)

        def _diagonal_blocks(self, x: torch.Tensor, n: int) -> torch.Tensor:
            """(heads*N) x (heads*d) -> N x (heads*d): row block h, column block h, for every head."""
            heads = self.head_eye.shape[0]
            return (x.reshape(heads, n, heads, -1) * self.head_eye).sum(0).reshape(n, -1)

        def forward(
            self,
            image_tokens,
            l0_keys,
            l0_values,
            l0_image_queries,
            upscale_base,
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
        ):
            decoder, block, transformer = self.decoder, self.block, self.decoder.transformer
            has = has_mask_input

            def bias(name: str) -> torch.Tensor:  # mask bias with a mask, the "no mask" term without
                return has * getattr(self, f"{name}_mask_b") + (1 - has) * getattr(self, f"{name}_no_mask")

            sparse = self.prompt.embed_points(point_coords, point_labels)
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
            tokens = torch.cat([output_tokens[None], sparse], dim=1)  # 1 x N x 256
            n = tokens.shape[1]
            key_pe = self.prompt.dense_pe.flatten(2).transpose(1, 2)
            h = (has * self.mask_stem(mask_input)).flatten(2).transpose(1, 2)[0]  # 4096 x 16, zero without mask
            keys = image_tokens[0] + h @ self.dense_w + bias("dense")  # 4096 x 256: E + dense

            # First block; its image-side projections come from the per-image graph (+ the mask terms).
            to_image, to_token = block.cross_attn_token_to_image, block.cross_attn_image_to_token
            scale = (to_image.q_proj.out_features // to_image.num_heads) ** -0.5
            queries = block.norm1(block.self_attn(tokens, tokens, tokens))
            q = self._block_diagonal(to_image.q_proj(queries + tokens)[0], scale)  # 128 x 8N
            scores = l0_keys[0] @ q + h @ (self.keys_mask_w @ q) + bias("keys") @ q  # 4096 x 8N
            probs = torch.softmax(scores, dim=0)
            mixed = probs.T @ l0_values[0] + (probs.T @ h) @ self.values_mask_w + bias("values")  # 8N x 128
            queries = block.norm2(queries + to_image.out_proj(self._diagonal_blocks(mixed, n))[None])
            queries = block.norm3(queries + block.mlp(queries))
            k = self._block_diagonal(to_token.k_proj(queries + tokens)[0], scale)  # 128 x 8N
            v = to_token.v_proj(queries)[0]  # N x 128
            scores = l0_image_queries[0] @ k + h @ (self.queries_mask_w @ k) + bias("queries") @ k  # 4096 x 8N
            probs = torch.softmax(scores.reshape(-1, to_token.num_heads, n), dim=-1).reshape(-1, to_token.num_heads * n)
            heads, d = to_token.num_heads, v.shape[1] // to_token.num_heads
            w_o = to_token.out_proj.weight.reshape(-1, heads, d).transpose(0, 1)  # heads x 256 x d
            v_out = (v.reshape(n, heads, d).transpose(0, 1) @ w_o.transpose(1, 2)).reshape(heads * n, -1)
            keys, mean0, inv0 = layer_norm(keys + probs @ v_out + to_token.out_proj.bias, block.norm4)
            # The first upscaling product, carried along as keys1 G2 (see `upscale_maps`).
            z0_g12 = (
                upscale_base[0] + h @ self.dense_g12_w + bias("dense_g12") + probs @ (v_out @ self.g12) + self.out0_g12
            )
            keys_g2 = inv0 * (z0_g12 - mean0 * self.g12_colsum) + self.beta1_g2

            # Second block, both cross-attentions folded into the tokens' side.
            second = transformer.layers[1]
            q = queries + tokens
            queries = second.norm1(queries + second.self_attn(q, q, queries))
            image = (keys + key_pe[0])[None]
            attn = token_to_image(second.cross_attn_token_to_image, queries + tokens, image, keys[None])
            queries = second.norm2(queries + attn)
            queries = second.norm3(queries + second.mlp(queries))
            to_token = second.cross_attn_image_to_token
            probs, v_out = image_to_token(to_token, image, queries + tokens, queries)
            keys, mean1, inv1 = layer_norm(keys + probs @ v_out + to_token.out_proj.bias, second.norm4)
            z1_g2 = keys_g2 + probs @ (v_out @ self.g2) + self.out1_g2

            # Only the IoU and mask tokens are read after the final attention: the prompt tokens'
            # rows (independent of them) are not computed.
            outputs = output_tokens.shape[0]
            queries, tokens = queries[:, :outputs], tokens[:, :outputs]
            final = token_to_image(
                transformer.final_attn_token_to_image, queries + tokens, (keys + key_pe[0])[None], keys[None]
            )
            queries = transformer.norm_final_attn(queries + final)

            # Output upscaling, channels last: 4096 x 256 -> 4096 x (2x2 x 64) -> 16384 x (2x2 x 32).
            up = inv1 * (z1_g2 - mean1 * self.g2_colsum) + self.up1_b  # = keys2 W + b
            up = F.gelu(
                F.layer_norm(
                    up.reshape(-1, 4, self.norm_w.shape[0]), self.norm_w.shape, self.norm_w, self.norm_b, self.norm_eps
                )
            )
            up = F.gelu(up.reshape(-1, self.up2_w.shape[0]) @ self.up2_w + self.up2_b)
            weights = torch.stack(
                [mlp(queries[0, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)]
            )  # 4 x 32
            masks = up.reshape(-1, weights.shape[1]) @ weights.T  # rows in (y, x, dy, dx, dy2, dx2) order
            masks = masks.reshape(-1)[self.raster_order].reshape(1, -1, 256, 256)  # a Gather: 7-d Transposes are slow
            return masks, decoder.iou_prediction_head(queries[:, 0])

    return ImagePart, ClickPart


def export_split_decoder(
    model, out_dir: str | Path, prefix: str = "decoder", quantize: bool = False
) -> tuple[Path, Path]:
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
    image_path = write_onnx(
        image_part, (embedding,), out_dir / f"{prefix}.image.onnx", ["image_embeddings"], IMAGE_OUTPUTS, None, False
    )
    points = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    click_path = write_onnx(
        click_part, click_args, out_dir / f"{prefix}.click.onnx", CLICK_INPUTS, CLICK_OUTPUTS, points, quantize
    )
    return click_path, image_path
