"""Masks as stored: canonical COCO RLE and its figures (`rle`), how each mask came to be
(`provenance`), the one writer of mask rows (`writer`), and the image split by which masks train or
measure a model (`split`)."""
