"""The decoder's attentions between T prompt tokens and the 4096 image rows, re-associated.

`sam.transformer.Attention` projects both sides to the internal width (256 -> 128) before the
scores. Between T tokens and n = 4096 image rows that is a 4096x256x128 product per prompt and side;
here every 4096-row projection is folded into the tokens' side per head instead (T x 256 numbers per
head), so a product costs 4096 x 256 x hT multiply-adds (h = 8 heads, T = 7 tokens, 5 in the final
attention): a gain while hT < 128, i.e. up to about ten clicks.

Layout, for the CPU and for onnxruntime alike: scores are Bx(hT)xn, one row per (head, token), so
every softmax and product runs along contiguous 4096-wide rows, and no 4096-row tensor is ever
reshaped into heads (the browser's wasm kernels pay dearly for large transposes). The positional
encoding is taken channels first (256x4096), so that its products need no transpose either (and a
traced graph holds it once). The prompts' image rows, where shared, enter with batch 1 and are
broadcast, never copied per prompt.
"""

from __future__ import annotations

import torch

from ..sam.transformer import Attention


def heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """BxTx(h·d) -> BxhxTxd."""
    b, t, c = x.shape
    return x.reshape(b, t, num_heads, c // num_heads).transpose(1, 2)


def block_rows(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """BxTx(h·d) -> Bx(hT)x(h·d): row (i, t) holds head i's part of token t, zeros elsewhere.

    A product of these rows with a 4096x(h·d) image-side matrix gives every head's scores at once,
    without splitting the 4096 rows into heads.
    """
    b, t, c = x.shape
    eye = torch.eye(num_heads, dtype=x.dtype, device=x.device)
    split = heads(x, num_heads)  # BxhxTxd
    return (split[:, :, :, None, :] * eye[None, :, None, :, None]).reshape(b, num_heads * t, c)


def diagonal_blocks(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Bx(hT)x(h·d) -> BxTx(h·d): for every head i, row block i's column block i (the inverse of
    `block_rows` on per-head results)."""
    b, ht, c = x.shape
    t, d = ht // num_heads, c // num_heads
    blocks = x.reshape(b, num_heads, t, num_heads, d)
    eye = torch.eye(num_heads, dtype=x.dtype, device=x.device)
    return (blocks * eye[None, :, None, :, None]).sum(1).reshape(b, t, c)


def token_to_image(attn: Attention, queries: torch.Tensor, image: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """`attn(queries, image + pe^T, image)` for BxTx256 tokens attending to Bx4096x256 (or
    1x4096x256) image rows; pe 256x4096, the positional encoding channels first, shared by all prompts.

    Per head i: scores = (q_i W_ki) (K + PE)^T (k_proj's bias adds a constant per score row: the
    softmax ignores it) and out_i = (P_i K) W_vi^T + b_vi (softmax rows sum to 1). The positional
    part of the scores is one product for all prompts, so `image + key_pe` is never formed per prompt.
    """
    h = attn.num_heads
    q = heads(attn.q_proj(queries), h)  # BxhxTxd
    b, _, t, d = q.shape
    w_k = attn.k_proj.weight.reshape(h, d, -1)  # hxdx256
    q_abs = (q @ w_k).reshape(b, h * t, -1) * d**-0.5  # Bx(hT)x256
    scores = (q_abs.reshape(b * h * t, -1) @ pe).reshape(b, h * t, -1)
    probs = torch.softmax(torch.baddbmm(scores, q_abs, image.expand(b, -1, -1).transpose(1, 2)), dim=-1)
    mixed = (probs @ image).reshape(b, h, t, -1)  # BxhxTx256
    w_v = attn.v_proj.weight.reshape(h, d, -1)  # hxdx256
    out = (mixed @ w_v.transpose(1, 2)).transpose(1, 2).reshape(b, t, h * d) + attn.v_proj.bias
    return attn.out_proj(out)


def image_to_token(
    attn: Attention, image: torch.Tensor, pe: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`attn(image + pe^T, keys, values)` for Bx4096x256 image rows attending to BxTx256 tokens;
    pe 256x4096 (shared). Returns its factors (probs Bx(hT)x4096, v_out Bx(hT)x256):
    the attention's output is probs^T v_out.

    Per head i: scores = X (W_qi^T k_i^T) + b_qi k_i^T and out = sum_i P_i (v_i W_oi^T) + b_o: the query
    and output projections are folded into the tokens' side; b_o / h goes into every head's values
    (each head's softmax over its T tokens sums to 1). The softmax runs across the T rows of a head,
    along contiguous 4096-wide vectors (a softmax over a last dimension of 7 is several times slower).
    """
    h = attn.num_heads
    k = heads(attn.k_proj(keys), h) * (attn.k_proj.out_features // h) ** -0.5  # BxhxTxd, scaled
    b, _, t, d = k.shape
    w_q = attn.q_proj.weight.reshape(h, d, -1)  # hxdx256
    k_abs = (k @ w_q).reshape(b, h * t, -1)  # Bx(hT)x256
    k_bias = (k @ attn.q_proj.bias.reshape(h, d, 1)).reshape(b * h * t, 1)
    scores = torch.addmm(k_bias, k_abs.reshape(b * h * t, -1), pe).reshape(b, h * t, -1)
    scores = torch.baddbmm(scores, k_abs, image.expand(b, -1, -1).transpose(1, 2))
    probs = torch.softmax(scores.reshape(b, h, t, -1), dim=2).reshape(b, h * t, -1)
    return probs, folded_values(attn, values)


def folded_values(attn: Attention, values: torch.Tensor) -> torch.Tensor:
    """BxTx256 tokens -> Bx(hT)x256: each head's values through its share of the output projection,
    plus b_o / h, so that an image->token attention's output is probs^T (this)."""
    h = attn.num_heads
    v = heads(attn.v_proj(values), h)  # BxhxTxd
    b, _, t, d = v.shape
    w_o = attn.out_proj.weight.reshape(-1, h, d).transpose(0, 1)  # hx256xd
    return (v @ w_o.transpose(1, 2) + attn.out_proj.bias / h).reshape(b, h * t, -1)


def per_head(rows: torch.Tensor, num_heads: int) -> torch.Tensor:
    """1xnx(h·d) image-side rows, shared by all prompts -> hxnxd (a view, nothing copied)."""
    n, c = rows.shape[1:]
    return rows[0].reshape(n, num_heads, c // num_heads).transpose(0, 1)


def shared_scores(q: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Scores of B prompts' heads BxhxTxd against one image's shared per-head rows hxnxd -> hxBxTxn.

    The prompts are folded into one query sequence per head, so each head's scores for all prompts
    are one product against the image rows (B·T x d x n), with neither the rows copied per prompt
    nor the (hT)x(h·d) block rows of `block_rows` (h times the products).
    """
    b, h, t, d = q.shape
    return (q.transpose(0, 1).reshape(h, b * t, d) @ image.transpose(1, 2)).reshape(h, b, t, -1)
