"""The folded decoder computes what the `sam/` modules compute (prompt encoder + mask decoder).

The modules are the trainable reference, held to the official package by test_predictor.py through
the `Predictor`, which decodes with the folded decoder; here the two are compared directly, part by
part, on seeded vit_t weights and a random embedding, for the cases the predictor, the automatic
generator and the ONNX graphs use: batches of prompts and one prompt (two forms), with and without
mask input (also switched off by a traced graph's flag), one or three mask tokens, all prompts or a
subset, by row blocks or all rows at once.
"""

from __future__ import annotations

import pytest
import torch

from model_server.decoding import FoldedDecoder
from model_server.decoding.decoder import PROMPT_BLOCK
from model_server.sam.build import build_sam

TOL = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(scope="module")
def case():
    model = build_sam("vit_t", seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.rand(5, 3, 2, generator=gen) * 1024
    labels = torch.tensor([[1, -1, 0], [1, 0, 1], [0, -1, 1], [2, 3, 1], [1, -1, -1]])
    mask_input = 3 * torch.randn(5, 1, 256, 256, generator=gen)
    return model, FoldedDecoder(model), embedding, coords, labels, mask_input


def _reference(model, embedding, coords, labels, mask_input, multimask):
    prompt = model.prompt_encoder
    sparse, dense = prompt(coords, labels, mask_input)
    return model.mask_decoder(embedding, prompt.get_dense_pe(), sparse, dense, multimask)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_decode_equals_the_modules(case, multimask, with_mask):
    model, folded, embedding, coords, labels, mask_input = case
    mask_input = mask_input if with_mask else None
    with torch.inference_mode():
        expected_masks, expected_iou = _reference(model, embedding, coords, labels, mask_input, multimask)
        side = folded.image_side(embedding)
        tokens = range(1, 4) if multimask else range(0, 1)
        masks, iou = folded.decode(side, coords, labels, folded.mask_prompt(mask_input), tokens)
        whole, _ = folded.decode(side, coords, labels, folded.mask_prompt(mask_input), tokens, rows=None)
    assert expected_masks.abs().max() > 0.1  # the seeded logits are not all ~0: the check can fail
    torch.testing.assert_close(masks, expected_masks, **TOL)
    torch.testing.assert_close(iou, expected_iou, **TOL)
    torch.testing.assert_close(whole, masks, **TOL)


@pytest.mark.parametrize("with_mask", [False, True])
def test_one_prompt_at_a_time_equals_the_modules(case, with_mask):
    """One prompt (the browser's graphs, a click) and several (batched CPU decoding) take different
    forms of the first block and the upscaling input (`FoldedDecoder.transform`): both equal the modules."""
    model, folded, embedding, coords, labels, mask_input = case
    with torch.inference_mode():
        side = folded.image_side(embedding)
        for i in range(coords.shape[0]):
            one = slice(i, i + 1)
            mask = mask_input[one] if with_mask else None
            expected_masks, expected_iou = _reference(model, embedding, coords[one], labels[one], mask, True)
            masks, iou = folded.decode(side, coords[one], labels[one], folded.mask_prompt(mask), range(1, 4))
            torch.testing.assert_close(masks, expected_masks, **TOL)
            torch.testing.assert_close(iou, expected_iou, **TOL)


def test_transformer_tokens_equal_the_module(case):
    model, folded, embedding, coords, labels, _ = case
    decoder, prompt = model.mask_decoder, model.prompt_encoder
    with torch.inference_mode():
        tokens = folded.prompt_tokens(coords, labels)
        dense = prompt.embed_masks(None)
        hs, _ = decoder.transformer(embedding + dense, prompt.get_dense_pe(), tokens)
        transformed = folded.transform(folded.image_side(embedding), tokens, folded.mask_prompt(None))
    n_out = transformed.outputs.shape[1]
    torch.testing.assert_close(transformed.outputs, hs[:, :n_out], **TOL)


def test_traced_mask_flag_switches_the_mask_prompt(case):
    """A graph's has_mask_input: 1 gives the mask prompt, 0 the "no mask" one, whatever mask_input holds."""
    _, folded, embedding, coords, labels, mask_input = case
    with torch.inference_mode():
        side = folded.image_side(embedding)
        on = folded.decode(side, coords, labels, folded.mask_prompt(mask_input, torch.ones(1)), range(4))
        off = folded.decode(side, coords, labels, folded.mask_prompt(mask_input, torch.zeros(1)), range(4))
        with_mask = folded.decode(side, coords, labels, folded.mask_prompt(mask_input), range(4))
        without = folded.decode(side, coords, labels, folded.mask_prompt(None), range(4))
    for flagged, plain in ((on, with_mask), (off, without)):
        torch.testing.assert_close(flagged[0], plain[0], **TOL)
        torch.testing.assert_close(flagged[1], plain[1], **TOL)
    assert (on[0] - off[0]).abs().max() > 1e-2


def test_masks_of_a_subset_of_prompts(case):
    """The automatic generator upscales only the prompts whose IoUs pass: same masks as for all."""
    _, folded, embedding, coords, labels, _ = case
    with torch.inference_mode():
        side = folded.image_side(embedding)
        transformed = folded.transform(side, folded.prompt_tokens(coords, labels), folded.mask_prompt(None))
        every = folded.masks(side, transformed, range(1, 4))
        some = folded.masks(side, transformed, range(1, 4), torch.tensor([3, 0]))
    assert some.shape == (2, 3, 256, 256)
    torch.testing.assert_close(some, every[[3, 0]])


@pytest.mark.parametrize("with_mask", [False, True])
def test_many_prompts_batched_equal_one_at_a_time(case, with_mask):
    """Several prompts are upscaled in blocks of whole prompts (`PROMPT_BLOCK`, the last one partial
    here) from the batched form's image rows: each prompt's masks and IoUs equal the one-prompt form's
    (the browser graphs' form), for all prompts and for an unordered subset across blocks."""
    model, folded, embedding, _, _, _ = case
    gen = torch.Generator().manual_seed(2)
    count = 2 * PROMPT_BLOCK + 1
    coords = torch.rand(count, 2, 2, generator=gen) * 1024
    labels = torch.tensor([[1, -1], [1, 0], [2, 3]]).repeat(count, 1)[:count]
    mask_input = 3 * torch.randn(count, 1, 256, 256, generator=gen) if with_mask else None
    subset = torch.tensor([count - 1, 0, PROMPT_BLOCK + 1])
    with torch.inference_mode():
        side = folded.image_side(embedding)
        batched, iou = folded.decode(side, coords, labels, folded.mask_prompt(mask_input), range(4))
        transformed = folded.transform(side, folded.prompt_tokens(coords, labels), folded.mask_prompt(mask_input))
        some = folded.masks(side, transformed, range(1, 4), subset)
        for i in range(count):
            one = slice(i, i + 1)
            mask = folded.mask_prompt(None if mask_input is None else mask_input[one])
            masks, one_iou = folded.decode(side, coords[one], labels[one], mask, range(4))
            torch.testing.assert_close(batched[one], masks, **TOL)
            torch.testing.assert_close(iou[one], one_iou, **TOL)
    assert batched.abs().max() > 0.1
    torch.testing.assert_close(some, batched[subset][:, 1:], **TOL)
