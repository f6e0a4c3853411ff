"""The inference form of SAM's prompt encoder + mask decoder: one algebra for every decoder we run.

`FoldedDecoder` is built once from a `Sam` (its weights are read then: build a new one after
training) and computes what `sam.MaskDecoder` computes, up to float rounding (tests hold it to the
official package), for B prompts on one image. It is what the predictor, the automatic mask
generator and evaluation decode with, and what all the ONNX graphs are traced from (model_server/
export/), so a change to the decoder maths is made here once. The `sam/` modules stay the trainable
reference (training differentiates through them).

Why it is faster than the modules, with the same result:

- The image side is split off (`image_side`): in the first two-way block the embedding E enters
  three linear maps before any prompt touches it (token->image keys ``k_proj(E + pe)`` and values
  ``v_proj(E)``, image->token queries ``q_proj(E + pe)``, each 4096x256 -> 4096x128); they are
  computed once per image, not per prompt or click.
- A dense mask prompt changes the image side (``E + dense``) only through ``dense = C h + c``, the
  1x1 convolution of the mask encoder's 16-channel map ``h``. The maps are linear, so
  ``W (E + dense) = W E + (W C) h + W c``: with the 128x16 products ``W C`` prepared here, a prompt
  with mask input costs 4096x16x128 per map instead of 4096x256x128; the "no mask" embedding is
  folded the same way.
- Every later attention between the T tokens and the 4096 image rows folds the 4096-row
  projections into the tokens' side (model_server/decoding/attention.py).
- The output upscaling runs channels last as plain matrix products, not ConvTranspose2d (slow on
  the CPU): each kernel-2, stride-2 transposed convolution is one product per input pixel
  (in -> (dy, dx, out)), and LayerNorm2d normalises each output pixel's channels, so every input
  row is upscaled on its own: one prompt's a block of rows at a time, so that the intermediates stay
  in the CPU's cache. The first of the two products (4096x256x256 per prompt) is carried through the two norm4
  layer norms as low-rank updates of one per-image product (`_upscale_input`).
- The output upscaling, the costliest part, runs only for the prompts and mask tokens asked for
  (`masks`), so the automatic generator can skip prompts whose predicted IoUs all fail first.
- Several prompts (batched decoding on the CPU, the automatic generator) take a second form of the
  first block and the upscaling input (`transform`): per head, all prompts folded into one query
  sequence against the shared image side (the block rows of one prompt cost h times the products
  there, and broadcasting the image side copies it per prompt), then the direct upscaling of the
  kept image rows, blocks of whole prompts in few operator calls (`_masks_batched`; on a shared CPU
  the call count, not the cache, sets its time: benchmarks/README.md, issue 14). One prompt
  and every traced graph keep the form above, which onnxruntime's wasm kernels need.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
from torch import nn
from torch.nn import functional as F

from ..sam import Sam
from ..sam.common import LayerNorm2d
from ..sam.transformer import TwoWayAttentionBlock
from .attention import (
    block_rows,
    diagonal_blocks,
    folded_values,
    heads,
    image_to_token,
    per_head,
    shared_scores,
    token_to_image,
)

UPSCALE_ROWS = 1024  # one prompt's image rows upscaled together: 1-2 MB of intermediates, cache-sized
PROMPT_BLOCK = 4  # several prompts are upscaled this many at a time: few calls (`_masks_batched`)


class ImageSide(NamedTuple):
    """The prompt-independent part of decoding one image (1x4096xC each, rows in raster order)."""

    tokens: torch.Tensor  # E in token layout, C = 256
    keys: torch.Tensor  # first block token->image k_proj(E + pe), C = 128
    values: torch.Tensor  # first block token->image v_proj(E), C = 128
    queries: torch.Tensor  # first block image->token q_proj(E + pe), C = 128
    upscale_base: torch.Tensor  # E G12 (see `_upscale_input`), C = 256


class MaskPrompt(NamedTuple):
    """A dense mask prompt: the mask encoder's 16-channel map (Bx4096x16, zeros without a mask) and
    the weight of the mask terms against the "no mask" ones (1 with a mask, 0 without; a tensor
    when a traced graph decides at run time)."""

    features: torch.Tensor | None
    weight: torch.Tensor | float


class Factors(NamedTuple):
    """The factors of one prompt's final image rows that `_upscale_input` carries the upscaling through."""

    norms: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # norm4 (mean, 1/std)
    attended: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # image->token factors


