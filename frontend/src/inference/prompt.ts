/**
 * Clicks and boxes in the ORIGINAL image frame -> the decoder graph's point inputs in the 1024 frame.
 *
 * Mirrors the Python predictor's transform: each axis is scaled by input/original, where the input
 * size is the image resized so that its longest side is 1024 (the embedding's `X-Input-Size`).
 * Without a box one padding point (0, 0) with label -1 is appended, as SAM was trained; a box
 * becomes two corner points labelled 2 (top-left) and 3 (bottom-right) after the clicks.
 */

import type { Size } from "./protocol";

/** A click in original-image pixels: label 1 foreground, 0 background. */
export interface Point {
  x: number;
  y: number;
  label: 0 | 1;
}

export interface Prompt {
  points: readonly Point[];
  /** [x0, y0, x1, y1] in original-image pixels. */
  box?: readonly [number, number, number, number];
  /** Low-res logits (256*256 float32) of the previous decode of this mask, fed back to refine it. */
  maskInput?: Float32Array;
}

export interface GraphPrompt {
  /** 1xMx2 float32 (x, y) in the 1024 model frame. */
  pointCoords: Float32Array;
  /** 1xM float32 labels. */
  pointLabels: Float32Array;
}

function checkSize(name: string, size: Size): void {
  if (size.length !== 2 || !(size[0] > 0) || !(size[1] > 0)) throw new Error(`${name} must be [h, w] > 0, got ${size}`);
}

/** Builds the graph's `point_coords` / `point_labels` from a prompt in original-image pixels. */
export function buildPrompt(prompt: Prompt, originalSize: Size, inputSize: Size): GraphPrompt {
  checkSize("originalSize", originalSize);
  checkSize("inputSize", inputSize);
  if (prompt.points.length === 0 && prompt.box === undefined) throw new Error("a prompt needs at least one point or a box");
  const sx = inputSize[1] / originalSize[1];
  const sy = inputSize[0] / originalSize[0];
  const count = prompt.points.length + (prompt.box ? 2 : 1);
  const coords = new Float32Array(count * 2);
  const labels = new Float32Array(count);
  prompt.points.forEach((p, i) => {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) throw new Error(`point ${i} is not finite: (${p.x}, ${p.y})`);
    if (p.label !== 0 && p.label !== 1) throw new Error(`point ${i} has label ${p.label}; expected 0 or 1`);
    coords[2 * i] = p.x * sx;
    coords[2 * i + 1] = p.y * sy;
    labels[i] = p.label;
  });
  const n = prompt.points.length;
  if (prompt.box) {
    const [x0, y0, x1, y1] = prompt.box;
    if (![x0, y0, x1, y1].every(Number.isFinite)) throw new Error(`box is not finite: ${prompt.box}`);
    coords.set([Math.min(x0, x1) * sx, Math.min(y0, y1) * sy, Math.max(x0, x1) * sx, Math.max(y0, y1) * sy], 2 * n);
    labels[n] = 2;
    labels[n + 1] = 3;
  } else {
    labels[n] = -1; // padding point at (0, 0)
  }
  return { pointCoords: coords, pointLabels: labels };
}