class Transformed(NamedTuple):
    """The two-way transformer's result for B prompts, with what the upscaling needs."""

    outputs: torch.Tensor  # Bx5x256: the IoU token and the four mask tokens
    mask: MaskPrompt
    image: torch.Tensor | Factors  # the final image rows Bx4096x256 (several prompts), or their factors (one)


class FoldedDecoder(nn.Module):
    """SAM's prompt encoder + mask decoder for B prompts on one image, weights prepared once."""

    # Prepared weights (buffers, constants of a traced graph); see `__init__`.
    pe: torch.Tensor
    output_tokens: torch.Tensor
    keys_mask_w: torch.Tensor
    values_mask_w: torch.Tensor
    queries_mask_w: torch.Tensor
    dense_w: torch.Tensor
    g2: torch.Tensor
    g12: torch.Tensor
    g2_colsum: torch.Tensor
    g12_colsum: torch.Tensor
    dense_g12_w: torch.Tensor
    beta1_g2: torch.Tensor
    up1_b: torch.Tensor
    up1_w: torch.Tensor
    up1_bias: torch.Tensor
    up2_w: torch.Tensor
    up2_b: torch.Tensor
    raster_order: torch.Tensor

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.prompt_encoder = prompt = sam.prompt_encoder
        self.decoder = decoder = sam.mask_decoder
        first, second = (cast(TwoWayAttentionBlock, layer) for layer in decoder.transformer.layers)
        self.first, self.second = first, second
        down = prompt.mask_downscaling
        self.mask_stem = down[:-1]  # up to the 16-channel map h
        up1, norm, _, up2, _ = cast(
            tuple[nn.ConvTranspose2d, LayerNorm2d, nn.GELU, nn.ConvTranspose2d, nn.GELU],
            tuple(decoder.output_upscaling),
        )
        self.upscale_norm = norm
        with torch.no_grad():
            self._buffer("pe", prompt.get_dense_pe()[0].flatten(1))  # 256x4096, channels first
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
            self._buffer("output_tokens", output_tokens)  # 5x256
            conv = cast(nn.Conv2d, down[-1])  # 1x1 convolution: dense = C h + c
            c_weight, c_bias = conv.weight[:, :, 0, 0], cast(torch.Tensor, conv.bias)  # 256x16, 256
            no_mask = prompt.no_mask_embed.weight[0]  # 256
            for name, linear in (
                ("values", first.cross_attn_token_to_image.v_proj),
                ("queries", first.cross_attn_image_to_token.q_proj),
            ):
                self._buffer(f"{name}_mask_w", (linear.weight @ c_weight).T)  # 16x128
                self._buffer(f"{name}_mask_b", linear.weight @ c_bias)
                self._buffer(f"{name}_no_mask", linear.weight @ no_mask)
            # Keys: only W C h varies along a score row's image positions; the constant terms cancel
            # in the softmax.
            self._buffer("keys_mask_w", (first.cross_attn_token_to_image.k_proj.weight @ c_weight).T)
            self._buffer("dense_w", c_weight.T)  # 16x256
            self._buffer("dense_mask_b", c_bias)
            self._buffer("dense_no_mask", no_mask)
            # ConvTranspose2d(k=2, s=2) weight in x out x 2 x 2 -> in x (dy, dx, out).
            w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, -1)
            g2 = second.norm4.weight[:, None] * w1
            g12 = first.norm4.weight[:, None] * g2
            self._buffer("g2", g2)
            self._buffer("g12", g12)
            self._buffer("g2_colsum", g2.sum(0))
            self._buffer("g12_colsum", g12.sum(0))
            self._buffer("dense_g12_w", c_weight.T @ g12)  # 16x256
            self._buffer("dense_g12_mask_b", c_bias @ g12)
            self._buffer("dense_g12_no_mask", no_mask @ g12)
            self._buffer("beta1_g2", first.norm4.bias @ g2)
            self._buffer("up1_b", second.norm4.bias @ w1 + cast(torch.Tensor, up1.bias).repeat(4))
            self._buffer("up1_w", w1)  # the direct first product of several prompts' image rows
            self._buffer("up1_bias", cast(torch.Tensor, up1.bias).repeat(4))
            self._buffer("up2_w", up2.weight.permute(0, 2, 3, 1).reshape(up2.in_channels, -1))
            self._buffer("up2_b", cast(torch.Tensor, up2.bias).repeat(4))
            # For each output pixel in raster order, its index in the products' order: rows (y, x),
            # then (dy, dx) of the first transposed convolution, then (dy2, dx2) of the second.
            side = int(math.isqrt(self.pe.shape[-1]))
            order = torch.arange(side * side * 16, device=g2.device).reshape(side, side, 2, 2, 2, 2)
            self._buffer("raster_order", order.permute(0, 2, 4, 1, 3, 5).reshape(-1))

    def _buffer(self, name: str, value: torch.Tensor) -> None:
        # Persistent: the ONNX exporter makes a persistent buffer one initializer, a non-persistent
        # one a constant per use (three copies of the 4 MB positional encoding).
        self.register_buffer(name, value.detach().clone().contiguous())

    # -- the image ---------------------------------------------------------------------------------

    def image_side(self, embedding: torch.Tensor) -> ImageSide:
        """1x256x64x64 image embedding -> its `ImageSide`, computed once per image."""
        channels_first = embedding.flatten(2)  # 1x256x4096
        tokens = channels_first.transpose(1, 2)
        with_pe = (channels_first + self.pe).transpose(1, 2)
        return ImageSide(
            tokens,
            self.first.cross_attn_token_to_image.k_proj(with_pe),
            self.first.cross_attn_token_to_image.v_proj(tokens),
            self.first.cross_attn_image_to_token.q_proj(with_pe),
            tokens @ self.g12,
        )

    # -- the prompts -------------------------------------------------------------------------------

    def prompt_tokens(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords BxNx2 (x, y) in the 1024 model frame (float32: the positional encoding needs full
        precision), labels BxN in {-1, 0, 1, 2, 3} -> Bx(5+N)x256: the output tokens, then the points."""
        sparse = self.prompt_encoder.embed_points(coords, labels)
        return torch.cat([self.output_tokens.expand(sparse.shape[0], -1, -1).to(sparse.dtype), sparse], dim=1)

    def mask_prompt(self, mask_input: torch.Tensor | None, has_mask: torch.Tensor | None = None) -> MaskPrompt:
        """Bx1x256x256 low-res logits (or None) -> `MaskPrompt`. has_mask: a traced graph's [1] flag
        that turns the given mask_input on (1) or off (0) at run time."""
        if mask_input is None:
            return MaskPrompt(None, 0.0)
        features = self.mask_stem(mask_input).flatten(2).transpose(1, 2)  # Bx4096x16
        if has_mask is None:
            return MaskPrompt(features, 1.0)
        return MaskPrompt(has_mask * features, has_mask)

    def _bias(self, name: str, mask: MaskPrompt) -> torch.Tensor:
        """A folded constant: the mask term's bias with a mask, the "no mask" term without."""
        with_mask, without = getattr(self, f"{name}_mask_b"), getattr(self, f"{name}_no_mask")
        if isinstance(mask.weight, float):
            return with_mask if mask.weight else without
        return mask.weight * with_mask + (1 - mask.weight) * without

    # -- the two-way transformer ---------------------------------------------------------------------

    def transform(self, side: ImageSide, tokens: torch.Tensor, mask: MaskPrompt) -> Transformed:
        """The two-way transformer for B prompts (tokens Bx(5+N)x256 from `prompt_tokens`) on the
        image `side`; reads only the output tokens after the final attention.

        Two forms of the same maths, chosen by the batch (a traced graph holds only the first): one
        prompt (the browser's graphs, a click) runs the first block on
        block rows (`block_rows`: the 4096-row tensors keep their layout, which onnxruntime's wasm
        kernels need) and keeps the factors of the image rows for the low-rank upscaling input;
        several prompts (the automatic generator, batched decoding on the CPU) run the first block
        per head, the prompts folded into one query sequence against the shared image side
        (`shared_scores`: 1/h of the products), keep the final image rows and upscale them directly.
        """
        first, second = self.first, self.second
        several = not torch.jit.is_tracing() and tokens.shape[0] > 1  # traced: one form for any batch
        h = mask.features
        image = side.tokens + self._bias("dense", mask)  # E + dense: 1x4096x256 (Bx... with a mask)
        if h is not None:
            image = image + h @ self.dense_w

        queries = first.norm1(first.self_attn(tokens, tokens, tokens))
        first_block = self._first_block_per_head if several else self._first_block_folded
        queries, probs0, v_out0 = first_block(side, tokens, queries, mask)
        if several:
            keys = first.norm4(torch.baddbmm(image, probs0.transpose(1, 2), v_out0))
        else:
            keys, norm0 = _layer_norm(image + probs0.transpose(1, 2) @ v_out0, first.norm4)

        # Second block, both cross-attentions folded into the tokens' side.
        q = queries + tokens
        queries = second.norm1(queries + second.self_attn(q, q, queries))
        queries = second.norm2(
            queries + token_to_image(second.cross_attn_token_to_image, queries + tokens, keys, self.pe)
        )
        queries = second.norm3(queries + second.mlp(queries))
        probs1, v_out1 = image_to_token(second.cross_attn_image_to_token, keys, self.pe, queries + tokens, queries)
        if several:
            keys = second.norm4(torch.baddbmm(keys, probs1.transpose(1, 2), v_out1))
        else:
            keys, norm1 = _layer_norm(keys + probs1.transpose(1, 2) @ v_out1, second.norm4)

        # Only the IoU and mask tokens are read after the final attention.
        n_out = self.output_tokens.shape[0]
        queries, tokens = queries[:, :n_out], tokens[:, :n_out]
        final = token_to_image(self.decoder.transformer.final_attn_token_to_image, queries + tokens, keys, self.pe)
        outputs = self.decoder.transformer.norm_final_attn(queries + final)
        if several:
            return Transformed(outputs, mask, keys)
        return Transformed(outputs, mask, Factors((norm0, norm1), ((probs0, v_out0), (probs1, v_out1))))

    def _first_block_folded(
        self, side: ImageSide, tokens: torch.Tensor, queries: torch.Tensor, mask: MaskPrompt
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first block's cross-attentions from the image side's projections (+ the mask terms),
        on block rows -> (queries BxTx256, the image->token factors probs Bx(hT)x4096, v_out Bx(hT)x256)."""
        first, h = self.first, mask.features
        to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        heads = to_image.num_heads
        scale = (to_image.q_proj.out_features // heads) ** -0.5
        q = block_rows(to_image.q_proj(queries + tokens), heads) * scale  # Bx(hT)x128
        scores = q @ side.keys.transpose(1, 2)  # Bx(hT)x4096
        if h is not None:
            scores = scores + (q @ self.keys_mask_w.T) @ h.transpose(1, 2)
        probs = torch.softmax(scores, dim=-1)
        mixed = probs @ side.values + self._bias("values", mask)  # Bx(hT)x128
        if h is not None:
            mixed = mixed + (probs @ h) @ self.values_mask_w
        queries = first.norm2(queries + to_image.out_proj(diagonal_blocks(mixed, heads)))
        queries = first.norm3(queries + first.mlp(queries))
        k = block_rows(to_token.k_proj(queries + tokens), heads) * scale  # Bx(hT)x128
        scores = k @ side.queries.transpose(1, 2) + k @ self._bias("queries", mask)[:, None]
        if h is not None:
            scores = scores + (k @ self.queries_mask_w.T) @ h.transpose(1, 2)
        b, t = tokens.shape[:2]
        probs = torch.softmax(scores.reshape(b, heads, t, -1), dim=2).reshape(b, heads * t, -1)
        return queries, probs, folded_values(to_token, queries)

    def _first_block_per_head(
        self, side: ImageSide, tokens: torch.Tensor, queries: torch.Tensor, mask: MaskPrompt
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_first_block_folded` per head: each head's scores for all B prompts are one product with
        the shared image side (`shared_scores`); the mask terms per head through the 16 mask channels.
        No product broadcasts a shared tensor over the prompts (torch would copy it per prompt)."""
        first, h = self.first, mask.features
        to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        n_heads = to_image.num_heads
        b, t = tokens.shape[:2]
        d = to_image.q_proj.out_features // n_heads
        q = heads(to_image.q_proj(queries + tokens), n_heads) * d**-0.5  # BxhxTxd
        scores = shared_scores(q, per_head(side.keys, n_heads))  # hxBxTx4096
        if h is not None:
            scores = scores + self._mask_scores(q, self.keys_mask_w, h)
        probs = torch.softmax(scores, dim=-1).reshape(n_heads, b * t, -1)
        mixed = (probs @ per_head(side.values, n_heads)).reshape(n_heads, b, t, d)  # hxBxTxd
        if h is not None:
            per_prompt = probs.reshape(n_heads, b, t, -1).transpose(0, 1).reshape(b, n_heads * t, -1)
            mixed_h = (per_prompt @ h).reshape(b, n_heads, t, -1).transpose(0, 1)  # hxBxTx16
            mixed = mixed + mixed_h @ self._mask_heads(self.values_mask_w, n_heads)[:, None]
        mixed = mixed.permute(1, 2, 0, 3).reshape(b, t, -1) + self._bias("values", mask)
        queries = first.norm2(queries + to_image.out_proj(mixed))
        queries = first.norm3(queries + first.mlp(queries))
        k = heads(to_token.k_proj(queries + tokens), n_heads) * d**-0.5  # BxhxTxd
        scores = shared_scores(k, per_head(side.queries, n_heads))
        scores = scores + (k @ self._bias("queries", mask).reshape(n_heads, d, 1)).transpose(0, 1)
        if h is not None:
            scores = scores + self._mask_scores(k, self.queries_mask_w, h)
        probs = torch.softmax(scores, dim=2).transpose(0, 1).reshape(b, n_heads * t, -1)  # Bx(hT)x4096
        return queries, probs, folded_values(to_token, queries)

    @staticmethod
    def _mask_heads(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
        """A 16x(h·d) mask-channel weight -> hx16xd, head i's columns."""
        return weight.reshape(weight.shape[0], num_heads, -1).transpose(0, 1)

    def _mask_scores(self, q: torch.Tensor, weight: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The mask prompt's part of per-head scores: q BxhxTxd, weight 16x(h·d), h Bx4096x16 -> hxBxTx4096."""
        b, n_heads, t, _ = q.shape
        q_h = (q @ self._mask_heads(weight, n_heads).transpose(1, 2)).reshape(b, n_heads * t, -1)  # Bx(hT)x16
        return (q_h @ h.transpose(1, 2)).reshape(b, n_heads, t, -1).transpose(0, 1)

    # -- the outputs ---------------------------------------------------------------------------------

    def iou(self, transformed: Transformed) -> torch.Tensor:
        """Bx4 predicted IoUs of the four mask tokens (token 0 single-mask, 1-3 multimask)."""
        return self.decoder.iou_prediction_head(transformed.outputs[:, 0])

    def masks(
        self,
        side: ImageSide,
        transformed: Transformed,
        mask_tokens: range,
        prompts: torch.Tensor | None = None,
        rows: int | None = UPSCALE_ROWS,
    ) -> torch.Tensor:
        """KxMx256x256 low-res logits of the mask tokens `mask_tokens` (M of 0-3) for the prompts
        `prompts` (K indices into the B prompts; None: all of them). rows: one prompt's image rows
        upscaled together (None: all at once, as a traced graph does); several prompts are upscaled
        `PROMPT_BLOCK` whole prompts at a time (None: all at once)."""
        outputs = transformed.outputs if prompts is None else transformed.outputs[prompts]
        mlps = self.decoder.output_hypernetworks_mlps
        hyper = torch.stack([mlps[i](outputs[:, 1 + i]) for i in mask_tokens], dim=1)  # KxMx32
        if isinstance(transformed.image, torch.Tensor):
            image = transformed.image if prompts is None else transformed.image[prompts]
            return self._masks_batched(image, hyper, image.shape[0] if rows is None else PROMPT_BLOCK)
        chosen = range(outputs.shape[0]) if prompts is None else prompts.tolist()
        n = side.tokens.shape[1]
        side_out = int(math.isqrt(n)) * 4
        step = n if rows is None else rows
        per_prompt = []
        for k, prompt in enumerate(chosen):
            blocks = [
                self._upscale(self._upscale_input(side, transformed, prompt, slice(start, start + step)), hyper[k])
                for start in range(0, n, step)
            ]
            per_prompt.append(blocks[0] if len(blocks) == 1 else torch.cat(blocks))
        logits = torch.stack(per_prompt).transpose(1, 2)  # KxMx(4096·16), products' pixel order
        return logits[..., self.raster_order].reshape(len(per_prompt), -1, side_out, side_out)

    def _masks_batched(self, image: torch.Tensor, hyper: torch.Tensor, block: int) -> torch.Tensor:
        """`masks` for several prompts, eagerly, from their final image rows (Kx4096x256): `block`
        whole prompts upscaled together, each product one call over all their rows, and the logits
        written in place into one tensor put in raster order by one permutation.

        Why whole prompts and not cache-sized row blocks: on a CPU shared with other processes every
        operator call waits for its slowest thread, so the call count sets the time; 64 prompts
        upscaled per prompt and 1024-row block (256 blocks of seven calls) took about 4x the time of
        16 blocks of four prompts (benchmarks/README.md, issue 14). A block of four prompts holds
        about 200 MB of intermediates."""
        k, n, channels = image.shape
        grid, m = int(math.isqrt(n)), hyper.shape[1]
        out = torch.empty(k, n * 16, m, dtype=hyper.dtype, device=hyper.device)
        for start in range(0, k, block):
            stop = min(k, start + block)
            up = torch.addmm(self.up1_bias, image[start:stop].reshape(-1, channels), self.up1_w)
            self._upscale(up, hyper[start:stop], out[start:stop])
        pixels = out.view(-1, grid, grid, 2, 2, 2, 2, m)  # y, x, dy, dx, dy2, dx2, M
        return pixels.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(k, m, grid * 4, grid * 4)

    def _upscale_input(self, side: ImageSide, transformed: Transformed, prompt: int, rows: slice) -> torch.Tensor:
        """The first upscaling product keys2 W + b for image rows `rows` of one prompt, carried
        through the two norm4 layer norms instead of computed from keys2 (Rx256).

        keys1 = LN1(z0) with z0 = (E + dense) + P0^T V0, keys2 = LN2(z1) with z1 = keys1 + P1^T V1.
        Per row, keys2 W = inv1 (z1 G2 - mean1 colsum(G2)) + beta2 W with G2 = diag(gamma2) W, and
        keys1 G2 = inv0 (z0 G12 - mean0 colsum(G12)) + beta1 G2 with G12 = diag(gamma1) G2; so E G12,
        once per image, and products with the (hT)x256 factors V0 G12, V1 G2 replace a 4096x256x256
        product per prompt.

        With several prompts the transformer kept the final image rows instead (`transform`): their
        direct product (`_masks_batched`), one pass over memory, is faster on the CPU than these
        low-rank updates.
        """
        norms, attended = cast(Factors, transformed.image)
        (mean0, inv0), (mean1, inv1) = ((m[prompt, rows], i[prompt, rows]) for m, i in norms)
        (probs0, v_out0), (probs1, v_out1) = ((p[prompt, :, rows], v[prompt]) for p, v in attended)
        mask = transformed.mask
        z0 = side.upscale_base[0, rows] + probs0.T @ (v_out0 @ self.g12) + self._bias("dense_g12", mask)
        if mask.features is not None:
            z0 = z0 + mask.features[prompt, rows] @ self.dense_g12_w
        keys1_g2 = inv0 * (z0 - mean0 * self.g12_colsum) + self.beta1_g2
        z1 = keys1_g2 + probs1.T @ (v_out1 @ self.g2)
        return inv1 * (z1 - mean1 * self.g2_colsum) + self.up1_b

    def _upscale(self, up: torch.Tensor, hyper: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rx(2·2·64) first-product rows -> logits: LayerNorm2d and GELU per output pixel, the second
        transposed convolution as a product, GELU, and the hypernetworks' weights. One prompt: hyper
        Mx32 -> (R·16)xM; K whole prompts' rows: hyper KxMx32 -> Kx(R/K·16)xM, into `out` if given."""
        norm = self.upscale_norm
        channels = norm.weight.shape[0]
        x = F.gelu(F.layer_norm(up.reshape(-1, channels), (channels,), norm.weight, norm.bias, norm.eps))
        x = F.gelu(torch.addmm(self.up2_b, x.reshape(up.shape[0] * 4, -1), self.up2_w))
        if hyper.ndim == 3:
            return torch.bmm(x.view(hyper.shape[0], -1, hyper.shape[2]), hyper.transpose(1, 2), out=out)
        return x.reshape(-1, hyper.shape[1]) @ hyper.T

    # -- everything at once --------------------------------------------------------------------------

    def decode(
        self,
        side: ImageSide,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask: MaskPrompt,
        mask_tokens: range,
        rows: int | None = UPSCALE_ROWS,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B prompts -> (low-res logits BxMx256x256, predicted IoUs BxM) of the mask tokens `mask_tokens`."""
        transformed = self.transform(side, self.prompt_tokens(coords, labels), mask)
        iou = self.iou(transformed)[:, mask_tokens.start : mask_tokens.stop]
        return self.masks(side, transformed, mask_tokens, rows=rows), iou


def _layer_norm(z: torch.Tensor, norm: nn.LayerNorm) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """`norm(z)` for Bx4096xC rows, also returning the rows' (mean, 1/std), Bx4096x1 each."""
    mean = z.mean(-1, keepdim=True)
    centred = z - mean
    inv_std = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + norm.eps)
    return centred * inv_std * norm.weight + norm.bias, (mean, inv_std)
